//! The owner's database stopped for 30 s under write load: the unit answers every request,
//! refusing writes with `503 database-unavailable` and `Retry-After` (never a 500), and once the
//! database is back nothing acknowledged is missing and nothing was applied twice.

use std::time::{Duration, Instant};

use tests::load::{AnswerKind, WriteLoad, check_after_load, seed, wait_healthy};
use tests::pg_cluster::PgCluster;
use tests::process::UnitProcess;
use tests::{Backend, fresh_database};

const WRITERS: usize = 4;
const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_database_answers_503_and_loses_nothing() {
    let started = Instant::now();
    let seed = seed();
    let mut cluster = PgCluster::start();
    let owner_db = cluster.database("registration").await;
    let owner = UnitProcess::start("registration-1", &owner_db).await;
    let copy_db = fresh_database(Backend::Sqlite).await;
    let config = tests::login_reader_config(&copy_db.url, &owner.url);
    let copy = UnitProcess::start_config(config).await;

    let load = WriteLoad::start(&owner.url, WRITERS, seed, "outage");
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| cluster.stop());
    println!(
        "database stopped at {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Operators and HAProxy see the outage in `/health`, and the unit keeps running.
    let client = hiscale::tls::client();
    let health = async || {
        client
            .get(format!("{}/health", owner.url))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map(|reply| reply.status().as_u16())
            .unwrap_or(0)
    };
    tokio::time::sleep(OUTAGE / 2).await;
    let during = health().await;
    assert_eq!(during, 503, "/health during the outage");
    tokio::time::sleep(OUTAGE / 2).await;
    tokio::task::block_in_place(|| cluster.start_again());
    println!(
        "database started again at {:.1} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let report = load.stop().await;
    println!(
        "writers stopped at {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        report.summary()
    );
    // Back to PASS without a restart of the unit: the pool reconnects by itself.
    wait_healthy(&owner.url, Duration::from_secs(60)).await;
    assert_eq!(health().await, 200, "/health after the outage");

    let failures: Vec<(&AnswerKind, &u64)> = report
        .answers
        .iter()
        .filter(|(kind, _)| kind.status >= 500 && kind.status != 503)
        .collect();
    assert!(
        failures.is_empty(),
        "answers other than 503 for an unavailable database: {failures:?}\n{}",
        report.summary()
    );
    let unclear: Vec<(&AnswerKind, &u64)> = report
        .answers
        .iter()
        .filter(|(kind, _)| {
            kind.status == 503 && !(kind.code == "database-unavailable" && kind.retry_after)
        })
        .collect();
    assert!(
        unclear.is_empty(),
        "503 answers without code database-unavailable and Retry-After: {unclear:?}"
    );
    assert!(
        report.count(|kind| kind.status == 503) > 0,
        "no write was refused during a {OUTAGE:?} outage: {}",
        report.summary()
    );
    assert!(
        report.transport_errors.is_empty(),
        "requests got no answer at all during the outage: {:?}",
        report.transport_errors
    );
    check_after_load(&report, &owner.url, &copy.url).await;
    println!(
        "outage test done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
