-- The run-time state of the SA's interface versions, shared by every unit of the SA: each unit
-- reads this table at least once a second and caches it, so an operator's
-- `PUT /admin/interfaces/v{N}` through HAProxy reaches every unit within 2 s and a restart
-- keeps it. A version without a row is active (a new binary's new version starts live).
-- `state`: active | deprecated | retired. `deprecated_at` (unix seconds) is the `Deprecation`
-- header's date (RFC 9745, `@<seconds>`); `sunset` (unix seconds, optional) the `Sunset`
-- header's (RFC 8594). `is_default` marks the version a bare application/json or
-- application/xml gets (at most one row; v1 when none is marked).
CREATE TABLE hs_interface (
    version       BIGINT PRIMARY KEY,
    state         TEXT NOT NULL,
    deprecated_at BIGINT,
    sunset        BIGINT,
    is_default    BIGINT NOT NULL DEFAULT 0,
    changed_at    BIGINT NOT NULL,
    changed_by    TEXT NOT NULL
);

-- The interface version each feed consumer polls with (NULL for positions recorded before
-- versions were tracked: those consumers polled v1, the only version there was). Retiring a
-- version a consumer still polls needs `?force=true`.
ALTER TABLE hs_consumer ADD COLUMN interface_version BIGINT;
