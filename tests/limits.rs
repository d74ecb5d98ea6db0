//! Connection floods: slow and idle HTTP clients are closed by the server's timeouts, and
//! connections beyond the caps per address and in total are refused at once, while
//! signed-in users carry on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use jabberwock_tests::{Client, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Raises the soft open-file limit to the hard one and returns it.
fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a struct of the right type.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    #[allow(clippy::useless_conversion)] // rlim_t is u64 here, not on every platform
    u64::from(limit.rlim_cur)
}

/// Reads until the server closes the connection; how long that took, or `None` if it
/// was still open at `deadline`.
async fn closed_after(mut tcp: TcpStream, since: Instant, deadline: Instant) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

async fn connect_from(addr: SocketAddr, local: IpAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test]
async fn slow_http_clients_are_closed_after_the_header_timeout_while_users_sign_in() {
    const TIMEOUT_SECS: u64 = 2;
    // Each connection takes a descriptor in this process for the client and one for the
    // server, which runs in the same process.
    let wanted = 1500;
    let limit = raise_open_file_limit();
    let count = wanted.min((limit.saturating_sub(300) / 2) as usize);
    if count < wanted {
        eprintln!("the open-file limit ({limit}) allows {count} connections, not {wanted}");
    }
    // Caps out of the way: this is about the timeout.
    let server = TestServer::start_with_tables(
        "",
        &format!("[http]\nheader_timeout_secs = {TIMEOUT_SECS}\n[limits]\nmax_connections = 5000\nmax_connections_per_ip = 5000\n"),
    )
    .await;
    server.adduser("alice", "secret").await;

    let mut slow = tokio::task::JoinSet::new();
    for i in 0..count {
        let mut tcp = TcpStream::connect(server.http).await.expect("connect");
        // Most send half a request's headers; some send nothing at all.
        if i % 10 != 0 {
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.unwrap();
        }
        let since = Instant::now();
        slow.spawn(closed_after(tcp, since, since + Duration::from_secs(TIMEOUT_SECS + 3)));
    }
    // Meanwhile a user signs in and is served.
    let mut alice = Client::login(server.c2s, "alice", "secret", "phone").await;
    alice.ping().await;

    let mut open = 0;
    let mut slowest = Duration::ZERO;
    let mut fastest = Duration::MAX;
    while let Some(closed) = slow.join_next().await {
        match closed.unwrap() {
            Some(after) => {
                slowest = slowest.max(after);
                fastest = fastest.min(after);
            }
            None => open += 1,
        }
    }
    assert_eq!(open, 0, "{open} of {count} slow connections still open {} s after their last byte", TIMEOUT_SECS + 3);
    // Closed by the timeout, not refused: none went before it.
    assert!(fastest >= Duration::from_millis(TIMEOUT_SECS * 1000 - 200), "closed after {fastest:?}");
    eprintln!("{count} slow connections closed between {fastest:?} and {slowest:?} (timeout {TIMEOUT_SECS} s)");
    alice.ping().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_and_stalled_bodies_are_closed() {
    let server = TestServer::start_with_tables("", "[http]\nheader_timeout_secs = 1\nbody_timeout_secs = 1\n").await;
    // A request answered, then nothing: the connection waits for the next one only so long.
    let mut kept = TcpStream::connect(server.http).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut response = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut response)).await.unwrap().unwrap();
    assert!(response[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&response[..n]));
    let since = Instant::now();
    assert!(closed_after(kept, since, since + Duration::from_secs(4)).await.is_some(), "idle keep-alive connection still open");
    // A body that stops half-way.
    let mut stalled = TcpStream::connect(server.http).await.unwrap();
    stalled
        .write_all(b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n<body rid='1' xmlns=")
        .await
        .unwrap();
    let since = Instant::now();
    assert!(closed_after(stalled, since, since + Duration::from_secs(4)).await.is_some(), "stalled request body still open");
}

/// Opens a stream and reads the features: an unauthenticated stream the server holds.
async fn negotiating_from(addr: SocketAddr, local: IpAddr) -> Client {
    let mut c = Client::connect_from(addr, local).await;
    c.open_stream("localhost").await;
    c.expect_header_and_features().await;
    c
}

/// Connects without sending anything and expects the server's refusal at once.
async fn refused_from(addr: SocketAddr, local: IpAddr) -> String {
    let started = Instant::now();
    let t = Client::connect_from(addr, local).await.read_to_close().await;
    assert!(t.closed && started.elapsed() < Duration::from_secs(2), "not refused at once: {}", t.raw);
    t.stream_error().unwrap_or_else(|| panic!("no stream error: {}", t.raw))
}

/// The server notices closed sockets a moment later.
async fn released() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn login_from(server: &TestServer, local: IpAddr, user: &str, resource: &str) -> Client {
    let (mut c, _) = Client::connect_from(server.c2s, local).await.starttls().await;
    c.authenticate_and_bind(user, "secret", Some(resource)).await;
    c
}

#[tokio::test]
async fn unauthenticated_sockets_from_one_address_are_capped_and_others_sign_in() {
    let server = TestServer::start_with_tables("", "[limits]\nmax_unauthenticated_per_ip = 5\nmax_connections_per_ip = 8\n").await;
    server.adduser("alice", "secret").await;
    let mut flood = Vec::new();
    for _ in 0..5 {
        flood.push(negotiating_from(server.c2s, ip("127.0.0.2")).await);
    }
    assert_eq!(refused_from(server.c2s, ip("127.0.0.2")).await, "policy-violation");
    // Another address signs in, and so does this one once its sockets are gone.
    let mut alice = login_from(&server, ip("127.0.0.3"), "alice", "a").await;
    alice.ping().await;
    drop(flood);
    released().await;
    let mut sessions = Vec::new();
    for i in 0..8 {
        let mut c = login_from(&server, ip("127.0.0.2"), "alice", &format!("r{i}")).await;
        c.ping().await;
        sessions.push(c);
    }
    // Signed in, they left the negotiating budget, but they still count as connections.
    assert_eq!(refused_from(server.c2s, ip("127.0.0.2")).await, "policy-violation");
}

#[tokio::test]
async fn a_full_unauthenticated_budget_leaves_signed_in_users_alone() {
    let server = TestServer::start_with_tables("", "[limits]\nmax_unauthenticated = 3\nmax_connections = 10\n").await;
    server.adduser("alice", "secret").await;
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(login_from(&server, ip("127.0.0.1"), "alice", &format!("r{i}")).await);
    }
    let mut idle = Vec::new();
    for a in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        idle.push(negotiating_from(server.c2s, ip(a)).await);
    }
    // Four signed-in sessions and three negotiating ones: only the latter are full.
    assert_eq!(refused_from(server.c2s, ip("127.0.0.5")).await, "resource-constraint");
    for u in &mut users {
        u.ping().await;
    }
    // A negotiating socket goes away: its place is free for the next user.
    idle.pop();
    released().await;
    let mut late = login_from(&server, ip("127.0.0.5"), "alice", "late").await;
    late.ping().await;
}

#[tokio::test]
async fn http_connections_are_capped_per_address_except_for_trusted_proxies() {
    let server = TestServer::start_with_tables("", "[limits]\nmax_connections_per_ip = 2\nmax_unauthenticated_per_ip = 2\n").await;
    let _held = [connect_from(server.http, ip("127.0.0.2")).await, connect_from(server.http, ip("127.0.0.2")).await];
    let third = connect_from(server.http, ip("127.0.0.2")).await;
    let since = Instant::now();
    let closed = closed_after(third, since, since + Duration::from_secs(2)).await;
    assert!(closed.is_some(), "a third connection from one address is held");
    // 127.0.0.1 is a trusted proxy (the default): its connections speak for many clients.
    let mut proxied = Vec::new();
    for _ in 0..3 {
        proxied.push(TcpStream::connect(server.http).await.unwrap());
    }
    let last = proxied.last_mut().unwrap();
    last.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), last.read_to_string(&mut response)).await.unwrap().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}
