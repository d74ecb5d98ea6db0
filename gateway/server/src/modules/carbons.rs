//! XEP-0280 message carbons: every resource that enabled carbons gets a copy of the
//! account's one-to-one messages, sent and received, wherever they were delivered.

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, Stanza, StanzaError};
use jid::{BareJid, FullJid};

use super::{Host, InlineBindFeature, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, MessageHooks, Module, SentMessage};
use crate::registry::{ConnId, Resource};
use crate::server::Server;
use crate::stanzas::forwarded;

/// Which resources enabled carbons is a feature of their registry entry: it belongs to
/// the connection (a session replaced on the same resource does not inherit the choice)
/// and every node of a cluster sees it.
pub struct Carbons;

impl Module for Carbons {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.features(&[ns::CARBONS]);
        host.iqs(
            &[
                IqRoute { target: IqTarget::Account, name: "enable", ns: ns::CARBONS },
                IqRoute { target: IqTarget::Account, name: "disable", ns: ns::CARBONS },
            ],
            self.clone(),
        );
        host.message_hooks(self.clone());
        host.bind_feature(self);
    }
}

impl Carbons {
    /// The account's carbons-enabled resources, except those in `except`.
    fn copy_targets(&self, server: &Server, bare: &str, except: &[&str]) -> Vec<Resource> {
        server.sessions.resources(bare).into_iter().filter(|r| r.has_feature(ns::CARBONS) && !except.contains(&r.resource.as_str())).collect()
    }
}

#[async_trait]
impl IqHandler for Carbons {
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        let (Some(resource), true) = (cx.from.resource(), cx.set) else { return Err(StanzaError::bad_request()) };
        let bare = cx.from.to_bare();
        if bare != cx.to.to_bare() {
            return Err(StanzaError::forbidden());
        }
        let session = cx.server.sessions.get(bare.as_str(), resource.as_str()).ok_or_else(StanzaError::bad_request)?;
        cx.server.sessions.set_feature(bare.as_str(), resource.as_str(), session.conn, ns::CARBONS, payload.name() == "enable").await;
        Ok(None)
    }
}

#[async_trait]
impl MessageHooks for Carbons {
    /// Copies of a message one of the account's resources sent, to its other resources.
    async fn sent(&self, m: &mut SentMessage<'_>, bounced: bool) {
        let bare = m.sender.to_bare();
        let targets = self.copy_targets(m.server, bare.as_str(), &[m.sender.resource().as_str()]);
        if !bounced && !targets.is_empty() && eligible(m.stanza) {
            send_copies(targets, bare.as_str(), "sent", m.stanza);
        }
    }

    /// Copies of a message the account received, to its other resources.
    fn delivered(&self, server: &Server, to: &BareJid, resources: &[&str], st: &Stanza) {
        let targets = self.copy_targets(server, to.as_str(), resources);
        if !targets.is_empty() && eligible(st) {
            send_copies(targets, to.as_str(), "received", st);
        }
    }
}

/// `<enable/>` inside a Bind2 request (XEP-0280 §4.1): carbons from the first message on.
#[async_trait]
impl InlineBindFeature for Carbons {
    fn namespace(&self) -> &'static str {
        ns::CARBONS
    }

    async fn bound(&self, server: &Arc<Server>, jid: &FullJid, conn: ConnId, el: &Element) -> Option<Element> {
        if el.name() == "enable" {
            server.sessions.set_feature(jid.to_bare().as_str(), jid.resource().as_str(), conn, ns::CARBONS, true).await;
        }
        None
    }
}

/// XEP-0280 §6: chat messages, and normal ones with a body, unless marked private.
fn eligible(st: &Stanza) -> bool {
    let inner = st.inner();
    let kind_ok = match st.stanza_type().unwrap_or("normal") {
        "chat" => true,
        "normal" => inner.contains("<body"),
        _ => false,
    };
    // The content is only parsed when it might carry an opt-out.
    kind_ok
        && !((inner.contains(ns::CARBONS) || inner.contains(ns::HINTS))
            && st.to_element().is_ok_and(|el| el.child("private", ns::CARBONS).is_some() || el.child("no-copy", ns::HINTS).is_some()))
}

fn send_copies(targets: Vec<Resource>, bare: &str, direction: &str, st: &Stanza) {
    if targets.is_empty() {
        return;
    }
    let inner = format!("<{direction} xmlns='{}'>{}</{direction}>", ns::CARBONS, forwarded(&String::from_utf8_lossy(&st.to_bytes()), None));
    for r in targets {
        let attrs = vec![
            ("from".to_owned(), bare.to_owned()),
            ("to".to_owned(), format!("{bare}/{}", r.resource)),
            ("type".to_owned(), st.stanza_type().unwrap_or("normal").to_owned()),
        ];
        let copy = Stanza::from_parts("message", ns::CLIENT, attrs, Vec::new(), inner.as_str().into());
        let _ = r.handle.deliver(copy);
    }
}
