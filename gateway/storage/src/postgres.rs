//! The PostgreSQL backend: a connection pool, migrated on open. Several servers may share
//! one database, so everything a single SQLite writer used to order is ordered here in
//! the database: see [`lock_archives`].

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::stamps::{raised_stamp, raised_stamps, seq_bounds, stores_of, StampProbe, StoreKey};
use crate::{
    ArchiveAppend, ArchiveDelete, ArchiveItem, ArchivePage, ArchiveQuery, ExportCursor, NewArchiveItem, Quota, Record,
    RecordKind, Result, StorageError, UserRef, Write,
};

/// Connections per server. The server's writes are short transactions; more connections
/// than this mostly add contention in the database.
const CONNECTIONS: u32 = 16;
/// How long a query waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// The SQLSTATE of connecting to a database that does not exist.
const INVALID_CATALOG_NAME: &str = "3D000";

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// Maps a unique-constraint violation to [`StorageError::AlreadyExists`].
fn already_exists(e: sqlx::Error) -> StorageError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StorageError::AlreadyExists,
        _ => e.into(),
    }
}

/// The advisory-lock key of one owner's archive store, computed by the database so that
/// every server agrees on it. A localpart and a domain cannot contain '/', so the joined
/// text names one (host, user, store).
const ARCHIVE_LOCK_KEY: &str = "hashtextextended(host || '/' || username || '/' || store, 0)";

/// Serializes appends to the given owners' archive stores until the transaction ends.
///
/// Seqs come from an identity, which hands values out at insert time: without this, two
/// appends to one store could commit in the opposite order to their seqs, and a reader
/// paging "after" the larger seq would never see the smaller one, which committed later.
/// Under the lock an append takes its seq only once the previous append to that store has
/// committed, so within a store seqs become visible in order. The lock also makes a quota
/// check and its insert atomic against other servers. Locks are taken in key order, so
/// batches spanning many stores cannot deadlock each other.
async fn lock_archives(conn: &mut PgConnection, hosts: &[&str], users: &[&str], stores: &[&str]) -> Result<()> {
    let sql = format!(
        "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT {ARCHIVE_LOCK_KEY} AS k \
         FROM unnest($1::text[], $2::text[], $3::text[]) AS o (host, username, store) ORDER BY k) AS keys"
    );
    sqlx::query(&sql).bind(hosts).bind(users).bind(stores).execute(conn).await?;
    Ok(())
}

/// Serializes a user's [`PgStore::write_batch`]es: two batches writing the same keys in
/// different orders would otherwise deadlock. The key space differs from the archive's
/// (two text arguments), so the two kinds of lock never collide.
async fn lock_user(conn: &mut PgConnection, u: UserRef<'_>) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))")
        .bind(u.host)
        .bind(u.user)
        .execute(conn)
        .await?;
    Ok(())
}

/// The seq (insertion position) of an archive item, for paging relative to it.
async fn seq_of(conn: &mut PgConnection, u: UserRef<'_>, store: &str, id: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT seq FROM archive WHERE host = $1 AND username = $2 AND store = $3 AND id = $4")
        .bind(u.host)
        .bind(u.user)
        .bind(store)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(StorageError::NotFound)
}

/// For the stores (from [`stores_of`]) whose newest stamp (that of their last seq) is later
/// than the earliest new item's: (index in `stores`, that stamp). Usually none.
async fn newer_stamps(conn: &mut PgConnection, stores: &[(StoreKey<'_>, i64)]) -> Result<Vec<(i64, i64)>> {
    let hosts: Vec<&str> = stores.iter().map(|s| s.0 .0).collect();
    let users: Vec<&str> = stores.iter().map(|s| s.0 .1).collect();
    let names: Vec<&str> = stores.iter().map(|s| s.0 .2).collect();
    let earliest: Vec<i64> = stores.iter().map(|s| s.1).collect();
    Ok(sqlx::query_as(
        "SELECT n - 1, newest FROM (SELECT n, earliest, \
         (SELECT stamp_us FROM archive a WHERE a.host = s.host AND a.username = s.username AND a.store = s.store \
          ORDER BY a.seq DESC LIMIT 1) AS newest \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS s (host, username, store, earliest, n)) AS t \
         WHERE newest > earliest",
    )
    .bind(hosts)
    .bind(users)
    .bind(names)
    .bind(earliest)
    .fetch_all(conn)
    .await?)
}

/// Inserts archive items in slice order, so seqs follow it, each stamped no earlier than
/// its store's newest item (see the `stamps` module): one statement to read those stamps
/// and one to insert, whatever the number of items (each column travels as one array).
/// The caller holds the stores' locks ([`lock_archives`]), so no other append comes
/// between the two.
async fn insert_archive(conn: &mut PgConnection, items: &[&ArchiveAppend]) -> Result<()> {
    let stores = stores_of(items);
    let newer = newer_stamps(&mut *conn, &stores).await?;
    let stamps = raised_stamps(items, &stores, newer);
    let col = |f: fn(&ArchiveAppend) -> &str| items.iter().map(|i| f(i)).collect::<Vec<_>>();
    let payloads: Vec<&[u8]> = items.iter().map(|i| i.payload.as_slice()).collect();
    sqlx::query(
        "INSERT INTO archive (host, username, store, id, stamp_us, with_jid, payload) \
         SELECT host, username, store, id, stamp_us, with_jid, payload \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bytea[]) \
         WITH ORDINALITY AS t (host, username, store, id, stamp_us, with_jid, payload, n) ORDER BY n",
    )
    .bind(col(|i| &i.host))
    .bind(col(|i| &i.user))
    .bind(col(|i| &i.store))
    .bind(col(|i| &i.id))
    .bind(stamps)
    .bind(col(|i| &i.with))
    .bind(payloads)
    .execute(conn)
    .await
    .map_err(already_exists)?;
    Ok(())
}

/// [`seq_bounds`]' lookups in one store, on the primary key (an index-only read: stamp_us
/// rides along in it).
struct Probe<'c, 'q> {
    conn: &'c mut PgConnection,
    u: UserRef<'q>,
    store: &'q str,
}

impl StampProbe for Probe<'_, '_> {
    async fn seq_range(&mut self) -> Result<Option<(i64, i64)>> {
        let (first, last): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT seq FROM archive WHERE host = $1 AND username = $2 AND store = $3 ORDER BY seq LIMIT 1), \
                    (SELECT seq FROM archive WHERE host = $1 AND username = $2 AND store = $3 ORDER BY seq DESC LIMIT 1)",
        )
        .bind(self.u.host)
        .bind(self.u.user)
        .bind(self.store)
        .fetch_one(&mut *self.conn)
        .await?;
        Ok(first.zip(last))
    }

    async fn stamps_from(&mut self, seqs: &[i64]) -> Result<Vec<Option<i64>>> {
        Ok(sqlx::query_scalar(
            "SELECT (SELECT stamp_us FROM archive WHERE host = $1 AND username = $2 AND store = $3 AND seq >= p \
             ORDER BY seq LIMIT 1) FROM unnest($4::bigint[]) WITH ORDINALITY AS t (p, n) ORDER BY n",
        )
        .bind(self.u.host)
        .bind(self.u.user)
        .bind(self.store)
        .bind(seqs)
        .fetch_all(&mut *self.conn)
        .await?)
    }
}

/// Locks the items' archive stores, then inserts them.
async fn append_archive(conn: &mut PgConnection, items: &[&ArchiveAppend]) -> Result<()> {
    let hosts: Vec<&str> = items.iter().map(|i| i.host.as_str()).collect();
    let users: Vec<&str> = items.iter().map(|i| i.user.as_str()).collect();
    let stores: Vec<&str> = items.iter().map(|i| i.store.as_str()).collect();
    lock_archives(&mut *conn, &hosts, &users, &stores).await?;
    insert_archive(conn, items).await
}

impl PgStore {
    pub async fn open(url: &str) -> Result<PgStore> {
        let options = PgConnectOptions::from_str(url)?;
        let connect = || PgPoolOptions::new().max_connections(CONNECTIONS).acquire_timeout(ACQUIRE_TIMEOUT).connect_with(options.clone());
        let pool = match connect().await {
            // Like SQLite's file, the database is created on first use (when the role may
            // create databases).
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(INVALID_CATALOG_NAME) => {
                Postgres::create_database(url).await?;
                connect().await?
            }
            r => r?,
        };
        // sqlx holds an advisory lock while migrating, so servers starting together
        // migrate once.
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn create_account(&self, u: UserRef<'_>, credentials: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO accounts (host, username, credentials, created_at) \
             VALUES ($1, $2, $3, extract(epoch FROM now())::bigint)",
        )
        .bind(u.host)
        .bind(u.user)
        .bind(credentials)
        .execute(&self.pool)
        .await
        .map_err(already_exists)?;
        Ok(())
    }

    pub async fn get_account(&self, u: UserRef<'_>) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT credentials FROM accounts WHERE host = $1 AND username = $2")
            .bind(u.host)
            .bind(u.user)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn set_account(&self, u: UserRef<'_>, credentials: &[u8]) -> Result<()> {
        let updated = sqlx::query("UPDATE accounts SET credentials = $1 WHERE host = $2 AND username = $3")
            .bind(credentials)
            .bind(u.host)
            .bind(u.user)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    pub async fn delete_account(&self, u: UserRef<'_>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let existed = sqlx::query("DELETE FROM accounts WHERE host = $1 AND username = $2")
            .bind(u.host)
            .bind(u.user)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        for sql in [
            "DELETE FROM keyval WHERE host = $1 AND username = $2",
            "DELETE FROM map WHERE host = $1 AND username = $2",
            "DELETE FROM archive WHERE host = $1 AND username = $2",
        ] {
            sqlx::query(sql).bind(u.host).bind(u.user).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(existed)
    }

    pub async fn list_accounts(&self, host: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT username FROM accounts WHERE host = $1 ORDER BY username")
            .bind(host)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn kv_get(&self, u: UserRef<'_>, store: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT value FROM keyval WHERE host = $1 AND username = $2 AND store = $3")
            .bind(u.host)
            .bind(u.user)
            .bind(store)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn map_get(&self, u: UserRef<'_>, store: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT value FROM map WHERE host = $1 AND username = $2 AND store = $3 AND key = $4")
            .bind(u.host)
            .bind(u.user)
            .bind(store)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn map_all(&self, u: UserRef<'_>, store: &str) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(sqlx::query_as("SELECT key, value FROM map WHERE host = $1 AND username = $2 AND store = $3 ORDER BY key")
            .bind(u.host)
            .bind(u.user)
            .bind(store)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn map_count(&self, u: UserRef<'_>, store: &str, up_to: u64) -> Result<u64> {
        let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM map WHERE host = $1 AND username = $2 AND store = $3 LIMIT $4) AS m",
        )
        .bind(u.host)
        .bind(u.user)
        .bind(store)
        .bind(up_to)
        .fetch_one(&self.pool)
        .await?;
        // COUNT(*) is never negative.
        Ok(count as u64)
    }

    /// Applies a user's writes in one transaction. PostgreSQL groups concurrent commits
    /// into one WAL flush itself, so there is no committer task as on SQLite.
    pub async fn write_batch(&self, u: UserRef<'_>, writes: &[Write<'_>]) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        lock_user(&mut tx, u).await?;
        for write in writes {
            let query = match *write {
                Write::Keyval { store, value: Some(value) } => sqlx::query(
                    "INSERT INTO keyval (host, username, store, value) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (host, username, store) DO UPDATE SET value = excluded.value",
                )
                .bind(u.host)
                .bind(u.user)
                .bind(store)
                .bind(value),
                Write::Keyval { store, value: None } => {
                    sqlx::query("DELETE FROM keyval WHERE host = $1 AND username = $2 AND store = $3")
                        .bind(u.host)
                        .bind(u.user)
                        .bind(store)
                }
                Write::Map { store, key, value: Some(value) } => sqlx::query(
                    "INSERT INTO map (host, username, store, key, value) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (host, username, store, key) DO UPDATE SET value = excluded.value",
                )
                .bind(u.host)
                .bind(u.user)
                .bind(store)
                .bind(key)
                .bind(value),
                Write::Map { store, key, value: None } => {
                    sqlx::query("DELETE FROM map WHERE host = $1 AND username = $2 AND store = $3 AND key = $4")
                        .bind(u.host)
                        .bind(u.user)
                        .bind(store)
                        .bind(key)
                }
            };
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn archive_append(&self, u: UserRef<'_>, store: &str, item: NewArchiveItem<'_>, quota: Option<Quota>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Under the store's lock, the count and the newest stamp below see every append that
        // committed before this one (each statement reads the latest commits), and none can
        // slip in between them and the insert.
        lock_archives(&mut tx, &[u.host], &[u.user], &[store]).await?;
        if let Some(quota) = quota {
            // Counting stops at the item quota, so the check costs O(quota), not O(archive
            // size); below it, the sum covers every item the user holds.
            let items = i64::try_from(quota.items).unwrap_or(i64::MAX);
            let (held, held_bytes): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COALESCE(SUM(len), 0)::bigint FROM \
                 (SELECT octet_length(payload) AS len FROM archive \
                  WHERE host = $1 AND username = $2 AND store = $3 LIMIT $4) AS a",
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
        sqlx::query(
            "INSERT INTO archive (host, username, store, id, stamp_us, with_jid, payload) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(u.host)
        .bind(u.user)
        .bind(store)
        .bind(item.id)
        .bind(raised_stamp(item.stamp_us, newer.first().map(|&(_, newest)| newest)))
        .bind(item.with)
        .bind(item.payload)
        .execute(&mut *tx)
        .await
        .map_err(already_exists)?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn archive_append_batch(&self, items: &[ArchiveAppend]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        append_archive(&mut tx, &items.iter().collect::<Vec<_>>()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The statement that reads a query's page (see [`PgStore::archive_query`]), after
    /// `prefix`; and whether it reads backwards.
    async fn page_statement<'q>(
        conn: &mut PgConnection,
        prefix: &str,
        u: UserRef<'q>,
        store: &'q str,
        q: &ArchiveQuery<'q>,
    ) -> Result<(QueryBuilder<'q, Postgres>, bool)> {
        let after = match q.after_id {
            Some(id) => Some(seq_of(&mut *conn, u, store, id).await?),
            None => None,
        };
        let before = match q.before_id {
            Some(id) => Some(seq_of(&mut *conn, u, store, id).await?),
            None => None,
        };
        // A time range becomes a seq range, so the page is read from its first item on
        // rather than by walking the store's entries until the time is met.
        let (from, to) = seq_bounds(&mut Probe { conn: &mut *conn, u, store }, q.start_us, q.end_us).await?;
        // Paging before an item, like asking for the last page, reads backwards from the end.
        let backward = q.last_page || before.is_some();
        let order = if backward { "DESC" } else { "ASC" };

        // One statement reads the page in its paging direction, one item more than its
        // limit (which tells whether it is complete). Its seqs are picked first, from an
        // index alone where the filters allow, then only those rows are read. With a byte
        // bound, a running total of payload sizes (octet_length reads no payload) leaves
        // out every payload past the bound but the first: such rows end the page, and are
        // never sent over.
        let mut sql = QueryBuilder::<Postgres>::new(prefix);
        sql.push("SELECT id, stamp_us, with_jid, ");
        match q.max_bytes {
            Some(max) => {
                let max = i64::try_from(max).unwrap_or(i64::MAX);
                sql.push("CASE WHEN row_number() OVER w = 1 OR sum(octet_length(payload)) OVER w <= ");
                sql.push_bind(max);
                sql.push(" THEN payload END");
            }
            None => {
                sql.push("payload");
            }
        }
        sql.push(" FROM archive WHERE host = ").push_bind(u.host);
        sql.push(" AND username = ").push_bind(u.user);
        sql.push(" AND store = ").push_bind(store);
        sql.push(" AND seq IN (SELECT seq FROM archive WHERE host = ").push_bind(u.host);
        sql.push(" AND username = ").push_bind(u.user);
        sql.push(" AND store = ").push_bind(store);
        if let Some(start) = q.start_us {
            sql.push(" AND stamp_us >= ").push_bind(start);
        }
        if let Some(end) = q.end_us {
            sql.push(" AND stamp_us <= ").push_bind(end);
        }
        if let Some(with) = q.with {
            sql.push(" AND with_jid = ").push_bind(with);
        }
        if let Some(after) = after {
            sql.push(" AND seq > ").push_bind(after);
        }
        if let Some(before) = before {
            sql.push(" AND seq < ").push_bind(before);
        }
        if let Some(from) = from {
            sql.push(" AND seq >= ").push_bind(from);
        }
        if let Some(to) = to {
            sql.push(" AND seq < ").push_bind(to);
        }
        sql.push(format!(" ORDER BY seq {order}"));
        if let Some(limit) = q.limit {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
            sql.push(" LIMIT ").push_bind(limit);
        }
        sql.push(")");
        if q.max_bytes.is_some() {
            sql.push(format!(" WINDOW w AS (ORDER BY seq {order})"));
        }
        sql.push(format!(" ORDER BY seq {order}"));
        Ok((sql, backward))
    }

    /// `EXPLAIN (ANALYZE, BUFFERS)` of the statement that reads the query's page: the
    /// plans in bench/README.md come from here, so they are those of the real statement.
    #[doc(hidden)]
    pub async fn explain_archive_query(&self, u: UserRef<'_>, store: &str, q: &ArchiveQuery<'_>) -> Result<String> {
        let mut conn = self.pool.acquire().await?;
        let (mut sql, _) = Self::page_statement(&mut conn, "EXPLAIN (ANALYZE, BUFFERS) ", u, store, q).await?;
        let lines: Vec<String> = sql.build_query_scalar().persistent(false).fetch_all(&mut *conn).await?;
        Ok(lines.join("\n"))
    }

    pub async fn archive_query(&self, u: UserRef<'_>, store: &str, q: &ArchiveQuery<'_>) -> Result<ArchivePage> {
        let mut conn = self.pool.acquire().await?;
        let (mut sql, backward) = Self::page_statement(&mut conn, "", u, store, q).await?;
        // Planned for these values each time (an unnamed statement), not once for any: a
        // generic plan cannot tell a one-day `start`/`end` range, best read from the stamp
        // index, from one covering the whole archive, and walked a million rows for it.
        let rows: Vec<(String, i64, String, Option<Vec<u8>>)> =
            sql.build_query_as().persistent(false).fetch_all(&mut *conn).await?;

        let mut complete = true;
        let mut items = Vec::with_capacity(rows.len());
        for (id, stamp_us, with, payload) in rows {
            let Some(payload) = payload else {
                // Past the byte bound: the page ends before this item.
                complete = false;
                break;
            };
            if q.limit.is_some_and(|limit| items.len() == limit) {
                // The extra item, beyond the page in the paging direction.
                complete = false;
                break;
            }
            items.push(ArchiveItem { id, stamp_us, with, payload });
        }
        if backward {
            items.reverse();
        }
        Ok(ArchivePage { items, complete })
    }

    pub async fn archive_get(&self, u: UserRef<'_>, store: &str, id: &str) -> Result<Option<ArchiveItem>> {
        let row: Option<(String, i64, String, Vec<u8>)> = sqlx::query_as(
            "SELECT id, stamp_us, with_jid, payload FROM archive WHERE host = $1 AND username = $2 AND store = $3 AND id = $4",
        )
        .bind(u.host)
        .bind(u.user)
        .bind(store)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id, stamp_us, with, payload)| ArchiveItem { id, stamp_us, with, payload }))
    }

    pub async fn archive_count(&self, u: UserRef<'_>, store: &str) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM archive WHERE host = $1 AND username = $2 AND store = $3")
            .bind(u.host)
            .bind(u.user)
            .bind(store)
            .fetch_one(&self.pool)
            .await?;
        // COUNT(*) is never negative.
        Ok(count as u64)
    }

    pub async fn archive_expire(&self, store: &str, older_than_us: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM archive WHERE store = $1 AND stamp_us < $2")
            .bind(store)
            .bind(older_than_us)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub async fn archive_replace(&self, u: UserRef<'_>, store: &str, id: &str, payload: &[u8]) -> Result<()> {
        let changed =
            sqlx::query("UPDATE archive SET payload = $1 WHERE host = $2 AND username = $3 AND store = $4 AND id = $5")
                .bind(payload)
                .bind(u.host)
                .bind(u.user)
                .bind(store)
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        if changed == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    pub async fn archive_delete(&self, u: UserRef<'_>, store: &str, which: ArchiveDelete<'_>) -> Result<u64> {
        let owner = |sql| sqlx::query(sql).bind(u.host).bind(u.user).bind(store);
        let query = match which {
            ArchiveDelete::All | ArchiveDelete::AllButNewest(0) => {
                owner("DELETE FROM archive WHERE host = $1 AND username = $2 AND store = $3")
            }
            ArchiveDelete::Ids(ids) => {
                owner("DELETE FROM archive WHERE host = $1 AND username = $2 AND store = $3 AND id = ANY($4::text[])").bind(ids)
            }
            ArchiveDelete::OlderThan(stamp_us) => {
                owner("DELETE FROM archive WHERE host = $1 AND username = $2 AND store = $3 AND stamp_us < $4").bind(stamp_us)
            }
            // The newest `keep` items are found by walking back that far on the seq index;
            // everything older goes. With fewer items the subquery is NULL and nothing does.
            ArchiveDelete::AllButNewest(keep) => owner(
                "DELETE FROM archive WHERE host = $1 AND username = $2 AND store = $3 AND seq < \
                 (SELECT seq FROM archive WHERE host = $1 AND username = $2 AND store = $3 ORDER BY seq DESC LIMIT 1 OFFSET $4)",
            )
            .bind(i64::try_from(keep - 1).unwrap_or(i64::MAX)),
        };
        Ok(query.execute(&self.pool).await?.rows_affected())
    }

    pub async fn export(&self, kind: RecordKind, after: &ExportCursor, limit: usize) -> Result<Vec<Record>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let [host, user, store, key] = &after.key;
        let rows = match kind {
            RecordKind::Account => sqlx::query(
                "SELECT host, username, credentials, created_at FROM accounts \
                 WHERE (host, username) > ($1, $2) ORDER BY host, username LIMIT $3",
            )
            .bind(host)
            .bind(user)
            .bind(limit),
            RecordKind::Keyval => sqlx::query(
                "SELECT host, username, store, value FROM keyval \
                 WHERE (host, username, store) > ($1, $2, $3) ORDER BY host, username, store LIMIT $4",
            )
            .bind(host)
            .bind(user)
            .bind(store)
            .bind(limit),
            RecordKind::Map => sqlx::query(
                "SELECT host, username, store, key, value FROM map \
                 WHERE (host, username, store, key) > ($1, $2, $3, $4) ORDER BY host, username, store, key LIMIT $5",
            )
            .bind(host)
            .bind(user)
            .bind(store)
            .bind(key)
            .bind(limit),
            RecordKind::Archive => sqlx::query(
                "SELECT seq, host, username, store, id, stamp_us, with_jid, payload FROM archive \
                 WHERE (host, username, store, seq) > ($1, $2, $3, $4) ORDER BY host, username, store, seq LIMIT $5",
            )
            .bind(host)
            .bind(user)
            .bind(store)
            .bind(after.seq)
            .bind(limit),
        }
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Record::from_row(kind, row)).collect()
    }

    pub async fn import(&self, records: &[Record]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let mut archive = Vec::new();
        for r in records {
            let query = match r {
                Record::Account { host, user, credentials, created_at } => {
                    sqlx::query("INSERT INTO accounts (host, username, credentials, created_at) VALUES ($1, $2, $3, $4)")
                        .bind(host)
                        .bind(user)
                        .bind(credentials)
                        .bind(created_at)
                }
                Record::Keyval { host, user, store, value } => {
                    sqlx::query("INSERT INTO keyval (host, username, store, value) VALUES ($1, $2, $3, $4)")
                        .bind(host)
                        .bind(user)
                        .bind(store)
                        .bind(value)
                }
                Record::Map { host, user, store, key, value } => {
                    sqlx::query("INSERT INTO map (host, username, store, key, value) VALUES ($1, $2, $3, $4, $5)")
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
        if !archive.is_empty() {
            append_archive(&mut tx, &archive).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

