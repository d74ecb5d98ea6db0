//! The SQLite backend: the conformance suite, plus what only a real file can show
//! (persistence, concurrent writers, recovery after a crash).

use std::path::{Path, PathBuf};
use std::process::Command;

use jabberwock_storage::{conformance, ArchiveQuery, NewArchiveItem, Quota, StorageError, Store, UserRef};

const ALICE: UserRef<'static> = UserRef {
    host: "example.org",
    user: "alice",
};

/// A database path in a directory that doesn't exist yet: open must create it.
fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data").join("nested").join("jabberwock.db")
}

async fn open(path: &Path) -> Store {
    Store::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("open the store")
}

fn wal_len(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

fn message(id: &str) -> NewArchiveItem<'_> {
    NewArchiveItem {
        id,
        stamp_us: 1_700_000_000_000_000,
        with: "bob@example.org",
        payload: b"<message>\0</message>",
    }
}

/// Writes one of everything as ALICE.
async fn write_sample(store: &Store) {
    store.create_account(ALICE, b"scram").await.unwrap();
    store
        .kv_set(ALICE, "vcard", Some(b"<vCard/>"))
        .await
        .unwrap();
    store
        .map_set(ALICE, "roster", "bob@example.org", Some(b"both"))
        .await
        .unwrap();
    store
        .archive_append(ALICE, "offline", message("m1"), None)
        .await
        .unwrap();
}

/// Checks that everything [`write_sample`] wrote is there.
async fn check_sample(store: &Store) {
    assert_eq!(
        store.get_account(ALICE).await.unwrap().as_deref(),
        Some(&b"scram"[..])
    );
    assert_eq!(
        store.kv_get(ALICE, "vcard").await.unwrap().as_deref(),
        Some(&b"<vCard/>"[..])
    );
    assert_eq!(
        store
            .map_get(ALICE, "roster", "bob@example.org")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"both"[..])
    );
    let page = store
        .archive_query(ALICE, "offline", &ArchiveQuery::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].payload, message("m1").payload);
}

#[tokio::test]
async fn conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir)).await;
    conformance::run_all(&store).await;
    store.close().await;
}

#[tokio::test]
async fn unsupported_url_is_refused() {
    for url in [
        "nosuchdb://localhost/db",
        "/var/lib/jabberwock.db",
        "sqlite:relative.db",
    ] {
        let r = Store::open(url).await;
        assert!(
            matches!(r, Err(StorageError::UnsupportedUrl(ref u)) if u == url),
            "{url}: {:?}",
            r.err()
        );
    }
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path).await;
    write_sample(&store).await;
    store.close().await;
    assert_eq!(
        wal_len(&path),
        0,
        "close folds the WAL into the database file"
    );

    let store = open(&path).await;
    check_sample(&store).await;
    // Reopening runs the migrations again, which must be a no-op.
    let r = store.create_account(ALICE, b"again").await;
    assert!(matches!(r, Err(StorageError::AlreadyExists)), "{r:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_all_succeed() {
    const TASKS: usize = 50;
    const ROUNDS: usize = 10;
    // Below the number of appends to ALICE's archive, so that some are refused.
    const QUOTA: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path).await;
    // A second store on the same file stands for another process: its writes contend for
    // the file's write lock, not for this store's writer connection.
    let other = open(&path).await;

    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let store = if i % 2 == 0 {
            other.clone()
        } else {
            store.clone()
        };
        tasks.push(tokio::spawn(async move {
            let user = format!("user{}", i % 10);
            let u = UserRef {
                host: "example.org",
                user: &user,
            };
            let mut refused = 0;
            for j in 0..ROUNDS {
                let id = format!("m{i}-{j}");
                store.map_set(u, "roster", &id, Some(b"item")).await?;
                store.kv_set(u, "vcard", Some(id.as_bytes())).await?;
                match store
                    .archive_append(ALICE, "mam", message(&id), Some(Quota::items(QUOTA)))
                    .await
                {
                    Err(StorageError::QuotaExceeded) => refused += 1,
                    r => r?,
                }
                // Readers run alongside the writers.
                store
                    .archive_query(
                        ALICE,
                        "mam",
                        &ArchiveQuery {
                            last_page: true,
                            limit: Some(10),
                            ..Default::default()
                        },
                    )
                    .await?;
            }
            Ok::<_, StorageError>(refused)
        }));
    }
    let mut refused = 0;
    for task in tasks {
        refused += task
            .await
            .expect("task panicked")
            .expect("a concurrent write failed");
    }

    // Count and insert share a transaction, so racing appends cannot overshoot the quota.
    assert_eq!(store.archive_count(ALICE, "mam").await.unwrap(), QUOTA);
    assert_eq!(refused as u64, (TASKS * ROUNDS) as u64 - QUOTA);
    let mut items = 0;
    for n in 0..10 {
        let user = format!("user{n}");
        items += store
            .map_all(
                UserRef {
                    host: "example.org",
                    user: &user,
                },
                "roster",
            )
            .await
            .unwrap()
            .len();
    }
    assert_eq!(items, TASKS * ROUNDS);
    other.close().await;
    store.close().await;
}

/// Set by [`writes_survive_a_crash`] for the child process it runs [`crash_child`] in.
const CRASH_DB: &str = "JABBERWOCK_STORAGE_CRASH_DB";

#[tokio::test]
async fn writes_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture"])
        .env(CRASH_DB, &path)
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "child process failed: {}\n{}{}",
        child.status,
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(
        wal_len(&path) > 0,
        "the child's writes should be left in the WAL, not checkpointed"
    );

    let store = open(&path).await;
    check_sample(&store).await;
    store.close().await;
}

#[tokio::test]
#[ignore = "helper: run in a child process by writes_survive_a_crash"]
async fn crash_child() {
    let Some(path) = std::env::var_os(CRASH_DB) else {
        return;
    };
    let store = open(Path::new(&path)).await;
    write_sample(&store).await;
    // Exit on the spot, as a crash would: no close, no checkpoint, no destructors. The
    // acknowledged writes exist only in the WAL.
    std::process::exit(0);
}
