//! SASL2 (XEP-0388) with Bind2 (XEP-0386) inline, FAST tokens (XEP-0484) and SCRAM
//! downgrade protection (XEP-0474), over real STARTTLS streams, raw XML.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use jabberwock_proto::{ns, Element};
use jabberwock_tests::{Client, TestServer, DOMAIN};
use sha2::{Digest, Sha256};

const SASL2: &str = "urn:xmpp:sasl:2";
const BIND2: &str = "urn:xmpp:bind:0";
const FAST: &str = "urn:xmpp:fast:0";
const DEVICE: &str = "d4565fa7-4d72-4749-b3d3-740edbf87770";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn user_agent(id: &str) -> String {
    format!("<user-agent id='{id}'><software>tests</software><device>loopback</device></user-agent>")
}

/// `<authenticate/>` with PLAIN and whatever else the test asks for.
fn plain(user: &str, password: &str, extra: &str) -> String {
    let initial = B64.encode(format!("\0{user}\0{password}"));
    format!("<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>{initial}</initial-response>{extra}</authenticate>")
}

/// `<authenticate/>` with HT-SHA-256-NONE: the proof is keyed with the token itself, as a
/// client computes it.
fn with_token(user: &str, token: &str, extra: &str) -> String {
    let mut msg = format!("{user}\0").into_bytes();
    msg.extend(hmac(token.as_bytes(), b"Initiator"));
    format!(
        "<authenticate xmlns='{SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>{}</initial-response>{extra}</authenticate>",
        B64.encode(msg)
    )
}

/// A STARTTLS stream whose features were read.
async fn connect(server: &TestServer) -> (Client, Element) {
    Client::connect(server.c2s).await.starttls().await
}

/// Sends `authenticate` on a fresh connection and returns the outcome.
async fn attempt(server: &TestServer, authenticate: &str) -> (Client, Element) {
    let (mut c, _) = connect(server).await;
    c.send(authenticate).await;
    let outcome = c.next_element().await;
    (c, outcome)
}

fn token_of(success: &Element) -> String {
    let token = success.child("token", FAST).unwrap_or_else(|| panic!("no token in {}", success.to_xml_string()));
    assert!(token.attr("expiry").is_some_and(|e| e.ends_with('Z')), "{}", token.to_xml_string());
    token.attr("token").unwrap().to_owned()
}

fn condition(failure: &Element) -> String {
    assert!(failure.is("failure", SASL2), "expected a SASL2 failure, got {}", failure.to_xml_string());
    failure.children().find(|c| c.ns() == ns::SASL).map(|c| c.name().to_owned()).expect("a condition")
}

/// A password login of `DEVICE` that asks for a token.
async fn token_for(server: &TestServer, user: &str, password: &str) -> String {
    token_for_device(server, user, password, DEVICE).await
}

async fn token_for_device(server: &TestServer, user: &str, password: &str, device: &str) -> String {
    let request = format!("{}<request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/>", user_agent(device));
    let (_c, success) = attempt(server, &plain(user, password, &request)).await;
    assert!(success.is("success", SASL2), "{}", success.to_xml_string());
    token_of(&success)
}

#[tokio::test]
async fn sasl2_bind2_and_fast_are_advertised_after_tls() {
    let server = TestServer::start().await;
    let mut plain_features = Client::connect(server.c2s).await;
    plain_features.open_stream(DOMAIN).await;
    let before_tls = plain_features.expect_header_and_features().await;
    assert!(before_tls.child("authentication", SASL2).is_none(), "nothing to authenticate with before TLS");

    plain_features.send(plain("alice", "secret", "")).await;
    let refused = plain_features.next_element().await;
    assert_eq!(condition(&refused), "encryption-required");

    let (_c, features) = connect(&server).await;
    let auth = features.child("authentication", SASL2).expect("SASL2 offered");
    let sasl2_mechanisms: Vec<String> = auth.children().filter(|m| m.name() == "mechanism").map(|m| m.text()).collect();
    let sasl_mechanisms: Vec<String> = features.child("mechanisms", ns::SASL).unwrap().children().map(|m| m.text()).collect();
    assert_eq!(sasl2_mechanisms, sasl_mechanisms, "the same mechanisms as SASL");
    let inline = auth.child("inline", SASL2).expect("inline features");
    let bind_inline = inline.child("bind", BIND2).and_then(|b| b.child("inline", BIND2)).expect("Bind2 with inline features");
    let vars: Vec<&str> = bind_inline.children().filter_map(|f| f.attr("var")).collect();
    for var in [ns::SM, ns::CSI, ns::CARBONS] {
        assert!(vars.contains(&var), "{var} inline in Bind2: {vars:?}");
    }
    let fast: Vec<String> = inline.child("fast", FAST).expect("FAST").children().map(|m| m.text()).collect();
    assert!(fast.contains(&"HT-SHA-256-NONE".to_owned()), "{fast:?}");
    // The STARTTLS stream has tls-exporter (TLS 1.3), so the bound variant is offered too.
    assert!(fast.contains(&"HT-SHA-256-EXPR".to_owned()), "{fast:?}");
}

#[tokio::test]
async fn scram_over_sasl2_binds_inline_with_stream_management_and_carbons() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    server.adduser("bob", "secret").await;
    let (mut c, features) = connect(&server).await;
    let scram = jabberwock_tests::scram::Client::new("alice", "n,,", Vec::new());
    let bind = format!(
        "<bind xmlns='{BIND2}'><tag>phone</tag><enable xmlns='urn:xmpp:sm:3' resume='true'/><enable xmlns='urn:xmpp:carbons:2'/></bind>"
    );
    c.send(format!(
        "<authenticate xmlns='{SASL2}' mechanism='SCRAM-SHA-256'><initial-response>{}</initial-response>{}{bind}</authenticate>",
        scram.first(),
        user_agent(DEVICE)
    ))
    .await;
    let challenge = c.next_element().await;
    assert!(challenge.is("challenge", SASL2), "{}", challenge.to_xml_string());

    // XEP-0474: d= is the hash of what the features offered; a list an attacker trimmed
    // hashes differently, which is how a client notices.
    let d = downgrade_hash_in(&challenge);
    assert_eq!(d, downgrade_hash(&features, false));
    assert_ne!(d, downgrade_hash(&features, true), "a downgraded mechanism list does not match");

    c.send(format!("<response xmlns='{SASL2}'>{}</response>", scram.last(&challenge.text(), "secret"))).await;
    let success = c.next_element().await;
    assert!(success.is("success", SASL2), "{}", success.to_xml_string());
    let server_final = String::from_utf8(B64.decode(success.child_text("additional-data", SASL2).unwrap()).unwrap()).unwrap();
    assert!(server_final.starts_with("v="), "the SCRAM server signature: {server_final}");
    let jid = success.child_text("authorization-identifier", SASL2).unwrap();
    assert!(jid.starts_with("alice@localhost/phone."), "{jid}");
    let bound = success.child("bound", BIND2).expect("bound inline");
    let enabled = bound.child("enabled", ns::SM).expect("stream management enabled inline");
    assert_eq!(enabled.attr("resume"), Some("true"));

    // No restart, no bind: stanzas flow, and stream management counts them.
    c.domain = DOMAIN.to_owned();
    c.ping().await;
    c.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    let a = c.expect("an ack", |e| e.is("a", ns::SM)).await;
    assert_eq!(a.attr("h"), Some("1"));

    // Carbons were enabled inline: a message alice's other resource sends is copied here.
    let mut other = Client::login(server.c2s, "alice", "secret", "desktop").await;
    other.send("<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>").await;
    let copy = c.expect("a carbon copy", |e| e.name() == "message" && e.child("sent", ns::CARBONS).is_some()).await;
    assert_eq!(copy.attr("to"), Some(jid.as_str()));

    // The same device signing in again gets the same resource; its stale session goes.
    let bind = format!("<bind xmlns='{BIND2}'><tag>phone</tag></bind>");
    let (_again, success) = attempt(&server, &plain("alice", "secret", &format!("{}{bind}", user_agent(DEVICE)))).await;
    assert_eq!(success.child_text("authorization-identifier", SASL2).as_deref(), Some(jid.as_str()));
    let closed = c.read_to_close().await;
    assert_eq!(closed.stream_error().as_deref(), Some("conflict"));
    // Another device gets another resource.
    let (_d, success) = attempt(&server, &plain("alice", "secret", &format!("{}{bind}", user_agent("another-device")))).await;
    let other_jid = success.child_text("authorization-identifier", SASL2).unwrap();
    assert!(other_jid.starts_with("alice@localhost/phone.") && other_jid != jid, "{other_jid}");
}

/// The `d=` of a SCRAM challenge (XEP-0474).
fn downgrade_hash_in(challenge: &Element) -> String {
    let server_first = String::from_utf8(B64.decode(challenge.text().trim()).unwrap()).unwrap();
    server_first.split(',').find_map(|f| f.strip_prefix("d=")).expect("d= in server-first").to_owned()
}

/// What a client computes from the stream features for XEP-0474, SCRAM-SHA-256: the
/// mechanisms, then the channel-binding types, each sorted; `strip_plus` as if an attacker
/// had removed the -PLUS mechanisms.
fn downgrade_hash(features: &Element, strip_plus: bool) -> String {
    let mut mechanisms: Vec<String> = features.child("mechanisms", ns::SASL).unwrap().children().map(|m| m.text()).collect();
    mechanisms.retain(|m| !(strip_plus && m.ends_with("-PLUS")));
    let mut bindings: Vec<String> =
        features.child("sasl-channel-binding", ns::SASL_CB).unwrap().children().filter_map(|b| b.attr("type").map(str::to_owned)).collect();
    mechanisms.sort();
    bindings.sort();
    B64.encode(Sha256::digest(format!("{}\u{1f}{}", mechanisms.join("\u{1e}"), bindings.join("\u{1e}"))))
}

#[tokio::test]
async fn sasl_carries_the_downgrade_protection_hash_too() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    let (mut c, features) = connect(&server).await;
    let scram = jabberwock_tests::scram::Client::new("alice", "n,,", Vec::new());
    c.send(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>", scram.first())).await;
    let challenge = c.next_element().await;
    assert_eq!(downgrade_hash_in(&challenge), downgrade_hash(&features, false));
    // d= is part of the signed exchange: the login completes with it.
    c.send(format!("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>", scram.last(&challenge.text(), "secret"))).await;
    assert!(c.next_element().await.is("success", ns::SASL));
}

#[tokio::test]
async fn without_bind2_the_client_binds_as_after_sasl() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    let (mut c, _) = connect(&server).await;
    c.send(plain("alice", "secret", &user_agent(DEVICE))).await;
    let success = c.next_element().await;
    assert_eq!(success.child_text("authorization-identifier", SASL2).as_deref(), Some("alice@localhost"));
    let features = c.next_element().await;
    assert!(features.is("features", ns::STREAM) && features.child("bind", ns::BIND).is_some(), "{}", features.to_xml_string());
    let iq = c.iq("b", "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>").await;
    assert_eq!(iq.attr("type"), Some("result"));
}

/// The regular files under `dir` (not the control socket).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else if path.is_file() {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn a_fast_token_signs_in_once_and_is_replaced() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    let first = token_for(&server, "alice", "secret").await;
    // Only its hash is stored: the token appears in no file of the data directory.
    for file in files_under(server.dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!bytes.windows(first.len()).any(|w| w == first.as_bytes()), "the token is in {}", file.display());
    }

    let bind = format!("<bind xmlns='{BIND2}'/>");
    let (mut c, success) = attempt(&server, &with_token("alice", &first, &format!("{}<fast xmlns='{FAST}'/>{bind}", user_agent(DEVICE)))).await;
    assert!(success.is("success", SASL2), "{}", success.to_xml_string());
    // The server proves it knew the token too.
    let responder = B64.decode(success.child_text("additional-data", SASL2).unwrap()).unwrap();
    assert_eq!(responder, hmac(first.as_bytes(), b"Responder"));
    assert!(success.child("bound", BIND2).is_some());
    let second = token_of(&success);
    assert_ne!(first, second, "rotated on use");
    c.domain = DOMAIN.to_owned();
    c.ping().await;

    // Replaying the used token fails; its replacement works.
    let (_c, replay) = attempt(&server, &with_token("alice", &first, &user_agent(DEVICE))).await;
    assert_eq!(condition(&replay), "not-authorized");
    let (_c, ok) = attempt(&server, &with_token("alice", &second, &user_agent(DEVICE))).await;
    assert!(ok.is("success", SASL2), "{}", ok.to_xml_string());
}

#[tokio::test]
async fn tokens_are_bound_to_account_and_device_and_refused_otherwise() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    server.adduser("bob", "secret").await;
    let token = token_for(&server, "alice", "secret").await;

    // A made-up token.
    let (_c, f) = attempt(&server, &with_token("alice", "not-a-token-the-server-issued", &user_agent(DEVICE))).await;
    assert_eq!(condition(&f), "not-authorized");
    // Alice's token for bob.
    let (_c, f) = attempt(&server, &with_token("bob", &token, &user_agent(DEVICE))).await;
    assert_eq!(condition(&f), "not-authorized");
    // From another device, or without saying which.
    let (_c, f) = attempt(&server, &with_token("alice", &token, &user_agent("another-device"))).await;
    assert_eq!(condition(&f), "not-authorized");
    let (_c, f) = attempt(&server, &with_token("alice", &token, "")).await;
    assert_eq!(condition(&f), "not-authorized");
    // None of that used it up.
    let (_c, ok) = attempt(&server, &with_token("alice", &token, &user_agent(DEVICE))).await;
    assert!(ok.is("success", SASL2), "{}", ok.to_xml_string());
}

/// One token per device, and a bounded number per account: a new device beyond the bound
/// replaces the token that expires first, so logging in from made-up devices cannot grow
/// the account's store.
#[tokio::test]
async fn an_account_holds_a_bounded_number_of_tokens() {
    let server = TestServer::start_with_tables("", "[auth]\nmax_fast_tokens_per_account = 2").await;
    server.adduser("alice", "secret").await;
    let first = token_for_device(&server, "alice", "secret", "device-1").await;
    // Stamped in whole seconds: the second one expires later.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = token_for_device(&server, "alice", "secret", "device-2").await;
    let renewed = token_for_device(&server, "alice", "secret", "device-2").await;
    let (_c, f) = attempt(&server, &with_token("alice", &second, &user_agent("device-2"))).await;
    assert_eq!(condition(&f), "not-authorized", "a device's new token replaced its old one");
    let third = token_for_device(&server, "alice", "secret", "device-3").await;

    let (_c, f) = attempt(&server, &with_token("alice", &first, &user_agent("device-1"))).await;
    assert_eq!(condition(&f), "not-authorized", "the token that expired first made room");
    for (token, device) in [(&renewed, "device-2"), (&third, "device-3")] {
        let (_c, ok) = attempt(&server, &with_token("alice", token, &user_agent(device))).await;
        assert!(ok.is("success", SASL2), "{device}: {}", ok.to_xml_string());
    }
}

#[tokio::test]
async fn an_expired_token_gets_credentials_expired() {
    let server = TestServer::start_with_tables("", "[auth]\nfast_token_lifetime_secs = 1").await;
    server.adduser("alice", "secret").await;
    let token = token_for(&server, "alice", "secret").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (_c, f) = attempt(&server, &with_token("alice", &token, &user_agent(DEVICE))).await;
    assert_eq!(condition(&f), "credentials-expired");
}

#[tokio::test]
async fn a_password_change_or_a_logout_invalidates_tokens() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    let token = token_for(&server, "alice", "secret").await;
    let running = &server.running.as_ref().unwrap().server;
    jabberwock::accounts::set_password(&running.store, DOMAIN, "alice", "new secret", 4096).await.unwrap();
    let (_c, f) = attempt(&server, &with_token("alice", &token, &user_agent(DEVICE))).await;
    assert_eq!(condition(&f), "not-authorized");

    // Signing in with invalidate='true' is the token's last use: no new token comes back.
    let token = token_for(&server, "alice", "new secret").await;
    let logout = format!("{}<fast xmlns='{FAST}' invalidate='true'/>", user_agent(DEVICE));
    let (_c, ok) = attempt(&server, &with_token("alice", &token, &logout)).await;
    assert!(ok.is("success", SASL2) && ok.child("token", FAST).is_none(), "{}", ok.to_xml_string());
    let (_c, f) = attempt(&server, &with_token("alice", &token, &user_agent(DEVICE))).await;
    assert_eq!(condition(&f), "not-authorized");
}

#[tokio::test]
async fn failed_token_logins_are_throttled_like_passwords() {
    let server = TestServer::start_with_tables("", "[auth]\nmax_failures = 2").await;
    server.adduser("alice", "secret").await;
    let token = token_for(&server, "alice", "secret").await;
    for _ in 0..2 {
        let (_c, f) = attempt(&server, &with_token("alice", "guess", &user_agent(DEVICE))).await;
        assert_eq!(condition(&f), "not-authorized");
    }
    // Past the limit even the right token waits for the window, and is not used up.
    let (_c, f) = attempt(&server, &with_token("alice", &token, &user_agent(DEVICE))).await;
    assert_eq!(condition(&f), "temporary-auth-failure");
}

#[tokio::test]
async fn sasl2_error_paths() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    // A user-agent id of 10 kB.
    let (_c, f) = attempt(&server, &plain("alice", "secret", &user_agent(&"x".repeat(10_000)))).await;
    assert_eq!(condition(&f), "malformed-request");
    // A wrong password, an unknown mechanism, bad base64.
    let (_c, f) = attempt(&server, &plain("alice", "wrong", &user_agent(DEVICE))).await;
    assert_eq!(condition(&f), "not-authorized");
    let (_c, f) = attempt(&server, &format!("<authenticate xmlns='{SASL2}' mechanism='DIGEST-MD5'/>")).await;
    assert_eq!(condition(&f), "invalid-mechanism");
    let (_c, f) =
        attempt(&server, &format!("<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>!!</initial-response></authenticate>")).await;
    assert_eq!(condition(&f), "incorrect-encoding");
    // A response with no exchange, a <next/> with no task offered, an abort.
    for (el, cond) in [("<response xmlns='urn:xmpp:sasl:2'>eA==</response>", "malformed-request"), ("<next xmlns='urn:xmpp:sasl:2' task='X'/>", "malformed-request"), ("<abort xmlns='urn:xmpp:sasl:2'/>", "aborted")] {
        let (_c, f) = attempt(&server, el).await;
        assert_eq!(condition(&f), cond, "{el}");
    }
    // A SASL response does not continue a SASL2 exchange.
    let (mut c, _) = connect(&server).await;
    let scram = jabberwock_tests::scram::Client::new("alice", "n,,", Vec::new());
    c.send(format!("<authenticate xmlns='{SASL2}' mechanism='SCRAM-SHA-256'><initial-response>{}</initial-response></authenticate>", scram.first())).await;
    let challenge = c.next_element().await;
    c.send(format!("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>", scram.last(&challenge.text(), "secret"))).await;
    let f = c.next_element().await;
    assert!(f.is("failure", ns::SASL), "{}", f.to_xml_string());
}

#[tokio::test]
async fn a_session_resumes_inside_sasl2() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    let bind = format!("<bind xmlns='{BIND2}'><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>");
    let (c, success) = attempt(&server, &plain("alice", "secret", &format!("{}{bind}", user_agent(DEVICE)))).await;
    let jid = success.child_text("authorization-identifier", SASL2).unwrap();
    let previd = success.child("bound", BIND2).and_then(|b| b.child("enabled", ns::SM)).and_then(|e| e.attr("id")).unwrap().to_owned();
    drop(c);

    // A message while the connection is gone waits in the parked session.
    let mut bob = Client::login(server.c2s, "alice", "secret", "other").await;
    bob.send(format!("<message to='{jid}' type='chat' id='m1'><body>while away</body></message>")).await;
    bob.ping().await;

    let resume = format!("<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>{bind}");
    let (mut c, success) = attempt(&server, &plain("alice", "secret", &format!("{}{resume}", user_agent(DEVICE)))).await;
    assert!(success.is("success", SASL2), "{}", success.to_xml_string());
    assert_eq!(success.child_text("authorization-identifier", SASL2).as_deref(), Some(jid.as_str()));
    assert_eq!(success.child("resumed", ns::SM).and_then(|r| r.attr("previd")), Some(previd.as_str()));
    assert!(success.child("bound", BIND2).is_none(), "resumed, not bound again");
    let msg = c.expect("the message sent while away", |e| e.name() == "message").await;
    assert_eq!(msg.child_text("body", ns::CLIENT).as_deref(), Some("while away"));

    // A session that cannot be resumed: the login still succeeds, and binds as asked.
    let resume = format!("<resume xmlns='urn:xmpp:sm:3' previd='gone' h='0'/>{bind}");
    let (_c, success) = attempt(&server, &plain("alice", "secret", &format!("{}{resume}", user_agent("third-device")))).await;
    assert!(success.child("failed", ns::SM).is_some(), "{}", success.to_xml_string());
    assert!(success.child("bound", BIND2).is_some(), "{}", success.to_xml_string());
}

#[tokio::test]
async fn client_state_indication_inline_holds_what_can_wait() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    server.adduser("bob", "secret").await;
    let bind = format!("<bind xmlns='{BIND2}'><inactive xmlns='urn:xmpp:csi:0'/></bind>");
    let (mut c, success) = attempt(&server, &plain("alice", "secret", &format!("{}{bind}", user_agent(DEVICE)))).await;
    let jid = success.child_text("authorization-identifier", SASL2).unwrap();
    c.domain = DOMAIN.to_owned();
    let mut bob = Client::login(server.c2s, "bob", "secret", "b").await;
    let typing = |el: &Element| el.name() == "message" && el.child("composing", "http://jabber.org/protocol/chatstates").is_some();
    bob.send(format!("<message to='{jid}' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")).await;
    bob.ping().await;
    // Inactive from the start: a chat state waits.
    c.expect_none(std::time::Duration::from_millis(500), "a chat state while inactive", typing).await;
    c.send("<active xmlns='urn:xmpp:csi:0'/>").await;
    c.expect("the chat state, once active", typing).await;
}
