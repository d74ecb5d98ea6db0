-- An upper bound on every stamp in the archive. Appends keep each store's stamps rising
-- (src/stamps.rs), which needs the newest stamp of each store a batch writes to: one index
-- look-up per store, about a tenth more CPU per archived message. An item stamped at or
-- after this bound cannot be raised by any store, so only items stamped before it (after
-- the clock stepped back, or queued a moment out of order) cost a look-up. Appends raise
-- it in their transaction; deletions leave it, as an upper bound stays one. One row.
CREATE TABLE archive_stamp_bound (stamp_us INTEGER NOT NULL);
INSERT INTO archive_stamp_bound SELECT COALESCE(MAX(stamp_us), 0) FROM archive;
