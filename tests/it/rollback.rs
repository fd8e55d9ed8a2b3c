//! An owner whose database goes back while its units keep running (issue 24): a SQLite
//! backup put into the live file with `sqlite3 … ".restore"`, a PostgreSQL database recreated
//! from `pg_dump`, a PostgreSQL data directory copied earlier put back after a crash (what a
//! failover to an asynchronous standby does). The units notice by themselves (a version drawn
//! that they exposed already), refuse writes until the refill from the copies is done, and
//! continue past every version anyone saw, so no id ever names two customers. And a consumer's
//! claim is evidence, not an order: a version a JSON client cannot hold is `400`, and one it
//! can moves the counter only as far as the peers' copies really reach.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tests::pg_cluster::PgCluster;
use tests::process::{UnitProcess, free_port};
use tests::replication::{post_customer, wait_for, wait_until_copied};
use tests::{
    ADMIN, BILLING, Backend, JSON, both_backends, customer_json, fresh_database, metric,
    postgres_server, reader_config, unit_config,
};

async fn get(client: &reqwest::Client, url: &str, token: &str) -> (u16, serde_json::Value) {
    let reply = client
        .get(url)
        .bearer_auth(token)
        .header("accept", JSON)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let text = reply.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// `POST /customers` once: the status and, when created, the id.
async fn try_create(client: &reqwest::Client, url: &str, n: u64) -> (u16, Option<i64>, String) {
    let reply = client
        .post(format!("{url}/customers"))
        .bearer_auth(ADMIN)
        .header("content-type", JSON)
        .header("accept", JSON)
        .body(customer_json(n))
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let text = reply.text().await.unwrap();
    let id = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|value| value["id"].as_str().and_then(|id| id.parse().ok()));
    (status, id, text)
}

/// Creates a customer, riding out the `503`s of a database that is just coming back.
async fn create(client: &reqwest::Client, url: &str, n: u64) -> i64 {
    let mut last = String::new();
    for _ in 0..300 {
        match try_create(client, url, n).await {
            (201, Some(id), _) => return id,
            (503, _, text) => last = text,
            (status, _, text) => panic!("POST answered {status}: {text}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("POST kept answering 503 for 30 s: {last}");
}

/// `sqlite3 FILE COMMAND`, the operator's tool (installed by `scripts/test`).
fn sqlite3(file: &str, command: &str) {
    let output = Command::new("sqlite3")
        .arg(file)
        .arg(command)
        .output()
        .expect("sqlite3 (scripts/test installs Debian's sqlite3)");
    assert!(
        output.status.success(),
        "sqlite3 {file} {command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .unwrap()
        .split('?')
        .next()
        .unwrap()
}

/// Takes a backup of the live database the operator's way (`.backup`, `pg_dump`).
fn backup(backend: Backend, url: &str, into: &Path) {
    match backend {
        Backend::Sqlite => sqlite3(sqlite_path(url), &format!(".backup '{}'", into.display())),
        Backend::Postgres => tests::backup::pg_dump(url, into),
    }
}

/// Puts the backup back while the unit keeps running: SQLite's backup API into the live file,
/// or the database dropped (its sessions ended), created again and `pg_restore`d.
async fn put_back(backend: Backend, url: &str, from: &Path) {
    match backend {
        Backend::Sqlite => sqlite3(sqlite_path(url), &format!(".restore '{}'", from.display())),
        Backend::Postgres => {
            tests::backup::recreate_and_restore(&postgres_server(), url, from).await;
        }
    }
}

// One unit and no consumer: nothing but the unit's own memory can tell. Today's code took the
// next write as id 2 again.
both_backends!(
    a_database_put_back_under_a_running_unit_stops_its_writes,
    |backend: Backend| async move {
        let client = hiscale::tls::client();
        let database = fresh_database(backend).await;
        let owner = UnitProcess::start_config(unit_config(
            "registration-1",
            &database.url,
            ([127, 0, 0, 1], free_port()).into(),
        ))
        .await;
        let alice = create(&client, &owner.url, 1).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup");
        backup(backend, &database.url, &file);
        let bob = create(&client, &owner.url, 2).await;
        assert!(bob > alice);

        put_back(backend, &database.url, &file).await;
        // The next write would draw Bob's version again: refused, nothing written.
        let mut answer = (0, None, String::new());
        for _ in 0..300 {
            answer = try_create(&client, &owner.url, 3).await;
            if answer.2.contains("\"restoring\"") || answer.0 == 201 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, id, text) = answer;
        assert_eq!(
            status, 503,
            "id {id:?} handed out again after the rollback: {text}"
        );
        assert!(text.contains("\"restoring\""), "{text}");
        let (_, restore) = get(&client, &format!("{}/admin/restore", owner.url), ADMIN).await;
        let restoring = &restore["restoring"][0];
        assert_eq!(restoring["collection"], "customers", "{restore}");
        assert_eq!(restoring["exposed"], bob, "{restore}");
        tests::assert_refill_starts(backend, &restoring["restored_to"], alice);
        assert!(
            restoring["evidence"]
                .as_str()
                .is_some_and(|why| why.contains("rolled back")),
            "{restore}"
        );
        let (_, health) = get(&client, &format!("{}/health", owner.url), ADMIN).await;
        assert!(
            health
                .as_str()
                .is_some_and(|health| health.contains("customers is restoring")),
            "{health}"
        );
        let noticed = metric(
            &client,
            &owner.url,
            "hiscale_rollback_evidence_total{collection=\"customers\"}",
        )
        .await;
        assert_eq!(noticed, Some(1.0));
        // Without peers the operator continues: past Bob and the margin, never Bob's id again.
        let left = client
            .delete(format!("{}/admin/restore", owner.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(left.status().as_u16(), 200);
        let carol = create(&client, &owner.url, 3).await;
        assert_eq!(carol, bob + hiscale::config::DEFAULT_ROLLBACK_MARGIN + 1);
    }
);

// The scenario, step by step: registration on PostgreSQL with billing's copy; the data
// directory copied after Alice, Bob and Carol created, a crash, the copy put back, units running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_data_directory_put_back_under_running_units_is_refilled() {
    let mut cluster = PgCluster::start();
    let owner_db = cluster.database("registration").await;
    rolled_back_with_a_copy(Backend::Postgres, &owner_db, async |phase| match phase {
        Phase::Backup(_) => {
            cluster.stop();
            copy_dir(
                &cluster.dir().join("data"),
                &cluster.dir().join("data-copy"),
            );
            cluster.start_again();
        }
        Phase::PutBack(_) => {
            cluster.crash();
            std::fs::remove_dir_all(cluster.dir().join("data")).unwrap();
            copy_dir(
                &cluster.dir().join("data-copy"),
                &cluster.dir().join("data"),
            );
            cluster.start_again();
        }
    })
    .await;
}

// The same with SQLite's `.restore` into the live file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sqlite_backup_restored_into_the_live_file_is_refilled() {
    let database = fresh_database(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    rolled_back_with_a_copy(Backend::Sqlite, &database.url, async |phase| match phase {
        Phase::Backup(url) => backup(Backend::Sqlite, &url, &file),
        Phase::PutBack(url) => put_back(Backend::Sqlite, &url, &file).await,
    })
    .await;
}

enum Phase {
    Backup(String),
    PutBack(String),
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// A registration unit on `owner_db` and a billing unit copying from it on a SQLite database
/// of its own (returned, so that it lives as long as the test), which the owner refills from.
async fn owner_with_billing_copy(
    owner_db: &str,
) -> (UnitProcess, UnitProcess, tests::TestDatabase) {
    let owner_port = free_port();
    let owner_url = format!("http://127.0.0.1:{owner_port}");
    let copy_db = fresh_database(Backend::Sqlite).await;
    let copy_config = reader_config(
        "billing",
        &copy_db.url,
        &owner_url,
        BILLING,
        billing::COPIED_ASPECTS,
    );
    let mut owner_config = unit_config(
        "registration-1",
        owner_db,
        ([127, 0, 0, 1], owner_port).into(),
    );
    owner_config.restore_from = vec![hiscale::config::PeerConfig {
        origin: Default::default(),
        sa: "billing".into(),
        collection: "customers".into(),
        url: format!("http://{}", copy_config.listen),
        token: ADMIN.into(),
        aspects: billing::COPIED_ASPECTS.into(),
        interface_version: 1,
    }];
    let owner = UnitProcess::start_config(owner_config).await;
    let copy = UnitProcess::start_config(copy_config).await;
    (owner, copy, copy_db)
}

/// Alice; a backup; Bob and Carol, which billing's copy holds; the backup put back under the
/// running owner. Writes are refused until the refill is done, Bob and Carol come back, and
/// Dave and Erin get ids above everything the copy saw: no id names two customers.
async fn rolled_back_with_a_copy(
    backend: Backend,
    owner_db: &str,
    mut operator: impl AsyncFnMut(Phase),
) {
    let client = hiscale::tls::client();
    let (owner, copy, _copy_db) = owner_with_billing_copy(owner_db).await;
    let owner_url = owner.url.clone();

    let alice = create(&client, &owner.url, 1).await;
    wait_until_copied(&copy.url, alice, Duration::from_secs(30)).await;
    operator(Phase::Backup(owner_db.to_owned())).await;
    let bob = create(&client, &owner.url, 2).await;
    let carol = create(&client, &owner.url, 3).await;
    wait_until_copied(&copy.url, carol, Duration::from_secs(30)).await;

    operator(Phase::PutBack(owner_db.to_owned())).await;
    // Every write is refused until the refill is done; the first one taken is beyond Carol.
    let mut refused = 0;
    let dave = loop {
        match try_create(&client, &owner.url, 4).await {
            (201, Some(id), _) => break id,
            (503, _, _) => refused += 1,
            (status, _, text) => panic!("POST answered {status}: {text}"),
        }
        assert!(refused < 600, "writes refused for 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        dave > carol,
        "id {dave} was handed out again (the copy holds up to {carol})"
    );
    let erin = create(&client, &owner.url, 5).await;
    assert!(erin > dave);
    let (_, restore) = get(&client, &format!("{owner_url}/admin/restore"), ADMIN).await;
    assert_eq!(restore["restoring"], serde_json::json!([]), "{restore}");
    let report = &restore["refill"]["reports"][0];
    tests::assert_refill_starts(backend, &report["restored_to"], alice);
    assert_eq!(report["peers"][0]["sa"], "billing", "{report}");

    // Bob and Carol are back, and every id names the same customer at owner and copy.
    wait_until_copied(&copy.url, erin, Duration::from_secs(30)).await;
    for (id, n) in [(alice, 1), (bob, 2), (carol, 3), (dave, 4), (erin, 5)] {
        let (status, at_owner) = get(&client, &format!("{owner_url}/customers/{id}"), ADMIN).await;
        assert_eq!(status, 200, "customer {id} at the owner: {at_owner}");
        let (status, at_copy) = get(&client, &format!("{}/customers/{id}", copy.url), ADMIN).await;
        assert_eq!(status, 200, "customer {id} at the copy: {at_copy}");
        assert_eq!(at_owner["person"], at_copy["person"], "id {id}");
        let expected: serde_json::Value = serde_json::from_str(&customer_json(n)).unwrap();
        let mut person = at_owner["person"].clone();
        person.as_object_mut().unwrap().remove("version");
        assert_eq!(person, expected["person"], "id {id}");
        assert_eq!(at_owner["bankaccount"], at_copy["bankaccount"], "id {id}");
    }
}

// A consumer's claim is evidence, not an order. Today's code put the collection into
// restoring for 2^63 − 1 and moved the counter there, and every later write answered 500.
both_backends!(
    a_consumers_claim_never_breaks_the_owners_writes,
    |backend: Backend| async move {
        let client = hiscale::tls::client();
        let owner_db = fresh_database(backend).await;
        let (owner, copy, _copy_db) = owner_with_billing_copy(&owner_db.url).await;
        let owner_url = owner.url.clone();
        let mut held = 0;
        for n in 0..3 {
            held = post_customer(&client, &owner.url, customer_json(n), JSON)
                .await
                .parse()
                .unwrap();
        }
        wait_until_copied(&copy.url, held, Duration::from_secs(30)).await;

        for claim in [
            "9223372036854775807",
            "1000000000000000000000000000000",
            "9007199254740992",
        ] {
            let (status, body) = get(
                &client,
                &format!("{owner_url}/customers?version={claim}"),
                BILLING,
            )
            .await;
            assert_eq!(status, 400, "{claim}: {body}");
            assert_eq!(body["error"]["code"], "bad-version", "{body}");
        }
        let (_, restore) = get(&client, &format!("{owner_url}/admin/restore"), ADMIN).await;
        assert_eq!(restore["restoring"], serde_json::json!([]), "{restore}");
        let (status, id, text) = try_create(&client, &owner.url, 10).await;
        assert_eq!(status, 201, "{text}");
        held = id.unwrap();
        wait_until_copied(&copy.url, held, Duration::from_secs(30)).await;

        // The largest claim a JSON client can make: the collection restores from billing, and
        // continues past what billing's copy really holds, not past the claim.
        let (status, body) = get(
            &client,
            &format!("{owner_url}/customers?version=9007199254740991"),
            BILLING,
        )
        .await;
        assert_eq!(status, 409, "{body}");
        let next = loop {
            let (status, id, text) = try_create(&client, &owner.url, 11).await;
            match (status, id) {
                (201, Some(id)) => break id,
                (503, _) => tokio::time::sleep(Duration::from_millis(100)).await,
                _ => panic!("POST answered {status}: {text}"),
            }
        };
        assert_eq!(
            next,
            held + hiscale::config::DEFAULT_ROLLBACK_MARGIN + 1,
            "the counter moved to the claim"
        );
        wait_for(
            "billing to copy the new customer",
            Duration::from_secs(30),
            async || tests::replication::cursor(&copy.url).await >= next,
        )
        .await;
    }
);

// A consumer's long poll held across a rollback (issue 24): the backup is put into the live
// SQLite file while shop waits at Bob's version. Before, the poll answered its own version at
// its deadline, as if nothing had happened; now it answers `409 version-ahead` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_poll_held_across_a_rollback_answers_version_ahead() {
    let client = hiscale::tls::client();
    let database = fresh_database(Backend::Sqlite).await;
    let owner = UnitProcess::start_config(unit_config(
        "registration-1",
        &database.url,
        ([127, 0, 0, 1], free_port()).into(),
    ))
    .await;
    create(&client, &owner.url, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    backup(Backend::Sqlite, &database.url, &file);
    let bob = create(&client, &owner.url, 2).await;

    let poll = tokio::spawn({
        let (client, url) = (client.clone(), owner.url.clone());
        async move {
            let started = std::time::Instant::now();
            let reply = client
                .get(format!(
                    "{url}/customers?version={bob}&aspects=~person&wait=20"
                ))
                .bearer_auth(tests::SHOP)
                .header("accept", JSON)
                .send()
                .await
                .unwrap();
            (
                started.elapsed(),
                reply.status().as_u16(),
                reply.text().await.unwrap(),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(
        !poll.is_finished(),
        "the long poll waits while nothing is newer"
    );
    put_back(Backend::Sqlite, &database.url, &file).await;
    let (waited, status, body) = poll.await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("version-ahead"), "{body}");
    assert!(
        waited < Duration::from_secs(15),
        "answered at its deadline ({waited:?})"
    );
}
