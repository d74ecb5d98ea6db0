//! XEP-0114 external components over real sockets: the handshake, routing both ways,
//! and what senders get when the component is wrong, missing or gone.

use std::net::SocketAddr;

use jabberwock_proto::{ns, Element};
use jabberwock_tests::{free_port, test_config, Client, Component, TestServer, TIMEOUT};

const COMPONENT: &str = "bridge.localhost";
const SECRET: &str = "s3cret";

async fn server() -> (TestServer, SocketAddr) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_port();
    let tables = format!("[components]\nlisten = ['{listen}']\n[components.domains.'{COMPONENT}']\nsecret = '{SECRET}'\n");
    let config = test_config(dir.path(), "", &tables);
    let server = TestServer::start_config(dir, config).await;
    server.adduser("alice", "pw").await;
    (server, listen)
}

fn stream_error(el: &Element) -> Option<String> {
    el.is("error", ns::STREAM).then(|| el.children().next().map(|c| c.name().to_owned()).unwrap_or_default())
}

#[tokio::test]
async fn a_component_serves_its_domain_both_ways() {
    let (server, listen) = server().await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "phone").await;
    // Listed by the domain it belongs to.
    let items = alice.iq("items", "<iq type='get' to='localhost' id='items'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    assert!(items.to_xml_string().contains(COMPONENT), "{}", items.to_xml_string());
    // Nobody connected yet: senders are told.
    let down = alice.iq("down", &format!("<iq type='get' to='{COMPONENT}' id='down'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
    assert!(down.to_xml_string().contains("service-unavailable"), "{}", down.to_xml_string());

    let mut bridge = Component::connect(listen, COMPONENT).await;
    assert!(bridge.handshake(SECRET).await.is("handshake", "jabber:component:accept"));
    alice.send(format!("<message to='user@{COMPONENT}' id='m1' type='chat'><body>to the bridge</body></message>")).await;
    let got = bridge.element().await;
    assert_eq!((got.name(), got.attr("from"), got.attr("to")), ("message", Some("alice@localhost/phone"), Some(&*format!("user@{COMPONENT}"))));
    assert_eq!(got.child_text("body", "jabber:component:accept").as_deref(), Some("to the bridge"), "{}", got.to_xml_string());
    bridge.send(&format!("<message from='user@{COMPONENT}/web' to='alice@localhost/phone' type='chat'><body>from the bridge</body></message>")).await;
    let reply = alice.expect("the component's message", |e| e.name() == "message").await;
    assert_eq!(reply.attr("from"), Some(&*format!("user@{COMPONENT}/web")));
    assert_eq!(reply.child_text("body", ns::CLIENT).as_deref(), Some("from the bridge"));

    // An iq and its answer.
    alice.send(format!("<iq type='get' to='{COMPONENT}' id='v1'><query xmlns='jabber:iq:version'/></iq>")).await;
    let iq = bridge.element().await;
    assert_eq!((iq.name(), iq.attr("id")), ("iq", Some("v1")));
    bridge.send(&format!("<iq type='result' from='{COMPONENT}' to='alice@localhost/phone' id='v1'><query xmlns='jabber:iq:version'><name>bridge</name></query></iq>")).await;
    let answer = alice.expect("the iq result", |e| e.attr("id") == Some("v1")).await;
    assert_eq!(answer.attr("type"), Some("result"));

    // A second connection for the same domain is refused; the first keeps working.
    let mut second = Component::connect(listen, COMPONENT).await;
    let refused = second.handshake(SECRET).await;
    assert_eq!(stream_error(&refused).as_deref(), Some("conflict"), "{}", refused.to_xml_string());

    // Claiming another domain ends its stream, and then senders get service-unavailable.
    bridge.send("<message from='someone@localhost' to='alice@localhost'><body>forged</body></message>").await;
    assert_eq!(stream_error(&bridge.element().await).as_deref(), Some("invalid-from"));
    alice.expect_none(std::time::Duration::from_millis(300), "the forged message", |e| e.child_text("body", ns::CLIENT).as_deref() == Some("forged")).await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let gone = alice.iq("gone", &format!("<iq type='get' to='{COMPONENT}' id='gone'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
        if gone.to_xml_string().contains("service-unavailable") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still routed to a closed component");
    }
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_domain_is_refused() {
    let (_server, listen) = server().await;
    let mut wrong = Component::connect(listen, COMPONENT).await;
    let refused = wrong.handshake("guess").await;
    assert_eq!(stream_error(&refused).as_deref(), Some("not-authorized"), "{}", refused.to_xml_string());
    let mut unknown = Component::connect(listen, "other.localhost").await;
    let refused = unknown.element().await;
    assert_eq!(stream_error(&refused).as_deref(), Some("host-unknown"), "{}", refused.to_xml_string());
    // The right secret still works afterwards.
    let mut right = Component::connect(listen, COMPONENT).await;
    assert!(right.handshake(SECRET).await.is("handshake", "jabber:component:accept"));
}

/// What waits for a component that does not read is bounded in bytes: beyond
/// `components.max_queue_bytes` senders get `resource-constraint`, and carry on.
#[tokio::test]
async fn a_component_that_stops_reading_holds_a_bounded_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_port();
    let tables = format!(
        "[limits]\nmax_stanza_bytes = 20000\n[components]\nlisten = ['{listen}']\nmax_queue_bytes = 20000\n[components.domains.'{COMPONENT}']\nsecret = '{SECRET}'\n"
    );
    let config = test_config(dir.path(), "", &tables);
    let server = TestServer::start_config(dir, config).await;
    server.adduser("alice", "pw").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "phone").await;
    let mut bridge = Component::connect(listen, COMPONENT).await;
    assert!(bridge.handshake(SECRET).await.is("handshake", "jabber:component:accept"));
    // The bridge reads nothing from here on: its socket buffers fill, then its queue.
    let body = "x".repeat(10_000);
    for i in 0..2000 {
        alice.send(format!("<message to='user@{COMPONENT}' id='q{i}' type='chat'><body>{body}</body></message>")).await;
    }
    let refused = alice.expect("a refusal", |e| e.attr("type") == Some("error")).await;
    assert!(refused.to_xml_string().contains("resource-constraint"), "{}", refused.to_xml_string());
    alice.ping().await;
    drop(bridge);
}
