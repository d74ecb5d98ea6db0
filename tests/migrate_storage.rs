//! `jabberwock migrate-storage`: a database populated by the real server (accounts,
//! rosters, vCards, private XML, PEP, archives, offline messages, a persistent room) is
//! copied into PostgreSQL row for row, and the server then runs on the copy.
//!
//! Needs `JABBERWOCK_TEST_POSTGRES` (a PostgreSQL server URL without a database, as for
//! the storage crate's tests); skips without it unless `JABBERWOCK_TEST_REQUIRE_POSTGRES`
//! is set.

use std::path::Path;
use std::time::Duration;

use jabberwock_proto::ns;
use jabberwock_storage::{ExportCursor, Record, RecordKind, Store};
use jabberwock_tests::{befriend, Client, ServerProcess};

const ROOM: &str = "kept@conference.localhost";

fn target_url(dir: &Path) -> Option<String> {
    let Ok(server) = std::env::var("JABBERWOCK_TEST_POSTGRES") else {
        assert!(
            std::env::var("JABBERWOCK_TEST_REQUIRE_POSTGRES").is_err(),
            "JABBERWOCK_TEST_REQUIRE_POSTGRES is set but JABBERWOCK_TEST_POSTGRES is not"
        );
        eprintln!("skipping: set JABBERWOCK_TEST_POSTGRES=postgres://user@host:port to run it");
        return None;
    };
    let name = dir.file_name().expect("a temporary directory").to_string_lossy().to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "");
    Some(format!("{}/jw_migrate_{}_{name}", server.trim_end_matches('/'), std::process::id()))
}

/// Every row of every table, without archive seqs (each backend numbers items itself;
/// the order of the rows is what must survive).
async fn all_rows(url: &str) -> Vec<Record> {
    let store = Store::open(url).await.expect("open");
    let mut rows = Vec::new();
    for kind in RecordKind::ALL {
        let mut cursor = ExportCursor::default();
        loop {
            let page = store.export(kind, &cursor, 500).await.expect("export");
            let Some(last) = page.last() else { break };
            cursor = last.cursor();
            rows.extend(page.into_iter().map(|r| match r {
                Record::Archive { item, .. } => Record::Archive { seq: 0, item },
                r => r,
            }));
        }
    }
    store.close().await;
    rows
}

async fn iq_ok(c: &mut Client, id: &str, xml: &str) {
    let r = c.iq(id, xml).await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
}

fn body(text: &str) -> impl Fn(&jabberwock_proto::Element) -> bool + '_ {
    move |e| e.name() == "message" && e.child_text("body", ns::CLIENT).as_deref() == Some(text)
}

/// What alice and bob do on the first server, so that every kind of store holds data.
async fn populate(server: &ServerProcess) {
    let mut alice = Client::login(server.c2s, "alice", "alice-pw", "a").await;
    let mut bob = Client::login(server.c2s, "bob", "bob-pw", "b").await;
    alice.send("<presence/>").await;
    bob.send("<presence/>").await;
    befriend(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;
    iq_ok(&mut alice, "vc", "<iq type='set' id='vc'><vCard xmlns='vcard-temp'><FN>Alice A</FN></vCard></iq>").await;
    iq_ok(&mut alice, "pr", "<iq type='set' id='pr'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'><x>1</x></prefs></query></iq>").await;
    iq_ok(
        &mut alice,
        "pep",
        "<iq type='set' id='pep'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='http://jabber.org/protocol/nick'>\
         <item id='current'><nick xmlns='http://jabber.org/protocol/nick'>Ally</nick></item></publish></pubsub></iq>",
    )
    .await;
    for text in ["one", "two", "three"] {
        alice.send(format!("<message to='bob@localhost' type='chat'><body>{text}</body></message>")).await;
        bob.expect("a chat message", body(text)).await;
    }
    // A persistent room with a message in its archive.
    alice.send(format!("<presence to='{ROOM}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    alice.expect("the room's self-presence", |e| e.name() == "presence" && e.attr("from") == Some(&format!("{ROOM}/alice"))).await;
    iq_ok(
        &mut alice,
        "cfg",
        &format!(
            "<iq type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
             <field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"
        ),
    )
    .await;
    alice.send(format!("<message to='{ROOM}' type='groupchat'><body>in the room</body></message>")).await;
    alice.expect("the room's echo", body("in the room")).await;
    // bob goes offline; what alice sends now waits in offline storage.
    drop(bob);
    alice.ping().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for text in ["while away 1", "while away 2"] {
        alice.send(format!("<message to='bob@localhost' type='chat'><body>{text}</body></message>")).await;
    }
    alice.ping().await;
}

#[tokio::test]
async fn a_populated_database_moves_to_postgres_whole() {
    let dir = tempfile::tempdir().unwrap();
    let Some(target) = target_url(dir.path()) else { return };
    let mut server = ServerProcess::new(Path::new(env!("CARGO_BIN_EXE_jabberwock-test-server")), dir.path());
    server.admin(&["adduser", "alice@localhost", "alice-pw"]).await;
    server.admin(&["adduser", "bob@localhost", "bob-pw"]).await;
    server.start().await;
    populate(&server).await;
    let source = server.storage_url();
    let (ok, output) = server.cli(&["migrate-storage", "--from", &source, "--to", &target]).await;
    assert!(!ok && output.contains("stop it first"), "copying from a running server's storage: {output}");
    server.stop().await;

    let before = all_rows(&source).await;
    let stores: std::collections::BTreeSet<(&str, &str, &str)> = before
        .iter()
        .filter_map(|r| match r {
            Record::Keyval { host, user, store, .. } | Record::Map { host, user, store, .. } => Some((host.as_str(), user.as_str(), store.as_str())),
            Record::Archive { item, .. } => Some((item.host.as_str(), item.user.as_str(), item.store.as_str())),
            Record::Account { .. } => None,
        })
        .collect();
    let accounts = before.iter().filter(|r| matches!(r, Record::Account { .. })).count();
    assert_eq!(accounts, 2);
    let store_names: std::collections::BTreeSet<&str> = stores.iter().map(|(_, _, s)| *s).collect();
    for name in ["roster", "vcard", "private", "pep_nodes", "mam", "offline", "muc_rooms", "muc"] {
        assert!(store_names.contains(name), "no {name} store was written: {stores:?}");
    }

    server.admin(&["migrate-storage", "--from", &source, "--to", &target]).await;
    assert_eq!(all_rows(&target).await, before, "the copy differs from the original");

    // Into a database that holds data, it refuses.
    let (ok, output) = server.cli(&["migrate-storage", "--from", &source, "--to", &target]).await;
    assert!(!ok && output.contains("not empty"), "{output}");

    // The server runs on the copy: passwords, roster, archive, offline messages and room.
    server.set_storage(&target);
    server.start().await;
    let mut bob = Client::login(server.c2s, "bob", "bob-pw", "b2").await;
    bob.send("<presence/>").await;
    bob.expect("an offline message", body("while away 1")).await;
    bob.expect("an offline message", body("while away 2")).await;
    let roster = bob.iq("r", "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>").await;
    assert!(roster.to_xml_string().contains("alice@localhost"), "{}", roster.to_xml_string());
    bob.send("<iq type='set' id='mam'><query xmlns='urn:xmpp:mam:2' queryid='q'/></iq>").await;
    for text in ["one", "two", "three"] {
        bob.expect("an archived message", |e| e.name() == "message" && e.to_xml_string().contains(&format!("<body>{text}</body>"))).await;
    }
    bob.expect("the end of the archive", |e| e.name() == "iq" && e.attr("id") == Some("mam")).await;
    let room = bob.iq("d", &format!("<iq type='get' id='d' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")).await;
    assert!(room.to_xml_string().contains("muc_persistent"), "{}", room.to_xml_string());
    server.stop().await;
    <sqlx::Postgres as sqlx::migrate::MigrateDatabase>::force_drop_database(&target).await.expect("drop the test database");
}
