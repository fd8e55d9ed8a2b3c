//! The start gate: after every start, a unit takes no write to an owned collection until every
//! consumer the topology names for it has polled.
//!
//! Why: a store restored from a backup (or rolled back by a failover to an asynchronous
//! standby, or a lost cache) has forgotten versions it handed out, and a mark kept in the
//! store would be rolled back with it. Its consumers are the witnesses: their positions
//! survive. Until each has told the store the version it holds (a feed request: an ordinary
//! one records its position in `hs_consumer`, one ahead of the store puts the collection in
//! `restoring`), a write could hand out a version, or an id, that a copy already holds for
//! something else.
//!
//! Units of one SA share one store, and each holds from its own start: it opens once
//! `hs_consumer` holds a position of every named consumer recorded at or after that start, so
//! whichever unit a consumer polls, every unit sees it. (Each unit writes a consumer's position
//! again when a unit of its store started since it last did, which is what lets a unit that
//! starts beside running ones open at the consumers' next polls.)
//!
//! The wait is visible and bounded: `/health` names the consumers not heard from after
//! `start_gate_warn_secs`, `GET /admin/restore` shows the gate, an operator may release it
//! (`POST /admin/restore/release`, logged), and it opens by itself after
//! `start_gate_max_secs` (logged as an error naming who was not heard; 0: only an operator).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::FeedConfig;
use crate::store::{self, Store};

/// How often a held gate looks for the consumers' positions.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How often an open gate still looks whether another unit of the store started.
const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// One unit's start gate (open, and never held, without consumers).
#[derive(Debug, Default)]
pub struct StartGate {
    /// Unix seconds of this unit's start: positions recorded since then count.
    started_at: i64,
    started: Option<Instant>,
    warn_after: Duration,
    release_after: Option<Duration>,
    /// Held collections and the consumers not heard from yet.
    waiting: Mutex<BTreeMap<String, Vec<String>>>,
    warned: AtomicBool,
    /// The latest start of any unit of this store (unix seconds), refreshed by [`StartGate::run`].
    latest_unit_start: AtomicI64,
}

/// A collection whose writes the gate holds.
#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub collection: String,
    /// The consumers that have not polled since the start.
    pub waiting_for: Vec<String>,
    /// Seconds since the start.
    pub seconds: u64,
    /// Whether the wait has passed `start_gate_warn_secs`.
    pub overdue: bool,
}

impl StartGate {
    /// Holds the writes of every owned collection (`owned`) that `consumers` names consumers
    /// for; the rest is never held.
    pub fn new(
        store: &Store,
        owned: &[&str],
        consumers: &BTreeMap<String, Vec<String>>,
        feed: &FeedConfig,
    ) -> Self {
        let mut waiting = BTreeMap::new();
        for (collection, names) in consumers {
            if owned.contains(&collection.as_str()) && !names.is_empty() {
                store.hold_writes(collection);
                waiting.insert(collection.clone(), names.clone());
            }
        }
        let now = store::unix_now();
        Self {
            started_at: now,
            started: Some(Instant::now()),
            warn_after: Duration::from_secs(feed.start_gate_warn_secs),
            release_after: (feed.start_gate_max_secs > 0)
                .then(|| Duration::from_secs(feed.start_gate_max_secs)),
            waiting: Mutex::new(waiting),
            warned: AtomicBool::new(false),
            latest_unit_start: AtomicI64::new(now),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<String>>> {
        match self.waiting.lock() {
            Ok(waiting) => waiting,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.map(|at| at.elapsed()).unwrap_or_default()
    }

    /// The collections held now, and for whom.
    pub fn held(&self) -> Vec<Held> {
        let elapsed = self.elapsed();
        self.waiting()
            .iter()
            .map(|(collection, waiting_for)| Held {
                collection: collection.clone(),
                waiting_for: waiting_for.clone(),
                seconds: elapsed.as_secs(),
                overdue: elapsed >= self.warn_after,
            })
            .collect()
    }

    /// Whether a unit holds nothing (any more).
    pub fn is_open(&self) -> bool {
        self.waiting().is_empty()
    }

    /// The latest start (unix seconds) of a unit of this store that this unit knows of.
    pub fn latest_unit_start(&self) -> i64 {
        self.latest_unit_start.load(Ordering::Relaxed)
    }

    /// `warning:` lines for `/health`: one per held collection.
    pub fn warning_lines(&self) -> String {
        let mut lines = String::new();
        for held in self.held() {
            let who = held.waiting_for.join(", ");
            if held.overdue {
                lines.push_str(&format!(
                    "warning: {} takes no writes: not heard from {who} within {} s of the start \
                     (POST /admin/restore/release goes on without them)\n",
                    held.collection, held.seconds
                ));
            } else {
                lines.push_str(&format!(
                    "warning: {} takes no writes until its consumers report their versions \
                     ({} s since the start; waiting for {who})\n",
                    held.collection, held.seconds
                ));
            }
        }
        lines
    }

    /// Looks once for the consumers' positions and opens what every consumer has reported for;
    /// names the missing consumers in the log once overdue, and releases everything once the
    /// bound has passed.
    pub async fn check(&self, store: &Store) -> Result<(), store::Error> {
        if let Ok(latest) = store.latest_unit_start().await {
            self.latest_unit_start.fetch_max(latest, Ordering::Relaxed);
        }
        let held: Vec<String> = self.waiting().keys().cloned().collect();
        for collection in held {
            let heard = store
                .consumers_heard_since(&collection, self.started_at)
                .await?;
            let mut waiting = self.waiting();
            let Some(missing) = waiting.get_mut(&collection) else {
                continue;
            };
            missing.retain(|consumer| !heard.contains(consumer));
            if missing.is_empty() {
                waiting.remove(&collection);
                store.release_writes(&collection);
                tracing::info!(collection = %collection, seconds = self.elapsed().as_secs(),
                    "start gate open: every consumer has told this store the version it holds");
            }
        }
        let elapsed = self.elapsed();
        if !self.is_open()
            && elapsed >= self.warn_after
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            for held in self.held() {
                tracing::warn!(collection = %held.collection, waiting_for = ?held.waiting_for,
                    seconds = held.seconds, "start gate: consumers not heard from; writes stay \
                    held (POST /admin/restore/release goes on without them)");
            }
        }
        if let Some(bound) = self.release_after
            && elapsed >= bound
            && !self.is_open()
        {
            for held in self.release(store) {
                tracing::error!(collection = %held.collection, waiting_for = ?held.waiting_for,
                    seconds = held.seconds, "start gate released after its bound without these \
                    consumers: if this store was rolled back, versions they hold may be handed \
                    out again until they report");
            }
        }
        Ok(())
    }

    /// Opens every held collection now (an operator, or the bound); answers what was held.
    pub fn release(&self, store: &Store) -> Vec<Held> {
        let released = self.held();
        let mut waiting = self.waiting();
        for collection in waiting.keys() {
            store.release_writes(collection);
        }
        waiting.clear();
        released
    }

    /// Checks until the gate is open, then keeps [`StartGate::latest_unit_start`] fresh,
    /// until `stop` changes.
    pub async fn run(
        gate: std::sync::Arc<Self>,
        store: Store,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let pause = if gate.is_open() {
                if let Ok(latest) = store.latest_unit_start().await {
                    gate.latest_unit_start.fetch_max(latest, Ordering::Relaxed);
                }
                REFRESH_INTERVAL
            } else {
                if let Err(error) = gate.check(&store).await {
                    tracing::warn!(%error, "start gate: cannot read the consumers' positions");
                }
                CHECK_INTERVAL
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
