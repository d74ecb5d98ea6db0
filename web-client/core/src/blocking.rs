//! XEP-0191 blocking: the addresses the user blocked, kept in step with the server's list
//! through its pushes (the server tells every resource of the account what changed, ours
//! included, so a request's result changes nothing here: its push does).

use std::collections::BTreeSet;

use jabberwock_proto::Element;

use crate::address;
use crate::ns;
use crate::stanza::iq;

/// At most this many addresses are kept from the server's list and pushes: a list beyond
/// it is a server's problem, not a reason for the page to grow without bound.
pub const MAX_BLOCKED: usize = 10_000;

#[derive(Clone, Debug, Default)]
pub struct BlockList {
    jids: BTreeSet<String>,
    /// The server answered our request for the list.
    loaded: bool,
    /// The server has no blocking (it answered the request with an error).
    unsupported: bool,
}

impl BlockList {
    pub fn is_blocked(&self, jid: &str) -> bool {
        self.jids.contains(address::bare(jid))
    }

    pub fn jids(&self) -> impl Iterator<Item = &str> {
        self.jids.iter().map(String::as_str)
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Whether blocking can be offered: the server did not refuse it.
    pub fn available(&self) -> bool {
        !self.unsupported
    }

    /// The answer to [`request`]: the whole list.
    pub fn set_all(&mut self, list: &Element) {
        self.jids.clear();
        self.add_items(list);
        self.loaded = true;
    }

    /// The server refused the request: no blocking here.
    pub fn refused(&mut self) {
        self.unsupported = true;
        self.loaded = true;
    }

    /// Forgets the list (a new session fetches it again).
    pub fn clear(&mut self) {
        self.jids.clear();
        self.loaded = false;
    }

    /// A push: `<block/>` adds its items, `<unblock/>` removes its items or, with none,
    /// everything (XEP-0191 §3.4). Returns whether it was a blocking push.
    pub fn apply_push(&mut self, payload: &Element) -> bool {
        if payload.is("block", ns::BLOCKING) {
            self.add_items(payload);
        } else if payload.is("unblock", ns::BLOCKING) {
            let items = items(payload);
            if items.is_empty() {
                self.jids.clear();
            }
            for jid in items {
                self.jids.remove(&jid);
            }
        } else {
            return false;
        }
        true
    }

    fn add_items(&mut self, parent: &Element) {
        for jid in items(parent) {
            if self.jids.len() >= MAX_BLOCKED {
                break;
            }
            self.jids.insert(jid);
        }
    }
}

/// The addresses an element's `<item jid=…/>` children name, as bare JIDs where they are
/// accounts' addresses (blocking a full JID is possible but not offered here).
fn items(parent: &Element) -> Vec<String> {
    parent.children().filter(|c| c.is("item", ns::BLOCKING)).filter_map(|i| i.attr("jid")).map(str::to_owned).collect()
}

/// Asks for the block list.
pub fn request(id: &str) -> Element {
    iq("get", id, None).with_child(Element::new("blocklist", ns::BLOCKING))
}

/// Blocks (`block`) or unblocks `jid`.
pub fn change(id: &str, jid: &str, block: bool) -> Element {
    let name = if block { "block" } else { "unblock" };
    iq("set", id, None).with_child(Element::new(name, ns::BLOCKING).with_child(Element::new("item", ns::BLOCKING).with_attr("jid", jid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        crate::connection::tests::parse(xml)
    }

    #[test]
    fn pushes_keep_the_list_in_step() {
        let mut b = BlockList::default();
        b.set_all(&parse("<blocklist xmlns='urn:xmpp:blocking'><item jid='spam@x'/><item jid='troll@y'/></blocklist>"));
        assert!(b.is_loaded() && b.is_blocked("spam@x") && b.is_blocked("spam@x/phone"));
        assert!(b.apply_push(&parse("<unblock xmlns='urn:xmpp:blocking'><item jid='spam@x'/></unblock>")));
        assert!(!b.is_blocked("spam@x") && b.is_blocked("troll@y"));
        assert!(b.apply_push(&parse("<block xmlns='urn:xmpp:blocking'><item jid='new@z'/></block>")));
        assert_eq!(b.jids().collect::<Vec<_>>(), ["new@z", "troll@y"]);
        assert!(b.apply_push(&parse("<unblock xmlns='urn:xmpp:blocking'/>")), "no items: everything");
        assert_eq!(b.jids().count(), 0);
        assert!(!b.apply_push(&parse("<query xmlns='jabber:iq:roster'/>")));
    }

    #[test]
    fn items_without_an_address_are_ignored_and_the_list_is_bounded() {
        let mut b = BlockList::default();
        b.set_all(&parse("<blocklist xmlns='urn:xmpp:blocking'><item/><item jid='a@x'/></blocklist>"));
        assert_eq!(b.jids().collect::<Vec<_>>(), ["a@x"]);
        let many: String = (0..MAX_BLOCKED + 5).map(|n| format!("<item jid='u{n}@x'/>")).collect();
        b.set_all(&parse(&format!("<blocklist xmlns='urn:xmpp:blocking'>{many}</blocklist>")));
        assert_eq!(b.jids().count(), MAX_BLOCKED);
    }

    #[test]
    fn requests() {
        let r = change("b1", "spam@x", true);
        assert_eq!((r.attr("type"), r.attr("id")), (Some("set"), Some("b1")));
        assert_eq!(r.child("block", ns::BLOCKING).and_then(|b| b.child("item", ns::BLOCKING)).and_then(|i| i.attr("jid")), Some("spam@x"));
        assert!(change("b2", "spam@x", false).child("unblock", ns::BLOCKING).is_some());
        assert!(request("b3").child("blocklist", ns::BLOCKING).is_some());
    }
}
