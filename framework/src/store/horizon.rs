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

use super::{Backend, Error, OwnOrigin, Store, sequence_name};
use crate::origin::Origin;
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
    /// When the last computation of `settled` started: a caller that asked before that takes
    /// its result instead of scanning the locks again (see [`Store::horizon`]).
    computed_since: Option<std::time::Instant>,
}

impl Tracker {
    /// Drops what was settled above the durable mark (and the candidates that led there).
    fn forget_above_durable(&mut self) {
        self.candidates.clear();
        self.settled = self.settled.min(self.durable);
    }
}

/// Takes the next version for one resource change inside a write transaction.
///
/// The counter is this store's origin's: the next version above the last one that the origin
/// issues (`k`, `k+n`, `k+2n`… for owner datacenter `k` of `n`; `1, 2, 3…` for one).
pub(super) async fn allocate(
    connection: &mut AnyConnection,
    backend: Backend,
    collection: &str,
    origin: &Origin,
) -> Result<Version, Error> {
    let value: Option<i64> = match backend {
        Backend::Sqlite => sqlx::query_scalar(
            "UPDATE hs_counter SET version = version + 1 + ((($2 - version - 1) % $3) + $3) % $3 \
                 WHERE collection = $1 RETURNING version",
        )
        .bind(collection)
        .bind(i64::from(origin.index))
        .bind(i64::from(origin.count))
        .fetch_optional(&mut *connection)
        .await?,
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
    /// Draws this store's versions from owner datacenter `own`'s counter among `names` (an SA
    /// that owns its collections in several datacenters), for the `collections` it owns; once,
    /// at start. `names` empty: the single counter of one owner datacenter.
    ///
    /// The owner datacenters are recorded with each collection the first time and fixed from
    /// then on ([`Error::OriginsFixed`] otherwise): another list, or a collection that already
    /// drew versions alone, could hand out numbers another datacenter uses. On PostgreSQL each
    /// collection's sequence then counts in steps of `n` from the origin's first value.
    pub async fn use_origin(
        &self,
        names: &[String],
        own: &str,
        collections: &[&str],
    ) -> Result<(), Error> {
        let origin = if names.is_empty() {
            Origin::single()
        } else {
            Origin::among(names, own).ok_or_else(|| {
                Error::Corrupt(format!(
                    "{own} is not among the owner datacenters {names:?}"
                ))
            })?
        };
        let owners = names.join(",");
        for collection in collections {
            self.fix_origins(collection, &owners, &origin).await?;
            if self.backend == Backend::Postgres && !origin.is_single() {
                self.align_sequence(collection, &origin).await?;
            }
        }
        let chosen = OwnOrigin {
            own: origin,
            names: names.to_vec(),
            collections: collections.iter().map(ToString::to_string).collect(),
        };
        if self.write_origin.set(chosen).is_err() {
            return Err(Error::Corrupt("a store's origin is chosen once".to_owned()));
        }
        Ok(())
    }

    /// Records `owners` (and `origin`) for `collection` the first time, on an empty
    /// collection; refuses anything else than what was recorded.
    async fn fix_origins(
        &self,
        collection: &str,
        owners: &str,
        origin: &Origin,
    ) -> Result<(), Error> {
        let recorded: Option<(String, String)> =
            sqlx::query_as("SELECT owners, own FROM hs_origins WHERE collection = $1")
                .bind(collection)
                .fetch_optional(&self.pool)
                .await?;
        let refuse = |was: &str| Error::OriginsFixed {
            collection: collection.to_owned(),
            was: was.to_owned(),
            now: if origin.is_single() {
                "one owner datacenter".to_owned()
            } else {
                format!("owner datacenters {owners} (this one {})", origin.name)
            },
        };
        match recorded {
            Some((was_owners, was_own)) if was_owners == owners && was_own == origin.name => Ok(()),
            Some((was_owners, was_own)) => Err(refuse(&format!(
                "owner datacenters {was_owners} (this one {was_own})"
            ))),
            None if origin.is_single() => Ok(()),
            None => {
                let drawn = self.current_version(collection).await?;
                if drawn > Version::ZERO {
                    return Err(refuse(&format!(
                        "one owner datacenter, which drew versions up to {drawn}"
                    )));
                }
                let _turn = self.write_turn().await;
                sqlx::query(
                    "INSERT INTO hs_origins (collection, owners, own) VALUES ($1, $2, $3) \
                     ON CONFLICT (collection) DO NOTHING",
                )
                .bind(collection)
                .bind(owners)
                .bind(&origin.name)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    }

    /// The counter this store draws versions from.
    pub(crate) fn own_origin(&self) -> OwnOrigin {
        self.write_origin.get().cloned().unwrap_or_default()
    }

    /// Sets `collection`'s sequence to count in steps of `origin.count` through the values
    /// `origin` issues. `fix_origins` lets a collection become active/active only while it
    /// drew nothing, so the sequence is either fresh (set it up) or was set up by an earlier
    /// start (leave it); anything else was changed by hand and could issue another origin's
    /// numbers, so the unit does not start.
    async fn align_sequence(&self, collection: &str, origin: &Origin) -> Result<(), Error> {
        let sequence = sequence_name(collection);
        let (increment, last): (i64, Option<i64>) = sqlx::query_as(
            "SELECT increment_by, last_value FROM pg_sequences \
             WHERE schemaname = current_schema() AND sequencename = $1",
        )
        .bind(&sequence)
        .fetch_one(&self.pool)
        .await?;
        let (index, count) = (i64::from(origin.index), i64::from(origin.count));
        match last {
            None => {
                // Sequence names are checked identifiers and the numbers come from the topology.
                let statement =
                    format!("ALTER SEQUENCE {sequence} INCREMENT BY {count} RESTART WITH {index}");
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
            Some(last) if increment == count && origin.issued(last) => Ok(()),
            Some(last) => Err(Error::Corrupt(format!(
                "sequence {sequence} counts by {increment} and stands at {last}, which is not \
                 datacenter {}'s counter ({index}, {index}+{count}, …)",
                origin.name
            ))),
        }
    }

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

    /// Whether [`Store::horizon`] is simply the newest version handed out: SQLite commits a
    /// version with its data, one writer at a time.
    pub(crate) fn horizon_is_newest_version(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// The highest version up to which every change of `collection` is committed (or rolled
    /// back) and visible: the feed never serves beyond it, so it never skips a late commit.
    pub async fn horizon(&self, collection: &str) -> Result<Version, Error> {
        if self.backend == Backend::Sqlite {
            // The counter row and the data commit together and SQLite has one writer: what it
            // holds is committed, and the feed may expose it.
            let counter = self.current_version(collection).await?;
            self.note_exposed(collection, counter);
            return Ok(counter);
        }
        // Concurrent feed requests share one computation: whoever waited for the lock while
        // another computed takes that result when it started after this request asked, since
        // it saw every commit this request could have seen (the horizon only moves up).
        let asked = std::time::Instant::now();
        let mut horizons = self.horizons.lock().await;
        let tracker = horizons.trackers.entry(collection.to_owned()).or_default();
        if tracker
            .computed_since
            .is_some_and(|started| started >= asked)
        {
            return Ok(Version::new(tracker.settled).unwrap_or(Version::ZERO));
        }
        let started = std::time::Instant::now();
        let settled = self.settle(tracker, collection).await?;
        if !self.make_durable(tracker, collection, settled).await? {
            tracker.forget_above_durable();
        }
        tracker.computed_since = Some(started);
        // What the feed may expose from here on survives a crash: the counter may never again
        // stand below it (`rollback.rs`).
        self.note_exposed(
            collection,
            Version::new(tracker.durable.min(tracker.settled)).unwrap_or(Version::ZERO),
        );
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

    /// The transactions that hold an id right now, except those of sessions connected to
    /// another database of the cluster: they cannot write this store's tables, and a long
    /// transaction of another SA sharing the server would otherwise hold this feed back.
    ///
    /// Every transaction holds the lock on its own id from the moment the id is assigned until
    /// its commit is visible to new snapshots. A snapshot's in-progress list would not do: it
    /// omits transactions at or above its `xmax`, which is the last *completed* id plus one, so
    /// a writer that just took its id can be missing from it.
    ///
    /// A lock is left out only when its session is *known* to be elsewhere: a session that
    /// `pg_stat_activity` did not list yet (it started between the two reads), and a prepared
    /// transaction (no session), are counted. `datid` and `pid` are shown to every role.
    async fn transactions_in_progress(&self) -> Result<Vec<String>, Error> {
        Ok(sqlx::query_scalar(
            "SELECT l.transactionid::text FROM pg_locks l \
             WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted \
             AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.pid \
                 AND a.datid IS DISTINCT FROM \
                     (SELECT oid FROM pg_database WHERE datname = current_database()))",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
