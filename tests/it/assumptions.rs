//! What the gap-free feed assumes of PostgreSQL, reported while a unit runs: a forgotten
//! transaction in the SA's database (it holds back every feed there) is named in `/health`,
//! `GET /admin/assumptions` and `/metrics`, and so is a version sequence with a cache; both
//! lines go once the cause is gone. On the test command's PostgreSQL cluster, which runs with
//! durability off, the `not-durable` finding is reported too.

use std::time::Duration;

use sqlx::Connection;
use tests::process::{UnitProcess, free_port};
use tests::replication::wait_for;
use tests::{ADMIN, Backend, fresh_database, unit_config};

async fn health(client: &reqwest::Client, url: &str) -> String {
    client
        .get(format!("{url}/health"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_transaction_and_a_cached_sequence_are_reported() {
    let client = hiscale::tls::client();
    let database = fresh_database(Backend::Postgres).await;
    let mut config = unit_config(
        "registration-1",
        &database.url,
        ([127, 0, 0, 1], free_port()).into(),
    );
    config.feed.assumption_check_secs = 1;
    config.feed.held_back_warn_secs = 1;
    let unit = UnitProcess::start_config(config).await;
    let url = unit.url.clone();
    assert!(
        !health(&client, &url).await.contains("held back"),
        "nothing holds the feed back yet"
    );

    // An operator's session left in a transaction that holds an id.
    sqlx::any::install_default_drivers();
    let separator = if database.url.contains('?') { '&' } else { '?' };
    let mut forgotten = sqlx::AnyConnection::connect(&format!(
        "{}{separator}application_name=forgotten-session",
        database.url
    ))
    .await
    .unwrap();
    sqlx::query("BEGIN").execute(&mut forgotten).await.unwrap();
    sqlx::query("SELECT CAST(txid_current() AS TEXT)")
        .execute(&mut forgotten)
        .await
        .unwrap();
    wait_for(
        "/health to name the forgotten session",
        Duration::from_secs(20),
        async || {
            let health = health(&client, &url).await;
            health.starts_with("PASS\n") && health.contains("'forgotten-session'")
        },
    )
    .await;
    let findings: serde_json::Value = client
        .get(format!("{url}/admin/assumptions"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let held_back: Vec<&serde_json::Value> = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|finding| finding["kind"] == "held-back")
        .collect();
    assert_eq!(held_back.len(), 1, "{findings}");
    assert!(held_back[0]["seconds"].as_i64().unwrap() >= 1, "{findings}");
    assert!(
        findings["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|finding| finding["kind"] == "not-durable"),
        "the test cluster runs with fsync = off: {findings}"
    );
    let held_seconds = tests::metric(&client, &url, "hiscale_feed_held_back_seconds")
        .await
        .expect("the held-back gauge");
    assert!(held_seconds >= 1.0, "{held_seconds}");

    // A version sequence with a cache hands out blocks per connection.
    let mut operator = sqlx::AnyConnection::connect(&database.url).await.unwrap();
    sqlx::query("ALTER SEQUENCE hs_version_customers CACHE 10")
        .execute(&mut operator)
        .await
        .unwrap();
    wait_for(
        "/health to name the cached sequence",
        Duration::from_secs(20),
        async || {
            health(&client, &url)
                .await
                .contains("sequence hs_version_customers has CACHE 10")
        },
    )
    .await;

    // Both causes gone: both lines go.
    sqlx::query("ROLLBACK")
        .execute(&mut forgotten)
        .await
        .unwrap();
    sqlx::query("ALTER SEQUENCE hs_version_customers CACHE 1")
        .execute(&mut operator)
        .await
        .unwrap();
    wait_for(
        "/health to drop both lines",
        Duration::from_secs(20),
        async || {
            let health = health(&client, &url).await;
            !health.contains("held back") && !health.contains("CACHE")
        },
    )
    .await;
}
