//! The one client session state machine, shared by every transport:
//! stream header → (STARTTLS) → SASL → restart → bind → active.
//!
//! A transport turns bytes into [`ReadEvent`]s and calls [`Session::on_event`]; the session
//! answers with [`Frame`]s and a [`Flow`]. Stanzas from other sessions arrive through the
//! mailbox and go to [`Session::on_routed`].

mod auth;
mod bind;
mod csi;
pub mod fast;
pub(crate) mod journal;
mod sasl2;
pub mod sm;

use std::net::IpAddr;
use std::sync::Arc;

use jabberwock_proto::{ns, Element, ReadEvent, Stanza, StanzaKind, StreamError, StreamErrorCondition, StreamHeader};
use jabberwock_sasl::ChannelBinding;

use crate::im;
use crate::metrics::{Limit, SessionGauge, SessionState, Transport};
use crate::modules::{StreamStage, Unauthenticated};
use crate::registry::{mailbox, next_conn_id, output_cost, ConnId, Mailbox, Receipt, Routed, SessionHandle};
use crate::server::Server;
use crate::stanzas::random_id;
use crate::stream::{Flow, Frame};

pub use auth::{address_key, Throttle};

/// What the transport knows about the connection's security.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// The connection is encrypted (TLS, or HTTPS for web transports).
    pub encrypted: bool,
    /// STARTTLS can still be negotiated, and is then required before authentication.
    pub starttls_available: bool,
    pub channel_bindings: Vec<ChannelBinding>,
}

enum Stage {
    /// Waiting for the client's stream header.
    AwaitHeader,
    /// Features sent; waiting for STARTTLS, SASL, or bind.
    Negotiating,
    /// A SASL exchange in progress.
    Sasl(Box<auth::Exchange>),
    /// Resource bound: stanzas flow.
    Active,
}

/// The state of a session with a bound resource.
pub struct Bound {
    pub jid: jid::FullJid,
    /// `user@domain`, normalized.
    pub bare: String,
    pub user: String,
    pub domain: String,
    pub resource: String,
    /// Has broadcast available presence and not yet unavailable. (The stanza itself is
    /// kept once, in the router, for probes.)
    pub available: bool,
    /// Has sent initial presence at least once (offline messages are then flushed).
    pub initial_presence_sent: bool,
    /// Entities that got directed presence and must get unavailable when we go offline.
    pub directed: std::collections::BTreeSet<String>,
}

pub struct Session {
    pub(crate) server: Arc<Server>,
    pub(crate) conn: ConnId,
    pub(crate) handle: SessionHandle,
    pub(crate) peer_ip: IpAddr,
    pub(crate) security: Security,
    stage: Stage,
    header_sent: bool,
    stream_id: String,
    /// The served domain the client addressed.
    pub(crate) domain: Option<String>,
    /// The authenticated localpart.
    pub(crate) user: Option<String>,
    pub(crate) auth_failures: u32,
    pub(crate) bound: Option<Bound>,
    /// XEP-0198 state once the client enabled it.
    pub(crate) sm: Option<sm::StreamManagement>,
    /// What a SASL2 `<authenticate/>` in progress asked for besides authentication.
    sasl2: Option<Box<sasl2::Request>>,
    /// A `<resume/>` the transport has yet to carry out.
    pub(crate) pending_resume: Option<(String, u32)>,
    /// The SASL2 success waiting for the outcome of an inline `<resume/>`.
    resuming: Option<Box<sasl2::PendingSuccess>>,
    csi: csi::Csi,
    /// Bytes of the stanzas taken from the mailbox and not yet written: still counted
    /// against the output bound until [`Session::settle_output`].
    taken: usize,
    /// Stanzas from storage on their way to the client, oldest first.
    stored: std::collections::VecDeque<InFlight>,
    /// The session's place in the sessions metric.
    pub(crate) gauge: SessionGauge,
}

/// A stanza from storage handed to the client and not yet known to have reached it.
struct InFlight {
    /// How many stanzas, it included, must still reach the client before it has: its
    /// place in the XEP-0198 queue, or in the output not yet written.
    ahead: usize,
    receipt: Receipt,
}

impl Session {
    /// A new session and the receiving end of its mailbox, which the transport polls.
    pub fn new(server: Arc<Server>, transport: Transport, peer_ip: IpAddr, security: Security) -> (Session, Mailbox) {
        let conn = next_conn_id();
        let overflows = server.metrics.limit_counter(Limit::SessionOutput);
        let (handle, rx) = mailbox(conn, server.config.limits.max_session_output_bytes, overflows);
        let gauge = server.metrics.session(transport);
        let session = Session {
            server,
            conn,
            handle,
            peer_ip,
            security,
            stage: Stage::AwaitHeader,
            header_sent: false,
            stream_id: String::new(),
            domain: None,
            user: None,
            auth_failures: 0,
            bound: None,
            sm: None,
            sasl2: None,
            pending_resume: None,
            resuming: None,
            csi: csi::Csi::default(),
            taken: 0,
            stored: Default::default(),
            gauge,
        };
        (session, rx)
    }

    pub fn is_bound(&self) -> bool {
        self.bound.is_some()
    }

    /// TLS is now up (after `<proceed/>`): a new stream begins.
    pub fn tls_established(&mut self, channel_bindings: Vec<ChannelBinding>) {
        self.security = Security { encrypted: true, starttls_available: false, channel_bindings };
        self.stage = Stage::AwaitHeader;
        self.header_sent = false;
    }

    pub async fn on_event(&mut self, ev: ReadEvent, out: &mut Vec<Frame>) -> Flow {
        match (ev, &self.stage) {
            (ReadEvent::StreamOpen(h), Stage::AwaitHeader) => self.on_header(h, out),
            (ReadEvent::StreamOpen(_), _) => {
                self.fail(StreamError::with_text(StreamErrorCondition::NotWellFormed, "unexpected stream header"), out)
            }
            (ReadEvent::StreamClose, _) => {
                self.ensure_header(out);
                out.push(Frame::Close);
                Flow::Close
            }
            (ReadEvent::Stanza(st), _) => self.on_stanza(st, out).await,
        }
    }

    /// A stream error detected by the transport or the reader.
    pub fn on_stream_error(&mut self, err: StreamError, out: &mut Vec<Frame>) -> Flow {
        self.fail(err, out)
    }

    /// The negotiation deadline passed before the resource was bound.
    pub fn on_negotiation_timeout(&mut self, out: &mut Vec<Frame>) -> Flow {
        self.server.metrics.limit_hit(Limit::NegotiationTimeout);
        self.fail(StreamError::with_text(StreamErrorCondition::ConnectionTimeout, "negotiation took too long"), out)
    }

    pub async fn on_routed(&mut self, r: Routed, out: &mut Vec<Frame>) -> Flow {
        match r {
            Routed::Stanza(st) => {
                self.taken += output_cost(&st);
                if self.bound.is_some() {
                    if self.csi.is_inactive() && st.kind() == StanzaKind::Message {
                        self.unseen(&st).await;
                    }
                    self.csi.deliver(*st, out);
                }
                Flow::Continue
            }
            Routed::Stored(stored) => {
                let (st, receipt) = *stored;
                self.taken += output_cost(&st);
                if self.bound.is_some() {
                    self.send_stored(st, receipt, out);
                }
                Flow::Continue
            }
            Routed::Close(err) => self.fail(err, out),
            Routed::Detach => Flow::Detach,
        }
    }

    /// Tells the modules of a message the client may not see now (see
    /// [`crate::modules::SessionHooks::unseen`]).
    pub(crate) async fn unseen(&self, st: &Stanza) {
        let Some(b) = &self.bound else { return };
        for h in &self.server.modules.session_hooks {
            h.unseen(&self.server, &b.jid, st).await;
        }
    }

    /// Sends a stanza from storage, and follows it until the client has it. It goes past
    /// client state indication, which could hold it back and reorder it.
    pub(crate) fn send_stored(&mut self, st: Stanza, receipt: Receipt, out: &mut Vec<Frame>) {
        out.push(Frame::Stanza(st));
        let unacked = self.sm.as_ref().map_or(0, |sm| sm.unacked_len());
        let ahead = unacked + out.iter().filter(|f| matches!(f, Frame::Stanza(_))).count();
        self.stored.push_back(InFlight { ahead, receipt });
    }

    /// `n` more stanzas reached the client: acknowledged, or written without stream
    /// management. Stored ones among them are confirmed to their store.
    pub(crate) fn stanzas_delivered(&mut self, n: usize) {
        for s in &mut self.stored {
            s.ahead = s.ahead.saturating_sub(n);
        }
        while self.stored.front().is_some_and(|s| s.ahead == 0) {
            self.stored.pop_front().expect("checked").receipt.delivered();
        }
    }

    /// `frames` were written. Without stream management, that is as far as the server
    /// can follow them.
    pub fn written(&mut self, frames: &[Frame]) {
        for f in frames {
            if let Frame::Stanza(st) = f {
                self.server.metrics.stanza_sent(st.kind());
            }
        }
        if self.sm.is_none() && !self.stored.is_empty() {
            self.stanzas_delivered(frames.iter().filter(|f| matches!(f, Frame::Stanza(_))).count());
        }
    }

    /// What the mailbox brought has been written (or queued for acknowledgement): its
    /// bytes no longer count, except those of stanzas client state indication holds back.
    pub fn settle_output(&mut self) {
        if self.taken == 0 {
            return;
        }
        let held = self.csi.held_cost();
        self.handle.budget.release(self.taken.saturating_sub(held));
        self.taken = held;
    }

    /// The connection is gone, whatever the reason: leave the network cleanly. What the
    /// client never got, unacknowledged or still in the mailbox, is routed again.
    pub async fn closed(&mut self, rx: &mut Mailbox) {
        if let Some(sm) = &self.sm {
            self.server.sm.ended(&sm.id);
        }
        if let Some(b) = &self.bound {
            // Unbound first, so nothing comes back here; rerouted (the oldest first) before
            // contacts see the session go, so what it never got is elsewhere by then.
            self.server.sessions.unbind(&b.bare, &b.resource, self.conn).await;
            let mut undelivered = self.take_undelivered();
            while let Ok(routed) = rx.try_recv() {
                if let Routed::Stanza(st) = routed {
                    undelivered.push(*st);
                }
            }
            self.reroute(undelivered).await;
            im::presence::go_offline(self).await;
            let b = self.bound.as_ref().expect("checked above");
            for h in &self.server.modules.session_hooks {
                h.ended(&self.server, &b.jid, self.conn).await;
            }
            tracing::info!(jid = %b.jid, conn = self.conn, "session ended");
            self.bound = None;
        }
    }

    /// Empties the XEP-0198 queue, oldest first, to route again; except stanzas from
    /// storage, which stay there for the next session (their receipts are dropped).
    pub(crate) fn take_undelivered(&mut self) -> Vec<Stanza> {
        let mut unacked = self.sm.as_mut().map(|sm| sm.take_unacked()).unwrap_or_default();
        for s in std::mem::take(&mut self.stored).into_iter().rev() {
            if s.ahead > 0 && s.ahead <= unacked.len() {
                unacked.remove(s.ahead - 1);
            }
        }
        unacked
    }

    fn ensure_header(&mut self, out: &mut Vec<Frame>) {
        if !self.header_sent {
            self.header_sent = true;
            let from = self.domain.clone().unwrap_or_else(|| self.server.config.domains[0].clone());
            self.stream_id = random_id();
            out.push(Frame::Header { from, to: None, id: Some(self.stream_id.clone()) });
        }
    }

    /// Sends a stream error (after our header, if none was sent yet) and closes.
    pub(crate) fn fail(&mut self, err: StreamError, out: &mut Vec<Frame>) -> Flow {
        tracing::debug!(conn = self.conn, %err, "closing stream");
        self.server.metrics.stream_error(err.condition);
        self.ensure_header(out);
        out.push(Frame::Error(err));
        out.push(Frame::Close);
        Flow::Close
    }

    fn on_header(&mut self, h: StreamHeader, out: &mut Vec<Frame>) -> Flow {
        let requested = h.to.as_deref().and_then(|to| self.server.config.served_domain(to)).map(str::to_owned);
        // Reply from the domain the client asked for, even when refusing it.
        self.domain = self.domain.clone().or(requested.clone());
        self.header_sent = true;
        self.stream_id = random_id();
        out.push(Frame::Header {
            from: self.domain.clone().unwrap_or_else(|| self.server.config.domains[0].clone()),
            to: h.from.clone(),
            id: Some(self.stream_id.clone()),
        });
        if h.content_ns != ns::CLIENT {
            return self.fail(StreamError::with_text(StreamErrorCondition::InvalidNamespace, "expected jabber:client"), out);
        }
        match (&requested, &self.domain) {
            (None, _) => return self.fail(StreamError::new(StreamErrorCondition::HostUnknown), out),
            (Some(r), Some(d)) if r != d => {
                // A restarted stream must stay on the domain it authenticated for.
                return self.fail(StreamError::new(StreamErrorCondition::HostUnknown), out);
            }
            _ => {}
        }
        if h.version.as_deref().and_then(|v| v.split('.').next()) != Some("1") {
            return self.fail(StreamError::new(StreamErrorCondition::UnsupportedVersion), out);
        }
        out.push(Frame::StreamElement(self.features()));
        self.stage = Stage::Negotiating;
        Flow::Continue
    }

    pub(super) fn features(&self) -> Element {
        let mut f = Element::new("features", ns::STREAM);
        if self.security.starttls_available {
            f.push(Element::new("starttls", ns::TLS).with_child(Element::new("required", ns::TLS)));
        } else if self.user.is_none() {
            f.push(auth::mechanisms_feature(self));
            if let Some(sasl2) = sasl2::feature(self) {
                f.push(sasl2);
            }
            if let Some(cb) = auth::channel_binding_feature(self) {
                f.push(cb);
            }
            let stage = StreamStage { authenticated: false, password_safe: auth::may_authenticate(self) };
            for feature in self.server.modules.stream_features(&self.server, stage) {
                f.push(feature);
            }
        } else {
            f.push(Element::new("bind", ns::BIND));
            f.push(Element::new("session", ns::SESSION).with_child(Element::new("optional", ns::SESSION)));
            f.push(Element::new("ver", ns::ROSTER_VER));
            f.push(Element::new("sub", ns::PRE_APPROVAL));
            f.push(Element::new("sm", ns::SM));
            f.push(Element::new("csi", ns::CSI));
            let stage = StreamStage { authenticated: true, password_safe: auth::may_authenticate(self) };
            for feature in self.server.modules.stream_features(&self.server, stage) {
                f.push(feature);
            }
        }
        f
    }

    async fn on_stanza(&mut self, st: Stanza, out: &mut Vec<Frame>) -> Flow {
        // Message framing (WebSocket) can deliver a stanza before any <open/>, or after
        // SASL success without the restart: nothing may be negotiated on a stream that
        // is not open, and the stream's domain is not known yet.
        if matches!(self.stage, Stage::AwaitHeader) {
            return self.fail(StreamError::with_text(StreamErrorCondition::NotWellFormed, "the stream is not open"), out);
        }
        if matches!(self.stage, Stage::Active) {
            return self.on_active_stanza(st, out).await;
        }
        if self.security.starttls_available {
            if st.is("starttls", ns::TLS) {
                out.push(Frame::Element(Element::new("proceed", ns::TLS)));
                return Flow::StartTls;
            }
            if st.is("auth", ns::SASL) || st.is("authenticate", ns::SASL2) {
                out.push(Frame::Element(auth::failure(st.ns(), jabberwock_sasl::SaslFailure::EncryptionRequired, None)));
                return Flow::Continue;
            }
            return self.fail(StreamError::with_text(StreamErrorCondition::NotAuthorized, "STARTTLS is required"), out);
        }
        if self.user.is_none() {
            if st.ns() == ns::SASL {
                return auth::on_sasl_element(self, st, out).await;
            }
            if st.ns() == ns::SASL2 {
                return sasl2::on_sasl2_element(self, st, out).await;
            }
            if let (StanzaKind::Iq, Some(domain)) = (st.kind(), self.domain.as_deref()) {
                let c = Unauthenticated { server: &self.server, domain, peer_ip: self.peer_ip, password_safe: auth::may_authenticate(self) };
                for h in &self.server.modules.pre_auth_hooks {
                    if let Some(reply) = h.iq(&c, &st).await {
                        out.push(Frame::Stanza(reply));
                        return Flow::Continue;
                    }
                }
            }
            return self.fail(StreamError::with_text(StreamErrorCondition::NotAuthorized, "authenticate first"), out);
        }
        if st.ns() == ns::SM {
            return match st.name() {
                "resume" => self.on_resume_request(&st, out),
                _ => {
                    let failed = Element::new("failed", ns::SM).with_child(Element::new("unexpected-request", ns::STANZA_ERRORS));
                    out.push(Frame::Element(failed));
                    Flow::Continue
                }
            };
        }
        bind::on_stanza_before_bind(self, st, out).await
    }

    async fn on_active_stanza(&mut self, mut st: Stanza, out: &mut Vec<Frame>) -> Flow {
        if st.kind() == StanzaKind::Other {
            if st.ns() == ns::SM {
                return self.on_sm_active(&st, out);
            }
            if st.is("inactive", ns::CSI) || st.is("active", ns::CSI) {
                self.csi.set_inactive(st.name() == "inactive", out);
                return Flow::Continue;
            }
            return self.fail(StreamError::new(StreamErrorCondition::UnsupportedStanzaType), out);
        }
        self.count_inbound();
        let kind = st.kind();
        self.server.metrics.stanza_received(kind);
        let bound = self.bound.as_ref().expect("active sessions are bound");
        // RFC 6120 §8.1.2.1: the server stamps `from`; a client may only claim itself.
        if let Some(claimed) = st.from() {
            if claimed != bound.jid.as_str() && claimed != bound.bare {
                let parsed = jid::Jid::new(claimed).ok();
                let ok = parsed.as_ref().is_some_and(|j| j.as_str() == bound.jid.as_str() || j.as_str() == bound.bare);
                if !ok {
                    return self.fail(StreamError::new(StreamErrorCondition::InvalidFrom), out);
                }
            }
        }
        st.set_attr("from", bound.jid.as_str());
        let started = std::time::Instant::now();
        let flow = im::outbound(self, st, out).await;
        if kind == StanzaKind::Message {
            self.server.metrics.message_routed(started.elapsed());
        }
        flow
    }

    pub(crate) fn start_active(&mut self, bound: Bound) {
        self.bound = Some(bound);
        self.stage = Stage::Active;
        self.set_state(SessionState::Active);
    }

    /// Moves the session in the sessions metric, on the transport it has now.
    pub(crate) fn set_state(&mut self, state: SessionState) {
        let transport = self.gauge.transport();
        self.gauge.set(&self.server.metrics, transport, state);
    }

    pub(crate) fn set_stage_sasl(&mut self, ex: auth::Exchange) {
        self.stage = Stage::Sasl(Box::new(ex));
    }

    pub(crate) fn take_sasl(&mut self) -> Option<Box<auth::Exchange>> {
        match std::mem::replace(&mut self.stage, Stage::Negotiating) {
            Stage::Sasl(ex) => Some(ex),
            other => {
                self.stage = other;
                None
            }
        }
    }

    /// Authentication succeeded: after SASL the client restarts the stream; after SASL2
    /// the stream goes on.
    pub(crate) fn authenticated(&mut self, user: String, restart: bool) {
        self.user = Some(user);
        // Only SASL uses them, and a stream authenticates once.
        self.security.channel_bindings = Vec::new();
        if restart {
            self.stage = Stage::AwaitHeader;
            self.header_sent = false;
        }
    }
}

