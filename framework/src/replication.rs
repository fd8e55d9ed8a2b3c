//! What the pollers report about the copies they keep: read by `/heartbeat` and
//! `/admin/replication`, written by the pollers. Its own module so that the HTTP edge and the
//! poller share it without depending on each other's internals.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::config::ReaderRole;

/// Every source's status, shared between the pollers and the HTTP edge.
#[derive(Debug, Clone, Default)]
pub struct Replication {
    sources: Arc<Mutex<BTreeMap<String, SourceStatus>>>,
}

/// What one source's poller does right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceState {
    /// Not started yet.
    #[default]
    Starting,
    /// Following the source's feed.
    Polling,
    /// Re-reading everything after a `410` (or a change of the copy's aspects).
    Resyncing,
    /// A backup while its primary reads.
    StandingBy,
    /// Wants the reader lease, which another unit holds.
    Waiting,
    /// The last request or apply failed; retried with backoff.
    Failing,
    /// The source answered `409 version-ahead`: it was rolled back. The copy keeps what it
    /// holds and does not advance; it asks again (with backoff) until the source has restored.
    OwnerRolledBack,
    /// A primary that got no answer from its source for a whole lease: it gave the lease up
    /// (so its backup, which may still reach the source, takes over; `/heartbeat` says
    /// `failing`) and probes the source without it; once the source answers, it wants the
    /// lease again (`waiting`), and the backup steps back.
    SteppedDown,
    /// The source answered `410 interface-retired`: the interface version this copy polls was
    /// switched off. The copy keeps what it holds and stops (it looks again every 30 s, so it
    /// resumes if the version is put back); an operator configures a newer version.
    InterfaceRetired,
}

/// What a unit does as a reader, as `/heartbeat` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReaderState {
    /// The unit keeps no copies.
    None,
    Reading,
    /// Wants the lease another unit holds.
    Waiting,
    /// A backup while the primary reads.
    StandingBy,
    /// A lease holder overdue with its renewal: a backup may take over once the lease expires.
    Stalled,
    /// A primary that cannot reach its source and gave the lease up: its backup takes over.
    Failing,
}

/// One source as its poller last saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    pub collection: String,
    /// The owner datacenter whose changes this source serves, of a collection owned in
    /// several; empty otherwise.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub origin: String,
    pub url: String,
    pub aspects: String,
    /// `primary` or `backup`.
    pub role: Option<ReaderRole>,
    pub state: SourceState,
    pub cursor: i64,
    pub chunks_applied: u64,
    /// Chunks that were asked for while the one before was being applied (pipelining).
    pub chunks_prefetched: u64,
    pub items_applied: u64,
    /// Seconds since the copy was last caught up with its source.
    pub lag_seconds: f64,
    pub last_error: Option<String>,
    /// Seconds since the source last answered this unit's poll (0 while it answers): a copy
    /// whose source stays silent makes no progress, which `/health` warns about.
    pub silent_seconds: f64,
    /// While this unit holds the reader lease: when the polling loop must have renewed it
    /// again at the latest. A loop that has not (stuck, or unable to reach its database) makes
    /// the heartbeat say `stalled`.
    #[serde(skip)]
    pub(crate) due_by: Option<Instant>,
}

impl Replication {
    /// Every source's status, by collection.
    pub fn snapshot(&self) -> Vec<SourceStatus> {
        self.lock().values().cloned().collect()
    }

    /// What this unit does as a reader, for `/heartbeat`.
    pub fn reader_state(&self) -> ReaderState {
        let sources = self.lock();
        if sources.is_empty() {
            return ReaderState::None;
        }
        let now = Instant::now();
        if sources
            .values()
            .any(|status| status.due_by.is_some_and(|due| due < now))
        {
            ReaderState::Stalled
        } else if sources
            .values()
            .any(|status| status.state == SourceState::SteppedDown)
        {
            ReaderState::Failing
        } else if sources
            .values()
            .any(|status| status.state == SourceState::Waiting)
        {
            ReaderState::Waiting
        } else if sources
            .values()
            .all(|status| status.state == SourceState::StandingBy)
        {
            ReaderState::StandingBy
        } else {
            ReaderState::Reading
        }
    }

    /// Looks at one source's status without copying the others.
    pub(crate) fn read<T>(
        &self,
        collection: &str,
        look: impl FnOnce(&SourceStatus) -> T,
    ) -> Option<T> {
        self.lock().get(collection).map(look)
    }

    pub(crate) fn update(&self, collection: &str, change: impl FnOnce(&mut SourceStatus)) {
        let mut sources = self.lock();
        change(sources.entry(collection.to_owned()).or_default());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceStatus>> {
        match self.sources.lock() {
            Ok(sources) => sources,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
