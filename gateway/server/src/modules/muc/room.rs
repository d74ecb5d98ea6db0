//! One room: its configuration, affiliations, occupants and subject, and the presence
//! and messages XEP-0045 has it send. Nothing here does I/O: each operation returns the
//! stanzas to send, fully addressed, and the service sends them.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use base64::Engine;
use hmac::{Hmac, Mac};
use jabberwock_proto::{ns, Element, Stanza, StanzaError};
use jid::{BareJid, Jid};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::options::{Limits, RoomConfig, MAX_HISTORY, OPTIONS};
use crate::stanzas::random_id;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    Outcast,
    #[default]
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

/// XEP-0045 §15.2 status codes the room sends.
pub mod status {
    pub const NON_ANONYMOUS: u16 = 100;
    pub const SELF: u16 = 110;
    pub const LOGGED: u16 = 170;
    pub const CREATED: u16 = 201;
    pub const BANNED: u16 = 301;
    pub const NICK_CHANGED: u16 = 303;
    pub const KICKED: u16 = 307;
    pub const AFFILIATION_CHANGED: u16 = 321;
    pub const MEMBERS_ONLY: u16 = 322;
    pub const SHUTDOWN: u16 = 332;
}

/// One joined device of an occupant, with the presence it last sent.
pub struct Device {
    pub jid: Jid,
    /// The client's presence, without addresses or room payloads.
    presence: Element,
}

/// A nick in the room. Several devices of one account may share it (XEP-0045 §7.2.9):
/// others see one occupant, and messages reach every device.
pub struct Occupant {
    pub nick: String,
    pub real: BareJid,
    pub devices: Vec<Device>,
    pub role: Role,
    /// Groupchat messages it may still send now (a token bucket).
    allowance: f32,
    refilled: Instant,
}

impl Occupant {
    fn new(nick: String, real: BareJid, role: Role) -> Occupant {
        Occupant { nick, real, devices: Vec::new(), role, allowance: f32::MAX, refilled: Instant::now() }
    }

    /// Takes one message from the occupant's allowance of `rate` a second.
    fn spend(&mut self, rate: u32) -> bool {
        let now = Instant::now();
        let rate = rate as f32;
        self.allowance = (self.allowance + now.duration_since(self.refilled).as_secs_f32() * rate).min(rate);
        self.refilled = now;
        if self.allowance < 1.0 {
            return false;
        }
        self.allowance -= 1.0;
        true
    }
}

/// A request to enter the room.
pub struct Join<'a> {
    pub jid: &'a Jid,
    pub nick: &'a str,
    pub password: Option<&'a str>,
    pub affiliation: Affiliation,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Subject {
    pub text: String,
    /// The nick of who set it, empty when the room did.
    pub by: String,
}

/// A message kept for history on join: its stamp and the reflected stanza (without `to`).
struct Kept {
    stamp: String,
    message: Element,
}

/// What a room keeps in storage.
#[derive(Serialize, Deserialize)]
pub struct Stored {
    pub config: RoomConfig,
    pub affiliations: BTreeMap<String, Affiliation>,
    pub subject: Option<Subject>,
    /// Keys the XEP-0421 occupant ids of the room.
    pub occupant_key: String,
}

pub struct Room {
    pub jid: BareJid,
    pub config: RoomConfig,
    /// By real bare JID.
    pub affiliations: BTreeMap<String, Affiliation>,
    pub subject: Option<Subject>,
    /// Created and not yet configured: only its owner may enter (XEP-0045 §10.1.1).
    pub locked: bool,
    pub occupants: Vec<Occupant>,
    occupant_key: String,
    history: VecDeque<Kept>,
    history_bytes: usize,
}

/// The most bytes of history a room keeps in memory.
const MAX_HISTORY_BYTES: usize = 256 * 1024;
/// Devices one occupant may join with: a remote server can mint any number of
/// resources for one account.
const MAX_DEVICES: usize = 32;
/// Affiliations one room keeps (members, admins, owners, outcasts), in memory and storage.
pub const MAX_AFFILIATIONS: usize = 10_000;

pub type Out = Vec<Stanza>;

/// A groupchat message to archive: its stanza-id, stamp and the stanza as kept.
pub type ToArchive = (String, i64, Element);

fn muc_user() -> Element {
    Element::new("x", ns::MUC_USER)
}

fn status_el(code: u16) -> Element {
    Element::new("status", ns::MUC_USER).with_attr("code", code.to_string())
}

impl Room {
    pub fn new(jid: BareJid, config: RoomConfig, owner: &BareJid) -> Room {
        let mut affiliations = BTreeMap::new();
        affiliations.insert(owner.to_string(), Affiliation::Owner);
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        Room::from_stored(jid, Stored { config, affiliations, subject: None, occupant_key: key }, true)
    }

    pub fn from_stored(jid: BareJid, s: Stored, locked: bool) -> Room {
        Room {
            jid,
            config: s.config,
            affiliations: s.affiliations,
            subject: s.subject,
            locked,
            occupants: Vec::new(),
            occupant_key: s.occupant_key,
            history: VecDeque::new(),
            history_bytes: 0,
        }
    }

    pub fn stored(&self) -> Stored {
        Stored {
            config: self.config.clone(),
            affiliations: self.affiliations.clone(),
            subject: self.subject.clone(),
            occupant_key: self.occupant_key.clone(),
        }
    }

    pub fn affiliation(&self, real: &BareJid) -> Affiliation {
        self.affiliations.get(real.as_str()).copied().unwrap_or_default()
    }

    pub fn occupant(&self, nick: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.nick == nick)
    }

    /// The occupant one of whose devices is `jid`.
    pub fn occupant_of(&self, jid: &Jid) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.devices.iter().any(|d| &d.jid == jid))
    }

    fn index_of(&self, jid: &Jid) -> Option<usize> {
        self.occupants.iter().position(|o| o.devices.iter().any(|d| &d.jid == jid))
    }

    pub(super) fn nick_jid(&self, nick: &str) -> String {
        format!("{}/{nick}", self.jid)
    }

    /// XEP-0421: a stable id per real bare JID, that tells nothing of it.
    pub(super) fn occupant_id(&self, real: &BareJid) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.occupant_key.as_bytes()).expect("HMAC takes any key length");
        mac.update(real.as_str().as_bytes());
        base64::engine::general_purpose::STANDARD.encode(&mac.finalize().into_bytes()[..16])
    }

    fn role_for(&self, affiliation: Affiliation) -> Role {
        match affiliation {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            _ if self.config.moderated => Role::Visitor,
            _ => Role::Participant,
        }
    }

    /// Whether `viewer` sees real JIDs: in non-anonymous rooms everyone, else moderators.
    fn sees_jids(&self, viewer: &Occupant) -> bool {
        self.config.whois_anyone || viewer.role == Role::Moderator
    }

    /// The presence of `o` (as of `device`) for one recipient.
    #[allow(clippy::too_many_arguments)] // each is one of the XEP's independent choices for this copy
    fn presence(&self, o: &Occupant, device: &Device, to: &Jid, with_jid: bool, unavailable: bool, item: Element, codes: &[u16]) -> Stanza {
        let mut el = if unavailable {
            Element::new("presence", ns::CLIENT).with_attr("type", "unavailable")
        } else {
            device.presence.clone()
        };
        el.set_attr("from", self.nick_jid(&o.nick));
        el.set_attr("to", to.as_str());
        let mut item = item
            .with_attr("affiliation", self.affiliation(&o.real).as_str())
            .with_attr("role", if unavailable { "none" } else { o.role.as_str() });
        if with_jid {
            item.set_attr("jid", device.jid.as_str());
        }
        let mut x = muc_user().with_child(item);
        for code in codes {
            x.push(status_el(*code));
        }
        el.push(x);
        el.push(Element::new("occupant-id", ns::OCCUPANT_ID).with_attr("id", self.occupant_id(&o.real)));
        Stanza::from_element(&el)
    }

    /// `o`'s presence to every device of every occupant; `self_codes` go to its own.
    fn broadcast_presence(&self, o: &Occupant, unavailable: bool, item: &Element, codes: &[u16], self_codes: &[u16], out: &mut Out) {
        let Some(latest) = o.devices.last() else { return };
        for viewer in &self.occupants {
            let own = viewer.nick == o.nick;
            let codes: Vec<u16> = if own { self_codes.iter().chain(codes).copied().collect() } else { codes.to_vec() };
            for d in &viewer.devices {
                let shown = if own { o.devices.iter().find(|x| x.jid == d.jid).unwrap_or(latest) } else { latest };
                out.push(self.presence(o, shown, &d.jid, own || self.sees_jids(viewer), unavailable, item.clone(), &codes));
            }
        }
    }

    /// Enters the room, or adds a device to an occupant of the same account. Returns the
    /// presence to send; history and subject follow (see [`Room::history_for`]).
    pub fn join(&mut self, join: &Join<'_>, presence: &Stanza, created: bool) -> Result<Out, StanzaError> {
        if self.locked && join.affiliation != Affiliation::Owner {
            return Err(StanzaError::item_not_found().with_text("this room is not configured yet"));
        }
        if join.affiliation == Affiliation::Outcast {
            return Err(StanzaError::forbidden().with_text("you are banned from this room"));
        }
        let real = join.jid.to_bare();
        if let Some(o) = self.occupant(join.nick) {
            if o.real != real {
                return Err(StanzaError::conflict().with_text("that nick is taken"));
            }
        }
        for option in OPTIONS {
            option.check_join(self, join)?;
        }
        let device = Device { jid: join.jid.clone(), presence: client_presence(presence) };
        let mut out = Vec::new();
        let self_codes = self.self_codes(created);
        let existing = self.occupants.iter().position(|o| o.nick == join.nick);
        let at = match existing {
            Some(at) if self.occupants[at].devices.len() >= MAX_DEVICES => {
                return Err(StanzaError::resource_constraint().with_text("too many devices under this nick"));
            }
            Some(at) => {
                self.occupants[at].devices.push(device);
                at
            }
            None => {
                let mut o = Occupant::new(join.nick.to_owned(), real, self.role_for(join.affiliation));
                o.devices.push(device);
                self.occupants.push(o);
                self.occupants.len() - 1
            }
        };
        let o = &self.occupants[at];
        let new_device = o.devices.last().expect("just added");
        // Everyone else's presence to the newcomer first (§7.2.3), then the newcomer's.
        self.others_to(o, &new_device.jid, &mut out);
        if existing.is_some() {
            // Another device of a present occupant: only it learns that it is in.
            out.push(self.presence(o, new_device, &new_device.jid, true, false, Element::new("item", ns::MUC_USER), &self_codes));
        } else {
            self.broadcast_presence(o, false, &Element::new("item", ns::MUC_USER), &[], &self_codes, &mut out);
        }
        Ok(out)
    }

    /// A join from a device that is already in, as after a client's page reload that kept
    /// its session: the room's state again (§7.2.3's occupant list, then its own presence),
    /// since the client has forgotten it, without telling anyone else.
    pub fn rejoin(&self, jid: &Jid) -> Out {
        let mut out = Vec::new();
        let Some(o) = self.occupant_of(jid) else { return out };
        let Some(device) = o.devices.iter().find(|d| &d.jid == jid) else { return out };
        self.others_to(o, jid, &mut out);
        out.push(self.presence(o, device, jid, true, false, Element::new("item", ns::MUC_USER), &self.self_codes(false)));
        out
    }

    /// Every other occupant's presence, for a device of `o` that (re)joins.
    fn others_to(&self, o: &Occupant, to: &Jid, out: &mut Out) {
        for other in self.occupants.iter().filter(|x| x.nick != o.nick) {
            if let Some(d) = other.devices.last() {
                out.push(self.presence(other, d, to, self.sees_jids(o), false, Element::new("item", ns::MUC_USER), &[]));
            }
        }
    }

    /// The status codes of a joining device's own presence (§7.2.2).
    fn self_codes(&self, created: bool) -> Vec<u16> {
        let mut codes = vec![status::SELF];
        if self.config.whois_anyone {
            codes.push(status::NON_ANONYMOUS);
        }
        if self.config.archive {
            codes.push(status::LOGGED);
        }
        if created {
            codes.push(status::CREATED);
        }
        codes
    }

    /// History (§7.2.15) and subject (§7.2.16) for a device that just joined.
    pub fn history_for(&self, to: &Jid, request: Option<&Element>) -> Out {
        let attr = |name: &str| request.and_then(|h| h.attr(name));
        let max_stanzas = attr("maxstanzas").and_then(|v| v.parse::<usize>().ok()).unwrap_or(self.config.history_length as usize);
        let max_chars = attr("maxchars").and_then(|v| v.parse::<usize>().ok()).unwrap_or(usize::MAX);
        let since = attr("since").map(str::to_owned).or_else(|| {
            let seconds = attr("seconds")?.parse::<i64>().ok()?;
            Some(crate::stanzas::xep0082(time::OffsetDateTime::now_utc() - time::Duration::seconds(seconds)))
        });
        let mut picked = Vec::new();
        let mut chars = 0usize;
        for kept in self.history.iter().rev().take(max_stanzas.min(MAX_HISTORY as usize)) {
            // XEP-0082 stamps in UTC with the same precision compare as text.
            if since.as_deref().is_some_and(|s| kept.stamp.as_str() < s) {
                break;
            }
            let mut el = kept.message.clone();
            el.set_attr("to", to.as_str());
            el.push(Element::new("delay", ns::DELAY).with_attr("from", self.jid.as_str()).with_attr("stamp", kept.stamp.as_str()));
            let st = Stanza::from_element(&el);
            chars += st.to_bytes().len();
            if chars > max_chars {
                break;
            }
            picked.push(st);
        }
        picked.reverse();
        let subject = self.subject.as_ref();
        let from = match subject {
            Some(s) if !s.by.is_empty() => self.nick_jid(&s.by),
            _ => self.jid.to_string(),
        };
        let text = subject.map(|s| s.text.as_str()).unwrap_or_default();
        let subject = Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_attr("from", from)
            .with_attr("to", to.as_str())
            .with_attr("id", random_id())
            .with_child(Element::new("subject", ns::CLIENT).with_text(text));
        picked.push(Stanza::from_element(&subject));
        picked
    }

    /// Fills the history from the archive's newest messages, oldest first.
    pub fn restore_history(&mut self, kept: impl IntoIterator<Item = (String, Element)>) {
        for (stamp, message) in kept {
            self.keep(stamp, message);
        }
    }

    /// The kept message the room gave `id`.
    pub(super) fn kept_message(&self, id: &str) -> Option<Element> {
        let room = self.jid.as_str();
        self.history.iter().find(|k| super::moderation::room_id_of(&k.message, room) == Some(id)).map(|k| k.message.clone())
    }

    /// Puts `replacement` in the place of the kept message `id` (a retraction's tombstone).
    pub(super) fn replace_kept(&mut self, id: &str, replacement: &Element) {
        let room = self.jid.to_string();
        if let Some(k) = self.history.iter_mut().find(|k| super::moderation::room_id_of(&k.message, &room) == Some(id)) {
            self.history_bytes = self.history_bytes + replacement.to_bytes().len() - k.message.to_bytes().len();
            k.message = replacement.clone();
        }
    }

    pub(super) fn keep(&mut self, stamp: String, message: Element) {
        self.history_bytes += message.to_bytes().len();
        self.history.push_back(Kept { stamp, message });
        while self.history.len() > MAX_HISTORY as usize || self.history_bytes > MAX_HISTORY_BYTES {
            let Some(old) = self.history.pop_front() else { break };
            self.history_bytes -= old.message.to_bytes().len();
        }
    }

    /// A device's new presence, its departure (`unavailable`), or a nick change, as
    /// §7.3–§7.6 describe. `nick` is the nick the presence was sent to.
    pub fn presence_from(&mut self, from: &Jid, nick: &str, presence: &Stanza) -> Result<Out, StanzaError> {
        let at = self.index_of(from).ok_or_else(StanzaError::not_acceptable)?;
        let unavailable = presence.stanza_type() == Some("unavailable");
        let mut out = Vec::new();
        if unavailable {
            self.leave_device(at, from, &[], &mut out);
        } else if self.occupants[at].nick != nick {
            self.change_nick(at, nick, &mut out)?;
        } else {
            let o = &mut self.occupants[at];
            if let Some(d) = o.devices.iter_mut().find(|d| &d.jid == from) {
                d.presence = client_presence(presence);
            }
            // The updated device speaks for the occupant from now on.
            let d = o.devices.iter().position(|d| &d.jid == from).expect("found above");
            let device = o.devices.remove(d);
            o.devices.push(device);
            self.broadcast_presence(&self.occupants[at], false, &Element::new("item", ns::MUC_USER), &[], &[status::SELF], &mut out);
        }
        Ok(out)
    }

    /// One device leaves; the occupant leaves with its last device.
    fn leave_device(&mut self, at: usize, device: &Jid, codes: &[u16], out: &mut Out) {
        let o = &self.occupants[at];
        if o.devices.len() > 1 {
            let d = o.devices.iter().find(|d| &d.jid == device).expect("a device of this occupant");
            let mut codes = codes.to_vec();
            codes.push(status::SELF);
            out.push(self.presence(o, d, device, true, true, Element::new("item", ns::MUC_USER), &codes));
            self.occupants[at].devices.retain(|d| &d.jid != device);
            return;
        }
        self.remove_occupant(at, Element::new("item", ns::MUC_USER), codes, out);
    }

    /// Removes an occupant and all its devices, telling everyone (and it) why.
    fn remove_occupant(&mut self, at: usize, item: Element, codes: &[u16], out: &mut Out) {
        self.broadcast_presence(&self.occupants[at], true, &item, codes, &[status::SELF], out);
        self.occupants.remove(at);
    }

    fn change_nick(&mut self, at: usize, nick: &str, out: &mut Out) -> Result<(), StanzaError> {
        if self.occupant(nick).is_some() {
            return Err(StanzaError::conflict().with_text("that nick is taken"));
        }
        let item = Element::new("item", ns::MUC_USER).with_attr("nick", nick);
        self.broadcast_presence(&self.occupants[at], true, &item, &[status::NICK_CHANGED], &[status::SELF], out);
        self.occupants[at].nick = nick.to_owned();
        self.broadcast_presence(&self.occupants[at], false, &Element::new("item", ns::MUC_USER), &[], &[status::SELF], out);
        Ok(())
    }

    /// A groupchat message from a device: reflected to everyone with the room's
    /// stanza-id and the sender's occupant-id (§7.4), or a subject change (§8.1).
    /// Returns the stanzas and, for a message to archive, its id, stamp and stanza.
    pub fn groupchat(&mut self, from: &Jid, st: &Stanza, limits: &Limits) -> Result<(Out, Option<ToArchive>), StanzaError> {
        let at = self.index_of(from).ok_or_else(|| StanzaError::not_acceptable().with_text("join the room first"))?;
        if self.occupants[at].role < Role::Participant {
            return Err(StanzaError::forbidden().with_text("visitors may not speak in this room"));
        }
        if !self.occupants[at].spend(limits.messages_per_sec) {
            return Err(StanzaError::policy_violation().with_text("too many messages; slow down"));
        }
        let max_text = limits.max_text_bytes;
        let o = &self.occupants[at];
        let mut el = st.to_element().map_err(|_| StanzaError::bad_request())?;
        let subject = el.child("subject", ns::CLIENT).map(Element::text);
        let is_subject_change = subject.is_some() && el.child("body", ns::CLIENT).is_none();
        if is_subject_change && !(self.config.change_subject || o.role == Role::Moderator) {
            return Err(StanzaError::forbidden().with_text("only moderators may change the subject"));
        }
        if subject.as_ref().is_some_and(|s| s.len() > max_text) {
            return Err(StanzaError::not_acceptable().with_text(format!("the subject is longer than {max_text} bytes")));
        }
        let (nick, real) = (o.nick.clone(), o.real.clone());
        // Ids the room assigns are the room's alone: whatever the client put is removed.
        let room = self.jid.to_string();
        el.retain_children(|c| !(c.is("occupant-id", ns::OCCUPANT_ID) || (c.is("stanza-id", ns::SID) && c.attr("by") == Some(room.as_str()))));
        el.remove_attr("to");
        el.set_attr("from", self.nick_jid(&nick));
        let id = random_id();
        el.push(Element::new("stanza-id", ns::SID).with_attr("id", id.clone()).with_attr("by", room.as_str()));
        el.push(Element::new("occupant-id", ns::OCCUPANT_ID).with_attr("id", self.occupant_id(&real)));
        let now = time::OffsetDateTime::now_utc();
        let mut archived = None;
        if is_subject_change {
            self.subject = Some(Subject { text: subject.unwrap_or_default(), by: nick });
        } else {
            self.keep(crate::stanzas::xep0082(now), el.clone());
            archived = self.config.archive.then(|| (id, (now.unix_timestamp_nanos() / 1000) as i64, el.clone()));
        }
        Ok((self.to_everyone(&el), archived))
    }

    /// `el` (a message from the room or an occupant) to every device in the room:
    /// written once, addressed per device.
    pub(super) fn to_everyone(&self, el: &Element) -> Out {
        let written = Stanza::from_element(el);
        let devices = self.occupants.iter().flat_map(|o| &o.devices);
        devices.map(|d| {
            let mut copy = written.clone();
            copy.set_attr("to", d.jid.as_str());
            copy
        })
        .collect()
    }

    /// A private message from a device to the occupant `nick` (§7.5).
    pub fn private_message(&self, from: &Jid, nick: &str, st: &Stanza) -> Result<Out, StanzaError> {
        let sender = self.occupant_of(from).ok_or_else(|| StanzaError::not_acceptable().with_text("join the room first"))?;
        if !self.config.allow_pm && sender.role != Role::Moderator {
            return Err(StanzaError::not_allowed().with_text("private messages are off in this room"));
        }
        let target = self.occupant(nick).ok_or_else(|| StanzaError::item_not_found().with_text("no such occupant"))?;
        let mut el = st.to_element().map_err(|_| StanzaError::bad_request())?;
        el.retain_children(|c| !c.is("occupant-id", ns::OCCUPANT_ID));
        el.set_attr("from", self.nick_jid(&sender.nick));
        el.push(muc_user());
        el.push(Element::new("occupant-id", ns::OCCUPANT_ID).with_attr("id", self.occupant_id(&sender.real)));
        let mut out = Vec::new();
        for d in &target.devices {
            let mut copy = el.clone();
            copy.set_attr("to", d.jid.as_str());
            out.push(Stanza::from_element(&copy));
        }
        Ok(out)
    }

    /// An iq get or set from the device `from` to the occupant `nick`: `None` when the
    /// room answers it itself (a XEP-0410 self-ping), else the iq to relay to the
    /// occupant's newest device, with an id that names the requester.
    pub fn relay_request(&self, from: &Jid, nick: &str, st: &Stanza) -> Result<Option<Stanza>, StanzaError> {
        let sender = self.occupant_of(from).ok_or_else(|| StanzaError::not_acceptable().with_text("not an occupant of this room"))?;
        let mut el = st.to_element().map_err(|_| StanzaError::bad_request())?;
        if sender.nick == nick && el.first_child().is_some_and(|p| p.is("ping", ns::PING)) {
            return Ok(None);
        }
        let target = self.occupant(nick).ok_or_else(|| StanzaError::item_not_found().with_text("no such occupant"))?;
        let device = target.devices.last().ok_or_else(StanzaError::item_not_found)?;
        let relay_id = format!("{}\n{}", from, st.id().unwrap_or_default());
        el.set_attr("id", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(relay_id));
        el.set_attr("from", self.nick_jid(&sender.nick));
        el.set_attr("to", device.jid.as_str());
        Ok(Some(Stanza::from_element(&el)))
    }

    /// The answer of a relayed iq, from the device `from` to the occupant JID of the
    /// requester (`nick`): back to the requesting device, under its own id.
    pub fn relay_answer(&self, from: &Jid, nick: &str, st: &Stanza) -> Option<Stanza> {
        let responder = self.occupant_of(from)?;
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(st.id()?).ok()?;
        let (requester, id) = std::str::from_utf8(&decoded).ok()?.split_once('\n')?;
        let requester = Jid::new(requester).ok()?;
        // Only the requester's own occupant JID brings the answer to it.
        self.occupant(nick)?.devices.iter().find(|d| d.jid == requester)?;
        let mut el = st.to_element().ok()?;
        el.set_attr("id", id);
        el.set_attr("from", self.nick_jid(&responder.nick));
        el.set_attr("to", requester.as_str());
        Some(Stanza::from_element(&el))
    }

    /// Changes an occupant's role (§8.4–§8.5, §9.6–9.7) at the request of the device `by`.
    pub fn set_role(&mut self, by: &Jid, nick: &str, role: Role) -> Result<Out, StanzaError> {
        let requester = self.occupant_of(by).ok_or_else(|| StanzaError::forbidden().with_text("join the room first"))?;
        let (by_role, by_affiliation) = (requester.role, self.affiliation(&requester.real));
        let at = self.occupants.iter().position(|o| o.nick == nick).ok_or_else(StanzaError::item_not_found)?;
        let target_affiliation = self.affiliation(&self.occupants[at].real);
        let allowed = match role {
            // Moderators kick, voice and devoice those below admin; admins make moderators.
            Role::None | Role::Visitor | Role::Participant => by_role == Role::Moderator && target_affiliation < Affiliation::Admin,
            Role::Moderator => by_affiliation >= Affiliation::Admin,
        };
        if !allowed {
            return Err(StanzaError::not_allowed().with_text("you may not change that occupant's role"));
        }
        let mut out = Vec::new();
        if role == Role::None {
            self.remove_occupant(at, Element::new("item", ns::MUC_USER), &[status::KICKED], &mut out);
        } else {
            self.occupants[at].role = role;
            self.broadcast_presence(&self.occupants[at], false, &Element::new("item", ns::MUC_USER), &[], &[status::SELF], &mut out);
        }
        Ok(out)
    }

    /// Changes a real JID's affiliation (§9, §10): owners change anything, admins only
    /// members, outcasts and none below admin. The last owner stays.
    pub fn set_affiliation(&mut self, by: Affiliation, jid: &BareJid, affiliation: Affiliation) -> Result<Out, StanzaError> {
        let current = self.affiliation(jid);
        let allowed = by == Affiliation::Owner || (by == Affiliation::Admin && current < Affiliation::Admin && affiliation < Affiliation::Admin);
        if !allowed {
            return Err(StanzaError::not_allowed().with_text("you may not change that affiliation"));
        }
        let owners = self.affiliations.values().filter(|a| **a == Affiliation::Owner).count();
        if current == Affiliation::Owner && affiliation != Affiliation::Owner && owners == 1 {
            return Err(StanzaError::conflict().with_text("a room needs an owner"));
        }
        if affiliation == Affiliation::None {
            self.affiliations.remove(jid.as_str());
        } else {
            if current == Affiliation::None && self.affiliations.len() >= MAX_AFFILIATIONS {
                return Err(StanzaError::resource_constraint().with_text("this room has too many affiliations"));
            }
            self.affiliations.insert(jid.to_string(), affiliation);
        }
        let mut out = Vec::new();
        if let Some(at) = self.occupants.iter().position(|o| &o.real == jid) {
            if affiliation == Affiliation::Outcast {
                self.remove_occupant(at, Element::new("item", ns::MUC_USER), &[status::BANNED], &mut out);
            } else if self.config.members_only && affiliation < Affiliation::Member {
                self.remove_occupant(at, Element::new("item", ns::MUC_USER), &[status::AFFILIATION_CHANGED], &mut out);
            } else {
                self.occupants[at].role = self.role_for(affiliation);
                self.broadcast_presence(&self.occupants[at], false, &Element::new("item", ns::MUC_USER), &[], &[status::SELF], &mut out);
            }
        }
        Ok(out)
    }

    /// Applies a new configuration; occupants who may no longer stay (members-only) leave.
    pub fn configure(&mut self, config: RoomConfig) -> Out {
        let mut out = Vec::new();
        let became_members_only = config.members_only && !self.config.members_only;
        self.config = config;
        self.locked = false;
        if became_members_only {
            while let Some(at) = self.occupants.iter().position(|o| self.affiliation(&o.real) < Affiliation::Member) {
                self.remove_occupant(at, Element::new("item", ns::MUC_USER), &[status::MEMBERS_ONLY], &mut out);
            }
        }
        out
    }

    /// Everyone leaves: the room is destroyed (§10.9), perhaps for another venue.
    pub fn destroy(&mut self, venue: Option<&str>, reason: Option<&str>) -> Out {
        let mut destroy = Element::new("destroy", ns::MUC_USER);
        if let Some(v) = venue {
            destroy.set_attr("jid", v);
        }
        if let Some(r) = reason {
            destroy.push(Element::new("reason", ns::MUC_USER).with_text(r));
        }
        self.everyone_leaves(&[status::SELF], Some(destroy))
    }

    /// Everyone leaves because the service stops (§15.2, status 332), so that clients join
    /// again once it (or, in a cluster, another node) serves the room.
    pub fn shut_down(&mut self) -> Out {
        self.everyone_leaves(&[status::SELF, status::SHUTDOWN], None)
    }

    /// Each device of each occupant gets its own unavailable presence with `codes` (and
    /// `extra` in its `x`); nobody is left.
    fn everyone_leaves(&mut self, codes: &[u16], extra: Option<Element>) -> Out {
        let mut out = Vec::new();
        for o in &self.occupants {
            for d in &o.devices {
                let mut p = self.presence(o, d, &d.jid, true, true, Element::new("item", ns::MUC_USER), codes);
                if let Some(extra) = &extra {
                    let mut el = p.to_element().expect("built here");
                    if let Some(x) = el.child_mut("x", ns::MUC_USER) {
                        x.push(extra.clone());
                    }
                    p = Stanza::from_element(&el);
                }
                out.push(p);
            }
        }
        self.occupants.clear();
        out
    }

    /// The room's disco#info (§6.4) with its `muc#roominfo` form.
    pub fn disco_info(&self) -> Element {
        let mut q = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "conference")
                .with_attr("type", "text")
                .with_attr("name", if self.config.name.is_empty() { self.jid.node().map_or("", |n| n.as_str()) } else { &self.config.name }),
        );
        let mut features = vec![ns::MUC, ns::DISCO_INFO, ns::SID, ns::OCCUPANT_ID, ns::MUC_SELF_PING, ns::MESSAGE_MODERATE, super::voice::FORM_TYPE];
        for option in OPTIONS {
            features.extend_from_slice(option.features(&self.config));
        }
        features.sort_unstable();
        features.dedup();
        for f in features {
            q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        let field = |var: &str, v: String| {
            Element::new("field", ns::DATA_FORMS).with_attr("var", var).with_child(Element::new("value", ns::DATA_FORMS).with_text(v))
        };
        let form = Element::new("x", ns::DATA_FORMS)
            .with_attr("type", "result")
            .with_child(field("FORM_TYPE", ns::MUC_ROOMINFO.to_owned()).with_attr("type", "hidden"))
            .with_child(field("muc#roominfo_description", self.config.description.clone()))
            .with_child(field("muc#roominfo_occupants", self.occupants.len().to_string()))
            .with_child(field("muc#roominfo_subject", self.subject.as_ref().map(|s| s.text.clone()).unwrap_or_default()))
            .with_child(field("muc#roomconfig_roomname", self.config.name.clone()));
        q.push(form);
        q
    }
}

/// What a client put in its presence, for the room to pass on: no addresses, no MUC
/// payloads (the room writes its own) and no claimed occupant-id.
fn client_presence(st: &Stanza) -> Element {
    let mut el = st.to_element().unwrap_or_else(|_| Element::new("presence", ns::CLIENT));
    el.remove_attr("to");
    el.remove_attr("from");
    el.remove_attr("type");
    el.retain_children(|c| !(c.is("x", ns::MUC) || c.is("x", ns::MUC_USER) || c.is("occupant-id", ns::OCCUPANT_ID)));
    el
}

/// Reads a message back from the archive.
pub fn from_archive(payload: &[u8]) -> Option<Element> {
    jabberwock_proto::reader::parse_element(payload, &jabberwock_proto::Limits::unlimited()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Room {
        let owner = BareJid::new("owner@example.org").unwrap();
        Room::new(BareJid::new("r@conference.example.org").unwrap(), RoomConfig::default(), &owner)
    }

    fn presence() -> Stanza {
        Stanza::from_element(&Element::new("presence", ns::CLIENT))
    }

    #[test]
    fn one_account_cannot_join_with_endless_devices() {
        let mut r = room();
        r.locked = false;
        for i in 0..MAX_DEVICES {
            let jid = Jid::new(&format!("m@remote.example/{i}")).unwrap();
            let join = Join { jid: &jid, nick: "m", password: None, affiliation: Affiliation::None };
            r.join(&join, &presence(), false).unwrap();
        }
        let jid = Jid::new("m@remote.example/one-more").unwrap();
        let join = Join { jid: &jid, nick: "m", password: None, affiliation: Affiliation::None };
        let e = r.join(&join, &presence(), false).unwrap_err();
        assert_eq!(e.condition, jabberwock_proto::StanzaErrorCondition::ResourceConstraint);
        assert_eq!(r.occupants.len(), 1);
        assert_eq!(r.occupants[0].devices.len(), MAX_DEVICES);
    }

    #[test]
    fn affiliations_are_bounded() {
        let mut r = room();
        for i in 0..MAX_AFFILIATIONS - 1 {
            let jid = BareJid::new(&format!("u{i}@example.org")).unwrap();
            r.set_affiliation(Affiliation::Owner, &jid, Affiliation::Member).unwrap();
        }
        let extra = BareJid::new("extra@example.org").unwrap();
        let e = r.set_affiliation(Affiliation::Owner, &extra, Affiliation::Outcast).unwrap_err();
        assert_eq!(e.condition, jabberwock_proto::StanzaErrorCondition::ResourceConstraint);
        // Changing an existing affiliation still works at the limit.
        let first = BareJid::new("u0@example.org").unwrap();
        r.set_affiliation(Affiliation::Owner, &first, Affiliation::Admin).unwrap();
        assert_eq!(r.affiliations.len(), MAX_AFFILIATIONS);
    }
}
