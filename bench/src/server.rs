//! Starting the server under test: a temporary data directory, a config with loopback
//! listeners on free ports, in-band registration on and the registration/login throttle
//! out of the way (every session comes from 127.0.0.1).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Spawned {
    pub child: Child,
    pub addr: SocketAddr,
    /// The HTTP listener (RFC 7395 WebSocket), when asked for.
    pub http: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `[http]` table of the config.
#[derive(Clone, Copy)]
enum Http {
    /// None: a server from before the HTTP side refuses the table.
    Absent,
    /// No listeners (servers with the HTTP side would otherwise bind ports 5280 and 5443).
    Off,
    /// Plain HTTP on this loopback port, for WebSocket sessions.
    On(u16),
}

/// The config the tool runs the server with.
fn config_text(data_dir: &Path, c2s: u16, direct: u16, domain: &str, http: Http, archive_default: Option<&str>) -> String {
    let mut text = format!(
        "# Written by jabberwock-load.\n\
         domains = [{domain:?}]\n\
         data_dir = {dir:?}\n\
         log = \"warn\"\n\
         allow_registration = true\n\
         \n\
         [listen]\n\
         c2s = [\"127.0.0.1:{c2s}\"]\n\
         c2s_direct_tls = [\"127.0.0.1:{direct}\"]\n\
         \n\
         [s2s]\n\
         enabled = false\n\
         \n\
         {shared}\
         {archive_default}",
        shared = include_str!("../load-limits.toml"),
        dir = data_dir.display().to_string(),
        archive_default = archive_default.map(|d| format!("archive_default = {d:?}\n")).unwrap_or_default(),
    );
    match http {
        Http::Absent => {}
        Http::Off => {
            text.push_str("\n[http]\n# Only the native client port is measured.\nlisten = []\nlisten_tls = []\n")
        }
        // 127.0.0.1 is a trusted proxy by default: the tool's `X-Forwarded-Proto: https`
        // makes the server offer PLAIN over ws://.
        Http::On(port) => text.push_str(&format!(
            "\n[http]\n# WebSocket sessions, plain HTTP.\nlisten = [\"127.0.0.1:{port}\"]\nlisten_tls = []\n"
        )),
    }
    text
}

/// Starts `bin` and waits until it accepts connections; with `websocket`, on an HTTP
/// port too. `archive_default` sets the server's `[limits] archive_default`.
pub fn spawn(bin: &Path, domain: &str, websocket: bool, archive_default: Option<&str>) -> Result<Spawned, String> {
    if websocket {
        return spawn_with(bin, domain, Http::On(free_port().map_err(|e| e.to_string())?), archive_default);
    }
    match spawn_with(bin, domain, Http::Off, archive_default) {
        // A server from before the HTTP side refuses the unknown `[http]` table.
        Err(e) if e.contains("unknown field `http`") => spawn_with(bin, domain, Http::Absent, archive_default),
        other => other,
    }
}

fn spawn_with(bin: &Path, domain: &str, http: Http, archive_default: Option<&str>) -> Result<Spawned, String> {
    let dir = tempfile::Builder::new().prefix("jabberwock-load-").tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let (c2s, direct) = (free_port().map_err(|e| e.to_string())?, free_port().map_err(|e| e.to_string())?);
    let config = dir.path().join("jabberwock.toml");
    std::fs::write(&config, config_text(&dir.path().join("data"), c2s, direct, domain, http, archive_default))
        .map_err(|e| format!("writing the config: {e}"))?;
    let log = std::fs::File::create(dir.path().join("server.log")).map_err(|e| format!("server log: {e}"))?;
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env_remove("RUST_LOG")
        .env_remove("JABBERWOCK_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], c2s));
    let http = match http {
        Http::On(port) => Some(SocketAddr::from(([127, 0, 0, 1], port))),
        Http::Absent | Http::Off => None,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    for listener in std::iter::once(addr).chain(http) {
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the server exited at start ({status}); its log:\n{}", log_tail(dir.path())));
            }
            if std::net::TcpStream::connect_timeout(&listener, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("the server did not listen on {listener} within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(Spawned { child, addr, http, dir })
}

/// The end of the server's log, for error messages.
pub fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Spawned {
    /// SIGTERM (graceful shutdown), then SIGKILL if it takes more than 20 s.
    pub fn stop(mut self) {
        crate::sys::send_signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
