//! Offline storage and the message archive under load and failure: quotas in messages and
//! bytes, what a refused message leaves behind, delivery in pages that leave storage only
//! once the client has them, archive writes that survive a database that is briefly
//! unavailable, and archive retention.

use std::time::Duration;

use jabberwock_proto::{ns, Element, ReadEvent};
use jabberwock_tests::{Client, TestServer, TIMEOUT};

const SM: &str = "urn:xmpp:sm:3";
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

/// What a client with stream management has received: the message bodies in order, and
/// how many stanzas (the `h` it would acknowledge).
#[derive(Default)]
struct Received {
    bodies: Vec<String>,
    stanzas: u32,
}

impl Received {
    /// Reads until nothing comes for [`QUIET`], answering the server's `<r/>` with an
    /// ack when `ack` is set, and ignoring it otherwise.
    async fn read(&mut self, c: &mut Client, ack: bool) {
        while let Some(ev) = c.next_event_by(tokio::time::Instant::now() + QUIET).await {
            let ReadEvent::Stanza(st) = ev else { continue };
            let e = st.to_element().expect("parses");
            if e.is("r", SM) {
                if ack {
                    c.send(format!("<a xmlns='{SM}' h='{}'/>", self.stanzas)).await;
                }
                continue;
            }
            if matches!(e.name(), "message" | "presence" | "iq") {
                self.stanzas += 1;
                self.bodies.extend(body(&e));
            }
        }
    }
}

/// Logs in with stream management (not resumable) and sends initial presence.
async fn with_sm(server: &TestServer, user: &str, resource: &str) -> Client {
    let mut c = Client::login(server.c2s, user, "pw", resource).await;
    c.send(format!("<enable xmlns='{SM}'/>")).await;
    c.expect("enabled", |e| e.is("enabled", SM)).await;
    c.send("<presence/>").await;
    c
}

/// alice and bob exist; alice sends bob, who is offline, `total` messages `m1`, `m2`...
/// and waits until the server has stored them all.
async fn alice_writes_to_offline_bob(server: &TestServer, total: usize) {
    users(server, &["alice", "bob"]).await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    for i in 1..=total {
        alice.send(format!("<message to='bob@localhost' type='chat'><body>m{i}</body></message>")).await;
    }
    // Through the same connection, so every message above was stored by then.
    alice.ping().await;
}

fn numbered(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("m{i}")).collect()
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

#[tokio::test]
async fn offline_messages_come_in_pages_and_leave_storage_once_acknowledged() {
    let server = TestServer::start().await;
    let total = 150;
    alice_writes_to_offline_bob(&server, total).await;

    // A client that acknowledges nothing gets one page, and nothing more.
    let mut bob = with_sm(&server, "bob", "b").await;
    let mut first = Received::default();
    first.read(&mut bob, false).await;
    assert_eq!(first.bodies, numbered(100), "one page, in order");
    // The connection drops before any acknowledgement: everything is still stored, once.
    drop(bob);
    tokio::time::sleep(QUIET).await;

    let mut bob = with_sm(&server, "bob", "b").await;
    let mut again = Received::default();
    again.read(&mut bob, true).await;
    assert_eq!(again.bodies, numbered(total), "every message again, each once, in order");
    drop(bob);
    tokio::time::sleep(QUIET).await;

    // Acknowledged, they are gone.
    let mut bob = with_sm(&server, "bob", "b").await;
    let mut last = Received::default();
    last.read(&mut bob, true).await;
    assert!(last.bodies.is_empty(), "delivered again: {:?}", last.bodies);
}

#[tokio::test]
async fn without_stream_management_offline_messages_leave_storage_once_written() {
    let server = TestServer::start().await;
    let total = 250;
    alice_writes_to_offline_bob(&server, total).await;

    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    bob.send("<presence/>").await;
    let mut got = Received::default();
    got.read(&mut bob, false).await;
    assert_eq!(got.bodies, numbered(total), "every page, in order");
    drop(bob);
    tokio::time::sleep(QUIET).await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    bob.send("<presence/>").await;
    bob.expect_none(QUIET, "a message delivered again", |e| body(e).is_some()).await;
}

#[tokio::test]
async fn an_archive_batch_that_fails_is_retried_until_the_database_is_back() {
    if jabberwock_tests::on_postgres() {
        eprintln!("skipping: this test holds SQLite's write lock");
        return;
    }
    let server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    bob.send("<presence/>").await;
    let _ = bob.iq("p", "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>").await;

    // Another process holds SQLite's write lock for longer than the server waits for it
    // (its busy timeout is 5 s): the first attempt at the archive batch fails.
    let db = server.dir.path().join("jabberwock.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&db);
    let mut lock = sqlx::ConnectOptions::connect(&options).await.expect("open the database");
    sqlx::query("BEGIN IMMEDIATE").execute(&mut lock).await.expect("take the write lock");

    alice.send("<message to='bob@localhost' type='chat'><body>while locked</body></message>").await;
    bob.expect("delivered meanwhile", |e| body(e).as_deref() == Some("while locked")).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    sqlx::query("COMMIT").execute(&mut lock).await.expect("release the write lock");

    let archived = tokio::time::timeout(TIMEOUT * 6, archive(&mut bob, "q")).await.expect("the archive answers");
    assert_eq!(archived, ["while locked"]);
}

#[tokio::test]
async fn the_archive_forgets_messages_older_than_a_year_by_default() {
    let server = TestServer::start().await;
    users(&server, &["bob"]).await;
    // A second handle on the server's storage stands for messages archived a while ago.
    let store = jabberwock_storage::Store::open(&server.running.as_ref().expect("running").server.config.storage_url()).await.expect("open the store");
    let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
    let day_us = 86_400 * 1_000_000;
    let items: Vec<_> = [("old", 366), ("recent", 364)]
        .into_iter()
        .map(|(id, age_days)| jabberwock_storage::ArchiveAppend {
            host: "localhost".into(),
            user: "bob".into(),
            store: "mam".into(),
            id: id.into(),
            stamp_us: now_us - age_days * day_us,
            with: "alice@localhost".into(),
            payload: format!("<message xmlns='jabber:client' from='alice@localhost/a' to='bob@localhost' type='chat'><body>{id}</body></message>").into_bytes(),
        })
        .collect();
    store.archive_append_batch(&items).await.expect("archive the messages");
    store.close().await;
    // Retention runs at startup, then hourly.
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, "", "").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut kept = archive(&mut bob, "q0").await;
    for n in 1.. {
        if kept == ["recent"] || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        kept = archive(&mut bob, &format!("q{n}")).await;
    }
    assert_eq!(kept, ["recent"]);
}

#[tokio::test]
async fn stored_messages_in_a_resumed_session_leave_storage_once_acknowledged() {
    let server = TestServer::start().await;
    let total = 150;
    alice_writes_to_offline_bob(&server, total).await;

    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    bob.send(format!("<enable xmlns='{SM}' resume='true'/>")).await;
    let enabled = bob.expect("enabled", |e| e.is("enabled", SM)).await;
    let id = enabled.attr("id").expect("an id to resume").to_owned();
    bob.send("<presence/>").await;
    let mut first = Received::default();
    first.read(&mut bob, false).await;
    assert_eq!(first.bodies, numbered(100), "one page");
    drop(bob);

    // Resumed on a new connection having acknowledged nothing: the page comes again, and
    // once acknowledged, the rest.
    let (mut bob, _) = Client::connect(server.c2s).await.starttls().await;
    bob.send(jabberwock_tests::plain_auth("bob", "pw")).await;
    assert!(bob.next_element().await.is("success", ns::SASL));
    bob.restart_stream().await;
    bob.send(format!("<resume xmlns='{SM}' previd='{id}' h='0'/>")).await;
    bob.expect("resumed", |e| e.is("resumed", SM)).await;
    let mut resumed = Received::default();
    resumed.read(&mut bob, true).await;
    assert_eq!(resumed.bodies, numbered(total), "the page again, then the rest");
    bob.send(format!("<a xmlns='{SM}' h='{}'/>", resumed.stanzas)).await;
    bob.send("<presence type='unavailable'/>").await;
    bob.send("</stream:stream>").await;
    tokio::time::sleep(QUIET).await;

    let mut bob = with_sm(&server, "bob", "b").await;
    let mut last = Received::default();
    last.read(&mut bob, true).await;
    assert!(last.bodies.is_empty(), "delivered again: {:?}", last.bodies);
}
