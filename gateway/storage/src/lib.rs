//! Storage: accounts plus the three kinds of per-user store.
//!
//! * **keyval**: one value per user and store name (a vCard, private XML).
//! * **map**: keyed items per user and store name (roster items).
//! * **archive**: time-ordered items per user and store name, queryable (offline messages,
//!   later MAM).
//!
//! Values are opaque bytes: the module that owns a store decides its encoding.
//! [`Store`] is an enum over backends, so the server never sees which one is in use; every
//! backend passes the one conformance suite in [`conformance`].
//!
//! Every write is durable when its future resolves: nothing is acknowledged before that.

pub mod conformance;
mod postgres;
mod sqlite;
mod stamps;

use std::path::Path;
use std::sync::Arc;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("already exists")]
    AlreadyExists,
    #[error("not found")]
    NotFound,
    #[error("quota exceeded")]
    QuotaExceeded,
    #[error("unsupported storage URL {0:?}")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// Identifies a user: the served domain and the (nodeprepped) localpart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserRef<'a> {
    pub host: &'a str,
    pub user: &'a str,
}

/// One write of an atomic batch ([`Store::write_batch`]). `None` deletes.
#[derive(Clone, Copy, Debug)]
pub enum Write<'a> {
    Keyval { store: &'a str, value: Option<&'a [u8]> },
    Map { store: &'a str, key: &'a str, value: Option<&'a [u8]> },
}

/// A new archive item. The caller chooses the id (a stable, unique string such as a
/// XEP-0359 stanza-id) and the timestamp (microseconds since the Unix epoch), which the
/// store raises to the newest stamp already in the item's store if it is earlier by at
/// most a minute (see the `stamps` module).
#[derive(Clone, Copy, Debug)]
pub struct NewArchiveItem<'a> {
    pub id: &'a str,
    pub stamp_us: i64,
    /// The bare JID of the other party, for filtering.
    pub with: &'a str,
    pub payload: &'a [u8],
}

/// An archive item with everything owned, for batched appends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveAppend {
    pub host: String,
    pub user: String,
    pub store: String,
    pub id: String,
    pub stamp_us: i64,
    pub with: String,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveItem {
    pub id: String,
    pub stamp_us: i64,
    pub with: String,
    pub payload: Vec<u8>,
}

/// The most one user may hold in one archive store: items, and bytes of payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub items: u64,
    pub bytes: u64,
}

impl Quota {
    /// A bound on the number of items alone.
    pub fn items(items: u64) -> Self {
        Quota { items, bytes: u64::MAX }
    }
}

/// Filter and page of an archive query. Items come in insertion order (oldest first);
/// `last_page` returns the newest `limit` matching items, still oldest first. A store's
/// stamps rise with its insertion order, so `start`/`end` cost a few index reads
/// whatever the archive's size, not a walk to the time asked for.
#[derive(Clone, Debug, Default)]
pub struct ArchiveQuery<'a> {
    pub with: Option<&'a str>,
    pub start_us: Option<i64>,
    pub end_us: Option<i64>,
    /// Only items after (exclusive) the item with this id.
    pub after_id: Option<&'a str>,
    /// Only items before (exclusive) the item with this id.
    pub before_id: Option<&'a str>,
    pub limit: Option<usize>,
    /// At most this many bytes of payload in the page (its first item comes whatever its
    /// size): a page that stops early for it is not `complete`.
    pub max_bytes: Option<usize>,
    pub last_page: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivePage {
    pub items: Vec<ArchiveItem>,
    /// True when no matching item lies beyond the page in the paging direction.
    pub complete: bool,
}

/// Which archive items to delete.
#[derive(Clone, Copy, Debug)]
pub enum ArchiveDelete<'a> {
    All,
    Ids(&'a [&'a str]),
    /// Every item older than this timestamp (retention).
    OlderThan(i64),
    /// Every item but the newest this many (a bounded list, such as a pubsub node).
    AllButNewest(u64),
}

/// One row of any table, as [`copy_all`] moves it between backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Account { host: String, user: String, credentials: Vec<u8>, created_at: i64 },
    Keyval { host: String, user: String, store: String, value: Vec<u8> },
    Map { host: String, user: String, store: String, key: String, value: Vec<u8> },
    /// `seq` is the item's place in the source, only for paging through it: the target
    /// gives items its own seqs, in the order they are imported, and raises a stamp earlier
    /// than the store's newest to it, as any append does.
    Archive { seq: i64, item: ArchiveAppend },
}

/// The tables [`Store::export`] pages through, in the order [`copy_all`] copies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Account,
    Keyval,
    Map,
    Archive,
}

impl RecordKind {
    pub const ALL: [RecordKind; 4] = [RecordKind::Account, RecordKind::Keyval, RecordKind::Map, RecordKind::Archive];
}

/// Where [`Store::export`] resumes: after this row's key, in key order. Every table is
/// ordered by its key; the archive's is (host, user, store, seq), so that each store's
/// items keep their order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportCursor {
    /// (host, user, store, key), as far as the table's key goes; empty strings sort first.
    pub key: [String; 4],
    /// The archive's seq, after its (host, user, store).
    pub seq: i64,
}

impl Record {
    /// Reads one row of an export query, whose columns are the variant's fields in order
    /// (the archive's seq first).
    fn from_row<'r, R: sqlx::Row>(kind: RecordKind, row: &'r R) -> Result<Record>
    where
        usize: sqlx::ColumnIndex<R>,
        String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(match kind {
            RecordKind::Account => Record::Account {
                host: row.try_get(0)?,
                user: row.try_get(1)?,
                credentials: row.try_get(2)?,
                created_at: row.try_get(3)?,
            },
            RecordKind::Keyval => {
                Record::Keyval { host: row.try_get(0)?, user: row.try_get(1)?, store: row.try_get(2)?, value: row.try_get(3)? }
            }
            RecordKind::Map => Record::Map {
                host: row.try_get(0)?,
                user: row.try_get(1)?,
                store: row.try_get(2)?,
                key: row.try_get(3)?,
                value: row.try_get(4)?,
            },
            RecordKind::Archive => Record::Archive {
                seq: row.try_get(0)?,
                item: ArchiveAppend {
                    host: row.try_get(1)?,
                    user: row.try_get(2)?,
                    store: row.try_get(3)?,
                    id: row.try_get(4)?,
                    stamp_us: row.try_get(5)?,
                    with: row.try_get(6)?,
                    payload: row.try_get(7)?,
                },
            },
        })
    }

    /// The cursor that resumes an export after this row.
    pub fn cursor(&self) -> ExportCursor {
        let s = |v: &[&str]| -> [String; 4] { std::array::from_fn(|i| v.get(i).map_or_else(String::new, |s| (*s).to_owned())) };
        match self {
            Record::Account { host, user, .. } => ExportCursor { key: s(&[host, user]), seq: 0 },
            Record::Keyval { host, user, store, .. } => ExportCursor { key: s(&[host, user, store]), seq: 0 },
            Record::Map { host, user, store, key, .. } => ExportCursor { key: s(&[host, user, store, key]), seq: 0 },
            Record::Archive { seq, item } => ExportCursor { key: s(&[&item.host, &item.user, &item.store]), seq: *seq },
        }
    }
}

/// What a storage operation did, as the server's metrics count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Reading or changing an account's credentials, creating or deleting one.
    Account,
    /// A keyval or map read.
    Read,
    /// A keyval or map write (one transaction of [`Store::write_batch`]).
    Write,
    /// Archive appends, one item or a batch.
    ArchiveAppend,
    /// Archive reads: queries, single items, counts.
    ArchiveQuery,
    /// Archive changes other than appends: replacements, deletions, expiry.
    ArchiveChange,
}

impl Operation {
    pub const ALL: [Operation; 6] =
        [Operation::Account, Operation::Read, Operation::Write, Operation::ArchiveAppend, Operation::ArchiveQuery, Operation::ArchiveChange];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Account => "account",
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::ArchiveAppend => "archive_append",
            Operation::ArchiveQuery => "archive_query",
            Operation::ArchiveChange => "archive_change",
        }
    }
}

/// Told of every operation as it completes (metrics). Called on the operation's task, so
/// it must be cheap and never block.
pub trait Observer: Send + Sync {
    fn completed(&self, op: Operation, took: std::time::Duration, ok: bool);
}

/// The storage backends.
#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// A store: a backend, and whoever watches its operations.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    observer: Option<Arc<dyn Observer>>,
}

/// Runs `$e` on the backend, telling the observer (if any) how it went.
macro_rules! dispatch {
    ($self:ident, $op:expr, $s:ident => $e:expr) => {{
        let started = $self.observer.as_ref().map(|_| std::time::Instant::now());
        let result = match &$self.backend {
            Backend::Sqlite($s) => $e,
            Backend::Postgres($s) => $e,
        };
        if let (Some(observer), Some(started)) = (&$self.observer, started) {
            observer.completed($op, started.elapsed(), result.is_ok());
        }
        result
    }};
}

/// Whether `url` names a PostgreSQL database (both schemes libpq accepts).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl Store {
    /// Opens (creating and migrating if needed) the store named by `url`:
    /// `sqlite://path/to/file.db`, or `postgres://user:password@host:port/database` (the
    /// database is created if the role may create databases and it does not exist yet).
    pub async fn open(url: &str) -> Result<Store> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(Store { backend: Backend::Sqlite(SqliteStore::open(Path::new(path)).await?), observer: None });
        }
        if is_postgres_url(url) {
            return Ok(Store { backend: Backend::Postgres(PgStore::open(url).await?), observer: None });
        }
        Err(StorageError::UnsupportedUrl(url.to_owned()))
    }

    /// The same store, its operations reported to `observer`.
    pub fn observed(self, observer: Arc<dyn Observer>) -> Store {
        Store { observer: Some(observer), ..self }
    }

    /// Whether the database answers a trivial query (readiness checks).
    pub async fn ping(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.ping().await,
            Backend::Postgres(s) => s.ping().await,
        }
    }

    /// Flushes and closes: call on shutdown.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(s) => s.close().await,
        }
    }

    // Accounts. The credentials blob is opaque here (the server stores serialized SCRAM keys).

    /// Fails with [`StorageError::AlreadyExists`] if the account exists.
    pub async fn create_account(&self, u: UserRef<'_>, credentials: &[u8]) -> Result<()> {
        dispatch!(self, Operation::Account, s => s.create_account(u, credentials).await)
    }

    pub async fn get_account(&self, u: UserRef<'_>) -> Result<Option<Vec<u8>>> {
        dispatch!(self, Operation::Account, s => s.get_account(u).await)
    }

    /// Fails with [`StorageError::NotFound`] if there is no such account.
    pub async fn set_account(&self, u: UserRef<'_>, credentials: &[u8]) -> Result<()> {
        dispatch!(self, Operation::Account, s => s.set_account(u, credentials).await)
    }

    /// Deletes the account and every store of that user, atomically. Returns whether the
    /// account existed.
    pub async fn delete_account(&self, u: UserRef<'_>) -> Result<bool> {
        dispatch!(self, Operation::Account, s => s.delete_account(u).await)
    }

    /// Localparts of the host's accounts, sorted.
    pub async fn list_accounts(&self, host: &str) -> Result<Vec<String>> {
        dispatch!(self, Operation::Account, s => s.list_accounts(host).await)
    }

    // keyval

    pub async fn kv_get(&self, u: UserRef<'_>, store: &str) -> Result<Option<Vec<u8>>> {
        dispatch!(self, Operation::Read, s => s.kv_get(u, store).await)
    }

    pub async fn kv_set(&self, u: UserRef<'_>, store: &str, value: Option<&[u8]>) -> Result<()> {
        self.write_batch(u, &[Write::Keyval { store, value }]).await
    }

    // map

    pub async fn map_get(&self, u: UserRef<'_>, store: &str, key: &str) -> Result<Option<Vec<u8>>> {
        dispatch!(self, Operation::Read, s => s.map_get(u, store, key).await)
    }

    /// Every (key, value) of the map, sorted by key.
    pub async fn map_all(&self, u: UserRef<'_>, store: &str) -> Result<Vec<(String, Vec<u8>)>> {
        dispatch!(self, Operation::Read, s => s.map_all(u, store).await)
    }

    /// How many keys the map holds, counting no further than `up_to`: checking a cap costs
    /// O(cap), not O(map size).
    pub async fn map_count(&self, u: UserRef<'_>, store: &str, up_to: u64) -> Result<u64> {
        dispatch!(self, Operation::Read, s => s.map_count(u, store, up_to).await)
    }

    pub async fn map_set(&self, u: UserRef<'_>, store: &str, key: &str, value: Option<&[u8]>) -> Result<()> {
        self.write_batch(u, &[Write::Map { store, key, value }]).await
    }

    /// Applies all writes in one transaction.
    pub async fn write_batch(&self, u: UserRef<'_>, writes: &[Write<'_>]) -> Result<()> {
        dispatch!(self, Operation::Write, s => s.write_batch(u, writes).await)
    }

    // archive

    /// Appends an item. With `quota`, fails with [`StorageError::QuotaExceeded`] when the
    /// store already holds `quota.items` items for the user, or when the item would take
    /// the user's payloads there over `quota.bytes` (checked in the same transaction).
    pub async fn archive_append(&self, u: UserRef<'_>, store: &str, item: NewArchiveItem<'_>, quota: Option<Quota>) -> Result<()> {
        dispatch!(self, Operation::ArchiveAppend, s => s.archive_append(u, store, item, quota).await)
    }

    /// Appends many items, for any users and stores, in one transaction: one durable
    /// commit covers them all. Fails as a whole (with `AlreadyExists` on a duplicate id).
    pub async fn archive_append_batch(&self, items: &[ArchiveAppend]) -> Result<()> {
        dispatch!(self, Operation::ArchiveAppend, s => s.archive_append_batch(items).await)
    }

    pub async fn archive_query(&self, u: UserRef<'_>, store: &str, q: &ArchiveQuery<'_>) -> Result<ArchivePage> {
        dispatch!(self, Operation::ArchiveQuery, s => s.archive_query(u, store, q).await)
    }

    /// The item with this id, if any.
    pub async fn archive_get(&self, u: UserRef<'_>, store: &str, id: &str) -> Result<Option<ArchiveItem>> {
        dispatch!(self, Operation::ArchiveQuery, s => s.archive_get(u, store, id).await)
    }

    pub async fn archive_count(&self, u: UserRef<'_>, store: &str) -> Result<u64> {
        dispatch!(self, Operation::ArchiveQuery, s => s.archive_count(u, store).await)
    }

    /// Deletes every user's items of `store` older than the timestamp (retention); returns
    /// how many.
    pub async fn archive_expire(&self, store: &str, older_than_us: i64) -> Result<u64> {
        dispatch!(self, Operation::ArchiveChange, s => s.archive_expire(store, older_than_us).await)
    }

    /// Replaces the payload of item `id`, keeping its place and stamp (a retracted
    /// message's tombstone). Fails with [`StorageError::NotFound`] when there is no such item.
    pub async fn archive_replace(&self, u: UserRef<'_>, store: &str, id: &str, payload: &[u8]) -> Result<()> {
        dispatch!(self, Operation::ArchiveChange, s => s.archive_replace(u, store, id, payload).await)
    }

    /// Returns the number of items deleted.
    pub async fn archive_delete(&self, u: UserRef<'_>, store: &str, which: ArchiveDelete<'_>) -> Result<u64> {
        dispatch!(self, Operation::ArchiveChange, s => s.archive_delete(u, store, which).await)
    }

    // Whole-database copies (migrate-storage).

    /// Up to `limit` rows of one table after `after`, in the table's export order (see
    /// [`ExportCursor`]).
    pub async fn export(&self, kind: RecordKind, after: &ExportCursor, limit: usize) -> Result<Vec<Record>> {
        dispatch!(self, Operation::Read, s => s.export(kind, after, limit).await)
    }

    /// Inserts the rows in one transaction, archive items in the given order. Fails with
    /// [`StorageError::AlreadyExists`] when a row's key is taken.
    pub async fn import(&self, records: &[Record]) -> Result<()> {
        dispatch!(self, Operation::Write, s => s.import(records).await)
    }

    /// The PostgreSQL backend, for what only it has (the query plans of its benchmark).
    #[doc(hidden)]
    pub fn as_postgres(&self) -> Option<&PgStore> {
        match &self.backend {
            Backend::Postgres(pg) => Some(pg),
            Backend::Sqlite(_) => None,
        }
    }
}

/// How many rows of each kind [`copy_all`] copied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyCounts {
    pub accounts: u64,
    pub keyval: u64,
    pub map: u64,
    pub archive: u64,
}

/// Rows read and written per round trip by [`copy_all`]: large enough that each page's
/// commit is cheap next to its rows, small enough to keep memory flat on any archive.
const COPY_PAGE: usize = 1000;

/// Copies every row of `from` into `to` (which should be empty): accounts with their
/// creation times, and every keyval, map and archive store of every owner, including
/// owners that are not accounts (rooms, services). Each archive store's items keep their
/// order and stamps (in time order already, unless written before appends kept them so:
/// such a stamp is raised to its predecessor's, as any append raises it). `progress` is
/// told the counts after each page. Each page is one transaction in `to`, so a copy that
/// fails part-way leaves whole pages; it fails on a row that exists in `to` already rather
/// than overwrite it.
pub async fn copy_all(from: &Store, to: &Store, mut progress: impl FnMut(&CopyCounts)) -> Result<CopyCounts> {
    let mut counts = CopyCounts::default();
    for kind in RecordKind::ALL {
        let mut cursor = ExportCursor::default();
        loop {
            let page = from.export(kind, &cursor, COPY_PAGE).await?;
            let Some(last) = page.last() else { break };
            cursor = last.cursor();
            to.import(&page).await?;
            let n = page.len() as u64;
            match kind {
                RecordKind::Account => counts.accounts += n,
                RecordKind::Keyval => counts.keyval += n,
                RecordKind::Map => counts.map += n,
                RecordKind::Archive => counts.archive += n,
            }
            progress(&counts);
        }
    }
    Ok(counts)
}

