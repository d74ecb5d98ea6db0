//! XEP-0357 push notifications against the real server, with a raw XEP-0114 component as
//! the app server: enabling, a notification when the account is offline or its session
//! is parked, coalescing, and a registration removed when the app server refuses.

use std::time::Duration;

use jabberwock_proto::{ns, Element};
use jabberwock_tests::{free_port, test_config, Client, Component, TestServer};

const APP: &str = "push.localhost";
const PUSH: &str = "urn:xmpp:push:0";

async fn server(push: &str) -> (TestServer, Component) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_port();
    let tables = format!("[components]\nlisten = ['{listen}']\n[components.domains.'{APP}']\nsecret = 'app'\n[push]\nmin_interval_secs = 1\n{push}");
    let config = test_config(dir.path(), "", &tables);
    let server = TestServer::start_config(dir, config).await;
    server.adduser("alice", "pw").await;
    server.adduser("bob", "pw").await;
    let mut app = Component::connect(listen, APP).await;
    assert!(app.handshake("app").await.is("handshake", "jabber:component:accept"));
    (server, app)
}

async fn enable(alice: &mut Client) {
    let enable = format!(
        "<iq type='set' id='en'><enable xmlns='{PUSH}' jid='{APP}' node='device-1'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='secret'><value>s3cr3t</value></field></x></enable></iq>"
    );
    let r = alice.iq("en", &enable).await;
    assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml_string());
}

/// The next publish the app server gets, with the form fields of its notification.
async fn notification(app: &mut Component) -> (Element, Vec<(String, String)>) {
    let iq = app.element().await;
    assert_eq!((iq.name(), iq.attr("type"), iq.attr("from"), iq.attr("to")), ("iq", Some("set"), Some("alice@localhost"), Some(APP)), "{}", iq.to_xml_string());
    let xml = iq.to_xml_string();
    let publish = iq.child("pubsub", ns::PUBSUB).and_then(|p| p.child("publish", ns::PUBSUB)).unwrap_or_else(|| panic!("a publish: {xml}"));
    assert_eq!(publish.attr("node"), Some("device-1"));
    let form = publish.child("item", ns::PUBSUB).and_then(|i| i.child("notification", PUSH)).and_then(|n| n.child("x", ns::DATA_FORMS)).unwrap_or_else(|| panic!("a summary: {xml}"));
    let fields = form.children().map(|f| (f.attr("var").unwrap_or_default().to_owned(), f.child_text("value", ns::DATA_FORMS).unwrap_or_default())).collect();
    (iq, fields)
}

fn field<'a>(fields: &'a [(String, String)], var: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == var).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn an_offline_or_parked_account_is_notified_and_a_refusing_app_server_is_dropped() {
    let (server, mut app) = server("").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "phone").await;
    // Bad registrations are refused and change nothing.
    let no_node = alice.iq("bad1", &format!("<iq type='set' id='bad1'><enable xmlns='{PUSH}' jid='{APP}'/></iq>")).await;
    assert_eq!(no_node.attr("type"), Some("error"));
    let bad_jid = alice.iq("bad2", &format!("<iq type='set' id='bad2'><enable xmlns='{PUSH}' jid='@@' node='n'/></iq>")).await;
    assert_eq!(bad_jid.attr("type"), Some("error"));
    let big = "x".repeat(3000);
    let huge = alice.iq("bad3", &format!("<iq type='set' id='bad3'><enable xmlns='{PUSH}' jid='{APP}' node='{big}'/></iq>")).await;
    assert_eq!(huge.attr("type"), Some("error"), "{}", huge.to_xml_string());
    enable(&mut alice).await;
    drop(alice);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut bob = Client::login(server.c2s, "bob", "pw", "desk").await;
    bob.send("<message to='alice@localhost' type='chat'><body>are you there?</body></message>").await;
    let (iq, fields) = notification(&mut app).await;
    assert_eq!(field(&fields, "FORM_TYPE"), Some("urn:xmpp:push:summary"));
    assert_eq!(field(&fields, "message-count"), Some("1"));
    assert_eq!(field(&fields, "last-message-body"), None, "no body unless the operator allows it");
    assert_eq!(field(&fields, "last-message-sender"), None);
    let secret = iq.to_xml_string();
    assert!(secret.contains("publish-options") && secret.contains("s3cr3t"), "{secret}");
    app.send(&format!("<iq type='result' from='{APP}' to='alice@localhost' id='{}'/>", iq.attr("id").unwrap())).await;
    // More messages within the interval are covered by that notification.
    bob.send("<message to='alice@localhost' type='chat'><body>hello?</body></message>").await;
    bob.send("<message to='alice@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>").await;
    bob.ping().await;

    // A parked session (XEP-0198) is notified too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut phone = Client::login(server.c2s, "alice", "pw", "phone").await;
    phone.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>").await;
    phone.expect("enabled", |e| e.name() == "enabled").await;
    phone.send("<presence/>").await;
    phone.ping().await;
    drop(phone);
    tokio::time::sleep(Duration::from_millis(200)).await;
    bob.send("<message to='alice@localhost/phone' type='chat'><body>wake up</body></message>").await;
    let (iq, _) = notification(&mut app).await;
    // The app server refuses: the registration goes.
    app.send(&format!(
        "<iq type='error' from='{APP}' to='alice@localhost' id='{}'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        iq.attr("id").unwrap()
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    bob.send("<message to='alice@localhost/phone' type='chat'><body>still there?</body></message>").await;
    bob.ping().await;
    let quiet = tokio::time::timeout(Duration::from_millis(700), app.element()).await;
    assert!(quiet.is_err(), "notified after the app server refused: {:?}", quiet.map(|e| e.to_xml_string()));
}

#[tokio::test]
async fn the_operator_may_include_sender_and_body() {
    let (server, mut app) = server("include_sender = true\ninclude_body = true\n").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "phone").await;
    enable(&mut alice).await;
    drop(alice);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "desk").await;
    bob.send("<message to='alice@localhost' type='chat'><body>the body</body></message>").await;
    let (_, fields) = notification(&mut app).await;
    assert_eq!(field(&fields, "last-message-body"), Some("the body"));
    assert_eq!(field(&fields, "last-message-sender"), Some("bob@localhost"));
}

/// In a room, only a message naming the occupant's nick wakes the phone.
#[tokio::test]
async fn a_mention_in_a_room_notifies_a_parked_occupant() {
    let (server, mut app) = server("").await;
    let room = "lounge@conference.localhost";
    let mut phone = Client::login(server.c2s, "alice", "pw", "phone").await;
    enable(&mut phone).await;
    phone.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>").await;
    phone.expect("enabled", |e| e.name() == "enabled").await;
    phone.send("<presence/>").await;
    phone.send(format!("<presence to='{room}/Ally'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    phone.expect("the room's subject", |e| e.name() == "message" && e.child("subject", ns::CLIENT).is_some()).await;
    let instant = format!("<iq type='set' id='inst' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>");
    assert_eq!(phone.iq("inst", &instant).await.attr("type"), Some("result"));
    let mut bob = Client::login(server.c2s, "bob", "pw", "desk").await;
    bob.send(format!("<presence to='{room}/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    bob.expect("the room's subject", |e| e.name() == "message" && e.child("subject", ns::CLIENT).is_some()).await;
    phone.ping().await;
    drop(phone);
    tokio::time::sleep(Duration::from_millis(300)).await;

    bob.send(format!("<message to='{room}' type='groupchat'><body>hello everyone</body></message>")).await;
    bob.expect("the room's echo", |e| e.name() == "message" && e.attr("type") == Some("groupchat")).await;
    let quiet = tokio::time::timeout(Duration::from_millis(500), app.element()).await;
    assert!(quiet.is_err(), "notified of a message that does not mention her: {:?}", quiet.map(|e| e.to_xml_string()));
    bob.send(format!("<message to='{room}' type='groupchat'><body>ally, are you coming?</body></message>")).await;
    let (_, fields) = notification(&mut app).await;
    assert_eq!(field(&fields, "message-count"), Some("1"));
}

/// A client that says it is inactive (XEP-0352) still gets the message, and its app server
/// is told, since the system may have suspended the app.
#[tokio::test]
async fn an_inactive_client_is_notified_too() {
    let (server, mut app) = server("").await;
    let mut phone = Client::login(server.c2s, "alice", "pw", "phone").await;
    enable(&mut phone).await;
    phone.send("<presence/>").await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "desk").await;
    bob.send("<message to='alice@localhost/phone' type='chat'><body>while active</body></message>").await;
    phone.expect("the message", |e| e.name() == "message").await;
    let quiet = tokio::time::timeout(Duration::from_millis(500), app.element()).await;
    assert!(quiet.is_err(), "notified while the client is active: {:?}", quiet.map(|e| e.to_xml_string()));
    phone.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    phone.ping().await;
    bob.send("<message to='alice@localhost/phone' type='chat'><body>while inactive</body></message>").await;
    phone.expect("the message, still delivered", |e| e.name() == "message").await;
    let (_, fields) = notification(&mut app).await;
    assert_eq!(field(&fields, "message-count"), Some("1"));
}
