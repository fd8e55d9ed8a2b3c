-- The greatest version the feed exposed that no committed row may carry: a version drawn by a
-- transaction that rolled back. On PostgreSQL such a version lives only in the sequence's WAL
-- record, which is flushed by the next commit that writes WAL, so a crash before that commit
-- restarts the sequence below a version copies already hold as their cursor. Updating this row
-- (a durable commit, later in the WAL than the sequence's record) before the feed exposes such
-- a version makes the sequence's advance survive any crash. SQLite never needs it: its counter
-- row commits with the data it stamps; the table exists on both backends to keep one schema.
CREATE TABLE hs_exposed (
    collection TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);

-- The greatest version among a live resource's purged aspect tombstones. A read's version and
-- ETag is the greatest version among the selected aspects, tombstones included; once a
-- tombstone is purged, its version would vanish from that maximum and the ETag would go back
-- to an older state's (a client would get 304 for a state it never saw). Reads take this as a
-- floor, so a resource's tag never goes back.
ALTER TABLE hs_resource ADD COLUMN purged_version BIGINT NOT NULL DEFAULT 0;
