//! Durability of the real `jabberwock` process: what it acknowledged survives a graceful
//! restart and `kill -9`, and the admin commands change what the next run sees.

use std::path::Path;
use std::time::Duration;

use jabberwock_proto::{ns, Element};
use jabberwock_tests::{Client, ServerProcess};

const BODIES: [&str; 3] = ["one", "two", "three"];

/// A server process with its data in `dir` and the accounts alice and bob, created with
/// the `adduser` command before the first start.
async fn server_with_accounts(dir: &Path) -> ServerProcess {
    let mut server = ServerProcess::new(Path::new(env!("CARGO_BIN_EXE_jabberwock-test-server")), dir);
    server.admin(&["adduser", "alice@localhost", "alice-pw"]).await;
    server.admin(&["adduser", "bob@localhost", "bob-pw"]).await;
    server.start().await;
    server
}

async fn login(server: &ServerProcess, user: &str, password: &str) -> Client {
    Client::login(server.c2s, user, password, "res").await
}

/// bob sends the messages to alice, who is offline, and waits until the server has
/// handled them (it stores each offline message before reading the next stanza).
async fn bob_writes_to_offline_alice(server: &ServerProcess) -> Client {
    let mut bob = login(server, "bob", "bob-pw").await;
    for (i, body) in BODIES.iter().enumerate() {
        bob.send(format!("<message to='alice@localhost' type='chat' id='m{i}'><body>{body}</body></message>")).await;
    }
    bob.ping().await;
    bob
}

/// alice comes online and gets exactly the stored messages, in order, each stamped with
/// a delay; they are then gone from storage.
async fn alice_gets_the_offline_messages(server: &ServerProcess) {
    let mut alice = login(server, "alice", "alice-pw").await;
    alice.send("<presence/>").await;
    for body in BODIES {
        let m = alice.expect("an offline message", |e| e.name() == "message").await;
        assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some(body), "{}", m.to_xml_string());
        assert_eq!(m.attr("from"), Some("bob@localhost/res"), "{}", m.to_xml_string());
        let delay = m.child("delay", ns::DELAY).unwrap_or_else(|| panic!("no delay stamp: {}", m.to_xml_string()));
        assert!(delay.attr("stamp").is_some_and(|s| s.ends_with('Z')), "{}", m.to_xml_string());
    }
    alice.expect_none(Duration::from_millis(500), "a further message", |e| e.name() == "message").await;
    drop(alice);
    let mut again = login(server, "alice", "alice-pw").await;
    again.send("<presence/>").await;
    again.expect_none(Duration::from_millis(500), "a message delivered twice", |e| e.name() == "message").await;
}

/// SASL PLAIN on a new encrypted stream: `<success/>` or `<failure/>`.
async fn try_login(server: &ServerProcess, user: &str, password: &str) -> Element {
    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    c.try_plain(user, password).await
}

fn assert_refused(el: &Element) {
    assert!(el.is("failure", ns::SASL), "expected a failure, got {}", el.to_xml_string());
    assert!(el.child("not-authorized", ns::SASL).is_some(), "{}", el.to_xml_string());
}

async fn add_roster_item(c: &mut Client, jid: &str) {
    let set = format!(
        "<iq type='set' id='add'><query xmlns='jabber:iq:roster'><item jid='{jid}' name='Carol'><group>Friends</group></item></query></iq>"
    );
    let reply = c.iq("add", &set).await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", reply.to_xml_string());
}

async fn roster(c: &mut Client) -> Vec<Element> {
    let r = c.iq("get", "<iq type='get' id='get'><query xmlns='jabber:iq:roster'/></iq>").await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
    r.child("query", ns::ROSTER).expect("roster query").children().cloned().collect()
}

#[tokio::test]
async fn offline_messages_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = server_with_accounts(dir.path()).await;
    let bob = bob_writes_to_offline_alice(&server).await;
    server.stop().await;
    // Connected clients were told why the stream ended.
    let t = bob.read_to_close().await;
    assert_eq!(t.stream_error().as_deref(), Some("system-shutdown"), "{}", t.raw);
    server.start().await;
    alice_gets_the_offline_messages(&server).await;
}

#[tokio::test]
async fn offline_messages_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = server_with_accounts(dir.path()).await;
    let _bob = bob_writes_to_offline_alice(&server).await;
    server.kill9().await;
    server.start().await;
    alice_gets_the_offline_messages(&server).await;
}

#[tokio::test]
async fn roster_and_password_change_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = server_with_accounts(dir.path()).await;
    let mut alice = login(&server, "alice", "alice-pw").await;
    add_roster_item(&mut alice, "carol@localhost").await;
    server.kill9().await;
    server.admin(&["passwd", "alice@localhost", "new-pw"]).await;
    server.start().await;

    assert_refused(&try_login(&server, "alice", "alice-pw").await);
    let mut alice = login(&server, "alice", "new-pw").await;
    let items = roster(&mut alice).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(item.attr("jid"), Some("carol@localhost"));
    assert_eq!(item.attr("name"), Some("Carol"));
    assert_eq!(item.attr("subscription"), Some("none"));
    assert_eq!(item.child_text("group", ns::ROSTER).as_deref(), Some("Friends"));
}

#[tokio::test]
async fn deluser_removes_the_account_and_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = server_with_accounts(dir.path()).await;
    let mut alice = login(&server, "alice", "alice-pw").await;
    add_roster_item(&mut alice, "carol@localhost").await;
    drop(alice);
    // bob's message waits offline for alice, who is then deleted by the running server's admin.
    let mut bob = login(&server, "bob", "bob-pw").await;
    bob.send("<message to='alice@localhost' type='chat'><body>before</body></message>").await;
    bob.ping().await;
    server.admin(&["deluser", "alice@localhost"]).await;
    assert_refused(&try_login(&server, "alice", "alice-pw").await);
    let (ok, output) = server.cli(&["passwd", "alice@localhost", "x"]).await;
    assert!(!ok, "passwd for a deleted account succeeded: {output}");

    // Still gone after a restart; a new account of the same name starts empty.
    server.stop().await;
    server.start().await;
    assert_refused(&try_login(&server, "alice", "alice-pw").await);
    server.admin(&["adduser", "alice@localhost", "fresh-pw"]).await;
    let mut alice = login(&server, "alice", "fresh-pw").await;
    assert_eq!(roster(&mut alice).await, Vec::<Element>::new());
    alice.send("<presence/>").await;
    alice.expect_none(Duration::from_millis(500), "the old account's message", |e| e.name() == "message").await;
}

const SM: &str = "urn:xmpp:sm:3";
/// Messages bob sends to alice's parked session.
const WHILE_PARKED: usize = 200;

/// alice enables resumable stream management and receives one message she never
/// acknowledges; then her connection drops, parking the session. bob sends
/// [`WHILE_PARKED`] more, each acknowledged to him by the server (XEP-0198).
async fn messages_for_a_parked_session(server: &ServerProcess) -> Client {
    let mut alice = login(server, "alice", "alice-pw").await;
    alice.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>").await;
    alice.expect("enabled", |e| e.is("enabled", SM)).await;
    alice.send("<presence/>").await;
    let mut bob = login(server, "bob", "bob-pw").await;
    bob.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    bob.expect("enabled", |e| e.is("enabled", SM)).await;
    bob.send("<message to='alice@localhost/res' type='chat'><body>before</body></message>").await;
    alice.expect("a message she will not acknowledge", |e| e.name() == "message").await;
    drop(alice);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..WHILE_PARKED {
        bob.send(format!("<message to='alice@localhost/res' type='chat'><body>parked {i}</body></message>")).await;
    }
    bob.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    let a = bob.expect("the server's acknowledgement", |e| e.is("a", SM)).await;
    assert_eq!(a.attr("h"), Some((WHILE_PARKED + 1).to_string().as_str()), "{}", a.to_xml_string());
    bob
}

/// alice signs in afresh: every message her parked session held arrives once, in order,
/// and her archive holds each once.
async fn alice_gets_what_her_parked_session_held(server: &ServerProcess) {
    let mut alice = Client::login(server.c2s, "alice", "alice-pw", "new").await;
    alice.send("<presence/>").await;
    let expected = std::iter::once("before".to_owned()).chain((0..WHILE_PARKED).map(|i| format!("parked {i}")));
    for body in expected {
        let m = alice.expect("a held message", |e| e.name() == "message").await;
        assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some(body.as_str()), "{}\n{}", m.to_xml_string(), server.log());
    }
    alice.expect_none(Duration::from_millis(500), "a message delivered twice", |e| e.name() == "message").await;
    let query = "<iq type='set' id='mam'><query xmlns='urn:xmpp:mam:2' queryid='q'><set xmlns='http://jabber.org/protocol/rsm'><max>1000</max></set></query></iq>";
    alice.send(query).await;
    let mut archived = 0;
    loop {
        let el = alice.expect("archive results", |e| e.name() == "message" || e.attr("id") == Some("mam")).await;
        if el.name() != "message" {
            assert_eq!(el.attr("type"), Some("result"), "{}", el.to_xml_string());
            break;
        }
        archived += 1;
    }
    assert_eq!(archived, WHILE_PARKED + 1, "each message archived once");
}

#[tokio::test]
async fn a_parked_sessions_messages_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = server_with_accounts(dir.path()).await;
    let _bob = messages_for_a_parked_session(&server).await;
    server.stop().await;
    server.start().await;
    alice_gets_what_her_parked_session_held(&server).await;
}

#[tokio::test]
async fn a_parked_sessions_messages_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = server_with_accounts(dir.path()).await;
    let _bob = messages_for_a_parked_session(&server).await;
    // The journal is written a batch at a time right after the messages are queued.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.kill9().await;
    server.start().await;
    alice_gets_what_her_parked_session_held(&server).await;
}
