//! XEP-0280 message carbons and XEP-0313 archives over real connections.

use std::time::Duration;

use jabberwock_proto::{ns, Element};
use jabberwock_tests::{Client, TestServer};

const QUIET: Duration = Duration::from_millis(300);

fn has_body(e: &Element, text: &str) -> bool {
    e.name() == "message" && e.child_text("body", ns::CLIENT).as_deref() == Some(text)
}

/// The message inside a carbon of `direction` (`sent` or `received`), if `e` is one.
fn carbon<'a>(e: &'a Element, direction: &str) -> Option<&'a Element> {
    e.child(direction, ns::CARBONS)?.child("forwarded", ns::FORWARD)?.child("message", ns::CLIENT)
}

async fn enable_carbons(c: &mut Client) {
    let r = c.iq("cb", "<iq type='set' id='cb'><enable xmlns='urn:xmpp:carbons:2'/></iq>").await;
    assert_eq!(r.attr("type"), Some("result"));
}

#[tokio::test]
async fn carbons_copy_sent_and_received_messages_to_other_resources() {
    let server = TestServer::start().await;
    for u in ["alice", "bob"] {
        server.adduser(u, "pw").await;
    }
    let mut phone = Client::login(server.c2s, "alice", "pw", "phone").await;
    let mut desk = Client::login(server.c2s, "alice", "pw", "desk").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    for c in [&mut phone, &mut desk] {
        enable_carbons(c).await;
        c.available().await;
    }
    bob.send("<message to='alice@localhost/phone' type='chat'><body>to the phone</body></message>").await;
    phone.expect("direct", |e| has_body(e, "to the phone")).await;
    let copy = desk.expect("received carbon", |e| carbon(e, "received").is_some()).await;
    assert_eq!(copy.attr("from"), Some("alice@localhost"));
    let inner = carbon(&copy, "received").unwrap();
    assert_eq!(inner.attr("from"), Some("bob@localhost/b"));
    assert_eq!(inner.child_text("body", ns::CLIENT).as_deref(), Some("to the phone"));

    phone.send("<message to='bob@localhost/b' type='chat'><body>from the phone</body></message>").await;
    bob.expect("direct", |e| has_body(e, "from the phone")).await;
    let sent = desk.expect("sent carbon", |e| carbon(e, "sent").is_some()).await;
    assert_eq!(carbon(&sent, "sent").unwrap().attr("to"), Some("bob@localhost/b"));
    phone.expect_none(QUIET, "a copy of its own message", |e| carbon(e, "sent").is_some()).await;

    // Private messages and disabled resources get no copies.
    bob.send("<message to='alice@localhost/phone' type='chat'><body>secret</body><private xmlns='urn:xmpp:carbons:2'/></message>").await;
    phone.expect("direct", |e| has_body(e, "secret")).await;
    desk.expect_none(QUIET, "a private carbon", |e| carbon(e, "received").is_some()).await;
    let r = desk.iq("off", "<iq type='set' id='off'><disable xmlns='urn:xmpp:carbons:2'/></iq>").await;
    assert_eq!(r.attr("type"), Some("result"));
    bob.send("<message to='alice@localhost/phone' type='chat'><body>after disable</body></message>").await;
    phone.expect("direct", |e| has_body(e, "after disable")).await;
    desk.expect_none(QUIET, "a carbon after disable", |e| carbon(e, "received").is_some()).await;
}

/// Sends a MAM query; returns the forwarded messages and the `<fin/>`.
async fn mam_query(c: &mut Client, id: &str, form: &str, rsm: &str) -> (Vec<(String, Element)>, Element) {
    let query = format!(
        "<iq type='set' id='{id}'><query xmlns='urn:xmpp:mam:2' queryid='q-{id}'>\
         <x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>{form}</x>\
         <set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query></iq>"
    );
    c.send(query).await;
    let mut results = Vec::new();
    loop {
        let e = c.expect("results and fin", |e| e.name() == "message" || (e.name() == "iq" && e.attr("id") == Some(id))).await;
        if e.name() == "iq" {
            assert_eq!(e.attr("type"), Some("result"), "{}", e.to_xml_string());
            return (results, e.child("fin", ns::MAM).expect("fin").clone());
        }
        let result = e.child("result", ns::MAM).expect("a MAM result");
        assert_eq!(result.attr("queryid"), Some(format!("q-{id}").as_str()));
        let fwd = result.child("forwarded", ns::FORWARD).expect("forwarded");
        assert!(fwd.child("delay", ns::DELAY).is_some_and(|d| d.attr("stamp").is_some()));
        results.push((result.attr("id").unwrap().to_owned(), fwd.child("message", ns::CLIENT).unwrap().clone()));
    }
}

fn bodies(results: &[(String, Element)]) -> Vec<String> {
    results.iter().map(|(_, m)| m.child_text("body", ns::CLIENT).unwrap_or_default()).collect()
}

#[tokio::test]
async fn the_archive_keeps_both_sides_and_pages_with_rsm() {
    let server = TestServer::start().await;
    for u in ["alice", "bob", "carol"] {
        server.adduser(u, "pw").await;
    }
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    let mut carol = Client::login(server.c2s, "carol", "pw", "c").await;
    let mut stanza_ids = Vec::new();
    for i in 1..=5 {
        let (from, to) = if i % 2 == 1 { (&mut bob, "alice@localhost/a") } else { (&mut alice, "bob@localhost/b") };
        from.send(format!("<message to='{to}' type='chat'><body>m{i}</body></message>")).await;
        let body = format!("m{i}");
        if i % 2 == 1 {
            let m = alice.expect("message", |e| has_body(e, &body)).await;
            let sid = m.child("stanza-id", ns::SID).expect("XEP-0359 stanza-id");
            assert_eq!(sid.attr("by"), Some("alice@localhost"));
            stanza_ids.push(sid.attr("id").unwrap().to_owned());
        } else {
            bob.expect("message", |e| has_body(e, &body)).await;
        }
    }
    // A forged stanza-id claiming to be alice's archive is removed.
    carol.send("<message to='alice@localhost/a' type='chat'><body>forged</body><stanza-id xmlns='urn:xmpp:sid:0' id='fake' by='alice@localhost'/></message>").await;
    let m = alice.expect("forged", |e| has_body(e, "forged")).await;
    assert!(m.children().filter(|c| c.is("stanza-id", ns::SID)).all(|c| c.attr("id") != Some("fake")));

    let with_bob = "<field var='with'><value>bob@localhost</value></field>";
    let (all, fin) = mam_query(&mut alice, "all", with_bob, "").await;
    assert_eq!(bodies(&all), ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(fin.attr("complete"), Some("true"));
    // The ids alice saw on received messages are the archive ids.
    let received_ids: Vec<&str> = all.iter().step_by(2).map(|(id, _)| id.as_str()).collect();
    assert_eq!(received_ids, stanza_ids.iter().map(String::as_str).collect::<Vec<_>>());

    // Paging forward, then the last page.
    let (page1, fin1) = mam_query(&mut alice, "p1", with_bob, "<max>2</max>").await;
    assert_eq!(bodies(&page1), ["m1", "m2"]);
    assert_eq!(fin1.attr("complete"), Some("false"));
    let last = fin1.child("set", ns::RSM).and_then(|s| s.child_text("last", ns::RSM)).unwrap();
    let (page2, _) = mam_query(&mut alice, "p2", with_bob, &format!("<max>2</max><after>{last}</after>")).await;
    assert_eq!(bodies(&page2), ["m3", "m4"]);
    let (tail, _) = mam_query(&mut alice, "p3", with_bob, "<max>2</max><before/>").await;
    assert_eq!(bodies(&tail), ["m4", "m5"]);
    let bad = alice
        .iq("bad", "<iq type='set' id='bad'><query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><after>nope</after></set></query></iq>")
        .await;
    assert!(bad.child("error", ns::CLIENT).and_then(|e| e.child("item-not-found", ns::STANZA_ERRORS)).is_some());

    // bob's archive has the same conversation; carol's message is only in alice's.
    let (bobs, _) = mam_query(&mut bob, "b", "", "").await;
    assert_eq!(bodies(&bobs), ["m1", "m2", "m3", "m4", "m5"]);

    // Preferences: never archive.
    let prefs = alice.iq("pr", "<iq type='set' id='pr'><prefs xmlns='urn:xmpp:mam:2' default='never'/></iq>").await;
    assert_eq!(prefs.child("prefs", ns::MAM).and_then(|p| p.attr("default")), Some("never"));
    bob.send("<message to='alice@localhost/a' type='chat'><body>unarchived</body></message>").await;
    let m = alice.expect("message", |e| has_body(e, "unarchived")).await;
    assert!(m.child("stanza-id", ns::SID).is_none());
    let (after_prefs, _) = mam_query(&mut alice, "np", with_bob, "").await;
    assert_eq!(after_prefs.len(), 5);

    // The account advertises MAM.
    let info = alice.iq("di", "<iq type='get' id='di' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let q = info.child("query", ns::DISCO_INFO).unwrap();
    assert!(q.children().any(|f| f.attr("var") == Some(ns::MAM)));
}

#[tokio::test]
async fn malformed_archive_queries_are_bad_requests() {
    let server = TestServer::start().await;
    server.adduser("alice", "pw").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    for (id, field) in [
        ("unknown", "<field var='favourite-colour'><value>blue</value></field>"),
        ("badtime", "<field var='start'><value>yesterday</value></field>"),
        ("badjid", "<field var='with'><value>@@</value></field>"),
        ("formtype", "<field var='FORM_TYPE' type='hidden'><value>urn:example:other</value></field>"),
    ] {
        let r = alice.iq(id, &format!("<iq type='set' id='{id}'><query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>{field}</x></query></iq>")).await;
        let error = r.child("error", ns::CLIENT).unwrap_or_else(|| panic!("{id}: {}", r.to_xml_string()));
        assert!(
            error.child("bad-request", ns::STANZA_ERRORS).is_some() || error.child("jid-malformed", ns::STANZA_ERRORS).is_some(),
            "{id}: {}",
            r.to_xml_string()
        );
    }
}

/// The operator's archive default applies until an account sets its own preference.
#[tokio::test]
async fn the_operators_archive_default_holds_until_the_account_chooses() {
    let server = TestServer::start_with_tables("", "[limits]\narchive_default = 'never'").await;
    for u in ["alice", "bob"] {
        server.adduser(u, "pw").await;
    }
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    bob.send("<presence/>").await;
    let prefs = bob.iq("p0", "<iq type='get' id='p0'><prefs xmlns='urn:xmpp:mam:2'/></iq>").await;
    assert_eq!(prefs.child("prefs", ns::MAM).and_then(|p| p.attr("default")), Some("never"));
    alice.send("<message to='bob@localhost' type='chat'><body>not kept</body></message>").await;
    bob.expect("the message", |e| has_body(e, "not kept")).await;
    assert_eq!(mam_query(&mut bob, "q1", "", "").await.0.len(), 0);
    let r = bob.iq("p1", "<iq type='set' id='p1'><prefs xmlns='urn:xmpp:mam:2' default='always'/></iq>").await;
    assert_eq!(r.attr("type"), Some("result"));
    alice.send("<message to='bob@localhost' type='chat'><body>kept</body></message>").await;
    bob.expect("the message", |e| has_body(e, "kept")).await;
    assert_eq!(mam_query(&mut bob, "q2", "", "").await.0.len(), 1);
}

/// With `limits.archive_quota`, a message that would take an archive over it is refused
/// (it goes back to its sender with `resource-constraint`) instead of growing the store,
/// whether it is the recipient's or the sender's archive that is full.
#[tokio::test]
async fn a_full_archive_refuses_messages_instead_of_growing() {
    let server = TestServer::start_with_tables("", "[limits]\narchive_quota = 4").await;
    server.adduser("alice", "pw").await;
    server.adduser("bob", "pw").await;
    server.adduser("carol", "pw").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    alice.send("<presence/>").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    // Each message goes into both archives: bob's holds 4 after these, alice's too.
    for i in 0..4 {
        bob.send(format!("<message to='alice@localhost/a' type='chat' id='m{i}'><body>m{i}</body></message>")).await;
        alice.expect("the message", |e| has_body(e, &format!("m{i}"))).await;
    }
    // The quota counts what is stored; an archive query waits for the writer's queue.
    let (held, _) = mam_query(&mut bob, "b", "", "").await;
    assert_eq!(held.len(), 4);
    bob.send("<message to='alice@localhost/a' type='chat' id='over'><body>one too many</body></message>").await;
    let bounce = bob.expect("the refusal", |e| e.attr("id") == Some("over")).await;
    assert_eq!(bounce.attr("type"), Some("error"), "{}", bounce.to_xml_string());
    assert!(bounce.to_xml_string().contains("resource-constraint"), "{}", bounce.to_xml_string());
    alice.expect_none(Duration::from_millis(300), "the refused message", |e| has_body(e, "one too many")).await;
    // carol's archive has room, alice's does not: refused on alice's side this time.
    let mut carol = Client::login(server.c2s, "carol", "pw", "c").await;
    carol.send("<message to='alice@localhost/a' type='chat' id='c1'><body>from carol</body></message>").await;
    let refused = carol.expect("the refusal", |e| e.attr("id") == Some("c1")).await;
    assert_eq!(refused.attr("type"), Some("error"));
    alice.expect_none(Duration::from_millis(300), "carol's refused message", |e| has_body(e, "from carol")).await;
    let (archived, _) = mam_query(&mut alice, "q", "", "").await;
    assert_eq!(archived.len(), 4, "the archive did not grow: {:?}", bodies(&archived));
}

/// A message without a body is archived when a XEP-0334 `<store/>` hint asks for it (a
/// reaction, a receipt, a chat marker: a client loading history needs them to show what
/// happened to a message), never when it has no hint or a `<no-store/>` one.
#[tokio::test]
async fn bodyless_messages_are_archived_only_when_a_store_hint_asks() {
    let server = TestServer::start().await;
    for u in ["alice", "bob"] {
        server.adduser(u, "pw").await;
    }
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    let reaction = "<reactions xmlns='urn:xmpp:reactions:0' id='m1'><reaction>👍</reaction></reactions>";
    for (id, payload) in [
        ("kept", format!("{reaction}<store xmlns='urn:xmpp:hints'/>")),
        ("receipt", "<received xmlns='urn:xmpp:receipts' id='m1'/><store xmlns='urn:xmpp:hints'/>".to_owned()),
        ("nohint", reaction.to_owned()),
        ("nostore", format!("{reaction}<store xmlns='urn:xmpp:hints'/><no-store xmlns='urn:xmpp:hints'/>")),
        ("state", "<composing xmlns='http://jabber.org/protocol/chatstates'/><no-store xmlns='urn:xmpp:hints'/>".to_owned()),
    ] {
        bob.send(format!("<message to='alice@localhost/a' type='chat' id='{id}'>{payload}</message>")).await;
        alice.expect(id, |e| e.attr("id") == Some(id)).await;
    }
    bob.send("<message to='alice@localhost/a' type='headline' id='hl'><store xmlns='urn:xmpp:hints'/></message>").await;
    alice.expect("the headline", |e| e.attr("id") == Some("hl")).await;
    for c in [&mut alice, &mut bob] {
        let (archived, _) = mam_query(c, "q", "", "").await;
        let ids: Vec<_> = archived.iter().map(|(_, m)| m.attr("id").unwrap_or_default().to_owned()).collect();
        assert_eq!(ids, ["kept", "receipt"], "in both archives");
        assert!(archived[0].1.child("reactions", "urn:xmpp:reactions:0").is_some());
    }
}
