//! The tombstone purge, in bounded batches: tombstones every known consumer has passed (or
//! that grew older than the maximum age) go, a few hundred per transaction, in version order.
//!
//! Why batches: on SQLite a purge holds the one write lock of the SA's store; one transaction
//! over every tombstone held it for seconds (issue 25), and every write waited. Each batch
//! takes the write turn, removes the tombstones of one version window and moves the purge
//! horizon to the greatest version it removed, in the same transaction, then lets the writers
//! queued behind it go. A feed therefore never sees a removed tombstone above the horizon it
//! checks: the horizon only grows, batch by batch, as the removals commit.
//!
//! Why this plan: every statement finds its rows through `hs_aspect_tombstones` (the
//! tombstones of a collection by version, migration 0016) or a primary key. The statement
//! before it joined every live resource to its tombstones through `hs_aspect_by_version`, a
//! walk over every aspect below the horizon per resource: quadratic.
//! [`Store::purge_plan`] shows the plans, and a test asserts them.

use std::time::{Duration, Instant};

use sqlx::Row;

use super::{Backend, Error, Store, unix_now};

/// Tombstones removed per transaction (a window may take a few more: all of its greatest
/// version's aspects go together). Sized by `hiscale bench --purge-only` (release build,
/// 100,000 deleted customers on SQLite, 2 shared cores): 500 held the write lock up to 41-52 ms
/// (p99 32-37 ms), 250 up to 33-40 ms (median 11-13 ms, p99 25 ms, most of it the commit's
/// fsync), against the goal of < 50 ms.
pub const PURGE_BATCH: usize = 250;

/// Resource ids bound per `IN (…)` list.
const IDS_PER_STATEMENT: usize = 500;

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeReport {
    /// Aspect tombstones removed (a deleted resource's aspects included).
    pub aspect_tombstones: u64,
    /// Resource tombstones removed.
    pub resource_tombstones: u64,
    /// Consumers asking after a version below this now get `410 resync-required`.
    pub purged_through: i64,
    /// Transactions the purge took.
    pub batches: u64,
    /// The longest any one of them held the write turn, in microseconds.
    pub longest_batch_micros: u64,
}

/// Which tombstones a purge may take, fixed when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeBounds {
    /// Never above the feed horizon: a consumer may not have been able to see beyond.
    pub horizon: i64,
    /// What every consumer seen within the maximum age has passed.
    pub passed: i64,
    /// Tombstones deleted before this (unix seconds) go whoever has not passed them.
    pub cutoff: i64,
}

/// One committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedBatch {
    /// The window's top: the next batch starts after it.
    pub through: i64,
    pub aspect_tombstones: u64,
    pub resource_tombstones: u64,
    /// The purge horizon before this batch and after it (equal when nothing moved it).
    pub horizon_before: i64,
    pub horizon_after: i64,
    /// How long the batch held the write turn (SQLite: the write lock).
    pub held: Duration,
}

/// The tombstones of the window `($2, $3]` that the bounds let go: `$4` passed, `$5` cutoff.
const WINDOW: &str = "collection = $1 AND deleted = 1 AND version > $2 AND version <= $3 \
                      AND (version <= $4 OR deleted_at < $5)";

/// The next window's top: the version of the `$6`th eligible tombstone after `$2`.
fn next_window_sql() -> String {
    format!(
        "SELECT MAX(version) FROM (SELECT version FROM hs_aspect WHERE {WINDOW} \
         ORDER BY version LIMIT $6) AS batch"
    )
}

/// The greatest version the window removes: the new purge horizon.
fn highest_sql() -> String {
    format!("SELECT MAX(version) FROM hs_aspect WHERE {WINDOW}")
}

/// Live resources remember the greatest tombstone version they lose, so their version and
/// ETag never go back (`StoredResource::purged_version`). Windows go in version order, so the
/// window's greatest is the greatest so far.
fn floor_sql() -> String {
    format!(
        "UPDATE hs_resource SET purged_version = lost.version \
         FROM (SELECT resource_id, MAX(version) AS version FROM hs_aspect WHERE {WINDOW} \
               GROUP BY resource_id) AS lost \
         WHERE hs_resource.collection = $1 AND hs_resource.resource_id = lost.resource_id \
           AND hs_resource.deleted = 0 AND hs_resource.purged_version < lost.version"
    )
}

fn delete_sql() -> String {
    format!("DELETE FROM hs_aspect WHERE {WINDOW} RETURNING resource_id")
}

/// A deleted resource whose aspect tombstones are all gone has nothing left to announce.
fn resources_sql(ids: usize) -> String {
    let list: Vec<String> = (0..ids).map(|n| format!("${}", n + 2)).collect();
    format!(
        "DELETE FROM hs_resource WHERE collection = $1 AND deleted = 1 \
         AND resource_id IN ({}) AND NOT EXISTS (SELECT 1 FROM hs_aspect a \
           WHERE a.collection = hs_resource.collection AND a.resource_id = hs_resource.resource_id)",
        list.join(", ")
    )
}

impl Store {
    /// Removes tombstones that every consumer seen within `max_age_secs` has passed, and all
    /// tombstones older than that, batch by batch (see the module). `on_batch` runs after
    /// each committed batch (the feed drops the chunks the old horizon keyed).
    pub async fn purge_tombstones(
        &self,
        collection: &str,
        max_age_secs: i64,
        mut on_batch: impl FnMut(&PurgedBatch),
    ) -> Result<PurgeReport, Error> {
        let bounds = self.purge_bounds(collection, max_age_secs).await?;
        let mut report = PurgeReport {
            purged_through: self.purged_through(collection).await?.get(),
            ..PurgeReport::default()
        };
        let mut after = 0;
        // Bounded: every batch moves `after` up, and nothing above the horizon is taken.
        while let Some(batch) = self
            .purge_batch(collection, bounds, after, PURGE_BATCH)
            .await?
        {
            after = batch.through;
            report.aspect_tombstones += batch.aspect_tombstones;
            report.resource_tombstones += batch.resource_tombstones;
            report.purged_through = report.purged_through.max(batch.horizon_after);
            report.batches += 1;
            report.longest_batch_micros = report
                .longest_batch_micros
                .max(u64::try_from(batch.held.as_micros()).unwrap_or(u64::MAX));
            on_batch(&batch);
        }
        Ok(report)
    }

    /// What a purge starting now may take: below the feed horizon, what every consumer seen
    /// within `max_age_secs` has passed or what is older than that.
    pub async fn purge_bounds(
        &self,
        collection: &str,
        max_age_secs: i64,
    ) -> Result<PurgeBounds, Error> {
        let cutoff = unix_now().saturating_sub(max_age_secs);
        let horizon = self.horizon(collection).await?.get();
        // An owner holds its own origin's resources only, and its consumers ask for those.
        let origin = self.own_origin().own;
        let slowest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(version) FROM hs_consumer WHERE collection = $1 AND polled_at >= $2 \
             AND origin = $3",
        )
        .bind(collection)
        .bind(cutoff)
        .bind(&origin.name)
        .fetch_one(&self.pool)
        .await?;
        // Without a known consumer only age counts; nobody has passed anything.
        Ok(PurgeBounds {
            horizon,
            passed: slowest.unwrap_or(0).min(horizon),
            cutoff,
        })
    }

    /// One batch: the next `limit` tombstones after version `after` that `bounds` let go
    /// (and the rest of the last one's version), in one transaction that also moves the purge
    /// horizon to the greatest of them. `None` when there are none left.
    pub async fn purge_batch(
        &self,
        collection: &str,
        bounds: PurgeBounds,
        after: i64,
        limit: usize,
    ) -> Result<Option<PurgedBatch>, Error> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        // Found outside the write turn (a read does not wait for writers on either backend);
        // the statements below check every condition again inside the transaction.
        let through: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(next_window_sql()))
            .bind(collection)
            .bind(after)
            .bind(bounds.horizon)
            .bind(bounds.passed)
            .bind(bounds.cutoff)
            .bind(limit)
            .fetch_one(&self.pool)
            .await?;
        let Some(through) = through else {
            return Ok(None);
        };
        let horizon_before = self.purged_through(collection).await?.get();
        let origin = self.own_origin().own;
        let _turn = self.write_turn().await;
        let started = Instant::now();
        let mut transaction = self.begin_write().await?;
        let window = |sql: String| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(collection)
                .bind(after)
                .bind(through)
                .bind(bounds.passed)
                .bind(bounds.cutoff)
        };
        let highest: Option<i64> = window(highest_sql())
            .fetch_one(&mut *transaction)
            .await?
            .try_get(0)?;
        window(floor_sql()).execute(&mut *transaction).await?;
        let removed = window(delete_sql()).fetch_all(&mut *transaction).await?;
        let mut ids: Vec<String> = removed
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
        ids.sort_unstable();
        ids.dedup();
        let mut resources = 0;
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = resources_sql(chunk.len());
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(collection);
            for id in chunk {
                query = query.bind(id);
            }
            resources += query.execute(&mut *transaction).await?.rows_affected();
        }
        let mut horizon_after = horizon_before;
        if let Some(highest) = highest {
            sqlx::query(
                "INSERT INTO hs_purge (collection, origin, version) VALUES ($1, $3, $2) \
                 ON CONFLICT (collection, origin) DO UPDATE SET version = excluded.version \
                 WHERE hs_purge.version < excluded.version",
            )
            .bind(collection)
            .bind(highest)
            .bind(&origin.name)
            .execute(&mut *transaction)
            .await?;
            horizon_after = horizon_after.max(highest);
        }
        transaction.commit().await?;
        Ok(Some(PurgedBatch {
            through,
            aspect_tombstones: removed.len() as u64,
            resource_tombstones: resources,
            horizon_before,
            horizon_after,
            held: started.elapsed(),
        }))
    }

    /// The plans of the purge's statements for its first batch as the database would run them
    /// now (SQLite's `EXPLAIN QUERY PLAN` details, PostgreSQL's `EXPLAIN` lines), one list per
    /// statement: the purge must find its rows through `hs_aspect_tombstones` and primary
    /// keys only, whatever the statistics say.
    pub async fn purge_plan(
        &self,
        collection: &str,
        max_age_secs: i64,
    ) -> Result<Vec<Vec<String>>, Error> {
        let bounds = self.purge_bounds(collection, max_age_secs).await?;
        let batch = i64::try_from(PURGE_BATCH).unwrap_or(i64::MAX);
        let through: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(next_window_sql()))
            .bind(collection)
            .bind(0_i64)
            .bind(bounds.horizon)
            .bind(bounds.passed)
            .bind(bounds.cutoff)
            .bind(batch)
            .fetch_one(&self.pool)
            .await?;
        let through = through.unwrap_or(bounds.horizon);
        let statements = [
            (next_window_sql(), bounds.horizon),
            (highest_sql(), through),
            (floor_sql(), through),
            (delete_sql(), through),
        ];
        let explain = |statement: &str| match self.backend {
            Backend::Sqlite => format!("EXPLAIN QUERY PLAN {statement}"),
            Backend::Postgres => format!("EXPLAIN {statement}"),
        };
        let lines = |rows: Vec<sqlx::any::AnyRow>| -> Result<Vec<String>, Error> {
            let column = match self.backend {
                Backend::Sqlite => 3,
                Backend::Postgres => 0,
            };
            Ok(rows
                .iter()
                .map(|row| row.try_get::<String, _>(column))
                .collect::<Result<_, _>>()?)
        };
        let mut plans = Vec::new();
        for (index, (statement, top)) in statements.into_iter().enumerate() {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(explain(&statement)))
                .bind(collection)
                .bind(0_i64)
                .bind(top)
                .bind(bounds.passed)
                .bind(bounds.cutoff);
            if index == 0 {
                query = query.bind(batch);
            }
            plans.push(lines(query.fetch_all(&self.pool).await?)?);
        }
        let query = sqlx::query(sqlx::AssertSqlSafe(explain(&resources_sql(2))))
            .bind(collection)
            .bind("1")
            .bind("2");
        plans.push(lines(query.fetch_all(&self.pool).await?)?);
        Ok(plans)
    }
}
