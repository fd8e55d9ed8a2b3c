-- What each unit serves, for rolling upgrades: the newest interface version it runs
-- (`newest_interface`) and when it last said it runs (`seen_at`, unix seconds, renewed every
-- few seconds). Documents are stored in the form of the oldest newest version among the units
-- seen lately, so a unit of the previous release sharing the database can still read every
-- document; once the last of them is gone, the newest form is written and older documents are
-- upgraded when read. Rows written before this column existed are NULL: such units are not
-- counted (this mechanism works from the release that records it on).
ALTER TABLE hs_unit ADD COLUMN newest_interface BIGINT;
ALTER TABLE hs_unit ADD COLUMN seen_at BIGINT;
