//! Caches that outsiders can grow: the capabilities and account caches, filled past
//! small bounds.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jabberwock::modules::blocking::Blocking;
use jabberwock::modules::caps::Caps;
use jabberwock::server::Server;
use jabberwock_proto::{ns, Element};
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
