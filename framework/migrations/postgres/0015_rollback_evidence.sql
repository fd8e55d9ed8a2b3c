-- Rollback evidence a unit found itself (not a consumer's claim): `exposed` is the greatest
-- version the SA's own units know they exposed (a committed write's answer, a durable feed
-- horizon) when the counter was found below it; leaving `restoring` moves the counter past it,
-- while a consumer's `ahead` alone moves it only as far as a peer's copy really reaches.
-- `evidence` says in words what proved the rollback, for `GET /admin/restore` and the log.
ALTER TABLE hs_restoring ADD COLUMN exposed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hs_restoring ADD COLUMN evidence TEXT NOT NULL DEFAULT '';
