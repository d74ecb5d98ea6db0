//! `jabberwock-load`: holds N authenticated sessions (TLS over TCP, RFC 7395 WebSocket,
//! or N of each) against an XMPP server and reports the server's memory per idle
//! session, then message throughput and latency. Only standard protocol is used
//! (STARTTLS, XEP-0077, SASL PLAIN, RFC 6121 rosters), so it drives any server the same
//! way; starting the server itself (`--server-bin`) and the archive/SM comparisons are
//! Jabberwock's.
//!
//! Phases:
//! 1. start the server (`--server-bin`) on free loopback ports with a temporary data
//!    directory, or attach to a running one (`--addr`, `--pid`); register the accounts
//!    in-band (XEP-0077) on connections of their own, unless `--no-register`;
//! 2. per transport: open the first half of the sessions, let everything settle, read the
//!    server's RSS; the second half, settle, RSS again (the slope between the two leaves
//!    out fixed costs such as the database cache);
//! 3. messages: `--pairs` × 2 active sessions send chat messages to random other active
//!    sessions at `--message-rate` for `--duration-secs`; latency is measured from a send
//!    timestamp in the body; after a drain period every message must have arrived. With
//!    both transports: TCP↔TCP, then WebSocket↔TCP, then WebSocket↔WebSocket, each on
//!    sessions of its own, and the WebSocket/TCP ratios. `--compare-archive` and
//!    `--compare-sm` run each of these phases again on the same sessions, with their
//!    message archive off, then with XEP-0198 on, and give the ratios. `--step-up`
//!    instead raises the rate step by step until the p99 latency passes a limit (the
//!    peak), then runs at half the peak. `--peer-addr` signs the odd sessions in on a
//!    second node of a cluster and sends every message between the two nodes;
//! 4. `--roster R`: before the messages, every session gets R contacts subscribed both
//!    ways (see `roster`); `--presence-rounds K`: K rounds in which every session changes
//!    its status and every contact must receive it (the presence storm).
//!
//! Exits non-zero on a protocol failure, a session that could not be opened or a lost
//! message.

mod client;
mod rooms;
mod roster;
mod server;
mod sys;
mod traffic;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::client::{Session, Target, Transport};
use crate::traffic::Pairing;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Transports {
    Tcp,
    Websocket,
    /// N sessions of each, and messages between them.
    Both,
}

impl Transports {
    fn list(self) -> &'static [Transport] {
        match self {
            Transports::Tcp => &[Transport::Tcp],
            Transports::Websocket => &[Transport::WebSocket],
            Transports::Both => &[Transport::Tcp, Transport::WebSocket],
        }
    }
}

#[derive(Parser, Debug)]
#[command(name = "jabberwock-load", about = "Load test for XMPP servers (Jabberwock's own, and any other over --addr)", version)]
struct Args {
    /// The `jabberwock` binary: the tool starts it with a temporary data directory and
    /// config on free loopback ports.
    #[arg(long, conflicts_with = "addr", required_unless_present = "addr")]
    server_bin: Option<PathBuf>,
    /// With --server-bin: the server's `[limits] archive_default` (`always`, its default,
    /// `roster` or `never`), to measure a server that archives nothing from the start.
    #[arg(long, requires = "server_bin", value_parser = ["always", "roster", "never"])]
    server_archive_default: Option<String>,
    /// The STARTTLS client port of an already running server (instead of --server-bin).
    /// It needs in-band registration on (or existing accounts and --no-register) and no
    /// per-address registration or login throttle in the way: every session comes from
    /// one address (Jabberwock: `allow_registration = true`, `[auth] max_failures` at
    /// least the number of sessions).
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// The PID of the server at --addr, for its memory and CPU figures.
    #[arg(long, requires = "addr")]
    pid: Option<u32>,
    /// Another node of a cluster serving the same accounts (its STARTTLS port): odd
    /// sessions sign in there, and every message goes from a session on one node to a
    /// random session on the other, so each crosses between the nodes. --peer-addr equal
    /// to --addr gives the same pairing on one node: the baseline. TCP only.
    #[arg(long, requires = "addr", conflicts_with = "rooms")]
    peer_addr: Option<SocketAddr>,
    /// Another process whose CPU (with its children's: PostgreSQL's backends) each message
    /// phase reports per 100k messages, as LABEL=PID: a second node, Redis, PostgreSQL.
    /// May be repeated.
    #[arg(long, value_parser = parse_watch)]
    watch_pid: Vec<(String, u32)>,
    /// The plain HTTP listener serving `/xmpp-websocket` of the server at --addr, for
    /// WebSocket sessions (127.0.0.1 must be among its `trusted_proxies`).
    #[arg(long, requires = "addr")]
    ws_addr: Option<SocketAddr>,
    /// The sessions' transport: TLS over TCP (STARTTLS), RFC 7395 WebSocket, or both
    /// (--sessions of each, measured one after the other, and messages between them).
    #[arg(long, value_enum, default_value_t = Transports::Tcp)]
    transport: Transports,
    /// The served domain.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Sessions to open and hold (of each transport).
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Sessions started per second.
    #[arg(long, default_value_t = 1_000.0)]
    ramp_per_sec: f64,
    /// Sessions negotiating at the same time, at most.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Usernames are PREFIX0, PREFIX1, …
    #[arg(long, default_value = "load")]
    user_prefix: String,
    /// The password of every account.
    #[arg(long, default_value = "load-test-password")]
    users_password: String,
    /// The accounts exist already: do not register them in-band.
    #[arg(long)]
    no_register: bool,
    /// How sessions sign in: SASL PLAIN or SCRAM-SHA-256 with a stream restart and bind,
    /// or SASL2 with a FAST token (fetched at registration, so not with --no-register)
    /// and Bind2.
    #[arg(long, value_enum, default_value_t = client::Auth::Plain, conflicts_with = "no_register")]
    auth: client::Auth,
    /// Accounts registered in-band at once, at most (before the sessions are opened).
    #[arg(long, default_value_t = 32)]
    register_concurrency: usize,
    /// Seconds to let the server settle before each memory reading.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
    /// Pairs of sessions that exchange messages (2 × pairs active sessions; each sends to
    /// random other active sessions). With both transports, each of the three message
    /// phases has its own 2 × pairs sessions: 3 × pairs of each transport.
    #[arg(long, default_value_t = 500)]
    pairs: usize,
    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 5_000.0)]
    message_rate: f64,
    /// Group chat instead of one-to-one messages: this many rooms of --room-size
    /// occupants, each occupant a session of its own (taken from the first transport's
    /// sessions), each message sent to the sender's room and delivered to all of its
    /// occupants. Rates are messages sent; deliveries are messages × room size.
    #[arg(long, default_value_t = 0)]
    rooms: usize,
    #[arg(long, default_value_t = 10, requires = "rooms")]
    room_size: usize,
    /// The XEP-0045 service. Default: conference.<domain>.
    #[arg(long, requires = "rooms")]
    muc_service: Option<String>,
    /// How long to send messages; 0 skips the message phase.
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    /// Tasks that send messages (each drives a share of the active sessions).
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Seconds to wait for messages still in flight once sending stops.
    #[arg(long, default_value_t = 10)]
    drain_secs: u64,
    /// After each message phase (archive on, the server's default), set the active
    /// sessions' XEP-0313 default to `never` and run the phase again on them.
    #[arg(long)]
    compare_archive: bool,
    /// After each message phase (and the archive-off one, with --compare-archive), enable
    /// XEP-0198 on its sessions and run it again, acknowledging every `<r/>`.
    #[arg(long)]
    compare_sm: bool,
    /// Instead of one message phase at --message-rate: start there and multiply the rate
    /// by --step-factor after each phase until the p99 latency passes --p99-limit-ms, a
    /// message is lost, or less than 90 % of the offered rate is delivered; the peak is
    /// the highest delivered rate within the limit. Then one phase at half the peak.
    #[arg(long, conflicts_with_all = ["compare_archive", "compare_sm"])]
    step_up: bool,
    #[arg(long, default_value_t = 1.5)]
    step_factor: f64,
    #[arg(long, default_value_t = 50.0)]
    p99_limit_ms: f64,
    /// --step-up: a step whose p99 alone is past the limit (nothing lost, the rate
    /// delivered) runs again at the same rate, up to this many times, before the climb
    /// stops. At low rates a step has a few hundred messages, so its p99 is nearly its
    /// maximum, and one stall of a neighbouring process would end the climb.
    #[arg(long, default_value_t = 1)]
    step_retries: usize,
    /// --step-up stops at this rate, peak or not.
    #[arg(long, default_value_t = 100_000.0)]
    max_rate: f64,
    /// Contacts per session, subscribed both ways, set up before the messages (0: none).
    #[arg(long, default_value_t = 0)]
    roster: usize,
    /// Presence storm rounds (needs --roster): every session changes its status once per
    /// round, and every contact must receive it.
    #[arg(long, default_value_t = 0, requires = "roster")]
    presence_rounds: usize,
    /// Also write the headline figures, one `key value` per line, to this file (for
    /// bench/compare.sh).
    #[arg(long)]
    summary: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let websocket = args.transport.list().contains(&Transport::WebSocket);
    if websocket && args.addr.is_some() && args.ws_addr.is_none() {
        eprintln!("error: WebSocket sessions against --addr need --ws-addr");
        return ExitCode::FAILURE;
    }
    if args.peer_addr.is_some() && args.transport != Transports::Tcp {
        eprintln!("error: --peer-addr is for TCP sessions");
        return ExitCode::FAILURE;
    }
    // Sessions, plus the server's own (inherited) needs, plus slack.
    let total = args.sessions * args.transport.list().len();
    let fd_limit = sys::raise_fd_limit(total as u64 + 1024);
    if fd_limit < total as u64 + 64 {
        eprintln!(
            "warning: the open file limit is {fd_limit}, below the {total} sessions asked for; \
             raise it (ulimit -n) or run with fewer sessions"
        );
    }
    let spawned = match &args.server_bin {
        Some(bin) => match server::spawn(bin, &args.domain, websocket, args.server_archive_default.as_deref()) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let target = Target {
        addr: spawned.as_ref().map(|s| s.addr).or(args.addr).expect("clap requires one"),
        peer_addr: args.peer_addr,
        ws_addr: spawned.as_ref().and_then(|s| s.http).or(args.ws_addr),
        domain: args.domain.clone(),
        connector: client::tls_connector(),
        password: args.users_password.clone(),
        auth: args.auth,
        tokens: Default::default(),
    };
    let pid = spawned.as_ref().map(|s| s.child.id()).or(args.pid);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let ok = runtime.block_on(run(&args, &target, pid, fd_limit));
    // Sessions are closed with the runtime; then the server, if we started it.
    drop(runtime);
    if let Some(s) = spawned {
        if !ok {
            eprintln!("server log (last lines):\n{}", server::log_tail(s.dir.path()));
        }
        s.stop();
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// A memory and CPU reading of both processes.
#[derive(Clone, Copy, Default)]
struct Reading {
    server_rss: Option<u64>,
    server_cpu: Option<f64>,
    tool_rss: Option<u64>,
    tool_cpu: Option<f64>,
    machine_busy: Option<f64>,
    at: Option<Instant>,
}

fn reading(pid: Option<u32>) -> Reading {
    let pid = pid.map(|p| p.to_string());
    Reading {
        server_rss: pid.as_deref().and_then(sys::rss_kib),
        server_cpu: pid.as_deref().and_then(sys::cpu_secs),
        tool_rss: sys::rss_kib("self"),
        tool_cpu: sys::cpu_secs("self"),
        machine_busy: sys::machine_busy_secs(),
        at: Some(Instant::now()),
    }
}

/// CPU that neither the server nor the tool used between two readings (other processes
/// on a shared machine), as a share of all cores.
fn others_row(t: &mut Table, before: &Reading, after: &Reading) {
    let (Some(all), Some(tool), Some(at0), Some(at1)) =
        (diff(before.machine_busy, after.machine_busy), diff(before.tool_cpu, after.tool_cpu), before.at, after.at)
    else {
        return;
    };
    let server = diff(before.server_cpu, after.server_cpu).unwrap_or(0.0);
    let wall = (at1 - at0).as_secs_f64().max(1e-9);
    let cores = sys::cores() as f64;
    t.row(
        "machine CPU used by other processes",
        format!(
            "{:.1} s ({:.0}% of {cores} cores; all processes: {:.0}%)",
            (all - server - tool).max(0.0),
            100.0 * (all - server - tool).max(0.0) / (wall * cores),
            100.0 * all / (wall * cores)
        ),
    );
}

fn diff<T: std::ops::Sub<Output = T> + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    Some(b? - a?)
}

async fn run(args: &Args, target: &Target, pid: Option<u32>, fd_limit: u64) -> bool {
    let mut report = Report::default();
    report.note(format!(
        "server at {} (WebSocket: {}), pid {}",
        target.addr,
        target.ws_addr.map_or("off".into(), |a| format!("ws://{a}/xmpp-websocket")),
        pid.map_or("unknown".into(), |p| p.to_string())
    ));
    if let Some(peer) = target.peer_addr {
        report.note(format!("odd sessions at {peer}: every message goes between {} and {peer}", target.addr));
    }
    report.note(format!(
        "open file limit: tool {fd_limit}, server {}",
        pid.and_then(|p| sys::fd_limit_of(&p.to_string())).map_or("unknown".into(), |l| l.to_string())
    ));

    // Settle, then the idle baseline; one batch of sessions per transport, each with
    // accounts of its own.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut last = reading(pid);
    let mut batches: Vec<(Transport, Vec<Session>, Memory)> = Vec::new();
    let mut ok = true;
    for (k, &transport) in args.transport.list().iter().enumerate() {
        let users = k * args.sessions..(k + 1) * args.sessions;
        if !args.no_register {
            let failures = register_batch(args, target, transport, users.clone(), &mut report).await;
            if !note_failures(&mut report, "registration", &failures) {
                ok = false;
                break;
            }
            last = reading(pid);
        }
        let (mut sessions, memory, failures) =
            open_batch(args, target, transport, users, pid, last, &mut report).await;
        last = memory.after;
        ok &= note_failures(&mut report, "session", &failures);
        if ok && args.roster > 0 {
            let back;
            (back, ok) = rosters_and_storm(args, transport, sessions, pid, &mut report).await;
            sessions = back;
            last = reading(pid);
        }
        batches.push((transport, sessions, memory));
        if !ok {
            break;
        }
    }

    // Messages: each phase takes its active sessions off the front of the pools; the rest
    // stay idle.
    let mut phases: Vec<(&str, f64)> = Vec::new();
    let mut comparisons: Vec<Table> = Vec::new();
    if args.duration_secs > 0 && ok {
        let mut pools: Vec<(Transport, Vec<Session>)> =
            batches.iter_mut().map(|(t, s, _)| (*t, std::mem::take(s))).collect();
        let p = args.pairs;
        let mut take = |t: Transport, k: usize| -> Vec<Session> {
            let pool = &mut pools.iter_mut().find(|(pt, _)| *pt == t).expect("pool of each transport").1;
            pool.drain(..k.min(pool.len())).collect()
        };
        let mut plans: Vec<(&str, Pairing)> = match args.transport {
            _ if args.rooms > 0 => Vec::new(),
            Transports::Tcp if args.peer_addr.is_some() => {
                let (even, odd) = take(Transport::Tcp, 2 * p).into_iter().partition(|s| s.index % 2 == 0);
                vec![("TCP, node ↔ peer", Pairing::Across(even, odd))]
            }
            Transports::Tcp => vec![("TCP↔TCP", Pairing::Among(take(Transport::Tcp, 2 * p)))],
            Transports::Websocket => vec![("WebSocket↔WebSocket", Pairing::Among(take(Transport::WebSocket, 2 * p)))],
            Transports::Both => vec![
                ("TCP↔TCP", Pairing::Among(take(Transport::Tcp, 2 * p))),
                ("WebSocket↔TCP", Pairing::Across(take(Transport::WebSocket, p), take(Transport::Tcp, p))),
                ("WebSocket↔WebSocket", Pairing::Among(take(Transport::WebSocket, 2 * p))),
            ],
        };
        if args.rooms > 0 {
            let transport = args.transport.list()[0];
            let mut sessions = take(transport, args.rooms * args.room_size);
            let service = args.muc_service.clone().unwrap_or_else(|| format!("conference.{}", args.domain));
            match enter_rooms(args, &mut sessions, &service, pid, &mut report).await {
                Ok(()) => plans.push(("group chat", Pairing::Rooms { sessions, size: args.room_size, service })),
                Err(e) => {
                    report.note(format!("entering the rooms: {e}"));
                    ok = false;
                }
            }
        }
        for (k, (name, pairing)) in plans.into_iter().enumerate() {
            let usable = match &pairing {
                Pairing::Among(s) => s.len() >= 2,
                Pairing::Across(a, b) => !a.is_empty() && !b.is_empty(),
                Pairing::Rooms { sessions, size, .. } => sessions.len() >= *size && sessions.len() % size == 0,
            };
            if !usable {
                report.note(format!("{name}: not enough sessions, skipped"));
                continue;
            }
            if k > 0 {
                // The previous phase's sessions are closing.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if args.step_up {
                ok &= step_up(args, name, pairing, pid, &mut report).await;
                if !ok {
                    break;
                }
                continue;
            }
            let (base, pairing) = message_phase(args, name, pairing, args.message_rate, pid, &mut report).await;
            ok &= base.ok;
            figures_of(&mut report, "messages", &base);
            if let Some(cpu) = base.cpu_per_100k {
                phases.push((name, cpu));
            }
            if ok && (args.compare_archive || args.compare_sm) {
                let (table, phase_ok) = compare(args, name, base, pairing, pid, &mut report).await;
                comparisons.push(table);
                ok &= phase_ok;
            }
            if !ok {
                break;
            }
        }
        // The idle sessions must still be there.
        let idle: Vec<&Session> = pools.iter().flat_map(|(_, s)| s).collect();
        let closed = idle.iter().filter(|s| s.closed_by_peer()).count();
        report.note(format!("idle sessions closed by the server during the run: {closed} of {}", idle.len()));
        if closed > 0 {
            ok = false;
        }
    }

    if let [(Transport::Tcp, _, tcp), (Transport::WebSocket, _, ws)] = batches.as_slice() {
        let mut t = Table::new("WebSocket against TCP (server)");
        let ratio = |name: &str, t: &mut Table, tcp: Option<f64>, ws: Option<f64>, unit: &str| {
            if let (Some(a), Some(b)) = (tcp, ws) {
                t.row(name, format!("{b:.1} {unit} / {a:.1} {unit} = {:.2}×", b / a));
            }
        };
        ratio(
            "RSS per idle session, (after − before) / N: WebSocket / TCP",
            &mut t,
            tcp.per_session,
            ws.per_session,
            "KiB",
        );
        ratio("RSS per idle session, slope: WebSocket / TCP", &mut t, tcp.slope, ws.slope, "KiB");
        ratio("CPU per session setup: WebSocket / TCP", &mut t, tcp.setup_ms, ws.setup_ms, "ms");
        let cpu = |name: &str| phases.iter().find(|(n, _)| *n == name).map(|(_, c)| *c);
        for name in ["WebSocket↔TCP", "WebSocket↔WebSocket"] {
            if let (Some(a), Some(b)) = (cpu("TCP↔TCP"), cpu(name)) {
                t.row(
                    format!("CPU per 100k messages, {name} / TCP↔TCP"),
                    format!("{b:.2} s / {a:.2} s = {:.2}×", b / a),
                );
            }
        }
        report.tables.push(t);
    }
    report.tables.extend(comparisons);
    report.note(if ok { "result: OK".to_owned() } else { "result: FAILED".to_owned() });
    report.figure("ok", u8::from(ok));
    println!("{report}");
    if let Some(path) = &args.summary {
        if let Err(e) = std::fs::write(path, report.figures_text()) {
            eprintln!("error: writing {}: {e}", path.display());
            return false;
        }
    }
    ok
}

/// Every session of `sessions` enters its room: `--rooms` rooms of `--room-size`. Adds a
/// table with the server's memory per occupant.
async fn enter_rooms(args: &Args, sessions: &mut [Session], service: &str, pid: Option<u32>, report: &mut Report) -> Result<(), String> {
    if sessions.len() < args.rooms * args.room_size {
        return Err(format!("{} rooms of {} need {} sessions, {} are up", args.rooms, args.room_size, args.rooms * args.room_size, sessions.len()));
    }
    let before = reading(pid);
    let t0 = Instant::now();
    let entered = tokio::time::timeout(Duration::from_secs(300), rooms::enter_all(sessions, args.room_size, service)).await;
    entered.map_err(|_| "not done within 300 s".to_owned())??;
    let secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let after = reading(pid);
    let mut t = Table::new(&format!("group chat: {} rooms of {} on {service}", args.rooms, args.room_size));
    t.row("occupants", sessions.len().to_string());
    t.row("time to enter", format!("{secs:.1} s"));
    if let (Some(a), Some(b)) = (before.server_rss, after.server_rss) {
        let per = (b as f64 - a as f64) / sessions.len() as f64;
        t.row("server RSS per occupant, (after − before) / occupants", format!("{per:.1} KiB"));
        report.figure("rss_per_occupant_kib", format!("{per:.1}"));
    }
    report.tables.push(t);
    Ok(())
}

/// The server's memory figures for one batch of sessions.
struct Memory {
    /// The reading once the batch is up and settled.
    after: Reading,
    /// KiB per session, (after − before) / N.
    per_session: Option<f64>,
    /// KiB per session between N/2 and N.
    slope: Option<f64>,
    /// Server CPU per session set up, in ms.
    setup_ms: Option<f64>,
}

/// Opens the sessions for accounts `users` over `transport` in two halves, reading the
/// memory after each; `start` is the reading before. Adds the memory table.
async fn open_batch(
    args: &Args,
    target: &Target,
    transport: Transport,
    users: std::ops::Range<usize>,
    pid: Option<u32>,
    start: Reading,
    report: &mut Report,
) -> (Vec<Session>, Memory, Vec<String>) {
    let n = users.len();
    let mut sessions: Vec<Session> = Vec::with_capacity(n);
    let mut failures: Vec<String> = Vec::new();
    let half = users.start + n / 2;
    let mut readings = vec![(0usize, start)];
    let mut setup_time = Duration::ZERO;
    for range in [users.start..half, half..users.end] {
        if range.is_empty() {
            continue;
        }
        let t0 = Instant::now();
        let (opened, errs) =
            open_sessions(target, transport, &args.user_prefix, range, args.ramp_per_sec, args.concurrency).await;
        setup_time += t0.elapsed();
        sessions.extend(opened);
        let failed = !errs.is_empty();
        failures.extend(errs);
        if failed {
            break;
        }
        tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
        readings.push((sessions.len(), reading(pid)));
    }
    sessions.sort_by_key(|s| s.index);
    let established = sessions.len();
    let after = readings.last().expect("start reading").1;
    let mut memory = Memory { after, per_session: None, slope: None, setup_ms: None };

    let mut t = Table::new(&format!("{transport} sessions and memory"));
    t.row("sessions established", format!("{established} of {n}"));
    let per_sec = established as f64 / setup_time.as_secs_f64();
    t.row("setup time (all sessions)", format!("{:.1} s, {per_sec:.0} sessions/s", setup_time.as_secs_f64()));
    let key = transport.to_string().to_lowercase();
    report.figure(format!("{key}_sessions"), established);
    report.figure(format!("{key}_logins_per_sec"), format!("{per_sec:.0}"));
    if let (Some(cpu), true) = (diff(start.server_cpu, after.server_cpu), established > 0) {
        let settle = (readings.len() - 1) as u64 * args.idle_secs;
        let setup_ms = cpu * 1e3 / established as f64;
        memory.setup_ms = Some(setup_ms);
        t.row(
            "server CPU per session setup",
            format!("{setup_ms:.2} ms (TLS + {} + bind + presence; {cpu:.1} s in all, {settle} s of it idle)", match args.auth {
                client::Auth::Plain => "PLAIN",
                client::Auth::Scram => "SCRAM-SHA-256",
                client::Auth::Fast => "SASL2 FAST",
            }),
        );
        report.figure(format!("{key}_setup_cpu_ms"), format!("{setup_ms:.2}"));
    }
    if let Some(cpu) = diff(start.tool_cpu, after.tool_cpu) {
        t.row("tool CPU during setup", format!("{cpu:.1} s"));
    }
    others_row(&mut t, &start, &after);
    if let (Some(before), Some(rss)) = (start.server_rss, after.server_rss) {
        t.row("server RSS before", kib(before));
        t.row(format!("server RSS with {established} more idle {transport} sessions"), kib(rss));
        if established > 0 {
            let per = (rss as f64 - before as f64) / established as f64;
            memory.per_session = Some(per);
            report.figure(format!("{key}_rss_per_session_kib"), format!("{per:.1}"));
            t.row("server RSS per idle session (after − before) / N", format!("{per:.1} KiB"));
        }
        if let [_, (n1, r1), (n2, r2)] = readings.as_slice() {
            if let (Some(a), Some(b)) = (r1.server_rss, r2.server_rss) {
                let slope = (b as f64 - a as f64) / (n2 - n1) as f64;
                memory.slope = Some(slope);
                report.figure(format!("{key}_rss_slope_kib"), format!("{slope:.1}"));
                t.row(format!("server RSS per idle session, slope {n1}→{n2}"), format!("{slope:.1} KiB"));
            }
        }
        if let Some(p) = pid {
            if let Some(hwm) = sys::hwm_kib(&p.to_string()) {
                t.row("server peak RSS (VmHWM)", kib(hwm));
            }
            if let Some(fds) = sys::open_fds(&p.to_string()) {
                t.row("server open fds", fds.to_string());
            }
        }
    }
    if let (Some(before), Some(rss)) = (start.tool_rss, after.tool_rss) {
        t.row(
            "tool RSS",
            format!("{} ({:.1} KiB per session)", kib(rss), (rss as f64 - before as f64) / established.max(1) as f64),
        );
    }
    report.tables.push(t);
    (sessions, memory, failures)
}

/// The figures of one message phase that the comparisons set side by side.
#[derive(Clone, Copy)]
struct Summary {
    /// Every message arrived, no bounce, no failure.
    ok: bool,
    lost: i64,
    delivered_per_sec: f64,
    p50_us: Option<u32>,
    p99_us: Option<u32>,
    max_us: Option<u32>,
    /// Server CPU seconds per 100k messages.
    cpu_per_100k: Option<f64>,
    tool_cpu_per_100k: Option<f64>,
}

/// One message phase on the sessions of `pairing`. Adds its table; returns its summary
/// and the sessions (unless some were lost to a failure).
async fn message_phase(
    args: &Args,
    name: &str,
    pairing: Pairing,
    rate: f64,
    pid: Option<u32>,
    report: &mut Report,
) -> (Summary, Option<Pairing>) {
    let active = pairing.len();
    let fanout = pairing.fanout();
    let plan = traffic::Plan {
        rate,
        duration: Duration::from_secs(args.duration_secs),
        senders: args.senders,
        drain: Duration::from_secs(args.drain_secs),
    };
    let watched = || args.watch_pid.iter().map(|(_, p)| sys::tree_cpu_secs(*p)).collect::<Vec<_>>();
    let (before, watched_before) = (reading(pid), watched());
    // Progress on stderr, like the session ramp's: a profiler waits for this line.
    eprintln!("… messages {name}: {rate:.0} msg/s for {} s", args.duration_secs);
    let (out, back) = traffic::run(pairing, &plan).await;
    let (after, watched_after) = (reading(pid), watched());
    let mut t = Table::new(&format!(
        "messages {name}: {active} active sessions, {rate:.0} msg/s offered for {} s, {} sender tasks",
        args.duration_secs, plan.senders
    ));
    t.row("sent", out.sent.to_string());
    t.row("send rate achieved", format!("{:.0} msg/s", out.sent as f64 / out.send_time.as_secs_f64()));
    if out.acks > 0 {
        t.row("XEP-0198 acks sent (answers to <r/>)", out.acks.to_string());
    }
    let what = if fanout > 1 { "deliveries" } else { "messages" };
    let summary = deliveries(&mut t, &out, &before, &after, what);
    for (((label, _), a), b) in args.watch_pid.iter().zip(watched_before).zip(watched_after) {
        if let Some(cpu) = diff(a, b) {
            let per_100k = cpu * 100_000.0 / out.received.max(1) as f64;
            t.row(format!("{label} CPU"), format!("{cpu:.2} s, {per_100k:.2} s per 100k {what}"));
            report.figure(format!("{label}_cpu_per_100k"), format!("{per_100k:.2}"));
        }
    }
    report.tables.push(t);
    for f in out.failures.iter().take(10) {
        report.note(format!("{name} message phase failure: {f}"));
    }
    (summary, back)
}

/// The delivery figures of a phase (messages or presence updates), from the readings
/// before and after it: rows of `t`, and its summary.
fn deliveries(t: &mut Table, out: &traffic::Outcome, before: &Reading, after: &Reading, what: &str) -> Summary {
    let lost = out.expected as i64 - out.received as i64 - out.errors as i64;
    t.row("deliveries expected", out.expected.to_string());
    t.row("received", out.received.to_string());
    t.row("lost (expected − received − bounced, after the drain)", lost.to_string());
    t.row("bounced (type='error')", out.errors.to_string());
    let delivered_per_sec = out.received as f64 / out.delivery_time.as_secs_f64().max(1e-9);
    t.row("delivered rate", format!("{delivered_per_sec:.0} {what}/s (first send to last receipt)"));
    let percentile = |p: f64| -> Option<u32> {
        let n = out.latencies_us.len();
        (n > 0).then(|| out.latencies_us[((n as f64 - 1.0) * p).round() as usize])
    };
    let pct = |p: f64| percentile(p).map_or("-".into(), ms);
    t.row("latency p50 / p90 / p99", format!("{} / {} / {}", pct(0.5), pct(0.9), pct(0.99)));
    t.row("latency p99.9 / max", format!("{} / {}", pct(0.999), pct(1.0)));
    let per_100k = |cpu: f64| cpu * 100_000.0 / out.received.max(1) as f64;
    let wall = match (before.at, after.at) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 1.0,
    };
    let server_cpu = diff(before.server_cpu, after.server_cpu);
    let tool_cpu = diff(before.tool_cpu, after.tool_cpu);
    for (who, cpu) in [("server", server_cpu), ("tool", tool_cpu)] {
        if let Some(cpu) = cpu {
            t.row(
                format!("{who} CPU"),
                format!(
                    "{cpu:.2} s ({:.0}% of one core), {:.2} s per 100k {what}",
                    100.0 * cpu / wall,
                    per_100k(cpu)
                ),
            );
        }
    }
    others_row(t, before, after);
    if let Some(rss) = after.server_rss {
        t.row(format!("server RSS after the {what}"), kib(rss));
    }
    Summary {
        ok: lost == 0 && out.errors == 0 && out.failures.is_empty(),
        lost,
        delivered_per_sec,
        p50_us: percentile(0.5),
        p99_us: percentile(0.99),
        max_us: percentile(1.0),
        cpu_per_100k: server_cpu.map(per_100k),
        tool_cpu_per_100k: tool_cpu.map(per_100k),
    }
}

/// `--compare-archive` and `--compare-sm`: runs phase `name` again on its sessions
/// (`base` being its figures), with the archive off, then with XEP-0198 on (archive off
/// too with both flags: each is compared with the phase just before it). Returns the
/// table of ratios and whether everything went well.
async fn compare(
    args: &Args,
    name: &str,
    base: Summary,
    pairing: Option<Pairing>,
    pid: Option<u32>,
    report: &mut Report,
) -> (Table, bool) {
    let mut t = Table::new(&format!("{name}: archive and stream management"));
    let (mut before, mut pairing) = (base, pairing);
    // (asked for, XEP-0198 rather than the archive, the two phases' names)
    let steps = [(args.compare_archive, false, "archive on", "archive off"), (args.compare_sm, true, "no SM", "SM")];
    for (_, sm, without, with) in steps.into_iter().filter(|s| s.0) {
        let Some(mut sessions) = pairing.take() else {
            report.note(format!("{name}: sessions lost in the previous phase, comparisons skipped"));
            return (t, false);
        };
        // All sessions at once, each waiting for its own reply.
        let set_up = futures_util::future::try_join_all(sessions.sessions_mut().enumerate().map(|(i, s)| async move {
            if sm {
                s.enable_sm().await
            } else {
                s.iq_set(&format!("prefs{i}"), "<prefs xmlns='urn:xmpp:mam:2' default='never'/>").await
            }
        }))
        .await;
        if let Err(e) = set_up {
            report.note(format!("{name}, {with}: {e}"));
            return (t, false);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (after, back) =
            message_phase(args, &format!("{name}, {with}"), sessions, args.message_rate, pid, report).await;
        pairing = back;
        let ratio = |a: Option<f64>, b: Option<f64>, unit: &str| match (a, b) {
            (Some(a), Some(b)) => format!("{a:.2} {unit} / {b:.2} {unit} = {:.2}×", a / b),
            _ => "-".into(),
        };
        let lat = |s: &Summary| format!("{} / {}", s.p50_us.map_or("-".into(), ms), s.p99_us.map_or("-".into(), ms));
        // Archive: on / off (the cost of archiving); SM: with / without.
        let (num, den, label) =
            if sm { (&after, &before, "SM / no SM") } else { (&before, &after, "archive on / off") };
        t.row(format!("server CPU per 100k messages, {label}"), ratio(num.cpu_per_100k, den.cpu_per_100k, "s"));
        t.row(
            format!("delivered rate, {without} / {with}"),
            format!("{:.0} / {:.0} msg/s", before.delivered_per_sec, after.delivered_per_sec),
        );
        t.row(format!("latency p50 / p99, {without}"), lat(&before));
        t.row(format!("latency p50 / p99, {with}"), lat(&after));
        t.row(format!("lost, {without} / {with}"), format!("{} / {}", before.lost, after.lost));
        if !after.ok {
            return (t, false);
        }
        before = after;
    }
    (t, true)
}

/// Runs `op` for every number of `range` (one account or session each), started at
/// `ramp` per second (0: as fast as `concurrency` allows), at most `concurrency` at once;
/// `what` names the results in the progress lines. Stops starting new ones after too
/// many failures.
async fn run_many<T, F, Fut>(
    range: std::ops::Range<usize>,
    ramp: f64,
    concurrency: usize,
    what: &str,
    op: F,
) -> (Vec<T>, Vec<String>)
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
{
    let total = range.len();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut done = Vec::with_capacity(total);
    let mut errors = Vec::new();
    let t0 = tokio::time::Instant::now();
    let max_errors = (total / 100).max(10);
    let mut collect = |r: Result<Result<T, String>, tokio::task::JoinError>, done: &mut Vec<T>| match r {
        Ok(Ok(s)) => {
            done.push(s);
            if done.len().is_multiple_of(1000) {
                eprintln!("… {} {what}", done.len());
            }
        }
        Ok(Err(e)) => errors.push(e),
        Err(e) => errors.push(format!("task: {e}")),
    };
    for (k, i) in range.enumerate() {
        if ramp > 0.0 {
            tokio::time::sleep_until(t0 + Duration::from_secs_f64(k as f64 / ramp)).await;
        }
        let permit = semaphore.clone().acquire_owned().await.expect("semaphore open");
        let job = op(i);
        tasks.spawn(async move {
            let r = job.await;
            drop(permit);
            r
        });
        while let Some(r) = tasks.try_join_next() {
            collect(r, &mut done);
        }
        if done.len() + tasks.len() < k + 1 && k + 1 - done.len() - tasks.len() > max_errors {
            break;
        }
    }
    while let Some(r) = tasks.join_next().await {
        collect(r, &mut done);
    }
    (done, errors)
}

/// Opens sessions `range` (see [`run_many`]).
async fn open_sessions(
    target: &Target,
    transport: Transport,
    prefix: &str,
    range: std::ops::Range<usize>,
    ramp: f64,
    concurrency: usize,
) -> (Vec<Session>, Vec<String>) {
    run_many(range, ramp, concurrency, "sessions up", |i| {
        let (target, prefix) = (target.for_session(i), prefix.to_owned());
        async move { client::establish_within(&target, transport, &prefix, i, Duration::from_secs(300)).await }
    })
    .await
}

/// Registers the accounts `users` in-band, `--register-concurrency` at once. Adds a
/// table; returns the failures.
async fn register_batch(
    args: &Args,
    target: &Target,
    transport: Transport,
    users: std::ops::Range<usize>,
    report: &mut Report,
) -> Vec<String> {
    let n = users.len();
    let t0 = Instant::now();
    let (done, failures) = run_many(users, 0.0, args.register_concurrency, "accounts registered", |i| {
        let (target, prefix) = (target.clone(), args.user_prefix.clone());
        async move {
            let r = tokio::time::timeout(Duration::from_secs(300), client::register(&target, transport, &prefix, i)).await;
            r.unwrap_or_else(|_| Err("not done within 300 s".into())).map_err(|e| format!("{transport} {prefix}{i}: {e}"))
        }
    })
    .await;
    let secs = t0.elapsed().as_secs_f64();
    let mut t = Table::new(&format!("{transport} accounts (in-band registration, existing ones kept)"));
    t.row("accounts registered or existing", format!("{} of {n}", done.len()));
    t.row("time", format!("{secs:.1} s, {:.0} accounts/s", done.len() as f64 / secs));
    report.tables.push(t);
    failures
}

/// Notes the first failures of a step; true when there were none.
fn note_failures(report: &mut Report, what: &str, failures: &[String]) -> bool {
    for f in failures.iter().take(10) {
        report.note(format!("{what} failure: {f}"));
    }
    if failures.len() > 10 {
        report.note(format!("… {} {what} failures in all", failures.len()));
    }
    failures.is_empty()
}

/// `--roster` and `--presence-rounds` on a batch of sessions: the subscriptions, then the
/// storm. Returns the sessions and whether all went well.
async fn rosters_and_storm(
    args: &Args,
    transport: Transport,
    sessions: Vec<Session>,
    pid: Option<u32>,
    report: &mut Report,
) -> (Vec<Session>, bool) {
    let n = sessions.len();
    if n < 2 {
        return (sessions, true);
    }
    let contacts_each = roster::contacts(0, n, args.roster).len();
    let mut t = Table::new(&format!("{transport} rosters: {contacts_each} contacts each, subscribed both ways"));
    let before = reading(pid);
    let t0 = Instant::now();
    let (sessions, result) = roster::befriend(sessions, args.roster, Duration::from_secs(900)).await;
    let secs = t0.elapsed().as_secs_f64();
    let after = reading(pid);
    match result {
        Ok(b) => {
            t.row("subscriptions asked for", b.requested.to_string());
            t.row("sessions whose roster was complete already", format!("{} of {n}", b.already));
            t.row("time", format!("{secs:.1} s"));
            if let Some(cpu) = diff(before.server_cpu, after.server_cpu) {
                t.row("server CPU", format!("{cpu:.1} s"));
            }
            report.tables.push(t);
        }
        Err(e) => {
            report.tables.push(t);
            report.note(format!("rosters: {e}"));
            return (sessions, false);
        }
    }
    if args.presence_rounds == 0 {
        return (sessions, true);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = reading(pid);
    let out = traffic::storm(sessions, contacts_each, args.presence_rounds, Duration::from_secs(args.drain_secs)).await;
    let after = reading(pid);
    let mut t = Table::new(&format!(
        "{transport} presence storm: {n} sessions × {} rounds, each status to {contacts_each} contacts",
        args.presence_rounds
    ));
    t.row("status updates sent", out.sent.to_string());
    let s = deliveries(&mut t, &out, &before, &after, "presences");
    report.tables.push(t);
    note_failures(report, "presence storm", &out.failures);
    report.figure("presence_per_sec", format!("{:.0}", s.delivered_per_sec));
    figures_of(report, "presence", &s);
    (out.sessions.unwrap_or_default(), s.ok)
}

/// `--step-up` on one pairing: rising rates until the limit, then half the peak. Adds a
/// table; returns whether every phase went well.
async fn step_up(args: &Args, name: &str, pairing: Pairing, pid: Option<u32>, report: &mut Report) -> bool {
    let limit_us = args.p99_limit_ms * 1000.0;
    let mut t = Table::new(&format!("{name}: peak rate with p99 ≤ {} ms", args.p99_limit_ms));
    let fanout = pairing.fanout() as f64;
    let unit = if fanout > 1.0 { "deliveries/s" } else { "msg/s delivered" };
    let (mut rate, mut peak, mut pairing, mut ok) = (args.message_rate, None::<Summary>, Some(pairing), true);
    let step_row = |t: &mut Table, label: String, s: &Summary| {
        let lat = |v: Option<u32>| v.map_or("-".into(), ms);
        t.row(
            label,
            format!(
                "{:.0} {unit}, p50 / p99 / max {} / {} / {}, lost {}, server CPU {:.2} s per 100k",
                s.delivered_per_sec,
                lat(s.p50_us),
                lat(s.p99_us),
                lat(s.max_us),
                s.lost,
                s.cpu_per_100k.unwrap_or(f64::NAN)
            ),
        );
    };
    let mut retries = 0;
    while let Some(p) = pairing.take() {
        let label = if retries > 0 { format!("{rate:.0} msg/s (again)") } else { format!("{rate:.0} msg/s") };
        let (s, back) = message_phase(args, &format!("{name} at {label}"), p, rate, pid, report).await;
        pairing = back;
        step_row(&mut t, format!("{label} offered"), &s);
        let delivered = s.ok && s.delivered_per_sec >= 0.9 * rate * fanout;
        let within = delivered && s.p99_us.is_some_and(|p| f64::from(p) <= limit_us);
        if delivered && !within && retries < args.step_retries {
            // Only the latency missed: measure this rate again before stopping.
            retries += 1;
            continue;
        }
        ok &= s.ok;
        retries = 0;
        if within && peak.is_none_or(|p| s.delivered_per_sec > p.delivered_per_sec) {
            peak = Some(s);
        }
        if !within || rate * args.step_factor > args.max_rate {
            break;
        }
        rate *= args.step_factor;
    }
    let Some(peak) = peak else {
        t.row("peak", "none: the first rate was past the limit already");
        report.tables.push(t);
        return false;
    };
    t.row("peak (delivered, within the limit)", format!("{:.0} {unit}", peak.delivered_per_sec));
    report.figure("peak_msgs_per_sec", format!("{:.0}", peak.delivered_per_sec));
    figures_of(report, "peak", &peak);
    if let Some(p) = pairing.take() {
        // The rate offered is messages; a room delivers each to all its occupants.
        let half = peak.delivered_per_sec / 2.0 / fanout;
        let (s, _) = message_phase(args, &format!("{name} at half the peak"), p, half, pid, report).await;
        ok &= s.ok;
        step_row(&mut t, format!("half the peak, {half:.0} msg/s offered"), &s);
        report.figure("half_peak_rate", format!("{half:.0}"));
        figures_of(report, "half_peak", &s);
    }
    report.tables.push(t);
    ok
}

/// `--watch-pid LABEL=PID`.
fn parse_watch(s: &str) -> Result<(String, u32), String> {
    let (label, pid) = s.split_once('=').ok_or("expected LABEL=PID")?;
    Ok((label.to_owned(), pid.parse().map_err(|e| format!("PID: {e}"))?))
}

/// The summary figures of a phase, keys prefixed with `prefix`.
fn figures_of(report: &mut Report, prefix: &str, s: &Summary) {
    let ms_of = |v: Option<u32>| v.map_or("-".into(), |us| format!("{:.2}", f64::from(us) / 1000.0));
    report.figure(format!("{prefix}_p50_ms"), ms_of(s.p50_us));
    report.figure(format!("{prefix}_p99_ms"), ms_of(s.p99_us));
    report.figure(format!("{prefix}_max_ms"), ms_of(s.max_us));
    report.figure(format!("{prefix}_lost"), s.lost);
    let cpu = |v: Option<f64>| v.map_or("-".into(), |c| format!("{c:.2}"));
    report.figure(format!("{prefix}_server_cpu_per_100k"), cpu(s.cpu_per_100k));
    report.figure(format!("{prefix}_tool_cpu_per_100k"), cpu(s.tool_cpu_per_100k));
}

fn kib(v: u64) -> String {
    if v >= 10 * 1024 { format!("{:.1} MiB", v as f64 / 1024.0) } else { format!("{v} KiB") }
}

fn ms(us: u32) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

#[derive(Default)]
struct Report {
    tables: Vec<Table>,
    notes: Vec<String>,
    /// The headline figures for `--summary`.
    figures: Vec<(String, String)>,
}

impl Report {
    fn note(&mut self, s: String) {
        self.notes.push(s);
    }

    fn figure(&mut self, key: impl Into<String>, value: impl ToString) {
        self.figures.push((key.into(), value.to_string()));
    }

    fn figures_text(&self) -> String {
        self.figures.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
    }
}

struct Table {
    title: String,
    rows: Vec<(String, String)>,
}

impl Table {
    fn new(title: &str) -> Self {
        Table { title: title.to_owned(), rows: Vec::new() }
    }

    fn row(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.rows.push((k.into(), v.into()));
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        for t in &self.tables {
            let _ = writeln!(s, "\n### {}\n", t.title);
            let w = t.rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
            let _ = writeln!(s, "| {:w$} | value |", "what");
            let _ = writeln!(s, "| {} | --- |", "-".repeat(w));
            for (k, v) in &t.rows {
                let pad = w - k.chars().count();
                let _ = writeln!(s, "| {k}{} | {v} |", " ".repeat(pad));
            }
        }
        s.push('\n');
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        f.write_str(&s)
    }
}
