//! RFC 6121 instant messaging: what happens to a stanza a bound client sends, and to a
//! message or presence for a local account.

pub mod message;
pub mod presence;
pub mod roster;

use std::sync::Arc;

use jabberwock_proto::{Stanza, StanzaError, StanzaKind};
use jid::Jid;

use crate::modules::SentMessage;
use crate::routing::route_or_reply;
use crate::server::Server;
use crate::session::Session;
use crate::stanzas::error_reply;
use crate::stream::{Flow, Frame};

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
            let replies = match st.to().map(Jid::new) {
                Some(Ok(to)) => send_message(&s.server, &bound.jid, &to, st).await,
                _ => Box::pin(route_or_reply(&s.server, st)).await,
            };
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

/// Routes a message a local session sent, with the modules' hooks around it (an archive
/// keeps it, carbons copy it).
async fn send_message(server: &Arc<Server>, sender: &jid::FullJid, to: &Jid, st: Stanza) -> Vec<Stanza> {
    let hooks = &server.modules.message_hooks;
    if hooks.is_empty() {
        return Box::pin(route_or_reply(server, st)).await;
    }
    let sent = st.clone();
    let mut m = SentMessage { server, sender, to, stanza: &sent, notes: Default::default() };
    let mut refused = None;
    for h in hooks {
        if let Err(e) = h.sending(&mut m).await {
            refused = Some(e);
            break;
        }
    }
    let replies = match refused {
        Some(e) => crate::stanzas::bounce_reply(&st, e),
        None => Box::pin(route_or_reply(server, st)).await,
    };
    // A message that went nowhere (blocked, unknown, unreachable) comes back as an error.
    let bounced = !replies.is_empty();
    for h in hooks {
        h.sent(&mut m, bounced).await;
    }
    replies
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
