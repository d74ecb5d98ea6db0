//! Three real nodes on 127.0.0.2, 127.0.0.3 and 127.0.0.4 sharing one PostgreSQL database
//! and one Redis: contacts, presence, messages, carbons, priorities, `conflict` and the
//! resource limit across nodes; a node killed with SIGKILL; Redis restarted under them.
//!
//! Needs `JABBERWOCK_TEST_POSTGRES` (a PostgreSQL server URL without a database) and
//! `JABBERWOCK_TEST_REDIS_SERVER` (the `redis-server` program: each test starts its own on a
//! free port, and restarts it); skips without them unless `JABBERWOCK_TEST_REQUIRE_CLUSTER`
//! is set. `scripts/cluster-tests.sh` sets all three.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jabberwock_proto::{ns, reader, Element, Limits};
use jabberwock_tests::cluster::{Cluster, LEASE_MS};
use jabberwock_tests::{befriend, free_port, Client, TIMEOUT};
use tokio_tungstenite::tungstenite::Message;

/// The three nodes of this package's server binary.
async fn start(name: &str, limits: &str, users: &[&str]) -> Option<Cluster> {
    Cluster::start(env!("CARGO_BIN_EXE_jabberwock-test-server").as_ref(), name, limits, users, LEASE_MS).await
}

fn presence_from<'a>(from: &'a str, kind: Option<&'a str>) -> impl Fn(&Element) -> bool + 'a {
    move |e| e.name() == "presence" && e.attr("from") == Some(from) && e.attr("type") == kind
}

fn body<'a>(text: &'a str) -> impl Fn(&Element) -> bool + 'a {
    move |e| e.name() == "message" && e.child_text("body", ns::CLIENT).as_deref() == Some(text)
}

/// A carbon copy (`received` or `sent`) of the message with this body.
fn carbon<'a>(kind: &'a str, text: &'a str) -> impl Fn(&Element) -> bool + 'a {
    move |e| {
        let inner = e.child(kind, ns::CARBONS).and_then(|c| c.child("forwarded", ns::FORWARD)).and_then(|f| f.child("message", ns::CLIENT));
        e.name() == "message" && inner.and_then(|m| m.child_text("body", ns::CLIENT)).as_deref() == Some(text)
    }
}

/// A WebSocket (RFC 7395) client: the registry must not care about the transport.
struct Ws(tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>);

impl Ws {
    async fn login(http: SocketAddr, user: &str, resource: &str) -> Ws {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{http}/xmpp-websocket").into_client_request().unwrap();
        req.headers_mut().insert("Sec-WebSocket-Protocol", "xmpp".parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.expect("WebSocket handshake");
        let mut ws = Ws(ws);
        let open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";
        ws.send(open).await;
        ws.expect("features", |e| e.is("features", ns::STREAM)).await;
        let scram = jabberwock_tests::scram::Client::new(user, "n,,", Vec::new());
        ws.send(&format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>", scram.first())).await;
        let challenge = ws.expect("challenge", |e| e.is("challenge", ns::SASL)).await;
        let last = scram.last(&challenge.text(), &format!("{user}-pw"));
        ws.send(&format!("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{last}</response>")).await;
        ws.expect("success", |e| e.is("success", ns::SASL)).await;
        ws.send(open).await;
        ws.expect("features", |e| e.is("features", ns::STREAM)).await;
        let bind = format!("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{}'><resource>{resource}</resource></bind></iq>", ns::BIND);
        ws.send(&bind).await;
        ws.expect("bound", |e| e.name() == "iq" && e.attr("type") == Some("result")).await;
        ws
    }

    async fn send(&mut self, xml: &str) {
        self.0.send(Message::Text(xml.into())).await.expect("send");
    }

    async fn expect(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
        loop {
            let msg = tokio::time::timeout(TIMEOUT, self.0.next()).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            if let Some(Ok(Message::Text(t))) = msg {
                let el = reader::parse_element(t.as_bytes(), &Limits::unlimited()).expect("one element per message");
                if pred(&el) {
                    return el;
                }
            } else if !matches!(msg, Some(Ok(_))) {
                panic!("closed while waiting for {what}");
            }
        }
    }
}

#[tokio::test]
async fn users_on_different_nodes_are_contacts_and_talk_over_c2s_and_websocket() {
    let Some(cluster) = start("im", "", &["alice", "bob", "carol"]).await else { return };
    let mut alice = cluster.login(0, "alice", "a").await;
    let mut bob = cluster.login(1, "bob", "b").await;
    alice.send("<presence><priority>1</priority></presence>").await;
    alice.expect("own presence", presence_from("alice@localhost/a", None)).await;
    bob.send("<presence/>").await;
    bob.expect("own presence", presence_from("bob@localhost/b", None)).await;

    // Subscriptions both ways across nodes; then presence broadcasts reach the contact.
    befriend(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;
    bob.send("<presence><show>away</show></presence>").await;
    let p = alice.expect("bob's presence", presence_from("bob@localhost/b", None)).await;
    assert_eq!(p.child_text("show", ns::CLIENT).as_deref(), Some("away"), "{}", p.to_xml_string());
    alice.send("<presence><show>dnd</show><priority>1</priority></presence>").await;
    bob.expect("alice's presence", |e| presence_from("alice@localhost/a", None)(e) && e.child_text("show", ns::CLIENT).as_deref() == Some("dnd")).await;

    alice.send("<message to='bob@localhost/b' type='chat'><body>hi bob</body></message>").await;
    let m = bob.expect("alice's message", body("hi bob")).await;
    assert_eq!(m.attr("from"), Some("alice@localhost/a"));
    bob.send("<message to='alice@localhost/a' type='chat'><body>hi alice</body></message>").await;
    alice.expect("bob's message", body("hi alice")).await;

    // A second resource of alice's on the third node: its initial presence probes bob
    // (answered from the registry's copy of his presence) and sees alice's other resource.
    let mut alice2 = cluster.login(2, "alice", "a2").await;
    alice2.send("<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>").await;
    alice2.expect("carbons on", |e| e.name() == "iq" && e.attr("id") == Some("c")).await;
    alice2.send("<presence><priority>5</priority></presence>").await;
    alice2.expect("bob's presence, from the probe", presence_from("bob@localhost/b", None)).await;
    alice2.expect("alice's other resource", presence_from("alice@localhost/a", None)).await;
    alice.expect("alice2 came online", presence_from("alice@localhost/a2", None)).await;
    bob.expect("alice2 came online", presence_from("alice@localhost/a2", None)).await;

    // A roster change on one node is pushed to the resource that asked for the roster
    // on another.
    let roster = alice2.iq("r", "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>").await;
    assert_eq!(roster.attr("type"), Some("result"));
    let set = alice.iq("rs", "<iq type='set' id='rs'><query xmlns='jabber:iq:roster'><item jid='zed@localhost' name='Zed'/></query></iq>").await;
    assert_eq!(set.attr("type"), Some("result"), "{}", set.to_xml_string());
    alice2
        .expect("the roster push", |e| {
            let item = e.child("query", ns::ROSTER).and_then(|q| q.child("item", ns::ROSTER));
            e.name() == "iq" && e.attr("type") == Some("set") && item.and_then(|i| i.attr("jid")) == Some("zed@localhost")
        })
        .await;

    // Carbons of messages received and sent by another resource on another node.
    bob.send("<message to='alice@localhost/a' type='chat'><body>to a</body></message>").await;
    alice.expect("the message", body("to a")).await;
    alice2.expect("the received carbon", carbon("received", "to a")).await;
    alice.send("<message to='bob@localhost/b' type='chat'><body>from a</body></message>").await;
    bob.expect("the message", body("from a")).await;
    alice2.expect("the sent carbon", carbon("sent", "from a")).await;

    // RFC 6121 §8.5: the bare JID reaches the highest priority, on another node.
    bob.send("<message to='alice@localhost' type='chat'><body>to the bare jid</body></message>").await;
    alice2.expect("the bare-JID message", body("to the bare jid")).await;
    alice.expect_none(Duration::from_millis(500), "the bare-JID message at priority 1", body("to the bare jid")).await;

    // A WebSocket user on the third node and a TCP user on the second.
    let mut carol = Ws::login(cluster.nodes[2].http, "carol", "web").await;
    carol.send("<message xmlns='jabber:client' to='bob@localhost/b' type='chat'><body>from the web</body></message>").await;
    let m = bob.expect("carol's message", body("from the web")).await;
    assert_eq!(m.attr("from"), Some("carol@localhost/web"));
    bob.send("<message to='carol@localhost/web' type='chat'><body>to the web</body></message>").await;
    carol.expect("bob's answer", body("to the web")).await;

    // Bob blocks carol on his node; carol's node, which checked his blocklist for her last
    // message, applies the new one (XEP-0191: service-unavailable) once the news reached
    // it over Redis: before the block is answered it is on its way, not necessarily read.
    let r = bob.iq("bl", "<iq type='set' id='bl'><block xmlns='urn:xmpp:blocking'><item jid='carol@localhost'/></block></iq>").await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
    tokio::time::sleep(Duration::from_millis(300)).await;
    carol.send("<message xmlns='jabber:client' to='bob@localhost/b' id='in' type='chat'><body>blocked?</body></message>").await;
    let err = carol.expect("the error", |e| e.attr("id") == Some("in")).await;
    assert!(err.child("error", ns::CLIENT).and_then(|e| e.child("service-unavailable", ns::STANZA_ERRORS)).is_some(), "{}", err.to_xml_string());
    bob.expect_none(Duration::from_millis(300), "a blocked message", body("blocked?")).await;

    // The cluster as its administrator sees it, read from Redis.
    let (ok, status) = cluster.nodes[0].cli(&["cluster", "status"]).await;
    assert!(ok, "{status}");
    for node in ["n0", "n1", "n2"] {
        assert!(status.lines().any(|l| l.starts_with(node) && l.contains(" ms ")), "{node} missing or its lease expired:\n{status}");
    }
    assert!(status.contains("sessions 4"), "alice twice, bob, carol:\n{status}");
}

/// Binds `resource` of `user` on `addr`; returns the iq answering the bind and the client.
async fn try_bind(addr: SocketAddr, user: &str, resource: &str) -> (Element, Client) {
    let (mut c, _) = Client::connect(addr).await.starttls().await;
    assert!(c.try_plain(user, &format!("{user}-pw")).await.is("success", ns::SASL));
    c.restart_stream().await;
    c.send(format!("<iq type='set' id='bind'><bind xmlns='{}'><resource>{resource}</resource></bind></iq>", ns::BIND)).await;
    (c.next_element().await, c)
}

#[tokio::test]
async fn a_resource_bound_on_another_node_is_replaced_and_the_limit_counts_every_node() {
    let Some(cluster) = start("bind", "max_resources = 2", &["dave"]).await else { return };
    let first = cluster.login(0, "dave", "x").await;
    let _second = cluster.login(1, "dave", "x").await;
    let transcript = first.read_to_close().await;
    assert_eq!(transcript.stream_error().as_deref(), Some("conflict"), "the older session is told why it ends");

    let _third = cluster.login(2, "dave", "y").await;
    let (refused, _c) = try_bind(cluster.c2s(0), "dave", "z").await;
    assert_eq!(refused.attr("type"), Some("error"), "{}", refused.to_xml_string());
    assert!(refused.child("error", ns::CLIENT).and_then(|e| e.child("resource-constraint", ns::STANZA_ERRORS)).is_some(), "{}", refused.to_xml_string());
}

#[tokio::test]
async fn the_users_of_a_killed_node_go_unavailable_and_their_messages_wait_offline() {
    let Some(mut cluster) = start("kill", "", &["alice", "bob"]).await else { return };
    let mut alice = cluster.login(0, "alice", "a").await;
    let mut bob = cluster.login(1, "bob", "b").await;
    alice.send("<presence/>").await;
    bob.send("<presence/>").await;
    befriend(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;
    // Bob's session on the doomed node is resumable; what he never acknowledged, and what
    // comes while it waits for him, is kept in the shared journal (XEP-0198).
    bob.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>").await;
    bob.expect("enabled", |e| e.is("enabled", "urn:xmpp:sm:3")).await;
    alice.send("<message to='bob@localhost/b' type='chat'><body>never acknowledged</body></message>").await;
    bob.expect("the message", body("never acknowledged")).await;
    drop(bob);
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.send("<message to='bob@localhost/b' type='chat'><body>while parked</body></message>").await;
    alice.ping().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    cluster.nodes[1].kill9().await;
    let killed = tokio::time::Instant::now();
    // Long before the lease expires, the node's channel has no subscriber: a message
    // forwarded there is heard by nobody, and alice's node routes it to offline storage.
    tokio::time::sleep(Duration::from_millis(100)).await;
    alice.send("<message to='bob@localhost/b' type='chat'><body>just after the kill</body></message>").await;
    alice.ping().await;
    alice.expect("bob's unavailable presence, sent for him", presence_from("bob@localhost/b", Some("unavailable"))).await;
    let noticed = killed.elapsed();
    eprintln!("unavailable presence {noticed:?} after the kill (lease {LEASE_MS} ms)");
    assert!(noticed < Duration::from_millis(LEASE_MS + 2500), "within the lease and one check: {noticed:?}");

    alice.send("<message to='bob@localhost' type='chat'><body>while you were gone</body></message>").await;
    alice.ping().await;
    let mut bob = cluster.login(2, "bob", "b").await;
    bob.send("<presence/>").await;
    // In the order they reached offline storage: the journal of bob's parked session at
    // the takeover.
    for text in ["just after the kill", "never acknowledged", "while parked", "while you were gone"] {
        let m = bob.expect("an offline message", body(text)).await;
        assert!(m.child("delay", ns::DELAY).is_some(), "{}", m.to_xml_string());
    }

    // The killed node is gone from the cluster; one stopped cleanly leaves it at once.
    cluster.nodes[2].stop().await;
    let (ok, status) = cluster.nodes[0].cli(&["cluster", "status"]).await;
    assert!(ok, "{status}");
    assert!(status.lines().any(|l| l.starts_with("n0")) && !status.lines().any(|l| l.starts_with("n1") || l.starts_with("n2")), "{status}");
    assert!(status.contains("nodes 1  sessions 1"), "alice alone:\n{status}");
}

const ROOM: &str = "room@conference.localhost";

/// The XEP-0045 status codes of a room's presence.
fn muc_codes(e: &Element) -> Vec<String> {
    let x = e.child("x", ns::MUC_USER);
    x.map(|x| x.children().filter(|c| c.name() == "status").filter_map(|c| c.attr("code")).map(str::to_owned).collect()).unwrap_or_default()
}

/// The presence of `occupant` (`room/nick`) with these status codes among its own.
fn occupant_presence<'a>(occupant: &'a str, kind: Option<&'a str>, codes: &'a [&'a str]) -> impl Fn(&Element) -> bool + 'a {
    move |e| presence_from(occupant, kind)(e) && codes.iter().all(|c| muc_codes(e).iter().any(|x| x == c))
}

fn subject_is<'a>(text: &'a str) -> impl Fn(&Element) -> bool + 'a {
    move |e| e.name() == "message" && e.child_text("subject", ns::CLIENT).as_deref() == Some(text)
}

fn stanza_error(e: &Element) -> Option<String> {
    let error = e.child("error", ns::CLIENT)?;
    error.children().find(|c| c.ns() == ns::STANZA_ERRORS && c.name() != "text").map(|c| c.name().to_owned())
}

/// Joins `room` as `nick`: its own presence (status 110), then the subject, which ends a join.
async fn join_room(c: &mut Client, room: &str, nick: &str) -> (Element, Element) {
    c.send(format!("<presence to='{room}/{nick}'><x xmlns='{}'/></presence>", ns::MUC)).await;
    let own = format!("{room}/{nick}");
    let me = c.expect("own presence in the room", occupant_presence(&own, None, &["110"])).await;
    let subject = c.expect("the subject", |e| e.name() == "message" && e.child("subject", ns::CLIENT).is_some()).await;
    (me, subject)
}

/// XEP-0410: pings its own occupant JID until the room answers. While the node that served
/// the room is dead and not yet reaped, what is forwarded there is lost, and nothing answers.
async fn self_ping(c: &mut Client, nick: &str) -> Element {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(LEASE_MS) + TIMEOUT;
    for n in 0.. {
        let id = format!("self-ping-{n}");
        c.send(format!("<iq type='get' id='{id}' to='{ROOM}/{nick}'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
        let wait = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Some(ev) = c.next_event_by(wait).await {
            if let jabberwock_proto::ReadEvent::Stanza(st) = ev {
                let el = st.to_element().expect("parses");
                if el.name() == "iq" && el.attr("id") == Some(id.as_str()) {
                    return el;
                }
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no answer to a self-ping");
    }
    unreachable!()
}

/// The bodies a XEP-0313 query of the room returns.
async fn room_archive(c: &mut Client) -> Vec<String> {
    c.send(format!("<iq type='set' id='mam' to='{ROOM}'><query xmlns='{}' queryid='q'/></iq>", ns::MAM)).await;
    let mut bodies = Vec::new();
    loop {
        let e = c.next_element().await;
        if e.name() == "iq" && e.attr("id") == Some("mam") {
            assert_eq!(e.attr("type"), Some("result"), "{}", e.to_xml_string());
            return bodies;
        }
        let message = e.child("result", ns::MAM).and_then(|r| r.child("forwarded", ns::FORWARD)).and_then(|f| f.child("message", ns::CLIENT));
        bodies.extend(message.and_then(|m| m.child_text("body", ns::CLIENT)));
    }
}

#[tokio::test]
async fn a_room_lives_on_one_node_and_moves_when_that_node_dies_or_stops() {
    let Some(mut cluster) = start("muc", "", &["alice", "bob", "carol"]).await else { return };
    let mut alice = cluster.login(0, "alice", "a").await;
    let mut bob = cluster.login(1, "bob", "b").await;
    let mut carol = cluster.login(2, "carol", "c").await;

    // Alice creates the room: node 0, where it was first needed, serves it from now on.
    let (me, _) = join_room(&mut alice, ROOM, "alice").await;
    assert!(muc_codes(&me).contains(&"201".to_owned()), "{}", me.to_xml_string());
    let form = "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
                <field var='muc#roomconfig_persistentroom'><value>1</value></field><field var='muc#roomconfig_roomname'><value>Kept</value></field>";
    let r = alice.iq("cfg", &format!("<iq type='set' id='cfg' to='{ROOM}'><query xmlns='{}'><x xmlns='jabber:x:data' type='submit'>{form}</x></query></iq>", ns::MUC_OWNER)).await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());

    // Bob and Carol, on the two other nodes, join the same room, not copies of it.
    let (me, _) = join_room(&mut bob, ROOM, "bob").await;
    assert!(!muc_codes(&me).contains(&"201".to_owned()), "joined, not created: {}", me.to_xml_string());
    alice.expect("bob joins", occupant_presence(&format!("{ROOM}/bob"), None, &[])).await;
    carol.send(format!("<presence to='{ROOM}/carol'><x xmlns='{}'/></presence>", ns::MUC)).await;
    carol.expect("alice, already in", occupant_presence(&format!("{ROOM}/alice"), None, &[])).await;
    carol.expect("bob, already in", occupant_presence(&format!("{ROOM}/bob"), None, &[])).await;
    carol.expect("own presence", occupant_presence(&format!("{ROOM}/carol"), None, &["110"])).await;
    for c in [&mut alice, &mut bob] {
        c.expect("carol joins", occupant_presence(&format!("{ROOM}/carol"), None, &[])).await;
    }

    // The subject, groupchat and private messages cross the nodes.
    alice.send(format!("<message to='{ROOM}' type='groupchat'><subject>Across nodes</subject></message>")).await;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.expect("the new subject", subject_is("Across nodes")).await;
    }
    carol.send(format!("<message to='{ROOM}' type='groupchat'><body>hello from node 2</body></message>")).await;
    for c in [&mut alice, &mut bob, &mut carol] {
        let m = c.expect("carol's message", body("hello from node 2")).await;
        assert_eq!(m.attr("from"), Some(format!("{ROOM}/carol").as_str()));
    }
    bob.send(format!("<message to='{ROOM}/carol' type='chat'><body>psst, carol</body></message>")).await;
    let m = carol.expect("bob's private message", body("psst, carol")).await;
    assert_eq!(m.attr("from"), Some(format!("{ROOM}/bob").as_str()));

    // A kick from node 0 reaches node 2; Carol comes back.
    let kick = format!("<iq type='set' id='kick' to='{ROOM}'><query xmlns='{}'><item nick='carol' role='none'/></query></iq>", ns::MUC_ADMIN);
    let r = alice.iq("kick", &kick).await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
    carol.expect("kicked", occupant_presence(&format!("{ROOM}/carol"), Some("unavailable"), &["307", "110"])).await;
    bob.expect("carol kicked", occupant_presence(&format!("{ROOM}/carol"), Some("unavailable"), &["307"])).await;
    join_room(&mut carol, ROOM, "carol").await;
    bob.send(format!("<message to='{ROOM}' type='groupchat'><body>welcome back</body></message>")).await;
    carol.expect("bob's message", body("welcome back")).await;
    // The archive of the room is written (the query waits for what node 0 queued).
    assert_eq!(room_archive(&mut bob).await, ["hello from node 2", "welcome back"]);

    // Two nodes that need the same new room at once: one creates it, the other's join
    // reaches it (locked until configured), not a second room.
    let race = "race@conference.localhost";
    bob.send(format!("<presence to='{race}/bob'><x xmlns='{}'/></presence>", ns::MUC)).await;
    carol.send(format!("<presence to='{race}/carol'><x xmlns='{}'/></presence>", ns::MUC)).await;
    let is_answer = |nick: &'static str| move |e: &Element| e.name() == "presence" && e.attr("from") == Some(&*format!("{race}/{nick}"));
    let (b, c) = (bob.expect("bob's answer", is_answer("bob")).await, carol.expect("carol's answer", is_answer("carol")).await);
    let created = [&b, &c].iter().filter(|e| muc_codes(e).contains(&"201".to_owned())).count();
    let refused = [&b, &c].iter().filter(|e| stanza_error(e).as_deref() == Some("item-not-found")).count();
    assert_eq!((created, refused), (1, 1), "{}\n{}", b.to_xml_string(), c.to_xml_string());

    // Redis restarts empty: node 0 registers its claim again before another node would
    // take the room (what was sent meanwhile may be lost: at most once).
    cluster.redis.restart().await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    for n in 0.. {
        let text = format!("after the restart {n}");
        carol.send(format!("<message to='{ROOM}' type='groupchat'><body>{text}</body></message>")).await;
        let wait = tokio::time::Instant::now() + Duration::from_millis(500);
        let mut heard = false;
        while let Some(ev) = bob.next_event_by(wait).await {
            if let jabberwock_proto::ReadEvent::Stanza(st) = ev {
                heard |= body(&text)(&st.to_element().expect("parses"));
            }
        }
        if heard {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the room did not come back after Redis restarted");
    }
    carol.send(format!("<message to='{ROOM}' type='groupchat'><body>all back</body></message>")).await;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.expect("a message in the same room as before", body("all back")).await;
    }
    let archived = room_archive(&mut bob).await;
    assert_eq!(archived.last().map(String::as_str), Some("all back"), "{archived:?}");

    // Node 0 dies. Once its lease is gone, the room's next stanza makes another node serve
    // it, from the database: Bob is not joined there, and joins again.
    cluster.nodes[0].kill9().await;
    let killed = tokio::time::Instant::now();
    let pong = self_ping(&mut bob, "bob").await;
    eprintln!("the room answered {:?} after the kill (lease {LEASE_MS} ms)", killed.elapsed());
    assert_eq!(stanza_error(&pong).as_deref(), Some("not-acceptable"), "not joined: {}", pong.to_xml_string());
    let m = format!("<message to='{ROOM}' type='groupchat'><body>am I in?</body></message>");
    bob.send(&m).await;
    let refused = bob.expect("the message refused", |e| e.name() == "message" && e.attr("type") == Some("error")).await;
    assert_eq!(stanza_error(&refused).as_deref(), Some("not-acceptable"), "{}", refused.to_xml_string());
    let (me, subject) = join_room(&mut bob, ROOM, "bob").await;
    assert!(!muc_codes(&me).contains(&"201".to_owned()), "the room was kept: {}", me.to_xml_string());
    assert_eq!(subject.child_text("subject", ns::CLIENT).as_deref(), Some("Across nodes"));
    let pong = self_ping(&mut carol, "carol").await;
    assert_eq!(stanza_error(&pong).as_deref(), Some("not-acceptable"), "{}", pong.to_xml_string());
    carol.send(format!("<presence to='{ROOM}/carol'><x xmlns='{}'><history maxstanzas='20'/></x></presence>", ns::MUC)).await;
    carol.expect("history from the archive", body("welcome back")).await;
    carol.expect("history from the archive", body("all back")).await;
    carol.expect("the kept subject", subject_is("Across nodes")).await;
    bob.expect("carol joins again", occupant_presence(&format!("{ROOM}/carol"), None, &[])).await;
    let info = bob.iq("info", &format!("<iq type='get' id='info' to='{ROOM}'><query xmlns='{}'/></iq>", ns::DISCO_INFO)).await;
    let q = info.child("query", ns::DISCO_INFO).expect("disco#info");
    assert!(q.children().any(|i| i.name() == "identity" && i.attr("name") == Some("Kept")), "{}", info.to_xml_string());
    assert!(q.children().any(|f| f.attr("var") == Some("muc_persistent")), "{}", info.to_xml_string());
    carol.send(format!("<message to='{ROOM}' type='groupchat'><body>after the move</body></message>")).await;
    bob.expect("carol's message", body("after the move")).await;
    let archived = room_archive(&mut carol).await;
    assert_eq!(archived[..2], ["hello from node 2", "welcome back"], "{archived:?}");
    assert_eq!(archived[archived.len() - 2..], ["all back", "after the move"], "{archived:?}");

    // Bob's node (which took the room: his ping came first) stops cleanly: the occupants
    // elsewhere are told (status 332) and join again, on a node that is left.
    cluster.nodes[1].stop().await;
    carol.expect("the room's shutdown", occupant_presence(&format!("{ROOM}/carol"), Some("unavailable"), &["332", "110"])).await;
    let (_, subject) = join_room(&mut carol, ROOM, "carol").await;
    assert_eq!(subject.child_text("subject", ns::CLIENT).as_deref(), Some("Across nodes"));
}

#[tokio::test]
async fn routing_recovers_after_redis_restarts() {
    let Some(mut cluster) = start("redis", "", &["alice", "bob", "carol", "dave"]).await else { return };
    let mut alice = cluster.login(0, "alice", "a").await;
    let mut bob = cluster.login(1, "bob", "b").await;
    alice.send("<presence/>").await;
    bob.send("<presence/>").await;
    befriend(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;

    // Under load: dave, on the third node, keeps messaging alice while Redis goes away.
    let mut dave = cluster.login(2, "dave", "d").await;
    let (stop_load, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let load = tokio::spawn(async move {
        for i in 0.. {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep(Duration::from_millis(5)) => {
                    dave.send(format!("<message to='alice@localhost/a' type='chat'><body>load {i}</body></message>")).await;
                }
            }
        }
        dave
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The nodes agreed on a dialback secret through Redis; Redis loses it when it restarts.
    let secret = cluster.redis.get("jabberwock:dialback-secret").await.expect("a shared dialback secret");
    cluster.redis.restart().await;
    let restarted = tokio::time::Instant::now();
    // The nodes reconnect and register their sessions again: retried until they have.
    let deadline = restarted + Duration::from_secs(15);
    for attempt in 0.. {
        let text = format!("after the restart {attempt}");
        alice.send(format!("<message to='bob@localhost/b' type='chat'><body>{text}</body></message>")).await;
        let wait = tokio::time::timeout(Duration::from_millis(700), bob.expect("the message", body(&text))).await;
        if wait.is_ok() {
            eprintln!("routing recovered {:?} after Redis restarted ({attempt} messages lost meanwhile)", restarted.elapsed());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "routing did not recover");
    }
    // The nodes wrote back the one they use, for a node that starts now to agree with them.
    assert_eq!(cluster.redis.get("jabberwock:dialback-secret").await.as_deref(), Some(secret.as_str()), "the dialback secret is back");
    stop_load.send(()).expect("the load runs");
    let mut dave = load.await.expect("the load");
    dave.send("<message to='alice@localhost/a' type='chat'><body>after the load</body></message>").await;
    alice.expect("dave's last message", body("after the load")).await;
    // A new session on the third node reaches both.
    let mut carol = cluster.login(2, "carol", "c").await;
    carol.send("<message to='alice@localhost/a' type='chat'><body>new here</body></message>").await;
    alice.expect("carol's message", body("new here")).await;
    bob.send("<message to='carol@localhost/c' type='chat'><body>welcome</body></message>").await;
    carol.expect("bob's message", body("welcome")).await;
}

/// Debian's HAProxy in front of some nodes' HTTP ports, round robin without stickiness,
/// with a stats socket to count what each node was given.
struct HaProxy {
    _child: tokio::process::Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl HaProxy {
    /// Starts `program` in the foreground (stopped by its PID when dropped).
    async fn start(program: &std::path::Path, nodes: &[SocketAddr]) -> HaProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = free_port();
        let servers: String = nodes.iter().enumerate().map(|(i, a)| format!("    server n{i} {a}\n")).collect();
        // `timeout tunnel` keeps WebSocket connections; the server timeout outlasts a held BOSH request.
        let config = format!(
            "global\n    stats socket {}/stats.sock mode 600 level user\n\
             defaults\n    mode http\n    timeout connect 5s\n    timeout client 90s\n    timeout server 90s\n    timeout tunnel 1h\n\
             frontend xmpp\n    bind {addr}\n    default_backend nodes\n\
             backend nodes\n    balance roundrobin\n{servers}",
            dir.path().display()
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let child = tokio::process::Command::new(program)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start haproxy");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "haproxy did not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        HaProxy { _child: child, dir, addr }
    }

    /// Requests each server of the backend has been given so far (`stot` in `show stat`:
    /// one per request, as the test's requests each have their own connection).
    async fn requests_per_node(&self) -> Vec<u64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::UnixStream::connect(self.dir.path().join("stats.sock")).await.expect("stats socket");
        socket.write_all(b"show stat\n").await.expect("ask");
        let mut csv = String::new();
        socket.read_to_string(&mut csv).await.expect("read stats");
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().expect("header").trim_start_matches("# ").split(',').collect();
        let column = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name} column: {csv}"));
        let (proxy, server, sessions) = (column("pxname"), column("svname"), column("stot"));
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.get(proxy) == Some(&"nodes") && f.get(server).is_some_and(|s| s.starts_with('n')))
            .map(|f| f[sessions].parse().expect("a count"))
            .collect()
    }
}

fn haproxy_program() -> Option<PathBuf> {
    let program = std::env::var("JABBERWOCK_TEST_HAPROXY").ok().map(PathBuf::from);
    if program.is_none() {
        assert!(std::env::var("JABBERWOCK_TEST_REQUIRE_CLUSTER").is_err(), "JABBERWOCK_TEST_REQUIRE_CLUSTER is set but JABBERWOCK_TEST_HAPROXY is not");
        eprintln!("skipping: set JABBERWOCK_TEST_HAPROXY=/usr/sbin/haproxy");
    }
    program
}

#[tokio::test]
async fn bosh_and_websocket_work_behind_a_load_balancer_without_sticky_sessions() {
    let Some(haproxy) = haproxy_program() else { return };
    let Some(cluster) = start("lb", "", &["alice", "bob", "carol"]).await else { return };
    let lb = HaProxy::start(&haproxy, &[cluster.nodes[0].http, cluster.nodes[1].http]).await;

    // Every request of alice's BOSH session lands on the next node in turn; the one that
    // does not hold the session passes it on to the node its sid names.
    let (mut alice, _) = jabberwock_tests::bosh::Bosh::create(lb.addr, 2).await;
    assert!(alice.sid.starts_with("n0~") || alice.sid.starts_with("n1~"), "the sid names its node: {}", alice.sid);
    assert_eq!(alice.login("alice", "alice-pw").await, "alice@localhost/bosh");
    alice.send("", "<presence xmlns='jabber:client'/>").await;
    let mut bob = Ws::login(lb.addr, "bob", "web").await;
    let mut carol = cluster.login(2, "carol", "c").await;

    alice.send("", "<message xmlns='jabber:client' to='bob@localhost/web' type='chat'><body>to the web</body></message>").await;
    alice.send("", "<message xmlns='jabber:client' to='carol@localhost/c' type='chat'><body>to c2s</body></message>").await;
    let m = bob.expect("alice's message", body("to the web")).await;
    assert_eq!(m.attr("from"), Some("alice@localhost/bosh"));
    carol.expect("alice's message", body("to c2s")).await;
    bob.send("<message xmlns='jabber:client' to='alice@localhost/bosh' type='chat'><body>from the web</body></message>").await;
    carol.send("<message to='alice@localhost/bosh' type='chat'><body>from c2s</body></message>").await;
    bob.send("<message xmlns='jabber:client' to='carol@localhost/c' type='chat'><body>web to c2s</body></message>").await;
    carol.expect("bob's message", body("web to c2s")).await;
    let mut received = Vec::new();
    for _ in 0..10 {
        let answer = alice.send("", "").await;
        received.extend(answer.children().filter_map(|m| m.child_text("body", ns::CLIENT)));
        if received.len() >= 2 {
            break;
        }
    }
    received.sort();
    assert_eq!(received, ["from c2s", "from the web"]);

    let requests = lb.requests_per_node().await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    // Nine BOSH requests at least and the WebSocket handshake, alternating.
    assert!(requests.iter().all(|n| *n >= 4), "both nodes took requests: {requests:?}");

    // A sid naming a node that is not there: the session is unknown, at once.
    let unknown = format!("<body xmlns='{}' rid='7' sid='gone~abc'/>", jabberwock_tests::bosh::HTTPBIND);
    let started = tokio::time::Instant::now();
    let (status, el) = jabberwock_tests::bosh::post(lb.addr, &unknown).await;
    assert_eq!((status, el.attr("condition")), (404, Some("item-not-found")), "{}", el.to_xml_string());
    assert!(started.elapsed() < Duration::from_secs(2), "answered without waiting for the node");
}

#[tokio::test]
async fn a_session_resumed_on_another_node_is_told_where_it_lives_and_what_it_held_follows_at_once() {
    const SM: &str = "urn:xmpp:sm:3";
    // A window far longer than the test: what alice's old session held must not wait for it.
    let Some(cluster) = start("sm", "resume_window_secs = 3600", &["alice", "bob"]).await else { return };
    let mut bob = cluster.login(1, "bob", "b").await;
    let mut alice = cluster.login(0, "alice", "phone").await;
    alice.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>").await;
    let enabled = alice.expect("enabled", |e| e.is("enabled", SM)).await;
    // XEP-0198 §5: the node to come back to for resumption (its `cluster.location`).
    assert_eq!(enabled.attr("location"), Some("127.0.0.2"), "{}", enabled.to_xml_string());
    let id = enabled.attr("id").expect("an id").to_owned();
    alice.send("<presence/>").await;
    bob.send("<message to='alice@localhost/phone' type='chat'><body>never acknowledged</body></message>").await;
    alice.expect("bob's message", body("never acknowledged")).await;
    // The connection dies before alice acknowledges it; the session is parked on node 0.
    drop(alice);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Through another node, resumption fails cleanly...
    let (mut again, _) = Client::connect(cluster.c2s(1)).await.starttls().await;
    again.send(jabberwock_tests::plain_auth("alice", "alice-pw")).await;
    assert!(again.next_element().await.is("success", ns::SASL));
    again.restart_stream().await;
    again.send(format!("<resume xmlns='{SM}' previd='{id}' h='0'/>")).await;
    let failed = again.expect("failed", |e| e.is("failed", SM)).await;
    assert!(failed.child("item-not-found", ns::STANZA_ERRORS).is_some(), "{}", failed.to_xml_string());
    // ...and node 0 ends the parked session at once, as at the end of its window: the
    // message it held reaches alice's new session (directly or from offline storage).
    again.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>laptop</resource></bind></iq>").await;
    again.expect("bound", |e| e.attr("id") == Some("b") && e.attr("type") == Some("result")).await;
    again.send("<presence/>").await;
    again.expect("the message the old session held", body("never acknowledged")).await;
}
