//! PostgreSQL crashes under the owner (issue 14): a version the owner's feed has shown is never
//! handed out again, so a copy that took it as its cursor misses nothing; and under write load,
//! every acknowledged write survives the crashes and the copy ends with the owner's accounts.
//!
//! Each test owns a durable cluster ([`PgCluster`]) and crashes it for real
//! (`pg_ctl stop -m immediate`). The login copies live in SQLite files, which the crash leaves
//! alone: a copy on the same cluster would flush the owner's WAL with each of its own commits.
//!
//! Why versions can come back: a sequence writes its advance to the WAL (for the first
//! `nextval` after a checkpoint), but only a commit flushes it; the WAL writer writes it within
//! `wal_writer_delay` otherwise. A version drawn by a write that rolled back can therefore be
//! lost in a crash, and the sequence restarts below it.

use std::time::{Duration, Instant};

use tests::load::{Rng, WriteLoad, check_after_load, seed, wait_healthy};
use tests::pg_cluster::PgCluster;
use tests::process::UnitProcess;
use tests::replication::{cursor, post_customer, wait_for};
use tests::{ADMIN, Backend, JSON, LOGIN, fresh_database};

/// Crash loops of the first test: each one is a chance for a lost version to come back.
const ITERATIONS: usize = 20;
/// Crashes under load in the second test.
const LOADED_CRASHES: usize = 5;
const WRITERS: usize = 4;

/// The owner unit on a database of `cluster`, and a login unit copying `~account` from it into
/// SQLite; `adjust` may change the copy's source before it starts.
async fn landscape(
    cluster: &PgCluster,
    adjust: impl FnOnce(&mut hiscale::config::SourceConfig),
) -> (UnitProcess, UnitProcess, tests::TestDatabase) {
    let owner_db = cluster.database("registration").await;
    let owner = UnitProcess::start("registration-1", &owner_db).await;
    let copy_db = fresh_database(Backend::Sqlite).await;
    let mut config = tests::login_reader_config(&copy_db.url, &owner.url);
    adjust(&mut config.sources[0]);
    let copy = UnitProcess::start_config(config).await;
    (owner, copy, copy_db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_the_feed_showed_are_never_handed_out_again() {
    let started = Instant::now();
    // The WAL writer writes a rolled-back write's WAL within `wal_writer_delay` (200 ms by
    // default); 10 s widens that window so each crash lands inside it. Commits still flush the
    // WAL themselves: durability is unchanged.
    let mut cluster = PgCluster::start_with(&[("wal_writer_delay", "'10s'")]);
    // The copy polls every second instead of long polling: a long poll would come back at once
    // after taking a new cursor, and the owner's note of that position (a commit) would flush
    // the WAL before the crash.
    let (owner, copy, _copy_db) = landscape(&cluster, |source| source.wait_secs = 0).await;
    let client = hiscale::tls::client();

    // A customer without a bank account: deleting that aspect draws a version, then rolls back.
    let subject = post_customer(
        &client,
        &owner.url,
        serde_json::json!({"person": {"type": "natural", "firstname": "Crash", "lastname": "Subject"}})
            .to_string(),
        JSON,
    )
    .await;

    // The customer created after the previous crash, which the copy must come to hold.
    let mut previous: Option<(usize, i64, String)> = None;
    for iteration in 1..=ITERATIONS {
        let step = Instant::now();
        let last = put_person(&client, &owner.url, &subject, iteration).await;
        // The owner notes each consumer's position when it changes (a commit, which flushes
        // the WAL): wait until it has noted the copy at `last`, so that neither the copy's next
        // polls nor ours below make it write before the crash. Noted there, the copy has
        // everything up to `last`, the customer created after the previous crash included.
        wait_for(
            &format!("iteration {iteration}: the owner noting the login copy at {last}"),
            Duration::from_secs(60),
            async || consumer_position(&client, &owner.url, "login").await >= last,
        )
        .await;
        if let Some((created_in, id, login)) = previous.take() {
            assert!(
                copy_holds(&client, &copy.url, id, &login, Duration::from_secs(5)).await,
                "iteration {created_in}: the login copy does not hold customer {id} ({login}), \
                 created after the crash, though it has passed version {last}"
            );
        }
        tokio::task::block_in_place(|| cluster.psql("CHECKPOINT", "postgres"));

        let deleted = client
            .delete(format!("{}/customers/{subject}/bankaccount", owner.url))
            .bearer_auth(ADMIN)
            .header("accept", JSON)
            .send()
            .await
            .expect("DELETE the missing bank account");
        assert_eq!(deleted.status().as_u16(), 404, "iteration {iteration}");
        let seen = feed_version(&client, &owner.url, last).await;
        assert!(
            seen >= last,
            "iteration {iteration}: the feed answered {seen} after {last}"
        );
        // Give the copy the chance to take `seen` as its cursor, as it would in production.
        let copy_deadline = Instant::now() + Duration::from_secs(5);
        while cursor(&copy.url).await < seen && Instant::now() < copy_deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let copy_cursor = cursor(&copy.url).await;

        tokio::task::block_in_place(|| {
            cluster.crash();
            cluster.start_again();
        });
        wait_healthy(&owner.url, Duration::from_secs(60)).await;

        let login = format!("crash{iteration}");
        let id: i64 = create_with_login(&client, &owner.url, &login)
            .await
            .parse()
            .expect("a numeric id");
        if id <= seen {
            // Show what it does to the copy before failing.
            let copied = copy_holds(&client, &copy.url, id, &login, Duration::from_secs(10)).await;
            panic!(
                "iteration {iteration}: the feed showed version {seen} (after the last write's \
                 {last}); after a PostgreSQL crash the new customer got id {id} <= {seen}: a \
                 version handed out again. The login copy had cursor {copy_cursor} at the crash; \
                 10 s later it {} the new customer (its cursor: {}).",
                if copied { "holds" } else { "does not hold" },
                cursor(&copy.url).await
            );
        }
        println!(
            "iteration {iteration}: last write {last}, feed showed {seen}, copy cursor at the \
             crash {copy_cursor}, new id {id}, {} ms",
            step.elapsed().as_millis()
        );
        previous = Some((iteration, id, login));
    }
    if let Some((created_in, id, login)) = previous {
        assert!(
            copy_holds(&client, &copy.url, id, &login, Duration::from_secs(60)).await,
            "iteration {created_in}: the login copy does not hold customer {id} ({login}) 60 s \
             after its creation (its cursor: {})",
            cursor(&copy.url).await
        );
    }
    println!(
        "{ITERATIONS} crashes, no version handed out twice, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_crashes_under_load() {
    let started = Instant::now();
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut cluster = PgCluster::start();
    let (owner, copy, _copy_db) = landscape(&cluster, |_| {}).await;

    let load = WriteLoad::start(&owner.url, WRITERS, seed, "crash");
    for crash in 1..=LOADED_CRASHES {
        tokio::time::sleep(rng.duration(Duration::from_millis(1500), Duration::from_secs(3))).await;
        let checkpoint = rng.below(2) == 0;
        let down = rng.duration(Duration::ZERO, Duration::from_secs(1));
        tokio::task::block_in_place(|| {
            if checkpoint {
                cluster.psql("CHECKPOINT", "postgres");
            }
            cluster.crash();
            std::thread::sleep(down);
            cluster.start_again();
        });
        wait_healthy(&owner.url, Duration::from_secs(60)).await;
        println!(
            "crash {crash} (checkpoint before: {checkpoint}, down {} ms) at {:.1} s",
            down.as_millis(),
            started.elapsed().as_secs_f64()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    println!("{}", report.summary());
    check_after_load(&report, &owner.url, &copy.url).await;
    println!(
        "{LOADED_CRASHES} crashes under load in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// `PUT …/person` at the owner; returns the version it got (its ETag).
async fn put_person(client: &reqwest::Client, url: &str, id: &str, n: usize) -> i64 {
    let reply = client
        .put(format!("{url}/customers/{id}/person"))
        .bearer_auth(ADMIN)
        .header("content-type", JSON)
        .body(
            serde_json::json!({"type": "natural", "firstname": "Crash", "lastname": format!("Round{n}")})
                .to_string(),
        )
        .send()
        .await
        .expect("PUT person");
    assert_eq!(reply.status().as_u16(), 200, "PUT person of {id}");
    tests::etag_version(reply.headers()["etag"].to_str().unwrap()).expect("a version's ETag")
}

/// Where the owner last noted `consumer` (`GET /admin/consumers`), 0 if not at all.
async fn consumer_position(client: &reqwest::Client, url: &str, consumer: &str) -> i64 {
    let value: serde_json::Value = client
        .get(format!("{url}/admin/consumers"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("GET /admin/consumers")
        .json()
        .await
        .expect("consumers as JSON");
    value["collections"][0]["consumers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|entry| entry["consumer"] == consumer)
        .and_then(|entry| entry["version"].as_i64())
        .unwrap_or(0)
}

/// The root `version` of the owner's feed after `after`, as the login SA asks for it.
async fn feed_version(client: &reqwest::Client, url: &str, after: i64) -> i64 {
    let reply = client
        .get(format!("{url}/customers?version={after}&aspects=~account"))
        .bearer_auth(LOGIN)
        .header("accept", JSON)
        .send()
        .await
        .expect("GET the feed");
    assert_eq!(
        reply.status().as_u16(),
        200,
        "the owner's feed after {after}"
    );
    let chunk: serde_json::Value = reply.json().await.expect("a feed chunk as JSON");
    chunk["version"].as_i64().expect("a root version")
}

/// Creates a customer with an account; returns its id.
async fn create_with_login(client: &reqwest::Client, url: &str, login: &str) -> String {
    post_customer(
        client,
        url,
        serde_json::json!({
            "account": {"login": login, "password": "secret-password"},
            "person": {"type": "natural", "firstname": "After", "lastname": "Crash"}
        })
        .to_string(),
        JSON,
    )
    .await
}

/// Whether the copy at `url` holds customer `id` with `login` within `within`.
async fn copy_holds(
    client: &reqwest::Client,
    url: &str,
    id: i64,
    login: &str,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let reply = client
            .get(format!("{url}/customers/{id}"))
            .bearer_auth(ADMIN)
            .header("accept", JSON)
            .send()
            .await
            .expect("GET a customer at the copy");
        if reply.status().is_success() {
            let value: serde_json::Value = reply.json().await.expect("a customer as JSON");
            if value["account"]["login"] == login {
                return true;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
