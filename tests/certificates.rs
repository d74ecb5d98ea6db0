//! Certificates an operator renews while the server runs: a reload (SIGHUP) serves the new
//! certificate to new connections and leaves established sessions alone; `check-config`
//! names a domain its certificate does not cover.

use std::path::Path;
use std::time::Duration;

use jabberwock_tests::{tls_connector, Client, ServerProcess, DOMAIN, TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes a certificate for `names` and its key where `[tls.localhost]` points.
fn write_certificate(dir: &Path, names: &[&str]) -> Vec<u8> {
    let generated = rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    std::fs::write(dir.join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
    generated.cert.der().to_vec()
}

fn tls_table(dir: &Path) -> String {
    format!(
        "[tls.{DOMAIN}]\ncert = {:?}\nkey = {:?}\n",
        dir.join("cert.pem").display().to_string(),
        dir.join("key.pem").display().to_string()
    )
}

/// Reads from `tcp` until `marker` has arrived.
async fn read_until(tcp: &mut TcpStream, marker: &str) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(marker) {
        let n = tokio::time::timeout(TIMEOUT, tcp.read(&mut buf)).await.expect("in time").unwrap();
        assert!(n > 0, "closed before {marker}: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

/// The leaf certificate a new STARTTLS connection on `addr` is shown.
async fn served_certificate(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let header = format!(
        "<?xml version='1.0'?><stream:stream to='{DOMAIN}' version='1.0' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams'>"
    );
    tcp.write_all(header.as_bytes()).await.unwrap();
    read_until(&mut tcp, "</stream:features>").await;
    tcp.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await.unwrap();
    read_until(&mut tcp, "<proceed").await;
    let name = rustls::pki_types::ServerName::try_from(DOMAIN).unwrap();
    let tls = tls_connector(&[]).connect(name, tcp).await.expect("TLS handshake");
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

#[tokio::test]
async fn a_reload_serves_the_renewed_certificate_and_keeps_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let first = write_certificate(certs.path(), &[DOMAIN]);
    let mut server = ServerProcess::new(Path::new(env!("CARGO_BIN_EXE_jabberwock-test-server")), dir.path());
    server.configure(&tls_table(certs.path()));
    server.admin(&["adduser", &format!("alice@{DOMAIN}"), "secret"]).await;
    server.start().await;
    assert_eq!(served_certificate(server.c2s).await, first);
    let mut alice = Client::login(server.c2s, "alice", "secret", "phone").await;

    // What an ACME client's deploy hook does: new files in place, then a reload.
    let renewed = write_certificate(certs.path(), &[DOMAIN]);
    assert_eq!(served_certificate(server.c2s).await, first, "nothing changes before the reload");
    let hup = tokio::process::Command::new("kill").arg("-HUP").arg(server.pid().to_string()).status().await.unwrap();
    assert!(hup.success());
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while served_certificate(server.c2s).await != renewed {
        assert!(tokio::time::Instant::now() < deadline, "the renewed certificate was never served:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    alice.ping().await;

    // A broken renewal (a key that does not match) keeps the working certificate in use.
    let stray = rcgen::KeyPair::generate().unwrap();
    std::fs::write(certs.path().join("key.pem"), stray.serialize_pem()).unwrap();
    let hup = tokio::process::Command::new("kill").arg("-HUP").arg(server.pid().to_string()).status().await.unwrap();
    assert!(hup.success());
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !server.log().contains("certificates not reloaded") {
        assert!(tokio::time::Instant::now() < deadline, "no error for a key that does not match:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_certificate(server.c2s).await, renewed);
    alice.ping().await;
    server.stop().await;
}

#[tokio::test]
async fn check_config_names_what_a_certificate_does_not_cover() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    write_certificate(certs.path(), &["other.example"]);
    let mut server = ServerProcess::new(Path::new(env!("CARGO_BIN_EXE_jabberwock-test-server")), dir.path());
    server.configure(&tls_table(certs.path()));
    let (ok, output) = server.cli(&["check-config"]).await;
    assert!(ok, "{output}");
    assert!(output.contains(&format!("the certificate for {DOMAIN} does not cover {DOMAIN} (it names other.example)")), "{output}");

    std::fs::write(certs.path().join("key.pem"), "not a key").unwrap();
    let (ok, output) = server.cli(&["check-config"]).await;
    assert!(!ok, "a key that cannot be read fails the check: {output}");
    assert!(output.contains("key.pem"), "the error names the file: {output}");
}

#[tokio::test]
async fn certbot_certificates_are_imported_and_served_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let letsencrypt = tempfile::tempdir().unwrap();
    // certbot names a lineage after the first name it was asked for, which need not be the domain.
    let lineage = letsencrypt.path().join("live").join("www.example");
    std::fs::create_dir_all(&lineage).unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["www.example".to_owned(), DOMAIN.to_owned()]).unwrap();
    std::fs::write(lineage.join("fullchain.pem"), generated.cert.pem()).unwrap();
    std::fs::write(lineage.join("privkey.pem"), generated.signing_key.serialize_pem()).unwrap();

    let mut server = ServerProcess::new(Path::new(env!("CARGO_BIN_EXE_jabberwock-test-server")), dir.path());
    server.start().await;
    let development = served_certificate(server.c2s).await;
    assert_ne!(development, generated.cert.der().to_vec());

    let (ok, output) = server.cli(&["cert", "import", &letsencrypt.path().display().to_string()]).await;
    assert!(ok, "{output}");
    assert!(output.contains(&format!("{DOMAIN}: imported")), "{output}");
    let key = dir.path().join("certs").join(format!("{DOMAIN}.key"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "the key stays private");

    let hup = tokio::process::Command::new("kill").arg("-HUP").arg(server.pid().to_string()).status().await.unwrap();
    assert!(hup.success());
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while served_certificate(server.c2s).await != generated.cert.der().to_vec() {
        assert!(tokio::time::Instant::now() < deadline, "the imported certificate was never served:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;

    // A directory with nothing for the domain changes nothing and says so.
    let empty = tempfile::tempdir().unwrap();
    let (ok, output) = server.cli(&["cert", "import", &empty.path().display().to_string()]).await;
    assert!(ok, "{output}");
    assert!(output.contains(&format!("{DOMAIN}: no certificate for it")), "{output}");
    assert!(std::fs::read(&key).unwrap() == generated.signing_key.serialize_pem().into_bytes());
}
