//! What the owner keeps for its feed's consumers: their positions and the purge horizon (the
//! purge itself is `purge.rs`).

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
}
