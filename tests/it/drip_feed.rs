//! The drip-feed attack of issue 25 against a real unit process: twice `max_connections`
//! clients send request bodies (and a few their heads) one byte at a time, reconnecting
//! whenever they are cut. Each drip-fed request is answered `408 body-too-slow` or cut within
//! its deadline, and `/health` and `/heartbeat` keep answering all along.

use std::time::{Duration, Instant};

use tests::drip::{check, drip_one};
use tests::process::{UnitProcess, free_port};
use tests::{Backend, fresh_database};

/// The unit's connection cap in this test; the attack uses twice as many clients.
const MAX_CONNECTIONS: usize = 8;
/// The unit's body deadline and header timeout, in seconds.
const DEADLINE_SECS: u64 = 3;
/// How often an attacker sends its next byte: well inside the stall timeout, so only the
/// deadline can cut it.
const DRIP: Duration = Duration::from_secs(1);
/// How long the attack lasts.
const ATTACK: Duration = Duration::from_secs(12);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drip_fed_requests_are_cut_and_health_keeps_answering() {
    let database = fresh_database(Backend::Sqlite).await;
    let mut config = tests::unit_config(
        "registration-drip",
        &database.url,
        ([127, 0, 0, 1], free_port()).into(),
    );
    config.limits.max_connections = MAX_CONNECTIONS;
    config.limits.header_read_timeout_secs = DEADLINE_SECS;
    config.limits.body_deadline_secs = DEADLINE_SECS;
    config.limits.body_read_timeout_secs = 3 * DRIP.as_secs();
    let unit = UnitProcess::start_config(config.clone()).await;
    let address = config.listen;
    let stop = Instant::now() + ATTACK;

    let attackers: Vec<_> = (0..2 * MAX_CONNECTIONS)
        .map(|index| {
            // Every fourth attacker drips its head, the others their bodies.
            let slow_head = index % 4 == 3;
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while Instant::now() < stop {
                    outcomes.push(
                        drip_one(
                            address,
                            slow_head,
                            DRIP,
                            Duration::from_secs(4 * DEADLINE_SECS),
                        )
                        .await,
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                outcomes
            })
        })
        .collect();
    // Let the attack take every connection first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut checks = Vec::new();
    while Instant::now() < stop {
        for path in ["/health", "/heartbeat"] {
            checks.push((path, check(address, path).await));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut outcomes = Vec::new();
    for attacker in attackers {
        outcomes.extend(attacker.await.unwrap());
    }

    let failed: Vec<_> = checks.iter().filter(|(_, check)| check.is_err()).collect();
    let slowest_check = checks
        .iter()
        .filter_map(|(_, check)| check.as_ref().ok())
        .max()
        .copied()
        .unwrap_or_default();
    let too_slow = outcomes
        .iter()
        .filter(|outcome| {
            outcome.answer.contains("408") && outcome.answer.contains("body-too-slow")
        })
        .count();
    let turned_away = outcomes
        .iter()
        .filter(|outcome| outcome.answer.contains("too-many-connections"))
        .count();
    let longest = outcomes
        .iter()
        .map(|outcome| outcome.took)
        .max()
        .unwrap_or_default();
    println!(
        "{} drip-fed requests at {} clients: {too_slow} answered 408 body-too-slow, \
         {turned_away} 503 too-many-connections, the rest closed; the longest held its \
         connection {longest:?}. {} checks, {} failed, the slowest took {slowest_check:?}",
        outcomes.len(),
        2 * MAX_CONNECTIONS,
        checks.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "checks failed under the attack: {failed:?}"
    );
    assert!(checks.len() >= 20, "only {} checks ran", checks.len());
    // Each request is cut by its deadline (head or body), with some slack for a busy machine.
    let bound = Duration::from_secs(DEADLINE_SECS) + Duration::from_secs(2);
    for outcome in &outcomes {
        assert!(outcome.took <= bound, "held past the deadline: {outcome:?}");
        if !outcome.slow_head && !outcome.answer.is_empty() {
            assert!(
                outcome.answer.contains("body-too-slow")
                    || outcome.answer.contains("too-many-connections"),
                "{outcome:?}"
            );
        }
    }
    // The first wave alone fills every connection with bodies that only the deadline cuts.
    assert!(too_slow >= MAX_CONNECTIONS / 2, "{outcomes:?}");
    drop(unit);
}
