//! Federation: server-to-server streams (RFC 6120) on 5269, authenticated with SASL
//! EXTERNAL when the peer's certificate is valid for its domain and with Server Dialback
//! (XEP-0220) otherwise.
//!
//! A stanza for a remote domain goes to [`send`], which hands it to the one outbound
//! connection for its (local domain, remote domain) pair, starting that connection when
//! there is none. The connection queues stanzas while it connects and authenticates, and
//! bounces them to their local senders if it cannot. Inbound connections
//! ([`inbound`]) check every stanza's `from` against what the peer proved and hand the
//! stanza to the same routing as local traffic.

pub mod inbound;
mod outbound;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use jabberwock_proto::{Stanza, StanzaError, StreamError, StreamErrorCondition};
use jid::Jid;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use crate::admission::Limiter;
use crate::config::{PeerConfig, S2sConfig};
use crate::server::Server;

/// A byte stream carrying a server stream: plain TCP, then TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub(crate) type BoxIo = Box<dyn Io>;

/// One direction of federation: from one of our domains to one remote domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pair {
    pub local: String,
    pub remote: String,
}

/// What an outbound connection carries.
enum Outgoing {
    Stanza(Stanza),
    /// A dialback key to check with the peer, which is the authoritative server for the
    /// key's originating domain (XEP-0220 §2.3).
    Verify { stream_id: String, key: String },
}

struct Outbound {
    /// Tells this connection apart from a later one for the same pair.
    serial: u64,
    tx: mpsc::Sender<Outgoing>,
}

/// Connection attempts to a domain that keep failing are spaced out.
struct Backoff {
    failures: u32,
    retry_at: Instant,
}

const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Waiting dialback verifications, by (pair, the peer's stream id).
type VerifyWaiters = HashMap<(Pair, String), oneshot::Sender<bool>>;

pub struct S2s {
    pub trust: tls::PeerTrust,
    /// SHA-256 of the dialback secret: the HMAC key of every dialback key we issue.
    dialback_key: [u8; 32],
    outbound: Mutex<HashMap<Pair, Outbound>>,
    backoff: Mutex<HashMap<String, Backoff>>,
    verifies: Mutex<VerifyWaiters>,
    /// Server connections: inbound ones in total and per address, outbound in total.
    inbound_slots: Arc<Limiter>,
    outbound_slots: Arc<Limiter>,
    next_serial: AtomicU64,
    /// SRV lookups; `None` when the system has no usable resolver configuration.
    resolver: Option<hickory_resolver::TokioResolver>,
}

impl S2s {
    /// `shared_secret` is the cluster's dialback secret, used when none is configured.
    pub fn new(config: &S2sConfig, shared_secret: Option<Vec<u8>>, metrics: &crate::metrics::Metrics) -> Result<S2s, String> {
        use crate::metrics::{Direction, Limit};
        let secret = match (&config.dialback_secret, shared_secret) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(shared)) => shared,
            (None, None) => rand::random::<[u8; 32]>().to_vec(),
        };
        let resolver = match hickory_resolver::TokioResolver::builder_tokio() {
            Ok(builder) => Some(builder.build()),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS configuration: SRV records will not be used");
                None
            }
        };
        Ok(S2s {
            trust: tls::PeerTrust::load(config)?,
            dialback_key: Sha256::digest(&secret).into(),
            outbound: Mutex::default(),
            backoff: Mutex::default(),
            verifies: Mutex::default(),
            inbound_slots: Limiter::new(
                config.max_inbound_connections,
                config.max_inbound_connections_per_ip,
                metrics.limiter(Limit::S2sInbound, Limit::S2sInboundPerAddress, Some(Direction::Inbound)),
            ),
            // Outbound connections are not counted per address: the per-address limit is never hit.
            outbound_slots: Limiter::new(
                config.max_outbound_connections,
                usize::MAX,
                metrics.limiter(Limit::S2sOutbound, Limit::S2sOutbound, Some(Direction::Outbound)),
            ),
            next_serial: AtomicU64::new(1),
            resolver,
        })
    }

    /// XEP-0220 §2.4: HMAC-SHA256(SHA256(secret), receiving ' ' originating ' ' stream id).
    fn key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.dialback_key).expect("HMAC takes any key length");
        mac.update(format!("{receiving} {originating} {stream_id}").as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// As the authoritative server: whether `key` is the one we issued.
    fn key_is_valid(&self, receiving: &str, originating: &str, stream_id: &str, key: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.key(receiving, originating, stream_id).as_bytes().ct_eq(key.trim().as_bytes()).into()
    }

    fn in_backoff(&self, remote: &str) -> bool {
        self.backoff.lock().expect("not poisoned").get(remote).is_some_and(|b| Instant::now() < b.retry_at)
    }

    /// `remote` is reachable again (we reached it, or it reached us): no more waiting.
    fn connected(&self, remote: &str) {
        self.backoff.lock().expect("not poisoned").remove(remote);
    }

    fn failed(&self, remote: &str) {
        let mut backoff = self.backoff.lock().expect("not poisoned");
        let b = backoff.entry(remote.to_owned()).or_insert(Backoff { failures: 0, retry_at: Instant::now() });
        b.failures += 1;
        let delay = Duration::from_secs(1 << (b.failures - 1).min(6)).min(MAX_BACKOFF);
        b.retry_at = Instant::now() + delay;
    }

    /// The connection numbered `serial` for `pair` has ended: later stanzas need a new one,
    /// and verifications it was carrying fail.
    fn outbound_ended(&self, pair: &Pair, serial: u64) {
        let mut map = self.outbound.lock().expect("not poisoned");
        if map.get(pair).is_some_and(|o| o.serial == serial) {
            map.remove(pair);
        }
        drop(map);
        self.verifies.lock().expect("not poisoned").retain(|(p, _), _| p != pair);
    }

    fn verify_answered(&self, pair: &Pair, stream_id: &str, valid: bool) {
        let waiter = self.verifies.lock().expect("not poisoned").remove(&(pair.clone(), stream_id.to_owned()));
        if let Some(tx) = waiter {
            let _ = tx.send(valid);
        }
    }
}

fn peer_config<'a>(config: &'a S2sConfig, remote: &str) -> std::borrow::Cow<'a, PeerConfig> {
    match config.peers.get(remote) {
        Some(p) => std::borrow::Cow::Borrowed(p),
        None => std::borrow::Cow::Owned(PeerConfig::default()),
    }
}

/// Whether policy lets us federate with `domain`.
pub fn allowed(config: &S2sConfig, domain: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    config.enabled && !config.deny.contains(&domain) && (config.allow.is_empty() || config.allow.contains(&domain))
}

/// Sends a stanza from a local entity to a remote domain. Returns the error reply for the
/// sender when the stanza cannot even be queued; later failures bounce it to its sender.
pub fn send(server: &Arc<Server>, st: Stanza) -> Vec<Stanza> {
    let reject = |st: &Stanza, e: StanzaError| crate::stanzas::bounce_reply(st, e);
    let (Some(Ok(from)), Some(Ok(to))) = (st.from().map(Jid::new), st.to().map(Jid::new)) else {
        return reject(&st, StanzaError::jid_malformed());
    };
    let pair = Pair { local: from.domain().as_str().to_owned(), remote: to.domain().as_str().to_owned() };
    if !crate::routing::is_local_domain(server, &pair.local) {
        // Only our own entities' stanzas leave for other servers: no relaying.
        return reject(&st, StanzaError::not_allowed());
    }
    if !allowed(&server.config.s2s, &pair.remote) {
        let why = if server.config.s2s.enabled { "federation with this domain is not allowed" } else { "this server does not federate with other servers" };
        return reject(&st, StanzaError::remote_server_not_found().with_text(why));
    }
    let no_connection = !server.s2s.outbound.lock().expect("not poisoned").contains_key(&pair);
    if no_connection && server.s2s.in_backoff(&pair.remote) {
        return reject(&st, StanzaError::remote_server_not_found().with_text("the server is unreachable; retrying later"));
    }
    match enqueue(server, &pair, Outgoing::Stanza(st)) {
        Ok(()) => Vec::new(),
        Err(Outgoing::Stanza(st)) => {
            reject(&st, StanzaError::resource_constraint().with_text("too many stanzas waiting for this server"))
        }
        Err(Outgoing::Verify { .. }) => unreachable!("enqueue returns what it was given"),
    }
}

/// Queues `item` on the pair's connection, starting one if there is none (or the last
/// one just ended). Gives the item back when the connection's queue is full.
fn enqueue(server: &Arc<Server>, pair: &Pair, item: Outgoing) -> Result<(), Outgoing> {
    let mut map = server.s2s.outbound.lock().expect("not poisoned");
    let item = match map.get(pair) {
        None => item,
        Some(o) => match o.tx.try_send(item) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(item)) => return Err(item),
            Err(mpsc::error::TrySendError::Closed(item)) => item,
        },
    };
    let (tx, rx) = mpsc::channel(server.config.s2s.max_queue);
    let serial = server.s2s.next_serial.fetch_add(1, Ordering::Relaxed);
    tx.try_send(item).map_err(|e| e.into_inner())?;
    map.insert(pair.clone(), Outbound { serial, tx });
    tokio::spawn(outbound::run(server.clone(), pair.clone(), serial, rx));
    Ok(())
}

/// As the receiving server: asks the authoritative server for `pair.remote` whether `key`,
/// offered on our stream `stream_id`, is genuine (XEP-0220 §2.3).
async fn verify_with_authority(server: &Arc<Server>, pair: Pair, stream_id: String, key: String) -> bool {
    let (tx, rx) = oneshot::channel();
    server.s2s.verifies.lock().expect("not poisoned").insert((pair.clone(), stream_id.clone()), tx);
    let queued = enqueue(server, &pair, Outgoing::Verify { stream_id: stream_id.clone(), key }).is_ok();
    let timeout = Duration::from_secs(server.config.s2s.connect_timeout_secs);
    let valid = queued && matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(true)));
    server.s2s.verifies.lock().expect("not poisoned").remove(&(pair, stream_id));
    valid
}

/// Ends the registration of connection `serial` for `pair` and returns the stanzas still
/// queued on it, for the caller to send elsewhere or bounce.
fn retire(server: &Server, pair: &Pair, serial: u64, rx: &mut mpsc::Receiver<Outgoing>) -> Vec<Stanza> {
    server.s2s.outbound_ended(pair, serial);
    rx.close();
    let mut left = Vec::new();
    while let Ok(item) = rx.try_recv() {
        if let Outgoing::Stanza(st) = item {
            left.push(st);
        }
    }
    left
}

/// XEP-0288: an inbound stream from `pair.remote` that asked for bidirectionality now
/// carries our stanzas for it too, unless we already have a connection of our own.
fn adopt_inbound(server: &Arc<Server>, pair: &Pair) -> Option<(u64, mpsc::Receiver<Outgoing>)> {
    let mut map = server.s2s.outbound.lock().expect("not poisoned");
    if map.contains_key(pair) {
        return None;
    }
    let (tx, rx) = mpsc::channel(server.config.s2s.max_queue);
    let serial = server.s2s.next_serial.fetch_add(1, Ordering::Relaxed);
    map.insert(pair.clone(), Outbound { serial, tx });
    Some((serial, rx))
}

/// How a queued item goes out on a stream carrying `pair`.
fn outgoing_frame(pair: &Pair, item: Outgoing) -> crate::stream::Frame {
    match item {
        Outgoing::Stanza(st) => crate::stream::Frame::Stanza(st),
        Outgoing::Verify { stream_id, key } => crate::stream::Frame::Element(
            jabberwock_proto::Element::new("verify", jabberwock_proto::ns::DIALBACK)
                .with_attr("from", pair.local.as_str())
                .with_attr("to", pair.remote.as_str())
                .with_attr("id", stream_id)
                .with_text(key),
        ),
    }
}

/// A stanza a peer sent: its `to` must be one of our domains and its `from` in a domain
/// the peer proved for that one (`proven`); then it is routed like a local stanza.
async fn accept_from_peer(server: &Arc<Server>, mut st: Stanza, proven: impl Fn(&Pair) -> bool) -> Result<(), StreamError> {
    let (Some(Ok(from)), Some(Ok(to))) = (st.from().map(Jid::new), st.to().map(Jid::new)) else {
        return Err(StreamError::new(StreamErrorCondition::ImproperAddressing));
    };
    let Some(local) = crate::routing::local_domain(server, to.domain().as_str()) else {
        return Err(StreamError::new(StreamErrorCondition::HostUnknown));
    };
    let pair = Pair { local: local.to_owned(), remote: from.domain().as_str().to_ascii_lowercase() };
    if !proven(&pair) {
        let text = format!("{} is not authenticated on this stream", pair.remote);
        return Err(StreamError::with_text(StreamErrorCondition::InvalidFrom, text));
    }
    st.set_content_ns(jabberwock_proto::ns::CLIENT);
    crate::routing::route(server, st).await;
    Ok(())
}

/// XEP-0220 §2.3: as the authoritative server, tells the receiving server (`from`)
/// whether a key offered in the name of our domain (`to`) is one we issued.
fn answer_verify(server: &Server, request: &Stanza) -> Result<jabberwock_proto::Element, StreamError> {
    let (Some(receiving), Some(originating), Some(id)) = (request.attr("from"), request.attr("to"), request.attr("id")) else {
        return Err(StreamError::new(StreamErrorCondition::ImproperAddressing));
    };
    let Some(originating) = crate::routing::local_domain(server, originating) else {
        return Err(StreamError::new(StreamErrorCondition::HostUnknown));
    };
    let key = request.to_element().map(|e| e.text()).unwrap_or_default();
    let valid = server.s2s.key_is_valid(receiving, originating, id, &key);
    // In a cluster the key may come from another node's connection: an invalid one here
    // points at nodes that do not share the secret.
    tracing::info!(receiving, originating, valid, "answered a dialback verification request");
    Ok(jabberwock_proto::Element::new("verify", jabberwock_proto::ns::DIALBACK)
        .with_attr("from", originating)
        .with_attr("to", receiving)
        .with_attr("id", id)
        .with_attr("type", if valid { "valid" } else { "invalid" }))
}

/// Returns an undeliverable stanza to its local sender as an error; errors never bounce.
fn bounce(server: &Arc<Server>, st: Stanza, err: StanzaError) {
    if st.stanza_type() == Some("error") {
        return;
    }
    let reply = crate::stanzas::error_reply(&st, err);
    let server = server.clone();
    tokio::spawn(async move { crate::routing::route(&server, reply).await });
}
