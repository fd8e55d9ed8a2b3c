//! Rollback evidence found by the units themselves, under running units: the database went
//! back (a restore into the live database, a failover to an asynchronous standby, a data
//! directory put back) and its counter now stands below a version this SA already exposed.
//!
//! Each unit remembers, per owned collection, the greatest version it knows was exposed
//! durably: what its own committed writes answered, and the feed horizon it served (SQLite:
//! the committed counter; PostgreSQL: the horizon once `make_durable` made it survive a
//! crash). A version drawn at or below that mark, or a counter read below it, cannot happen
//! unless the database lost committed state, so the write that drew it is rolled back, the
//! collection enters `restoring` (in the database, so every unit of the SA refuses writes
//! from its next transaction on) and the unit is told to drop its caches and refill.
//!
//! The mark costs nothing per write (memory only). Its limit: a unit that exposed nothing
//! since it started knows no mark (the start gate and the consumers' `409` cover it), and a
//! unit that had not yet seen the newest versions of its sibling units may draw a few of them
//! again before a sibling's evidence closes the collection; the refill's margin covers those.

use std::collections::HashMap;

use super::{Error, Store};
use crate::version::Version;

/// The units' marks and the signal that evidence was found.
#[derive(Debug)]
pub(super) struct RollbackWatch {
    exposed: std::sync::Mutex<HashMap<String, i64>>,
    /// Bumped each time evidence put a collection into `restoring`.
    noticed: tokio::sync::watch::Sender<u64>,
}

impl Default for RollbackWatch {
    fn default() -> Self {
        Self {
            exposed: std::sync::Mutex::default(),
            noticed: tokio::sync::watch::channel(0).0,
        }
    }
}

impl RollbackWatch {
    fn marks(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        match self.exposed.lock() {
            Ok(marks) => marks,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Store {
    /// Records that `version` of `collection` is exposed and durable (a committed write's
    /// answer, a durable horizon): the counter may never again stand below it.
    pub(super) fn note_exposed(&self, collection: &str, version: Version) {
        let mut marks = self.rollback.marks();
        let mark = marks.entry(collection.to_owned()).or_default();
        *mark = (*mark).max(version.get());
    }

    /// The greatest version of `collection` this unit knows was exposed (0: none yet).
    pub(crate) fn exposed_mark(&self, collection: &str) -> i64 {
        self.rollback.marks().get(collection).copied().unwrap_or(0)
    }

    /// Signals each time rollback evidence put a collection into `restoring` (the unit drops
    /// its caches and starts the refill).
    pub(crate) fn rollback_noticed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rollback.noticed.subscribe()
    }

    /// [`Store::current_version`] of an owned collection, compared with the unit's mark as it
    /// stood before the read (a write committing in between raises the mark past a counter
    /// read a moment earlier): below it, the database was rolled back, and the collection
    /// enters `restoring`.
    pub(crate) async fn checked_current_version(&self, collection: &str) -> Result<Version, Error> {
        let mark = self.exposed_mark(collection);
        let counter = self.current_version(collection).await?;
        if counter.get() < mark {
            self.counter_below_mark(collection, counter, mark).await?;
        }
        Ok(counter)
    }

    async fn counter_below_mark(
        &self,
        collection: &str,
        counter: Version,
        mark: i64,
    ) -> Result<(), Error> {
        let evidence = format!(
            "the counter stands at {counter}, below version {mark} that this SA's units \
             already exposed: the database was rolled back under running units"
        );
        self.rolled_back(collection, counter, mark, &evidence).await
    }

    /// A write drew `drawn`, not above the mark as it stood before the draw: the error the
    /// write answers with, after `collection` entered `restoring`. Call with the write's
    /// transaction (and turn) dropped.
    ///
    /// The mark must be read before the draw: on PostgreSQL a writer that drew earlier may
    /// commit after one that drew later (and raised the mark). A version at or above `drawn`
    /// committed before the draw, though, was drawn before it too, and a counter that only
    /// grows would have given more: so `drawn <= mark before` proves the counter went back.
    pub(super) async fn drew_rolled_back_version(&self, collection: &str, drawn: Version) -> Error {
        let mark = self.exposed_mark(collection);
        let evidence = format!(
            "a write drew version {drawn}, which this SA's units already exposed (up to \
             {mark}): the database was rolled back under running units"
        );
        let counter = Version::new(drawn.get() - 1).unwrap_or(Version::ZERO);
        if let Err(error) = self.rolled_back(collection, counter, mark, &evidence).await {
            return error;
        }
        Error::Restoring {
            collection: collection.to_owned(),
        }
    }

    async fn rolled_back(
        &self,
        collection: &str,
        counter: Version,
        mark: i64,
        evidence: &str,
    ) -> Result<(), Error> {
        let exposed = Version::new(mark).unwrap_or(Version::ZERO);
        let entered = self
            .record_evidence(collection, counter, exposed, evidence)
            .await?;
        if entered {
            metrics::counter!("hiscale_rollback_evidence_total", "collection" => collection.to_owned())
                .increment(1);
            tracing::error!(
                collection,
                %counter,
                exposed = mark,
                evidence,
                "rolled back: writes are refused until the refill from the peers' copies (or an operator) ends restoring"
            );
            self.rollback.noticed.send_modify(|count| *count += 1);
        }
        Ok(())
    }
}
