//! What lives on one node at a time: a group chat room is served by exactly one live node,
//! which claimed it in Redis; the other nodes forward its stanzas there. See the README's
//! *Cluster design* (room placement).
//!
//! Redis holds the claims: the hash `jabberwock:placed` (key, a room's bare JID → node) and
//! per node the set of its keys, for releasing them all when the node leaves or is reaped.
//! A claim is a Lua script that takes a key that is free or whose holder's lease expired,
//! so of two nodes claiming the same new room at once one wins and the other forwards, and
//! a node that died holds nothing once its lease is gone, even before it is reaped.
//! Claims and releases are published on the events channel, and every node mirrors the
//! other nodes' claims, so that routing a stanza to a room asks Redis nothing.
//!
//! A node holds a claim while it keeps the room in memory or handles a stanza for it
//! ([`Cluster::enter`] to [`Cluster::exit`]), and lets go once neither is true; claims and
//! releases of one node are made one at a time, so a release never takes a claim that a
//! stanza handled meanwhile renewed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use jabberwock_proto::{reader, Limits, Stanza};
use jid::Jid;
use redis::AsyncCommands;
use tokio::sync::mpsc;

use super::{Cluster, Event, EVENTS};
use crate::registry::OutputBudget;
use crate::server::Server;

const PLACED: &str = "jabberwock:placed";

fn node_placed_key(node: &str) -> String {
    format!("jabberwock:node-placed:{node}")
}

/// How long after reconnecting to Redis a node waits before claiming a room nobody holds:
/// Redis may have restarted empty, and the nodes that serve rooms, which reconnect within
/// [`super::RECONNECT_DELAY`] of it, must have registered their claims again first.
const CLAIM_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How many times a stanza may be forwarded: once by the node it arrived on, once more by
/// a node that had let go of the room meanwhile. A node it then reaches handles it or drops
/// it, so no stanza goes round the nodes however their mirrors lag.
const MAX_HOPS: u8 = 2;

tokio::task_local! {
    /// How many times the stanza being handled was forwarded to reach this node.
    static HOPS: u8;
}

/// Takes the key for this node if nobody holds it or its holder's lease expired; returns
/// the holder.
const CLAIM: &str = r#"
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder == ARGV[2] then return holder end
if holder and redis.call('EXISTS', ARGV[3] .. holder) == 1 then return holder end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
if holder then redis.call('SREM', ARGV[4] .. holder, ARGV[1]) end
redis.call('PUBLISH', ARGV[5], '0 ' .. ARGV[6])
return ARGV[2]
"#;

/// Lets go of the key if this node holds it.
const RELEASE: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], '0 ' .. ARGV[4])
return 1
"#;

/// Lets go of every key a node holds (it left, or it is gone: the others learn it from the
/// `gone` event).
const RELEASE_NODE: &str = r#"
for _, key in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('HGET', KEYS[1], key) == ARGV[1] then redis.call('HDEL', KEYS[1], key) end
end
redis.call('DEL', KEYS[2])
return 1
"#;

/// Where a stanza for a placed key is handled.
#[derive(Debug, PartialEq, Eq)]
pub enum Placed {
    /// Here: call [`Cluster::exit`] when done with it.
    Here,
    /// On that node: forward it there ([`Cluster::forward_placed`]).
    Elsewhere(String),
}

/// This node's side of the placement.
#[derive(Default)]
pub(super) struct Placement {
    /// The keys other nodes hold, as the events tell.
    elsewhere: Mutex<HashMap<String, String>>,
    /// The keys this node holds, each with how many of its stanzas are being handled.
    held: Mutex<HashMap<String, usize>>,
    /// Claims and releases of this node, one at a time.
    claiming: tokio::sync::Mutex<()>,
    /// When this node last synchronized with Redis after the first time (a reconnection):
    /// claims of free rooms wait [`CLAIM_GRACE`] after it.
    resynced: Mutex<Option<std::time::Instant>>,
    synced_once: std::sync::atomic::AtomicBool,
    /// Stanzas other nodes forwarded here, handled in the order they came.
    inbox: OnceLock<Inbox>,
}

/// A forwarded stanza waiting in the [`Inbox`]: its hop count, and the bytes it is charged.
type Forwarded = (u8, Stanza, usize);

/// The queue of forwarded stanzas, bounded in bytes.
struct Inbox {
    tx: mpsc::UnboundedSender<Forwarded>,
    budget: Arc<OutputBudget>,
}

impl Inbox {
    fn new(max_bytes: usize, overflows: prometheus_client::metrics::counter::Counter) -> (Inbox, mpsc::UnboundedReceiver<Forwarded>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Inbox { tx, budget: OutputBudget::new(max_bytes, overflows) }, rx)
    }

    /// Queues a stanza of `cost` bytes; false (and counted as an overflow) when that would
    /// put more than the bound in waiting.
    fn offer(&self, hops: u8, st: Stanza, cost: usize) -> bool {
        if !self.budget.try_charge(cost) {
            self.budget.overflowed();
            return false;
        }
        if self.tx.send((hops, st, cost)).is_err() {
            self.budget.release(cost);
        }
        true
    }
}

impl Placement {
    /// Applies another node's claim or release (or this node's own, which it knows).
    pub(super) fn apply(&self, event: &Event, me: &str) {
        let mut elsewhere = self.elsewhere.lock().expect("placement mirror");
        match event {
            Event::Placed { key, node } if node == me => {
                elsewhere.remove(key);
            }
            Event::Placed { key, node } => {
                elsewhere.insert(key.clone(), node.clone());
            }
            Event::Released { key, node } if elsewhere.get(key) == Some(node) => {
                elsewhere.remove(key);
            }
            _ => {}
        }
    }

    /// Drops what a node that is gone held.
    pub(super) fn forget(&self, node: &str) {
        self.elsewhere.lock().expect("placement mirror").retain(|_, n| n != node);
    }
}

impl Cluster {
    /// Where a stanza for `key` (a room's bare JID) is handled: here, claiming the key if
    /// nobody holds it, or on the node that does. Without Redis, here.
    pub async fn enter(&self, key: &str) -> Placed {
        let p = &self.placement;
        if let Some(n) = p.held.lock().expect("placement").get_mut(key) {
            *n += 1;
            return Placed::Here;
        }
        if let Some(node) = p.elsewhere.lock().expect("placement mirror").get(key) {
            return Placed::Elsewhere(node.clone());
        }
        let _one = p.claiming.lock().await;
        if let Some(n) = p.held.lock().expect("placement").get_mut(key) {
            *n += 1;
            return Placed::Here;
        }
        let resynced = *p.resynced.lock().expect("placement");
        if let Some(wait) = resynced.and_then(|at| CLAIM_GRACE.checked_sub(at.elapsed())) {
            tokio::time::sleep(wait).await;
        }
        let event = Event::Placed { key: key.to_owned(), node: self.config.node.clone() };
        match self.claim(key, &event).await {
            Ok(holder) if holder != self.config.node => return Placed::Elsewhere(holder),
            Ok(_) => {}
            // Served here meanwhile; the claim is made again at the next reconnect.
            Err(e) => tracing::warn!(error = %e, key, "Redis did not take a claim; serving it here"),
        }
        p.held.lock().expect("placement").insert(key.to_owned(), 1);
        Placed::Here
    }

    /// A stanza for `key` that [`Cluster::enter`] placed here has been handled. Once no
    /// other is and `live` says this node no longer keeps it, the key is released.
    pub async fn exit(&self, key: &str, live: impl Fn() -> bool) {
        let p = &self.placement;
        {
            let mut held = p.held.lock().expect("placement");
            let Some(n) = held.get_mut(key) else { return };
            *n = n.saturating_sub(1);
            if *n > 0 || live() {
                return;
            }
        }
        let _one = p.claiming.lock().await;
        {
            // Looked at again: a stanza may have come (and made it live) meanwhile.
            let mut held = p.held.lock().expect("placement");
            if held.get(key) != Some(&0) || live() {
                return;
            }
            held.remove(key);
        }
        let event = serde_json::to_string(&Event::Released { key: key.to_owned(), node: self.config.node.clone() }).expect("serializable");
        let released: redis::RedisResult<i64> = redis::Script::new(RELEASE)
            .key(PLACED)
            .key(node_placed_key(&self.config.node))
            .arg(key)
            .arg(&self.config.node)
            .arg(EVENTS)
            .arg(event)
            .invoke_async(&mut self.redis.clone())
            .await;
        if let Err(e) = released {
            // Harmless: the claim stays with this node, which serves the room again if a
            // stanza for it comes, and releases it when it leaves.
            tracing::warn!(error = %e, key, "Redis did not take a release");
        }
    }

    async fn claim(&self, key: &str, event: &Event) -> redis::RedisResult<String> {
        redis::Script::new(CLAIM)
            .key(PLACED)
            .key(node_placed_key(&self.config.node))
            .arg(key)
            .arg(&self.config.node)
            .arg(super::lease_key(""))
            .arg(node_placed_key(""))
            .arg(EVENTS)
            .arg(serde_json::to_string(event).expect("serializable"))
            .invoke_async(&mut self.redis.clone())
            .await
    }

    /// Forwards a stanza for a key `node` holds, whole, to be handled there as if it had
    /// arrived there. It comes back if too much waits for that node already, or if it was
    /// forwarded as often as it may be.
    pub fn forward_placed(&self, node: &str, st: Stanza) -> Result<(), Stanza> {
        let hops = HOPS.try_with(|h| *h).unwrap_or(0);
        if hops >= MAX_HOPS {
            return Err(st);
        }
        let mut frame = format!("V {}\n", hops + 1).into_bytes();
        frame.extend_from_slice(&st.to_bytes());
        if self.peer(node).send(frame) { Ok(()) } else { Err(st) }
    }

    /// A stanza another node forwarded (`V <hops>`): handled by the service of its domain,
    /// after those that came before it, and its answers routed to the sender. What waits
    /// is bounded by `cluster.max_forward_bytes`; over it, the stanza is lost, as one lost
    /// on the way would be.
    pub(super) fn received_placed(&self, server: &Arc<Server>, hops: &str, body: &[u8]) {
        let (Ok(hops), Ok(st)) = (hops.parse::<u8>(), reader::parse_stanza(body, &Limits::unlimited())) else { return };
        let inbox = self.placement.inbox.get_or_init(|| {
            let (inbox, rx) = Inbox::new(self.config.max_forward_bytes, self.overflows.clone());
            tokio::spawn(handle_forwarded(server.clone(), rx, inbox.budget.clone()));
            inbox
        });
        if !inbox.offer(hops, st, body.len()) {
            tracing::warn!("dropped a stanza forwarded by another node: too many wait here already");
        }
    }

    /// Registers this node's claims again and rebuilds the mirror of the others', after a
    /// (re)connection to Redis or an expired lease.
    pub(super) async fn resync_placement(&self) -> redis::RedisResult<()> {
        if self.placement.synced_once.swap(true, std::sync::atomic::Ordering::Relaxed) {
            *self.placement.resynced.lock().expect("placement") = Some(std::time::Instant::now());
        }
        let held: Vec<String> = self.placement.held.lock().expect("placement").keys().cloned().collect();
        if !held.is_empty() {
            // With a lease first: Redis may have restarted empty, and a claim of a node
            // without one is void.
            self.announce().await?;
        }
        for key in held {
            let event = Event::Placed { key: key.clone(), node: self.config.node.clone() };
            let holder = self.claim(&key, &event).await?;
            if holder != self.config.node {
                tracing::warn!(key, %holder, "another node took a room this node serves while it was cut off from Redis");
            }
        }
        let all: HashMap<String, String> = self.redis.clone().hgetall(PLACED).await?;
        let mut elsewhere = self.placement.elsewhere.lock().expect("placement mirror");
        *elsewhere = all.into_iter().filter(|(_, node)| *node != self.config.node).collect();
        Ok(())
    }

    /// Releases every claim of `node` (gone, or this node leaving).
    pub(super) async fn release_node(&self, node: &str) -> redis::RedisResult<()> {
        redis::Script::new(RELEASE_NODE).key(PLACED).key(node_placed_key(node)).arg(node).invoke_async(&mut self.redis.clone()).await
    }
}

/// Handles forwarded stanzas one after the other, so that those of one sender keep their
/// order, until shutdown.
async fn handle_forwarded(server: Arc<Server>, mut rx: mpsc::UnboundedReceiver<Forwarded>, budget: Arc<OutputBudget>) {
    let mut shutdown = server.shutdown_signal();
    loop {
        let (hops, st, cost) = tokio::select! {
            next = rx.recv() => match next {
                Some(next) => next,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        budget.release(cost);
        let Some(Ok(to)) = st.to().map(Jid::new) else { continue };
        let Some(service) = server.modules.service(to.domain().as_str()).cloned() else { continue };
        let replies = HOPS.scope(hops, service.handle(&server, st, &to)).await;
        for reply in replies {
            crate::routing::route(&server, reply).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_other_nodes_forward_waits_here_within_a_bound_in_bytes() {
        let overflows = prometheus_client::metrics::counter::Counter::default();
        let (inbox, mut rx) = Inbox::new(10_000, overflows.clone());
        let el = jabberwock_proto::Element::new("message", jabberwock_proto::ns::CLIENT).with_attr("to", "r@conference.d");
        let st = Stanza::from_element(&el);
        assert!(inbox.offer(1, st.clone(), 4000));
        assert!(inbox.offer(1, st.clone(), 4000));
        assert!(!inbox.offer(1, st.clone(), 4000), "a third would exceed cluster.max_forward_bytes");
        assert_eq!(overflows.get(), 1);
        // Handled: the bytes are released and there is room again.
        let (hops, _, cost) = rx.try_recv().expect("queued");
        assert_eq!((hops, cost), (1, 4000));
        inbox.budget.release(cost);
        assert!(inbox.offer(2, st, 4000));
        assert_eq!(rx.try_recv().map(|(hops, _, _)| hops), Ok(1));
        assert_eq!(rx.try_recv().map(|(hops, _, _)| hops), Ok(2));
    }

    #[test]
    fn the_mirror_follows_claims_and_releases_and_forgets_a_gone_node() {
        let p = Placement::default();
        let placed = |key: &str, node: &str| Event::Placed { key: key.into(), node: node.into() };
        let released = |key: &str, node: &str| Event::Released { key: key.into(), node: node.into() };
        p.apply(&placed("r@conference.d", "n2"), "n1");
        p.apply(&placed("s@conference.d", "n3"), "n1");
        assert_eq!(p.elsewhere.lock().unwrap().get("r@conference.d").map(String::as_str), Some("n2"));
        // A late release of an earlier holder leaves the newer claim alone.
        p.apply(&released("r@conference.d", "n3"), "n1");
        assert!(p.elsewhere.lock().unwrap().contains_key("r@conference.d"));
        // This node took it: it is no longer elsewhere.
        p.apply(&placed("r@conference.d", "n1"), "n1");
        assert!(!p.elsewhere.lock().unwrap().contains_key("r@conference.d"));
        p.forget("n3");
        assert!(p.elsewhere.lock().unwrap().is_empty());
    }
}
