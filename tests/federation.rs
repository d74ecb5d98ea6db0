//! Federation between two of our own servers, each serving its own domain on loopback,
//! plus hostile and broken peers played by raw server-to-server streams.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jabberwock::config::{Config, PeerConfig};
use jabberwock_proto::{ns, Element, ReadEvent};
use jabberwock_tests::{free_port, subscribe, test_config, Client, TestServer};

const A: &str = "a.example";
const B: &str = "b.example";

/// A certificate authority the servers under test trust, and certificates it issued.
struct TestCa {
    dir: tempfile::TempDir,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Federation test CA");
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        TestCa { dir, issuer }
    }

    fn bundle(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for `domain` (valid as server and client), written as PEM files.
    fn issue(&self, domain: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).unwrap();
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (self.dir.path().join(format!("{domain}.crt")), self.dir.path().join(format!("{domain}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// The config of a server for `domain` whose s2s listener is `listen` and that reaches
/// each of `peers` at its address.
fn federating_config(dir: &Path, domain: &str, listen: Option<SocketAddr>, peers: &[(&str, SocketAddr)], tables: &str) -> Config {
    let mut config = test_config(dir, &format!("domains = ['{domain}']"), &format!("[s2s]\nconnect_timeout_secs = 5\n{tables}"));
    config.s2s.listen = listen.into_iter().collect();
    for (peer, addr) in peers {
        let p = PeerConfig { connect: Some(addr.to_string()), insecure: true, ..Default::default() };
        config.s2s.peers.insert((*peer).to_owned(), p);
    }
    config
}

/// Two servers that reach each other on loopback: their certificates are self-signed
/// development ones, so they authenticate with dialback.
async fn dialback_pair() -> (TestServer, TestServer) {
    let (a_s2s, b_s2s) = (free_port(), free_port());
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a_config = federating_config(a_dir.path(), A, Some(a_s2s), &[(B, b_s2s)], "");
    let b_config = federating_config(b_dir.path(), B, Some(b_s2s), &[(A, a_s2s)], "");
    (TestServer::start_config(a_dir, a_config).await, TestServer::start_config(b_dir, b_config).await)
}

/// alice@a.example/phone on `a` and bob@b.example/laptop on `b`, both available.
async fn alice_and_bob(a: &TestServer, b: &TestServer) -> (Client, Client) {
    a.adduser("alice", "pw").await;
    b.adduser("bob", "pw").await;
    let mut alice = Client::login_at(a.c2s, A, "alice", "pw", "phone").await;
    let mut bob = Client::login_at(b.c2s, B, "bob", "pw", "laptop").await;
    alice.send("<presence/>").await;
    bob.send("<presence/>").await;
    (alice, bob)
}

fn is_message_with(body: &str) -> impl Fn(&Element) -> bool + '_ {
    move |e| e.name() == "message" && e.child_text("body", ns::CLIENT).as_deref() == Some(body)
}

fn error_condition(e: &Element) -> Option<String> {
    let err = e.child("error", ns::CLIENT)?;
    err.children().find(|c| c.ns() == ns::STANZA_ERRORS && c.name() != "text").map(|c| c.name().to_owned())
}

#[tokio::test]
async fn users_on_two_servers_subscribe_see_presence_and_chat() {
    let (a, b) = dialback_pair().await;
    let (mut alice, mut bob) = alice_and_bob(&a, &b).await;

    // Subscriptions both ways, across servers, with their pushes and presence.
    subscribe(&mut alice, "alice@a.example", &mut bob, "bob@b.example").await;
    alice.expect("bob's presence", |e| e.name() == "presence" && e.attr("from") == Some("bob@b.example/laptop")).await;
    subscribe(&mut bob, "bob@b.example", &mut alice, "alice@a.example").await;
    bob.expect("alice's presence", |e| e.name() == "presence" && e.attr("from") == Some("alice@a.example/phone")).await;
    let roster = alice.iq("r", "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>").await;
    let item = roster.child("query", ns::ROSTER).and_then(|q| q.children().find(|i| i.attr("jid") == Some("bob@b.example")).cloned());
    assert_eq!(item.and_then(|i| i.attr("subscription").map(str::to_owned)).as_deref(), Some("both"));

    // Messages both ways.
    alice.send("<message to='bob@b.example' type='chat'><body>hello from a</body></message>").await;
    let m = bob.expect("alice's message", is_message_with("hello from a")).await;
    assert_eq!(m.attr("from"), Some("alice@a.example/phone"));
    bob.send("<message to='alice@a.example/phone' type='chat'><body>hello from b</body></message>").await;
    let m = alice.expect("bob's message", is_message_with("hello from b")).await;
    assert_eq!(m.attr("from"), Some("bob@b.example/laptop"));

    // An iq across servers is answered by the other server, and comes back.
    let pong = alice.iq("p", "<iq type='get' id='p' to='b.example'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(pong.attr("type"), Some("result"), "{}", pong.to_xml_string());
    assert_eq!(pong.attr("from"), Some("b.example"));

    // A message for an account that does not exist over there bounces back.
    alice.send("<message to='nobody@b.example' type='chat' id='x'><body>anyone?</body></message>").await;
    let bounce = alice.expect("bounce", |e| e.name() == "message" && e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&bounce).as_deref(), Some("service-unavailable"));

    // Going offline reaches the remote subscriber.
    bob.send("<presence type='unavailable'/>").await;
    alice
        .expect("bob's unavailable", |e| {
            e.name() == "presence" && e.attr("from") == Some("bob@b.example/laptop") && e.attr("type") == Some("unavailable")
        })
        .await;
}

#[tokio::test]
async fn remote_roster_items_survive_a_restart_and_presence_is_probed_at_login() {
    let (a, b) = dialback_pair().await;
    let (mut alice, mut bob) = alice_and_bob(&a, &b).await;
    subscribe(&mut alice, "alice@a.example", &mut bob, "bob@b.example").await;
    subscribe(&mut bob, "bob@b.example", &mut alice, "alice@a.example").await;
    drop(bob);
    alice
        .expect("bob gone", |e| e.attr("from") == Some("bob@b.example/laptop") && e.attr("type") == Some("unavailable"))
        .await;

    // b restarts on the same ports, with the same data.
    let b_s2s = b.running.as_ref().unwrap().s2s[0];
    let b_dir = b.stop().await;
    let a_s2s = a.running.as_ref().unwrap().s2s[0];
    let b_config = federating_config(b_dir.path(), B, Some(b_s2s), &[(A, a_s2s)], "");
    let b = TestServer::start_config(b_dir, b_config).await;

    // bob logs in again: his server probes alice, and broadcasts bob to alice.
    let mut bob = Client::login_at(b.c2s, B, "bob", "pw", "laptop").await;
    bob.send("<presence><status>back</status></presence>").await;
    bob.expect("alice's presence from the probe", |e| e.name() == "presence" && e.attr("from") == Some("alice@a.example/phone"))
        .await;
    let p = alice.expect("bob back", |e| e.name() == "presence" && e.attr("from") == Some("bob@b.example/laptop")).await;
    assert_eq!(p.child_text("status", ns::CLIENT).as_deref(), Some("back"));
    let roster = bob.iq("r", "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>").await;
    let both = roster
        .child("query", ns::ROSTER)
        .is_some_and(|q| q.children().any(|i| i.attr("jid") == Some("alice@a.example") && i.attr("subscription") == Some("both")));
    assert!(both, "{}", roster.to_xml_string());
}

#[tokio::test]
async fn unreachable_silent_and_forbidden_peers_bounce() {
    // A peer that accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let closed_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut config = federating_config(
        dir.path(),
        A,
        None,
        &[("silent.example", silent_addr), ("down.example", closed_port)],
        "deny = ['denied.example']",
    );
    config.s2s.connect_timeout_secs = 2;
    let a = TestServer::start_config(dir, config).await;
    a.adduser("alice", "pw").await;
    let mut alice = Client::login_at(a.c2s, A, "alice", "pw", "phone").await;

    for (to, condition) in [
        ("x@down.example", "remote-server-not-found"),
        ("x@silent.example", "remote-server-timeout"),
        ("x@denied.example", "remote-server-not-found"),
    ] {
        alice.send(format!("<message to='{to}' id='{to}' type='chat'><body>hi</body></message>")).await;
        let bounce = alice.expect(to, |e| e.name() == "message" && e.attr("id") == Some(to)).await;
        assert_eq!(bounce.attr("type"), Some("error"), "{}", bounce.to_xml_string());
        assert_eq!(bounce.attr("from"), Some(to));
        assert_eq!(error_condition(&bounce).as_deref(), Some(condition), "{to}: {}", bounce.to_xml_string());
    }
    // While the unreachable server is in its backoff, a new message bounces at once.
    alice.send("<message to='y@down.example' id='again' type='chat'><body>hi</body></message>").await;
    let bounce = alice.expect("again", |e| e.attr("id") == Some("again")).await;
    assert_eq!(error_condition(&bounce).as_deref(), Some("remote-server-not-found"));
    // The session itself is unharmed.
    alice.ping().await;
}

/// A raw server-to-server stream to `addr`, as `from` → `to`, after STARTTLS; with a
/// client certificate when given. Returns the features of the encrypted stream.
async fn raw_s2s(addr: SocketAddr, from: &str, to: &str, cert: Option<(&Path, &Path)>) -> (Client, Element) {
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         xmlns:db='jabber:server:dialback' from='{from}' to='{to}' version='1.0'>"
    );
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut c = Client::from_io(tcp);
    c.send(&header).await;
    assert!(matches!(c.next_event().await, ReadEvent::StreamOpen(h) if h.content_ns == ns::SERVER));
    let features = c.next_element().await;
    assert!(features.child("starttls", ns::TLS).is_some(), "{}", features.to_xml_string());
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
    assert!(c.next_element().await.is("proceed", ns::TLS));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(jabberwock_tests::any_certificate());
    let tls_config = match cert {
        Some((cert, key)) => {
            use rustls::pki_types::pem::PemObject;
            let chain = rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let name = rustls::pki_types::ServerName::try_from(to.to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config)).connect(name, c.into_io()).await.unwrap();
    let mut c = Client::from_io(tls);
    c.send(&header).await;
    assert!(matches!(c.next_event().await, ReadEvent::StreamOpen(_)));
    let features = c.next_element().await;
    (c, features)
}

/// SASL EXTERNAL on a raw stream whose features offered it, and the restarted stream.
async fn authenticate_external(peer: &mut Client, from: &str, to: &str) {
    peer.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>").await;
    assert!(peer.next_element().await.is("success", ns::SASL));
    peer.restart_reader();
    peer.send(format!(
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='{from}' to='{to}' version='1.0'>"
    ))
    .await;
    assert!(matches!(peer.next_event().await, ReadEvent::StreamOpen(_)));
    assert!(peer.next_element().await.is("features", ns::STREAM));
}

fn has_external(features: &Element) -> bool {
    features.child("mechanisms", ns::SASL).is_some_and(|m| m.children().any(|c| c.text() == "EXTERNAL"))
}

#[tokio::test]
async fn sasl_external_and_bidirectional_streams_with_valid_certificates() {
    let ca = TestCa::new();
    let (a_cert, a_key) = ca.issue(A);
    let (b_cert, b_key) = ca.issue(B);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b_s2s = free_port();
    let trust = format!("trust_store = {:?}", ca.bundle().display().to_string());
    let tls = |domain: &str, cert: &Path, key: &Path| {
        format!("[tls.'{domain}']\ncert = {:?}\nkey = {:?}\n", cert.display().to_string(), key.display().to_string())
    };
    // a has no s2s listener at all, so dialback (which needs b to call a back) cannot
    // work: a reaches b with SASL EXTERNAL or not at all. Neither side is `insecure`.
    let mut a_config = federating_config(a_dir.path(), A, None, &[(B, b_s2s)], &format!("{trust}\n{}", tls(A, &a_cert, &a_key)));
    let mut b_config = federating_config(b_dir.path(), B, Some(b_s2s), &[], &format!("{trust}\n{}", tls(B, &b_cert, &b_key)));
    for c in [&mut a_config, &mut b_config] {
        for p in c.s2s.peers.values_mut() {
            p.insecure = false;
        }
    }
    let a = TestServer::start_config(a_dir, a_config).await;
    let b = TestServer::start_config(b_dir, b_config).await;
    let (mut alice, mut bob) = alice_and_bob(&a, &b).await;
    alice.send("<message to='bob@b.example/laptop' type='chat'><body>over EXTERNAL</body></message>").await;
    let m = bob.expect("alice's message", is_message_with("over EXTERNAL")).await;
    assert_eq!(m.attr("from"), Some("alice@a.example/phone"));
    // b cannot connect to a: the answer comes back on a's connection, which a made
    // bidirectional (XEP-0288) since b's certificate proved who b is.
    bob.send("<message to='alice@a.example/phone' type='chat'><body>over the same stream</body></message>").await;
    let m = alice.expect("bob's answer", is_message_with("over the same stream")).await;
    assert_eq!(m.attr("from"), Some("bob@b.example/laptop"));

    // A raw peer with a's certificate gets EXTERNAL; without a certificate, it does not.
    let (_, features) = raw_s2s(b_s2s, A, B, None).await;
    assert!(!has_external(&features), "{}", features.to_xml_string());
    assert!(features.child("dialback", ns::DIALBACK_FEATURE).is_some());
    let (mut peer, features) = raw_s2s(b_s2s, A, B, Some((&a_cert, &a_key))).await;
    assert!(has_external(&features), "{}", features.to_xml_string());
    // Claiming another identity than the certificate's fails.
    let other = base64::engine::general_purpose::STANDARD.encode("evil.example");
    peer.send(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{other}</auth>")).await;
    assert!(peer.next_element().await.is("failure", ns::SASL));
    authenticate_external(&mut peer, A, B).await;
    peer.send("<message from='carol@a.example/x' to='bob@b.example/laptop' type='chat'><body>raw peer</body></message>").await;
    let m = bob.expect("raw peer's message", is_message_with("raw peer")).await;
    assert_eq!(m.attr("from"), Some("carol@a.example/x"));
    // A stanza from a domain the peer did not prove ends its stream.
    peer.send("<message from='mallory@evil.example' to='bob@b.example/laptop' type='chat'><body>forged</body></message>").await;
    assert_eq!(peer.read_to_close().await.stream_error().as_deref(), Some("invalid-from"));
    bob.expect_none(Duration::from_millis(300), "the forged message", is_message_with("forged")).await;
}

#[tokio::test]
async fn bad_server_streams_get_stream_errors() {
    let (a, b) = dialback_pair().await;
    b.adduser("bob", "pw").await;
    let mut bob = Client::login_at(b.c2s, B, "bob", "pw", "laptop").await;
    let b_s2s = b.running.as_ref().unwrap().s2s[0];

    // The client namespace on a server port.
    let mut c = Client::connect(b_s2s).await;
    c.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='b.example' version='1.0'>").await;
    assert_eq!(c.read_to_close().await.stream_error().as_deref(), Some("invalid-namespace"));

    // A domain b does not serve.
    let mut c = Client::connect(b_s2s).await;
    c.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='a.example' to='nowhere.example' version='1.0'>").await;
    assert_eq!(c.read_to_close().await.stream_error().as_deref(), Some("host-unknown"));

    // Stanzas before authentication.
    let (mut c, features) = raw_s2s(b_s2s, A, B, None).await;
    assert!(features.child("dialback", ns::DIALBACK_FEATURE).is_some());
    c.send("<message from='alice@a.example' to='bob@b.example'><body>sneaky</body></message>").await;
    assert_eq!(c.read_to_close().await.stream_error().as_deref(), Some("not-authorized"));

    // A dialback key that a's server never issued: b asks a, which says invalid.
    let (mut c, _) = raw_s2s(b_s2s, A, B, None).await;
    c.send("<db:result from='a.example' to='b.example'>0123456789abcdef</db:result>").await;
    let result = c.next_element().await;
    assert!(result.is("result", ns::DIALBACK), "{}", result.to_xml_string());
    assert_eq!(result.attr("type"), Some("invalid"));
    assert_eq!(c.read_to_close().await.stream_error().as_deref(), Some("not-authorized"));

    // Asking b to verify a key it did not issue.
    let (mut c, _) = raw_s2s(b_s2s, A, B, None).await;
    c.send("<db:verify from='a.example' to='b.example' id='abc'>0123456789abcdef</db:verify>").await;
    let verify = c.next_element().await;
    assert!(verify.is("verify", ns::DIALBACK));
    assert_eq!(verify.attr("type"), Some("invalid"));

    // None of this disturbed b's users, nor federation with a.
    bob.ping().await;
    a.adduser("alice", "pw").await;
    let mut alice = Client::login_at(a.c2s, A, "alice", "pw", "phone").await;
    alice.send("<message to='bob@b.example/laptop' type='chat'><body>still fine</body></message>").await;
    bob.expect("alice's message", is_message_with("still fine")).await;
}

#[tokio::test]
async fn direct_tls_peers_and_idle_connections_reconnect() {
    let (a_s2s, b_s2s, b_direct) = (free_port(), free_port(), free_port());
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // a reaches b over XEP-0368 direct TLS; b reaches a (for dialback) over STARTTLS.
    let mut a_config = federating_config(a_dir.path(), A, Some(a_s2s), &[(B, b_direct)], "idle_timeout_secs = 1");
    a_config.s2s.peers.get_mut(B).unwrap().direct_tls = true;
    let mut b_config = federating_config(b_dir.path(), B, Some(b_s2s), &[(A, a_s2s)], "idle_timeout_secs = 1");
    b_config.s2s.listen_direct_tls = vec![b_direct];
    let a = TestServer::start_config(a_dir, a_config).await;
    let b = TestServer::start_config(b_dir, b_config).await;
    let (mut alice, mut bob) = alice_and_bob(&a, &b).await;
    for round in ["first", "after the idle close"] {
        alice.send(format!("<message to='bob@b.example/laptop' type='chat'><body>{round}</body></message>")).await;
        bob.expect(round, is_message_with(round)).await;
        // Longer than both idle timeouts: the connections close and the next message
        // needs new ones.
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
}

#[tokio::test]
async fn a_flooding_peer_is_slowed_down_and_starves_nobody() {
    const FLOOD: usize = 30_000;
    let ca = TestCa::new();
    let (b_cert, b_key) = ca.issue(B);
    let (a_cert, a_key) = ca.issue(A);
    let (c_cert, c_key) = ca.issue("c.example");
    let b_dir = tempfile::tempdir().unwrap();
    let b_s2s = free_port();
    let tables = format!(
        "trust_store = {:?}\nmax_inbound_bytes_per_sec = 50000\n[tls.'{B}']\ncert = {:?}\nkey = {:?}\n",
        ca.bundle().display().to_string(),
        b_cert.display().to_string(),
        b_key.display().to_string()
    );
    let b_config = federating_config(b_dir.path(), B, Some(b_s2s), &[], &tables);
    let b = TestServer::start_config(b_dir, b_config).await;
    b.adduser("bob", "pw").await;
    let mut bob = Client::login_at(b.c2s, B, "bob", "pw", "laptop").await;

    // a's server sends 30 000 messages (~3 MB) as fast as its socket takes them.
    let (mut flooder, features) = raw_s2s(b_s2s, A, B, Some((&a_cert, &a_key))).await;
    assert!(has_external(&features));
    authenticate_external(&mut flooder, A, B).await;
    let flood = tokio::spawn(async move {
        let one = "<message from='spam@a.example/x' to='bob@b.example/laptop' type='chat'><body>flood flood flood flood flood</body></message>";
        for _ in 0..FLOOD / 100 {
            flooder.send(one.repeat(100)).await;
        }
        flooder
    });
    // Meanwhile c's server has one message for bob, which must not wait for the flood.
    let (mut other, _) = raw_s2s(b_s2s, "c.example", B, Some((&c_cert, &c_key))).await;
    authenticate_external(&mut other, "c.example", B).await;
    other.send("<message from='carol@c.example/y' to='bob@b.example/laptop' type='chat'><body>not stuck</body></message>").await;
    let started = tokio::time::Instant::now();
    let (mut flood_seen, mut carol_seen) = (0, false);
    // For 3 s: carol's message arrives, and no more of the flood than the limit lets
    // through (the 1 MiB burst and 50 kB/s: about 10 000 messages of ~115 bytes).
    while let Ok(el) = tokio::time::timeout_at(started + Duration::from_secs(3), bob.next_element()).await {
        match el.child_text("body", ns::CLIENT).as_deref() {
            Some("not stuck") => carol_seen = true,
            Some(_) => flood_seen += 1,
            None => {}
        }
    }
    assert!(carol_seen, "carol's message was stuck behind the flood ({flood_seen} flood messages arrived)");
    assert!(flood_seen < FLOOD / 2, "{flood_seen} of {FLOOD} flood messages arrived within 3 s");
    bob.ping().await;
    flood.abort();
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b_s2s = free_port();
    let config = federating_config(dir.path(), B, Some(b_s2s), &[], "max_inbound_connections = 2\nmax_inbound_connections_per_ip = 1");
    let _b = TestServer::start_config(dir, config).await;
    let (_first, features) = raw_s2s(b_s2s, A, B, None).await;
    assert!(features.is("features", ns::STREAM));
    // Refused at once, without waiting for a stream header: one address has one slot…
    let second = Client::connect(b_s2s).await;
    assert_eq!(second.read_to_close().await.stream_error().as_deref(), Some("policy-violation"));
    // …another address takes the last one…
    let mut third = Client::connect_from(b_s2s, "127.0.0.2".parse().unwrap()).await;
    third
        .send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='a.example' to='b.example' version='1.0'>")
        .await;
    assert!(matches!(third.next_event().await, ReadEvent::StreamOpen(_)));
    assert!(third.next_element().await.is("features", ns::STREAM));
    // …and then the server is full.
    let fourth = Client::connect_from(b_s2s, "127.0.0.3".parse().unwrap()).await;
    assert_eq!(fourth.read_to_close().await.stream_error().as_deref(), Some("resource-constraint"));
}

fn muc_codes(e: &Element) -> Vec<String> {
    let x = e.child("x", ns::MUC_USER);
    x.map(|x| x.children().filter_map(|c| c.attr("code")).map(str::to_owned).collect()).unwrap_or_default()
}

#[tokio::test]
async fn a_user_of_another_server_joins_our_room_talks_and_leaves() {
    const ROOM: &str = "talk@conference.a.example";
    let (a_s2s, b_s2s) = (free_port(), free_port());
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a_config = federating_config(a_dir.path(), A, Some(a_s2s), &[(B, b_s2s)], "");
    // b reaches a's room service where it reaches a: the service speaks for its own domain.
    let b_config = federating_config(b_dir.path(), B, Some(b_s2s), &[(A, a_s2s), ("conference.a.example", a_s2s)], "");
    let (a, b) = (TestServer::start_config(a_dir, a_config).await, TestServer::start_config(b_dir, b_config).await);
    let (mut alice, mut bob) = alice_and_bob(&a, &b).await;

    alice.send(format!("<presence to='{ROOM}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    alice.expect("room created", |e| muc_codes(e).contains(&"201".to_owned())).await;
    let r = alice.iq("c", &format!("<iq type='set' id='c' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>")).await;
    assert_eq!(r.attr("type"), Some("result"));

    // bob, on b.example, enters over federation.
    bob.send(format!("<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    let own = bob.expect("bob's self-presence", |e| e.attr("from") == Some("talk@conference.a.example/bob") && muc_codes(e).contains(&"110".to_owned())).await;
    assert_eq!(own.attr("to"), Some("bob@b.example/laptop"));
    bob.expect("the subject", |e| e.child("subject", ns::CLIENT).is_some()).await;
    let seen = alice.expect("bob arrives", |e| e.name() == "presence" && e.attr("from") == Some("talk@conference.a.example/bob")).await;
    let item = seen.child("x", ns::MUC_USER).and_then(|x| x.child("item", ns::MUC_USER)).unwrap();
    assert_eq!(item.attr("jid"), Some("bob@b.example/laptop"), "the owner sees bob's real JID");

    bob.send(format!("<message to='{ROOM}' type='groupchat'><body>hello from b</body></message>")).await;
    let m = alice.expect("bob's groupchat", is_message_with("hello from b")).await;
    assert_eq!(m.attr("from"), Some("talk@conference.a.example/bob"));
    bob.expect("bob's own message reflected", is_message_with("hello from b")).await;
    alice.send(format!("<message to='{ROOM}' type='groupchat'><body>hello from a</body></message>")).await;
    bob.expect("alice's groupchat", is_message_with("hello from a")).await;
    alice.send(format!("<message to='{ROOM}/bob' type='chat'><body>private</body></message>")).await;
    let pm = bob.expect("a private message", is_message_with("private")).await;
    assert_eq!(pm.attr("from"), Some("talk@conference.a.example/alice"));

    // bob's session ends without a word: b.example tells the room, which tells alice.
    drop(bob);
    let gone = alice.expect("bob leaves", |e| e.attr("from") == Some("talk@conference.a.example/bob") && e.attr("type") == Some("unavailable")).await;
    assert!(gone.child("x", ns::MUC_USER).is_some());
}
