//! XEP-0191 blocking command: an account's blocklist, pushed to its resources, and
//! enforced on every routed stanza in both directions.

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, Stanza, StanzaError, StanzaKind};
use jabberwock_storage::{UserRef, Write};
use jid::{BareJid, Jid};

use super::{AccountHooks, Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module, StanzaFilter, Verdict};
use crate::cache::AccountCache;
use crate::im::roster::Account;
use crate::server::Server;
use crate::stanzas::random_id;

const STORE: &str = "blocklist";

/// Blocklists are kept in memory, loaded on first use, so routing rarely waits on
/// storage.
pub struct Blocking {
    lists: AccountCache<Arc<Vec<String>>>,
}

impl Blocking {
    pub fn new(limits: &crate::config::LimitsConfig) -> Self {
        Blocking { lists: AccountCache::new(limits.account_cache()) }
    }

    /// How many accounts' blocklists are in memory.
    pub fn cached_lists(&self) -> usize {
        self.lists.len()
    }

    async fn list(&self, server: &Server, owner: &BareJid) -> Arc<Vec<String>> {
        let Some(a) = Account::of(owner) else { return Arc::default() };
        self.lists
            .get_or_load(owner.as_str(), || async {
                let items = server.store.map_all(UserRef { host: a.host, user: a.user }, STORE).await.unwrap_or_default();
                Arc::new(items.into_iter().map(|(k, _)| k).collect())
            })
            .await
    }

    /// Whether the local account `owner` blocks `other`.
    async fn blocks(&self, server: &Server, owner: &BareJid, other: &Jid) -> bool {
        if server.config.served_domain(owner.domain().as_str()).is_none() || owner.node().is_none() {
            return false;
        }
        self.list(server, owner).await.iter().any(|item| matches(item, other))
    }
}

/// RFC 6121-style matching: an item blocks a domain, a bare JID or one full JID.
fn matches(item: &str, other: &Jid) -> bool {
    item == other.as_str() || item == other.to_bare().as_str() || item == other.domain().as_str()
}

impl Module for Blocking {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.features(&[ns::BLOCKING]);
        host.iqs(
            &[
                IqRoute { target: IqTarget::Account, name: "blocklist", ns: ns::BLOCKING },
                IqRoute { target: IqTarget::Account, name: "block", ns: ns::BLOCKING },
                IqRoute { target: IqTarget::Account, name: "unblock", ns: ns::BLOCKING },
            ],
            self.clone(),
        );
        host.filter(self.clone());
        host.account_hooks(self);
    }
}

impl AccountHooks for Blocking {
    fn deleted(&self, account: &BareJid) {
        self.lists.forget(account.as_str());
    }

    fn changed_elsewhere(&self, account: &BareJid) {
        self.lists.forget(account.as_str());
    }
}

/// A stanza between two parties where either blocks the other goes nowhere. The blocking
/// sender learns why (§3.5); a blocked sender gets service-unavailable (§3.4), except for
/// presence, which is dropped.
#[async_trait]
impl StanzaFilter for Blocking {
    async fn filter(&self, server: &Server, st: &Stanza, from: &Jid, to: &Jid) -> Verdict {
        let presence = st.kind() == StanzaKind::Presence;
        let refuse = |e: StanzaError| if presence { Verdict::Drop } else { Verdict::Bounce(e) };
        if self.blocks(server, &from.to_bare(), to).await {
            return refuse(StanzaError::not_acceptable().with_app_condition(Element::new("blocked", ns::BLOCKING_ERRORS)));
        }
        if to.node().is_some() && self.blocks(server, &to.to_bare(), from).await {
            return refuse(StanzaError::service_unavailable());
        }
        Verdict::Pass
    }
}

#[async_trait]
impl IqHandler for Blocking {
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        let owner = cx.to.to_bare();
        if cx.from.to_bare() != owner {
            return Err(StanzaError::forbidden());
        }
        let a = Account::of(&owner).ok_or_else(StanzaError::bad_request)?;
        let item = |jid: &str| Element::new("item", ns::BLOCKING).with_attr("jid", jid);
        match (payload.name(), cx.set) {
            ("blocklist", false) => {
                let mut list = Element::new("blocklist", ns::BLOCKING);
                for jid in self.list(cx.server, &owner).await.iter() {
                    list.push(item(jid));
                }
                Ok(Some(list))
            }
            (kind @ ("block" | "unblock"), true) => {
                let mut jids = Vec::new();
                for i in payload.children().filter(|c| c.is("item", ns::BLOCKING)) {
                    let jid = i.attr("jid").and_then(|j| Jid::new(j).ok()).ok_or_else(StanzaError::jid_malformed)?;
                    jids.push(jid.to_string());
                }
                if kind == "block" && jids.is_empty() {
                    return Err(StanzaError::bad_request().with_text("block at least one JID"));
                }
                let u = UserRef { host: a.host, user: a.user };
                // Unblocking with no items clears the whole list.
                let targets = if kind == "unblock" && jids.is_empty() {
                    self.list(cx.server, &owner).await.to_vec()
                } else {
                    jids.clone()
                };
                if kind == "block" {
                    // The blocked contacts see us leave, while the blocklist still lets
                    // the presence through.
                    for jid in &jids {
                        crate::im::presence::send_unavailable(cx.server, &owner, jid).await;
                    }
                }
                let value: Option<&[u8]> = (kind == "block").then_some(&[]);
                let writes: Vec<Write<'_>> = targets.iter().map(|k| Write::Map { store: STORE, key: k, value }).collect();
                cx.server.store.write_batch(u, &writes).await.map_err(|e| {
                    tracing::error!(error = %e, "saving the blocklist failed");
                    StanzaError::internal_server_error()
                })?;
                self.lists.forget(owner.as_str());
                crate::cluster::account_changed(cx.server, &owner).await;
                push(cx.server, &owner, kind, &jids);
                Ok(None)
            }
            _ => Err(StanzaError::bad_request()),
        }
    }
}

/// XEP-0191 §3.3: every resource learns of the change.
fn push(server: &Server, owner: &BareJid, kind: &str, jids: &[String]) {
    let mut change = Element::new(kind, ns::BLOCKING);
    for jid in jids {
        change.push(Element::new("item", ns::BLOCKING).with_attr("jid", jid.as_str()));
    }
    for r in server.sessions.resources(owner.as_str()) {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", random_id())
            .with_attr("to", format!("{owner}/{}", r.resource))
            .with_child(change.clone());
        let _ = r.handle.deliver(Stanza::from_element(&iq));
    }
}
