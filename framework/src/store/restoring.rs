//! The `restoring` state of owned collections: entered when a consumer proves the store was
//! rolled back (it holds a version the store never handed out), left by an operator. While
//! a collection is restoring, writes to it are refused, so no version (and no id, which is a
//! creation version) is ever handed out twice; leaving moves the counter past every version
//! a consumer reported.

use sqlx::AnyConnection;

use super::{Backend, Error, Store, sequence_name, unix_now};
use crate::version::Version;

/// Why and since when a collection is restoring.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Restoring {
    pub collection: String,
    /// Unix seconds when the state was entered.
    pub since: i64,
    /// The consumer that reported the greatest version.
    pub reported_by: String,
    /// The greatest version a consumer reported: the counter moves past it on leaving.
    pub ahead: i64,
    /// What the store had handed out when the rollback was noticed.
    pub restored_to: i64,
}

impl Store {
    /// Enters (or stays in) `restoring` for `collection` at an operator's word (`by`): the
    /// store may not have lost anything, so no version is compared. Keeps the greatest report.
    pub(crate) async fn enter_restoring(
        &self,
        collection: &str,
        by: &str,
        ahead: Version,
        restored_to: Version,
    ) -> Result<(), Error> {
        self.record_restoring(collection, by, ahead, restored_to, false)
            .await
            .map(|_| ())
    }

    /// `consumer` holds `ahead`, beyond the `restored_to` this store had handed out when the
    /// feed compared them: enters (or stays in) `restoring` unless the counter has meanwhile
    /// moved past `ahead`. Answers whether the collection is restoring now.
    ///
    /// The counter is read again inside the transaction, after the row is written: a refill
    /// that ended between the feed's comparison and this call (and moved the counter past
    /// every copy) must not be undone by a poll that was sent before it ended. On PostgreSQL
    /// the counter moves before the refill's `DELETE` commits, and this `INSERT` waits for
    /// that `DELETE`'s row lock, so the second read sees the moved counter.
    pub async fn report_ahead(
        &self,
        collection: &str,
        consumer: &str,
        ahead: Version,
        restored_to: Version,
    ) -> Result<bool, Error> {
        self.record_restoring(collection, consumer, ahead, restored_to, true)
            .await
    }

    async fn record_restoring(
        &self,
        collection: &str,
        by: &str,
        ahead: Version,
        restored_to: Version,
        only_while_behind: bool,
    ) -> Result<bool, Error> {
        let _turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO hs_restoring (collection, since, reported_by, ahead, restored_to) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (collection) DO UPDATE SET reported_by = excluded.reported_by, \
             ahead = excluded.ahead WHERE hs_restoring.ahead < excluded.ahead",
        )
        .bind(collection)
        .bind(unix_now())
        .bind(by)
        .bind(ahead.get())
        .bind(restored_to.get())
        .execute(&mut *transaction)
        .await?;
        if only_while_behind {
            let current = handed_out(&mut transaction, self.backend, collection).await?;
            if current >= ahead.get() {
                transaction.rollback().await?;
                return Ok(false);
            }
        }
        transaction.commit().await?;
        Ok(true)
    }

    /// The collections in `restoring` state.
    pub async fn restoring(&self) -> Result<Vec<Restoring>, Error> {
        let rows: Vec<(String, i64, String, i64, i64)> = sqlx::query_as(
            "SELECT collection, since, reported_by, ahead, restored_to FROM hs_restoring \
             ORDER BY collection",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(collection, since, reported_by, ahead, restored_to)| Restoring {
                    collection,
                    since,
                    reported_by,
                    ahead,
                    restored_to,
                },
            )
            .collect())
    }

    /// Leaves `restoring` for `collection`: moves its counter past every version a consumer
    /// reported and past `at_least` (the newest version a refill brought back), in the same
    /// transaction. Answers the version the next write will follow, or `None` when the
    /// collection was not restoring.
    pub async fn leave_restoring(
        &self,
        collection: &str,
        at_least: Version,
    ) -> Result<Option<Version>, Error> {
        let _turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        let ahead: Option<i64> =
            sqlx::query_scalar("DELETE FROM hs_restoring WHERE collection = $1 RETURNING ahead")
                .bind(collection)
                .fetch_optional(&mut *transaction)
                .await?;
        let Some(ahead) = ahead.map(|ahead| ahead.max(at_least.get())) else {
            return Ok(None);
        };
        match self.backend {
            Backend::Sqlite => {
                sqlx::query(
                    "UPDATE hs_counter SET version = MAX(version, $2) WHERE collection = $1",
                )
                .bind(collection)
                .bind(ahead)
                .execute(&mut *transaction)
                .await?;
            }
            Backend::Postgres => {
                // setval is not transactional: it happens even if the commit below fails,
                // which only leaves a gap of versions nobody holds.
                sqlx::query(
                    "SELECT setval($1::regclass, GREATEST($2, \
                     COALESCE(pg_sequence_last_value($1::regclass), 0)))",
                )
                .bind(sequence_name(collection))
                .bind(ahead)
                .execute(&mut *transaction)
                .await?;
            }
        }
        transaction.commit().await?;
        Ok(Version::new(ahead))
    }
}

impl Store {
    /// Holds the writes of `collection` in this unit (the start gate): they answer like
    /// `restoring` until [`Store::release_writes`].
    pub(crate) fn hold_writes(&self, collection: &str) {
        self.held_set().insert(collection.to_owned());
    }

    /// Ends [`Store::hold_writes`] for `collection`.
    pub(crate) fn release_writes(&self, collection: &str) {
        self.held_set().remove(collection);
    }

    /// Whether this unit holds the writes of `collection`.
    pub(crate) fn writes_held(&self, collection: &str) -> bool {
        self.held_set().contains(collection)
    }

    fn held_set(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        match self.held.lock() {
            Ok(held) => held,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The consumers of `collection` whose position was recorded at or after `since` (unix
    /// seconds): they have told this store, after it started, which version they hold.
    pub(crate) async fn consumers_heard_since(
        &self,
        collection: &str,
        since: i64,
    ) -> Result<Vec<String>, Error> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT consumer FROM hs_consumer WHERE collection = $1 AND polled_at >= $2 \
             ORDER BY consumer",
        )
        .bind(collection)
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The latest start (unix seconds) of any unit recorded in this store.
    pub(crate) async fn latest_unit_start(&self) -> Result<i64, Error> {
        let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(started_at) FROM hs_unit")
            .fetch_one(&self.pool)
            .await?;
        Ok(latest.unwrap_or(0))
    }
}

/// The newest version handed out for `collection`, read inside `connection`'s transaction.
async fn handed_out(
    connection: &mut AnyConnection,
    backend: Backend,
    collection: &str,
) -> Result<i64, Error> {
    let value: Option<i64> = match backend {
        Backend::Sqlite => {
            sqlx::query_scalar("SELECT version FROM hs_counter WHERE collection = $1")
                .bind(collection)
                .fetch_optional(&mut *connection)
                .await?
        }
        Backend::Postgres => {
            sqlx::query_scalar("SELECT COALESCE(pg_sequence_last_value($1::regclass), 0)")
                .bind(sequence_name(collection))
                .fetch_optional(&mut *connection)
                .await?
        }
    };
    Ok(value.unwrap_or(0))
}

/// Refuses a write while its collection is restoring (checked inside the write transaction).
pub(super) async fn refuse_while_restoring(
    connection: &mut AnyConnection,
    collection: &str,
) -> Result<(), Error> {
    let restoring: Option<i64> =
        sqlx::query_scalar("SELECT ahead FROM hs_restoring WHERE collection = $1")
            .bind(collection)
            .fetch_optional(&mut *connection)
            .await?;
    match restoring {
        Some(_) => Err(Error::Restoring {
            collection: collection.to_owned(),
        }),
        None => Ok(()),
    }
}
