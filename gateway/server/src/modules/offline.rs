//! XEP-0160 offline messages: stored durably before the sender moves on, within a quota
//! in messages and bytes per user, and delivered in order with a XEP-0203 delay stamp
//! when the user next sends available presence with a non-negative priority.
//!
//! Delivery goes a page at a time, and a message leaves storage only once its client has
//! it: acknowledged with XEP-0198, or written to the connection without it. A session
//! that ends before then leaves the rest stored for the next one, so delivery is at least
//! once: what was written but never acknowledged comes again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jabberwock_proto::{ns, reader, Element, Limits, Stanza, StanzaError};
use jabberwock_storage::{ArchiveDelete, ArchiveQuery, NewArchiveItem, Quota, StorageError, UserRef};
use jid::{BareJid, Jid};

use super::{Available, Host, MessageHooks, Module, PresenceHooks};
use crate::registry::{Receipt, SessionHandle};
use crate::server::Server;
use crate::stanzas::{random_id, xep0082};

const STORE: &str = "offline";
/// Most messages in one page of delivery.
const PAGE_ITEMS: usize = 100;

#[derive(Default)]
pub struct Offline {
    /// The delivery under way for each account, by number: a newer session's delivery
    /// replaces an older one's, which stops after its current page.
    deliveries: Mutex<HashMap<String, u64>>,
    next_delivery: AtomicU64,
}

impl Module for Offline {
    fn register(self: std::sync::Arc<Self>, host: &mut Host) {
        host.message_hooks(self.clone());
        host.presence_hooks(self);
    }
}

#[async_trait]
impl MessageHooks for Offline {
    async fn store_offline(&self, server: &std::sync::Arc<Server>, to: &BareJid, st: &Stanza) -> Option<Result<(), StanzaError>> {
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
        if !(ev.initial && ev.priority >= 0) {
            return;
        }
        let account = ev.jid.to_bare().to_string();
        let Some(handle) = ev.server.sessions.get(&account, ev.jid.resource().as_str()) else { return };
        let number = self.next_delivery.fetch_add(1, Ordering::Relaxed);
        self.deliveries.lock().expect("offline deliveries").insert(account.clone(), number);
        // The first page goes out with the presence's other answers, ahead of whatever the
        // client asks next; later pages through the session's mailbox.
        ev.stored.extend(read_page(Delivery { server: ev.server.clone(), account, number, handle }).await);
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
        Err(StorageError::QuotaExceeded) => {
            server.metrics.limit_hit(crate::metrics::Limit::OfflineQuota);
            Err(StanzaError::service_unavailable().with_text("the recipient's offline storage is full"))
        }
        Err(e) => {
            tracing::error!(error = %e, "storing an offline message failed");
            Err(StanzaError::internal_server_error())
        }
    }
}

/// One session's delivery of an account's stored messages.
#[derive(Clone)]
struct Delivery {
    server: Arc<Server>,
    /// `user@domain`.
    account: String,
    number: u64,
    handle: SessionHandle,
}

impl Delivery {
    fn is_current(&self) -> bool {
        let deliveries = self.module().deliveries.lock().expect("offline deliveries");
        deliveries.get(&self.account) == Some(&self.number)
    }

    fn end(&self) {
        let mut deliveries = self.module().deliveries.lock().expect("offline deliveries");
        if deliveries.get(&self.account) == Some(&self.number) {
            deliveries.remove(&self.account);
        }
    }

    fn module(&self) -> &Offline {
        self.server.modules.get::<Offline>().expect("offline delivery runs in the offline module")
    }

    fn user(&self) -> UserRef<'_> {
        let (user, host) = self.account.split_once('@').expect("accounts have a localpart");
        UserRef { host, user }
    }
}

/// The oldest stored messages, a page bounded in count and bytes, for the session. Each
/// carries a receipt; once every one was delivered, or the session ended, the page's
/// [`Drop`] deletes those delivered and sends the next page if there is one.
async fn read_page(delivery: Delivery) -> Vec<(Stanza, Receipt)> {
    // A quarter of the session's output bound: the page never crowds out other output.
    let max_bytes = delivery.server.config.limits.max_session_output_bytes / 4;
    let q = ArchiveQuery { limit: Some(PAGE_ITEMS), max_bytes: Some(max_bytes), ..Default::default() };
    let page = match delivery.server.store.archive_query(delivery.user(), STORE, &q).await {
        Ok(page) => page,
        Err(e) => {
            tracing::error!(error = %e, "reading offline messages failed");
            delivery.end();
            return Vec::new();
        }
    };
    if page.items.is_empty() {
        delivery.end();
        return Vec::new();
    }
    let pending = Arc::new(Page {
        items: page.items.len(),
        more: !page.complete,
        delivered: Mutex::new(Vec::new()),
        delivery,
    });
    let mut stanzas = Vec::with_capacity(page.items.len());
    for item in page.items {
        let Ok(st) = reader::parse_stanza(&item.payload, &Limits::unlimited()) else {
            // Unreadable: it counts as delivered, so it does not block the rest forever.
            pending.delivered.lock().expect("offline page").push(item.id);
            continue;
        };
        let page = pending.clone();
        stanzas.push((st, Receipt::new(move || page.delivered.lock().expect("offline page").push(item.id))));
    }
    stanzas
}

/// Reads the next page and hands it to the session's mailbox.
async fn send_page(delivery: Delivery) {
    let handle = delivery.handle.clone();
    for (st, receipt) in read_page(delivery).await {
        if !handle.deliver_stored(st, receipt) {
            break;
        }
    }
}

/// A page of stored messages in flight: what its receipts have confirmed so far.
struct Page {
    items: usize,
    /// Stored messages lie beyond it.
    more: bool,
    delivered: Mutex<Vec<String>>,
    delivery: Delivery,
}

impl Drop for Page {
    /// Every receipt is gone: each was delivered, or the session ended first.
    fn drop(&mut self) {
        let delivered = std::mem::take(self.delivered.get_mut().expect("offline page"));
        let complete = delivered.len() == self.items;
        let (delivery, more) = (self.delivery.clone(), self.more);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            if !delivered.is_empty() {
                let ids: Vec<&str> = delivered.iter().map(String::as_str).collect();
                if let Err(e) = delivery.server.store.archive_delete(delivery.user(), STORE, ArchiveDelete::Ids(&ids)).await {
                    // They stay stored and come again: at least once.
                    tracing::error!(error = %e, "deleting delivered offline messages failed");
                }
            }
            if complete && more && delivery.is_current() {
                send_page(delivery).await;
            } else {
                delivery.end();
            }
        });
    }
}
