//! XEP-0030 service discovery for the server and for accounts.

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, StanzaError};

use super::{IqCtx, IqResult, IqRoute, IqTarget, Module};

pub struct Disco;

#[async_trait]
impl Module for Disco {
    fn features(&self) -> &'static [&'static str] {
        &[ns::DISCO_INFO, ns::DISCO_ITEMS]
    }

    fn iq_routes(&self) -> &'static [IqRoute] {
        &[
            IqRoute { target: IqTarget::Host, name: "query", ns: ns::DISCO_INFO },
            IqRoute { target: IqTarget::Host, name: "query", ns: ns::DISCO_ITEMS },
            IqRoute { target: IqTarget::Account, name: "query", ns: ns::DISCO_INFO },
            IqRoute { target: IqTarget::Account, name: "query", ns: ns::DISCO_ITEMS },
        ]
    }

    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        if cx.set {
            return Err(StanzaError::bad_request());
        }
        // No node hierarchy yet: any node is unknown.
        if payload.attr("node").is_some() {
            return Err(StanzaError::item_not_found());
        }
        let mut q = Element::new("query", payload.ns());
        if payload.ns() == ns::DISCO_ITEMS {
            return Ok(Some(q));
        }
        let feature = |var: &str| Element::new("feature", ns::DISCO_INFO).with_attr("var", var);
        if cx.to.node().is_none() {
            q.push(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "server")
                    .with_attr("type", "im")
                    .with_attr("name", "Jabberwock"),
            );
            for f in cx.server.modules.features() {
                q.push(feature(f));
            }
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
