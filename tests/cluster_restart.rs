//! A rolling restart of a three-node cluster under load: 1000 sessions spread over the
//! nodes exchange messages while each node in turn is stopped (SIGTERM) and started again.
//! The sessions of a stopped node reconnect to another one. At the end, every message the
//! server acknowledged to its sender (XEP-0198 `<a h>`) has reached its recipient, live
//! or from offline storage.
//!
//! The sessions never send presence, so nothing is broadcast, and a message for a resource
//! that is not bound (it is reconnecting) goes to offline storage, fetched at the end by
//! one more session per account that sends its initial presence. Needs what
//! `tests/cluster.rs` needs (`scripts/cluster-tests.sh` runs both).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jabberwock_proto::{ns, ReadEvent};
use jabberwock_tests::cluster::Cluster;
use jabberwock_tests::Client;
use tokio::time::Instant;

const SM: &str = "urn:xmpp:sm:3";
const ACCOUNTS: usize = 50;
/// Sessions per account: 1000 in all.
const RESOURCES: usize = 20;
/// Each session sends a message this often (100 a second across the cluster).
const SEND_EVERY: Duration = Duration::from_secs(10);
/// Traffic before the first restart, between restarts and after the last.
const BETWEEN_RESTARTS: Duration = Duration::from_secs(6);
/// Logins under way at once: a crowd reconnecting waits its turn, as behind a client's backoff.
const CONCURRENT_LOGINS: usize = 16;

/// What the sessions share with the test.
struct Shared {
    /// Each node's client address, `None` while it is stopped.
    nodes: Mutex<Vec<Option<SocketAddr>>>,
    logins: tokio::sync::Semaphore,
    /// Messages the server acknowledged to their senders: body → the recipient's account.
    acked: Mutex<HashMap<String, usize>>,
    /// Messages that reached their recipients (any resource of the account): body → times.
    received: Mutex<HashMap<String, usize>>,
    /// Errors that came back for messages.
    bounced: Mutex<Vec<String>>,
    /// Sessions send messages while this is set.
    sending: AtomicBool,
    /// Sessions end once this is set.
    done: AtomicBool,
    /// Sessions that have asked the server for a last acknowledgement and got it.
    settled: AtomicUsize,
    reconnects: AtomicUsize,
}

fn user(account: usize) -> String {
    format!("u{account}")
}

/// A small deterministic generator: the test needs spread, not secrecy.
struct Spread(u64);

impl Spread {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

impl Shared {
    /// Logs in on a running node, starting with `node`; tries the next on failure. Returns
    /// the client and the node it is on.
    async fn login(&self, mut node: usize, account: usize, resource: &str) -> (Client, usize) {
        let user = user(account);
        loop {
            let _turn = self.logins.acquire().await.expect("open");
            let addr = self.nodes.lock().expect("nodes")[node];
            if let Some(addr) = addr {
                let (u, r) = (user.clone(), resource.to_owned());
                // A login that meets a stopping node fails: the helper panics (its message
                // shows in the output, a dozen times a run) and the session tries another.
                let login = tokio::spawn(async move { Client::login(addr, &u, &format!("{u}-pw"), &r).await });
                if let Ok(client) = login.await {
                    return (client, node);
                }
            }
            node = (node + 1) % 3;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One session: sends a message to a random session every [`SEND_EVERY`] and asks for an
/// acknowledgement; records what is acknowledged and what it receives; reconnects to
/// another node when its node goes away.
async fn session(shared: Arc<Shared>, account: usize, resource: usize) {
    let me = account * RESOURCES + resource;
    let mut spread = Spread(0x9e37_79b9_7f4a_7c15 ^ (me as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let resource_name = format!("r{resource}");
    let mut node = me % 3;
    let mut next_message = 0u64;
    let mut settled = false;
    'connect: while !shared.done.load(Ordering::Relaxed) {
        let (mut client, on) = shared.login(node, account, &resource_name).await;
        node = on;
        if !client.send_lossy(format!("<enable xmlns='{SM}'/>")).await {
            continue;
        }
        // What this stream sent, in order (`Some(body)` for a message), and how much of it
        // the server acknowledged; how many stanzas it received since `<enabled/>`.
        let mut sent: Vec<Option<(String, usize)>> = Vec::new();
        let mut acked = 0usize;
        let mut handled: Option<u64> = None;
        let mut next_send = Instant::now() + Duration::from_millis(spread.below(SEND_EVERY.as_millis() as u64));
        let mut asked_to_settle = false;
        loop {
            let mut wake = next_send.min(Instant::now() + Duration::from_millis(200));
            if shared.done.load(Ordering::Relaxed) {
                return;
            }
            if !shared.sending.load(Ordering::Relaxed) {
                wake = Instant::now() + Duration::from_millis(200);
                if !asked_to_settle {
                    asked_to_settle = client.send_lossy(format!("<r xmlns='{SM}'/>")).await;
                }
            }
            let event = match client.try_next_event_by(wake).await {
                Ok(event) => event,
                Err(_) => {
                    // The node went away: reconnect elsewhere after a pause, as a client would.
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    node = (node + 1 + spread.below(2) as usize) % 3;
                    tokio::time::sleep(Duration::from_millis(spread.below(2000))).await;
                    continue 'connect;
                }
            };
            let Some(ReadEvent::Stanza(st)) = event else {
                if event.is_none() && shared.sending.load(Ordering::Relaxed) && Instant::now() >= next_send {
                    let to_account = spread.below(ACCOUNTS as u64) as usize;
                    let to = format!("{}@localhost/r{}", user(to_account), spread.below(RESOURCES as u64));
                    let body = format!("m{me}.{next_message}");
                    next_message += 1;
                    let xml = format!("<message to='{to}' type='chat'><body>{body}</body></message><r xmlns='{SM}'/>");
                    if client.send_lossy(xml).await {
                        sent.push(Some((body, to_account)));
                    }
                    next_send += SEND_EVERY;
                }
                continue;
            };
            let Ok(el) = st.to_element() else { continue };
            match (el.name(), el.ns()) {
                ("a", SM) => {
                    let h: usize = el.attr("h").and_then(|h| h.parse().ok()).unwrap_or(0);
                    let mut shared_acked = shared.acked.lock().expect("acked");
                    for (body, to) in sent.iter().take(h).skip(acked).flatten() {
                        shared_acked.insert(body.clone(), *to);
                    }
                    acked = acked.max(h);
                    if asked_to_settle && !settled && acked == sent.len() {
                        settled = true;
                        shared.settled.fetch_add(1, Ordering::Relaxed);
                    }
                }
                ("r", SM) => {
                    client.send_lossy(format!("<a xmlns='{SM}' h='{}'/>", handled.unwrap_or(0))).await;
                }
                ("enabled", SM) => handled = Some(0),
                (_, ns::CLIENT) => {
                    if let Some(h) = &mut handled {
                        *h += 1;
                    }
                    match (el.name(), el.attr("type")) {
                        ("message", Some("error")) => shared.bounced.lock().expect("bounced").push(el.to_xml_string()),
                        ("message", _) => {
                            if let Some(body) = el.child_text("body", ns::CLIENT) {
                                *shared.received.lock().expect("received").entry(body).or_default() += 1;
                            }
                        }
                        ("iq", Some("get" | "set")) => {
                            // A server's ping, say: answered, so the stream stays up.
                            let reply = format!("<iq type='result' id='{}'/>", el.attr("id").unwrap_or_default());
                            if client.send_lossy(reply).await {
                                sent.push(None);
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }
}

/// Fetches what offline storage holds for `account`, with one more session that sends its
/// initial presence; returns how many messages came.
async fn fetch_offline(shared: &Shared, account: usize) -> usize {
    let (mut client, _) = shared.login(account % 3, account, "fetch").await;
    client.send("<presence/>").await;
    let mut count = 0;
    while let Ok(Some(event)) = client.try_next_event_by(Instant::now() + Duration::from_secs(2)).await {
        let ReadEvent::Stanza(st) = event else { continue };
        let Ok(el) = st.to_element() else { continue };
        if let (true, Some(body)) = (el.name() == "message", el.child_text("body", ns::CLIENT)) {
            *shared.received.lock().expect("received").entry(body).or_default() += 1;
            count += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_moves_the_sessions_and_loses_no_acknowledged_message() {
    let began = Instant::now();
    let users: Vec<String> = (0..ACCOUNTS).map(user).collect();
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let limits = format!(
        "max_resources = {RESOURCES}\nmax_connections_per_ip = 5000\nmax_unauthenticated_per_ip = 1000\n\
         offline_quota = 100000\noffline_quota_bytes = 100000000"
    );
    let bin = env!("CARGO_BIN_EXE_jabberwock-test-server").as_ref();
    // No node dies here: a lease longer than the other tests' gives Redis's answers (a
    // third of it) room on a busy machine.
    let Some(mut cluster) = Cluster::start(bin, "restart", &limits, &users, 6000).await else { return };
    let shared = Arc::new(Shared {
        nodes: Mutex::new((0..3).map(|i| Some(cluster.c2s(i))).collect()),
        logins: tokio::sync::Semaphore::new(CONCURRENT_LOGINS),
        acked: Mutex::default(),
        received: Mutex::default(),
        bounced: Mutex::default(),
        sending: AtomicBool::new(true),
        done: AtomicBool::new(false),
        settled: AtomicUsize::new(0),
        reconnects: AtomicUsize::new(0),
    });
    let sessions: Vec<_> = (0..ACCOUNTS)
        .flat_map(|a| (0..RESOURCES).map(move |r| (a, r)))
        .map(|(a, r)| tokio::spawn(session(shared.clone(), a, r)))
        .collect();
    let started = Instant::now();
    let status_sessions = |status: &str| status.lines().last().and_then(|l| l.split("sessions ").nth(1)).and_then(|n| n.trim().parse::<usize>().ok());
    loop {
        let (_, status) = cluster.nodes[0].cli(&["cluster", "status"]).await;
        if status_sessions(&status) == Some(ACCOUNTS * RESOURCES) {
            eprintln!("{} sessions bound in {:?}:\n{status}", ACCOUNTS * RESOURCES, started.elapsed());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the sessions did not all bind:\n{status}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    for i in 0..3 {
        tokio::time::sleep(BETWEEN_RESTARTS).await;
        let stopping = Instant::now();
        shared.nodes.lock().expect("nodes")[i] = None;
        cluster.nodes[i].stop().await;
        let stopped = stopping.elapsed();
        cluster.nodes[i].start().await;
        shared.nodes.lock().expect("nodes")[i] = Some(cluster.c2s(i));
        eprintln!("node n{i}: stopped in {stopped:?}, serving again after {:?}", stopping.elapsed());
    }
    tokio::time::sleep(BETWEEN_RESTARTS).await;

    // No more messages; every session asks for a last acknowledgement. Then what is on its
    // way lands, and what went to offline storage is fetched.
    shared.sending.store(false, Ordering::Relaxed);
    let settling = Instant::now();
    while shared.settled.load(Ordering::Relaxed) < ACCOUNTS * RESOURCES && settling.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut quiet_since = (Instant::now(), shared.received.lock().expect("received").values().sum::<usize>());
    while quiet_since.0.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = shared.received.lock().expect("received").values().sum::<usize>();
        if now != quiet_since.1 {
            quiet_since = (Instant::now(), now);
        }
    }
    let live = quiet_since.1;
    shared.done.store(true, Ordering::Relaxed);
    for s in sessions {
        s.await.expect("a session panicked");
    }
    let offline: usize = futures_util::future::join_all((0..ACCOUNTS).map(|a| fetch_offline(&shared, a))).await.into_iter().sum();

    let acked = shared.acked.lock().expect("acked").clone();
    let received = shared.received.lock().expect("received").clone();
    let missing: Vec<(&String, &usize)> = acked.iter().filter(|(body, _)| !received.contains_key(*body)).collect();
    let twice = received.values().filter(|n| **n > 1).count();
    eprintln!(
        "{} messages acknowledged, {live} received live and {offline} from offline storage ({twice} more than once), {} missing, \
         {} reconnections, {} bounced; the test took {:?}",
        acked.len(),
        missing.len(),
        shared.reconnects.load(Ordering::Relaxed),
        shared.bounced.lock().expect("bounced").len(),
        began.elapsed()
    );
    assert!(acked.len() > 1000, "the load ran: {} messages acknowledged", acked.len());
    assert!(shared.reconnects.load(Ordering::Relaxed) >= ACCOUNTS * RESOURCES / 2, "sessions moved when their nodes stopped");
    assert!(missing.is_empty(), "acknowledged but never delivered (body → recipient account): {:?}", &missing[..missing.len().min(20)]);
    let bounced = shared.bounced.lock().expect("bounced").clone();
    assert!(bounced.is_empty(), "messages bounced: {:?}", &bounced[..bounced.len().min(5)]);
}
