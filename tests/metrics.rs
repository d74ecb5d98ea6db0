//! Operations endpoints: `/metrics` moves with traffic, parses with Prometheus' own
//! parser, keeps its label values bounded whatever the number of users, and is served
//! only to allowed addresses or the bearer token; `/healthz` and `/readyz`; JSON logs.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use jabberwock_tests::{Client, ServerProcess, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
/// Another loopback address: not on the default allow list, and not a trusted proxy.
const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// A GET from `from`, with extra header lines; returns the status and the body.
async fn get(addr: SocketAddr, from: IpAddr, path: &str, headers: &str) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind the local address");
    let mut tcp = socket.connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n");
    tcp.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut response)).await.expect("response in time").expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {response}"));
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

async fn scrape(server: &TestServer) -> String {
    let (status, body) = get(server.http, LOOPBACK, "/metrics", "").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Every sample of an exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {l}"));
            (series.to_owned(), value.parse().unwrap_or_else(|_| panic!("not a number: {l}")))
        })
        .collect()
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples.get(series).unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

/// The samples as prometheus_client's OpenMetrics parser reads them, when the interop
/// venv is there (CI always has it: scripts/setup-test-env.sh installs it first).
fn parse_with_prometheus_client(text: &str) -> Option<String> {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/.venv/bin/python");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/parse_metrics.py");
    let has_parser = python.exists()
        && std::process::Command::new(&python).args(["-c", "import prometheus_client"]).status().is_ok_and(|s| s.success());
    if !has_parser {
        assert!(std::env::var_os("CI").is_none(), "CI must check /metrics with prometheus_client: run scripts/setup-test-env.sh");
        eprintln!("prometheus_client not installed in tests/interop/.venv; skipping the reference parser");
        return None;
    }
    let mut child = std::process::Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the parser");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes()).expect("feed the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(out.status.success(), "prometheus_client refused /metrics: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).expect("UTF-8"))
}

#[tokio::test]
async fn metrics_move_with_traffic_and_parse_with_the_reference_parser() {
    let server = TestServer::start().await;
    server.adduser("alice", "alice-password").await;
    server.adduser("bob", "bob-password").await;
    let before = samples(&scrape(&server).await);
    assert_eq!(value(&before, "jabberwock_logins_total{result=\"ok\"}"), 0.0);

    let mut alice = Client::login(server.c2s, "alice", "alice-password", "a").await;
    let mut bob = Client::login(server.c2s, "bob", "bob-password", "b").await;
    let mut wrong = Client::connect(server.c2s).await.starttls().await.0;
    assert_eq!(wrong.try_plain("bob", "not-the-password").await.name(), "failure");
    for i in 0..10 {
        alice.send(format!("<message to='bob@localhost/b' type='chat' id='m{i}'><body>hello {i}</body></message>")).await;
        bob.expect("a message", |e| e.name() == "message" && e.attr("id") == Some(&format!("m{i}"))).await;
    }
    alice.ping().await;

    let text = scrape(&server).await;
    let after = samples(&text);
    assert_eq!(value(&after, "jabberwock_sessions{transport=\"tcp\",state=\"active\"}"), 2.0);
    assert_eq!(value(&after, "jabberwock_sessions{transport=\"tcp\",state=\"negotiating\"}"), 1.0, "the failed login's stream");
    assert_eq!(value(&after, "jabberwock_logins_total{result=\"ok\"}"), 2.0);
    assert_eq!(value(&after, "jabberwock_logins_total{result=\"failed\"}"), 1.0);
    assert_eq!(value(&after, "jabberwock_login_seconds_count"), 3.0);
    assert!(value(&after, "jabberwock_stanzas_received_total{kind=\"message\"}") >= 10.0);
    assert!(value(&after, "jabberwock_stanzas_sent_total{kind=\"message\"}") >= 10.0);
    assert!(value(&after, "jabberwock_stanzas_received_total{kind=\"iq\"}") >= 1.0);
    assert_eq!(value(&after, "jabberwock_message_routing_seconds_count"), 10.0);
    assert_eq!(value(&after, "jabberwock_message_routing_seconds_bucket{le=\"+Inf\"}"), 10.0);
    for direction in ["received", "sent"] {
        let series = format!("jabberwock_{direction}_bytes_total{{transport=\"tcp\"}}");
        assert!(value(&after, &series) > value(&before, &series), "{series}");
    }
    assert!(value(&after, "jabberwock_storage_operations_total{kind=\"account\"}") >= 3.0, "credentials read at each login");
    assert!(value(&after, "jabberwock_storage_seconds_count{kind=\"account\"}") >= 3.0);
    assert!(value(&after, "process_resident_memory_bytes") > 1e6);
    assert!(value(&after, "process_open_fds") > 5.0);
    assert!(value(&after, "jabberwock_tls_certificate_expiry_timestamp_seconds{domain=\"localhost\"}") > 1.7e9);

    drop(alice);
    drop(bob);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = samples(&scrape(&server).await);
        if value(&now, "jabberwock_sessions{transport=\"tcp\",state=\"active\"}") == 0.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "sessions that ended are still counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    if let Some(parsed) = parse_with_prometheus_client(&text) {
        let reference = samples(&parsed);
        assert_eq!(reference.len(), after.len(), "the reference parser read every sample: {parsed}");
        assert_eq!(value(&reference, "jabberwock_sessions{state=\"active\",transport=\"tcp\"}"), 2.0);
        assert_eq!(value(&reference, "jabberwock_logins_total{result=\"ok\"}"), 2.0);
        assert_eq!(value(&reference, "jabberwock_message_routing_seconds_count{}"), 10.0);
    }
}

#[tokio::test]
async fn metrics_are_only_for_allowed_addresses_or_the_token() {
    let server = TestServer::start().await;
    let (status, _) = get(server.http, OTHER, "/metrics", "").await;
    assert_eq!(status, 403, "an address off the allow list");
    // 127.0.0.1 is a trusted proxy by default: the client it forwards is the one checked.
    let (status, _) = get(server.http, LOOPBACK, "/metrics", "X-Forwarded-For: 192.0.2.7\r\n").await;
    assert_eq!(status, 403, "a client forwarded by a trusted proxy");
    let (status, body) = get(server.http, LOOPBACK, "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"), "{body}");
    // Health is for anyone, so a load balancer elsewhere can ask.
    assert_eq!(get(server.http, OTHER, "/healthz", "").await, (200, "ok".to_owned()));
    assert_eq!(get(server.http, OTHER, "/readyz", "").await, (200, "ready".to_owned()));
    let token = "a-token-long-enough-to-guess-never";
    let with_token =
        TestServer::start_with_tables("", &format!("[metrics]\nallowed_addresses = []\nbearer_token = '{token}'\n")).await;
    let (status, _) = get(with_token.http, LOOPBACK, "/metrics", "").await;
    assert_eq!(status, 403, "no address is allowed, and no token given");
    let (status, _) = get(with_token.http, OTHER, "/metrics", "Authorization: Bearer not-the-token-at-all-no\r\n").await;
    assert_eq!(status, 403, "a wrong token");
    let (status, body) = get(with_token.http, OTHER, "/metrics", &format!("Authorization: Bearer {token}\r\n")).await;
    assert_eq!(status, 200, "{body}");
    let off = TestServer::start_with_tables("", "[metrics]\nenabled = false\n").await;
    assert_eq!(get(off.http, LOOPBACK, "/metrics", "").await.0, 404);
}

#[tokio::test]
async fn bad_requests_for_metrics_get_errors_not_metrics() {
    let server = TestServer::start().await;
    for (path, headers) in [
        ("/metrics", "Authorization: Bearer \r\n"),
        ("/metrics", "Authorization: Basic YWRtaW46YWRtaW4=\r\n"),
        ("/metrics", "X-Forwarded-For: not-an-address\r\n"),
        ("/metrics?name[]=x", ""),
    ] {
        let (status, body) = get(server.http, OTHER, path, headers).await;
        assert_eq!(status, 403, "{path} {headers}: {body}");
        assert!(!body.contains("jabberwock_"), "{body}");
    }
    // A POST is not a scrape.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    let mut tcp = socket.connect(server.http).await.expect("connect");
    tcp.write_all(b"POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await.expect("send");
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");
}

#[tokio::test]
async fn readiness_follows_storage() {
    let server = TestServer::start().await;
    assert_eq!(get(server.http, LOOPBACK, "/readyz", "").await, (200, "ready".to_owned()));
    server.running.as_ref().expect("running").server.store.close().await;
    let (status, body) = get(server.http, LOOPBACK, "/readyz", "").await;
    assert_eq!((status, body.as_str()), (503, "storage does not answer"));
    assert_eq!(get(server.http, LOOPBACK, "/healthz", "").await, (200, "ok".to_owned()), "the process still serves");
}

#[tokio::test]
async fn series_do_not_grow_with_users() {
    const USERS: usize = 200;
    let server = TestServer::start().await;
    let series = |text: &str| samples(text).into_keys().collect::<Vec<_>>();
    server.adduser("first", "password").await;
    let mut first = Client::login(server.c2s, "first", "password", "r").await;
    first.ping().await;
    let few = series(&scrape(&server).await);
    for i in 0..USERS {
        server.adduser(&format!("user{i}"), "password").await;
    }
    // Logged in one after another, each sends a message to the next and leaves.
    for i in 0..USERS {
        let mut c = Client::login(server.c2s, &format!("user{i}"), "password", &format!("res{i}")).await;
        c.send(format!("<message to='user{}@localhost' type='chat'><body>hi</body></message>", (i + 1) % USERS)).await;
        c.ping().await;
    }
    let text = scrape(&server).await;
    assert_eq!(series(&text), few, "the same series after {USERS} more users");
    assert!(value(&samples(&text), "jabberwock_logins_total{result=\"ok\"}") >= USERS as f64);
    assert!(!text.contains("user1") && !text.contains("res1") && !text.contains("@localhost"), "{text}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_without_secrets_or_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut process = ServerProcess::new(std::path::Path::new(env!("CARGO_BIN_EXE_jabberwock-test-server")), dir.path());
    process.configure_top("log = 'debug'\nlog_format = 'json'");
    let password = "correct-horse-battery";
    process.admin(&["adduser", "alice@localhost", password]).await;
    process.admin(&["adduser", "bob@localhost", "bob-password"]).await;
    process.start().await;
    let mut alice = Client::login(process.c2s, "alice", password, "a").await;
    let mut bob = Client::login(process.c2s, "bob", "bob-password", "b").await;
    let mut wrong = Client::connect(process.c2s).await.starttls().await.0;
    assert_eq!(wrong.try_plain("alice", "an-unlucky-guess").await.name(), "failure");
    alice.send("<message to='bob@localhost/b' type='chat' id='m1'><body>the secret plan</body></message>").await;
    bob.expect("the message", |e| e.name() == "message").await;
    drop((alice, bob, wrong));
    process.stop().await;
    let log = process.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 5, "too few lines to tell: {log}");
    for line in &lines {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(parsed.get("level").is_some() && parsed.get("timestamp").is_some(), "{line}");
    }
    assert!(log.contains("\"authenticated\""), "logins are logged: {log}");
    let encoded = |user: &str, password: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
    };
    let (alice_plain, guess_plain) = (encoded("alice", password), encoded("alice", "an-unlucky-guess"));
    for secret in [password, "an-unlucky-guess", "bob-password", "the secret plan", &alice_plain, &guess_plain] {
        assert!(!log.contains(secret), "{secret:?} in the log: {log}");
    }
}

#[tokio::test]
async fn throttled_logins_and_limits_hit_are_counted() {
    let server = TestServer::start_with_tables("", "[auth]\nmax_failures = 1\n[limits]\nmax_unauthenticated_per_ip = 1\n").await;
    server.adduser("alice", "alice-password").await;
    let mut guesser = Client::connect(server.c2s).await.starttls().await.0;
    assert_eq!(guesser.try_plain("alice", "guess-1").await.name(), "failure");
    let throttled = guesser.try_plain("alice", "guess-2").await;
    assert!(throttled.children().any(|c| c.name() == "temporary-auth-failure"), "{}", throttled.to_xml_string());
    // The guesser's stream holds the address's one unauthenticated place.
    let refused = Client::connect(server.c2s).await.read_to_close().await;
    assert_eq!(refused.stream_error().as_deref(), Some("policy-violation"));
    let now = samples(&scrape(&server).await);
    assert_eq!(value(&now, "jabberwock_logins_total{result=\"failed\"}"), 1.0);
    assert_eq!(value(&now, "jabberwock_logins_total{result=\"throttled\"}"), 1.0);
    assert_eq!(value(&now, "jabberwock_limit_hits_total{limit=\"unauthenticated_per_address\"}"), 1.0);
    assert_eq!(value(&now, "jabberwock_limit_hits_total{limit=\"connections\"}"), 0.0);
}

/// Polls `/metrics` until `series` reads `want`.
async fn until_value(server: &TestServer, series: &str, want: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = samples(&scrape(server).await);
        if value(&now, series) == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{series} is {} rather than {want}", value(&now, series));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_session_is_counted_hibernated_while_it_waits_and_active_once_resumed() {
    let server = TestServer::start().await;
    server.adduser("alice", "pw").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    alice.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>").await;
    let enabled = alice.expect("enabled", |e| e.name() == "enabled").await;
    let id = enabled.attr("id").expect("an id to resume").to_owned();
    drop(alice);
    until_value(&server, "jabberwock_sessions{transport=\"tcp\",state=\"hibernated\"}", 1.0).await;
    assert_eq!(value(&samples(&scrape(&server).await), "jabberwock_sessions{transport=\"tcp\",state=\"active\"}"), 0.0);

    // Resumed over direct TLS: the session moves to that transport.
    let mut again = Client::connect_direct_tls(server.direct_tls).await;
    again.open_stream("localhost").await;
    again.expect_header_and_features().await;
    assert_eq!(again.try_plain("alice", "pw").await.name(), "success");
    again.restart_stream().await;
    again.send(format!("<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>")).await;
    again.expect("resumed", |e| e.name() == "resumed").await;
    let now = samples(&scrape(&server).await);
    assert_eq!(value(&now, "jabberwock_sessions{transport=\"tcp\",state=\"hibernated\"}"), 0.0);
    assert_eq!(value(&now, "jabberwock_sessions{transport=\"direct_tls\",state=\"active\"}"), 1.0);
    assert_eq!(value(&now, "jabberwock_sessions{transport=\"direct_tls\",state=\"negotiating\"}"), 0.0);
}

#[tokio::test]
async fn a_certificate_about_to_expire_is_warned_about_and_measured() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Four and a half days: the warning says 4 whatever the seconds lost on the way.
    let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(4 * 24 + 12);
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.not_after = expires;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    let (cert_path, key_path) = (dir.path().join("localhost.crt"), dir.path().join("localhost.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    let tls = format!("[tls.localhost]\ncert = {:?}\nkey = {:?}\n", cert_path.display().to_string(), key_path.display().to_string());

    let server = TestServer::start_with_tables("", &tls).await;
    let now = samples(&scrape(&server).await);
    assert_eq!(value(&now, "jabberwock_tls_certificate_expiry_timestamp_seconds{domain=\"localhost\"}"), expires.unix_timestamp() as f64);

    let mut process = ServerProcess::new(std::path::Path::new(env!("CARGO_BIN_EXE_jabberwock-test-server")), dir.path());
    process.configure(&tls);
    process.start().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !process.log().contains("expires soon") {
        assert!(tokio::time::Instant::now() < deadline, "no warning: {}", process.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process.stop().await;
    let warning = process.log().lines().find(|l| l.contains("expires soon")).expect("the warning").to_owned();
    assert!(warning.contains("WARN") && warning.contains("domain=localhost") && warning.contains("days_left=4"), "{warning}");
    assert!(!process.log().contains('\u{1b}'), "a log file gets no terminal colours: {}", process.log());
}

/// A self-signed certificate for localhost expiring `days` from now, written over `dir`'s
/// localhost.crt and localhost.key; returns it (DER) and its expiry.
fn write_certificate(dir: &std::path::Path, days: i64) -> (Vec<u8>, i64) {
    let expires = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.not_after = expires;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    std::fs::write(dir.join("localhost.crt"), cert.pem()).expect("write");
    std::fs::write(dir.join("localhost.key"), key.serialize_pem()).expect("write");
    (cert.der().to_vec(), expires.unix_timestamp())
}

/// The certificate the direct TLS port shows now.
async fn shown_certificate(server: &TestServer) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(server.direct_tls).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = jabberwock_tests::tls_connector(&[b"xmpp-client"]).connect(name, tcp).await.expect("TLS handshake");
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

#[tokio::test]
async fn certificates_are_reloaded_for_new_connections_and_a_bad_file_keeps_the_old_ones() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (first, _) = write_certificate(certs.path(), 30);
    let (cert, key) = (certs.path().join("localhost.crt"), certs.path().join("localhost.key"));
    let tls = format!("[tls.localhost]\ncert = {:?}\nkey = {:?}\n", cert.display().to_string(), key.display().to_string());
    let server = TestServer::start_with_tables("", &tls).await;
    assert_eq!(shown_certificate(&server).await, first);

    let (second, expires) = write_certificate(certs.path(), 90);
    server.running.as_ref().expect("running").server.reload_certificates().expect("the renewed files load");
    assert_eq!(shown_certificate(&server).await, second, "the renewed certificate");
    let now = samples(&scrape(&server).await);
    assert_eq!(value(&now, "jabberwock_tls_certificate_expiry_timestamp_seconds{domain=\"localhost\"}"), expires as f64);

    std::fs::write(&cert, "not a certificate").expect("write");
    assert!(server.running.as_ref().expect("running").server.reload_certificates().is_err(), "a file that does not load is an error");
    assert_eq!(shown_certificate(&server).await, second, "a file that does not load changes nothing");
}

#[tokio::test]
async fn sighup_reloads_the_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut process = ServerProcess::new(std::path::Path::new(env!("CARGO_BIN_EXE_jabberwock-test-server")), dir.path());
    process.configure_top("log = 'info'");
    process.start().await;
    let sent = tokio::process::Command::new("kill").arg("-HUP").arg(process.pid().to_string()).status().await.expect("run kill");
    assert!(sent.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !process.log().contains("certificates reloaded") {
        assert!(tokio::time::Instant::now() < deadline, "no reload: {}", process.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still serving, and still stopping cleanly.
    Client::connect(process.c2s).await.starttls().await;
    process.stop().await;
}
