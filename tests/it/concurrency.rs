//! Version order = commit order: many writers on several unit processes sharing one database,
//! one transaction held open while others commit, and a reader stepping through "everything
//! after v" that must end with exactly the owner's state.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hiscale::store::{AspectEdit, Change, Target};
use hiscale::{ResourceId, Store, Version};
use tests::process::UnitProcess;
use tests::{ADMIN, Backend, JSON, both_backends, fresh_database};

const WRITERS: usize = 8;
const WRITES_PER_WRITER: usize = 40;
const ASPECTS: [&str; 5] = [
    "account",
    "person",
    "address.home",
    "address.bill",
    "bankaccount",
];

/// What a reader holds: per (resource, aspect) the newest version and body it saw.
type Copy = BTreeMap<(String, String), (i64, Option<String>)>;

both_backends!(
    concurrent_writers_never_make_a_reader_skip,
    |backend: Backend| async move {
        let database = fresh_database(backend).await;
        let units = [
            UnitProcess::start("registration-1", &database.url).await,
            UnitProcess::start("registration-2", &database.url).await,
        ];
        let store = Store::connect(&database.url).await.unwrap();
        let client = hiscale::tls::client();

        // One resource that only the held-open transaction touches.
        let held_id = create(&client, &units[0].url, 0).await;

        let done = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(step_through(store.clone(), done.clone()));

        // Hold a write open while the others commit. SQLite has one writer at a time, so there
        // it can only be held briefly: the others wait for it (within their busy timeout).
        let hold = match backend {
            Backend::Sqlite => Duration::from_millis(800),
            Backend::Postgres => Duration::from_secs(3),
        };
        let held_store = store.clone();
        let held = tokio::spawn(async move {
            let pending = held_store
                .prepare(
                    "customers",
                    vec![Change {
                        target: Target::Update(ResourceId::parse(&held_id).unwrap()),
                        precondition: None,
                        edits: vec![AspectEdit {
                            aspect: "address.home".into(),
                            body: Some(r#"{"street":"Held 1","zip":"11111","city":"Late"}"#.into()),
                            unique_keys: Vec::new(),
                        }],
                    }],
                )
                .await
                .unwrap();
            let version = pending.outcome().changes[0].1;
            tokio::time::sleep(hold).await;
            pending.commit().await.unwrap();
            version
        });
        tokio::time::sleep(Duration::from_millis(100)).await;

        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let client = client.clone();
            let urls: Vec<String> = units.iter().map(|unit| unit.url.clone()).collect();
            writers.push(tokio::spawn(async move {
                let mut versions = Vec::new();
                let mut mine: Vec<String> = Vec::new();
                for step in 0..WRITES_PER_WRITER {
                    let url = &urls[(writer + step) % urls.len()];
                    if step % 4 == 0 || mine.is_empty() {
                        let id = create(&client, url, writer * 1000 + step).await;
                        versions.push(id.parse::<i64>().unwrap());
                        mine.push(id);
                    } else {
                        let id = &mine[step % mine.len()];
                        versions.push(update(&client, url, id, step).await);
                    }
                }
                versions
            }));
        }
        let mut all_versions = Vec::new();
        for writer in writers {
            all_versions.extend(writer.await.unwrap());
        }
        let held_version = held.await.unwrap();
        all_versions.push(held_version.get());

        let unique: HashSet<i64> = all_versions.iter().copied().collect();
        assert_eq!(
            unique.len(),
            all_versions.len(),
            "every change got its own version"
        );
        let current = store.current_version("customers").await.unwrap().get();
        assert!(all_versions.iter().all(|version| *version <= current));

        done.store(true, Ordering::SeqCst);
        let (copy, steps) = reader.await.unwrap();
        let owner = snapshot(&store).await;
        let differences = tests::differences(&owner, &copy, 10);
        assert!(
            differences.is_empty(),
            "the stepping reader must end with exactly the owner's state; differences: {differences:?}"
        );
        assert!(
            copy.values()
                .any(|(version, _)| *version == held_version.get()),
            "the change committed late (version {held_version}) reached the reader"
        );
        assert!(steps > 10, "the reader really stepped ({steps} steps)");
    }
);

/// Reads "everything after v" in small steps until told to stop and caught up.
async fn step_through(store: Store, done: Arc<AtomicBool>) -> (Copy, usize) {
    let aspects: Vec<String> = ASPECTS.iter().map(|aspect| (*aspect).to_owned()).collect();
    let mut copy = Copy::new();
    let mut cursor = Version::ZERO;
    let mut steps = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "the reader did not catch up in 120 s"
        );
        let horizon = store.horizon("customers").await.unwrap();
        let batch = store
            .read_changes("customers", cursor, horizon, &aspects, 7)
            .await
            .unwrap();
        steps += 1;
        let mut previous = cursor;
        for item in &batch.items {
            assert!(
                item.version > cursor,
                "a change at or below the cursor came again"
            );
            assert!(item.version >= previous, "items come in version order");
            previous = item.version;
            for aspect in &item.aspects {
                assert!(aspect.version > cursor && aspect.version <= batch.version);
                let key = (item.id.to_string(), aspect.name.clone());
                let entry = copy.entry(key).or_insert((0, None));
                assert!(
                    aspect.version.get() > entry.0,
                    "an aspect's version only grows"
                );
                *entry = (aspect.version.get(), aspect.body.clone());
            }
        }
        assert!(batch.version >= cursor);
        cursor = batch.version;
        if !batch.more {
            if done.load(Ordering::SeqCst)
                && cursor == store.current_version("customers").await.unwrap()
            {
                return (copy, steps);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The owner's whole state, read at once.
async fn snapshot(store: &Store) -> Copy {
    let aspects: Vec<String> = ASPECTS.iter().map(|aspect| (*aspect).to_owned()).collect();
    let current = store.current_version("customers").await.unwrap();
    let all = store
        .read_changes("customers", Version::ZERO, current, &aspects, 100_000)
        .await
        .unwrap();
    assert!(!all.more);
    all.items
        .iter()
        .flat_map(|item| {
            item.aspects.iter().map(|aspect| {
                (
                    (item.id.to_string(), aspect.name.clone()),
                    (aspect.version.get(), aspect.body.clone()),
                )
            })
        })
        .collect()
}

async fn create(client: &reqwest::Client, url: &str, n: usize) -> String {
    let body = serde_json::json!({
        "person": {"type": "natural", "firstname": "Writer", "lastname": format!("N{n}")},
        "addresses": {"home": {"street": format!("Weg {n}"), "zip": "53111", "city": "Bonn"}}
    });
    let reply = client
        .post(format!("{url}/customers"))
        .bearer_auth(ADMIN)
        .header("content-type", JSON)
        .header("accept", JSON)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 201);
    let value: serde_json::Value = reply.json().await.unwrap();
    value["id"].as_str().unwrap().to_owned()
}

async fn update(client: &reqwest::Client, url: &str, id: &str, step: usize) -> i64 {
    let body =
        serde_json::json!({"street": format!("Gasse {step}"), "zip": "53111", "city": "Bonn"});
    let reply = client
        .put(format!("{url}/customers/{id}/address.home"))
        .bearer_auth(ADMIN)
        .header("content-type", JSON)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    tests::etag_version(reply.headers()["etag"].to_str().unwrap()).unwrap()
}

/// Two units starting at the same moment on one new SQLite file both come up: the one that
/// loses the race to create the tables runs the migrations again and finds them applied (it
/// used to stop with `table hs_counter already exists`). Three rounds, each on a new file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_units_starting_at_once_on_a_new_sqlite_file_both_come_up() {
    for _ in 0..3 {
        let database = tests::fresh_database(tests::Backend::Sqlite).await;
        let (first, second) = tokio::join!(
            tests::process::UnitProcess::start("registration-1", &database.url),
            tests::process::UnitProcess::start("registration-2", &database.url),
        );
        let client = hiscale::tls::client();
        for unit in [&first, &second] {
            let health = client
                .get(format!("{}/health", unit.url))
                .send()
                .await
                .unwrap();
            assert_eq!(health.status().as_u16(), 200);
        }
    }
}

both_backends!(
    a_long_poll_at_one_unit_answers_a_write_through_another_at_once,
    |backend: Backend| async move {
        let database = fresh_database(backend).await;
        let units = [
            UnitProcess::start("registration-1", &database.url).await,
            UnitProcess::start("registration-2", &database.url).await,
        ];
        let client = hiscale::tls::client();
        create(&client, &units[0].url, 0).await;
        let store = Store::connect(&database.url).await.unwrap();
        let current = store.current_version("customers").await.unwrap();

        let poll = client
            .get(format!(
                "{}/customers?version={current}&wait=30&aspects=~person",
                units[0].url
            ))
            .bearer_auth(tests::SHOP)
            .header("accept", JSON)
            .send();
        let waiting = tokio::spawn(async move {
            let reply = poll.await.unwrap();
            assert_eq!(reply.status().as_u16(), 200);
            let chunk: serde_json::Value = reply.json().await.unwrap();
            (Instant::now(), chunk)
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!waiting.is_finished(), "held while nothing is newer");

        create(&client, &units[1].url, 1).await;
        let written = Instant::now();
        let (answered, chunk) = waiting.await.unwrap();
        assert_eq!(chunk["items"][0]["person"]["lastname"], "N1", "{chunk}");
        // PostgreSQL: a waiting long poll looks into the database only every 5 s while commit
        // notices arrive, so only the notice answers this soon. SQLite looks every 200 ms.
        let delay = answered.saturating_duration_since(written);
        assert!(
            delay < Duration::from_millis(2500),
            "the long poll answered {delay:?} after the write"
        );
        if backend == Backend::Postgres {
            let heard = tests::metric(
                &client,
                &units[0].url,
                "hiscale_commit_notices_total{direction=\"received\"}",
            )
            .await
            .expect("notices received");
            assert!(heard >= 1.0, "{heard}");
        }
    }
);

/// A unit's listener for commit notices that loses its connection says so (`hears_commits`
/// false, so long polls look into the database every 200 ms again), wakes the long polls for
/// the notices it may have missed, connects again and hears the next notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_loses_its_connection_listens_again() {
    use sqlx::Connection;
    use std::sync::atomic::AtomicUsize;
    use tests::replication::wait_for;
    const WITHIN: Duration = Duration::from_secs(20);

    let database = fresh_database(Backend::Postgres).await;
    let store = Store::connect(&database.url).await.unwrap();
    let heard = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let listener = tokio::spawn({
        let (store, heard) = (store.clone(), heard.clone());
        async move {
            store
                .listen_for_commits(
                    move || {
                        heard.fetch_add(1, Ordering::SeqCst);
                    },
                    stopped,
                )
                .await;
        }
    });
    wait_for("the listener hears", WITHIN, async || store.hears_commits()).await;
    let mut operator = sqlx::AnyConnection::connect(&database.url).await.unwrap();
    let notify = "SELECT CAST(pg_notify('hs_commits', 'another-unit') AS TEXT)";
    let before = heard.load(Ordering::SeqCst);
    sqlx::query(notify).execute(&mut operator).await.unwrap();
    wait_for("a notice is heard", WITHIN, async || {
        heard.load(Ordering::SeqCst) > before
    })
    .await;

    // The server ends the listener's session, as a restart or an operator would.
    let before = heard.load(Ordering::SeqCst);
    let ended: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(pg_terminate_backend(pid) AS TEXT) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'listen%'",
    )
    .fetch_all(&mut operator)
    .await
    .unwrap();
    assert_eq!(ended, ["true"], "one listening session");
    wait_for("the loss wakes the long polls", WITHIN, async || {
        heard.load(Ordering::SeqCst) > before
    })
    .await;
    wait_for("the listener hears again", WITHIN, async || {
        store.hears_commits()
    })
    .await;
    let before = heard.load(Ordering::SeqCst);
    sqlx::query(notify).execute(&mut operator).await.unwrap();
    wait_for(
        "a notice after the reconnection is heard",
        WITHIN,
        async || heard.load(Ordering::SeqCst) > before,
    )
    .await;

    stop.send(true).unwrap();
    listener.await.unwrap();
    assert!(!store.hears_commits(), "a stopped listener hears nothing");
}
