-- Origins: an SA may own its collections in several datacenters, each drawing versions from
-- its own interleaved counter (datacenter k of n: k, k+n, k+2n…). A feed then carries one
-- origin's changes at a time, in that origin's commit order, so a copy keeps one cursor per
-- origin, an owner or relay one position per consumer and origin, and one purge horizon per
-- origin (origins count at different rates: one origin's purged tombstones say nothing about
-- another's versions). `origin` is the owner datacenter's name; '' for a collection owned in
-- one datacenter, which is every row written before this migration.
-- SQLite cannot change a primary key in place: each table is rebuilt with its rows.
CREATE TABLE hs_cursor_by_origin (
    collection        TEXT    NOT NULL,
    origin            TEXT    NOT NULL DEFAULT '',
    version           INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    resync_position   BIGINT,
    resync_generation BIGINT  NOT NULL DEFAULT 0,
    aspects           TEXT,
    PRIMARY KEY (collection, origin)
);
INSERT INTO hs_cursor_by_origin
    (collection, version, updated_at, resync_position, resync_generation, aspects)
    SELECT collection, version, updated_at, resync_position, resync_generation, aspects
    FROM hs_cursor;
DROP TABLE hs_cursor;
ALTER TABLE hs_cursor_by_origin RENAME TO hs_cursor;

CREATE TABLE hs_consumer_by_origin (
    collection        TEXT    NOT NULL,
    consumer          TEXT    NOT NULL,
    origin            TEXT    NOT NULL DEFAULT '',
    version           INTEGER NOT NULL,
    polled_at         INTEGER NOT NULL,
    resync            INTEGER NOT NULL DEFAULT 0,
    interface_version BIGINT,
    PRIMARY KEY (collection, consumer, origin)
);
INSERT INTO hs_consumer_by_origin
    (collection, consumer, version, polled_at, resync, interface_version)
    SELECT collection, consumer, version, polled_at, resync, interface_version FROM hs_consumer;
DROP TABLE hs_consumer;
ALTER TABLE hs_consumer_by_origin RENAME TO hs_consumer;

CREATE TABLE hs_purge_by_origin (
    collection TEXT    NOT NULL,
    origin     TEXT    NOT NULL DEFAULT '',
    version    INTEGER NOT NULL,
    PRIMARY KEY (collection, origin)
);
INSERT INTO hs_purge_by_origin (collection, version) SELECT collection, version FROM hs_purge;
DROP TABLE hs_purge;
ALTER TABLE hs_purge_by_origin RENAME TO hs_purge;

-- The owner datacenters a collection's versions are drawn for, and this store's among them,
-- recorded the first time an owner unit starts active/active on an empty collection. They
-- are fixed from then on: another list, or a store that already drew versions alone, would
-- hand out numbers another datacenter uses (or used).
CREATE TABLE hs_origins (
    collection TEXT NOT NULL PRIMARY KEY,
    owners     TEXT NOT NULL,
    own        TEXT NOT NULL
);
