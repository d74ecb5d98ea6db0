//! XEP-0163 PEP with XEP-0223 publish-options and XEP-0115 +notify, over real connections.

use std::time::Duration;

use jabberwock_proto::{ns, Element};
use jabberwock_tests::{befriend, Client, TestServer};

const NODE: &str = "urn:xmpp:avatar:metadata";

/// Sends available presence with capabilities and answers the server's disco#info
/// question with `features`.
async fn available_with_caps(c: &mut Client, ver: &str, features: &[&str]) {
    c.send(format!("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/test' ver='{ver}'/></presence>")).await;
    let q = c.expect("disco#info from the server", |e| e.name() == "iq" && e.child("query", ns::DISCO_INFO).is_some()).await;
    let node = q.child("query", ns::DISCO_INFO).unwrap().attr("node").unwrap().to_owned();
    assert_eq!(node, format!("https://example.org/test#{ver}"));
    let feats: String = features.iter().map(|f| format!("<feature var='{f}'/>")).collect();
    c.send(format!(
        "<iq type='result' id='{}' to='{}'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}'><identity category='client' type='pc'/>{feats}</query></iq>",
        q.attr("id").unwrap(),
        q.attr("from").unwrap()
    ))
    .await;
}

fn event_item(e: &Element) -> Option<&Element> {
    e.child("event", ns::PUBSUB_EVENT)?.child("items", ns::PUBSUB_EVENT)?.child("item", ns::PUBSUB_EVENT)
}

fn publish(iq_id: &str, item_id: &str, node: &str, payload: &str, options: &str) -> String {
    let options = if options.is_empty() {
        String::new()
    } else {
        format!("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>{options}</x></publish-options>")
    };
    format!("<iq type='set' id='{iq_id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{node}'><item id='{item_id}'>{payload}</item></publish>{options}</pubsub></iq>")
}

#[tokio::test]
async fn publish_notifies_interested_contacts_and_enforces_access() {
    let server = TestServer::start().await;
    for u in ["alice", "bob", "carol"] {
        server.adduser(u, "pw").await;
    }
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    alice.send("<presence/>").await;
    bob.send("<presence/>").await;
    befriend(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;
    available_with_caps(&mut bob, "unverified1", &[&format!("{NODE}+notify")]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let payload = "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='abc' bytes='10' type='image/png'/></metadata>";
    let r = alice.iq("p1", &publish("p1", "p1", NODE, payload, "")).await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
    let ev = bob.expect("notification", |e| event_item(e).is_some()).await;
    assert_eq!(ev.attr("from"), Some("alice@localhost"));
    let item = event_item(&ev).unwrap();
    assert_eq!(item.attr("id"), Some("p1"));
    assert!(item.child("metadata", NODE).is_some());

    // Items: bob (subscribed) may read, carol may not (access model presence).
    let got = bob
        .iq("i", &format!("<iq type='get' id='i' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{NODE}'/></pubsub></iq>"))
        .await;
    let items = got.child("pubsub", ns::PUBSUB).and_then(|p| p.child("items", ns::PUBSUB)).expect("items");
    assert_eq!(items.children().count(), 1);
    let mut carol = Client::login(server.c2s, "carol", "pw", "c").await;
    let denied = carol
        .iq("i", &format!("<iq type='get' id='i' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{NODE}'/></pubsub></iq>"))
        .await;
    let error = denied.child("error", ns::CLIENT).expect("error");
    assert!(error.child("presence-subscription-required", ns::PUBSUB_ERRORS).is_some(), "{}", denied.to_xml_string());

    // A resource that comes online later gets the last item.
    let mut bob2 = Client::login(server.c2s, "bob", "pw", "b2").await;
    available_with_caps(&mut bob2, "unverified2", &[&format!("{NODE}+notify")]).await;
    let last = bob2.expect("last item", |e| event_item(e).is_some()).await;
    assert_eq!(event_item(&last).unwrap().attr("id"), Some("p1"));
}

#[tokio::test]
async fn publish_options_are_preconditions_and_open_nodes_are_public() {
    let server = TestServer::start().await;
    for u in ["alice", "carol"] {
        server.adduser(u, "pw").await;
    }
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let devices = "eu.siacs.conversations.axolotl.devicelist";
    let open = "<field var='pubsub#access_model'><value>open</value></field>";
    let payload = "<list xmlns='eu.siacs.conversations.axolotl'><device id='1'/></list>";
    let r = alice.iq("d1", &publish("d1", "current", devices, payload, open)).await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
    // Same options: fine. Different ones: precondition-not-met.
    assert_eq!(alice.iq("d2", &publish("d2", "current", devices, payload, open)).await.attr("type"), Some("result"));
    let whitelist = "<field var='pubsub#access_model'><value>whitelist</value></field>";
    let conflict = alice.iq("d3", &publish("d3", "current", devices, payload, whitelist)).await;
    let error = conflict.child("error", ns::CLIENT).expect("error");
    assert!(error.child("conflict", ns::STANZA_ERRORS).is_some() && error.child("precondition-not-met", ns::PUBSUB_ERRORS).is_some());

    // Anyone reads an open node; max_items=1 by default keeps one item.
    let mut carol = Client::login(server.c2s, "carol", "pw", "c").await;
    let got = carol
        .iq("g", &format!("<iq type='get' id='g' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{devices}'/></pubsub></iq>"))
        .await;
    let items = got.child("pubsub", ns::PUBSUB).and_then(|p| p.child("items", ns::PUBSUB)).expect("items");
    assert_eq!(items.children().count(), 1);
    // Nobody else publishes to alice's nodes.
    let forbidden = carol
        .iq("x", &format!("<iq type='set' id='x' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{devices}'><item>{payload}</item></publish></pubsub></iq>"))
        .await;
    assert_eq!(forbidden.attr("type"), Some("error"));
    // Retract, then the node is empty.
    let r = alice
        .iq("rt", &format!("<iq type='set' id='rt'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='{devices}' notify='true'><item id='current'/></retract></pubsub></iq>"))
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    let got = carol
        .iq("g2", &format!("<iq type='get' id='g2' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{devices}'/></pubsub></iq>"))
        .await;
    assert_eq!(got.child("pubsub", ns::PUBSUB).and_then(|p| p.child("items", ns::PUBSUB)).unwrap().children().count(), 0);
}

#[tokio::test]
async fn a_publish_beyond_the_stanza_limit_is_a_policy_violation() {
    let server = TestServer::start_with_tables("", "[limits]\nmax_stanza_bytes = 20000\n").await;
    server.adduser("alice", "pw").await;
    server.adduser("bob", "pw").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let data = "A".repeat(30_000);
    let payload = format!("<data xmlns='urn:xmpp:avatar:data'>{data}</data>");
    let _ = alice.send_lossy(publish("big", "big", "urn:xmpp:avatar:data", &payload, "")).await;
    let t = alice.read_to_close().await;
    assert_eq!(t.stream_error().as_deref(), Some("policy-violation"));
    let pong = bob.iq("p", "<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(pong.attr("type"), Some("result"));
}

#[tokio::test]
async fn vcard_photos_and_pep_avatars_are_converted_both_ways() {
    let server = TestServer::start().await;
    server.adduser("alice", "pw").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    // vCard → PEP: "hello" as the photo; its SHA-1 names the avatar.
    let set = alice.iq("v", "<iq type='set' id='v'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>aGVsbG8=</BINVAL></PHOTO></vCard></iq>").await;
    assert_eq!(set.attr("type"), Some("result"));
    let meta = alice
        .iq("m", "<iq type='get' id='m' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'/></pubsub></iq>")
        .await;
    let info = meta
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .and_then(|i| i.child("item", ns::PUBSUB))
        .and_then(|i| i.child("metadata", "urn:xmpp:avatar:metadata"))
        .and_then(|m| m.child("info", "urn:xmpp:avatar:metadata"))
        .cloned()
        .unwrap_or_else(|| panic!("{}", meta.to_xml_string()));
    assert_eq!(info.attr("id"), Some("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"));
    assert_eq!(info.attr("bytes"), Some("5"));

    // PEP → vCard: a new avatar ("world") becomes the vCard photo.
    let hash = "7c211433f02071597741e6ff5a8ea34789abbf43";
    let data = alice.iq("d", &publish("d", hash, "urn:xmpp:avatar:data", "<data xmlns='urn:xmpp:avatar:data'>d29ybGQ=</data>", "")).await;
    assert_eq!(data.attr("type"), Some("result"));
    let metadata = format!("<metadata xmlns='urn:xmpp:avatar:metadata'><info id='{hash}' bytes='5' type='image/png'/></metadata>");
    let m = alice.iq("md", &publish("md", hash, "urn:xmpp:avatar:metadata", &metadata, "")).await;
    assert_eq!(m.attr("type"), Some("result"));
    let card = alice.iq("g", "<iq type='get' id='g'><vCard xmlns='vcard-temp'/></iq>").await;
    let binval = card.child("vCard", ns::VCARD).and_then(|v| v.child("PHOTO", ns::VCARD)).and_then(|p| p.child_text("BINVAL", ns::VCARD));
    assert_eq!(binval.as_deref(), Some("d29ybGQ="));
    let info = alice.iq("i", "<iq type='get' id='i' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    assert!(info.child("query", ns::DISCO_INFO).unwrap().children().any(|f| f.attr("var") == Some("urn:xmpp:pep-vcard-conversion:0")));
}
