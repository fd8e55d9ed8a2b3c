//! Where each consumer of an owned feed stands, written to the store without a write per poll.
//!
//! A copy catching up polls hundreds of times a second, each time at a new version. Writing
//! every position is one durable write transaction per feed request: on SQLite they queue for
//! the one writer, each with an fsync. Positions are read for three things, and each stays
//! right when a forward move is written up to [`FORWARD_INTERVAL`] late:
//!
//! * the purge keeps tombstones no consumer has passed: a position recorded lower than the
//!   consumer stands keeps more, never fewer (and `purge` flushes what this unit holds first);
//! * the start gate counts positions recorded after a unit started: while it is closed every
//!   position is written at once;
//! * a re-read from 0 (`resync`) may pass purged versions: a change of that flag is written at
//!   once, so a finished re-read never lingers as one.
//!
//! A position that goes back (a copy restored from an old backup) is written at once: recorded
//! too high, it would let the purge take tombstones that consumer still needs.
//!
//! **The feed request does not wait for a routine write.** A forward move or a refresh is
//! written by a task of its own ([`Due::Behind`]): on SQLite the write queues for the one
//! writer behind the owner's writes, and a long poll answered only after it added that wait to
//! the copy's lag once a second (on SQLite at 300 writes/s, the lag's p99 went from a median
//! of 86 ms to 22.5 ms over three release runs each). What correctness needs stays awaited ([`Due::Now`]): the first position, a
//! change of the re-read flag (the next request reads it back from the store), a move back,
//! and every write while the start gate is closed. Writes take turns (one at a time), and a
//! routine write waits in its consumer's entry until its task's turn: a later decision
//! replaces it, and a flush (before a purge or a listing) writes it itself, so a late routine
//! write never records a position older than one written after it, and a flush misses none.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::interface::InterfaceVersion;
use crate::origin::Origin;
use crate::store::{Error, Store};
use crate::version::Version;

/// A consumer's forward move is written at most this often.
pub(super) const FORWARD_INTERVAL: Duration = Duration::from_secs(1);
/// A consumer's unchanged position is written again after this long (its "last seen").
const REFRESH: Duration = Duration::from_secs(30);
/// Consumers remembered at most (callers are authenticated services, so few; the bound keeps
/// a misbehaving caller from growing the map).
const MAX_CONSUMERS: usize = 10_000;

/// One consumer's position, as the feed saw it.
#[derive(Debug, Clone)]
pub(super) struct Position {
    pub(super) collection: String,
    pub(super) origin: Origin,
    pub(super) consumer: String,
    pub(super) version: Version,
    pub(super) resync: bool,
    pub(super) interface: InterfaceVersion,
}

impl Position {
    /// The interface version is part of the key: a consumer moving to another version is
    /// recorded at once (an operator retiring the old one asks who still polls it).
    fn key(&self) -> (String, String) {
        (
            self.collection.clone(),
            format!("{}@v{}|{}", self.consumer, self.interface, self.origin.name),
        )
    }
}

#[derive(Debug)]
struct Entry {
    written_version: Version,
    written_resync: bool,
    written_at: Instant,
    /// A forward move not written yet.
    pending: Option<Position>,
    /// A routine write decided, waiting for its task's turn (or a flush).
    behind: Option<Position>,
}

/// Whether a position is written, and whether the feed request waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Not now: held as pending (a forward move within [`FORWARD_INTERVAL`]).
    No,
    /// Now, and the request waits: the store must hold it before the next request.
    Now,
    /// Now, by a task of its own: a forward move or a refresh, which nothing reads at once.
    Behind,
}

/// The positions this unit has seen, and which of them the store does not hold yet.
#[derive(Debug, Default)]
pub(crate) struct ConsumerPositions {
    entries: Mutex<HashMap<(String, String), Entry>>,
    /// Writes take turns.
    turn: tokio::sync::Mutex<()>,
}

impl ConsumerPositions {
    /// Records `position`: written now when it must be (see the module's doc), else held until
    /// the consumer's next poll after [`FORWARD_INTERVAL`] or the next [`Self::flush`].
    /// `gate_open` is whether this unit's start gate is open; `latest_unit_start` is when the
    /// newest unit of this store started (unix seconds): an older write does not count for it.
    pub(super) async fn remember(
        self: &Arc<Self>,
        store: &Store,
        position: Position,
        gate_open: bool,
        latest_unit_start: i64,
    ) -> Result<(), Error> {
        match self.due(&position, gate_open, latest_unit_start) {
            Due::No => Ok(()),
            Due::Now => {
                let _turn = self.turn.lock().await;
                write(store, &position).await
            }
            Due::Behind => {
                let positions = Arc::clone(self);
                let store = store.clone();
                let key = position.key();
                tokio::spawn(async move {
                    let _turn = positions.turn.lock().await;
                    // Gone when a later decision or a flush came first.
                    let Some(position) = positions.take_behind(&key) else {
                        return;
                    };
                    if let Err(error) = write(&store, &position).await {
                        // One lost routine update only delays a purge.
                        tracing::warn!(%error, consumer = %position.consumer, "could not record the consumer's position");
                    }
                });
                Ok(())
            }
        }
    }

    /// Whether `position` is written now, and how (see the module's doc); holds it as pending
    /// otherwise, and a routine write as `behind` until its turn.
    fn due(&self, position: &Position, gate_open: bool, latest_unit_start: i64) -> Due {
        let mut entries = match self.entries.lock() {
            Ok(entries) => entries,
            Err(poisoned) => poisoned.into_inner(),
        };
        let key = position.key();
        let now = Instant::now();
        let due = match entries.get(&key) {
            None => Due::Now,
            Some(entry) => {
                let age = entry.written_at.elapsed();
                let written_unix = crate::store::unix_now()
                    .saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
                if !gate_open
                    || entry.written_resync != position.resync
                    || position.version < entry.written_version
                    || written_unix <= latest_unit_start
                {
                    Due::Now
                } else if (position.version != entry.written_version && age >= FORWARD_INTERVAL)
                    || age >= REFRESH
                {
                    Due::Behind
                } else {
                    Due::No
                }
            }
        };
        if due != Due::No {
            if entries.len() >= MAX_CONSUMERS && !entries.contains_key(&key) {
                entries.clear();
            }
            entries.insert(
                key,
                Entry {
                    written_version: position.version,
                    written_resync: position.resync,
                    written_at: now,
                    pending: None,
                    behind: (due == Due::Behind).then(|| position.clone()),
                },
            );
        } else if let Some(entry) = entries.get_mut(&key)
            && position.version != entry.written_version
        {
            entry.pending = Some(position.clone());
        }
        due
    }

    /// The routine write waiting in `key`'s entry, taken out.
    fn take_behind(&self, key: &(String, String)) -> Option<Position> {
        let mut entries = match self.entries.lock() {
            Ok(entries) => entries,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries.get_mut(key)?.behind.take()
    }

    /// Writes every held position, so a purge or a listing sees where this unit's consumers
    /// stand now.
    pub(super) async fn flush(&self, store: &Store) -> Result<(), Error> {
        // After the writes decided before it (a background write in flight included).
        let _turn = self.turn.lock().await;
        let pending: Vec<Position> = {
            let mut entries = match self.entries.lock() {
                Ok(entries) => entries,
                Err(poisoned) => poisoned.into_inner(),
            };
            entries
                .values_mut()
                .filter_map(|entry| {
                    // A routine write still waiting its turn is older than a pending move.
                    let behind = entry.behind.take();
                    let Some(position) = entry.pending.take() else {
                        return behind;
                    };
                    entry.written_version = position.version;
                    entry.written_at = Instant::now();
                    Some(position)
                })
                .collect()
        };
        for position in &pending {
            write(store, position).await?;
        }
        Ok(())
    }
}

async fn write(store: &Store, position: &Position) -> Result<(), Error> {
    store
        .record_consumer(
            &position.collection,
            &position.origin,
            &position.consumer,
            position.version,
            position.resync,
            position.interface,
        )
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(version: i64, resync: bool) -> Position {
        Position {
            collection: "customers".to_owned(),
            origin: Origin::single(),
            consumer: "billing".to_owned(),
            version: Version::new(version).unwrap(),
            resync,
            interface: 1,
        }
    }

    #[test]
    fn forward_moves_wait_and_everything_that_matters_is_written_at_once() {
        let positions = ConsumerPositions::default();
        let due = |position: &Position, gate_open: bool, start: i64| {
            positions.due(position, gate_open, start)
        };
        assert_eq!(due(&at(0, true), true, 0), Due::Now, "first seen");
        assert_eq!(due(&at(0, true), true, 0), Due::No, "unchanged");
        assert_eq!(
            due(&at(100, true), true, 0),
            Due::No,
            "forward, resync still on"
        );
        assert_eq!(due(&at(200, false), true, 0), Due::Now, "the re-read ended");
        assert_eq!(due(&at(300, false), true, 0), Due::No, "forward");
        assert_eq!(due(&at(150, false), true, 0), Due::Now, "back");
        assert_eq!(
            due(&at(160, false), false, 0),
            Due::Now,
            "the gate is closed"
        );
        let later = crate::store::unix_now() + 10;
        assert_eq!(
            due(&at(170, false), true, later),
            Due::Now,
            "a unit started after the write"
        );
        assert_eq!(due(&at(180, false), true, 0), Due::No);
        let mut other_version = at(190, false);
        other_version.interface = 2;
        assert_eq!(
            due(&other_version, true, 0),
            Due::Now,
            "another interface version"
        );
    }

    /// A forward move after the interval is written behind the request; a later decision
    /// replaces it, so it never lands after the later one.
    #[test]
    fn a_routine_move_is_written_behind_and_a_later_decision_replaces_it() {
        let positions = ConsumerPositions::default();
        assert_eq!(positions.due(&at(10, false), true, 0), Due::Now);
        let key = at(10, false).key();
        let age = |positions: &ConsumerPositions| {
            let mut entries = positions.entries.lock().unwrap();
            let entry = entries.get_mut(&key).unwrap();
            entry.written_at = Instant::now()
                .checked_sub(FORWARD_INTERVAL + Duration::from_millis(10))
                .unwrap();
        };
        age(&positions);
        assert_eq!(positions.due(&at(20, false), true, 0), Due::Behind);
        assert_eq!(
            positions.due(&at(15, false), true, 0),
            Due::Now,
            "a move back"
        );
        assert!(
            positions.take_behind(&key).is_none(),
            "the routine write is replaced"
        );
        age(&positions);
        assert_eq!(positions.due(&at(30, false), true, 0), Due::Behind);
        assert_eq!(positions.take_behind(&key).unwrap().version.get(), 30);
    }

    #[test]
    fn a_held_position_is_kept_for_the_flush() {
        let positions = ConsumerPositions::default();
        assert_eq!(positions.due(&at(10, false), true, 0), Due::Now);
        assert_eq!(positions.due(&at(20, false), true, 0), Due::No);
        assert_eq!(positions.due(&at(30, false), true, 0), Due::No);
        let entries = positions.entries.lock().unwrap();
        let pending = entries.values().next().unwrap().pending.as_ref().unwrap();
        assert_eq!(pending.version.get(), 30);
    }
}
