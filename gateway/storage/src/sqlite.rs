//! The default backend: one SQLite file in WAL mode, migrated on open.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::stamps::{raised_stamp, raised_stamps, seq_bounds, stores_of, StampProbe, StoreKey};
use crate::{
    ArchiveAppend, ArchiveDelete, ArchiveItem, ArchivePage, ArchiveQuery, ExportCursor, NewArchiveItem, Quota, Record,
    RecordKind, Result, StorageError, UserRef, Write,
};

/// How long a statement waits for a lock held by another connection (or process) before
/// failing with SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// WAL readers never block each other nor the writer, so a few suffice.
const READERS: u32 = 4;

#[derive(Clone)]
pub struct SqliteStore {
    /// A single connection: SQLite admits one writer at a time, so writes queue for this
    /// connection instead of failing with SQLITE_BUSY.
    writer: SqlitePool,
    /// Read-only connections, so a write sent here by mistake fails loudly.
    readers: SqlitePool,
    /// The committer task behind [`SqliteStore::write_batch`].
    group_commit: mpsc::UnboundedSender<GroupCommitRequest>,
}

/// Maps a unique-constraint violation to [`StorageError::AlreadyExists`].
fn already_exists(e: sqlx::Error) -> StorageError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StorageError::AlreadyExists,
        _ => e.into(),
    }
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The seq (insertion position) of an archive item, for paging relative to it.
async fn seq_of(conn: &mut SqliteConnection, u: UserRef<'_>, store: &str, id: &str) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT seq FROM archive WHERE host = ? AND username = ? AND store = ? AND id = ?",
    )
    .bind(u.host)
    .bind(u.user)
    .bind(store)
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(StorageError::NotFound)
}

/// Appends the WHERE clause selecting the user's store and the query's start/end range.
fn push_user_store_stamp<'a>(
    sql: &mut QueryBuilder<'a, Sqlite>,
    u: UserRef<'a>,
    store: &'a str,
    q: &ArchiveQuery<'_>,
) {
    sql.push(" WHERE host = ").push_bind(u.host);
    sql.push(" AND username = ").push_bind(u.user);
    sql.push(" AND store = ").push_bind(store);
    if let Some(start) = q.start_us {
        sql.push(" AND stamp_us >= ").push_bind(start);
    }
    if let Some(end) = q.end_us {
        sql.push(" AND stamp_us <= ").push_bind(end);
    }
}

/// For the stores (from [`stores_of`]) whose newest stamp (that of their last seq) is later
/// than the earliest new item's: (index in `stores`, that stamp). Usually none, and only
/// those rows cross over from SQLite's worker thread, each one a message. A store is only
/// looked up when its earliest new item is stamped before the archive's stamp bound
/// (migration 0003): while the clock runs forward, none is.
async fn newer_stamps(conn: &mut SqliteConnection, stores: &[(StoreKey<'_>, i64)]) -> Result<Vec<(i64, i64)>> {
    // 256 stores × 5 values per statement, as for inserts below.
    let mut newer = Vec::new();
    for (chunk, first) in stores.chunks(256).zip((0..).step_by(256)) {
        let mut sql = String::from(
            "SELECT n, newest FROM (SELECT s.column1 AS n, s.column5 AS earliest, \
             CASE WHEN s.column5 < (SELECT stamp_us FROM archive_stamp_bound) THEN \
              (SELECT stamp_us FROM archive INDEXED BY archive_by_owner \
               WHERE host = s.column2 AND username = s.column3 AND store = s.column4 ORDER BY seq DESC LIMIT 1) END AS newest \
             FROM (VALUES ",
        );
        sql.push_str(&vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", "));
        sql.push_str(") AS s) WHERE newest > earliest");
        let mut query = sqlx::query_as::<_, (i64, i64)>(&sql);
        for (n, ((host, user, store), earliest)) in (first..).zip(chunk) {
            query = query.bind(n).bind(host).bind(user).bind(store).bind(earliest);
        }
        newer.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(newer)
}

/// Keeps the archive's stamp bound above `stamp_us`, an appended item's stamp.
async fn raise_stamp_bound(conn: &mut SqliteConnection, stamp_us: i64) -> Result<()> {
    sqlx::query("UPDATE archive_stamp_bound SET stamp_us = ?1 WHERE stamp_us < ?1").bind(stamp_us).execute(conn).await?;
    Ok(())
}

/// Inserts archive items in slice order, so seqs follow it, each stamped no earlier than
/// its store's newest item (see the `stamps` module). Runs in a write transaction, whose
/// lock keeps other appends out between reading those stamps and inserting.
async fn insert_archive(conn: &mut SqliteConnection, items: &[&ArchiveAppend]) -> Result<()> {
    let stores = stores_of(items);
    let newer = newer_stamps(&mut *conn, &stores).await?;
    let stamps = raised_stamps(items, &stores, newer);
    // Multi-row INSERTs: each statement is one round trip to SQLite's worker thread,
    // which costs more than the insert itself. 256 rows × 7 values stays far below
    // SQLite's limit on bound parameters.
    const ROWS: usize = 256;
    for (chunk, stamps) in items.chunks(ROWS).zip(stamps.chunks(ROWS)) {
        let mut sql = String::from("INSERT INTO archive (host, username, store, id, stamp_us, with_jid, payload) VALUES ");
        sql.push_str(&vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", "));
        let mut query = sqlx::query(&sql);
        for (item, stamp_us) in chunk.iter().zip(stamps) {
            query = query
                .bind(&item.host)
                .bind(&item.user)
                .bind(&item.store)
                .bind(&item.id)
                .bind(stamp_us)
                .bind(&item.with)
                .bind(&item.payload);
        }
        query.execute(&mut *conn).await.map_err(already_exists)?;
    }
    if let Some(&newest) = stamps.iter().max() {
        raise_stamp_bound(conn, newest).await?;
    }
    Ok(())
}

/// [`seq_bounds`]' lookups in one store, on the seq-ordered index.
struct Probe<'c, 'q> {
    conn: &'c mut SqliteConnection,
    u: UserRef<'q>,
    store: &'q str,
}

impl StampProbe for Probe<'_, '_> {
    async fn seq_range(&mut self) -> Result<Option<(i64, i64)>> {
        let (first, last): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT seq FROM archive INDEXED BY archive_by_owner WHERE host = ?1 AND username = ?2 AND store = ?3 ORDER BY seq LIMIT 1), \
                    (SELECT seq FROM archive INDEXED BY archive_by_owner WHERE host = ?1 AND username = ?2 AND store = ?3 ORDER BY seq DESC LIMIT 1)",
        )
        .bind(self.u.host)
        .bind(self.u.user)
        .bind(self.store)
        .fetch_one(&mut *self.conn)
        .await?;
        Ok(first.zip(last))
    }

    async fn stamps_from(&mut self, seqs: &[i64]) -> Result<Vec<Option<i64>>> {
        // The seqs come in increasing order, so ordering by them keeps the answers aligned.
        let mut sql = String::from(
            "SELECT (SELECT stamp_us FROM archive INDEXED BY archive_by_owner \
             WHERE host = ?1 AND username = ?2 AND store = ?3 AND seq >= p.column1 ORDER BY seq LIMIT 1) FROM (VALUES ",
        );
        sql.push_str(&(0..seqs.len()).map(|i| format!("(?{})", i + 4)).collect::<Vec<_>>().join(", "));
        sql.push_str(") AS p ORDER BY p.column1");
        let mut query = sqlx::query_scalar::<_, Option<i64>>(&sql).bind(self.u.host).bind(self.u.user).bind(self.store);
        for seq in seqs {
            query = query.bind(seq);
        }
        Ok(query.fetch_all(&mut *self.conn).await?)
    }
}

/// A [`Write`] that owns its data, to travel to the committer.
enum OwnedWrite {
    Keyval { store: String, value: Option<Vec<u8>> },
    Map { store: String, key: String, value: Option<Vec<u8>> },
}

impl From<&Write<'_>> for OwnedWrite {
    fn from(w: &Write<'_>) -> Self {
        match *w {
            Write::Keyval { store, value } => OwnedWrite::Keyval { store: store.to_owned(), value: value.map(<[u8]>::to_vec) },
            Write::Map { store, key, value } => {
                OwnedWrite::Map { store: store.to_owned(), key: key.to_owned(), value: value.map(<[u8]>::to_vec) }
            }
        }
    }
}

/// One caller's batch: all of it or none of it.
struct OwnedBatch {
    host: String,
    user: String,
    writes: Vec<OwnedWrite>,
}

type GroupCommitRequest = (OwnedBatch, oneshot::Sender<Result<()>>);

/// Most batches committed in one transaction.
const MAX_GROUP: usize = 256;

/// Commits whatever batches have queued up while the previous commit was syncing, in one
/// transaction. No waiting to gather: a lone batch commits at once, and under load the
/// queue itself forms the groups. A group that fails is retried batch by batch, so one
/// bad batch fails alone.
async fn commit_groups(writer: SqlitePool, mut requests: mpsc::UnboundedReceiver<GroupCommitRequest>) {
    let mut group = Vec::new();
    while let Some(first) = requests.recv().await {
        group.push(first);
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let batches: Vec<&OwnedBatch> = group.iter().map(|(b, _)| b).collect();
        match apply_batches(&writer, &batches).await {
            Ok(()) => {
                for (_, done) in group.drain(..) {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) if group.len() == 1 => {
                let (_, done) = group.pop().expect("one batch");
                let _ = done.send(Err(e));
            }
            Err(_) => {
                for (batch, done) in group.drain(..) {
                    let _ = done.send(apply_batches(&writer, &[&batch]).await);
                }
            }
        }
    }
}

async fn apply_batches(writer: &SqlitePool, batches: &[&OwnedBatch]) -> Result<()> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    for batch in batches {
        for write in &batch.writes {
            let query = match write {
                OwnedWrite::Keyval { store, value: Some(value) } => sqlx::query(
                    "INSERT INTO keyval (host, username, store, value) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (host, username, store) DO UPDATE SET value = excluded.value",
                )
                .bind(&batch.host)
                .bind(&batch.user)
                .bind(store)
                .bind(value),
                OwnedWrite::Keyval { store, value: None } => {
                    sqlx::query("DELETE FROM keyval WHERE host = ? AND username = ? AND store = ?")
                        .bind(&batch.host)
                        .bind(&batch.user)
                        .bind(store)
                }
                OwnedWrite::Map { store, key, value: Some(value) } => sqlx::query(
                    "INSERT INTO map (host, username, store, key, value) VALUES (?, ?, ?, ?, ?) \
                     ON CONFLICT (host, username, store, key) DO UPDATE SET value = excluded.value",
                )
                .bind(&batch.host)
                .bind(&batch.user)
                .bind(store)
                .bind(key)
                .bind(value),
                OwnedWrite::Map { store, key, value: None } => {
                    sqlx::query("DELETE FROM map WHERE host = ? AND username = ? AND store = ? AND key = ?")
                        .bind(&batch.host)
                        .bind(&batch.user)
                        .bind(store)
                        .bind(key)
                }
            };
            query.execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The seqs of an archive query's page, as a subquery: the query's filters, in its
/// paging direction, one item more than its limit (which tells whether it is complete).
struct PageSeqs<'q> {
    u: UserRef<'q>,
    store: &'q str,
    q: &'q ArchiveQuery<'q>,
    after: Option<i64>,
    before: Option<i64>,
    /// The seqs bounding the query's start/end range ([`seq_bounds`]).
    from: Option<i64>,
    to: Option<i64>,
    backward: bool,
}

impl<'q> PageSeqs<'q> {
    /// Appends the subquery; `cut` ends the page at that seq (a byte bound's).
    fn push(&self, sql: &mut QueryBuilder<'q, Sqlite>, cut: Option<i64>) {
        // The one seq-ordered index carries stamp_us and with_jid: the filters are checked
        // while walking it, and only the page's rows are read from the table.
        sql.push("SELECT seq FROM archive INDEXED BY archive_by_owner");
        push_user_store_stamp(sql, self.u, self.store, self.q);
        if let Some(with) = self.q.with {
            sql.push(" AND with_jid = ").push_bind(with);
        }
        if let Some(after) = self.after {
            sql.push(" AND seq > ").push_bind(after);
        }
        if let Some(before) = self.before {
            sql.push(" AND seq < ").push_bind(before);
        }
        if let Some(from) = self.from {
            sql.push(" AND seq >= ").push_bind(from);
        }
        if let Some(to) = self.to {
            sql.push(" AND seq < ").push_bind(to);
        }
        match (cut, self.backward) {
            (Some(cut), false) => sql.push(" AND seq <= ").push_bind(cut),
            (Some(cut), true) => sql.push(" AND seq >= ").push_bind(cut),
            (None, _) => sql,
        };
        sql.push(if self.backward { " ORDER BY seq DESC" } else { " ORDER BY seq" });
        if let Some(limit) = self.q.limit {
            // One item more than asked tells whether the page is complete.
            let limit = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
            sql.push(" LIMIT ").push_bind(limit);
        }
    }
}

/// Creates the database file (and its directory) readable by the server's user only,
/// whatever the umask: SQLite gives the -wal and -shm files it creates next to the
/// database the database file's permissions. Existing files are left as they are.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        // An empty file is a new database to SQLite.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        create_private(path).map_err(sqlx::Error::Io)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);

        // The writer opens first: it creates the file, switches it to WAL (a persistent
        // setting that readers then inherit) and migrates, so readers always find the schema.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // Keep the one connection (and its statement cache) rather than recycling it.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(
                options
                    .clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // In WAL mode, FULL syncs the WAL on every commit: a write acknowledged
                    // to the caller survives power loss. NORMAL would not.
                    .synchronous(SqliteSynchronous::Full)
                    // A multi-row INSERT keeps a statement journal (the pages it changed, for
                    // undoing just that statement); on disk it cost a sixth of the archive's
                    // CPU. In memory it is bounded by the statement, a few hundred rows.
                    .pragma("temp_store", "memory")
                    // 16 MiB instead of 2: a batch of archive rows dirties a page per row and
                    // index, and a cache that overflows writes pages to the WAL twice.
                    .pragma("cache_size", "-16384")
                    // Checkpoint every 8192 pages (32 MiB of WAL) instead of 1000: a page
                    // written again before the checkpoint is copied into the database once.
                    // The WAL file keeps that size on disk between checkpoints.
                    .pragma("wal_autocheckpoint", "8192"),
            )
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;

        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true))
            .await?;
        let (group_commit, requests) = mpsc::unbounded_channel();
        tokio::spawn(commit_groups(writer.clone(), requests));
        Ok(SqliteStore { writer, readers, group_commit })
    }

    /// Starts a write transaction holding the write lock from its first statement, so that
    /// a concurrent writer in another process makes it wait (busy_timeout) at BEGIN instead
    /// of failing half-way through.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A trivial query on a reader connection: whether the database answers at all.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    pub async fn close(&self) {
        if self.writer.is_closed() {
            return;
        }
        self.readers.close().await;
        // Fold the WAL into the main file so the database rests as one self-contained file.
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await
        {
            tracing::warn!(error = %e, "SQLite WAL checkpoint on close failed");
        }
        self.writer.close().await;
    }

    pub async fn create_account(&self, u: UserRef<'_>, credentials: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO accounts (host, username, credentials, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(u.host)
        .bind(u.user)
        .bind(credentials)
        .bind(unix_seconds())
        .execute(&self.writer)
        .await
        .map_err(already_exists)?;
        Ok(())
    }

    pub async fn get_account(&self, u: UserRef<'_>) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT credentials FROM accounts WHERE host = ? AND username = ?")
                .bind(u.host)
                .bind(u.user)
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    pub async fn set_account(&self, u: UserRef<'_>, credentials: &[u8]) -> Result<()> {
        let updated =
            sqlx::query("UPDATE accounts SET credentials = ? WHERE host = ? AND username = ?")
                .bind(credentials)
                .bind(u.host)
                .bind(u.user)
                .execute(&self.writer)
                .await?
                .rows_affected();
        if updated == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    pub async fn delete_account(&self, u: UserRef<'_>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let existed = sqlx::query("DELETE FROM accounts WHERE host = ? AND username = ?")
            .bind(u.host)
            .bind(u.user)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        for sql in [
            "DELETE FROM keyval WHERE host = ? AND username = ?",
            "DELETE FROM map WHERE host = ? AND username = ?",
            "DELETE FROM archive WHERE host = ? AND username = ?",
        ] {
            sqlx::query(sql)
                .bind(u.host)
                .bind(u.user)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(existed)
    }

    pub async fn list_accounts(&self, host: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT username FROM accounts WHERE host = ? ORDER BY username")
                .bind(host)
                .fetch_all(&self.readers)
                .await?,
        )
    }

    pub async fn kv_get(&self, u: UserRef<'_>, store: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT value FROM keyval WHERE host = ? AND username = ? AND store = ?",
        )
        .bind(u.host)
        .bind(u.user)
        .bind(store)
        .fetch_optional(&self.readers)
        .await?)
    }

    pub async fn map_get(&self, u: UserRef<'_>, store: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT value FROM map WHERE host = ? AND username = ? AND store = ? AND key = ?",
        )
        .bind(u.host)
        .bind(u.user)
        .bind(store)
        .bind(key)
        .fetch_optional(&self.readers)
        .await?)
    }

    pub async fn map_all(&self, u: UserRef<'_>, store: &str) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(sqlx::query_as(
            "SELECT key, value FROM map WHERE host = ? AND username = ? AND store = ? ORDER BY key",
        )
        .bind(u.host)
        .bind(u.user)
        .bind(store)
        .fetch_all(&self.readers)
        .await?)
    }

    pub async fn map_count(&self, u: UserRef<'_>, store: &str, up_to: u64) -> Result<u64> {
        let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM map WHERE host = ? AND username = ? AND store = ? LIMIT ?)",
        )
        .bind(u.host)
        .bind(u.user)
        .bind(store)
        .bind(up_to)
        .fetch_one(&self.readers)
        .await?;
        // COUNT(*) is never negative.
        Ok(count as u64)
    }

    /// Writes a user's batch atomically. Batches written at the same time share one
    /// transaction and one fsync (group commit); each call still returns only once its own
    /// writes are durable.
    pub async fn write_batch(&self, u: UserRef<'_>, writes: &[Write<'_>]) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let (done, result) = oneshot::channel();
        let batch = OwnedBatch {
            host: u.host.to_owned(),
            user: u.user.to_owned(),
            writes: writes.iter().map(OwnedWrite::from).collect(),
        };
        self.group_commit.send((batch, done)).map_err(|_| sqlx::Error::PoolClosed)?;
        result.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    pub async fn archive_append(
        &self,
        u: UserRef<'_>,
        store: &str,
        item: NewArchiveItem<'_>,
        quota: Option<Quota>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        if let Some(quota) = quota {
            // Counting stops at the item quota, so the check costs O(quota), not O(archive
            // size); below it, the sum covers every item the user holds.
            let items = i64::try_from(quota.items).unwrap_or(i64::MAX);
            let (held, held_bytes): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COALESCE(SUM(len), 0) FROM \
                 (SELECT length(payload) AS len FROM archive \
                  WHERE host = ? AND username = ? AND store = ? LIMIT ?)",
            )
            .bind(u.host)
            .bind(u.user)
            .bind(store)
            .bind(items)
            .fetch_one(&mut *tx)
            .await?;
            let bytes = (held_bytes as u64).saturating_add(item.payload.len() as u64);
            if held >= items || bytes > quota.bytes {
                return Err(StorageError::QuotaExceeded);
            }
        }
        let newer = newer_stamps(&mut tx, &[((u.host, u.user, store), item.stamp_us)]).await?;
        let stamp_us = raised_stamp(item.stamp_us, newer.first().map(|&(_, newest)| newest));
        sqlx::query(
            "INSERT INTO archive (host, username, store, id, stamp_us, with_jid, payload) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(u.host)
        .bind(u.user)
        .bind(store)
        .bind(item.id)
        .bind(stamp_us)
        .bind(item.with)
        .bind(item.payload)
        .execute(&mut *tx)
        .await
        .map_err(already_exists)?;
        raise_stamp_bound(&mut tx, stamp_us).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn archive_append_batch(&self, items: &[ArchiveAppend]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert_archive(&mut tx, &items.iter().collect::<Vec<_>>()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn archive_query(
        &self,
        u: UserRef<'_>,
        store: &str,
        q: &ArchiveQuery<'_>,
    ) -> Result<ArchivePage> {
        // One read transaction: ids resolve in the snapshot the page is read from.
        let mut tx = self.readers.begin().await?;
        let after = match q.after_id {
            Some(id) => Some(seq_of(&mut tx, u, store, id).await?),
            None => None,
        };
        let before = match q.before_id {
            Some(id) => Some(seq_of(&mut tx, u, store, id).await?),
            None => None,
        };
        // A time range becomes a seq range, so the page is read from its first item on
        // rather than by walking the store's entries until the time is met.
        let (from, to) = seq_bounds(&mut Probe { conn: &mut tx, u, store }, q.start_us, q.end_us).await?;
        // Paging before an item, like asking for the last page, reads backwards from the end.
        let backward = q.last_page || before.is_some();

        let page = PageSeqs { u, store, q, after, before, from, to, backward };
        // With a byte bound, the page's sizes are read first (length() reads no payload)
        // to find the last item that fits; the page then ends there.
        let mut cut = None;
        if let Some(max_bytes) = q.max_bytes {
            let mut sql = QueryBuilder::<Sqlite>::new("SELECT seq, length(payload) FROM archive WHERE seq IN (");
            page.push(&mut sql, None);
            sql.push(if backward { ") ORDER BY seq DESC" } else { ") ORDER BY seq" });
            let sizes: Vec<(i64, i64)> = sql.build_query_as().fetch_all(&mut *tx).await?;
            let mut total = 0usize;
            for (i, &(_, len)) in sizes.iter().enumerate() {
                total = total.saturating_add(len as usize);
                if i > 0 && total > max_bytes {
                    cut = Some(sizes[i - 1].0);
                    break;
                }
            }
        }

        // The page's seqs are picked first, from the index alone, then only those rows are
        // read: no payload is read and discarded.
        let mut sql = QueryBuilder::<Sqlite>::new(
            "SELECT id, stamp_us, with_jid, payload FROM archive WHERE seq IN (",
        );
        page.push(&mut sql, cut);
        sql.push(") ORDER BY seq");
        let mut rows: Vec<(String, i64, String, Vec<u8>)> =
            sql.build_query_as().fetch_all(&mut *tx).await?;
        tx.commit().await?;

        let complete = match q.limit {
            _ if cut.is_some() => false,
            Some(limit) if rows.len() > limit => {
                // Drop the extra item, which lies beyond the page in the paging direction.
                if backward {
                    rows.remove(0);
                } else {
                    rows.pop();
                }
                false
            }
            _ => true,
        };
        let items = rows
            .into_iter()
            .map(|(id, stamp_us, with, payload)| ArchiveItem {
                id,
                stamp_us,
                with,
                payload,
            })
            .collect();
        Ok(ArchivePage { items, complete })
    }

    pub async fn archive_get(&self, u: UserRef<'_>, store: &str, id: &str) -> Result<Option<ArchiveItem>> {
        let row: Option<(String, i64, String, Vec<u8>)> = sqlx::query_as(
            "SELECT id, stamp_us, with_jid, payload FROM archive WHERE host = ? AND username = ? AND store = ? AND id = ?",
        )
        .bind(u.host)
        .bind(u.user)
        .bind(store)
        .bind(id)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.map(|(id, stamp_us, with, payload)| ArchiveItem { id, stamp_us, with, payload }))
    }

    pub async fn archive_count(&self, u: UserRef<'_>, store: &str) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM archive WHERE host = ? AND username = ? AND store = ?",
        )
        .bind(u.host)
        .bind(u.user)
        .bind(store)
        .fetch_one(&self.readers)
        .await?;
        // COUNT(*) is never negative.
        Ok(count as u64)
    }

    pub async fn archive_expire(&self, store: &str, older_than_us: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM archive WHERE store = ? AND stamp_us < ?")
            .bind(store)
            .bind(older_than_us)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    pub async fn archive_replace(&self, u: UserRef<'_>, store: &str, id: &str, payload: &[u8]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query("UPDATE archive SET payload = ? WHERE host = ? AND username = ? AND store = ? AND id = ?")
            .bind(payload)
            .bind(u.host)
            .bind(u.user)
            .bind(store)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StorageError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn archive_delete(
        &self,
        u: UserRef<'_>,
        store: &str,
        which: ArchiveDelete<'_>,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let deleted = match which {
            ArchiveDelete::All | ArchiveDelete::AllButNewest(0) => {
                sqlx::query("DELETE FROM archive WHERE host = ? AND username = ? AND store = ?")
                    .bind(u.host)
                    .bind(u.user)
                    .bind(store)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            ArchiveDelete::Ids(ids) => {
                // One statement per id: no limit on the number of bound parameters.
                let mut deleted = 0;
                for id in ids {
                    deleted += sqlx::query("DELETE FROM archive WHERE host = ? AND username = ? AND store = ? AND id = ?")
                        .bind(u.host)
                        .bind(u.user)
                        .bind(store)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                deleted
            }
            ArchiveDelete::OlderThan(stamp_us) => {
                sqlx::query("DELETE FROM archive WHERE host = ? AND username = ? AND store = ? AND stamp_us < ?")
                    .bind(u.host)
                    .bind(u.user)
                    .bind(store)
                    .bind(stamp_us)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            // The newest `keep` items are found by walking back that far on the seq index;
            // everything older goes. With fewer items the subquery is NULL and nothing does.
            ArchiveDelete::AllButNewest(keep) => {
                let offset = i64::try_from(keep - 1).unwrap_or(i64::MAX);
                sqlx::query(
                    "DELETE FROM archive WHERE host = ?1 AND username = ?2 AND store = ?3 AND seq < \
                     (SELECT seq FROM archive INDEXED BY archive_by_owner WHERE host = ?1 AND username = ?2 AND store = ?3 \
                      ORDER BY seq DESC LIMIT 1 OFFSET ?4)",
                )
                .bind(u.host)
                .bind(u.user)
                .bind(store)
                .bind(offset)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            }
        };
        tx.commit().await?;
        Ok(deleted)
    }

    pub async fn export(&self, kind: RecordKind, after: &ExportCursor, limit: usize) -> Result<Vec<Record>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let [host, user, store, key] = &after.key;
        let rows = match kind {
            RecordKind::Account => sqlx::query(
                "SELECT host, username, credentials, created_at FROM accounts \
                 WHERE (host, username) > (?, ?) ORDER BY host, username LIMIT ?",
            )
            .bind(host)
            .bind(user)
            .bind(limit),
            RecordKind::Keyval => sqlx::query(
                "SELECT host, username, store, value FROM keyval \
                 WHERE (host, username, store) > (?, ?, ?) ORDER BY host, username, store LIMIT ?",
            )
            .bind(host)
            .bind(user)
            .bind(store)
            .bind(limit),
            RecordKind::Map => sqlx::query(
                "SELECT host, username, store, key, value FROM map \
                 WHERE (host, username, store, key) > (?, ?, ?, ?) ORDER BY host, username, store, key LIMIT ?",
            )
            .bind(host)
            .bind(user)
            .bind(store)
            .bind(key)
            .bind(limit),
            RecordKind::Archive => return self.export_archive(after, limit).await,
        }
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(|row| Record::from_row(kind, row)).collect()
    }

    /// The archive in (host, user, store, seq) order. SQLite's row-value comparison does
    /// not reach the index's seq column (the rowid), and would scan the cursor's store from
    /// its start on every page: the rest of that store and the stores after it are two
    /// range searches instead, in one read transaction.
    async fn export_archive(&self, after: &ExportCursor, limit: i64) -> Result<Vec<Record>> {
        const SELECT: &str = "SELECT seq, host, username, store, id, stamp_us, with_jid, payload FROM archive INDEXED BY archive_by_owner";
        let [host, user, store, _] = &after.key;
        let mut tx = self.readers.begin().await?;
        let mut rows = sqlx::query(&format!("{SELECT} WHERE host = ? AND username = ? AND store = ? AND seq > ? ORDER BY seq LIMIT ?"))
            .bind(host)
            .bind(user)
            .bind(store)
            .bind(after.seq)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let rest = limit - rows.len() as i64;
        if rest > 0 {
            let next = sqlx::query(&format!("{SELECT} WHERE (host, username, store) > (?, ?, ?) ORDER BY host, username, store, seq LIMIT ?"))
                .bind(host)
                .bind(user)
                .bind(store)
                .bind(rest)
                .fetch_all(&mut *tx)
                .await?;
            rows.extend(next);
        }
        tx.commit().await?;
        rows.iter().map(|row| Record::from_row(RecordKind::Archive, row)).collect()
    }

    pub async fn import(&self, records: &[Record]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let mut archive = Vec::new();
        for r in records {
            let query = match r {
                Record::Account { host, user, credentials, created_at } => {
                    sqlx::query("INSERT INTO accounts (host, username, credentials, created_at) VALUES (?, ?, ?, ?)")
                        .bind(host)
                        .bind(user)
                        .bind(credentials)
                        .bind(created_at)
                }
                Record::Keyval { host, user, store, value } => {
                    sqlx::query("INSERT INTO keyval (host, username, store, value) VALUES (?, ?, ?, ?)")
                        .bind(host)
                        .bind(user)
                        .bind(store)
                        .bind(value)
                }
                Record::Map { host, user, store, key, value } => {
                    sqlx::query("INSERT INTO map (host, username, store, key, value) VALUES (?, ?, ?, ?, ?)")
                        .bind(host)
                        .bind(user)
                        .bind(store)
                        .bind(key)
                        .bind(value)
                }
                Record::Archive { item, .. } => {
                    archive.push(item);
                    continue;
                }
            };
            query.execute(&mut *tx).await.map_err(already_exists)?;
        }
        insert_archive(&mut tx, &archive).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The durability and concurrency settings are easy to lose silently (sqlx applies
    /// them per connection), so check that they took effect.
    #[tokio::test]
    async fn connections_are_configured() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite"))
            .await
            .unwrap();

        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        // 2 = FULL.
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(sync, 2);
        for pool in [&store.writer, &store.readers] {
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(fk, 1);
            let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(timeout, BUSY_TIMEOUT.as_millis() as i64);
        }

        let r = sqlx::query("DELETE FROM accounts")
            .execute(&store.readers)
            .await;
        assert!(r.is_err(), "reader connections must be read-only");
        store.close().await;
    }
}
