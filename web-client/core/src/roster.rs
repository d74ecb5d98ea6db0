//! The roster as the user sees it: items with their subscription state (RFC 6121 §2-3),
//! pending requests both ways, and the presence of every resource of every contact.

use std::collections::{BTreeMap, BTreeSet};

use jabberwock_proto::Element;
use serde::{Deserialize, Serialize};

use crate::ns;
use crate::stanza::PresenceInfo;

/// RFC 6121 §2.1.2.5.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Subscription {
    #[default]
    None,
    /// We see their presence.
    To,
    /// They see ours.
    From,
    Both,
    /// Only in pushes: the item is gone.
    Remove,
}

impl Subscription {
    pub fn parse(s: Option<&str>) -> Subscription {
        match s {
            Some("to") => Subscription::To,
            Some("from") => Subscription::From,
            Some("both") => Subscription::Both,
            Some("remove") => Subscription::Remove,
            _ => Subscription::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
            Subscription::Remove => "remove",
        }
    }

    /// We receive their presence.
    pub fn sees_them(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// They receive ours.
    pub fn they_see_us(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterItem {
    pub jid: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// `ask='subscribe'`: our request to see their presence awaits their answer.
    pub ask: bool,
    pub groups: Vec<String>,
}

impl RosterItem {
    pub fn new(jid: impl Into<String>) -> Self {
        RosterItem { jid: jid.into(), ..Default::default() }
    }

    pub fn from_element(el: &Element) -> Option<RosterItem> {
        let jid = el.attr("jid")?.to_owned();
        let mut groups: Vec<String> = el
            .children()
            .filter(|c| c.is("group", ns::ROSTER))
            .map(|g| g.text().trim().to_owned())
            .filter(|g| !g.is_empty())
            .collect();
        groups.sort();
        groups.dedup();
        Some(RosterItem {
            jid,
            name: el.attr("name").map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned),
            subscription: Subscription::parse(el.attr("subscription")),
            ask: el.attr("ask") == Some("subscribe"),
            groups,
        })
    }

    /// The name shown: the roster name, else the localpart, else the JID.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or_else(|| crate::address::local(&self.jid).unwrap_or(&self.jid))
    }
}

/// One contact, flattened for display.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContactView {
    pub jid: String,
    pub name: String,
    pub subscription: Subscription,
    pub pending_out: bool,
    pub groups: Vec<String>,
    /// The best available resource's presence, `None` when offline.
    pub presence: Option<PresenceInfo>,
    /// The last presence error (for example, their server cannot be reached).
    pub error: Option<String>,
    /// In our roster (not only someone who wrote to us).
    pub in_roster: bool,
    /// We blocked them (XEP-0191).
    pub blocked: bool,
}

impl ContactView {
    pub fn online(&self) -> bool {
        self.presence.is_some()
    }

    /// `online`, `away`, `dnd`, `xa`, `chat` or `offline`.
    pub fn status_key(&self) -> &'static str {
        self.presence.as_ref().map_or("offline", |p| p.show.key())
    }

    pub fn status_label(&self) -> String {
        match &self.presence {
            None if self.pending_out => "Awaiting approval".to_owned(),
            None => "Offline".to_owned(),
            Some(p) => p.show.label().to_owned(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Roster {
    items: BTreeMap<String, RosterItem>,
    /// Bare JID → resource → presence. Only available resources are kept.
    presence: BTreeMap<String, BTreeMap<String, PresenceInfo>>,
    /// Bare JIDs asking to see our presence, with the message they sent.
    requests: BTreeMap<String, Option<String>>,
    errors: BTreeMap<String, String>,
    /// Has the initial roster arrived?
    loaded: bool,
}

impl Roster {
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    pub fn get(&self, jid: &str) -> Option<&RosterItem> {
        self.items.get(jid)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The full roster from a roster `get` result; replaces what we had.
    pub fn set_all(&mut self, items: Vec<RosterItem>) {
        self.items = items.into_iter().filter(|i| i.subscription != Subscription::Remove).map(|i| (i.jid.clone(), i)).collect();
        self.loaded = true;
    }

    /// Contacts kept from an earlier page ([`crate::kept`]), shown until the server's roster
    /// arrives and replaces them: the roster still counts as not loaded.
    pub fn restore_kept(&mut self, items: Vec<RosterItem>) {
        if self.loaded || !self.items.is_empty() {
            return;
        }
        self.items = items.into_iter().filter(|i| i.subscription != Subscription::Remove).map(|i| (i.jid.clone(), i)).collect();
    }

    /// Every item, in JID order.
    pub fn items(&self) -> impl Iterator<Item = &RosterItem> {
        self.items.values()
    }

    /// A roster push: adds, updates or (with `subscription='remove'`) removes one item.
    pub fn apply_push(&mut self, item: RosterItem) {
        if item.subscription == Subscription::Remove {
            self.items.remove(&item.jid);
            self.presence.remove(&item.jid);
            self.errors.remove(&item.jid);
            return;
        }
        if item.subscription.they_see_us() {
            // Approved, here or from another of our devices.
            self.requests.remove(&item.jid);
        }
        if !item.subscription.sees_them() {
            // Their presence no longer reaches us.
            self.presence.remove(&item.jid);
        }
        self.items.insert(item.jid.clone(), item);
    }

    /// Available presence from `bare/resource`.
    pub fn presence_available(&mut self, bare: &str, resource: &str, info: PresenceInfo) {
        self.errors.remove(bare);
        self.presence.entry(bare.to_owned()).or_default().insert(resource.to_owned(), info);
    }

    /// Unavailable presence: from one resource, or (bare `from`) from all of them.
    pub fn presence_unavailable(&mut self, bare: &str, resource: Option<&str>) {
        match resource {
            None => {
                self.presence.remove(bare);
            }
            Some(r) => {
                if let Some(res) = self.presence.get_mut(bare) {
                    res.remove(r);
                    if res.is_empty() {
                        self.presence.remove(bare);
                    }
                }
            }
        }
    }

    pub fn presence_error(&mut self, bare: &str, text: String) {
        self.presence.remove(bare);
        self.errors.insert(bare.to_owned(), text);
    }

    /// Drops every presence: we went offline, so what we knew is stale.
    pub fn clear_presence(&mut self) {
        self.presence.clear();
    }

    /// The best resource: highest priority, then most reachable show. Negative priorities
    /// still count as online for display.
    pub fn best_presence(&self, bare: &str) -> Option<&PresenceInfo> {
        self.presence.get(bare)?.values().max_by_key(|p| (p.priority, p.show.rank()))
    }

    /// Every available resource of every contact: bare JID, resource, presence.
    pub fn all_presence(&self) -> impl Iterator<Item = (&str, &str, &PresenceInfo)> {
        self.presence.iter().flat_map(|(b, m)| m.iter().map(move |(r, p)| (b.as_str(), r.as_str(), p)))
    }

    pub fn resources(&self, bare: &str) -> impl Iterator<Item = (&str, &PresenceInfo)> {
        self.presence.get(bare).into_iter().flat_map(|m| m.iter().map(|(r, p)| (r.as_str(), p)))
    }

    /// An incoming subscription request.
    pub fn add_request(&mut self, bare: &str, message: Option<String>) {
        self.requests.insert(bare.to_owned(), message);
    }

    /// Forgets a request (approved or denied).
    pub fn take_request(&mut self, bare: &str) -> bool {
        self.requests.remove(bare).is_some()
    }

    pub fn requests(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.requests.iter().map(|(j, m)| (j.as_str(), m.as_deref()))
    }

    /// Contacts whose answer to our request is awaited.
    pub fn pending_out(&self) -> impl Iterator<Item = &RosterItem> {
        self.items.values().filter(|i| i.ask && !i.subscription.sees_them())
    }

    pub fn view(&self, jid: &str) -> Option<ContactView> {
        let item = self.items.get(jid)?;
        Some(ContactView {
            jid: item.jid.clone(),
            name: item.display_name().to_owned(),
            subscription: item.subscription,
            pending_out: item.ask && !item.subscription.sees_them(),
            groups: item.groups.clone(),
            presence: self.best_presence(jid).cloned(),
            error: self.errors.get(jid).cloned(),
            in_roster: true,
            blocked: false,
        })
    }

    /// Every contact, online first, then by name (case-insensitive), then by JID.
    pub fn sorted(&self) -> Vec<ContactView> {
        let mut all: Vec<ContactView> = self.items.keys().filter_map(|j| self.view(j)).collect();
        all.sort_by_cached_key(|c| (!c.online(), c.name.to_lowercase(), c.jid.clone()));
        all
    }

    /// Contacts by roster group (contacts without a group come last, under `None`); a
    /// contact in several groups appears in each.
    pub fn grouped(&self) -> Vec<(Option<String>, Vec<ContactView>)> {
        let mut groups: BTreeMap<Option<String>, Vec<ContactView>> = BTreeMap::new();
        for c in self.sorted() {
            if c.groups.is_empty() {
                groups.entry(None).or_default().push(c);
            } else {
                for g in &c.groups {
                    groups.entry(Some(g.clone())).or_default().push(c.clone());
                }
            }
        }
        // BTreeMap puts None first; the ungrouped go last.
        let mut out: Vec<_> = groups.into_iter().collect();
        let ungrouped_first = out.first().is_some_and(|(g, _)| g.is_none());
        out.rotate_left(usize::from(ungrouped_first));
        out
    }

    pub fn online_count(&self) -> usize {
        self.items.keys().filter(|j| self.presence.contains_key(*j)).count()
    }

    pub fn groups(&self) -> BTreeSet<&str> {
        self.items.values().flat_map(|i| i.groups.iter().map(String::as_str)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stanza::Show;

    fn item(jid: &str, sub: Subscription) -> RosterItem {
        RosterItem { subscription: sub, ..RosterItem::new(jid) }
    }

    fn online(show: Show, priority: i8) -> PresenceInfo {
        PresenceInfo { show, status: None, priority }
    }

    #[test]
    fn subscription_states_follow_pushes() {
        let mut r = Roster::default();
        assert!(!r.is_loaded());
        r.set_all(vec![]);
        assert!(r.is_loaded());

        // We ask Bob: the server pushes none + ask.
        r.apply_push(RosterItem { ask: true, ..item("bob@x", Subscription::None) });
        assert_eq!(r.pending_out().count(), 1);
        assert!(r.view("bob@x").unwrap().pending_out);
        assert_eq!(r.view("bob@x").unwrap().status_label(), "Awaiting approval");

        // Bob asks us too; we approve: from, and our request is still pending.
        r.add_request("bob@x", Some("hi".into()));
        assert_eq!(r.requests().collect::<Vec<_>>(), [("bob@x", Some("hi"))]);
        r.apply_push(RosterItem { ask: true, ..item("bob@x", Subscription::From) });
        assert_eq!(r.requests().count(), 0, "an approved request is no longer pending");

        // Bob approves ours: both.
        r.apply_push(item("bob@x", Subscription::Both));
        assert_eq!(r.pending_out().count(), 0);
        r.presence_available("bob@x", "phone", online(Show::Online, 0));
        assert!(r.view("bob@x").unwrap().online());

        // Bob cancels: from, and his presence no longer reaches us.
        r.apply_push(item("bob@x", Subscription::From));
        assert!(!r.view("bob@x").unwrap().online());

        // Removal.
        r.apply_push(item("bob@x", Subscription::Remove));
        assert!(r.view("bob@x").is_none());
        assert!(r.is_empty());
    }

    #[test]
    fn presence_is_tracked_per_resource() {
        let mut r = Roster::default();
        r.set_all(vec![item("bob@x", Subscription::Both)]);
        r.presence_available("bob@x", "phone", online(Show::Away, 0));
        r.presence_available("bob@x", "desk", online(Show::Online, 0));
        assert_eq!(r.best_presence("bob@x").unwrap().show, Show::Online, "equal priority: the more reachable");
        r.presence_available("bob@x", "phone", online(Show::Dnd, 10));
        assert_eq!(r.best_presence("bob@x").unwrap().show, Show::Dnd, "higher priority wins");
        assert_eq!(r.resources("bob@x").count(), 2);
        r.presence_unavailable("bob@x", Some("phone"));
        assert_eq!(r.best_presence("bob@x").unwrap().show, Show::Online);
        r.presence_unavailable("bob@x", Some("desk"));
        assert!(r.best_presence("bob@x").is_none());
        r.presence_available("bob@x", "a", online(Show::Online, 0));
        r.presence_available("bob@x", "b", online(Show::Online, 0));
        r.presence_unavailable("bob@x", None);
        assert!(r.best_presence("bob@x").is_none(), "a bare unavailable covers every resource");

        r.presence_error("bob@x", "their server cannot be reached".into());
        assert_eq!(r.view("bob@x").unwrap().error.as_deref(), Some("their server cannot be reached"));
        r.presence_available("bob@x", "a", online(Show::Online, 0));
        assert_eq!(r.view("bob@x").unwrap().error, None);
        r.clear_presence();
        assert_eq!(r.online_count(), 0);
    }

    #[test]
    fn sorted_online_first_then_by_name() {
        let mut r = Roster::default();
        r.set_all(vec![
            RosterItem { name: Some("zed".into()), ..item("z@x", Subscription::Both) },
            RosterItem { name: Some("Anna".into()), ..item("q@x", Subscription::Both) },
            item("carol@x", Subscription::Both),
            item("bob@x", Subscription::Both),
        ]);
        r.presence_available("z@x", "r", online(Show::Away, 0));
        r.presence_available("carol@x", "r", online(Show::Online, 0));
        let names: Vec<_> = r.sorted().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["carol", "zed", "Anna", "bob"]);
        assert_eq!(r.online_count(), 2);
    }

    #[test]
    fn grouped_with_the_ungrouped_last() {
        let mut r = Roster::default();
        r.set_all(vec![
            RosterItem { groups: vec!["Work".into(), "Friends".into()], ..item("a@x", Subscription::Both) },
            item("b@x", Subscription::Both),
            RosterItem { groups: vec!["Work".into()], ..item("c@x", Subscription::Both) },
        ]);
        let g: Vec<_> = r.grouped().into_iter().map(|(g, cs)| (g, cs.into_iter().map(|c| c.jid).collect::<Vec<_>>())).collect();
        assert_eq!(
            g,
            [
                (Some("Friends".to_owned()), vec!["a@x".to_owned()]),
                (Some("Work".to_owned()), vec!["a@x".to_owned(), "c@x".to_owned()]),
                (None, vec!["b@x".to_owned()]),
            ]
        );
        assert_eq!(r.groups().into_iter().collect::<Vec<_>>(), ["Friends", "Work"]);
    }

    #[test]
    fn items_parse_and_display() {
        let el = Element::new("item", ns::ROSTER)
            .with_attr("jid", "bob@x")
            .with_attr("name", "  ")
            .with_attr("ask", "subscribe")
            .with_child(Element::new("group", ns::ROSTER).with_text("B"))
            .with_child(Element::new("group", ns::ROSTER).with_text("A"))
            .with_child(Element::new("group", ns::ROSTER).with_text("A"));
        let i = RosterItem::from_element(&el).unwrap();
        assert_eq!(i.name, None);
        assert_eq!(i.display_name(), "bob");
        assert!(i.ask);
        assert_eq!(i.groups, ["A", "B"]);
        assert_eq!(i.subscription, Subscription::None);
        assert!(RosterItem::from_element(&Element::new("item", ns::ROSTER)).is_none());
        assert_eq!(RosterItem::new("example.org").display_name(), "example.org");
        for s in [Subscription::None, Subscription::To, Subscription::From, Subscription::Both, Subscription::Remove] {
            assert_eq!(Subscription::parse(Some(s.as_str())), s);
        }
    }
}
