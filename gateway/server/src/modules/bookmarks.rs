//! XEP-0402 PEP native bookmarks, and their `#compat` view as XEP-0048 bookmarks in
//! private XML storage (XEP-0049): clients of either kind see and edit the same list.
//!
//! The list itself lives in the account's PEP node `urn:xmpp:bookmarks:1`, one item per
//! room (the item id is the room's JID), which PEP serves as any node. Reading
//! `<storage xmlns='storage:bookmarks'/>` from private storage builds it from that node;
//! storing one publishes an item per conference (whitelist access, as many items as
//! needed) and retracts the rooms it no longer names, so PEP clients are notified.

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, StanzaError};
use jid::{BareJid, Jid};

use super::pep;
use super::private::PrivateView;
use crate::server::Server;

/// XEP-0402 §5: what a bookmark node is published with.
const NODE_OPTIONS: &[(&str, &str)] = &[("pubsub#access_model", "whitelist"), ("pubsub#max_items", "max"), ("pubsub#persist_items", "true")];

pub struct Bookmarks;

#[async_trait]
impl PrivateView for Bookmarks {
    fn element(&self) -> (&'static str, &'static str) {
        ("storage", ns::STORAGE_BOOKMARKS)
    }

    fn account_features(&self) -> &'static [&'static str] {
        &[ns::BOOKMARKS_COMPAT]
    }

    async fn get(&self, server: &Server, owner: &BareJid) -> Result<Element, StanzaError> {
        let mut storage = Element::new("storage", ns::STORAGE_BOOKMARKS);
        for item in pep::all_items(server, owner, ns::BOOKMARKS).await? {
            let (Some(jid), Some(c)) = (item.attr("id"), item.child("conference", ns::BOOKMARKS)) else { continue };
            let mut legacy = Element::new("conference", ns::STORAGE_BOOKMARKS).with_attr("jid", jid);
            if let Some(name) = c.attr("name") {
                legacy.set_attr("name", name);
            }
            legacy.set_attr("autojoin", if matches!(c.attr("autojoin"), Some("true" | "1")) { "true" } else { "false" });
            for child in ["nick", "password"] {
                if let Some(text) = c.child_text(child, ns::BOOKMARKS) {
                    legacy.push(Element::new(child, ns::STORAGE_BOOKMARKS).with_text(text));
                }
            }
            storage.push(legacy);
        }
        Ok(storage)
    }

    async fn set(&self, server: &Server, owner: &BareJid, storage: &Element) -> Result<(), StanzaError> {
        let mut named = Vec::new();
        for legacy in storage.children().filter(|c| c.is("conference", ns::STORAGE_BOOKMARKS)) {
            let jid = legacy.attr("jid").and_then(|j| Jid::new(j).ok()).ok_or_else(|| StanzaError::jid_malformed().with_text("a bookmark needs a room JID"))?;
            let room = jid.to_bare().to_string();
            let mut c = Element::new("conference", ns::BOOKMARKS)
                .with_attr("autojoin", if matches!(legacy.attr("autojoin"), Some("true" | "1")) { "true" } else { "false" });
            if let Some(name) = legacy.attr("name") {
                c.set_attr("name", name);
            }
            for child in ["nick", "password"] {
                if let Some(text) = legacy.child_text(child, ns::STORAGE_BOOKMARKS) {
                    c.push(Element::new(child, ns::BOOKMARKS).with_text(text));
                }
            }
            pep::publish_item(server, owner, ns::BOOKMARKS, &room, c, NODE_OPTIONS).await?;
            named.push(room);
        }
        let gone: Vec<String> = pep::all_items(server, owner, ns::BOOKMARKS)
            .await?
            .iter()
            .filter_map(|i| i.attr("id"))
            .filter(|id| !named.iter().any(|n| n == id))
            .map(str::to_owned)
            .collect();
        if !gone.is_empty() {
            pep::retract_items(server, owner, ns::BOOKMARKS, &gone).await?;
        }
        Ok(())
    }
}
