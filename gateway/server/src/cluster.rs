//! Cluster mode: several nodes sharing one PostgreSQL (every store) and one Redis (what is
//! shared live). See the README's *Cluster design*.
//!
//! Redis holds the authoritative session registry: per bare JID a hash (resource → the
//! owning node, connection, priority, presence…), per node the set of its bare JIDs, a
//! lease key per node and the hash of known nodes. Every change is made by a Lua script
//! that also publishes it on the events channel, so the events come in the order of the
//! changes; each node keeps a mirror of the whole registry in memory
//! ([`crate::registry::SessionRegistry`]), from those events, rebuilt from Redis at start
//! and after every reconnect. Each binding carries a sequence number from Redis, so an
//! event that arrives late never replaces a newer binding.
//!
//! A stanza for a session on another node is published on that node's channel. Delivery
//! between nodes is at most once (pub/sub drops what a disconnected subscriber misses):
//! XEP-0198 at the client edge and MAM/offline storage carry the guarantees. A stanza
//! that no node heard (PUBLISH counts the listeners) is routed again by its sender's node;
//! a node that stops keeps routing what comes for its ended sessions until Redis confirms
//! it stopped listening, so a rolling restart loses nothing a sender was acknowledged.
//!
//! Each node renews its lease every third of `lease_ms`; every node checks the others'
//! leases every second, and the first to take a dead node's reap key removes its
//! sessions, sends their unavailable presence and routes its parked sessions' journals.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt, StreamExt};
use jabberwock_proto::{reader, Element, Limits, Stanza, StreamError, StreamErrorCondition};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::config::ClusterConfig;
use crate::registry::{BindError, ConnId, OutputBudget, Resource, SessionHandle};
use crate::server::Server;
use crate::transport::bosh::Reply;

mod placement;
pub use placement::Placed;

const NODES: &str = "jabberwock:nodes";
const EVENTS: &str = "jabberwock:events";
const SESSIONS: &str = "jabberwock:sessions:";
/// The cluster's dialback secret (hex), when `s2s.dialback_secret` is not configured.
const DIALBACK_SECRET: &str = "jabberwock:dialback-secret";

fn sessions_key(bare: &str) -> String {
    format!("{SESSIONS}{bare}")
}

fn node_jids_key(node: &str) -> String {
    format!("jabberwock:node-jids:{node}")
}

fn lease_key(node: &str) -> String {
    format!("jabberwock:lease:{node}")
}

fn reap_key(node: &str) -> String {
    format!("jabberwock:reap:{node}")
}

fn node_channel(node: &str) -> String {
    format!("jabberwock:node:{node}")
}

/// Ends the node id in ids that name their node; node ids never contain it.
const NODE_SEPARATOR: char = '~';

/// A fresh id for something only this node holds (a BOSH session, a resumable XEP-0198
/// session). In a cluster it starts with the node's id, so that any node can tell where
/// it lives; on one node it is just random.
pub fn scoped_id(server: &Server) -> String {
    match server.sessions.cluster() {
        Some(cluster) => format!("{}{NODE_SEPARATOR}{}", cluster.node(), crate::stanzas::random_id()),
        None => crate::stanzas::random_id(),
    }
}

/// The node an id from [`scoped_id`] names.
pub fn node_of(id: &str) -> Option<&str> {
    id.split_once(NODE_SEPARATOR).map(|(node, _)| node)
}

/// How often every node looks for expired leases.
const LEASE_CHECK: Duration = Duration::from_secs(1);
/// How long one node holds a dead node's reap key: the others leave it alone meanwhile.
const REAP_HOLD_MS: u64 = 60_000;
/// Longest a stopping node spends routing what was still on its way to it.
const LEAVE_DRAIN: Duration = Duration::from_secs(5);
/// How long to wait before connecting to Redis again.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Stanzas published to a node in one round trip.
const FORWARD_BATCH: usize = 64;
/// Longest wait for another node's answer to a forwarded BOSH request: the longest a
/// session holds a request, and a margin for the trip.
const FORWARDED_BOSH_TIMEOUT: Duration = Duration::from_secs(crate::transport::bosh::MAX_WAIT + 10);
/// Longest wait for another node to end a session a client tried to resume here: it may
/// first wait up to two seconds for the old connection to let go, then route what it held.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds a resource: replaces the same resource (returning the old value, for `conflict`)
/// or adds one under the account's limit. Values are `<seq> <json>`. Returns the new
/// binding's sequence number (-1 over the limit) and the old value ('' if none).
const BIND: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return {-1, ''} end
local seq = redis.call('INCR', 'jabberwock:seq')
redis.call('HSET', KEYS[1], ARGV[1], seq .. ' ' .. ARGV[2])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[6], seq .. ' ' .. ARGV[5])
return {seq, old or ''}
"#;

/// Changes a resource if this node's connection still owns it (`update`), or also adds
/// it if nobody has it (`register`, after a reconnect). Returns the binding's sequence
/// number, or 0 if another session owns it.
const UPDATE: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
local seq
if old then
  local sp = string.find(old, ' ')
  local e = cjson.decode(string.sub(old, sp + 1))
  if e.node ~= ARGV[3] or e.conn ~= ARGV[4] then return 0 end
  seq = tonumber(string.sub(old, 1, sp - 1))
elseif ARGV[8] == 'register' then
  seq = redis.call('INCR', 'jabberwock:seq')
else
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], seq .. ' ' .. ARGV[2])
redis.call('SADD', KEYS[2], ARGV[7])
redis.call('PUBLISH', ARGV[6], seq .. ' ' .. ARGV[5])
return seq
"#;

/// Removes a resource if this node's connection still owns it; forgets the account in
/// the node's set once none of its resources is on the node.
const UNBIND: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local e = cjson.decode(string.sub(old, string.find(old, ' ') + 1))
if e.node ~= ARGV[2] or e.conn ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local still = false
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  if cjson.decode(string.sub(v, string.find(v, ' ') + 1)).node == ARGV[2] then still = true end
end
if not still then redis.call('SREM', KEYS[2], ARGV[6]) end
redis.call('PUBLISH', ARGV[5], '0 ' .. ARGV[4])
return 1
"#;

/// Removes every session of a node and the node itself; returns the removed bindings
/// as bare JID, resource, value triples.
const REAP: &str = r#"
local removed = {}
for _, bare in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. bare
  local h = redis.call('HGETALL', key)
  for i = 1, #h, 2 do
    local v = h[i + 1]
    if cjson.decode(string.sub(v, string.find(v, ' ') + 1)).node == ARGV[1] then
      redis.call('HDEL', key, h[i])
      table.insert(removed, bare)
      table.insert(removed, h[i])
      table.insert(removed, v)
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], '0 ' .. ARGV[4])
return removed
"#;

/// A binding as Redis keeps it (after its sequence number).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    node: String,
    /// A string: Lua compares it, and Lua numbers are doubles.
    conn: String,
    priority: i8,
    available: bool,
    interested: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    features: Vec<String>,
    /// The last available presence, for probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    presence: Option<String>,
}

/// What goes over the events channel (after a sequence number).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Event {
    Set { bare: String, resource: String, entry: Entry },
    Unset { node: String, bare: String, resource: String, conn: String },
    Gone { node: String },
    /// A module changed an account's cached data (a blocklist, say).
    Changed { node: String, account: String },
    /// A node claimed something that lives on one node at a time (a room): [`placement`].
    Placed { key: String, node: String },
    /// It let go of it.
    Released { key: String, node: String },
}

/// A node as `jabberwock:nodes` describes it.
#[derive(Debug, Serialize, Deserialize)]
struct NodeInfo {
    address: String,
    /// Unix seconds.
    started: u64,
}

/// This node's part in the cluster: its Redis connection, its links to the other nodes.
pub struct Cluster {
    config: ClusterConfig,
    client: redis::Client,
    redis: ConnectionManager,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    /// Counts refusals of `cluster.max_forward_bytes`.
    overflows: prometheus_client::metrics::counter::Counter,
    /// Requests asked of other nodes (forwarded BOSH requests, say), waiting for answers.
    waiting: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_request: AtomicU64,
    placement: placement::Placement,
    /// The dialback secret this node uses, if it came from Redis: written back after a
    /// reconnect, so that a Redis restarted empty keeps the one the running nodes use.
    dialback_secret: Mutex<Option<String>>,
    /// Stanzas published to a node that nobody listened for (it left or died), with that
    /// node's id: this node routes them again, as if their session were gone.
    unheard: mpsc::UnboundedSender<Unheard>,
    unheard_rx: Mutex<Option<mpsc::UnboundedReceiver<Unheard>>>,
    /// Stanzas being routed again (their session was gone): a stopping node finishes them.
    rerouting: tokio_util::task::TaskTracker,
    /// Set when the node leaves the cluster: its lease is no longer renewed, and its
    /// subscription routes what is still on its way here and ends.
    leaving: tokio::sync::watch::Sender<bool>,
    subscription: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A frame published to a node that no subscriber heard.
struct Unheard {
    node: String,
    frame: Vec<u8>,
    /// Its bytes, still counted against `cluster.max_forward_bytes` for that node until it
    /// is routed again: stanzas for a node that is gone cannot pile up without bound.
    charged: Charged,
}

/// Bytes counted against a budget until this is dropped.
struct Charged(Arc<OutputBudget>, usize);

impl Drop for Charged {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

/// Takes a request off the waiting list however its wait ends (an answer, the timeout,
/// or the HTTP client hanging up).
struct Waiting<'a> {
    cluster: &'a Cluster,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.cluster.waiting.lock().expect("waiting requests").remove(&self.id);
    }
}

/// The way to another node: a queue of published stanzas, bounded in bytes.
#[derive(Debug)]
struct Peer {
    node: String,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    budget: Arc<OutputBudget>,
}

/// A frame of a node's channel: its header line and what follows.
fn split_frame(payload: &[u8]) -> Option<(std::borrow::Cow<'_, str>, &[u8])> {
    let nl = payload.iter().position(|b| *b == b'\n')?;
    Some((String::from_utf8_lossy(&payload[..nl]), &payload[nl + 1..]))
}

/// A session on another node, as a [`SessionHandle`] reaches it.
#[derive(Debug)]
pub struct RemoteSession {
    peer: Arc<Peer>,
    /// Its full JID.
    jid: String,
}

impl RemoteSession {
    pub fn node(&self) -> &str {
        &self.peer.node
    }

    pub fn budget(&self) -> Arc<OutputBudget> {
        self.peer.budget.clone()
    }

    /// Forwards a stanza; it comes back if too much waits for that node already.
    pub fn forward(&self, st: Stanza) -> Result<(), Stanza> {
        let mut frame = format!("S {}\n", self.jid).into_bytes();
        frame.extend_from_slice(&st.to_bytes());
        if self.peer.send(frame) { Ok(()) } else { Err(st) }
    }

    /// Closes connection `conn` with `e` (a session replaced by a newer one, an ended account).
    pub fn close(&self, conn: ConnId, e: &StreamError) -> bool {
        let frame = format!("C {conn} {} {}\n{}", e.condition.as_str(), self.jid, e.text.as_deref().unwrap_or_default());
        self.peer.send(frame.into_bytes())
    }
}

impl Peer {
    fn send(&self, frame: Vec<u8>) -> bool {
        let cost = frame.len();
        if !self.budget.try_charge(cost) {
            self.budget.overflowed();
            return false;
        }
        if self.tx.send(frame).is_err() {
            self.budget.release(cost);
            return false;
        }
        true
    }
}

/// Publishes what is queued for `node`, several stanzas per round trip, in order. What no
/// subscriber heard (the node left or died), or Redis did not take, goes to `unheard`, to
/// be routed again here.
async fn forward_loop(
    mut redis: ConnectionManager,
    node: String,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    budget: Arc<OutputBudget>,
    unheard: mpsc::UnboundedSender<Unheard>,
) {
    let channel = node_channel(&node);
    let mut batch = Vec::with_capacity(FORWARD_BATCH);
    while rx.recv_many(&mut batch, FORWARD_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        let bytes: usize = batch.iter().map(Vec::len).sum();
        for frame in &batch {
            pipe.publish(&channel, frame);
        }
        // How many subscribers heard each frame; none for a batch Redis did not confirm
        // (it may still have published it: a duplicate at worst, rather than a loss).
        let heard = pipe.query_async::<Vec<i64>>(&mut redis).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, %node, "could not forward stanzas to another node; routing them here");
            Vec::new()
        });
        let mut done = bytes;
        for (i, frame) in batch.drain(..).enumerate() {
            if heard.get(i).copied().unwrap_or(0) == 0 {
                done -= frame.len();
                let charged = Charged(budget.clone(), frame.len());
                let _ = unheard.send(Unheard { node: node.clone(), frame, charged });
            }
        }
        budget.release(done);
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Cluster {
    /// Connects to Redis. Fails if Redis does not answer: a node that cannot share its
    /// sessions must not start serving.
    pub async fn connect(config: &ClusterConfig, overflows: prometheus_client::metrics::counter::Counter) -> Result<Cluster, String> {
        let client = redis::Client::open(config.redis.as_str()).map_err(|e| format!("cluster.redis: {e}"))?;
        let timeout = Duration::from_millis(config.lease_ms / 3).max(Duration::from_millis(200));
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(2)
            .set_max_delay(1000);
        let redis = client.get_connection_manager_with_config(manager).await.map_err(|e| format!("cannot reach Redis at cluster.redis: {e}"))?;
        let (unheard, unheard_rx) = mpsc::unbounded_channel();
        Ok(Cluster {
            config: config.clone(),
            client,
            redis,
            peers: Mutex::default(),
            overflows,
            waiting: Mutex::default(),
            next_request: AtomicU64::new(0),
            placement: placement::Placement::default(),
            dialback_secret: Mutex::default(),
            unheard,
            unheard_rx: Mutex::new(Some(unheard_rx)),
            rerouting: tokio_util::task::TaskTracker::new(),
            leaving: tokio::sync::watch::channel(false).0,
            subscription: Mutex::default(),
        })
    }

    /// The cluster's dialback secret: the one in Redis, or a fresh one this node puts
    /// there first (set-if-absent, so that nodes starting together agree on one).
    pub async fn dialback_secret(&self) -> Result<Vec<u8>, String> {
        let fresh: String = rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect();
        let (_, secret): ((), String) = redis::pipe()
            .atomic()
            .set_options(DIALBACK_SECRET, fresh, redis::SetOptions::default().conditional_set(redis::ExistenceCheck::NX))
            .get(DIALBACK_SECRET)
            .query_async(&mut self.redis.clone())
            .await
            .map_err(|e| format!("cluster: cannot read the shared dialback secret from Redis: {e}"))?;
        *self.dialback_secret.lock().expect("dialback secret") = Some(secret.clone());
        Ok(secret.into_bytes())
    }

    pub fn node(&self) -> &str {
        &self.config.node
    }

    fn peer(&self, node: &str) -> Arc<Peer> {
        let mut peers = self.peers.lock().expect("peers");
        if let Some(p) = peers.get(node) {
            return p.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = OutputBudget::new(self.config.max_forward_bytes, self.overflows.clone());
        let peer = Arc::new(Peer { node: node.to_owned(), tx, budget: budget.clone() });
        tokio::spawn(forward_loop(self.redis.clone(), node.to_owned(), rx, budget, self.unheard.clone()));
        peers.insert(node.to_owned(), peer.clone());
        peer
    }

    fn entry_of(&self, r: &Resource) -> Entry {
        let presence = r.presence.as_ref().map(|p| {
            let bytes = p.to_bytes();
            if bytes.len() <= self.config.max_presence_bytes {
                return String::from_utf8_lossy(&bytes).into_owned();
            }
            // Too big to share: an available presence without its payload.
            let mut small = Element::new("presence", jabberwock_proto::ns::CLIENT);
            if let Some(from) = p.from() {
                small = small.with_attr("from", from);
            }
            String::from_utf8_lossy(&Stanza::from_element(&small).to_bytes()).into_owned()
        });
        Entry {
            node: self.config.node.clone(),
            conn: r.handle.conn.to_string(),
            priority: r.priority,
            available: r.available,
            interested: r.interested,
            features: r.features.as_deref().unwrap_or_default().to_vec(),
            presence,
        }
    }

    /// The mirror's resource for another node's binding.
    fn resource_of(&self, bare: &str, resource: &str, seq: u64, e: Entry) -> Option<Resource> {
        let conn: ConnId = e.conn.parse().ok()?;
        let remote = RemoteSession { peer: self.peer(&e.node), jid: format!("{bare}/{resource}") };
        let presence = e.presence.and_then(|p| reader::parse_stanza(p.as_bytes(), &Limits::unlimited()).ok()).map(Arc::new);
        Some(Resource {
            resource: resource.to_owned(),
            handle: SessionHandle::remote(conn, Arc::new(remote)),
            available: e.available,
            priority: e.priority,
            presence,
            interested: e.interested,
            features: (!e.features.is_empty()).then(|| e.features.into()),
            seq,
        })
    }

    /// Binds `r` in Redis, across the cluster. Returns the binding's sequence number and
    /// the session it replaced on another node, if any; `None` with Redis out of reach:
    /// the binding stays local until the next reconnect registers it.
    pub(crate) async fn bind(&self, bare: &str, r: &Resource, max: usize) -> Result<Option<(u64, Option<SessionHandle>)>, BindError> {
        let entry = self.entry_of(r);
        let event = Event::Set { bare: bare.to_owned(), resource: r.resource.clone(), entry: entry.clone() };
        let result: redis::RedisResult<(i64, String)> = redis::Script::new(BIND)
            .key(sessions_key(bare))
            .key(node_jids_key(&self.config.node))
            .arg(&r.resource)
            .arg(serde_json::to_string(&entry).expect("serializable"))
            .arg(max)
            .arg(bare)
            .arg(serde_json::to_string(&event).expect("serializable"))
            .arg(EVENTS)
            .invoke_async(&mut self.redis.clone())
            .await;
        match result {
            Ok((-1, _)) => Err(BindError::TooManyResources),
            Ok((seq, old)) => {
                let old = split_value(&old).filter(|(_, e)| e.node != self.config.node);
                Ok(Some((seq as u64, old.and_then(|(s, e)| self.resource_of(bare, &r.resource, s, e)).map(|r| r.handle))))
            }
            Err(e) => {
                tracing::warn!(error = %e, bare, "Redis did not take a binding; it is registered at the next reconnect");
                Ok(None)
            }
        }
    }

    /// Shares a change to this node's resource `r`.
    pub(crate) async fn update(&self, bare: &str, r: &Resource) {
        if let Err(e) = self.put(bare, r, "update").await {
            tracing::warn!(error = %e, bare, "Redis did not take a session change; it is registered at the next reconnect");
        }
    }

    /// Writes this node's resource `r`; 0 if another session owns it now.
    async fn put(&self, bare: &str, r: &Resource, mode: &str) -> redis::RedisResult<u64> {
        let entry = self.entry_of(r);
        let event = Event::Set { bare: bare.to_owned(), resource: r.resource.clone(), entry: entry.clone() };
        redis::Script::new(UPDATE)
            .key(sessions_key(bare))
            .key(node_jids_key(&self.config.node))
            .arg(&r.resource)
            .arg(serde_json::to_string(&entry).expect("serializable"))
            .arg(&self.config.node)
            .arg(r.handle.conn.to_string())
            .arg(serde_json::to_string(&event).expect("serializable"))
            .arg(EVENTS)
            .arg(bare)
            .arg(mode)
            .invoke_async(&mut self.redis.clone())
            .await
    }

    pub(crate) async fn unbind(&self, bare: &str, resource: &str, conn: ConnId) {
        let event = Event::Unset { node: self.config.node.clone(), bare: bare.to_owned(), resource: resource.to_owned(), conn: conn.to_string() };
        let result: redis::RedisResult<i64> = redis::Script::new(UNBIND)
            .key(sessions_key(bare))
            .key(node_jids_key(&self.config.node))
            .arg(resource)
            .arg(&self.config.node)
            .arg(conn.to_string())
            .arg(serde_json::to_string(&event).expect("serializable"))
            .arg(EVENTS)
            .arg(bare)
            .invoke_async(&mut self.redis.clone())
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, bare, "Redis did not take an unbinding; the next reconnect resynchronizes");
        }
    }

    /// Renews this node's lease; false if it had expired (other nodes may have removed
    /// this node's sessions: they must be registered again).
    async fn renew(&self) -> redis::RedisResult<bool> {
        let mut redis = self.redis.clone();
        let renewed: Option<String> = redis::cmd("SET")
            .arg(lease_key(&self.config.node))
            .arg(now_secs())
            .arg("PX")
            .arg(self.config.lease_ms)
            .arg("XX")
            .query_async(&mut redis)
            .await?;
        if renewed.is_some() {
            return Ok(true);
        }
        self.announce().await?;
        Ok(false)
    }

    /// Puts this node in the list of nodes with a fresh lease, in one transaction: a node
    /// listed without its lease would look dead to the others.
    async fn announce(&self) -> redis::RedisResult<()> {
        let info = NodeInfo { address: self.config.address.clone(), started: now_secs() };
        redis::pipe()
            .atomic()
            .hset(NODES, &self.config.node, serde_json::to_string(&info).expect("serializable"))
            .ignore()
            .set_options(lease_key(&self.config.node), now_secs(), redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(self.config.lease_ms)))
            .ignore()
            .query_async(&mut self.redis.clone())
            .await
    }

    /// Registers every local session and room claim again (after a reconnect or an
    /// expired lease), puts back the shared dialback secret if Redis lost it, and rebuilds
    /// the mirror of the other nodes' from Redis.
    async fn resync(&self, server: &Arc<Server>) -> redis::RedisResult<()> {
        // Rooms first: other nodes wait only so long before claiming a room nobody holds.
        self.resync_placement().await?;
        let secret = self.dialback_secret.lock().expect("dialback secret").clone();
        if let Some(secret) = secret {
            let keep = redis::SetOptions::default().conditional_set(redis::ExistenceCheck::NX);
            self.redis.clone().set_options::<_, _, ()>(DIALBACK_SECRET, secret, keep).await?;
        }
        for (bare, r) in server.sessions.local() {
            match self.put(&bare, &r, "register").await? {
                0 => {
                    // Another node bound the resource while this one was cut off: the newer wins.
                    r.handle.send(crate::registry::Routed::Close(crate::registry::replaced()));
                }
                seq => server.sessions.renumber(&bare, &r.resource, r.handle.conn, seq),
            }
        }
        let mut redis = self.redis.clone();
        let mut remote = Vec::new();
        let keys: Vec<String> = {
            let mut iter: redis::AsyncIter<String> = redis.scan_match(format!("{SESSIONS}*")).await?;
            let mut keys = Vec::new();
            while let Some(k) = iter.next_item().await {
                keys.push(k?);
            }
            keys
        };
        for key in keys {
            let bare = &key[SESSIONS.len()..];
            let fields: HashMap<String, String> = redis.hgetall(&key).await?;
            for (resource, value) in fields {
                let Some((seq, e)) = split_value(&value) else { continue };
                if e.node == self.config.node {
                    continue;
                }
                if let Some(r) = self.resource_of(bare, &resource, seq, e) {
                    remote.push((bare.to_owned(), r));
                }
            }
        }
        tracing::info!(sessions = remote.len(), "session registry synchronized with the cluster");
        server.sessions.replace_remote(remote, |_| false);
        Ok(())
    }

    /// Applies one event of the events channel to the mirror. This node's own changes
    /// are in the mirror already.
    fn apply(&self, server: &Server, payload: &[u8]) {
        let parsed = std::str::from_utf8(payload).ok().and_then(|p| p.split_once(' '));
        let Some((Ok(seq), Ok(event))) = parsed.map(|(seq, ev)| (seq.parse::<u64>(), serde_json::from_str::<Event>(ev))) else {
            tracing::warn!("unreadable cluster registry event");
            return;
        };
        match event {
            Event::Set { bare, resource, entry } if entry.node != self.config.node => {
                if let Some(r) = self.resource_of(&bare, &resource, seq, entry) {
                    server.sessions.mirror(&bare, &resource, r.handle.conn, Some(r));
                }
            }
            Event::Unset { node, bare, resource, conn } if node != self.config.node => {
                if let Ok(conn) = conn.parse() {
                    server.sessions.mirror(&bare, &resource, conn, None);
                }
            }
            Event::Gone { node } if node != self.config.node => self.forget(server, &node),
            Event::Changed { node, account } if node != self.config.node => {
                if let Ok(account) = jid::BareJid::new(&account) {
                    server.modules.account_changed_elsewhere(&account);
                }
            }
            Event::Placed { .. } | Event::Released { .. } => self.placement.apply(&event, &self.config.node),
            _ => {}
        }
    }

    /// Routes again a message that did not reach its session at `bare` (an account), as if
    /// the sessions in `refused` were not there: to its other resources or offline storage.
    /// `hold` is dropped once that is done.
    fn reroute(&self, server: &Arc<Server>, st: Stanza, bare: &str, refused: Vec<ConnId>, hold: impl Send + 'static) {
        let (Ok(bare), true) = (jid::BareJid::new(bare), crate::session::journal::worth_rerouting(&st)) else { return };
        let server = server.clone();
        self.rerouting.spawn(async move {
            crate::im::message::reroute_without(&server, st, &bare, &refused).await;
            drop(hold);
        });
    }

    /// A stanza published to a node that no subscriber heard: that node left or died, and
    /// its sessions with it, though this node's mirror may not know yet.
    fn unheard(&self, server: &Arc<Server>, unheard: Unheard) {
        let Some((header, body)) = split_frame(&unheard.frame) else { return };
        let Some(("S", full)) = header.split_once(' ') else { return };
        let (Some((bare, _)), Ok(st)) = (full.split_once('/'), reader::parse_stanza(body, &Limits::unlimited())) else { return };
        let node = Some(unheard.node.as_str());
        let on_that_node = server.sessions.resources(bare).into_iter().filter(|r| r.handle.node() == node).map(|r| r.handle.conn).collect();
        self.reroute(server, st, bare, on_that_node, unheard.charged);
    }

    /// Drops a dead node's sessions from the mirror, and the link to it.
    fn forget(&self, server: &Server, node: &str) {
        server.sessions.replace_remote(Vec::new(), |r| r.handle.node() != Some(node));
        self.peers.lock().expect("peers").remove(node);
        self.placement.forget(node);
    }

    /// Takes over after a node that is gone (or this node's previous run): removes its
    /// sessions from Redis, tells their contacts they are unavailable, and routes the
    /// messages its parked sessions held (XEP-0198 timeout: to offline storage).
    async fn take_over(&self, server: &Arc<Server>, node: &str) -> redis::RedisResult<()> {
        let gone = serde_json::to_string(&Event::Gone { node: node.to_owned() }).expect("serializable");
        let removed: Vec<String> = redis::Script::new(REAP)
            .key(node_jids_key(node))
            .key(NODES)
            .arg(node)
            .arg(SESSIONS)
            .arg(EVENTS)
            .arg(gone)
            .invoke_async(&mut self.redis.clone())
            .await?;
        self.forget(server, node);
        // As when a session ends: what it never delivered goes elsewhere before its
        // contacts see it go, so a message sent on seeing that lands after it.
        let journaled = crate::session::journal::recover(server, Some(node)).await;
        let sessions = removed.len() / 3;
        for binding in removed.chunks_exact(3) {
            let (bare, resource) = (&binding[0], &binding[1]);
            let available = split_value(&binding[2]).is_some_and(|(_, e)| e.available);
            if let (true, Ok(full)) = (available, jid::FullJid::new(&format!("{bare}/{resource}"))) {
                crate::im::presence::unavailable_on_behalf(server, &full).await;
            }
        }
        if let Err(e) = self.release_node(node).await {
            // Only tidiness: the claims of a node without a lease are void anyway.
            tracing::warn!(error = %e, %node, "could not release the rooms of a node that is gone");
        }
        tracing::info!(%node, sessions, journaled, "took over after a node that is gone");
        Ok(())
    }

    /// A clean stop, once the node's sessions have ended: it stops listening to its channel
    /// (routing what was still on its way to it to the accounts' sessions on other nodes or
    /// offline storage; what other nodes publish after that reaches nobody, and they route
    /// it themselves), leaves the list of nodes at once instead of when its lease expires,
    /// taking what is left of its sessions with it, and waits until what it routes and
    /// forwards to other nodes has left.
    pub async fn leave(&self, server: &Arc<Server>) {
        // The lease is renewed until now: a shutdown longer than the lease is not a death.
        self.leaving.send_replace(true);
        let subscription = self.subscription.lock().expect("subscription").take();
        if let Some(subscription) = subscription {
            if tokio::time::timeout(LEAVE_DRAIN, subscription).await.is_err() {
                tracing::warn!("could not stop listening to this node's channel in time");
            }
        }
        let left = self.take_over(server, self.node()).await;
        let dropped = self.redis.clone().del::<_, ()>(lease_key(self.node())).await;
        if let Err(e) = left.and(dropped) {
            tracing::warn!(error = %e, "could not leave the cluster; the other nodes will when the lease expires");
        }
        let finished = async {
            self.rerouting.close();
            self.rerouting.wait().await;
            let peers: Vec<Arc<Peer>> = self.peers.lock().expect("peers").values().cloned().collect();
            while peers.iter().any(|p| p.budget.held() > 0) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(LEAVE_DRAIN, finished).await.is_err() {
            tracing::warn!("stanzas for other nodes or offline storage were still on their way when this node stopped");
        }
    }

    /// Waits (a second at most) until what is queued for other nodes has been published:
    /// what a stopping node sends last (rooms telling their occupants it stops) must not
    /// die with the process.
    pub async fn drained(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let queued = || self.peers.lock().expect("peers").values().any(|p| p.budget.held() > 0);
        while queued() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Removes the sessions of nodes whose lease expired, one node at a time cluster-wide.
    async fn reap_expired(&self, server: &Arc<Server>) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        let nodes: Vec<String> = redis.hkeys(NODES).await?;
        for node in nodes.iter().filter(|n| **n != self.config.node) {
            if redis.exists(lease_key(node)).await? {
                continue;
            }
            let won: Option<String> = redis::cmd("SET")
                .arg(reap_key(node))
                .arg(&self.config.node)
                .arg("NX")
                .arg("PX")
                .arg(REAP_HOLD_MS)
                .query_async(&mut redis)
                .await?;
            if won.is_some() {
                tracing::warn!(%node, "a node's lease expired; taking over its sessions");
                self.take_over(server, node).await?;
            }
        }
        Ok(())
    }

    /// Passes a BOSH request (its raw body) to the node its sid names and returns that
    /// node's answer; `item-not-found` if no node answers. Lost on the way (at most once),
    /// the request is retransmitted by the client with the same rid after its HTTP
    /// timeout, as BOSH provides.
    pub async fn forward_bosh(&self, node: &str, body: &[u8]) -> Reply {
        let answer = self.ask(node, "B", body, FORWARDED_BOSH_TIMEOUT).await;
        answer.unwrap_or_else(|| Reply::terminate(404, "item-not-found"))
    }

    /// Publishes a request on `node`'s channel (`<kind> <request id> <this node>` and
    /// `body`) and waits up to `timeout` for its answer (`R <request id> <status>`).
    /// Published straight away rather than queued with the stanzas: Redis says how many
    /// nodes heard it, and none means the node is gone, so the answer is `None` at once.
    async fn ask(&self, node: &str, kind: &str, body: &[u8], timeout: Duration) -> Option<Reply> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().expect("waiting requests").insert(id, tx);
        let _waiting = Waiting { cluster: self, id };
        let mut frame = format!("{kind} {id} {}\n", self.config.node).into_bytes();
        frame.extend_from_slice(body);
        match self.redis.clone().publish::<_, _, i64>(node_channel(node), frame).await {
            Ok(0) => None,
            Ok(_) => tokio::time::timeout(timeout, rx).await.ok().and_then(Result::ok),
            Err(e) => {
                tracing::warn!(error = %e, %node, "could not pass a request to another node");
                None
            }
        }
    }

    /// Answers a request another node asked (`rest` is `<request id> <node>`) with what
    /// `answer` comes to, on that node's channel.
    fn answer(&self, rest: &str, answer: impl std::future::Future<Output = Reply> + Send + 'static) {
        let Some((id, origin)) = rest.split_once(' ') else { return };
        let (mut redis, header, channel) = (self.redis.clone(), format!("R {id} "), node_channel(origin));
        tokio::spawn(async move {
            let reply = answer.await;
            let frame = format!("{header}{}\n{}", reply.status, reply.body);
            if let Err(e) = redis.publish::<_, _, ()>(&channel, frame).await {
                tracing::warn!(error = %e, "could not answer a request of another node");
            }
        });
    }

    /// Another node's answer to a request this one asked (`rest` is `<request id> <status>`).
    fn answered(&self, rest: &str, body: &[u8]) {
        let Some((Ok(id), Ok(status))) = rest.split_once(' ').map(|(id, status)| (id.parse::<u64>(), status.parse::<u16>())) else { return };
        let waiting = self.waiting.lock().expect("waiting requests").remove(&id);
        if let Some(tx) = waiting {
            let _ = tx.send(Reply { status, body: String::from_utf8_lossy(body).into_owned() });
        }
    }

    /// A frame from this node's channel: `S <full JID>` and a stanza for a local session,
    /// or `C <conn> <condition> <full JID>` and a text to close one (the JID comes last: a
    /// resource may contain spaces), or `V <hops>` and a stanza for a room this node
    /// serves. Requests of another node, answered with `R <request id> <status>` and a
    /// body: `B <request id> <node>` and a BOSH request for a session here, `E <request
    /// id> <node>` and `<XEP-0198 id> <owner>` to end a resumable session of this node's
    /// now. Requests are answered here or not at all, never passed on, so none can go
    /// round the nodes.
    fn receive(&self, server: &Arc<Server>, payload: &[u8]) {
        let Some((header, body)) = split_frame(payload) else { return };
        // `None` for a stanza, the connection and condition for a close.
        let (close, full) = match header.split_once(' ') {
            Some(("B", rest)) => {
                let (server, body) = (server.clone(), body.to_vec());
                return self.answer(rest, async move { crate::http::bosh::forwarded(&server, &body).await });
            }
            Some(("E", rest)) => {
                let (server, request) = (server.clone(), String::from_utf8_lossy(body).into_owned());
                return self.answer(rest, async move {
                    if let Some((id, owner)) = request.split_once(' ') {
                        server.sm.end(id, owner).await;
                    }
                    Reply::ok(String::new())
                });
            }
            Some(("R", rest)) => return self.answered(rest, body),
            Some(("V", hops)) => return self.received_placed(server, hops, body),
            Some(("S", full)) => (None, full),
            Some(("C", rest)) => {
                let mut parts = rest.splitn(3, ' ');
                let (Some(conn), Some(condition), Some(full)) = (parts.next(), parts.next(), parts.next()) else { return };
                (Some((conn.parse::<ConnId>().unwrap_or(0), condition)), full)
            }
            _ => return,
        };
        let Some((bare, resource)) = full.split_once('/') else { return };
        let local = server.sessions.get(bare, resource).filter(SessionHandle::is_local);
        match close {
            None => {
                let Ok(st) = reader::parse_stanza(body, &Limits::unlimited()) else { return };
                let refused = match local {
                    Some(h) => h.deliver(st).err(),
                    None => Some(st),
                };
                // The session is gone (or full): a message goes where an undelivered one
                // goes, to the account's other resources or offline storage.
                if let Some(st) = refused {
                    self.reroute(server, st, bare, Vec::new(), ());
                }
            }
            Some((conn, condition)) => {
                let condition = StreamErrorCondition::from_name(condition).unwrap_or(StreamErrorCondition::Conflict);
                if let Some(h) = local.filter(|h| h.conn == conn) {
                    h.send(crate::registry::Routed::Close(StreamError::with_text(condition, String::from_utf8_lossy(body))));
                }
            }
        }
    }
}

/// Joins the cluster before the node serves anyone: subscribes and synchronizes, takes
/// over after this node's previous run, announces the node; then keeps all of it up.
pub async fn start(server: &Arc<Server>, cluster: Arc<Cluster>) -> Result<(), String> {
    crate::registry::seed_conn_ids();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let subscription = tokio::spawn(subscribe_loop(server.clone(), cluster.clone(), ready_tx));
    *cluster.subscription.lock().expect("subscription") = Some(subscription);
    ready.await.map_err(|_| "cluster: could not subscribe to Redis".to_owned())?;
    if let Some(mut unheard) = cluster.unheard_rx.lock().expect("unheard").take() {
        let (server, cluster) = (server.clone(), cluster.clone());
        tokio::spawn(async move {
            while let Some(u) = unheard.recv().await {
                cluster.unheard(&server, u);
            }
        });
    }
    // With the mirror in place, so that the contacts on other nodes are reached; and
    // before announcing, as taking over removes the node from the list.
    cluster.take_over(server, cluster.node()).await.map_err(|e| format!("cluster: {e}"))?;
    cluster.announce().await.map_err(|e| format!("cluster: {e}"))?;
    tokio::spawn(lease_loop(server.clone(), cluster));
    Ok(())
}

/// Renews this node's lease and reaps the others' expired ones, until the node leaves.
async fn lease_loop(server: Arc<Server>, cluster: Arc<Cluster>) {
    let mut renew = tokio::time::interval(Duration::from_millis(cluster.config.lease_ms / 3));
    let mut check = tokio::time::interval(LEASE_CHECK);
    let mut leaving = cluster.leaving.subscribe();
    loop {
        tokio::select! {
            _ = renew.tick() => match cluster.renew().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!("this node's lease had expired; registering its sessions again");
                    if let Err(e) = cluster.resync(&server).await {
                        tracing::warn!(error = %e, "could not register the sessions again");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not renew this node's lease"),
            },
            _ = check.tick() => {
                if let Err(e) = cluster.reap_expired(&server).await {
                    tracing::debug!(error = %e, "could not check the other nodes' leases");
                }
            }
            _ = left(&mut leaving) => return,
        }
    }
}

/// Listens to the events channel and this node's channel; after every (re)connection,
/// registers this node's sessions again and rebuilds the mirror. Runs until the node
/// leaves the cluster, not just until shutdown begins: stanzas for the sessions it is
/// closing keep coming until the other nodes know they are gone, and are routed again.
async fn subscribe_loop(server: Arc<Server>, cluster: Arc<Cluster>, ready: tokio::sync::oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut leaving = cluster.leaving.subscribe();
    let own = node_channel(cluster.node());
    let handle = |msg: redis::Msg| {
        if msg.get_channel_name() == own {
            cluster.receive(&server, msg.get_payload_bytes());
        } else {
            cluster.apply(&server, msg.get_payload_bytes());
        }
    };
    loop {
        match subscribed(&server, &cluster).await {
            Ok(pubsub) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
                let (mut sink, mut messages) = pubsub.split();
                loop {
                    tokio::select! {
                        msg = messages.next() => match msg {
                            Some(msg) => handle(msg),
                            None => break,
                        },
                        _ = left(&mut leaving) => {
                            // Redis confirms the unsubscription after the messages published
                            // before it, which are then waiting in the stream; a stanza
                            // published later reaches nobody, and its sender's node routes it.
                            if let Err(e) = sink.unsubscribe(&own).await {
                                tracing::warn!(error = %e, "could not stop listening to this node's channel");
                            }
                            while let Some(Some(msg)) = messages.next().now_or_never() {
                                handle(msg);
                            }
                            return;
                        }
                    }
                }
                tracing::warn!("lost the connection to Redis; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "cannot subscribe to Redis; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
            _ = left(&mut leaving) => return,
        }
    }
}

/// Resolves once the node is leaving the cluster.
async fn left(leaving: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = leaving.wait_for(|left| *left).await;
}

/// Subscribes, then synchronizes: events published meanwhile wait in the subscription and
/// are applied after the rebuilt mirror, and applying one twice changes nothing.
async fn subscribed(server: &Arc<Server>, cluster: &Cluster) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = cluster.client.get_async_pubsub().await?;
    pubsub.subscribe(&[EVENTS.to_owned(), node_channel(cluster.node())]).await?;
    cluster.resync(server).await?;
    Ok(pubsub)
}

/// A client of `owner` (`user@domain`) asked to resume session `id`, which lives on
/// another node: XEP-0198 sessions do not move between nodes, so that node ends it now,
/// as when its resumption window passes, instead of keeping it for the whole window.
/// Returns once it has (or after [`HANDOVER_TIMEOUT`]): what the session held has gone to
/// the account's resources or offline storage before the client, told the resumption
/// failed, binds anew and asks for its offline messages.
pub async fn end_resumable_elsewhere(server: &Server, id: &str, owner: &str) {
    let Some(cluster) = server.sessions.cluster() else { return };
    let Some(node) = node_of(id).filter(|node| *node != cluster.node()) else { return };
    if cluster.ask(node, "E", format!("{id} {owner}").as_bytes(), HANDOVER_TIMEOUT).await.is_none() {
        tracing::info!(%node, "another node did not end a session resumed here in time (or is gone)");
    }
}

/// Tells the other nodes that a module changed `account`'s data, so that they forget what
/// they cached of it (a blocklist, archiving preferences). Awaited: Redis has handed the
/// news to the other nodes when the change is answered. Nothing alone.
pub async fn account_changed(server: &Server, account: &jid::BareJid) {
    let Some(cluster) = server.sessions.cluster() else { return };
    let event = Event::Changed { node: cluster.config.node.clone(), account: account.to_string() };
    let payload = format!("0 {}", serde_json::to_string(&event).expect("serializable"));
    if let Err(e) = cluster.redis.clone().publish::<_, _, ()>(EVENTS, payload).await {
        tracing::warn!(error = %e, "could not tell the other nodes about an account's change");
    }
}

/// `jabberwock cluster status`: each known node with its address, the time left on its
/// lease and its sessions, then the totals. Reads Redis only, like the other nodes do.
pub async fn status(config: &ClusterConfig) -> Result<Vec<String>, String> {
    let client = redis::Client::open(config.redis.as_str()).map_err(|e| format!("cluster.redis: {e}"))?;
    let mut redis = client.get_multiplexed_async_connection().await.map_err(|e| format!("cannot reach Redis: {e}"))?;
    let failed = |e: redis::RedisError| format!("Redis: {e}");
    let nodes: std::collections::BTreeMap<String, String> = redis.hgetall(NODES).await.map_err(failed)?;
    let mut sessions: HashMap<String, usize> = HashMap::new();
    let keys: Vec<String> = {
        let mut iter: redis::AsyncIter<String> = redis.scan_match(format!("{SESSIONS}*")).await.map_err(failed)?;
        let mut keys = Vec::new();
        while let Some(k) = iter.next_item().await {
            keys.push(k.map_err(failed)?);
        }
        keys
    };
    for key in keys {
        let values: Vec<String> = redis.hvals(&key).await.map_err(failed)?;
        for (_, e) in values.iter().filter_map(|v| split_value(v)) {
            *sessions.entry(e.node).or_default() += 1;
        }
    }
    let mut lines = Vec::new();
    for (node, info) in &nodes {
        let info: Option<NodeInfo> = serde_json::from_str(info).ok();
        let pttl: i64 = redis.pttl(lease_key(node)).await.map_err(failed)?;
        let lease = if pttl > 0 { format!("lease {pttl} ms") } else { "lease expired".to_owned() };
        let (address, started) = info.map_or((String::from("?"), 0), |i| (i.address, i.started));
        lines.push(format!("{node}  address {address}  {lease}  sessions {}  started {started}", sessions.get(node).copied().unwrap_or(0)));
    }
    lines.push(format!("nodes {}  sessions {}", nodes.len(), sessions.values().sum::<usize>()));
    Ok(lines)
}

/// Splits a stored value into its sequence number and binding.
fn split_value(v: &str) -> Option<(u64, Entry)> {
    let (seq, json) = v.split_once(' ')?;
    Some((seq.parse().ok()?, serde_json::from_str(json).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body_bytes: usize) -> Stanza {
        let el = Element::new("message", jabberwock_proto::ns::CLIENT)
            .with_child(Element::new("body", jabberwock_proto::ns::CLIENT).with_text("x".repeat(body_bytes)));
        Stanza::from_element(&el)
    }

    #[test]
    fn a_scoped_id_names_its_node_and_a_plain_one_none() {
        assert_eq!(node_of(&format!("xmpp-1.b_c{NODE_SEPARATOR}{}", crate::stanzas::random_id())), Some("xmpp-1.b_c"));
        // One node's ids are random, in an alphabet without the separator.
        assert!(!crate::stanzas::random_id().contains(NODE_SEPARATOR));
        assert_eq!(node_of("aB3-_x"), None);
    }

    #[test]
    fn what_waits_for_another_node_is_bounded_in_bytes() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let overflows = prometheus_client::metrics::counter::Counter::default();
        let peer = Arc::new(Peer { node: "n2".into(), tx, budget: OutputBudget::new(10_000, overflows.clone()) });
        let remote = RemoteSession { peer, jid: "u@d/r".into() };
        let st = message(4000);
        assert!(remote.forward(st.clone()).is_ok());
        assert!(remote.forward(st.clone()).is_ok());
        assert_eq!(remote.forward(st.clone()), Err(st.clone()), "a third would exceed cluster.max_forward_bytes");
        assert_eq!(overflows.get(), 1);
        // Published: the bytes are released and there is room again.
        let frame = rx.try_recv().expect("queued");
        assert!(frame.starts_with(b"S u@d/r\n"));
        remote.budget().release(frame.len());
        assert!(remote.forward(st).is_ok());
    }
}
