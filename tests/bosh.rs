//! XEP-0124/0206 BOSH over real HTTP requests, sharing the session core with TCP clients.

use jabberwock_proto::ns;
use jabberwock_tests::bosh::{creation, http, post, Bosh, HTTPBIND};
use jabberwock_tests::{Client, TestServer};

#[tokio::test]
async fn a_bosh_session_logs_in_and_chats_with_a_tcp_user() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    server.adduser("bob", "secret").await;
    let (mut bosh, features) = Bosh::create(server.http, 2).await;
    assert!(features.child("mechanisms", ns::SASL).is_some());
    assert_eq!(bosh.login("alice", "secret").await, "alice@localhost/bosh");

    let mut bob = Client::login(server.c2s, "bob", "secret", "tcp").await;
    bosh.send("", "<message xmlns='jabber:client' to='bob@localhost/tcp'><body>over bosh</body></message>").await;
    let m = bob.expect("message over bosh", |e| e.name() == "message").await;
    assert_eq!(m.attr("from"), Some("alice@localhost/bosh"));

    // A held request carries a message that arrives while it waits.
    let body = bosh.next("", "");
    let addr = bosh.addr;
    let held = tokio::spawn(async move { post(addr, &body).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    bob.send("<message to='alice@localhost/bosh'><body>to bosh</body></message>").await;
    let (status, el) = held.await.unwrap();
    assert_eq!(status, 200);
    let m = el.child("message", ns::CLIENT).expect("the held request got the message");
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("to bosh"));

    // A message that arrives while no request is held goes out with the next request,
    // at once rather than after `wait`.
    bob.send("<message to='alice@localhost/bosh'><body>while idle</body></message>").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let queued = bosh.send("", "").await;
    assert!(queued.child("message", ns::CLIENT).is_some(), "{}", queued.to_xml_string());
    assert!(started.elapsed() < std::time::Duration::from_millis(900), "answered at once, not after wait");

    // With nothing to say, a request is answered empty after `wait`.
    let started = std::time::Instant::now();
    let empty = bosh.send("", "").await;
    assert!(empty.children().next().is_none() && started.elapsed() >= std::time::Duration::from_secs(1));

    // A repeated rid gets the same response again.
    let repeat = format!("<body xmlns='{HTTPBIND}' rid='{}' sid='{}'/>", bosh.rid, bosh.sid);
    let (status, again) = post(server.http, &repeat).await;
    assert_eq!((status, again.to_xml_string()), (200, empty.to_xml_string()));

    // Terminate: the session ends and bob sees alice leave.
    bob.send("<presence to='alice@localhost/bosh'/>").await;
    bosh.send("", "<presence xmlns='jabber:client' to='bob@localhost/tcp'/>").await;
    let end = bosh.send(" type='terminate'", "<presence xmlns='jabber:client' type='unavailable'/>").await;
    assert_eq!(end.attr("type"), Some("terminate"));
    let (status, gone) = post(server.http, &bosh.next("", "")).await;
    assert_eq!((status, gone.attr("condition")), (404, Some("item-not-found")));
}

#[tokio::test]
async fn bad_sid_rid_and_bodies_get_terminal_errors() {
    let server = TestServer::start().await;
    let (status, el) = post(server.http, &format!("<body xmlns='{HTTPBIND}' rid='5' sid='nope'/>")).await;
    assert_eq!((status, el.attr("type"), el.attr("condition")), (404, Some("terminate"), Some("item-not-found")));
    let (status, el) = post(server.http, "<body xmlns='urn:wrong' rid='1'/>").await;
    assert_eq!((status, el.attr("condition")), (400, Some("bad-request")));
    let (status, _) = http(server.http, "POST", "", "not xml at all").await;
    assert_eq!(status, 400);

    // A rid far outside the window ends the session.
    let (mut bosh, _) = Bosh::create(server.http, 1).await;
    bosh.rid += 10;
    let (status, el) = post(server.http, &bosh.next("", "")).await;
    assert_eq!((status, el.attr("condition")), (404, Some("item-not-found")));
}

#[tokio::test]
async fn cors_preflight_allows_local_pages_only() {
    let server = TestServer::start().await;
    let preflight = "Origin: http://localhost:8080\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n";
    let (status, raw) = http(server.http, "OPTIONS", preflight, "").await;
    assert!(status < 300, "{raw}");
    assert!(raw.to_ascii_lowercase().contains("access-control-allow-origin: http://localhost:8080"), "{raw}");
    let foreign = "Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n";
    let (_, raw) = http(server.http, "OPTIONS", foreign, "").await;
    assert!(!raw.to_ascii_lowercase().contains("access-control-allow-origin"), "{raw}");
}

/// alice signed in over BOSH, bob over TCP, and bob has seen alice's directed presence.
async fn alice_on_bosh_bob_on_tcp(server: &TestServer) -> (Bosh, Client) {
    server.adduser("alice", "secret").await;
    server.adduser("bob", "secret").await;
    let (mut bosh, _) = Bosh::create(server.http, 1).await;
    bosh.login("alice", "secret").await;
    let mut bob = Client::login(server.c2s, "bob", "secret", "tcp").await;
    bob.send("<presence/>").await;
    bosh.send("", "<presence xmlns='jabber:client' to='bob@localhost/tcp'/>").await;
    bob.expect("alice's directed presence", |e| e.name() == "presence" && e.attr("from") == Some("alice@localhost/bosh")).await;
    (bosh, bob)
}

#[tokio::test]
async fn stanzas_over_bosh_reach_others_as_well_formed_xml() {
    let server = TestServer::start().await;
    let (mut bosh, mut bob) = alice_on_bosh_bob_on_tcp(&server).await;
    // A BOSH stanza is rebuilt from the parsed body: prefixed attributes must keep their
    // prefix's declaration, and an element in the XML namespace its `xml:` prefix, or bob's
    // stream breaks on what alice wrote.
    bosh.send(
        "",
        "<message xmlns='jabber:client' xmlns:x='urn:x' to='bob@localhost/tcp' x:a='1'>\
         <body>hi</body><e xmlns='urn:e' x:b='2'/><xml:z/></message>",
    )
    .await;
    let m = bob.expect("alice's message", |e| e.name() == "message").await;
    assert_eq!(m.attr("x:a"), Some("1"));
    assert_eq!(m.child("e", "urn:e").and_then(|e| e.attr("x:b")), Some("2"));
    assert!(m.child("z", ns::XML).is_some(), "{}", m.to_xml_string());
}

#[tokio::test]
async fn an_inactive_session_ends_with_unavailable_presence() {
    let server = TestServer::start_with_tables("", "[http]\nbosh_inactivity_secs = 1\n").await;
    let (_bosh, mut bob) = alice_on_bosh_bob_on_tcp(&server).await;
    // No more requests: after the inactivity period alice goes offline.
    bob.expect("unavailable after inactivity", |e| {
        e.name() == "presence" && e.attr("from") == Some("alice@localhost/bosh") && e.attr("type") == Some("unavailable")
    })
    .await;
}

#[tokio::test]
async fn hostile_bosh_requests_get_errors_and_disturb_nobody() {
    let server = TestServer::start().await;
    server.adduser("bob", "secret").await;
    let mut bob = Client::login(server.c2s, "bob", "secret", "tcp").await;

    // A 10 MiB POST is refused before it is buffered whole.
    let huge = format!("<body xmlns='{HTTPBIND}' rid='1'>{}</body>", "x".repeat(10 * 1024 * 1024));
    let (status, _) = http(server.http, "POST", "", &huge).await;
    assert_eq!(status, 413);

    // A skipped rid waits for the missing one, then both are answered in order.
    let (mut bosh, _) = Bosh::create(server.http, 1).await;
    let skipped = format!("<body xmlns='{HTTPBIND}' rid='{}' sid='{}'/>", bosh.rid + 2, bosh.sid);
    let addr = bosh.addr;
    let ahead = tokio::spawn(async move { post(addr, &skipped).await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!ahead.is_finished(), "a request ahead of a missing rid waits for it");
    let (status, _) = post(server.http, &bosh.next("", "")).await;
    assert_eq!(status, 200);
    assert_eq!(ahead.await.unwrap().0, 200);
    bosh.rid += 1;

    // Restricted XML makes the body malformed: a terminal bad-request.
    let (status, end) = post(server.http, &bosh.next("", "<message xmlns='jabber:client'>&undefined;</message>")).await;
    assert_eq!((status, end.attr("condition")), (400, Some("bad-request")));

    let pong = bob.iq("p", "<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(pong.attr("type"), Some("result"));
}

#[tokio::test]
async fn rids_beyond_the_xep_limit_are_bad_requests() {
    let server = TestServer::start().await;
    const MAX_RID: u64 = (1 << 53) - 1;
    for rid in [MAX_RID + 1, u64::MAX] {
        let (status, el) = post(server.http, &creation(1, rid)).await;
        assert_eq!((status, el.attr("condition")), (400, Some("bad-request")), "rid {rid}");
    }
    // Up to the limit the session works, and the rid after it is refused.
    let (mut bosh, _) = Bosh::create_at(server.http, 1, MAX_RID - 1).await;
    let last = bosh.send("", "").await;
    assert_eq!(last.attr("type"), None, "{}", last.to_xml_string());
    let (status, el) = post(server.http, &bosh.next("", "")).await;
    assert_eq!((status, el.attr("condition")), (400, Some("bad-request")));
    let (status, _) = post(server.http, "<body xmlns='http://jabber.org/protocol/httpbind' rid='-1'/>").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_session_creation_flood_is_refused_and_earlier_sessions_work() {
    let server = TestServer::start_with_tables("", "[http]\nbosh_sessions_per_ip_per_minute = 3\n").await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(Bosh::create(server.http, 1).await.0);
    }
    for _ in 0..5 {
        let (status, el) = post(server.http, &creation(1, 1)).await;
        assert_eq!((status, el.attr("type"), el.attr("condition")), (403, Some("terminate"), Some("policy-violation")));
    }
    for (i, bosh) in sessions.iter_mut().enumerate() {
        let user = format!("user{i}");
        server.adduser(&user, "secret").await;
        assert_eq!(bosh.login(&user, "secret").await, format!("{user}@localhost/bosh"));
    }
}

#[tokio::test]
async fn unauthenticated_sessions_are_capped_until_they_sign_in() {
    let server = TestServer::start_with_tables("", "[limits]\nmax_unauthenticated_per_ip = 2\n").await;
    server.adduser("alice", "secret").await;
    let (mut first, _) = Bosh::create(server.http, 1).await;
    let (_second, _) = Bosh::create(server.http, 1).await;
    let (status, el) = post(server.http, &creation(1, 1)).await;
    assert_eq!((status, el.attr("condition")), (403, Some("policy-violation")));
    // Signed in, a session leaves the budget of unauthenticated ones.
    first.login("alice", "secret").await;
    let (_third, features) = Bosh::create(server.http, 1).await;
    assert!(features.child("mechanisms", ns::SASL).is_some());
}

#[tokio::test]
async fn output_over_the_bound_waits_for_a_request_only_until_the_write_deadline() {
    let server = TestServer::start_with_tables("", "[limits]\nmax_session_output_bytes = 600000\nwrite_timeout_secs = 1\n").await;
    let (mut bosh, mut bob) = alice_on_bosh_bob_on_tcp(&server).await;
    // alice makes no request for a while (as a client that paused would), far less than
    // the inactivity period; bob sends more than the bound.
    let body = "x".repeat(100_000);
    for i in 0..20 {
        bob.send(format!("<message to='alice@localhost/bosh' type='chat' id='m{i}'><body>{body}</body></message>")).await;
    }
    bob.expect("alice given up", |e| {
        e.name() == "presence" && e.attr("from") == Some("alice@localhost/bosh") && e.attr("type") == Some("unavailable")
    })
    .await;
    bob.ping().await;
    // Her next requests carry what was queued, if it is still there, and end the session.
    for _ in 0..10 {
        let (_, body) = post(server.http, &bosh.next("", "")).await;
        if body.attr("type") == Some("terminate") {
            return;
        }
        assert!(body.children().all(|c| c.name() == "message" || c.is("error", ns::STREAM)), "{}", body.to_xml_string());
    }
    panic!("the session did not end");
}
