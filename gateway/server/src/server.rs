//! The running server: shared state, listeners and graceful shutdown.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jabberwock_proto::StreamError;
use jabberwock_storage::{StorageError, Store};
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex, MutexGuard};

use crate::config::Config;
use crate::modules::Modules;
use crate::registry::{Routed, SessionRegistry};
use crate::routing::IqRequests;
use crate::session::Throttle;
use crate::tls::{Tls, TlsError};
use crate::{http, transport};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("federation: {0}")]
    S2s(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("control socket: {0}")]
    Control(#[from] crate::control::ControlError),
    #[error("{0}")]
    Cluster(String),
}

/// How long before a certificate expires the server starts warning about it.
pub const CERTIFICATE_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// How often a running server looks at its certificates' expiry again.
const CERTIFICATE_CHECK_INTERVAL: Duration = Duration::from_secs(12 * 3600);

/// Account locks are striped: enough to keep unrelated accounts apart, with no table to
/// clean up. Code never holds two at once, so two accounts sharing a stripe cannot deadlock.
const ACCOUNT_LOCK_STRIPES: usize = 256;

/// What every session and module shares.
pub struct Server {
    pub config: Config,
    pub store: Store,
    pub sessions: SessionRegistry,
    pub iq_requests: IqRequests,
    pub tls: Tls,
    pub modules: Modules,
    /// Failed logins per address and account; registrations per address.
    pub throttle: Throttle,
    /// Failed logins per address, whatever the account.
    pub address_throttle: Throttle,
    /// What SASL shows for usernames without an account.
    pub decoy: jabberwock_sasl::Decoy,
    pub admission: crate::admission::Admission,
    pub bosh: Arc<crate::transport::bosh::Registry>,
    pub sm: Arc<crate::session::sm::Registry>,
    pub s2s: Arc<crate::s2s::S2s>,
    pub started: Instant,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Every configured listener is bound (readiness).
    listening: std::sync::atomic::AtomicBool,
    account_locks: Vec<Mutex<()>>,
    connections: AtomicUsize,
    shutdown: watch::Sender<bool>,
}

impl Server {
    pub async fn new(config: Config) -> Result<Arc<Server>, StartError> {
        let metrics = crate::metrics::Metrics::new();
        let tls = Tls::load(&config)?;
        let store = Store::open(&config.storage_url()).await?.observed(metrics.storage_observer());
        let sessions = SessionRegistry::default();
        let mut shared_secret = None;
        if let Some(c) = &config.cluster {
            let overflows = metrics.limit_counter(crate::metrics::Limit::ClusterForward);
            let cluster = crate::cluster::Cluster::connect(c, overflows).await.map_err(StartError::Cluster)?;
            // Whichever node a peer asks to verify a dialback key must know the key: without
            // a configured secret, the nodes share one kept in Redis.
            if config.s2s.dialback_secret.is_none() {
                shared_secret = Some(cluster.dialback_secret().await.map_err(StartError::Cluster)?);
            }
            sessions.join(Arc::new(cluster));
        }
        let s2s = Arc::new(crate::s2s::S2s::new(&config.s2s, shared_secret, &metrics).map_err(StartError::S2s)?);
        let window = Duration::from_secs(config.auth.throttle_window_secs);
        let decoy = crate::accounts::decoy(&store, config.auth.scram_iterations).await?;
        Ok(Arc::new(Server {
            modules: Modules::standard(&config, &store, &metrics),
            sessions,
            iq_requests: IqRequests::default(),
            throttle: Throttle::new(config.auth.max_failures, window),
            address_throttle: Throttle::new(config.auth.max_failures_per_address, window),
            decoy,
            admission: crate::admission::Admission::new(&config.limits, &metrics),
            bosh: Arc::new(crate::transport::bosh::Registry::new(&config.http)),
            sm: Arc::default(),
            s2s,
            started: Instant::now(),
            metrics,
            listening: std::sync::atomic::AtomicBool::new(false),
            account_locks: (0..ACCOUNT_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            connections: AtomicUsize::new(0),
            shutdown: watch::channel(false).0,
            config,
            store,
            tls,
        }))
    }

    /// Serializes read-modify-write changes to one account's data (its roster).
    pub async fn lock_account(&self, bare: &str) -> MutexGuard<'_, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bare.hash(&mut h);
        self.account_locks[(h.finish() as usize) % ACCOUNT_LOCK_STRIPES].lock().await
    }

    /// Resolves when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        let mut signal = self.shutdown.subscribe();
        // Asked for once shutdown has begun (a connection whose TLS handshake ended since):
        // `changed()` must still resolve, or the connection outlives the shutdown's wait.
        if *signal.borrow() {
            signal.mark_changed();
        }
        signal
    }

    /// Counts a connection for the lifetime of the returned guard.
    pub fn connection_guard(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Closes the streams of the account's resources that `which` picks, with `error`;
    /// returns those resources.
    pub fn end_sessions(&self, bare: &str, which: impl Fn(&str) -> bool, error: impl Fn() -> StreamError) -> Vec<String> {
        let mut ended = Vec::new();
        for r in self.sessions.resources(bare).into_iter().filter(|r| which(&r.resource)) {
            r.handle.send(Routed::Close(error()));
            ended.push(r.resource);
        }
        ended
    }

    /// Reads the certificates again for new connections (SIGHUP, `jabberwock reload`);
    /// established connections keep theirs. On an error the ones in use stay.
    pub fn reload_certificates(&self) -> Result<(), TlsError> {
        self.tls.reload(&self.config)?;
        tracing::info!("certificates reloaded");
        self.check_certificates();
        Ok(())
    }

    /// Publishes each served domain's certificate expiry as a metric, and logs what an
    /// operator should fix: a certificate that expires within [`CERTIFICATE_WARNING`] or
    /// has expired, or one that does not cover its domain or one of the domain's services.
    pub fn check_certificates(&self) {
        let now = SystemTime::now();
        for (domain, expires) in self.tls.expiries() {
            let unix = expires.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            self.metrics.certificate_expires(&domain, unix);
            match expires.duration_since(now) {
                Err(_) => tracing::error!(%domain, "the TLS certificate has expired: clients and servers will refuse it; renew it and reload"),
                Ok(left) if left < CERTIFICATE_WARNING => {
                    tracing::warn!(%domain, days_left = left.as_secs() / 86_400, "the TLS certificate expires soon; renew it and reload")
                }
                Ok(_) => {}
            }
        }
        let names = self.config.domains.iter().map(|d| {
            let services = self.modules.services_of(d).map(|(service, _)| service);
            (d.as_str(), std::iter::once(d.as_str()).chain(services).collect())
        });
        for problem in self.tls.uncovered_names(names) {
            tracing::warn!("{problem}");
        }
    }

    /// Why the server cannot serve now, if it cannot: a listener not yet bound, or
    /// storage that does not answer.
    pub async fn unready(&self) -> Option<&'static str> {
        if !self.listening.load(Ordering::Relaxed) || *self.shutdown.borrow() {
            return Some("not listening");
        }
        match tokio::time::timeout(Duration::from_secs(2), self.store.ping()).await {
            Ok(Ok(())) => None,
            _ => Some("storage does not answer"),
        }
    }
}

pub struct ConnectionGuard(Arc<Server>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long shutdown waits for the archive and the database to finish what is in flight.
const STORAGE_CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// A started server and the addresses it actually listens on.
pub struct Running {
    pub server: Arc<Server>,
    pub c2s: Vec<SocketAddr>,
    pub c2s_direct_tls: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    pub s2s: Vec<SocketAddr>,
    pub s2s_direct_tls: Vec<SocketAddr>,
    /// The modules' own listeners (external components), in registration order.
    pub modules: Vec<SocketAddr>,
}

#[derive(Clone, Copy, Debug)]
enum Listener {
    C2s,
    C2sDirectTls,
    Http,
    Https,
    S2s,
    S2sDirectTls,
}

/// Binds every listener and starts accepting. Addresses with port 0 get a free port.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let server = Server::new(config).await?;
    // Before anyone can sign in: what sessions parked at the last stop held goes offline
    // (in a cluster, as part of taking over after this node's previous run).
    match server.sessions.cluster() {
        Some(cluster) => crate::cluster::start(&server, cluster).await.map_err(StartError::Cluster)?,
        None => {
            crate::session::journal::recover(&server, None).await;
        }
    }
    crate::control::listen(server.clone()).await?;
    let mut running = Running {
        server: server.clone(),
        c2s: Vec::new(),
        c2s_direct_tls: Vec::new(),
        http: Vec::new(),
        https: Vec::new(),
        s2s: Vec::new(),
        s2s_direct_tls: Vec::new(),
        modules: Vec::new(),
    };
    let c = &server.config;
    let no_listeners = Vec::new();
    let s2s_listeners = |addrs| if c.s2s.enabled { addrs } else { &no_listeners };
    for (addrs, kind) in [
        (&c.listen.c2s, Listener::C2s),
        (&c.listen.c2s_direct_tls, Listener::C2sDirectTls),
        (&c.http.listen, Listener::Http),
        (&c.http.listen_tls, Listener::Https),
        (s2s_listeners(&c.s2s.listen), Listener::S2s),
        (s2s_listeners(&c.s2s.listen_direct_tls), Listener::S2sDirectTls),
    ] {
        for addr in addrs {
            let Some(listener) = bind(*addr, addrs.len() > 1)? else { continue };
            let local = listener.local_addr().map_err(|source| StartError::Listen { addr: *addr, source })?;
            tracing::info!(addr = %local, ?kind, "listening");
            let bound = match kind {
                Listener::C2s => {
                    tokio::spawn(transport::tcp::accept_loop(server.clone(), listener, false));
                    &mut running.c2s
                }
                Listener::C2sDirectTls => {
                    tokio::spawn(transport::tcp::accept_loop(server.clone(), listener, true));
                    &mut running.c2s_direct_tls
                }
                Listener::Http => {
                    tokio::spawn(http::accept_loop(server.clone(), listener, false));
                    &mut running.http
                }
                Listener::Https => {
                    tokio::spawn(http::accept_loop(server.clone(), listener, true));
                    &mut running.https
                }
                Listener::S2s => {
                    tokio::spawn(crate::s2s::inbound::accept_loop(server.clone(), listener, false));
                    &mut running.s2s
                }
                Listener::S2sDirectTls => {
                    tokio::spawn(crate::s2s::inbound::accept_loop(server.clone(), listener, true));
                    &mut running.s2s_direct_tls
                }
            };
            bound.push(local);
        }
    }
    for entry in server.modules.listeners() {
        for addr in &entry.addrs {
            let Some(listener) = bind(*addr, entry.addrs.len() > 1)? else { continue };
            let local = listener.local_addr().map_err(|source| StartError::Listen { addr: *addr, source })?;
            tracing::info!(addr = %local, "listening for a module");
            running.modules.push(local);
            let (server, module) = (server.clone(), entry.listener.clone());
            tokio::spawn(async move {
                let serving = server.clone();
                crate::transport::accept_until_shutdown(&serving, listener, |tcp, peer| {
                    let (server, module) = (server.clone(), module.clone());
                    tokio::spawn(async move { module.serve(server, tcp, peer).await });
                })
                .await;
            });
        }
    }
    server.listening.store(true, Ordering::Relaxed);
    server.check_certificates();
    tokio::spawn(watch_certificates(server.clone()));
    Ok(running)
}

/// Checks the certificates again twice a day, for a server that runs for weeks.
async fn watch_certificates(server: Arc<Server>) {
    let mut twice_a_day = tokio::time::interval(CERTIFICATE_CHECK_INTERVAL);
    twice_a_day.tick().await;
    let mut shutdown = server.shutdown_signal();
    loop {
        tokio::select! {
            _ = twice_a_day.tick() => server.check_certificates(),
            _ = shutdown.changed() => return,
        }
    }
}

/// Binds one address. IPv6 sockets are IPv6-only so `0.0.0.0` and `::` can both be
/// listed; when several addresses are configured, one that cannot be bound (no IPv6 on
/// this host) is skipped with a warning instead of failing the whole server.
fn bind(addr: SocketAddr, optional: bool) -> Result<Option<TcpListener>, StartError> {
    let attempt = || -> std::io::Result<TcpListener> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        TcpListener::from_std(socket.into())
    };
    match attempt() {
        Ok(l) => Ok(Some(l)),
        Err(e) if optional && addr.is_ipv6() => {
            tracing::warn!(%addr, error = %e, "skipping an IPv6 listener");
            Ok(None)
        }
        Err(source) => Err(StartError::Listen { addr, source }),
    }
}

impl Running {
    /// Ends every stream with `system-shutdown` and every parked session, waits (briefly)
    /// for them to finish, which routes what they never delivered to offline storage, and
    /// closes storage so every write is on disk.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.server.shutdown.send_replace(true);
        let deadline = Instant::now() + Duration::from_secs(5);
        let ending = || self.server.connection_count() + self.server.sm.parked();
        while ending() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if ending() > 0 {
            tracing::warn!(
                connections = self.server.connection_count(),
                parked = self.server.sm.parked(),
                "sessions still ending; closing storage anyway (parked sessions' journals are routed at the next start)"
            );
        }
        // Every commit is durable on its own; these only wait for work in flight, and a
        // storage that no longer answers must not keep the process from exiting.
        let closing = async {
            if let Some(cluster) = self.server.sessions.cluster() {
                cluster.leave(&self.server).await;
            }
            self.server.modules.stopping(&self.server).await;
            self.server.store.close().await;
        };
        match tokio::time::timeout(STORAGE_CLOSE_LIMIT, closing).await {
            Ok(()) => tracing::info!("storage closed"),
            Err(_) => tracing::warn!(limit = ?STORAGE_CLOSE_LIMIT, "storage did not close in time; exiting anyway"),
        }
    }
}
