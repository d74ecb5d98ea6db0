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
use jabberwock_sasl::{downgrade_protection_string, plain, HashAlg, Mechanism, SaslFailure, ScramServer};

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
    /// Begun with SASL2's `<authenticate/>`: only SASL2 may continue it.
    pub(super) sasl2: bool,
    /// When the exchange began (login duration).
    pub(super) started: Instant,
}

/// Where a mechanism step leads, whichever profile (RFC 6120 SASL or XEP-0388 SASL2)
/// carries it.
pub(super) enum Step {
    Challenge(Vec<u8>),
    /// Authenticated as this localpart, with the mechanism's additional data.
    Success { user: String, additional: Option<Vec<u8>> },
    /// Refused as a disagreement, not a wrong password (channel binding): the client may
    /// try another mechanism, and the attempt counts against nobody.
    Refused(&'static str),
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
pub(super) fn may_authenticate(s: &Session) -> bool {
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

/// XEP-0474: what this stream offers (the same for SASL and SASL2), as SCRAM's `d=` hashes it.
fn downgrade_protection(s: &Session) -> String {
    let mechanisms: Vec<&str> = offered(s).iter().map(|m| m.name()).collect();
    let bindings: Vec<&str> = s.security.channel_bindings.iter().map(|b| b.kind.as_str()).collect();
    downgrade_protection_string(&mechanisms, (!bindings.is_empty()).then_some(&bindings[..]))
}

/// A `<failure/>` of the profile namespace `profile` (SASL or SASL2) with an RFC 6120
/// condition.
pub(super) fn failure(profile: &str, f: SaslFailure, text: Option<&str>) -> Element {
    let mut el = Element::new("failure", profile).with_child(Element::new(f.as_str(), ns::SASL));
    if let Some(t) = text {
        el.push(Element::new("text", profile).with_text(t));
    }
    el
}

/// The base64 payload of a SASL element.
pub(super) fn decode(text: &str) -> Result<Vec<u8>, SaslFailure> {
    let text = text.trim();
    // RFC 6120 §6.4.2: "=" is an empty response, as is no text at all.
    if text.is_empty() || text == "=" {
        return Ok(Vec::new());
    }
    B64.decode(text).map_err(|_| SaslFailure::IncorrectEncoding)
}

fn stanza_payload(st: &Stanza) -> Result<Vec<u8>, SaslFailure> {
    decode(&st.to_element().map_err(|_| SaslFailure::MalformedRequest)?.text())
}

pub(super) async fn on_sasl_element(s: &mut Session, st: Stanza, out: &mut Vec<Frame>) -> Flow {
    let mut started = Instant::now();
    let step = match st.name() {
        "auth" => begin(s, st.attr("mechanism"), stanza_payload(&st), false).await,
        "response" => match s.take_sasl() {
            Some(ex) if !ex.sasl2 => {
                started = ex.started;
                match stanza_payload(&st) {
                    Ok(msg) => respond(s, ex, &msg),
                    Err(f) => Err(f),
                }
            }
            _ => Err(SaslFailure::MalformedRequest),
        },
        "abort" => {
            s.take_sasl();
            Err(SaslFailure::Aborted)
        }
        _ => return s.fail(StreamError::new(StreamErrorCondition::UnsupportedStanzaType), out),
    };
    count_login(s, &step, started);
    match step {
        Ok(Step::Challenge(c)) => {
            out.push(Frame::Element(Element::new("challenge", ns::SASL).with_text(B64.encode(c))));
            Flow::Continue
        }
        Ok(Step::Success { user, additional }) => {
            let mut el = Element::new("success", ns::SASL);
            if let Some(data) = additional {
                el.push_text(B64.encode(data));
            }
            out.push(Frame::Element(el));
            authenticated_as(s, &user);
            s.authenticated(user, true);
            Flow::Restart
        }
        Ok(Step::Refused(why)) => {
            out.push(Frame::Element(failure(ns::SASL, SaslFailure::NotAuthorized, Some(why))));
            Flow::Continue
        }
        Err(f) => fail_attempt(s, ns::SASL, f, out),
    }
}

/// Counts a login that ended, as either profile's step left it: a challenge is no outcome
/// yet, nor is an abort.
pub(super) fn count_login(s: &Session, step: &Result<Step, SaslFailure>, started: Instant) {
    let outcome = match step {
        Ok(Step::Success { .. }) => Login::Ok,
        Ok(Step::Challenge(_)) | Err(SaslFailure::Aborted) => return,
        Err(SaslFailure::TemporaryAuthFailure) => Login::Throttled,
        Ok(Step::Refused(_)) | Err(_) => Login::Failed,
    };
    s.server.metrics.login(outcome, started.elapsed());
}

/// Starts an exchange with `mechanism` and the client's initial response. A SCRAM
/// exchange continues in [`respond`].
pub(super) async fn begin(
    s: &mut Session,
    mechanism: Option<&str>,
    initial: Result<Vec<u8>, SaslFailure>,
    sasl2: bool,
) -> Result<Step, SaslFailure> {
    s.take_sasl();
    if !may_authenticate(s) {
        return Err(SaslFailure::EncryptionRequired);
    }
    let mech = mechanism.and_then(Mechanism::from_name).filter(|m| offered(s).contains(m)).ok_or(SaslFailure::InvalidMechanism)?;
    if !s.server.address_throttle.allowed(&address_key(s.peer_ip)) {
        return Err(SaslFailure::TemporaryAuthFailure);
    }
    let initial = initial?;
    match mech.scram() {
        Some((alg, plus)) => {
            if let Some(why) = channel_binding_mismatch(s, plus, &initial) {
                tracing::info!(conn = s.conn, ip = %s.peer_ip, why, "channel binding mismatch");
                return Ok(Step::Refused(why));
            }
            let mut scram = ScramServer::new(alg, plus, s.security.channel_bindings.clone()).with_downgrade_protection(downgrade_protection(s));
            let first = scram.client_first(&initial)?;
            let user = accounts::normalize_user(&first.username);
            check_authzid(s, user.as_deref(), first.authzid.as_deref())?;
            let creds = match &user {
                Some(u) => {
                    check_account_throttle(s, u)?;
                    accounts::credentials(&s.server, s.domain(), u).await.map_err(|_| SaslFailure::TemporaryAuthFailure)?
                }
                None => None,
            };
            let challenge = scram.server_first(creds.as_ref().map(|c| c.for_alg(alg)), &s.server.decoy);
            s.set_stage_sasl(Exchange { scram, user, sasl2, started: Instant::now() });
            Ok(Step::Challenge(challenge))
        }
        None => {
            let msg = plain::parse(&initial)?;
            let user = accounts::normalize_user(&msg.username).ok_or(SaslFailure::NotAuthorized)?;
            check_authzid(s, Some(&user), msg.authzid.as_deref())?;
            check_account_throttle(s, &user)?;
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
                count_account_failure(s, &user);
                return Err(SaslFailure::NotAuthorized);
            }
            Ok(Step::Success { user, additional: None })
        }
    }
}

/// The client's answer to a SCRAM challenge.
pub(super) fn respond(s: &mut Session, mut ex: Box<Exchange>, msg: &[u8]) -> Result<Step, SaslFailure> {
    match (ex.scram.client_final(msg), ex.user) {
        (Ok(server_final), Some(user)) => Ok(Step::Success { user, additional: Some(server_final) }),
        (Ok(_), None) => Err(SaslFailure::NotAuthorized),
        (Err(f), user) => {
            if let (SaslFailure::NotAuthorized, Some(u)) = (f, user) {
                count_account_failure(s, &u);
            }
            Err(f)
        }
    }
}

/// Refuses an account this address failed too often for (see [`Throttle`]).
pub(super) fn check_account_throttle(s: &Session, user: &str) -> Result<(), SaslFailure> {
    match s.server.throttle.allowed(&account_key(s, user)) {
        true => Ok(()),
        false => Err(SaslFailure::TemporaryAuthFailure),
    }
}

pub(super) fn count_account_failure(s: &Session, user: &str) {
    s.server.throttle.count(&account_key(s, user));
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

/// A login succeeded, by whatever profile and mechanism: the failures counted for it go.
pub(super) fn authenticated_as(s: &Session, user: &str) {
    s.server.throttle.clear(&account_key(s, user));
    tracing::info!(conn = s.conn, user = %user, domain = %s.domain(), "authenticated");
}

/// Answers a failed attempt with `<failure/>` of the profile namespace, and counts it
/// against the address; a connection that fails too often is closed.
pub(super) fn fail_attempt(s: &mut Session, profile: &str, f: SaslFailure, out: &mut Vec<Frame>) -> Flow {
    out.push(Frame::Element(failure(profile, f, None)));
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
