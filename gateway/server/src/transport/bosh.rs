//! XEP-0124 BOSH with XEP-0206 XMPP over it: a session spans many HTTP requests.
//!
//! Each BOSH session runs the shared session loop in its own task. HTTP requests hand
//! their stanzas to it through [`BoshSession::request`] and wait for a response body;
//! the transport answers the oldest waiting request whenever the session has output, and
//! an empty body when `wait` runs out. Request ids (`rid`) are processed strictly in
//! order within a window of `requests`; a repeated rid gets its cached response again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jabberwock_proto::bosh::{NS_HTTPBIND, NS_XBOSH};
use jabberwock_proto::{escape, ns, ReadEvent, StreamError, StreamHeader};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::{run, Ended, Transport};
use crate::admission::Slot;
use crate::server::Server;
use crate::session::{Security, Session, Throttle};
use crate::stream::Frame;

/// Longest time the server holds a request before answering it empty.
pub(crate) const MAX_WAIT: u64 = 60;
/// Requests the server may hold at once; the client may send one more.
const HOLD: usize = 1;
const REQUESTS: u64 = HOLD as u64 + 1;
const MAX_PAUSE: u64 = 300;
/// Responses kept for retransmission.
const CACHED_RESPONSES: usize = REQUESTS as usize + 1;

/// A response for the HTTP layer: status code and body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn ok(body: String) -> Self {
        Reply { status: 200, body }
    }

    /// A terminal binding error (XEP-0124 §17.2).
    pub fn terminate(status: u16, condition: &str) -> Self {
        let mut out = Vec::from(&b"<body type='terminate'"[..]);
        escape::attribute(&mut out, "condition", condition);
        escape::attribute(&mut out, "xmlns", NS_HTTPBIND);
        out.extend_from_slice(b"/>");
        Reply { status, body: String::from_utf8(out).expect("UTF-8") }
    }
}

/// What one request asks of the session.
pub struct Request {
    pub rid: u64,
    pub events: Vec<ReadEvent>,
    /// `pause` seconds requested (XEP-0124 §10).
    pub pause: Option<u64>,
}

/// The live sessions by sid, and the sessions each address opened lately.
pub struct Registry {
    sessions: Mutex<HashMap<String, Arc<BoshSession>>>,
    /// Session creations per client address in the last minute: the same sliding-window
    /// count that throttles failed logins, here counting creations.
    creations: Throttle,
}

impl Registry {
    pub fn new(http: &crate::config::HttpConfig) -> Registry {
        Registry { sessions: Mutex::default(), creations: Throttle::new(http.bosh_sessions_per_ip_per_minute, Duration::from_secs(60)) }
    }

    /// Counts a session creation from `ip`, if the address has not used up its rate.
    pub fn creation_allowed(&self, ip: IpAddr) -> bool {
        let key = ip.to_string();
        let allowed = self.creations.allowed(&key);
        if allowed {
            self.creations.count(&key);
        }
        allowed
    }

    pub fn get(&self, sid: &str) -> Option<Arc<BoshSession>> {
        self.sessions.lock().expect("bosh registry").get(sid).cloned()
    }

    fn remove(&self, sid: &str) {
        self.sessions.lock().expect("bosh registry").remove(sid);
    }
}

/// Parameters of a session-creation request (XEP-0124 §7.1, XEP-0206 §3).
pub struct Creation {
    pub rid: u64,
    pub to: Option<String>,
    pub wait: u64,
    pub hold: usize,
    pub lang: Option<String>,
}

pub struct BoshSession {
    pub sid: String,
    wait: Duration,
    /// No request for this long ends the session.
    inactivity: Duration,
    state: Mutex<State>,
    /// Wakes the session task when events arrive, a request starts waiting, or a response
    /// carried the pending output away.
    wake: Notify,
}

#[derive(Default)]
struct State {
    /// The next rid to process.
    next_rid: u64,
    /// Requests that arrived ahead of a missing rid, with their reply channels.
    ahead: BTreeMap<u64, (Request, oneshot::Sender<Reply>)>,
    /// Requests waiting for output, oldest first.
    waiting: VecDeque<(u64, oneshot::Sender<Reply>)>,
    /// Events for the session task.
    inbox: VecDeque<ReadEvent>,
    /// Encoded output not yet carried by a response.
    pending: String,
    /// The stream ended: the next response terminates the session.
    terminal: Option<String>,
    /// Attributes of the session-creation response, sent with the first output.
    creation_attrs: Option<String>,
    responses: BTreeMap<u64, Reply>,
    last_request: Option<Instant>,
    pause_until: Option<Instant>,
    ended: bool,
}

impl State {
    /// Answers the oldest waiting request with everything pending.
    fn flush(&mut self) {
        if self.pending.is_empty() && self.terminal.is_none() && self.creation_attrs.is_none() {
            return;
        }
        let Some((rid, tx)) = self.waiting.pop_front() else { return };
        let body = self.body();
        self.answer(rid, tx, Reply::ok(body));
    }

    fn body(&mut self) -> String {
        let mut attrs = self.creation_attrs.take().unwrap_or_default();
        if let Some(term) = self.terminal.take() {
            attrs.push_str(&term);
            self.ended = true;
        }
        let content = std::mem::take(&mut self.pending);
        format!("<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}' xmlns:stream='{}'{attrs}>{content}</body>", ns::STREAM)
    }

    fn answer(&mut self, rid: u64, tx: oneshot::Sender<Reply>, reply: Reply) {
        self.responses.insert(rid, reply.clone());
        while self.responses.len() > CACHED_RESPONSES {
            self.responses.pop_first();
        }
        let _ = tx.send(reply);
    }

    fn accept(&mut self, req: Request, tx: oneshot::Sender<Reply>) {
        if let Some(p) = req.pause {
            self.pause_until = Some(Instant::now() + Duration::from_secs(p.min(MAX_PAUSE)));
        }
        self.inbox.extend(req.events);
        self.waiting.push_back((req.rid, tx));
        // Rids are at most MAX_RID (`bosh::parse_request`), far from overflowing.
        self.next_rid = req.rid + 1;
    }
}

impl BoshSession {
    /// Creates the session, starts its task, and returns it with the receiver of the
    /// creation response.
    /// `negotiating` is the session's place among unauthenticated streams, given back
    /// once it binds a resource.
    pub fn create(
        server: Arc<Server>,
        registry: Arc<Registry>,
        c: Creation,
        ip: IpAddr,
        encrypted: bool,
        negotiating: Slot,
    ) -> (Arc<BoshSession>, oneshot::Receiver<Reply>) {
        let wait = c.wait.clamp(1, MAX_WAIT);
        let inactivity = server.config.http.bosh_inactivity_secs;
        // In a cluster the sid names the node holding the session, so that any node can
        // pass a request on to it (behind a load balancer without sticky sessions).
        let sid = crate::cluster::scoped_id(&server);
        let mut attrs = Vec::new();
        for (k, v) in [
            ("sid", sid.clone()),
            ("wait", wait.to_string()),
            ("hold", c.hold.clamp(1, HOLD).to_string()),
            ("requests", REQUESTS.to_string()),
            ("inactivity", inactivity.to_string()),
            ("maxpause", MAX_PAUSE.to_string()),
            ("polling", "2".to_owned()),
            ("ver", "1.11".to_owned()),
            ("ack", c.rid.to_string()),
            ("xmpp:version", "1.0".to_owned()),
            ("xmpp:restartlogic", "true".to_owned()),
        ] {
            escape::attribute(&mut attrs, k, &v);
        }
        if let Some(to) = &c.to {
            escape::attribute(&mut attrs, "from", to);
        }
        let header = StreamHeader {
            content_ns: ns::CLIENT.to_owned(),
            to: c.to,
            version: Some("1.0".to_owned()),
            lang: c.lang,
            ..Default::default()
        };
        let (tx, rx) = oneshot::channel();
        let mut state = State {
            next_rid: c.rid + 1,
            creation_attrs: Some(String::from_utf8(attrs).expect("UTF-8")),
            last_request: Some(Instant::now()),
            ..Default::default()
        };
        state.inbox.push_back(ReadEvent::StreamOpen(header));
        state.waiting.push_back((c.rid, tx));
        let session = Arc::new(BoshSession {
            sid: sid.clone(),
            wait: Duration::from_secs(wait),
            inactivity: Duration::from_secs(inactivity),
            state: Mutex::new(state),
            wake: Notify::new(),
        });
        registry.sessions.lock().expect("bosh registry").insert(sid, session.clone());
        tokio::spawn(serve(server, registry, session.clone(), ip, encrypted, negotiating));
        (session, rx)
    }

    /// Hands a request to the session. The reply comes when output is ready, when `wait`
    /// passes, or at once for a retransmitted or invalid rid.
    pub async fn request(&self, req: Request) -> Reply {
        let rx = {
            let mut st = self.state.lock().expect("bosh state");
            if st.ended {
                return Reply::terminate(404, "item-not-found");
            }
            if let Some(cached) = st.responses.get(&req.rid) {
                return cached.clone();
            }
            if req.rid < st.next_rid || req.rid >= st.next_rid + REQUESTS {
                st.terminal = Some(" type='terminate' condition='item-not-found'".to_owned());
                st.ended = true;
                self.wake.notify_one();
                return Reply::terminate(404, "item-not-found");
            }
            st.last_request = Some(Instant::now());
            let (tx, rx) = oneshot::channel();
            if req.rid == st.next_rid {
                st.accept(req, tx);
                // Requests that were waiting for this one follow in order.
                loop {
                    let rid = st.next_rid;
                    let Some((next, next_tx)) = st.ahead.remove(&rid) else { break };
                    st.accept(next, next_tx);
                }
                // Beyond `hold`, the oldest request is answered at once.
                while st.waiting.len() > HOLD {
                    let (rid, tx) = st.waiting.pop_front().expect("non-empty");
                    let body = st.body();
                    st.answer(rid, tx, Reply::ok(body));
                }
                // Output that arrived while no request was held goes out now (XEP-0124 §10).
                st.flush();
            } else {
                st.ahead.insert(req.rid, (req, tx));
            }
            self.wake.notify_one();
            rx
        };
        match tokio::time::timeout(self.wait, rx).await {
            Ok(Ok(reply)) => reply,
            _ => self.expire(),
        }
    }

    /// `wait` passed: the oldest waiting request gets what is pending (often nothing).
    fn expire(&self) -> Reply {
        let mut st = self.state.lock().expect("bosh state");
        match st.waiting.pop_front() {
            Some((rid, tx)) => {
                let body = st.body();
                let reply = Reply::ok(body);
                st.answer(rid, tx, reply.clone());
                self.wake.notify_one();
                reply
            }
            None => Reply::ok(format!("<body xmlns='{NS_HTTPBIND}'/>")),
        }
    }
}

async fn serve(server: Arc<Server>, registry: Arc<Registry>, bosh: Arc<BoshSession>, ip: IpAddr, encrypted: bool, negotiating: Slot) {
    let _guard = server.connection_guard();
    let deadline = Instant::now() + server.config.negotiation_timeout();
    let security = Security { encrypted, starttls_available: false, channel_bindings: Vec::new() };
    let (mut session, mut rx) = Session::new(server.clone(), crate::metrics::Transport::Bosh, ip, security);
    let traffic = server.metrics.traffic(crate::metrics::Transport::Bosh);
    let mut transport = BoshTransport { bosh: bosh.clone(), max_pending: server.config.limits.max_session_output_bytes, traffic };
    let ended = run(&mut session, &mut rx, &mut transport, deadline, &mut Some(negotiating)).await;
    Box::pin(session.finish(rx, ended == Ended::Vanished)).await;
    transport.close().await;
    registry.remove(&bosh.sid);
}

struct BoshTransport {
    bosh: Arc<BoshSession>,
    /// Most output that may wait for a request before writes wait too (and, past the
    /// write deadline, the session ends).
    max_pending: usize,
    /// Counts what the session writes; request bodies are counted as they arrive.
    traffic: crate::metrics::Traffic,
}

impl BoshTransport {
    fn encode(frame: &Frame, out: &mut Vec<u8>) {
        match frame {
            // The session-creation response plays the stream header's part.
            Frame::Header { .. } | Frame::Close => {}
            Frame::StreamElement(el) => jabberwock_proto::writer::stream_element(out, el),
            Frame::Element(el) => el.write_to(out, ""),
            Frame::Stanza(st) => st.write_to(out, ""),
            Frame::Error(e) => jabberwock_proto::writer::stream_error(out, e),
        }
    }
}

impl Transport for BoshTransport {
    async fn next_event(&mut self) -> Option<Result<ReadEvent, StreamError>> {
        loop {
            let idle_for = {
                let mut st = self.bosh.state.lock().expect("bosh state");
                if let Some(ev) = st.inbox.pop_front() {
                    return Some(Ok(ev));
                }
                if st.ended {
                    return None;
                }
                // Inactivity counts only while no request is held (XEP-0124 §7.1).
                let allowance = self.bosh.inactivity;
                match (st.waiting.is_empty(), st.last_request, st.pause_until) {
                    (false, _, _) => allowance,
                    (true, _, Some(until)) if until > Instant::now() => until - Instant::now(),
                    (true, Some(last), _) => {
                        let since = last.elapsed();
                        if since >= allowance {
                            return None;
                        }
                        allowance - since
                    }
                    (true, None, _) => allowance,
                }
            };
            let _ = tokio::time::timeout(idle_for, self.bosh.wake.notified()).await;
        }
    }

    fn buffered_event(&mut self) -> Option<Result<ReadEvent, StreamError>> {
        self.bosh.state.lock().expect("bosh state").inbox.pop_front().map(Ok)
    }

    fn restart(&mut self) {}

    async fn write(&mut self, frames: &[Frame]) -> bool {
        let mut out = Vec::new();
        let mut terminal = None;
        for f in frames {
            match f {
                Frame::Error(_) => terminal = Some(" type='terminate' condition='remote-stream-error'"),
                Frame::Close if terminal.is_none() => terminal = Some(" type='terminate'"),
                _ => {}
            }
            Self::encode(f, &mut out);
        }
        self.traffic.sent(out.len());
        {
            let mut st = self.bosh.state.lock().expect("bosh state");
            st.pending.push_str(std::str::from_utf8(&out).expect("UTF-8"));
            if let Some(t) = terminal {
                st.terminal = Some(t.to_owned());
            }
            st.flush();
        }
        // Appended before waiting, so a cancelled write has lost nothing.
        loop {
            let carried = self.bosh.wake.notified();
            {
                let st = self.bosh.state.lock().expect("bosh state");
                if st.pending.len() <= self.max_pending {
                    return true;
                }
                if st.ended {
                    return false;
                }
            }
            carried.await;
        }
    }

    async fn close(&mut self) {
        let mut st = self.bosh.state.lock().expect("bosh state");
        if st.terminal.is_none() && !st.ended {
            st.terminal = Some(" type='terminate'".to_owned());
        }
        st.flush();
        st.ended = true;
        // Anything else still held learns the session is over.
        while let Some((rid, tx)) = st.waiting.pop_front() {
            st.answer(rid, tx, Reply::terminate(200, "item-not-found"));
        }
    }
}
