-- Owned collections in `restoring` state: a consumer asked for a version beyond what this store
-- ever handed out, so the store was rolled back (a restore from a backup, a failover to a
-- lagging standby). While a row exists, writes to the collection are refused (`503
-- restoring`), so no version and no id is handed out a second time. `ahead` is the greatest
-- version any consumer reported; leaving the state moves the collection's counter past it.
CREATE TABLE hs_restoring (
    collection TEXT PRIMARY KEY,
    since BIGINT NOT NULL,
    reported_by TEXT NOT NULL,
    ahead BIGINT NOT NULL,
    restored_to BIGINT NOT NULL
);
