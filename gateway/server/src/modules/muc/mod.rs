//! XEP-0045 multi-user chat: a room service on `conference.<domain>` (the subdomain is
//! configurable) for each served domain, for local and federated users alike.
//!
//! [`room`] holds a room's state and the stanzas it sends; this file is the service:
//! it finds (or creates, or loads) the room a stanza is for, answers the service's and
//! the rooms' iqs (disco, owner configuration, admin lists, XEP-0313 queries, XEP-0410
//! self-ping), keeps persistent rooms in storage and sends what a room produced. The
//! room options are in [`options`], those that guard the door in files of their own.
//!
//! In a cluster, each room is served by one node at a time, which claimed it (see
//! [`crate::cluster::Placed`]); the other nodes forward its stanzas there.
//!
//! Storage, under the service's domain: map `muc_rooms` (room → [`room::Stored`] as
//! JSON) for persistent rooms, map `muc_tombstones` (room → [`Tombstone`]) for
//! destroyed ones, and the archive `muc` of each room.

mod invite;
mod max_users;
mod members_only;
mod moderation;
pub mod options;
mod password;
pub mod room;
mod voice;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, Stanza, StanzaError, StanzaKind};
use jabberwock_storage::{ArchiveAppend, ArchiveDelete, ArchiveQuery, UserRef};
use jid::{BareJid, Jid};

use super::mam::Mam;
use super::{Host, Module, Service, ShutdownHooks};
use crate::cluster::Placed;
use crate::config::MucConfig;
use crate::routing::route;
use crate::server::Server;
use crate::stanzas::{bounce_reply, error_reply, iq_result, now_us, random_id, xep0082};
use options::{Limits, RoomConfig};
use room::{Affiliation, Join, Role, Room, Stored};

const ROOMS: &str = "muc_rooms";
const TOMBSTONES: &str = "muc_tombstones";
const ARCHIVE: &str = "muc";

/// What is left of a destroyed room for a while: joins get `gone` and its new address.
#[derive(serde::Serialize, serde::Deserialize)]
struct Tombstone {
    venue: Option<String>,
    reason: Option<String>,
    until_unix: i64,
}

pub struct Muc {
    /// One service per served domain, by the service's domain.
    services: HashMap<String, Arc<RoomService>>,
}

impl Muc {
    pub fn new(config: &crate::config::Config) -> Self {
        let services = if config.muc.enabled {
            config
                .domains
                .iter()
                .map(|d| {
                    let domain = format!("{}.{d}", config.muc.subdomain);
                    (domain.clone(), Arc::new(RoomService { domain, parent: d.clone(), config: config.muc.clone(), rooms: Mutex::default() }))
                })
                .collect()
        } else {
            HashMap::new()
        };
        Muc { services }
    }
}

impl Muc {
    /// The nick under which `device` (an occupant's full JID) is in `room`, if it is there.
    pub async fn nick_of(&self, room: &BareJid, device: &Jid) -> Option<String> {
        let service = self.services.get(room.domain().as_str())?;
        let live = service.rooms.lock().expect("rooms").get(room.node()?.as_str()).cloned()?;
        let r = live.lock().await;
        r.occupant_of(device).map(|o| o.nick.clone())
    }
}

/// Occupants leave when their session ends because a room is a directed-presence
/// target (RFC 6121 §4.6): the unavailable presence every session sends when it ends,
/// cleanly, by timeout or after its XEP-0198 resumption window, reaches the room; a
/// remote occupant's server does the same.
impl Module for Muc {
    fn register(self: Arc<Self>, host: &mut Host) {
        for service in self.services.values() {
            host.service(service.domain.clone(), &service.parent, "Chatrooms", service.clone());
        }
        host.shutdown_hooks(self);
    }
}

/// When the server stops, the occupants still in its rooms (those of other nodes and
/// servers; local sessions have ended) are told so, with status 332, and join again.
#[async_trait]
impl ShutdownHooks for Muc {
    async fn stopping(&self, server: &Arc<Server>) {
        for service in self.services.values() {
            for room in service.live_rooms() {
                let out = room.lock().await.shut_down();
                send(server, out).await;
            }
        }
        if let Some(cluster) = server.sessions.cluster() {
            cluster.drained().await;
        }
    }
}

type SharedRoom = Arc<tokio::sync::Mutex<Room>>;

/// The rooms of one service domain.
struct RoomService {
    domain: String,
    /// The served domain whose users are local here.
    parent: String,
    config: MucConfig,
    /// Rooms with occupants (and persistent rooms being used), by node.
    rooms: Mutex<HashMap<String, SharedRoom>>,
}

async fn send(server: &Arc<Server>, out: Vec<Stanza>) {
    for st in out {
        route(server, st).await;
    }
}

#[async_trait]
impl Service for RoomService {
    async fn handle(&self, server: &Arc<Server>, st: Stanza, to: &Jid) -> Vec<Stanza> {
        // Errors from occupants' servers are not acted on: an undeliverable message does
        // not make a live occupant leave. (Iq errors are answers, relayed below.)
        if st.stanza_type() == Some("error") && st.kind() != StanzaKind::Iq {
            return Vec::new();
        }
        let Some(from) = st.from().and_then(|f| Jid::new(f).ok()) else { return Vec::new() };
        let Some(node) = to.node().map(|n| n.to_string()) else {
            return match st.kind() {
                StanzaKind::Iq => self.service_iq(server, &st).await,
                _ => bounce_reply(&st, StanzaError::service_unavailable()),
            };
        };
        // In a cluster, a room lives on the one node that claimed it (see the placement in
        // `cluster`): its stanzas go there, whole, from wherever they arrived.
        let Some(cluster) = server.sessions.cluster() else { return self.handle_in_room(server, st, &node, &from, to).await };
        let room = to.to_bare().to_string();
        match cluster.enter(&room).await {
            Placed::Here => {
                let out = self.handle_in_room(server, st, &node, &from, to).await;
                cluster.exit(&room, || self.rooms.lock().expect("rooms").contains_key(&node)).await;
                out
            }
            Placed::Elsewhere(host) => match cluster.forward_placed(&host, st) {
                Ok(()) => Vec::new(),
                Err(st) => bounce_reply(&st, StanzaError::resource_constraint().with_text("the room is moving between nodes; try again")),
            },
        }
    }
}

impl RoomService {
    /// A stanza for the room `node` (or one of its occupants), on the node that serves it.
    async fn handle_in_room(&self, server: &Arc<Server>, st: Stanza, node: &str, from: &Jid, to: &Jid) -> Vec<Stanza> {
        match (st.kind(), to.resource()) {
            (StanzaKind::Presence, Some(nick)) => self.presence(server, node, from, nick.as_str(), st).await,
            (StanzaKind::Presence, None) => bounce_reply(&st, StanzaError::jid_malformed().with_text("join with a nick: room@service/nick")),
            (StanzaKind::Message, None) => self.message_to_room(server, node, from, st).await,
            (StanzaKind::Message, Some(nick)) => self.private_message(server, node, from, nick.as_str(), st).await,
            (StanzaKind::Iq, None) => self.room_iq(server, node, from, st).await,
            (StanzaKind::Iq, Some(nick)) => self.occupant_iq(server, node, from, nick.as_str(), st).await,
            (StanzaKind::Other, _) => Vec::new(),
        }
    }

    fn room_jid(&self, node: &str) -> Option<BareJid> {
        BareJid::new(&format!("{node}@{}", self.domain)).ok()
    }

    fn store_ref<'a>(&'a self, node: &'a str) -> UserRef<'a> {
        UserRef { host: &self.domain, user: node }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_users: self.config.max_occupants,
            max_text_bytes: self.config.max_text_bytes,
            messages_per_sec: self.config.max_messages_per_sec,
        }
    }

    fn live_rooms(&self) -> Vec<SharedRoom> {
        self.rooms.lock().expect("rooms").values().cloned().collect()
    }

    /// How many rooms other than `node` the account has joined on this service.
    async fn joined_elsewhere(&self, node: &str, real: &BareJid) -> usize {
        let mut n = 0;
        for room in self.live_rooms() {
            let r = room.lock().await;
            if r.jid.node().is_some_and(|x| x.as_str() != node) && r.occupants.iter().any(|o| &o.real == real) {
                n += 1;
            }
        }
        n
    }

    /// The room in memory, or loaded from storage if it is persistent.
    async fn find(&self, server: &Server, node: &str) -> Option<SharedRoom> {
        if let Some(r) = self.rooms.lock().expect("rooms").get(node) {
            return Some(r.clone());
        }
        let raw = server.store.map_get(UserRef { host: &self.domain, user: "" }, ROOMS, node).await.ok()??;
        let stored: Stored = serde_json::from_slice(&raw).ok()?;
        let mut room = Room::from_stored(self.room_jid(node)?, stored, false);
        if room.config.archive {
            room.restore_history(self.recent(server, node).await);
        }
        let room = Arc::new(tokio::sync::Mutex::new(room));
        // Another stanza may have loaded it meanwhile: keep the first.
        Some(self.rooms.lock().expect("rooms").entry(node.to_owned()).or_insert(room).clone())
    }

    /// The newest archived messages of a room, oldest first, for its history.
    async fn recent(&self, server: &Server, node: &str) -> Vec<(String, Element)> {
        self.flush_archive(server).await;
        let q = ArchiveQuery { limit: Some(options::MAX_HISTORY as usize), last_page: true, ..Default::default() };
        let Ok(page) = server.store.archive_query(self.store_ref(node), ARCHIVE, &q).await else { return Vec::new() };
        page.items
            .iter()
            .filter_map(|i| {
                let stamp = time::OffsetDateTime::from_unix_timestamp_nanos(i.stamp_us as i128 * 1000).ok()?;
                Some((xep0082(stamp), room::from_archive(&i.payload)?))
            })
            .collect()
    }

    /// Queues a message for the room's archive on the account archive's batching writer,
    /// so one commit covers many messages of any room or account.
    async fn archive(&self, server: &Server, node: &str, id: String, stamp_us: i64, with: String, payload: Vec<u8>) {
        let item = ArchiveAppend { host: self.domain.clone(), user: node.to_owned(), store: ARCHIVE.to_owned(), id, stamp_us, with, payload };
        match server.modules.get::<Mam>() {
            Some(mam) => mam.append(item).await,
            None => {
                if let Err(e) = server.store.archive_append_batch(std::slice::from_ref(&item)).await {
                    tracing::error!(error = %e, room = %item.user, "archiving a room message failed");
                }
            }
        }
    }

    /// Waits until what was queued for the archives is committed, before reading or
    /// changing a room's archive.
    async fn flush_archive(&self, server: &Server) {
        if let Some(mam) = server.modules.get::<Mam>() {
            mam.flush().await;
        }
    }

    /// Saves a persistent room, or forgets a room that is no longer persistent.
    async fn save(&self, server: &Server, node: &str, room: &Room) -> Result<(), StanzaError> {
        let value = room.config.persistent.then(|| serde_json::to_vec(&room.stored()).expect("serializes"));
        server.store.map_set(UserRef { host: &self.domain, user: "" }, ROOMS, node, value.as_deref()).await.map_err(|e| {
            tracing::error!(error = %e, room = %room.jid, "saving a room failed");
            StanzaError::internal_server_error()
        })
    }

    /// Drops an empty room from memory: a transient one is gone, a persistent one is
    /// loaded again when needed.
    async fn unload_if_empty(&self, room: &SharedRoom) {
        let r = room.lock().await;
        if !r.occupants.is_empty() {
            return;
        }
        if let Some(node) = r.jid.node() {
            let mut rooms = self.rooms.lock().expect("rooms");
            if rooms.get(node.as_str()).is_some_and(|x| Arc::ptr_eq(x, room)) {
                rooms.remove(node.as_str());
            }
        }
    }

    async fn presence(&self, server: &Arc<Server>, node: &str, from: &Jid, nick: &str, st: Stanza) -> Vec<Stanza> {
        let unavailable = st.stanza_type() == Some("unavailable");
        if !matches!(st.stanza_type(), None | Some("unavailable")) {
            return Vec::new();
        }
        let existing = self.find(server, node).await;
        let (room, created) = match existing {
            Some(r) => (r, false),
            None if unavailable => return Vec::new(),
            None => match self.gone(server, node).await.map_or_else(|| self.create(node, from), Err) {
                Ok(r) => (r, true),
                Err(e) => return bounce_reply(&st, e),
            },
        };
        // Only a join counts against the account's rooms (not holding this room's lock:
        // the count looks at every room).
        let joining = !unavailable && room.lock().await.occupant_of(from).is_none();
        if joining && self.joined_elsewhere(node, &from.to_bare()).await >= self.config.max_rooms_per_user {
            self.unload_if_empty(&room).await;
            return bounce_reply(&st, StanzaError::resource_constraint().with_text("you are in too many rooms here"));
        }
        let result = {
            let mut r = room.lock().await;
            let x = st.to_element().ok().and_then(|el| el.child("x", ns::MUC).cloned());
            let same_nick = r.occupant_of(from).is_some_and(|o| o.nick == nick);
            if same_nick && !unavailable && x.is_some() {
                // A join from a device already in: it has forgotten the room (a reloaded page).
                let mut out = r.rejoin(from);
                out.extend(r.history_for(from, x.as_ref().and_then(|x| x.child("history", ns::MUC))));
                Ok(out)
            } else if r.occupant_of(from).is_some() {
                r.presence_from(from, nick, &st)
            } else if unavailable {
                Ok(Vec::new())
            } else {
                let password = password::of_join(x.as_ref());
                let join = Join { jid: from, nick, password: password.as_deref(), affiliation: r.affiliation(&from.to_bare()) };
                r.join(&join, &st, created).map(|mut out| {
                    out.extend(r.history_for(from, x.as_ref().and_then(|x| x.child("history", ns::MUC))));
                    out
                })
            }
        };
        match result {
            Ok(out) => {
                send(server, out).await;
                self.unload_if_empty(&room).await;
                Vec::new()
            }
            Err(e) => {
                if created {
                    self.unload_if_empty(&room).await;
                }
                bounce_reply(&st, e)
            }
        }
    }

    /// The error for a join to a destroyed room, while its tombstone lasts.
    async fn gone(&self, server: &Server, node: &str) -> Option<StanzaError> {
        let raw = server.store.map_get(UserRef { host: &self.domain, user: "" }, TOMBSTONES, node).await.ok()??;
        let t: Tombstone = serde_json::from_slice(&raw).ok()?;
        if t.until_unix < time::OffsetDateTime::now_utc().unix_timestamp() {
            return None;
        }
        let mut text = String::from("this room was destroyed");
        if let Some(venue) = &t.venue {
            text.push_str(&format!("; it moved to xmpp:{venue}?join"));
        }
        if let Some(reason) = &t.reason {
            text.push_str(&format!(" ({reason})"));
        }
        Some(StanzaError::gone().with_text(text))
    }

    /// Keeps a destroyed room's tombstone for `tombstone_days`.
    async fn bury(&self, server: &Server, node: &str, venue: Option<&str>, reason: Option<&str>) {
        if self.config.tombstone_days == 0 {
            return;
        }
        let until_unix = time::OffsetDateTime::now_utc().unix_timestamp() + i64::from(self.config.tombstone_days) * 86_400;
        let t = Tombstone { venue: venue.map(str::to_owned), reason: reason.map(str::to_owned), until_unix };
        let json = serde_json::to_vec(&t).expect("serializes");
        if let Err(e) = server.store.map_set(UserRef { host: &self.domain, user: "" }, TOMBSTONES, node, Some(&json)).await {
            tracing::error!(error = %e, room = node, "keeping a destroyed room's tombstone failed");
        }
    }

    /// A new, locked room owned by its creator (XEP-0045 §10.1).
    fn create(&self, node: &str, creator: &Jid) -> Result<SharedRoom, StanzaError> {
        let jid = self.room_jid(node).ok_or_else(StanzaError::jid_malformed)?;
        let mut rooms = self.rooms.lock().expect("rooms");
        if rooms.len() >= self.config.max_rooms {
            return Err(StanzaError::resource_constraint().with_text("this service has too many rooms"));
        }
        let config = RoomConfig { max_users: RoomConfig::default().max_users.min(self.config.max_occupants), ..Default::default() };
        let room = Arc::new(tokio::sync::Mutex::new(Room::new(jid, config, &creator.to_bare())));
        Ok(rooms.entry(node.to_owned()).or_insert(room).clone())
    }

    async fn message_to_room(&self, server: &Arc<Server>, node: &str, from: &Jid, st: Stanza) -> Vec<Stanza> {
        let Some(room) = self.find(server, node).await else {
            return bounce_reply(&st, StanzaError::item_not_found().with_text("no such room"));
        };
        let mut r = room.lock().await;
        match st.stanza_type() {
            Some("groupchat") => match r.groupchat(from, &st, &self.limits()) {
                Ok((out, archived)) => {
                    if let Some((id, stamp_us, el)) = archived {
                        // Filed under the occupant JID, never the real one: a query `with`
                        // a real JID must not reveal who said what.
                        let with = el.attr("from").unwrap_or_default().to_owned();
                        self.archive(server, node, id, stamp_us, with, el.to_bytes()).await;
                    }
                    let subject_changed = st.inner().contains("<subject") && !st.inner().contains("<body");
                    if subject_changed && r.config.persistent {
                        let _ = self.save(server, node, &r).await;
                    }
                    send(server, out).await;
                    Vec::new()
                }
                Err(e) => bounce_reply(&st, e),
            },
            _ => {
                let Ok(el) = st.to_element() else { return bounce_reply(&st, StanzaError::bad_request()) };
                if let Some(form) = voice::request_form(&el) {
                    return match r.voice(from, form) {
                        Ok(out) => {
                            send(server, out).await;
                            Vec::new()
                        }
                        Err(e) => bounce_reply(&st, e),
                    };
                }
                let Some(x) = el.child("x", ns::MUC_USER) else {
                    return bounce_reply(&st, StanzaError::bad_request().with_text("only groupchat messages, invitations and voice requests go to a room"));
                };
                match r.invitation(from, x) {
                    Ok(invited) => {
                        if invited.affiliations_changed {
                            let _ = self.save(server, node, &r).await;
                        }
                        send(server, invited.out).await;
                        Vec::new()
                    }
                    Err(e) => bounce_reply(&st, e),
                }
            }
        }
    }

    async fn private_message(&self, server: &Arc<Server>, node: &str, from: &Jid, nick: &str, st: Stanza) -> Vec<Stanza> {
        if st.stanza_type() == Some("groupchat") {
            return bounce_reply(&st, StanzaError::bad_request().with_text("groupchat messages go to the room"));
        }
        let Some(room) = self.find(server, node).await else {
            return bounce_reply(&st, StanzaError::item_not_found().with_text("no such room"));
        };
        let r = room.lock().await;
        match r.private_message(from, nick, &st) {
            Ok(out) => {
                send(server, out).await;
                Vec::new()
            }
            Err(e) => bounce_reply(&st, e),
        }
    }

    /// Iqs to an occupant JID. XEP-0410: an occupant pinging its own occupant JID learns
    /// it is still joined. Other requests are relayed to the occupant's newest device,
    /// under an id that carries the requester, and the answer is relayed back.
    async fn occupant_iq(&self, server: &Arc<Server>, node: &str, from: &Jid, nick: &str, st: Stanza) -> Vec<Stanza> {
        let request = matches!(st.stanza_type(), Some("get" | "set"));
        let room = self.find(server, node).await;
        let relayed = match &room {
            Some(room) => {
                let r = room.lock().await;
                if request {
                    r.relay_request(from, nick, &st)
                } else {
                    r.relay_answer(from, nick, &st).map(Some).ok_or_else(StanzaError::bad_request)
                }
            }
            None => Err(StanzaError::not_acceptable().with_text("not an occupant of this room")),
        };
        match relayed {
            Ok(Some(out)) => {
                route(server, out).await;
                Vec::new()
            }
            Ok(None) => vec![iq_result(&st, None)],
            Err(_) if !request => Vec::new(),
            Err(e) => vec![error_reply(&st, e)],
        }
    }

    async fn service_iq(&self, server: &Arc<Server>, st: &Stanza) -> Vec<Stanza> {
        if !matches!(st.stanza_type(), Some("get" | "set")) {
            return Vec::new();
        }
        let el = match st.to_element() {
            Ok(el) => el,
            Err(_) => return vec![error_reply(st, StanzaError::bad_request())],
        };
        let Some(payload) = el.first_child() else { return vec![error_reply(st, StanzaError::bad_request())] };
        let get = st.stanza_type() == Some("get");
        let reply = match (payload.name(), payload.ns(), get) {
            ("query", ns::DISCO_INFO, true) => Ok(Element::new("query", ns::DISCO_INFO)
                .with_child(Element::new("identity", ns::DISCO_INFO).with_attr("category", "conference").with_attr("type", "text").with_attr("name", "Chatrooms"))
                .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", ns::DISCO_INFO))
                .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", ns::DISCO_ITEMS))
                .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", ns::MUC))),
            ("query", ns::DISCO_ITEMS, true) => Ok(self.public_rooms(server).await),
            ("ping", ns::PING, true) => return vec![iq_result(st, None)],
            _ => Err(StanzaError::service_unavailable()),
        };
        vec![match reply {
            Ok(q) => iq_result(st, Some(q)),
            Err(e) => error_reply(st, e),
        }]
    }

    /// The public rooms: those stored and those live, unlocked (XEP-0045 §6.3).
    async fn public_rooms(&self, server: &Server) -> Element {
        let mut rooms: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
        for (node, raw) in server.store.map_all(UserRef { host: &self.domain, user: "" }, ROOMS).await.unwrap_or_default() {
            if let Ok(s) = serde_json::from_slice::<Stored>(&raw) {
                if s.config.public {
                    rooms.insert(node, s.config.name);
                }
            }
        }
        for room in self.live_rooms() {
            let r = room.lock().await;
            if let (true, false, Some(node)) = (r.config.public, r.locked, r.jid.node()) {
                rooms.insert(node.to_string(), r.config.name.clone());
            } else if let Some(node) = r.jid.node() {
                rooms.remove(node.as_str());
            }
        }
        let mut q = Element::new("query", ns::DISCO_ITEMS);
        for (node, name) in rooms {
            let jid = format!("{node}@{}", self.domain);
            let name = if name.is_empty() { node } else { name };
            q.push(Element::new("item", ns::DISCO_ITEMS).with_attr("jid", jid).with_attr("name", name));
        }
        q
    }

    async fn room_iq(&self, server: &Arc<Server>, node: &str, from: &Jid, st: Stanza) -> Vec<Stanza> {
        if !matches!(st.stanza_type(), Some("get" | "set")) {
            return Vec::new();
        }
        let Some(room) = self.find(server, node).await else {
            return vec![error_reply(&st, StanzaError::item_not_found().with_text("no such room"))];
        };
        let el = match st.to_element() {
            Ok(el) => el,
            Err(_) => return vec![error_reply(&st, StanzaError::bad_request())],
        };
        let Some(payload) = el.first_child() else { return vec![error_reply(&st, StanzaError::bad_request())] };
        let get = st.stanza_type() == Some("get");
        let mut before = Vec::new();
        let reply = {
            let mut r = room.lock().await;
            match (payload.name(), payload.ns(), get) {
                ("query", ns::DISCO_INFO, true) => Ok(Some(r.disco_info())),
                // Occupants are not listed (§6.5 allows either).
                ("query", ns::DISCO_ITEMS, true) => Ok(Some(Element::new("query", ns::DISCO_ITEMS))),
                ("ping", ns::PING, true) => Ok(None),
                ("query", ns::MUC_OWNER, _) => self.owner(server, node, &mut r, from, payload, get).await,
                ("query", ns::MUC_ADMIN, _) => self.admin(server, node, &mut r, from, payload, get).await,
                ("moderate", ns::MESSAGE_MODERATE, false) => self.moderate(server, node, &mut r, from, payload).await.map(|()| None),
                ("query", ns::MAM, false) => self.archive_query(server, node, &r, from, payload).await.map(|(results, fin)| {
                    before = results;
                    Some(fin)
                }),
                _ => Err(StanzaError::service_unavailable()),
            }
        };
        let destroyed = room.lock().await.occupants.is_empty();
        if destroyed {
            self.unload_if_empty(&room).await;
        }
        before.push(match reply {
            Ok(p) => iq_result(&st, p),
            Err(e) => error_reply(&st, e),
        });
        before
    }

    /// XEP-0045 §10: the configuration form, its submission, and destruction.
    async fn owner(&self, server: &Arc<Server>, node: &str, r: &mut Room, from: &Jid, q: &Element, get: bool) -> Result<Option<Element>, StanzaError> {
        if r.affiliation(&from.to_bare()) != Affiliation::Owner {
            return Err(StanzaError::forbidden().with_text("only owners configure the room"));
        }
        if get {
            return Ok(Some(Element::new("query", ns::MUC_OWNER).with_child(options::form(&r.config))));
        }
        if let Some(destroy) = q.child("destroy", ns::MUC_OWNER) {
            let (venue, reason) = (destroy.attr("jid"), destroy.child_text("reason", ns::MUC_OWNER));
            let out = r.destroy(venue, reason.as_deref());
            self.bury(server, node, venue, reason.as_deref()).await;
            // Nothing of it stays: a room created later under the same name starts afresh.
            r.config.persistent = false;
            self.save(server, node, r).await?;
            self.flush_archive(server).await;
            if let Err(e) = server.store.archive_delete(self.store_ref(node), ARCHIVE, ArchiveDelete::All).await {
                tracing::error!(error = %e, room = %r.jid, "deleting a destroyed room's archive failed");
            }
            send(server, out).await;
            return Ok(None);
        }
        let form = q.child("x", ns::DATA_FORMS).ok_or_else(|| StanzaError::bad_request().with_text("submit a form"))?;
        match form.attr("type") {
            // §10.1.3: cancelling the initial configuration leaves the room locked.
            Some("cancel") => Ok(None),
            Some("submit") => {
                let config = options::submit(&r.config, form, &self.limits())?;
                let out = r.configure(config);
                self.save(server, node, r).await?;
                send(server, out).await;
                Ok(None)
            }
            _ => Err(StanzaError::bad_request().with_text("the form must be submitted or cancelled")),
        }
    }

    /// XEP-0045 §8–§9: role and affiliation changes and lists.
    async fn admin(&self, server: &Arc<Server>, node: &str, r: &mut Room, from: &Jid, q: &Element, get: bool) -> Result<Option<Element>, StanzaError> {
        let by_affiliation = r.affiliation(&from.to_bare());
        let items: Vec<&Element> = q.children().filter(|c| c.is("item", ns::MUC_ADMIN)).collect();
        if items.is_empty() {
            return Err(StanzaError::bad_request().with_text("name at least one item"));
        }
        if get {
            let mut answer = Element::new("query", ns::MUC_ADMIN);
            for item in items {
                if let Some(a) = item.attr("affiliation").and_then(Affiliation::parse) {
                    if by_affiliation < Affiliation::Admin {
                        return Err(StanzaError::forbidden());
                    }
                    for (jid, _) in r.affiliations.iter().filter(|(_, x)| **x == a) {
                        answer.push(Element::new("item", ns::MUC_ADMIN).with_attr("affiliation", a.as_str()).with_attr("jid", jid.as_str()));
                    }
                } else if let Some(role) = item.attr("role").and_then(Role::parse) {
                    if r.occupant_of(from).is_none_or(|o| o.role != Role::Moderator) {
                        return Err(StanzaError::forbidden());
                    }
                    for o in r.occupants.iter().filter(|o| o.role == role) {
                        answer.push(
                            Element::new("item", ns::MUC_ADMIN)
                                .with_attr("role", role.as_str())
                                .with_attr("nick", o.nick.as_str())
                                .with_attr("affiliation", r.affiliation(&o.real).as_str())
                                .with_attr("jid", o.real.as_str()),
                        );
                    }
                } else {
                    return Err(StanzaError::bad_request());
                }
            }
            return Ok(Some(answer));
        }
        let mut out = Vec::new();
        let mut affiliations_changed = false;
        for item in items {
            if let (Some(nick), Some(role)) = (item.attr("nick"), item.attr("role")) {
                let role = Role::parse(role).ok_or_else(StanzaError::bad_request)?;
                out.extend(r.set_role(from, nick, role)?);
            } else if let (Some(jid), Some(a)) = (item.attr("jid"), item.attr("affiliation")) {
                let a = Affiliation::parse(a).ok_or_else(StanzaError::bad_request)?;
                let jid = Jid::new(jid).map_err(|_| StanzaError::jid_malformed())?.to_bare();
                out.extend(r.set_affiliation(by_affiliation, &jid, a)?);
                affiliations_changed = true;
            } else {
                return Err(StanzaError::bad_request().with_text("an item names a nick and a role, or a jid and an affiliation"));
            }
        }
        if affiliations_changed {
            self.save(server, node, r).await?;
        }
        send(server, out).await;
        Ok(None)
    }

    /// XEP-0425: the retraction goes to everyone and into the archive, and the message's
    /// archived copy becomes a tombstone.
    async fn moderate(&self, server: &Arc<Server>, node: &str, r: &mut Room, from: &Jid, request: &Element) -> Result<(), StanzaError> {
        let id = request.attr("id").unwrap_or_default().to_owned();
        let m = r.moderate(from, request)?;
        if r.config.archive {
            self.flush_archive(server).await;
            match server.store.archive_replace(self.store_ref(node), ARCHIVE, &id, &m.tombstone.to_bytes()).await {
                Ok(()) => {}
                Err(jabberwock_storage::StorageError::NotFound) => return Err(StanzaError::item_not_found().with_text("no such message")),
                Err(e) => {
                    tracing::error!(error = %e, room = %r.jid, "replacing a moderated message failed");
                    return Err(StanzaError::internal_server_error());
                }
            }
            let payload = m.announcement.to_bytes();
            self.archive(server, node, random_id(), now_us(), String::new(), payload).await;
        }
        send(server, m.out).await;
        Ok(())
    }

    /// XEP-0313 on a room: occupants, and members of members-only rooms, page through
    /// what the room archived.
    async fn archive_query(&self, server: &Arc<Server>, node: &str, r: &Room, from: &Jid, q: &Element) -> Result<(Vec<Stanza>, Element), StanzaError> {
        let member = r.affiliation(&from.to_bare()) >= Affiliation::Member;
        let allowed = member || (!r.config.members_only && r.occupants.iter().any(|o| o.real == from.to_bare()));
        if !allowed || !r.config.archive {
            return Err(StanzaError::forbidden().with_text("the archive is for occupants and members"));
        }
        self.flush_archive(server).await;
        super::mam::query(server, self.store_ref(node), ARCHIVE, r.jid.as_str(), true, from, q).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_have_distinct_fields() {
        let mut vars: Vec<_> = options::OPTIONS.iter().map(|o| o.var()).collect();
        vars.sort_unstable();
        let n = vars.len();
        vars.dedup();
        assert_eq!(vars.len(), n);
    }
}
