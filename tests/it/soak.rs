//! A seeded soak, short version: rounds of random faults (`kill -9` of an owner unit, of the
//! primary or the backup reader) under write load; after each round the copy must equal the
//! owner exactly. Prints `N rounds, L lost, S skipped, R regressed, E extra`.
//! `HISCALE_TEST_SEED` replays a run, `HISCALE_SOAK_ROUNDS` makes it longer.

use std::collections::BTreeMap;
use std::time::Duration;

use hiscale::config::ReaderRole;
use hiscale::{Store, Version};
use tests::load::{Rng, WriteLoad, missing_at_owner, seed, wait_healthy};
use tests::process::{UnitProcess, free_port};
use tests::replication::wait_for;
use tests::{Backend, fresh_database, unit_config};

/// What a store holds of the copied aspects: (id, aspect) → (version, body).
type Held = BTreeMap<(String, String), (i64, Option<serde_json::Value>)>;

const COPIED: [&str; 1] = ["account"];
const WRITERS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeded_faults_lose_nothing() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let rounds: usize = std::env::var("HISCALE_SOAK_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(4)
        .clamp(1, 1000);
    let owner_db = fresh_database(Backend::Postgres).await;
    let owner_store = Store::connect(&owner_db.url).await.unwrap();
    let owner_configs: Vec<_> = (1..=2)
        .map(|n| {
            unit_config(
                &format!("registration-{n}"),
                &owner_db.url,
                ([127, 0, 0, 1], free_port()).into(),
            )
        })
        .collect();
    let mut owners = Vec::new();
    for config in &owner_configs {
        owners.push(Some(UnitProcess::start_config(config.clone()).await));
    }
    let owner_url = |index: usize| format!("http://{}", owner_configs[index].listen);

    let copy_db = fresh_database(Backend::Postgres).await;
    let copy_store = Store::connect(&copy_db.url).await.unwrap();
    let mut primary = tests::login_reader_config(&copy_db.url, &owner_url(1));
    primary.reader.lease_ms = 1_500;
    let mut backup = primary.clone();
    backup.unit = "login-2".into();
    backup.listen = ([127, 0, 0, 1], free_port()).into();
    backup.reader.role = ReaderRole::Backup;
    backup.reader.primary_url = Some(format!("http://{}", primary.listen));
    backup.reader.heartbeat_interval_ms = 200;
    let readers = [primary, backup];
    let mut reader_units = Vec::new();
    for config in &readers {
        reader_units.push(Some(UnitProcess::start_config(config.clone()).await));
    }

    let (mut lost, mut skipped, mut regressed, mut extra) = (0, 0, 0, 0);
    let mut seen_before = Held::new();
    for round in 0..rounds {
        // Writers go to owner 0; the copy polls owner 1: both are killed in turn.
        let load = WriteLoad::start(
            &owner_url(0),
            WRITERS,
            seed ^ round as u64,
            &format!("r{round}"),
        );
        let fault = rng.below(4);
        tokio::time::sleep(rng.duration(Duration::from_millis(300), Duration::from_secs(1))).await;
        let (kind, slot): (&str, &mut Option<UnitProcess>) = match fault {
            0 => ("owner unit 0", &mut owners[0]),
            1 => ("owner unit 1", &mut owners[1]),
            2 => ("primary reader", &mut reader_units[0]),
            _ => ("backup reader", &mut reader_units[1]),
        };
        drop(slot.take());
        let down = rng.duration(Duration::from_millis(300), Duration::from_secs(2));
        tokio::time::sleep(down).await;
        *slot = Some(match fault {
            0 | 1 => UnitProcess::start_config(owner_configs[fault as usize].clone()).await,
            2 => UnitProcess::start_config(readers[0].clone()).await,
            _ => UnitProcess::start_config(readers[1].clone()).await,
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let report = load.stop().await;
        assert!(
            report.unexpected.is_empty(),
            "round {round}: {}",
            report.summary()
        );
        skipped += missing_at_owner(&owner_url(0), &report.acks, 20)
            .await
            .len();
        wait_healthy(&owner_url(1), Duration::from_secs(30)).await;

        // Quiet now: the copy must reach the owner and hold exactly what it holds.
        let end = owner_store.horizon("customers").await.unwrap();
        wait_for(
            &format!("round {round} (seed {seed}): the copy catching up"),
            Duration::from_secs(60),
            async || copy_store.cursor("customers").await.unwrap() >= end,
        )
        .await;
        let owner_held = held(&owner_store, end).await;
        let copy_held = held(&copy_store, end).await;
        let round_lost = owner_held
            .iter()
            .filter(|(key, value)| copy_held.get(*key) != Some(*value))
            .count();
        let round_extra = copy_held
            .keys()
            .filter(|key| !owner_held.contains_key(*key))
            .count();
        let round_regressed = seen_before
            .iter()
            .filter(|(key, (version, _))| copy_held.get(*key).is_some_and(|(now, _)| now < version))
            .count();
        println!(
            "round {round}: kill -9 {kind} for {down:?}; {} writes acknowledged; {} aspects; \
             lost {round_lost}, regressed {round_regressed}, extra {round_extra}",
            report.acks.len(),
            owner_held.len()
        );
        lost += round_lost;
        extra += round_extra;
        regressed += round_regressed;
        seen_before = copy_held;
    }
    println!(
        "{rounds} rounds, {lost} lost, {skipped} skipped, {regressed} regressed, {extra} extra"
    );
    assert_eq!(
        (lost, skipped, regressed, extra),
        (0, 0, 0, 0),
        "seed {seed}: replay with HISCALE_TEST_SEED={seed}"
    );
}

/// The live copied aspects a store holds up to `until`.
async fn held(store: &Store, until: Version) -> Held {
    let names: Vec<String> = COPIED.iter().map(|name| (*name).to_owned()).collect();
    let all = store
        .read_changes("customers", Version::ZERO, until, &names, 1_000_000)
        .await
        .unwrap();
    all.items
        .into_iter()
        .filter(|item| !item.deleted)
        .flat_map(|item| {
            let id = item.id.as_str().to_owned();
            item.aspects
                .into_iter()
                .filter(|aspect| !aspect.deleted)
                .map(move |aspect| {
                    (
                        (id.clone(), aspect.name),
                        (
                            aspect.version.get(),
                            aspect
                                .body
                                .and_then(|body| serde_json::from_str(&body).ok()),
                        ),
                    )
                })
        })
        .collect()
}
