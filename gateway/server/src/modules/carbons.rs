//! XEP-0280 message carbons: every resource that enabled carbons gets a copy of the
//! account's one-to-one messages, sent and received, wherever they were delivered.

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, Stanza, StanzaError};

use super::{IqCtx, IqResult, IqRoute, IqTarget, Module};
use crate::im::forwarded;
use crate::router::{Resource, Routed};
use crate::server::Server;

pub struct Carbons;

#[async_trait]
impl Module for Carbons {
    fn features(&self) -> &'static [&'static str] {
        &[ns::CARBONS]
    }

    fn iq_routes(&self) -> &'static [IqRoute] {
        &[
            IqRoute { target: IqTarget::Account, name: "enable", ns: ns::CARBONS },
            IqRoute { target: IqTarget::Account, name: "disable", ns: ns::CARBONS },
        ]
    }

    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        let (Some(resource), true) = (cx.from.resource(), cx.set) else { return Err(StanzaError::bad_request()) };
        if cx.from.to_bare() != cx.to.to_bare() {
            return Err(StanzaError::forbidden());
        }
        cx.server.router.set_carbons(cx.to.to_bare().as_str(), resource.as_str(), payload.name() == "enable");
        Ok(None)
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

fn copy_targets(server: &Server, bare: &str, except: &[&str]) -> Vec<Resource> {
    server.router.resources(bare).into_iter().filter(|r| r.carbons && !except.contains(&r.resource.as_str())).collect()
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
        r.handle.send(Routed::stanza(copy));
    }
}

/// Copies of a message the account received to its other carbons-enabled resources.
pub fn received(server: &Server, bare: &str, delivered_to: &[&str], st: &Stanza) {
    let targets = copy_targets(server, bare, delivered_to);
    if !targets.is_empty() && eligible(st) {
        send_copies(targets, bare, "received", st);
    }
}

/// Copies of a message one of the account's resources sent to its other resources.
pub fn sent(server: &Server, bare: &str, sender_resource: &str, st: &Stanza) {
    let targets = copy_targets(server, bare, &[sender_resource]);
    if !targets.is_empty() && eligible(st) {
        send_copies(targets, bare, "sent", st);
    }
}
