//! `jabberwock doctor` names what an operator must fix: a port another process holds, a
//! domain without a real certificate; and says what is fine, with the server stopped and
//! running.

use std::path::Path;

use jabberwock_tests::{ServerProcess, DOMAIN};

#[tokio::test]
async fn doctor_names_a_taken_port_and_passes_once_the_server_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::new(Path::new(env!("CARGO_BIN_EXE_jabberwock-test-server")), dir.path());

    // Another process on the client port: the server could not start.
    let squatter = std::net::TcpListener::bind(server.c2s).unwrap();
    let (ok, report) = server.cli(&["doctor"]).await;
    assert!(!ok, "a taken port is an error: {report}");
    assert!(report.contains(&format!("error   c2s port {} cannot be listened on", server.c2s)), "{report}");
    assert!(report.contains(&format!("warning {DOMAIN} has no [tls] certificate")), "{report}");
    assert!(report.contains(&format!("ok      {DOMAIN} is local")), "{report}");
    assert!(report.contains("is writable") && report.contains("storage (sqlite) answers"), "{report}");
    assert!(report.contains("the open-file limit"), "{report}");
    drop(squatter);

    server.admin(&["adduser", &format!("alice@{DOMAIN}"), "secret"]).await;
    server.start().await;
    let (ok, report) = server.cli(&["doctor"]).await;
    assert!(ok, "{report}");
    assert!(report.contains(&format!("ok      c2s port {} accepts connections", server.c2s)), "{report}");
    assert!(report.contains(&format!("accounts of {DOMAIN}: 1")), "{report}");
    assert!(!report.contains("error "), "{report}");
    server.stop().await;
}
