//! Storage quotas and caches that outsiders can grow: roster items and pending
//! subscription requests, PEP nodes, items and item size, paged PEP reads, and the
//! capabilities and account caches. Each cap is set small and pushed past.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jabberwock::modules::blocking::Blocking;
use jabberwock::modules::caps::Caps;
use jabberwock::server::Server;
use jabberwock_proto::{ns, reader, Element, Limits};
use jabberwock_tests::{Client, TestServer};
use sha1::Digest;

const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

fn server_of(t: &TestServer) -> Arc<Server> {
    t.running.as_ref().expect("running").server.clone()
}

/// The defined condition of an error reply, such as `resource-constraint`.
fn condition(reply: &Element) -> Option<String> {
    reply.child("error", ns::CLIENT)?.children().find(|c| c.ns() == STANZAS && c.name() != "text").map(|c| c.name().to_owned())
}

fn roster_set(id: &str, jid: &str, name: &str) -> String {
    format!("<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'><item jid='{jid}' name='{name}'/></query></iq>")
}

async fn roster_jids(c: &mut Client) -> Vec<String> {
    let r = c.iq("get-roster", "<iq type='get' id='get-roster'><query xmlns='jabber:iq:roster'/></iq>").await;
    let q = r.child("query", ns::ROSTER).expect("roster");
    q.children().filter_map(|i| i.attr("jid")).map(str::to_owned).collect()
}

#[tokio::test]
async fn a_full_roster_refuses_new_contacts_and_keeps_its_own() {
    let server = TestServer::start_with_tables("", "[limits]\nmax_roster_items = 3\n").await;
    server.adduser("alice", "pw").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    alice.send("<presence/>").await;
    // Asking for the roster makes this resource get roster pushes.
    assert!(roster_jids(&mut alice).await.is_empty());
    for i in 0..3 {
        let r = alice.iq(&format!("add{i}"), &roster_set(&format!("add{i}"), &format!("friend{i}@example.org"), "Friend")).await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
    }

    let r = alice.iq("add3", &roster_set("add3", "friend3@example.org", "One too many")).await;
    assert_eq!(r.attr("type"), Some("error"));
    assert_eq!(condition(&r).as_deref(), Some("resource-constraint"), "{}", r.to_xml_string());

    // A subscription request to a new contact would create an item: refused, to the
    // sending resource, and nothing goes out.
    alice.send("<presence to='stranger@example.org' type='subscribe'/>").await;
    let e = alice.expect("presence error", |e| e.name() == "presence" && e.attr("type") == Some("error")).await;
    assert_eq!(e.attr("from"), Some("stranger@example.org"));
    assert_eq!(condition(&e).as_deref(), Some("resource-constraint"), "{}", e.to_xml_string());
    assert_eq!(roster_jids(&mut alice).await, ["friend0@example.org", "friend1@example.org", "friend2@example.org"]);

    // Existing items keep working: renamed, subscribed to, removed; then there is room.
    let r = alice.iq("rename", &roster_set("rename", "friend1@example.org", "Renamed")).await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
    alice.send("<presence to='friend2@example.org' type='subscribe'/>").await;
    alice
        .expect("roster push with ask", |e| {
            let item = e.child("query", ns::ROSTER).and_then(|q| q.child("item", ns::ROSTER));
            item.is_some_and(|i| i.attr("jid") == Some("friend2@example.org") && i.attr("ask") == Some("subscribe"))
        })
        .await;
    let r = alice.iq("remove", "<iq type='set' id='remove'><query xmlns='jabber:iq:roster'><item jid='friend0@example.org' subscription='remove'/></query></iq>").await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
    let r = alice.iq("add4", &roster_set("add4", "friend3@example.org", "Now there is room")).await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
    alice.ping().await;
}

/// A subscription request as federation hands it to routing: from a remote domain that
/// can mint any number of JIDs.
async fn remote_subscribe(server: &Arc<Server>, from: &str, to: &str) {
    let xml = format!("<presence xmlns='jabber:client' from='{from}' to='{to}' type='subscribe'/>");
    let st = reader::parse_stanza(xml.as_bytes(), &Limits::unlimited()).expect("stanza");
    jabberwock::routing::route(server, st).await;
}

#[tokio::test]
async fn pending_subscription_requests_beyond_the_cap_are_refused_without_being_stored() {
    // Not federating: the error answers to remote.example go nowhere.
    let server = TestServer::start_with_tables("", "[limits]\nmax_pending_subscriptions = 3\n[s2s]\nenabled = false\n").await;
    for u in ["alice", "bob"] {
        server.adduser(u, "pw").await;
    }
    let s = server_of(&server);
    for i in 0..10 {
        remote_subscribe(&s, &format!("spammer{i}@remote.example"), "alice@localhost").await;
    }
    // Asking again does not take another place.
    remote_subscribe(&s, "spammer0@remote.example", "alice@localhost").await;

    // A local contact beyond the cap is told why.
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    bob.send("<presence/>").await;
    bob.send("<presence to='alice@localhost' type='subscribe'/>").await;
    let e = bob.expect("presence error", |e| e.name() == "presence" && e.attr("type") == Some("error")).await;
    assert_eq!(e.attr("from"), Some("alice@localhost"));
    assert_eq!(condition(&e).as_deref(), Some("resource-constraint"), "{}", e.to_xml_string());

    // Alice finds the first three waiting at login, and only those.
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    alice.send("<presence/>").await;
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let p = alice.expect("a pending request", |e| e.name() == "presence" && e.attr("type") == Some("subscribe")).await;
        waiting.push(p.attr("from").unwrap().to_owned());
    }
    waiting.sort();
    assert_eq!(waiting, ["spammer0@remote.example", "spammer1@remote.example", "spammer2@remote.example"]);
    alice.expect_none(Duration::from_millis(500), "a request beyond the cap", |e| e.name() == "presence" && e.attr("type") == Some("subscribe")).await;

    // Answering one makes room for bob, whose request now reaches her.
    alice.send("<presence to='spammer1@remote.example' type='unsubscribed'/>").await;
    alice.ping().await;
    bob.send("<presence to='alice@localhost' type='subscribe'/>").await;
    alice.expect("bob's request", |e| e.name() == "presence" && e.attr("type") == Some("subscribe") && e.attr("from") == Some("bob@localhost")).await;
    alice.send("<presence to='bob@localhost' type='subscribed'/>").await;
    bob.expect("approval", |e| e.name() == "presence" && e.attr("type") == Some("subscribed")).await;
}

fn publish(id: &str, node: &str, item_id: &str, payload: &str, max_items: Option<&str>) -> String {
    let options = max_items.map_or(String::new(), |m| {
        format!("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#max_items'><value>{m}</value></field></x></publish-options>")
    });
    format!("<iq type='set' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{node}'><item id='{item_id}'>{payload}</item></publish>{options}</pubsub></iq>")
}

fn note(text: &str) -> String {
    format!("<note xmlns='urn:example:note'>{text}</note>")
}

/// The ids of an `items` answer, in order, and its result set's `<last/>` if any.
fn item_ids(reply: &Element) -> (Vec<String>, Option<String>) {
    let pubsub = reply.child("pubsub", ns::PUBSUB).unwrap_or_else(|| panic!("no pubsub: {}", reply.to_xml_string()));
    let items = pubsub.child("items", ns::PUBSUB).expect("items");
    let ids = items.children().filter_map(|i| i.attr("id")).map(str::to_owned).collect();
    (ids, pubsub.child("set", ns::RSM).and_then(|s| s.child_text("last", ns::RSM)))
}

#[tokio::test]
async fn pep_caps_nodes_per_account_and_item_size() {
    let server = TestServer::start_with_tables("", "[pep]\nmax_nodes = 2\nmax_item_bytes = 1000\n").await;
    server.adduser("alice", "pw").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    for (i, node) in ["urn:example:one", "urn:example:two"].iter().enumerate() {
        let r = alice.iq(&format!("p{i}"), &publish(&format!("p{i}"), node, "x", &note("hi"), None)).await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
    }
    let r = alice.iq("p3", &publish("p3", "urn:example:three", "x", &note("hi"), None)).await;
    assert_eq!(condition(&r).as_deref(), Some("resource-constraint"), "{}", r.to_xml_string());
    let r = alice.iq("get3", "<iq type='get' id='get3'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:example:three'/></pubsub></iq>").await;
    assert_eq!(condition(&r).as_deref(), Some("item-not-found"), "the refused node was not created");

    // Existing nodes take new items; deleting one makes room.
    let r = alice.iq("p4", &publish("p4", "urn:example:one", "y", &note("again"), None)).await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
    let r = alice.iq("del", "<iq type='set' id='del'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='urn:example:two'/></pubsub></iq>").await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
    let r = alice.iq("p5", &publish("p5", "urn:example:three", "x", &note("hi"), None)).await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());

    // XEP-0060 §7.1.3.4: an item over the size limit.
    let r = alice.iq("big", &publish("big", "urn:example:one", "big", &note(&"x".repeat(2000)), None)).await;
    assert_eq!(condition(&r).as_deref(), Some("not-acceptable"), "{}", r.to_xml_string());
    let app = r.child("error", ns::CLIENT).and_then(|e| e.child("payload-too-big", ns::PUBSUB_ERRORS));
    assert!(app.is_some(), "{}", r.to_xml_string());
    let r = alice.iq("get1", "<iq type='get' id='get1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:example:one'/></pubsub></iq>").await;
    assert_eq!(item_ids(&r).0, ["y"], "the big item was not stored and the node kept its newest item");
    alice.ping().await;
}

#[tokio::test]
async fn pep_nodes_keep_their_newest_items_and_are_read_a_page_at_a_time() {
    let server = TestServer::start_with_tables("", "[pep]\nmax_items = 150\n").await;
    server.adduser("alice", "pw").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    const NODE: &str = "urn:example:feed";
    // Asking for "max" keeps pep.max_items: 150 of the 200 published.
    for i in 0..200 {
        let r = alice.iq(&format!("p{i}"), &publish(&format!("p{i}"), NODE, &format!("i{i}"), &note(&i.to_string()), Some("max"))).await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
    }
    let newest_first = |from: usize, to: usize| (to..from).rev().map(|i| format!("i{i}")).collect::<Vec<_>>();

    // Without max_items: the newest page, and a result set to go further.
    let get = |id: &str, inner: &str| format!("<iq type='get' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>{inner}</pubsub></iq>");
    let r = alice.iq("all", &get("all", &format!("<items node='{NODE}'/>"))).await;
    let (ids, last) = item_ids(&r);
    assert_eq!(ids, newest_first(200, 100), "one page of 100, newest first");
    assert_eq!(last.as_deref(), Some("i100"));

    // XEP-0059: the next page is after the last item of this one.
    let r = alice.iq("next", &get("next", &format!("<items node='{NODE}'/><set xmlns='http://jabber.org/protocol/rsm'><after>i100</after></set>"))).await;
    let (ids, _) = item_ids(&r);
    assert_eq!(ids, newest_first(100, 50), "the 50 oldest kept items; i0..i49 were dropped");

    // max_items: the newest N, no more than a page.
    let r = alice.iq("three", &get("three", &format!("<items node='{NODE}' max_items='3'/>"))).await;
    assert_eq!(item_ids(&r).0, newest_first(200, 197));
    let r = alice.iq("many", &get("many", &format!("<items node='{NODE}' max_items='100000'/>"))).await;
    assert_eq!(item_ids(&r).0.len(), 100);

    // Items by id, however old; a dropped one is gone.
    let r = alice.iq("byid", &get("byid", &format!("<items node='{NODE}'><item id='i50'/><item id='i10'/><item id='i199'/></items>"))).await;
    assert_eq!(item_ids(&r).0, ["i50", "i199"]);
}

/// XEP-0115 §5.1 for an identity `client/pc` and these features.
fn caps_ver(features: &[String]) -> String {
    let mut sorted = features.to_vec();
    sorted.sort();
    let s: String = std::iter::once("client/pc//<".to_owned()).chain(sorted.iter().map(|f| format!("{f}<"))).collect();
    base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(s.as_bytes()))
}

#[tokio::test]
async fn the_caps_cache_stays_bounded_while_clients_present_new_versions() {
    let server = TestServer::start_with_tables("", "[limits]\ncaps_cache_entries = 3\n").await;
    server.adduser("alice", "pw").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let s = server_of(&server);
    let cached = || s.modules.get::<Caps>().expect("caps module").cached_versions();
    let features = |i: usize| vec![format!("urn:example:feature:{i}"), "http://jabber.org/protocol/caps".to_owned()];
    let present = |i: usize| format!("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:example:client' ver='{}'/></presence>", caps_ver(&features(i)));
    let is_disco = |e: &Element| e.name() == "iq" && e.child("query", ns::DISCO_INFO).is_some();
    for i in 0..10 {
        alice.send(present(i)).await;
        let q = alice.expect("disco#info", is_disco).await;
        let node = q.child("query", ns::DISCO_INFO).unwrap().attr("node").unwrap().to_owned();
        let feats: String = features(i).iter().map(|f| format!("<feature var='{f}'/>")).collect();
        alice
            .send(format!(
                "<iq type='result' id='{}' to='{}'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}'><identity category='client' type='pc'/>{feats}</query></iq>",
                q.attr("id").unwrap(),
                q.attr("from").unwrap()
            ))
            .await;
        alice.ping().await;
        assert!(cached() <= 3, "{} versions cached", cached());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cached(), 3, "verified versions are cached up to the bound");
    // A recent version is still known: presenting it asks nothing. The oldest was
    // evicted: it is asked for again.
    alice.send(present(8)).await;
    alice.expect_none(Duration::from_millis(500), "a disco#info for a cached version", is_disco).await;
    alice.send(present(0)).await;
    alice.expect("disco#info for an evicted version", is_disco).await;
    alice.ping().await;
}

#[tokio::test]
async fn the_account_cache_stays_bounded_when_strangers_name_any_local_user() {
    let server = TestServer::start_with_tables("", "[limits]\naccount_cache_entries = 10\n").await;
    server.adduser("alice", "pw").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let s = server_of(&server);
    let cached = || s.modules.get::<Blocking>().expect("blocking module").cached_lists();
    // Every stanza checks the blocklists of both parties, existing accounts or not.
    for i in 0..100 {
        alice.send(format!("<message to='nobody{i}@localhost' type='chat'><body>hi</body></message>")).await;
    }
    alice.ping().await;
    assert!(cached() <= 10, "{} blocklists cached", cached());
    // Blocking still works for the account at hand.
    let r = alice.iq("block", "<iq type='set' id='block'><block xmlns='urn:xmpp:blocking'><item jid='nobody5@localhost'/></block></iq>").await;
    assert_eq!(r.attr("type"), Some("result"));
    alice.send("<message to='nobody5@localhost' id='m' type='chat'><body>hi</body></message>").await;
    let e = alice.expect("blocked error", |e| e.name() == "message" && e.attr("type") == Some("error")).await;
    assert_eq!(condition(&e).as_deref(), Some("not-acceptable"), "{}", e.to_xml_string());
}
