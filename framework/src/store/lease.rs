//! The reader lease: which unit of a reading SA may apply chunks to its copies.
//!
//! A heartbeat can lie: a backup cut off from a live primary would poll too. So whoever polls
//! holds a lease in the SA's own database (holder, epoch, expiry by the database's clock), and
//! every chunk is applied only if its epoch still holds the lease, checked in the apply
//! transaction itself. A deposed reader can therefore never write, whatever it believes.

use super::{Backend, Error, Store};

/// The one lease of a unit's SA database (all its copies are read by the same unit).
const LEASE: &str = "reader";

/// Proof of holding the lease: given to [`Store::apply_chunk`], which checks and renews it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    /// Grows by one whenever the lease changes hands.
    pub epoch: i64,
    /// How long each renewal lasts.
    pub duration_ms: i64,
}

/// Who holds the lease, as the database says now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseState {
    /// The holding process: `unit#nonce` (a unit started twice is two holders).
    pub holder: String,
    /// The unit's name alone.
    pub unit: String,
    pub epoch: i64,
    /// Milliseconds until it expires (negative: expired that long ago).
    pub expires_in_ms: i64,
}

/// Milliseconds since the Unix epoch by the database's clock: every unit of the SA compares
/// with the same clock, whatever its own says.
fn now_ms(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS BIGINT)",
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

impl Store {
    /// Renews the lease if `holder` has it, or takes it when nobody holds it or (only with
    /// `take_expired`) when the holder let it expire; a taken lease gets a new epoch. `None`
    /// while somebody else holds it.
    pub async fn acquire_lease(
        &self,
        holder: &str,
        duration_ms: i64,
        take_expired: bool,
    ) -> Result<Option<Fence>, Error> {
        let now = now_ms(self.backend);
        let _turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO hs_lease (name, holder, epoch, expires_at_ms) VALUES ($1, '', 0, 0) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(LEASE)
        .execute(&mut *transaction)
        .await?;
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        let statement = format!(
            "SELECT holder, epoch, CASE WHEN expires_at_ms < {now} THEN 1 ELSE 0 END \
             FROM hs_lease WHERE name = $1{lock}"
        );
        let (current, epoch, expired): (String, i64, i64) =
            sqlx::query_as(sqlx::AssertSqlSafe(statement))
                .bind(LEASE)
                .fetch_one(&mut *transaction)
                .await?;
        let epoch = if current == holder {
            epoch
        } else if current.is_empty() || (expired == 1 && take_expired) {
            epoch + 1
        } else {
            // Let go of the row lock (PostgreSQL) or the write lock (SQLite) at once.
            transaction.rollback().await?;
            return Ok(None);
        };
        let statement = format!(
            "UPDATE hs_lease SET holder = $1, epoch = $2, expires_at_ms = {now} + $3 WHERE name = $4"
        );
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(holder)
            .bind(epoch)
            .bind(duration_ms)
            .bind(LEASE)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(Some(Fence {
            holder: holder.to_owned(),
            epoch,
            duration_ms,
        }))
    }

    /// Gives the lease up at once (a backup stepping back for its primary). Only its holder can.
    pub async fn release_lease(&self, holder: &str) -> Result<bool, Error> {
        let _turn = self.write_turn().await;
        let released = sqlx::query(
            "UPDATE hs_lease SET holder = '', expires_at_ms = 0 WHERE name = $1 AND holder = $2",
        )
        .bind(LEASE)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(released.rows_affected() > 0)
    }

    /// The lease as it stands, for status pages; `None` before anyone took it.
    pub async fn lease(&self) -> Result<Option<LeaseState>, Error> {
        let statement = format!(
            "SELECT holder, epoch, expires_at_ms - {} FROM hs_lease WHERE name = $1",
            now_ms(self.backend)
        );
        let row: Option<(String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(statement))
            .bind(LEASE)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(holder, epoch, expires_in_ms)| LeaseState {
            unit: holder
                .split_once('#')
                .map_or(holder.as_str(), |(unit, _)| unit)
                .to_owned(),
            holder,
            epoch,
            expires_in_ms,
        }))
    }
}

/// Checks inside a write transaction that `fence` still holds the lease, and renews it.
pub(super) async fn check_and_renew(
    connection: &mut sqlx::AnyConnection,
    backend: Backend,
    fence: &Fence,
) -> Result<(), Error> {
    let statement = format!(
        "UPDATE hs_lease SET expires_at_ms = {} + $1 WHERE name = $2 AND holder = $3 AND epoch = $4",
        now_ms(backend)
    );
    let renewed = sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(fence.duration_ms)
        .bind(LEASE)
        .bind(fence.holder.as_str())
        .bind(fence.epoch)
        .execute(&mut *connection)
        .await?;
    if renewed.rows_affected() == 0 {
        return Err(Error::Fenced { epoch: fence.epoch });
    }
    Ok(())
}
