//! What the server leaves on disk and which certificate it shows: the database and keys
//! readable by the server's user only, and configured certificates found whatever the
//! case of the domain in the configuration.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use jabberwock_tests::{test_config, tls_connector, TestServer};

/// The permission bits, in octal as `ls` would show them.
fn mode(path: &Path) -> String {
    let bits = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode();
    format!("{:o}", bits & 0o777)
}

#[tokio::test]
async fn database_and_keys_are_private_to_the_server() {
    // The usual umask, which would leave new files readable by everyone (0644).
    // SAFETY: umask only swaps the process's file creation mask.
    unsafe { libc::umask(0o022) };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = test_config(&data, "", "");
    let server = TestServer::start_config(dir, config).await;
    // A write, so that the write-ahead log and its index exist.
    server.adduser("alice", "secret").await;
    assert_eq!(mode(&data), "700", "the data directory the server created");
    for file in ["jabberwock.db", "jabberwock.db-wal", "jabberwock.db-shm"] {
        assert_eq!(mode(&data.join(file)), "600", "{file}");
    }
    assert_eq!(mode(&data.join("certs")), "700", "the certificate directory");
    assert_eq!(mode(&data.join("certs/localhost.key")), "600", "the generated key");
}

#[tokio::test]
async fn a_certificate_configured_with_a_mixed_case_domain_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["example.org".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("example.crt"), dir.path().join("example.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let tables = format!("[tls.\"Example.ORG\"]\ncert = {:?}\nkey = {:?}\n", cert.display().to_string(), key.display().to_string());
    let server = TestServer::start_in(dir, "domains = ['example.org']", &tables).await;

    let tcp = tokio::net::TcpStream::connect(server.direct_tls).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("example.org").unwrap();
    let tls = tls_connector(&[b"xmpp-client"]).connect(name, tcp).await.expect("TLS handshake");
    let shown = tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone();
    assert!(shown.as_ref() == generated.cert.der().as_ref(), "the configured certificate, not a generated one");
}
