//! The rooms the user keeps: XEP-0402 bookmarks (a PEP node, one item per room, with
//! change notifications) where the account offers them (`urn:xmpp:bookmarks:1#compat` in
//! its disco#info, XEP-0402 §3.3), else XEP-0048 bookmarks in private XML storage
//! (XEP-0049), written whole on each change. The sidebar's room list comes from here;
//! rooms marked autojoin are joined on sign-in.

use std::collections::BTreeMap;

use jabberwock_proto::Element;

use crate::address;
use crate::ns;
use crate::stanza::{self, ErrorInfo};

/// Bookmarks kept from one list; a bigger one is cut there.
pub const MAX_BOOKMARKS: usize = 1000;

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bookmark {
    pub jid: String,
    pub name: Option<String>,
    pub nick: Option<String>,
    pub autojoin: bool,
    pub password: Option<String>,
}

impl Bookmark {
    /// A XEP-0402 `<conference/>` (the room's JID is the item's id).
    fn from_conference(jid: &str, c: &Element, namespace: &str) -> Option<Bookmark> {
        let jid = address::parse_bare(jid).ok().filter(|j| address::local(j).is_some())?;
        Some(Bookmark {
            jid,
            name: c.attr("name").filter(|n| !n.is_empty()).map(str::to_owned),
            nick: c.child_text("nick", namespace).filter(|n| !n.trim().is_empty()),
            autojoin: matches!(c.attr("autojoin"), Some("true" | "1")),
            password: c.child_text("password", namespace).filter(|p| !p.is_empty()),
        })
    }

    /// `<conference/>` in `namespace`: XEP-0402's, or XEP-0048's with the JID in it.
    fn to_conference(&self, namespace: &str) -> Element {
        let mut c = Element::new("conference", namespace)
            .with_attr("autojoin", if self.autojoin { "true" } else { "false" })
            .with_opt_attr("name", self.name.as_deref());
        if namespace == ns::STORAGE_BOOKMARKS {
            c.set_attr("jid", self.jid.as_str());
        }
        if let Some(nick) = &self.nick {
            c.push(Element::new("nick", namespace).with_text(nick.as_str()));
        }
        if let Some(password) = &self.password {
            c.push(Element::new("password", namespace).with_text(password.as_str()));
        }
        c
    }
}

/// Where this account keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Store {
    /// Not known yet (the account's disco#info is under way).
    #[default]
    Unknown,
    /// XEP-0402: PEP node `urn:xmpp:bookmarks:1`.
    Pep,
    /// XEP-0048 in private XML storage.
    Private,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum BookmarkIq {
    AccountInfo,
    Load,
    /// A change (publish, retract, or the whole private list): what to say if refused.
    Save { what: String },
}

/// What the bookmarks want done.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Send(Element),
    /// The list changed.
    Changed,
    /// Join these bookmarked rooms (autojoin, at sign-in or when another device adds one).
    Join(Vec<Bookmark>),
    Notice(String),
}

pub struct Bookmarks {
    items: BTreeMap<String, Bookmark>,
    pub store: Store,
    /// The list came from the server at least once this session.
    pub loaded: bool,
    pending: Vec<(String, BookmarkIq)>,
    id_prefix: String,
    next_id: u64,
}

impl Bookmarks {
    pub fn new(id_prefix: String) -> Bookmarks {
        Bookmarks { items: BTreeMap::new(), store: Store::Unknown, loaded: false, pending: Vec::new(), id_prefix, next_id: 0 }
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{}b{}", self.id_prefix, self.next_id)
    }

    fn ask(&mut self, iq: Element, what: BookmarkIq) -> Effect {
        let id = self.id();
        self.pending.push((id.clone(), what));
        Effect::Send(iq.with_attr("id", id))
    }

    pub fn all(&self) -> impl Iterator<Item = &Bookmark> {
        self.items.values()
    }

    pub fn get(&self, room: &str) -> Option<&Bookmark> {
        self.items.get(room)
    }

    /// A new session: finds where the account keeps bookmarks, then loads them (and the
    /// autojoin rooms are joined).
    pub fn start(&mut self, account: &str) -> Vec<Effect> {
        self.pending.clear();
        self.loaded = false;
        let iq = stanza::iq("get", "", Some(account)).with_child(Element::new("query", ns::DISCO_INFO));
        vec![self.ask(iq, BookmarkIq::AccountInfo)]
    }

    fn load(&mut self) -> Effect {
        let iq = match self.store {
            Store::Pep => stanza::iq("get", "", None)
                .with_child(Element::new("pubsub", ns::PUBSUB).with_child(Element::new("items", ns::PUBSUB).with_attr("node", ns::BOOKMARKS))),
            _ => stanza::iq("get", "", None).with_child(private_query(Element::new("storage", ns::STORAGE_BOOKMARKS))),
        };
        self.ask(iq, BookmarkIq::Load)
    }

    /// Adds or changes the bookmark of `b.jid`.
    pub fn save(&mut self, b: Bookmark) -> Vec<Effect> {
        if !self.loaded {
            // Writing before reading would lose the list (XEP-0048 replaces it whole).
            return vec![Effect::Notice("Bookmarks are not loaded yet".into())];
        }
        let what = format!("save the bookmark of {}", b.jid);
        self.items.insert(b.jid.clone(), b.clone());
        let iq = match self.store {
            Store::Pep => {
                let item = Element::new("item", ns::PUBSUB).with_attr("id", b.jid.as_str()).with_child(b.to_conference(ns::BOOKMARKS));
                let publish = Element::new("publish", ns::PUBSUB).with_attr("node", ns::BOOKMARKS).with_child(item);
                stanza::iq("set", "", None).with_child(Element::new("pubsub", ns::PUBSUB).with_child(publish).with_child(publish_options()))
            }
            _ => self.private_set(),
        };
        vec![self.ask(iq, BookmarkIq::Save { what }), Effect::Changed]
    }

    /// Removes the bookmark of `room`.
    pub fn remove(&mut self, room: &str) -> Vec<Effect> {
        if !self.loaded || self.items.remove(room).is_none() {
            return Vec::new();
        }
        let what = format!("remove the bookmark of {room}");
        let iq = match self.store {
            Store::Pep => {
                let retract = Element::new("retract", ns::PUBSUB)
                    .with_attr("node", ns::BOOKMARKS)
                    .with_attr("notify", "true")
                    .with_child(Element::new("item", ns::PUBSUB).with_attr("id", room));
                stanza::iq("set", "", None).with_child(Element::new("pubsub", ns::PUBSUB).with_child(retract))
            }
            _ => self.private_set(),
        };
        vec![self.ask(iq, BookmarkIq::Save { what }), Effect::Changed]
    }

    fn private_set(&self) -> Element {
        let mut storage = Element::new("storage", ns::STORAGE_BOOKMARKS);
        for b in self.items.values() {
            storage.push(b.to_conference(ns::STORAGE_BOOKMARKS));
        }
        stanza::iq("set", "", None).with_child(private_query(storage))
    }

    /// Takes the stanza when it is about bookmarks: an answer to one of our requests, or
    /// a PEP notification from our own account (`account`: our bare JID).
    pub fn receive(&mut self, el: &Element, account: &str) -> Option<Vec<Effect>> {
        if el.ns() != ns::CLIENT {
            return None;
        }
        match el.name() {
            "iq" if matches!(el.attr("type"), Some("result" | "error")) => {
                let at = self.pending.iter().position(|(i, _)| Some(i.as_str()) == el.attr("id"))?;
                // Only our own account answers for our bookmarks.
                if el.attr("from").is_some_and(|f| f != account) {
                    return None;
                }
                let (_, what) = self.pending.remove(at);
                Some(self.on_iq(what, el))
            }
            "message" => {
                let items = el.child("event", ns::PUBSUB_EVENT)?.child("items", ns::PUBSUB_EVENT)?;
                if items.attr("node") != Some(ns::BOOKMARKS) {
                    return None;
                }
                // XEP-0163: our own account publishes our bookmarks; anyone else's
                // "bookmarks" are not ours.
                if el.attr("from").is_some_and(|f| f != account) {
                    return Some(Vec::new());
                }
                Some(self.on_event(items))
            }
            _ => None,
        }
    }

    fn on_iq(&mut self, what: BookmarkIq, el: &Element) -> Vec<Effect> {
        let error = (el.attr("type") == Some("error")).then(|| ErrorInfo::from_stanza(el));
        let payload = el.first_child().filter(|_| error.is_none());
        match what {
            BookmarkIq::AccountInfo => {
                let compat = payload.is_some_and(|q| {
                    q.children().any(|f| f.is("feature", ns::DISCO_INFO) && f.attr("var") == Some(ns::BOOKMARKS_COMPAT))
                });
                self.store = if compat { Store::Pep } else { Store::Private };
                vec![self.load()]
            }
            BookmarkIq::Load => {
                let list: Vec<Bookmark> = match self.store {
                    Store::Pep => payload
                        .and_then(|p| p.child("items", ns::PUBSUB))
                        .iter()
                        .flat_map(|items| items.children())
                        .filter_map(|i| Bookmark::from_conference(i.attr("id")?, i.child("conference", ns::BOOKMARKS)?, ns::BOOKMARKS))
                        .take(MAX_BOOKMARKS)
                        .collect(),
                    _ => payload
                        .and_then(|q| q.child("storage", ns::STORAGE_BOOKMARKS))
                        .iter()
                        .flat_map(|s| s.children())
                        .filter(|c| c.is("conference", ns::STORAGE_BOOKMARKS))
                        .filter_map(|c| Bookmark::from_conference(c.attr("jid")?, c, ns::STORAGE_BOOKMARKS))
                        .take(MAX_BOOKMARKS)
                        .collect(),
                };
                // No node yet (item-not-found) is an empty list; other errors are told.
                let mut out = Vec::new();
                if let Some(e) = error.filter(|e| e.condition != "item-not-found") {
                    out.push(Effect::Notice(format!("Could not load your bookmarks: {}", e.describe())));
                }
                self.items = list.into_iter().map(|b| (b.jid.clone(), b)).collect();
                self.loaded = true;
                let autojoin: Vec<Bookmark> = self.items.values().filter(|b| b.autojoin).cloned().collect();
                out.push(Effect::Changed);
                if !autojoin.is_empty() {
                    out.push(Effect::Join(autojoin));
                }
                out
            }
            BookmarkIq::Save { what } => match error {
                Some(e) => vec![Effect::Notice(format!("Could not {what}: {}", e.describe()))],
                None => Vec::new(),
            },
        }
    }

    /// XEP-0402 §4: another device (or this one) changed a bookmark.
    fn on_event(&mut self, items: &Element) -> Vec<Effect> {
        let mut join = Vec::new();
        for change in items.children() {
            let Some(id) = change.attr("id") else { continue };
            if change.is("retract", ns::PUBSUB_EVENT) {
                self.items.remove(id);
            } else if let Some(b) = change.child("conference", ns::BOOKMARKS).and_then(|c| Bookmark::from_conference(id, c, ns::BOOKMARKS)) {
                if self.items.len() >= MAX_BOOKMARKS && !self.items.contains_key(&b.jid) {
                    continue;
                }
                let newly_autojoin = b.autojoin && !self.items.get(&b.jid).is_some_and(|old| old.autojoin);
                if newly_autojoin {
                    join.push(b.clone());
                }
                self.items.insert(b.jid.clone(), b);
            }
        }
        let mut out = vec![Effect::Changed];
        if !join.is_empty() {
            out.push(Effect::Join(join));
        }
        out
    }
}

fn private_query(payload: Element) -> Element {
    Element::new("query", ns::PRIVATE).with_child(payload)
}

/// XEP-0402 §3.1: the node's configuration, asked for with every publish (XEP-0223).
fn publish_options() -> Element {
    let field = |var: &str, value: &str| {
        Element::new("field", ns::DATA_FORMS).with_attr("var", var).with_child(Element::new("value", ns::DATA_FORMS).with_text(value))
    };
    let form = Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "submit")
        .with_child(field("FORM_TYPE", ns::PUBSUB_PUBLISH_OPTIONS).with_attr("type", "hidden"))
        .with_child(field("pubsub#persist_items", "true"))
        .with_child(field("pubsub#max_items", "max"))
        .with_child(field("pubsub#send_last_published_item", "never"))
        .with_child(field("pubsub#access_model", "whitelist"));
    Element::new("publish-options", ns::PUBSUB).with_child(form)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::tests::parse;

    const ME: &str = "user@localhost";

    fn sent(effects: &[Effect]) -> Vec<&Element> {
        effects.iter().filter_map(|e| if let Effect::Send(el) = e { Some(el) } else { None }).collect()
    }

    fn answer(b: &mut Bookmarks, effects: &[Effect], payload: &str) -> Vec<Effect> {
        let id = sent(effects)[0].attr("id").unwrap().to_owned();
        b.receive(&parse(&format!("<iq xmlns='jabber:client' type='result' id='{id}' from='{ME}'>{payload}</iq>")), ME).unwrap()
    }

    /// Bookmarks loaded from a server with (`pep`) or without XEP-0402.
    fn loaded(pep: bool, list: &str) -> (Bookmarks, Vec<Effect>) {
        let mut b = Bookmarks::new("t".into());
        let ev = b.start(ME);
        assert_eq!(sent(&ev)[0].attr("to"), Some(ME));
        let feature = if pep { "<feature var='urn:xmpp:bookmarks:1#compat'/>" } else { "" };
        let ev = answer(&mut b, &ev, &format!("<query xmlns='http://jabber.org/protocol/disco#info'>{feature}</query>"));
        let load = sent(&ev)[0].clone();
        if pep {
            assert_eq!(load.child("pubsub", ns::PUBSUB).unwrap().child("items", ns::PUBSUB).unwrap().attr("node"), Some(ns::BOOKMARKS));
        } else {
            assert!(load.child("query", ns::PRIVATE).unwrap().child("storage", ns::STORAGE_BOOKMARKS).is_some());
        }
        let ev = answer(&mut b, &ev, list);
        assert!(b.loaded);
        (b, ev)
    }

    #[test]
    fn pep_bookmarks_load_and_autojoin() {
        let (b, ev) = loaded(
            true,
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:bookmarks:1'>\
             <item id='team@conference.localhost'><conference xmlns='urn:xmpp:bookmarks:1' name='Team' autojoin='true'>\
             <nick>ann</nick><password>pw</password></conference></item>\
             <item id='quiet@conference.localhost'><conference xmlns='urn:xmpp:bookmarks:1'/></item>\
             <item id='not a jid'><conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'/></item>\
             <item id='conference.localhost'><conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'/></item>\
             <item id='odd@conference.localhost'><something-else xmlns='urn:example'/></item></items></pubsub>",
        );
        assert_eq!(b.store, Store::Pep);
        assert_eq!(b.all().map(|b| b.jid.as_str()).collect::<Vec<_>>(), ["quiet@conference.localhost", "team@conference.localhost"]);
        let team = Bookmark {
            jid: "team@conference.localhost".into(),
            name: Some("Team".into()),
            nick: Some("ann".into()),
            autojoin: true,
            password: Some("pw".into()),
        };
        assert_eq!(ev, [Effect::Changed, Effect::Join(vec![team])]);
    }

    #[test]
    fn an_account_without_the_node_has_no_bookmarks() {
        let mut b = Bookmarks::new("t".into());
        let ev = b.start(ME);
        let ev = answer(&mut b, &ev, "<query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:xmpp:bookmarks:1#compat'/></query>");
        let id = sent(&ev)[0].attr("id").unwrap().to_owned();
        let ev = b
            .receive(
                &parse(&format!(
                    "<iq xmlns='jabber:client' type='error' id='{id}'><error type='cancel'>\
                     <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                )),
                ME,
            )
            .unwrap();
        assert_eq!(ev, [Effect::Changed], "no notice: there is just nothing yet");
        assert!(b.loaded && b.all().next().is_none());
    }

    #[test]
    fn adding_and_removing_with_pep() {
        let (mut b, _) = loaded(true, "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:bookmarks:1'/></pubsub>");
        let ev = b.save(Bookmark { jid: "lobby@conference.localhost".into(), autojoin: true, nick: Some("ann".into()), ..Default::default() });
        let pubsub = sent(&ev)[0].child("pubsub", ns::PUBSUB).unwrap().clone();
        let item = pubsub.child("publish", ns::PUBSUB).unwrap().child("item", ns::PUBSUB).unwrap();
        assert_eq!(item.attr("id"), Some("lobby@conference.localhost"));
        let c = item.child("conference", ns::BOOKMARKS).unwrap();
        assert_eq!((c.attr("autojoin"), c.child_text("nick", ns::BOOKMARKS).as_deref()), (Some("true"), Some("ann")));
        let options = pubsub.child("publish-options", ns::PUBSUB).unwrap().child("x", ns::DATA_FORMS).unwrap();
        let access = options.children().find(|f| f.attr("var") == Some("pubsub#access_model")).unwrap();
        assert_eq!(access.child_text("value", ns::DATA_FORMS).as_deref(), Some("whitelist"), "nobody else reads them");
        assert!(b.get("lobby@conference.localhost").is_some());

        let ev = b.remove("lobby@conference.localhost");
        let retract = sent(&ev)[0].child("pubsub", ns::PUBSUB).unwrap().child("retract", ns::PUBSUB).unwrap().clone();
        assert_eq!(retract.child("item", ns::PUBSUB).unwrap().attr("id"), Some("lobby@conference.localhost"));
        let id = sent(&ev)[0].attr("id").unwrap().to_owned();
        let ev = b
            .receive(
                &parse(&format!(
                    "<iq xmlns='jabber:client' type='error' id='{id}'><error type='wait'>\
                     <resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                )),
                ME,
            )
            .unwrap();
        assert!(matches!(&ev[0], Effect::Notice(n) if n.starts_with("Could not remove the bookmark")));
        assert!(b.remove("never@conference.localhost").is_empty());
    }

    #[test]
    fn private_storage_where_the_server_has_no_pep_bookmarks() {
        let (mut b, ev) = loaded(
            false,
            "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>\
             <conference jid='old@conference.localhost' autojoin='1' name='Old'><nick>ann</nick></conference>\
             <url name='not a room' url='https://example.org'/></storage></query>",
        );
        assert_eq!(b.store, Store::Private);
        assert!(matches!(&ev[1], Effect::Join(j) if j[0].jid == "old@conference.localhost"));
        let ev = b.save(Bookmark { jid: "new@conference.localhost".into(), ..Default::default() });
        let storage = sent(&ev)[0].child("query", ns::PRIVATE).unwrap().child("storage", ns::STORAGE_BOOKMARKS).unwrap().clone();
        let rooms: Vec<_> = storage.children().map(|c| (c.attr("jid").unwrap(), c.attr("autojoin").unwrap())).collect();
        assert_eq!(rooms, [("new@conference.localhost", "false"), ("old@conference.localhost", "true")], "the whole list, every time");
        let ev = b.remove("old@conference.localhost");
        let storage = sent(&ev)[0].child("query", ns::PRIVATE).unwrap().child("storage", ns::STORAGE_BOOKMARKS).unwrap().clone();
        assert_eq!(storage.children().count(), 1);
    }

    #[test]
    fn nothing_is_written_before_the_list_is_read() {
        let mut b = Bookmarks::new("t".into());
        b.start(ME);
        let ev = b.save(Bookmark { jid: "x@conference.localhost".into(), ..Default::default() });
        assert!(sent(&ev).is_empty());
    }

    #[test]
    fn notifications_from_our_account_only() {
        let (mut b, _) = loaded(true, "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:bookmarks:1'/></pubsub>");
        let event = |from: &str, body: &str| {
            parse(&format!(
                "<message xmlns='jabber:client' from='{from}' type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'>\
                 <items node='urn:xmpp:bookmarks:1'>{body}</items></event></message>"
            ))
        };
        let added = "<item id='new@conference.localhost'><conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'/></item>";
        assert_eq!(b.receive(&event("mallory@localhost", added), ME), Some(Vec::new()));
        assert!(b.get("new@conference.localhost").is_none());
        let ev = b.receive(&event(ME, added), ME).unwrap();
        assert!(matches!(&ev[1], Effect::Join(j) if j[0].jid == "new@conference.localhost"), "another device added it to autojoin");
        let ev = b.receive(&event(ME, added), ME).unwrap();
        assert_eq!(ev, [Effect::Changed], "the same again: not joined twice");
        b.receive(&event(ME, "<retract id='new@conference.localhost'/>"), ME);
        assert!(b.get("new@conference.localhost").is_none());
        // Other PEP nodes are not ours to handle.
        let avatar = parse(&format!(
            "<message xmlns='jabber:client' from='{ME}'><event xmlns='http://jabber.org/protocol/pubsub#event'>\
             <items node='urn:xmpp:avatar:metadata'/></event></message>"
        ));
        assert!(b.receive(&avatar, ME).is_none());
    }

    #[test]
    fn answers_from_others_are_not_believed() {
        let mut b = Bookmarks::new("t".into());
        let ev = b.start(ME);
        let id = sent(&ev)[0].attr("id").unwrap().to_owned();
        let forged = parse(&format!(
            "<iq xmlns='jabber:client' type='result' id='{id}' from='mallory@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ));
        assert!(b.receive(&forged, ME).is_none());
        assert_eq!(b.store, Store::Unknown);
    }
}
