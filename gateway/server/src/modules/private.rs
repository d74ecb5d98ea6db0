//! XEP-0049 private XML storage: an account keeps arbitrary XML for itself, one element
//! per (name, namespace).

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, reader, Element, Limits, StanzaError};
use jabberwock_storage::{UserRef, Write};

use super::{Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module};

const STORE: &str = "private";

pub struct PrivateStorage;

fn key(el: &Element) -> Result<String, StanzaError> {
    // §3: the jabber: namespaces are reserved and cannot be stored.
    if el.ns().starts_with("jabber:") || el.ns().is_empty() {
        return Err(StanzaError::not_acceptable());
    }
    Ok(format!("{{{}}}{}", el.ns(), el.name()))
}

impl Module for PrivateStorage {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.features(&[ns::PRIVATE]);
        host.iqs(&[IqRoute { target: IqTarget::Account, name: "query", ns: ns::PRIVATE }], self);
    }
}

#[async_trait]
impl IqHandler for PrivateStorage {
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        let owner = cx.to.to_bare();
        if cx.from.to_bare() != owner {
            return Err(StanzaError::forbidden());
        }
        let u = UserRef { host: owner.domain().as_str(), user: owner.node().ok_or_else(StanzaError::bad_request)?.as_str() };
        let internal = |e: jabberwock_storage::StorageError| {
            tracing::error!(error = %e, "private storage failed");
            StanzaError::internal_server_error()
        };
        if cx.set {
            let items: Vec<(String, Vec<u8>)> =
                payload.children().map(|c| Ok((key(c)?, c.to_bytes()))).collect::<Result<_, StanzaError>>()?;
            if items.is_empty() {
                return Err(StanzaError::bad_request());
            }
            let writes: Vec<Write<'_>> =
                items.iter().map(|(k, v)| Write::Map { store: STORE, key: k, value: Some(v) }).collect();
            cx.server.store.write_batch(u, &writes).await.map_err(internal)?;
            return Ok(None);
        }
        let mut children = payload.children();
        let (Some(wanted), None) = (children.next(), children.next()) else {
            return Err(StanzaError::bad_request().with_text("ask for exactly one element"));
        };
        let stored = cx.server.store.map_get(u, STORE, &key(wanted)?).await.map_err(internal)?;
        let found = stored.and_then(|raw| reader::parse_element(&raw, &Limits::unlimited()).ok()).unwrap_or_else(|| wanted.clone());
        Ok(Some(Element::new("query", ns::PRIVATE).with_child(found)))
    }
}
