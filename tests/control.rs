//! The admin commands against a running server, through its control socket: status,
//! sessions, kick, announce, users, and account changes that end the sessions they
//! concern; and a socket only the server's own user can use.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use jabberwock_tests::{Client, ServerProcess, DOMAIN};

fn server_in(dir: &Path) -> ServerProcess {
    ServerProcess::new(Path::new(env!("CARGO_BIN_EXE_jabberwock-test-server")), dir)
}

async fn output(server: &ServerProcess, args: &[&str]) -> String {
    let (ok, output) = server.cli(args).await;
    assert!(ok, "`jabberwock {}` failed: {output}", args.join(" "));
    output
}

#[tokio::test]
async fn admin_commands_act_on_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server_in(dir.path());
    let (alice, bob) = (format!("alice@{DOMAIN}"), format!("bob@{DOMAIN}"));
    let (ok, refused) = server.cli(&["status"]).await;
    assert!(!ok && refused.contains("no server is running"), "{refused}");
    server.admin(&["adduser", &alice, "secret"]).await;
    server.start().await;
    // Through the running server now.
    assert!(output(&server, &["adduser", &bob, "secret"]).await.contains(&format!("created {bob}")));
    let mut phone = Client::login(server.c2s, "alice", "secret", "phone").await;
    phone.send("<presence/>").await;
    let laptop = Client::login(server.c2s, "alice", "secret", "laptop").await;
    let mut bobs = Client::login(server.c2s, "bob", "secret", "desk").await;
    bobs.send("<presence/>").await;
    phone.ping().await;
    bobs.ping().await;

    let status = output(&server, &["status"]).await;
    assert!(status.contains("accounts online 2") && status.contains("sessions bound 3"), "{status}");
    let sessions = output(&server, &["sessions", &alice]).await;
    assert!(sessions.contains(&format!("{alice}/phone  available")), "{sessions}");
    assert!(sessions.contains(&format!("{alice}/laptop  unavailable")) && !sessions.contains("bob"), "{sessions}");
    let users = output(&server, &["users"]).await;
    assert_eq!(users.lines().collect::<Vec<_>>(), [alice.as_str(), bob.as_str()], "{users}");
    let info = output(&server, &["user", &bob]).await;
    assert!(info.contains(&format!("session {bob}/desk  available")), "{info}");

    // An announcement reaches the available sessions, as a headline from the domain.
    assert!(output(&server, &["announce", "maintenance at noon"]).await.contains("sent to 2 sessions"));
    for client in [&mut phone, &mut bobs] {
        let m = client.expect("the announcement", |el| el.name() == "message").await;
        assert_eq!((m.attr("from"), m.attr("type")), (Some(DOMAIN), Some("headline")));
        assert_eq!(m.child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("maintenance at noon"));
    }

    // Kicking one resource ends that stream only.
    assert!(output(&server, &["kick", &format!("{alice}/laptop"), "--reason", "stop"]).await.contains("ended"));
    let closed = laptop.read_to_close().await;
    assert_eq!(closed.stream_error().as_deref(), Some("policy-violation"), "{}", closed.raw);
    assert!(closed.raw.contains("stop"), "{}", closed.raw);
    phone.ping().await;
    let (ok, none) = server.cli(&["kick", &format!("{alice}/laptop")]).await;
    assert!(!ok && none.contains("has no session"), "{none}");

    // A password changed by the admin ends the sessions that used the old one.
    output(&server, &["passwd", &alice, "new-secret"]).await;
    assert_eq!(phone.read_to_close().await.stream_error().as_deref(), Some("not-authorized"));
    Client::login(server.c2s, "alice", "new-secret", "phone").await.ping().await;

    // A deleted account's sessions end, and it is gone from the list.
    assert!(output(&server, &["deluser", &bob]).await.contains("1 sessions ended"));
    assert_eq!(bobs.read_to_close().await.stream_error().as_deref(), Some("not-authorized"));
    assert_eq!(output(&server, &["users"]).await.trim(), alice);
    let (ok, gone) = server.cli(&["user", &bob]).await;
    assert!(!ok && gone.contains("has no account"), "{gone}");

    assert!(output(&server, &["reload"]).await.contains("certificates reloaded"));
    server.stop().await;
    assert!(!dir.path().join("control.sock").exists(), "the socket goes with the server");
    // Without a server the account commands use the database.
    assert!(output(&server, &["users"]).await.contains(&alice));
}

/// Connects to `socket` as user `nobody` and asks for the status; what happened.
async fn status_as_nobody(socket: &Path) -> String {
    let script = "import socket, sys\n\
        s = socket.socket(socket.AF_UNIX)\n\
        try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n    print('refused:', e.strerror); sys.exit()\n\
        try:\n    s.sendall(b'{\"command\":\"status\"}\\n'); answer = s.recv(65536)\n\
        except (BrokenPipeError, ConnectionResetError):\n    answer = b''\n\
        print('answered' if answer else 'closed')\n";
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(socket)
        .uid(65534)
        .gid(65534)
        .output()
        .await
        .expect("run python3 as nobody");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn only_the_servers_user_may_use_the_control_socket() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test switches to another user and must run as root (as CI does)");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = server_in(dir.path());
    server.start().await;
    let socket = dir.path().join("control.sock");
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);
    // Let others reach the socket's directory: the socket's own mode keeps them out.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let outsider = status_as_nobody(&socket).await;
    assert!(outsider.contains("refused: Permission denied"), "{outsider}");

    // Even a socket an operator opened up by mistake answers only its owner.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let outsider = status_as_nobody(&socket).await;
    assert_eq!(outsider.trim(), "closed", "{outsider}");
    assert!(output(&server, &["status"]).await.contains("uptime"));
    server.stop().await;
}
