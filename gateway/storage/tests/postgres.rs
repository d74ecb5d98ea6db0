//! The PostgreSQL backend against a real server: the conformance suite, plus what several
//! servers sharing one database must get right (quotas, archive order and roster writes
//! under concurrent writers) and copying a populated SQLite database over.
//!
//! `JABBERWOCK_TEST_POSTGRES` names the server, without a database (such as
//! `postgres://postgres@127.0.0.1:55432`); each test creates its own database there and
//! drops it when it passes. Without it the tests skip, saying so, unless
//! `JABBERWOCK_TEST_REQUIRE_POSTGRES=1` (as in CI), where they fail.

use std::sync::atomic::{AtomicU32, Ordering};

use jabberwock_storage::{
    conformance, copy_all, ArchiveAppend, ArchiveQuery, ExportCursor, NewArchiveItem, Quota, Record, RecordKind, StorageError,
    Store, UserRef, Write,
};
use sqlx::migrate::MigrateDatabase;

const ALICE: UserRef<'static> = UserRef { host: "example.org", user: "alice" };

/// A database of its own for one test, on the server `JABBERWOCK_TEST_POSTGRES` names.
struct TestDb {
    url: String,
}

impl TestDb {
    /// `None` (after saying why) when no server is configured and none is required.
    fn new(test: &str) -> Option<TestDb> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let Ok(server) = std::env::var("JABBERWOCK_TEST_POSTGRES") else {
            assert!(
                std::env::var("JABBERWOCK_TEST_REQUIRE_POSTGRES").is_err(),
                "JABBERWOCK_TEST_REQUIRE_POSTGRES is set but JABBERWOCK_TEST_POSTGRES is not"
            );
            eprintln!("skipping {test}: set JABBERWOCK_TEST_POSTGRES=postgres://user@host:port to run it");
            return None;
        };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Some(TestDb { url: format!("{}/jw_storage_{}_{n}", server.trim_end_matches('/'), std::process::id()) })
    }

    async fn open(&self) -> Store {
        Store::open(&self.url).await.unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }

    /// Drops the database: only reached when the test passed, so a failed test's data
    /// stays for a look.
    async fn drop(self) {
        sqlx::Postgres::force_drop_database(&self.url).await.expect("drop the test database");
    }
}

fn message(id: &str) -> NewArchiveItem<'_> {
    NewArchiveItem { id, stamp_us: 1_700_000_000_000_000, with: "bob@example.org", payload: b"<message>\0</message>" }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite() {
    let Some(db) = TestDb::new("conformance_suite") else { return };
    let store = db.open().await;
    conformance::run_all(&store).await;
    store.create_account(ALICE, b"scram").await.unwrap();
    store.close().await;
    // Opening again runs the migrations again, which must be a no-op.
    let store = db.open().await;
    assert!(matches!(store.create_account(ALICE, b"again").await, Err(StorageError::AlreadyExists)));
    store.close().await;
    db.drop().await;
}

/// Two stores on one database stand for two servers: their appends race for one quota,
/// which must hold exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_holds_under_concurrent_writers() {
    const TASKS: usize = 40;
    const ROUNDS: usize = 10;
    const QUOTA: u64 = 150;
    let Some(db) = TestDb::new("quota_holds_under_concurrent_writers") else { return };
    let nodes = [db.open().await, db.open().await];
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = nodes[i % 2].clone();
            tokio::spawn(async move {
                let mut refused = 0;
                for j in 0..ROUNDS {
                    match store.archive_append(ALICE, "mam", message(&format!("m{i}-{j}")), Some(Quota::items(QUOTA))).await {
                        Err(StorageError::QuotaExceeded) => refused += 1,
                        r => r.expect("append"),
                    }
                }
                refused
            })
        })
        .collect();
    let mut refused = 0;
    for t in tasks {
        refused += t.await.expect("no panic");
    }
    assert_eq!(nodes[0].archive_count(ALICE, "mam").await.unwrap(), QUOTA, "racing appends overshot the quota");
    assert_eq!(refused as u64, (TASKS * ROUNDS) as u64 - QUOTA);

    // The byte quota too: each payload is 20 bytes, so 30 of them fit in 600.
    let byte_quota = Quota { items: u64::MAX, bytes: 600 };
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = nodes[i % 2].clone();
            tokio::spawn(async move {
                for j in 0..ROUNDS {
                    match store.archive_append(ALICE, "bytes", message(&format!("b{i}-{j}")), Some(byte_quota)).await {
                        Err(StorageError::QuotaExceeded) => {}
                        r => r.expect("append"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("no panic");
    }
    assert_eq!(nodes[1].archive_count(ALICE, "bytes").await.unwrap(), 30);
    for n in nodes {
        n.close().await;
    }
    db.drop().await;
}

/// While two servers append to one archive, a reader paging forward from the last item it
/// saw (as a MAM client catching up does) must see every item once, in append order per
/// writer: no item may commit behind a later one it has already read past.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn archive_order_holds_under_concurrent_writers() {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 60;
    let Some(db) = TestDb::new("archive_order_holds_under_concurrent_writers") else { return };
    let nodes = [db.open().await, db.open().await];
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = nodes[w % 2].clone();
            tokio::spawn(async move {
                for j in 0..ROUNDS {
                    let id = format!("w{w}-{j:03}");
                    if j % 3 == 0 {
                        // Batches too, which take their seqs in one statement.
                        let item = ArchiveAppend {
                            host: ALICE.host.into(),
                            user: ALICE.user.into(),
                            store: "mam".into(),
                            id,
                            stamp_us: 1,
                            with: "bob@example.org".into(),
                            payload: b"x".to_vec(),
                        };
                        store.archive_append_batch(&[item]).await.expect("batch");
                    } else {
                        store.archive_append(ALICE, "mam", message(&id), None).await.expect("append");
                    }
                }
            })
        })
        .collect();
    let reader = {
        let store = nodes[1].clone();
        tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            loop {
                let done = store.archive_count(ALICE, "mam").await.unwrap() as usize == WRITERS * ROUNDS;
                let q = ArchiveQuery { after_id: seen.last().map(String::as_str), limit: Some(7), ..Default::default() };
                let page = store.archive_query(ALICE, "mam", &q).await.expect("query");
                seen.extend(page.items.into_iter().map(|i| i.id));
                if done && page.complete {
                    return seen;
                }
            }
        })
    };
    for w in writers {
        w.await.expect("no panic");
    }
    let seen = reader.await.expect("no panic");
    let all: Vec<String> = store_ids(&nodes[0]).await;
    assert_eq!(seen, all, "paging forward while writers appended missed or repeated items");
    for w in 0..WRITERS {
        let mine: Vec<&String> = all.iter().filter(|id| id.starts_with(&format!("w{w}-"))).collect();
        assert!(mine.windows(2).all(|p| p[0] < p[1]), "writer {w}'s items are out of order: {mine:?}");
    }
    for n in nodes {
        n.close().await;
    }
    db.drop().await;
}

async fn store_ids(store: &Store) -> Vec<String> {
    let page = store.archive_query(ALICE, "mam", &ArchiveQuery::default()).await.unwrap();
    page.items.into_iter().map(|i| i.id).collect()
}

/// Roster and subscription writes for one user from two servers at once, including
/// batches that write the same keys in opposite orders: all land, none deadlocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roster_writes_from_two_servers() {
    const TASKS: usize = 20;
    let Some(db) = TestDb::new("roster_writes_from_two_servers") else { return };
    let nodes = [db.open().await, db.open().await];
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = nodes[i % 2].clone();
            tokio::spawn(async move {
                for j in 0..10 {
                    let contact = format!("c{i}-{j}@example.org");
                    let (first, second) = if i % 2 == 0 { ("shared-a", "shared-b") } else { ("shared-b", "shared-a") };
                    let value = format!("{i}-{j}");
                    let writes = [
                        Write::Map { store: "roster", key: &contact, value: Some(b"both") },
                        Write::Map { store: "roster", key: first, value: Some(value.as_bytes()) },
                        Write::Map { store: "roster", key: second, value: Some(value.as_bytes()) },
                        Write::Keyval { store: "roster_version", value: Some(value.as_bytes()) },
                    ];
                    store.write_batch(ALICE, &writes).await.expect("write_batch");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("no panic");
    }
    let roster = nodes[0].map_all(ALICE, "roster").await.unwrap();
    assert_eq!(roster.len(), TASKS * 10 + 2);
    let a = nodes[1].map_get(ALICE, "roster", "shared-a").await.unwrap();
    let b = nodes[1].map_get(ALICE, "roster", "shared-b").await.unwrap();
    assert_eq!(a, b, "each batch is atomic: both shared keys hold the last batch's value");
    assert_eq!(nodes[0].kv_get(ALICE, "roster_version").await.unwrap(), a);
    for n in nodes {
        n.close().await;
    }
    db.drop().await;
}

/// Every row of a populated SQLite database arrives, in order, through [`copy_all`]; a
/// second copy into the same database refuses to overwrite; copying back gives the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_sqlite() {
    let Some(db) = TestDb::new("copy_from_sqlite") else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&format!("sqlite://{}", dir.path().join("db.sqlite").display())).await.unwrap();
    // More than one page of everything, on several hosts, with owners that are not
    // accounts (a room).
    for n in 0..1500 {
        let user = format!("u{n:04}");
        let u = UserRef { host: if n % 3 == 0 { "b.example" } else { "a.example" }, user: &user };
        sqlite.create_account(u, format!("scram {n}").as_bytes()).await.unwrap();
        sqlite.kv_set(u, "vcard", Some(b"<vCard>\0\xff</vCard>")).await.unwrap();
        sqlite.map_set(u, "roster", "friend@example.org", Some(user.as_bytes())).await.unwrap();
    }
    let room = UserRef { host: "conference.a.example", user: "room" };
    let items: Vec<ArchiveAppend> = (0..2500)
        .map(|n| ArchiveAppend {
            host: room.host.into(),
            user: room.user.into(),
            store: "muc_log".into(),
            id: format!("{}", 5000 - n),
            stamp_us: n,
            with: "someone".into(),
            payload: vec![n as u8; n as usize % 50],
        })
        .collect();
    sqlite.archive_append_batch(&items).await.unwrap();
    sqlite.kv_set(room, "muc_config", Some(b"<x/>")).await.unwrap();
    // Archives of other owners, before and after the room's in key order, so that pages
    // run from one store into the next.
    for (host, user) in [("a.example", "u0001"), ("zz.example", "late")] {
        for n in 0..700 {
            sqlite.archive_append(UserRef { host, user }, "mam", NewArchiveItem { id: &format!("{n}"), stamp_us: n, with: "x@example.org", payload: b"m" }, None).await.unwrap();
        }
    }

    let pg = db.open().await;
    let counts = copy_all(&sqlite, &pg, |_| {}).await.expect("copy");
    assert_eq!((counts.accounts, counts.keyval, counts.map, counts.archive), (1500, 1501, 1500, 3900));
    for kind in RecordKind::ALL {
        assert_eq!(all_rows(&sqlite, kind).await, all_rows(&pg, kind).await, "{kind:?} rows differ");
    }
    let page = pg.archive_query(room, "muc_log", &ArchiveQuery { last_page: true, limit: Some(2), ..Default::default() }).await.unwrap();
    assert_eq!(page.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["2502", "2501"], "order is kept");

    assert!(matches!(copy_all(&sqlite, &pg, |_| {}).await, Err(StorageError::AlreadyExists)));

    // And back, into a new SQLite file.
    let back = Store::open(&format!("sqlite://{}", dir.path().join("back.sqlite").display())).await.unwrap();
    assert_eq!(copy_all(&pg, &back, |_| {}).await.expect("copy back"), counts);
    for kind in RecordKind::ALL {
        assert_eq!(all_rows(&sqlite, kind).await, all_rows(&back, kind).await, "{kind:?} rows differ after the round trip");
    }
    back.close().await;
    sqlite.close().await;
    pg.close().await;
    db.drop().await;
}

/// Every row of a table, without the source's seqs (which each backend gives its own).
async fn all_rows(store: &Store, kind: RecordKind) -> Vec<Record> {
    let mut rows = Vec::new();
    let mut cursor = ExportCursor::default();
    loop {
        let page = store.export(kind, &cursor, 700).await.unwrap();
        let Some(last) = page.last() else { return rows };
        cursor = last.cursor();
        rows.extend(page.into_iter().map(|r| match r {
            Record::Archive { item, .. } => Record::Archive { seq: 0, item },
            r => r,
        }));
    }
}

/// The archive at a million rows: how fast batched appends fill it, and the plan and time
/// of each kind of MAM query on it (bench/README.md, "PostgreSQL"). Run with
/// `cargo test --release -p jabberwock-storage --test postgres -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: fills a million-row archive (about 1 GB) and prints query plans"]
async fn explain_a_million_row_archive() {
    use std::time::Instant;
    // alice holds a sixth of the rows, talking with 50 peers, and has been quiet for the
    // last fifth of them; 800 others share the rest.
    const ROWS: i64 = 1_000_000;
    const ALICE_UNTIL: i64 = ROWS * 4 / 5;
    const BATCH: i64 = 1_000;
    const PEERS: i64 = 50;
    const START_US: i64 = 1_700_000_000_000_000;
    // One message a minute across the whole server.
    const STEP_US: i64 = 60_000_000;
    let Some(db) = TestDb::new("explain_a_million_row_archive") else { return };
    let store = db.open().await;
    let pg = store.as_postgres().expect("a postgres:// URL");
    let payload = vec![b'x'; 400];
    let filled = Instant::now();
    for batch in 0..ROWS / BATCH {
        let items: Vec<ArchiveAppend> = (0..BATCH)
            .map(|i| {
                let n = batch * BATCH + i;
                let user = if n % 5 == 0 && n < ALICE_UNTIL { "alice".to_owned() } else { format!("user{}", n % 800) };
                ArchiveAppend {
                    host: "example.org".into(),
                    user,
                    store: "mam".into(),
                    id: format!("id-{n}"),
                    stamp_us: START_US + n * STEP_US,
                    with: format!("peer{}@example.net", n % (PEERS * 5) / 5),
                    payload: payload.clone(),
                }
            })
            .collect();
        store.archive_append_batch(&items).await.unwrap();
    }
    let fill = filled.elapsed();
    println!("batched appends: {ROWS} rows in {fill:.1?} ({:.0} rows/s, {BATCH} per batch)", ROWS as f64 / fill.as_secs_f64());
    let single = Instant::now();
    for n in 0..1000 {
        store.archive_append(ALICE, "single", message(&format!("s{n}")), Some(Quota::items(10_000))).await.unwrap();
    }
    println!("single appends with a quota check: {:.0} rows/s", 1000.0 / single.elapsed().as_secs_f64());
    // As autovacuum would after a bulk load: statistics, and the visibility map that lets
    // index-only scans skip the table.
    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query("VACUUM ANALYZE archive").execute(&admin).await.unwrap();
    admin.close().await;

    let u = UserRef { host: "example.org", user: "alice" };
    let middle = format!("id-{}", ROWS / 2);
    let day = 86_400_000_000;
    let queries: Vec<(&str, ArchiveQuery)> = vec![
        ("last page (a client opening a chat)", ArchiveQuery { last_page: true, limit: Some(50), ..Default::default() }),
        ("first page", ArchiveQuery { limit: Some(50), ..Default::default() }),
        ("with, last page", ArchiveQuery { with: Some("peer7@example.net"), last_page: true, limit: Some(50), ..Default::default() }),
        ("start/end: one day in the middle", ArchiveQuery { start_us: Some(START_US + ROWS / 2 * STEP_US), end_us: Some(START_US + ROWS / 2 * STEP_US + day), limit: Some(50), ..Default::default() }),
        ("start: everything since a day before her last message", ArchiveQuery { start_us: Some(START_US + ALICE_UNTIL * STEP_US - day), limit: Some(50), ..Default::default() }),
        ("RSM after an item in the middle", ArchiveQuery { after_id: Some(&middle), limit: Some(50), ..Default::default() }),
        ("RSM before an item in the middle", ArchiveQuery { before_id: Some(&middle), limit: Some(50), ..Default::default() }),
        ("with + after", ArchiveQuery { with: Some("peer7@example.net"), after_id: Some(&middle), limit: Some(50), ..Default::default() }),
        ("last page within 64 KiB", ArchiveQuery { last_page: true, limit: Some(500), max_bytes: Some(65_536), ..Default::default() }),
    ];
    // A user with a thousandth of the rows, spread over the whole archive.
    let small = UserRef { host: "example.org", user: "user42" };
    let small_queries: Vec<(&str, ArchiveQuery)> = vec![
        ("another user (1000 rows): last page", ArchiveQuery { last_page: true, limit: Some(50), ..Default::default() }),
        ("another user: start, first page", ArchiveQuery { start_us: Some(START_US + ROWS / 2 * STEP_US), limit: Some(50), ..Default::default() }),
    ];
    let all = queries.iter().map(|(w, q)| (u, w, q)).chain(small_queries.iter().map(|(w, q)| (small, w, q)));
    for (u, what, q) in all {
        let plan = pg.explain_archive_query(u, "mam", q).await.unwrap();
        let runs = 200;
        let timed = Instant::now();
        for _ in 0..runs {
            store.archive_query(u, "mam", q).await.unwrap();
        }
        println!("\n### {what}: {:.2?} per query through archive_query\n{plan}", timed.elapsed() / runs);
    }
    store.close().await;
    db.drop().await;
}
