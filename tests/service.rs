//! Running under systemd (`packaging/jabberwock.service`, Type=notify): the server says
//! READY=1 once its listeners are bound and STOPPING=1 when it begins to shut down, on
//! the datagram socket systemd names in NOTIFY_SOCKET.

use std::path::Path;
use std::time::Duration;

use jabberwock_tests::{ServerProcess, TIMEOUT};
use tokio::net::{TcpStream, UnixDatagram};

async fn next_notification(socket: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(TIMEOUT, socket.recv(&mut buf)).await.expect("a notification in time").unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn the_service_manager_hears_ready_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    // Writes the config (and picks the client port) without starting anything.
    let process = ServerProcess::new(Path::new(env!("CARGO_BIN_EXE_jabberwock-test-server")), dir.path());
    let notify_path = dir.path().join("notify.sock");
    let notifications = UnixDatagram::bind(&notify_path).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jabberwock-test-server"))
        .arg("--config")
        .arg(dir.path().join("jabberwock.toml"))
        .arg("serve")
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    assert_eq!(next_notification(&notifications).await.trim(), "READY=1");
    // Ready means ready: the client port already accepts.
    TcpStream::connect(process.c2s).await.expect("listening once READY=1 is sent");

    let pid = child.id().unwrap().to_string();
    assert!(tokio::process::Command::new("kill").arg("-TERM").arg(&pid).status().await.unwrap().success());
    assert_eq!(next_notification(&notifications).await.trim(), "STOPPING=1");
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("exits").unwrap();
    assert!(status.success(), "{status}");
}
