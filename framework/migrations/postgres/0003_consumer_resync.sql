-- A consumer re-reading everything from version 0 (after a 410) passes versions below the
-- purged tombstones on its way; it must not be sent back to 0 again. 1 while such a re-read is
-- under way, 0 otherwise.
ALTER TABLE hs_consumer ADD COLUMN resync BIGINT NOT NULL DEFAULT 0;
