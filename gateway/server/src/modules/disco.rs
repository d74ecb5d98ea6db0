//! XEP-0030 service discovery for the server and for accounts.

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, StanzaError};

use crate::server::Server;
use super::adhoc::{self, COMMANDS};
use super::{Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module};

pub struct Disco;


impl Module for Disco {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.features(&[ns::DISCO_INFO, ns::DISCO_ITEMS]);
        host.iqs(&[
            IqRoute { target: IqTarget::Host, name: "query", ns: ns::DISCO_INFO },
            IqRoute { target: IqTarget::Host, name: "query", ns: ns::DISCO_ITEMS },
            IqRoute { target: IqTarget::Account, name: "query", ns: ns::DISCO_INFO },
            IqRoute { target: IqTarget::Account, name: "query", ns: ns::DISCO_ITEMS },
        ], self);
    }
}

#[async_trait]
impl IqHandler for Disco {
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        if cx.set {
            return Err(StanzaError::bad_request());
        }
        match payload.attr("node") {
            None => {}
            // XEP-0050 §2.2-2.3: the server's ad-hoc commands (to whoever may run them).
            Some(COMMANDS) if payload.ns() == ns::DISCO_ITEMS && cx.to.node().is_none() => {
                return Ok(Some(adhoc::items_for(cx.server, cx.from, cx.to.domain().as_str())));
            }
            Some(node) if payload.ns() == ns::DISCO_INFO && cx.to.node().is_none() => {
                return adhoc::info_for(cx.server, cx.from, node).map(Some).ok_or_else(StanzaError::item_not_found);
            }
            Some(COMMANDS) if payload.ns() == ns::DISCO_ITEMS => {
                return Ok(Some(Element::new("query", ns::DISCO_ITEMS).with_attr("node", COMMANDS)));
            }
            // No other node hierarchy.
            Some(_) => return Err(StanzaError::item_not_found()),
        }
        let mut q = Element::new("query", payload.ns());
        if payload.ns() == ns::DISCO_ITEMS {
            // The server's items are the services on its subdomains (XEP-0030 §4).
            if cx.to.node().is_none() {
                let mut services: Vec<_> = cx.server.modules.services_of(cx.to.domain().as_str()).collect();
                services.sort_unstable();
                for (jid, name) in services {
                    q.push(Element::new("item", ns::DISCO_ITEMS).with_attr("jid", jid).with_attr("name", name));
                }
            }
            return Ok(Some(q));
        }
        let feature = |var: &str| Element::new("feature", ns::DISCO_INFO).with_attr("var", var);
        if cx.to.node().is_none() {
            return Ok(Some(server_info(cx.server)));
        } else {
            // XEP-0030 §3.1: an account answers for itself with account/registered.
            q.push(Element::new("identity", ns::DISCO_INFO).with_attr("category", "account").with_attr("type", "registered"));
            // XEP-0163: every account is a PEP service.
            q.push(Element::new("identity", ns::DISCO_INFO).with_attr("category", "pubsub").with_attr("type", "pep"));
            q.push(feature(ns::DISCO_INFO));
            for f in cx.server.modules.account_features() {
                q.push(feature(f));
            }
        }
        Ok(Some(q))
    }
}

/// The server's disco#info: its identity and every module's features (what XEP-0115
/// capabilities hash, too).
pub fn server_info(server: &Server) -> Element {
    let mut q = Element::new("query", ns::DISCO_INFO).with_child(
        Element::new("identity", ns::DISCO_INFO).with_attr("category", "server").with_attr("type", "im").with_attr("name", "Jabberwock"),
    );
    for f in server.modules.features() {
        q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", *f));
    }
    for form in server.modules.server_forms() {
        q.push(form.clone());
    }
    q
}
