//! What the owner keeps for its feed's consumers: their positions, and the purge of
//! tombstones every known consumer has passed (or that grew too old).

use sqlx::Row;

use super::{Error, Store, unix_now};
use crate::origin::Origin;
use crate::version::Version;

/// A consumer of a collection's feed, as the owner last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
    /// The `version` it last asked after.
    pub version: Version,
    /// When it last polled (unix seconds).
    pub polled_at: i64,
    /// The origin whose changes it reads (`""`: the collection is owned in one datacenter).
    pub origin: String,
}

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeReport {
    /// Aspect tombstones removed (a deleted resource's aspects included).
    pub aspect_tombstones: u64,
    /// Resource tombstones removed.
    pub resource_tombstones: u64,
    /// Consumers asking after a version below this now get `410 resync-required`.
    pub purged_through: i64,
}

impl Store {
    /// Records that `consumer` asked for the changes after `version` through interface
    /// version `interface`; `resync` marks a full re-read from version 0 that is still under
    /// way. The interface version is what an operator retiring a version is warned about.
    pub(crate) async fn record_consumer(
        &self,
        collection: &str,
        origin: &Origin,
        consumer: &str,
        version: Version,
        resync: bool,
        interface: u32,
    ) -> Result<(), Error> {
        // In line with this process's other SQLite writers: left to SQLite's busy handler, a
        // feed request writing a position waited seconds behind a queue of PUTs (the bench's
        // lag run at the owner's write capacity: p99 2.1 s against p50 5 ms).
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO hs_consumer (collection, consumer, version, polled_at, resync, interface_version, origin) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (collection, consumer, origin) DO UPDATE \
             SET version = excluded.version, polled_at = excluded.polled_at, resync = excluded.resync, \
             interface_version = excluded.interface_version",
        )
        .bind(collection)
        .bind(consumer)
        .bind(version.get())
        .bind(unix_now())
        .bind(i64::from(resync))
        .bind(i64::from(interface))
        .bind(&origin.name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether `consumer` is re-reading from version 0 and has come as far as `version` on the
    /// way (so it may pass versions below the purged tombstones).
    pub(crate) async fn consumer_resyncing(
        &self,
        collection: &str,
        origin: &Origin,
        consumer: &str,
        version: Version,
    ) -> Result<bool, Error> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT version, resync FROM hs_consumer \
             WHERE collection = $1 AND consumer = $2 AND origin = $3",
        )
        .bind(collection)
        .bind(consumer)
        .bind(&origin.name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some_and(|(position, resync)| resync == 1 && position <= version.get()))
    }

    /// Every consumer of a collection, by name.
    pub async fn consumers(&self, collection: &str) -> Result<Vec<Consumer>, Error> {
        let rows = sqlx::query(
            "SELECT consumer, version, polled_at, origin FROM hs_consumer WHERE collection = $1 \
             ORDER BY consumer, origin",
        )
        .bind(collection)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Consumer {
                    name: row.try_get(0)?,
                    version: Version::new(row.try_get(1)?).unwrap_or(Version::ZERO),
                    polled_at: row.try_get(2)?,
                    origin: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Below this version tombstones were purged: a consumer asking after an older version
    /// (other than 0) may have missed a deletion. Of this store's own origin.
    pub async fn purged_through(&self, collection: &str) -> Result<Version, Error> {
        self.purged_through_of(collection, &self.own_origin().own)
            .await
    }

    /// [`Store::purged_through`] of `origin`'s changes (a copy keeps one per origin).
    pub async fn purged_through_of(
        &self,
        collection: &str,
        origin: &Origin,
    ) -> Result<Version, Error> {
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM hs_purge WHERE collection = $1 AND origin = $2",
        )
        .bind(collection)
        .bind(&origin.name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(version.and_then(Version::new).unwrap_or(Version::ZERO))
    }

    /// Removes tombstones that every consumer seen within `max_age_secs` has passed, and all
    /// tombstones older than that. Only tombstones below the feed horizon are touched.
    pub(crate) async fn purge_tombstones(
        &self,
        collection: &str,
        max_age_secs: i64,
    ) -> Result<PurgeReport, Error> {
        let now = unix_now();
        let cutoff = now.saturating_sub(max_age_secs);
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
        let passed = slowest.unwrap_or(0).min(horizon);
        let _turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        let highest: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM hs_aspect WHERE collection = $1 AND deleted = 1 AND version <= $2 \
             AND (version <= $3 OR deleted_at < $4)",
        )
        .bind(collection)
        .bind(horizon)
        .bind(passed)
        .bind(cutoff)
        .fetch_one(&mut *transaction)
        .await?;
        // Live resources remember the greatest tombstone version they lose, so their version
        // and ETag never go back (`StoredResource::purged_version`).
        sqlx::query(
            "UPDATE hs_resource SET purged_version = (SELECT MAX(v) FROM ( \
                 SELECT hs_resource.purged_version AS v \
                 UNION ALL SELECT a.version FROM hs_aspect a \
                 WHERE a.collection = hs_resource.collection \
                   AND a.resource_id = hs_resource.resource_id AND a.deleted = 1 \
                   AND a.version <= $2 AND (a.version <= $3 OR a.deleted_at < $4)) AS candidates) \
             WHERE collection = $1 AND deleted = 0 AND EXISTS (SELECT 1 FROM hs_aspect a \
                 WHERE a.collection = hs_resource.collection \
                   AND a.resource_id = hs_resource.resource_id AND a.deleted = 1 \
                   AND a.version <= $2 AND (a.version <= $3 OR a.deleted_at < $4))",
        )
        .bind(collection)
        .bind(horizon)
        .bind(passed)
        .bind(cutoff)
        .execute(&mut *transaction)
        .await?;
        let aspects = sqlx::query(
            "DELETE FROM hs_aspect WHERE collection = $1 AND deleted = 1 AND version <= $2 \
             AND (version <= $3 OR deleted_at < $4)",
        )
        .bind(collection)
        .bind(horizon)
        .bind(passed)
        .bind(cutoff)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        // A deleted resource whose aspect tombstones are all gone has nothing left to announce.
        let resources = sqlx::query(
            "DELETE FROM hs_resource WHERE collection = $1 AND deleted = 1 AND NOT EXISTS \
             (SELECT 1 FROM hs_aspect a WHERE a.collection = hs_resource.collection \
              AND a.resource_id = hs_resource.resource_id)",
        )
        .bind(collection)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        let mut report = PurgeReport {
            aspect_tombstones: aspects,
            resource_tombstones: resources,
            purged_through: self.purged_through(collection).await?.get(),
        };
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
            report.purged_through = report.purged_through.max(highest);
        }
        transaction.commit().await?;
        Ok(report)
    }
}
