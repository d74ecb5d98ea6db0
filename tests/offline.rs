//! Offline storage and the message archive under load and failure: quotas in messages and
//! bytes, and what a refused message leaves behind.

use std::time::Duration;

use jabberwock_proto::{ns, Element};
use jabberwock_tests::{Client, TestServer};

const QUIET: Duration = Duration::from_millis(500);

async fn users(server: &TestServer, names: &[&str]) {
    for n in names {
        server.adduser(n, "pw").await;
    }
}

fn body(e: &Element) -> Option<String> {
    (e.name() == "message").then(|| e.child_text("body", ns::CLIENT)).flatten()
}

/// The bodies of every message in `user`'s archive, oldest first.
async fn archive(c: &mut Client, id: &str) -> Vec<String> {
    c.send(format!("<iq type='set' id='{id}'><query xmlns='urn:xmpp:mam:2' queryid='{id}'/></iq>")).await;
    let mut bodies = Vec::new();
    loop {
        let e = c.expect("results and fin", |e| e.name() == "message" || (e.name() == "iq" && e.attr("id") == Some(id))).await;
        if e.name() == "iq" {
            assert_eq!(e.attr("type"), Some("result"), "{}", e.to_xml_string());
            return bodies;
        }
        let fwd = e.child("result", ns::MAM).and_then(|r| r.child("forwarded", ns::FORWARD)).expect("a MAM result");
        bodies.push(fwd.child("message", ns::CLIENT).and_then(|m| m.child_text("body", ns::CLIENT)).unwrap_or_default());
    }
}

#[tokio::test]
async fn the_offline_quota_counts_bytes_and_a_refused_message_is_not_archived() {
    // Room for two of the messages below in bytes (each is stored with its delay stamp),
    // and for many in number.
    let server = TestServer::start_with_tables("", "[limits]\noffline_quota = 50\noffline_quota_bytes = 2000\n").await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let long = "x".repeat(500);
    for i in 1..=3 {
        alice.send(format!("<message to='bob@localhost' type='chat' id='b{i}'><body>m{i} {long}</body></message>")).await;
    }
    let err = alice.expect("the third bounces", |e| e.attr("id") == Some("b3")).await;
    assert_eq!(err.attr("type"), Some("error"));
    assert!(err.child("error", ns::CLIENT).and_then(|e| e.child("service-unavailable", ns::STANZA_ERRORS)).is_some(), "{}", err.to_xml_string());
    alice.expect_none(QUIET, "another bounce", |e| e.attr("type") == Some("error")).await;

    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    bob.send("<presence/>").await;
    for i in 1..=2 {
        let m = bob.expect("an offline message", |e| body(e).is_some()).await;
        assert_eq!(body(&m), Some(format!("m{i} {long}")));
    }
    bob.expect_none(QUIET, "the refused message", |e| body(e).is_some()).await;
    // Neither party's archive keeps the message that went back.
    let bob_archive = archive(&mut bob, "q1").await;
    assert_eq!(bob_archive, [format!("m1 {long}"), format!("m2 {long}")], "the recipient's archive");
    let alice_archive = archive(&mut alice, "q2").await;
    assert_eq!(alice_archive, [format!("m1 {long}"), format!("m2 {long}")], "the sender's archive");
}

#[tokio::test]
async fn a_message_over_the_count_quota_leaves_no_archive_copy() {
    let server = TestServer::start_with_tables("", "[limits]\noffline_quota = 1\n").await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    alice.send("<message to='bob@localhost' type='chat' id='c1'><body>kept</body></message>").await;
    alice.send("<message to='bob@localhost' type='chat' id='c2'><body>refused</body></message>").await;
    let err = alice.expect("the second bounces", |e| e.attr("id") == Some("c2")).await;
    assert!(err.child("error", ns::CLIENT).and_then(|e| e.child("service-unavailable", ns::STANZA_ERRORS)).is_some());
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    assert_eq!(archive(&mut bob, "q").await, ["kept"]);
}
