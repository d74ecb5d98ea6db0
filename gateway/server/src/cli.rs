//! The `jabberwock` command: `serve` (the default) and the admin subcommands.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jabberwock_storage::Store;

use crate::accounts;
use crate::config::{Config, LogFormat};
use crate::control::{self, Request};

#[derive(Parser)]
#[command(name = "jabberwock", version, about = "An XMPP server")]
struct Cli {
    /// The configuration file (TOML). Without one, built-in defaults serve `localhost`.
    #[arg(short, long, global = true, env = "JABBERWOCK_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Create an account. The password is read from stdin (one line) unless given.
    Adduser { jid: String, password: Option<String> },
    /// Change an account's password, read from stdin (one line) unless given.
    Passwd { jid: String, password: Option<String> },
    /// Delete an account and all its data.
    Deluser { jid: String },
    /// Check the configuration and explain any error.
    CheckConfig,
    /// The running server: uptime, sessions, storage.
    Status,
    /// The running server's sessions, or one user's.
    Sessions { user: Option<String> },
    /// End a session (user@domain/resource) or all of a user's (user@domain).
    Kick {
        jid: String,
        /// The text of the stream error the client is shown.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send a message to every online user (of one domain with --domain).
    Announce {
        text: String,
        #[arg(long)]
        domain: Option<String>,
    },
    /// Reload the running server's certificates (as SIGHUP does).
    Reload,
    /// List the accounts (of one domain).
    Users { domain: Option<String> },
    /// One account: whether it exists, its sessions.
    User { jid: String },
    /// Certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// The cluster this node belongs to (read from Redis).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Copy everything from one storage URL into another, empty one (such as from
    /// `sqlite://…` to `postgres://…`). Stop the server first.
    MigrateStorage {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
    /// Check what deployments usually get wrong: DNS, certificates, ports, storage, clock,
    /// open-file limit.
    Doctor,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Every node: its address, the time left on its lease, its sessions.
    Status,
}

#[derive(Subcommand)]
enum CertCommand {
    /// Copy each served domain's certificate and key from an ACME client's directory
    /// (certbot's /etc/letsencrypt or its live/) into the data directory; then reload.
    Import { dir: PathBuf },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log.clone()));
    // Colours only for a terminal: a log file or a journal would keep the escapes.
    let logger = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    match config.log_format {
        LogFormat::Text => logger.init(),
        // One JSON object per line, the event's fields at the top level.
        LogFormat::Json => logger.json().flatten_event(true).with_current_span(false).init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::CheckConfig => {
                let problems = crate::tls::check_configured(&config, crate::server::CERTIFICATE_WARNING).map_err(|e| e.to_string())?;
                for problem in &problems {
                    eprintln!("warning: {problem}");
                }
                println!("configuration is valid; serving {}", config.domains.join(", "));
                Ok(())
            }
            Command::Doctor => {
                let findings = crate::doctor::examine(&config).await;
                for finding in &findings {
                    println!("{finding}");
                }
                match findings.iter().filter(|f| f.level == crate::doctor::Level::Error).count() {
                    0 => Ok(()),
                    errors => Err(format!("{errors} problems to fix")),
                }
            }
            Command::Cert(CertCommand::Import { dir }) => {
                let report = crate::tls::import(&config, &dir).map_err(|e| e.to_string())?;
                for line in &report {
                    println!("{line}");
                }
                println!("a running server uses them after a reload (SIGHUP)");
                Ok(())
            }
            Command::Status => on_running_server(&config, Request::Status).await,
            Command::Sessions { user } => on_running_server(&config, Request::Sessions { user }).await,
            Command::Kick { jid, reason } => on_running_server(&config, Request::Kick { jid, reason }).await,
            Command::Announce { text, domain } => on_running_server(&config, Request::Announce { text, domain }).await,
            Command::Reload => on_running_server(&config, Request::Reload).await,
            Command::Users { domain } => match on_server(&config, Request::Users { domain: domain.clone() }).await {
                Some(done) => done,
                None => {
                    let store = Store::open(&config.storage_url()).await.map_err(|e| e.to_string())?;
                    for host in config.domains.iter().filter(|d| domain.as_ref().is_none_or(|want| want.eq_ignore_ascii_case(d))) {
                        for user in store.list_accounts(host).await.map_err(|e| e.to_string())? {
                            println!("{user}@{host}");
                        }
                    }
                    store.close().await;
                    Ok(())
                }
            },
            Command::User { jid } => on_running_server(&config, Request::User { jid }).await,
            // The account commands go through a running server, which also ends the
            // sessions a password change or a deletion concerns; without one they open
            // the database themselves.
            Command::Adduser { jid, password } => {
                let password = password_arg(password)?;
                if let Some(done) = on_server(&config, Request::Adduser { jid: jid.clone(), password: password.clone() }).await {
                    return done;
                }
                let (store, host, user) = open_for(&config, &jid).await?;
                let user = accounts::create(&store, &host, &user, &password, config.auth.scram_iterations)
                    .await
                    .map_err(|e| e.to_string())?;
                store.close().await;
                println!("created {user}@{host}");
                Ok(())
            }
            Command::Passwd { jid, password } => {
                let password = password_arg(password)?;
                if let Some(done) = on_server(&config, Request::Passwd { jid: jid.clone(), password: password.clone() }).await {
                    return done;
                }
                let (store, host, user) = open_for(&config, &jid).await?;
                accounts::set_password(&store, &host, &user, &password, config.auth.scram_iterations)
                    .await
                    .map_err(|e| e.to_string())?;
                store.close().await;
                println!("password changed for {user}@{host}");
                Ok(())
            }
            Command::MigrateStorage { from, to } => migrate_storage(&config, &from, &to).await,
            Command::Cluster(ClusterCommand::Status) => {
                let cluster = config.cluster.as_ref().ok_or("this configuration has no [cluster] table")?;
                for line in crate::cluster::status(cluster).await? {
                    println!("{line}");
                }
                Ok(())
            }
            Command::Deluser { jid } => {
                if let Some(done) = on_server(&config, Request::Deluser { jid: jid.clone() }).await {
                    return done;
                }
                let (store, host, user) = open_for(&config, &jid).await?;
                accounts::delete(&store, &host, &user).await.map_err(|e| e.to_string())?;
                store.close().await;
                println!("deleted {user}@{host}");
                Ok(())
            }
        }
    });
    // Tasks still running (sessions that were ending) are dropped; blocking work such as
    // a name lookup gets a moment, not a veto over exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until SIGINT or SIGTERM; SIGHUP reloads the certificates.
async fn serve(config: Config) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: a signal sent once the ports answer must not meet the default
    // action, which for SIGHUP ends the process.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let running = crate::server::start(config).await.map_err(|e| e.to_string())?;
    // systemd's Type=notify: every listener is bound (a no-op without NOTIFY_SOCKET).
    notify_service_manager(sd_notify::NotifyState::Ready);
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = term.recv() => break,
            _ = hangup.recv() => {
                if let Err(e) = running.server.reload_certificates() {
                    tracing::error!(error = %e, "certificates not reloaded; the ones in use stay");
                }
            }
        }
    }
    notify_service_manager(sd_notify::NotifyState::Stopping);
    running.shutdown().await;
    Ok(())
}

fn notify_service_manager(state: sd_notify::NotifyState) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %e, "could not notify the service manager");
    }
}

/// Copies every account and store from `from` into `to`, which must hold nothing yet: a
/// copy merged into existing data could not be told apart from it.
async fn migrate_storage(config: &Config, from_url: &str, to_url: &str) -> Result<(), String> {
    use jabberwock_storage::{copy_all, ExportCursor, RecordKind};
    if from_url == to_url {
        return Err("--from and --to name the same storage".into());
    }
    // A server writing to either side while rows are copied would leave a copy that
    // differs from the original with nothing to show it.
    let configured = config.storage_url();
    if (from_url == configured || to_url == configured)
        && control::request(&config.control_socket_path(), &Request::Status).await.is_some()
    {
        return Err("the server is running on this storage: stop it first".into());
    }
    let (from_shown, to_shown) = (without_password(from_url), without_password(to_url));
    let (from, to) = (from_shown.as_str(), to_shown.as_str());
    let source = Store::open(from_url).await.map_err(|e| format!("{from}: {e}"))?;
    let target = Store::open(to_url).await.map_err(|e| format!("{to}: {e}"))?;
    for kind in RecordKind::ALL {
        if !target.export(kind, &ExportCursor::default(), 1).await.map_err(|e| e.to_string())?.is_empty() {
            return Err(format!("{to} is not empty: migrate-storage copies into an empty database only"));
        }
    }
    let mut pages = 0u64;
    let counts = copy_all(&source, &target, |c| {
        pages += 1;
        if pages.is_multiple_of(100) {
            eprintln!("copied so far: {} accounts, {} keyval, {} map, {} archive rows", c.accounts, c.keyval, c.map, c.archive);
        }
    })
    .await
    .map_err(|e| format!("copy failed (rows copied so far stay in {to}): {e}"))?;
    source.close().await;
    target.close().await;
    println!(
        "copied {} accounts, {} keyval, {} map and {} archive rows from {from} to {to}",
        counts.accounts, counts.keyval, counts.map, counts.archive
    );
    Ok(())
}

/// A storage URL fit to print: a password in it (`postgres://user:secret@host/db`) is
/// replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***{}", &rest[userinfo.len()..])
        }
        _ => url.to_owned(),
    }
}

/// Runs `request` on the running server and prints its answer; `None` when no server
/// listens on the control socket.
async fn on_server(config: &Config, request: Request) -> Option<Result<(), String>> {
    let answer = control::request(&config.control_socket_path(), &request).await?;
    Some(answer.and_then(|response| {
        if !response.ok {
            return Err(response.lines.join("; "));
        }
        for line in &response.lines {
            println!("{line}");
        }
        Ok(())
    }))
}

/// As [`on_server`], for the commands that need a running server.
async fn on_running_server(config: &Config, request: Request) -> Result<(), String> {
    let path = config.control_socket_path();
    on_server(config, request).await.unwrap_or_else(|| Err(format!("no server is running with control socket {}", path.display())))
}

/// Splits `user@domain` and checks the domain is served.
async fn open_for(config: &Config, jid: &str) -> Result<(Store, String, String), String> {
    let (host, user) = crate::administration::local_account(config, jid)?;
    let store = Store::open(&config.storage_url()).await.map_err(|e| e.to_string())?;
    Ok((store, host, user))
}

fn password_arg(given: Option<String>) -> Result<String, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err("no password given".into());
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    #[test]
    fn printed_urls_hide_passwords() {
        use super::without_password as shown;
        assert_eq!(shown("postgres://jw:s3cr@t@db.example:5432/jw"), "postgres://jw:***@db.example:5432/jw");
        assert_eq!(shown("postgres://jw@db.example/jw"), "postgres://jw@db.example/jw");
        assert_eq!(shown("sqlite:///var/lib/a@b:c/j.db"), "sqlite:///var/lib/a@b:c/j.db");
    }
}
