-- The same tables and column names as the SQLite schema (migrations/sqlite). Text columns
-- collate as "C" (byte order): keys sort the same way on both backends, whatever the
-- database's locale, and their indexes compare bytes instead of locale rules.

CREATE TABLE accounts (
    host        TEXT COLLATE "C" NOT NULL,
    username    TEXT COLLATE "C" NOT NULL,
    credentials BYTEA  NOT NULL,
    -- Seconds since the Unix epoch.
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (host, username)
);

CREATE TABLE keyval (
    host     TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    store    TEXT COLLATE "C" NOT NULL,
    value    BYTEA NOT NULL,
    PRIMARY KEY (host, username, store)
);

CREATE TABLE map (
    host     TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    store    TEXT COLLATE "C" NOT NULL,
    key      TEXT COLLATE "C" NOT NULL,
    value    BYTEA NOT NULL,
    PRIMARY KEY (host, username, store, key)
);

-- seq is the insertion order that paging relies on. An identity never hands out a value
-- twice, so a seq is never reused after the newest items are deleted. Values are taken
-- when a row is inserted, not when it commits: appends to one owner's store are
-- serialized by an advisory lock (see src/postgres.rs), so that within a store seqs
-- become visible in increasing order and paging "after" an item misses nothing.
--
-- The primary key leads with the owner, and no index orders by seq alone: a page is then
-- always read by walking its owner's entries. With an index on seq alone, the planner
-- reads a busy account's last page by walking the whole server's newest items backwards,
-- which is fast only while the account keeps talking; after a quiet month it walks the
-- month.
CREATE TABLE archive (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY,
    host     TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    store    TEXT COLLATE "C" NOT NULL,
    id       TEXT COLLATE "C" NOT NULL,
    -- Microseconds since the Unix epoch.
    stamp_us BIGINT NOT NULL,
    with_jid TEXT COLLATE "C" NOT NULL,
    payload  BYTEA  NOT NULL,
    -- Paging in insertion order (RSM after/before, the last page), counting, quotas,
    -- keeping the newest items. stamp_us and with_jid ride along so that a page's seqs
    -- are picked from this index alone (an index-only scan), start/end and with filters
    -- checked on its entries: when the planner misjudges how many of an account's items
    -- a start/end range holds, the walk costs index entries, not a table read per item.
    PRIMARY KEY (host, username, store, seq) INCLUDE (stamp_us, with_jid),
    -- Also serves id -> seq lookups for after/before paging and deletion by id.
    UNIQUE (host, username, store, id)
);

-- Paging filtered by the other party: only that conversation's entries are walked.
CREATE INDEX archive_by_with ON archive (host, username, store, with_jid, seq);
-- Narrow start/end ranges in a long archive, and per-user retention.
CREATE INDEX archive_by_stamp ON archive (host, username, store, stamp_us);
-- Retention across every user of a store (archive_expire).
CREATE INDEX archive_by_store_stamp ON archive (store, stamp_us);
