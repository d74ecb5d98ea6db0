//! Conversations: the messages exchanged with each contact, their delivery state, and the
//! unread counts.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::actions::Annotations;
use crate::stanza::ChatState;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    In,
    Out,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Written while offline: waits in the outbox for the connection to come back.
    Queued,
    /// Written to the connection.
    Sent,
    /// The recipient's client confirmed it (XEP-0184).
    Delivered,
    /// The server or the recipient answered with an error.
    Failed,
    /// Received by us.
    Received,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The stanza id (ours for outgoing; the sender's, or a local one, for incoming).
    pub id: String,
    pub direction: Direction,
    pub body: String,
    /// Milliseconds since the Unix epoch: when sent or received, or the delay stamp.
    pub timestamp_ms: i64,
    pub delivery: Delivery,
    pub error: Option<String>,
    /// Its body was replaced by a correction (XEP-0308).
    pub edited: bool,
    /// Retraction, reactions, markers, reply and file link ([`crate::actions`]).
    pub annotations: Annotations,
}

#[derive(Clone, Debug, Default)]
pub struct Conversation {
    pub messages: Vec<ChatMessage>,
    pub unread: u32,
    pub history: History,
}

/// How much of the server's archive (XEP-0313) this conversation has loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct History {
    /// A query is under way.
    pub loading: bool,
    /// At least the newest page was asked for.
    pub started: bool,
    /// Nothing older remains.
    pub complete: bool,
    /// The archive id of the oldest message loaded, to page further back.
    pub oldest: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Chats {
    conversations: BTreeMap<String, Conversation>,
    /// The conversations on screen in a shown tab (see [`crate::tabs::TabViews`]), whose
    /// new messages are read at once; one open only in a hidden tab collects unread.
    reading: BTreeSet<String>,
    /// What each peer last said they were doing (XEP-0085).
    peer_states: BTreeMap<String, ChatState>,
    /// Peers that have sent chat states, so that ours are worth sending.
    supports_states: BTreeSet<String>,
    /// Our last state sent per peer.
    our_states: BTreeMap<String, ChatState>,
}

impl Chats {
    pub fn new() -> Self {
        Chats::default()
    }

    pub fn get(&self, bare: &str) -> Option<&Conversation> {
        self.conversations.get(bare)
    }

    pub fn messages(&self, bare: &str) -> &[ChatMessage] {
        self.conversations.get(bare).map_or(&[], |c| c.messages.as_slice())
    }

    /// Everyone we have a conversation with, in JID order.
    pub fn jids(&self) -> impl Iterator<Item = &str> {
        self.conversations.keys().map(String::as_str)
    }

    /// Whether `bare`'s conversation is on screen in a shown tab.
    pub fn is_reading(&self, bare: &str) -> bool {
        self.reading.contains(bare)
    }

    /// The conversations now on screen in a shown tab: their messages are read.
    pub fn set_reading(&mut self, reading: BTreeSet<String>) {
        for bare in &reading {
            if let Some(c) = self.conversations.get_mut(bare) {
                c.unread = 0;
            }
        }
        self.reading = reading;
    }

    /// A peer's chat state arrived; returns whether what we show changed.
    pub fn peer_state(&mut self, bare: &str, state: ChatState) -> bool {
        self.supports_states.insert(bare.to_owned());
        self.peer_states.insert(bare.to_owned(), state) != Some(state)
    }

    /// The peer is typing right now.
    pub fn is_typing(&self, bare: &str) -> bool {
        self.peer_states.get(bare) == Some(&ChatState::Composing)
    }

    /// Whether to tell `bare` we are now in `state`: only to peers that use chat states,
    /// and only on a change. Records the state when it is to be sent.
    pub fn our_state(&mut self, bare: &str, state: ChatState) -> bool {
        if !self.supports_states.contains(bare) || self.our_states.get(bare) == Some(&state) {
            return false;
        }
        self.our_states.insert(bare.to_owned(), state);
        true
    }

    pub fn our_state_is(&self, bare: &str, state: ChatState) -> bool {
        self.our_states.get(bare) == Some(&state)
    }

    /// Records a received message; returns whether it counted as unread.
    pub fn incoming(&mut self, bare: &str, id: String, body: String, timestamp_ms: i64) -> bool {
        let reading = self.is_reading(bare);
        let conv = self.conversations.entry(bare.to_owned()).or_default();
        // A message delivered twice (after a reconnect, say) is shown once.
        if conv.messages.iter().any(|m| m.direction == Direction::In && m.id == id && m.body == body) {
            return false;
        }
        let msg = ChatMessage { id, direction: Direction::In, body, timestamp_ms, delivery: Delivery::Received, error: None, edited: false, annotations: Annotations::default() };
        // A message ends their typing, whether or not it says so.
        if self.peer_states.get(bare) == Some(&ChatState::Composing) {
            self.peer_states.insert(bare.to_owned(), ChatState::Active);
        }
        // Offline messages can arrive with older stamps than what is shown: keep order.
        let at = conv.messages.partition_point(|m| m.timestamp_ms <= timestamp_ms);
        conv.messages.insert(at, msg);
        if !reading {
            conv.unread += 1;
        }
        !reading
    }

    /// A message we wrote: `Sent`, or `Queued` while offline.
    pub fn outgoing(&mut self, bare: &str, id: String, body: String, timestamp_ms: i64, delivery: Delivery) {
        // The message carries <active/>.
        self.our_states.insert(bare.to_owned(), ChatState::Active);
        let conv = self.conversations.entry(bare.to_owned()).or_default();
        conv.messages.push(ChatMessage {
            id,
            direction: Direction::Out,
            body,
            timestamp_ms,
            delivery,
            error: None,
            edited: false,
            annotations: Annotations::default(),
        });
    }

    /// A queued message of ours left the outbox.
    pub fn dequeued(&mut self, bare: &str, id: &str) {
        if let Some(m) = self.ours_mut(bare, id).filter(|m| m.delivery == Delivery::Queued) {
            m.delivery = Delivery::Sent;
        }
    }

    /// A change to our message `id` (a correction) waits in the outbox: it shows the clock
    /// again until that goes.
    pub fn queued_again(&mut self, bare: &str, id: &str) {
        if let Some(m) = self.ours_mut(bare, id) {
            m.delivery = Delivery::Queued;
        }
    }

    fn ours_mut(&mut self, bare: &str, id: &str) -> Option<&mut ChatMessage> {
        let conv = self.conversations.get_mut(bare)?;
        conv.messages.iter_mut().rev().find(|m| m.direction == Direction::Out && m.id == id)
    }

    /// A message we sent from another device (a XEP-0280 carbon): shown as ours, once.
    /// Writing from elsewhere means the conversation was read there. Returns whether it
    /// was new.
    pub fn sent_elsewhere(&mut self, bare: &str, id: String, body: String, timestamp_ms: i64) -> bool {
        let conv = self.conversations.entry(bare.to_owned()).or_default();
        conv.unread = 0;
        if conv.messages.iter().any(|m| m.direction == Direction::Out && m.id == id && m.body == body) {
            return false;
        }
        let msg = ChatMessage { id, direction: Direction::Out, body, timestamp_ms, delivery: Delivery::Sent, error: None, edited: false, annotations: Annotations::default() };
        let at = conv.messages.partition_point(|m| m.timestamp_ms <= timestamp_ms);
        conv.messages.insert(at, msg);
        true
    }

    /// A correction (XEP-0308) of the message `replaces` that went `direction` in the
    /// conversation with `bare`: its body changes in place. Only a message of the same
    /// side is corrected (nobody edits the other's words); returns whether one was.
    pub fn correct(&mut self, bare: &str, direction: Direction, replaces: &str, body: String) -> bool {
        let Some(conv) = self.conversations.get_mut(bare) else { return false };
        match conv.messages.iter_mut().rev().find(|m| m.direction == direction && m.id == replaces) {
            Some(m) => {
                m.body = body;
                m.edited = true;
                true
            }
            None => false,
        }
    }

    /// The message `id` in the conversation with `bare` (that went `direction`, when
    /// given), the newest first.
    pub fn message_mut(&mut self, bare: &str, direction: Option<Direction>, id: &str) -> Option<&mut ChatMessage> {
        let conv = self.conversations.get_mut(bare)?;
        conv.messages.iter_mut().rev().find(|m| m.id == id && direction.is_none_or(|d| m.direction == d))
    }

    pub fn message(&self, bare: &str, id: &str) -> Option<&ChatMessage> {
        self.conversations.get(bare)?.messages.iter().rev().find(|m| m.id == id)
    }

    /// XEP-0333: `bare` displayed our message `id`, and so every one of ours before it.
    /// Returns whether `id` is one of ours.
    pub fn seen_up_to(&mut self, bare: &str, id: &str) -> bool {
        let Some(conv) = self.conversations.get_mut(bare) else { return false };
        let Some(at) = conv.messages.iter().rposition(|m| m.direction == Direction::Out && m.id == id) else { return false };
        for m in conv.messages[..=at].iter_mut().filter(|m| m.direction == Direction::Out) {
            m.annotations.seen = true;
        }
        true
    }

    /// A delivery receipt from `bare` for our message `id`; returns whether it changed
    /// anything (a failed message stays failed).
    pub fn delivered(&mut self, bare: &str, id: &str) -> bool {
        let Some(conv) = self.conversations.get_mut(bare) else { return false };
        match conv.messages.iter_mut().rev().find(|m| m.direction == Direction::Out && m.id == id) {
            Some(m) if m.delivery == Delivery::Sent => {
                m.delivery = Delivery::Delivered;
                true
            }
            _ => false,
        }
    }

    /// An archived message: shown in its place, never counted unread, and not shown twice
    /// when it is also one we saw live.
    pub fn archived(&mut self, bare: &str, direction: Direction, id: Option<String>, body: String, timestamp_ms: i64) {
        let conv = self.conversations.entry(bare.to_owned()).or_default();
        let duplicate = conv.messages.iter().any(|m| {
            m.direction == direction
                && match &id {
                    // What we show may differ from the archived text: it was corrected since.
                    Some(id) => &m.id == id && (m.body == body || m.edited || m.annotations.retracted),
                    None => m.body == body && m.timestamp_ms.abs_diff(timestamp_ms) < 2000,
                }
        });
        if duplicate {
            return;
        }
        let delivery = if direction == Direction::Out { Delivery::Sent } else { Delivery::Received };
        let msg = ChatMessage { id: id.unwrap_or_default(), direction, body, timestamp_ms, delivery, error: None, edited: false, annotations: Annotations::default() };
        let at = conv.messages.partition_point(|m| m.timestamp_ms <= timestamp_ms);
        conv.messages.insert(at, msg);
    }

    /// Messages kept from an earlier page ([`crate::kept`]) for a conversation that has none
    /// yet. They count as read, and the archive's copies of them are not shown again
    /// ([`Chats::archived`] knows them by id).
    pub fn restore_kept(&mut self, bare: &str, mut messages: Vec<ChatMessage>) {
        if messages.is_empty() || !self.messages(bare).is_empty() {
            return;
        }
        messages.sort_by_key(|m| m.timestamp_ms);
        self.conversations.entry(bare.to_owned()).or_default().messages = messages;
    }

    /// After a reconnect: no query is under way any more.
    pub fn reset_loading(&mut self) {
        for c in self.conversations.values_mut() {
            c.history.loading = false;
        }
    }

    pub fn history(&self, bare: &str) -> History {
        self.conversations.get(bare).map(|c| c.history.clone()).unwrap_or_default()
    }

    pub fn history_mut(&mut self, bare: &str) -> &mut History {
        &mut self.conversations.entry(bare.to_owned()).or_default().history
    }

    /// A message error came back for our message `id` to `bare`; returns whether it matched.
    pub fn failed(&mut self, bare: &str, id: &str, error: String) -> bool {
        let Some(conv) = self.conversations.get_mut(bare) else { return false };
        match conv.messages.iter_mut().rev().find(|m| m.direction == Direction::Out && m.id == id) {
            Some(m) => {
                m.delivery = Delivery::Failed;
                m.error = Some(error);
                true
            }
            None => false,
        }
    }

    pub fn unread(&self, bare: &str) -> u32 {
        self.conversations.get(bare).map_or(0, |c| c.unread)
    }

    /// An unread count kept from an earlier page or sign-in, for a conversation that has
    /// none now and is not being read.
    pub fn restore_unread(&mut self, bare: &str, unread: u32) {
        if self.is_reading(bare) {
            return;
        }
        let conv = self.conversations.entry(bare.to_owned()).or_default();
        if conv.unread == 0 {
            conv.unread = unread;
        }
    }

    /// Every conversation's unread count, for keeping.
    pub fn unread_counts(&self) -> impl Iterator<Item = (&str, u32)> {
        self.conversations.iter().map(|(jid, c)| (jid.as_str(), c.unread))
    }

    pub fn total_unread(&self) -> u32 {
        self.conversations.values().map(|c| c.unread).sum()
    }

    /// The most recent message with `bare`, for the roster preview.
    pub fn last(&self, bare: &str) -> Option<&ChatMessage> {
        self.conversations.get(bare)?.messages.last()
    }
}

/// Where a "new messages" line goes in a conversation opened with `unread` messages unread
/// at `opened_ms`: above the oldest of the `unread` newest received by then (messages that
/// arrive later, or archived ones loaded later, do not move it).
pub fn first_unread(messages: &[ChatMessage], unread: u32, opened_ms: i64) -> Option<&str> {
    let n = usize::try_from(unread).ok().filter(|n| *n > 0)?;
    messages
        .iter()
        .rev()
        .filter(|m| m.direction == Direction::In && m.timestamp_ms <= opened_ms)
        .nth(n - 1)
        .map(|m| m.id.as_str())
}

/// A piece of message text: plain, or a web link to make clickable. The view renders both
/// as text nodes (the link inside an `<a>`), never as HTML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment<'a> {
    Text(&'a str),
    Link(&'a str),
}

/// Splits text into plain runs and `http(s)://` links. Trailing punctuation that usually
/// ends a sentence is left out of the link.
pub fn linkify(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut plain_start = 0usize;
    let mut offset = 0usize;
    loop {
        let found = ["https://", "http://"].iter().filter_map(|p| rest.find(p)).min();
        let Some(pos) = found else { break };
        let start = offset + pos;
        // Only at a word boundary.
        let boundary = start == 0 || text[..start].chars().next_back().is_some_and(|c| c.is_whitespace() || "([<\"'".contains(c));
        let after = &text[start..];
        let mut end = after.find(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"').unwrap_or(after.len());
        while end > 0 && after[..end].ends_with(['.', ',', ';', ':', '!', '?', ')', ']', '\'']) {
            // Keep a closing parenthesis that has its opening one in the link.
            if after[..end].ends_with(')') && after[..end].matches('(').count() >= after[..end].matches(')').count() {
                break;
            }
            end -= 1;
        }
        let link = &after[..end];
        let scheme_len = if link.starts_with("https://") { 8 } else { 7 };
        if boundary && link.len() > scheme_len {
            if plain_start < start {
                out.push(Segment::Text(&text[plain_start..start]));
            }
            out.push(Segment::Link(link));
            plain_start = start + end;
            offset = plain_start;
        } else {
            offset = start + scheme_len;
        }
        rest = &text[offset..];
    }
    if plain_start < text.len() {
        out.push(Segment::Text(&text[plain_start..]));
    }
    out
}

/// Parses an XEP-0082 date-time (`2024-01-02T03:04:05.678Z`, or with an offset) into
/// milliseconds since the Unix epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let (y, mo, da): (i64, i64, i64) = (d.next()?.parse().ok()?, d.next()?.parse().ok()?, d.next()?.parse().ok()?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let (clock, offset_min) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (c, off) = time.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (c, sign * (oh.parse::<i64>().ok()? * 60 + om.parse::<i64>().ok()?))
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':');
    let (h, mi, se): (i64, i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    if h > 23 || mi > 59 || se > 60 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + se) - offset_min * 60) * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(convs: &[&str]) -> BTreeSet<String> {
        convs.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn kept_unread_counts_come_back_where_nothing_is_being_read() {
        let mut c = Chats::new();
        c.set_reading(reading(&["open@x"]));
        c.incoming("new@x", "a".into(), "since".into(), 1);
        c.restore_unread("old@x", 3);
        c.restore_unread("new@x", 5);
        c.restore_unread("open@x", 2);
        assert_eq!((c.unread("old@x"), c.unread("new@x"), c.unread("open@x")), (3, 1, 0));
        let mut kept: Vec<_> = c.unread_counts().filter(|(_, n)| *n > 0).collect();
        kept.sort();
        assert_eq!(kept, [("new@x", 1), ("old@x", 3)]);
    }

    #[test]
    fn the_new_messages_line_stays_above_what_was_unread_at_opening() {
        let mut c = Chats::new();
        c.incoming("bob@x", "a".into(), "read".into(), 1);
        c.outgoing("bob@x", "o".into(), "mine".into(), 2, Delivery::Sent);
        c.incoming("bob@x", "b".into(), "new 1".into(), 3);
        c.incoming("bob@x", "c".into(), "new 2".into(), 4);
        assert_eq!(first_unread(c.messages("bob@x"), 2, 4), Some("b"));
        assert_eq!(first_unread(c.messages("bob@x"), 0, 4), None);
        assert_eq!(first_unread(c.messages("bob@x"), 3, 4), Some("a"));
        assert_eq!(first_unread(c.messages("bob@x"), 9, 4), None, "more unread than loaded: not yet known");
        // Read on; a newer message does not move the line.
        c.incoming("bob@x", "d".into(), "while reading".into(), 10);
        assert_eq!(first_unread(c.messages("bob@x"), 2, 4), Some("b"));
    }

    #[test]
    fn unread_counts_follow_what_is_on_screen() {
        let mut c = Chats::new();
        assert!(c.incoming("bob@x", "1".into(), "hi".into(), 10));
        assert!(c.incoming("bob@x", "2".into(), "there".into(), 11));
        assert!(c.incoming("carol@x", "3".into(), "yo".into(), 12));
        assert_eq!((c.unread("bob@x"), c.total_unread()), (2, 3));
        c.set_reading(reading(&["bob@x"]));
        assert_eq!((c.unread("bob@x"), c.total_unread()), (0, 1));
        assert!(!c.incoming("bob@x", "4".into(), "read at once".into(), 13));
        assert_eq!(c.unread("bob@x"), 0);
        // Open only in a hidden tab (or in none): unread, even for the open conversation.
        c.set_reading(reading(&[]));
        assert!(c.incoming("bob@x", "5".into(), "while away".into(), 14));
        assert_eq!(c.unread("bob@x"), 1);
        // Two conversations each shown in a tab of their own: both are read.
        c.set_reading(reading(&["bob@x", "carol@x"]));
        assert_eq!((c.unread("bob@x"), c.total_unread()), (0, 0));
        assert!(!c.incoming("carol@x", "6".into(), "read in the other tab".into(), 15));
        c.set_reading(reading(&[]));
        assert!(c.incoming("carol@x", "7".into(), "now unread".into(), 16));
        assert_eq!(c.total_unread(), 1);
    }

    #[test]
    fn chat_states_are_sent_only_to_peers_that_use_them() {
        let mut c = Chats::new();
        assert!(!c.our_state("bob@x", ChatState::Composing), "bob never sent a chat state");
        assert!(c.peer_state("bob@x", ChatState::Active));
        assert!(!c.peer_state("bob@x", ChatState::Active), "no change");
        assert!(c.our_state("bob@x", ChatState::Composing));
        assert!(!c.our_state("bob@x", ChatState::Composing), "only changes are sent");
        assert!(c.our_state("bob@x", ChatState::Paused));
        c.outgoing("bob@x", "1".into(), "hi".into(), 1, Delivery::Sent);
        assert!(c.our_state("bob@x", ChatState::Composing), "the message reset us to active");

        c.peer_state("bob@x", ChatState::Composing);
        assert!(c.is_typing("bob@x"));
        c.incoming("bob@x", "2".into(), "there".into(), 2);
        assert!(!c.is_typing("bob@x"), "a message ends typing");
    }

    #[test]
    fn messages_keep_order_and_delivery_state() {
        let mut c = Chats::new();
        c.outgoing("bob@x", "m1".into(), "first".into(), 100, Delivery::Sent);
        c.incoming("bob@x", "o1".into(), "offline, older".into(), 50);
        c.incoming("bob@x", "o1".into(), "offline, older".into(), 50);
        let bodies: Vec<_> = c.messages("bob@x").iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["offline, older", "first"], "sorted by time, duplicates dropped");
        assert!(c.failed("bob@x", "m1", "the address does not exist".into()));
        assert_eq!(c.messages("bob@x")[1].delivery, Delivery::Failed);
        assert!(!c.failed("bob@x", "nope", String::new()));
        assert!(!c.failed("nobody@x", "m1", String::new()));
        assert_eq!(c.last("bob@x").unwrap().body, "first");
        assert!(c.messages("nobody@x").is_empty());
    }

    #[test]
    fn receipts_and_messages_sent_elsewhere() {
        let mut c = Chats::new();
        c.outgoing("bob@x", "m1".into(), "mine".into(), 100, Delivery::Sent);
        assert!(c.delivered("bob@x", "m1"));
        assert_eq!(c.messages("bob@x")[0].delivery, Delivery::Delivered);
        assert!(!c.delivered("bob@x", "m1"), "only once");
        assert!(!c.delivered("bob@x", "nope"));
        assert!(!c.delivered("carol@x", "m1"), "a receipt counts only from the recipient");
        c.outgoing("bob@x", "m2".into(), "lost".into(), 110, Delivery::Sent);
        c.failed("bob@x", "m2", "gone".into());
        assert!(!c.delivered("bob@x", "m2"), "failed stays failed");

        c.incoming("bob@x", "b1".into(), "unread".into(), 120);
        assert_eq!(c.unread("bob@x"), 1);
        assert!(c.sent_elsewhere("bob@x", "p1".into(), "from my phone".into(), 130));
        assert!(!c.sent_elsewhere("bob@x", "p1".into(), "from my phone".into(), 130), "shown once");
        assert_eq!(c.unread("bob@x"), 0, "answered elsewhere: read");
        let last = c.last("bob@x").unwrap();
        assert_eq!((last.direction, last.body.as_str(), last.delivery), (Direction::Out, "from my phone", Delivery::Sent));
        assert!(c.delivered("bob@x", "p1"));
    }

    #[test]
    fn archived_messages_fill_in_without_duplicates() {
        let mut c = Chats::new();
        c.incoming("bob@x", "b1".into(), "live".into(), 300);
        c.outgoing("bob@x", "m1".into(), "mine".into(), 400, Delivery::Sent);
        c.archived("bob@x", Direction::In, Some("b0".into()), "older".into(), 100);
        c.archived("bob@x", Direction::In, Some("b1".into()), "live".into(), 299);
        c.archived("bob@x", Direction::Out, Some("m1".into()), "mine".into(), 399);
        c.archived("bob@x", Direction::Out, None, "no id".into(), 200);
        c.archived("bob@x", Direction::Out, None, "no id".into(), 200);
        let bodies: Vec<_> = c.messages("bob@x").iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["older", "no id", "live", "mine"]);
        assert_eq!(c.unread("bob@x"), 1, "archived messages are never unread");
        assert!(!c.history("bob@x").started);
        c.history_mut("bob@x").started = true;
        assert!(c.history("bob@x").started);
    }

    #[test]
    fn links_are_found_and_nothing_else() {
        use Segment::*;
        assert_eq!(linkify("plain"), [Text("plain")]);
        assert_eq!(linkify(""), []);
        assert_eq!(linkify("see https://example.org/a?b=1. ok"), [Text("see "), Link("https://example.org/a?b=1"), Text(". ok")]);
        assert_eq!(linkify("http://x.y"), [Link("http://x.y")]);
        assert_eq!(
            linkify("(https://en.wikipedia.org/wiki/Foo_(bar))"),
            [Text("("), Link("https://en.wikipedia.org/wiki/Foo_(bar)"), Text(")")]
        );
        assert_eq!(linkify("nohttps://x.y and https://"), [Text("nohttps://x.y and https://")]);
        assert_eq!(linkify("<script>https://a.b\"x"), [Text("<script>https://a.b\"x")]);
        assert_eq!(linkify("a https://a.b\"x"), [Text("a "), Link("https://a.b"), Text("\"x")]);
        assert_eq!(linkify("é https://ü.example/ö é"), [Text("é "), Link("https://ü.example/ö"), Text(" é")]);
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2024-01-02T03:04:05Z"), Some(1_704_164_645_000));
        assert_eq!(parse_timestamp("2024-01-02T03:04:05.5Z"), Some(1_704_164_645_500));
        assert_eq!(parse_timestamp("2024-01-02T05:04:05.123456+02:00"), Some(1_704_164_645_123));
        assert_eq!(parse_timestamp("2024-01-01T23:04:05-04:00"), Some(1_704_164_645_000));
        assert_eq!(parse_timestamp("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        for bad in ["", "2024-01-02", "2024-13-02T00:00:00Z", "2024-01-02T25:00:00Z", "x-y-zTa:b:cZ", "2024-01-02T03:04:05"] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_correction_replaces_the_senders_message_in_place() {
        let mut c = Chats::new();
        c.incoming("bob@x", "m1".into(), "helo".into(), 1);
        c.incoming("bob@x", "m2".into(), "how are you".into(), 2);
        c.outgoing("bob@x", "m1".into(), "our own m1".into(), 3, Delivery::Sent);
        assert!(c.correct("bob@x", Direction::In, "m1", "hello".into()));
        let shown: Vec<_> = c.messages("bob@x").iter().map(|m| (m.body.as_str(), m.edited)).collect();
        assert_eq!(shown, [("hello", true), ("how are you", false), ("our own m1", false)]);
        // Ours is not theirs to correct, an unknown id corrects nothing, nor another chat.
        assert!(!c.correct("bob@x", Direction::In, "nope", "x".into()));
        assert!(!c.correct("carol@x", Direction::In, "m1", "x".into()));
        assert_eq!(c.messages("bob@x")[2].body, "our own m1");
    }
}
