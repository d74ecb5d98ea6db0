//! The chat archive's write load: every message archived twice (sender's and recipient's
//! archive) by one writer committing a batch per gathering window, among many accounts in
//! random pairs, into an archive that already holds messages. Reports the CPU the process
//! spent (SQLite's threads included) per 100k archived messages, and the rows per second.
//!
//! `cargo bench -p jabberwock-storage --bench archive_write`. ARCHIVE_WRITE_ACCOUNTS (2000),
//! ARCHIVE_WRITE_MESSAGES (100 000), ARCHIVE_WRITE_PER_BATCH (80 messages: 20 ms at
//! 4000 msg/s) and ARCHIVE_WRITE_PRELOAD (200 000 messages written before measuring) change
//! the shape. CPU time is the stable figure on a shared machine; quote ratios between builds.

use std::time::Instant;

use jabberwock_storage::{ArchiveAppend, Store};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// User plus system CPU seconds of this process, from /proc/self/stat (clock ticks).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("stat") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A small deterministic generator: the same run every time, no dependency.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Both archive rows of one message from `from` to `to`, as the server's archive writer
/// queues them.
fn message_rows(n: usize, from: usize, to: usize, stamp_us: i64) -> [ArchiveAppend; 2] {
    let body = format!(
        "<message xmlns='jabber:client' type='chat' from='user{from}@bench.example/load' to='user{to}@bench.example' \
         id='m{n}'><body>{n} 1733500000000000 some text that a person would type</body>\
         <active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    );
    let row = |owner: usize, with: usize, side: &str| ArchiveAppend {
        host: "bench.example".into(),
        user: format!("user{owner}"),
        store: "mam".into(),
        id: format!("{side}{n:012}"),
        stamp_us,
        with: format!("user{with}@bench.example"),
        payload: body.clone().into_bytes(),
    };
    [row(from, to, "s"), row(to, from, "r")]
}

async fn write(store: &Store, random: &mut Random, first: usize, messages: usize, accounts: usize, per_batch: usize) {
    let mut batch = Vec::with_capacity(per_batch * 2);
    for n in first..first + messages {
        let from = random.below(accounts);
        let to = (from + 1 + random.below(accounts - 1)) % accounts;
        batch.extend(message_rows(n, from, to, 1_733_500_000_000_000 + n as i64 * 250));
        if batch.len() >= per_batch * 2 {
            store.archive_append_batch(&batch).await.expect("append");
            batch.clear();
        }
    }
    store.archive_append_batch(&batch).await.expect("append");
}

#[tokio::main]
async fn main() {
    let accounts = env("ARCHIVE_WRITE_ACCOUNTS", 2000);
    let messages = env("ARCHIVE_WRITE_MESSAGES", 100_000);
    let per_batch = env("ARCHIVE_WRITE_PER_BATCH", 80);
    let preload = env("ARCHIVE_WRITE_PRELOAD", 200_000);
    // Under `cargo test`, a smoke run only.
    let (messages, preload) = if std::env::args().any(|a| a == "--bench") { (messages, preload) } else { (2000, 2000) };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&format!("sqlite://{}", dir.path().join("bench.db").display())).await.expect("open");
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    write(&store, &mut random, 0, preload, accounts, 1024).await;
    for round in 1..=3 {
        let (cpu, wall) = (cpu_secs(), Instant::now());
        write(&store, &mut random, preload + (round - 1) * messages, messages, accounts, per_batch).await;
        let (cpu, wall) = (cpu_secs() - cpu, wall.elapsed().as_secs_f64());
        println!(
            "round {round}: {messages} messages in batches of {per_batch}: {:.2} CPU-s per 100k messages, {:.0} messages/s",
            cpu * 100_000.0 / messages as f64,
            messages as f64 / wall
        );
    }
    store.close().await;
}
