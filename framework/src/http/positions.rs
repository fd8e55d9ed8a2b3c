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

use std::collections::HashMap;
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
}

/// The positions this unit has seen, and which of them the store does not hold yet.
#[derive(Debug, Default)]
pub(crate) struct ConsumerPositions {
    entries: Mutex<HashMap<(String, String), Entry>>,
}

impl ConsumerPositions {
    /// Records `position`: written now when it must be (see the module's doc), else held until
    /// the consumer's next poll after [`FORWARD_INTERVAL`] or the next [`Self::flush`].
    /// `gate_open` is whether this unit's start gate is open; `latest_unit_start` is when the
    /// newest unit of this store started (unix seconds): an older write does not count for it.
    pub(super) async fn remember(
        &self,
        store: &Store,
        position: Position,
        gate_open: bool,
        latest_unit_start: i64,
    ) -> Result<(), Error> {
        if !self.due(&position, gate_open, latest_unit_start) {
            return Ok(());
        }
        write(store, &position).await
    }

    /// Whether `position` must be written now; holds it as pending otherwise.
    fn due(&self, position: &Position, gate_open: bool, latest_unit_start: i64) -> bool {
        let mut entries = match self.entries.lock() {
            Ok(entries) => entries,
            Err(poisoned) => poisoned.into_inner(),
        };
        let key = position.key();
        let now = Instant::now();
        let due = match entries.get(&key) {
            None => true,
            Some(entry) => {
                let age = entry.written_at.elapsed();
                let written_unix = crate::store::unix_now()
                    .saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
                !gate_open
                    || entry.written_resync != position.resync
                    || position.version < entry.written_version
                    || (position.version != entry.written_version && age >= FORWARD_INTERVAL)
                    || age >= REFRESH
                    || written_unix <= latest_unit_start
            }
        };
        if due {
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
                },
            );
        } else if let Some(entry) = entries.get_mut(&key)
            && position.version != entry.written_version
        {
            entry.pending = Some(position.clone());
        }
        due
    }

    /// Writes every held position, so a purge or a listing sees where this unit's consumers
    /// stand now.
    pub(super) async fn flush(&self, store: &Store) -> Result<(), Error> {
        let pending: Vec<Position> = {
            let mut entries = match self.entries.lock() {
                Ok(entries) => entries,
                Err(poisoned) => poisoned.into_inner(),
            };
            entries
                .values_mut()
                .filter_map(|entry| {
                    let position = entry.pending.take()?;
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
        assert!(positions.due(&at(0, true), true, 0), "first seen");
        assert!(!positions.due(&at(0, true), true, 0), "unchanged");
        assert!(
            !positions.due(&at(100, true), true, 0),
            "forward, resync still on"
        );
        assert!(positions.due(&at(200, false), true, 0), "the re-read ended");
        assert!(!positions.due(&at(300, false), true, 0), "forward");
        assert!(positions.due(&at(150, false), true, 0), "back");
        assert!(
            positions.due(&at(160, false), false, 0),
            "the gate is closed"
        );
        let later = crate::store::unix_now() + 10;
        assert!(
            positions.due(&at(170, false), true, later),
            "a unit started after the write"
        );
        assert!(!positions.due(&at(180, false), true, 0));
        let mut other_version = at(190, false);
        other_version.interface = 2;
        assert!(
            positions.due(&other_version, true, 0),
            "another interface version"
        );
    }

    #[test]
    fn a_held_position_is_kept_for_the_flush() {
        let positions = ConsumerPositions::default();
        assert!(positions.due(&at(10, false), true, 0));
        assert!(!positions.due(&at(20, false), true, 0));
        assert!(!positions.due(&at(30, false), true, 0));
        let entries = positions.entries.lock().unwrap();
        let pending = entries.values().next().unwrap().pending.as_ref().unwrap();
        assert_eq!(pending.version.get(), 30);
    }
}
