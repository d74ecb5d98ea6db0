//! Archive queries at scale: the same queries against a 10k-item and a 1M-item archive of
//! one user, in one run, so the figure to quote is how much slower the large one is.
//!
//! `cargo bench -p jabberwock-storage --bench archive` (ARCHIVE_BENCH_ITEMS changes the
//! large size). Plain std timing: the median of 25 runs per query after 3 warm-ups.

use std::time::{Duration, Instant};

use jabberwock_storage::{ArchiveAppend, ArchiveQuery, Store, UserRef};

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
const QUERIES: [&str; 6] = [
    "first page of 50",
    "last page of 50",
    "last page with one partner",
    "50 after an id in the middle",
    "50 from a time in the middle",
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

fn main() {
    let large: usize = std::env::var("ARCHIVE_BENCH_ITEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let bench_mode = std::env::args().any(|a| a == "--bench");
    // Under `cargo test`, a quick smoke run only.
    let (small, large) = if bench_mode { (10_000, large) } else { (100, 1_000) };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&format!("sqlite://{}", dir.path().join("bench.db").display())).await.expect("open");
        let t = Instant::now();
        fill(&store, "small", small).await;
        fill(&store, "large", large).await;
        println!("filled {small} + {large} items in {:.1} s", t.elapsed().as_secs_f64());
        let a = measure(&store, "small", small).await;
        let b = measure(&store, "large", large).await;
        println!("| query | {small} items | {large} items | ratio |");
        println!("| --- | ---: | ---: | ---: |");
        for ((name, s), l) in QUERIES.iter().zip(&a).zip(&b) {
            println!(
                "| {name} | {:.0} µs | {:.0} µs | {:.1}× |",
                s.as_secs_f64() * 1e6,
                l.as_secs_f64() * 1e6,
                l.as_secs_f64() / s.as_secs_f64()
            );
        }
        store.close().await;
    });
}
