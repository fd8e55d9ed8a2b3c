//! Checks the PostgreSQL assumptions of the feed at start and on a schedule, and keeps the
//! latest findings for `/health`, `GET /admin/assumptions`, `/metrics` and the log.
//!
//! Why a schedule and not only the start: a forgotten transaction or a failover to a standby
//! happens while units run, and the feed stalls without an error (see
//! `store/assumptions.rs` for what each check protects). The findings are warnings, never a
//! `FAIL`: reads and writes still work, and taking every unit of a landscape out of rotation
//! because of one operator's open `psql` would be worse than the stall.

use std::sync::Mutex;
use std::time::Duration;

use crate::config::FeedConfig;
use crate::store::{Finding, Store};

/// The latest findings of one unit.
#[derive(Debug, Default)]
pub struct Assumptions {
    latest: Mutex<Vec<Finding>>,
}

impl Assumptions {
    /// The findings of the latest check (empty on SQLite and while everything holds).
    pub fn latest(&self) -> Vec<Finding> {
        self.lock().clone()
    }

    /// One `warning: postgres: …` line per finding, for `/health`.
    pub fn warning_lines(&self) -> String {
        self.lock()
            .iter()
            .map(|finding| format!("warning: postgres: {}\n", finding.message))
            .collect()
    }

    /// Checks now; logs findings that are new, and says so when a kind has cleared.
    pub async fn check(&self, store: &Store, config: &FeedConfig) {
        let held_back_after = Duration::from_secs(config.held_back_warn_secs);
        let findings = match store.check_assumptions(held_back_after).await {
            Ok(findings) => findings,
            Err(error) => {
                // The database check of `/health` reports an unreachable store.
                tracing::debug!(%error, "could not check the PostgreSQL assumptions");
                return;
            }
        };
        let mut latest = self.lock();
        for finding in &findings {
            if !latest.iter().any(|old| old.kind == finding.kind) {
                tracing::warn!(kind = finding.kind, "{}", finding.message);
            }
        }
        for old in latest.iter() {
            if !findings.iter().any(|new| new.kind == old.kind) {
                tracing::info!(kind = old.kind, "PostgreSQL assumption holds again");
            }
        }
        let held_back = findings
            .iter()
            .filter_map(|finding| finding.seconds)
            .max()
            .unwrap_or(0);
        metrics::gauge!("hiscale_postgres_assumption_findings").set(findings.len() as f64);
        metrics::gauge!("hiscale_feed_held_back_seconds").set(held_back as f64);
        *latest = findings;
    }

    /// Checks every `assumption_check_secs` until `stop` (not at all when it is 0).
    pub async fn run(
        self: std::sync::Arc<Self>,
        store: Store,
        config: FeedConfig,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        if config.assumption_check_secs == 0 {
            return;
        }
        let interval = Duration::from_secs(config.assumption_check_secs);
        loop {
            self.check(&store, &config).await;
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Finding>> {
        match self.latest.lock() {
            Ok(latest) => latest,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
