-- The core of a HiScale store on PostgreSQL: versioned aspects of resources.
-- Never edit this file once it has landed; add a new migration instead.
--
-- Versions come from one sequence per collection (hs_version_<collection>), created when a
-- service area registers the collection. Sequences never block writers, so concurrent
-- transactions commit in groups; the feed serves only versions below a visibility horizon
-- (see ARCHITECTURE.md, "Versions"), which is what keeps "version order = commit order" true
-- for every reader.

-- One row per resource: the version of its latest change and whether it was deleted.
CREATE TABLE hs_resource (
    collection  TEXT   NOT NULL,
    resource_id TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    deleted     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (collection, resource_id)
);

-- One row per aspect of a resource, with the version of its latest change. A deleted aspect
-- keeps its row (deleted = 1, body NULL) as a tombstone for the feed.
CREATE TABLE hs_aspect (
    collection  TEXT   NOT NULL,
    resource_id TEXT   NOT NULL,
    aspect      TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    deleted     BIGINT NOT NULL DEFAULT 0,
    body        TEXT,
    PRIMARY KEY (collection, resource_id, aspect)
);

-- The feed reads "everything after version v" of a collection in version order.
CREATE INDEX hs_aspect_by_version ON hs_aspect (collection, version);

-- Values at most one resource may hold (a login name), claimed by the aspect that holds them.
CREATE TABLE hs_unique (
    collection  TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    aspect      TEXT NOT NULL,
    PRIMARY KEY (collection, name, value)
);
CREATE INDEX hs_unique_by_holder ON hs_unique (collection, resource_id, aspect);
