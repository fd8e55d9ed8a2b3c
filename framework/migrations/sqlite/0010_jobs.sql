-- Batch jobs (reactions to a collection's changes) and how far each got: the version of the
-- last change handled. Any batch unit of the SA continues from here.
-- Never edit this file once it has landed; add a new migration instead.
CREATE TABLE hs_job (
    job     TEXT   NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
);
