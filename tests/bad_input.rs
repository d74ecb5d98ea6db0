//! RFC 6120 bad input over real connections: every case must end the offending stream
//! with the right `<stream:error>` (or SASL `<failure/>`), then `</stream:stream>`, then
//! close the connection, while a bystander's session on the same server keeps working.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use jabberwock_proto::{ns, Element, ReadEvent};
use jabberwock_tests::{plain_auth, Client, Pace, TestServer, Transcript, DOMAIN, TIMEOUT};

const PASSWORD: &str = "secret";
const MIB: usize = 1024 * 1024;
/// A stanza the bystander would receive if the server let it through.
const TO_BYSTANDER: &str = "to='bob@localhost/bystander'";

/// A server with the accounts alice and bob, and bob logged in as the bystander.
async fn server_with_bystander() -> (TestServer, Client) {
    with_bystander(TestServer::start().await).await
}

async fn with_bystander(server: TestServer) -> (TestServer, Client) {
    server.adduser("alice", PASSWORD).await;
    server.adduser("bob", PASSWORD).await;
    let bystander = Client::login(server.c2s, "bob", PASSWORD, "bystander").await;
    (server, bystander)
}

/// Bad input on one connection harmed nobody else: nothing of it reached the bystander,
/// whose session still answers, and new connections are still served.
async fn assert_others_unaffected(server: &TestServer, bystander: &mut Client) {
    bystander.expect_none(Duration::from_millis(200), "message from bad input", |e| e.name() == "message").await;
    bystander.ping().await;
    let (_, features) = Client::connect(server.c2s).await.starttls().await;
    assert!(features.child("mechanisms", ns::SASL).is_some(), "{}", features.to_xml_string());
}

/// Reads until the server closes and checks it ended the stream properly: the error
/// with `condition`, `</stream:stream>`, then the end of the connection.
async fn expect_stream_error(c: Client, condition: &str) -> Transcript {
    let t = c.read_to_close().await;
    assert_eq!(t.stream_error().as_deref(), Some(condition), "the server sent: {}", t.raw);
    assert!(matches!(t.events.last(), Some(ReadEvent::StreamClose)), "no </stream:stream> after the error: {}", t.raw);
    assert!(t.closed, "the connection was left open: {}", t.raw);
    t
}

/// As [`expect_stream_error`] on a connection where the server had not answered yet: its
/// own stream header must come first.
async fn expect_header_then_error(c: Client, condition: &str) {
    let t = expect_stream_error(c, condition).await;
    match t.events.first() {
        Some(ReadEvent::StreamOpen(h)) => assert_eq!(h.content_ns, ns::CLIENT),
        other => panic!("expected the server's stream header first, got {other:?}: {}", t.raw),
    }
}

/// Sends `input` as the first bytes of a plain connection.
async fn first_bytes_fail(server: &TestServer, input: &[u8], condition: &str) {
    let mut c = Client::connect(server.c2s).await;
    c.send(input).await;
    expect_header_then_error(c, condition).await;
}

/// alice, authenticated and bound over STARTTLS, with a generated resource.
async fn bound(server: &TestServer) -> Client {
    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    c.authenticate_and_bind("alice", PASSWORD, None).await;
    c
}

/// Writes `data` in 64 KiB chunks until done or the server hangs up.
async fn send_in_chunks(c: &mut Client, data: &[u8]) {
    let all = async {
        for chunk in data.chunks(64 * 1024) {
            if !c.send_lossy(chunk).await {
                return;
            }
        }
    };
    // A server that neither reads nor closes fails the check that follows.
    let _ = tokio::time::timeout(TIMEOUT, all).await;
}

/// Sends `input` on a bound session and expects the stream to end with `condition`.
async fn bound_input_fails(server: &TestServer, input: &[u8], condition: &str) {
    let mut c = bound(server).await;
    send_in_chunks(&mut c, input).await;
    expect_stream_error(c, condition).await;
}

/// Each `(input, condition)` on a new bound session, then the bystander check.
async fn bound_inputs_fail(cases: &[(&[u8], &str)]) {
    let (server, mut bystander) = server_with_bystander().await;
    for (input, condition) in cases {
        bound_input_fails(&server, input, condition).await;
    }
    assert_others_unaffected(&server, &mut bystander).await;
}

fn header(stream_ns: &str, content_ns: &str, to: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{content_ns}' xmlns:stream='{stream_ns}' to='{to}' version='1.0'>"
    )
}

const STREAMS: &str = "http://etherx.jabber.org/streams";

#[tokio::test]
async fn non_xml_gets_a_header_then_not_well_formed() {
    let (server, mut bystander) = server_with_bystander().await;
    let tls_client_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    for input in [&b"hello, server\n"[..], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", tls_client_hello] {
        first_bytes_fail(&server, input, "not-well-formed").await;
    }
    assert_others_unaffected(&server, &mut bystander).await;
}

#[tokio::test]
async fn wrong_namespaces_are_invalid_namespace() {
    let (server, mut bystander) = server_with_bystander().await;
    first_bytes_fail(&server, header("urn:wrong", ns::CLIENT, DOMAIN).as_bytes(), "invalid-namespace").await;
    first_bytes_fail(&server, header(STREAMS, ns::SERVER, DOMAIN).as_bytes(), "invalid-namespace").await;
    assert_others_unaffected(&server, &mut bystander).await;
}

#[tokio::test]
async fn unknown_host_is_host_unknown() {
    let (server, mut bystander) = server_with_bystander().await;
    first_bytes_fail(&server, header(STREAMS, ns::CLIENT, "nowhere.example").as_bytes(), "host-unknown").await;
    assert_others_unaffected(&server, &mut bystander).await;
}

const BILLION_LAUGHS: &str =
    "<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>\
    <!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>";

#[tokio::test]
async fn dtds_entities_comments_and_processing_instructions_are_restricted_xml() {
    let (server, mut bystander) = server_with_bystander().await;
    first_bytes_fail(&server, b"<?xml version='1.0'?><!DOCTYPE stream:stream>", "restricted-xml").await;
    first_bytes_fail(&server, format!("<?xml version='1.0'?>{BILLION_LAUGHS}").as_bytes(), "restricted-xml").await;
    for input in [
        BILLION_LAUGHS.to_owned(),
        format!("<message {TO_BYSTANDER}><body>&lol3;</body></message>"),
        format!("<message {TO_BYSTANDER}><!DOCTYPE x><body>hi</body></message>"),
        format!("<message {TO_BYSTANDER}><body>&foo;</body></message>"),
        format!("<message {TO_BYSTANDER} id='&foo;'><body>hi</body></message>"),
        format!("<message {TO_BYSTANDER}><!-- hidden --><body>hi</body></message>"),
        format!("<message {TO_BYSTANDER}><?php echo 1; ?><body>hi</body></message>"),
    ] {
        bound_input_fails(&server, input.as_bytes(), "restricted-xml").await;
    }
    assert_others_unaffected(&server, &mut bystander).await;
}

fn message_with_body(body: &[u8]) -> Vec<u8> {
    [format!("<message {TO_BYSTANDER} type='chat'><body>").as_bytes(), body, b"</body></message>"].concat()
}

#[tokio::test]
async fn bad_characters_are_not_well_formed() {
    let invalid_utf8 = message_with_body(b"caf\xc3 \xff\xfe");
    let overlong_nul = message_with_body(b"a\xc0\x80b");
    let nul = message_with_body(b"a\x00b");
    let nul_in_attribute = format!("<message {TO_BYSTANDER} id='a\0b'/>");
    let control_reference = message_with_body(b"&#x1;");
    bound_inputs_fail(&[
        (&invalid_utf8, "not-well-formed"),
        (&overlong_nul, "not-well-formed"),
        (&nul, "not-well-formed"),
        (nul_in_attribute.as_bytes(), "not-well-formed"),
        (&control_reference, "not-well-formed"),
    ])
    .await;
}

#[tokio::test]
async fn mismatched_tags_are_not_well_formed() {
    let mismatched = format!("<message {TO_BYSTANDER}><body>hi</message>");
    let stray_end = "</message>";
    let undeclared_prefix = format!("<message {TO_BYSTANDER}><x:body>hi</x:body></message>");
    bound_inputs_fail(&[
        (mismatched.as_bytes(), "not-well-formed"),
        (stray_end.as_bytes(), "not-well-formed"),
        (undeclared_prefix.as_bytes(), "not-well-formed"),
    ])
    .await;
}

#[tokio::test]
async fn oversized_input_is_policy_violation() {
    let huge_body = message_with_body(&vec![b'a'; 4 * MIB]);
    let huge_attribute = [format!("<message {TO_BYSTANDER} id='").as_bytes(), &vec![b'a'; 4 * MIB], b"'/>"].concat();
    let many_attributes: String =
        std::iter::once(format!("<message {TO_BYSTANDER}")).chain((0..100_000).map(|i| format!(" a{i}=''"))).collect();
    let deep = format!("<message {TO_BYSTANDER}>{}", "<a>".repeat(100_000));
    bound_inputs_fail(&[
        (&huge_body, "policy-violation"),
        (&huge_attribute, "policy-violation"),
        (many_attributes.as_bytes(), "policy-violation"),
        (deep.as_bytes(), "policy-violation"),
    ])
    .await;
}

#[tokio::test]
async fn stanzas_before_authentication_are_not_authorized() {
    let (server, mut bystander) = server_with_bystander().await;
    let message = format!("<message {TO_BYSTANDER}><body>unauthenticated</body></message>");

    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    c.send(&message).await;
    expect_stream_error(c, "not-authorized").await;

    // In-band registration is the one iq allowed before authentication; others are not.
    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    let form = c.iq("reg", "<iq type='get' id='reg'><query xmlns='jabber:iq:register'/></iq>").await;
    assert_eq!(form.attr("type"), Some("result"), "{}", form.to_xml_string());
    c.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>").await;
    expect_stream_error(c, "not-authorized").await;

    // Before STARTTLS on the STARTTLS port.
    let mut c = Client::connect(server.c2s).await;
    c.open_stream(DOMAIN).await;
    c.expect_header_and_features().await;
    c.send(&message).await;
    expect_stream_error(c, "not-authorized").await;

    assert_others_unaffected(&server, &mut bystander).await;
}

#[tokio::test]
async fn second_stream_header_in_a_bound_stream_is_refused() {
    // A header is not a stanza (not-well-formed); with an XML declaration in front, the
    // declaration in mid-stream is already refused as restricted XML.
    let second_header = header(STREAMS, ns::CLIENT, DOMAIN);
    let without_declaration = second_header.trim_start_matches("<?xml version='1.0'?>");
    bound_inputs_fail(&[
        (second_header.as_bytes(), "restricted-xml"),
        (without_declaration.as_bytes(), "not-well-formed"),
    ])
    .await;
}

// ---------------------------------------------------------------------------------------
// SASL.

fn assert_sasl_failure(el: &Element, condition: &str) {
    assert!(el.is("failure", ns::SASL), "expected a SASL failure, got {}", el.to_xml_string());
    assert!(el.child(condition, ns::SASL).is_some(), "expected <{condition}/>, got {}", el.to_xml_string());
}

/// Sends `auth` on a new encrypted stream, expects `<failure>` with `condition`, and
/// checks the stream stays usable: the right password then logs in on it.
async fn recoverable_sasl_failure(server: &TestServer, auth: &str, condition: &str) {
    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    c.send(auth).await;
    assert_sasl_failure(&c.next_element().await, condition);
    c.authenticate_and_bind("alice", PASSWORD, None).await;
    c.ping().await;
}

#[tokio::test]
async fn unknown_mechanism_and_bad_base64_fail_without_ending_the_stream() {
    let (server, mut bystander) = server_with_bystander().await;
    let sasl = "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'";
    recoverable_sasl_failure(&server, &format!("<auth {sasl} mechanism='X-UNKNOWN'>=</auth>"), "invalid-mechanism")
        .await;
    recoverable_sasl_failure(
        &server,
        &format!("<auth {sasl} mechanism='PLAIN'>!!not base64!!</auth>"),
        "incorrect-encoding",
    )
    .await;
    assert_others_unaffected(&server, &mut bystander).await;
}

#[tokio::test]
async fn auth_before_starttls_is_encryption_required() {
    let (server, mut bystander) = server_with_bystander().await;
    let mut c = Client::connect(server.c2s).await;
    c.open_stream(DOMAIN).await;
    c.expect_header_and_features().await;
    c.send(plain_auth("alice", PASSWORD)).await;
    assert_sasl_failure(&c.next_element().await, "encryption-required");
    // The stream is still open and STARTTLS is still on offer.
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
    let proceed = c.next_element().await;
    assert!(proceed.is("proceed", ns::TLS), "{}", proceed.to_xml_string());
    assert_others_unaffected(&server, &mut bystander).await;
}

#[tokio::test]
async fn three_wrong_passwords_end_the_stream_with_policy_violation() {
    let (server, mut bystander) = server_with_bystander().await;
    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    for _ in 0..3 {
        assert_sasl_failure(&c.try_plain("alice", "wrong").await, "not-authorized");
    }
    expect_stream_error(c, "policy-violation").await;
    assert_others_unaffected(&server, &mut bystander).await;
}

/// One PLAIN attempt from `ip` on a new encrypted stream.
async fn plain_from(server: &TestServer, ip: &str, user: &str, password: &str) -> Element {
    let ip: IpAddr = ip.parse().expect("address");
    let (mut c, _) = Client::connect_from(server.c2s, ip).await.starttls().await;
    c.try_plain(user, password).await
}

const WINDOW_SECS: u64 = 2;

/// Two failures per address and account, four per address.
async fn throttled_server() -> (TestServer, Client) {
    let auth = format!("[auth]\nmax_failures = 2\nmax_failures_per_address = 4\nthrottle_window_secs = {WINDOW_SECS}");
    with_bystander(TestServer::start_with_tables("", &auth).await).await
}

#[tokio::test]
async fn a_strangers_failures_do_not_lock_out_the_account_holder() {
    let (server, mut bystander) = throttled_server().await;
    for _ in 0..2 {
        assert_sasl_failure(&plain_from(&server, "127.0.0.2", "alice", "wrong").await, "not-authorized");
    }
    let locked_at = Instant::now();
    // That address may not try alice any more, not even with her password...
    assert_sasl_failure(&plain_from(&server, "127.0.0.2", "alice", PASSWORD).await, "temporary-auth-failure");
    // ...but alice from her own address signs in, and the address may still try others.
    let ok = plain_from(&server, "127.0.0.5", "alice", PASSWORD).await;
    assert!(ok.is("success", ns::SASL), "the account holder was locked out: {}", ok.to_xml_string());
    let ok = plain_from(&server, "127.0.0.2", "bob", PASSWORD).await;
    assert!(ok.is("success", ns::SASL), "{}", ok.to_xml_string());
    tokio::time::sleep(
        Duration::from_secs(WINDOW_SECS).saturating_sub(locked_at.elapsed()) + Duration::from_millis(300),
    )
    .await;
    let ok = plain_from(&server, "127.0.0.2", "alice", PASSWORD).await;
    assert!(ok.is("success", ns::SASL), "still locked after the window: {}", ok.to_xml_string());
    assert_others_unaffected(&server, &mut bystander).await;
}

#[tokio::test]
async fn failures_from_one_address_lock_that_address() {
    let (server, mut bystander) = throttled_server().await;
    // Unknown users fail like known ones; the address's count reaches its limit.
    for user in ["nobody1", "nobody2", "alice", "nobody3"] {
        assert_sasl_failure(&plain_from(&server, "127.0.0.6", user, "x").await, "not-authorized");
    }
    assert_sasl_failure(&plain_from(&server, "127.0.0.6", "bob", PASSWORD).await, "temporary-auth-failure");
    let ok = plain_from(&server, "127.0.0.7", "bob", PASSWORD).await;
    assert!(ok.is("success", ns::SASL), "{}", ok.to_xml_string());
    assert_others_unaffected(&server, &mut bystander).await;
}

#[tokio::test]
async fn an_unknown_account_is_throttled_like_a_known_one() {
    let (server, mut bystander) = throttled_server().await;
    for (user, ip) in [("alice", "127.0.0.8"), ("nobody", "127.0.0.9")] {
        for _ in 0..2 {
            assert_sasl_failure(&plain_from(&server, ip, user, "wrong").await, "not-authorized");
        }
        // The third try is refused before the password is looked at, for both alike.
        assert_sasl_failure(&plain_from(&server, ip, user, "wrong").await, "temporary-auth-failure");
    }
    assert_others_unaffected(&server, &mut bystander).await;
}

// ---------------------------------------------------------------------------------------
// Slow, random and silent clients.

#[tokio::test]
async fn a_byte_by_byte_client_logs_in_and_chats() {
    let (server, mut bystander) = server_with_bystander().await;
    let pause = Duration::from_millis(1);
    // The plain-text part and the TLS handshake byte by byte…
    let plain = Pace::new(pause);
    let (c, _) = Client::connect(server.c2s).await.paced(&plain).starttls().await;
    plain.stop();
    // …then every byte of XML in its own TLS record.
    let mut slow = c.paced(&Pace::new(pause));
    slow.authenticate_and_bind("alice", PASSWORD, Some("slow")).await;
    slow.send(format!("<message {TO_BYSTANDER} type='chat' id='s1'><body>slow &amp; steady</body></message>")).await;
    let got = bystander.expect("the slow message", |e| e.name() == "message").await;
    assert_eq!(got.attr("from"), Some("alice@localhost/slow"));
    assert_eq!(got.child_text("body", ns::CLIENT).as_deref(), Some("slow & steady"));
    bystander.send("<message to='alice@localhost/slow' type='chat'><body>got it</body></message>").await;
    let reply = slow.expect("the reply", |e| e.name() == "message").await;
    assert_eq!(reply.child_text("body", ns::CLIENT).as_deref(), Some("got it"));
    slow.ping().await;
}

/// Seeded xorshift64: the same bytes on every run, without a dependency.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn random_binary_gets_a_stream_error() {
    let (server, mut bystander) = server_with_bystander().await;
    for seed in 1..=5u64 {
        let bytes = random_bytes(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 1024);
        first_bytes_fail(&server, &bytes, "not-well-formed").await;
        bound_input_fails(&server, &bytes, "not-well-formed").await;
    }
    assert_others_unaffected(&server, &mut bystander).await;
}

/// Long enough for logins on a busy machine, short for a test.
const DEADLINE_SECS: u64 = 2;

#[tokio::test]
async fn unfinished_negotiation_times_out() {
    let (server, mut bystander) = with_bystander(
        TestServer::start_with_tables("", &format!("[limits]\nnegotiation_timeout_secs = {DEADLINE_SECS}")).await,
    )
    .await;
    let started = Instant::now();
    // Silent from the start; idle after the stream header; authenticated but never bound.
    let silent = Client::connect(server.c2s).await;
    let mut idle = Client::connect(server.c2s).await;
    idle.open_stream(DOMAIN).await;
    idle.expect_header_and_features().await;
    let (mut unbound, _) = Client::connect(server.c2s).await.starttls().await;
    assert!(unbound.try_plain("alice", PASSWORD).await.is("success", ns::SASL));
    assert!(unbound.restart_stream().await.child("bind", ns::BIND).is_some());
    // No TLS handshake at all on the direct TLS port: closed, nothing to say.
    let no_handshake = Client::connect(server.direct_tls).await;
    expect_header_then_error(silent, "connection-timeout").await;
    expect_stream_error(idle, "connection-timeout").await;
    expect_stream_error(unbound, "connection-timeout").await;
    let deadline = Duration::from_secs(DEADLINE_SECS);
    assert!(started.elapsed() >= deadline, "closed before the deadline: {:?}", started.elapsed());
    let t = no_handshake.read_to_close().await;
    assert!(t.closed && t.raw.is_empty(), "{t:?}");
    // The bound session, older than the deadline, is not subject to it.
    assert_others_unaffected(&server, &mut bystander).await;
}
