//! An owner rolled back to an old backup: the first poll of a copy that holds newer versions
//! puts the owner into `restoring` (writes refused, reads served), the copy keeps what it has
//! and does not advance, both say so in `/health`; once an operator continues, the owner hands
//! out only versions (and ids) beyond everything the copy holds, and the copy follows again.
//! On SQLite (the backup is `VACUUM INTO`, the restore a file copy while the owner is down)
//! and PostgreSQL (`pg_dump` while it runs, `pg_restore` into a recreated database).

use std::path::Path;
use std::time::Duration;

use tests::process::{UnitProcess, free_port};
use tests::replication::{cursor, poller_state, post_customer, wait_for, wait_until_copied};
use tests::{
    ADMIN, BILLING, Backend, JSON, SHOP, both_backends, customer_json, fresh_database,
    postgres_server, reader_config, unit_config,
};

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let reply = client
        .get(url)
        .bearer_auth(ADMIN)
        .header("accept", JSON)
        .send()
        .await
        .unwrap();
    (reply.status().as_u16(), reply.text().await.unwrap())
}

/// A consistent copy of a live database: SQLite's `VACUUM INTO`, or `pg_dump`.
async fn backup(backend: Backend, url: &str, into: &Path) {
    match backend {
        Backend::Sqlite => {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(url).await.unwrap();
            let statement = format!("VACUUM INTO '{}'", into.display());
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        Backend::Postgres => tests::backup::pg_dump(url, into),
    }
}

/// Puts the backup in place of the database (its units are down).
async fn restore(backend: Backend, url: &str, from: &Path) {
    match backend {
        Backend::Sqlite => {
            let path = url.strip_prefix("sqlite://").unwrap();
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
            std::fs::copy(from, path).unwrap();
        }
        Backend::Postgres => {
            tests::backup::recreate_and_restore(&postgres_server(), url, from).await;
        }
    }
}

both_backends!(
    a_rolled_back_owner_refuses_writes_and_its_copy_holds_until_it_continues,
    |backend: Backend| async move { rolled_back(backend, Continue::WithoutRefill).await }
);

both_backends!(
    a_rolled_back_owner_is_refilled_from_its_peers_copy,
    |backend: Backend| async move { rolled_back(backend, Continue::Refill).await }
);

/// How the operator ends `restoring`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    /// `DELETE /admin/restore`: the counter moves past the copies, nothing comes back.
    WithoutRefill,
    /// `POST /admin/restore`: the owner reads billing's copy back, then goes on.
    Refill,
}

async fn rolled_back(backend: Backend, how: Continue) {
    let client = hiscale::tls::client();
    let owner_db = fresh_database(backend).await;
    let owner_config = unit_config(
        "registration-1",
        &owner_db.url,
        ([127, 0, 0, 1], free_port()).into(),
    );
    let first_life = UnitProcess::start_config(owner_config.clone()).await;
    let owner_url = first_life.url.clone();
    let copy_db = fresh_database(Backend::Sqlite).await;
    let copy_config = reader_config(
        "billing",
        &copy_db.url,
        &owner_url,
        BILLING,
        billing::COPIED_ASPECTS,
    );
    let copy = UnitProcess::start_config(copy_config).await;

    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(post_customer(&client, &owner_url, customer_json(n), JSON).await);
    }
    let backup_dir = tempfile::tempdir().unwrap();
    let backup_file = backup_dir.path().join("backup");
    backup(backend, &owner_db.url, &backup_file).await;
    let restored_to: i64 = ids.last().unwrap().parse().unwrap();
    // After the backup: a changed bill address, a deleted customer, four new ones.
    let changed = client
        .put(format!("{owner_url}/customers/{}/address.bill", ids[1]))
        .bearer_auth(ADMIN)
        .header("content-type", JSON)
        .body(r#"{"street":"Neue Strasse 1","zip":"10115","city":"Berlin"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        changed.status().as_u16(),
        200,
        "{}",
        changed.text().await.unwrap()
    );
    let deleted = client
        .delete(format!("{owner_url}/customers/{}", ids[2]))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    for n in 3..7 {
        ids.push(post_customer(&client, &owner_url, customer_json(n), JSON).await);
    }
    let held: i64 = ids.last().unwrap().parse().unwrap();
    wait_until_copied(&copy.url, held, Duration::from_secs(30)).await;
    // An operator's hand-typed version ahead is answered 409 but stops no write.
    let (status, _) = get(&client, &format!("{owner_url}/customers?version=999999")).await;
    assert_eq!(status, 409);
    let (_, restoring) = get(&client, &format!("{owner_url}/admin/restore")).await;
    assert!(restoring.contains("\"restoring\":[]"), "{restoring}");

    // The owner dies and comes back from the backup: it has handed out versions up to
    // `restored_to` only, while the copy holds up to `held`.
    drop(first_life);
    restore(backend, &owner_db.url, &backup_file).await;
    // Restarted from the backup, knowing the peer whose copy can refill it.
    let mut restored_config = owner_config.clone();
    // The operator decides here (the owner would otherwise refill itself at once).
    restored_config.feed.refill_on_rollback = false;
    restored_config.restore_from = vec![hiscale::config::PeerConfig {
        origin: Default::default(),
        sa: "billing".into(),
        collection: "customers".into(),
        url: copy.url.clone(),
        token: ADMIN.into(),
        aspects: billing::COPIED_ASPECTS.into(),
        interface_version: 1,
    }];
    let _restored = UnitProcess::start_config(restored_config).await;

    wait_for(
        "the copy to notice the rollback",
        Duration::from_secs(30),
        async || poller_state(&copy.url).await == "owner-rolled-back",
    )
    .await;
    let (status, restoring) = get(&client, &format!("{owner_url}/admin/restore")).await;
    assert_eq!(status, 200, "{restoring}");
    let restoring: serde_json::Value = serde_json::from_str(&restoring).unwrap();
    assert_eq!(restoring["restoring"][0]["ahead"], held, "{restoring}");
    tests::assert_refill_starts(
        backend,
        &restoring["restoring"][0]["restored_to"],
        restored_to,
    );
    assert_eq!(
        restoring["restoring"][0]["reported_by"], "billing",
        "{restoring}"
    );

    // Writes are refused (no version handed out twice), reads served, both units say why.
    let refused = client
        .post(format!("{owner_url}/customers"))
        .bearer_auth(ADMIN)
        .header("content-type", JSON)
        .header("accept", JSON)
        .body(customer_json(100))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.text().await.unwrap().contains("\"restoring\""));
    let (status, _) = get(&client, &format!("{owner_url}/customers/{}", ids[0])).await;
    assert_eq!(status, 200);
    let (status, health) = get(&client, &format!("{owner_url}/health")).await;
    assert_eq!(status, 200, "{health}");
    assert!(
        health.starts_with("PASS\n") && health.contains("customers is restoring"),
        "{health}"
    );
    // The owner turns restoring while answering the copy's poll `409`; the copy says so once
    // that answer has reached it (a moment later on a loaded machine).
    let copy_health = format!("{}/health", copy.url);
    wait_for(
        "the copy reporting its source rolled back",
        Duration::from_secs(20),
        async || {
            let (status, health) = get(&client, &copy_health).await;
            status == 200 && health.contains("was rolled back")
        },
    )
    .await;
    // The copy keeps everything and its cursor, including what the owner lost.
    assert_eq!(cursor(&copy.url).await, held);
    let (status, _) = get(&client, &format!("{}/customers/{}", copy.url, ids[6])).await;
    assert_eq!(status, 200);

    match how {
        Continue::WithoutRefill => {
            // The counter moves past what the copy holds; what only the copy has stays there.
            let left = client
                .delete(format!("{owner_url}/admin/restore"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            assert_eq!(left.status().as_u16(), 200);
            let left: serde_json::Value = left.json().await.unwrap();
            // Past the claim (the operator's choice) and the margin for what nobody saw.
            assert_eq!(
                left["left"][0]["continues_after"],
                held + hiscale::config::DEFAULT_ROLLBACK_MARGIN,
                "{left}"
            );
            let (status, _) = get(&client, &format!("{owner_url}/customers/{}", ids[6])).await;
            assert_eq!(status, 404, "not refilled, so not there");
        }
        Continue::Refill => {
            let refilled = client
                .post(format!("{owner_url}/admin/restore"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            assert_eq!(refilled.status().as_u16(), 200);
            let report: serde_json::Value = refilled.json().await.unwrap();
            let customers = &report["refilled"][0];
            // Past what the peer served and the margin for what nobody saw.
            assert_eq!(
                customers["continues_after"],
                held + hiscale::config::DEFAULT_ROLLBACK_MARGIN,
                "{report}"
            );
            tests::assert_refill_starts(backend, &customers["restored_to"], restored_to);
            assert_eq!(customers["peers"][0]["sa"], "billing", "{report}");
            assert_eq!(customers["peers"][0]["resources"], 6, "{report}");
            assert_eq!(
                customers["not_held"],
                serde_json::json!(["account", "address.home"])
            );
            assert_eq!(report["restoring"], serde_json::json!([]), "{report}");
            // What billing held is back at the owner: the new customers (billing's aspects of
            // them), the changed address, the deletion.
            let (status, body) = get(&client, &format!("{owner_url}/customers/{}", ids[6])).await;
            assert_eq!(status, 200, "{body}");
            let value: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(value["version"].as_i64(), Some(held), "{value}");
            assert!(value["bankaccount"]["iban"].is_string(), "{value}");
            let (_, body) = get(&client, &format!("{owner_url}/customers/{}", ids[1])).await;
            assert!(body.contains("Neue Strasse 1"), "{body}");
            let (status, _) = get(&client, &format!("{owner_url}/customers/{}", ids[2])).await;
            assert_eq!(status, 404, "the deletion came back too");
        }
    }
    let new_id: i64 = post_customer(&client, &owner_url, customer_json(200), JSON)
        .await
        .parse()
        .unwrap();
    assert!(
        new_id > held,
        "id {new_id} was handed out before (the copy holds up to {held})"
    );
    wait_until_copied(&copy.url, new_id, Duration::from_secs(30)).await;
    assert_eq!(poller_state(&copy.url).await, "polling");
    let (status, _) = get(&client, &format!("{}/customers/{new_id}", copy.url)).await;
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------------------------------------
// The whole story, without telling the owner: three copies in sync, a backup, ≥ 1,000 changes,
// `kill -9`, the backup restored, the owner started as it was. Its start gate holds writes
// until the copies have polled; their positions ahead put it in `restoring`; it refills itself
// from the copies it can reach (billing is down meanwhile, so it stays restoring and says so),
// and `hiscale restore --from billing` finishes the job once billing is back.

/// Customers created before the backup.
const BEFORE_BACKUP: usize = 40;
/// Successful changes after the backup, at least.
const CHANGES: usize = 1000;
/// Writers making them at once.
const WRITERS: u64 = 4;
/// Customers created after the restore: none may get an id a copy has seen.
const AFTER_RESTORE: usize = 100;
/// shop copies only the person here, so that `address.home` is held by no copy at all: the
/// change to it made after the backup is the one the report must name.
const SHOP_ASPECTS: &str = "~person";
/// Every aspect some copy holds here.
const HELD: [&str; 4] = ["account", "person", "address.bill", "bankaccount"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restored_owner_detects_the_rollback_and_refills_itself_from_its_copies() {
    let seed = tests::load::seed();
    tokio::join!(
        delta_restore(Backend::Sqlite, seed),
        delta_restore(Backend::Postgres, seed.wrapping_add(1)),
    );
}

/// `(id, aspect) → (version, body)` of every live aspect.
type State = std::collections::BTreeMap<(String, String), (i64, String)>;

async fn live_state(url: &str, aspects: &[&str], copy: bool) -> State {
    let store = hiscale::store::Store::connect(url).await.unwrap();
    let until = if copy {
        store.cursor("customers").await.unwrap()
    } else {
        store.current_version("customers").await.unwrap()
    };
    let names: Vec<String> = aspects.iter().map(|name| (*name).to_owned()).collect();
    let all = store
        .read_changes(
            "customers",
            hiscale::Version::ZERO,
            until,
            &names,
            1_000_000,
        )
        .await
        .unwrap();
    store.close().await;
    assert!(!all.more);
    all.items
        .iter()
        .filter(|item| !item.deleted)
        .flat_map(|item| {
            item.aspects.iter().filter_map(|aspect| {
                aspect.body.as_ref().map(|body| {
                    (
                        (item.id.to_string(), aspect.name.clone()),
                        (aspect.version.get(), body.clone()),
                    )
                })
            })
        })
        .collect()
}

/// The owner's state as interface v1 shows it, which is what the copies poll: the owner stores
/// `person` in its v2 form (`given_name`, `family_name`, and `birthdate`, `email` v1 lacks).
fn as_v1(state: &State) -> State {
    state
        .iter()
        .map(|((id, aspect), (version, body))| {
            let body = if aspect == "person" {
                let mut document: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(body).unwrap();
                let mut v1 = serde_json::Map::new();
                for (key, value) in document.iter_mut() {
                    let key = match key.as_str() {
                        "given_name" => "firstname",
                        "family_name" => "lastname",
                        "birthdate" | "email" => continue,
                        other => other,
                    };
                    v1.insert(key.to_owned(), value.take());
                }
                serde_json::Value::Object(v1).to_string()
            } else {
                body.clone()
            };
            ((id.clone(), aspect.clone()), (*version, body))
        })
        .collect()
}

/// `hiscale restore --config PATH --from billing`, as an operator runs it.
async fn restore_from_billing(path: std::path::PathBuf) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        tests::process::run_hiscale(&[
            std::ffi::OsStr::new("restore"),
            std::ffi::OsStr::new("--config"),
            path.as_os_str(),
            std::ffi::OsStr::new("--from"),
            std::ffi::OsStr::new("billing"),
        ])
    })
    .await
    .unwrap()
}

fn only(state: &State, aspects: &[&str]) -> State {
    state
        .iter()
        .filter(|((_, aspect), _)| aspects.contains(&aspect.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

async fn admin_restore(client: &reqwest::Client, owner: &str) -> serde_json::Value {
    let (status, body) = get(client, &format!("{owner}/admin/restore")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn owner_version(client: &reqwest::Client, owner: &str) -> i64 {
    let (_, body) = get(client, &format!("{owner}/admin/consumers")).await;
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    value["collections"][0]["version"].as_i64().unwrap()
}

/// Creates customers `numbers` with a few requests at a time; their ids.
async fn create_customers(owner: &str, numbers: std::ops::Range<u64>) -> Vec<i64> {
    let mut ids = Vec::new();
    let numbers: Vec<u64> = numbers.collect();
    for batch in numbers.chunks(4) {
        let mut tasks = tokio::task::JoinSet::new();
        for &n in batch {
            let owner = owner.to_owned();
            tasks.spawn(async move {
                let client = hiscale::tls::client();
                post_customer(&client, &owner, customer_json(n), JSON).await
            });
        }
        while let Some(id) = tasks.join_next().await {
            ids.push(id.unwrap().parse::<i64>().unwrap());
        }
    }
    ids
}

/// A PUT or DELETE with the operator's token: status and the version its `ETag` names.
async fn change(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<String>,
) -> (u16, Option<i64>) {
    let mut request = client.request(method, url).bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.header("content-type", JSON).body(body);
    }
    let reply = request.send().await.unwrap();
    let version = reply
        .headers()
        .get("etag")
        .and_then(|tag| tag.to_str().ok())
        .and_then(tests::etag_version);
    (reply.status().as_u16(), version)
}

/// ≥ `CHANGES` seeded changes of every kind the copies hold: new customers, deletions, and
/// PUTs of person, bill address, bank account and account (a new password).
async fn change_a_lot(owner: &str, live: Vec<i64>, seed: u64) -> usize {
    let live = std::sync::Arc::new(std::sync::Mutex::new(live));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let owner = owner.to_owned();
        let live = live.clone();
        writers.spawn(async move {
            let client = hiscale::tls::client();
            let mut rng = tests::load::Rng::new(seed.wrapping_mul(31).wrapping_add(writer));
            let mut done = 0;
            let mut created = 0u64;
            while done < CHANGES / WRITERS as usize {
                let pick = {
                    let live = live.lock().unwrap();
                    live[rng.below(live.len() as u64) as usize]
                };
                let n = rng.next_u64() % 1_000_000;
                let roll = rng.below(100);
                let (status, _) = if roll < 6 {
                    let number = 500_000 + writer * 10_000 + created;
                    created += 1;
                    let id = post_customer(&client, &owner, customer_json(number), JSON).await;
                    live.lock().unwrap().push(id.parse().unwrap());
                    (201, None)
                } else if roll < 11 {
                    {
                        let mut guard = live.lock().unwrap();
                        if guard.len() > 20 {
                            guard.retain(|id| *id != pick);
                        }
                    }
                    change(&client, reqwest::Method::DELETE, &format!("{owner}/customers/{pick}"), None).await
                } else if roll < 13 {
                    let body = format!(r#"{{"login":"user{pick:06}x","password":"new-password-{n}"}}"#);
                    change(&client, reqwest::Method::PUT, &format!("{owner}/customers/{pick}/account"), Some(body)).await
                } else {
                    let (aspect, body) = match roll % 3 {
                        0 => ("person", format!(r#"{{"type":"natural","salutation":"MR","firstname":"Max","lastname":"Changed{n}"}}"#)),
                        1 => ("address.bill", format!(r#"{{"street":"Weg {n}","zip":"10115","city":"Berlin"}}"#)),
                        _ => ("bankaccount", format!(r#"{{"owner":"Owner {n}","iban":"DE89370400440532013000"}}"#)),
                    };
                    change(&client, reqwest::Method::PUT, &format!("{owner}/customers/{pick}/{aspect}"), Some(body)).await
                };
                // A customer another writer just deleted: 404, not a change.
                assert!(matches!(status, 200 | 201 | 204 | 404 | 409), "status {status}");
                if matches!(status, 200 | 201 | 204) {
                    done += 1;
                }
            }
            done
        });
    }
    let mut total = 0;
    while let Some(done) = writers.join_next().await {
        total += done.unwrap();
    }
    total
}

fn peer(sa: &str, config: &hiscale::UnitConfig, aspects: &str) -> hiscale::config::PeerConfig {
    hiscale::config::PeerConfig {
        origin: Default::default(),
        sa: sa.into(),
        collection: "customers".into(),
        url: format!("http://{}", config.listen),
        token: ADMIN.into(),
        aspects: aspects.into(),
        interface_version: config
            .sources
            .iter()
            .find(|source| source.collection == "customers")
            .map_or(1, |source| source.interface_version),
    }
}

async fn delta_restore(backend: Backend, seed: u64) {
    let started = std::time::Instant::now();
    let label = format!("{backend:?}");
    let client = hiscale::tls::client();
    let owner_db = fresh_database(backend).await;
    let mut owner_config = unit_config(
        "registration-1",
        &owner_db.url,
        ([127, 0, 0, 1], free_port()).into(),
    );
    let owner_url = format!("http://{}", owner_config.listen);
    let (login_db, shop_db, billing_db) = (
        fresh_database(Backend::Sqlite).await,
        fresh_database(Backend::Sqlite).await,
        fresh_database(Backend::Sqlite).await,
    );
    let login_config = tests::login_reader_config(&login_db.url, &owner_url);
    let shop_config = reader_config("shop", &shop_db.url, &owner_url, tests::SHOP, SHOP_ASPECTS);
    let billing_config = reader_config(
        "billing",
        &billing_db.url,
        &owner_url,
        BILLING,
        billing::COPIED_ASPECTS,
    );
    owner_config.consumers = std::collections::BTreeMap::from([(
        "customers".to_owned(),
        vec!["login".to_owned(), "shop".to_owned(), "billing".to_owned()],
    )]);
    owner_config.feed.start_gate_warn_secs = 2;
    owner_config.restore_from = vec![
        peer("login", &login_config, login::COPIED_ASPECTS),
        peer("shop", &shop_config, SHOP_ASPECTS),
        peer("billing", &billing_config, billing::COPIED_ASPECTS),
    ];

    // First life: the gate opens once the three copies have polled.
    let first_life = UnitProcess::start_config(owner_config.clone()).await;
    let login = UnitProcess::start_config(login_config.clone()).await;
    let shop = UnitProcess::start_config(shop_config.clone()).await;
    let billing = UnitProcess::start_config(billing_config.clone()).await;
    let copies = [login.url.clone(), shop.url.clone(), billing.url.clone()];
    wait_for(
        &format!("{label}: the start gate to open"),
        Duration::from_secs(30),
        async || admin_restore(&client, &owner_url).await["gate"] == serde_json::json!([]),
    )
    .await;
    let ids = create_customers(&owner_url, 0..BEFORE_BACKUP as u64).await;
    let restored_to = owner_version(&client, &owner_url).await;
    for copy in &copies {
        wait_until_copied(copy, restored_to, Duration::from_secs(30)).await;
    }
    let backup_dir = tempfile::tempdir().unwrap();
    let backup_file = backup_dir.path().join("backup");
    backup(backend, &owner_db.url, &backup_file).await;

    // After the backup: ≥ 1,000 changes, then one no copy holds (address.home).
    let changed = change_a_lot(&owner_url, ids.clone(), seed).await;
    assert!(changed >= CHANGES, "{label}: {changed} changes");
    let live_customer = live_state(&owner_db.url, &["person"], false)
        .await
        .keys()
        .next()
        .map(|(id, _)| id.clone())
        .unwrap();
    let (status, lost_version) = change(
        &client,
        reqwest::Method::PUT,
        &format!("{owner_url}/customers/{live_customer}/address.home"),
        Some(r#"{"street":"Nirgendwo 1","zip":"99999","city":"Verloren"}"#.to_owned()),
    )
    .await;
    assert_eq!(status, 200, "{label}");
    let lost_version = lost_version.unwrap();
    let greatest = owner_version(&client, &owner_url).await;
    for copy in &copies {
        wait_until_copied(copy, greatest, Duration::from_secs(60)).await;
    }
    let before_crash = live_state(&owner_db.url, &HELD, false).await;
    let seen_ids: std::collections::BTreeSet<String> =
        before_crash.keys().map(|(id, _)| id.clone()).collect();
    println!(
        "{label}: backup at {restored_to}, {changed} changes up to {greatest}, address.home of {live_customer} at {lost_version} held by no copy"
    );

    // kill -9 of the owner; billing goes down too; the backup comes back.
    drop(first_life);
    drop(billing);
    restore(backend, &owner_db.url, &backup_file).await;
    let _second_life = UnitProcess::start_config(owner_config.clone()).await;
    let (status, _) = change(
        &client,
        reqwest::Method::DELETE,
        &format!("{owner_url}/customers/{}", ids[0]),
        None,
    )
    .await;
    assert_eq!(
        status, 503,
        "{label}: a write right after the start is held"
    );

    // login and shop report versions ahead: restoring, refilled from them; billing unreachable.
    wait_for(
        &format!("{label}: the refill without billing"),
        Duration::from_secs(60),
        async || {
            let restore = admin_restore(&client, &owner_url).await;
            restore["refill"]["running"] == false
                && restore["refill"]["reports"][0]["unreachable"] == serde_json::json!(["billing"])
        },
    )
    .await;
    let status = admin_restore(&client, &owner_url).await;
    let report = &status["refill"]["reports"][0];
    assert_eq!(
        status["restoring"][0]["collection"], "customers",
        "{label}: {status}"
    );
    tests::assert_refill_starts(backend, &report["restored_to"], restored_to);
    assert_eq!(report["greatest_reported"], greatest, "{label}: {report}");
    assert_eq!(
        report["not_held"],
        serde_json::json!(["address.home"]),
        "{label}: {report}"
    );
    assert_eq!(
        report["continues_after"],
        serde_json::Value::Null,
        "{label}: {report}"
    );
    let unaccounted = report["unaccounted"].as_array().unwrap();
    let names_lost = |aspect: &str, version: i64| {
        unaccounted.iter().any(|range| {
            range["aspect"] == aspect
                && range["from"].as_i64().unwrap() <= version
                && version <= range["to"].as_i64().unwrap()
        })
    };
    assert!(
        names_lost("address.home", lost_version),
        "{label}: {report}"
    );
    assert!(
        names_lost("bankaccount", greatest),
        "{label}: billing's aspects are unaccounted while it is down: {report}"
    );
    assert!(
        !names_lost("person", greatest),
        "{label}: shop accounted for the person: {report}"
    );
    let unseen = report["unseen_versions"].as_array().unwrap();
    assert!(
        unseen
            .iter()
            .any(|range| range[0].as_i64().unwrap() <= lost_version
                && lost_version <= range[1].as_i64().unwrap()),
        "{label}: the change no copy held is among the unseen versions: {report}"
    );
    // Both say so; writes stay refused; the copies hold.
    wait_for(
        &format!("{label}: /health to name billing as not heard from"),
        Duration::from_secs(30),
        async || {
            let (status, health) = get(&client, &format!("{owner_url}/health")).await;
            assert_eq!(status, 200, "{label}: {health}");
            assert!(
                health.starts_with("PASS\n") && health.contains("customers is restoring"),
                "{label}: {health}"
            );
            health.contains("not heard from billing")
        },
    )
    .await;
    for copy in &copies[..2] {
        assert_eq!(poller_state(copy).await, "owner-rolled-back", "{label}");
        assert_eq!(cursor(copy).await, greatest, "{label}");
    }

    // billing returns; `hiscale restore --from billing` reads it while the owner runs.
    let billing = UnitProcess::start_config(billing_config.clone()).await;
    wait_for(
        &format!("{label}: the gate to open once billing polled"),
        Duration::from_secs(60),
        async || admin_restore(&client, &owner_url).await["gate"] == serde_json::json!([]),
    )
    .await;
    let mut config_file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(
        &mut config_file,
        toml::to_string(&owner_config).unwrap().as_bytes(),
    )
    .unwrap();
    let path = config_file.path().to_owned();
    let output = restore_from_billing(path).await;
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{label}: hiscale restore failed: {printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        printed.contains("billing")
            && printed.contains(&format!(
                "writes continue after version {}",
                greatest + hiscale::config::DEFAULT_ROLLBACK_MARGIN
            )),
        "{label}: {printed}"
    );
    assert!(
        printed.contains("held by no peer (changes after the backup lost): address.home"),
        "{label}: {printed}"
    );
    // Polls sent before the refill ended and answered after it must not put the owner back
    // into `restoring`: the counter is past them by then.
    let status = admin_restore(&client, &owner_url).await;
    assert_eq!(
        status["restoring"],
        serde_json::json!([]),
        "{label}: {status}"
    );

    // Every aspect some copy held is as it was before the crash, version and content.
    let after = live_state(&owner_db.url, &HELD, false).await;
    let differences = tests::differences(&before_crash, &after, 10);
    assert!(
        differences.is_empty(),
        "{label}: the refilled owner differs from before the crash: {differences:?}"
    );

    // 100 new customers: ids no copy has seen; every copy follows again.
    let new_ids = create_customers(&owner_url, 900_000..900_000 + AFTER_RESTORE as u64).await;
    let distinct: std::collections::BTreeSet<i64> = new_ids.iter().copied().collect();
    assert_eq!(distinct.len(), AFTER_RESTORE, "{label}");
    assert!(
        new_ids
            .iter()
            .all(|id| *id > greatest && !seen_ids.contains(&id.to_string())),
        "{label}: an id was handed out twice: {new_ids:?} (copies hold up to {greatest})"
    );
    let newest = owner_version(&client, &owner_url).await;
    let copies = [login.url.clone(), shop.url.clone(), billing.url.clone()];
    for copy in &copies {
        wait_until_copied(copy, newest, Duration::from_secs(60)).await;
        assert_eq!(poller_state(copy).await, "polling", "{label}");
    }
    // No copy skipped a change: each equals the owner in what it copies.
    let owner_state = live_state(
        &owner_db.url,
        &[
            "account",
            "person",
            "address.home",
            "address.bill",
            "bankaccount",
        ],
        false,
    )
    .await;
    for (database, aspects) in [
        (&login_db.url, vec!["account"]),
        (&shop_db.url, vec!["person"]),
        (
            &billing_db.url,
            vec!["person", "address.bill", "bankaccount"],
        ),
    ] {
        let copy = live_state(database, &aspects, true).await;
        let differences = tests::differences(&as_v1(&only(&owner_state, &aspects)), &copy, 10);
        assert!(
            differences.is_empty(),
            "{label}: a copy ({aspects:?}) differs from the owner: {differences:?}"
        );
    }
    drop(billing);
    println!("{label}: done in {:.1} s", started.elapsed().as_secs_f64());
}

/// The refill benchmark's short version (`hiscale bench --restore-only --quick`: 2,000
/// records, SQLite only here) runs and checks its refill; the figures are not judged.
#[tokio::test]
async fn the_refill_benchmark_runs_its_short_version() {
    let printed =
        tests::process::hiscale_bench(&["--restore-only", "--quick"], Duration::from_secs(300))
            .await;
    assert!(printed.contains("median rec/s"), "{printed}");
    assert!(
        printed
            .lines()
            .any(|line| line.starts_with("sqlite") && line.contains(" 2001 ")),
        "{printed}"
    );
}

// A poll sent while a refill runs and answered after the refill ended reports a version the
// counter has just moved past: it must not put the owner back into `restoring`.
both_backends!(
    a_report_older_than_the_finished_refill_does_not_restore_again,
    |backend: Backend| async move {
        use hiscale::store::Store;
        use hiscale::version::Version;
        let database = fresh_database(backend).await;
        let store = Store::connect(&database.url).await.unwrap();
        store.register_collection("customers").await.unwrap();
        let version = |n| Version::new(n).unwrap();

        // billing holds 9 while the store has handed out nothing: restoring.
        let entered = store
            .report_ahead("customers", "billing", version(9), Version::ZERO)
            .await
            .unwrap();
        assert!(entered);
        assert_eq!(store.restoring().await.unwrap()[0].ahead, 9);
        // The refill ends, a peer having served 9: the counter moves past 9.
        let continues = store
            .leave_restoring(
                "customers",
                hiscale::store::Leave {
                    at_least: version(9),
                    past_claims: false,
                    margin: 0,
                },
            )
            .await
            .unwrap();
        assert_eq!(continues, Some(version(9)));
        // billing's poll, answered from the comparison made before: nothing changes.
        let entered = store
            .report_ahead("customers", "billing", version(9), Version::ZERO)
            .await
            .unwrap();
        assert!(!entered, "a report the counter has passed restores again");
        assert!(store.restoring().await.unwrap().is_empty());
        // A report truly ahead still enters the state.
        let entered = store
            .report_ahead("customers", "shop", version(12), version(9))
            .await
            .unwrap();
        assert!(entered);
        assert_eq!(store.restoring().await.unwrap()[0].reported_by, "shop");
    }
);

both_backends!(
    a_refill_merges_an_older_versions_copy_field_by_field,
    |backend: Backend| async move { older_version_copy(backend).await }
);

/// Registration's v2 `person` as JSON, for customer `n`.
fn v2_customer(n: u64, birthdate: &str) -> String {
    serde_json::json!({
        "account": {"login": format!("merge{n:04}"), "password": "secret-password"},
        "person": {"type": "natural", "salutation": "MS", "given_name": "Erika",
                   "family_name": format!("Muster{n}"), "birthdate": birthdate,
                   "email": format!("erika{n}@example.org")},
        "addresses": {"bill": {"street": "Rheinweg 86", "zip": "53129", "city": "Bonn"}}
    })
    .to_string()
}

/// A refill from a copy of interface v1 (shop's `person`) and one of v2 (billing's): the v2
/// copy is read in v2 (it serves nothing else) and first; a newer v1 document is merged into
/// what the owner holds, so `birthdate` and `email`, which v1 does not carry, are kept rather
/// than erased, and the report names them.
async fn older_version_copy(backend: Backend) {
    const V2_JSON: &str = "application/vnd.registration.v2+json";
    let client = hiscale::tls::client();
    let owner_db = fresh_database(backend).await;
    let owner_config = unit_config(
        "registration-1",
        &owner_db.url,
        ([127, 0, 0, 1], free_port()).into(),
    );
    let first_life = UnitProcess::start_config(owner_config.clone()).await;
    let owner_url = first_life.url.clone();
    let shop_db = fresh_database(Backend::Sqlite).await;
    let shop_config = reader_config("shop", &shop_db.url, &owner_url, SHOP, "~person");
    let shop = UnitProcess::start_config(shop_config.clone()).await;
    let billing_db = fresh_database(Backend::Sqlite).await;
    let mut billing_config = reader_config(
        "billing",
        &billing_db.url,
        &owner_url,
        BILLING,
        billing::COPIED_ASPECTS,
    );
    billing_config.sources[0].interface_version = 2;
    let billing = UnitProcess::start_config(billing_config.clone()).await;

    let a = post_customer(&client, &owner_url, v2_customer(1, "1980-01-02"), V2_JSON).await;
    let b = post_customer(&client, &owner_url, v2_customer(2, "1970-05-06"), V2_JSON).await;
    let backup_dir = tempfile::tempdir().unwrap();
    let backup_file = backup_dir.path().join("backup");
    backup(backend, &owner_db.url, &backup_file).await;

    // After the backup: B's birthdate changes (v2) while both copies follow.
    // A person written through `media`, answered 200; the owner's version after it.
    let put = async |id: &str, body: serde_json::Value, media: &'static str| {
        let reply = client
            .put(format!("{owner_url}/customers/{id}/person"))
            .bearer_auth(ADMIN)
            .header("content-type", media)
            .header("accept", media)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        assert_eq!(status, 200, "{}", reply.text().await.unwrap());
        owner_version(&client, &owner_url).await
    };
    let version = put(
        &b,
        serde_json::json!({"type": "natural", "salutation": "MS", "given_name": "Erika",
                           "family_name": "Muster2", "birthdate": "1999-09-09",
                           "email": "erika2@example.org"}),
        V2_JSON,
    )
    .await;
    wait_until_copied(&billing.url, version, Duration::from_secs(30)).await;
    // Billing stops; a v1 client renames A, which only shop's copy sees.
    drop(billing);
    let held = put(
        &a,
        serde_json::json!({"type": "natural", "salutation": "MS", "firstname": "Erika",
                           "lastname": "Later"}),
        JSON,
    )
    .await;
    wait_until_copied(&shop.url, held, Duration::from_secs(30)).await;

    // The owner comes back from the backup; billing returns with what it held.
    drop(first_life);
    restore(backend, &owner_db.url, &backup_file).await;
    let _billing = UnitProcess::start_config(billing_config.clone()).await;
    let mut restored_config = owner_config.clone();
    restored_config.feed.refill_on_rollback = false;
    restored_config.restore_from = vec![
        peer("shop", &shop_config, "~person"),
        peer("billing", &billing_config, billing::COPIED_ASPECTS),
    ];
    let _restored = UnitProcess::start_config(restored_config).await;
    wait_for(
        "the copy to notice the rollback",
        Duration::from_secs(30),
        async || poller_state(&shop.url).await == "owner-rolled-back",
    )
    .await;
    let refilled = client
        .post(format!("{owner_url}/admin/restore"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(refilled.status().as_u16(), 200);
    let report: serde_json::Value = refilled.json().await.unwrap();
    let peers = &report["refilled"][0]["peers"];
    assert_eq!(peers[0]["sa"], "billing", "the v2 copy first: {report}");
    assert_eq!(peers[0]["interface_version"], 2, "{report}");
    assert!(peers[0]["error"].is_null(), "{report}");
    assert_eq!(
        peers[0]["kept_from_backup"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(peers[1]["sa"], "shop", "{report}");
    assert_eq!(
        peers[1]["kept_from_backup"],
        serde_json::json!(["person.birthdate", "person.email"]),
        "{report}"
    );
    assert_eq!(report["restoring"], serde_json::json!([]), "{report}");

    let person = |id: String| {
        let client = client.clone();
        let url = format!("{owner_url}/customers/{id}");
        async move {
            let reply = client
                .get(url)
                .bearer_auth(ADMIN)
                .header("accept", V2_JSON)
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status().as_u16(), 200);
            reply.json::<serde_json::Value>().await.unwrap()["person"].clone()
        }
    };
    // A: renamed through shop's v1 copy, birthdate and email kept from the backup.
    let a_person = person(a.clone()).await;
    assert_eq!(a_person["family_name"], "Later", "{a_person}");
    assert_eq!(a_person["birthdate"], "1980-01-02", "{a_person}");
    assert_eq!(a_person["email"], "erika1@example.org", "{a_person}");
    // B: the new birthdate, from billing's v2 copy.
    let b_person = person(b.clone()).await;
    assert_eq!(b_person["birthdate"], "1999-09-09", "{b_person}");
}
