-- Origins: an SA may own its collections in several datacenters, each drawing versions from
-- its own interleaved counter (datacenter k of n: k, k+n, k+2n…). A feed then carries one
-- origin's changes at a time, in that origin's commit order, so a copy keeps one cursor per
-- origin, an owner or relay one position per consumer and origin, and one purge horizon per
-- origin (origins count at different rates: one origin's purged tombstones say nothing about
-- another's versions). `origin` is the owner datacenter's name; '' for a collection owned in
-- one datacenter, which is every row written before this migration.
ALTER TABLE hs_cursor ADD COLUMN origin TEXT NOT NULL DEFAULT '';
ALTER TABLE hs_cursor DROP CONSTRAINT hs_cursor_pkey;
ALTER TABLE hs_cursor ADD PRIMARY KEY (collection, origin);

ALTER TABLE hs_consumer ADD COLUMN origin TEXT NOT NULL DEFAULT '';
ALTER TABLE hs_consumer DROP CONSTRAINT hs_consumer_pkey;
ALTER TABLE hs_consumer ADD PRIMARY KEY (collection, consumer, origin);

ALTER TABLE hs_purge ADD COLUMN origin TEXT NOT NULL DEFAULT '';
ALTER TABLE hs_purge DROP CONSTRAINT hs_purge_pkey;
ALTER TABLE hs_purge ADD PRIMARY KEY (collection, origin);

-- The owner datacenters a collection's versions are drawn for, and this store's among them,
-- recorded the first time an owner unit starts active/active on an empty collection. They
-- are fixed from then on: another list, or a store that already drew versions alone, would
-- hand out numbers another datacenter uses (or used).
CREATE TABLE hs_origins (
    collection TEXT NOT NULL PRIMARY KEY,
    owners     TEXT NOT NULL,
    own        TEXT NOT NULL
);
