//! XEP-0388 SASL2: the same mechanisms as SASL, in one round trip with what the client
//! wants set up once it is in, and without the stream restart.
//!
//! `<authenticate/>` carries the mechanism's initial response, the device's
//! `<user-agent/>`, and requests answered inside `<success/>`: a XEP-0386 `<bind/>` and
//! XEP-0484 FAST token requests, or a XEP-0198 `<resume/>`. A token also signs a device in (the HT-SHA-256
//! mechanisms), without the password. No `<continue/>` task is offered yet, so a `<next/>`
//! is out of order.

use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use jabberwock_proto::{ns, Element, Stanza};
use jabberwock_sasl::ht::{HtExchange, HtMechanism};
use jabberwock_sasl::SaslFailure;

use super::auth::{self, Step};
use super::{bind, fast, Session};
use crate::accounts;
use crate::stanzas::xep0082;
use crate::stream::{Flow, Frame};

/// What an `<authenticate/>` asks for besides authentication.
#[derive(Default)]
pub(crate) struct Request {
    /// The device's stable id (`<user-agent id>`), which tokens and the Bind2 resource
    /// belong to.
    user_agent: Option<String>,
    /// XEP-0386 `<bind/>`.
    bind: Option<Element>,
    /// `<request-token/>`: the mechanism a new token is wanted for.
    token: Option<HtMechanism>,
    /// `<fast invalidate='true'/>`: the token signing in is the last (a logout).
    invalidate: bool,
    /// A FAST login's replacement token, issued as the used one was consumed.
    rotated: Option<fast::Issued>,
    /// XEP-0198 `<resume/>`: previd and h.
    resume: Option<(String, u32)>,
}

fn fast_enabled(s: &Session) -> bool {
    s.server.config.auth.fast_token_lifetime_secs > 0
}

/// The token mechanisms this connection supports (their channel bindings).
fn fast_mechanisms(s: &Session) -> Vec<HtMechanism> {
    let kinds: Vec<_> = s.security.channel_bindings.iter().map(|b| b.kind).collect();
    HtMechanism::offered(&kinds)
}

/// `<authentication/>` for the stream features, beside SASL's `<mechanisms/>`.
pub(super) fn feature(s: &Session) -> Option<Element> {
    let mechanisms = auth::offered(s);
    if mechanisms.is_empty() {
        return None;
    }
    let mut el = Element::new("authentication", ns::SASL2);
    for m in mechanisms {
        el.push(Element::new("mechanism", ns::SASL2).with_text(m.name()));
    }
    // XEP-0198 resumption inline, and Bind2.
    let mut inline = Element::new("inline", ns::SASL2).with_child(Element::new("sm", ns::SM)).with_child(bind::bind2_feature(&s.server));
    if fast_enabled(s) {
        let mut fast = Element::new("fast", ns::FAST);
        for m in fast_mechanisms(s) {
            fast.push(Element::new("mechanism", ns::FAST).with_text(m.name()));
        }
        inline.push(fast);
    }
    el.push(inline);
    Some(el)
}

pub(super) async fn on_sasl2_element(s: &mut Session, st: Stanza, out: &mut Vec<Frame>) -> Flow {
    let mut started = Instant::now();
    let step = match st.name() {
        "authenticate" => authenticate(s, &st).await,
        "response" => match (s.take_sasl(), st.to_element()) {
            (Some(ex), Ok(el)) if ex.sasl2 => {
                started = ex.started;
                auth::decode(&el.text()).and_then(|msg| auth::respond(s, ex, &msg))
            }
            _ => Err(SaslFailure::MalformedRequest),
        },
        "abort" => {
            s.take_sasl();
            Err(SaslFailure::Aborted)
        }
        // Also `<next/>`: it answers a `<continue/>`, and none was sent.
        _ => Err(SaslFailure::MalformedRequest),
    };
    auth::count_login(s, &step, started);
    match step {
        Ok(Step::Challenge(c)) => {
            out.push(Frame::Element(Element::new("challenge", ns::SASL2).with_text(B64.encode(c))));
            Flow::Continue
        }
        Ok(Step::Success { user, additional }) => succeed(s, user, additional, out).await,
        Ok(Step::Refused(why)) => {
            out.push(Frame::Element(auth::failure(ns::SASL2, SaslFailure::NotAuthorized, Some(why))));
            Flow::Continue
        }
        Err(f) => {
            s.sasl2 = None;
            auth::fail_attempt(s, ns::SASL2, f, out)
        }
    }
}

async fn authenticate(s: &mut Session, st: &Stanza) -> Result<Step, SaslFailure> {
    s.take_sasl();
    let el = st.to_element().map_err(|_| SaslFailure::MalformedRequest)?;
    let mut request = parse_request(s, &el)?;
    let initial = el.child("initial-response", ns::SASL2).map_or(Ok(Vec::new()), |r| auth::decode(&r.text()));
    let mechanism = el.attr("mechanism");
    let step = match mechanism.and_then(HtMechanism::from_name) {
        Some(m) => fast_login(s, m, initial?, &mut request).await,
        None => auth::begin(s, mechanism, initial, true).await,
    };
    s.sasl2 = Some(Box::new(request));
    step
}

fn parse_request(s: &Session, el: &Element) -> Result<Request, SaslFailure> {
    let user_agent = match el.child("user-agent", ns::SASL2).and_then(|ua| ua.attr("id")) {
        Some(id) if id.len() > s.server.config.auth.max_user_agent_id_bytes || id.is_empty() => return Err(SaslFailure::MalformedRequest),
        id => id.map(str::to_owned),
    };
    let offered = |m: &HtMechanism| fast_enabled(s) && fast_mechanisms(s).contains(m);
    Ok(Request {
        user_agent,
        bind: el.child("bind", ns::BIND2).cloned(),
        token: el.child("request-token", ns::FAST).and_then(|t| t.attr("mechanism")).and_then(HtMechanism::from_name).filter(offered),
        invalidate: el.child("fast", ns::FAST).is_some_and(|f| matches!(f.attr("invalidate"), Some("true" | "1"))),
        rotated: None,
        resume: el.child("resume", ns::SM).and_then(|r| Some((r.attr("previd")?.to_owned(), r.attr("h")?.parse().ok()?))),
    })
}

/// A login with a FAST token: throttled and counted as a password login is, but with no
/// PBKDF2 to run.
async fn fast_login(s: &mut Session, mechanism: HtMechanism, initial: Vec<u8>, request: &mut Request) -> Result<Step, SaslFailure> {
    if !auth::may_authenticate(s) {
        return Err(SaslFailure::EncryptionRequired);
    }
    if !fast_enabled(s) || !fast_mechanisms(s).contains(&mechanism) {
        return Err(SaslFailure::InvalidMechanism);
    }
    if !s.server.address_throttle.allowed(&auth::address_key(s.peer_ip)) {
        return Err(SaslFailure::TemporaryAuthFailure);
    }
    let exchange = HtExchange::parse(mechanism, &initial, &s.security.channel_bindings)?;
    let user = accounts::normalize_user(&exchange.username).ok_or(SaslFailure::NotAuthorized)?;
    auth::check_account_throttle(s, &user)?;
    // The next token, for the mechanism asked for or the one used; none for a logout.
    let next = (!request.invalidate).then(|| request.token.unwrap_or(mechanism));
    // A token belongs to a device: without its id there is none to check.
    let result = match request.user_agent.as_deref() {
        Some(device) => fast::verify_and_rotate(&s.server, s.domain(), &user, device, &exchange, next).await,
        None => Err(SaslFailure::NotAuthorized),
    };
    match result {
        Ok((responder, rotated)) => {
            request.rotated = rotated;
            Ok(Step::Success { user, additional: Some(responder) })
        }
        Err(f) => {
            if matches!(f, SaslFailure::NotAuthorized | SaslFailure::CredentialsExpired) {
                auth::count_account_failure(s, &user);
            }
            Err(f)
        }
    }
}

/// A SASL2 success being put together, sent once the inline requests are carried out
/// (after the transport resumed a session, when one was asked for).
pub(crate) struct PendingSuccess {
    additional: Option<Vec<u8>>,
    /// What goes into `<success/>` after the authorization identifier.
    pub(super) results: Vec<Element>,
    bind: Option<Element>,
    device: Option<String>,
}

impl PendingSuccess {
    fn into_element(self, identifier: String) -> Element {
        let mut success = Element::new("success", ns::SASL2);
        if let Some(data) = self.additional {
            success.push(Element::new("additional-data", ns::SASL2).with_text(B64.encode(data)));
        }
        success.push(Element::new("authorization-identifier", ns::SASL2).with_text(identifier));
        for r in self.results {
            success.push(r);
        }
        success
    }

    /// The inline XEP-0198 resumption succeeded: the session's full JID and `<resumed/>`.
    pub(super) fn resumed(mut self, jid: String, resumed: Element) -> Element {
        self.results.push(resumed);
        self.into_element(jid)
    }
}

async fn succeed(s: &mut Session, user: String, additional: Option<Vec<u8>>, out: &mut Vec<Frame>) -> Flow {
    let mut request = s.sasl2.take().map(|r| *r).unwrap_or_default();
    auth::authenticated_as(s, &user);
    s.authenticated(user.clone(), false);
    let token = match request.rotated.take() {
        Some(rotated) => Some(rotated),
        None => requested_token(s, &user, &request).await,
    };
    let results = token.map(token_element).into_iter().collect();
    let pending = PendingSuccess { additional, results, bind: request.bind, device: request.user_agent };
    match request.resume {
        // The transport swaps the parked session in, then sends the success (see sm.rs).
        Some(resume) => {
            s.pending_resume = Some(resume);
            s.resuming = Some(Box::new(pending));
            Flow::Resume
        }
        None => {
            complete(s, pending, out).await;
            Flow::Continue
        }
    }
}

/// Binds inline if asked and sends `<success/>`. Without an inline bind, the features of
/// an authenticated stream follow, so the client can bind as after SASL.
pub(super) async fn complete(s: &mut Session, mut pending: PendingSuccess, out: &mut Vec<Frame>) {
    let mut identifier = format!("{}@{}", s.user.as_deref().unwrap_or_default(), s.domain());
    // What the inline features send comes after the success.
    let mut produced = Vec::new();
    let mut bound = false;
    if let Some(bind) = pending.bind.take() {
        match bind::bind2(s, &bind, pending.device.as_deref(), &mut produced).await {
            Ok((jid, el)) => {
                identifier = jid;
                pending.results.push(el);
                bound = true;
            }
            // The client can still bind as after SASL, and learns why there.
            Err(e) => tracing::info!(conn = s.conn, error = ?e, "inline bind refused"),
        }
    }
    out.push(Frame::Element(pending.into_element(identifier)));
    out.append(&mut produced);
    if !bound {
        out.push(Frame::StreamElement(s.features()));
    }
}

/// FAST: a token asked for at a password login.
async fn requested_token(s: &Session, user: &str, request: &Request) -> Option<fast::Issued> {
    let (device, mechanism) = (request.user_agent.as_deref()?, request.token?);
    match fast::issue(&s.server, s.domain(), user, device, mechanism).await {
        Ok(issued) => Some(issued),
        Err(e) => {
            tracing::warn!(conn = s.conn, error = %e, "could not store a FAST token");
            None
        }
    }
}

fn token_element(issued: fast::Issued) -> Element {
    Element::new("token", ns::FAST).with_attr("expiry", xep0082(issued.expires)).with_attr("token", issued.token)
}
