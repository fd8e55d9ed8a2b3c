//! Billing's batch units as real processes, on both backends: 1,000 orders arrive in billing's
//! copy while two batch units invoice them, and one of them is `kill -9`ed mid-way. Exactly
//! 1,000 invoices, one per order; the cancelled orders' invoices are void.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hiscale::config::UnitKind;
use hiscale::store::{ChunkAspect, ChunkItem, Store};
use hiscale::{ResourceId, UnitConfig, Version};
use serde_json::json;
use tests::demo::signal;
use tests::load::{Rng, seed};
use tests::process::{UnitProcess, free_port};
use tests::{Backend, callers, fresh_database};

const ORDERS: i64 = 1_000;
const CANCELLED: usize = 50;
/// Orders arrive in chunks, as billing's poller would apply them.
const CHUNK: i64 = 50;

fn batch_config(unit: &str, database: &str) -> UnitConfig {
    let mut config = UnitConfig::new(
        billing::NAME,
        unit,
        ([127, 0, 0, 1], free_port()).into(),
        database,
    );
    config.kind = UnitKind::Batch;
    config.callers = callers();
    config
}

fn order(id: i64, version: i64, cancelled: bool) -> ChunkItem {
    let version = Version::new(version).unwrap();
    let aspect = |name: &str, body: serde_json::Value| ChunkAspect {
        name: name.to_owned(),
        version,
        body: Some(body.to_string()),
        unique_keys: Vec::new(),
    };
    let status = if cancelled { "cancelled" } else { "placed" };
    ChunkItem {
        id: ResourceId::parse(&id.to_string()).unwrap(),
        version,
        deleted: false,
        aspects: vec![
            aspect(
                "order",
                json!({"customer": (id % 7 + 1).to_string(),
                       "lines": [{"product": "1", "quantity": 3,
                                  "unit_price": {"amount": "3.20", "currency": "EUR"}}],
                       "total": {"amount": "9.60", "currency": "EUR"}}),
            ),
            aspect("status", json!({"status": status})),
        ],
    }
}

/// Every invoice in the store: its order and status.
async fn invoices(store: &Store) -> Vec<(String, String)> {
    let until = store.current_version("invoices").await.unwrap();
    let mut after = Version::ZERO;
    let mut found = BTreeMap::new();
    loop {
        let batch = store
            .read_changes("invoices", after, until, &["invoice".to_owned()], 500)
            .await
            .unwrap();
        for item in &batch.items {
            let body: serde_json::Value =
                serde_json::from_str(item.aspects[0].body.as_deref().unwrap()).unwrap();
            found.insert(
                item.id.as_str().to_owned(),
                (
                    body["order"].as_str().unwrap().to_owned(),
                    body["status"].as_str().unwrap().to_owned(),
                ),
            );
        }
        if batch.items.is_empty() || batch.version >= until {
            break;
        }
        after = batch.version;
    }
    found.into_values().collect()
}

async fn invoice_every_order_once_while_a_batch_unit_dies(backend: Backend, seed: u64) {
    let mut rng = Rng::new(seed);
    let database = fresh_database(backend).await;
    let store = Store::connect(&database.url).await.unwrap();
    store.register_collection("invoices").await.unwrap();
    let mut units = [
        Some(UnitProcess::start_config(batch_config("billing-batch-1", &database.url)).await),
        Some(UnitProcess::start_config(batch_config("billing-batch-2", &database.url)).await),
    ];
    let victim = rng.below(2) as usize;
    let kill_after = 100 + rng.below(500);
    let mut killed_at = None;
    for first in (1..=ORDERS).step_by(CHUNK as usize) {
        let chunk: Vec<ChunkItem> = (first..first + CHUNK)
            .map(|id| order(id, id, false))
            .collect();
        store
            .apply_chunk("orders", &chunk, Version::new(first + CHUNK - 1).unwrap())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if killed_at.is_none() {
            killed_at = kill_once_past(&store, kill_after, &mut units[victim]).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while killed_at.is_none() && Instant::now() < deadline {
        killed_at = kill_once_past(&store, kill_after, &mut units[victim]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Some orders are cancelled afterwards: their invoices (made or still to make) are void.
    let mut cancelled = BTreeSet::new();
    while cancelled.len() < CANCELLED {
        cancelled.insert(1 + rng.below(ORDERS as u64) as i64);
    }
    let changes: Vec<ChunkItem> = cancelled
        .iter()
        .zip(ORDERS + 1..)
        .map(|(id, version)| order(*id, version, true))
        .collect();
    store
        .apply_chunk(
            "orders",
            &changes,
            Version::new(ORDERS + CANCELLED as i64).unwrap(),
        )
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(120);
    let found = loop {
        let found = invoices(&store).await;
        let voided = found.iter().filter(|(_, status)| status == "void").count();
        if (found.len() as i64 >= ORDERS && voided >= CANCELLED) || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let orders: BTreeSet<i64> = found
        .iter()
        .map(|(order, _)| order.parse().unwrap())
        .collect();
    let void: BTreeSet<i64> = found
        .iter()
        .filter(|(_, status)| status == "void")
        .map(|(order, _)| order.parse().unwrap())
        .collect();
    println!(
        "{backend:?}: seed {seed}, batch unit {} killed after {killed_at:?} invoices; {} invoices",
        victim + 1,
        found.len()
    );
    assert!(
        killed_at.is_some_and(|at| at < ORDERS as u64),
        "{backend:?}: the batch unit was not killed mid-way"
    );
    assert_eq!(
        found.len() as i64,
        ORDERS,
        "{backend:?}: one invoice per order"
    );
    assert_eq!(
        orders,
        (1..=ORDERS).collect(),
        "{backend:?}: every order once"
    );
    assert_eq!(
        void, cancelled,
        "{backend:?}: exactly the cancelled orders' invoices are void"
    );
    assert!(units.iter().flatten().count() == 1);
}

/// Kills `unit` with SIGKILL once the store holds `count` invoices; answers how many it held.
async fn kill_once_past(store: &Store, count: u64, unit: &mut Option<UnitProcess>) -> Option<u64> {
    let invoiced = store.count_resources("invoices").await.unwrap();
    if invoiced < count {
        return None;
    }
    let unit = unit.take()?;
    signal(unit.pid(), "KILL");
    Some(invoiced)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_batch_units_invoice_every_order_exactly_once_though_one_is_killed() {
    let seed = seed();
    tokio::join!(
        invoice_every_order_once_while_a_batch_unit_dies(Backend::Sqlite, seed),
        invoice_every_order_once_while_a_batch_unit_dies(Backend::Postgres, seed),
    );
}
