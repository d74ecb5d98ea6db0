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
    // Old clients (strophe.js, Converse.js) still establish an RFC 3921 session after bind.
    let session = c.iq("s1", "<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>").await;
    assert_eq!(session.attr("type"), Some("result"), "{}", session.to_xml_string());
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

/// Logs in with SCRAM-SHA-256 or -PLUS (tls-exporter) over direct TLS (TLS 1.3).
async fn scram_login(server: &TestServer, mechanism: &str, gs2: &str, cb_from_exporter: bool) -> jabberwock_proto::Element {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(server.direct_tls).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(DOMAIN).unwrap();
    let mut tls = jabberwock_tests::tls_connector(&[b"xmpp-client"]).connect(name, tcp).await.unwrap();
    let cb = if cb_from_exporter {
        tls.get_ref().1.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None).unwrap()
    } else {
        Vec::new()
    };
    let client = jabberwock_tests::scram::Client::new("alice", gs2, cb);
    let mut reader = jabberwock_proto::StreamReader::new(jabberwock_proto::Limits::unlimited());
    let mut buf = vec![0u8; 8192];
    tls.write_all(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
        .await
        .unwrap();
    tls.write_all(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{}</auth>", client.first()).as_bytes())
        .await
        .unwrap();
    let mut elements = Vec::new();
    loop {
        while let Some(ev) = reader.next_event().unwrap() {
            if let jabberwock_proto::ReadEvent::Stanza(st) = ev {
                let el = st.to_element().unwrap();
                if el.is("challenge", ns::SASL) {
                    let reply = client.last(&el.text(), "secret");
                    tls.write_all(format!("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{reply}</response>").as_bytes())
                        .await
                        .unwrap();
                } else if el.is("success", ns::SASL) || el.is("failure", ns::SASL) {
                    return el;
                }
                elements.push(el);
            }
        }
        let n = tokio::time::timeout(jabberwock_tests::TIMEOUT, tls.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed early after {elements:?}");
        reader.feed(&buf[..n]);
    }
}

#[tokio::test]
async fn scram_sha_256_and_plus_with_tls_exporter() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    let ok = scram_login(&server, "SCRAM-SHA-256", "n,,", false).await;
    assert!(ok.is("success", ns::SASL), "{}", ok.to_xml_string());
    assert!(ok.text().len() > 8, "success carries the server signature");
    let plus = scram_login(&server, "SCRAM-SHA-256-PLUS", "p=tls-exporter,,", true).await;
    assert!(plus.is("success", ns::SASL), "{}", plus.to_xml_string());
    // Claiming binding with the wrong data fails.
    let forged = scram_login(&server, "SCRAM-SHA-256-PLUS", "p=tls-exporter,,", false).await;
    assert!(forged.is("failure", ns::SASL), "{}", forged.to_xml_string());
    // A client saying "y" (it thinks we lack channel binding) is refused as a downgrade.
    let downgrade = scram_login(&server, "SCRAM-SHA-256", "y,,", false).await;
    assert!(downgrade.is("failure", ns::SASL), "{}", downgrade.to_xml_string());
}

/// XEP-0115 §6.3: after authentication the features carry the server's capabilities,
/// whose `ver` is the hash (computed here by XEP-0115 §5.1) of what its disco#info says.
#[tokio::test]
async fn features_after_authentication_carry_the_servers_capabilities() {
    use base64::Engine;
    use sha1::Digest;
    let server = TestServer::start().await;
    server.adduser("alice", "pw").await;
    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    let creds = base64::engine::general_purpose::STANDARD.encode("\0alice\0pw");
    c.send(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>")).await;
    assert!(c.next_element().await.is("success", ns::SASL));
    c.restart_reader();
    c.open_stream(DOMAIN).await;
    let f = c.expect_header_and_features().await;
    let caps = f.child("c", ns::CAPS).expect("<c/> in the features after authentication");
    assert_eq!(caps.attr("hash"), Some("sha-1"));
    let ver = caps.attr("ver").unwrap().to_owned();
    c.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>").await;
    c.next_element().await;
    let info = c.iq("d", "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let q = info.child("query", ns::DISCO_INFO).unwrap();
    let mut s = String::new();
    let mut identities: Vec<String> = q
        .children()
        .filter(|i| i.name() == "identity")
        .map(|i| format!("{}/{}//{}<", i.attr("category").unwrap_or(""), i.attr("type").unwrap_or(""), i.attr("name").unwrap_or("")))
        .collect();
    identities.sort();
    let mut features: Vec<String> = q.children().filter(|f| f.name() == "feature").filter_map(|f| f.attr("var")).map(|v| format!("{v}<")).collect();
    features.sort();
    s.extend(identities);
    s.extend(features);
    let expected = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(s.as_bytes()));
    assert_eq!(ver, expected, "ver is not the hash of the server's disco#info");
}

/// A channel-binding mismatch is not a wrong password: slixmpp 1.8 tries
/// SCRAM-SHA-256-PLUS with `tls-unique` (which TLS 1.3 lacks), then SCRAM with the `y`
/// flag; neither may count towards closing the stream or locking the account.
#[tokio::test]
async fn channel_binding_mismatches_are_explained_and_not_counted_as_failures() {
    use base64::Engine;
    let server = TestServer::start().await;
    server.adduser("alice", "pw").await;
    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for _ in 0..3 {
        for (mech, first) in [("SCRAM-SHA-256-PLUS", "p=tls-unique,,n=alice,r=abcdef"), ("SCRAM-SHA-1", "y,,n=alice,r=abcdef")] {
            c.send(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{}</auth>", b64(first))).await;
            let f = c.next_element().await;
            assert!(f.is("failure", ns::SASL) && f.child("not-authorized", ns::SASL).is_some(), "{f:?}");
            let text = f.child_text("text", ns::SASL).unwrap_or_default();
            assert!(text.contains("channel binding"), "the failure says why: {text:?}");
        }
    }
    // Six refusals later the stream is still open and the password still works.
    let creds = b64("\0alice\0pw");
    c.send(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>")).await;
    let ok = c.next_element().await;
    assert!(ok.is("success", ns::SASL), "{ok:?}");
}

/// The salt and iteration count the server's SCRAM-SHA-256 challenge shows for `user`.
async fn scram_salt_and_iterations(server: &TestServer, user: &str) -> (String, String) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    let first = b64.encode(format!("n,,n={user},r=abcdefgh"));
    c.send(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>")).await;
    let challenge = c.expect("a challenge", |e| e.is("challenge", ns::SASL)).await;
    let text = String::from_utf8(b64.decode(challenge.text().trim()).unwrap()).unwrap();
    let field = |name: &str| text.split(',').find_map(|f| f.strip_prefix(name)).unwrap_or_else(|| panic!("{name} in {text}")).to_owned();
    (field("s="), field("i="))
}

/// A username without an account gets a challenge like a real account's: the configured
/// iteration count, and a salt that stays the same across a restart.
#[tokio::test]
async fn unknown_users_see_a_stable_salt_and_the_configured_iterations() {
    let auth = "[auth]\nscram_iterations = 5000";
    let server = TestServer::start_with_tables("", auth).await;
    server.adduser("alice", "pw").await;
    let (alice_salt, alice_iterations) = scram_salt_and_iterations(&server, "alice").await;
    let (salt, iterations) = scram_salt_and_iterations(&server, "nobody").await;
    assert_eq!((alice_iterations.as_str(), iterations.as_str()), ("5000", "5000"));
    assert_eq!(salt.len(), alice_salt.len());
    assert_eq!(scram_salt_and_iterations(&server, "nobody").await.0, salt, "asking again");
    assert_ne!(scram_salt_and_iterations(&server, "somebody").await.0, salt);
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, "", auth).await;
    assert_eq!(scram_salt_and_iterations(&server, "nobody").await.0, salt, "after a restart");
    assert_eq!(scram_salt_and_iterations(&server, "alice").await.0, alice_salt);
}

/// A PLAIN attempt for a username without an account takes as long as a wrong password
/// for a real one: both derive the key (PBKDF2) before saying no.
#[tokio::test]
async fn plain_takes_as_long_for_an_unknown_user_as_for_a_wrong_password() {
    // Enough rounds that the key derivation, not the network, is what takes time.
    let server = TestServer::start_with_tables("", "[auth]\nscram_iterations = 40000").await;
    server.adduser("alice", "pw").await;
    let mut median = Vec::new();
    for user in ["alice", "nobody"] {
        let mut times = Vec::new();
        for _ in 0..3 {
            let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
            let started = std::time::Instant::now();
            let reply = c.try_plain(user, "wrong").await;
            times.push(started.elapsed());
            assert!(reply.child("not-authorized", ns::SASL).is_some(), "{reply:?}");
        }
        times.sort();
        median.push(times[1]);
    }
    let (known, unknown) = (median[0], median[1]);
    assert!(unknown * 2 > known, "an unknown user answered in {unknown:?}, a wrong password in {known:?}");
}
