-- The units that use this database, recorded at each start. The units of one SA share one
-- store; a database already used by another SA's units is refused at start (two SAs in one
-- database would mix their collections, cursors and leases).
CREATE TABLE hs_unit (
    unit TEXT PRIMARY KEY,
    sa TEXT NOT NULL,
    listen TEXT NOT NULL,
    started_at BIGINT NOT NULL
);
