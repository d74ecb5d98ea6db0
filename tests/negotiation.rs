//! Stream negotiation over real TCP and TLS: STARTTLS, direct TLS, SASL, bind.

use jabberwock_proto::ns;
use jabberwock_tests::{Client, TestServer, DOMAIN};

#[tokio::test]
async fn starttls_is_required_and_plain_is_offered_only_after_it() {
    let server = TestServer::start().await;
    let mut c = Client::connect(server.c2s).await;
    c.open_stream(DOMAIN).await;
    let f = c.expect_header_and_features().await;
    assert!(f.child("starttls", ns::TLS).and_then(|s| s.child("required", ns::TLS)).is_some());
    assert!(f.child("mechanisms", ns::SASL).is_none(), "no SASL before TLS");

    let (_c, f) = Client::connect(server.c2s).await.starttls().await;
    let mechs: Vec<String> = f.child("mechanisms", ns::SASL).unwrap().children().map(|m| m.text()).collect();
    for m in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] {
        assert!(mechs.iter().any(|x| x == m), "{m} missing from {mechs:?}");
    }
    let cb = f.child("sasl-channel-binding", ns::SASL_CB).expect("XEP-0440 channel-binding types");
    assert!(cb.children().any(|c| c.attr("type") == Some("tls-server-end-point")));
}

#[tokio::test]
async fn full_negotiation_and_generated_resource() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    c.authenticate_and_bind("alice", "secret", None).await;
    assert!(c.jid.starts_with("alice@localhost/") && c.jid.len() > "alice@localhost/".len(), "{}", c.jid);
    let pong = c.iq("p1", "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(pong.attr("type"), Some("result"));
}

#[tokio::test]
async fn direct_tls_offers_sasl_at_once() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    let mut c = Client::connect_direct_tls(server.direct_tls).await;
    c.open_stream(DOMAIN).await;
    let f = c.expect_header_and_features().await;
    assert!(f.child("starttls", ns::TLS).is_none());
    assert!(f.child("mechanisms", ns::SASL).is_some());
    c.authenticate_and_bind("alice", "secret", Some("desk")).await;
    assert_eq!(c.jid, "alice@localhost/desk");
}

#[tokio::test]
async fn wrong_password_gets_not_authorized() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    let creds = base64_plain("alice", "wrong");
    c.send(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>")).await;
    let failure = c.next_element().await;
    assert!(failure.is("failure", ns::SASL));
    assert!(failure.child("not-authorized", ns::SASL).is_some(), "{}", failure.to_xml_string());
}

fn base64_plain(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[tokio::test]
async fn second_session_for_the_same_resource_gets_conflict() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    let first = Client::login(server.c2s, "alice", "secret", "phone").await;
    let mut second = Client::login(server.c2s, "alice", "secret", "phone").await;
    let t = first.read_to_close().await;
    assert_eq!(t.stream_error().as_deref(), Some("conflict"), "{}", t.raw);
    assert!(t.closed);
    // The new session works.
    let pong = second.iq("p", "<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(pong.attr("type"), Some("result"));
}
