//! Which units use this database: recorded at each start, so that a database another service
//! area already uses is refused, and operators can see which units share the store.

use super::{Error, Store, unix_now};

/// A unit as it last recorded itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnitRecord {
    pub unit: String,
    pub sa: String,
    pub listen: String,
    /// Unix seconds of its last start.
    pub started_at: i64,
}

impl Store {
    /// Records `unit` of `sa` as using this database and serving interface versions up to
    /// `newest_interface`, unless another SA's units already use it: then
    /// [`Error::ForeignStore`] and nothing is written.
    pub(crate) async fn record_unit(
        &self,
        unit: &str,
        sa: &str,
        listen: &str,
        newest_interface: u32,
    ) -> Result<(), Error> {
        let _turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        let other: Option<String> =
            sqlx::query_scalar("SELECT sa FROM hs_unit WHERE sa <> $1 LIMIT 1")
                .bind(sa)
                .fetch_optional(&mut *transaction)
                .await?;
        if let Some(other) = other {
            return Err(Error::ForeignStore { owner: other });
        }
        let now = unix_now();
        sqlx::query(
            "INSERT INTO hs_unit (unit, sa, listen, started_at, newest_interface, seen_at) \
             VALUES ($1, $2, $3, $4, $5, $4) \
             ON CONFLICT (unit) DO UPDATE SET sa = excluded.sa, listen = excluded.listen, \
             started_at = excluded.started_at, newest_interface = excluded.newest_interface, \
             seen_at = excluded.seen_at",
        )
        .bind(unit)
        .bind(sa)
        .bind(listen)
        .bind(now)
        .bind(i64::from(newest_interface))
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Says that `unit` still runs (renewed every few seconds, see [`Store::stored_form`]).
    pub(crate) async fn unit_seen(&self, unit: &str) -> Result<(), Error> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE hs_unit SET seen_at = $1 WHERE unit = $2")
            .bind(unix_now())
            .bind(unit)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Says that `unit` stopped: it no longer holds the stored form back, so a rolling upgrade
    /// goes on at once rather than after the window.
    pub(crate) async fn unit_stopped(&self, unit: &str) -> Result<(), Error> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE hs_unit SET seen_at = NULL WHERE unit = $1")
            .bind(unit)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The interface version whose form documents are stored in: the oldest newest version
    /// among the units of `sa` seen within `window_secs`, so that a unit of the previous
    /// release sharing the database reads every document (`None`: no unit seen, which a
    /// running unit never is).
    pub(crate) async fn stored_form(
        &self,
        sa: &str,
        window_secs: u64,
    ) -> Result<Option<u32>, Error> {
        let since = unix_now().saturating_sub(i64::try_from(window_secs).unwrap_or(i64::MAX));
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(newest_interface) FROM hs_unit \
             WHERE sa = $1 AND seen_at >= $2 AND newest_interface IS NOT NULL",
        )
        .bind(sa)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(oldest.and_then(|version| u32::try_from(version).ok()))
    }

    /// Every unit that recorded itself here, by name.
    pub async fn units(&self) -> Result<Vec<UnitRecord>, Error> {
        let rows: Vec<(String, String, String, i64)> =
            sqlx::query_as("SELECT unit, sa, listen, started_at FROM hs_unit ORDER BY unit")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(unit, sa, listen, started_at)| UnitRecord {
                unit,
                sa,
                listen,
                started_at,
            })
            .collect())
    }
}
