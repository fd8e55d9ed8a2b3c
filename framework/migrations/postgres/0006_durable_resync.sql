-- A copy's re-read from version 0 after `410` lives in its database, so a restart or a
-- takeover by the other reader resumes it. While it runs, `version` (the copy's feed horizon for
-- its own readers) stays where it was; `resync_position` (NULL when no re-read runs) is how far
-- the re-read has come, and `resync_generation` counts re-reads.
ALTER TABLE hs_cursor ADD COLUMN resync_position BIGINT;
ALTER TABLE hs_cursor ADD COLUMN resync_generation BIGINT NOT NULL DEFAULT 0;

-- The re-read generation that last delivered this aspect. When a re-read ends, the copy's live
-- aspects it did not deliver are what the source deleted meanwhile (their tombstones were
-- purged): they are dropped.
ALTER TABLE hs_aspect ADD COLUMN resync_mark BIGINT NOT NULL DEFAULT 0;
