//! Archive queries at scale: the same queries against a 10k-item and a 1M-item archive of
//! one user, in one run, so the figure to quote is how much slower the large one is; on
//! SQLite, and in the same run on PostgreSQL when `ARCHIVE_BENCH_POSTGRES` names a server
//! (`postgres://user@host:port`, without a database: the bench creates its own and drops
//! it), so the backends compare as ratios from one run.
//!
//! `cargo bench -p jabberwock-storage --bench archive` (ARCHIVE_BENCH_ITEMS changes the
//! large size). Plain std timing: the median of 25 runs per query after 3 warm-ups.

use std::time::{Duration, Instant};

use jabberwock_storage::{ArchiveAppend, ArchiveQuery, Store, UserRef};
use sqlx::migrate::MigrateDatabase;

const PARTNERS: usize = 10;

async fn fill(store: &Store, user: &str, items: usize) {
    let mut batch = Vec::with_capacity(4096);
    for i in 0..items {
        batch.push(ArchiveAppend {
            host: "bench.example".into(),
            user: user.into(),
            store: "mam".into(),
            id: format!("{user}-{i:08}"),
            stamp_us: i as i64 * 1000,
            with: format!("partner{}@example.org", i % PARTNERS),
            payload: format!("<message xmlns='jabber:client' type='chat'><body>message number {i}</body></message>").into_bytes(),
        });
        if batch.len() == 4096 {
            store.archive_append_batch(&batch).await.expect("fill");
            batch.clear();
        }
    }
    store.archive_append_batch(&batch).await.expect("fill");
}

async fn median<F, Fut>(mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    for _ in 0..3 {
        std::hint::black_box(f().await);
    }
    let mut times = Vec::new();
    for _ in 0..25 {
        let t = Instant::now();
        std::hint::black_box(f().await);
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

/// The queries measured, by name.
const QUERIES: [&str; 7] = [
    "first page of 50",
    "last page of 50",
    "last page with one partner",
    "50 after an id in the middle",
    "50 from a time in the middle",
    "last 50 up to a time in the middle",
    "count",
];

/// Runs query `which` against `user`'s archive of `items` items; returns how many items
/// it found.
async fn run_query(store: &Store, user: &str, items: usize, which: &str) -> usize {
    let u = UserRef { host: "bench.example", user };
    let middle_id = format!("{user}-{:08}", items / 2);
    let page = ArchiveQuery { limit: Some(50), ..Default::default() };
    let q = match which {
        "first page of 50" => page,
        "last page of 50" => ArchiveQuery { last_page: true, ..page },
        "last page with one partner" => ArchiveQuery { with: Some("partner3@example.org"), last_page: true, ..page },
        "50 after an id in the middle" => ArchiveQuery { after_id: Some(&middle_id), ..page },
        "50 from a time in the middle" => ArchiveQuery { start_us: Some((items / 2) as i64 * 1000), ..page },
        "last 50 up to a time in the middle" => ArchiveQuery { end_us: Some((items / 2) as i64 * 1000), last_page: true, ..page },
        _ => return store.archive_count(u, "mam").await.expect("count") as usize,
    };
    store.archive_query(u, "mam", &q).await.expect("query").items.len()
}

/// The median time of each query against `user`'s archive of `items` items.
async fn measure(store: &Store, user: &str, items: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    for which in QUERIES {
        out.push(median(|| run_query(store, user, items, which)).await);
    }
    out
}

/// Fills a fresh store with both archives and measures them: (small, large) medians.
/// `postgres_url`: the store is that PostgreSQL database.
async fn bench_store(store: &Store, postgres_url: Option<&str>, small: usize, large: usize) -> (Vec<Duration>, Vec<Duration>) {
    let t = Instant::now();
    fill(store, "small", small).await;
    fill(store, "large", large).await;
    println!("filled {small} + {large} items in {:.1} s", t.elapsed().as_secs_f64());
    if let Some(url) = postgres_url {
        // What autovacuum does after a bulk load: statistics for the planner, and the
        // visibility map that index-only scans need.
        let admin = sqlx::PgPool::connect(url).await.expect("connect");
        sqlx::query("VACUUM ANALYZE archive").execute(&admin).await.expect("vacuum analyze");
        admin.close().await;
    }
    (measure(store, "small", small).await, measure(store, "large", large).await)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print_table(backend: &str, small: usize, large: usize, a: &[Duration], b: &[Duration]) {
    println!("\n{backend}\n| query | {small} items | {large} items | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    for ((name, s), l) in QUERIES.iter().zip(a).zip(b) {
        println!("| {name} | {:.0} µs | {:.0} µs | {:.1}× |", micros(*s), micros(*l), l.as_secs_f64() / s.as_secs_f64());
    }
}

fn main() {
    let large: usize = std::env::var("ARCHIVE_BENCH_ITEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let postgres = std::env::var("ARCHIVE_BENCH_POSTGRES").ok();
    let bench_mode = std::env::args().any(|a| a == "--bench");
    // Under `cargo test`, a quick smoke run only.
    let (small, large) = if bench_mode { (10_000, large) } else { (100, 1_000) };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&format!("sqlite://{}", dir.path().join("bench.db").display())).await.expect("open");
        let (a, b) = bench_store(&store, None, small, large).await;
        store.close().await;
        print_table("SQLite", small, large, &a, &b);
        let Some(server) = postgres else { return };
        let url = format!("{}/jw_archive_bench_{}", server.trim_end_matches('/'), std::process::id());
        let store = Store::open(&url).await.expect("open the PostgreSQL database");
        let (pa, pb) = bench_store(&store, Some(&url), small, large).await;
        store.close().await;
        // Forced: a connection the pool just closed may not have left the server yet.
        sqlx::Postgres::force_drop_database(&url).await.expect("drop the bench database");
        print_table("PostgreSQL", small, large, &pa, &pb);
        println!("\n| query | SQLite, {large} items | PostgreSQL, {large} items | PostgreSQL / SQLite |");
        println!("| --- | ---: | ---: | ---: |");
        for ((name, s), p) in QUERIES.iter().zip(&b).zip(&pb) {
            println!("| {name} | {:.0} µs | {:.0} µs | {:.2}× |", micros(*s), micros(*p), p.as_secs_f64() / s.as_secs_f64());
        }
    });
}
