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
    /// (sequence value seen, transactions in progress when it was seen), oldest first.
    candidates: VecDeque<(i64, Vec<String>)>,
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
            // the sequence at S and then a snapshot knows every writer of a version <= S is
            // either committed, aborted, or listed as in progress in that snapshot.
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
        // Order matters: the sequence first, then the snapshot (see `allocate`).
        let seen = self.current_version(collection).await?.get();
        let in_progress = self.transactions_in_progress().await?;
        if in_progress.is_empty() {
            tracker.settled = tracker.settled.max(seen);
            tracker.candidates.clear();
            return Ok(Version::new(tracker.settled).unwrap_or(Version::ZERO));
        }
        tracker.candidates.push_back((seen, in_progress));
        while tracker.candidates.len() > MAX_CANDIDATES {
            tracker.candidates.pop_front();
        }
        // A second, fresher snapshot: a candidate is settled once none of its writers is still
        // in progress *in a snapshot* (not merely in the commit log, which says "committed" a
        // moment before the commit becomes visible to new snapshots).
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
        Ok(Version::new(tracker.settled).unwrap_or(Version::ZERO))
    }

    /// The transaction ids a fresh snapshot considers in progress (cluster-wide: writers of
    /// other databases only delay the horizon a little, they never make it unsafe).
    async fn transactions_in_progress(&self) -> Result<Vec<String>, Error> {
        let snapshot: String = sqlx::query_scalar("SELECT pg_current_snapshot()::text")
            .fetch_one(&self.pool)
            .await?;
        Ok(snapshot_xip(&snapshot))
    }
}

/// The in-progress transaction ids of a `pg_snapshot` in text form `xmin:xmax:xip,xip,…`.
fn snapshot_xip(snapshot: &str) -> Vec<String> {
    snapshot
        .rsplit(':')
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|xid| !xid.is_empty() && xid.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::snapshot_xip;

    #[test]
    fn snapshot_text_table() {
        assert_eq!(snapshot_xip("10:20:"), Vec::<String>::new());
        assert_eq!(snapshot_xip("10:20:10,15"), vec!["10", "15"]);
        assert_eq!(snapshot_xip("742:742:"), Vec::<String>::new());
    }
}
