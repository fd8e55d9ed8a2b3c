-- The aspects a copy was filled with (`~person~address.home`, in declared order). When a
-- unit's source names other aspects, the copy re-reads from version 0: added aspects are
-- filled, removed ones dropped, while the cursor (its own feed horizon) stays put. NULL until
-- the first poll records it.
ALTER TABLE hs_cursor ADD COLUMN aspects TEXT;
