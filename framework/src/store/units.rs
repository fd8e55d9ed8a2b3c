//! Which units use this database: recorded at each start, so that a database another service
//! area already uses is refused, and operators can see which units share the store.

use super::{Backend, Error, Store, unix_now};

/// Unix seconds by the database's clock: which units were seen lately (and so which form
/// documents are stored in) is decided by one clock for every unit of the SA. With each
/// unit's own clock, hosts skewed by ~13 s stored a form an old unit could not read.
fn database_now(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST(strftime('%s', 'now') AS BIGINT)",
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS BIGINT)",
    }
}

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
        let statement = format!(
            "INSERT INTO hs_unit (unit, sa, listen, started_at, newest_interface, seen_at) \
             VALUES ($1, $2, $3, $4, $5, {}) \
             ON CONFLICT (unit) DO UPDATE SET sa = excluded.sa, listen = excluded.listen, \
             started_at = excluded.started_at, newest_interface = excluded.newest_interface, \
             seen_at = excluded.seen_at",
            database_now(self.backend)
        );
        sqlx::query(sqlx::AssertSqlSafe(statement))
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
        let statement = format!(
            "UPDATE hs_unit SET seen_at = {} WHERE unit = $1",
            database_now(self.backend)
        );
        sqlx::query(sqlx::AssertSqlSafe(statement))
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
        let statement = format!(
            "SELECT MIN(newest_interface) FROM hs_unit \
             WHERE sa = $1 AND seen_at >= {} - $2 AND newest_interface IS NOT NULL",
            database_now(self.backend)
        );
        let oldest: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
            .bind(sa)
            .bind(i64::try_from(window_secs).unwrap_or(i64::MAX))
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
