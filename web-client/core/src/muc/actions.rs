//! Message actions in a room: XEP-0308 corrections, XEP-0424 retractions, XEP-0444
//! reactions and XEP-0461 replies, as in a one-to-one chat ([`crate::actions`]), plus
//! XEP-0425 moderation: a moderator has the room retract anyone's message.
//!
//! In a room the XEPs name a message by the room's stanza-id (XEP-0359, `by` the room),
//! except a correction, which names the sender's own id. An action keys a message by
//! either ([`Room::find`]), so the views use one key: the stanza-id once the room has
//! given it. Only the author may correct or retract a message (the same occupant-id, or
//! the same nick where the room gives none); only the room itself announces a
//! moderator's retraction.
//!
//! References met in the room's archive before the message they are for (pages come
//! newest first) wait on the room, bounded, and apply when it is loaded.

use jabberwock_proto::Element;

use super::{mentions, occupant_jid, Effect, Room, RoomIq, RoomMessage, Rooms};
use crate::actions::{self, Annotations, Outcome, Reaction, Reply};
use crate::{address, ns, stanza};

/// References to messages not loaded (yet) kept per room.
pub const MAX_ROOM_ORPHANS: usize = 200;

/// XEP-0425: a moderator removed the message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Moderation {
    /// The moderator's nick, when the room says.
    pub by: Option<String>,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Change {
    Correct { body: String },
    Retract { moderation: Option<Moderation> },
    React { emoji: Vec<String> },
}

/// A room message that changes another instead of being one to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RoomReference {
    /// Who sent it: an occupant-id, or a nick ([`RoomMessage::author_key`]).
    author: String,
    target: String,
    change: Change,
    at_ms: i64,
}

/// What a room message with these parts refers to: `None` when it is a message to show;
/// `Some(None)` when it refers to something a room view has no use for (chat markers,
/// receipts, a retraction the room announces without a moderator), to be dropped.
pub(super) fn reference(el: &Element, nick: Option<&str>, author: &str, at_ms: i64) -> Option<Option<RoomReference>> {
    let extras = actions::Extras::parse(el);
    if let Some(retract) = el.child("retract", ns::RETRACT) {
        let moderated = retract.child("moderated", ns::MESSAGE_MODERATE);
        // A moderator's retraction comes from the room; an occupant retracts only their own.
        let moderation = match (nick, moderated) {
            (None, Some(m)) => Some(Moderation {
                by: m.attr("by").and_then(address::resource).map(str::to_owned),
                reason: retract.child_text("reason", ns::RETRACT).map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()),
            }),
            (Some(_), None) => None,
            _ => return Some(None),
        };
        let Some(target) = extras.retracts else { return Some(None) };
        return Some(Some(RoomReference { author: author.to_owned(), target, change: Change::Retract { moderation }, at_ms }));
    }
    if !extras.is_reference() {
        return None;
    }
    if nick.is_none() {
        return Some(None);
    }
    let reference = |target: String, change| Some(Some(RoomReference { author: author.to_owned(), target, change, at_ms }));
    if let Some(target) = extras.replaces {
        let body = el.child_text("body", ns::CLIENT).filter(|b| !b.trim().is_empty());
        return body.map_or(Some(None), |body| reference(target, Change::Correct { body }));
    }
    if let Some((target, emoji)) = extras.reactions {
        return reference(target, Change::React { emoji });
    }
    Some(None)
}

/// A XEP-0424 tombstone from the room's archive (a retracted message, kept in its place
/// with its stanza-id) as the retraction it stands for.
pub(super) fn tombstone(el: &Element, archive_id: &str, author: &str, at_ms: i64) -> Option<RoomReference> {
    let retracted = el.child("retracted", ns::RETRACT)?;
    let moderation = retracted.child("moderated", ns::MESSAGE_MODERATE).map(|m| Moderation {
        by: m.attr("by").and_then(address::resource).map(str::to_owned),
        reason: retracted.child_text("reason", ns::RETRACT).map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()),
    });
    Some(RoomReference { author: author.to_owned(), target: archive_id.to_owned(), change: Change::Retract { moderation }, at_ms })
}

impl RoomReference {
    /// A tombstone whose message was never loaded still shows, as a removed message.
    pub(super) fn placeholder(&self, archive_id: &str, nick: String, occupant_id: Option<String>) -> Option<RoomMessage> {
        let Change::Retract { moderation } = &self.change else { return None };
        Some(RoomMessage {
            id: String::new(),
            stanza_id: Some(archive_id.to_owned()),
            nick,
            occupant_id,
            body: String::new(),
            timestamp_ms: self.at_ms,
            outgoing: false,
            reflected: false,
            mention: false,
            error: None,
            edited: false,
            annotations: Annotations { retracted: true, ..Annotations::default() },
            moderation: moderation.clone(),
        })
    }

    fn apply(&self, r: &mut Room) -> Outcome {
        let own_nick = r.nick.clone();
        // A correction names the sender's id; everything else the room's.
        let by_id = matches!(self.change, Change::Correct { .. });
        let Some(m) = r.find_mut(&self.target, by_id) else { return Outcome::Unmatched };
        let authors = m.author_key() == self.author;
        match &self.change {
            Change::Retract { moderation } => {
                if moderation.is_none() && !authors {
                    return Outcome::Unmatched;
                }
                m.annotations.retracted = true;
                m.annotations.reply = None;
                m.annotations.oob = None;
                m.body.clear();
                m.mention = false;
                if moderation.is_some() {
                    m.moderation = moderation.clone();
                }
            }
            Change::Correct { body } => {
                if !authors {
                    return Outcome::Unmatched;
                }
                // Nothing brings a retracted message back; an older correction loses.
                if m.annotations.retracted || self.at_ms < m.annotations.edited_at_ms {
                    return Outcome::Applied;
                }
                m.annotations.edited_at_ms = self.at_ms;
                if m.annotations.oob.as_deref() != Some(body.trim()) {
                    m.annotations.oob = None;
                }
                m.mention = !m.outgoing && mentions(body, &own_nick);
                m.body = body.clone();
                m.edited = true;
            }
            Change::React { emoji } => {
                let newer = m.annotations.reactions.get(&self.author).is_none_or(|r| r.at_ms <= self.at_ms);
                if newer && emoji.is_empty() {
                    m.annotations.reactions.remove(&self.author);
                } else if newer {
                    m.annotations.reactions.insert(self.author.clone(), Reaction { emoji: emoji.clone(), at_ms: self.at_ms });
                }
            }
        }
        Outcome::Applied
    }
}

impl Room {
    /// The message `key` names: by the room's stanza-id, or by the sender's id (first,
    /// with `by_id`), the newest first.
    fn find_mut(&mut self, key: &str, by_id: bool) -> Option<&mut RoomMessage> {
        let by_stanza_id = |m: &RoomMessage| m.stanza_id.as_deref() == Some(key);
        let by_sender_id = |m: &RoomMessage| !m.id.is_empty() && m.id == key;
        let at = if by_id {
            self.messages.iter().rposition(by_sender_id).or_else(|| self.messages.iter().rposition(by_stanza_id))
        } else {
            self.messages.iter().rposition(by_stanza_id).or_else(|| self.messages.iter().rposition(by_sender_id))
        }?;
        Some(&mut self.messages[at])
    }

    /// The message `key` names ([`Room::find_mut`]).
    pub fn message(&self, key: &str) -> Option<&RoomMessage> {
        self.messages.iter().rev().find(|m| m.stanza_id.as_deref() == Some(key)).or_else(|| self.messages.iter().rev().find(|m| !m.id.is_empty() && m.id == key))
    }

    /// The key views use for `m` in actions: the room's stanza-id once known.
    pub fn key_of(m: &RoomMessage) -> &str {
        m.stanza_id.as_deref().unwrap_or(&m.id)
    }

    /// Applies the reference, or keeps it for the message it names (bounded: the
    /// oldest go first).
    pub(super) fn apply_or_keep(&mut self, reference: RoomReference) {
        if reference.apply(self) == Outcome::Unmatched {
            if self.orphans.len() >= MAX_ROOM_ORPHANS {
                self.orphans.remove(0);
            }
            self.orphans.push(reference);
        }
    }

    /// A message was added: what waited for it applies now.
    pub(super) fn adopt(&mut self, stanza_id: Option<&str>, id: &str) {
        if self.orphans.is_empty() {
            return;
        }
        for reference in std::mem::take(&mut self.orphans) {
            let names = Some(reference.target.as_str()) == stanza_id || (!id.is_empty() && reference.target == id);
            if !(names && reference.apply(self) == Outcome::Applied) {
                self.orphans.push(reference);
            }
        }
    }

    /// Our last message, the one XEP-0308 lets us correct, unless retracted or refused.
    pub fn correctable(&self) -> Option<&RoomMessage> {
        self.messages.iter().rev().find(|m| m.outgoing).filter(|m| !m.annotations.retracted && !m.id.is_empty() && m.error.is_none())
    }

    /// Our key in reactions and as an author.
    pub fn own_key(&self) -> String {
        self.occupant_id.clone().unwrap_or_else(|| self.nick.clone())
    }

    /// The nick of the author an occupant-id names (a nick names itself).
    pub fn nick_of(&self, key: &str) -> Option<String> {
        if self.occupant_id.as_deref() == Some(key) {
            return Some(self.nick.clone());
        }
        let occupant = self.occupants.values().find(|o| o.occupant_id.as_deref() == Some(key)).map(|o| o.nick.clone());
        occupant.or_else(|| self.messages.iter().rev().find(|m| m.occupant_id.as_deref() == Some(key)).map(|m| m.nick.clone()))
    }

    /// The quote shown above a reply: the original's text when it is loaded, otherwise
    /// the sender's fallback.
    pub fn reply_quote(&self, reply: &Reply) -> Option<String> {
        match self.message(&reply.id) {
            Some(m) if m.annotations.retracted => Some("message retracted".to_owned()),
            Some(m) => Some(actions::quote(&m.body)),
            None => reply.fallback.as_deref().map(actions::quote),
        }
    }

    /// Whether we may moderate `m`: a moderator may remove any message the room has
    /// given an id, ours included.
    pub fn can_remove(&self, m: &RoomMessage) -> bool {
        self.can_moderate() && m.stanza_id.is_some() && !m.annotations.retracted
    }
}

/// A chat-message builder's stanza as a groupchat one: no receipts or markers asked of a
/// whole room (XEP-0184 §5.3).
fn groupchat(mut el: Element) -> Element {
    el.set_attr("type", "groupchat");
    el.remove_children("request", ns::RECEIPTS);
    el.remove_children("markable", ns::MARKERS);
    el
}

impl Rooms {
    /// The joined room `room` with the message `key` in it, not retracted.
    fn target(&self, room: &str, key: &str) -> Option<(&Room, &RoomMessage)> {
        let r = self.rooms.get(room).filter(|r| r.is_joined())?;
        let m = r.message(key).filter(|m| !m.annotations.retracted)?;
        Some((r, m))
    }

    /// Sends a reference of ours and applies it here as the others will.
    fn send_reference(&mut self, room: &str, el: Element, now_ms: i64) -> Vec<Effect> {
        let Some(r) = self.rooms.get_mut(room) else { return Vec::new() };
        let author = r.own_key();
        if let Some(Some(reference)) = reference(&el, Some(&r.nick.clone()), &author, now_ms) {
            r.apply_or_keep(reference);
        }
        vec![Effect::Send(el), Effect::Changed { room: room.to_owned(), mention: false }]
    }

    /// XEP-0308: replaces the text of our last message (`key`) with `text`.
    pub fn correct(&mut self, room: &str, key: &str, text: &str, now_ms: i64) -> Vec<Effect> {
        let Some(r) = self.rooms.get(room).filter(|r| r.is_joined()) else { return Vec::new() };
        let Some(id) = r.correctable().filter(|m| Room::key_of(m) == key || m.id == key).map(|m| m.id.clone()) else { return Vec::new() };
        if text.trim().is_empty() {
            return Vec::new();
        }
        let new_id = self.id();
        self.send_reference(room, groupchat(actions::correction(&new_id, room, &id, text)), now_ms)
    }

    /// XEP-0424: retracts our message `key`, once the room has given it an id.
    pub fn retract(&mut self, room: &str, key: &str, now_ms: i64) -> Vec<Effect> {
        let Some(stanza_id) = self.target(room, key).filter(|(_, m)| m.outgoing).and_then(|(_, m)| m.stanza_id.clone()) else { return Vec::new() };
        let new_id = self.id();
        self.send_reference(room, groupchat(actions::retraction(&new_id, room, &stanza_id)), now_ms)
    }

    /// XEP-0444: adds `emoji` to our reactions to the message `key`, or takes it away.
    pub fn toggle_reaction(&mut self, room: &str, key: &str, emoji: &str, now_ms: i64) -> Vec<Effect> {
        let Some((r, m)) = self.target(room, key) else { return Vec::new() };
        let Some(stanza_id) = m.stanza_id.clone() else { return Vec::new() };
        let Some(ours) = actions::toggled(&m.annotations, &r.own_key(), emoji) else { return Vec::new() };
        let new_id = self.id();
        self.send_reference(room, groupchat(actions::reactions(&new_id, room, &stanza_id, &ours)), now_ms)
    }

    /// XEP-0461: sends `text` as a reply to the message `key`, with a quote of it for
    /// clients without replies.
    pub fn send_reply(&mut self, room: &str, key: &str, text: &str, now_ms: i64) -> Vec<Effect> {
        let Some((_, m)) = self.target(room, key) else { return self.send(room, text, now_ms) };
        let Some(stanza_id) = m.stanza_id.clone() else { return self.send(room, text, now_ms) };
        if text.trim().is_empty() {
            return Vec::new();
        }
        let author = occupant_jid(room, &m.nick);
        let (body, end) = actions::reply_body(&m.body, text);
        let id = self.id();
        let el = groupchat(actions::as_reply(stanza::chat_message(&id, room, &body), &author, &stanza_id, end));
        let annotations = Annotations { reply: Some(Reply { id: stanza_id, fallback: None }), ..Annotations::default() };
        self.send_new(room, id, el, text, annotations, now_ms)
    }

    /// XEP-0066: sends the link to an uploaded file to the room.
    pub fn send_file(&mut self, room: &str, url: &str, now_ms: i64) -> Vec<Effect> {
        let id = self.id();
        let el = groupchat(actions::with_oob(stanza::chat_message(&id, room, url), url));
        let annotations = Annotations { oob: Some(url.to_owned()), ..Annotations::default() };
        self.send_new(room, id, el, url, annotations, now_ms)
    }

    /// XEP-0425: as a moderator, has the room retract the message `key` for everyone.
    pub fn moderate(&mut self, room: &str, key: &str, reason: Option<&str>) -> Vec<Effect> {
        let Some(stanza_id) = self.target(room, key).filter(|(r, m)| r.can_remove(m)).and_then(|(_, m)| m.stanza_id.clone()) else {
            return Vec::new();
        };
        let mut moderate = Element::new("moderate", ns::MESSAGE_MODERATE).with_attr("id", stanza_id).with_child(Element::new("retract", ns::RETRACT));
        if let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) {
            moderate.push(Element::new("reason", ns::MESSAGE_MODERATE).with_text(reason));
        }
        let id = self.id();
        self.pending.push((id.clone(), RoomIq::Moderate { room: room.to_owned() }));
        vec![Effect::Send(stanza::iq("set", &id, Some(room)).with_child(moderate))]
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{feed, groupchat as incoming, joined, sent, ROOM};
    use super::*;
    use crate::actions::reaction_counts;

    const REFLECT: &str = "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='ou'/>";

    fn sid(id: &str) -> String {
        format!("<stanza-id xmlns='urn:xmpp:sid:0' by='{ROOM}' id='{id}'/>")
    }

    /// Ann in the room with bob's message S1 and her own, reflected as S2.
    fn with_messages() -> Rooms {
        let mut rooms = joined("ann", "member", "participant");
        feed(&mut rooms, &incoming("bob", "b1", "hello all", &format!("{}<occupant-id xmlns='urn:xmpp:occupant-id:0' id='ob'/>", sid("S1"))));
        let ev = rooms.send(ROOM, "hi bob", 6_000);
        let id = sent(&ev)[0].attr("id").unwrap().to_owned();
        feed(&mut rooms, &incoming("ann", &id, "hi bob", &format!("{}{REFLECT}", sid("S2"))));
        rooms
    }

    fn msg<'a>(rooms: &'a Rooms, key: &str) -> &'a RoomMessage {
        rooms.get(ROOM).unwrap().message(key).unwrap()
    }

    #[test]
    fn a_correction_from_the_author_replaces_the_text_and_not_from_anyone_else() {
        let mut rooms = with_messages();
        let ob = "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='ob'/>";
        feed(&mut rooms, &incoming("bob", "b2", "hello everyone", &format!("<replace xmlns='urn:xmpp:message-correct:0' id='b1'/>{ob}")));
        let m = msg(&rooms, "S1");
        assert_eq!((m.body.as_str(), m.edited), ("hello everyone", true));
        assert_eq!(rooms.get(ROOM).unwrap().messages.len(), 2, "no new message");
        // Carol, under bob's old nick trick or not, cannot correct bob's message.
        feed(&mut rooms, &incoming("carol", "c1", "pwned", "<replace xmlns='urn:xmpp:message-correct:0' id='b1'/><occupant-id xmlns='urn:xmpp:occupant-id:0' id='oc'/>"));
        assert_eq!(msg(&rooms, "S1").body, "hello everyone");
        // Nor can a correction of an unknown message show as a message.
        feed(&mut rooms, &incoming("bob", "b3", "what", &format!("<replace xmlns='urn:xmpp:message-correct:0' id='nope'/>{ob}")));
        assert_eq!(rooms.get(ROOM).unwrap().messages.len(), 2);
    }

    #[test]
    fn our_correction_retraction_and_reaction_go_out_as_groupchat_and_show_at_once() {
        let mut rooms = with_messages();
        let ev = rooms.correct(ROOM, "S2", "hi bob!", 7_000);
        let el = sent(&ev)[0];
        assert_eq!(el.attr("type"), Some("groupchat"));
        assert!(el.child("request", ns::RECEIPTS).is_none(), "no receipts in rooms");
        let own_id = msg(&rooms, "S2").id.clone();
        assert_eq!(el.child("replace", ns::CORRECT).and_then(|r| r.attr("id")), Some(own_id.as_str()), "a correction names our own id");
        assert_eq!(msg(&rooms, "S2").body, "hi bob!");
        // Only our last message, and only ours.
        assert!(rooms.correct(ROOM, "S1", "not mine", 7_100).is_empty());

        let ev = rooms.toggle_reaction(ROOM, "S1", "👍", 7_200);
        let r = sent(&ev)[0].child("reactions", ns::REACTIONS).unwrap();
        assert_eq!(r.attr("id"), Some("S1"), "reactions name the room's id");
        assert!(reaction_counts(msg(&rooms, "S1"), "ou")[0].ours);
        // The room reflects it: still one reaction of ours.
        let reflected = sent(&ev)[0].to_xml_string().replace("<message ", &format!("<message from='{ROOM}/ann' "));
        feed(&mut rooms, &reflected.replace("</message>", &format!("{REFLECT}</message>")));
        assert_eq!(reaction_counts(msg(&rooms, "S1"), "ou").len(), 1);
        assert_eq!(reaction_counts(msg(&rooms, "S1"), "ou")[0].by, ["ou"]);

        assert!(rooms.retract(ROOM, "S1", 7_300).is_empty(), "not ours to retract");
        let ev = rooms.retract(ROOM, "S2", 7_400);
        assert_eq!(sent(&ev)[0].child("retract", ns::RETRACT).and_then(|r| r.attr("id")), Some("S2"));
        assert!(msg(&rooms, "S2").annotations.retracted && msg(&rooms, "S2").body.is_empty());
        assert!(rooms.correct(ROOM, "S2", "back?", 7_500).is_empty(), "a retracted message stays retracted");
    }

    #[test]
    fn retractions_by_the_author_or_announced_by_the_room_for_a_moderator() {
        let mut rooms = with_messages();
        // Carol cannot retract bob's message; bob can.
        feed(&mut rooms, &incoming("carol", "c1", "x", "<retract xmlns='urn:xmpp:message-retract:1' id='S1'/><occupant-id xmlns='urn:xmpp:occupant-id:0' id='oc'/>"));
        assert!(!msg(&rooms, "S1").annotations.retracted);
        // An occupant cannot pass their retraction off as a moderator's.
        feed(
            &mut rooms,
            &incoming("carol", "c2", "x", "<retract xmlns='urn:xmpp:message-retract:1' id='S1'><moderated xmlns='urn:xmpp:message-moderate:1' by='x'/></retract>"),
        );
        assert!(!msg(&rooms, "S1").annotations.retracted);
        let announcement = format!(
            "<message xmlns='jabber:client' type='groupchat' from='{ROOM}' id='r1'><retract xmlns='urn:xmpp:message-retract:1' id='S1'>\
             <moderated xmlns='urn:xmpp:message-moderate:1' by='{ROOM}/mod'/><reason>spam</reason></retract></message>"
        );
        feed(&mut rooms, &announcement);
        let m = msg(&rooms, "S1");
        assert!(m.annotations.retracted && m.body.is_empty());
        assert_eq!(m.moderation, Some(Moderation { by: Some("mod".into()), reason: Some("spam".into()) }));
        assert_eq!(rooms.get(ROOM).unwrap().messages.len(), 2, "the announcement is not a message");
    }

    #[test]
    fn moderators_ask_the_room_and_hear_why_it_refused() {
        let mut rooms = with_messages();
        assert!(rooms.moderate(ROOM, "S1", Some("spam")).is_empty(), "a participant may not");
        let mut rooms = joined("ann", "admin", "moderator");
        feed(&mut rooms, &incoming("bob", "b1", "buy now", &sid("S1")));
        assert!(rooms.moderate(ROOM, "b1x", None).is_empty(), "an unknown message");
        let ev = rooms.moderate(ROOM, "S1", Some(" spam "));
        let iq = sent(&ev)[0];
        let m = iq.child("moderate", ns::MESSAGE_MODERATE).unwrap();
        assert_eq!((iq.attr("type"), iq.attr("to"), m.attr("id")), (Some("set"), Some(ROOM), Some("S1")));
        assert!(m.child("retract", ns::RETRACT).is_some());
        assert_eq!(m.child_text("reason", ns::MESSAGE_MODERATE).as_deref(), Some("spam"));
        let id = iq.attr("id").unwrap();
        let ev = feed(
            &mut rooms,
            &format!("<iq xmlns='jabber:client' type='error' from='{ROOM}' id='{id}'><error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"),
        );
        assert!(matches!(&ev[..], [Effect::Notice(n)] if n.contains("not removed")), "{ev:?}");
    }

    #[test]
    fn the_archive_brings_references_before_their_messages_and_tombstones() {
        let mut rooms = joined("ann", "member", "participant");
        let query = sent(&rooms.load_history(ROOM))[0].child("query", ns::MAM).unwrap().attr("queryid").unwrap().to_owned();
        let archived = |rooms: &mut Rooms, id: &str, inner: &str| {
            feed(
                rooms,
                &format!(
                    "<message xmlns='jabber:client' from='{ROOM}'><result xmlns='urn:xmpp:mam:2' queryid='{query}' id='{id}'>\
                     <forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2024-01-01T00:00:00Z'/>{inner}</forwarded></result></message>"
                ),
            );
        };
        let ob = "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='ob'/>";
        // Newest first: a reaction, a correction, then the message itself; and a tombstone.
        archived(&mut rooms, "A3", &format!("<message xmlns='jabber:client' type='groupchat' from='{ROOM}/carol'><reactions xmlns='urn:xmpp:reactions:0' id='A1'><reaction>🎉</reaction></reactions></message>"));
        archived(&mut rooms, "A2", &format!("<message xmlns='jabber:client' type='groupchat' from='{ROOM}/bob' id='b2'><body>fixed</body><replace xmlns='urn:xmpp:message-correct:0' id='b1'/>{ob}</message>"));
        archived(&mut rooms, "A1", &format!("<message xmlns='jabber:client' type='groupchat' from='{ROOM}/bob' id='b1'><body>fxed</body>{ob}</message>"));
        archived(
            &mut rooms,
            "A0",
            &format!(
                "<message xmlns='jabber:client' type='groupchat' from='{ROOM}/eve'><retracted xmlns='urn:xmpp:message-retract:1' stamp='2024-01-01T00:00:00Z'>\
                 <moderated xmlns='urn:xmpp:message-moderate:1' by='{ROOM}/mod'/></retracted></message>"
            ),
        );
        let r = rooms.get(ROOM).unwrap();
        assert_eq!(r.messages.len(), 2, "{:?}", r.messages);
        let m = r.message("A1").unwrap();
        assert_eq!((m.body.as_str(), m.edited), ("fixed", true));
        assert_eq!(reaction_counts(m, "ou")[0].emoji, "🎉");
        let removed = r.message("A0").unwrap();
        assert!(removed.annotations.retracted);
        assert_eq!(removed.moderation.as_ref().and_then(|m| m.by.as_deref()), Some("mod"));
        assert!(r.orphans.is_empty());
    }

    #[test]
    fn replies_quote_the_original_and_orphans_are_bounded() {
        let mut rooms = with_messages();
        let ev = rooms.send_reply(ROOM, "S1", "hello!", 8_000);
        let el = sent(&ev)[0];
        let reply = el.child("reply", ns::REPLY).unwrap();
        assert_eq!((reply.attr("to"), reply.attr("id")), (Some(format!("{ROOM}/bob").as_str()), Some("S1")));
        assert!(el.child_text("body", ns::CLIENT).unwrap().starts_with("> hello all\n"));
        let r = rooms.get(ROOM).unwrap();
        let mine = r.messages.last().unwrap();
        assert_eq!(mine.body, "hello!");
        assert_eq!(r.reply_quote(mine.annotations.reply.as_ref().unwrap()).as_deref(), Some("hello all"));
        // A reply from someone else: its fallback quote is taken out of the text.
        let body = "&gt; hi bob\nindeed";
        let extra = format!(
            "<reply xmlns='urn:xmpp:reply:0' to='{ROOM}/ann' id='S2'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='9'/></fallback>{}",
            sid("S4")
        );
        feed(&mut rooms, &incoming("bob", "b5", body, &extra));
        let theirs = rooms.get(ROOM).unwrap().message("S4").unwrap().clone();
        assert_eq!(theirs.body, "indeed");
        assert_eq!(rooms.get(ROOM).unwrap().reply_quote(theirs.annotations.reply.as_ref().unwrap()).as_deref(), Some("hi bob"));

        for n in 0..MAX_ROOM_ORPHANS + 5 {
            feed(&mut rooms, &incoming("bob", &format!("r{n}"), "x", &format!("<reactions xmlns='urn:xmpp:reactions:0' id='gone{n}'><reaction>👍</reaction></reactions>")));
        }
        assert_eq!(rooms.get(ROOM).unwrap().orphans.len(), MAX_ROOM_ORPHANS);
    }
}
