-- Every archived message costs a random page write per index (its owner's place in each),
-- and on a busy server those writes were most of the CPU: four indexes per row, two rows
-- per chat message. One seq-ordered index now serves every query, with stamp_us and
-- with_jid in it so that start/end and with filters are checked while walking it, without
-- reading the table; UNIQUE (host, username, store, id) still resolves ids. The price: a
-- filter that matches few of an account's items walks past the others' index entries
-- (bench/README.md has the figures).
DROP INDEX archive_by_with;
DROP INDEX archive_by_stamp;
DROP INDEX archive_by_seq;
CREATE INDEX archive_by_owner ON archive (host, username, store, seq, stamp_us, with_jid);
