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
    /// Records `unit` of `sa` as using this database, unless another SA's units already do:
    /// then [`Error::ForeignStore`] and nothing is written.
    pub async fn record_unit(&self, unit: &str, sa: &str, listen: &str) -> Result<(), Error> {
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
        sqlx::query(
            "INSERT INTO hs_unit (unit, sa, listen, started_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (unit) DO UPDATE SET sa = excluded.sa, listen = excluded.listen, \
             started_at = excluded.started_at",
        )
        .bind(unit)
        .bind(sa)
        .bind(listen)
        .bind(unix_now())
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
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
