//! The `restoring` state of owned collections: entered on evidence that the store was rolled
//! back (a consumer holds a version the store never handed out; a unit finds the counter below
//! what it exposed, `rollback.rs`), left by a refill or an operator. While a collection is
//! restoring, writes to it are refused; leaving moves the counter past everything a peer gave
//! back and everything the units exposed, plus a margin for what nobody saw, so no version
//! (and no id, which is a creation version) acknowledged before is handed out again.

use sqlx::AnyConnection;

use super::{Backend, Error, Store, sequence_name, unix_now};
use crate::version::Version;

/// Why and since when a collection is restoring.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Restoring {
    pub collection: String,
    /// Unix seconds when the state was entered.
    pub since: i64,
    /// The consumer that reported the greatest version (or `rollback-evidence`).
    pub reported_by: String,
    /// The greatest version a consumer claimed to hold. A claim is evidence of a rollback, not
    /// an order: leaving `restoring` after a refill moves the counter only past what a peer
    /// really served (and `exposed`), so a mistaken or hostile claim cannot move it.
    pub ahead: i64,
    /// Where the restored data ends: its own newest version, not a counter the backup recorded
    /// later (`pg_dump` records sequences after its snapshot). The refill starts here.
    pub restored_to: i64,
    /// The greatest version this SA's own units know they exposed, when they found the
    /// counter below it (0 when a consumer's claim or an operator started the restore).
    pub exposed: i64,
    /// What proved the rollback, in words (empty for a consumer's claim or an operator).
    pub evidence: String,
}

/// What one report of a rollback says.
struct Report<'a> {
    by: &'a str,
    ahead: Version,
    restored_to: Version,
    exposed: Version,
    evidence: &'a str,
}

/// How [`Store::leave_restoring`] moves the counter.
#[derive(Debug, Clone, Copy)]
pub struct Leave {
    /// The newest version a refill brought back (its peers' newest).
    pub at_least: Version,
    /// Also past every consumer's claim (`ahead`): an operator's `DELETE /admin/restore`,
    /// who read the claims in `GET /admin/restore`; a refill moves only past what peers served.
    pub past_claims: bool,
    /// Versions skipped beyond that, for changes acknowledged that no peer saw (so none is
    /// handed out again unless more than `margin` of them were lost).
    pub margin: i64,
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
        let report = Report {
            by,
            ahead,
            restored_to,
            exposed: Version::ZERO,
            evidence: "",
        };
        self.record_restoring(collection, &report, false)
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
        let report = Report {
            by: consumer,
            ahead,
            restored_to,
            exposed: Version::ZERO,
            evidence: "",
        };
        Ok(self
            .record_restoring(collection, &report, true)
            .await?
            .is_some())
    }

    /// A unit found the counter of `collection` at `counter`, below `exposed`: enters (or
    /// stays in) `restoring`. Answers whether it entered it now (not already restoring).
    pub(super) async fn record_evidence(
        &self,
        collection: &str,
        counter: Version,
        exposed: Version,
        evidence: &str,
    ) -> Result<bool, Error> {
        let report = Report {
            by: "rollback-evidence",
            ahead: exposed,
            restored_to: counter,
            exposed,
            evidence,
        };
        Ok(self
            .record_restoring(collection, &report, false)
            .await?
            .unwrap_or(false))
    }

    /// Writes the report; `None` when `only_while_behind` and the counter is past `ahead`
    /// already, else whether the collection entered `restoring` now.
    async fn record_restoring(
        &self,
        collection: &str,
        report: &Report<'_>,
        only_while_behind: bool,
    ) -> Result<Option<bool>, Error> {
        let _turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        let already: Option<i64> =
            sqlx::query_scalar("SELECT since FROM hs_restoring WHERE collection = $1")
                .bind(collection)
                .fetch_optional(&mut *transaction)
                .await?;
        // The refill starts where the restored data ends, which may be below the counter.
        let data_ends = complete_up_to(
            &mut transaction,
            self.backend,
            collection,
            &self.own_origin().own,
        )
        .await?;
        let restored_to = report.restored_to.get().min(data_ends);
        // What this unit knows it exposed is never handed out again, whoever reported.
        let exposed = report.exposed.get().max(self.exposed_mark(collection));
        sqlx::query(
            "INSERT INTO hs_restoring \
                 (collection, since, reported_by, ahead, restored_to, exposed, evidence) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (collection) DO UPDATE SET \
                 reported_by = CASE WHEN excluded.ahead > hs_restoring.ahead \
                     THEN excluded.reported_by ELSE hs_restoring.reported_by END, \
                 ahead = CASE WHEN excluded.ahead > hs_restoring.ahead \
                     THEN excluded.ahead ELSE hs_restoring.ahead END, \
                 exposed = CASE WHEN excluded.exposed > hs_restoring.exposed \
                     THEN excluded.exposed ELSE hs_restoring.exposed END, \
                 evidence = CASE WHEN excluded.evidence <> '' \
                     THEN excluded.evidence ELSE hs_restoring.evidence END",
        )
        .bind(collection)
        .bind(unix_now())
        .bind(report.by)
        .bind(report.ahead.get())
        .bind(restored_to)
        .bind(exposed)
        .bind(report.evidence)
        .execute(&mut *transaction)
        .await?;
        if only_while_behind {
            let current = handed_out(&mut transaction, self.backend, collection).await?;
            if current >= report.ahead.get() {
                transaction.rollback().await?;
                return Ok(None);
            }
        }
        transaction.commit().await?;
        Ok(Some(already.is_none()))
    }

    /// The collections in `restoring` state.
    pub async fn restoring(&self) -> Result<Vec<Restoring>, Error> {
        type Row = (String, i64, String, i64, i64, i64, String);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT collection, since, reported_by, ahead, restored_to, exposed, evidence \
             FROM hs_restoring ORDER BY collection",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(collection, since, reported_by, ahead, restored_to, exposed, evidence)| {
                    Restoring {
                        collection,
                        since,
                        reported_by,
                        ahead,
                        restored_to,
                        exposed,
                        evidence,
                    }
                },
            )
            .collect())
    }

    /// Leaves `restoring` for `collection`: moves its counter past `leave.at_least`, past the
    /// versions this SA's units exposed, past the consumers' claims only when
    /// `leave.past_claims`, and then `leave.margin` further, staying among the versions this
    /// store's origin issues; all in one transaction. Answers the version the next write will
    /// follow, or `None` when the collection was not restoring.
    pub async fn leave_restoring(
        &self,
        collection: &str,
        leave: Leave,
    ) -> Result<Option<Version>, Error> {
        let _turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        let row: Option<(i64, i64)> = sqlx::query_as(
            "DELETE FROM hs_restoring WHERE collection = $1 RETURNING ahead, exposed",
        )
        .bind(collection)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some((ahead, exposed)) = row else {
            return Ok(None);
        };
        let mut past = leave.at_least.get().max(exposed);
        if leave.past_claims {
            past = past.max(ahead);
        }
        let origin = self.own_origin().own;
        let target = origin.issued_at_or_above(past.saturating_add(leave.margin.max(0)));
        match self.backend {
            Backend::Sqlite => {
                sqlx::query(
                    "UPDATE hs_counter SET version = MAX(version, $2) WHERE collection = $1",
                )
                .bind(collection)
                .bind(target)
                .execute(&mut *transaction)
                .await?;
            }
            Backend::Postgres => {
                // setval is not transactional: it happens even if the commit below fails,
                // which only leaves a gap of versions nobody holds. A counter already past the
                // target stays (and is its origin's).
                sqlx::query(
                    "SELECT setval($1::regclass, GREATEST($2, \
                     COALESCE(pg_sequence_last_value($1::regclass), 0)))",
                )
                .bind(sequence_name(collection))
                .bind(target)
                .execute(&mut *transaction)
                .await?;
            }
        }
        let continues = handed_out(&mut transaction, self.backend, collection).await?;
        transaction.commit().await?;
        Ok(Version::new(continues.max(target)))
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
pub(super) async fn handed_out(
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

/// The greatest version up to which the restored data holds every committed change: where a
/// refill must start. On SQLite versions commit in order, so it is the newest version the data
/// carries. On PostgreSQL a version drawn earlier may commit later: a `pg_dump` snapshot can
/// hold version 105 without version 100, committed a moment after it (the soak found such a
/// deletion undone). There the bound is also the greatest position a consumer had recorded in
/// the restored data: a consumer holds only versions below the feed horizon, which every
/// change up to it had passed when the position was written, before the snapshot. Positions
/// move on at most a second late, so the refill reads a second or so more than it must;
/// without any consumer position it reads the peers from 0, which is slow but loses nothing.
async fn complete_up_to(
    connection: &mut AnyConnection,
    backend: Backend,
    collection: &str,
    origin: &crate::origin::Origin,
) -> Result<i64, Error> {
    let newest = newest_stored(connection, collection).await?;
    if backend == Backend::Sqlite {
        return Ok(newest);
    }
    let witnessed: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(version) FROM hs_consumer WHERE collection = $1 AND origin = $2",
    )
    .bind(collection)
    .bind(&origin.name)
    .fetch_one(&mut *connection)
    .await?;
    Ok(newest.min(witnessed.unwrap_or(0)))
}

/// The newest version the collection's stored data carries (documents, tombstones, and
/// resources' own versions, which count deletions).
async fn newest_stored(connection: &mut AnyConnection, collection: &str) -> Result<i64, Error> {
    let newest: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(v) FROM (SELECT MAX(version) AS v FROM hs_aspect WHERE collection = $1 \
         UNION ALL SELECT MAX(version) AS v FROM hs_resource WHERE collection = $1) newest",
    )
    .bind(collection)
    .fetch_one(&mut *connection)
    .await?;
    Ok(newest.unwrap_or(0))
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
