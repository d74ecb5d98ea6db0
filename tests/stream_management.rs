//! XEP-0198 over real connections: acks both ways, resumption after a killed connection
//! (on TCP and across transports), and no message lost when nobody resumes.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jabberwock_proto::{ns, reader, Element, Limits};
use jabberwock_tests::{Client, TestServer, DOMAIN, TIMEOUT};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SM: &str = "urn:xmpp:sm:3";

fn body_is(text: &'static str) -> impl Fn(&Element) -> bool {
    move |e| e.name() == "message" && e.child_text("body", ns::CLIENT).as_deref() == Some(text)
}

/// Logs in, enables resumable stream management and sends initial presence.
async fn resumable(server: &TestServer, user: &str, resource: &str) -> (Client, String) {
    let mut c = Client::login(server.c2s, user, "pw", resource).await;
    c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>").await;
    let enabled = c.expect("enabled", |e| e.is("enabled", SM)).await;
    assert_eq!(enabled.attr("resume"), Some("true"));
    // Only a cluster node with `cluster.location` tells clients where to resume.
    assert_eq!(enabled.attr("location"), None);
    let id = enabled.attr("id").expect("an id to resume").to_owned();
    c.available().await;
    (c, id)
}

#[tokio::test]
async fn acks_count_handled_stanzas_both_ways() {
    let server = TestServer::start().await;
    server.adduser("alice", "pw").await;
    server.adduser("bob", "pw").await;
    let (mut alice, _) = resumable(&server, "alice", "a").await;
    // The presence echo is the first stanza sent since enable; the server asks for its ack.
    alice.expect("ack request for the echo", |e| e.is("r", SM)).await;
    alice.send("<a xmlns='urn:xmpp:sm:3' h='1'/>").await;
    for i in 0..3 {
        alice.send(format!("<message to='nobody@localhost' id='x{i}'><body>x</body></message>")).await;
    }
    alice.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    // presence + 3 messages handled since enable.
    let a = alice.expect("ack", |e| e.is("a", SM)).await;
    assert_eq!(a.attr("h"), Some("4"));
    // alice has received the echo and three bounces: she acknowledges them all.
    alice.send("<a xmlns='urn:xmpp:sm:3' h='4'/>").await;

    // The server asks for acks of what it sends; a wrong count is a stream error.
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    bob.send("<message to='alice@localhost/a'><body>hi</body></message>").await;
    alice.expect("message", body_is("hi")).await;
    alice.expect("ack request", |e| e.is("r", SM)).await;
    alice.send("<a xmlns='urn:xmpp:sm:3' h='1000'/>").await;
    let t = alice.read_to_close().await;
    assert_eq!(t.stream_error().as_deref(), Some("undefined-condition"), "{}", t.raw);
}

#[tokio::test]
async fn a_killed_tcp_connection_is_resumed_without_losing_messages() {
    let server = TestServer::start().await;
    server.adduser("alice", "pw").await;
    server.adduser("bob", "pw").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    let (mut alice, id) = resumable(&server, "alice", "phone").await;
    bob.send("<message to='alice@localhost/phone'><body>one</body></message>").await;
    alice.expect("first message", body_is("one")).await;
    // The connection dies before alice acknowledges anything.
    drop(alice);
    tokio::time::sleep(Duration::from_millis(100)).await;
    bob.send("<message to='alice@localhost/phone'><body>two</body></message>").await;

    let (mut again, _) = Client::connect(server.c2s).await.starttls().await;
    again.send(jabberwock_tests::plain_auth("alice", "pw")).await;
    assert!(again.next_element().await.is("success", ns::SASL));
    again.restart_stream().await;
    again.send(format!("<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>")).await;
    let resumed = again.expect("resumed", |e| e.is("resumed", SM)).await;
    assert_eq!(resumed.attr("previd"), Some(id.as_str()));
    assert_eq!(resumed.attr("h"), Some("1"), "the server handled alice's presence");
    again.expect("retransmitted", body_is("one")).await;
    again.expect("queued while away", body_is("two")).await;
    // Still the same bound session: messages to the full JID arrive.
    bob.send("<message to='alice@localhost/phone'><body>three</body></message>").await;
    again.expect("after resumption", body_is("three")).await;
    bob.expect_none(Duration::from_millis(300), "alice unavailable", |e| e.name() == "presence" && e.attr("type") == Some("unavailable"))
        .await;
}

#[tokio::test]
async fn a_tcp_session_resumes_over_websocket() {
    let server = TestServer::start().await;
    server.adduser("alice", "pw").await;
    server.adduser("bob", "pw").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    let (alice, id) = resumable(&server, "alice", "laptop").await;
    drop(alice);
    tokio::time::sleep(Duration::from_millis(100)).await;
    bob.send("<message to='alice@localhost/laptop'><body>while away</body></message>").await;

    let mut req = format!("ws://{}/xmpp-websocket", server.http).into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "xmpp".parse().unwrap());
    req.headers_mut().insert("X-Forwarded-Proto", "https".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut elements = Vec::new();
    // open, features, auth (PLAIN: the proxy said https), open again, resume.
    let frames = [
        format!("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{DOMAIN}' version='1.0'/>"),
        jabberwock_tests::plain_auth("alice", "pw"),
        format!("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{DOMAIN}' version='1.0'/>"),
        format!("<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>"),
    ];
    for f in frames {
        ws.send(Message::Text(f.into())).await.unwrap();
        // Each step's answer must arrive before the next step is sent.
        loop {
            let msg = tokio::time::timeout(TIMEOUT, ws.next()).await.expect("in time").expect("open").expect("frame");
            let Message::Text(t) = msg else { continue };
            let el = reader::parse_element(t.as_bytes(), &Limits::unlimited()).unwrap();
            let done = el.is("features", ns::STREAM) || el.is("success", ns::SASL) || el.is("resumed", SM) || el.is("failed", SM);
            elements.push(el);
            if done {
                break;
            }
        }
    }
    assert!(elements.iter().any(|e| e.is("resumed", SM)), "{elements:?}");
    loop {
        let msg = tokio::time::timeout(TIMEOUT, ws.next()).await.expect("the queued message").expect("open").expect("frame");
        let Message::Text(t) = msg else { continue };
        let el = reader::parse_element(t.as_bytes(), &Limits::unlimited()).unwrap();
        if body_is("while away")(&el) {
            break;
        }
    }
}

#[tokio::test]
async fn unacked_messages_go_offline_when_nobody_resumes() {
    let server = TestServer::start_with_tables("", "[limits]\nresume_window_secs = 1\n").await;
    server.adduser("alice", "pw").await;
    server.adduser("bob", "pw").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    let (mut alice, id) = resumable(&server, "alice", "a").await;
    bob.send("<message to='alice@localhost' type='chat'><body>keep me</body></message>").await;
    alice.expect("delivered but never acked", body_is("keep me")).await;
    drop(alice);
    // Past the window, with room for the expired session to store what it held.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Too late to resume: the session is gone...
    let (mut late, _) = Client::connect(server.c2s).await.starttls().await;
    late.send(jabberwock_tests::plain_auth("alice", "pw")).await;
    assert!(late.next_element().await.is("success", ns::SASL));
    late.restart_stream().await;
    late.send(format!("<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>")).await;
    let failed = late.expect("failed", |e| e.is("failed", SM)).await;
    assert!(failed.child("item-not-found", ns::STANZA_ERRORS).is_some());
    // ...but the message waits in offline storage.
    let mut fresh = Client::login(server.c2s, "alice", "pw", "new").await;
    fresh.send("<presence/>").await;
    let m = fresh.expect("offline copy", body_is("keep me")).await;
    assert!(m.child("delay", ns::DELAY).is_some());
    bob.expect_none(Duration::from_millis(200), "a bounce", |e| e.attr("type") == Some("error")).await;
}

#[tokio::test]
async fn only_the_owner_can_resume() {
    let server = TestServer::start().await;
    server.adduser("alice", "pw").await;
    server.adduser("mallory", "pw").await;
    let (alice, id) = resumable(&server, "alice", "a").await;
    drop(alice);
    let (mut m, _) = Client::connect(server.c2s).await.starttls().await;
    m.send(jabberwock_tests::plain_auth("mallory", "pw")).await;
    assert!(m.next_element().await.is("success", ns::SASL));
    m.restart_stream().await;
    m.send(format!("<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>")).await;
    let failed = m.expect("failed", |e| e.is("failed", SM)).await;
    assert!(failed.child("item-not-found", ns::STANZA_ERRORS).is_some());
}

#[tokio::test]
async fn enabling_twice_is_refused_and_a_failed_resume_leaves_a_fresh_session() {
    let server = TestServer::start().await;
    server.adduser("alice", "pw").await;
    let (mut alice, _) = resumable(&server, "alice", "a").await;
    alice.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>").await;
    let failed = alice.expect("failed", |e| e.is("failed", SM)).await;
    assert!(failed.child("unexpected-request", ns::STANZA_ERRORS).is_some());

    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    c.send(jabberwock_tests::plain_auth("alice", "pw")).await;
    assert!(c.next_element().await.is("success", ns::SASL));
    c.restart_stream().await;
    c.send("<resume xmlns='urn:xmpp:sm:3' previd='no-such-session' h='0'/>").await;
    let failed = c.expect("failed", |e| e.is("failed", SM)).await;
    assert!(failed.child("item-not-found", ns::STANZA_ERRORS).is_some());
    // The stream goes on: bind a fresh session.
    c.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>fresh</resource></bind></iq>").await;
    let bound = c.expect("bind result", |e| e.attr("id") == Some("b")).await;
    assert_eq!(bound.attr("type"), Some("result"));
}

#[tokio::test]
async fn unacknowledged_output_is_bounded_in_bytes_and_goes_offline() {
    const MESSAGES: usize = 20;
    // Eleven of these messages fill the bound; the twelfth is refused.
    let server = TestServer::start_with_tables("", "[limits]\nmax_session_output_bytes = 600000\n").await;
    server.adduser("alice", "pw").await;
    server.adduser("bob", "pw").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    let (mut alice, _) = resumable(&server, "alice", "a").await;
    alice.expect("ack request for the echo", |e| e.is("r", SM)).await;
    // So that bob sees her session end.
    alice.send("<presence to='bob@localhost/b'/>").await;
    bob.expect("alice's presence", |e| e.name() == "presence" && e.attr("from") == Some("alice@localhost/a")).await;
    // alice reads everything but acknowledges nothing more.
    let body = "x".repeat(50_000);
    for i in 0..MESSAGES {
        bob.send(format!("<message to='alice@localhost/a' type='chat' id='m{i}'><body>{body}</body></message>")).await;
    }
    // A ping, so that bob's messages were all handled; her session may already have ended
    // by the pong (the twelfth message closes it), so her going is looked for from here on.
    let gone = |e: &Element| e.name() == "presence" && e.attr("from") == Some("alice@localhost/a") && e.attr("type") == Some("unavailable");
    bob.send("<iq type='get' id='handled' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    let pong = |e: &Element| e.name() == "iq" && e.attr("id") == Some("handled");
    let mut gone_early = false;
    loop {
        let el = bob.expect("the pong", |e| pong(e) || gone(e)).await;
        if !gone(&el) {
            assert_eq!(el.attr("type"), Some("result"), "{}", el.to_xml_string());
            break;
        }
        gone_early = true;
    }
    let t = alice.read_to_close().await;
    assert_eq!(t.stream_error().as_deref(), Some("policy-violation"), "last: {:?}", t.events.last());
    let first_stream = t.events.iter().filter(|ev| matches!(ev, jabberwock_proto::ReadEvent::Stanza(st) if st.name() == "message")).count();
    assert!(first_stream < MESSAGES, "all {first_stream} messages were queued unacknowledged");

    // Once bob sees her go, nothing she failed to acknowledge is left with her session:
    // every message waits in offline storage, whether she got it, it was refused, or it
    // came after the close.
    // Her unavailable presence follows the rerouting of what she held, about a megabyte
    // into offline storage: on PostgreSQL on a busy machine, longer than the usual wait.
    if !gone_early {
        bob.expect_within(Duration::from_secs(30), "alice gone", gone).await;
    }
    let mut again = Client::login(server.c2s, "alice", "pw", "again").await;
    again.send("<presence/>").await;
    let mut ids = Vec::new();
    for _ in 0..MESSAGES {
        let m = again.expect("an offline message", |e| e.name() == "message").await;
        assert!(m.child("delay", ns::DELAY).is_some(), "not from offline storage");
        ids.push(m.attr("id").expect("an id").to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), MESSAGES, "{ids:?}");
}
