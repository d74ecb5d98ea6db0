//! XEP-0352 client state indication and XEP-0191 blocking over real connections.

use std::time::Duration;

use jabberwock_proto::{ns, Element};
use jabberwock_tests::{Client, TestServer};

const QUIET: Duration = Duration::from_millis(300);

fn has_body(e: &Element, text: &str) -> bool {
    e.name() == "message" && e.child_text("body", ns::CLIENT).as_deref() == Some(text)
}

fn presence_from(e: &Element, from: &str) -> bool {
    e.name() == "presence" && e.attr("from") == Some(from)
}

#[tokio::test]
async fn an_inactive_client_gets_presence_only_with_the_next_message() {
    let server = TestServer::start().await;
    for u in ["alice", "bob"] {
        server.adduser(u, "pw").await;
    }
    let (mut alice, f) = Client::connect(server.c2s).await.starttls().await;
    drop(f);
    alice.authenticate_and_bind("alice", "pw", Some("phone")).await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    alice.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    bob.send("<presence to='alice@localhost/phone'><show>away</show></presence>").await;
    bob.send("<presence to='alice@localhost/phone'><show>dnd</show></presence>").await;
    bob.send("<message to='alice@localhost/phone' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>").await;
    alice.expect_none(QUIET, "held traffic", |e| presence_from(e, "bob@localhost/b") || e.name() == "message").await;
    bob.send("<message to='alice@localhost/phone' type='chat'><body>wake up</body></message>").await;
    // The held presence (collapsed to the latest) and chat state come first.
    let p = alice.expect("collapsed presence", |e| presence_from(e, "bob@localhost/b")).await;
    assert_eq!(p.child_text("show", ns::CLIENT).as_deref(), Some("dnd"));
    alice.expect("chat state", |e| e.name() == "message" && e.child_text("body", ns::CLIENT).is_none()).await;
    alice.expect("the message", |e| has_body(e, "wake up")).await;
    // Active again: everything flows at once.
    alice.send("<active xmlns='urn:xmpp:csi:0'/>").await;
    bob.send("<presence to='alice@localhost/phone'><show>chat</show></presence>").await;
    alice.expect("live presence", |e| presence_from(e, "bob@localhost/b")).await;
}

#[tokio::test]
async fn blocking_stops_stanzas_both_ways_and_is_pushed() {
    let server = TestServer::start().await;
    for u in ["alice", "bob"] {
        server.adduser(u, "pw").await;
    }
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let mut alice2 = Client::login(server.c2s, "alice", "pw", "a2").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    bob.send("<presence/>").await;
    alice.send("<presence/>").await;
    alice.send("<presence to='bob@localhost/b'/>").await;
    bob.expect("directed presence", |e| presence_from(e, "alice@localhost/a")).await;

    let r = alice.iq("bl", "<iq type='set' id='bl'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>").await;
    assert_eq!(r.attr("type"), Some("result"));
    let push = alice2.expect("push", |e| e.child("block", ns::BLOCKING).is_some()).await;
    assert_eq!(push.child("block", ns::BLOCKING).unwrap().child("item", ns::BLOCKING).unwrap().attr("jid"), Some("bob@localhost"));
    bob.expect("alice goes unavailable for bob", |e| presence_from(e, "alice@localhost/a") && e.attr("type") == Some("unavailable")).await;

    // bob's message is refused; alice's to bob is stopped with <blocked/>.
    bob.send("<message to='alice@localhost/a' id='in' type='chat'><body>hello?</body></message>").await;
    let err = bob.expect("error", |e| e.attr("id") == Some("in")).await;
    assert!(err.child("error", ns::CLIENT).and_then(|e| e.child("service-unavailable", ns::STANZA_ERRORS)).is_some());
    alice.expect_none(QUIET, "a blocked message", |e| has_body(e, "hello?")).await;
    alice.send("<message to='bob@localhost/b' id='out' type='chat'><body>psst</body></message>").await;
    let err = alice.expect("blocked error", |e| e.attr("id") == Some("out")).await;
    let error = err.child("error", ns::CLIENT).unwrap();
    assert!(error.child("not-acceptable", ns::STANZA_ERRORS).is_some() && error.child("blocked", ns::BLOCKING_ERRORS).is_some());
    // A message that went nowhere is not in the sender's archive.
    alice.send("<iq type='set' id='mam'><query xmlns='urn:xmpp:mam:2'/></iq>").await;
    loop {
        let e = alice.expect("archive results", |e| e.name() == "message" || e.attr("id") == Some("mam")).await;
        if e.name() == "iq" {
            assert_eq!(e.attr("type"), Some("result"));
            break;
        }
        assert!(!e.to_xml_string().contains("psst"), "a blocked message was archived: {}", e.to_xml_string());
    }

    let list = alice.iq("g", "<iq type='get' id='g'><blocklist xmlns='urn:xmpp:blocking'/></iq>").await;
    let items: Vec<&str> = list.child("blocklist", ns::BLOCKING).unwrap().children().filter_map(|i| i.attr("jid")).collect();
    assert_eq!(items, ["bob@localhost"]);

    // Unblock everything: messages flow again.
    let r = alice.iq("ub", "<iq type='set' id='ub'><unblock xmlns='urn:xmpp:blocking'/></iq>").await;
    assert_eq!(r.attr("type"), Some("result"));
    bob.send("<message to='alice@localhost/a' type='chat'><body>again</body></message>").await;
    alice.expect("unblocked", |e| has_body(e, "again")).await;
}
