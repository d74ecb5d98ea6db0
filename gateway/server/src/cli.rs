//! The `jabberwock` command: `serve` (the default) and the admin subcommands.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jabberwock_storage::Store;

use crate::accounts;
use crate::config::Config;

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
    /// Copy everything from one storage URL into another, empty one (such as from
    /// `sqlite://…` to `postgres://…`). Stop the server first.
    MigrateStorage {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
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
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::CheckConfig => {
                println!("configuration is valid; serving {}", config.domains.join(", "));
                Ok(())
            }
            Command::Adduser { jid, password } => {
                let (store, host, user) = open_for(&config, &jid).await?;
                let password = password_arg(password)?;
                let user = accounts::create(&store, &host, &user, &password, config.auth.scram_iterations)
                    .await
                    .map_err(|e| e.to_string())?;
                store.close().await;
                println!("created {user}@{host}");
                Ok(())
            }
            Command::Passwd { jid, password } => {
                let (store, host, user) = open_for(&config, &jid).await?;
                let password = password_arg(password)?;
                accounts::set_password(&store, &host, &user, &password, config.auth.scram_iterations)
                    .await
                    .map_err(|e| e.to_string())?;
                store.close().await;
                println!("password changed for {user}@{host}");
                Ok(())
            }
            Command::MigrateStorage { from, to } => migrate_storage(&from, &to).await,
            Command::Deluser { jid } => {
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

async fn serve(config: Config) -> Result<(), String> {
    let running = crate::server::start(config).await.map_err(|e| e.to_string())?;
    wait_for_signal().await;
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Copies every account and store from `from` into `to`, which must hold nothing yet: a
/// copy merged into existing data could not be told apart from it.
async fn migrate_storage(from_url: &str, to_url: &str) -> Result<(), String> {
    use jabberwock_storage::{copy_all, ExportCursor, RecordKind};
    if from_url == to_url {
        return Err("--from and --to name the same storage".into());
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

/// Splits `user@domain` and checks the domain is served.
async fn open_for(config: &Config, jid: &str) -> Result<(Store, String, String), String> {
    let bare = jid::BareJid::new(jid).map_err(|e| format!("{jid:?} is not a valid JID: {e}"))?;
    let user = bare.node().ok_or_else(|| format!("{jid:?} has no username (expected user@domain)"))?.to_string();
    let host = config
        .served_domain(bare.domain().as_str())
        .ok_or_else(|| format!("{} is not a served domain (domains = {:?})", bare.domain(), config.domains))?
        .to_owned();
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
