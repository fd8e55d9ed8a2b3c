//! The demo gateway's checks of its units, as HAProxy's generated configuration has them: each
//! unit's `GET /health` every second on a fresh connection, `200` with `PASS` within 3 s
//! passes; a unit leaves the rotation after two failures in a row (drained, database away,
//! stopped) and comes back after two passes. Without them the gateway kept sending requests
//! to a drained unit (issue 25). A unit starts as passing, so the gateway routes at once, and
//! a unit that refuses the connection is skipped anyway.
//!
//! Each unit's state is its own value ([`UnitState`]), so a second check (write readiness) can
//! sit beside `passing` without changing how the gateway asks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;

/// How often each unit is checked (the topology's default `check_interval_ms`).
const INTERVAL: Duration = Duration::from_secs(1);
/// How long a check may take (HAProxy's `timeout check`).
const TIMEOUT: Duration = Duration::from_secs(3);
/// Failures in a row that take a passing unit out (HAProxy's `fall`).
const FALL: u32 = 2;
/// Passes in a row that bring a failing unit back (HAProxy's `rise`).
const RISE: u32 = 2;

/// What the checks found of every unit, shared by the gateway's requests.
#[derive(Debug, Default)]
pub struct UnitHealth {
    units: HashMap<SocketAddr, UnitState>,
}

/// What the checks found of one unit.
#[derive(Debug)]
pub struct UnitState {
    /// Whether the unit is in the rotation: its `/health` passes.
    passing: AtomicBool,
}

impl Default for UnitState {
    fn default() -> Self {
        Self {
            passing: AtomicBool::new(true),
        }
    }
}

impl UnitState {
    /// Whether the unit takes requests.
    pub fn passing(&self) -> bool {
        self.passing.load(Ordering::Relaxed)
    }
}

/// The running checks; dropping it stops them.
pub struct HealthChecks {
    health: Arc<UnitHealth>,
    _tasks: JoinSet<()>,
}

impl HealthChecks {
    /// Starts checking `units`, each in its own task.
    pub fn start(units: impl IntoIterator<Item = SocketAddr>) -> Self {
        let health = Arc::new(UnitHealth::assumed_passing(units));
        let client = hiscale::tls::client_builder()
            .timeout(TIMEOUT)
            // A fresh connection per check, as HAProxy's: it takes one of the connections a
            // unit keeps for checks when clients hold all the others.
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_default();
        let mut tasks = JoinSet::new();
        for unit in health.units.keys().copied() {
            let (health, client) = (Arc::clone(&health), client.clone());
            tasks.spawn(async move { check_forever(&health, &client, unit).await });
        }
        Self {
            health,
            _tasks: tasks,
        }
    }

    /// What the checks found so far.
    pub fn health(&self) -> Arc<UnitHealth> {
        Arc::clone(&self.health)
    }
}

impl UnitHealth {
    /// Every unit of `units` passing, and nothing checking them (the start of
    /// [`HealthChecks::start`], and tests).
    pub fn assumed_passing(units: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            units: units
                .into_iter()
                .map(|unit| (unit, UnitState::default()))
                .collect(),
        }
    }

    /// Whether `unit` takes requests; a unit nobody checks does.
    pub fn passing(&self, unit: SocketAddr) -> bool {
        self.units.get(&unit).is_none_or(UnitState::passing)
    }

    /// Records that `unit` is in or out, as a check would (tests).
    #[cfg(test)]
    pub fn set_passing(&self, unit: SocketAddr, passing: bool) {
        if let Some(state) = self.units.get(&unit) {
            state.passing.store(passing, Ordering::Relaxed);
        }
    }
}

/// Consecutive results of one unit's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Streak {
    passing: bool,
    /// Checks in a row whose result differs from `passing`.
    against: u32,
}

impl Streak {
    /// The streak after a check that `passed`: the unit changes sides after [`FALL`] failures
    /// or [`RISE`] passes in a row.
    fn next(self, passed: bool) -> Self {
        if passed == self.passing {
            return Self { against: 0, ..self };
        }
        let against = self.against + 1;
        let needed = if self.passing { FALL } else { RISE };
        if against >= needed {
            Self {
                passing: passed,
                against: 0,
            }
        } else {
            Self { against, ..self }
        }
    }
}

async fn check_forever(health: &UnitHealth, client: &reqwest::Client, unit: SocketAddr) {
    let Some(state) = health.units.get(&unit) else {
        return;
    };
    let url = format!("http://{unit}/health");
    let mut streak = Streak {
        passing: state.passing(),
        against: 0,
    };
    loop {
        tokio::time::sleep(INTERVAL).await;
        let passed = passes(client, &url).await;
        let next = streak.next(passed);
        if next.passing != streak.passing {
            if next.passing {
                tracing::info!("unit {unit} passes its health check again: back in the rotation");
            } else {
                tracing::warn!(
                    "unit {unit} failed its health check {FALL} times: out of the rotation"
                );
            }
            state.passing.store(next.passing, Ordering::Relaxed);
        }
        streak = next;
    }
}

/// Whether a unit's check at `url` (`/health`, `/health/write`) answers `200` with `PASS`
/// first, as HAProxy's checks want it. The gateway's checkers and `/dc/health` all ask this.
pub(super) async fn passes(client: &reqwest::Client, url: &str) -> bool {
    match client.get(url).send().await {
        Ok(reply) if reply.status().is_success() => reply
            .text()
            .await
            .is_ok_and(|body| body.starts_with("PASS")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_changes_sides_after_two_checks_in_a_row() {
        fn check(results: &[bool], expected: &[bool]) {
            let mut streak = Streak {
                passing: true,
                against: 0,
            };
            let seen: Vec<bool> = results
                .iter()
                .map(|&passed| {
                    streak = streak.next(passed);
                    streak.passing
                })
                .collect();
            assert_eq!(seen, expected, "{results:?}");
        }
        check(&[false], &[true]);
        check(&[false, false], &[true, false]);
        check(&[false, true, false], &[true, true, true]);
        check(
            &[false, false, true, false, true, true],
            &[true, false, false, false, false, true],
        );
    }

    /// A drained unit (its `/health` answers `503 FAIL`) leaves the rotation within a few
    /// checks; a unit nobody checks counts as passing.
    #[tokio::test]
    async fn a_failing_unit_leaves_the_rotation() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let drained = listener.local_addr()?;
        let app = axum::Router::new().route(
            "/health",
            axum::routing::get(|| async {
                (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "FAIL\ndraining: by the operator\n",
                )
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let checks = HealthChecks::start([drained]);
        assert!(checks.health().passing(drained));
        tokio::time::sleep(INTERVAL * (FALL + 1) + Duration::from_millis(500)).await;
        assert!(!checks.health().passing(drained));
        assert!(checks.health().passing("127.0.0.1:1".parse()?));
        Ok(())
    }
}
