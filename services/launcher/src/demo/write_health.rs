//! Which units take writes now, for the demo gateway's writing methods (`POST`, `PUT`,
//! `PATCH`, `DELETE`), as HAProxy's write backends know it (`deploy/haproxy/haproxy.cfg`):
//! each unit's `GET /health/write`, asked every [`CHECK_INTERVAL`].
//!
//! Why: after every start a unit's writes answer `503 restoring` until its consumers have
//! polled (the start gate) while its `/health` passes, so reads and the feed reach it. Writes
//! go to the units that take them; while none does, to every unit, which answers why. A unit
//! that refused a connection or answered a write `503` takes no writes until its check passes
//! again, so a unit restarted between two checks does not get writes on an old answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::http::Method;

/// How often each unit's `/health/write` is asked (HAProxy's checks in the demo's topology
/// come every second; a start gate is closed for about a second).
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// A check not answered within this counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a request writes: the methods HAProxy's `acl writing` names.
pub fn is_writing(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// The units' latest write checks; the checks stop when this is dropped.
#[derive(Clone)]
pub struct WriteHealth(Arc<Units>);

/// Per unit, whether its latest check passed (and nothing refused since).
struct Units(HashMap<SocketAddr, AtomicBool>);

impl WriteHealth {
    /// Starts checking `units` in the background (from the current tokio runtime). Until its
    /// first check passes a unit counts as not taking writes, so writes go to every unit then.
    pub fn start(units: impl IntoIterator<Item = SocketAddr>) -> Self {
        let health = Self::unchecked(units);
        let client = hiscale::tls::client_builder()
            .timeout(CHECK_TIMEOUT)
            .build()
            .unwrap_or_default();
        tokio::spawn(check_forever(Arc::downgrade(&health.0), client));
        health
    }

    /// Every unit of `units` not taking writes, and nobody checking.
    fn unchecked(units: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self(Arc::new(Units(
            units
                .into_iter()
                .map(|unit| (unit, AtomicBool::new(false)))
                .collect(),
        )))
    }

    /// `order` (the units in their turn) reduced to the units that take writes; `order` itself
    /// while none of them does, so the units answer why.
    pub fn writers(&self, order: Vec<SocketAddr>) -> Vec<SocketAddr> {
        let taking: Vec<SocketAddr> = order
            .iter()
            .copied()
            .filter(|unit| self.takes_writes(*unit))
            .collect();
        if taking.is_empty() { order } else { taking }
    }

    fn takes_writes(&self, unit: SocketAddr) -> bool {
        self.0
            .0
            .get(&unit)
            .is_some_and(|taking| taking.load(Ordering::Relaxed))
    }

    /// `unit` refused a connection or a write: no writes until its next check passes.
    pub fn refused(&self, unit: SocketAddr) {
        if let Some(taking) = self.0.0.get(&unit)
            && taking.swap(false, Ordering::Relaxed)
        {
            tracing::info!("unit {unit} takes no writes until its /health/write passes");
        }
    }
}

/// Checks every unit each [`CHECK_INTERVAL`] until the gateway is gone.
async fn check_forever(units: Weak<Units>, client: reqwest::Client) {
    loop {
        let Some(current) = units.upgrade() else {
            return;
        };
        let mut checks = tokio::task::JoinSet::new();
        for unit in current.0.keys().copied() {
            let client = client.clone();
            checks.spawn(async move { (unit, passes(&client, unit).await) });
        }
        while let Some(checked) = checks.join_next().await {
            if let Ok((unit, passed)) = checked
                && let Some(taking) = current.0.get(&unit)
                && taking.swap(passed, Ordering::Relaxed) != passed
            {
                tracing::info!(
                    "unit {unit} {} writes",
                    if passed { "takes" } else { "takes no" }
                );
            }
        }
        drop(current);
        tokio::time::sleep(CHECK_INTERVAL).await;
    }
}

/// Whether the unit's `/health/write` answers `200` with `PASS` first.
async fn passes(client: &reqwest::Client, unit: SocketAddr) -> bool {
    super::unit_health::passes(client, &format!("http://{unit}/health/write")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn writes_go_to_units_that_take_them_and_to_all_while_none_does() {
        let health = WriteHealth::unchecked([unit(1), unit(2), unit(3)]);
        let all = vec![unit(2), unit(3), unit(1)];
        assert_eq!(health.writers(all.clone()), all, "none checked yet");
        health.0.0[&unit(3)].store(true, Ordering::Relaxed);
        health.0.0[&unit(1)].store(true, Ordering::Relaxed);
        assert_eq!(health.writers(all.clone()), [unit(3), unit(1)]);
        health.refused(unit(3));
        assert_eq!(health.writers(all.clone()), [unit(1)]);
        health.refused(unit(1));
        assert_eq!(health.writers(all.clone()), all);
    }

    #[test]
    fn the_writing_methods_are_haproxys() {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(is_writing(&method), "{method}");
        }
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!is_writing(&method), "{method}");
        }
    }
}
