//! The message phase: a few sender tasks send chat messages at a fixed total rate, each
//! from one of the active sessions to a random other active session (bare JID), or to a
//! random session of the other side ([`Pairing::Across`], e.g. WebSocket ↔ TCP), or, in
//! group chat ([`Pairing::Rooms`]), to the sender's room, which delivers it to every
//! occupant; one reader task per active session receives them and records the latency
//! from the send timestamp in the body. A session with XEP-0198 enabled has its reader answer the
//! server's `<r/>`. The sessions are handed back at the end, for another phase.
//!
//! The presence storm ([`storm`]) uses the same readers: in each round every session
//! changes its status once, with a send timestamp in `<status/>`, and every contact of
//! every session must receive it.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jabberwock_proto::{ReadEvent, Stanza, ns};
use tokio::sync::{Mutex, watch};

use crate::client::{self, Rx, Session, Tx};

/// A session's sending side, shared by its sender task and, for acknowledgements, its
/// reader.
type SharedTx = Arc<Mutex<Tx>>;

/// Who sends to whom.
pub enum Pairing {
    /// Every session to random other sessions of the same set.
    Among(Vec<Session>),
    /// Every session of each side to random sessions of the other side.
    Across(Vec<Session>, Vec<Session>),
    /// Groupchat messages to the sender's room: sessions `k·size … (k+1)·size − 1` are
    /// the occupants of room `k` of the service (see [`crate::rooms`]).
    Rooms { sessions: Vec<Session>, size: usize, service: String },
}

impl Pairing {
    pub fn len(&self) -> usize {
        match self {
            Pairing::Among(s) | Pairing::Rooms { sessions: s, .. } => s.len(),
            Pairing::Across(a, b) => a.len() + b.len(),
        }
    }

    /// Deliveries per message sent: one, or a room's occupants.
    pub fn fanout(&self) -> usize {
        match self {
            Pairing::Rooms { size, .. } => *size,
            _ => 1,
        }
    }

    pub fn sessions_mut(&mut self) -> impl Iterator<Item = &mut Session> {
        match self {
            Pairing::Among(s) | Pairing::Rooms { sessions: s, .. } => s.iter_mut().chain([].iter_mut()),
            Pairing::Across(a, b) => a.iter_mut().chain(b.iter_mut()),
        }
    }

    /// All sessions, and how they address each other.
    fn into_parts(self) -> (Vec<Session>, Addressing) {
        match self {
            Pairing::Among(s) => (s, Addressing::Random { split: None }),
            Pairing::Across(mut a, b) => {
                let split = a.len();
                a.extend(b);
                (a, Addressing::Random { split: Some(split) })
            }
            Pairing::Rooms { sessions, size, service } => (sessions, Addressing::OwnRoom { size, service }),
        }
    }

    fn from_parts(mut sessions: Vec<Session>, addressing: Addressing) -> Self {
        match addressing {
            Addressing::Random { split: None } => Pairing::Among(sessions),
            Addressing::Random { split: Some(k) } => {
                let b = sessions.split_off(k);
                Pairing::Across(sessions, b)
            }
            Addressing::OwnRoom { size, service } => Pairing::Rooms { sessions, size, service },
        }
    }
}

/// Where a session's messages go.
#[derive(Clone)]
enum Addressing {
    /// To random sessions: of the same set, or of the other side after `split`.
    Random { split: Option<usize> },
    /// To the sender's room.
    OwnRoom { size: usize, service: String },
}

/// A random recipient for session `me` of `n`.
fn pick(me: usize, n: usize, split: Option<usize>, rng: &mut u64) -> usize {
    let r = next_random(rng) as usize;
    match split {
        None => {
            let to = r % (n - 1);
            if to >= me { to + 1 } else { to }
        }
        Some(split) if me < split => split + r % (n - split),
        Some(split) => r % split,
    }
}

pub struct Plan {
    /// Messages per second, all senders together.
    pub rate: f64,
    pub duration: Duration,
    pub senders: usize,
    /// How long to wait for the last messages after sending stops.
    pub drain: Duration,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    /// Stamped messages, or stamped presence from others.
    received: AtomicU64,
    /// Message or presence stanzas of type `error` (bounces).
    errors: AtomicU64,
    /// Nanoseconds since the epoch of the last message received.
    last_received_ns: AtomicU64,
    /// XEP-0198 acknowledgements sent (answers to the server's `<r/>`).
    acks: AtomicU64,
}

pub struct Outcome {
    /// Messages, or status updates.
    pub sent: u64,
    /// Deliveries expected: one per message, one per contact per status update.
    pub expected: u64,
    pub received: u64,
    pub errors: u64,
    /// Stream-level problems: a closed stream, bad XML, a failed write.
    pub failures: Vec<String>,
    /// Latencies in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// From the first send to the end of sending.
    pub send_time: Duration,
    /// From the first send to the last message received.
    pub delivery_time: Duration,
    pub acks: u64,
    /// The sessions, for another phase; `None` when a task failed and some are gone.
    pub sessions: Option<Vec<Session>>,
}

/// The sessions of a phase, each with its reader task running.
struct Live {
    epoch: Instant,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    readers: tokio::task::JoinSet<(usize, Reader, Option<String>)>,
    /// Session number and sending side, in the sessions' order.
    writers: Vec<(usize, SharedTx)>,
    /// What is left of each session while its reader runs: index, JID, socket.
    shells: Vec<Option<(usize, String, RawFd)>>,
}

impl Live {
    fn start(sessions: Vec<Session>) -> Self {
        let epoch = Instant::now();
        let counters = Arc::new(Counters::default());
        let (stop, stop_rx) = watch::channel(false);
        let mut readers = tokio::task::JoinSet::new();
        let mut writers = Vec::with_capacity(sessions.len());
        let mut shells = Vec::with_capacity(sessions.len());
        for (i, s) in sessions.into_iter().enumerate() {
            let own = client::bare(&s.jid).to_owned();
            let Session { index, jid, fd, sm_handled, tx, rx } = s;
            let tx = Arc::new(Mutex::new(tx));
            writers.push((i, tx.clone()));
            let reader = Reader { rx, tx, own, sm_handled, latencies: Vec::new() };
            readers.spawn(receive(i, reader, epoch, counters.clone(), stop_rx.clone()));
            shells.push(Some((index, jid, fd)));
        }
        Live { epoch, counters, stop, readers, writers, shells }
    }

    fn arrived(&self) -> u64 {
        self.counters.received.load(Ordering::Relaxed) + self.counters.errors.load(Ordering::Relaxed)
    }

    /// Waits until `expected` stamped stanzas (or bounces) have arrived, or `drain` has
    /// passed.
    async fn drain(&self, expected: u64, drain: Duration) {
        let deadline = Instant::now() + drain;
        while self.arrived() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the readers (a little later, to catch duplicates or late bounces) and gives
    /// the sessions back.
    async fn finish(mut self, sent: u64, expected: u64, send_time: Duration, mut failures: Vec<String>) -> Outcome {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = self.stop.send(true);
        // The sender tasks are done: the readers hold the last references.
        drop(self.writers);
        let mut latencies_us = Vec::new();
        let mut back: Vec<Option<Session>> = (0..self.shells.len()).map(|_| None).collect();
        while let Some(r) = self.readers.join_next().await {
            match r {
                Ok((i, reader, failure)) => {
                    failures.extend(failure);
                    let Reader { rx, tx, sm_handled, latencies, .. } = reader;
                    latencies_us.extend(latencies);
                    let (Some((index, jid, fd)), Ok(tx)) = (self.shells[i].take(), Arc::try_unwrap(tx)) else {
                        continue;
                    };
                    back[i] = Some(Session { index, jid, fd, sm_handled, tx: tx.into_inner(), rx });
                }
                Err(e) => failures.push(format!("reader task: {e}")),
            }
        }
        latencies_us.sort_unstable();
        let c = &self.counters;
        Outcome {
            sent,
            expected,
            received: c.received.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            failures,
            latencies_us,
            send_time,
            delivery_time: Duration::from_nanos(c.last_received_ns.load(Ordering::Relaxed)),
            acks: c.acks.load(Ordering::Relaxed),
            sessions: back.into_iter().collect(),
        }
    }
}

/// Sends and receives on the sessions, at least two (one on each side with
/// [`Pairing::Across`]). The sessions come back paired as they came.
pub async fn run(pairing: Pairing, plan: &Plan) -> (Outcome, Option<Pairing>) {
    let fanout = pairing.fanout() as u64;
    let (sessions, addressing) = pairing.into_parts();
    let split = match &addressing {
        Addressing::Random { split } => *split,
        Addressing::OwnRoom { .. } => None,
    };
    assert!(sessions.len() >= 2 && split.is_none_or(|k| k > 0 && k < sessions.len()));
    // Each session's address (random addressing), or its room's (group chat).
    let recipients: Arc<Vec<String>> = Arc::new(match &addressing {
        Addressing::Random { .. } => sessions.iter().map(|s| s.bare().to_owned()).collect(),
        Addressing::OwnRoom { size, service } => (0..sessions.len()).map(|i| crate::rooms::room_of(i, *size, service)).collect(),
    });
    let in_rooms = matches!(addressing, Addressing::OwnRoom { .. });
    let live = Live::start(sessions);
    let senders = plan.senders.clamp(1, live.writers.len());
    let mut shares: Vec<Vec<(usize, SharedTx)>> = (0..senders).map(|_| Vec::new()).collect();
    for (i, w) in live.writers.iter().enumerate() {
        shares[i % senders].push(w.clone());
    }
    let next_seq = Arc::new(AtomicU64::new(0));
    let mut send_tasks = tokio::task::JoinSet::new();
    for (k, w) in shares.into_iter().enumerate() {
        let per_task = plan.rate / senders as f64;
        send_tasks.spawn(send(
            w,
            recipients.clone(),
            if in_rooms { None } else { Some(split) },
            per_task,
            plan.duration,
            live.epoch,
            live.counters.clone(),
            next_seq.clone(),
            0x9E37_79B9_7F4A_7C15 ^ (k as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
        ));
    }
    let mut failures = Vec::new();
    while let Some(r) = send_tasks.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("sender task: {e}")),
        }
    }
    let send_time = live.epoch.elapsed();
    // Drain: everything sent should arrive.
    let sent = live.counters.sent.load(Ordering::Relaxed);
    live.drain(sent * fanout, plan.drain).await;
    let mut out = live.finish(sent, sent * fanout, send_time, failures).await;
    let back = out.sessions.take().map(|s| Pairing::from_parts(s, addressing));
    (out, back)
}

/// The presence storm: `rounds` times, every session sends a new status (alternating
/// `away` and `chat`) as fast as it can be written; each round waits until every contact
/// of every session (`contacts_each`) has it, or `drain` passes, before the next.
pub async fn storm(sessions: Vec<Session>, contacts_each: usize, rounds: usize, drain: Duration) -> Outcome {
    let live = Live::start(sessions);
    let mut failures = Vec::new();
    let mut sent = 0u64;
    'rounds: for round in 0..rounds {
        let show = if round % 2 == 0 { "away" } else { "chat" };
        for (i, tx) in &live.writers {
            let t = live.epoch.elapsed().as_nanos() as u64;
            let update = format!("<presence xmlns='jabber:client'><show>{show}</show><status>t={t} r={round}</status></presence>");
            if let Err(e) = tx.lock().await.send(&update).await {
                failures.push(format!("presence from session {i}: {e}"));
                break 'rounds;
            }
            sent += 1;
        }
        live.drain(sent * contacts_each as u64, drain).await;
    }
    let send_time = live.epoch.elapsed();
    live.finish(sent, sent * contacts_each as u64, send_time, failures).await
}

/// xorshift64*: good enough to pick recipients.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Target size of a message on the wire, like the hot-path benchmark's.
const MESSAGE_BYTES: usize = 200;

#[allow(clippy::too_many_arguments)]
async fn send(
    mut writers: Vec<(usize, SharedTx)>,
    recipients: Arc<Vec<String>>,
    // To random recipients (with the split of [`Addressing::Random`]), or, `None`, to
    // the sender's own entry: its room.
    random: Option<Option<usize>>,
    rate: f64,
    duration: Duration,
    epoch: Instant,
    counters: Arc<Counters>,
    next_seq: Arc<AtomicU64>,
    mut rng: u64,
) -> Result<(), String> {
    let start = Instant::now();
    let mut sent_here = 0u64;
    let mut rr = 0usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut msg = String::with_capacity(2 * MESSAGE_BYTES);
    let n = recipients.len();
    loop {
        ticker.tick().await;
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (rate * elapsed.as_secs_f64()) as u64;
        // Never more than a quarter second's worth in one burst: when the server falls
        // behind, the offered rate drops instead of piling up.
        let burst = due.saturating_sub(sent_here).min((rate / 4.0).ceil() as u64 + 1);
        let count = writers.len();
        for _ in 0..burst {
            let (me, tx) = &mut writers[rr];
            rr = (rr + 1) % count;
            let (to, kind) = match random {
                Some(split) => (pick(*me, n, split, &mut rng), "chat"),
                None => (*me, "groupchat"),
            };
            let seq = next_seq.fetch_add(1, Ordering::Relaxed);
            msg.clear();
            let t = epoch.elapsed().as_nanos() as u64;
            use std::fmt::Write;
            // The namespace is redundant on TCP and required on a WebSocket (RFC 7395 §3.3.3).
            let _ = write!(
                msg,
                "<message xmlns='jabber:client' to='{}' type='{kind}' id='m{seq}'><body>t={t} s={seq} ",
                recipients[to]
            );
            while msg.len() + "</body></message>".len() < MESSAGE_BYTES {
                msg.push('x');
            }
            msg.push_str("</body></message>");
            if let Err(e) = tx.lock().await.send(&msg).await {
                return Err(format!("sending from session {me}: {e}"));
            }
            counters.sent.fetch_add(1, Ordering::Relaxed);
            sent_here += 1;
        }
    }
    Ok(())
}

/// One session's receiving side during the phase.
struct Reader {
    rx: Rx,
    /// To answer the server's `<r/>`.
    tx: SharedTx,
    /// The session's bare JID: its own presence echo is not a delivery.
    own: String,
    /// With XEP-0198: message, presence and iq stanzas received since it was enabled.
    sm_handled: Option<u32>,
    /// Microseconds.
    latencies: Vec<u32>,
}

/// Reads session `i` until told to stop; returns it with any failure.
async fn receive(
    i: usize,
    mut r: Reader,
    epoch: Instant,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> (usize, Reader, Option<String>) {
    loop {
        let failure = tokio::select! {
            ev = r.rx.next_event() => match ev {
                Ok(ReadEvent::Stanza(st)) => r.on_stanza(&st, epoch, &counters).await.err(),
                Ok(ReadEvent::StreamClose) => Some("the server closed a stream".into()),
                Ok(ReadEvent::StreamOpen(_)) => Some("unexpected stream header".into()),
                Err(e) => Some(e),
            },
            _ = stop.changed() => return (i, r, None),
        };
        if failure.is_some() {
            return (i, r, failure);
        }
    }
}

impl Reader {
    async fn on_stanza(&mut self, st: &Stanza, epoch: Instant, counters: &Counters) -> Result<(), String> {
        if st.is("error", ns::STREAM) {
            return Err(format!("stream error: {}", st.inner()));
        }
        if let Some(h) = &mut self.sm_handled {
            if matches!(st.name(), "message" | "presence" | "iq") {
                *h = h.wrapping_add(1);
            } else if st.is("r", ns::SM) {
                // The lock waits for at most one message being sent by this session.
                let ack = format!("<a xmlns='{}' h='{h}'/>", ns::SM);
                self.tx.lock().await.send(&ack).await?;
                counters.acks.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        let kind = st.name();
        if kind != "message" && kind != "presence" {
            return Ok(());
        }
        if st.stanza_type() == Some("error") {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if kind == "presence" && st.from().map(client::bare) == Some(self.own.as_str()) {
            return Ok(());
        }
        // The stamp opens the <body/> or <status/>; a `stamp=` attribute (XEP-0203
        // delay) must not match.
        let inner = st.inner();
        let Some(t) = inner.find(">t=").map(|i| &inner[i + 3..]) else {
            return Ok(());
        };
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(sent_ns) = t[..digits].parse::<u64>() else {
            return Ok(());
        };
        let now = epoch.elapsed().as_nanos() as u64;
        self.latencies.push((now.saturating_sub(sent_ns) / 1000).min(u32::MAX as u64) as u32);
        counters.received.fetch_add(1, Ordering::Relaxed);
        counters.last_received_ns.fetch_max(now, Ordering::Relaxed);
        Ok(())
    }
}
