//! Durable small writes (a roster item, a last-activity stamp) from many sessions at once:
//! batches per second with one writer at a time and with 64 at once, in one run. Each call
//! returns only once its batch is committed with a full fsync, so without group commit
//! both rates are the disk's commit rate; with it, the concurrent rate is a multiple.
//!
//! `cargo bench -p jabberwock-storage --bench write_batch` (WRITE_BATCH_BENCH_CALLS sets
//! the calls per measurement). The figure to quote is the ratio, on whatever disk.

use std::time::Instant;

use jabberwock_storage::{Store, UserRef, Write};

async fn rate(store: &Store, concurrency: usize, calls: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..calls / concurrency {
                    let user = format!("user{t}");
                    let value = format!("item {i}");
                    let writes = [Write::Map { store: "roster", key: "contact@example.org", value: Some(value.as_bytes()) }];
                    store.write_batch(UserRef { host: "bench.example", user: &user }, &writes).await.expect("write");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    (calls / concurrency * concurrency) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::var("WRITE_BATCH_BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(2048);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&format!("sqlite://{}", dir.path().join("bench.db").display())).await.expect("open");
    rate(&store, 8, 256).await; // warm-up
    for round in 1..=3 {
        let one = rate(&store, 1, calls / 8).await;
        let many = rate(&store, 64, calls).await;
        println!("round {round}: 1 writer {one:8.0} batches/s   64 writers {many:8.0} batches/s   ratio {:5.1}x", many / one);
    }
    store.close().await;
}
