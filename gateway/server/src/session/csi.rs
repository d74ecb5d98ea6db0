//! XEP-0352 client state indication: while the client says it is inactive (a phone in a
//! pocket), presence updates and chat states wait, collapsed to the latest per sender,
//! and go out with the next important stanza or when the client is active again.

use jabberwock_proto::{Stanza, StanzaKind};

use crate::stream::Frame;

/// More waiting stanzas than this are flushed rather than held.
const MAX_HELD: usize = 500;

#[derive(Default)]
pub(crate) struct Csi {
    inactive: bool,
    held: Vec<Stanza>,
}

/// Presence updates and messages without a body (chat states, markers) can wait.
fn can_wait(st: &Stanza) -> bool {
    match st.kind() {
        StanzaKind::Presence => matches!(st.stanza_type(), None | Some("unavailable")),
        StanzaKind::Message => !st.inner().contains("<body"),
        _ => false,
    }
}

impl Csi {
    pub fn set_inactive(&mut self, inactive: bool, out: &mut Vec<Frame>) {
        self.inactive = inactive;
        if !inactive {
            self.flush(out);
        }
    }

    pub fn is_inactive(&self) -> bool {
        self.inactive
    }

    /// Delivers `st` now, or holds it while the client is inactive.
    pub fn deliver(&mut self, st: Stanza, out: &mut Vec<Frame>) {
        if !self.inactive || !can_wait(&st) {
            self.flush(out);
            out.push(Frame::Stanza(st));
            return;
        }
        if st.kind() == StanzaKind::Presence {
            // Only the latest presence of each sender matters.
            self.held.retain(|h| !(h.kind() == StanzaKind::Presence && h.from() == st.from()));
        }
        self.held.push(st);
        if self.held.len() > MAX_HELD {
            self.flush(out);
        }
    }

    /// What the held stanzas count against the session's output bound.
    pub fn held_cost(&self) -> usize {
        self.held.iter().map(crate::registry::output_cost).sum()
    }

    fn flush(&mut self, out: &mut Vec<Frame>) {
        out.extend(self.held.drain(..).map(Frame::Stanza));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jabberwock_proto::{ns, Element};

    fn presence(from: &str, show: &str) -> Stanza {
        Stanza::from_element(&Element::new("presence", ns::CLIENT).with_attr("from", from).with_child(Element::new("show", ns::CLIENT).with_text(show)))
    }

    fn message(body: Option<&str>) -> Stanza {
        let mut el = Element::new("message", ns::CLIENT).with_attr("from", "x@y/z");
        match body {
            Some(b) => el.push(Element::new("body", ns::CLIENT).with_text(b)),
            None => el.push(Element::new("composing", "http://jabber.org/protocol/chatstates")),
        }
        Stanza::from_element(&el)
    }

    #[test]
    fn inactive_clients_get_collapsed_presence_with_the_next_message() {
        let mut csi = Csi::default();
        let mut out = Vec::new();
        csi.set_inactive(true, &mut out);
        csi.deliver(presence("a@x/1", "away"), &mut out);
        csi.deliver(presence("a@x/1", "dnd"), &mut out);
        csi.deliver(presence("b@x/1", "xa"), &mut out);
        csi.deliver(message(None), &mut out);
        assert!(out.is_empty());
        csi.deliver(message(Some("hi")), &mut out);
        let texts: Vec<String> = out.iter().map(|f| match f {
            Frame::Stanza(s) => String::from_utf8(s.to_bytes()).unwrap(),
            _ => String::new(),
        }).collect();
        assert_eq!(texts.len(), 4, "{texts:?}");
        assert!(texts[0].contains("dnd") && texts[1].contains("xa") && texts[2].contains("composing") && texts[3].contains("hi"), "{texts:?}");
        out.clear();
        csi.deliver(presence("a@x/1", "chat"), &mut out);
        assert!(out.is_empty());
        csi.set_inactive(false, &mut out);
        assert_eq!(out.len(), 1);
    }
}
