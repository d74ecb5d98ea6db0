//! SASL negotiation (RFC 6120 §6) and the throttle on failed attempts.
//!
//! Failed logins are counted where they come from, per address (an IPv6 /64 counts as one
//! address: one subscriber usually holds a whole /64) and per address and account, never
//! per account alone: a stranger guessing a password locks out only the stranger's
//! address, and the account holder elsewhere signs in as usual. An account that does not
//! exist fails the same way, after the same work, as a wrong password for one that does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use jabberwock_proto::{ns, Element, Stanza, StreamError, StreamErrorCondition};
use jabberwock_sasl::{plain, HashAlg, Mechanism, SaslFailure, ScramServer};

use super::Session;
use crate::accounts;
use crate::metrics::Login;
use crate::stream::{Flow, Frame};

/// A connection may fail this many times before it is closed (RFC 6120 §6.4.5 asks for
/// 2 to 5 retries).
const MAX_FAILURES_PER_CONNECTION: u32 = 3;

pub(crate) struct Exchange {
    scram: ScramServer,
    /// The localpart being authenticated, once the client named it.
    user: Option<String>,
    /// When the client's `<auth/>` arrived (login duration).
    started: Instant,
}

pub(super) fn offered(s: &Session) -> Vec<Mechanism> {
    if !may_authenticate(s) {
        return Vec::new();
    }
    let kinds: Vec<_> = s.security.channel_bindings.iter().map(|b| b.kind).collect();
    Mechanism::offered(s.security.encrypted, &kinds, s.server.config.auth.allow_plain)
}

/// Over an unencrypted stream (a plain-HTTP WebSocket or BOSH session: TCP streams
/// negotiate TLS first) a SCRAM exchange or a password would cross the network in clear.
/// That is allowed from this machine (a browser on localhost, a local reverse proxy that
/// does not say it terminated TLS) or when the operator allows it for development.
fn may_authenticate(s: &Session) -> bool {
    s.security.encrypted || s.peer_ip.is_loopback() || s.server.config.http.allow_unencrypted_auth
}

pub(super) fn mechanisms_feature(s: &Session) -> Element {
    let mut el = Element::new("mechanisms", ns::SASL);
    for m in offered(s) {
        el.push(Element::new("mechanism", ns::SASL).with_text(m.name()));
    }
    el
}

/// XEP-0440: which channel-binding types the -PLUS mechanisms accept here.
pub(super) fn channel_binding_feature(s: &Session) -> Option<Element> {
    if s.security.channel_bindings.is_empty() {
        return None;
    }
    let mut el = Element::new("sasl-channel-binding", ns::SASL_CB);
    for b in &s.security.channel_bindings {
        el.push(Element::new("channel-binding", ns::SASL_CB).with_attr("type", b.kind.as_str()));
    }
    Some(el)
}

pub(super) fn failure(f: SaslFailure, text: Option<&str>) -> Element {
    let mut el = Element::new("failure", ns::SASL).with_child(Element::new(f.as_str(), ns::SASL));
    if let Some(t) = text {
        el.push(Element::new("text", ns::SASL).with_text(t));
    }
    el
}

fn decode(st: &Stanza) -> Result<Vec<u8>, SaslFailure> {
    let text = st.to_element().map_err(|_| SaslFailure::MalformedRequest)?.text();
    let text = text.trim();
    // RFC 6120 §6.4.2: "=" is an empty response, as is no text at all.
    if text.is_empty() || text == "=" {
        return Ok(Vec::new());
    }
    B64.decode(text).map_err(|_| SaslFailure::IncorrectEncoding)
}

pub(super) async fn on_sasl_element(s: &mut Session, st: Stanza, out: &mut Vec<Frame>) -> Flow {
    let mut started = Instant::now();
    let result = match st.name() {
        "auth" => start(s, &st, out, started).await,
        "response" => match s.take_sasl() {
            Some(ex) => {
                started = ex.started;
                finish_scram(s, ex, &st, out).await
            }
            None => Err(SaslFailure::MalformedRequest),
        },
        "abort" => {
            s.take_sasl();
            Err(SaslFailure::Aborted)
        }
        _ => return s.fail(StreamError::new(StreamErrorCondition::UnsupportedStanzaType), out),
    };
    // A challenge sent is no outcome yet; success restarts the stream.
    let outcome = match &result {
        Ok(Flow::Restart) => Some(Login::Ok),
        Ok(_) | Err(SaslFailure::Aborted) => None,
        Err(SaslFailure::TemporaryAuthFailure) => Some(Login::Throttled),
        Err(_) => Some(Login::Failed),
    };
    if let Some(outcome) = outcome {
        s.server.metrics.login(outcome, started.elapsed());
    }
    match result {
        Ok(flow) => flow,
        Err(f) => fail_attempt(s, f, out),
    }
}

async fn start(s: &mut Session, st: &Stanza, out: &mut Vec<Frame>, started: Instant) -> Result<Flow, SaslFailure> {
    s.take_sasl();
    if !may_authenticate(s) {
        return Err(SaslFailure::EncryptionRequired);
    }
    let mech = st
        .attr("mechanism")
        .and_then(Mechanism::from_name)
        .filter(|m| offered(s).contains(m))
        .ok_or(SaslFailure::InvalidMechanism)?;
    if !s.server.address_throttle.allowed(&address_key(s.peer_ip)) {
        return Err(SaslFailure::TemporaryAuthFailure);
    }
    let initial = decode(st)?;
    match mech.scram() {
        Some((alg, plus)) => {
            if let Some(why) = channel_binding_mismatch(s, plus, &initial) {
                // Not a wrong password: client and server disagree on channel binding, and
                // the client may try another mechanism. The attempt counts against nobody.
                tracing::info!(conn = s.conn, ip = %s.peer_ip, why, "channel binding mismatch");
                out.push(Frame::Element(failure(SaslFailure::NotAuthorized, Some(why))));
                return Ok(Flow::Continue);
            }
            let mut scram = ScramServer::new(alg, plus, s.security.channel_bindings.clone());
            let first = scram.client_first(&initial)?;
            let user = accounts::normalize_user(&first.username);
            check_authzid(s, user.as_deref(), first.authzid.as_deref())?;
            let creds = match &user {
                Some(u) => {
                    if !s.server.throttle.allowed(&account_key(s, u)) {
                        return Err(SaslFailure::TemporaryAuthFailure);
                    }
                    accounts::credentials(&s.server, s.domain(), u).await.map_err(|_| SaslFailure::TemporaryAuthFailure)?
                }
                None => None,
            };
            let challenge = scram.server_first(creds.as_ref().map(|c| c.for_alg(alg)), &s.server.decoy);
            out.push(Frame::Element(Element::new("challenge", ns::SASL).with_text(B64.encode(challenge))));
            s.set_stage_sasl(Exchange { scram, user, started });
            Ok(Flow::Continue)
        }
        None => {
            let msg = plain::parse(&initial)?;
            let user = accounts::normalize_user(&msg.username).ok_or(SaslFailure::NotAuthorized)?;
            check_authzid(s, Some(&user), msg.authzid.as_deref())?;
            if !s.server.throttle.allowed(&account_key(s, &user)) {
                return Err(SaslFailure::TemporaryAuthFailure);
            }
            let creds = accounts::credentials(&s.server, s.domain(), &user).await.map_err(|_| SaslFailure::TemporaryAuthFailure)?;
            // No account: the same PBKDF2 against credentials nothing matches, so the
            // answer takes as long as for a wrong password.
            let stored = match creds {
                Some(c) => c.sha256,
                None => s.server.decoy.credentials(HashAlg::Sha256, &user),
            };
            // PBKDF2 on the blocking pool, as for new passwords (see accounts).
            let password = msg.password.clone();
            let verified = tokio::task::spawn_blocking(move || plain::verify(&password, &stored)).await.unwrap_or(false);
            if !verified {
                s.server.throttle.count(&account_key(s, &user));
                return Err(SaslFailure::NotAuthorized);
            }
            Ok(succeed(s, user, None, out))
        }
    }
}

async fn finish_scram(s: &mut Session, mut ex: Box<Exchange>, st: &Stanza, out: &mut Vec<Frame>) -> Result<Flow, SaslFailure> {
    let msg = decode(st)?;
    match (ex.scram.client_final(&msg), ex.user) {
        (Ok(server_final), Some(user)) => Ok(succeed(s, user, Some(server_final), out)),
        (Ok(_), None) => Err(SaslFailure::NotAuthorized),
        (Err(f), user) => {
            if let (SaslFailure::NotAuthorized, Some(u)) = (f, user) {
                s.server.throttle.count(&account_key(s, &u));
            }
            Err(f)
        }
    }
}

/// Why a SCRAM client-first message's gs2 header (RFC 5802 §5.1) cannot work here: a
/// client that believes we cannot bind (`y`) although we offer -PLUS, or one that asks
/// for a binding type this connection does not have (TLS 1.3 has no `tls-unique`).
fn channel_binding_mismatch(s: &Session, plus: bool, initial: &[u8]) -> Option<&'static str> {
    let flag = initial.split(|b| *b == b',').next()?;
    let has = |kind: &[u8]| s.security.channel_bindings.iter().any(|b| b.kind.as_str().as_bytes() == kind);
    match (plus, flag) {
        (false, b"y") if !s.security.channel_bindings.is_empty() => {
            Some("this server supports channel binding here: use a -PLUS mechanism (or flag n)")
        }
        (true, f) if f.starts_with(b"p=") && !has(&f[2..]) => {
            Some("that channel binding type is not available on this connection; see the offered types (XEP-0440)")
        }
        _ => None,
    }
}

/// An authorization identity, if given, must be the account itself.
fn check_authzid(s: &Session, user: Option<&str>, authzid: Option<&str>) -> Result<(), SaslFailure> {
    let (Some(authzid), Some(user)) = (authzid, user) else { return Ok(()) };
    let own = format!("{user}@{}", s.domain());
    match jid::BareJid::new(authzid) {
        Ok(j) if j.as_str() == own => Ok(()),
        _ => Err(SaslFailure::InvalidAuthzid),
    }
}

fn succeed(s: &mut Session, user: String, additional: Option<Vec<u8>>, out: &mut Vec<Frame>) -> Flow {
    s.server.throttle.clear(&account_key(s, &user));
    let mut el = Element::new("success", ns::SASL);
    if let Some(data) = additional {
        el.push_text(B64.encode(data));
    }
    out.push(Frame::Element(el));
    tracing::info!(conn = s.conn, user = %user, domain = %s.domain(), "authenticated");
    s.authenticated(user);
    Flow::Restart
}

fn fail_attempt(s: &mut Session, f: SaslFailure, out: &mut Vec<Frame>) -> Flow {
    out.push(Frame::Element(failure(f, None)));
    if matches!(f, SaslFailure::NotAuthorized | SaslFailure::MalformedRequest | SaslFailure::IncorrectEncoding) {
        s.server.address_throttle.count(&address_key(s.peer_ip));
        s.auth_failures += 1;
        if s.auth_failures >= MAX_FAILURES_PER_CONNECTION {
            return s.fail(StreamError::with_text(StreamErrorCondition::PolicyViolation, "too many failed authentication attempts"), out);
        }
    }
    tracing::info!(conn = s.conn, ip = %s.peer_ip, failure = f.as_str(), "authentication failed");
    Flow::Continue
}

/// The address failures are counted for: an IPv4 address, or an IPv6 address's /64.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn account_key(s: &Session, user: &str) -> String {
    format!("{user}@{} from {}", s.domain(), address_key(s.peer_ip))
}

impl Session {
    /// The served domain of this stream: set once the header was accepted.
    pub(crate) fn domain(&self) -> &str {
        self.domain.as_deref().expect("the stream header named a served domain")
    }
}

/// Counts events per key in a window: failed logins per address (and account), and other
/// things strangers may repeat (registrations, upload slots). Past the limit the key is
/// refused (a login with `temporary-auth-failure`) until the window passes.
pub struct Throttle {
    max_failures: u32,
    window: Duration,
    entries: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Throttle { max_failures, window, entries: Mutex::new(HashMap::new()) }
    }

    pub fn allowed(&self, key: &str) -> bool {
        let entries = self.entries.lock().expect("throttle lock");
        match entries.get(key) {
            Some((count, since)) => *count < self.max_failures || since.elapsed() >= self.window,
            None => true,
        }
    }

    /// Counts one event (a failed login, a registration, a request) for `key`.
    pub fn count(&self, key: &str) {
        let mut entries = self.entries.lock().expect("throttle lock");
        // Bound the table under a spray of addresses: expired entries go first.
        if entries.len() > 100_000 {
            entries.retain(|_, (_, since)| since.elapsed() < self.window);
        }
        let e = entries.entry(key.to_owned()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= self.window {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    pub fn clear(&self, key: &str) {
        self.entries.lock().expect("throttle lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_64_is_one_address() {
        let key = |ip: &str| address_key(ip.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
    }

    #[test]
    fn throttle_blocks_after_the_limit_and_recovers() {
        let t = Throttle::new(2, Duration::from_millis(50));
        assert!(t.allowed("k"));
        t.count("k");
        assert!(t.allowed("k"));
        t.count("k");
        assert!(!t.allowed("k"));
        assert!(t.allowed("other"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.allowed("k"));
        t.count("k");
        t.count("k");
        t.clear("k");
        assert!(t.allowed("k"));
    }
}
