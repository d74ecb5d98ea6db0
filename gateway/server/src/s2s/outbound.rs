//! An outbound server stream (RFC 6120 §4 and §5–6, XEP-0220, XEP-0368): find the peer,
//! connect, STARTTLS (or direct TLS), authenticate with SASL EXTERNAL or dialback, then
//! carry stanzas for one (local, remote) pair until the connection idles out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jabberwock_proto::{ns, Element, ReadEvent, Stanza, StanzaError, StanzaKind, StreamError, StreamErrorCondition, StreamHeader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::{accept_from_peer, answer_verify, bounce, outgoing_frame, peer_config, retire, tls, BoxIo, Outgoing, Pair};
use crate::server::Server;
use crate::stream::Frame;
use crate::transport::tcp::{configure_socket, StreamTransport};
use crate::transport::Transport;

const DEFAULT_PORT: u16 = 5269;

/// One place to try: a host name (or address) and port, and how TLS starts there.
#[derive(Debug)]
struct Target {
    host: String,
    port: u16,
    direct_tls: bool,
}

/// Where negotiation stands.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Our header is sent; waiting for the peer's header and features.
    Features,
    /// `<starttls/>` sent.
    Proceed,
    /// `<auth mechanism='EXTERNAL'/>` sent.
    Sasl,
    /// `<db:result/>` with our key sent.
    Dialback,
    /// Authenticated: stanzas flow.
    Ready,
}

/// Why the connection could not carry the queued stanzas.
enum Failure {
    Unreachable(String),
    TimedOut,
}

struct Connection {
    server: Arc<Server>,
    pair: Pair,
    transport: StreamTransport<BoxIo>,
    phase: Phase,
    encrypted: bool,
    /// The peer's certificate is valid for its domain.
    peer_verified: bool,
    /// XEP-0288: the peer may send us stanzas on this stream too (asked for only when
    /// its certificate proved who it is).
    bidi: bool,
    /// The stream id the peer gave our current stream: part of our dialback key.
    stream_id: Option<String>,
    /// SASL EXTERNAL succeeded: the restarted stream is authenticated.
    sasl_succeeded: bool,
}

pub(super) async fn run(server: Arc<Server>, pair: Pair, serial: u64, mut rx: mpsc::Receiver<Outgoing>) {
    let mut waiting = VecDeque::new();
    let config = &server.config.s2s;
    let deadline = Instant::now() + Duration::from_secs(config.connect_timeout_secs);
    let slot = server.s2s.outbound_slots.acquire(None);
    let mut authenticated = false;
    let result = match slot {
        Err(_) => Err(Failure::Unreachable("too many server connections".into())),
        Ok(_slot) => match tokio::time::timeout_at(deadline, connect(&server, &pair)).await {
            Err(_) => Err(Failure::TimedOut),
            Ok(Err(reason)) => Err(Failure::Unreachable(reason)),
            Ok(Ok((transport, tls))) => {
                let mut conn = Connection {
                    server: server.clone(),
                    pair: pair.clone(),
                    transport,
                    phase: Phase::Features,
                    encrypted: tls.is_some(),
                    peer_verified: tls == Some(true),
                    bidi: false,
                    stream_id: None,
                    sasl_succeeded: false,
                };
                let result = conn.serve(&mut rx, &mut waiting, deadline).await;
                authenticated = conn.phase == Phase::Ready;
                result
            }
        },
    };
    // Nothing more can reach this connection; whatever it still holds goes elsewhere.
    waiting.extend(retire(&server, &pair, serial, &mut rx));
    if authenticated {
        // The peer was there and closed (idle, restarting): what arrived meanwhile goes
        // out on a new connection, which bounces it if the peer is really gone.
        for st in waiting {
            for reply in super::send(&server, st) {
                crate::routing::route(&server, reply).await;
            }
        }
        return;
    }
    let err = match result {
        Ok(()) if waiting.is_empty() => return,
        Ok(()) => StanzaError::remote_server_not_found().with_text("the server closed the connection"),
        Err(Failure::TimedOut) => {
            tracing::info!(local = %pair.local, remote = %pair.remote, "server connection timed out");
            StanzaError::remote_server_timeout()
        }
        Err(Failure::Unreachable(reason)) => {
            tracing::info!(local = %pair.local, remote = %pair.remote, %reason, "server unreachable");
            StanzaError::remote_server_not_found().with_text(reason)
        }
    };
    server.s2s.failed(&pair.remote);
    for st in waiting {
        bounce(&server, st, err.clone());
    }
}

/// Resolves the peer and opens the connection: TCP, then TLS right away for direct TLS.
/// Returns the transport and, when it is encrypted, whether the peer's certificate verified.
async fn connect(server: &Arc<Server>, pair: &Pair) -> Result<(StreamTransport<BoxIo>, Option<bool>), String> {
    let targets = targets(server, &pair.remote).await?;
    let mut last_error = format!("no address for {}", pair.remote);
    for target in targets {
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
            Ok(a) => a.collect(),
            Err(e) => {
                last_error = format!("{}: {e}", target.host);
                continue;
            }
        };
        for addr in addrs {
            let tcp = match TcpStream::connect(addr).await {
                Ok(tcp) => tcp,
                Err(e) => {
                    last_error = format!("{addr}: {e}");
                    continue;
                }
            };
            configure_socket(&tcp);
            let limits = server.config.stream_limits();
            if !target.direct_tls {
                let transport = StreamTransport::with_content_ns(Box::new(tcp) as BoxIo, limits, ns::SERVER);
                return Ok((transport, None));
            }
            match start_tls(server, pair, Box::new(tcp), true).await {
                Ok((io, verified)) => return Ok((StreamTransport::with_content_ns(io, limits, ns::SERVER), Some(verified))),
                Err(e) => last_error = e,
            }
        }
    }
    Err(last_error)
}

/// Where to connect for `remote`: the configured address, else the SRV records
/// (`_xmpps-server` for direct TLS first, then `_xmpp-server`), else the domain on 5269.
async fn targets(server: &Server, remote: &str) -> Result<Vec<Target>, String> {
    let peer = peer_config(&server.config.s2s, remote);
    if let Some(addr) = &peer.connect {
        let (host, port) = addr.rsplit_once(':').expect("validated as host:port");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        return Ok(vec![Target { host: host.to_owned(), port: port.parse().expect("validated"), direct_tls: peer.direct_tls }]);
    }
    let mut found = Vec::new();
    if let Some(resolver) = &server.s2s.resolver {
        for (service, direct_tls) in [("_xmpps-server._tcp", true), ("_xmpp-server._tcp", false)] {
            let Ok(records) = resolver.srv_lookup(format!("{service}.{remote}.")).await else { continue };
            let mut records: Vec<_> = records.iter().cloned().collect();
            records.sort_by_key(|r| (r.priority(), std::cmp::Reverse(r.weight())));
            for r in records {
                let host = r.target().to_utf8();
                // RFC 2782: a target of "." means the service is not offered.
                if host == "." {
                    continue;
                }
                found.push(Target { host: host.trim_end_matches('.').to_owned(), port: r.port(), direct_tls });
            }
        }
    }
    if found.is_empty() {
        found.push(Target { host: remote.to_owned(), port: DEFAULT_PORT, direct_tls: false });
    }
    Ok(found)
}

/// The TLS handshake as a client of `pair.remote`; also says whether the peer's
/// certificate verified. One that does not is accepted only for peers configured
/// `insecure`, which then authenticate only through dialback.
async fn start_tls(server: &Server, pair: &Pair, io: BoxIo, direct_tls: bool) -> Result<(BoxIo, bool), String> {
    let connector = tls::connector(&server.tls, &pair.local, direct_tls);
    let name = rustls::pki_types::ServerName::try_from(pair.remote.clone()).map_err(|e| e.to_string())?;
    let stream = connector.connect(name, io).await.map_err(|e| format!("TLS: {e}"))?;
    let verdict = server.s2s.trust.check(stream.get_ref().1.peer_certificates().unwrap_or_default(), &pair.remote);
    if let Err(why) = &verdict {
        if !peer_config(&server.config.s2s, &pair.remote).insecure {
            return Err(format!("the certificate of {} is not valid for it: {why}", pair.remote));
        }
        tracing::debug!(remote = %pair.remote, %why, "accepting an unverified certificate from an insecure peer");
    }
    Ok((Box::new(stream), verdict.is_ok()))
}

impl Connection {
    fn header(&self) -> Frame {
        Frame::Header { from: self.pair.local.clone(), to: Some(self.pair.remote.clone()), id: None }
    }

    async fn write(&mut self, frames: &[Frame]) -> Result<(), Failure> {
        if self.transport.write(frames).await {
            Ok(())
        } else {
            Err(Failure::Unreachable("the connection was lost".into()))
        }
    }

    /// Negotiates, then carries stanzas until the connection idles out, the peer closes
    /// it, or the server shuts down. Stanzas that arrive before authentication wait in
    /// `waiting`; verification requests go out as soon as the stream is encrypted.
    async fn serve(
        &mut self,
        rx: &mut mpsc::Receiver<Outgoing>,
        waiting: &mut VecDeque<Stanza>,
        negotiation_deadline: Instant,
    ) -> Result<(), Failure> {
        let server = self.server.clone();
        let config = &server.config.s2s;
        let idle = Duration::from_secs(config.idle_timeout_secs);
        let max_queue = config.max_queue;
        let mut shutdown = self.server.shutdown_signal();
        let mut verifies: Vec<Outgoing> = Vec::new();
        let mut idle_deadline = Instant::now() + idle;
        self.write(&[self.header()]).await?;
        loop {
            let ready = self.phase == Phase::Ready;
            tokio::select! {
                ev = self.transport.next_event() => {
                    let ev = ev.ok_or_else(|| Failure::Unreachable("the server closed the connection".into()))?;
                    let ev = match ev {
                        Ok(ev) => ev,
                        Err(e) => {
                            self.fail(e).await;
                            return Err(Failure::Unreachable("the server sent malformed XML".into()));
                        }
                    };
                    if self.on_event(ev).await? {
                        return Ok(());
                    }
                    if self.phase == Phase::Ready {
                        let frames: Vec<Frame> = waiting.drain(..).map(Frame::Stanza).collect();
                        self.write(&frames).await?;
                        idle_deadline = Instant::now() + idle;
                    }
                }
                item = rx.recv() => {
                    let Some(item) = item else { return Ok(()) };
                    match item {
                        Outgoing::Stanza(st) if ready => {
                            self.write(&[Frame::Stanza(st)]).await?;
                            idle_deadline = Instant::now() + idle;
                        }
                        Outgoing::Stanza(st) if waiting.len() >= max_queue => {
                            bounce(&self.server, st, StanzaError::resource_constraint());
                        }
                        Outgoing::Stanza(st) => waiting.push_back(st),
                        verify @ Outgoing::Verify { .. } => verifies.push(verify),
                    }
                }
                _ = sleep_until(negotiation_deadline), if !ready => return Err(Failure::TimedOut),
                _ = sleep_until(idle_deadline), if ready && waiting.is_empty() => {
                    self.close().await;
                    return Ok(());
                }
                _ = shutdown.changed() => {
                    self.close().await;
                    return Ok(());
                }
            }
            // Verification requests may go out once the stream is encrypted (or when the
            // operator allows plaintext), authenticated or not (XEP-0220 §2.3).
            if self.stream_id.is_some() && (self.encrypted || !config.require_encryption) && !verifies.is_empty() {
                let frames: Vec<Frame> = verifies.drain(..).map(|item| outgoing_frame(&self.pair, item)).collect();
                self.write(&frames).await?;
            }
        }
    }

    /// Handles what the peer sent; true when the peer closed the stream cleanly.
    async fn on_event(&mut self, ev: ReadEvent) -> Result<bool, Failure> {
        let st = match ev {
            ReadEvent::StreamOpen(h) => {
                self.on_header(h).await?;
                return Ok(false);
            }
            ReadEvent::StreamClose => {
                self.close().await;
                return Ok(true);
            }
            ReadEvent::Stanza(st) => st,
        };
        match (st.name(), st.ns()) {
            ("features", ns::STREAM) => self.on_features(&st).await?,
            ("proceed", ns::TLS) if self.phase == Phase::Proceed => self.on_proceed().await?,
            ("success", ns::SASL) if self.phase == Phase::Sasl => {
                // RFC 6120 §6.4.6: a new stream over the authenticated connection.
                self.sasl_succeeded = true;
                self.transport.restart();
                self.phase = Phase::Features;
                self.write(&[self.header()]).await?;
            }
            // The stream goes on after a SASL failure; dialback is the other way in.
            ("failure", ns::SASL) if self.phase == Phase::Sasl => self.start_dialback().await?,
            ("result", ns::DIALBACK) if self.phase == Phase::Dialback => match st.attr("type") {
                Some("valid") => self.authenticated("dialback"),
                _ => return Err(Failure::Unreachable(format!("{} refused our dialback key", self.pair.remote))),
            },
            // A request to us as the authoritative server, which a bidirectional stream
            // may carry.
            ("verify", ns::DIALBACK) if st.attr("type").is_none() && self.bidi => match answer_verify(&self.server, &st) {
                Ok(answer) => self.write(&[Frame::Element(answer)]).await?,
                Err(e) => {
                    self.fail(e).await;
                    return Err(Failure::Unreachable("a malformed dialback request from the server".into()));
                }
            },
            ("verify", ns::DIALBACK) => {
                let valid = st.attr("type") == Some("valid")
                    && st.attr("from") == Some(self.pair.remote.as_str())
                    && st.attr("to") == Some(self.pair.local.as_str());
                if let Some(id) = st.attr("id") {
                    self.server.s2s.verify_answered(&self.pair, id, valid);
                }
            }
            _ if self.bidi && self.phase == Phase::Ready && st.kind() != StanzaKind::Other => {
                let pair = self.pair.clone();
                if let Err(e) = accept_from_peer(&self.server, st, |p| *p == pair).await {
                    self.fail(e).await;
                    return Err(Failure::Unreachable("the server sent a stanza it may not".into()));
                }
            }
            ("error", ns::STREAM) => {
                let text = st.to_element().ok().and_then(|e| e.children().next().map(|c| c.name().to_owned())).unwrap_or_default();
                return Err(Failure::Unreachable(format!("the server sent a stream error: {text}")));
            }
            _ => {
                // A server that sends something else on our outbound stream is broken.
                self.fail(StreamError::new(StreamErrorCondition::UnsupportedStanzaType)).await;
                return Err(Failure::Unreachable("unexpected element from the server".into()));
            }
        }
        Ok(false)
    }

    async fn on_header(&mut self, h: StreamHeader) -> Result<(), Failure> {
        if h.content_ns != ns::SERVER {
            self.fail(StreamError::new(StreamErrorCondition::InvalidNamespace)).await;
            return Err(Failure::Unreachable("the server answered with a wrong namespace".into()));
        }
        if h.from.as_deref().is_some_and(|f| !f.eq_ignore_ascii_case(&self.pair.remote)) {
            self.fail(StreamError::new(StreamErrorCondition::InvalidFrom)).await;
            return Err(Failure::Unreachable("the server answered for another domain".into()));
        }
        self.stream_id = h.id;
        Ok(())
    }

    async fn on_features(&mut self, st: &Stanza) -> Result<(), Failure> {
        let features = st.to_element().map_err(|_| Failure::Unreachable("malformed features".into()))?;
        let require_encryption = self.server.config.s2s.require_encryption;
        if !self.encrypted && features.child("starttls", ns::TLS).is_some() {
            self.write(&[Frame::Element(Element::new("starttls", ns::TLS))]).await?;
            self.phase = Phase::Proceed;
            return Ok(());
        }
        if !self.encrypted && require_encryption {
            self.fail(StreamError::with_text(StreamErrorCondition::PolicyViolation, "encryption is required")).await;
            return Err(Failure::Unreachable(format!("{} does not offer TLS", self.pair.remote)));
        }
        if self.sasl_succeeded {
            // The restarted stream after SASL success: nothing more to negotiate.
            self.authenticated("SASL EXTERNAL");
            return Ok(());
        }
        if self.peer_verified && !self.bidi && features.child("bidi", ns::BIDI_FEATURE).is_some() {
            self.write(&[Frame::Element(Element::new("bidi", ns::BIDI))]).await?;
            self.bidi = true;
        }
        let external = features
            .child("mechanisms", ns::SASL)
            .is_some_and(|m| m.children().any(|c| c.name() == "mechanism" && c.text().trim() == "EXTERNAL"));
        if external && self.encrypted {
            let authzid = base64::engine::general_purpose::STANDARD.encode(&self.pair.local);
            let auth = Element::new("auth", ns::SASL).with_attr("mechanism", "EXTERNAL").with_text(authzid);
            self.write(&[Frame::Element(auth)]).await?;
            self.phase = Phase::Sasl;
            return Ok(());
        }
        self.start_dialback().await
    }

    /// XEP-0220 §2.1: our key for this stream, which the peer checks with us.
    async fn start_dialback(&mut self) -> Result<(), Failure> {
        let Some(id) = self.stream_id.clone() else {
            return Err(Failure::Unreachable("the server gave no stream id".into()));
        };
        let key = self.server.s2s.key(&self.pair.remote, &self.pair.local, &id);
        let result = Element::new("result", ns::DIALBACK)
            .with_attr("from", self.pair.local.as_str())
            .with_attr("to", self.pair.remote.as_str())
            .with_text(key);
        self.write(&[Frame::Element(result)]).await?;
        self.phase = Phase::Dialback;
        Ok(())
    }

    fn authenticated(&mut self, how: &str) {
        tracing::info!(local = %self.pair.local, remote = %self.pair.remote, how, "outbound server stream authenticated");
        self.phase = Phase::Ready;
        self.server.s2s.connected(&self.pair.remote);
    }

    async fn on_proceed(&mut self) -> Result<(), Failure> {
        let placeholder = StreamTransport::with_content_ns(Box::new(tokio::io::empty()) as BoxIo, self.server.config.stream_limits(), ns::SERVER);
        let plain = std::mem::replace(&mut self.transport, placeholder);
        let (io, verified) = start_tls(&self.server, &self.pair, plain.io, false).await.map_err(Failure::Unreachable)?;
        self.transport = StreamTransport::with_content_ns(io, self.server.config.stream_limits(), ns::SERVER);
        self.encrypted = true;
        self.peer_verified = verified;
        self.stream_id = None;
        self.phase = Phase::Features;
        self.write(&[self.header()]).await
    }

    async fn fail(&mut self, err: StreamError) {
        let _ = self.transport.write(&[Frame::Error(err), Frame::Close]).await;
        self.transport.close().await;
    }

    async fn close(&mut self) {
        let _ = self.transport.write(&[Frame::Close]).await;
        self.transport.close().await;
    }
}
