-- The reader lease of a reading SA: the unit that may apply chunks to its copies (`holder`, ''
-- when released), its `epoch` (one more at every change of hands) and when it expires, in
-- milliseconds since the Unix epoch by the database's own clock. Every chunk is applied only if
-- its epoch still holds the lease, checked in the apply transaction (store/lease.rs).
CREATE TABLE hs_lease (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
