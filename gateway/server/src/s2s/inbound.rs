//! Inbound server streams on 5269 (STARTTLS) and XEP-0368 direct TLS: the peer
//! authenticates with SASL EXTERNAL or dialback, then its stanzas are checked against
//! what it proved and routed like local ones. We also answer dialback verification
//! requests here, as the authoritative server for our domains (XEP-0220 §2.3).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jabberwock_proto::{ns, Element, ReadEvent, Stanza, StanzaKind, StreamError, StreamErrorCondition, StreamHeader};
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::{accept_from_peer, adopt_inbound, allowed, answer_verify, outgoing_frame, retire, verify_with_authority, BoxIo, Outgoing, Pair};
use crate::routing::local_domain;
use crate::server::Server;
use crate::stanzas::random_id;
use crate::stream::Frame;
use crate::transport::rate::RateLimited;
use crate::transport::tcp::{configure_socket, handshake, StreamTransport};
use crate::transport::{accept_until_shutdown, refuse, Transport};

/// What an inbound server connection may send at once before its rate limit applies.
const INBOUND_BURST: u64 = 1 << 20;

pub async fn accept_loop(server: Arc<Server>, listener: TcpListener, direct_tls: bool) {
    accept_until_shutdown(&server, listener, |tcp, peer| {
        tokio::spawn(serve(server.clone(), tcp, peer, direct_tls));
    })
    .await;
}

/// A dialback verification finished: (the pair it authenticates, valid or not).
type Verdict = (Pair, bool);

struct Inbound {
    server: Arc<Server>,
    peer: SocketAddr,
    transport: StreamTransport<BoxIo>,
    encrypted: bool,
    /// The peer's certificate chain, for SASL EXTERNAL.
    peer_chain: Vec<CertificateDer<'static>>,
    /// The current stream's header: the peer's claimed domain and the one it addressed.
    header: Option<StreamHeader>,
    stream_id: String,
    /// (remote, local) pairs the peer proved, with SASL or dialback.
    authenticated: HashSet<Pair>,
    sasl_done: bool,
    verdicts_tx: mpsc::UnboundedSender<Verdict>,
    /// The peer asked for a bidirectional stream (XEP-0288).
    bidi: bool,
    /// With bidi: the pair this stream also carries our stanzas for, its registration
    /// serial, and its queue.
    reverse: Option<(Pair, u64, mpsc::Receiver<Outgoing>)>,
}

/// What to do after an event.
enum Next {
    Continue,
    Close,
    StartTls,
}

async fn serve(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr, direct_tls: bool) {
    let _guard = server.connection_guard();
    let _slot = match server.s2s.inbound_slots.acquire(Some(peer.ip())) {
        Ok(slot) => slot,
        // Direct TLS would need a handshake to say why: the connection just closes.
        Err(_) if direct_tls => return,
        Err(refused) => return refuse(&server, tcp, refused.stream_error("server connections"), ns::SERVER).await,
    };
    configure_socket(&tcp);
    let config = &server.config.s2s;
    let negotiation_deadline = Instant::now() + Duration::from_secs(config.connect_timeout_secs.max(server.config.limits.negotiation_timeout_secs));
    let limits = server.config.stream_limits();
    let tcp: BoxIo = match config.max_inbound_bytes_per_sec {
        0 => Box::new(tcp),
        rate => Box::new(RateLimited::new(tcp, rate, INBOUND_BURST)),
    };
    let (io, encrypted, peer_chain): (BoxIo, bool, Vec<CertificateDer<'static>>) = if direct_tls {
        let Some(tls) = handshake(&server, &server.tls.s2s_direct, tcp, negotiation_deadline, peer).await else { return };
        let chain = peer_chain(&tls);
        (Box::new(tls), true, chain)
    } else {
        (tcp, false, Vec::new())
    };
    let (verdicts_tx, mut verdicts) = mpsc::unbounded_channel();
    let mut inbound = Inbound {
        server: server.clone(),
        peer,
        transport: StreamTransport::with_content_ns(io, limits, ns::SERVER),
        encrypted,
        peer_chain,
        header: None,
        stream_id: random_id(),
        authenticated: HashSet::new(),
        sasl_done: false,
        verdicts_tx,
        bidi: false,
        reverse: None,
    };
    inbound.run(&mut verdicts, negotiation_deadline).await;
    if let Some((pair, serial, mut rx)) = inbound.reverse.take() {
        // Stanzas that were waiting for this stream take a connection of our own.
        for st in retire(&server, &pair, serial, &mut rx) {
            for reply in super::send(&server, st) {
                crate::routing::route(&server, reply).await;
            }
        }
    }
}

fn peer_chain<IO>(tls: &tokio_rustls::server::TlsStream<IO>) -> Vec<CertificateDer<'static>> {
    tls.get_ref().1.peer_certificates().map(|c| c.iter().map(|c| c.clone().into_owned()).collect()).unwrap_or_default()
}

impl Inbound {
    async fn run(&mut self, verdicts: &mut mpsc::UnboundedReceiver<Verdict>, negotiation_deadline: Instant) {
        let idle = Duration::from_secs(self.server.config.s2s.idle_timeout_secs);
        let mut idle_deadline = Instant::now() + idle;
        let mut shutdown = self.server.shutdown_signal();
        let mut out = Vec::new();
        loop {
            let next = tokio::select! {
                ev = self.transport.next_event() => match ev {
                    None => return,
                    Some(Err(e)) => self.fail(e, &mut out),
                    Some(Ok(ev)) => {
                        idle_deadline = Instant::now() + idle;
                        Box::pin(self.on_event(ev, &mut out)).await
                    }
                },
                Some((pair, valid)) = verdicts.recv() => self.on_verdict(pair, valid, &mut out),
                Some(item) = next_outgoing(&mut self.reverse) => {
                    let pair = &self.reverse.as_ref().expect("polled above").0;
                    out.push(outgoing_frame(pair, item));
                    Next::Continue
                }
                _ = sleep_until(negotiation_deadline), if self.authenticated.is_empty() => {
                    self.fail(StreamError::with_text(StreamErrorCondition::ConnectionTimeout, "authentication took too long"), &mut out)
                }
                _ = sleep_until(idle_deadline) => {
                    out.push(Frame::Close);
                    Next::Close
                }
                _ = shutdown.changed() => self.fail(StreamError::new(StreamErrorCondition::SystemShutdown), &mut out),
            };
            if !self.flush(&mut out).await {
                return;
            }
            match next {
                Next::Continue => {}
                Next::Close => {
                    self.transport.close().await;
                    return;
                }
                Next::StartTls => {
                    if !self.start_tls(negotiation_deadline).await {
                        return;
                    }
                }
            }
        }
    }

    /// With bidi, the first pair the peer proves is the one we send to it on this stream.
    fn authenticated(&mut self, pair: Pair) {
        self.server.s2s.connected(&pair.remote);
        if self.bidi && self.reverse.is_none() {
            if let Some((serial, rx)) = adopt_inbound(&self.server, &pair) {
                tracing::info!(local = %pair.local, remote = %pair.remote, "inbound server stream is bidirectional (XEP-0288)");
                self.reverse = Some((pair.clone(), serial, rx));
            }
        }
        self.authenticated.insert(pair);
    }

    async fn flush(&mut self, out: &mut Vec<Frame>) -> bool {
        if out.is_empty() {
            return true;
        }
        let ok = self.transport.write(out).await;
        out.clear();
        ok
    }

    async fn start_tls(&mut self, deadline: Instant) -> bool {
        let limits = self.server.config.stream_limits();
        let placeholder = StreamTransport::with_content_ns(Box::new(tokio::io::empty()) as BoxIo, limits.clone(), ns::SERVER);
        let plain = std::mem::replace(&mut self.transport, placeholder);
        let Some(tls) = handshake(&self.server, &self.server.tls.s2s, plain.io, deadline, self.peer).await else { return false };
        self.peer_chain = peer_chain(&tls);
        self.transport = StreamTransport::with_content_ns(Box::new(tls), limits, ns::SERVER);
        self.encrypted = true;
        self.header = None;
        true
    }

    fn fail(&mut self, err: StreamError, out: &mut Vec<Frame>) -> Next {
        tracing::debug!(peer = %self.peer, %err, "closing server stream");
        if self.header.is_none() {
            out.push(Frame::Header { from: self.server.config.domains[0].clone(), to: None, id: Some(self.stream_id.clone()) });
        }
        out.push(Frame::Error(err));
        out.push(Frame::Close);
        Next::Close
    }

    fn answer_header(&mut self, h: &StreamHeader, out: &mut Vec<Frame>) {
        self.stream_id = random_id();
        let from = h.to.clone().unwrap_or_else(|| self.server.config.domains[0].clone());
        out.push(Frame::Header { from, to: h.from.clone(), id: Some(self.stream_id.clone()) });
        self.header = Some(h.clone());
    }

    async fn on_event(&mut self, ev: ReadEvent, out: &mut Vec<Frame>) -> Next {
        match ev {
            ReadEvent::StreamOpen(h) if self.header.is_none() => self.on_header(h, out),
            ReadEvent::StreamOpen(_) => self.fail(StreamError::with_text(StreamErrorCondition::NotWellFormed, "unexpected stream header"), out),
            ReadEvent::StreamClose => {
                out.push(Frame::Close);
                Next::Close
            }
            ReadEvent::Stanza(st) => self.on_element(st, out).await,
        }
    }

    fn on_header(&mut self, h: StreamHeader, out: &mut Vec<Frame>) -> Next {
        self.answer_header(&h, out);
        if h.content_ns != ns::SERVER {
            return self.fail(StreamError::with_text(StreamErrorCondition::InvalidNamespace, "expected jabber:server"), out);
        }
        let served = h.to.as_deref().and_then(|to| local_domain(&self.server, to));
        if served.is_none() {
            return self.fail(StreamError::new(StreamErrorCondition::HostUnknown), out);
        }
        if let Some(from) = &h.from {
            if !allowed(&self.server.config.s2s, from) {
                return self.fail(StreamError::with_text(StreamErrorCondition::PolicyViolation, "federation with your domain is not allowed"), out);
            }
        }
        if h.version.as_deref().and_then(|v| v.split('.').next()) != Some("1") {
            return self.fail(StreamError::new(StreamErrorCondition::UnsupportedVersion), out);
        }
        out.push(Frame::StreamElement(self.features(&h)));
        Next::Continue
    }

    fn features(&self, h: &StreamHeader) -> Element {
        let mut f = Element::new("features", ns::STREAM);
        if self.sasl_done {
            return f;
        }
        if !self.encrypted {
            let mut starttls = Element::new("starttls", ns::TLS);
            if self.server.config.s2s.require_encryption {
                starttls.push(Element::new("required", ns::TLS));
                f.push(starttls);
                return f;
            }
            f.push(starttls);
        }
        if self.certificate_valid_for(h.from.as_deref()) {
            f.push(Element::new("mechanisms", ns::SASL).with_child(Element::new("mechanism", ns::SASL).with_text("EXTERNAL")));
        }
        if self.encrypted {
            f.push(Element::new("bidi", ns::BIDI_FEATURE));
        }
        f.push(Element::new("dialback", ns::DIALBACK_FEATURE).with_child(Element::new("errors", ns::DIALBACK_FEATURE)));
        f
    }

    fn certificate_valid_for(&self, domain: Option<&str>) -> bool {
        self.encrypted && domain.is_some_and(|d| self.server.s2s.trust.verifies(&self.peer_chain, d))
    }

    /// The peer's claimed domain and the local domain it addressed on this stream.
    fn stream_pair(&self) -> Option<Pair> {
        let h = self.header.as_ref()?;
        let local = local_domain(&self.server, h.to.as_deref()?)?.to_owned();
        Some(Pair { local, remote: h.from.clone()?.to_ascii_lowercase() })
    }

    async fn on_element(&mut self, st: Stanza, out: &mut Vec<Frame>) -> Next {
        if self.header.is_none() {
            return self.fail(StreamError::new(StreamErrorCondition::NotWellFormed), out);
        }
        let plaintext_refused = !self.encrypted && self.server.config.s2s.require_encryption;
        match (st.name(), st.ns()) {
            ("starttls", ns::TLS) if !self.encrypted => {
                out.push(Frame::Element(Element::new("proceed", ns::TLS)));
                Next::StartTls
            }
            _ if plaintext_refused => self.fail(StreamError::with_text(StreamErrorCondition::PolicyViolation, "use STARTTLS first"), out),
            ("auth", ns::SASL) => self.on_sasl_external(&st, out),
            ("bidi", ns::BIDI) => {
                self.bidi = true;
                Next::Continue
            }
            ("result", ns::DIALBACK) => self.on_dialback_result(&st, out),
            ("verify", ns::DIALBACK) => self.on_dialback_verify(&st, out),
            _ if st.kind() == StanzaKind::Other => self.fail(StreamError::new(StreamErrorCondition::UnsupportedStanzaType), out),
            _ => self.on_stanza(st, out).await,
        }
    }

    /// RFC 6120 §6.4 with EXTERNAL: the peer is who its certificate says.
    fn on_sasl_external(&mut self, st: &Stanza, out: &mut Vec<Frame>) -> Next {
        let failure = |condition: &str| Element::new("failure", ns::SASL).with_child(Element::new(condition, ns::SASL));
        if st.attr("mechanism") != Some("EXTERNAL") || self.sasl_done {
            out.push(Frame::Element(failure("invalid-mechanism")));
            return Next::Continue;
        }
        let Some(pair) = self.stream_pair() else {
            out.push(Frame::Element(failure("not-authorized")));
            return Next::Continue;
        };
        let text = st.to_element().map(|e| e.text()).unwrap_or_default();
        let text = text.trim();
        // An authorization identity, if given, must be the stream's `from` (RFC 6120 §6.4.6).
        let authzid = if text.is_empty() || text == "=" {
            Some(pair.remote.clone())
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).ok().and_then(|b| String::from_utf8(b).ok())
        };
        if authzid.as_deref().map(str::to_ascii_lowercase) != Some(pair.remote.clone()) || !self.certificate_valid_for(Some(&pair.remote)) {
            out.push(Frame::Element(failure("not-authorized")));
            return Next::Continue;
        }
        tracing::info!(local = %pair.local, remote = %pair.remote, "inbound server stream authenticated with SASL EXTERNAL");
        self.authenticated(pair);
        self.sasl_done = true;
        self.header = None;
        self.transport.restart();
        out.push(Frame::Element(Element::new("success", ns::SASL)));
        Next::Continue
    }

    /// XEP-0220 §2.2: the peer offers a key for (its domain → ours); we ask its
    /// authoritative server whether the key is genuine.
    fn on_dialback_result(&mut self, st: &Stanza, out: &mut Vec<Frame>) -> Next {
        let (Some(from), Some(to)) = (st.attr("from"), st.attr("to")) else {
            return self.fail(StreamError::new(StreamErrorCondition::ImproperAddressing), out);
        };
        let Some(local) = local_domain(&self.server, to).map(str::to_owned) else {
            return self.fail(StreamError::new(StreamErrorCondition::HostUnknown), out);
        };
        if !allowed(&self.server.config.s2s, from) {
            return self.fail(StreamError::with_text(StreamErrorCondition::PolicyViolation, "federation with your domain is not allowed"), out);
        }
        let key = st.to_element().map(|e| e.text()).unwrap_or_default();
        let pair = Pair { local, remote: from.to_ascii_lowercase() };
        let (server, stream_id, verdicts) = (self.server.clone(), self.stream_id.clone(), self.verdicts_tx.clone());
        tokio::spawn(async move {
            let valid = verify_with_authority(&server, pair.clone(), stream_id, key).await;
            let _ = verdicts.send((pair, valid));
        });
        Next::Continue
    }

    fn on_verdict(&mut self, pair: Pair, valid: bool, out: &mut Vec<Frame>) -> Next {
        let result = Element::new("result", ns::DIALBACK)
            .with_attr("from", pair.local.as_str())
            .with_attr("to", pair.remote.as_str())
            .with_attr("type", if valid { "valid" } else { "invalid" });
        out.push(Frame::Element(result));
        if !valid {
            tracing::info!(local = %pair.local, remote = %pair.remote, peer = %self.peer, "dialback key did not verify");
            return self.fail(StreamError::with_text(StreamErrorCondition::NotAuthorized, "the dialback key did not verify"), out);
        }
        tracing::info!(local = %pair.local, remote = %pair.remote, "inbound server stream authenticated with dialback");
        self.authenticated(pair);
        Next::Continue
    }

    /// A dialback verification: a request to us as the authoritative server, or (on a
    /// bidirectional stream) the answer to one of ours.
    fn on_dialback_verify(&mut self, st: &Stanza, out: &mut Vec<Frame>) -> Next {
        if let Some(kind) = st.attr("type") {
            if let (Some((pair, ..)), Some(id)) = (&self.reverse, st.attr("id")) {
                let valid = kind == "valid" && st.attr("from") == Some(pair.remote.as_str()) && st.attr("to") == Some(pair.local.as_str());
                self.server.s2s.verify_answered(pair, id, valid);
            }
            return Next::Continue;
        }
        match answer_verify(&self.server, st) {
            Ok(answer) => {
                out.push(Frame::Element(answer));
                Next::Continue
            }
            Err(e) => self.fail(e, out),
        }
    }

    /// A stanza from the peer: only for a pair it proved, and only to our domains.
    async fn on_stanza(&mut self, st: Stanza, out: &mut Vec<Frame>) -> Next {
        if self.authenticated.is_empty() {
            return self.fail(StreamError::with_text(StreamErrorCondition::NotAuthorized, "authenticate first"), out);
        }
        let authenticated = &self.authenticated;
        match accept_from_peer(&self.server, st, |pair| authenticated.contains(pair)).await {
            Ok(()) => Next::Continue,
            Err(e) => self.fail(e, out),
        }
    }
}

/// The next item queued for the peer on a bidirectional stream; never, without one.
async fn next_outgoing(reverse: &mut Option<(Pair, u64, mpsc::Receiver<Outgoing>)>) -> Option<Outgoing> {
    match reverse {
        Some((_, _, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}
