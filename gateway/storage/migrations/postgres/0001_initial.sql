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
CREATE TABLE archive (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host     TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    store    TEXT COLLATE "C" NOT NULL,
    id       TEXT COLLATE "C" NOT NULL,
    -- Microseconds since the Unix epoch.
    stamp_us BIGINT NOT NULL,
    with_jid TEXT COLLATE "C" NOT NULL,
    payload  BYTEA  NOT NULL,
    -- Also serves id -> seq lookups for after/before paging and deletion by id.
    UNIQUE (host, username, store, id)
);

-- Paging in insertion order (RSM after/before, the last page), counting, quotas, keeping
-- the newest items. stamp_us and with_jid ride along so that start/end and with filters
-- on a page are checked in the index.
CREATE INDEX archive_by_owner ON archive (host, username, store, seq) INCLUDE (stamp_us, with_jid);
-- Paging filtered by the other party: only that conversation's entries are walked.
CREATE INDEX archive_by_with ON archive (host, username, store, with_jid, seq);
-- Narrow start/end ranges in a long archive, and per-user retention.
CREATE INDEX archive_by_stamp ON archive (host, username, store, stamp_us);
-- Retention across every user of a store (archive_expire).
CREATE INDEX archive_by_store_stamp ON archive (store, stamp_us);
