//! The tombstone purge on SQLite: how long one batch holds the write lock, and how long the
//! whole purge takes (issue 25: the purge of 4,266 orders held SQLite's write lock for
//! 8–15.6 s; the goal is < 50 ms at a time for 100,000 tombstones).
//!
//! A registration store gets `tombstones` customers (a person and a home address each, so
//! twice as many aspect tombstones), written and then deleted straight through the store, 1,000
//! per transaction, and `tombstones / 10` live customers beside them. The purge then runs as
//! the unit runs it (`Store::purge_tombstones`, every tombstone older than the maximum age),
//! while one writer commits a small change every 5 ms and records how long each took: the
//! writers' side of the lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hiscale::store::{AspectEdit, Change, Store, Target};

use super::load::operator;

const COLLECTION: &str = "customers";
/// Changes per transaction while filling.
const FILL_CHUNK: usize = 1000;

/// One measured purge.
#[derive(Debug, Clone)]
pub(super) struct PurgeSample {
    /// Resources deleted before the purge (their aspect tombstones: twice as many).
    pub(super) tombstones: usize,
    pub(super) aspect_tombstones: u64,
    pub(super) batches: u64,
    /// The longest a single batch held the write lock.
    pub(super) longest_hold: Duration,
    /// The median batch's hold, and the 99th percentile's (the longest is where a slow
    /// fsync of a shared disk shows, for the small writes too).
    pub(super) median_hold: Duration,
    pub(super) p99_hold: Duration,
    /// The whole purge.
    pub(super) total: Duration,
    /// The slowest and the median of the small writes committed during the purge.
    pub(super) slowest_write: Duration,
    pub(super) median_write: Duration,
    pub(super) writes: usize,
}

fn edit(aspect: &str, body: Option<String>) -> AspectEdit {
    AspectEdit {
        aspect: aspect.to_owned(),
        body,
        unique_keys: Vec::new(),
    }
}

fn create() -> Change {
    Change {
        target: Target::Create,
        precondition: None,
        edits: vec![
            edit(
                "person",
                Some(r#"{"type": "natural", "firstname": "Purge", "lastname": "Bench"}"#.into()),
            ),
            edit(
                "address.home",
                Some(r#"{"street": "Rheinweg 86", "zip": "53129", "city": "Bonn"}"#.into()),
            ),
        ],
    }
}

/// Fills a fresh registration store at `database` and purges it once.
pub(super) async fn run(database: &str, tombstones: usize) -> anyhow::Result<PurgeSample> {
    let listen = ([127, 0, 0, 1], 0).into();
    let config = hiscale::UnitConfig {
        callers: vec![operator()],
        ..hiscale::UnitConfig::new(registration::NAME, "registration-purge", listen, database)
    };
    let state = hiscale::unit::state(&config, registration::service_area())
        .await
        .context("purge: opening the store")?;
    let store = state.store().clone();
    eprintln!(
        "sqlite: purge: creating and deleting {tombstones} customers ({} aspect tombstones)",
        tombstones * 2
    );
    let mut left = tombstones + tombstones / 10;
    let mut doomed = Vec::with_capacity(tombstones);
    let mut live = Vec::new();
    while left > 0 {
        let now = left.min(FILL_CHUNK);
        left -= now;
        let committed = store
            .commit(COLLECTION, (0..now).map(|_| create()).collect())
            .await?;
        for (id, _) in committed.changes {
            // One in eleven stays: live resources among the tombstones, as in a real store.
            if doomed.len() < tombstones && (doomed.len() + live.len()) % 11 != 10 {
                doomed.push(id);
            } else {
                live.push(id);
            }
        }
    }
    for chunk in doomed.chunks(FILL_CHUNK) {
        let changes = chunk
            .iter()
            .map(|id| Change {
                target: Target::Delete(id.clone()),
                precondition: None,
                edits: Vec::new(),
            })
            .collect();
        store.commit(COLLECTION, changes).await?;
    }
    let tombstones = doomed.len();
    // Tombstones older than 0 s: every one may go.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(small_writes(store.clone(), live, stop.clone()));
    let started = Instant::now();
    let mut holds = Vec::new();
    let report = store
        .purge_tombstones(COLLECTION, 0, |batch| holds.push(batch.held))
        .await?;
    let total = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut writes = writer.await??;
    holds.sort_unstable();
    writes.sort_unstable();
    let median = |sorted: &[Duration]| sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    anyhow::ensure!(
        report.aspect_tombstones == (tombstones * 2) as u64,
        "the purge removed {} aspect tombstones of {}",
        report.aspect_tombstones,
        tombstones * 2
    );
    Ok(PurgeSample {
        tombstones,
        aspect_tombstones: report.aspect_tombstones,
        batches: report.batches,
        longest_hold: holds.last().copied().unwrap_or_default(),
        median_hold: median(&holds),
        p99_hold: holds
            .get(holds.len().saturating_mul(99) / 100)
            .or(holds.last())
            .copied()
            .unwrap_or_default(),
        total,
        slowest_write: writes.last().copied().unwrap_or_default(),
        median_write: median(&writes),
        writes: writes.len(),
    })
}

/// Rewrites a live customer's home address every 5 ms until `stop`; how long each took.
async fn small_writes(
    store: Store,
    live: Vec<hiscale::version::ResourceId>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<Duration>> {
    let mut took = Vec::new();
    for id in live.iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let change = Change {
            target: Target::Update(id.clone()),
            precondition: None,
            edits: vec![edit(
                "address.home",
                Some(r#"{"street": "Rheinweg 87", "zip": "53129", "city": "Bonn"}"#.into()),
            )],
        };
        let started = Instant::now();
        store.commit(COLLECTION, vec![change]).await?;
        took.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(took)
}

/// The purge's line of the report.
pub(super) struct Line<'a>(pub(super) &'a PurgeSample);

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sample = self.0;
        let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
        write!(
            f,
            "tombstone purge, sqlite: {} customers deleted ({} aspect tombstones), {} batches: \
             write lock held at most {:.1} ms at a time (median {:.1} ms, p99 {:.1} ms; goal \
             < 50 ms), \
             {:.2} s in all; {} small writes meanwhile: slowest {:.1} ms, median {:.1} ms",
            sample.tombstones,
            sample.aspect_tombstones,
            sample.batches,
            ms(sample.longest_hold),
            ms(sample.median_hold),
            ms(sample.p99_hold),
            sample.total.as_secs_f64(),
            sample.writes,
            ms(sample.slowest_write),
            ms(sample.median_write),
        )
    }
}
