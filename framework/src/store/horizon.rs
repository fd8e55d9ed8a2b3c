//! Handing out versions, and knowing up to which version the feed may safely read.
//!
//! "Version order = commit order" is what lets a reader ask for "everything after v" and
//! never miss a change. SQLite has one writer at a time, so a counter row taken first in each
//! write transaction gives it directly. On PostgreSQL a counter-row lock held until commit
//! would serialise every commit (one fsync each, no group commit), so writers draw versions
//! from a sequence without blocking, and readers only see versions below a *visibility
//! horizon*: the highest version `S` for which every transaction that could still commit a
//! version `<= S` has finished. See ARCHITECTURE.md, "Versions".

use std::collections::{HashMap, HashSet, VecDeque};

use sqlx::AnyConnection;

use super::{Backend, Error, Store, sequence_name};
use crate::version::Version;

/// How many unsettled candidates a tracker keeps; older ones are dominated by newer ones.
const MAX_CANDIDATES: usize = 256;

/// Per collection: the highest settled version, and candidates waiting for their writers.
#[derive(Debug, Default)]
pub(super) struct Horizons {
    trackers: HashMap<String, Tracker>,
}

#[derive(Debug, Default)]
struct Tracker {
    settled: i64,
    /// Every version up to this one survives a crash of the database (see `make_durable`).
    durable: i64,
    /// When the PostgreSQL server last started: a change means it crashed or restarted, and
    /// what was settled in memory before may have been lost with unflushed WAL.
    server_started: String,
    /// (sequence value seen, transactions in progress when it was seen), oldest first.
    candidates: VecDeque<(i64, Vec<String>)>,
}

impl Tracker {
    /// Drops what was settled above the durable mark (and the candidates that led there).
    fn forget_above_durable(&mut self) {
        self.candidates.clear();
        self.settled = self.settled.min(self.durable);
    }
}

/// Takes the next version for one resource change inside a write transaction.
pub(super) async fn allocate(
    connection: &mut AnyConnection,
    backend: Backend,
    collection: &str,
) -> Result<Version, Error> {
    let value: Option<i64> = match backend {
        Backend::Sqlite => {
            sqlx::query_scalar(
                "UPDATE hs_counter SET version = version + 1 WHERE collection = $1 \
                 RETURNING version",
            )
            .bind(collection)
            .fetch_optional(&mut *connection)
            .await?
        }
        Backend::Postgres => {
            // The transaction id must exist before the version is drawn: a reader that sees
            // the sequence at S and then the transactions in progress knows every writer of a
            // version <= S is either finished (and visible) or among them.
            sqlx::query_scalar(
                "WITH writer AS MATERIALIZED (SELECT pg_current_xact_id() AS xid) \
                 SELECT nextval($1::regclass) FROM writer",
            )
            .bind(sequence_name(collection))
            .fetch_optional(&mut *connection)
            .await?
        }
    };
    value
        .and_then(Version::new)
        .ok_or_else(|| Error::Corrupt(format!("collection {collection} is not registered")))
}

impl Store {
    /// The newest version handed out for `collection` (committed or not). A client holding a
    /// greater version has seen changes this store lost.
    pub async fn current_version(&self, collection: &str) -> Result<Version, Error> {
        let value: Option<i64> = match self.backend {
            Backend::Sqlite => {
                sqlx::query_scalar("SELECT version FROM hs_counter WHERE collection = $1")
                    .bind(collection)
                    .fetch_optional(&self.pool)
                    .await?
            }
            Backend::Postgres => {
                sqlx::query_scalar("SELECT COALESCE(pg_sequence_last_value($1::regclass), 0)")
                    .bind(sequence_name(collection))
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        Ok(value.and_then(Version::new).unwrap_or(Version::ZERO))
    }

    /// The highest version up to which every change of `collection` is committed (or rolled
    /// back) and visible: the feed never serves beyond it, so it never skips a late commit.
    pub async fn horizon(&self, collection: &str) -> Result<Version, Error> {
        if self.backend == Backend::Sqlite {
            // The counter row and the data commit together and SQLite has one writer.
            return self.current_version(collection).await;
        }
        let mut horizons = self.horizons.lock().await;
        let tracker = horizons.trackers.entry(collection.to_owned()).or_default();
        let settled = self.settle(tracker, collection).await?;
        if !self.make_durable(tracker, collection, settled).await? {
            tracker.forget_above_durable();
        }
        Ok(Version::new(tracker.settled).unwrap_or(Version::ZERO))
    }

    /// Moves `tracker.settled` as far as the finished writers allow and returns it.
    async fn settle(&self, tracker: &mut Tracker, collection: &str) -> Result<i64, Error> {
        // Order matters: the sequence first, then the writers in progress (see `allocate`).
        let (seen, server_started): (i64, String) = sqlx::query_as(
            "SELECT COALESCE(pg_sequence_last_value($1::regclass), 0), \
                    CAST(pg_postmaster_start_time() AS TEXT)",
        )
        .bind(sequence_name(collection))
        .fetch_one(&self.pool)
        .await?;
        if server_started != tracker.server_started || seen < tracker.settled {
            // A crash or restart: candidates name writers that are gone, and a sequence that
            // went back lost advances nobody may see. Only what was made durable stays.
            if !tracker.server_started.is_empty() {
                tracing::warn!(
                    collection,
                    seen,
                    settled = tracker.settled,
                    "PostgreSQL restarted or its sequence went back; the feed horizon starts again from what was durable"
                );
            }
            tracker.server_started = server_started;
            tracker.forget_above_durable();
            tracker.durable = tracker.durable.min(seen);
            tracker.settled = tracker.durable;
        }
        let in_progress = self.transactions_in_progress().await?;
        if in_progress.is_empty() {
            tracker.settled = tracker.settled.max(seen);
            tracker.candidates.clear();
            return Ok(tracker.settled);
        }
        tracker.candidates.push_back((seen, in_progress));
        while tracker.candidates.len() > MAX_CANDIDATES {
            tracker.candidates.pop_front();
        }
        // Looked at again: a candidate is settled once none of its writers still holds its id
        // (not merely once the commit log says "committed", a moment before the commit becomes
        // visible to new snapshots).
        let still_running: HashSet<String> =
            self.transactions_in_progress().await?.into_iter().collect();
        let settled = tracker
            .candidates
            .iter()
            .filter(|(_, xids)| xids.iter().all(|xid| !still_running.contains(xid)))
            .map(|(version, _)| *version)
            .max();
        if let Some(settled) = settled {
            tracker.settled = tracker.settled.max(settled);
            let floor = tracker.settled;
            tracker.candidates.retain(|(version, _)| *version > floor);
        }
        Ok(tracker.settled)
    }

    /// Makes sure the sequence's advance to `version` survives a crash before the feed
    /// exposes it; `false` when the sequence no longer holds `version` (a crash lost it).
    ///
    /// A sequence logs its advances in WAL that only a later commit flushes; a version drawn by a transaction that rolled back can therefore be lost in a crash, and
    /// the sequence would hand it out again to a change that copies, already past it as their
    /// cursor, never receive. When a committed row carries `version`, its commit flushed the
    /// WAL up to there already; otherwise one small durable commit (`hs_exposed`), which comes
    /// after the sequence's record in the WAL, does it.
    async fn make_durable(
        &self,
        tracker: &mut Tracker,
        collection: &str,
        version: i64,
    ) -> Result<bool, Error> {
        if version <= tracker.durable {
            return Ok(true);
        }
        let committed: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM hs_aspect WHERE collection = $1 AND version <= $2",
        )
        .bind(collection)
        .bind(version)
        .fetch_one(&self.pool)
        .await?;
        if committed != Some(version) {
            // The sequence is read in the same transaction, before its commit: if it holds
            // `version` now, the record of that advance lies before this commit in the WAL,
            // even if the server crashed and came back since `version` was seen.
            let sequence = sequence_name(collection);
            let marked = sqlx::query(
                "INSERT INTO hs_exposed (collection, version) SELECT $1, $2 \
                 WHERE COALESCE(pg_sequence_last_value($3::regclass), 0) >= $2 \
                 ON CONFLICT (collection) DO UPDATE SET version = excluded.version \
                 WHERE hs_exposed.version < excluded.version",
            )
            .bind(collection)
            .bind(version)
            .bind(&sequence)
            .execute(&self.pool)
            .await?;
            if marked.rows_affected() == 0 {
                let still_handed_out: bool = sqlx::query_scalar(
                    "SELECT COALESCE(pg_sequence_last_value($1::regclass), 0) >= $2",
                )
                .bind(&sequence)
                .bind(version)
                .fetch_one(&self.pool)
                .await?;
                if !still_handed_out {
                    return Ok(false);
                }
            }
        }
        tracker.durable = version;
        Ok(true)
    }

    /// The transactions that hold an id right now (cluster-wide: writers of other databases
    /// only delay the horizon a little, they never make it unsafe).
    ///
    /// Every transaction holds the lock on its own id from the moment the id is assigned until
    /// its commit is visible to new snapshots. A snapshot's in-progress list would not do: it
    /// omits transactions at or above its `xmax`, which is the last *completed* id plus one, so
    /// a writer that just took its id can be missing from it.
    async fn transactions_in_progress(&self) -> Result<Vec<String>, Error> {
        Ok(sqlx::query_scalar(
            "SELECT transactionid::text FROM pg_locks \
             WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
