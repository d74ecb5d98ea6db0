//! RFC 6121 instant messaging: what happens to a stanza a bound client sends, and how a
//! stanza for a local account reaches its sessions.

pub mod message;
pub mod offline;
pub mod presence;
pub mod roster;

use std::sync::Arc;

use jabberwock_proto::{Element, Stanza, StanzaError, StanzaKind};
use jid::Jid;

use crate::modules::{self, IqTarget};
use crate::router::Routed;
use crate::server::Server;
use crate::session::Session;
use crate::stream::{Flow, Frame};

/// A `type='result'` reply to `req`.
pub fn iq_result(req: &Stanza, payload: Option<Element>) -> Stanza {
    let mut el = Element::new("iq", req.ns())
        .with_attr("type", "result")
        .with_opt_attr("id", req.id())
        .with_opt_attr("to", req.from())
        .with_opt_attr("from", req.to());
    if let Some(p) = payload {
        el.push(p);
    }
    Stanza::from_element(&el)
}

/// A `type='error'` reply to `req` (RFC 6120 §8.3.1), without the original payload.
pub fn error_reply(req: &Stanza, err: StanzaError) -> Stanza {
    let el = Element::new(req.name(), req.ns())
        .with_attr("type", "error")
        .with_opt_attr("id", req.id())
        .with_opt_attr("to", req.from())
        .with_opt_attr("from", req.to())
        .with_child(err.to_element(req.ns()));
    Stanza::from_element(&el)
}

/// A stanza from the bound client of `s`, with `from` already stamped.
pub async fn outbound(s: &mut Session, st: Stanza, out: &mut Vec<Frame>) -> Flow {
    match st.kind() {
        StanzaKind::Presence => return presence::outbound(s, st, out).await,
        StanzaKind::Message => {
            let mut st = st;
            let bound = s.bound.as_ref().expect("bound");
            if st.to().is_none() {
                st.set_attr("to", bound.bare.clone());
            }
            let to = st.to().and_then(|t| Jid::new(t).ok());
            let archived = match &to {
                Some(to) => modules::mam::archive_sent(&s.server, &bound.jid.to_bare(), &to.to_bare(), &st).await,
                None => None,
            };
            let sent = st.clone();
            let replies = Box::pin(route_or_reply(&s.server, st)).await;
            // Only a message that went somewhere stays archived and is copied to the other
            // resources; a bounced one (blocked, unknown, unreachable) is not.
            if replies.is_empty() {
                modules::carbons::sent(&s.server, &bound.bare, &bound.resource, &sent);
            } else if let Some(entry) = archived {
                modules::mam::retract_sent(&s.server, entry).await;
            }
            out.extend(replies.into_iter().map(Frame::Stanza));
        }
        StanzaKind::Iq => {
            // The fast path: replies to the session's own iq go straight back.
            out.extend(iq_from_client(&s.server, st).await.into_iter().map(Frame::Stanza));
        }
        StanzaKind::Other => unreachable!("the session refuses non-stanzas"),
    }
    Flow::Continue
}

/// Handles an iq from a local client: server and account iqs are answered here (the
/// replies are returned); anything for a full JID is routed.
async fn iq_from_client(server: &Arc<Server>, mut st: Stanza) -> Vec<Stanza> {
    if let Err(e) = check_iq(&st) {
        return vec![error_reply(&st, e)];
    }
    if st.to().is_none() {
        // RFC 6120 §10.3.3: no `to` means the account itself.
        let Ok(from) = Jid::new(st.from().expect("stamped")) else { return Vec::new() };
        st.set_attr("to", from.to_bare().to_string());
    }
    route_or_reply(server, st).await
}

/// RFC 6120 §8.2.3: get and set carry exactly one payload element; every iq has an id.
fn check_iq(st: &Stanza) -> Result<(), StanzaError> {
    if st.id().is_none() {
        return Err(StanzaError::bad_request().with_text("iq without id"));
    }
    match st.stanza_type() {
        Some("get" | "set") => {
            let el = st.to_element().map_err(|_| StanzaError::bad_request())?;
            if el.children().count() != 1 {
                return Err(StanzaError::bad_request().with_text("get and set need exactly one payload"));
            }
            Ok(())
        }
        Some("result" | "error") => Ok(()),
        _ => Err(StanzaError::bad_request().with_text("invalid iq type")),
    }
}

/// Routes `st` (its `from` is trusted). What the server itself answers the sender (iq
/// results, errors) is returned instead of routed, so callers can hand it straight back
/// to a local session.
async fn route_or_reply(server: &Arc<Server>, st: Stanza) -> Vec<Stanza> {
    let to = match st.to().map(Jid::new) {
        Some(Ok(to)) => to,
        Some(Err(_)) => return bounce_reply(&st, StanzaError::jid_malformed()),
        None => return Vec::new(),
    };
    if let Some(replies) = enforce_blocklists(server, &st, &to).await {
        return replies;
    }
    let domain = to.domain().as_str();
    if server.config.served_domain(domain).is_none() {
        return crate::s2s::send(server, st);
    }
    match st.kind() {
        StanzaKind::Iq => iq_to_local(server, st, &to).await,
        StanzaKind::Message if to.node().is_none() => {
            // Messages to the server itself: nothing here consumes them.
            bounce_reply(&st, StanzaError::service_unavailable())
        }
        StanzaKind::Message => match message::deliver(server, st, &to).await {
            Ok(()) => Vec::new(),
            Err((st, e)) => bounce_reply(&st, e),
        },
        StanzaKind::Presence if to.node().is_none() => Vec::new(),
        StanzaKind::Presence => {
            presence::inbound(server, st, &to).await;
            Vec::new()
        }
        StanzaKind::Other => Vec::new(),
    }
}

/// XEP-0191: a stanza between two parties where either blocks the other goes nowhere. The
/// blocking sender learns why; a blocked sender gets service-unavailable, except for
/// presence, which is dropped. `None` lets the stanza through.
async fn enforce_blocklists(server: &Server, st: &Stanza, to: &Jid) -> Option<Vec<Stanza>> {
    let from = st.from().and_then(|f| Jid::new(f).ok())?;
    let presence = st.kind() == StanzaKind::Presence;
    if modules::blocking::blocks(server, &from.to_bare(), to).await {
        return Some(if presence { Vec::new() } else { bounce_reply(st, modules::blocking::blocked_error()) });
    }
    if to.node().is_some() && modules::blocking::blocks(server, &to.to_bare(), &from).await {
        return Some(if presence { Vec::new() } else { bounce_reply(st, StanzaError::service_unavailable()) });
    }
    None
}

/// Routes a stanza and delivers any error or reply back to its local sender.
pub async fn route(server: &Arc<Server>, st: Stanza) {
    for reply in Box::pin(route_or_reply(server, st)).await {
        deliver_to_sender(server, reply);
    }
}

/// `<forwarded/>` (XEP-0297) around a stanza's XML, with an optional delay stamp.
pub fn forwarded(original_xml: &str, stamp: Option<&str>) -> String {
    let mut out = Vec::from(&b"<forwarded"[..]);
    jabberwock_proto::escape::namespace_declaration(&mut out, "", jabberwock_proto::ns::FORWARD);
    out.push(b'>');
    if let Some(stamp) = stamp {
        out.extend_from_slice(b"<delay");
        jabberwock_proto::escape::namespace_declaration(&mut out, "", jabberwock_proto::ns::DELAY);
        jabberwock_proto::escape::attribute(&mut out, "stamp", stamp);
        out.extend_from_slice(b"/>");
    }
    out.extend_from_slice(original_xml.as_bytes());
    out.extend_from_slice(b"</forwarded>");
    String::from_utf8(out).expect("UTF-8")
}

/// Delivers a server-generated reply to the full JID it is addressed to: a local session,
/// or a remote entity over federation.
fn deliver_to_sender(server: &Arc<Server>, reply: Stanza) {
    let Some(Ok(to)) = reply.to().map(Jid::new) else { return };
    if server.config.served_domain(to.domain().as_str()).is_none() {
        // A reply that cannot reach a remote sender has nowhere further to go: replies
        // are errors or results, which never bounce.
        crate::s2s::send(server, reply);
        return;
    }
    if let Some(resource) = to.resource() {
        if let Some(h) = server.router.get(to.to_bare().as_str(), resource.as_str()) {
            h.send(Routed::stanza(reply));
        }
    }
}

/// The error reply for an undeliverable stanza; errors themselves never bounce.
pub(crate) fn bounce_reply(st: &Stanza, err: StanzaError) -> Vec<Stanza> {
    if st.stanza_type() == Some("error") {
        return Vec::new();
    }
    vec![error_reply(st, err)]
}

async fn iq_to_local(server: &Arc<Server>, st: Stanza, to: &Jid) -> Vec<Stanza> {
    let is_request = matches!(st.stanza_type(), Some("get" | "set"));
    if let Some(resource) = to.resource() {
        return match server.router.get(to.to_bare().as_str(), resource.as_str()) {
            Some(h) => {
                h.send(Routed::stanza(st));
                Vec::new()
            }
            None if is_request => bounce_reply(&st, StanzaError::service_unavailable()),
            None => Vec::new(),
        };
    }
    if !is_request {
        // Results and errors for the server answer its own requests; nothing else awaits
        // them.
        if to.node().is_none() {
            server.caps.complete(st);
        }
        return Vec::new();
    }
    let target = match to.node() {
        None => IqTarget::Host,
        Some(_) => {
            let bare = to.to_bare();
            if !crate::accounts::exists(server, bare.domain().as_str(), bare.node().map(|n| n.as_str()).unwrap_or_default()).await {
                return bounce_reply(&st, StanzaError::service_unavailable());
            }
            IqTarget::Account
        }
    };
    modules::dispatch_iq(server, target, &st).await
}
