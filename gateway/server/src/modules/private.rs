//! XEP-0049 private XML storage: an account keeps arbitrary XML for itself, one element
//! per (name, namespace). Some elements are views of data another module keeps
//! ([`PrivateView`]): XEP-0048 bookmarks are the account's XEP-0402 bookmarks.

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, reader, Element, Limits, StanzaError};
use jabberwock_storage::{UserRef, Write};
use jid::BareJid;

use super::{Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module};
use crate::server::Server;

const STORE: &str = "private";

/// One private-storage element that is read and written through another module.
#[async_trait]
pub trait PrivateView: Send + Sync {
    /// (name, namespace) of the element.
    fn element(&self) -> (&'static str, &'static str);
    /// Disco features of accounts that the view brings.
    fn account_features(&self) -> &'static [&'static str];
    async fn get(&self, server: &Server, owner: &BareJid) -> Result<Element, StanzaError>;
    async fn set(&self, server: &Server, owner: &BareJid, el: &Element) -> Result<(), StanzaError>;
}

pub struct PrivateStorage {
    views: Vec<Box<dyn PrivateView>>,
}

impl PrivateStorage {
    /// Private storage with every view the server has.
    pub fn standard() -> Self {
        PrivateStorage { views: vec![Box::new(super::bookmarks::Bookmarks)] }
    }

    fn view(&self, el: &Element) -> Option<&dyn PrivateView> {
        self.views.iter().find(|v| v.element() == (el.name(), el.ns())).map(|v| v.as_ref())
    }
}

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
        for view in &self.views {
            host.account_features(view.account_features());
        }
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
            if payload.children().next().is_none() {
                return Err(StanzaError::bad_request());
            }
            // Every element is checked before anything is written.
            let items: Vec<(String, Vec<u8>)> = payload
                .children()
                .filter(|c| self.view(c).is_none())
                .map(|c| Ok((key(c)?, c.to_bytes())))
                .collect::<Result<_, StanzaError>>()?;
            for c in payload.children() {
                if let Some(view) = self.view(c) {
                    view.set(cx.server, &owner, c).await?;
                }
            }
            if items.is_empty() {
                return Ok(None);
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
        if let Some(view) = self.view(wanted) {
            return Ok(Some(Element::new("query", ns::PRIVATE).with_child(view.get(cx.server, &owner).await?)));
        }
        let stored = cx.server.store.map_get(u, STORE, &key(wanted)?).await.map_err(internal)?;
        let found = stored.and_then(|raw| reader::parse_element(&raw, &Limits::unlimited()).ok()).unwrap_or_else(|| wanted.clone());
        Ok(Some(Element::new("query", ns::PRIVATE).with_child(found)))
    }
}
