//! The configuration file (TOML). Every key is optional: with no file at all the server
//! serves `localhost` on the standard ports, keeps its data in `./data` and generates a
//! development certificate. `jabberwock.example.toml` documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jabberwock_proto::Limits;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

/// A number of days, or `"never"` (0).
fn days_or_never<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Days {
        Days(u64),
        Word(String),
    }
    match Days::deserialize(d)? {
        Days::Days(n) => Ok(n),
        Days::Word(w) if w == "never" => Ok(0),
        Days::Word(w) => Err(serde::de::Error::custom(format!("{w:?} is neither a number of days nor \"never\""))),
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), reason: reason.into() }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The domains this server hosts.
    pub domains: Vec<String>,
    /// Where the database and generated certificates live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to `sqlite://<data_dir>/jabberwock.db`.
    pub storage: Option<String>,
    /// The Unix socket the admin commands reach the running server by (mode 0600);
    /// defaults to `<data_dir>/control.sock`.
    pub control_socket: Option<PathBuf>,
    /// XEP-0077 in-band registration of new accounts.
    pub allow_registration: bool,
    /// Accounts (bare JIDs) that may run the XEP-0133 service administration commands.
    pub admins: Vec<String>,
    /// The `tracing` filter, e.g. `info` or `jabberwock=debug`; `RUST_LOG` overrides it.
    pub log: String,
    /// `text` for people, `json` (one object per line) for log shippers.
    pub log_format: LogFormat,
    pub listen: Listen,
    /// Certificate and key per domain; domains without one get a generated
    /// self-signed development certificate.
    pub tls: BTreeMap<String, CertPaths>,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    pub http: HttpConfig,
    pub s2s: S2sConfig,
    pub muc: MucConfig,
    pub upload: UploadConfig,
    pub pep: PepConfig,
    pub contact: ContactConfig,
    pub external_services: ExternalServicesConfig,
    pub components: ComponentsConfig,
    pub push: PushConfig,
    pub metrics: MetricsConfig,
    /// Several nodes sharing one PostgreSQL and one Redis; absent: one node on its own.
    pub cluster: Option<ClusterConfig>,
}

/// One node of a cluster: the session registry lives in Redis, and stanzas for sessions
/// on other nodes go through it (see the README's *Cluster*).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id, unique in the cluster (`[A-Za-z0-9_.-]`, at most 64 characters).
    pub node: String,
    /// The Redis every node shares: `redis://host:port/db`.
    pub redis: String,
    /// How other nodes and a load balancer reach this node (`host:port`), shown by
    /// `jabberwock cluster status`.
    pub address: String,
    /// How long this node's registrations outlive its last heartbeat, in milliseconds;
    /// renewed every third of it. A node that dies leaves its sessions at most this long.
    pub lease_ms: u64,
    /// Bytes of stanzas waiting to be forwarded to one other node; over it, delivery to
    /// that node fails as if its sessions were gone (messages go to offline storage).
    /// Also bounds the stanzas other nodes forwarded for rooms this node serves, waiting
    /// to be handled; over it, they are dropped.
    pub max_forward_bytes: usize,
    /// Bytes of an available resource's last presence kept in the shared registry for
    /// probes; a longer presence is kept without its payload.
    pub max_presence_bytes: usize,
    /// Where clients reach this node itself (`host` or `host:port`, past any load
    /// balancer), sent as `location` in XEP-0198's `<enabled/>`: a session resumes only on
    /// its node. Unset, no `location` is sent.
    pub location: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node: String::new(),
            redis: String::new(),
            address: String::new(),
            lease_ms: 10_000,
            max_forward_bytes: 8 * 1024 * 1024,
            max_presence_bytes: 8 * 1024,
            location: None,
        }
    }
}

impl ClusterConfig {
    fn validate(&self, storage: Option<&str>) -> Result<(), ConfigError> {
        let id_ok = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
        if self.node.is_empty() || self.node.len() > 64 || !self.node.chars().all(id_ok) {
            return Err(invalid("cluster.node", "must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' and '-'"));
        }
        if !self.redis.starts_with("redis://") && !self.redis.starts_with("rediss://") {
            return Err(invalid("cluster.redis", "must be a redis:// or rediss:// URL"));
        }
        if self.address.is_empty() {
            return Err(invalid("cluster.address", "must say how other nodes reach this one (host:port)"));
        }
        if self.location.as_deref().is_some_and(|l| l.is_empty() || l.contains(char::is_whitespace)) {
            return Err(invalid("cluster.location", "must be a host or host:port"));
        }
        if self.lease_ms < 300 {
            return Err(invalid("cluster.lease_ms", "must be at least 300"));
        }
        if self.max_forward_bytes < 64 * 1024 {
            return Err(invalid("cluster.max_forward_bytes", "must be at least 65536"));
        }
        // Every node must see the same accounts, rosters and offline messages.
        if !storage.is_some_and(jabberwock_storage::is_postgres_url) {
            return Err(invalid("storage", "a cluster needs a postgres:// storage URL shared by every node (SQLite is one node's file)"));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Prometheus metrics at `/metrics` on the HTTP listeners, and who may read them.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// Client addresses that may read `/metrics` without a token. Behind a trusted proxy
    /// the forwarded address is the one checked.
    pub allowed_addresses: Vec<std::net::IpAddr>,
    /// A token that, sent as `Authorization: Bearer <token>`, lets any address read them.
    pub bearer_token: Option<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            allowed_addresses: vec![std::net::IpAddr::from([127, 0, 0, 1]), std::net::IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1])],
            bearer_token: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// Client connections with mandatory STARTTLS (RFC 6120).
    pub c2s: Vec<SocketAddr>,
    /// Client connections with direct TLS (XEP-0368).
    pub c2s_direct_tls: Vec<SocketAddr>,
}

/// The HTTP side: RFC 7395 WebSocket, XEP-0206 BOSH, XEP-0156 discovery and the web client.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Plain HTTP listeners.
    pub listen: Vec<SocketAddr>,
    /// HTTPS listeners, with the same certificates as c2s.
    pub listen_tls: Vec<SocketAddr>,
    /// The public base URL (`https://chat.example.org`) advertised in host-meta, for
    /// deployments behind a reverse proxy; pages of its origin may open sessions. Default:
    /// the first served domain (or the one the request names) with the listener's port.
    pub public_url: Option<String>,
    /// Origins allowed to open WebSocket and BOSH sessions from a browser, such as
    /// `https://example.org`; `*` allows any. Pages of `public_url`, of the served domains
    /// and of localhost are always allowed.
    pub allowed_origins: Vec<String>,
    /// Sites allowed to show the web client in a frame (its embeddable widget), such as
    /// `https://shop.example.org`; `*` allows any: `Content-Security-Policy:
    /// frame-ancestors` lists them after `'self'`. Default: none (and `X-Frame-Options:
    /// SAMEORIGIN` for older browsers).
    pub embed_origins: Vec<String>,
    /// `Strict-Transport-Security: max-age` (RFC 6797) of responses sent over HTTPS (or
    /// through a trusted proxy that reports HTTPS): browsers then use HTTPS only for this
    /// host. Never sent to `localhost` or loopback addresses. 0: no header.
    pub hsts_max_age_secs: u64,
    /// Reverse proxies whose `X-Forwarded-For`/`X-Forwarded-Proto` headers are believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A directory holding the built web client, served in place of the one embedded in
    /// the binary. Default: `web-client/dist` when it exists (a local build), otherwise
    /// the embedded one.
    pub web_root: Option<PathBuf>,
    /// A BOSH session with no request for this long ends (XEP-0124 `inactivity`).
    pub bosh_inactivity_secs: u64,
    /// Let WebSocket and BOSH clients sign in over plain HTTP from other machines (their
    /// credentials then cross the network in clear): for development only. Clients on
    /// this machine, and those behind a trusted proxy that reports HTTPS, may always.
    pub allow_unencrypted_auth: bool,
    /// New BOSH sessions one client address may open per minute; more get the XEP-0124
    /// `policy-violation` condition.
    pub bosh_sessions_per_ip_per_minute: u32,
    /// Time a client has to send a request's headers, from the connection's start or the
    /// previous response; an idle keep-alive connection is closed after it too.
    pub header_timeout_secs: u64,
    /// A request body that sends nothing for this long is abandoned, and its connection
    /// closed.
    pub body_timeout_secs: u64,
}

/// Federation with other servers (RFC 6120 server-to-server streams).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S2sConfig {
    /// Federation on or off.
    pub enabled: bool,
    /// Server connections with STARTTLS (the `_xmpp-server._tcp` port).
    pub listen: Vec<SocketAddr>,
    /// Server connections with direct TLS (XEP-0368, the `_xmpps-server._tcp` port).
    pub listen_direct_tls: Vec<SocketAddr>,
    /// Refuse unencrypted server streams, both ways.
    pub require_encryption: bool,
    /// PEM bundle of the certificate authorities that peers' certificates must chain to.
    /// Default: the system's store.
    pub trust_store: Option<PathBuf>,
    /// Connecting, TLS and authentication with a peer must finish within this time.
    pub connect_timeout_secs: u64,
    /// A server stream with no traffic for this long is closed.
    pub idle_timeout_secs: u64,
    /// Most inbound server connections at once, in total and from one address.
    pub max_inbound_connections: usize,
    pub max_inbound_connections_per_ip: usize,
    /// Most outbound server connections at once.
    pub max_outbound_connections: usize,
    /// Most stanzas waiting for one peer while its connection is being set up.
    pub max_queue: usize,
    /// Bytes per second one inbound server connection may send (after a burst of 1 MiB);
    /// a flooding peer is read no faster. 0: unlimited.
    pub max_inbound_bytes_per_sec: u64,
    /// When not empty, the only domains the server federates with.
    pub allow: Vec<String>,
    /// Domains the server never federates with.
    pub deny: Vec<String>,
    /// The secret behind dialback keys (XEP-0220 §2.4). Default: a random one per start,
    /// or in a cluster one the nodes share through Redis; servers sharing domains must
    /// share it.
    pub dialback_secret: Option<String>,
    /// Per-peer settings, by domain.
    pub peers: BTreeMap<String, PeerConfig>,
}

/// XEP-0157: whom to contact about this server, as URIs (`xmpp:admin@example.org`,
/// `mailto:abuse@example.org`, `https://example.org/support`), shown in its disco#info.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContactConfig {
    pub abuse: Vec<String>,
    pub admin: Vec<String>,
    pub feedback: Vec<String>,
    pub sales: Vec<String>,
    pub security: Vec<String>,
    pub support: Vec<String>,
}

/// XEP-0357 push notifications: what a phone's app server is told when a message arrives
/// while the app sleeps.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    pub enabled: bool,
    /// Put the sender's bare JID in notifications (the app server then learns who writes).
    pub include_sender: bool,
    /// Put the message body in notifications (the app server then reads every message).
    pub include_body: bool,
    /// At most one notification per registration in this many seconds; messages in
    /// between are covered by the next one, which the woken app fetches anyway.
    pub min_interval_secs: u64,
    /// App servers one account may register.
    pub max_registrations: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig { enabled: true, include_sender: false, include_body: false, min_interval_secs: 5, max_registrations: 20 }
    }
}

/// XEP-0114 external components: programs (gateways, bots) that serve a domain of their
/// own through this server.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentsConfig {
    /// Where components connect. The protocol has no TLS and proves the secret with an
    /// unsalted hash: keep it on loopback or a private network.
    pub listen: Vec<SocketAddr>,
    /// Stanzas waiting for a component that does not read, in bytes; more bounce with
    /// `resource-constraint`.
    pub max_queue_bytes: usize,
    /// Each component's domain and secret.
    pub domains: BTreeMap<String, ComponentEntry>,
}

impl Default for ComponentsConfig {
    fn default() -> Self {
        ComponentsConfig { listen: vec![SocketAddr::from(([127, 0, 0, 1], 5347))], max_queue_bytes: 4 << 20, domains: BTreeMap::new() }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentEntry {
    pub secret: String,
}

/// XEP-0215: the STUN and TURN servers clients are told about, for calls.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExternalServicesConfig {
    /// The secret shared with coturn (`use-auth-secret`, `static-auth-secret`): TURN
    /// services then come with credentials made for each request (coturn's REST scheme).
    pub turn_secret: Option<String>,
    /// How long such credentials work.
    pub credential_ttl_secs: u64,
    #[serde(rename = "service")]
    pub services: Vec<ExternalService>,
}

impl Default for ExternalServicesConfig {
    fn default() -> Self {
        ExternalServicesConfig { turn_secret: None, credential_ttl_secs: 86_400, services: Vec::new() }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalService {
    /// `stun`, `stuns`, `turn` or `turns`.
    #[serde(rename = "type")]
    pub kind: String,
    pub host: String,
    pub port: u16,
    /// `udp` or `tcp`.
    pub transport: Option<String>,
    /// A name to show.
    pub name: Option<String>,
}

impl ContactConfig {
    /// Each kind of address, by its XEP-0157 field name, with the configured URIs.
    pub fn fields(&self) -> [(&'static str, &[String]); 6] {
        [
            ("abuse-addresses", &self.abuse),
            ("admin-addresses", &self.admin),
            ("feedback-addresses", &self.feedback),
            ("sales-addresses", &self.sales),
            ("security-addresses", &self.security),
            ("support-addresses", &self.support),
        ]
    }
}

/// Group chat (XEP-0045): a room service on a subdomain of each served domain.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MucConfig {
    pub enabled: bool,
    /// The service of `example.org` is `<subdomain>.example.org`.
    pub subdomain: String,
    /// Rooms one service holds, stored and live together.
    pub max_rooms: usize,
    /// The most occupants a room may allow (`muc#roomconfig_maxusers`).
    pub max_occupants: u32,
    /// Rooms one account may have joined at once, per service.
    pub max_rooms_per_user: usize,
    /// Groupchat messages one occupant may send per second (after a burst of as many).
    pub max_messages_per_sec: u32,
    /// Longest room subject, name or description, in bytes.
    pub max_text_bytes: usize,
    /// Days a destroyed room's name stays reserved, answering joins with `gone` and its
    /// new address; 0: none.
    pub tombstone_days: u32,
}

/// HTTP file upload (XEP-0363): a slot service on a subdomain of each served domain; the
/// HTTP listeners take and serve the files under `/upload/`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    pub enabled: bool,
    /// The service of `example.org` is `<subdomain>.example.org`.
    pub subdomain: String,
    /// Largest file, in bytes.
    pub max_file_bytes: u64,
    /// Bytes one account may upload in 24 hours.
    pub quota_bytes_per_day: u64,
    /// Bytes one account may have stored at once.
    pub quota_bytes: u64,
    /// Slots one account may request per minute.
    pub slots_per_minute: u32,
    /// Files (and slots not used yet) one account may have at once.
    pub max_files: usize,
    /// How long a slot's PUT URL works.
    pub slot_lifetime_secs: u64,
    /// Files are deleted this long after their upload; 0: kept until the account goes.
    pub expire_after_secs: u64,
    /// MIME types that may be uploaded (`image/*` covers a top-level type); empty: any.
    pub allowed_types: Vec<String>,
}

/// Personal eventing (XEP-0163): every account is a pubsub service with its own nodes.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PepConfig {
    /// Nodes one account may have; publishing to a new node beyond them is refused.
    pub max_nodes: usize,
    /// Items one node keeps at most, whatever its `pubsub#max_items` asks (`max` means
    /// this many); publishing more drops the oldest.
    pub max_items: u32,
    /// Largest item, in bytes; bigger ones are refused with `payload-too-big`.
    pub max_item_bytes: usize,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeerConfig {
    /// `host:port` to connect to instead of looking up the domain's SRV records.
    pub connect: Option<String>,
    /// Connect with direct TLS (XEP-0368) instead of STARTTLS.
    pub direct_tls: bool,
    /// Accept a certificate that does not verify for this peer (self-signed, say); the
    /// peer then has to prove itself with dialback.
    pub insecure: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Which messages an account archives: XEP-0313's `default` preference, and
/// `limits.archive_default`, the operator's default for accounts that set none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveDefault {
    Always,
    Roster,
    Never,
}

impl ArchiveDefault {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "always" => Some(ArchiveDefault::Always),
            "roster" => Some(ArchiveDefault::Roster),
            "never" => Some(ArchiveDefault::Never),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveDefault::Always => "always",
            ArchiveDefault::Roster => "roster",
            ArchiveDefault::Never => "never",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub max_attributes: usize,
    /// A connection must finish authentication and binding within this time.
    pub negotiation_timeout_secs: u64,
    /// Messages kept per user while offline (XEP-0160).
    pub offline_quota: u64,
    /// Bytes of messages kept per user while offline: one more is refused with
    /// `service-unavailable`, like one over `offline_quota`.
    pub offline_quota_bytes: u64,
    /// Concurrent sessions (resources) per account.
    pub max_resources: usize,
    /// How long a dropped session with XEP-0198 resumption waits to be resumed.
    pub resume_window_secs: u64,
    /// Days a message stays in the XEP-0313 archive; 0 (or `"never"` in the file) keeps
    /// it forever.
    #[serde(deserialize_with = "days_or_never")]
    pub archive_retention_days: u64,
    /// Messages one account's XEP-0313 archive may hold; 0: no quota (retention alone
    /// bounds it). A message that would go over is refused, not archived: it goes back to
    /// its sender with `resource-constraint`.
    pub archive_quota: u64,
    /// Which messages an account archives until it sets its own XEP-0313 preference:
    /// `always`, `roster` (only with contacts in its roster) or `never`.
    pub archive_default: ArchiveDefault,
    /// Client connections at once (c2s and HTTP listeners together), in total and from
    /// one address. A trusted proxy's connections count in the total only.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Client streams (c2s, WebSocket, BOSH) that have not yet bound a resource, in total
    /// and from one address (behind a trusted proxy, the forwarded client address). A
    /// smaller budget than connections: idle sockets cannot take the slots of users.
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_ip: usize,
    /// Bytes of output one session may hold for its client: stanzas queued for it, being
    /// written, waiting for a BOSH request, or not yet acknowledged (XEP-0198). A stanza
    /// over the bound is refused and routed as undeliverable, and the session is closed.
    pub max_session_output_bytes: usize,
    /// A client that takes nothing written to it for this long is closed.
    pub write_timeout_secs: u64,
    /// Contacts in one account's roster; adding one more is refused.
    pub max_roster_items: usize,
    /// Subscription requests waiting for one account's answer; further requests from new
    /// contacts are refused without being stored.
    pub max_pending_subscriptions: usize,
    /// Accounts whose blocklist and archive preference each stay in memory, and the bytes
    /// each such cache may hold; the least recently used go first.
    pub account_cache_entries: usize,
    pub account_cache_bytes: usize,
    /// Verified XEP-0115 capabilities (client versions) kept in memory, and their bytes;
    /// the least recently used go first.
    pub caps_cache_entries: usize,
    pub caps_cache_bytes: usize,
}

impl LimitsConfig {
    pub fn account_cache(&self) -> crate::cache::Bounds {
        crate::cache::Bounds { entries: self.account_cache_entries, bytes: self.account_cache_bytes }
    }

    pub fn caps_cache(&self) -> crate::cache::Bounds {
        crate::cache::Bounds { entries: self.caps_cache_entries, bytes: self.caps_cache_bytes }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// PBKDF2 rounds for new SCRAM credentials.
    pub scram_iterations: u32,
    /// Offer SASL PLAIN (always over TLS only).
    pub allow_plain: bool,
    /// Failed logins allowed from one address to one account within
    /// `throttle_window_secs` (an IPv6 /64 counts as one address). Past it, that address
    /// may not try that account until the window passes; the account holder elsewhere
    /// is not affected.
    pub max_failures: u32,
    /// Failed logins allowed from one address (or IPv6 /64) to any accounts within the
    /// window: the limit on guessing many accounts.
    pub max_failures_per_address: u32,
    pub throttle_window_secs: u64,
    /// How long a FAST token (XEP-0484) signs its device in; 0 turns FAST off. A token is
    /// replaced at each use, so this is how long a device may stay away.
    pub fast_token_lifetime_secs: u64,
    /// FAST tokens one account may hold (one per device, ~200 bytes each): a new device
    /// beyond this replaces the token that expires first.
    pub max_fast_tokens_per_account: usize,
    /// The longest SASL2 `<user-agent id>` (XEP-0388) accepted: the device's stable id,
    /// which FAST tokens and the Bind2 resource are derived from.
    pub max_user_agent_id_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domains: vec!["localhost".to_owned()],
            data_dir: PathBuf::from("data"),
            storage: None,
            control_socket: None,
            allow_registration: false,
            admins: Vec::new(),
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            listen: Listen::default(),
            tls: BTreeMap::new(),
            limits: LimitsConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            s2s: S2sConfig::default(),
            muc: MucConfig::default(),
            upload: UploadConfig::default(),
            pep: PepConfig::default(),
            contact: ContactConfig::default(),
            external_services: ExternalServicesConfig::default(),
            components: ComponentsConfig::default(),
            push: PushConfig::default(),
            metrics: MetricsConfig::default(),
            cluster: None,
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        let both = |port: u16| vec![SocketAddr::from(([0, 0, 0, 0], port)), SocketAddr::from(([0u16; 8], port))];
        Listen { c2s: both(5222), c2s_direct_tls: both(5223) }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        let both = |port: u16| vec![SocketAddr::from(([0, 0, 0, 0], port)), SocketAddr::from(([0u16; 8], port))];
        HttpConfig {
            listen: both(5280),
            listen_tls: both(5443),
            public_url: None,
            allowed_origins: Vec::new(),
            embed_origins: Vec::new(),
            hsts_max_age_secs: 31_536_000,
            trusted_proxies: vec![std::net::IpAddr::from([127, 0, 0, 1]), std::net::IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1])],
            web_root: None,
            bosh_inactivity_secs: 60,
            allow_unencrypted_auth: false,
            bosh_sessions_per_ip_per_minute: 30,
            header_timeout_secs: 10,
            body_timeout_secs: 10,
        }
    }
}

impl Default for S2sConfig {
    fn default() -> Self {
        let both = |port: u16| vec![SocketAddr::from(([0, 0, 0, 0], port)), SocketAddr::from(([0u16; 8], port))];
        S2sConfig {
            enabled: true,
            listen: both(5269),
            listen_direct_tls: Vec::new(),
            require_encryption: true,
            trust_store: None,
            connect_timeout_secs: 20,
            idle_timeout_secs: 600,
            max_inbound_connections: 1000,
            max_inbound_connections_per_ip: 50,
            max_outbound_connections: 1000,
            max_queue: 1000,
            max_inbound_bytes_per_sec: 250_000,
            allow: Vec::new(),
            deny: Vec::new(),
            dialback_secret: None,
            peers: BTreeMap::new(),
        }
    }
}

impl Default for MucConfig {
    fn default() -> Self {
        MucConfig {
            enabled: true,
            subdomain: "conference".to_owned(),
            max_rooms: 10_000,
            max_occupants: 1000,
            max_rooms_per_user: 100,
            max_messages_per_sec: 10,
            max_text_bytes: 4096,
            tombstone_days: 30,
        }
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            enabled: true,
            subdomain: "upload".to_owned(),
            max_file_bytes: 100 << 20,
            quota_bytes_per_day: 1 << 30,
            quota_bytes: 5 << 30,
            slots_per_minute: 30,
            max_files: 1000,
            slot_lifetime_secs: 300,
            expire_after_secs: 30 * 86_400,
            allowed_types: Vec::new(),
        }
    }
}

impl Default for PepConfig {
    fn default() -> Self {
        PepConfig { max_nodes: 256, max_items: 1000, max_item_bytes: 128 * 1024 }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        LimitsConfig {
            max_stanza_bytes: l.max_stanza_bytes,
            max_depth: l.max_depth,
            max_attributes: l.max_attrs,
            negotiation_timeout_secs: 60,
            offline_quota: 1000,
            offline_quota_bytes: 2 * 1024 * 1024,
            max_resources: 20,
            resume_window_secs: 300,
            // A year: the web client keeps no history of its own and shows what the
            // archive holds, so Prosody's week would empty conversations people scroll
            // back through; a year still bounds the archive by a year of traffic.
            archive_retention_days: 365,
            archive_quota: 0,
            archive_default: ArchiveDefault::Always,
            max_connections: 20_000,
            max_connections_per_ip: 100,
            max_unauthenticated: 2_000,
            max_unauthenticated_per_ip: 20,
            max_session_output_bytes: 2 * 1024 * 1024,
            write_timeout_secs: 30,
            max_roster_items: 1000,
            max_pending_subscriptions: 100,
            account_cache_entries: 10_000,
            account_cache_bytes: 16 * 1024 * 1024,
            caps_cache_entries: 1000,
            caps_cache_bytes: 8 * 1024 * 1024,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            scram_iterations: 4096,
            allow_plain: true,
            max_failures: 5,
            max_failures_per_address: 20,
            throttle_window_secs: 60,
            fast_token_lifetime_secs: 14 * 86_400,
            max_fast_tokens_per_account: 32,
            max_user_agent_id_bytes: 128,
        }
    }
}

impl Config {
    /// Loads and validates `path`; `None` means built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
                Self::parse(&text).map_err(|e| match e {
                    ConfigError::Parse { source, .. } => ConfigError::Parse { path: path.into(), source },
                    other => other,
                })?
            }
            None => Config::default(),
        };
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|source| ConfigError::Parse { path: PathBuf::new(), source })?;
        config.validate()?;
        Ok(config)
    }

    /// Normalizes the domains and checks every value that could make the server misbehave.
    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.domains.is_empty() {
            return Err(invalid("domains", "at least one domain must be served"));
        }
        for d in &mut self.domains {
            let bare = jid::BareJid::new(d).map_err(|e| invalid("domains", format!("{d:?} is not a valid domain: {e}")))?;
            if bare.node().is_some() {
                return Err(invalid("domains", format!("{d:?} is a JID, not a domain")));
            }
            *d = bare.domain().to_string();
        }
        // Certificates are looked up by the normalized domain, so the table's keys are
        // normalized the same way (`[tls."Example.ORG"]` serves example.org).
        let mut tls = BTreeMap::new();
        for (domain, paths) in std::mem::take(&mut self.tls) {
            let key = format!("tls.\"{domain}\"");
            let Some(served) = self.served_domain(&domain).map(str::to_owned) else {
                return Err(invalid(&key, "not one of the served domains"));
            };
            if tls.insert(served, paths).is_some() {
                return Err(invalid(&key, "another [tls] table names the same domain"));
            }
        }
        self.tls = tls;
        // Compared with the requester's normalized bare JID.
        for admin in &mut self.admins {
            let bare = jid::BareJid::new(admin).map_err(|e| invalid("admins", format!("{admin:?} is not a valid JID: {e}")))?;
            if bare.node().is_none() {
                return Err(invalid("admins", format!("{admin:?} is a domain, not an account")));
            }
            *admin = bare.to_string();
        }
        if let Some(url) = &self.storage {
            if !url.starts_with("sqlite://") && !jabberwock_storage::is_postgres_url(url) {
                return Err(invalid("storage", format!("{url:?}: only sqlite:// and postgres:// URLs are supported")));
            }
        }
        if let Some(c) = &self.cluster {
            c.validate(self.storage.as_deref())?;
        }
        // A short token is guessed; and an empty one would let an empty header through.
        if self.metrics.bearer_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(invalid("metrics.bearer_token", "must be at least 16 characters"));
        }
        let l = &self.limits;
        if l.max_stanza_bytes < 10_000 {
            return Err(invalid("limits.max_stanza_bytes", "must be at least 10000 (RFC 6120 §13.12)"));
        }
        if l.max_depth < 8 {
            return Err(invalid("limits.max_depth", "must be at least 8"));
        }
        if l.max_attributes < 8 {
            return Err(invalid("limits.max_attributes", "must be at least 8"));
        }
        if l.negotiation_timeout_secs == 0 {
            return Err(invalid("limits.negotiation_timeout_secs", "must be positive"));
        }
        if !(1..=86_400).contains(&l.resume_window_secs) {
            return Err(invalid("limits.resume_window_secs", "must be between 1 and 86400"));
        }
        // Room for a stanza of the largest size and what the server wraps around one
        // (a carbon copy, an archive result), or sessions would refuse them when idle.
        if l.max_session_output_bytes < 2 * l.max_stanza_bytes {
            return Err(invalid("limits.max_session_output_bytes", "must be at least twice limits.max_stanza_bytes"));
        }
        if !(1..=3600).contains(&l.write_timeout_secs) {
            return Err(invalid("limits.write_timeout_secs", "must be between 1 and 3600"));
        }
        if l.max_resources == 0 {
            return Err(invalid("limits.max_resources", "must be positive"));
        }
        for (key, value) in [
            ("limits.max_connections", l.max_connections),
            ("limits.max_connections_per_ip", l.max_connections_per_ip),
            ("limits.max_unauthenticated", l.max_unauthenticated),
            ("limits.max_unauthenticated_per_ip", l.max_unauthenticated_per_ip),
            ("limits.max_roster_items", l.max_roster_items),
            ("limits.max_pending_subscriptions", l.max_pending_subscriptions),
            ("limits.account_cache_entries", l.account_cache_entries),
            ("limits.account_cache_bytes", l.account_cache_bytes),
            ("limits.caps_cache_entries", l.caps_cache_entries),
            ("limits.caps_cache_bytes", l.caps_cache_bytes),
            ("pep.max_nodes", self.pep.max_nodes),
            ("pep.max_items", self.pep.max_items as usize),
            ("pep.max_item_bytes", self.pep.max_item_bytes),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        if l.max_unauthenticated > l.max_connections || l.max_unauthenticated_per_ip > l.max_connections_per_ip {
            return Err(invalid("limits.max_unauthenticated", "must not exceed the matching max_connections limit"));
        }
        if self.auth.scram_iterations < 4096 {
            return Err(invalid("auth.scram_iterations", "must be at least 4096 (RFC 7677)"));
        }
        if let Some(url) = &self.http.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid("http.public_url", format!("{url:?} must start with http:// or https://")));
            }
        }
        for origin in &self.http.embed_origins {
            let host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            let valid = origin == "*"
                || host.is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]*".contains(&b)));
            if !valid {
                return Err(invalid("http.embed_origins", format!("{origin:?} must be * or an origin like https://example.org")));
            }
        }
        if !(1..=3600).contains(&self.http.bosh_inactivity_secs) {
            return Err(invalid("http.bosh_inactivity_secs", "must be between 1 and 3600"));
        }
        if self.http.bosh_sessions_per_ip_per_minute == 0 {
            return Err(invalid("http.bosh_sessions_per_ip_per_minute", "must be positive"));
        }
        for (key, value) in [("http.header_timeout_secs", self.http.header_timeout_secs), ("http.body_timeout_secs", self.http.body_timeout_secs)] {
            if !(1..=300).contains(&value) {
                return Err(invalid(key, "must be between 1 and 300"));
            }
        }
        let s2s = &mut self.s2s;
        for list in [&mut s2s.allow, &mut s2s.deny] {
            for d in list.iter_mut() {
                *d = d.to_ascii_lowercase();
            }
        }
        s2s.peers = std::mem::take(&mut s2s.peers).into_iter().map(|(d, p)| (d.to_ascii_lowercase(), p)).collect();
        for (domain, peer) in &s2s.peers {
            if let Some(addr) = &peer.connect {
                if addr.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()).is_none() {
                    return Err(invalid(&format!("s2s.peers.\"{domain}\".connect"), format!("{addr:?} is not host:port")));
                }
            }
        }
        if s2s.connect_timeout_secs == 0 || s2s.idle_timeout_secs == 0 {
            return Err(invalid("s2s", "connect_timeout_secs and idle_timeout_secs must be positive"));
        }
        if s2s.max_inbound_connections == 0 || s2s.max_inbound_connections_per_ip == 0 || s2s.max_outbound_connections == 0 || s2s.max_queue == 0 {
            return Err(invalid("s2s", "max_inbound_connections, max_inbound_connections_per_ip, max_outbound_connections and max_queue must be positive"));
        }
        for (field, uris) in self.contact.fields() {
            for uri in uris {
                let scheme = uri.split_once(':').map(|(s, _)| s).unwrap_or_default();
                if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
                    let key = format!("contact.{}", field.trim_end_matches("-addresses"));
                    return Err(invalid(&key, format!("{uri:?} is not a URI such as xmpp:admin@example.org or mailto:abuse@example.org")));
                }
            }
        }
        let muc = &self.muc;
        if jid::DomainPart::new(&format!("{}.{}", muc.subdomain, self.domains[0])).is_err() || muc.subdomain.contains('.') {
            return Err(invalid("muc.subdomain", format!("{:?} must be one DNS label, such as \"conference\"", muc.subdomain)));
        }
        if muc.max_rooms == 0 || muc.max_occupants == 0 || muc.max_rooms_per_user == 0 || muc.max_messages_per_sec == 0 {
            return Err(invalid("muc", "max_rooms, max_occupants, max_rooms_per_user and max_messages_per_sec must be positive"));
        }
        for (domain, component) in &self.components.domains {
            if jid::DomainPart::new(domain).map(|d| d.as_str() != domain).unwrap_or(true) {
                return Err(invalid("components.domains", format!("{domain:?} is not a normalized domain")));
            }
            let taken = self.served_domain(domain).is_some()
                || (self.muc.enabled && self.domains.iter().any(|d| *domain == format!("{}.{d}", self.muc.subdomain)))
                || (self.upload.enabled && self.domains.iter().any(|d| *domain == format!("{}.{d}", self.upload.subdomain)));
            if taken {
                return Err(invalid("components.domains", format!("{domain} is already served by this server")));
            }
            if component.secret.is_empty() {
                return Err(invalid("components.domains", format!("{domain} needs a secret")));
            }
        }
        if self.components.max_queue_bytes < self.limits.max_stanza_bytes {
            return Err(invalid("components.max_queue_bytes", "must hold at least one stanza of limits.max_stanza_bytes"));
        }
        if self.push.max_registrations == 0 {
            return Err(invalid("push.max_registrations", "must be positive"));
        }
        let ext = &self.external_services;
        for service in &ext.services {
            if !matches!(service.kind.as_str(), "stun" | "stuns" | "turn" | "turns") {
                return Err(invalid("external_services.service.type", format!("{:?} must be stun, stuns, turn or turns", service.kind)));
            }
            if !matches!(service.transport.as_deref(), None | Some("udp" | "tcp")) {
                return Err(invalid("external_services.service.transport", "must be udp or tcp"));
            }
            if service.host.is_empty() || service.port == 0 {
                return Err(invalid("external_services.service", "host and port are required"));
            }
        }
        if ext.credential_ttl_secs == 0 {
            return Err(invalid("external_services.credential_ttl_secs", "must be positive"));
        }
        if muc.max_text_bytes < 100 {
            return Err(invalid("muc.max_text_bytes", "must be at least 100"));
        }
        let upload = &self.upload;
        if jid::DomainPart::new(&format!("{}.{}", upload.subdomain, self.domains[0])).is_err() || upload.subdomain.contains('.') {
            return Err(invalid("upload.subdomain", format!("{:?} must be one DNS label, such as \"upload\"", upload.subdomain)));
        }
        if upload.enabled && upload.subdomain == muc.subdomain && muc.enabled {
            return Err(invalid("upload.subdomain", "must differ from muc.subdomain"));
        }
        if upload.max_file_bytes == 0 || upload.slots_per_minute == 0 || upload.slot_lifetime_secs == 0 || upload.max_files == 0 {
            return Err(invalid("upload", "max_file_bytes, slots_per_minute, slot_lifetime_secs and max_files must be positive"));
        }
        if upload.quota_bytes_per_day < upload.max_file_bytes || upload.quota_bytes < upload.max_file_bytes {
            return Err(invalid("upload", "quota_bytes_per_day and quota_bytes must allow at least one file of max_file_bytes"));
        }
        if !(16..=1024).contains(&self.auth.max_user_agent_id_bytes) {
            return Err(invalid("auth.max_user_agent_id_bytes", "must be between 16 and 1024"));
        }
        if self.auth.max_fast_tokens_per_account == 0 {
            return Err(invalid("auth.max_fast_tokens_per_account", "must be at least 1 (fast_token_lifetime_secs = 0 turns FAST off)"));
        }
        if self.auth.fast_token_lifetime_secs > 366 * 86_400 {
            return Err(invalid("auth.fast_token_lifetime_secs", "must be at most a year (31622400); 0 turns FAST off"));
        }
        if self.auth.max_failures == 0 || self.auth.max_failures_per_address == 0 {
            return Err(invalid("auth.max_failures", "max_failures and max_failures_per_address must be positive"));
        }
        Ok(())
    }

    pub fn control_socket_path(&self) -> PathBuf {
        self.control_socket.clone().unwrap_or_else(|| self.data_dir.join("control.sock"))
    }

    /// The storage engine, for status output (the URL may hold a password).
    pub fn storage_kind(&self) -> String {
        self.storage_url().split("://").next().unwrap_or_default().to_owned()
    }

    pub fn storage_url(&self) -> String {
        self.storage.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("jabberwock.db").display()))
    }

    pub fn stream_limits(&self) -> Limits {
        Limits {
            max_stanza_bytes: self.limits.max_stanza_bytes,
            max_depth: self.limits.max_depth,
            max_attrs: self.limits.max_attributes,
        }
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.http.header_timeout_secs)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.write_timeout_secs)
    }

    pub fn negotiation_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.negotiation_timeout_secs)
    }

    /// The served domain equal to `name` (domains compare case-insensitively).
    pub fn served_domain(&self, name: &str) -> Option<&str> {
        self.domains.iter().find(|d| d.eq_ignore_ascii_case(name)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.domains, ["localhost"]);
        assert_eq!(c.listen.c2s.len(), 2);
        assert_eq!(c.storage_url(), "sqlite://data/jabberwock.db");
    }

    #[test]
    fn storage_takes_sqlite_and_postgres_urls() {
        for url in ["sqlite:///var/lib/j.db", "postgres://jabberwock@db.example/jabberwock", "postgresql://db.example/j"] {
            let c = Config::parse(&format!("storage = {url:?}")).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(c.storage_url(), url);
        }
        let e = Config::parse("storage = 'mysql://db.example/j'").unwrap_err();
        assert!(e.to_string().starts_with("storage:"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::parse("[limits]\nmax_stanza_bytes = 10").unwrap_err();
        assert!(e.to_string().starts_with("limits.max_stanza_bytes:"), "{e}");
        let e = Config::parse("domains = []").unwrap_err();
        assert!(e.to_string().starts_with("domains:"), "{e}");
        let e = Config::parse("bogus = 1").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = Config::parse("domains = ['a.example']\n[tls.'b.example']\ncert='x'\nkey='y'").unwrap_err();
        assert!(e.to_string().contains("not one of the served domains"), "{e}");
    }

    #[test]
    fn a_cluster_needs_postgres_and_every_key_checked() {
        let table = "[cluster]\nnode = 'n1'\nredis = 'redis://127.0.0.1:6379/'\naddress = '10.0.0.1:5222'\n";
        let c = Config::parse(&format!("storage = 'postgres://db.example/j'\n{table}")).unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!((cluster.lease_ms, cluster.max_forward_bytes), (10_000, 8 * 1024 * 1024), "defaults");
        let e = Config::parse(table).unwrap_err();
        assert!(e.to_string().starts_with("storage:") && e.to_string().contains("postgres://"), "SQLite is one node's file: {e}");
        for (change, key) in [
            ("node = 'n 1'", "cluster.node:"),
            ("redis = 'http://x'", "cluster.redis:"),
            ("address = ''", "cluster.address:"),
            ("lease_ms = 10", "cluster.lease_ms:"),
            ("max_forward_bytes = 10", "cluster.max_forward_bytes:"),
            ("location = 'a b'", "cluster.location:"),
        ] {
            let name = change.split(' ').next().unwrap();
            let text: String = table.lines().filter(|l| !l.starts_with(name)).map(|l| format!("{l}\n")).collect();
            let e = Config::parse(&format!("storage = 'postgres://db.example/j'\n{text}{change}\n")).unwrap_err();
            assert!(e.to_string().starts_with(key), "{change}: {e}");
        }
    }

    #[test]
    fn example_file_is_valid() {
        let text = include_str!("../../../jabberwock.example.toml");
        let c = Config::parse(text).unwrap();
        let d = Config::default();
        assert_eq!(c.domains, d.domains);
        assert_eq!(c.listen.c2s, d.listen.c2s);
        assert_eq!(c.limits.max_stanza_bytes, d.limits.max_stanza_bytes);
        assert_eq!(c.limits.max_unauthenticated_per_ip, d.limits.max_unauthenticated_per_ip);
        assert_eq!(c.limits.max_session_output_bytes, d.limits.max_session_output_bytes);
        assert_eq!(c.limits.write_timeout_secs, d.limits.write_timeout_secs);
        assert_eq!(c.limits.offline_quota_bytes, d.limits.offline_quota_bytes);
        assert_eq!(c.limits.archive_retention_days, d.limits.archive_retention_days);
        assert_eq!(c.http.header_timeout_secs, d.http.header_timeout_secs);
        assert_eq!(c.s2s.max_inbound_connections_per_ip, d.s2s.max_inbound_connections_per_ip);
        assert_eq!(c.limits.max_roster_items, d.limits.max_roster_items);
        assert_eq!(c.limits.max_pending_subscriptions, d.limits.max_pending_subscriptions);
        assert_eq!(c.limits.account_cache_bytes, d.limits.account_cache_bytes);
        assert_eq!(c.limits.caps_cache_bytes, d.limits.caps_cache_bytes);
        assert_eq!(c.pep.max_item_bytes, d.pep.max_item_bytes);
        assert_eq!(c.pep.max_nodes, d.pep.max_nodes);
    }

    #[test]
    fn quotas_and_cache_bounds_are_checked() {
        for key in ["limits.max_roster_items", "limits.max_pending_subscriptions", "limits.account_cache_entries", "limits.account_cache_bytes", "limits.caps_cache_entries", "limits.caps_cache_bytes", "pep.max_nodes", "pep.max_items", "pep.max_item_bytes"] {
            let (table, name) = key.split_once('.').unwrap();
            let e = Config::parse(&format!("[{table}]\n{name} = 0")).unwrap_err();
            assert!(e.to_string().starts_with(&format!("{key}:")), "{key}: {e}");
        }
    }

    #[test]
    fn connection_limits_are_checked() {
        for (text, key) in [
            ("[limits]\nmax_connections_per_ip = 0", "limits.max_connections_per_ip:"),
            ("[limits]\nmax_connections = 10\nmax_unauthenticated = 11", "limits.max_unauthenticated:"),
            ("[http]\nheader_timeout_secs = 0", "http.header_timeout_secs:"),
            ("[limits]\nmax_session_output_bytes = 300000", "limits.max_session_output_bytes:"),
            ("[limits]\nwrite_timeout_secs = 0", "limits.write_timeout_secs:"),
            ("[http]\nbosh_sessions_per_ip_per_minute = 0", "http.bosh_sessions_per_ip_per_minute:"),
            ("[s2s]\nmax_outbound_connections = 0", "s2s:"),
            ("[auth]\nmax_user_agent_id_bytes = 100000", "auth.max_user_agent_id_bytes:"),
            ("[auth]\nfast_token_lifetime_secs = 18446744073709551615", "auth.fast_token_lifetime_secs:"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.to_string().starts_with(key), "{text}: {e}");
        }
    }

    #[test]
    fn archive_default_is_one_of_the_xeps_three() {
        assert_eq!(Config::default().limits.archive_default, ArchiveDefault::Always);
        let c = Config::parse("[limits]\narchive_default = 'never'").unwrap();
        assert_eq!(c.limits.archive_default, ArchiveDefault::Never);
        let e = Config::parse("[limits]\narchive_default = 'sometimes'").unwrap_err();
        assert!(e.to_string().contains("archive_default") && e.to_string().contains("roster"), "{e}");
    }

    #[test]
    fn archive_retention_is_days_or_never() {
        assert_eq!(Config::default().limits.archive_retention_days, 365);
        for (text, days) in [("30", 30), ("0", 0), ("'never'", 0)] {
            let c = Config::parse(&format!("[limits]\narchive_retention_days = {text}")).unwrap();
            assert_eq!(c.limits.archive_retention_days, days, "{text}");
        }
        let e = Config::parse("[limits]\narchive_retention_days = 'sometimes'").unwrap_err();
        assert!(e.to_string().contains("archive_retention_days"), "{e}");
    }

    #[test]
    fn embed_origins_are_origins() {
        let c = Config::parse("[http]\nembed_origins = ['https://shop.example.org', 'http://localhost:8080', '*']").unwrap();
        assert_eq!(c.http.embed_origins.len(), 3);
        for bad in ["shop.example.org", "https://a.example/path", "https://a.example; script-src *", "'self'"] {
            let e = Config::parse(&format!("[http]\nembed_origins = [\"{bad}\"]")).unwrap_err();
            assert!(e.to_string().starts_with("http.embed_origins:"), "{bad}: {e}");
        }
    }

    #[test]
    fn contact_addresses_are_uris() {
        let c = Config::parse("[contact]\nadmin = ['xmpp:admin@example.org']\nsupport = ['https://example.org/help']").unwrap();
        assert_eq!(c.contact.admin, ["xmpp:admin@example.org"]);
        let e = Config::parse("[contact]\nabuse = ['abuse@example.org']").unwrap_err();
        assert!(e.to_string().starts_with("contact.abuse:"), "{e}");
    }

    #[test]
    fn domains_are_normalized() {
        let c = Config::parse("domains = ['Example.ORG']").unwrap();
        assert_eq!(c.domains, ["example.org"]);
        assert_eq!(c.served_domain("EXAMPLE.org"), Some("example.org"));
        let c = Config::parse("domains = ['example.org']\n[tls.'Example.ORG']\ncert='c'\nkey='k'").unwrap();
        assert_eq!(c.tls.keys().collect::<Vec<_>>(), ["example.org"]);
        let e = Config::parse("domains = ['example.org']\n[tls.'Example.ORG']\ncert='c'\nkey='k'\n[tls.'example.org']\ncert='c'\nkey='k'")
            .unwrap_err();
        assert!(e.to_string().contains("same domain"), "{e}");
    }
}
