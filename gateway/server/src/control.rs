//! The control socket: how `jabberwock status`, `sessions`, `kick`, `announce`, `reload`,
//! `users`, `user` and the account commands reach a running server, so that they act on
//! it (ending a deleted user's sessions, say) instead of opening its database behind its
//! back.
//!
//! A Unix socket (`control_socket`, default `<data_dir>/control.sock`), mode 0600, whose
//! peers must run as the server's user (or root): the kernel's credentials, not a secret.
//! One JSON request per line, one JSON response per line.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jabberwock_storage::UserRef;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::administration;
use crate::server::Server;

/// The most a connection may send (the commands send one request of far less).
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// How long a client waits for the server's answer.
const ANSWER_TIME: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    Status,
    Sessions { user: Option<String> },
    Kick { jid: String, reason: Option<String> },
    Announce { text: String, domain: Option<String> },
    Reload,
    Users { domain: Option<String> },
    User { jid: String },
    Adduser { jid: String, password: String },
    Passwd { jid: String, password: String },
    Deluser { jid: String },
}

/// What a command printed, or why it failed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    pub lines: Vec<String>,
}

impl Response {
    fn ok(lines: Vec<String>) -> Response {
        Response { ok: true, lines }
    }

    fn error(reason: impl Into<String>) -> Response {
        Response { ok: false, lines: vec![reason.into()] }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{path}: another server is running with this control socket")]
    InUse { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Binds the control socket and answers on it until shutdown; the socket file goes then.
pub async fn listen(server: Arc<Server>) -> Result<(), ControlError> {
    let path = server.config.control_socket_path();
    let io_err = |source| ControlError::Io { path: path.clone(), source };
    if path.exists() {
        if UnixStream::connect(&path).await.is_ok() {
            return Err(ControlError::InUse { path });
        }
        // Left by a server that did not stop cleanly.
        std::fs::remove_file(&path).map_err(io_err)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(dir).map_err(io_err)?;
    }
    let listener = UnixListener::bind(&path).map_err(io_err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    // The socket file is ours: its owner is the user this server runs as.
    let owner = std::fs::metadata(&path).map_err(io_err)?.uid();
    let mut shutdown = server.shutdown_signal();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    tokio::spawn(answer(server.clone(), stream, owner));
                }
                _ = shutdown.changed() => break,
            }
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

async fn answer(server: Arc<Server>, stream: UnixStream, owner: u32) {
    // The file's mode already keeps others out; the kernel's word on the peer is the check
    // that does not depend on the directory's permissions.
    if !stream.peer_cred().is_ok_and(|cred| cred.uid() == owner || cred.uid() == 0) {
        tracing::warn!("control socket: refused a peer that is not the server's user");
        return;
    }
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_REQUEST_BYTES));
    let mut line = String::new();
    while lines.read_line(&mut line).await.is_ok_and(|n| n > 0) {
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => execute(&server, request).await,
            Err(e) => Response::error(format!("bad request: {e}")),
        };
        line.clear();
        let mut out = serde_json::to_vec(&response).expect("serializable");
        out.push(b'\n');
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

async fn execute(server: &Arc<Server>, request: Request) -> Response {
    let result = match request {
        Request::Status => Ok(status(server)),
        Request::Sessions { user } => sessions(server, user.as_deref()),
        Request::Kick { jid, reason } => kick(server, &jid, reason.as_deref()),
        Request::Announce { text, domain } => announce(server, &text, domain.as_deref()),
        Request::Reload => match server.reload_certificates() {
            Ok(()) => Ok(vec!["certificates reloaded".to_owned()]),
            Err(e) => Err(format!("certificates not reloaded ({e}); the ones in use stay")),
        },
        Request::Users { domain } => users(server, domain.as_deref()).await,
        Request::User { jid } => user(server, &jid).await,
        Request::Adduser { jid, password } => adduser(server, &jid, &password).await,
        Request::Passwd { jid, password } => passwd(server, &jid, &password).await,
        Request::Deluser { jid } => deluser(server, &jid).await,
    };
    match result {
        Ok(lines) => Response::ok(lines),
        Err(reason) => Response::error(reason),
    }
}

fn status(server: &Server) -> Vec<String> {
    let online = server.sessions.all();
    let resources: usize = online.iter().map(|(_, list)| list.len()).sum();
    vec![
        format!("version {}", env!("CARGO_PKG_VERSION")),
        format!("uptime {}", format_duration(server.started.elapsed())),
        format!("domains {}", server.config.domains.join(", ")),
        format!("accounts online {}", online.len()),
        format!("sessions bound {resources}"),
        format!("sessions waiting to resume {}", server.sm.parked()),
        format!("connections {}", server.connection_count()),
        format!("storage {}", server.config.storage_kind()),
    ]
}

fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}d {:02}h {:02}m {:02}s", s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60)
}

fn sessions(server: &Server, user: Option<&str>) -> Result<Vec<String>, String> {
    let wanted = user.map(|jid| administration::local_account(&server.config, jid).map(|(host, user)| format!("{user}@{host}"))).transpose()?;
    let mut lines = Vec::new();
    for (bare, list) in server.sessions.all() {
        if wanted.as_ref().is_some_and(|w| *w != bare) {
            continue;
        }
        for r in list {
            let state = if r.available { format!("available, priority {}", r.priority) } else { "unavailable".to_owned() };
            lines.push(format!("{bare}/{}  {state}", r.resource));
        }
    }
    lines.sort();
    Ok(lines)
}

fn kick(server: &Server, jid: &str, reason: Option<&str>) -> Result<Vec<String>, String> {
    let ended = administration::end_sessions_of(server, jid, reason.unwrap_or("ended by an administrator"))?;
    if ended.is_empty() {
        return Err(format!("{jid} has no session"));
    }
    Ok(ended.into_iter().map(|full| format!("ended {full}")).collect())
}

fn announce(server: &Arc<Server>, text: &str, domain: Option<&str>) -> Result<Vec<String>, String> {
    let domains: Vec<&str> = match domain {
        Some(d) => vec![server.config.served_domain(d).ok_or_else(|| format!("{d} is not a served domain"))?],
        None => server.config.domains.iter().map(String::as_str).collect(),
    };
    let sent = administration::announce(server, &domains, None, text);
    Ok(vec![format!("sent to {sent} sessions")])
}

async fn users(server: &Server, domain: Option<&str>) -> Result<Vec<String>, String> {
    let domains: Vec<&str> = match domain {
        Some(d) => vec![server.config.served_domain(d).ok_or_else(|| format!("{d} is not a served domain"))?],
        None => server.config.domains.iter().map(String::as_str).collect(),
    };
    let mut lines = Vec::new();
    for host in domains {
        let names = server.store.list_accounts(host).await.map_err(|e| e.to_string())?;
        lines.extend(names.into_iter().map(|user| format!("{user}@{host}")));
    }
    Ok(lines)
}

async fn user(server: &Server, jid: &str) -> Result<Vec<String>, String> {
    let (host, user) = administration::local_account(&server.config, jid)?;
    let exists = server.store.get_account(UserRef { host: &host, user: &user }).await.map_err(|e| e.to_string())?.is_some();
    if !exists {
        return Err(format!("{user}@{host} has no account"));
    }
    let bare = format!("{user}@{host}");
    let mut lines = vec![format!("account {bare}")];
    lines.extend(server.modules.account_report(server, UserRef { host: &host, user: &user }).await);
    let resources = server.sessions.resources(&bare);
    if resources.is_empty() {
        lines.push("offline".to_owned());
    }
    for r in resources {
        let state = if r.available { format!("available, priority {}", r.priority) } else { "unavailable".to_owned() };
        lines.push(format!("session {bare}/{}  {state}", r.resource));
    }
    Ok(lines)
}

async fn adduser(server: &Server, jid: &str, password: &str) -> Result<Vec<String>, String> {
    let (host, user) = administration::local_account(&server.config, jid)?;
    let created = administration::create_account(server, &host, &user, password).await.map_err(|e| e.to_string())?;
    Ok(vec![format!("created {created}@{host}")])
}

async fn passwd(server: &Server, jid: &str, password: &str) -> Result<Vec<String>, String> {
    let (host, user) = administration::local_account(&server.config, jid)?;
    let ended = administration::change_password(server, &host, &user, password).await.map_err(|e| e.to_string())?;
    Ok(vec![format!("password changed for {user}@{host}; {ended} sessions ended")])
}

async fn deluser(server: &Server, jid: &str) -> Result<Vec<String>, String> {
    let (host, user) = administration::local_account(&server.config, jid)?;
    let ended = administration::delete_account(server, &host, &user).await.map_err(|e| e.to_string())?;
    Ok(vec![format!("deleted {user}@{host}; {ended} sessions ended")])
}

/// Sends `request` to the server listening at `path`: `None` when none listens there.
pub async fn request(path: &Path, request: &Request) -> Option<Result<Response, String>> {
    let stream = match UnixStream::connect(path).await {
        Ok(stream) => stream,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => return None,
        Err(e) => return Some(Err(format!("{}: {e} (the admin commands run as the server's user)", path.display()))),
    };
    let exchange = async move {
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(request).expect("serializable");
        line.push(b'\n');
        write.write_all(&line).await.map_err(|e| e.to_string())?;
        let mut answer = String::new();
        BufReader::new(read).read_line(&mut answer).await.map_err(|e| e.to_string())?;
        if answer.is_empty() {
            return Err("the server closed the control socket without answering (is this the server's user?)".to_owned());
        }
        serde_json::from_str::<Response>(&answer).map_err(|e| format!("unreadable answer: {e}"))
    };
    Some(tokio::time::timeout(ANSWER_TIME, exchange).await.unwrap_or_else(|_| Err("the server did not answer in time".into())))
}
