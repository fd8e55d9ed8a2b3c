-- The delta feed and copies: consumer positions, purged tombstones, copy cursors.
-- Never edit this file once it has landed; add a new migration instead.

-- When a tombstone was made (unix seconds), so tombstones past the maximum age can be purged
-- even if a consumer never comes back.
ALTER TABLE hs_aspect ADD COLUMN deleted_at BIGINT;
ALTER TABLE hs_resource ADD COLUMN deleted_at BIGINT;

-- Each consumer's last polled position in a collection's feed: the owner keeps tombstones
-- until every known consumer has passed them (within the maximum age).
CREATE TABLE hs_consumer (
    collection TEXT NOT NULL,
    consumer   TEXT NOT NULL,
    version    BIGINT NOT NULL,
    polled_at  BIGINT NOT NULL,
    PRIMARY KEY (collection, consumer)
);

-- The greatest version of a tombstone purged from a collection: a consumer behind it may have
-- missed a deletion and must re-read from version 0 (410 resync-required).
CREATE TABLE hs_purge (
    collection TEXT NOT NULL PRIMARY KEY,
    version    BIGINT NOT NULL
);

-- Where a copy stands in its source's feed. Written in the same transaction as the chunk it
-- applied, so a restarted or replacing reader resumes exactly there.
CREATE TABLE hs_cursor (
    collection TEXT NOT NULL PRIMARY KEY,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
