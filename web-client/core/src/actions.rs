//! Message actions: what one message says about another, and what a message carries
//! besides its text.
//!
//! * XEP-0308 corrections, XEP-0424 retractions, XEP-0444 reactions, XEP-0333 chat markers
//!   and XEP-0184 receipts refer to an earlier message by id and change how it shows;
//! * XEP-0461 replies (with the XEP-0428 fallback quote) and XEP-0066 out-of-band URLs are
//!   part of the message they come with.
//!
//! Everything is keyed by conversation (a bare JID, a room later) and message id. In a
//! one-to-one chat the id is the message's `id` attribute, which our messages repeat as
//! their XEP-0359 origin-id; in a room the XEPs name the room's stanza-id instead, which a
//! room conversation must record on its messages (our own reflected ones included).
//!
//! The archive (XEP-0313) returns these messages in time order, page by page from the
//! newest, so a reaction can arrive before the message it is for: such references wait in
//! [`Orphans`] until their message is loaded. Each reference is applied so that the order
//! does not matter: a sender's newest reaction set and newest correction win by timestamp,
//! retractions, receipts and "seen" only ever add.

use std::collections::BTreeMap;

use jabberwock_proto::Element;
use serde::{Deserialize, Serialize};

use crate::chat::{ChatMessage, Chats, Delivery, Direction};
use crate::client::{Client, Event};
use crate::stanza;
use crate::ns;

/// At most this many reaction emoji per person and message, each at most this many bytes:
/// a reaction is a short emoji sequence, not a message.
pub const MAX_REACTIONS: usize = 16;
pub const MAX_REACTION_BYTES: usize = 64;
/// Archived references to messages not loaded (yet) kept per client.
pub const MAX_ORPHANS: usize = 1000;
/// Longest quote of the original shown above a reply, in characters.
pub const QUOTE_CHARS: usize = 200;

/// The emoji the reaction picker always offers.
pub const COMMON_REACTIONS: [&str; 6] = ["👍", "❤️", "😂", "😮", "😢", "🙏"];

/// The body sent with a retraction for clients that do not know XEP-0424.
pub const RETRACTION_FALLBACK: &str = "This person attempted to retract a previous message, but it's unsupported by your client.";

/// What a message is about, besides (or instead of) its own text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// XEP-0308: corrects the sender's message with this id.
    pub replaces: Option<String>,
    /// XEP-0424: retracts the sender's message with this id.
    pub retracts: Option<String>,
    /// XEP-0444: the sender's reactions (all of them: an empty list removes them) to the
    /// message with this id.
    pub reactions: Option<(String, Vec<String>)>,
    /// XEP-0333: the sender has displayed the messages up to this id.
    pub displayed: Option<String>,
    /// XEP-0184: the sender's client received our message with this id.
    pub received: Option<String>,
    /// XEP-0333: the sender wants chat markers for this message.
    pub markable: bool,
    /// XEP-0461: a reply to this message id.
    pub reply_to: Option<String>,
    /// XEP-0428: the part of the body (in characters) that quotes the replied-to message.
    pub reply_fallback: Option<(usize, usize)>,
    /// XEP-0066: a file or image the message links to.
    pub oob: Option<String>,
}

impl Extras {
    pub fn parse(el: &Element) -> Extras {
        let id_of = |name: &str, ns: &str| el.child(name, ns).and_then(|c| c.attr("id")).filter(|id| !id.is_empty()).map(str::to_owned);
        let reactions = el.child("reactions", ns::REACTIONS).and_then(|r| {
            let id = r.attr("id").filter(|id| !id.is_empty())?;
            let mut emoji: Vec<String> = r.children().filter(|c| c.is("reaction", ns::REACTIONS)).map(|c| c.text().trim().to_owned()).collect();
            emoji.retain(|e| !e.is_empty());
            emoji.sort();
            emoji.dedup();
            // Oversized sets are not reactions anyone typed: ignored whole.
            (emoji.len() <= MAX_REACTIONS && emoji.iter().all(|e| e.len() <= MAX_REACTION_BYTES)).then(|| (id.to_owned(), emoji))
        });
        let reply_fallback = el
            .children()
            .filter(|f| f.is("fallback", ns::FALLBACK) && f.attr("for") == Some(ns::REPLY))
            .flat_map(|f| f.children().filter(|b| b.is("body", ns::FALLBACK)))
            .find_map(|b| Some((b.attr("start")?.parse().ok()?, b.attr("end")?.parse().ok()?)))
            .filter(|(start, end)| start <= end);
        Extras {
            replaces: id_of("replace", ns::CORRECT),
            retracts: id_of("retract", ns::RETRACT),
            reactions,
            displayed: id_of("displayed", ns::MARKERS),
            received: el.child("received", ns::RECEIPTS).and_then(|r| r.attr("id").or_else(|| el.attr("id"))).filter(|id| !id.is_empty()).map(str::to_owned),
            markable: el.child("markable", ns::MARKERS).is_some(),
            reply_to: id_of("reply", ns::REPLY),
            reply_fallback,
            oob: el.child("x", ns::OOB).and_then(|x| x.child_text("url", ns::OOB)).map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()),
        }
    }

    /// Whether the message refers to another instead of being one to show.
    pub fn is_reference(&self) -> bool {
        self.replaces.is_some() || self.retracts.is_some() || self.reactions.is_some() || self.displayed.is_some() || self.received.is_some()
    }
}

/// What the actions did to a message: kept on [`ChatMessage`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Annotations {
    /// XEP-0424: its sender retracted it; the body is gone.
    pub retracted: bool,
    /// When the correction shown was sent, so that an older one arriving later loses.
    pub edited_at_ms: i64,
    /// XEP-0444: who reacted with what (each sender's latest set), by sender.
    pub reactions: BTreeMap<String, Reaction>,
    /// XEP-0333: the recipient displayed it (or a later message).
    pub seen: bool,
    /// It asked for chat markers (XEP-0333), so we may say we displayed it.
    pub markable: bool,
    /// XEP-0461: what it answers.
    pub reply: Option<Reply>,
    /// XEP-0066: the file or image it links to.
    pub oob: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reaction {
    pub emoji: Vec<String>,
    pub at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reply {
    pub id: String,
    /// The fallback quote the sender put in the body (removed from it), shown when we do
    /// not have the original.
    pub fallback: Option<String>,
}

/// One emoji under a message: how many reacted with it, and who.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactionCount {
    pub emoji: String,
    pub by: Vec<String>,
    /// We are one of them.
    pub ours: bool,
}

/// A message that actions annotate: one of a chat, or of a room.
pub trait Annotated {
    fn annotations(&self) -> &Annotations;
}

impl Annotated for Annotations {
    fn annotations(&self) -> &Annotations {
        self
    }
}

impl Annotated for ChatMessage {
    fn annotations(&self) -> &Annotations {
        &self.annotations
    }
}

/// The reactions under `m`, most used first. `me` is how our reactions are keyed.
pub fn reaction_counts(m: &impl Annotated, me: &str) -> Vec<ReactionCount> {
    let m = m.annotations();
    let mut counts: Vec<ReactionCount> = Vec::new();
    for (who, r) in &m.reactions {
        for e in &r.emoji {
            match counts.iter_mut().find(|c| &c.emoji == e) {
                Some(c) => c.by.push(who.clone()),
                None => counts.push(ReactionCount { emoji: e.clone(), by: vec![who.clone()], ours: false }),
            }
        }
    }
    for c in &mut counts {
        c.ours = c.by.iter().any(|w| w == me);
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.by.len()));
    counts
}

/// Changes whenever what `m` shows changes (its text, delivery, or anything an action
/// did): views key what they render by it.
pub fn version(m: &ChatMessage) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&m.body, m.edited, m.delivery as u8, &m.error, &m.annotations).hash(&mut h);
    h.finish()
}

/// The emoji the picker offers for `m`: the common ones, then those already under it.
pub fn picker_choices(m: &impl Annotated) -> Vec<String> {
    let mut all: Vec<String> = COMMON_REACTIONS.iter().map(|e| (*e).to_owned()).collect();
    for r in m.annotations().reactions.values() {
        for e in &r.emoji {
            if !all.contains(e) {
                all.push(e.clone());
            }
        }
    }
    all
}

/// `body` without the characters `start..end` (a XEP-0428 fallback), and the removed part
/// as a quote (its `> ` prefixes taken off). `None` when the range is not in the body.
pub fn split_fallback(body: &str, (start, end): (usize, usize)) -> Option<(String, String)> {
    let byte = |n: usize| body.char_indices().map(|(i, _)| i).chain(std::iter::once(body.len())).nth(n);
    let (s, e) = (byte(start)?, byte(end)?);
    let quote = body[s..e].lines().map(|l| l.strip_prefix('>').map_or(l, |l| l.strip_prefix(' ').unwrap_or(l))).collect::<Vec<_>>().join("\n");
    Some((format!("{}{}", &body[..s], &body[e..]), quote.trim().to_owned()))
}

/// The quote shown above a reply or in the composer: the start of `text`, one paragraph.
pub fn quote(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or_default();
    match line.char_indices().nth(QUOTE_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

/// The reactions `me` has on a message with `annotations` once `emoji` is toggled (the
/// whole set, as XEP-0444 sends it); `None` when it cannot be added.
pub fn toggled(annotations: &Annotations, me: &str, emoji: &str) -> Option<Vec<String>> {
    if emoji.trim().is_empty() || emoji.len() > MAX_REACTION_BYTES {
        return None;
    }
    let mut ours = annotations.reactions.get(me).map(|r| r.emoji.clone()).unwrap_or_default();
    match ours.iter().position(|e| e == emoji) {
        Some(at) => {
            ours.remove(at);
        }
        None if ours.len() < MAX_REACTIONS => ours.push(emoji.to_owned()),
        None => return None,
    }
    Some(ours)
}

/// What a reference did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The message it refers to changed (or already showed it).
    Applied,
    /// There is no such message (of that sender) here.
    Unmatched,
}

/// A message that refers to another: who sent it, which way it went, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `In` from the peer, `Out` from us (this or another of our devices).
    pub direction: Direction,
    /// Who the reactions are kept under: the peer's bare JID, or ours.
    pub sender: String,
    pub body: Option<String>,
    pub extras: Extras,
    pub at_ms: i64,
}

impl Reference {
    /// The id of the message it refers to.
    pub fn target(&self) -> Option<&str> {
        let e = &self.extras;
        e.replaces.as_deref().or(e.retracts.as_deref()).or(e.reactions.as_ref().map(|(id, _)| id.as_str())).or(e.displayed.as_deref()).or(e.received.as_deref())
    }

    /// Applies it to the conversation `conv`.
    pub fn apply(&self, chats: &mut Chats, conv: &str) -> Outcome {
        let Some(target) = self.target() else { return Outcome::Unmatched };
        let e = &self.extras;
        let own_side = self.direction;
        // Only the sender's own messages are theirs to correct or retract.
        if e.retracts.is_some() {
            return match chats.message_mut(conv, Some(own_side), target) {
                Some(m) => {
                    m.annotations.retracted = true;
                    m.body.clear();
                    m.annotations.reply = None;
                    m.annotations.oob = None;
                    Outcome::Applied
                }
                None => Outcome::Unmatched,
            };
        }
        if e.replaces.is_some() {
            let Some(body) = self.body.as_ref().filter(|b| !b.trim().is_empty()) else { return Outcome::Unmatched };
            let at_ms = self.at_ms;
            return match chats.message_mut(conv, Some(own_side), target) {
                // Nothing brings a retracted message back; a correction older than the
                // one shown (met later in the archive) loses.
                Some(m) if m.annotations.retracted || at_ms < m.annotations.edited_at_ms => Outcome::Applied,
                Some(m) => {
                    m.annotations.edited_at_ms = at_ms;
                    // The new text may no longer be the file link.
                    if m.annotations.oob.as_deref() != Some(body.trim()) {
                        m.annotations.oob = None;
                    }
                    chats.correct(conv, own_side, target, body.clone());
                    Outcome::Applied
                }
                None => Outcome::Unmatched,
            };
        }
        if let Some((_, emoji)) = &e.reactions {
            // Anyone in the conversation may react to any message in it.
            let Some(m) = chats.message_mut(conv, None, target) else { return Outcome::Unmatched };
            let newer = m.annotations.reactions.get(&self.sender).is_none_or(|r| r.at_ms <= self.at_ms);
            if newer {
                if emoji.is_empty() {
                    m.annotations.reactions.remove(&self.sender);
                } else {
                    m.annotations.reactions.insert(self.sender.clone(), Reaction { emoji: emoji.clone(), at_ms: self.at_ms });
                }
            }
            return Outcome::Applied;
        }
        // Markers and receipts from the peer are about our messages; ours about theirs.
        let Direction::In = own_side else {
            return if chats.message_mut(conv, Some(Direction::In), target).is_some() { Outcome::Applied } else { Outcome::Unmatched };
        };
        if e.displayed.is_some() {
            return if chats.seen_up_to(conv, target) { Outcome::Applied } else { Outcome::Unmatched };
        }
        if chats.message_mut(conv, Some(Direction::Out), target).is_none() {
            return Outcome::Unmatched;
        }
        chats.delivered(conv, target);
        Outcome::Applied
    }
}

/// What a new message carries: its body without a reply's fallback quote (kept in
/// [`Reply::fallback`]), and its reply, file link and request for markers.
pub fn prepare(body: String, extras: &Extras) -> (String, Annotations) {
    let mut body = body;
    let reply = extras.reply_to.as_ref().map(|id| {
        let split = extras.reply_fallback.and_then(|range| split_fallback(&body, range));
        let fallback = split.map(|(rest, quote)| {
            body = rest.trim_start_matches('\n').to_owned();
            quote
        });
        Reply { id: id.clone(), fallback: fallback.filter(|q| !q.is_empty()) }
    });
    // XEP-0066 as clients use it: the body is the URL (anything else is a message that
    // happens to carry a link, shown as text).
    let oob = extras.oob.clone().filter(|url| body.trim() == url && is_web_url(url));
    (body, Annotations { markable: extras.markable, reply, oob, ..Annotations::default() })
}

/// Puts what [`prepare`] found on the stored message, keeping what other messages did to
/// it (the same message may arrive twice: live, then from the archive).
pub fn annotate(m: &mut ChatMessage, fresh: &Annotations) {
    m.annotations.markable = fresh.markable;
    m.annotations.reply = fresh.reply.clone();
    m.annotations.oob = fresh.oob.clone();
}

/// The file name a link to an upload shows: the last part of its path, decoded.
pub fn file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let last = path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("file");
    let mut bytes = Vec::with_capacity(last.len());
    let mut rest = last.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                bytes.push(v);
                rest = &tail[2..];
            }
            _ => {
                bytes.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What a message says in one line (the contact list's preview): its text, or what it is.
pub fn summary(m: &ChatMessage) -> String {
    match (&m.annotations.oob, m.annotations.retracted) {
        (_, true) => "message retracted".to_owned(),
        (Some(url), false) => format!("📎 {}", file_name(url)),
        (None, false) => m.body.replace('\n', " "),
    }
}

/// Whether a file link is shown as an image preview (by the extension of its name; the
/// browser decides whether it really is one, and shows nothing otherwise).
pub fn is_image(url: &str) -> bool {
    let name = file_name(url).to_ascii_lowercase();
    ["png", "jpg", "jpeg", "gif", "webp", "avif"].iter().any(|ext| name.rsplit_once('.').is_some_and(|(_, e)| e == *ext))
}

fn is_web_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://")) && !url.contains(char::is_whitespace)
}

/// The quote shown above a reply: the original's text when it is among `messages` (its
/// conversation), otherwise the sender's fallback.
pub fn reply_quote(messages: &[ChatMessage], reply: &Reply) -> Option<String> {
    match messages.iter().rev().find(|m| m.id == reply.id) {
        Some(m) if m.annotations.retracted => Some("message retracted".to_owned()),
        Some(m) => Some(quote(&m.body)),
        None => reply.fallback.as_deref().map(quote),
    }
}

/// References met in the archive before the message they are for, by conversation and
/// target id, applied when it is loaded. Bounded: the oldest go first.
#[derive(Clone, Debug, Default)]
pub struct Orphans {
    waiting: Vec<(String, String, Reference)>,
}

impl Orphans {
    pub fn keep(&mut self, conv: &str, reference: Reference) {
        let Some(target) = reference.target().map(str::to_owned) else { return };
        if self.waiting.len() >= MAX_ORPHANS {
            self.waiting.remove(0);
        }
        self.waiting.push((conv.to_owned(), target, reference));
    }

    /// The message `id` of `conv` is loaded: what waited for it applies now.
    pub fn adopt(&mut self, chats: &mut Chats, conv: &str, id: &str) {
        let mut rest = Vec::with_capacity(self.waiting.len());
        for (c, target, r) in std::mem::take(&mut self.waiting) {
            if c == conv && target == id && r.apply(chats, conv) == Outcome::Applied {
                continue;
            }
            rest.push((c, target, r));
        }
        self.waiting = rest;
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// What the client keeps for message actions between messages.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub(crate) orphans: Orphans,
    /// The last message per conversation we said we displayed (XEP-0333).
    displayed: BTreeMap<String, String>,
}

// ---- user actions ----


/// Of a conversation's messages, our last one, which XEP-0308 lets us correct, unless
/// retracted (also what a tab of a shared session asks of the messages it shows).
pub fn last_correctable(messages: &[ChatMessage]) -> Option<&ChatMessage> {
    messages.iter().rev().find(|m| m.direction == Direction::Out).filter(|m| !m.annotations.retracted && !m.id.is_empty())
}

impl Client {
    /// Puts what [`prepare`] found on the message `id` (the newest of that id).
    pub(crate) fn annotate(&mut self, conv: &str, direction: Direction, id: &str, fresh: &Annotations) {
        if let Some(m) = self.chats.message_mut(conv, Some(direction), id) {
            annotate(m, fresh);
        }
    }

    /// Sends `el` (a new message to `to` with id `id`, showing `shown`) and records it.
    /// While the connection is down it waits in the outbox, shown with a clock.
    fn send_new(&mut self, to: &str, id: String, el: Element, shown: &str, fresh: Annotations, now_ms: i64) -> Vec<Event> {
        let mut out = Vec::new();
        let Some(delivery) = self.send_or_queue(to, Some(&id), el, &mut out) else { return out };
        self.chats.outgoing(to, id.clone(), shown.to_owned(), now_ms, delivery);
        self.annotate(to, Direction::Out, &id, &fresh);
        out.push(Event::ChatChanged { with: to.to_owned(), incoming: false });
        out
    }

    /// A reference of ours, applied here as the peer will apply it. While the connection
    /// is down it waits in the outbox, the message `marked` (one of ours it changes) shown
    /// with a clock.
    fn send_reference(&mut self, conv: &str, el: Element, marked: Option<&str>, now_ms: i64) -> Vec<Event> {
        let mut out = Vec::new();
        let extras = Extras::parse(&el);
        let body = el.child_text("body", ns::CLIENT);
        let Some(delivery) = self.send_or_queue(conv, marked, el, &mut out) else { return out };
        let sender = self.account().bare().to_owned();
        Reference { direction: Direction::Out, sender, body, extras, at_ms: now_ms }.apply(&mut self.chats, conv);
        if let Some(id) = marked.filter(|_| delivery == Delivery::Queued) {
            self.chats.queued_again(conv, id);
        }
        out.push(Event::ChatChanged { with: conv.to_owned(), incoming: false });
        out
    }

    /// Our last message in `conv`, the one XEP-0308 lets us correct, unless retracted.
    pub fn correctable(&self, conv: &str) -> Option<&ChatMessage> {
        last_correctable(self.chats.messages(conv))
    }

    /// XEP-0308: replaces the text of our last message `id` with `text`.
    pub fn correct_last(&mut self, conv: &str, id: &str, text: &str, now_ms: i64) -> Vec<Event> {
        if text.trim().is_empty() || self.correctable(conv).is_none_or(|m| m.id != id) {
            return Vec::new();
        }
        let new_id = self.id();
        let el = correction(&new_id, conv, id, text);
        self.send_reference(conv, el, Some(id), now_ms)
    }

    /// XEP-0424: retracts our message `id`. Not while the connection is down: a
    /// retraction should not wait unseen behind the user's back (the message may be read
    /// meanwhile), so the user is told to do it again once online.
    pub fn retract(&mut self, conv: &str, id: &str, now_ms: i64) -> Vec<Event> {
        let ours = self.chats.message(conv, id).is_some_and(|m| m.direction == Direction::Out && !m.annotations.retracted);
        if !ours {
            return Vec::new();
        }
        if !self.is_online() {
            return vec![Event::Notice("A message can be retracted once the connection is back".into())];
        }
        let new_id = self.id();
        let el = retraction(&new_id, conv, id);
        self.send_reference(conv, el, None, now_ms)
    }

    /// XEP-0444: adds `emoji` to our reactions to the message `id`, or takes it away if
    /// it is there. The whole set is sent, as the XEP asks.
    pub fn toggle_reaction(&mut self, conv: &str, id: &str, emoji: &str, now_ms: i64) -> Vec<Event> {
        let me = self.account().bare().to_owned();
        let Some(m) = self.chats.message(conv, id).filter(|m| !m.annotations.retracted) else { return Vec::new() };
        let Some(ours) = toggled(&m.annotations, &me, emoji) else { return Vec::new() };
        let new_id = self.id();
        let el = reactions(&new_id, conv, id, &ours);
        self.send_reference(conv, el, None, now_ms)
    }

    /// XEP-0461: sends `text` as a reply to the message `reply_to`, with a quote of it for
    /// clients without replies (XEP-0428 fallback).
    pub fn send_reply(&mut self, conv: &str, reply_to: &str, text: &str, now_ms: i64) -> Vec<Event> {
        let Some(original) = self.chats.message(conv, reply_to) else { return self.send_message(conv, text, now_ms) };
        if text.trim().is_empty() {
            return Vec::new();
        }
        // The XEP names the author of the original by full JID where known; in a one-to-one
        // chat their bare JID, or ours.
        let author = if original.direction == Direction::Out { self.account().bare().to_owned() } else { conv.to_owned() };
        let (body, end) = reply_body(&original.body, text);
        let id = self.id();
        let el = as_reply(stanza::chat_message(&id, conv, &body), &author, reply_to, end);
        let fresh = Annotations { reply: Some(Reply { id: reply_to.to_owned(), fallback: None }), ..Annotations::default() };
        self.send_new(conv, id, el, text, fresh, now_ms)
    }

    /// XEP-0066: sends the link to an uploaded file as a message of its own.
    pub fn send_file(&mut self, conv: &str, url: &str, now_ms: i64) -> Vec<Event> {
        if !self.is_online() || !is_web_url(url) {
            return Vec::new();
        }
        let id = self.id();
        let el = with_oob(stanza::chat_message(&id, conv, url), url);
        let fresh = Annotations { oob: Some(url.to_owned()), ..Annotations::default() };
        self.send_new(conv, id, el, url, fresh, now_ms)
    }

    /// XEP-0333: the user is looking at `conv` (open, in a visible tab): tells the peer
    /// we displayed its last message that asked for markers, once. Like a receipt, a
    /// marker tells that we are online: only to those allowed to see our presence.
    pub fn mark_displayed(&mut self, conv: &str) -> Vec<Event> {
        let mut out = Vec::new();
        if !self.roster.get(conv).is_some_and(|i| i.subscription.they_see_us()) {
            return out;
        }
        let last = self.chats.messages(conv).iter().rev().find(|m| m.direction == Direction::In && m.annotations.markable && !m.id.is_empty());
        let Some(target) = last.map(|m| m.id.clone()) else { return out };
        if !self.is_online() || self.actions.displayed.get(conv) == Some(&target) {
            return out;
        }
        self.actions.displayed.insert(conv.to_owned(), target.clone());
        let id = self.id();
        self.send(displayed(&id, conv, &target), &mut out);
        out
    }
}

// ---- builders ----

fn message(id: &str, to: &str) -> Element {
    Element::new("message", ns::CLIENT).with_attr("type", "chat").with_attr("id", id).with_attr("to", to)
}

fn body(text: &str) -> Element {
    Element::new("body", ns::CLIENT).with_text(text)
}

/// XEP-0359: our id, repeated as the origin-id, which is what XEPs refer to.
fn origin_id(id: &str) -> Element {
    Element::new("origin-id", ns::SID).with_attr("id", id)
}

fn store_hint() -> Element {
    Element::new("store", ns::HINTS)
}

/// XEP-0308: `body` replaces our message `replaces`.
pub fn correction(id: &str, to: &str, replaces: &str, text: &str) -> Element {
    message(id, to)
        .with_child(body(text))
        .with_child(Element::new("replace", ns::CORRECT).with_attr("id", replaces))
        .with_child(origin_id(id))
        .with_child(Element::new("request", ns::RECEIPTS))
}

/// XEP-0424: retracts our message `retracts`, with a body for clients without it
/// (marked as a fallback, XEP-0428).
pub fn retraction(id: &str, to: &str, retracts: &str) -> Element {
    message(id, to)
        .with_child(Element::new("retract", ns::RETRACT).with_attr("id", retracts))
        .with_child(Element::new("fallback", ns::FALLBACK).with_attr("for", ns::RETRACT))
        .with_child(body(RETRACTION_FALLBACK))
        .with_child(origin_id(id))
        .with_child(store_hint())
}

/// XEP-0444: all our reactions to `target` (none: withdrawn), stored in the archive.
pub fn reactions(id: &str, to: &str, target: &str, emoji: &[String]) -> Element {
    let mut r = Element::new("reactions", ns::REACTIONS).with_attr("id", target);
    for e in emoji {
        r.push(Element::new("reaction", ns::REACTIONS).with_text(e.as_str()));
    }
    message(id, to).with_child(r).with_child(origin_id(id)).with_child(store_hint())
}

/// XEP-0333: we displayed the messages up to `target`. Stored, so that another device or
/// a reload knows too.
pub fn displayed(id: &str, to: &str, target: &str) -> Element {
    message(id, to).with_child(Element::new("displayed", ns::MARKERS).with_attr("id", target)).with_child(store_hint())
}

/// The body of a reply: a quote of `original` (XEP-0461's fallback), then `text`; and the
/// quote's end in characters.
pub fn reply_body(original: &str, text: &str) -> (String, usize) {
    let quoted: String = original.trim().lines().map(|l| format!("> {l}\n")).collect();
    let end = quoted.chars().count();
    (format!("{quoted}{text}"), end)
}

/// XEP-0461: marks `msg` (a chat message whose body starts with a [`reply_body`] quote
/// ending at `fallback_end`) as a reply to `to_jid`'s message `reply_to`.
pub fn as_reply(msg: Element, to_jid: &str, reply_to: &str, fallback_end: usize) -> Element {
    let fallback = Element::new("fallback", ns::FALLBACK)
        .with_attr("for", ns::REPLY)
        .with_child(Element::new("body", ns::FALLBACK).with_attr("start", "0").with_attr("end", fallback_end.to_string()));
    msg.with_child(Element::new("reply", ns::REPLY).with_attr("to", to_jid).with_attr("id", reply_to)).with_child(fallback)
}

/// XEP-0066: marks `msg` (whose body is `url`) as carrying the file at `url`.
pub fn with_oob(msg: Element, url: &str) -> Element {
    msg.with_child(Element::new("x", ns::OOB).with_child(Element::new("url", ns::OOB).with_text(url)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Delivery;
    use jabberwock_proto::{reader, Limits};

    fn parse(xml: &str) -> Element {
        reader::parse_element(xml.as_bytes(), &Limits::default()).unwrap()
    }

    fn extras(inner: &str) -> Extras {
        Extras::parse(&parse(&format!("<message xmlns='jabber:client' id='x1' type='chat'>{inner}</message>")))
    }

    fn reference(direction: Direction, sender: &str, inner: &str, at_ms: i64) -> Reference {
        let el = parse(&format!("<message xmlns='jabber:client' id='r' type='chat'>{inner}</message>"));
        Reference { direction, sender: sender.into(), body: el.child_text("body", ns::CLIENT), extras: Extras::parse(&el), at_ms }
    }

    fn chats() -> Chats {
        let mut c = Chats::new();
        c.incoming("bob@x", "b1".into(), "hello".into(), 10);
        c.outgoing("bob@x", "a1".into(), "helo bob".into(), 20, Delivery::Sent);
        c.outgoing("bob@x", "a2".into(), "second".into(), 30, Delivery::Sent);
        c
    }

    #[test]
    fn built_stanzas_parse_back() {
        let e = Extras::parse(&correction("c1", "bob@x", "a1", "fixed"));
        assert_eq!(e.replaces.as_deref(), Some("a1"));
        let r = retraction("c2", "bob@x", "a1");
        assert_eq!(Extras::parse(&r).retracts.as_deref(), Some("a1"));
        assert_eq!(r.child_text("body", ns::CLIENT).as_deref(), Some(RETRACTION_FALLBACK), "a body for older clients");
        assert_eq!(r.child("fallback", ns::FALLBACK).and_then(|f| f.attr("for")), Some(ns::RETRACT));
        assert!(r.child("store", ns::HINTS).is_some(), "archived, for other devices and reloads");
        let e = Extras::parse(&reactions("c3", "bob@x", "b1", &["👍".into(), "🎉".into()]));
        assert_eq!(e.reactions, Some(("b1".into(), vec!["🎉".into(), "👍".into()])));
        assert_eq!(Extras::parse(&reactions("c4", "bob@x", "b1", &[])).reactions, Some(("b1".into(), vec![])), "withdrawn");
        assert_eq!(Extras::parse(&displayed("c5", "bob@x", "b1")).displayed.as_deref(), Some("b1"));
        let (text, end) = reply_body("hello\nworld", "hi!");
        assert_eq!(text, "> hello\n> world\nhi!");
        let m = as_reply(message("c6", "bob@x").with_child(body(&text)), "bob@x", "b1", end);
        let e = Extras::parse(&m);
        assert_eq!((e.reply_to.as_deref(), e.reply_fallback), (Some("b1"), Some((0, 16))));
        let m = with_oob(message("c7", "bob@x").with_child(body("https://up.x/a/cat.png")), "https://up.x/a/cat.png");
        assert_eq!(Extras::parse(&m).oob.as_deref(), Some("https://up.x/a/cat.png"));
        assert!(!Extras::parse(&m).is_reference());
    }

    #[test]
    fn fallback_ranges_are_characters_and_checked() {
        let (rest, q) = split_fallback("> héllo 👋\nok", (0, 10)).unwrap();
        assert_eq!((rest.as_str(), q.as_str()), ("ok", "héllo 👋"));
        assert_eq!(split_fallback("short", (0, 6)), None, "past the end");
        assert_eq!(extras("<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='5' end='2'/></fallback>").reply_fallback, None);
        assert_eq!(extras("<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='a' end='2'/></fallback>").reply_fallback, None);
        assert_eq!(extras("<fallback xmlns='urn:xmpp:fallback:0' for='other'><body start='0' end='2'/></fallback>").reply_fallback, None);
    }

    #[test]
    fn oversized_or_empty_reactions_are_not_reactions() {
        let many: String = (0..=MAX_REACTIONS).map(|i| format!("<reaction>{i}</reaction>")).collect();
        assert_eq!(extras(&format!("<reactions xmlns='urn:xmpp:reactions:0' id='b1'>{many}</reactions>")).reactions, None);
        let long = "😀".repeat(MAX_REACTION_BYTES);
        assert_eq!(extras(&format!("<reactions xmlns='urn:xmpp:reactions:0' id='b1'><reaction>{long}</reaction></reactions>")).reactions, None);
        assert_eq!(extras("<reactions xmlns='urn:xmpp:reactions:0'><reaction>👍</reaction></reactions>").reactions, None, "no id");
        let e = extras("<reactions xmlns='urn:xmpp:reactions:0' id='b1'><reaction> </reaction><reaction>👍</reaction><reaction>👍</reaction></reactions>");
        assert_eq!(e.reactions, Some(("b1".into(), vec!["👍".into()])), "blank and repeated emoji dropped");
    }

    #[test]
    fn corrections_and_retractions_only_touch_the_senders_own_messages() {
        let mut c = chats();
        // The peer "correcting" or retracting our message: nothing changes.
        let r = reference(Direction::In, "bob@x", "<body>pwned</body><replace xmlns='urn:xmpp:message-correct:0' id='a1'/>", 40);
        assert_eq!(r.apply(&mut c, "bob@x"), Outcome::Unmatched);
        let r = reference(Direction::In, "bob@x", "<retract xmlns='urn:xmpp:message-retract:1' id='a1'/>", 40);
        assert_eq!(r.apply(&mut c, "bob@x"), Outcome::Unmatched);
        assert_eq!(c.messages("bob@x")[1].body, "helo bob");
        // Our own correction (from the archive or another device).
        let r = reference(Direction::Out, "me@x", "<body>hello bob</body><replace xmlns='urn:xmpp:message-correct:0' id='a1'/>", 40);
        assert_eq!(r.apply(&mut c, "bob@x"), Outcome::Applied);
        // An older correction arriving later does not undo the newer one.
        let old = reference(Direction::Out, "me@x", "<body>hallo bob</body><replace xmlns='urn:xmpp:message-correct:0' id='a1'/>", 35);
        assert_eq!(old.apply(&mut c, "bob@x"), Outcome::Applied);
        let m = &c.messages("bob@x")[1];
        assert_eq!((m.body.as_str(), m.edited), ("hello bob", true));
        // A retraction of an unknown id changes nothing.
        let r = reference(Direction::Out, "me@x", "<retract xmlns='urn:xmpp:message-retract:1' id='nope'/>", 50);
        assert_eq!(r.apply(&mut c, "bob@x"), Outcome::Unmatched);
        let r = reference(Direction::In, "bob@x", "<retract xmlns='urn:xmpp:message-retract:1' id='b1'/>", 50);
        assert_eq!(r.apply(&mut c, "bob@x"), Outcome::Applied);
        let m = &c.messages("bob@x")[0];
        assert!(m.annotations.retracted && m.body.is_empty());
        // Nothing un-retracts it, not even a correction sent before the retraction.
        let r = reference(Direction::In, "bob@x", "<body>back</body><replace xmlns='urn:xmpp:message-correct:0' id='b1'/>", 45);
        assert_eq!(r.apply(&mut c, "bob@x"), Outcome::Applied);
        assert!(c.messages("bob@x")[0].body.is_empty());
        // Another conversation's message is never matched.
        let r = reference(Direction::In, "carol@x", "<retract xmlns='urn:xmpp:message-retract:1' id='b1'/>", 50);
        assert_eq!(r.apply(&mut c, "carol@x"), Outcome::Unmatched);
    }

    #[test]
    fn reactions_keep_each_senders_latest_set() {
        let mut c = chats();
        let react = |who: &str, dir, emoji: &str, at| {
            reference(dir, who, &format!("<reactions xmlns='urn:xmpp:reactions:0' id='a1'>{emoji}</reactions>"), at)
        };
        let before = version(&c.messages("bob@x")[1]);
        assert_eq!(react("bob@x", Direction::In, "<reaction>👍</reaction><reaction>😂</reaction>", 40).apply(&mut c, "bob@x"), Outcome::Applied);
        assert_ne!(version(&c.messages("bob@x")[1]), before, "what the view shows changed");
        assert_eq!(version(&c.messages("bob@x")[1]), version(&c.messages("bob@x")[1].clone()));
        assert_eq!(react("me@x", Direction::Out, "<reaction>👍</reaction>", 41).apply(&mut c, "bob@x"), Outcome::Applied);
        // Older news, arriving late from the archive, loses.
        react("bob@x", Direction::In, "", 39).apply(&mut c, "bob@x");
        let counts = reaction_counts(&c.messages("bob@x")[1], "me@x");
        assert_eq!(counts[0], ReactionCount { emoji: "👍".into(), by: vec!["bob@x".into(), "me@x".into()], ours: true });
        assert_eq!(counts[1], ReactionCount { emoji: "😂".into(), by: vec!["bob@x".into()], ours: false });
        assert_eq!(picker_choices(&c.messages("bob@x")[1]).len(), COMMON_REACTIONS.len(), "😂 and 👍 are common ones");
        // Withdrawn.
        react("bob@x", Direction::In, "", 50).apply(&mut c, "bob@x");
        assert_eq!(reaction_counts(&c.messages("bob@x")[1], "me@x").len(), 1);
        // To an unknown id: nothing, and no error.
        let r = reference(Direction::In, "bob@x", "<reactions xmlns='urn:xmpp:reactions:0' id='zzz'><reaction>👍</reaction></reactions>", 60);
        assert_eq!(r.apply(&mut c, "bob@x"), Outcome::Unmatched);
        let mut odd = c.messages("bob@x")[0].clone();
        odd.annotations.reactions.insert("bob@x".into(), Reaction { emoji: vec!["🦀".into()], at_ms: 1 });
        assert_eq!(picker_choices(&odd).last().map(String::as_str), Some("🦀"), "what a message already has is offered");
    }

    #[test]
    fn markers_and_receipts_mark_our_messages() {
        let mut c = chats();
        let r = reference(Direction::In, "bob@x", "<displayed xmlns='urn:xmpp:chat-markers:0' id='a1'/>", 40);
        assert_eq!(r.apply(&mut c, "bob@x"), Outcome::Applied);
        let seen: Vec<_> = c.messages("bob@x").iter().map(|m| m.annotations.seen).collect();
        assert_eq!(seen, [false, true, false], "ours up to the one marked");
        let r = reference(Direction::In, "bob@x", "<displayed xmlns='urn:xmpp:chat-markers:0' id='b1'/>", 40);
        assert_eq!(r.apply(&mut c, "bob@x"), Outcome::Unmatched, "a marker for their own message is not about ours");
        let r = reference(Direction::In, "bob@x", "<received xmlns='urn:xmpp:receipts' id='a2'/>", 40);
        assert_eq!(r.apply(&mut c, "bob@x"), Outcome::Applied);
        assert_eq!(c.messages("bob@x")[2].delivery, Delivery::Delivered);
        // Our own marker (from another device, or the archive) is about their message.
        let r = reference(Direction::Out, "me@x", "<displayed xmlns='urn:xmpp:chat-markers:0' id='b1'/>", 40);
        assert_eq!(r.apply(&mut c, "bob@x"), Outcome::Applied);
    }

    #[test]
    fn replies_and_files_annotate_the_message() {
        let mut c = chats();
        let reply = "<reply xmlns='urn:xmpp:reply:0' to='me@x/web' id='a1'/><markable xmlns='urn:xmpp:chat-markers:0'/>\
                     <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='11'/></fallback>";
        let (body, fresh) = prepare("> helo bob\nwhat?".into(), &extras(reply));
        assert_eq!(body, "what?", "the fallback quote leaves the body");
        c.incoming("bob@x", "b2".into(), body, 40);
        annotate(c.message_mut("bob@x", Some(Direction::In), "b2").unwrap(), &fresh);
        let m = c.message("bob@x", "b2").unwrap();
        assert!(m.annotations.markable);
        let reply = m.annotations.reply.clone().unwrap();
        assert_eq!(reply_quote(c.messages("bob@x"), &reply).as_deref(), Some("helo bob"), "the original, when known");
        // A reply to an unknown id keeps its fallback as the quote.
        let (body, fresh) = prepare("> from long ago\nindeed".into(), &extras(&reply_to_unknown()));
        assert_eq!(body, "indeed");
        assert_eq!(reply_quote(c.messages("bob@x"), fresh.reply.as_ref().unwrap()).as_deref(), Some("from long ago"));
        assert_eq!(reply_quote(c.messages("bob@x"), &Reply { id: "gone".into(), fallback: None }), None);
        // A reply without a fallback keeps its whole body.
        let (body, fresh) = prepare("just text".into(), &extras("<reply xmlns='urn:xmpp:reply:0' id='a1'/>"));
        assert_eq!((body.as_str(), fresh.reply.map(|r| r.id)), ("just text", Some("a1".to_owned())));

        let (body, fresh) = prepare("https://up.x/cat.png".into(), &extras("<x xmlns='jabber:x:oob'><url>https://up.x/cat.png</url></x>"));
        assert_eq!((body.as_str(), fresh.oob.as_deref()), ("https://up.x/cat.png", Some("https://up.x/cat.png")));
        // A URL that is not the body, or not a web URL, is not an attachment.
        for (body, url) in [("look", "https://up.x/cat.png"), ("javascript:alert(1)", "javascript:alert(1)")] {
            let (_, fresh) = prepare(body.into(), &extras(&format!("<x xmlns='jabber:x:oob'><url>{url}</url></x>")));
            assert_eq!(fresh.oob, None, "{body}");
        }
        assert_eq!(quote(&"x".repeat(QUOTE_CHARS + 5)).chars().count(), QUOTE_CHARS + 1);
    }

    #[test]
    fn file_names_and_images() {
        assert_eq!(file_name("https://up.x/a/b/holiday%20photo.JPG?sig=1"), "holiday photo.JPG");
        assert_eq!(file_name("https://up.x/a/"), "file");
        assert_eq!(file_name("https://up.x/a/100%"), "100%", "a stray percent stays");
        assert_eq!(file_name("https://up.x/a/%C3%A9t%C3%A9.txt"), "été.txt");
        assert!(is_image("https://up.x/a/holiday%20photo.JPG?sig=1"));
        assert!(!is_image("https://up.x/a/report.pdf"));
        assert!(!is_image("https://up.x/a/png"));
        let mut m = chats().messages("bob@x")[0].clone();
        m.body = "two\nlines".into();
        assert_eq!(summary(&m), "two lines");
        m.annotations.oob = Some("https://up.x/a/cat.png".into());
        assert_eq!(summary(&m), "📎 cat.png");
        m.annotations.retracted = true;
        assert_eq!(summary(&m), "message retracted");
    }

    fn reply_to_unknown() -> String {
        "<reply xmlns='urn:xmpp:reply:0' id='gone'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='16'/></fallback>".into()
    }

    #[test]
    fn orphans_wait_for_their_message_and_are_bounded() {
        let mut c = Chats::new();
        let mut o = Orphans::default();
        let r = reference(Direction::In, "bob@x", "<reactions xmlns='urn:xmpp:reactions:0' id='old'><reaction>👍</reaction></reactions>", 90);
        assert_eq!(r.apply(&mut c, "bob@x"), Outcome::Unmatched);
        o.keep("bob@x", r);
        o.adopt(&mut c, "bob@x", "old");
        assert_eq!(o.len(), 1, "still not loaded");
        c.archived("bob@x", Direction::Out, Some("old".into()), "from last year".into(), 5);
        o.adopt(&mut c, "bob@x", "old");
        assert!(o.is_empty());
        assert_eq!(reaction_counts(&c.messages("bob@x")[0], "me@x")[0].by, ["bob@x"]);
        for i in 0..MAX_ORPHANS + 10 {
            o.keep("bob@x", reference(Direction::In, "bob@x", &format!("<retract xmlns='urn:xmpp:message-retract:1' id='{i}'/>"), 1));
        }
        assert_eq!(o.len(), MAX_ORPHANS);
    }
}

/// The actions through the whole client: stanzas in, stanzas out, and the archive.
#[cfg(test)]
mod client_tests {
    use super::*;
    use crate::chat::Delivery;
    use crate::client::tests::{ask_history, online, sent, stanza};

    const BOB: &str = "bob@localhost";

    fn bob() -> Client {
        online("<item jid='bob@localhost' subscription='both'/>")
    }

    fn from_bob(c: &mut Client, id: &str, inner: &str) -> Vec<Event> {
        stanza(c, &format!("<message xmlns='jabber:client' from='bob@localhost/a' to='user@localhost/web' type='chat' id='{id}'>{inner}</message>"))
    }

    fn changed(ev: &[Event]) -> bool {
        ev.iter().any(|e| matches!(e, Event::ChatChanged { with, .. } if with == BOB))
    }

    fn shown(c: &Client) -> Vec<(String, bool, bool)> {
        c.chats.messages(BOB).iter().map(|m| (m.body.clone(), m.edited, m.annotations.retracted)).collect()
    }

    #[test]
    fn received_actions_change_the_message_in_place() {
        let mut c = bob();
        from_bob(&mut c, "b1", "<body>helo</body><markable xmlns='urn:xmpp:chat-markers:0'/>");
        let ev = from_bob(&mut c, "b2", "<body>hello</body><replace xmlns='urn:xmpp:message-correct:0' id='b1'/>");
        assert!(changed(&ev));
        assert_eq!(shown(&c), [("hello".to_owned(), true, false)]);
        let ev = from_bob(&mut c, "b3", "<reactions xmlns='urn:xmpp:reactions:0' id='b1'><reaction>🎉</reaction></reactions>");
        assert!(changed(&ev));
        assert_eq!(reaction_counts(&c.chats.messages(BOB)[0], "user@localhost")[0].by, [BOB]);
        // A reaction to an id nobody sent: nothing changes and nothing is answered.
        let ev = from_bob(&mut c, "b4", "<reactions xmlns='urn:xmpp:reactions:0' id='nope'><reaction>🎉</reaction></reactions>");
        assert!(ev.is_empty(), "{ev:?}");
        let ev = from_bob(&mut c, "b5", &format!("<retract xmlns='urn:xmpp:message-retract:1' id='b1'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/><body>{RETRACTION_FALLBACK}</body>"));
        assert!(changed(&ev));
        assert_eq!(shown(&c), [(String::new(), true, true)], "the fallback body is not shown as a message");
        // A retraction of an unknown id is dropped, fallback and all.
        let ev = from_bob(&mut c, "b6", &format!("<retract xmlns='urn:xmpp:message-retract:1' id='zzz'/><body>{RETRACTION_FALLBACK}</body>"));
        assert!(ev.is_empty());
        assert_eq!(c.chats.messages(BOB).len(), 1);
    }

    #[test]
    fn nobody_corrects_or_retracts_our_messages_but_us() {
        let mut c = bob();
        let id = sent(&c.send_message(BOB, "mine", 1))[0].attr("id").unwrap().to_owned();
        // Bob "correcting" our message: shown as his own message, ours unchanged.
        from_bob(&mut c, "b1", &format!("<body>I said yes</body><replace xmlns='urn:xmpp:message-correct:0' id='{id}'/>"));
        assert_eq!(shown(&c), [("mine".to_owned(), false, false), ("I said yes".to_owned(), false, false)]);
        from_bob(&mut c, "b2", &format!("<retract xmlns='urn:xmpp:message-retract:1' id='{id}'/><body>x</body>"));
        assert!(!c.chats.messages(BOB)[0].annotations.retracted);
        // A carbon of a correction from someone else than our account is not believed.
        let forged = format!(
            "<message xmlns='jabber:client' from='bob@localhost' to='user@localhost/web'><sent xmlns='urn:xmpp:carbons:2'>\
             <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='user@localhost/x' to='bob@localhost' type='chat' id='f'>\
             <body>forged</body><replace xmlns='urn:xmpp:message-correct:0' id='{id}'/></message></forwarded></sent></message>"
        );
        stanza(&mut c, &forged);
        assert_eq!(c.chats.messages(BOB)[0].body, "mine");
        // Our own other device may.
        stanza(&mut c, &forged.replace("from='bob@localhost' to=", "from='user@localhost' to="));
        assert_eq!((c.chats.messages(BOB)[0].body.as_str(), c.chats.messages(BOB)[0].edited), ("forged", true));
    }

    #[test]
    fn our_actions_go_out_as_the_xeps_say() {
        let mut c = bob();
        let out = sent(&c.send_message(BOB, "helo", 1));
        let id = out[0].attr("id").unwrap().to_owned();
        assert_eq!(out[0].child("origin-id", ns::SID).and_then(|o| o.attr("id")), Some(id.as_str()), "origin-id = id");
        assert!(out[0].child("markable", ns::MARKERS).is_some());
        // Correct the last message.
        assert_eq!(c.correctable(BOB).map(|m| m.id.clone()), Some(id.clone()));
        let out = sent(&c.correct_last(BOB, &id, "hello", 2));
        assert_eq!(out[0].child("replace", ns::CORRECT).and_then(|r| r.attr("id")), Some(id.as_str()));
        assert_eq!(shown(&c), [("hello".to_owned(), true, false)]);
        // Only the last one.
        c.send_message(BOB, "second", 3);
        assert!(c.correct_last(BOB, &id, "again", 4).is_empty());
        // React and take it back.
        from_bob(&mut c, "b1", "<body>news</body><markable xmlns='urn:xmpp:chat-markers:0'/>");
        let out = sent(&c.toggle_reaction(BOB, "b1", "👍", 5));
        let r = out[0].child("reactions", ns::REACTIONS).unwrap();
        assert_eq!((r.attr("id"), r.child_text("reaction", ns::REACTIONS).as_deref()), (Some("b1"), Some("👍")));
        assert!(reaction_counts(c.chats.message(BOB, "b1").unwrap(), "user@localhost")[0].ours);
        let out = sent(&c.toggle_reaction(BOB, "b1", "👍", 6));
        assert_eq!(out[0].child("reactions", ns::REACTIONS).unwrap().children().count(), 0, "the whole (now empty) set");
        assert!(c.chats.message(BOB, "b1").unwrap().annotations.reactions.is_empty());
        assert!(c.toggle_reaction(BOB, "unknown", "👍", 7).is_empty());
        // Reply with a quote.
        let out = sent(&c.send_reply(BOB, "b1", "great", 8));
        assert_eq!(out[0].child_text("body", ns::CLIENT).as_deref(), Some("> news\ngreat"));
        let e = Extras::parse(&out[0]);
        assert_eq!((e.reply_to.as_deref(), e.reply_fallback), (Some("b1"), Some((0, 7))));
        assert_eq!(out[0].child("reply", ns::REPLY).and_then(|r| r.attr("to")), Some(BOB));
        let mine = c.chats.messages(BOB).last().unwrap().clone();
        assert_eq!(mine.body, "great", "shown without the quote");
        assert_eq!(reply_quote(c.chats.messages(BOB), mine.annotations.reply.as_ref().unwrap()).as_deref(), Some("news"));
        // Displayed: once per message.
        let out = sent(&c.mark_displayed(BOB));
        assert_eq!(out[0].child("displayed", ns::MARKERS).and_then(|d| d.attr("id")), Some("b1"));
        assert!(c.mark_displayed(BOB).is_empty());
        // Not to strangers: a marker tells that we are online.
        let mut stranger = online("");
        stranger.receive(crate::Input::Element(crate::connection::tests::parse("<message xmlns='jabber:client' from='eve@localhost/x' type='chat' id='e1'><body>hi</body><markable xmlns='urn:xmpp:chat-markers:0'/></message>")), 1);
        assert!(stranger.mark_displayed("eve@localhost").is_empty());
        // Retract ours, not theirs.
        assert!(c.retract(BOB, "b1", 9).is_empty());
        let out = sent(&c.retract(BOB, &mine.id, 9));
        assert_eq!(out[0].child("retract", ns::RETRACT).and_then(|r| r.attr("id")), Some(mine.id.as_str()));
        assert!(c.chats.message(BOB, &mine.id).unwrap().annotations.retracted);
        assert!(c.correctable(BOB).is_none(), "a retracted last message is not corrected");
        // A file.
        let out = sent(&c.send_file(BOB, "https://upload.localhost/a/cat.png", 10));
        assert_eq!(out[0].child("x", ns::OOB).and_then(|x| x.child_text("url", ns::OOB)).as_deref(), Some("https://upload.localhost/a/cat.png"));
        assert_eq!(c.chats.messages(BOB).last().unwrap().annotations.oob.as_deref(), Some("https://upload.localhost/a/cat.png"));
        assert!(c.send_file(BOB, "javascript:alert(1)", 11).is_empty());
    }

    #[test]
    fn markers_and_receipts_from_the_peer() {
        let mut c = bob();
        let a = sent(&c.send_message(BOB, "one", 1))[0].attr("id").unwrap().to_owned();
        let b = sent(&c.send_message(BOB, "two", 2))[0].attr("id").unwrap().to_owned();
        from_bob(&mut c, "r1", &format!("<received xmlns='urn:xmpp:receipts' id='{b}'/>"));
        from_bob(&mut c, "d1", &format!("<displayed xmlns='urn:xmpp:chat-markers:0' id='{a}'/>"));
        let ms = c.chats.messages(BOB);
        assert_eq!((ms[0].annotations.seen, ms[1].annotations.seen), (true, false));
        assert_eq!((ms[0].delivery, ms[1].delivery), (Delivery::Sent, Delivery::Delivered));
        // A receipt we send is stored in the archive (XEP-0334), for reloads.
        let out = sent(&from_bob(&mut c, "b1", "<body>hi</body><request xmlns='urn:xmpp:receipts'/>"));
        assert!(out[0].child("store", ns::HINTS).is_some());
    }

    /// An archived message of the conversation with bob answering `qid`.
    fn archived(qid: &str, aid: &str, from: &str, to: &str, id: Option<&str>, stamp: &str, inner: &str) -> String {
        let id = id.map(|i| format!("id='{i}'")).unwrap_or_default();
        format!(
            "<message xmlns='jabber:client' from='user@localhost' to='user@localhost/web'><result xmlns='urn:xmpp:mam:2' queryid='{qid}' id='{aid}'>\
             <forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='1970-01-01T00:00:{stamp}Z'/>\
             <message xmlns='jabber:client' from='{from}' to='{to}' type='chat' {id}>{inner}</message></forwarded></result></message>"
        )
    }

    fn fin(c: &mut Client, id: &str, first: &str, complete: bool) {
        stanza(c, &format!("<iq xmlns='jabber:client' type='result' id='{id}'><fin xmlns='urn:xmpp:mam:2' complete='{complete}'><set xmlns='http://jabber.org/protocol/rsm'><first>{first}</first></set></fin></iq>"));
    }

    #[test]
    fn history_applies_actions_in_any_order_without_duplicates() {
        let mut c = bob();
        // Live: bob's message, corrected; ours, delivered.
        from_bob(&mut c, "b9", "<body>lates</body>");
        from_bob(&mut c, "b10", "<body>latest</body><replace xmlns='urn:xmpp:message-correct:0' id='b9'/>");
        let (iq, q) = ask_history(&mut c, BOB);
        let (me, him) = ("user@localhost/web", "bob@localhost/a");
        // The newest page: a reaction and a retraction whose messages are older, a reply to
        // an unknown id, our receipt and marker, the live messages again, and one without id.
        for xml in [
            archived(&q, "A5", him, me, Some("b5"), "05", "<reactions xmlns='urn:xmpp:reactions:0' id='a1'><reaction>👍</reaction></reactions>"),
            archived(&q, "A6", me, BOB, Some("a6"), "06", "<retract xmlns='urn:xmpp:message-retract:1' id='a2'/><body>fallback</body>"),
            archived(&q, "A7", him, me, Some("b7"), "07", "<received xmlns='urn:xmpp:receipts' id='a1'/>"),
            archived(&q, "A8", him, me, Some("b8"), "08", "<displayed xmlns='urn:xmpp:chat-markers:0' id='a2'/>"),
            archived(&q, "A9", him, me, Some("b9"), "09", "<body>lates</body>"),
            archived(&q, "A10", him, me, Some("b10"), "10", "<body>latest</body><replace xmlns='urn:xmpp:message-correct:0' id='b9'/>"),
            archived(&q, "A11", him, me, Some("b11"), "11", "<body>&gt; lost\nyes</body><reply xmlns='urn:xmpp:reply:0' id='gone'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='7'/></fallback>"),
            archived(&q, "A12", him, me, None, "12", "<body>no id</body>"),
        ] {
            stanza(&mut c, &xml);
        }
        fin(&mut c, &iq, "A5", false);
        assert_eq!(c.actions.orphans.len(), 4, "reaction, retraction, receipt and marker wait for their messages");
        let bodies: Vec<_> = c.chats.messages(BOB).iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["latest", "yes", "no id"], "the corrected message once, no reference shown");
        let reply = c.chats.message(BOB, "b11").unwrap().annotations.reply.clone().unwrap();
        assert_eq!(reply_quote(c.chats.messages(BOB), &reply).as_deref(), Some("lost"), "the fallback quote, original unknown");
        // The older page brings the messages they were for.
        let (iq, q) = ask_history(&mut c, BOB);
        stanza(&mut c, &archived(&q, "A1", me, BOB, Some("a1"), "01", "<body>first</body>"));
        stanza(&mut c, &archived(&q, "A2", me, BOB, Some("a2"), "02", "<body>oops</body>"));
        stanza(&mut c, &archived(&q, "A3", him, me, Some("b3"), "03", "<body>a reaction to nothing</body>"));
        fin(&mut c, &iq, "A1", true);
        let first = c.chats.message(BOB, "a1").unwrap();
        assert_eq!(first.delivery, Delivery::Delivered, "the receipt survives a reload");
        assert_eq!(reaction_counts(first, "user@localhost")[0].by, [BOB]);
        assert!(first.annotations.seen);
        let oops = c.chats.message(BOB, "a2").unwrap();
        assert!(oops.annotations.retracted && oops.body.is_empty());
        assert!(c.actions.orphans.is_empty());
        assert_eq!(c.chats.messages(BOB).len(), 6);
    }
}
