//! `jabberwock doctor`: what operators usually get wrong, checked before clients find out.
//! DNS records of each domain (when DNS answers), certificates, the listening ports,
//! storage, the clock and the open-file limit. Each finding is `ok`, `warning` or `error`;
//! any error makes the command fail.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::control::{self, Request};
use crate::server::CERTIFICATE_WARNING;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warning,
    Error,
}

pub struct Finding {
    pub level: Level,
    pub text: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.level {
            Level::Ok => "ok     ",
            Level::Warning => "warning",
            Level::Error => "error  ",
        };
        write!(f, "{tag} {}", self.text)
    }
}

/// Descriptors the server holds besides its connections (listeners, storage, logs).
const DESCRIPTORS_BESIDES_CONNECTIONS: u64 = 256;

/// The year before which the clock is surely wrong (this code did not exist yet).
const EARLIEST_PLAUSIBLE_YEAR_SECS: u64 = 1_767_225_600; // 2026-01-01

pub async fn examine(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut say = |level, text: String| out.push(Finding { level, text });

    // Certificates.
    match crate::tls::check_configured(config, CERTIFICATE_WARNING) {
        Ok(problems) if problems.is_empty() && !config.tls.is_empty() => say(Level::Ok, "the [tls] certificates load and cover their domains".into()),
        Ok(problems) => problems.into_iter().for_each(|p| say(Level::Warning, p)),
        Err(e) => say(Level::Error, format!("certificate: {e}")),
    }
    for domain in config.domains.iter().filter(|d| !config.tls.contains_key(*d)) {
        say(Level::Warning, format!("{domain} has no [tls] certificate: clients are shown a self-signed development one"));
    }

    // DNS: the records clients and other servers look for.
    match hickory_resolver::TokioResolver::builder_tokio() {
        Ok(builder) => {
            let resolver = builder.build();
            for domain in &config.domains {
                dns(&resolver, domain, config, &mut say).await;
            }
        }
        Err(e) => say(Level::Warning, format!("DNS not checked: no resolver configuration ({e})")),
    }

    // The ports: bound by this server if it runs, else free to bind.
    let running = control::request(&config.control_socket_path(), &Request::Status).await.is_some_and(|r| r.is_ok_and(|r| r.ok));
    let mut addrs: Vec<(SocketAddr, &str)> = Vec::new();
    addrs.extend(config.listen.c2s.iter().map(|a| (*a, "c2s")));
    addrs.extend(config.listen.c2s_direct_tls.iter().map(|a| (*a, "c2s direct TLS")));
    addrs.extend(config.http.listen.iter().map(|a| (*a, "HTTP")));
    addrs.extend(config.http.listen_tls.iter().map(|a| (*a, "HTTPS")));
    if config.s2s.enabled {
        addrs.extend(config.s2s.listen.iter().map(|a| (*a, "s2s")));
        addrs.extend(config.s2s.listen_direct_tls.iter().map(|a| (*a, "s2s direct TLS")));
    }
    for (addr, what) in addrs {
        if addr.port() == 0 {
            say(Level::Ok, format!("{what} listens on any free port of {}", addr.ip()));
        } else if running {
            let reachable = loopback_of(addr);
            match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(reachable)).await {
                Ok(Ok(_)) => say(Level::Ok, format!("{what} port {addr} accepts connections")),
                _ => say(Level::Error, format!("{what} port {addr}: the running server does not accept connections there")),
            }
        } else {
            match std::net::TcpListener::bind(addr) {
                Ok(_) => say(Level::Ok, format!("{what} port {addr} is free to listen on")),
                Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable && addr.is_ipv6() => {
                    say(Level::Warning, format!("{what} port {addr}: no IPv6 on this host; the server skips it"))
                }
                Err(e) => say(Level::Error, format!("{what} port {addr} cannot be listened on: {e}")),
            }
        }
    }

    // Storage.
    let probe = config.data_dir.join(".doctor-write-test");
    match std::fs::create_dir_all(&config.data_dir).and_then(|()| std::fs::write(&probe, b"")) {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            say(Level::Ok, format!("the data directory {} is writable", config.data_dir.display()));
        }
        Err(e) => say(Level::Error, format!("the data directory {} is not writable: {e}", config.data_dir.display())),
    }
    match jabberwock_storage::Store::open(&config.storage_url()).await {
        Ok(store) => {
            match store.list_accounts(&config.domains[0]).await {
                Ok(accounts) => say(Level::Ok, format!("storage ({}) answers; accounts of {}: {}", config.storage_kind(), config.domains[0], accounts.len())),
                Err(e) => say(Level::Error, format!("storage ({}) opens but does not answer: {e}", config.storage_kind())),
            }
            store.close().await;
        }
        Err(e) => say(Level::Error, format!("storage ({}) does not open: {e}", config.storage_kind())),
    }

    // The clock: certificate validity and archive stamps depend on it.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if now < EARLIEST_PLAUSIBLE_YEAR_SECS {
        say(Level::Error, "the system clock is before 2026: certificates will look invalid and archive stamps wrong".into());
    } else {
        say(Level::Ok, "the system clock is plausible".into());
    }

    // Open files: one per connection, and some.
    let wanted = config.limits.max_connections as u64
        + if config.s2s.enabled { (config.s2s.max_inbound_connections + config.s2s.max_outbound_connections) as u64 } else { 0 }
        + DESCRIPTORS_BESIDES_CONNECTIONS;
    match open_file_limit() {
        Some(limit) if limit < wanted => say(
            Level::Warning,
            format!(
                "the open-file limit is {limit}, below the {wanted} the connection limits may need \
                 (limits.max_connections + s2s connections + {DESCRIPTORS_BESIDES_CONNECTIONS}): raise it (LimitNOFILE=) or lower the limits"
            ),
        ),
        Some(limit) => say(Level::Ok, format!("the open-file limit ({limit}) covers the connection limits ({wanted})")),
        None => say(Level::Warning, "the open-file limit could not be read".into()),
    }
    out
}

/// Where a local client reaches a listener bound to `addr` (a wildcard means loopback).
fn loopback_of(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], a.port())),
        SocketAddr::V6(a) if a.ip().is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port())),
        other => other,
    }
}

fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given, which lives for the call.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit.rlim_cur)
}

/// RFC 6120 §3.2 and XEP-0368: the SRV records of a domain, and its addresses.
async fn dns(resolver: &hickory_resolver::TokioResolver, domain: &str, config: &Config, say: &mut impl FnMut(Level, String)) {
    if domain == "localhost" || domain.ends_with(".localhost") {
        say(Level::Ok, format!("{domain} is local: no DNS records are needed"));
        return;
    }
    let lookup = |name: String| async move { tokio::time::timeout(Duration::from_secs(5), resolver.srv_lookup(name)).await };
    let mut services = vec!["_xmpp-client._tcp", "_xmpps-client._tcp"];
    if config.s2s.enabled {
        services.push("_xmpp-server._tcp");
    }
    for service in services {
        match lookup(format!("{service}.{domain}.")).await {
            Err(_) => {
                say(Level::Warning, format!("DNS did not answer for {service}.{domain}; not checked"));
                return;
            }
            Ok(Ok(records)) => {
                let targets: Vec<String> = records.iter().map(|r| format!("{}:{}", r.target(), r.port())).collect();
                say(Level::Ok, format!("{service}.{domain} points to {}", targets.join(", ")));
            }
            Ok(Err(e)) if e.is_no_records_found() => say(
                Level::Warning,
                format!("no {service}.{domain} SRV record: clients and servers fall back to {domain} on the default port"),
            ),
            Ok(Err(e)) => {
                say(Level::Warning, format!("DNS lookup of {service}.{domain} failed ({e}); not checked"));
                return;
            }
        }
    }
    match tokio::time::timeout(Duration::from_secs(5), resolver.lookup_ip(format!("{domain}."))).await {
        Ok(Ok(ips)) => say(Level::Ok, format!("{domain} has addresses {}", ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", "))),
        Ok(Err(e)) => say(Level::Warning, format!("{domain} has no A/AAAA record ({e})")),
        Err(_) => say(Level::Warning, format!("DNS did not answer for {domain}")),
    }
}
