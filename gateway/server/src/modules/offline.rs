//! XEP-0160 offline messages: stored durably before the sender moves on, within a quota
//! in messages and bytes per user, and delivered in order with a XEP-0203 delay stamp
//! when the user next sends available presence with a non-negative priority.

use async_trait::async_trait;
use jabberwock_proto::{ns, reader, Element, Limits, Stanza, StanzaError};
use jabberwock_storage::{ArchiveDelete, ArchiveQuery, NewArchiveItem, Quota, StorageError, UserRef};
use jid::{BareJid, Jid};

use super::{Available, Host, MessageHooks, Module, PresenceHooks};
use crate::server::Server;
use crate::stanzas::{random_id, xep0082};

const STORE: &str = "offline";

pub struct Offline;

impl Module for Offline {
    fn register(self: std::sync::Arc<Self>, host: &mut Host) {
        host.message_hooks(self.clone());
        host.presence_hooks(self);
    }
}

#[async_trait]
impl MessageHooks for Offline {
    async fn store_offline(&self, server: &Server, to: &BareJid, st: &Stanza) -> Option<Result<(), StanzaError>> {
        if !worth_keeping(st) {
            // Dropped, as those XEPs ask: a stale "is typing" replayed at login misleads.
            return Some(Ok(()));
        }
        Some(store(server, to, st).await)
    }
}

/// XEP-0085 §5.5 and XEP-0334 §4.2: a message that is only a chat state, or that asks
/// not to be stored, is not kept for later.
fn worth_keeping(st: &Stanza) -> bool {
    let inner = st.inner();
    let hinted = inner.contains(ns::HINTS) && st.to_element().is_ok_and(|el| el.child("no-store", ns::HINTS).is_some());
    let chat_state_only = inner.contains(ns::CHATSTATES)
        && st.to_element().is_ok_and(|el| el.children().all(|c| c.ns() == ns::CHATSTATES || c.is("thread", ns::CLIENT)));
    !hinted && !chat_state_only
}

#[async_trait]
impl PresenceHooks for Offline {
    async fn available(&self, ev: &mut Available<'_>) {
        if ev.initial && ev.priority >= 0 {
            let user = ev.jid.node().map_or("", |n| n.as_str());
            ev.out.extend(take_all(ev.server, ev.jid.domain().as_str(), user).await);
        }
    }
}

/// Stores a message for the existing account `to`.
async fn store(server: &Server, to: &BareJid, st: &Stanza) -> Result<(), StanzaError> {
    let (Some(node), domain) = (to.node(), to.domain().as_str()) else {
        return Err(StanzaError::service_unavailable());
    };
    let u = UserRef { host: domain, user: node.as_str() };
    let mut el = st.to_element().map_err(|_| StanzaError::bad_request())?;
    let now = time::OffsetDateTime::now_utc();
    el.push(Element::new("delay", ns::DELAY).with_attr("from", domain).with_attr("stamp", xep0082(now)).with_text("Offline storage"));
    let payload = Stanza::from_element(&el).to_bytes();
    let with = st.from().and_then(|f| Jid::new(f).ok()).map(|j| j.to_bare().to_string()).unwrap_or_default();
    let stamp_us = (now.unix_timestamp_nanos() / 1000) as i64;
    let item = NewArchiveItem { id: &random_id(), stamp_us, with: &with, payload: &payload };
    let limits = &server.config.limits;
    let quota = Quota { items: limits.offline_quota, bytes: limits.offline_quota_bytes };
    match server.store.archive_append(u, STORE, item, Some(quota)).await {
        Ok(()) => Ok(()),
        Err(StorageError::QuotaExceeded) => Err(StanzaError::service_unavailable().with_text("the recipient's offline storage is full")),
        Err(e) => {
            tracing::error!(error = %e, "storing an offline message failed");
            Err(StanzaError::internal_server_error())
        }
    }
}

/// Takes every stored message for the user, oldest first. They are deleted only after
/// they were read, so a failure leaves them stored.
async fn take_all(server: &Server, host: &str, user: &str) -> Vec<Stanza> {
    let u = UserRef { host, user };
    let page = match server.store.archive_query(u, STORE, &ArchiveQuery::default()).await {
        Ok(page) => page,
        Err(e) => {
            tracing::error!(error = %e, "reading offline messages failed");
            return Vec::new();
        }
    };
    if page.items.is_empty() {
        return Vec::new();
    }
    let ids: Vec<&str> = page.items.iter().map(|i| i.id.as_str()).collect();
    if let Err(e) = server.store.archive_delete(u, STORE, ArchiveDelete::Ids(&ids)).await {
        tracing::error!(error = %e, "deleting delivered offline messages failed");
        return Vec::new();
    }
    page.items.iter().filter_map(|i| reader::parse_stanza(&i.payload, &Limits::unlimited()).ok()).collect()
}
