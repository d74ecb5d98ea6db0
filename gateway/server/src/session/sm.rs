//! XEP-0198 stream management: acknowledgements both ways, and resumption of a session
//! whose connection dropped, from the same or another transport.
//!
//! A resumable session whose connection drops is parked for the resumption window: it
//! stays bound and available, and what arrives for it joins its unacknowledged queue.
//! A new connection that authenticates as the same account can take it over with
//! `<resume/>`. If nobody does, or the server stops first, the session ends as any other:
//! unavailable presence, and every unacknowledged message goes back to routing (another
//! resource or offline storage), so nothing is lost. While parked, its messages are also
//! written through to storage ([`super::journal`]), so that a crash loses none either.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jabberwock_proto::{ns, Element, Stanza, StanzaError, StanzaKind, StreamError, StreamErrorCondition};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::journal::{worth_rerouting, Journal};
use super::Session;
use crate::registry::{output_cost, Mailbox, OutputBudget, Routed};
use crate::stream::{Flow, Frame};

pub(crate) struct StreamManagement {
    pub id: String,
    pub resumable: bool,
    /// Stanzas handled from the client (the `h` we report).
    pub inbound: u32,
    /// Stanzas the client acknowledged.
    acked: u32,
    /// Sent and not yet acknowledged, oldest first.
    unacked: VecDeque<Stanza>,
    /// What `unacked` costs, counted in the session's output budget too.
    unacked_bytes: usize,
    budget: Arc<OutputBudget>,
    ack_requested: bool,
}

impl StreamManagement {
    fn new(id: String, resumable: bool, budget: Arc<OutputBudget>) -> Self {
        StreamManagement { id, resumable, inbound: 0, acked: 0, unacked: VecDeque::new(), unacked_bytes: 0, budget, ack_requested: false }
    }

    /// Drops what the client's `h` acknowledges; returns how many stanzas that was. Fails
    /// when `h` claims more than was sent.
    fn ack(&mut self, h: u32) -> Result<usize, StreamError> {
        let newly = h.wrapping_sub(self.acked) as usize;
        if newly > self.unacked.len() {
            return Err(StreamError::with_text(StreamErrorCondition::UndefinedCondition, "handled count too high"));
        }
        let released: usize = self.unacked.drain(..newly).map(|st| output_cost(&st)).sum();
        self.release(released);
        self.acked = h;
        self.ack_requested = false;
        Ok(newly)
    }

    pub(super) fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    fn queue(&mut self, st: Stanza) {
        let cost = output_cost(&st);
        self.unacked_bytes += cost;
        self.budget.charge(cost);
        self.unacked.push_back(st);
    }

    fn release(&mut self, cost: usize) {
        self.unacked_bytes -= cost;
        self.budget.release(cost);
    }

    /// Empties the queue, oldest first: to send again, or to route elsewhere.
    pub(super) fn take_unacked(&mut self) -> Vec<Stanza> {
        let all: Vec<Stanza> = self.unacked.drain(..).collect();
        self.release(self.unacked_bytes);
        all
    }
}

fn sm_el(name: &str) -> Element {
    Element::new(name, ns::SM)
}

fn failed(condition: jabberwock_proto::StanzaErrorCondition) -> Element {
    sm_el("failed").with_child(Element::new(condition.as_str(), ns::STANZA_ERRORS))
}

impl Session {
    /// `<enable/>`, `<r/>`, `<a/>` on a bound stream.
    pub(super) fn on_sm_active(&mut self, st: &Stanza, out: &mut Vec<Frame>) -> Flow {
        match st.name() {
            "enable" => {
                if self.sm.is_some() {
                    out.push(Frame::Element(failed(jabberwock_proto::StanzaErrorCondition::UnexpectedRequest)));
                    return Flow::Continue;
                }
                let enabled = self.enable_sm(st.attr("resume"));
                out.push(Frame::Element(enabled));
                Flow::Continue
            }
            "r" => match &self.sm {
                Some(sm) => {
                    out.push(Frame::Element(sm_el("a").with_attr("h", sm.inbound.to_string())));
                    Flow::Continue
                }
                None => self.fail(StreamError::new(StreamErrorCondition::UnsupportedStanzaType), out),
            },
            "a" => {
                let h = st.attr("h").and_then(|h| h.parse::<u32>().ok());
                match (self.sm.as_mut(), h) {
                    (Some(sm), Some(h)) => match sm.ack(h) {
                        Ok(n) => {
                            // The ack answered an earlier request and more went out since:
                            // ask again, or what followed waits for the next write (stored
                            // messages are sent a page per acknowledgement).
                            if n > 0 && !sm.unacked.is_empty() {
                                sm.ack_requested = true;
                                out.push(Frame::Element(sm_el("r")));
                            }
                            self.stanzas_delivered(n);
                            Flow::Continue
                        }
                        Err(e) => self.fail(e, out),
                    },
                    _ => self.fail(StreamError::new(StreamErrorCondition::UnsupportedStanzaType), out),
                }
            }
            _ => self.fail(StreamError::new(StreamErrorCondition::UnsupportedStanzaType), out),
        }
    }

    /// Enables stream management on the bound session (asked with `<enable/>` or inline in
    /// a Bind2 request) and returns `<enabled/>`.
    pub(super) fn enable_sm(&mut self, resume: Option<&str>) -> Element {
        let resumable = matches!(resume, Some("true" | "1"));
        // In a cluster the id names this node, which alone can resume the session.
        let id = crate::cluster::scoped_id(&self.server);
        let mut enabled = sm_el("enabled").with_attr("id", id.clone());
        if resumable {
            enabled.set_attr("resume", "true");
            enabled.set_attr("max", self.server.config.limits.resume_window_secs.to_string());
            // XEP-0198 §5: where to reconnect to resume (behind a load balancer, the next
            // connection may reach another node).
            if let Some(location) = self.server.config.cluster.as_ref().and_then(|c| c.location.as_deref()) {
                enabled.set_attr("location", location);
            }
            self.server.sm.register(&id, self.bound.as_ref().map(|b| b.bare.clone()).unwrap_or_default(), self.handle.clone());
        }
        self.sm = Some(StreamManagement::new(id, resumable, self.handle.budget.clone()));
        enabled
    }

    /// Counts a stanza from the client as handled.
    pub(super) fn count_inbound(&mut self) {
        if let Some(sm) = &mut self.sm {
            sm.inbound = sm.inbound.wrapping_add(1);
        }
    }

    /// Called with each batch before it is written: queues the stanzas until acknowledged
    /// and asks for an acknowledgement. A client that lets more than the session's output
    /// bound go unacknowledged is closed; what it never acknowledged is routed again.
    pub fn before_write(&mut self, frames: &mut Vec<Frame>) {
        let Some(sm) = &mut self.sm else { return };
        let before = sm.unacked.len();
        for f in frames.iter() {
            if let Frame::Stanza(st) = f {
                sm.queue(st.clone());
            }
        }
        if sm.unacked.len() > before && !sm.ack_requested {
            sm.ack_requested = true;
            frames.push(Frame::Element(sm_el("r")));
        }
        if sm.unacked_bytes > sm.budget.max() {
            frames.push(Frame::Error(StreamError::with_text(StreamErrorCondition::PolicyViolation, "too much unacknowledged output")));
            frames.push(Frame::Close);
        }
    }

    /// What this session would route again if it ended now: its unacknowledged queue,
    /// except stanzas from storage, which stay there (as [`Session::take_undelivered`]).
    fn reroutable(&self) -> Vec<Stanza> {
        let Some(sm) = &self.sm else { return Vec::new() };
        let stored: HashSet<usize> = self.stored.iter().map(|s| s.ahead).collect();
        sm.unacked.iter().enumerate().filter(|(i, _)| !stored.contains(&(i + 1))).map(|(_, st)| st.clone()).collect()
    }

    /// Whether a dropped connection parks this session for resumption.
    fn resumable(&self) -> bool {
        self.bound.is_some() && self.sm.as_ref().is_some_and(|sm| sm.resumable)
    }

    /// `<resume/>` after authentication: remember it for the transport, which swaps in
    /// the parked session (see [`crate::transport::run`]).
    pub(super) fn on_resume_request(&mut self, st: &Stanza, out: &mut Vec<Frame>) -> Flow {
        match (st.attr("previd"), st.attr("h").and_then(|h| h.parse::<u32>().ok())) {
            (Some(previd), Some(h)) => {
                self.pending_resume = Some((previd.to_owned(), h));
                Flow::Resume
            }
            _ => {
                out.push(Frame::Element(failed(jabberwock_proto::StanzaErrorCondition::BadRequest)));
                Flow::Continue
            }
        }
    }

    /// Takes over the parked session named by the pending `<resume/>`. On success the
    /// caller's session and mailbox are replaced by the resumed ones.
    pub async fn resume(this: &mut Session, rx: &mut Mailbox, out: &mut Vec<Frame>) {
        let Some((previd, h)) = this.pending_resume.take() else { return };
        let own = format!("{}@{}", this.user.as_deref().unwrap_or_default(), this.domain.as_deref().unwrap_or_default());
        // Asked inside SASL2's <authenticate/>: the outcome goes inside its <success/>.
        let in_sasl2 = this.resuming.take();
        let Some((mut old, old_rx)) = this.server.sm.take(&previd, &own).await else {
            crate::cluster::end_resumable_elsewhere(&this.server, &previd, &own).await;
            let failed = failed(jabberwock_proto::StanzaErrorCondition::ItemNotFound);
            match in_sasl2 {
                // Resumption failed, authentication did not: bind as asked.
                Some(mut pending) => {
                    pending.results.push(failed);
                    super::sasl2::complete(this, *pending, out).await;
                }
                None => out.push(Frame::Element(failed)),
            }
            return;
        };
        // The resumed session lives on this connection from now on.
        old.security = this.security.clone();
        old.peer_ip = this.peer_ip;
        old.stream_id = this.stream_id.clone();
        old.header_sent = true;
        old.gauge.set(&this.server.metrics, this.gauge.transport(), crate::metrics::SessionState::Active);
        let sm = old.sm.as_mut().expect("parked sessions have stream management");
        match sm.ack(h) {
            Ok(n) => old.stanzas_delivered(n),
            Err(e) => {
                *this = old;
                *rx = old_rx;
                let _ = this.fail(e, out);
                return;
            }
        }
        let sm = old.sm.as_mut().expect("parked sessions have stream management");
        sm.ack_requested = false;
        let resumed = sm_el("resumed").with_attr("previd", previd.clone()).with_attr("h", sm.inbound.to_string());
        match in_sasl2 {
            Some(pending) => {
                let jid = old.bound.as_ref().map(|b| b.jid.to_string()).unwrap_or_default();
                out.push(Frame::Element(pending.resumed(jid, resumed)));
            }
            None => out.push(Frame::Element(resumed)),
        }
        // The retransmitted stanzas are queued again by before_write.
        let replay = sm.take_unacked();
        out.extend(replay.into_iter().map(Frame::Stanza));
        tracing::info!(conn = old.conn, sm = %previd, "session resumed");
        *this = old;
        *rx = old_rx;
    }

    /// After the connection ended: parks a resumable session whose peer vanished, or ends it.
    pub async fn finish(mut self, mut rx: Mailbox, peer_vanished: bool) {
        if peer_vanished && self.resumable() {
            let server = self.server.clone();
            server.sm.park(self, rx);
            return;
        }
        self.closed(&mut rx).await;
    }

    /// Sends stanzas the client never got (or never acknowledged) back to routing:
    /// messages reach another resource or offline storage, iqs get an error, presence is
    /// dropped (RFC 6121 and XEP-0198 §5).
    pub(super) async fn reroute(&mut self, undelivered: Vec<Stanza>) {
        let Some(bare) = self.bound.as_ref().map(|b| b.jid.to_bare()) else { return };
        for st in undelivered {
            if worth_rerouting(&st) {
                crate::im::message::reroute(&self.server, st, &bare).await;
            } else if st.kind() == StanzaKind::Iq && matches!(st.stanza_type(), Some("get" | "set")) {
                let err = crate::stanzas::error_reply(&st, StanzaError::recipient_unavailable());
                crate::routing::route(&self.server, err).await;
            }
        }
    }
}

/// A session with its mailbox, as handed from one connection to another.
type Parked = (Session, Mailbox);
/// What a parked session is asked to do.
enum Request {
    /// Send itself here: a new connection resumes it.
    Resume(oneshot::Sender<Parked>),
    /// End now, as when the resumption window passes, and say so here once ended.
    End(oneshot::Sender<()>),
}

/// A parked session waiting to be resumed, or a live one that may be taken over.
struct Entry {
    /// `user@domain` that may resume it.
    owner: String,
    /// The live session, asked to detach when a new connection resumes it.
    live: Option<crate::registry::SessionHandle>,
    /// Set while parked: where to ask it to resume or to end.
    parked: Option<mpsc::UnboundedSender<Request>>,
}

/// Resumable sessions by stream-management id.
#[derive(Default)]
pub struct Registry {
    entries: Mutex<HashMap<String, Entry>>,
    /// Sessions parked now (shutdown waits for them to route what they hold).
    parked: AtomicUsize,
}

/// Counts a parked session for as long as it lives.
struct ParkedGuard(Arc<Registry>);

impl Drop for ParkedGuard {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Registry {
    fn register(&self, id: &str, owner: String, live: crate::registry::SessionHandle) {
        self.entries.lock().expect("sm registry").insert(id.to_owned(), Entry { owner, live: Some(live), parked: None });
    }

    /// Parks `session` until it is resumed or the window passes.
    fn park(self: &Arc<Self>, mut session: Session, rx: Mailbox) {
        session.set_state(crate::metrics::SessionState::Hibernated);
        let id = session.sm.as_ref().expect("resumable").id.clone();
        let (tx, requests) = mpsc::unbounded_channel();
        if let Some(e) = self.entries.lock().expect("sm registry").get_mut(&id) {
            e.live = None;
            e.parked = Some(tx);
        }
        tracing::info!(conn = session.conn, sm = %id, "connection lost; session kept for resumption");
        self.parked.fetch_add(1, Ordering::Relaxed);
        let guard = ParkedGuard(self.clone());
        tokio::spawn(hibernate(guard, id, session, rx, requests));
    }

    /// How many sessions are parked.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }

    /// Takes the parked session `id` if `owner` may resume it.
    async fn take(&self, id: &str, owner: &str) -> Option<Parked> {
        let (tx, rx) = oneshot::channel();
        self.parked_session(id, owner).await?.send(Request::Resume(tx)).ok()?;
        rx.await.ok()
    }

    /// Ends the parked session `id` of `owner` now, as when its window passes (its client
    /// tried to resume it on another node of the cluster, where it cannot move); returns
    /// once what it held has been routed.
    pub(crate) async fn end(&self, id: &str, owner: &str) {
        let Some(parked) = self.parked_session(id, owner).await else { return };
        let (tx, ended) = oneshot::channel();
        if parked.send(Request::End(tx)).is_ok() {
            let _ = ended.await;
        }
    }

    /// The way to the parked session `id` if `owner` may resume it. A session whose old
    /// connection is still open is asked to let go first.
    async fn parked_session(&self, id: &str, owner: &str) -> Option<mpsc::UnboundedSender<Request>> {
        for _ in 0..100 {
            let request = {
                let entries = self.entries.lock().expect("sm registry");
                let e = entries.get(id).filter(|e| e.owner == owner)?;
                if let Some(live) = &e.live {
                    live.send(Routed::Detach);
                    None
                } else {
                    e.parked.clone()
                }
            };
            if request.is_some() {
                return request;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    fn forget(&self, id: &str) {
        self.entries.lock().expect("sm registry").remove(id);
    }
}

/// A parked session: collects what arrives for it until it is resumed, expires, or the
/// server stops.
async fn hibernate(
    guard: ParkedGuard,
    id: String,
    mut session: Session,
    mut rx: Mailbox,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let registry = guard.0.clone();
    let server = session.server.clone();
    let mut shutdown = server.shutdown_signal();
    if *shutdown.borrow() {
        // Parked as the server stops: end at once, like the others.
        shutdown.mark_changed();
    }
    let expiry = tokio::time::sleep(Duration::from_secs(server.config.limits.resume_window_secs));
    tokio::pin!(expiry);
    let journal = match &session.bound {
        Some(b) => Journal::open(&server, &b.domain, &b.user).await,
        None => return registry.forget(&id),
    };
    journal.record(&server, &session.reroutable()).await;
    // Who asked the session to end, told once it has.
    let mut ended = None;
    loop {
        tokio::select! {
            Some(request) = requests.recv() => {
                let reply = match request {
                    Request::Resume(reply) => reply,
                    Request::End(done) => {
                        tracing::info!(conn = session.conn, sm = %id, "resumption asked on another node");
                        ended = Some(done);
                        break;
                    }
                };
                if let Some(e) = registry.entries.lock().expect("sm registry").get_mut(&id) {
                    e.parked = None;
                    e.live = Some(session.handle.clone());
                }
                match reply.send((session, rx)) {
                    // The journal's messages are in the resumed session's queue again.
                    Ok(()) => journal.discard(&server).await,
                    Err((mut returned, mut rx)) => {
                        // The resuming connection vanished meanwhile: it ends here.
                        registry.forget(&id);
                        returned.closed(&mut rx).await;
                        journal.discard(&server).await;
                    }
                }
                return;
            }
            Some(routed) = rx.next() => {
                // Everything already waiting, taken as one batch for the journal.
                let mut batch = vec![routed];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let (queued, closing) = park_routed(&mut session, batch);
                journal.record(&server, &queued).await;
                for st in &queued {
                    session.unseen(st).await;
                }
                if closing {
                    break;
                }
            }
            _ = &mut expiry => {
                tracing::info!(conn = session.conn, sm = %id, "resumption window passed");
                break;
            }
            _ = shutdown.changed() => break,
        }
    }
    registry.forget(&id);
    session.closed(&mut rx).await;
    // Only now: until the messages were routed again, the journal was their one copy on disk.
    journal.discard(&server).await;
    if let Some(done) = ended {
        let _ = done.send(());
    }
}

/// Queues what the mailbox brought a parked session as unacknowledged output (all of it:
/// a session that must end routes its whole queue again). Returns the stanzas queued and
/// whether the session must end (over its output bound, or closed).
fn park_routed(session: &mut Session, batch: Vec<Routed>) -> (Vec<Stanza>, bool) {
    let mut queued = Vec::with_capacity(batch.len());
    let mut closing = false;
    for routed in batch {
        match routed {
            Routed::Stanza(st) => {
                let cost = output_cost(&st);
                queued.push((*st).clone());
                let mut frames = vec![Frame::Stanza(*st)];
                session.before_write(&mut frames);
                // Its bytes moved from the mailbox to the unacknowledged queue.
                session.handle.budget.release(cost);
                closing |= frames.iter().any(|f| matches!(f, Frame::Error(_)));
            }
            // It stays in storage for the next session.
            Routed::Stored(stored) => session.handle.budget.release(output_cost(&stored.0)),
            Routed::Close(_) => closing = true,
            Routed::Detach => {}
        }
    }
    (queued, closing)
}

impl Registry {
    /// Forgets the id of a session that ended normally.
    pub(super) fn ended(&self, id: &str) {
        self.forget(id);
    }
}
