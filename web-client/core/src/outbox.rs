//! Messages written while the connection is down: kept in order and sent once it is back,
//! so that pressing Enter offline is never lost work. Besides plain messages, what else
//! is written in a one-to-one conversation waits with them: replies (XEP-0461),
//! corrections (XEP-0308) and reactions (XEP-0444).
//!
//! Bounded, since a client left offline for a day should not grow without limit: past
//! [`MAX_QUEUED`] messages or [`MAX_QUEUED_BYTES`] of text a new message is refused and the
//! user told, its text staying in the composer.

use std::collections::VecDeque;

use jabberwock_proto::Element;

use crate::ns;

/// At most this many messages wait.
pub const MAX_QUEUED: usize = 100;
/// At most this much text (bytes of bodies) waits.
pub const MAX_QUEUED_BYTES: usize = 256 * 1024;

/// One message waiting: to whom, the stanza, and which message shows a clock until it
/// goes out (ours: a new message or reply, or the one a correction changes; none for a
/// reaction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    pub to: String,
    pub marked: Option<String>,
    pub stanza: Element,
}

impl Queued {
    /// The text it carries, as counted against [`MAX_QUEUED_BYTES`].
    fn bytes(&self) -> usize {
        self.stanza.child("body", ns::CLIENT).map_or(0, |b| b.text().len())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Outbox {
    queued: VecDeque<Queued>,
    bytes: usize,
}

impl Outbox {
    /// Queues a message; false when the outbox is full.
    pub fn push(&mut self, message: Queued) -> bool {
        let bytes = message.bytes();
        if self.queued.len() >= MAX_QUEUED || self.bytes + bytes > MAX_QUEUED_BYTES {
            return false;
        }
        self.bytes += bytes;
        self.queued.push_back(message);
        true
    }

    /// Everything queued, oldest first, leaving the outbox empty.
    pub fn take(&mut self) -> Vec<Queued> {
        self.bytes = 0;
        self.queued.drain(..).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize, bytes: usize) -> Queued {
        let id = n.to_string();
        Queued { to: "bob@x".into(), stanza: crate::stanza::chat_message(&id, "bob@x", &"x".repeat(bytes)), marked: Some(id) }
    }

    #[test]
    fn keeps_order_and_empties_when_taken() {
        let mut o = Outbox::default();
        assert!(o.push(msg(1, 3)) && o.push(msg(2, 3)));
        let ids: Vec<String> = o.take().into_iter().filter_map(|q| q.marked).collect();
        assert_eq!(ids, ["1", "2"]);
        assert!(o.is_empty());
    }

    #[test]
    fn is_bounded_in_messages_and_bytes() {
        let mut o = Outbox::default();
        for n in 0..MAX_QUEUED {
            assert!(o.push(msg(n, 1)));
        }
        assert!(!o.push(msg(MAX_QUEUED, 1)), "one message too many");
        o.take();
        assert!(o.push(msg(0, MAX_QUEUED_BYTES - 10)));
        assert!(!o.push(msg(1, 11)), "over the byte bound");
        assert!(o.push(msg(2, 10)), "exactly at the bound");
    }
}
