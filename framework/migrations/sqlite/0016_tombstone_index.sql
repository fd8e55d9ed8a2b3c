-- The tombstone purge finds its work through this index alone: the tombstones of a collection
-- in version order, with their deletion time, so a purge batch costs what it removes. Without
-- it the purge was planned on `hs_aspect_by_version` and walked every live aspect below the
-- horizon once per resource it touched (issue 25: 8-15.6 s under SQLite's write lock on 4,266
-- orders). Partial: live aspects, the vast majority, are not in it.
CREATE INDEX hs_aspect_tombstones ON hs_aspect (collection, version, deleted_at) WHERE deleted = 1;
