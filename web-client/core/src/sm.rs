//! XEP-0198 stream management, client side: the counters and the queue of unacknowledged
//! stanzas, without I/O. [`crate::connection::Connection`] feeds it what goes out and
//! comes in, and uses it to resume a stream that dropped.
//!
//! Both sides count the stanzas (`<message/>`, `<presence/>`, `<iq/>`) they handled from
//! the other, as `h`, modulo 2^32. Ours starts when the server's `<enabled/>` arrives;
//! the server's count of ours starts at our `<enable/>`.

use std::collections::VecDeque;

use jabberwock_proto::Element;

use crate::ns;

/// The stanzas that stream management counts.
pub fn is_stanza(el: &Element) -> bool {
    el.ns() == ns::CLIENT && matches!(el.name(), "message" | "presence" | "iq")
}

/// The server acknowledged more stanzas than we sent: the stream cannot be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadAck {
    pub h: u32,
    pub unacked: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamManagement {
    /// From `<enabled resume='true'/>`: what to resume with.
    id: Option<String>,
    /// The longest the server keeps a dropped session, in seconds (`max`).
    max_secs: Option<u32>,
    /// `<enabled/>` arrived: the server counts what it sends us from there.
    enabled: bool,
    /// Stanzas handled from the server: the `h` we report.
    inbound: u32,
    /// The server's last `h`: how many of ours it handled.
    acked: u32,
    /// Sent and not yet acknowledged, oldest first.
    unacked: VecDeque<Element>,
    /// An `<r/>` is out and unanswered.
    ack_requested: bool,
}

impl StreamManagement {
    /// Stream management as requested by [`StreamManagement::enable`], before the answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The request that starts it, asking for resumption.
    pub fn enable() -> Element {
        Element::new("enable", ns::SM).with_attr("resume", "true")
    }

    /// The state saved before a reload ([`crate::resume::Resumable`]).
    pub fn restore(id: String, max_secs: u32, inbound: u32, acked: u32, unacked: Vec<Element>) -> Self {
        StreamManagement {
            id: Some(id),
            max_secs: Some(max_secs),
            enabled: true,
            inbound,
            acked,
            unacked: unacked.into(),
            ack_requested: false,
        }
    }

    /// The resumption id, when the server allows resumption.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn max_secs(&self) -> Option<u32> {
        self.max_secs
    }

    pub fn inbound(&self) -> u32 {
        self.inbound
    }

    pub fn acked(&self) -> u32 {
        self.acked
    }

    pub fn unacked(&self) -> impl Iterator<Item = &Element> {
        self.unacked.iter()
    }

    /// The server's `<enabled/>`.
    pub fn on_enabled(&mut self, enabled: &Element) {
        self.enabled = true;
        if matches!(enabled.attr("resume"), Some("true" | "1")) {
            self.id = enabled.attr("id").filter(|i| !i.is_empty()).map(str::to_owned);
            self.max_secs = enabled.attr("max").and_then(|m| m.parse().ok());
        }
    }

    /// We sent a stanza: it waits for an acknowledgement. Returns an `<r/>` to send after
    /// it when none is out already.
    pub fn sent(&mut self, stanza: Element) -> Option<Element> {
        self.unacked.push_back(stanza);
        self.request()
    }

    fn request(&mut self) -> Option<Element> {
        if self.ack_requested || self.unacked.is_empty() {
            return None;
        }
        self.ack_requested = true;
        Some(Element::new("r", ns::SM))
    }

    /// We handled a stanza from the server.
    pub fn received(&mut self) {
        if self.enabled {
            self.inbound = self.inbound.wrapping_add(1);
        }
    }

    /// Our answer to the server's `<r/>`.
    pub fn answer(&self) -> Element {
        Element::new("a", ns::SM).with_attr("h", self.inbound.to_string())
    }

    /// The server's `<a h=…/>`: drops what it acknowledges. Returns a new `<r/>` when
    /// stanzas sent meanwhile still wait.
    pub fn on_ack(&mut self, h: u32) -> Result<Option<Element>, BadAck> {
        let newly = h.wrapping_sub(self.acked) as usize;
        if newly > self.unacked.len() {
            return Err(BadAck { h, unacked: self.unacked.len() });
        }
        self.unacked.drain(..newly);
        self.acked = h;
        self.ack_requested = false;
        Ok(self.request())
    }

    /// The `<resume/>` that takes the dropped session back; `None` when the server did not
    /// allow resumption.
    pub fn resume_request(&self) -> Option<Element> {
        let id = self.id.as_deref()?;
        Some(Element::new("resume", ns::SM).with_attr("previd", id).with_attr("h", self.inbound.to_string()))
    }

    /// The server's `<resumed h=…/>`: what it did not get is sent again, followed by an
    /// `<r/>`. The retransmitted stanzas stay queued until acknowledged.
    pub fn on_resumed(&mut self, h: u32) -> Result<Vec<Element>, BadAck> {
        self.ack_requested = false;
        self.on_ack(h)?;
        self.ack_requested = false;
        let mut out: Vec<Element> = self.unacked.iter().cloned().collect();
        out.extend(self.request());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::tests::parse;

    fn msg(n: u32) -> Element {
        Element::new("message", ns::CLIENT).with_attr("id", n.to_string())
    }

    fn ids(sm: &StreamManagement) -> Vec<String> {
        sm.unacked().map(|e| e.attr("id").unwrap_or_default().to_owned()).collect()
    }

    #[test]
    fn enabled_with_and_without_resumption() {
        let mut sm = StreamManagement::new();
        assert!(StreamManagement::enable().is("enable", ns::SM));
        assert_eq!(StreamManagement::enable().attr("resume"), Some("true"));
        sm.on_enabled(&parse("<enabled xmlns='urn:xmpp:sm:3' id='abc' resume='true' max='300'/>"));
        assert_eq!((sm.id(), sm.max_secs()), (Some("abc"), Some(300)));
        assert_eq!(sm.resume_request().unwrap().attr("previd"), Some("abc"));

        let mut sm = StreamManagement::new();
        sm.on_enabled(&parse("<enabled xmlns='urn:xmpp:sm:3' id='abc'/>"));
        assert_eq!(sm.id(), None, "no resume='true': nothing to resume");
        assert!(sm.resume_request().is_none());
    }

    #[test]
    fn inbound_counting_starts_at_enabled() {
        let mut sm = StreamManagement::new();
        sm.received();
        assert_eq!(sm.inbound(), 0, "stanzas before <enabled/> are not counted by the server");
        sm.on_enabled(&parse("<enabled xmlns='urn:xmpp:sm:3'/>"));
        sm.received();
        sm.received();
        assert_eq!(sm.answer().attr("h"), Some("2"));
        assert!(sm.answer().is("a", ns::SM));
    }

    #[test]
    fn acks_drop_what_they_cover_and_ask_again_for_the_rest() {
        let mut sm = StreamManagement::new();
        let r = sm.sent(msg(1)).expect("the first stanza asks for an ack");
        assert!(r.is("r", ns::SM));
        assert!(sm.sent(msg(2)).is_none(), "one request at a time");
        assert!(sm.sent(msg(3)).is_none());
        // The server had handled one when it answered: the others are asked for again.
        assert!(sm.on_ack(1).unwrap().is_some());
        assert_eq!(ids(&sm), ["2", "3"]);
        assert!(sm.on_ack(3).unwrap().is_none(), "nothing left to ask for");
        assert_eq!((ids(&sm).len(), sm.acked()), (0, 3));
        // The same h again changes nothing; more than was sent is an error.
        assert!(sm.on_ack(3).unwrap().is_none());
        assert_eq!(sm.on_ack(5), Err(BadAck { h: 5, unacked: 0 }));
    }

    #[test]
    fn counters_wrap_around() {
        let mut sm = StreamManagement::restore("x".into(), 60, u32::MAX, u32::MAX - 1, vec![msg(1), msg(2)]);
        sm.received();
        assert_eq!(sm.inbound(), 0);
        assert!(sm.on_ack(0).unwrap().is_none(), "u32::MAX - 1 + 2 wraps to 0");
        assert_eq!(ids(&sm).len(), 0);
    }

    #[test]
    fn resumed_retransmits_what_the_server_missed() {
        let mut sm = StreamManagement::restore("x".into(), 300, 7, 10, vec![msg(11), msg(12), msg(13)]);
        assert_eq!(sm.resume_request().unwrap().attr("h"), Some("7"));
        let again = sm.on_resumed(11).unwrap();
        let names: Vec<_> = again.iter().map(|e| e.attr("id").unwrap_or(e.name()).to_owned()).collect();
        assert_eq!(names, ["12", "13", "r"], "the missed ones, then a request");
        assert_eq!(ids(&sm), ["12", "13"], "still waiting for their acknowledgement");
        assert_eq!(sm.on_resumed(20), Err(BadAck { h: 20, unacked: 2 }));
        // All acknowledged already: nothing to send.
        let mut sm = StreamManagement::restore("x".into(), 300, 0, 0, vec![msg(1)]);
        assert!(sm.on_resumed(1).unwrap().is_empty());
    }

    #[test]
    fn only_stanzas_count() {
        assert!(is_stanza(&msg(1)));
        assert!(is_stanza(&parse("<iq xmlns='jabber:client' type='get' id='a'/>")));
        assert!(!is_stanza(&parse("<r xmlns='urn:xmpp:sm:3'/>")));
        assert!(!is_stanza(&parse("<inactive xmlns='urn:xmpp:csi:0'/>")));
    }
}
