-- Columns are named `username` rather than `user`, which is a reserved word in PostgreSQL:
-- both backends keep the same column names.

CREATE TABLE accounts (
    host        TEXT    NOT NULL,
    username    TEXT    NOT NULL,
    credentials BLOB    NOT NULL,
    -- Seconds since the Unix epoch.
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (host, username)
) WITHOUT ROWID;

CREATE TABLE keyval (
    host     TEXT NOT NULL,
    username TEXT NOT NULL,
    store    TEXT NOT NULL,
    value    BLOB NOT NULL,
    PRIMARY KEY (host, username, store)
) WITHOUT ROWID;

CREATE TABLE map (
    host     TEXT NOT NULL,
    username TEXT NOT NULL,
    store    TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    BLOB NOT NULL,
    PRIMARY KEY (host, username, store, key)
) WITHOUT ROWID;

-- AUTOINCREMENT so that a seq is never reused after the newest items are deleted: seq is
-- the insertion order that paging relies on.
CREATE TABLE archive (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    host     TEXT    NOT NULL,
    username TEXT    NOT NULL,
    store    TEXT    NOT NULL,
    id       TEXT    NOT NULL,
    -- Microseconds since the Unix epoch.
    stamp_us INTEGER NOT NULL,
    with_jid TEXT    NOT NULL,
    payload  BLOB    NOT NULL,
    -- Also serves id -> seq lookups for after/before paging and deletion by id.
    UNIQUE (host, username, store, id)
);

-- The archive is read in seq order. A query picks one of these indexes explicitly (see
-- archive_query in src/sqlite.rs); stamp_us rides along in the seq-ordered ones so that a
-- start/end filter checked while walking them needs no table lookups.
-- Paging in insertion order, optionally filtered by start/end; counting; deletion.
CREATE INDEX archive_by_seq ON archive (host, username, store, seq, stamp_us);
-- Paging filtered by the other party.
CREATE INDEX archive_by_with ON archive (host, username, store, with_jid, seq, stamp_us);
-- Narrow start/end ranges, and retention (OlderThan).
CREATE INDEX archive_by_stamp ON archive (host, username, store, stamp_us);
