//! Group chats (XEP-0045): the rooms we are in, their occupants, subject and messages,
//! the moderator and owner actions, invitations (XEP-0249 and mediated), room history
//! from the room's archive (XEP-0313), public room lists (XEP-0030), and the self-ping
//! (XEP-0410) that notices a room that forgot us.
//!
//! [`Rooms`] sees every stanza before the rest of the client ([`Rooms::receive`]) and
//! takes what is room traffic; what it decides comes back as [`Effect`]s.

use std::collections::{BTreeMap, BTreeSet};

use jabberwock_proto::Element;

use crate::address;
use crate::chat::{parse_timestamp, History};
use crate::form::Form;
use crate::ns;
use crate::actions::Annotations;
use crate::stanza::{self, ErrorInfo, PresenceInfo, Show};

mod actions;
pub use actions::{Moderation, MAX_ROOM_ORPHANS};

/// Messages per page of room history.
pub const HISTORY_PAGE: u32 = 50;
/// A nick (a resourcepart, RFC 7622 §3.4) is at most this long; longer ones are refused
/// when typed and ignored when a room sends them.
pub const MAX_NICK_BYTES: usize = 1023;
/// Public rooms kept from one service's list.
pub const MAX_LISTED_ROOMS: usize = 1000;
/// Invitations waiting for the user; anyone may send one, so further ones are dropped.
pub const MAX_INVITATIONS: usize = 20;
/// A room's name is cut to this many characters.
pub const MAX_NAME_CHARS: usize = 200;

/// XEP-0045 §5.1: what an occupant may do now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Role {
    Moderator,
    Participant,
    Visitor,
    #[default]
    None,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "moderator" => Role::Moderator,
            "participant" => Role::Participant,
            "visitor" => Role::Visitor,
            "none" => Role::None,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Moderator => "moderator",
            Role::Participant => "participant",
            Role::Visitor => "visitor",
            Role::None => "none",
        }
    }

    /// The occupant list's group title.
    pub fn label(self) -> &'static str {
        match self {
            Role::Moderator => "Moderators",
            Role::Participant => "Participants",
            Role::Visitor => "Visitors",
            Role::None => "Others",
        }
    }
}

/// XEP-0045 §5.2: an account's standing in the room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Affiliation {
    Owner,
    Admin,
    Member,
    #[default]
    None,
    Outcast,
}

impl Affiliation {
    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "owner" => Affiliation::Owner,
            "admin" => Affiliation::Admin,
            "member" => Affiliation::Member,
            "none" => Affiliation::None,
            "outcast" => Affiliation::Outcast,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Admin => "admin",
            Affiliation::Member => "member",
            Affiliation::None => "none",
            Affiliation::Outcast => "outcast",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Occupant {
    pub nick: String,
    pub role: Role,
    pub affiliation: Affiliation,
    /// The real JID, when the room shows it to us (non-anonymous rooms, or to moderators).
    pub jid: Option<String>,
    /// XEP-0421: the room's stable id for this person, the same across nick changes.
    pub occupant_id: Option<String>,
    pub presence: PresenceInfo,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoomMessage {
    /// The sender's id for it (ours, for what we send; `origin-id` when there is one).
    pub id: String,
    /// The room's archive id (XEP-0359 `<stanza-id by='room'/>`), once known.
    pub stanza_id: Option<String>,
    pub nick: String,
    pub occupant_id: Option<String>,
    pub body: String,
    pub timestamp_ms: i64,
    /// Sent by us (from here, or from another of our devices under our nick).
    pub outgoing: bool,
    /// For ours: the room sent it back to everyone (XEP-0045 §7.4).
    pub reflected: bool,
    /// Names our nick.
    pub mention: bool,
    pub error: Option<String>,
    /// Its author corrected it (XEP-0308).
    pub edited: bool,
    /// What message actions did to it, and its reply and file link.
    pub annotations: Annotations,
    /// A moderator removed it (XEP-0425).
    pub moderation: Option<Moderation>,
}

impl crate::actions::Annotated for RoomMessage {
    fn annotations(&self) -> &Annotations {
        &self.annotations
    }
}

impl RoomMessage {
    /// Whose it is, for grouping a person's messages: the occupant id where the room
    /// gives one (it survives a nick change), else the nick.
    pub fn author_key(&self) -> &str {
        self.occupant_id.as_deref().unwrap_or(&self.nick)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RoomState {
    /// Our join presence is out; the room has not answered yet.
    Joining,
    Joined,
    /// Not in the room any more, with why (shown in the room view).
    Left(String),
}

/// What to set on a room we create (through its `muc#roomconfig` form). `None` settings
/// leave the service's default.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoomSettings {
    pub name: Option<String>,
    pub public: Option<bool>,
    pub members_only: Option<bool>,
    pub password: Option<String>,
}

impl RoomSettings {
    fn is_instant(&self) -> bool {
        *self == RoomSettings::default()
    }

    fn apply(&self, form: &mut Form) {
        if let Some(name) = &self.name {
            form.set("muc#roomconfig_roomname", vec![name.clone()]);
        }
        if let Some(public) = self.public {
            form.set_bool("muc#roomconfig_publicroom", public);
        }
        if let Some(members_only) = self.members_only {
            form.set_bool("muc#roomconfig_membersonly", members_only);
        }
        if let Some(password) = self.password.as_ref().filter(|p| !p.is_empty()) {
            form.set_bool("muc#roomconfig_passwordprotectedroom", true);
            form.set("muc#roomconfig_roomsecret", vec![password.clone()]);
        }
        // Messages kept for history (and for "load earlier"): on unless the user said.
        form.set_bool("muc#roomconfig_persistentroom", true);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Room {
    pub jid: String,
    /// The room's name (its disco#info identity), once known.
    pub name: Option<String>,
    pub nick: String,
    pub state: RoomState,
    pub occupants: BTreeMap<String, Occupant>,
    pub subject: Option<String>,
    pub messages: Vec<RoomMessage>,
    pub unread: u32,
    /// Unread messages that name us.
    pub mentions: u32,
    pub history: History,
    /// Our own standing, from our self-presence.
    pub role: Role,
    pub affiliation: Affiliation,
    /// Our occupant id (XEP-0421), to know our own messages in the archive.
    occupant_id: Option<String>,
    /// Kept out of what a shared session shows its tabs (see `tabs`), with `creating` and
    /// `orphans`: only the session uses them.
    #[serde(skip)]
    password: Option<String>,
    /// Set while creating: what to configure once the room says it was created (201).
    #[serde(skip)]
    creating: Option<RoomSettings>,
    /// The configuration form, while an owner edits it.
    pub config: Option<Form>,
    /// Actions on messages not loaded yet, from the archive ([`actions`]).
    #[serde(skip)]
    orphans: Vec<actions::RoomReference>,
}

impl Room {
    fn new(jid: String, nick: String, password: Option<String>) -> Room {
        Room {
            jid,
            name: None,
            nick,
            state: RoomState::Joining,
            occupants: BTreeMap::new(),
            subject: None,
            messages: Vec::new(),
            unread: 0,
            mentions: 0,
            history: History::default(),
            role: Role::None,
            affiliation: Affiliation::None,
            occupant_id: None,
            password,
            creating: None,
            config: None,
            orphans: Vec::new(),
        }
    }

    pub fn is_joined(&self) -> bool {
        self.state == RoomState::Joined
    }

    /// The room as a tab is sent it apart from its two lists that grow, the messages and
    /// the occupants, which go as changes (see the web client's `net::shared`): the rest
    /// is small, and goes again only when it changed.
    pub fn without_lists(&self) -> Room {
        Room {
            jid: self.jid.clone(),
            name: self.name.clone(),
            nick: self.nick.clone(),
            state: self.state.clone(),
            occupants: BTreeMap::new(),
            subject: self.subject.clone(),
            messages: Vec::new(),
            unread: self.unread,
            mentions: self.mentions,
            history: self.history.clone(),
            role: self.role,
            affiliation: self.affiliation,
            occupant_id: self.occupant_id.clone(),
            // The session's own, never sent.
            password: None,
            creating: None,
            config: self.config.clone(),
            orphans: Vec::new(),
        }
    }

    /// The occupants as a list, in the order of their nicks: one occupant's change is a
    /// change to one item.
    pub fn occupant_list(&self) -> Vec<Occupant> {
        self.occupants.values().cloned().collect()
    }

    /// A tab's room put together again from what [`Room::without_lists`] left and the two
    /// lists.
    pub fn with_lists(mut self, messages: Vec<RoomMessage>, occupants: Vec<Occupant>) -> Room {
        self.messages = messages;
        self.occupants = occupants.into_iter().map(|o| (o.nick.clone(), o)).collect();
        self
    }

    /// The occupants in the list's groups: by role, then affiliation, then nick.
    pub fn occupants_grouped(&self) -> Vec<(Role, Vec<&Occupant>)> {
        let mut groups: Vec<(Role, Vec<&Occupant>)> = Vec::new();
        let mut all: Vec<&Occupant> = self.occupants.values().collect();
        all.sort_by_key(|o| (o.role, o.affiliation, o.nick.to_lowercase()));
        for o in all {
            match groups.last_mut() {
                Some((role, list)) if *role == o.role => list.push(o),
                _ => groups.push((o.role, vec![o])),
            }
        }
        groups
    }

    /// We may kick, and give or take voice (XEP-0045 §8).
    pub fn can_moderate(&self) -> bool {
        self.is_joined() && self.role == Role::Moderator
    }

    /// We may ban (an admin's power, XEP-0045 §9.1).
    pub fn can_ban(&self) -> bool {
        self.is_joined() && matches!(self.affiliation, Affiliation::Owner | Affiliation::Admin)
    }

    pub fn is_owner(&self) -> bool {
        self.is_joined() && self.affiliation == Affiliation::Owner
    }

    fn is_ours(&self, nick: &str, occupant_id: Option<&str>) -> bool {
        match (occupant_id, &self.occupant_id) {
            (Some(theirs), Some(ours)) => theirs == ours,
            _ => nick == self.nick,
        }
    }

    /// Adds a message in time order, unless we have it already (by the room's archive
    /// id, or by the sender's id from the same sender); returns whether it was new.
    fn add(&mut self, msg: RoomMessage) -> bool {
        let known = self.messages.iter_mut().rev().find(|m| {
            (msg.stanza_id.is_some() && m.stanza_id == msg.stanza_id)
                || (!msg.id.is_empty() && m.id == msg.id && (m.nick == msg.nick || m.outgoing && msg.outgoing))
        });
        if let Some(m) = known {
            // Our own message seen again (reflected, or in the archive): it arrived.
            if m.outgoing {
                m.reflected = true;
            }
            if m.stanza_id.is_none() {
                m.stanza_id = msg.stanza_id;
            }
            if m.occupant_id.is_none() {
                m.occupant_id = msg.occupant_id;
            }
            return false;
        }
        let (stanza_id, id) = (msg.stanza_id.clone(), msg.id.clone());
        let at = self.messages.partition_point(|m| m.timestamp_ms <= msg.timestamp_ms);
        self.messages.insert(at, msg);
        self.adopt(stanza_id.as_deref(), &id);
        true
    }
}

/// What joining refuses before anything is sent: an address that is not a room's, or an
/// unusable nickname (also checked by a page whose session runs in a worker, to say so at
/// once). Returns the room's bare address.
pub fn check_join(room: &str, nick: &str) -> Result<String, String> {
    let room = address::parse_bare(room).map_err(|e| e.to_string())?;
    if address::local(&room).is_none() {
        return Err(format!("{room} is not a room address (room@service)"));
    }
    let nick = nick.trim();
    if nick.is_empty() || nick.len() > MAX_NICK_BYTES || nick.chars().any(char::is_control) {
        return Err("Choose a nickname".into());
    }
    Ok(room)
}

/// A room someone invited us to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Invitation {
    pub room: String,
    /// Who invites (their bare JID).
    pub from: String,
    pub reason: Option<String>,
    pub password: Option<String>,
}

/// A room in a service's public list.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublicRoom {
    pub jid: String,
    pub name: Option<String>,
}

/// What [`Rooms`] wants done.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Send(Element),
    /// The room changed; `mention` when a new message names us (worth a notification).
    Changed { room: String, mention: bool },
    /// The list of rooms, the invitations, the services or a public list changed.
    ListChanged,
    Notice(String),
}

/// What an iq of ours is waiting for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RoomIq {
    /// A page of the room's archive; `catch_up`: the newest page again, after a rejoin.
    History { room: String, query_id: String, catch_up: bool },
    /// The configuration form: for the owner to edit, or (`creating`) to fill in at once.
    ConfigForm { room: String, creating: bool },
    ConfigSubmit { room: String },
    Destroy { room: String },
    /// A role or affiliation change: what to say when it fails.
    Admin { room: String, what: String },
    SelfPing { room: String },
    /// A moderator's retraction (XEP-0425).
    Moderate { room: String },
    /// The room's disco#info, for its name.
    Info { room: String },
    ServerItems,
    ServiceInfo { jid: String },
    Browse { service: String },
}

pub struct Rooms {
    /// Prefixes our iq ids, to keep them apart from the rest of the client's.
    id_prefix: String,
    next_id: u64,
    /// Keys archive query ids, which must not be guessable (see [`crate::client`]).
    query_key: Vec<u8>,
    rooms: BTreeMap<String, Room>,
    pending: Vec<(String, RoomIq)>,
    pub invitations: Vec<Invitation>,
    /// Rooms a reloaded page took up, to join again once resumed.
    restored: Vec<String>,
    /// Group chat services of our server (XEP-0045 §6.1), once discovered.
    pub services: Vec<String>,
    /// The public rooms of each service browsed.
    pub public: BTreeMap<String, Vec<PublicRoom>>,
    /// The rooms on screen in a shown tab: their messages are read at once.
    reading: BTreeSet<String>,
}

impl Rooms {
    pub fn new(id_prefix: String, query_key: Vec<u8>) -> Rooms {
        Rooms {
            id_prefix,
            next_id: 0,
            query_key,
            rooms: BTreeMap::new(),
            pending: Vec::new(),
            invitations: Vec::new(),
            restored: Vec::new(),
            services: Vec::new(),
            public: BTreeMap::new(),
            reading: BTreeSet::new(),
        }
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{}m{}", self.id_prefix, self.next_id)
    }

    pub fn get(&self, room: &str) -> Option<&Room> {
        self.rooms.get(room)
    }

    pub fn all(&self) -> impl Iterator<Item = &Room> {
        self.rooms.values()
    }

    /// The rooms now on screen in a shown tab (see [`crate::tabs::TabViews`]): their
    /// messages are read.
    pub fn set_reading(&mut self, reading: BTreeSet<String>) {
        for room in &reading {
            if let Some(r) = self.rooms.get_mut(room) {
                r.unread = 0;
                r.mentions = 0;
            }
        }
        self.reading = reading;
    }

    /// The conversation a one-to-one message from `jid` belongs to: a private message
    /// from a room occupant (`room@service/nick`) stays with that occupant, anything else
    /// goes with the sender's bare JID.
    pub fn conversation_of(&self, jid: &str) -> String {
        match address::resource(jid) {
            Some(_) if self.rooms.contains_key(address::bare(jid)) => jid.to_owned(),
            _ => address::bare(jid).to_owned(),
        }
    }

    /// "nick (room)" for the conversation with a room occupant ([`Rooms::conversation_of`]).
    pub fn occupant_label(&self, jid: &str) -> Option<String> {
        let nick = address::resource(jid)?;
        let r = self.rooms.get(address::bare(jid))?;
        let room = r.name.clone().or_else(|| address::local(&r.jid).map(str::to_owned)).unwrap_or_default();
        Some(format!("{nick} ({room})"))
    }

    // ---- user actions; each returns what to send and what changed ----

    /// Joins `room` as `nick` (XEP-0045 §7.2), asking for no history: it comes from the
    /// room's archive once we are in, so that nothing shows twice.
    pub fn join(&mut self, room: &str, nick: &str, password: Option<&str>, own: &PresenceInfo) -> Result<Vec<Effect>, String> {
        let room = check_join(room, nick)?;
        let nick = nick.trim();
        let password = password.filter(|p| !p.is_empty()).map(str::to_owned);
        let r = self.rooms.entry(room.clone()).or_insert_with(|| Room::new(room.clone(), nick.to_owned(), None));
        r.nick = nick.to_owned();
        r.password = password.or(r.password.take());
        r.state = RoomState::Joining;
        r.occupants.clear();
        Ok(vec![Effect::Send(join_presence(r, own)), Effect::ListChanged])
    }

    /// Creates `room` (joining it makes it), then configures it with `settings`: an
    /// instant room when there are none (XEP-0045 §10.1.2), else through its form (§10.1.3).
    pub fn create(&mut self, room: &str, nick: &str, settings: RoomSettings, own: &PresenceInfo) -> Result<Vec<Effect>, String> {
        let password = settings.password.clone();
        let out = self.join(room, nick, password.as_deref(), own)?;
        let room = address::parse_bare(room).map_err(|e| e.to_string())?;
        if let Some(r) = self.rooms.get_mut(&room) {
            r.creating = Some(settings);
        }
        Ok(out)
    }

    /// Leaves a room (and forgets it; its bookmark, if any, stays).
    pub fn leave(&mut self, room: &str) -> Vec<Effect> {
        let Some(r) = self.rooms.remove(room) else { return Vec::new() };
        let mut out = vec![Effect::ListChanged];
        if !matches!(r.state, RoomState::Left(_)) {
            out.insert(0, Effect::Send(stanza::unavailable().with_attr("to", occupant_jid(&r.jid, &r.nick))));
        }
        out
    }

    /// Sends a message to the room. It shows at once, and is marked as arrived when the
    /// room sends it back to us (matched by its id, which also goes as XEP-0359
    /// `origin-id` for rooms that rewrite ids).
    pub fn send(&mut self, room: &str, body: &str, now_ms: i64) -> Vec<Effect> {
        let id = self.id();
        let msg = Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_attr("to", room)
            .with_attr("id", id.as_str())
            .with_child(Element::new("body", ns::CLIENT).with_text(body))
            .with_child(Element::new("origin-id", ns::SID).with_attr("id", id.as_str()));
        self.send_new(room, id, msg, body, Annotations::default(), now_ms)
    }

    /// Sends `msg` (ours, with id `id`, showing `shown`) to the room and shows it.
    fn send_new(&mut self, room: &str, id: String, msg: Element, shown: &str, annotations: Annotations, now_ms: i64) -> Vec<Effect> {
        let Some(r) = self.rooms.get_mut(room).filter(|r| r.is_joined()) else { return Vec::new() };
        if shown.trim().is_empty() {
            return Vec::new();
        }
        r.add(RoomMessage {
            id,
            stanza_id: None,
            nick: r.nick.clone(),
            occupant_id: r.occupant_id.clone(),
            body: shown.to_owned(),
            timestamp_ms: now_ms,
            outgoing: true,
            reflected: false,
            mention: false,
            error: None,
            edited: false,
            annotations,
            moderation: None,
        });
        vec![Effect::Send(msg), Effect::Changed { room: room.to_owned(), mention: false }]
    }

    /// XEP-0045 §7.6: a new nick in the room; the room confirms with our presence (303).
    pub fn change_nick(&mut self, room: &str, nick: &str, own: &PresenceInfo) -> Vec<Effect> {
        let nick = nick.trim();
        let Some(r) = self.rooms.get(room).filter(|r| r.is_joined()) else { return Vec::new() };
        if nick.is_empty() || nick.len() > MAX_NICK_BYTES || nick == r.nick {
            return Vec::new();
        }
        vec![Effect::Send(stanza::presence(own).with_attr("to", occupant_jid(room, nick)))]
    }

    /// XEP-0045 §8.1: a new subject (the room refuses it when we may not).
    pub fn set_subject(&mut self, room: &str, subject: &str) -> Vec<Effect> {
        if !self.rooms.get(room).is_some_and(Room::is_joined) {
            return Vec::new();
        }
        let msg = Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_attr("to", room)
            .with_child(Element::new("subject", ns::CLIENT).with_text(subject.trim()));
        vec![Effect::Send(msg)]
    }

    /// XEP-0249: invites `jid` to `room` with a message straight to them (with the
    /// room's password when we joined with one).
    pub fn invite(&mut self, room: &str, jid: &str, reason: Option<&str>) -> Result<Vec<Effect>, String> {
        let jid = address::parse_bare(jid).map_err(|e| e.to_string())?;
        let Some(r) = self.rooms.get(room) else { return Ok(Vec::new()) };
        let x = Element::new("x", ns::CONFERENCE)
            .with_attr("jid", room)
            .with_opt_attr("password", r.password.as_deref())
            .with_opt_attr("reason", reason.map(str::trim).filter(|r| !r.is_empty()));
        let msg = Element::new("message", ns::CLIENT).with_attr("to", jid.as_str()).with_child(x);
        Ok(vec![Effect::Send(msg), Effect::Notice(format!("Invited {jid} to {room}"))])
    }

    /// Forgets an invitation (it was declined, or is being accepted).
    pub fn take_invitation(&mut self, room: &str) -> Option<Invitation> {
        let at = self.invitations.iter().position(|i| i.room == room)?;
        Some(self.invitations.remove(at))
    }

    /// XEP-0045 §8.2, §8.3, §8.4: kicks (`Role::None`), gives voice (`Participant`) or
    /// takes it (`Visitor`) from the occupant `nick`.
    pub fn set_role(&mut self, room: &str, nick: &str, role: Role, reason: Option<&str>) -> Vec<Effect> {
        let item = Element::new("item", ns::MUC_ADMIN).with_attr("nick", nick).with_attr("role", role.name());
        let what = match role {
            Role::None => format!("kick {nick}"),
            Role::Visitor => format!("take voice from {nick}"),
            _ => format!("make {nick} a {}", role.name()),
        };
        self.admin(room, item, reason, what)
    }

    /// XEP-0045 §9.1 and §9.3: bans (`Outcast`), makes a member, or removes one (`None`).
    /// It applies to the account, so it needs the occupant's real JID.
    pub fn set_affiliation(&mut self, room: &str, nick: &str, affiliation: Affiliation, reason: Option<&str>) -> Vec<Effect> {
        let Some(jid) = self.rooms.get(room).and_then(|r| r.occupants.get(nick)).and_then(|o| o.jid.clone()) else {
            return vec![Effect::Notice(format!("The room does not tell {nick}'s address, so it cannot be changed"))];
        };
        let item = Element::new("item", ns::MUC_ADMIN).with_attr("jid", address::bare(&jid)).with_attr("affiliation", affiliation.name());
        let what = match affiliation {
            Affiliation::Outcast => format!("ban {nick}"),
            a => format!("make {nick} {}", a.name()),
        };
        self.admin(room, item, reason, what)
    }

    fn admin(&mut self, room: &str, mut item: Element, reason: Option<&str>, what: String) -> Vec<Effect> {
        if !self.rooms.get(room).is_some_and(Room::is_joined) {
            return Vec::new();
        }
        if let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) {
            item.push(Element::new("reason", ns::MUC_ADMIN).with_text(reason));
        }
        let id = self.id();
        self.pending.push((id.clone(), RoomIq::Admin { room: room.to_owned(), what }));
        let iq = stanza::iq("set", &id, Some(room)).with_child(Element::new("query", ns::MUC_ADMIN).with_child(item));
        vec![Effect::Send(iq)]
    }

    /// XEP-0045 §10.2: asks an owner's room for its configuration form.
    pub fn request_config(&mut self, room: &str) -> Vec<Effect> {
        if !self.rooms.get(room).is_some_and(Room::is_owner) {
            return Vec::new();
        }
        self.config_form(room, false)
    }

    fn config_form(&mut self, room: &str, creating: bool) -> Vec<Effect> {
        let id = self.id();
        self.pending.push((id.clone(), RoomIq::ConfigForm { room: room.to_owned(), creating }));
        vec![Effect::Send(stanza::iq("get", &id, Some(room)).with_child(Element::new("query", ns::MUC_OWNER)))]
    }

    /// Submits the configuration form as the owner edited it (`None`: cancels editing).
    pub fn submit_config(&mut self, room: &str, form: Option<&Form>) -> Vec<Effect> {
        let Some(r) = self.rooms.get_mut(room) else { return Vec::new() };
        r.config = None;
        let x = match form {
            Some(f) => f.submission(),
            None => Element::new("x", ns::DATA_FORMS).with_attr("type", "cancel"),
        };
        let id = self.id();
        self.pending.push((id.clone(), RoomIq::ConfigSubmit { room: room.to_owned() }));
        let iq = stanza::iq("set", &id, Some(room)).with_child(Element::new("query", ns::MUC_OWNER).with_child(x));
        vec![Effect::Send(iq), Effect::Changed { room: room.to_owned(), mention: false }]
    }

    /// The room's disco#info, for its name.
    fn ask_info(&mut self, room: &str) -> Effect {
        let id = self.id();
        self.pending.push((id.clone(), RoomIq::Info { room: room.to_owned() }));
        Effect::Send(stanza::iq("get", &id, Some(room)).with_child(Element::new("query", ns::DISCO_INFO)))
    }

    /// XEP-0045 §10.9: destroys the room (owners only).
    pub fn destroy(&mut self, room: &str, reason: Option<&str>) -> Vec<Effect> {
        if !self.rooms.get(room).is_some_and(Room::is_owner) {
            return Vec::new();
        }
        let mut destroy = Element::new("destroy", ns::MUC_OWNER);
        if let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) {
            destroy.push(Element::new("reason", ns::MUC_OWNER).with_text(reason));
        }
        let id = self.id();
        self.pending.push((id.clone(), RoomIq::Destroy { room: room.to_owned() }));
        let iq = stanza::iq("set", &id, Some(room)).with_child(Element::new("query", ns::MUC_OWNER).with_child(destroy));
        vec![Effect::Send(iq)]
    }

    /// Loads the next older page of a room's history from its archive (XEP-0313 §4,
    /// asked of the room itself): the newest page the first time.
    pub fn load_history(&mut self, room: &str) -> Vec<Effect> {
        let Some(r) = self.rooms.get(room).filter(|r| r.is_joined()) else { return Vec::new() };
        if r.history.loading || r.history.complete {
            return Vec::new();
        }
        let before = r.history.oldest.clone();
        self.history_query(room, before, false)
    }

    fn history_query(&mut self, room: &str, before: Option<String>, catch_up: bool) -> Vec<Effect> {
        let id = self.id();
        self.next_id += 1;
        let query_id = crate::client::keyed_id(&self.query_key, self.next_id);
        let Some(r) = self.rooms.get_mut(room) else { return Vec::new() };
        r.history.loading = true;
        r.history.started = true;
        let q = stanza::room_archive_query(&id, &query_id, room, before.as_deref(), HISTORY_PAGE);
        self.pending.push((id, RoomIq::History { room: room.to_owned(), query_id, catch_up }));
        vec![Effect::Send(q)]
    }

    /// Finds our server's group chat services: its disco items (XEP-0030), each asked
    /// whether it is a `conference/text` service. Done once per sign-in.
    pub fn discover(&mut self, server: &str) -> Vec<Effect> {
        if !self.services.is_empty() || self.pending.iter().any(|(_, p)| matches!(p, RoomIq::ServerItems | RoomIq::ServiceInfo { .. })) {
            return Vec::new();
        }
        let id = self.id();
        self.pending.push((id.clone(), RoomIq::ServerItems));
        vec![Effect::Send(stanza::iq("get", &id, Some(server)).with_child(Element::new("query", ns::DISCO_ITEMS)))]
    }

    /// Lists a service's public rooms (XEP-0045 §6.3).
    pub fn browse(&mut self, service: &str) -> Vec<Effect> {
        let id = self.id();
        self.pending.push((id.clone(), RoomIq::Browse { service: service.to_owned() }));
        vec![Effect::Send(stanza::iq("get", &id, Some(service)).with_child(Element::new("query", ns::DISCO_ITEMS)))]
    }

    /// XEP-0410: asks every joined room whether we are still in it; a room that forgot
    /// us (a restart, a lost presence) is joined again when it answers.
    pub fn self_ping(&mut self) -> Vec<Effect> {
        let due: Vec<String> = self
            .rooms
            .values()
            .filter(|r| r.is_joined())
            .filter(|r| !self.pending.iter().any(|(_, p)| matches!(p, RoomIq::SelfPing { room } if *room == r.jid)))
            .map(|r| occupant_jid(&r.jid, &r.nick))
            .collect();
        let mut out = Vec::new();
        for to in due {
            let id = self.id();
            self.pending.push((id.clone(), RoomIq::SelfPing { room: address::bare(&to).to_owned() }));
            out.push(Effect::Send(stanza::iq("get", &id, Some(&to)).with_child(Element::new("ping", ns::PING))));
        }
        out
    }

    /// A new session (not a resumed one): the rooms we were in no longer know us. Join
    /// them again; what was said meanwhile comes from their archives.
    pub fn rejoin_all(&mut self, own: &PresenceInfo) -> Vec<Effect> {
        self.pending.clear();
        let mut out = Vec::new();
        for r in self.rooms.values_mut().filter(|r| !matches!(r.state, RoomState::Left(_))) {
            r.history.loading = false;
            out.extend(rejoin(r, own));
        }
        out
    }

    /// A reloaded page takes up the rooms its session is in ([`Rooms::in_rooms`]); they
    /// are joined again with [`Rooms::rejoin_restored`] once the stream is resumed.
    pub fn restore(&mut self, rooms: &[(String, String)]) {
        for (jid, nick) in rooms {
            self.rooms.entry(jid.clone()).or_insert_with(|| Room::new(jid.clone(), nick.clone(), None));
            self.restored.push(jid.clone());
        }
    }

    /// The stream of a reloaded page is resumed: the rooms still have us, and a join
    /// again has them tell us who is there (this page knows nobody yet).
    pub fn rejoin_restored(&mut self, own: &PresenceInfo) -> Vec<Effect> {
        let mut out = Vec::new();
        for jid in std::mem::take(&mut self.restored) {
            if let Some(r) = self.rooms.get_mut(&jid) {
                out.extend(rejoin(r, own));
            }
        }
        out
    }

    /// The rooms we are (or are getting) in, with our nick, for [`Rooms::restore`].
    pub fn in_rooms(&self) -> Vec<(String, String)> {
        self.rooms.values().filter(|r| !matches!(r.state, RoomState::Left(_))).map(|r| (r.jid.clone(), r.nick.clone())).collect()
    }

    /// Our presence changed: rooms see it too (XEP-0045 §7.7).
    pub fn broadcast_presence(&self, own: &PresenceInfo) -> Vec<Effect> {
        self.rooms
            .values()
            .filter(|r| r.is_joined())
            .map(|r| Effect::Send(stanza::presence(own).with_attr("to", occupant_jid(&r.jid, &r.nick))))
            .collect()
    }

    // ---- what the server sends ----

    /// Takes the stanza when it is room traffic (or an invitation, or an answer to one
    /// of our room queries) and returns what follows; `None` leaves it to the rest of
    /// the client. `own` is our presence (a room that forgot us is joined again with it).
    pub fn receive(&mut self, el: &Element, own: &PresenceInfo, now_ms: i64) -> Option<Vec<Effect>> {
        if el.ns() != ns::CLIENT {
            return None;
        }
        let from = el.attr("from").unwrap_or_default();
        match el.name() {
            "iq" if matches!(el.attr("type"), Some("result" | "error")) => {
                let id = el.attr("id")?;
                let at = self.pending.iter().position(|(i, _)| i == id)?;
                let (_, what) = self.pending.remove(at);
                Some(self.on_iq(what, from, el, own))
            }
            "presence" if self.rooms.contains_key(address::bare(from)) => {
                let nick = address::resource(from)?;
                Some(self.on_presence(address::bare(from).to_owned(), nick, el))
            }
            "message" => {
                if let Some(x) = el.child("x", ns::CONFERENCE) {
                    return Some(self.on_invitation(address::bare(from), x.attr("jid"), x.attr("reason"), x.attr("password")));
                }
                if let Some(invite) = el.child("x", ns::MUC_USER).and_then(|x| x.child("invite", ns::MUC_USER)) {
                    let inviter = invite.attr("from").map(address::bare).unwrap_or_default();
                    let password = el.child("x", ns::MUC_USER).and_then(|x| x.child_text("password", ns::MUC_USER));
                    let reason = invite.child_text("reason", ns::MUC_USER);
                    return Some(self.on_invitation(inviter, Some(address::bare(from)), reason.as_deref(), password.as_deref()));
                }
                let room = address::bare(from);
                if el.child("result", ns::MAM).is_some() && self.rooms.contains_key(room) {
                    return Some(self.on_archived(room.to_owned(), el));
                }
                match el.attr("type") {
                    Some("groupchat") => Some(self.on_groupchat(room.to_owned(), address::resource(from), el, now_ms)),
                    Some("error") if self.rooms.contains_key(room) && address::resource(from).is_none() => {
                        Some(self.on_message_error(room.to_owned(), el))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn on_presence(&mut self, room: String, nick: &str, el: &Element) -> Vec<Effect> {
        let Some(r) = self.rooms.get_mut(&room) else { return Vec::new() };
        let changed = Effect::Changed { room: room.clone(), mention: false };
        let x = el.child("x", ns::MUC_USER);
        let codes: Vec<u16> =
            x.map(|x| x.children().filter(|c| c.is("status", ns::MUC_USER)).filter_map(|c| c.attr("code")?.parse().ok()).collect()).unwrap_or_default();
        let item = x.and_then(|x| x.child("item", ns::MUC_USER));
        let is_self = codes.contains(&110);
        match el.attr("type") {
            Some("error") => {
                let error = ErrorInfo::from_stanza(el);
                if r.state == RoomState::Joining {
                    r.state = RoomState::Left(join_error(&error));
                    r.creating = None;
                    return vec![changed, Effect::ListChanged];
                }
                // A refused nick change, say: we stay in under the old nick.
                vec![Effect::Notice(format!("{room}: {}", join_error(&error)))]
            }
            Some("unavailable") => {
                if is_self && codes.contains(&303) {
                    // Our nick changed: the available presence under the new one follows.
                    if let Some(new) = item.and_then(|i| i.attr("nick")).filter(|n| n.len() <= MAX_NICK_BYTES) {
                        r.occupants.remove(nick);
                        r.nick = new.to_owned();
                    }
                    return vec![changed];
                }
                if is_self || (nick == r.nick && r.is_joined()) {
                    let reason = item.and_then(|i| i.child_text("reason", ns::MUC_USER)).filter(|t| !t.is_empty());
                    let destroy = x.and_then(|x| x.child("destroy", ns::MUC_USER));
                    r.state = RoomState::Left(left_reason(&codes, destroy, reason));
                    r.occupants.clear();
                    return vec![changed, Effect::ListChanged];
                }
                // Someone left (or changed nick: the presence under the new one follows).
                r.occupants.remove(nick);
                vec![changed]
            }
            None => {
                // XEP-0045 §7.2.3: every occupant presence carries its item; one without
                // tells us nothing we could show.
                let Some(item) = item else { return Vec::new() };
                if nick.len() > MAX_NICK_BYTES {
                    return Vec::new();
                }
                let occupant = Occupant {
                    nick: nick.to_owned(),
                    role: item.attr("role").and_then(Role::parse).unwrap_or_default(),
                    affiliation: item.attr("affiliation").and_then(Affiliation::parse).unwrap_or_default(),
                    jid: item.attr("jid").map(str::to_owned),
                    occupant_id: el.child("occupant-id", ns::OCCUPANT_ID).and_then(|o| o.attr("id")).map(str::to_owned),
                    presence: PresenceInfo {
                        show: Show::from_show(el.child_text("show", ns::CLIENT).as_deref().map(str::trim)),
                        status: el.child_text("status", ns::CLIENT).filter(|s| !s.is_empty()),
                        priority: 0,
                    },
                };
                let mut out = vec![changed];
                // §7.2.3: a room that does not mark ours with 110 still uses our nick.
                if is_self || (nick == r.nick && r.state == RoomState::Joining) {
                    let first = r.state != RoomState::Joined;
                    r.nick = nick.to_owned();
                    r.role = occupant.role;
                    r.affiliation = occupant.affiliation;
                    r.occupant_id = occupant.occupant_id.clone();
                    r.state = RoomState::Joined;
                    if first {
                        out.push(Effect::ListChanged);
                    }
                    // Back in after a rejoin: what was said meanwhile, from the archive.
                    let catch_up = first && r.history.started;
                    // (A room being created is named once configured.)
                    let ask_name = first && r.name.is_none() && !codes.contains(&201);
                    if codes.contains(&201) {
                        if let Some(settings) = r.creating.take() {
                            if settings.is_instant() {
                                self.next_id += 1;
                                let id = format!("{}m{}", self.id_prefix, self.next_id);
                                let x = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit");
                                let iq = stanza::iq("set", &id, Some(&room)).with_child(Element::new("query", ns::MUC_OWNER).with_child(x));
                                self.pending.push((id, RoomIq::ConfigSubmit { room: room.clone() }));
                                out.push(Effect::Send(iq));
                            } else {
                                r.creating = Some(settings);
                                r.occupants.insert(nick.to_owned(), occupant);
                                out.extend(self.config_form(&room, true));
                                return out;
                            }
                        }
                    } else if r.creating.take().is_some() {
                        out.push(Effect::Notice(format!("{room} already exists; you joined it")));
                    }
                    r.occupants.insert(nick.to_owned(), occupant);
                    if catch_up {
                        out.extend(self.history_query(&room, None, true));
                    }
                    if ask_name {
                        out.push(self.ask_info(&room));
                    }
                    return out;
                }
                r.occupants.insert(nick.to_owned(), occupant);
                out
            }
            _ => Vec::new(),
        }
    }

    fn on_groupchat(&mut self, room: String, nick: Option<&str>, el: &Element, now_ms: i64) -> Vec<Effect> {
        let Some(r) = self.rooms.get_mut(&room) else { return Vec::new() };
        let body = el.child_text("body", ns::CLIENT).filter(|b| !b.trim().is_empty());
        // XEP-0045 §8.1: a subject is a message with a subject and no body.
        if let (Some(subject), None) = (el.child("subject", ns::CLIENT), &body) {
            let subject = subject.text();
            r.subject = Some(subject.trim().to_owned()).filter(|s| !s.is_empty());
            return vec![Effect::Changed { room, mention: false }];
        }
        let occupant_id = el.child("occupant-id", ns::OCCUPANT_ID).and_then(|o| o.attr("id")).map(str::to_owned);
        let delayed = el.child("delay", ns::DELAY).and_then(|d| d.attr("stamp")).and_then(parse_timestamp);
        let author = occupant_id.clone().unwrap_or_else(|| nick.unwrap_or_default().to_owned());
        if let Some(reference) = actions::reference(el, nick, &author, delayed.unwrap_or(now_ms)) {
            if let Some(reference) = reference {
                r.apply_or_keep(reference);
            }
            return vec![Effect::Changed { room, mention: false }];
        }
        let Some(body) = body else { return Vec::new() };
        let nick = nick.unwrap_or_default();
        let outgoing = !nick.is_empty() && r.is_ours(nick, occupant_id.as_deref());
        let (body, annotations) = crate::actions::prepare(body, &crate::actions::Extras::parse(el));
        let mention = !outgoing && mentions(&body, &r.nick);
        let msg = RoomMessage {
            id: message_id(el),
            stanza_id: stanza_id(el, &room),
            nick: nick.to_owned(),
            occupant_id,
            body,
            timestamp_ms: delayed.unwrap_or(now_ms),
            outgoing,
            reflected: outgoing,
            mention,
            error: None,
            edited: false,
            annotations,
            moderation: None,
        };
        if !r.add(msg) {
            return vec![Effect::Changed { room, mention: false }];
        }
        // History a room sends on join (delayed, before we are in) is not news.
        let news = !outgoing && (r.is_joined() || delayed.is_none());
        let reading = self.reading.contains(&room);
        if news && !reading {
            r.unread += 1;
            if mention {
                r.mentions += 1;
            }
        }
        vec![Effect::Changed { room, mention: news && mention }]
    }

    fn on_message_error(&mut self, room: String, el: &Element) -> Vec<Effect> {
        let Some(r) = self.rooms.get_mut(&room) else { return Vec::new() };
        let Some(id) = el.attr("id") else { return Vec::new() };
        let error = ErrorInfo::from_stanza(el);
        match r.messages.iter_mut().rev().find(|m| m.outgoing && m.id == id) {
            Some(m) => {
                m.error = Some(match error.condition.as_str() {
                    "forbidden" => "you may not speak in this room".to_owned(),
                    "not-acceptable" => "you are not in this room".to_owned(),
                    _ => error.describe(),
                });
                vec![Effect::Changed { room, mention: false }]
            }
            None => Vec::new(),
        }
    }

    fn on_archived(&mut self, room: String, el: &Element) -> Vec<Effect> {
        let Some(result) = el.child("result", ns::MAM) else { return Vec::new() };
        let (Some(query_id), Some(archive_id)) = (result.attr("queryid"), result.attr("id")) else { return Vec::new() };
        // Only an answer to our own query, from the room we asked.
        if !self.pending.iter().any(|(_, p)| matches!(p, RoomIq::History { room: r, query_id: q, .. } if *r == room && q == query_id)) {
            return Vec::new();
        }
        let forwarded = result.child("forwarded", ns::FORWARD);
        let Some(m) = forwarded.and_then(|f| f.child("message", ns::CLIENT)) else { return Vec::new() };
        let Some(r) = self.rooms.get_mut(&room) else { return Vec::new() };
        let from_nick = m.attr("from").and_then(address::resource);
        let nick = from_nick.unwrap_or_default().to_owned();
        let occupant_id = m.child("occupant-id", ns::OCCUPANT_ID).and_then(|o| o.attr("id")).map(str::to_owned);
        let stamp = forwarded.and_then(|f| f.child("delay", ns::DELAY)).and_then(|d| d.attr("stamp")).and_then(parse_timestamp).unwrap_or(0);
        let author = occupant_id.clone().unwrap_or_else(|| nick.clone());
        if let Some(tombstone) = actions::tombstone(m, archive_id, &author, stamp) {
            if r.message(archive_id).is_none() {
                r.add(tombstone.placeholder(archive_id, nick, occupant_id).expect("a retraction"));
            }
            r.apply_or_keep(tombstone);
            return Vec::new();
        }
        if let Some(reference) = actions::reference(m, from_nick, &author, stamp) {
            if let Some(reference) = reference {
                r.apply_or_keep(reference);
            }
            return Vec::new();
        }
        let Some(body) = m.child_text("body", ns::CLIENT).filter(|b| !b.trim().is_empty()) else { return Vec::new() };
        let outgoing = !nick.is_empty() && r.is_ours(&nick, occupant_id.as_deref());
        let (body, annotations) = crate::actions::prepare(body, &crate::actions::Extras::parse(m));
        r.add(RoomMessage {
            id: message_id(m),
            stanza_id: Some(archive_id.to_owned()),
            nick,
            occupant_id,
            mention: !outgoing && mentions(&body, &r.nick),
            body,
            timestamp_ms: stamp,
            outgoing,
            reflected: outgoing,
            error: None,
            edited: false,
            annotations,
            moderation: None,
        });
        Vec::new()
    }

    fn on_invitation(&mut self, from: &str, room: Option<&str>, reason: Option<&str>, password: Option<&str>) -> Vec<Effect> {
        let Some(room) = room.and_then(|r| address::parse_bare(r).ok()).filter(|r| address::local(r).is_some()) else {
            return Vec::new();
        };
        let known = self.rooms.get(&room).is_some_and(Room::is_joined) || self.invitations.iter().any(|i| i.room == room);
        if known || self.invitations.len() >= MAX_INVITATIONS {
            return Vec::new();
        }
        self.invitations.push(Invitation {
            room,
            from: from.to_owned(),
            reason: reason.map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned),
            password: password.filter(|p| !p.is_empty()).map(str::to_owned),
        });
        vec![Effect::ListChanged]
    }

    fn on_iq(&mut self, what: RoomIq, from: &str, el: &Element, own: &PresenceInfo) -> Vec<Effect> {
        let error = (el.attr("type") == Some("error")).then(|| ErrorInfo::from_stanza(el));
        let payload = el.first_child().filter(|_| error.is_none());
        match what {
            RoomIq::History { room, catch_up, .. } => {
                let Some(r) = self.rooms.get_mut(&room) else { return Vec::new() };
                let fin = payload.filter(|f| f.is("fin", ns::MAM));
                let first = fin.and_then(|f| f.child("set", ns::RSM)).and_then(|s| s.child_text("first", ns::RSM));
                r.history.loading = false;
                // A catch-up page is newer than what was loaded: paging further back still
                // starts from the oldest message we have.
                if !catch_up || r.history.oldest.is_none() {
                    r.history.complete = fin.is_none_or(|f| f.attr("complete") == Some("true")) || first.is_none();
                    if first.is_some() {
                        r.history.oldest = first;
                    }
                }
                vec![Effect::Changed { room, mention: false }]
            }
            RoomIq::ConfigForm { room, creating } => {
                let Some(r) = self.rooms.get_mut(&room) else { return Vec::new() };
                let form = payload.and_then(|q| q.child("x", ns::DATA_FORMS)).and_then(Form::parse);
                match (form, creating) {
                    (Some(mut form), true) => {
                        if let Some(settings) = r.creating.take() {
                            settings.apply(&mut form);
                        }
                        self.submit_config(&room, Some(&form))
                    }
                    (Some(form), false) => {
                        r.config = Some(form);
                        vec![Effect::Changed { room, mention: false }]
                    }
                    (None, _) => {
                        r.creating = None;
                        let why = error.map_or_else(|| "no form came back".to_owned(), |e| e.describe());
                        vec![Effect::Notice(format!("Could not get the settings of {room}: {why}"))]
                    }
                }
            }
            RoomIq::ConfigSubmit { room } => match error {
                Some(e) => vec![Effect::Notice(format!("{room} refused the settings: {}", e.describe()))],
                // The name may be new.
                None => vec![self.ask_info(&room), Effect::Changed { room, mention: false }],
            },
            RoomIq::Destroy { room } => match error {
                Some(e) => vec![Effect::Notice(format!("Could not destroy {room}: {}", e.describe()))],
                None => self.leave(&room),
            },
            RoomIq::Admin { room, what } => match error {
                Some(e) => vec![Effect::Notice(format!("Could not {what} in {room}: {}", e.describe()))],
                None => Vec::new(),
            },
            RoomIq::Moderate { room } => match error {
                Some(e) => vec![Effect::Notice(format!("The message was not removed from {room}: {}", e.describe()))],
                None => Vec::new(),
            },
            RoomIq::SelfPing { room } => {
                // XEP-0410 §3: only these errors mean the room no longer has us; any
                // other answer (a result, or the ping not implemented) means it does.
                let gone = error.is_some_and(|e| matches!(e.condition.as_str(), "not-acceptable" | "item-not-found"));
                match self.rooms.get_mut(&room).filter(|r| r.is_joined() && gone) {
                    Some(r) => rejoin(r, own),
                    None => Vec::new(),
                }
            }
            RoomIq::Info { room } => {
                let name = payload
                    .filter(|q| q.is("query", ns::DISCO_INFO))
                    .and_then(|q| q.children().find(|i| i.is("identity", ns::DISCO_INFO) && i.attr("category") == Some("conference")))
                    .and_then(|i| i.attr("name"))
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(|n| n.chars().take(MAX_NAME_CHARS).collect());
                match self.rooms.get_mut(&room) {
                    Some(r) if name.is_some() && from == room => {
                        r.name = name;
                        vec![Effect::ListChanged]
                    }
                    _ => Vec::new(),
                }
            }
            RoomIq::ServerItems => {
                let mut out = Vec::new();
                for item in payload.filter(|q| q.is("query", ns::DISCO_ITEMS)).iter().flat_map(|q| q.children()).take(MAX_LISTED_ROOMS) {
                    let Some(jid) = item.attr("jid").filter(|j| address::local(j).is_none() && address::resource(j).is_none()) else {
                        continue;
                    };
                    let id = self.id();
                    self.pending.push((id.clone(), RoomIq::ServiceInfo { jid: jid.to_owned() }));
                    out.push(Effect::Send(stanza::iq("get", &id, Some(jid)).with_child(Element::new("query", ns::DISCO_INFO))));
                }
                out
            }
            RoomIq::ServiceInfo { jid } => {
                let is_muc = payload.filter(|q| q.is("query", ns::DISCO_INFO)).is_some_and(|q| {
                    q.children().any(|i| i.is("identity", ns::DISCO_INFO) && i.attr("category") == Some("conference") && i.attr("type") == Some("text"))
                });
                if !is_muc || from != jid || self.services.contains(&jid) {
                    return Vec::new();
                }
                self.services.push(jid);
                vec![Effect::ListChanged]
            }
            RoomIq::Browse { service } => {
                let rooms = payload
                    .filter(|q| q.is("query", ns::DISCO_ITEMS))
                    .iter()
                    .flat_map(|q| q.children())
                    .filter_map(|i| {
                        let jid = i.attr("jid").filter(|j| address::domain(j) == service && address::local(j).is_some())?;
                        Some(PublicRoom { jid: address::bare(jid).to_owned(), name: i.attr("name").filter(|n| !n.is_empty()).map(str::to_owned) })
                    })
                    .take(MAX_LISTED_ROOMS)
                    .collect();
                self.public.insert(service.clone(), rooms);
                match error {
                    Some(e) => vec![Effect::Notice(format!("Could not list the rooms of {service}: {}", e.describe())), Effect::ListChanged],
                    None => vec![Effect::ListChanged],
                }
            }
        }
    }
}

/// `room@service/nick`.
pub fn occupant_jid(room: &str, nick: &str) -> String {
    format!("{room}/{nick}")
}

/// XEP-0045 §7.2: our presence to `room/nick`, asking for no history (it comes from the
/// archive), with the password if the room has one.
fn join_presence(r: &Room, own: &PresenceInfo) -> Element {
    let mut x = Element::new("x", ns::MUC).with_child(Element::new("history", ns::MUC).with_attr("maxchars", "0"));
    if let Some(p) = &r.password {
        x.push(Element::new("password", ns::MUC).with_text(p.as_str()));
    }
    stanza::presence(own).with_attr("to", occupant_jid(&r.jid, &r.nick)).with_child(x)
}

fn rejoin(r: &mut Room, own: &PresenceInfo) -> Vec<Effect> {
    r.state = RoomState::Joining;
    r.occupants.clear();
    vec![Effect::Send(join_presence(r, own)), Effect::Changed { room: r.jid.clone(), mention: false }]
}

/// The sender's id of a message: XEP-0359 `origin-id`, which rooms keep, else its `id`.
fn message_id(el: &Element) -> String {
    el.child("origin-id", ns::SID).and_then(|o| o.attr("id")).or_else(|| el.attr("id")).unwrap_or_default().to_owned()
}

/// The room's archive id for a message: XEP-0359 `<stanza-id/>` added `by` the room (one
/// by anyone else could be forged by the sender).
fn stanza_id(el: &Element, room: &str) -> Option<String> {
    el.children().find(|c| c.is("stanza-id", ns::SID) && c.attr("by") == Some(room)).and_then(|c| c.attr("id")).map(str::to_owned)
}

/// Whether `body` names `nick`, as a word of its own and in any case.
pub fn mentions(body: &str, nick: &str) -> bool {
    let nick = nick.trim().to_lowercase();
    if nick.is_empty() {
        return false;
    }
    let body = body.to_lowercase();
    body.match_indices(&nick).any(|(at, _)| {
        let before = body[..at].chars().next_back();
        let after = body[at + nick.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Why a room refused to let us in (XEP-0045 §7.2.6 to §7.2.10, §7.2.16).
fn join_error(e: &ErrorInfo) -> String {
    let what = match e.condition.as_str() {
        "conflict" => "That nickname is already taken in this room; choose another",
        "not-authorized" => "This room needs a password",
        "registration-required" => "This room is for members only",
        "forbidden" => "You are banned from this room",
        "item-not-found" => "This room does not exist (and you may not create it)",
        "not-allowed" => "You may not create rooms on this service",
        "service-unavailable" => "This room is full",
        "not-acceptable" => "This room wants your reserved nickname",
        "jid-malformed" => "Choose a nickname",
        "gone" => "This room has been destroyed",
        _ => return format!("Could not join: {}", e.describe()),
    };
    match &e.text {
        Some(t) => format!("{what} ({t})"),
        None => what.to_owned(),
    }
}

/// Why we are out of a room, from our unavailable presence (XEP-0045 §15.2).
fn left_reason(codes: &[u16], destroy: Option<&Element>, reason: Option<String>) -> String {
    let with_reason = |s: &str| match &reason {
        Some(r) => format!("{s}: {r}"),
        None => s.to_owned(),
    };
    if let Some(d) = destroy {
        let why = d.child_text("reason", ns::MUC_USER).filter(|r| !r.is_empty());
        let mut s = "The room was destroyed".to_owned();
        if let Some(why) = why {
            s = format!("{s}: {why}");
        }
        if let Some(alt) = d.attr("jid") {
            s = format!("{s} (it continues at {alt})");
        }
        return s;
    }
    if codes.contains(&301) {
        with_reason("You were banned from the room")
    } else if codes.contains(&307) {
        with_reason("You were kicked from the room")
    } else if codes.contains(&321) {
        with_reason("You were removed from the room's members")
    } else if codes.contains(&322) {
        "The room is now for members only".to_owned()
    } else if codes.contains(&332) {
        "The room's service is shutting down".to_owned()
    } else {
        with_reason("You left the room")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::tests::parse;

    pub(crate) const ROOM: &str = "lobby@conference.localhost";

    pub(crate) fn sent(effects: &[Effect]) -> Vec<&Element> {
        effects.iter().filter_map(|e| if let Effect::Send(el) = e { Some(el) } else { None }).collect()
    }

    pub(crate) fn feed(rooms: &mut Rooms, xml: &str) -> Vec<Effect> {
        rooms.receive(&parse(xml), &PresenceInfo::default(), 5_000).expect("room traffic")
    }

    pub(crate) fn presence(nick: &str, affiliation: &str, role: &str, extra: &str) -> String {
        format!(
            "<presence xmlns='jabber:client' from='{ROOM}/{nick}' to='user@localhost/web'>\
             <x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='{affiliation}' role='{role}'/>{extra}</x></presence>"
        )
    }

    /// Rooms with `ROOM` joined as `nick` (with the given standing), and bob in it.
    pub(crate) fn joined(nick: &str, affiliation: &str, role: &str) -> Rooms {
        let mut rooms = Rooms::new("t".into(), b"key".to_vec());
        rooms.join(ROOM, nick, None, &PresenceInfo::default()).unwrap();
        feed(&mut rooms, &presence("bob", "member", "participant", "").replace("</x>", "</x><occupant-id xmlns='urn:xmpp:occupant-id:0' id='ob'/>"));
        let own = presence(nick, affiliation, role, "<status code='110'/>")
            .replace("</x>", "</x><occupant-id xmlns='urn:xmpp:occupant-id:0' id='ou'/>");
        let ev = feed(&mut rooms, &own);
        assert!(ev.contains(&Effect::ListChanged));
        assert!(rooms.get(ROOM).unwrap().is_joined());
        rooms
    }

    pub(crate) fn groupchat(nick: &str, id: &str, body: &str, extra: &str) -> String {
        format!("<message xmlns='jabber:client' type='groupchat' from='{ROOM}/{nick}' id='{id}'><body>{body}</body>{extra}</message>")
    }

    #[test]
    fn a_room_sent_apart_from_its_lists_comes_back_whole() {
        let mut rooms = joined("me", "owner", "moderator");
        feed(&mut rooms, &groupchat("bob", "b1", "hello", ""));
        feed(&mut rooms, &presence("carol", "none", "visitor", "").replace("</x>", "</x><show>away</show>"));
        let room = rooms.get(ROOM).unwrap();
        let head = room.without_lists();
        assert!(head.messages.is_empty() && head.occupants.is_empty());
        let occupants = room.occupant_list();
        let nicks: Vec<&str> = occupants.iter().map(|o| o.nick.as_str()).collect();
        assert_eq!(nicks, ["bob", "carol", "me"], "by nick, as the room keeps them");
        // What a tab has after the JSON each part crosses as is what the whole room gives.
        let sent = |value: &Room| serde_json::from_str::<Room>(&serde_json::to_string(value).unwrap()).unwrap();
        let whole = sent(&head).with_lists(room.messages.clone(), occupants);
        assert_eq!(whole, sent(room));
        assert_eq!(whole.messages.len(), 1);
    }

    #[test]
    fn joining_asks_for_no_history_and_takes_our_presence() {
        let mut rooms = Rooms::new("t".into(), b"key".to_vec());
        let own = PresenceInfo { show: Show::Away, status: Some("lunch".into()), priority: 0 };
        let ev = rooms.join(" Lobby@Conference.LocalHost ", "Ann", Some("secret"), &own).unwrap();
        let p = sent(&ev)[0];
        assert_eq!(p.attr("to"), Some("lobby@conference.localhost/Ann"));
        assert_eq!(p.child_text("show", ns::CLIENT).as_deref(), Some("away"));
        let x = p.child("x", ns::MUC).unwrap();
        assert_eq!(x.child("history", ns::MUC).unwrap().attr("maxchars"), Some("0"));
        assert_eq!(x.child_text("password", ns::MUC).as_deref(), Some("secret"));
        assert_eq!(rooms.get(ROOM).unwrap().state, RoomState::Joining);
        assert!(rooms.join("not a room", "Ann", None, &own).is_err());
        assert!(rooms.join("conference.localhost", "Ann", None, &own).is_err(), "a service is not a room");
        assert!(rooms.join(ROOM, "  ", None, &own).is_err());
        assert!(rooms.join(ROOM, &"n".repeat(MAX_NICK_BYTES + 1), None, &own).is_err());
    }

    #[test]
    fn occupants_with_roles_affiliations_presence_and_occupant_ids() {
        let mut rooms = joined("ann", "owner", "moderator");
        feed(
            &mut rooms,
            &presence("carol", "none", "visitor", "").replace("</presence>", "<show>dnd</show><status>busy</status></presence>"),
        );
        feed(&mut rooms, &presence("dave", "admin", "moderator", "").replace("affiliation='admin'", "affiliation='admin' jid='dave@localhost/x'"));
        let r = rooms.get(ROOM).unwrap();
        assert_eq!((r.role, r.affiliation), (Role::Moderator, Affiliation::Owner));
        assert!(r.can_moderate() && r.can_ban() && r.is_owner());
        let carol = &r.occupants["carol"];
        assert_eq!((carol.role, carol.presence.show, carol.presence.status.as_deref()), (Role::Visitor, Show::Dnd, Some("busy")));
        assert_eq!(r.occupants["bob"].occupant_id.as_deref(), Some("ob"));
        assert_eq!(r.occupants["dave"].jid.as_deref(), Some("dave@localhost/x"));
        let groups: Vec<(Role, Vec<&str>)> =
            r.occupants_grouped().into_iter().map(|(role, l)| (role, l.into_iter().map(|o| o.nick.as_str()).collect())).collect();
        assert_eq!(
            groups,
            [(Role::Moderator, vec!["ann", "dave"]), (Role::Participant, vec!["bob"]), (Role::Visitor, vec!["carol"])],
            "by role, the owner before the admin"
        );

        // Bob changes his nick: one occupant, under the new name.
        feed(
            &mut rooms,
            &presence("bob", "member", "participant", "<status code='303'/>")
                .replace("<item ", "<item nick='robert' ")
                .replace("<presence ", "<presence type='unavailable' "),
        );
        feed(&mut rooms, &presence("robert", "member", "participant", ""));
        feed(&mut rooms, &format!("<presence xmlns='jabber:client' from='{ROOM}/carol' type='unavailable'/>"));
        let nicks: Vec<_> = rooms.get(ROOM).unwrap().occupants.keys().cloned().collect();
        assert_eq!(nicks, ["ann", "dave", "robert"]);
    }

    #[test]
    fn our_nick_change_and_our_messages_across_it() {
        let mut rooms = joined("ann", "none", "participant");
        let ev = rooms.change_nick(ROOM, " annie ", &PresenceInfo::default());
        assert_eq!(sent(&ev)[0].attr("to"), Some("lobby@conference.localhost/annie"));
        assert!(rooms.change_nick(ROOM, "ann", &PresenceInfo::default()).is_empty(), "the same nick: nothing");
        let ours = |extra: &str| {
            presence("ann", "none", "participant", &format!("<status code='110'/>{extra}"))
                .replace("</x>", "</x><occupant-id xmlns='urn:xmpp:occupant-id:0' id='ou'/>")
        };
        feed(&mut rooms, &ours("<status code='303'/>").replace("<item ", "<item nick='annie' ").replace("<presence ", "<presence type='unavailable' "));
        assert_eq!(rooms.get(ROOM).unwrap().nick, "annie");
        assert!(rooms.get(ROOM).unwrap().is_joined(), "a nick change is not leaving");
        feed(&mut rooms, &ours("").replace("/ann'", "/annie'"));
        let r = rooms.get(ROOM).unwrap();
        assert_eq!(r.occupants.keys().collect::<Vec<_>>(), ["annie", "bob"]);
        // Mentions follow the new nick; our message under the old nick (by occupant id) is ours.
        feed(&mut rooms, &groupchat("bob", "b1", "annie?", ""));
        feed(&mut rooms, &groupchat("ann", "old", "said before", "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='ou'/>"));
        let r = rooms.get(ROOM).unwrap();
        assert_eq!(r.messages.iter().map(|m| (m.mention, m.outgoing)).collect::<Vec<_>>(), [(true, false), (false, true)]);
    }

    #[test]
    fn leaving() {
        let mut rooms = joined("ann", "none", "participant");
        let ev = rooms.leave(ROOM);
        let p = sent(&ev)[0];
        assert_eq!((p.attr("type"), p.attr("to")), (Some("unavailable"), Some("lobby@conference.localhost/ann")));
        assert!(rooms.get(ROOM).is_none());
        assert!(rooms.leave(ROOM).is_empty());
        // Out already (kicked): forgotten without a word to the room.
        let mut rooms = joined("ann", "none", "participant");
        feed(&mut rooms, &presence("ann", "none", "none", "<status code='110'/><status code='307'/>").replace("<presence ", "<presence type='unavailable' "));
        assert_eq!(rooms.leave(ROOM), [Effect::ListChanged]);
    }

    #[test]
    fn bad_presence_from_a_room_is_ignored() {
        let mut rooms = joined("ann", "none", "participant");
        // No item: nothing to show.
        let ev = feed(&mut rooms, &format!("<presence xmlns='jabber:client' from='{ROOM}/eve'/>"));
        assert!(ev.is_empty());
        // An oversized nick.
        let ev = feed(&mut rooms, &presence(&"e".repeat(MAX_NICK_BYTES + 1), "none", "participant", ""));
        assert!(ev.is_empty());
        // From the room itself, without a nick: not occupant presence.
        assert!(rooms.receive(&parse(&format!("<presence xmlns='jabber:client' from='{ROOM}'/>")), &PresenceInfo::default(), 0).is_none());
        // An unknown role is "none" rather than a failure.
        feed(&mut rooms, &presence("odd", "none", "superuser", ""));
        assert_eq!(rooms.get(ROOM).unwrap().occupants["odd"].role, Role::None);
        assert_eq!(rooms.get(ROOM).unwrap().occupants.len(), 3);
    }

    #[test]
    fn join_errors_say_what_went_wrong() {
        for (condition, says) in [
            ("conflict", "nickname is already taken"),
            ("not-authorized", "needs a password"),
            ("registration-required", "members only"),
            ("forbidden", "banned"),
            ("service-unavailable", "full"),
            ("item-not-found", "does not exist"),
            ("undefined-condition", "Could not join"),
        ] {
            let mut rooms = Rooms::new("t".into(), b"key".to_vec());
            rooms.join(ROOM, "ann", None, &PresenceInfo::default()).unwrap();
            let ev = feed(
                &mut rooms,
                &format!(
                    "<presence xmlns='jabber:client' from='{ROOM}/ann' type='error'><error type='cancel'>\
                     <{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
                ),
            );
            assert!(ev.contains(&Effect::ListChanged));
            let RoomState::Left(why) = &rooms.get(ROOM).unwrap().state else { panic!("{condition}: still joining") };
            assert!(why.contains(says), "{condition}: {why}");
        }
        // A refused nick change keeps us in.
        let mut rooms = joined("ann", "none", "participant");
        let ev = rooms.change_nick(ROOM, "bob", &PresenceInfo::default());
        assert_eq!(sent(&ev)[0].attr("to"), Some("lobby@conference.localhost/bob"));
        let ev = feed(
            &mut rooms,
            &format!(
                "<presence xmlns='jabber:client' from='{ROOM}/bob' type='error'><error type='cancel'>\
                 <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
            ),
        );
        assert!(matches!(&ev[0], Effect::Notice(n) if n.contains("already taken")));
        assert!(rooms.get(ROOM).unwrap().is_joined());
    }

    #[test]
    fn kicked_banned_and_destroyed() {
        for (extra, says) in [
            ("<status code='307'/>", "You were kicked from the room: spam"),
            ("<status code='301'/>", "You were banned from the room: spam"),
            ("<status code='332'/>", "shutting down"),
            ("<destroy jid='new@conference.localhost'><reason>moved</reason></destroy>", "destroyed: moved (it continues at new@conference.localhost)"),
        ] {
            let mut rooms = joined("ann", "none", "participant");
            let xml = presence("ann", "none", "none", &format!("<status code='110'/>{extra}"))
                .replace("<presence ", "<presence type='unavailable' ")
                .replace("role='none'/>", "role='none'><reason>spam</reason></item>");
            let ev = feed(&mut rooms, &xml);
            assert!(ev.contains(&Effect::ListChanged));
            let r = rooms.get(ROOM).unwrap();
            let RoomState::Left(why) = &r.state else { panic!() };
            assert!(why.contains(says), "{why}");
            assert!(r.occupants.is_empty());
            assert!(rooms.send(ROOM, "anyone?", 0).is_empty(), "no messages to a room we are not in");
        }
    }

    #[test]
    fn our_messages_are_shown_once_when_the_room_reflects_them() {
        let mut rooms = joined("ann", "none", "participant");
        let ev = rooms.send(ROOM, "hello <all>", 1_000);
        let m = sent(&ev)[0];
        assert_eq!((m.attr("type"), m.attr("to")), (Some("groupchat"), Some(ROOM)));
        let id = m.attr("id").unwrap().to_owned();
        assert_eq!(m.child("origin-id", ns::SID).unwrap().attr("id"), Some(id.as_str()));
        assert!(!rooms.get(ROOM).unwrap().messages[0].reflected);

        // The room reflects it with a new id but the origin-id, and its archive id.
        let reflection = groupchat(
            "ann",
            "room-rewrote-it",
            "hello &lt;all&gt;",
            &format!("<origin-id xmlns='urn:xmpp:sid:0' id='{id}'/><stanza-id xmlns='urn:xmpp:sid:0' by='{ROOM}' id='S1'/>"),
        );
        feed(&mut rooms, &reflection);
        let r = rooms.get(ROOM).unwrap();
        assert_eq!(r.messages.len(), 1);
        assert!(r.messages[0].reflected && r.messages[0].outgoing);
        assert_eq!(r.messages[0].stanza_id.as_deref(), Some("S1"));
        assert_eq!(r.unread, 0, "our own messages are never unread");

        // One the room could not deliver.
        let id = sent(&rooms.send(ROOM, "shh", 2_000))[0].attr("id").unwrap().to_owned();
        feed(
            &mut rooms,
            &format!(
                "<message xmlns='jabber:client' type='error' from='{ROOM}' id='{id}'><error type='auth'>\
                 <forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
            ),
        );
        assert_eq!(rooms.get(ROOM).unwrap().messages[1].error.as_deref(), Some("you may not speak in this room"));
    }

    #[test]
    fn mentions_count_and_notify_others_only_count() {
        let mut rooms = joined("Ann", "none", "participant");
        let ev = feed(&mut rooms, &groupchat("bob", "b1", "lunch, anyone?", ""));
        assert_eq!(ev, [Effect::Changed { room: ROOM.into(), mention: false }]);
        let ev = feed(&mut rooms, &groupchat("bob", "b2", "ann: you coming?", ""));
        assert_eq!(ev, [Effect::Changed { room: ROOM.into(), mention: true }]);
        feed(&mut rooms, &groupchat("bob", "b3", "I met Annabel", ""));
        let r = rooms.get(ROOM).unwrap();
        assert_eq!((r.unread, r.mentions), (3, 1));
        assert_eq!(r.messages.iter().map(|m| m.mention).collect::<Vec<_>>(), [false, true, false], "a word of its own");
        // The same message again (a reconnect) is not news.
        assert_eq!(feed(&mut rooms, &groupchat("bob", "b2", "ann: you coming?", "")), [Effect::Changed { room: ROOM.into(), mention: false }]);
        assert_eq!(rooms.get(ROOM).unwrap().messages.len(), 3);

        rooms.set_reading([ROOM.to_owned()].into());
        let r = rooms.get(ROOM).unwrap();
        assert_eq!((r.unread, r.mentions), (0, 0));
        feed(&mut rooms, &groupchat("bob", "b4", "ann?", ""));
        assert_eq!(rooms.get(ROOM).unwrap().unread, 0, "read as it comes");
        rooms.set_reading(BTreeSet::new());
        feed(&mut rooms, &groupchat("bob", "b5", "ann??", ""));
        assert_eq!(rooms.get(ROOM).unwrap().mentions, 1, "open only in a hidden tab: they are collected");

        assert!(mentions("hi @Ann!", "ann") && mentions("ANN", "Ann") && !mentions("anne", "ann") && !mentions("x", ""));
    }

    #[test]
    fn messages_from_strangers_and_the_room_itself() {
        let mut rooms = joined("ann", "none", "participant");
        // From a nick that is not (or no longer) in the room: shown under that nick.
        feed(&mut rooms, &groupchat("ghost", "g1", "boo", ""));
        // From the room itself (no nick).
        feed(&mut rooms, &format!("<message xmlns='jabber:client' type='groupchat' from='{ROOM}'><body>Room restarted</body></message>"));
        let nicks: Vec<_> = rooms.get(ROOM).unwrap().messages.iter().map(|m| (m.nick.as_str(), m.outgoing)).collect();
        assert_eq!(nicks, [("ghost", false), ("", false)]);
        // A room we are not in: dropped.
        let ev = rooms
            .receive(&parse("<message xmlns='jabber:client' type='groupchat' from='other@conference.localhost/x'><body>hi</body></message>"), &PresenceInfo::default(), 0)
            .unwrap();
        assert!(ev.is_empty());
        assert!(rooms.get("other@conference.localhost").is_none());
        // A stanza-id by anyone but the room is not the room's.
        feed(&mut rooms, &groupchat("bob", "b1", "x", "<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='S9'/>"));
        assert_eq!(rooms.get(ROOM).unwrap().messages[2].stanza_id, None);
    }

    #[test]
    fn subject() {
        let mut rooms = joined("ann", "none", "participant");
        feed(&mut rooms, &format!("<message xmlns='jabber:client' type='groupchat' from='{ROOM}/bob'><subject>Plans</subject></message>"));
        assert_eq!(rooms.get(ROOM).unwrap().subject.as_deref(), Some("Plans"));
        assert!(rooms.get(ROOM).unwrap().messages.is_empty());
        feed(&mut rooms, &format!("<message xmlns='jabber:client' type='groupchat' from='{ROOM}'><subject/></message>"));
        assert_eq!(rooms.get(ROOM).unwrap().subject, None);
        let ev = rooms.set_subject(ROOM, " Dinner ");
        assert_eq!(sent(&ev)[0].child_text("subject", ns::CLIENT).as_deref(), Some("Dinner"));
    }

    #[test]
    fn history_from_the_rooms_archive_without_duplicates() {
        let mut rooms = joined("ann", "none", "participant");
        feed(&mut rooms, &groupchat("bob", "b9", "live one", &format!("<stanza-id xmlns='urn:xmpp:sid:0' by='{ROOM}' id='S3'/>")));
        let ev = rooms.load_history(ROOM);
        let q = sent(&ev)[0].clone();
        assert_eq!(q.attr("to"), Some(ROOM));
        let query = q.child("query", ns::MAM).unwrap();
        let qid = query.attr("queryid").unwrap().to_owned();
        assert!(qid.len() >= 22, "not guessable");
        assert!(query.child("x", ns::DATA_FORMS).unwrap().children().all(|f| f.attr("var") != Some("with")));
        assert!(rooms.load_history(ROOM).is_empty(), "one at a time");
        let result = |from: &str, qid: &str, aid: &str, nick: &str, body: &str, extra: &str| {
            format!(
                "<message xmlns='jabber:client' from='{from}'><result xmlns='urn:xmpp:mam:2' queryid='{qid}' id='{aid}'>\
                 <forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='1970-01-01T00:00:0{}Z'/>\
                 <message xmlns='jabber:client' from='{ROOM}/{nick}' type='groupchat' id='x{aid}'><body>{body}</body>{extra}</message>\
                 </forwarded></result></message>",
                aid.len()
            )
        };
        feed(&mut rooms, &result(ROOM, &qid, "S1", "bob", "first", ""));
        feed(&mut rooms, &result(ROOM, &qid, "S2", "annie", "mine, before a nick change", "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='ou'/>"));
        feed(&mut rooms, &result(ROOM, &qid, "S3", "bob", "live one", ""));
        feed(&mut rooms, &result(ROOM, "WRONG", "S4", "bob", "not asked for", ""));
        // Someone else's "archive result" naming this room.
        assert!(rooms
            .receive(&parse(&result("mallory@localhost", &qid, "S5", "bob", "forged", "")), &PresenceInfo::default(), 0)
            .is_none());
        let ev = feed(
            &mut rooms,
            &format!(
                "<iq xmlns='jabber:client' type='result' id='{}' from='{ROOM}'><fin xmlns='urn:xmpp:mam:2'>\
                 <set xmlns='http://jabber.org/protocol/rsm'><first>S1</first><last>S3</last></set></fin></iq>",
                q.attr("id").unwrap()
            ),
        );
        assert_eq!(ev, [Effect::Changed { room: ROOM.into(), mention: false }]);
        let r = rooms.get(ROOM).unwrap();
        let bodies: Vec<_> = r.messages.iter().map(|m| (m.body.as_str(), m.outgoing)).collect();
        assert_eq!(bodies, [("first", false), ("mine, before a nick change", true), ("live one", false)]);
        assert_eq!(r.unread, 1, "history is not unread");
        assert_eq!((r.history.oldest.as_deref(), r.history.complete, r.history.loading), (Some("S1"), false, false));
        let ev = rooms.load_history(ROOM);
        let before = sent(&ev)[0].child("query", ns::MAM).unwrap().child("set", ns::RSM).unwrap().child_text("before", ns::RSM);
        assert_eq!(before.as_deref(), Some("S1"), "load earlier");
    }

    #[test]
    fn creating_an_instant_room_and_a_configured_one() {
        let mut rooms = Rooms::new("t".into(), b"key".to_vec());
        rooms.create(ROOM, "ann", RoomSettings::default(), &PresenceInfo::default()).unwrap();
        let ev = feed(&mut rooms, &presence("ann", "owner", "moderator", "<status code='110'/><status code='201'/>"));
        let iq = sent(&ev)[0];
        let x = iq.child("query", ns::MUC_OWNER).unwrap().child("x", ns::DATA_FORMS).unwrap();
        assert_eq!((iq.attr("to"), x.attr("type"), x.children().count()), (Some(ROOM), Some("submit"), 0), "instant room");

        let mut rooms = Rooms::new("t".into(), b"key".to_vec());
        let settings = RoomSettings { name: Some("Lobby".into()), public: Some(false), members_only: Some(true), password: Some("pw".into()) };
        rooms.create(ROOM, "ann", settings, &PresenceInfo::default()).unwrap();
        let ev = feed(&mut rooms, &presence("ann", "owner", "moderator", "<status code='110'/><status code='201'/>"));
        let get = sent(&ev)[0];
        assert_eq!(get.attr("type"), Some("get"));
        let ev = feed(
            &mut rooms,
            &format!(
                "<iq xmlns='jabber:client' type='result' from='{ROOM}' id='{}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
                 <x xmlns='jabber:x:data' type='form'>\
                 <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
                 <field var='muc#roomconfig_roomname' type='text-single'/>\
                 <field var='muc#roomconfig_publicroom' type='boolean'><value>1</value></field>\
                 <field var='muc#roomconfig_membersonly' type='boolean'><value>0</value></field>\
                 <field var='muc#roomconfig_passwordprotectedroom' type='boolean'><value>0</value></field>\
                 <field var='muc#roomconfig_roomsecret' type='text-private'/>\
                 <field var='x-strange' type='mystery'><value>kept</value></field></x></query></iq>",
                get.attr("id").unwrap()
            ),
        );
        let submit = sent(&ev)[0];
        let x = submit.child("query", ns::MUC_OWNER).unwrap().child("x", ns::DATA_FORMS).unwrap();
        let values: BTreeMap<String, String> =
            x.children().map(|f| (f.attr("var").unwrap().to_owned(), f.child_text("value", ns::DATA_FORMS).unwrap_or_default())).collect();
        assert_eq!(values["muc#roomconfig_roomname"], "Lobby");
        assert_eq!(values["muc#roomconfig_publicroom"], "0");
        assert_eq!(values["muc#roomconfig_membersonly"], "1");
        assert_eq!(values["muc#roomconfig_passwordprotectedroom"], "1");
        assert_eq!(values["muc#roomconfig_roomsecret"], "pw");
        assert_eq!(values["x-strange"], "kept");
        assert!(!values.contains_key("muc#roomconfig_persistentroom"), "not offered, not sent");
        // Configured: the room's name is asked for.
        let ev = feed(&mut rooms, &format!("<iq xmlns='jabber:client' type='result' from='{ROOM}' id='{}'/>", submit.attr("id").unwrap()));
        assert!(sent(&ev)[0].child("query", ns::DISCO_INFO).is_some());

        // "Create" of a room that exists: we are simply in it.
        let mut rooms = Rooms::new("t".into(), b"key".to_vec());
        rooms.create(ROOM, "ann", RoomSettings::default(), &PresenceInfo::default()).unwrap();
        let ev = feed(&mut rooms, &presence("ann", "none", "participant", "<status code='110'/>"));
        assert!(ev.iter().any(|e| matches!(e, Effect::Notice(n) if n.contains("already exists"))));
        assert!(sent(&ev).iter().all(|e| e.child("query", ns::DISCO_INFO).is_some()), "nothing to configure");
    }

    #[test]
    fn owners_edit_the_settings_form() {
        let mut rooms = joined("ann", "member", "participant");
        assert!(rooms.request_config(ROOM).is_empty(), "owners only");
        assert!(rooms.destroy(ROOM, None).is_empty());
        let mut rooms = joined("ann", "owner", "moderator");
        let ev = rooms.request_config(ROOM);
        let id = sent(&ev)[0].attr("id").unwrap().to_owned();
        feed(
            &mut rooms,
            &format!(
                "<iq xmlns='jabber:client' type='result' from='{ROOM}' id='{id}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
                 <x xmlns='jabber:x:data' type='form'><field var='muc#roomconfig_roomname' type='text-single' label='Name'>\
                 <value>Lobby</value></field></x></query></iq>"
            ),
        );
        let mut form = rooms.get(ROOM).unwrap().config.clone().expect("the form, for the view");
        form.set("muc#roomconfig_roomname", vec!["Hall".into()]);
        let ev = rooms.submit_config(ROOM, Some(&form));
        let x = sent(&ev)[0].child("query", ns::MUC_OWNER).unwrap().child("x", ns::DATA_FORMS).unwrap().clone();
        assert_eq!(x.child("field", ns::DATA_FORMS).unwrap().child_text("value", ns::DATA_FORMS).as_deref(), Some("Hall"));
        assert!(rooms.get(ROOM).unwrap().config.is_none());
        let id = sent(&ev)[0].attr("id").unwrap().to_owned();
        let ev = feed(
            &mut rooms,
            &format!(
                "<iq xmlns='jabber:client' type='error' from='{ROOM}' id='{id}'><error type='modify'>\
                 <not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            ),
        );
        assert!(matches!(&ev[0], Effect::Notice(n) if n.contains("refused the settings")));

        let ev = rooms.destroy(ROOM, Some("done"));
        let q = sent(&ev)[0].child("query", ns::MUC_OWNER).unwrap();
        assert_eq!(q.child("destroy", ns::MUC_OWNER).unwrap().child_text("reason", ns::MUC_OWNER).as_deref(), Some("done"));
        let id = sent(&ev)[0].attr("id").unwrap().to_owned();
        feed(&mut rooms, &format!("<iq xmlns='jabber:client' type='result' from='{ROOM}' id='{id}'/>"));
        assert!(rooms.get(ROOM).is_none(), "gone from the list");
    }

    #[test]
    fn moderation() {
        let mut rooms = joined("ann", "admin", "moderator");
        let ev = rooms.set_role(ROOM, "bob", Role::None, Some("spam"));
        let item = sent(&ev)[0].child("query", ns::MUC_ADMIN).unwrap().child("item", ns::MUC_ADMIN).unwrap().clone();
        assert_eq!((item.attr("nick"), item.attr("role")), (Some("bob"), Some("none")));
        assert_eq!(item.child_text("reason", ns::MUC_ADMIN).as_deref(), Some("spam"));
        let id = sent(&ev)[0].attr("id").unwrap().to_owned();
        let ev = feed(
            &mut rooms,
            &format!(
                "<iq xmlns='jabber:client' type='error' from='{ROOM}' id='{id}'><error type='cancel'>\
                 <not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            ),
        );
        assert!(matches!(&ev[0], Effect::Notice(n) if n.starts_with("Could not kick bob")));
        let ev = rooms.set_role(ROOM, "bob", Role::Visitor, None);
        assert_eq!(sent(&ev)[0].child("query", ns::MUC_ADMIN).unwrap().child("item", ns::MUC_ADMIN).unwrap().attr("role"), Some("visitor"));

        // A ban needs the real JID, which this room did not show.
        let ev = rooms.set_affiliation(ROOM, "bob", Affiliation::Outcast, None);
        assert!(sent(&ev).is_empty() && matches!(&ev[0], Effect::Notice(_)));
        feed(&mut rooms, &presence("bob", "member", "participant", "").replace("affiliation='member'", "affiliation='member' jid='bob@localhost/p'"));
        let ev = rooms.set_affiliation(ROOM, "bob", Affiliation::Outcast, None);
        let item = sent(&ev)[0].child("query", ns::MUC_ADMIN).unwrap().child("item", ns::MUC_ADMIN).unwrap().clone();
        assert_eq!((item.attr("jid"), item.attr("affiliation")), (Some("bob@localhost"), Some("outcast")));
    }

    #[test]
    fn invitations_both_kinds() {
        let mut rooms = joined("ann", "none", "participant");
        let ev = rooms.invite(ROOM, "Carol@LocalHost", Some("come")).unwrap();
        let m = sent(&ev)[0];
        assert_eq!(m.attr("to"), Some("carol@localhost"));
        let x = m.child("x", ns::CONFERENCE).unwrap();
        assert_eq!((x.attr("jid"), x.attr("reason"), x.attr("password")), (Some(ROOM), Some("come"), None));
        assert!(rooms.invite(ROOM, "not valid@", None).is_err());

        let mut rooms = Rooms::new("t".into(), b"key".to_vec());
        let ev = feed(
            &mut rooms,
            "<message xmlns='jabber:client' from='bob@localhost/p'><x xmlns='jabber:x:conference' jid='Team@conference.localhost' \
             reason='standup' password='pw'/></message>",
        );
        assert_eq!(ev, [Effect::ListChanged]);
        feed(
            &mut rooms,
            "<message xmlns='jabber:client' from='other@conference.localhost'><x xmlns='http://jabber.org/protocol/muc#user'>\
             <invite from='dave@localhost/x'><reason>join us</reason></invite></x></message>",
        );
        // Not a room address: ignored.
        feed(&mut rooms, "<message xmlns='jabber:client' from='eve@localhost'><x xmlns='jabber:x:conference' jid='localhost'/></message>");
        assert_eq!(
            rooms.invitations,
            [
                Invitation { room: "team@conference.localhost".into(), from: "bob@localhost".into(), reason: Some("standup".into()), password: Some("pw".into()) },
                Invitation { room: "other@conference.localhost".into(), from: "dave@localhost".into(), reason: Some("join us".into()), password: None },
            ]
        );
        let taken = rooms.take_invitation("team@conference.localhost").unwrap();
        assert_eq!(taken.password.as_deref(), Some("pw"));
        assert_eq!(rooms.invitations.len(), 1);
    }

    #[test]
    fn private_messages_belong_to_the_occupant() {
        let rooms = joined("ann", "none", "participant");
        assert_eq!(rooms.conversation_of(&format!("{ROOM}/bob")), format!("{ROOM}/bob"));
        assert_eq!(rooms.conversation_of("bob@localhost/phone"), "bob@localhost");
        assert_eq!(rooms.occupant_label(&format!("{ROOM}/bob")).as_deref(), Some("bob (lobby)"));
        assert_eq!(rooms.occupant_label("bob@localhost/phone"), None);
    }

    #[test]
    fn self_ping_rejoins_only_when_the_room_forgot_us() {
        let mut rooms = joined("ann", "none", "participant");
        let ping = |rooms: &mut Rooms| {
            let ev = rooms.self_ping();
            let iq = sent(&ev)[0].clone();
            assert_eq!(iq.attr("to"), Some("lobby@conference.localhost/ann"));
            assert!(iq.child("ping", ns::PING).is_some());
            assert!(rooms.self_ping().is_empty(), "one at a time");
            iq.attr("id").unwrap().to_owned()
        };
        let answer = |rooms: &mut Rooms, id: &str, condition: &str| {
            feed(
                rooms,
                &format!(
                    "<iq xmlns='jabber:client' type='error' from='{ROOM}/ann' id='{id}'><error type='cancel'>\
                     <{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                ),
            )
        };
        let id = ping(&mut rooms);
        assert!(feed(&mut rooms, &format!("<iq xmlns='jabber:client' type='result' from='{ROOM}/ann' id='{id}'/>")).is_empty());
        let id = ping(&mut rooms);
        assert!(answer(&mut rooms, &id, "feature-not-implemented").is_empty(), "the room has us, and does not do self-ping");
        let id = ping(&mut rooms);
        let ev = answer(&mut rooms, &id, "not-acceptable");
        let join = sent(&ev)[0];
        assert_eq!(join.attr("to"), Some("lobby@conference.localhost/ann"));
        assert!(join.child("x", ns::MUC).is_some(), "joined again");
        assert_eq!(rooms.get(ROOM).unwrap().state, RoomState::Joining);
        assert!(rooms.self_ping().is_empty(), "not while joining");
    }

    #[test]
    fn discovering_services_and_browsing_public_rooms() {
        let mut rooms = Rooms::new("t".into(), b"key".to_vec());
        let ev = rooms.discover("localhost");
        let id = sent(&ev)[0].attr("id").unwrap().to_owned();
        assert!(rooms.discover("localhost").is_empty(), "once");
        let ev = feed(
            &mut rooms,
            &format!(
                "<iq xmlns='jabber:client' type='result' from='localhost' id='{id}'><query xmlns='http://jabber.org/protocol/disco#items'>\
                 <item jid='conference.localhost'/><item jid='upload.localhost'/><item jid='someone@localhost'/></query></iq>"
            ),
        );
        let asks: Vec<_> = sent(&ev).iter().map(|e| (e.attr("to").unwrap().to_owned(), e.attr("id").unwrap().to_owned())).collect();
        assert_eq!(asks.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(), ["conference.localhost", "upload.localhost"]);
        let info = |from: &str, id: &str, category: &str| {
            format!(
                "<iq xmlns='jabber:client' type='result' from='{from}' id='{id}'><query xmlns='http://jabber.org/protocol/disco#info'>\
                 <identity category='{category}' type='text'/></query></iq>"
            )
        };
        feed(&mut rooms, &info("conference.localhost", &asks[0].1, "conference"));
        feed(&mut rooms, &info("upload.localhost", &asks[1].1, "store"));
        assert_eq!(rooms.services, ["conference.localhost"]);

        let ev = rooms.browse("conference.localhost");
        let id = sent(&ev)[0].attr("id").unwrap().to_owned();
        feed(
            &mut rooms,
            &format!(
                "<iq xmlns='jabber:client' type='result' from='conference.localhost' id='{id}'><query xmlns='http://jabber.org/protocol/disco#items'>\
                 <item jid='lobby@conference.localhost' name='Lobby'/><item jid='quiet@conference.localhost'/>\
                 <item jid='elsewhere@evil.example' name='Not from here'/></query></iq>"
            ),
        );
        assert_eq!(
            rooms.public["conference.localhost"],
            [
                PublicRoom { jid: "lobby@conference.localhost".into(), name: Some("Lobby".into()) },
                PublicRoom { jid: "quiet@conference.localhost".into(), name: None }
            ]
        );
    }

    #[test]
    fn rejoining_after_a_new_session() {
        let mut rooms = joined("ann", "none", "participant");
        rooms.join("gone@conference.localhost", "ann", None, &PresenceInfo::default()).unwrap();
        feed(
            &mut rooms,
            "<presence xmlns='jabber:client' from='gone@conference.localhost/ann' type='error'><error type='auth'>\
             <forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
        );
        let ev = rooms.rejoin_all(&PresenceInfo::default());
        let to: Vec<_> = sent(&ev).iter().map(|e| e.attr("to").unwrap()).collect();
        assert_eq!(to, ["lobby@conference.localhost/ann"], "not the room that refused us");
        assert!(rooms.get(ROOM).unwrap().occupants.is_empty());
    }

    #[test]
    fn back_in_after_a_rejoin_what_was_said_meanwhile_comes_from_the_archive() {
        let mut rooms = joined("ann", "none", "participant");
        let fin = |rooms: &mut Rooms, ev: &[Effect], first: &str| {
            let id = sent(ev).iter().find(|e| e.child("query", ns::MAM).is_some()).unwrap().attr("id").unwrap().to_owned();
            feed(
                rooms,
                &format!(
                    "<iq xmlns='jabber:client' type='result' id='{id}' from='{ROOM}'><fin xmlns='urn:xmpp:mam:2'>\
                     <set xmlns='http://jabber.org/protocol/rsm'><first>{first}</first></set></fin></iq>"
                ),
            );
        };
        let ev = rooms.load_history(ROOM);
        fin(&mut rooms, &ev, "S10");
        rooms.rejoin_all(&PresenceInfo::default());
        let ev = feed(&mut rooms, &presence("ann", "none", "participant", "<status code='110'/>"));
        let q = sent(&ev).into_iter().find(|e| e.child("query", ns::MAM).is_some()).expect("the newest page again");
        let before = q.child("query", ns::MAM).unwrap().child("set", ns::RSM).unwrap().child_text("before", ns::RSM);
        assert_eq!(before.as_deref(), Some(""));
        fin(&mut rooms, &ev, "S50");
        assert_eq!(rooms.get(ROOM).unwrap().history.oldest.as_deref(), Some("S10"), "load earlier goes on from the oldest");
        // The first join of a room we never read asks nothing by itself.
        let mut fresh = Rooms::new("t".into(), b"key".to_vec());
        fresh.join(ROOM, "ann", None, &PresenceInfo::default()).unwrap();
        let ev = feed(&mut fresh, &presence("ann", "none", "participant", "<status code='110'/>"));
        assert!(sent(&ev).iter().all(|e| e.child("query", ns::MAM).is_none()));
    }

    #[test]
    fn the_rooms_name_comes_from_its_disco_info() {
        let mut rooms = Rooms::new("t".into(), b"key".to_vec());
        rooms.join(ROOM, "ann", None, &PresenceInfo::default()).unwrap();
        let ev = feed(&mut rooms, &presence("ann", "none", "participant", "<status code='110'/>"));
        let ask = sent(&ev).into_iter().find(|e| e.child("query", ns::DISCO_INFO).is_some()).expect("asked once joined");
        assert_eq!(ask.attr("to"), Some(ROOM));
        let id = ask.attr("id").unwrap().to_owned();
        let info = |from: &str, name: &str| {
            format!(
                "<iq xmlns='jabber:client' type='result' id='{id}' from='{from}'><query xmlns='http://jabber.org/protocol/disco#info'>\
                 <identity category='conference' type='text' name='{name}'/></query></iq>"
            )
        };
        // An answer from elsewhere under the same id is not the room's.
        feed(&mut rooms, &info("mallory@localhost", "Evil"));
        assert_eq!(rooms.get(ROOM).unwrap().name, None);
        let mut rooms2 = Rooms::new("t".into(), b"key".to_vec());
        rooms2.join(ROOM, "ann", None, &PresenceInfo::default()).unwrap();
        feed(&mut rooms2, &presence("ann", "none", "participant", "<status code='110'/>"));
        feed(&mut rooms2, &info(ROOM, &"Long name ".repeat(100)));
        assert_eq!(rooms2.get(ROOM).unwrap().name.as_ref().unwrap().chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn invitations_are_bounded() {
        let mut rooms = Rooms::new("t".into(), b"key".to_vec());
        for i in 0..MAX_INVITATIONS + 10 {
            feed(
                &mut rooms,
                &format!("<message xmlns='jabber:client' from='spam@localhost'><x xmlns='jabber:x:conference' jid='r{i}@conference.localhost'/></message>"),
            );
        }
        assert_eq!(rooms.invitations.len(), MAX_INVITATIONS);
    }

    #[test]
    fn a_room_shown_to_the_tabs_of_a_shared_session_keeps_its_password_to_itself() {
        let mut rooms = joined("ann", "owner", "moderator");
        rooms.join("locked@conference.localhost", "ann", Some("secret"), &PresenceInfo::default()).unwrap();
        let room = rooms.get("locked@conference.localhost").unwrap();
        let json = serde_json::to_string(room).unwrap();
        assert!(!json.contains("secret"), "{json}");
        let back: Room = serde_json::from_str(&json).unwrap();
        assert_eq!((back.password.as_deref(), back.creating.as_ref()), (None, None));
        assert_eq!(Room { password: room.password.clone(), creating: room.creating.clone(), ..back }, *room);
        let shown = rooms.get(ROOM).unwrap();
        assert!(!shown.messages.is_empty() || !shown.occupants.is_empty());
        assert_eq!(serde_json::from_str::<Room>(&serde_json::to_string(shown).unwrap()).unwrap(), *shown);
    }
}
