//! Three real nodes on 127.0.0.2, 127.0.0.3 and 127.0.0.4 sharing one PostgreSQL database
//! and one Redis, for the cluster tests.
//!
//! Needs `JABBERWOCK_TEST_POSTGRES` (a PostgreSQL server URL without a database) and
//! `JABBERWOCK_TEST_REDIS_SERVER` (the `redis-server` program: each test starts its own on a
//! free port, and restarts it); a test skips without them unless
//! `JABBERWOCK_TEST_REQUIRE_CLUSTER` is set. `scripts/cluster-tests.sh` sets all three.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{free_port, Client, ServerProcess};

/// The tests' usual lease: short, so that a dead node is noticed quickly.
pub const LEASE_MS: u64 = 1500;

/// A private Redis this test starts, stops and restarts on the same port.
pub struct Redis {
    program: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<tokio::process::Child>,
}

impl Redis {
    async fn start(program: PathBuf) -> Redis {
        let mut redis = Redis { program, dir: tempfile::tempdir().expect("tempdir"), port: free_port().port(), child: None };
        redis.run().await;
        redis
    }

    async fn run(&mut self) {
        let child = tokio::process::Command::new(&self.program)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "redis-server did not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills this Redis (its own PID) and starts it again, empty, on the same port.
    pub async fn restart(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("kill redis-server");
        self.run().await;
    }

    /// The string at `key` (`GET`), `None` if there is none. Spoken in RESP by hand: the
    /// tests need no Redis client but for this.
    pub async fn get(&self, key: &str) -> Option<String> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let mut redis = tokio::io::BufReader::new(tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.expect("connect to Redis"));
        let command = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
        redis.get_mut().write_all(command.as_bytes()).await.expect("send to Redis");
        let mut header = String::new();
        redis.read_line(&mut header).await.expect("Redis answers");
        let len: i64 = header.trim_end().strip_prefix('$').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not a bulk string: {header}"));
        let len = usize::try_from(len).ok()?;
        let mut value = vec![0; len + 2];
        redis.read_exact(&mut value).await.expect("the value");
        value.truncate(len);
        Some(String::from_utf8(value).expect("UTF-8"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// Three nodes, one database, one Redis.
pub struct Cluster {
    pub nodes: Vec<ServerProcess>,
    pub redis: Redis,
    _dirs: Vec<tempfile::TempDir>,
}

fn environment() -> Option<(String, PathBuf)> {
    let vars = (std::env::var("JABBERWOCK_TEST_POSTGRES"), std::env::var("JABBERWOCK_TEST_REDIS_SERVER"));
    let (Ok(postgres), Ok(redis)) = vars else {
        assert!(
            std::env::var("JABBERWOCK_TEST_REQUIRE_CLUSTER").is_err(),
            "JABBERWOCK_TEST_REQUIRE_CLUSTER is set but JABBERWOCK_TEST_POSTGRES or JABBERWOCK_TEST_REDIS_SERVER is not"
        );
        eprintln!("skipping: set JABBERWOCK_TEST_POSTGRES=postgres://user@host:port and JABBERWOCK_TEST_REDIS_SERVER=/usr/bin/redis-server");
        return None;
    };
    Some((postgres, PathBuf::from(redis)))
}

impl Cluster {
    /// Starts the three nodes of `bin` (`env!("CARGO_BIN_EXE_jabberwock-test-server")`;
    /// `limits` is the `[limits]` table's content) with `users` and `cluster.lease_ms`.
    pub async fn start(bin: &Path, name: &str, limits: &str, users: &[&str], lease_ms: u64) -> Option<Cluster> {
        let (postgres, redis_program) = environment()?;
        let redis = Redis::start(redis_program).await;
        let database = format!("{}/jw_cluster_{name}_{}", postgres.trim_end_matches('/'), std::process::id());
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..3u8 {
            let dir = tempfile::tempdir().expect("tempdir");
            let host = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i));
            let mut node = ServerProcess::new(bin, dir.path());
            node.set_storage(&database);
            node.listen_on(host);
            node.configure(&format!(
                "[limits]\n{limits}\n[cluster]\nnode = 'n{i}'\nredis = '{}'\naddress = '{host}:5269'\nlease_ms = {lease_ms}\nlocation = '{host}'\n",
                redis.url()
            ));
            if i == 0 {
                // The first creates the database; the others, a few at a time, fill it.
                let adduser = |user: &str| {
                    let (jid, password) = (format!("{user}@localhost"), format!("{user}-pw"));
                    let node = &node;
                    async move { node.admin(&["adduser", &jid, &password]).await }
                };
                if let Some((first, rest)) = users.split_first() {
                    adduser(first).await;
                    for chunk in rest.chunks(8) {
                        futures_util::future::join_all(chunk.iter().map(|u| adduser(u))).await;
                    }
                }
            }
            node.start().await;
            nodes.push(node);
            dirs.push(dir);
        }
        Some(Cluster { nodes, redis, _dirs: dirs })
    }

    pub fn c2s(&self, node: usize) -> SocketAddr {
        self.nodes[node].c2s
    }

    pub async fn login(&self, node: usize, user: &str, resource: &str) -> Client {
        Client::login(self.c2s(node), user, &format!("{user}-pw"), resource).await
    }
}
