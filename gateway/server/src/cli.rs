//! The `jabberwock` command: `serve` (the default) and the admin subcommands.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jabberwock_storage::Store;

use crate::accounts;
use crate::config::{Config, LogFormat};

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

/// Serves until SIGINT or SIGTERM; SIGHUP reloads the certificates.
async fn serve(config: Config) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: a signal sent once the ports answer must not meet the default
    // action, which for SIGHUP ends the process.
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hangup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    let running = crate::server::start(config).await.map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = term.recv() => break,
            _ = hangup.recv() => running.server.reload_certificates(),
        }
    }
    running.shutdown().await;
    Ok(())
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
