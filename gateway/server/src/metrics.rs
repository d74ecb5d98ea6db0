//! Prometheus metrics, served at `/metrics` (OpenMetrics text) to the addresses and the
//! bearer token `[metrics]` allows.
//!
//! Every label value comes from a fixed list (a transport, a stanza kind, a limit…) or
//! from the configuration (served domains): never an account, a JID or a peer's address,
//! so the number of series does not grow with users. On the stanza path a metric is an
//! atomic add on a handle looked up when the server starts: no lock, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jabberwock_proto::{StanzaKind, StreamErrorCondition};
use jabberwock_storage::Operation;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// How a client session reaches the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Port 5222, STARTTLS.
    Tcp,
    /// Port 5223, XEP-0368 direct TLS.
    DirectTls,
    WebSocket,
    Bosh,
}

impl Transport {
    const ALL: [Transport; 4] = [Transport::Tcp, Transport::DirectTls, Transport::WebSocket, Transport::Bosh];

    fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::DirectTls => "direct_tls",
            Transport::WebSocket => "websocket",
            Transport::Bosh => "bosh",
        }
    }
}

/// Where a client session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Not yet bound to a resource.
    Negotiating,
    Active,
    /// Connection lost, kept for XEP-0198 resumption.
    Hibernated,
}

impl SessionState {
    const ALL: [SessionState; 3] = [SessionState::Negotiating, SessionState::Active, SessionState::Hibernated];

    fn as_str(self) -> &'static str {
        match self {
            SessionState::Negotiating => "negotiating",
            SessionState::Active => "active",
            SessionState::Hibernated => "hibernated",
        }
    }
}

/// Which side opened a server-to-server connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// How a SASL exchange ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login {
    Ok,
    Failed,
    /// Refused with `temporary-auth-failure` by the failed-login throttle.
    Throttled,
}

/// A limit of the configuration that refused something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `limits.max_connections` / `max_connections_per_ip`.
    Connections,
    ConnectionsPerAddress,
    /// `limits.max_unauthenticated` / `max_unauthenticated_per_ip`.
    Unauthenticated,
    UnauthenticatedPerAddress,
    /// `limits.max_session_output_bytes`: a session's output was full.
    SessionOutput,
    /// `limits.write_timeout_secs`: a client stopped reading.
    WriteTimeout,
    /// `limits.negotiation_timeout_secs`.
    NegotiationTimeout,
    /// `s2s.max_inbound_connections` / `max_inbound_connections_per_ip`.
    S2sInbound,
    S2sInboundPerAddress,
    /// `s2s.max_outbound_connections`.
    S2sOutbound,
    /// `limits.max_resources`.
    Resources,
    /// `limits.offline_quota` / `offline_quota_bytes`.
    OfflineQuota,
    /// `limits.archive_quota`.
    ArchiveQuota,
    /// `limits.max_roster_items`.
    RosterItems,
    /// `limits.max_pending_subscriptions`.
    PendingSubscriptions,
    /// `cluster.max_forward_bytes`: too much waited to be forwarded to another node.
    ClusterForward,
}

impl Limit {
    const ALL: [Limit; 16] = [
        Limit::Connections,
        Limit::ConnectionsPerAddress,
        Limit::Unauthenticated,
        Limit::UnauthenticatedPerAddress,
        Limit::SessionOutput,
        Limit::WriteTimeout,
        Limit::NegotiationTimeout,
        Limit::S2sInbound,
        Limit::S2sInboundPerAddress,
        Limit::S2sOutbound,
        Limit::Resources,
        Limit::OfflineQuota,
        Limit::ArchiveQuota,
        Limit::RosterItems,
        Limit::PendingSubscriptions,
        Limit::ClusterForward,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Limit::Connections => "connections",
            Limit::ConnectionsPerAddress => "connections_per_address",
            Limit::Unauthenticated => "unauthenticated",
            Limit::UnauthenticatedPerAddress => "unauthenticated_per_address",
            Limit::SessionOutput => "session_output",
            Limit::WriteTimeout => "write_timeout",
            Limit::NegotiationTimeout => "negotiation_timeout",
            Limit::S2sInbound => "s2s_inbound",
            Limit::S2sInboundPerAddress => "s2s_inbound_per_address",
            Limit::S2sOutbound => "s2s_outbound",
            Limit::Resources => "resources",
            Limit::OfflineQuota => "offline_quota",
            Limit::ArchiveQuota => "archive_quota",
            Limit::RosterItems => "roster_items",
            Limit::PendingSubscriptions => "pending_subscriptions",
            Limit::ClusterForward => "cluster_forward",
        }
    }
}

const KINDS: [(StanzaKind, &str); 3] = [(StanzaKind::Message, "message"), (StanzaKind::Presence, "presence"), (StanzaKind::Iq, "iq")];

/// Upper bounds of latency buckets, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Upper bounds of archive batch sizes, in items (a batch holds at most 4096).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0];

type Labels = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// The server's metrics: the registry `/metrics` encodes, and a handle for each series.
pub struct Metrics {
    registry: Registry,
    /// By transport, then state.
    sessions: [[Gauge; 3]; 4],
    s2s_connections: [Gauge; 2],
    stanzas_in: [Counter; 3],
    stanzas_out: [Counter; 3],
    message_routing: Histogram,
    logins: [Counter; 3],
    login_duration: Histogram,
    limits: [Counter; Limit::ALL.len()],
    stream_errors: Family<Labels, Counter>,
    bytes_in: [Counter; 4],
    bytes_out: [Counter; 4],
    pub archive_queue: Gauge,
    pub archive_batch: Histogram,
    storage: Arc<StorageMetrics>,
    certificates: Family<[(&'static str, String); 1], Gauge>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let sessions_family = Family::<Labels2, Gauge>::default();
        let sessions = Transport::ALL.map(|t| {
            SessionState::ALL.map(|s| sessions_family.get_or_create(&[("transport", t.as_str()), ("state", s.as_str())]).clone())
        });
        registry.register("jabberwock_sessions", "Client sessions by transport and state", sessions_family);
        let r = &mut registry;
        let s2s_connections = labelled(r, "jabberwock_s2s_connections", "Server-to-server connections by direction", "direction", ["inbound", "outbound"]);
        let kinds = KINDS.map(|(_, k)| k);
        let stanzas_in = labelled(r, "jabberwock_stanzas_received", "Stanzas received from signed-in clients, by kind", "kind", kinds);
        let stanzas_out = labelled(r, "jabberwock_stanzas_sent", "Stanzas written to clients, by kind", "kind", kinds);
        let message_routing = Histogram::new(LATENCY_BUCKETS);
        r.register(
            "jabberwock_message_routing_seconds",
            "From reading a client's message to handing it to every recipient (sessions, offline storage, a server queue)",
            message_routing.clone(),
        );
        let logins = labelled(r, "jabberwock_logins", "SASL exchanges by outcome", "result", ["ok", "failed", "throttled"]);
        let login_duration = Histogram::new(LATENCY_BUCKETS);
        r.register("jabberwock_login_seconds", "From a SASL <auth/> to its outcome", login_duration.clone());
        let limit_names = Limit::ALL.map(Limit::as_str);
        let limits = labelled(r, "jabberwock_limit_hits", "Times a configured limit refused or closed something, by limit", "limit", limit_names);
        let stream_errors = Family::<Labels, Counter>::default();
        r.register("jabberwock_stream_errors", "Client streams closed with a stream error, by condition (RFC 6120 §4.9.3)", stream_errors.clone());
        let transports = Transport::ALL.map(Transport::as_str);
        let bytes_in = labelled(r, "jabberwock_received_bytes", "Bytes received from clients, by transport", "transport", transports);
        let bytes_out = labelled(r, "jabberwock_sent_bytes", "Bytes written to clients, by transport", "transport", transports);
        let archive_queue = Gauge::default();
        registry.register("jabberwock_archive_queue", "Archive items waiting for the writer, as of its last batch", archive_queue.clone());
        let archive_batch = Histogram::new(BATCH_BUCKETS);
        registry.register("jabberwock_archive_batch_items", "Archive items committed per transaction", archive_batch.clone());
        let storage = Arc::new(StorageMetrics::default());
        registry.register_collector(Box::new(storage.clone()));
        registry.register_collector(Box::new(ProcessMetrics));
        let certificates = Family::default();
        registry.register(
            "jabberwock_tls_certificate_expiry_timestamp_seconds",
            "When each served domain's certificate expires (Unix time)",
            certificates.clone(),
        );
        Arc::new(Metrics {
            registry,
            sessions,
            s2s_connections,
            stanzas_in,
            stanzas_out,
            message_routing,
            logins,
            login_duration,
            limits,
            stream_errors,
            bytes_in,
            bytes_out,
            archive_queue,
            archive_batch,
            storage,
            certificates,
        })
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String does not fail");
        out
    }

    pub fn stanza_received(&self, kind: StanzaKind) {
        if let Some(c) = kind_index(kind).map(|i| &self.stanzas_in[i]) {
            c.inc();
        }
    }

    pub fn stanza_sent(&self, kind: StanzaKind) {
        if let Some(c) = kind_index(kind).map(|i| &self.stanzas_out[i]) {
            c.inc();
        }
    }

    pub fn message_routed(&self, took: Duration) {
        self.message_routing.observe(took.as_secs_f64());
    }

    pub fn login(&self, result: Login, took: Duration) {
        self.logins[result as usize].inc();
        self.login_duration.observe(took.as_secs_f64());
    }

    pub fn limit_hit(&self, limit: Limit) {
        self.limits[limit as usize].inc();
    }

    /// The counter of `limit`, for a part of the server that counts without a `Metrics`.
    pub fn limit_counter(&self, limit: Limit) -> Counter {
        self.limits[limit as usize].clone()
    }

    /// A client stream closed with this error. Off the stanza path: the lookup by name
    /// takes the family's lock.
    pub fn stream_error(&self, condition: StreamErrorCondition) {
        self.stream_errors.get_or_create(&[("condition", condition.as_str())]).inc();
    }

    /// The byte counters of one transport, for a connection to keep.
    pub fn traffic(&self, transport: Transport) -> Traffic {
        Traffic { received: self.bytes_in[transport as usize].clone(), sent: self.bytes_out[transport as usize].clone() }
    }

    /// What a connection limiter reports: its refusals under these limits and, for
    /// server-to-server connections, the slots it holds.
    pub fn limiter(&self, total: Limit, per_address: Limit, connections: Option<Direction>) -> LimiterMetrics {
        LimiterMetrics {
            held: connections.map(|d| self.s2s_connections[d as usize].clone()),
            refused_total: self.limits[total as usize].clone(),
            refused_per_address: self.limits[per_address as usize].clone(),
        }
    }

    /// Counts a client session, negotiating, until it changes state or ends.
    pub fn session(&self, transport: Transport) -> SessionGauge {
        SessionGauge { transport, gauge: GaugeGuard::new(self.sessions[transport as usize][SessionState::Negotiating as usize].clone()) }
    }

    /// What the store reports its operations to.
    pub fn storage_observer(&self) -> Arc<dyn jabberwock_storage::Observer> {
        self.storage.clone()
    }

    pub fn certificate_expires(&self, domain: &str, unix_time: i64) {
        self.certificates.get_or_create(&[("domain", domain.to_owned())]).set(unix_time);
    }
}

/// Registers a family with one label whose values are `values`, and returns the handle of
/// each series in the same order: made once, so counting is an atomic add.
fn labelled<M, const N: usize>(registry: &mut Registry, name: &str, help: &str, label: &'static str, values: [&'static str; N]) -> [M; N]
where
    M: prometheus_client::registry::Metric + prometheus_client::metrics::TypedMetric + Clone + Default,
{
    let family = Family::<Labels, M>::default();
    let handles = values.map(|v| family.get_or_create(&[(label, v)]).clone());
    registry.register(name, help, family);
    handles
}

fn kind_index(kind: StanzaKind) -> Option<usize> {
    KINDS.iter().position(|(k, _)| *k == kind)
}

/// Bytes a client connection reads and writes, counted in its transport's series.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    received: Counter,
    sent: Counter,
}

impl Traffic {
    pub fn received(&self, bytes: usize) {
        self.received.inc_by(bytes as u64);
    }

    pub fn sent(&self, bytes: usize) {
        self.sent.inc_by(bytes as u64);
    }
}

/// What a connection limiter counts (see [`crate::admission::Limiter`]).
#[derive(Default)]
pub struct LimiterMetrics {
    pub held: Option<Gauge>,
    pub refused_total: Counter,
    pub refused_per_address: Counter,
}

/// One unit of a gauge, held until dropped.
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(gauge: Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A client session's place in `jabberwock_sessions`: it moves as the session changes
/// state or, when resumed, transport, and leaves when the session ends.
pub struct SessionGauge {
    transport: Transport,
    gauge: GaugeGuard,
}

impl SessionGauge {
    pub fn transport(&self) -> Transport {
        self.transport
    }

    pub fn set(&mut self, metrics: &Metrics, transport: Transport, state: SessionState) {
        self.transport = transport;
        self.gauge = GaugeGuard::new(metrics.sessions[transport as usize][state as usize].clone());
    }
}

/// A histogram whose observations are atomic adds, so the path it measures takes no lock
/// (prometheus-client's own histogram takes a mutex for each observation).
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    /// Upper bounds; one more bucket, `+Inf`, follows them.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative).
    buckets: Box<[AtomicU64]>,
    /// The sum of observations, in millionths.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(HistogramCells { bounds, buckets, sum_micros: AtomicU64::new(0) }))
    }

    pub fn observe(&self, value: f64) {
        let cells = &self.0;
        let bucket = cells.bounds.iter().position(|b| value <= *b).unwrap_or(cells.bounds.len());
        cells.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        cells.sum_micros.fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let cells = &self.0;
        let counts: Vec<u64> = cells.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let bounds = cells.bounds.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(counts.iter().copied()).collect();
        (cells.sum_micros.load(Ordering::Relaxed) as f64 / 1e6, counts.iter().sum(), buckets)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Storage operations by kind: how many, how many failed, how long they took.
#[derive(Debug)]
struct StorageMetrics {
    operations: [Counter; Operation::ALL.len()],
    errors: [Counter; Operation::ALL.len()],
    latency: [Histogram; Operation::ALL.len()],
}

impl Default for StorageMetrics {
    fn default() -> Self {
        StorageMetrics {
            operations: Default::default(),
            errors: Default::default(),
            latency: Operation::ALL.map(|_| Histogram::new(LATENCY_BUCKETS)),
        }
    }
}

impl jabberwock_storage::Observer for StorageMetrics {
    fn completed(&self, op: Operation, took: Duration, ok: bool) {
        let i = op as usize;
        self.operations[i].inc();
        if !ok {
            self.errors[i].inc();
        }
        self.latency[i].observe(took.as_secs_f64());
    }
}

impl Collector for StorageMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let families: [(&str, &str, &[Counter]); 2] = [
            ("jabberwock_storage_operations", "Storage operations by kind", &self.operations),
            ("jabberwock_storage_errors", "Storage operations that failed, by kind", &self.errors),
        ];
        for (name, help, counters) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (op, c) in Operation::ALL.iter().zip(counters) {
                c.encode(family.encode_family(&[("kind", op.as_str())])?)?;
            }
        }
        let mut family =
            encoder.encode_descriptor("jabberwock_storage_seconds", "Storage operation latency by kind", None, MetricType::Histogram)?;
        for (op, h) in Operation::ALL.iter().zip(&self.latency) {
            h.encode(family.encode_family(&[("kind", op.as_str())])?)?;
        }
        Ok(())
    }
}

/// The process's resident memory and open files, read from `/proc` at each scrape.
#[derive(Debug)]
struct ProcessMetrics;

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(rss) = resident_bytes() {
            let g = ConstGauge::new(rss);
            g.encode(encoder.encode_descriptor("process_resident_memory_bytes", "Resident memory size in bytes", None, g.metric_type())?)?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let g = ConstGauge::new(fds.count() as i64);
            g.encode(encoder.encode_descriptor("process_open_fds", "Open file descriptors", None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// Resident pages (the second field of `/proc/self/statm`) in bytes.
fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_each_observation_once_in_its_bucket() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0, 3.0] {
            h.observe(v);
        }
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 5);
        assert!((sum - 9.0).abs() < 1e-9);
        assert_eq!(buckets, vec![(1.0, 2), (2.0, 1), (f64::INFINITY, 2)]);
    }

    #[test]
    fn every_series_exists_from_the_start() {
        let m = Metrics::new();
        let text = m.encode();
        assert!(text.contains("jabberwock_sessions{transport=\"bosh\",state=\"hibernated\"} 0"), "{text}");
        assert!(text.contains("jabberwock_limit_hits_total{limit=\"write_timeout\"} 0"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
