//! The session registry: which sessions are bound to which JIDs, with the presence state
//! that message routing needs (RFC 6121 §8.5). Routing itself is [`crate::routing`].
//!
//! Sessions are addressed by bare JID (`user@domain`, normalized) and resource. The
//! registry only holds handles; a session's stanzas reach it through its mailbox, so
//! delivering never blocks on a slow connection. Callers never learn whether a session
//! is local: in a cluster the registry is a mirror of the whole cluster's sessions, and a
//! handle to a session on another node forwards to that node ([`crate::cluster`]). Reads
//! stay synchronous and in memory, since routing reads for every stanza; changes go to
//! the shared registry in Redis first and come back to every node as events.

use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use jabberwock_proto::{Stanza, StreamError, StreamErrorCondition};
use futures_channel::mpsc;

use crate::cluster::{Cluster, RemoteSession};

/// Identifies one connection. In a cluster, unique across nodes as well (see
/// [`seed_conn_ids`]).
pub type ConnId = u64;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

pub fn next_conn_id() -> ConnId {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// Starts this process's connection ids at a random point, so that ids from different
/// nodes of a cluster do not collide in the mirror. Below 2^53: they pass through JSON.
pub fn seed_conn_ids() {
    let start = (rand::random::<u32>() as u64 & 0x1f_ffff) << 32 | 1;
    NEXT_CONN.store(start, Ordering::Relaxed);
}

/// The stream error of a session whose resource a newer session took (RFC 6120 §7.7.2.2).
pub fn replaced() -> StreamError {
    StreamError::with_text(StreamErrorCondition::Conflict, "replaced by a new connection for the same resource")
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
    (SessionHandle { conn, tx: Target::Local(tx), budget: OutputBudget::new(max_output_bytes, overflows) }, rx)
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
    pub fn new(max: usize, overflows: Counter) -> Arc<OutputBudget> {
        Arc::new(OutputBudget { held: AtomicUsize::new(0), max, overflowed: AtomicBool::new(false), overflows })
    }

    /// Counts `cost` bytes if they fit under the bound.
    pub(crate) fn try_charge(&self, cost: usize) -> bool {
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

    /// The bytes counted now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Counts a refusal of the bound.
    pub(crate) fn overflowed(&self) {
        self.overflows.inc();
    }
}

/// Where a handle's stanzas go.
#[derive(Clone, Debug)]
enum Target {
    /// The mailbox of a session of this process.
    Local(mpsc::UnboundedSender<Routed>),
    /// A session on another node of the cluster.
    Remote(Arc<RemoteSession>),
}

#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub conn: ConnId,
    tx: Target,
    /// The session's output bound; for a session on another node, the bound of what
    /// waits to be forwarded to that node.
    pub budget: Arc<OutputBudget>,
}

impl SessionHandle {
    /// A handle that forwards to session `conn` on another node.
    pub(crate) fn remote(conn: ConnId, remote: Arc<RemoteSession>) -> SessionHandle {
        let budget = remote.budget();
        SessionHandle { conn, tx: Target::Remote(remote), budget }
    }

    /// The session runs in this process.
    pub fn is_local(&self) -> bool {
        matches!(self.tx, Target::Local(_))
    }

    /// The node the session runs on, if it is another one.
    pub fn node(&self) -> Option<&str> {
        match &self.tx {
            Target::Local(_) => None,
            Target::Remote(remote) => Some(remote.node()),
        }
    }

    /// Queues a control message (close, detach) for the session; false if it has already
    /// gone. Control messages are not counted against the output bound. Only `Close`
    /// reaches a session on another node.
    pub fn send(&self, r: Routed) -> bool {
        match &self.tx {
            Target::Local(tx) => tx.unbounded_send(r).is_ok(),
            Target::Remote(remote) => match r {
                Routed::Close(e) => remote.close(self.conn, &e),
                _ => false,
            },
        }
    }

    /// Queues a stanza from storage for the session, with the receipt that tells the store
    /// when the client has it; false (the receipt dropped) if the session is gone. Never
    /// refused for the output bound: the caller bounds what it hands over at once. Stored
    /// stanzas are handed to sessions of this process only: forwarding is at most once.
    pub fn deliver_stored(&self, st: Stanza, receipt: Receipt) -> bool {
        let Target::Local(tx) = &self.tx else { return false };
        let cost = output_cost(&st);
        self.budget.charge(cost);
        if tx.unbounded_send(Routed::Stored(Box::new((st, receipt)))).is_err() {
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
    /// For a session on another node, it comes back when too much waits to be forwarded
    /// to that node; nothing is closed then.
    pub fn deliver(&self, st: Stanza) -> Result<(), Stanza> {
        let tx = match &self.tx {
            Target::Local(tx) => tx,
            Target::Remote(remote) => return remote.forward(st),
        };
        let cost = output_cost(&st);
        if !self.budget.try_charge(cost) {
            if !self.budget.overflowed.swap(true, Ordering::Relaxed) {
                self.budget.overflows.inc();
                let err = StreamError::with_text(StreamErrorCondition::PolicyViolation, "too much output waiting for the client");
                self.send(Routed::Close(err));
            }
            return Err(st);
        }
        match tx.unbounded_send(Routed::Stanza(Box::new(st))).map_err(|e| e.into_inner()) {
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
    pub presence: Option<Arc<Stanza>>,
    /// Has requested the roster, so it gets roster pushes and subscription requests.
    pub interested: bool,
    /// What modules turned on for this session ([`SessionRegistry::set_feature`]).
    pub features: Option<Arc<[String]>>,
    /// In a cluster, the binding's place in the order Redis bound resources in; 0 alone.
    pub seq: u64,
}

impl Resource {
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.as_deref().is_some_and(|f| f.iter().any(|x| x == feature))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum BindError {
    TooManyResources,
}

#[derive(Default)]
pub struct SessionRegistry {
    users: RwLock<HashMap<String, Vec<Resource>>>,
    /// Set in cluster mode: where changes are shared with the other nodes.
    cluster: OnceLock<Arc<Cluster>>,
}

impl SessionRegistry {
    /// Shares this registry with the cluster from now on.
    pub(crate) fn join(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    pub(crate) fn cluster(&self) -> Option<Arc<Cluster>> {
        self.cluster.get().cloned()
    }

    /// Binds `bare/resource` to a session. A session already bound to the same full JID is
    /// returned so the caller can close it with `conflict` (RFC 6120 §7.7.2.2), wherever
    /// it runs. In a cluster, the check and the limit cover every node.
    pub async fn bind(
        &self,
        bare: &str,
        resource: &str,
        handle: SessionHandle,
        max_resources: usize,
    ) -> Result<Option<SessionHandle>, BindError> {
        let mut new = Resource {
            resource: resource.to_owned(),
            handle,
            available: false,
            priority: 0,
            presence: None,
            interested: false,
            features: None,
            seq: 0,
        };
        // In a cluster, Redis counts the resources of every node (the mirror may lag); with
        // Redis out of reach, the mirror counts.
        let (replaced, local_max) = match self.cluster.get() {
            Some(c) => match c.bind(bare, &new, max_resources).await? {
                Some((seq, replaced)) => {
                    new.seq = seq;
                    (replaced, usize::MAX)
                }
                None => (None, max_resources),
            },
            None => (None, max_resources),
        };
        let local = self.bind_here(bare, new, local_max)?;
        Ok(replaced.or(local))
    }

    /// Puts `new` in the map; over `max_resources`, refused.
    fn bind_here(&self, bare: &str, new: Resource, max_resources: usize) -> Result<Option<SessionHandle>, BindError> {
        let mut users = self.users.write().expect("registry lock");
        // Most accounts have one resource: no room for four in every entry.
        let list = users.entry(bare.to_owned()).or_insert_with(|| Vec::with_capacity(1));
        if let Some(existing) = list.iter_mut().find(|r| r.resource == new.resource) {
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
    pub async fn unbind(&self, bare: &str, resource: &str, conn: ConnId) {
        self.remove_here(bare, resource, conn);
        if let Some(c) = self.cluster.get() {
            c.unbind(bare, resource, conn).await;
        }
    }

    fn remove_here(&self, bare: &str, resource: &str, conn: ConnId) {
        let mut users = self.users.write().expect("registry lock");
        if let Some(list) = users.get_mut(bare) {
            list.retain(|r| !(r.resource == resource && r.handle.conn == conn));
            if list.is_empty() {
                users.remove(bare);
            }
        }
    }

    /// Changes the resource if it still belongs to connection `conn`, and shares the change.
    async fn update(&self, bare: &str, resource: &str, conn: ConnId, f: impl FnOnce(&mut Resource)) {
        let changed = {
            let mut users = self.users.write().expect("registry lock");
            let found = users.get_mut(bare).and_then(|list| list.iter_mut().find(|r| r.resource == resource && r.handle.conn == conn));
            found.map(|r| {
                f(r);
                r.clone()
            })
        };
        if let (Some(c), Some(r)) = (self.cluster.get(), changed) {
            c.update(bare, &r).await;
        }
    }

    /// Records the resource's broadcast presence: `Some((priority, stanza))` while
    /// available, `None` once unavailable.
    pub async fn set_presence(&self, bare: &str, resource: &str, conn: ConnId, presence: Option<(i8, Stanza)>) {
        self.update(bare, resource, conn, |r| {
            r.available = presence.is_some();
            r.priority = presence.as_ref().map_or(0, |p| p.0);
            r.presence = presence.map(|p| Arc::new(p.1));
        })
        .await;
    }

    /// Marks the resource as having requested its roster.
    pub async fn set_interested(&self, bare: &str, resource: &str, conn: ConnId) {
        self.update(bare, resource, conn, |r| r.interested = true).await;
    }

    /// Turns a feature a module keeps per session (a namespace, such as carbons') on or
    /// off, so that every node sees it.
    pub async fn set_feature(&self, bare: &str, resource: &str, conn: ConnId, feature: &str, on: bool) {
        self.update(bare, resource, conn, |r| {
            let mut features: Vec<String> = r.features.as_deref().unwrap_or_default().iter().filter(|f| *f != feature).cloned().collect();
            if on {
                features.push(feature.to_owned());
            }
            r.features = (!features.is_empty()).then(|| features.into());
        })
        .await;
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

    /// The resources of this process, for registering them again with the cluster.
    pub(crate) fn local(&self) -> Vec<(String, Resource)> {
        let users = self.users.read().expect("registry lock");
        users.iter().flat_map(|(bare, list)| list.iter().filter(|r| r.handle.is_local()).map(|r| (bare.clone(), r.clone()))).collect()
    }

    /// Records the sequence number Redis gave a binding of this process when it was
    /// registered again (Redis may have restarted, and numbers from the start).
    pub(crate) fn renumber(&self, bare: &str, resource: &str, conn: ConnId, seq: u64) {
        let mut users = self.users.write().expect("registry lock");
        if let Some(r) = users.get_mut(bare).and_then(|list| list.iter_mut().find(|r| r.resource == resource && r.handle.conn == conn)) {
            r.seq = seq;
        }
    }

    /// The mirror: another node bound, changed (`Some`) or unbound (`None`) a resource.
    /// A session of this process replaced by one elsewhere is forgotten here; it is being
    /// closed with `conflict`.
    pub(crate) fn mirror(&self, bare: &str, resource: &str, conn: ConnId, entry: Option<Resource>) {
        let mut users = self.users.write().expect("registry lock");
        match entry {
            Some(new) => {
                let list = users.entry(bare.to_owned()).or_insert_with(|| Vec::with_capacity(1));
                match list.iter_mut().find(|r| r.resource == resource) {
                    // An event that arrives after a newer binding changes nothing.
                    Some(existing) if existing.seq > new.seq => {}
                    Some(existing) => {
                        if existing.handle.is_local() && existing.handle.conn != new.handle.conn {
                            // The node that took the resource tells this session too; whichever
                            // comes first closes it, as the routing to it ends here.
                            existing.handle.send(Routed::Close(replaced()));
                        }
                        *existing = new;
                    }
                    None => list.push(new),
                }
            }
            None => {
                if let Some(list) = users.get_mut(bare) {
                    list.retain(|r| !(r.resource == resource && r.handle.conn == conn));
                    if list.is_empty() {
                        users.remove(bare);
                    }
                }
            }
        }
    }

    /// The mirror: drops the other nodes' resources that `keep` refuses, and adds `remote`
    /// (read from Redis after a reconnect) where this process has nothing bound.
    pub(crate) fn replace_remote(&self, remote: Vec<(String, Resource)>, keep: impl Fn(&Resource) -> bool) {
        let mut users = self.users.write().expect("registry lock");
        users.retain(|_, list| {
            list.retain(|r| r.handle.is_local() || keep(r));
            !list.is_empty()
        });
        for (bare, r) in remote {
            let list = users.entry(bare).or_default();
            if !list.iter().any(|l| l.resource == r.resource) {
                list.push(r);
            }
        }
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

    #[tokio::test]
    async fn rebinding_a_resource_returns_the_old_session() {
        let r = SessionRegistry::default();
        let (a, _ra) = handle();
        let (b, _rb) = handle();
        assert!(r.bind("u@d", "phone", a.clone(), 5).await.unwrap().is_none());
        let old = r.bind("u@d", "phone", b.clone(), 5).await.unwrap().unwrap();
        assert_eq!(old.conn, a.conn);
        // The replaced session's unbind must not remove the new one.
        r.unbind("u@d", "phone", a.conn).await;
        assert_eq!(r.get("u@d", "phone").unwrap().conn, b.conn);
        r.unbind("u@d", "phone", b.conn).await;
        assert!(r.resources("u@d").is_empty());
    }

    #[tokio::test]
    async fn resource_limit() {
        let r = SessionRegistry::default();
        let (a, _ra) = handle();
        r.bind("u@d", "1", a.clone(), 1).await.unwrap();
        assert!(matches!(r.bind("u@d", "2", a, 1).await, Err(BindError::TooManyResources)));
    }

    fn resource(name: &str, handle: SessionHandle, seq: u64) -> Resource {
        Resource { resource: name.to_owned(), handle, available: true, priority: 0, presence: None, interested: false, features: None, seq }
    }

    #[tokio::test]
    async fn the_mirror_keeps_the_newest_binding_and_drops_only_the_unbound_connection() {
        let r = SessionRegistry::default();
        let (a, _ra) = handle();
        let (b, _rb) = handle();
        let (c, _rc) = handle();
        r.mirror("u@d", "phone", b.conn, Some(resource("phone", b.clone(), 7)));
        // An event older than the binding it would replace arrives late: ignored.
        r.mirror("u@d", "phone", a.conn, Some(resource("phone", a.clone(), 5)));
        assert_eq!(r.get("u@d", "phone").unwrap().conn, b.conn);
        // The unbinding of a replaced connection leaves its successor.
        r.mirror("u@d", "phone", c.conn, Some(resource("phone", c.clone(), 9)));
        r.mirror("u@d", "phone", b.conn, None);
        assert_eq!(r.get("u@d", "phone").unwrap().conn, c.conn);
        r.mirror("u@d", "phone", c.conn, None);
        assert!(r.resources("u@d").is_empty());
    }
}
