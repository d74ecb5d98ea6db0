//! The session registry: which sessions are bound to which JIDs, with the presence state
//! that message routing needs (RFC 6121 §8.5). Routing itself is [`crate::routing`].
//!
//! Sessions are addressed by bare JID (`user@domain`, normalized) and resource. The
//! registry only holds handles; a session's stanzas reach it through its mailbox, so
//! delivering never blocks on a slow connection. A cluster would put this interface in
//! front of a shared store; callers never learn whether a session is local.

use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use jabberwock_proto::{Stanza, StreamError, StreamErrorCondition};
use futures_channel::mpsc;

/// Identifies one connection for the lifetime of the process.
pub type ConnId = u64;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

pub fn next_conn_id() -> ConnId {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// What a session's mailbox receives.
#[derive(Debug)]
pub enum Routed {
    /// A stanza to write to the client as it is. Boxed: every idle session's mailbox
    /// holds one empty queue node the size of this enum.
    Stanza(Box<Stanza>),
    /// Close the stream with this error: a newer session took the resource (`conflict`),
    /// the account was deleted, or the server is shutting down.
    Close(StreamError),
    /// Another connection resumed this session (XEP-0198): let go of this connection and
    /// park the session so the new one can take it.
    Detach,
    /// A stanza kept in storage until its client has it: its receipt is told once the
    /// client acknowledged it (XEP-0198) or, without stream management, once it was
    /// written. Boxed together, like `Stanza`.
    Stored(Box<(Stanza, Receipt)>),
}

/// What the session tells the store a stanza came from once the client has it. Dropped
/// without [`Receipt::delivered`] (the session ended first), the stanza stays stored.
pub struct Receipt(Box<dyn FnOnce() + Send + Sync>);

impl Receipt {
    pub fn new(delivered: impl FnOnce() + Send + Sync + 'static) -> Self {
        Receipt(Box::new(delivered))
    }

    pub fn delivered(self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receipt")
    }
}

/// The receiving end of a session's mailbox. futures' unbounded channel allocates per
/// message and almost nothing up front; tokio's reserves a block of 32 slots and two
/// cache-padded halves, about 2 KiB, in every idle session.
pub type Mailbox = mpsc::UnboundedReceiver<Routed>;

/// A new mailbox: the handle that routes to it, and its receiving end. The session may
/// hold at most `max_output_bytes` of output for its client.
pub fn mailbox(conn: ConnId, max_output_bytes: usize, overflows: Counter) -> (SessionHandle, Mailbox) {
    let (tx, rx) = mpsc::unbounded();
    let budget = Arc::new(OutputBudget { held: AtomicUsize::new(0), max: max_output_bytes, overflowed: AtomicBool::new(false), overflows });
    (SessionHandle { conn, tx, budget }, rx)
}

/// What holding a stanza for a client costs, in bytes: its serialized size and its place
/// in a queue.
pub fn output_cost(st: &Stanza) -> usize {
    st.serialized_len() + std::mem::size_of::<Stanza>()
}

/// The bytes of output a session holds for its client, shared by its handle, which
/// counts stanzas into the mailbox, and the session, which releases them once written or
/// acknowledged. One counter for the mailbox, the write in progress and the XEP-0198
/// queue, so a client that stops reading holds a bounded amount of memory.
#[derive(Debug)]
pub struct OutputBudget {
    held: AtomicUsize,
    max: usize,
    /// A stanza was refused: the session has been told to close.
    overflowed: AtomicBool,
    /// Where sessions whose output overflowed are counted (`limits.max_session_output_bytes` hits).
    overflows: Counter,
}

impl OutputBudget {
    /// Counts `cost` bytes if they fit under the bound.
    fn try_charge(&self, cost: usize) -> bool {
        let before = self.held.fetch_add(cost, Ordering::Relaxed);
        if before + cost > self.max {
            self.held.fetch_sub(cost, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Counts output the session produced itself (its replies, in its XEP-0198 queue),
    /// which is never refused.
    pub fn charge(&self, cost: usize) {
        self.held.fetch_add(cost, Ordering::Relaxed);
    }

    pub fn release(&self, cost: usize) {
        self.held.fetch_sub(cost, Ordering::Relaxed);
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub conn: ConnId,
    tx: mpsc::UnboundedSender<Routed>,
    pub budget: Arc<OutputBudget>,
}

impl SessionHandle {
    /// Queues a control message (close, detach) for the session; false if it has already
    /// gone. Control messages are not counted against the output bound.
    pub fn send(&self, r: Routed) -> bool {
        self.tx.unbounded_send(r).is_ok()
    }

    /// Queues a stanza from storage for the session, with the receipt that tells the store
    /// when the client has it; false (the receipt dropped) if the session is gone. Never
    /// refused for the output bound: the caller bounds what it hands over at once.
    pub fn deliver_stored(&self, st: Stanza, receipt: Receipt) -> bool {
        let cost = output_cost(&st);
        self.budget.charge(cost);
        if self.tx.unbounded_send(Routed::Stored(Box::new((st, receipt)))).is_err() {
            self.budget.release(cost);
            return false;
        }
        true
    }

    /// Queues a stanza for the session. It comes back if the session is gone or holds too
    /// much output already; the caller then routes it as undeliverable. The first refusal
    /// also closes the session, as Prosody and ejabberd close a client whose output piles
    /// up: a client that does not keep up would otherwise miss stanzas without knowing.
    /// Presence, pushes and copies that come back are dropped, since that session ends.
    pub fn deliver(&self, st: Stanza) -> Result<(), Stanza> {
        let cost = output_cost(&st);
        if !self.budget.try_charge(cost) {
            if !self.budget.overflowed.swap(true, Ordering::Relaxed) {
                self.budget.overflows.inc();
                let err = StreamError::with_text(StreamErrorCondition::PolicyViolation, "too much output waiting for the client");
                self.send(Routed::Close(err));
            }
            return Err(st);
        }
        match self.tx.unbounded_send(Routed::Stanza(Box::new(st))).map_err(|e| e.into_inner()) {
            Ok(()) => Ok(()),
            Err(Routed::Stanza(st)) => {
                self.budget.release(cost);
                Err(*st)
            }
            Err(_) => unreachable!("a stanza was sent"),
        }
    }
}

/// One bound resource as routing sees it.
#[derive(Clone, Debug)]
pub struct Resource {
    pub resource: String,
    pub handle: SessionHandle,
    /// Has sent available presence and not yet unavailable.
    pub available: bool,
    pub priority: i8,
    /// The last available presence broadcast, answered to probes. Shared, so listing an
    /// account's resources (on every message) copies no stanza.
    pub presence: Option<std::sync::Arc<Stanza>>,
    /// Has requested the roster, so it gets roster pushes and subscription requests.
    pub interested: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum BindError {
    TooManyResources,
}

#[derive(Default)]
pub struct SessionRegistry {
    users: RwLock<HashMap<String, Vec<Resource>>>,
}

impl SessionRegistry {
    /// Binds `bare/resource` to a session. A session already bound to the same full JID is
    /// returned so the caller can close it with `conflict` (RFC 6120 §7.7.2.2).
    pub fn bind(
        &self,
        bare: &str,
        resource: &str,
        handle: SessionHandle,
        max_resources: usize,
    ) -> Result<Option<SessionHandle>, BindError> {
        let mut users = self.users.write().expect("registry lock");
        // Most accounts have one resource: no room for four in every entry.
        let list = users.entry(bare.to_owned()).or_insert_with(|| Vec::with_capacity(1));
        let new = Resource {
            resource: resource.to_owned(),
            handle,
            available: false,
            priority: 0,
            presence: None,
            interested: false,
        };
        if let Some(existing) = list.iter_mut().find(|r| r.resource == resource) {
            let old = std::mem::replace(existing, new);
            return Ok(Some(old.handle));
        }
        if list.len() >= max_resources {
            return Err(BindError::TooManyResources);
        }
        list.push(new);
        Ok(None)
    }

    /// Removes the binding if it still belongs to connection `conn`.
    pub fn unbind(&self, bare: &str, resource: &str, conn: ConnId) {
        let mut users = self.users.write().expect("registry lock");
        if let Some(list) = users.get_mut(bare) {
            list.retain(|r| !(r.resource == resource && r.handle.conn == conn));
            if list.is_empty() {
                users.remove(bare);
            }
        }
    }

    fn update(&self, bare: &str, resource: &str, conn: ConnId, f: impl FnOnce(&mut Resource)) {
        let mut users = self.users.write().expect("registry lock");
        if let Some(r) = users
            .get_mut(bare)
            .and_then(|list| list.iter_mut().find(|r| r.resource == resource && r.handle.conn == conn))
        {
            f(r);
        }
    }

    /// Records the resource's broadcast presence: `Some((priority, stanza))` while
    /// available, `None` once unavailable.
    pub fn set_presence(&self, bare: &str, resource: &str, conn: ConnId, presence: Option<(i8, Stanza)>) {
        self.update(bare, resource, conn, |r| {
            r.available = presence.is_some();
            r.priority = presence.as_ref().map_or(0, |p| p.0);
            r.presence = presence.map(|p| std::sync::Arc::new(p.1));
        });
    }

    /// Changes whatever resource is bound at `bare/resource` now.
    fn with_resource(&self, bare: &str, resource: &str, f: impl FnOnce(&mut Resource)) {
        let mut users = self.users.write().expect("registry lock");
        if let Some(r) = users.get_mut(bare).and_then(|list| list.iter_mut().find(|r| r.resource == resource)) {
            f(r);
        }
    }

    /// Marks the resource as having requested its roster.
    pub fn set_interested(&self, bare: &str, resource: &str) {
        self.with_resource(bare, resource, |r| r.interested = true);
    }

    pub fn get(&self, bare: &str, resource: &str) -> Option<SessionHandle> {
        let users = self.users.read().expect("registry lock");
        users.get(bare)?.iter().find(|r| r.resource == resource).map(|r| r.handle.clone())
    }

    /// Every bound resource of the account.
    pub fn resources(&self, bare: &str) -> Vec<Resource> {
        let users = self.users.read().expect("registry lock");
        users.get(bare).cloned().unwrap_or_default()
    }

    /// Every account with a bound resource, and its resources: a copy, for administration.
    pub fn all(&self) -> Vec<(String, Vec<Resource>)> {
        let users = self.users.read().expect("registry lock");
        users.iter().map(|(bare, list)| (bare.clone(), list.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> (SessionHandle, Mailbox) {
        mailbox(next_conn_id(), 1 << 20, Counter::default())
    }

    fn message(body_bytes: usize) -> Stanza {
        let el = jabberwock_proto::Element::new("message", jabberwock_proto::ns::CLIENT)
            .with_child(jabberwock_proto::Element::new("body", jabberwock_proto::ns::CLIENT).with_text("x".repeat(body_bytes)));
        Stanza::from_element(&el)
    }

    #[test]
    fn a_mailbox_over_its_bound_refuses_stanzas_and_closes_the_session() {
        let (h, mut rx) = mailbox(next_conn_id(), 10_000, Counter::default());
        let st = message(4000);
        let cost = output_cost(&st);
        assert!(h.deliver(st.clone()).is_ok());
        assert!(h.deliver(st.clone()).is_ok());
        assert_eq!(h.deliver(st.clone()), Err(st.clone()), "a third would exceed the bound");
        assert_eq!(h.deliver(st.clone()), Err(st.clone()));
        // Queued: the two stanzas and one close, however many were refused.
        let queued: Vec<Routed> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(matches!(queued.as_slice(), [Routed::Stanza(_), Routed::Stanza(_), Routed::Close(_)]), "{queued:?}");
        // Released bytes make room again.
        h.budget.release(cost);
        assert!(h.deliver(st.clone()).is_ok());
        h.budget.release(2 * cost);
        drop(rx);
        assert_eq!(h.deliver(st.clone()), Err(st), "a session that is gone refuses too");
    }

    #[test]
    fn rebinding_a_resource_returns_the_old_session() {
        let r = SessionRegistry::default();
        let (a, _ra) = handle();
        let (b, _rb) = handle();
        assert!(r.bind("u@d", "phone", a.clone(), 5).unwrap().is_none());
        let old = r.bind("u@d", "phone", b.clone(), 5).unwrap().unwrap();
        assert_eq!(old.conn, a.conn);
        // The replaced session's unbind must not remove the new one.
        r.unbind("u@d", "phone", a.conn);
        assert_eq!(r.get("u@d", "phone").unwrap().conn, b.conn);
        r.unbind("u@d", "phone", b.conn);
        assert!(r.resources("u@d").is_empty());
    }

    #[test]
    fn resource_limit() {
        let r = SessionRegistry::default();
        let (a, _ra) = handle();
        r.bind("u@d", "1", a.clone(), 1).unwrap();
        assert!(matches!(r.bind("u@d", "2", a, 1), Err(BindError::TooManyResources)));
    }
}
