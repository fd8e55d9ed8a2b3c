//! Replication: how fast a fresh copy catches up with its owner (initial sync), and how long a
//! change takes from the owner's acknowledgement to the copy's own feed (long-poll lag).
//!
//! Per backend: an owner database is filled with customers directly through
//! [`hiscale::Store::commit`]; the registration unit serves it on `127.0.0.1:0` in this
//! process, and a billing unit (copy of `~person~address.bill~bankaccount`, fresh database)
//! is started with [`hiscale::unit::serve_app`], so its poller is the real one. The sync is
//! timed until the copy's stored cursor reaches the owner's current version; the copy is then
//! counted. Next, a writer `PUT`s `address.bill` at a fixed rate on the owner while a watcher
//! long-polls the *copy's* feed: lag is when a version first shows there minus when its write
//! was acknowledged. Finally, a separate pass does the poller's steps one by one (owner query,
//! rendering, the HTTP request, parsing, applying into a scratch database) to show where the
//! sync's time goes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::{ACCEPT, CONTENT_TYPE, ETAG};

use hiscale::Version;
use hiscale::config::{CallerConfig, SourceConfig};
use hiscale::store::{AspectEdit, Change, Target};

use super::load::{Backend, MEDIA_TYPE, STEP_TIMEOUT, TOKEN, Unit, operator};

const COLLECTION: &str = "customers";
/// billing's token at the owner (granted `billing::COPIED_ASPECTS` there).
const BILLING_TOKEN: &str = "hiscale-bench-billing-token";
/// Customers per `Store::commit` while filling the owner.
const FILL_BATCH: usize = 1000;
/// The copy's source settings.
const LIMIT: u32 = 1000;
const WAIT_SECS: u64 = 20;
const INTERVAL_SECS: u64 = 1;
/// How often the sync's end is looked for in the copy's database.
const CURSOR_POLL: Duration = Duration::from_millis(50);
/// Bounds on each phase; exceeding one fails the run with a message naming it.
const FILL_TIMEOUT: Duration = Duration::from_secs(600);
const SYNC_TIMEOUT: Duration = Duration::from_secs(600);
const STEPS_TIMEOUT: Duration = Duration::from_secs(600);
/// After the last write is acknowledged, how long the copy's feed may take to show them all.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many `PUT`s of the lag run are out at once. The writer is open loop (each
/// write has its time), but a backend that cannot take the rate (SQLite's one writer) would
/// otherwise gather a backlog of over a thousand requests in flight, each with its connection:
/// it took the process from 59 to 273 MiB, which the next backend's figure 6 started from.
/// The achieved rate shows when the schedule slipped.
pub(super) const LAG_WRITES_IN_FLIGHT: usize = 64;
/// The watcher's long poll, in seconds.
const WATCH_WAIT_SECS: u64 = 20;

/// How much replication to measure.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReplicationPlan {
    /// Customers in the owner before the copy starts.
    pub(super) customers: usize,
    /// `PUT`s per second during the lag measurement.
    pub(super) write_rate: u32,
    /// How long the writer writes.
    pub(super) lag_seconds: u64,
    /// Seconds per run of figure 5 (feed chunks/s against the pre-serialised chunk).
    pub(super) chunk_seconds: Duration,
    /// Runs of figure 5 and of the logical replication reference.
    pub(super) repetitions: usize,
}

impl ReplicationPlan {
    pub(super) fn writes(&self) -> usize {
        self.write_rate as usize * self.lag_seconds as usize
    }
}

/// Databases of one backend's replication run (each fresh).
#[derive(Debug, Clone)]
pub(super) struct Databases {
    pub(super) owner: String,
    /// [`SYNCS_PER_REPETITION`] fresh copy databases per repetition of the initial sync: one
    /// synced with the poller's pipelining turned off, one pipelined with gzip, one pipelined
    /// plain (so the three alternate, side by side); the last copy then serves the lag
    /// measurement.
    pub(super) copies: Vec<String>,
    /// Where the step-by-step pass applies its chunks.
    pub(super) scratch: String,
}

/// The initial sync of one backend.
#[derive(Debug, Clone)]
pub(super) struct SyncResult {
    pub(super) customers: usize,
    pub(super) fill: Duration,
    /// The median of `syncs`.
    pub(super) sync: Duration,
    /// Each repetition's sync, each into a fresh copy, in run order.
    pub(super) syncs: Vec<Duration>,
    /// The same without pipelining (the poller asks for a chunk only after applying the one
    /// before), alternating with `syncs`.
    pub(super) unpipelined: Vec<Duration>,
    /// The same pipelined with gzip-compressed chunks (`SourceConfig::compress`), alternating
    /// with both.
    pub(super) compressed: Vec<Duration>,
    pub(super) chunks: u64,
    pub(super) items: u64,
    /// Live resources counted in the copy's database afterwards.
    pub(super) copied: u64,
    /// Each pipelined repetition's progress (the order of `syncs`), for the plot of the
    /// sync's rate over time.
    pub(super) progress: Vec<Progress>,
    /// The process's peak resident memory during the fill and sync (owner, copy and the
    /// bench share the process), KiB; `None` where `/proc` does not tell.
    pub(super) peak_rss_kib: Option<u64>,
    /// The same per phase (the fill, each sync), in order: where the peak comes from.
    pub(super) memory: Vec<MemoryPhase>,
    /// Resident KiB before the run, as earlier phases of the bench left it.
    pub(super) resident_before_kib: Option<u64>,
}

/// One phase's memory: the process's resident set when it began and its peak during it, KiB.
/// The peak includes what the phase found (an allocator keeps freed memory for reuse).
#[derive(Debug, Clone)]
pub(super) struct MemoryPhase {
    pub(super) phase: String,
    pub(super) start_kib: u64,
    pub(super) peak_kib: u64,
    /// Part of figure 6 (the fill and the syncs), not a later phase.
    pub(super) in_figure: bool,
}

/// Collects [`MemoryPhase`]s: each phase resets the peak when it begins.
#[derive(Debug, Default)]
struct PhaseMemory {
    phases: Vec<MemoryPhase>,
    current: Option<(String, u64)>,
}

impl PhaseMemory {
    fn begin(&mut self, phase: String) {
        self.end();
        reset_peak_rss();
        self.current = proc_status_kib("VmRSS:").map(|kib| (phase, kib));
    }

    fn end(&mut self) {
        if let Some((phase, start_kib)) = self.current.take()
            && let Some(peak_kib) = proc_status_kib("VmHWM:")
        {
            eprintln!(
                "memory: {phase}: {:.0} MiB at its start, peak {:.0} MiB",
                start_kib as f64 / 1024.0,
                peak_kib as f64 / 1024.0
            );
            self.phases.push(MemoryPhase {
                phase,
                start_kib,
                peak_kib,
                in_figure: true,
            });
        }
    }
}

/// Records applied on a copy against seconds since its sync began, sampled at a fixed interval
/// (`CURSOR_POLL`) while the sync runs; the last sample is the sync's end. The plots draw the
/// rate over time from it: a median alone hides a sync that starts fast and then stalls.
pub(super) type Progress = Vec<(f64, u64)>;

/// The index of the median of `durations` (the one the reports' medians pick: the middle of
/// the sorted list, the upper one of an even count).
pub(super) fn median_index(durations: &[Duration]) -> Option<usize> {
    let mut order: Vec<usize> = (0..durations.len()).collect();
    order.sort_by_key(|&index| durations[index]);
    order.get(order.len() / 2).copied()
}

impl SyncResult {
    /// The progress of the repetition whose time is the median reported.
    pub(super) fn median_progress(&self) -> Option<&Progress> {
        median_index(&self.syncs).and_then(|index| self.progress.get(index))
    }

    pub(super) fn records_per_second(&self) -> f64 {
        self.customers as f64 / self.sync.as_secs_f64()
    }

    /// Customers per second of each repetition, sorted.
    pub(super) fn rates(&self) -> Vec<f64> {
        let mut rates: Vec<f64> = self
            .syncs
            .iter()
            .map(|sync| self.customers as f64 / sync.as_secs_f64())
            .collect();
        rates.sort_by(f64::total_cmp);
        rates
    }

    /// Median customers per second without pipelining.
    pub(super) fn unpipelined_per_second(&self) -> f64 {
        self.median_rate(&self.unpipelined)
    }

    /// The median of the per-pair ratios, pipelined ÷ not: each pair ran back to back.
    pub(super) fn pipelining_ratio(&self) -> f64 {
        median_speedup(&self.syncs, &self.unpipelined)
    }

    /// Median customers per second with gzip-compressed chunks.
    pub(super) fn compressed_per_second(&self) -> f64 {
        self.median_rate(&self.compressed)
    }

    /// The median of the per-repetition ratios, compressed ÷ plain (rates).
    pub(super) fn compression_ratio(&self) -> f64 {
        median_speedup(&self.compressed, &self.syncs)
    }

    /// Customers per second of the median of `syncs`.
    fn median_rate(&self, syncs: &[Duration]) -> f64 {
        let mut sorted = syncs.to_vec();
        sorted.sort_unstable();
        sorted
            .get(sorted.len() / 2)
            .map_or(0.0, |sync| self.customers as f64 / sync.as_secs_f64())
    }

    pub(super) fn fill_per_second(&self) -> f64 {
        self.customers as f64 / self.fill.as_secs_f64()
    }
}

/// The median over pairs run side by side of how much faster `faster` was than `slower`
/// (its rate ÷ the other's: the other's time ÷ its time).
fn median_speedup(faster: &[Duration], slower: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = faster
        .iter()
        .zip(slower)
        .map(|(fast, slow)| slow.as_secs_f64() / fast.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied().unwrap_or(0.0)
}

/// The poller's steps timed one by one over the whole feed, in a separate pass.
#[derive(Debug, Clone, Default)]
pub(super) struct Steps {
    pub(super) chunks: usize,
    /// Customers in those chunks.
    pub(super) records: usize,
    /// The chunks' bodies as the unit renders them (JSON).
    pub(super) bytes: usize,
    /// The same chunks' bodies gzip-compressed, as a poller with `compress` receives them.
    pub(super) gzip_bytes: usize,
    /// `Store::read_changes_capped` on the owner's store, called directly.
    pub(super) query: Duration,
    /// Rendering that batch in JSON, called directly.
    pub(super) json: RenderTimes,
    /// The same in XML.
    pub(super) xml: RenderTimes,
    /// The same chunk over HTTP (query, rendering and transfer again, plus the edge).
    pub(super) get: Duration,
    /// `repr::parse_feed` and `poller::chunk_items`.
    pub(super) parse: Duration,
    /// `Store::apply_chunk` into an empty scratch database.
    pub(super) apply: Duration,
}

impl Steps {
    /// Body bytes per customer, as rendered (JSON); `None` before any record.
    pub(super) fn bytes_per_record(&self) -> Option<f64> {
        (self.records > 0).then(|| self.bytes as f64 / self.records as f64)
    }

    /// The same, gzip-compressed as a poller with `compress` receives them.
    pub(super) fn gzip_bytes_per_record(&self) -> Option<f64> {
        (self.records > 0).then(|| self.gzip_bytes as f64 / self.records as f64)
    }
}

/// One format's rendering of every chunk: `repr::render_feed` (stored documents as their
/// text) beside `repr::render_feed_through_tree` (the rendering it replaced), each chunk
/// rendered both ways in alternating order.
#[derive(Debug, Clone, Default)]
pub(super) struct RenderTimes {
    pub(super) stored: Duration,
    pub(super) tree: Duration,
    /// Per chunk, the first's time divided by the tree's (sorted at the end of the pass).
    pub(super) ratios: Vec<f64>,
}

impl RenderTimes {
    /// The median of the per-chunk ratios.
    pub(super) fn median_ratio(&self) -> f64 {
        self.ratios
            .get(self.ratios.len() / 2)
            .copied()
            .unwrap_or_default()
    }
}

/// The long-poll lag of one backend.
#[derive(Debug, Clone)]
pub(super) struct LagResult {
    pub(super) planned: usize,
    /// Milliseconds from a write's acknowledgement to its version on the copy's feed, sorted.
    pub(super) lags_ms: Vec<f64>,
    /// The same to the owner's own feed, long-polled beside the copy's, sorted: the part of the
    /// lag before the copy's poller can have the write (the owner's horizon and long poll).
    pub(super) owner_lags_ms: Vec<f64>,
    /// Latencies of the `PUT`s, sorted.
    pub(super) puts: Vec<Duration>,
    /// From the first write's schedule to the last acknowledgement.
    pub(super) writing: Duration,
    /// Chunks the copy's poller applied while the writes went on.
    pub(super) chunks: u64,
}

impl LagResult {
    pub(super) fn lag_at(&self, fraction: f64) -> f64 {
        at(&self.lags_ms, fraction)
    }

    pub(super) fn owner_lag_at(&self, fraction: f64) -> f64 {
        at(&self.owner_lags_ms, fraction)
    }

    pub(super) fn put_at(&self, fraction: f64) -> Duration {
        at(&self.puts, fraction)
    }

    pub(super) fn achieved_rate(&self) -> f64 {
        self.puts.len() as f64 / self.writing.as_secs_f64()
    }
}

fn at<T: Copy + Default>(sorted: &[T], fraction: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let index = ((sorted.len() as f64 * fraction) as usize).min(sorted.len() - 1);
    sorted[index]
}

/// Everything measured on one backend.
#[derive(Debug, Clone)]
pub(super) struct ReplicationRun {
    pub(super) backend: Backend,
    pub(super) sync: SyncResult,
    pub(super) steps: Steps,
    pub(super) lag: LagResult,
    /// Figure 5, on the filled owner.
    pub(super) chunks: super::chunks::ChunkRates,
}

/// Fills the owner, syncs a fresh copy, measures the lag, then the steps; stops both units.
pub(super) async fn run(
    backend: Backend,
    plan: ReplicationPlan,
    databases: &Databases,
) -> anyhow::Result<ReplicationRun> {
    let label = backend.label();
    anyhow::ensure!(
        plan.writes() <= plan.customers,
        "the lag run writes {} distinct customers but only {} exist: lower --write-rate or \
         --lag-seconds, or raise --sync-customers",
        plan.writes(),
        plan.customers
    );
    eprintln!("{label}: replication: starting the owner (registration)");
    let billing = CallerConfig {
        name: "billing".into(),
        token: BILLING_TOKEN.into(),
        grant: billing::COPIED_ASPECTS.into(),
    };
    let owner = Unit::start_with(
        backend,
        &databases.owner,
        "registration-owner",
        vec![billing],
    )
    .await?;
    let outcome = with_owner(backend, plan, databases, &owner).await;
    owner.stop().await;
    outcome
}

async fn with_owner(
    backend: Backend,
    plan: ReplicationPlan,
    databases: &Databases,
    owner: &Unit,
) -> anyhow::Result<ReplicationRun> {
    let label = backend.label();
    let resident_before_kib = proc_status_kib("VmRSS:");
    let mut memory = PhaseMemory::default();
    memory.begin(format!("{label} fill"));
    let began = Instant::now();
    let ids = tokio::time::timeout(FILL_TIMEOUT, fill(label, owner.store(), plan.customers))
        .await
        .with_context(|| {
            format!(
                "{label}: filling the owner took longer than {} s",
                FILL_TIMEOUT.as_secs()
            )
        })??;
    let fill_time = began.elapsed();
    memory.end();
    let target = owner.store().current_version(COLLECTION).await?;
    eprintln!(
        "{label}: filled {} customers in {:.1} s; owner at version {target}",
        plan.customers,
        fill_time.as_secs_f64()
    );

    let runs = databases.copies.len();
    let mut syncs = Vec::with_capacity(runs);
    let mut unpipelined = Vec::with_capacity(runs);
    let mut compressed = Vec::with_capacity(runs);
    let mut progress = Vec::with_capacity(runs);
    for (run, database) in databases.copies.iter().enumerate() {
        // Without pipelining, gzip, plain; again…: the last (pipelined and uncompressed, as
        // figure 1 counts) goes on to the lag.
        let kind = SyncKind::of_run(run);
        eprintln!(
            "{label}: replication: starting a fresh copy (billing) and timing its initial sync \
             ({}), run {}/{runs}",
            kind.describe(),
            run + 1
        );
        memory.begin(format!("{label} sync {} ({})", run + 1, kind.describe()));
        let copy = CopyUnit::start(backend, database, owner.base(), kind).await?;
        let synced = sync(label, &copy, target).await;
        memory.end();
        let (synced, trace) = match synced {
            Ok(took) => took,
            Err(error) => {
                copy.stop(label).await;
                return Err(error);
            }
        };
        eprintln!("{label}: copy synced in {:.2} s", synced.as_secs_f64());
        match kind {
            SyncKind::Plain => {
                syncs.push(synced);
                progress.push(trace);
            }
            SyncKind::Unpipelined => unpipelined.push(synced),
            SyncKind::Compressed => compressed.push(synced),
        }
        if run + 1 < runs {
            copy.stop(label).await;
            continue;
        }
        let outcome = with_copy(
            backend,
            plan,
            databases,
            owner,
            &copy,
            &ids,
            target,
            fill_time,
            (syncs, unpipelined, compressed, progress),
            (memory.phases, resident_before_kib),
        )
        .await;
        copy.stop(label).await;
        return outcome;
    }
    bail!("{label}: no copy database to sync into")
}

/// Waits (bounded) until `copy` has reached `target`; the time since its start and the
/// progress sampled on the way.
async fn sync(
    label: &str,
    copy: &CopyUnit,
    target: Version,
) -> anyhow::Result<(Duration, Progress)> {
    tokio::time::timeout(SYNC_TIMEOUT, copy.wait_for(label, target))
        .await
        .with_context(|| {
            format!(
                "{label}: the copy did not reach version {target} within {} s (it stood at {})",
                SYNC_TIMEOUT.as_secs(),
                copy.status().cursor
            )
        })?
}

#[allow(clippy::too_many_arguments)]
async fn with_copy(
    backend: Backend,
    plan: ReplicationPlan,
    databases: &Databases,
    owner: &Unit,
    copy: &CopyUnit,
    ids: &[String],
    target: Version,
    fill_time: Duration,
    (syncs, unpipelined, compressed, progress): (
        Vec<Duration>,
        Vec<Duration>,
        Vec<Duration>,
        Vec<Progress>,
    ),
    (memory, resident_before_kib): (Vec<MemoryPhase>, Option<u64>),
) -> anyhow::Result<ReplicationRun> {
    let label = backend.label();
    let mut sorted = syncs.clone();
    sorted.sort_unstable();
    let sync_time = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    // The poller counts a chunk just after its commit: give the last one a moment.
    let counted = Instant::now() + Duration::from_secs(2);
    while copy.status().cursor < target.get() && Instant::now() < counted {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let peak_rss_kib = memory.iter().map(|phase| phase.peak_kib).max();
    let status = copy.status();
    let copied = copy.state.store().count_resources(COLLECTION).await?;
    eprintln!(
        "{label}: the last copy: {} chunks, {} items, {copied} resources",
        status.chunks_applied, status.items_applied
    );
    anyhow::ensure!(
        copied == plan.customers as u64,
        "{label}: the copy holds {copied} customers after its sync, not {}",
        plan.customers
    );
    let mut sync = SyncResult {
        customers: plan.customers,
        fill: fill_time,
        sync: sync_time,
        syncs,
        unpipelined,
        compressed,
        chunks: status.chunks_applied,
        items: status.items_applied,
        copied,
        progress,
        peak_rss_kib,
        memory,
        resident_before_kib,
    };

    // The phases after the sync do not count for figure 6, but they show what the process
    // carries into the next backend's run (glibc keeps freed memory for reuse).
    let mut later = PhaseMemory::default();
    later.begin(format!("{label} lag"));
    let lag = lag(label, plan, owner, copy, ids).await?;
    later.begin(format!("{label} feed chunks/s"));

    let top = owner.store().current_version(COLLECTION).await?;
    let chunks = super::chunks::measure(
        label,
        owner,
        top.get().max(0) as u64,
        plan.chunk_seconds,
        plan.repetitions,
    )
    .await?;

    later.begin(format!("{label} steps"));
    eprintln!("{label}: the poller's steps one by one (separate pass into a scratch database)");
    let steps = tokio::time::timeout(STEPS_TIMEOUT, steps(owner, &databases.scratch, target))
        .await
        .with_context(|| {
            format!(
                "{label}: the step-by-step pass took longer than {} s",
                STEPS_TIMEOUT.as_secs()
            )
        })??;
    later.end();
    sync.memory
        .extend(later.phases.into_iter().map(|phase| MemoryPhase {
            in_figure: false,
            ..phase
        }));
    Ok(ReplicationRun {
        backend,
        sync,
        steps,
        lag,
        chunks,
    })
}

/// The body of the feed's chunk after `after` as it crosses the wire to a client that accepts
/// gzip (the bench's client inflates nothing, so these are the compressed bytes).
async fn gzip_size(owner: &Unit, after: Version, limit: u32) -> anyhow::Result<usize> {
    let response = owner
        .client()
        .get(format!(
            "{}/{COLLECTION}?version={after}&aspects={}&limit={limit}&wait=0",
            owner.base(),
            billing::COPIED_ASPECTS
        ))
        .bearer_auth(TOKEN)
        .header(ACCEPT, MEDIA_TYPE)
        .header(reqwest::header::ACCEPT_ENCODING, "gzip")
        .timeout(STEP_TIMEOUT)
        .send()
        .await?;
    anyhow::ensure!(
        response.headers().get(reqwest::header::CONTENT_ENCODING)
            == Some(&reqwest::header::HeaderValue::from_static("gzip")),
        "the owner's feed answered a chunk without gzip although the client asked for it"
    );
    Ok(response.bytes().await?.len())
}

/// Resets the process's peak resident set size (`VmHWM`), so the next reading covers only
/// what follows (Linux: writing `5` to `/proc/self/clear_refs`).
fn reset_peak_rss() {
    if let Err(error) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("bench: could not reset the peak RSS: {error}");
    }
}

/// A line of this process's `/proc/self/status` in KiB (`VmHWM:` the peak, `VmRSS:` now).
fn proc_status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Creates `count` customers (person, both addresses, bankaccount) in batches, directly
/// through the store; returns their ids in creation order.
async fn fill(label: &str, store: &hiscale::Store, count: usize) -> anyhow::Result<Vec<String>> {
    eprintln!(
        "{label}: filling the owner with {count} customers (Store::commit, batches of {FILL_BATCH})"
    );
    let progress = ProgressBar::new(count as u64);
    progress.set_style(
        ProgressStyle::with_template(
            "{prefix} fill [{bar:30}] {pos}/{len} customers, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    progress.set_prefix(label.to_owned());
    let mut ids = Vec::with_capacity(count);
    let mut next = 0;
    while next < count {
        let end = (next + FILL_BATCH).min(count);
        let changes = (next..end)
            .map(|n| {
                Ok(Change {
                    target: Target::Create,
                    precondition: None,
                    edits: customer_edits(n)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let committed = store
            .commit(COLLECTION, changes)
            .await
            .with_context(|| format!("committing customers {next}..{end}"))?;
        ids.extend(
            committed
                .changes
                .iter()
                .map(|(id, _)| id.as_str().to_owned()),
        );
        progress.inc((end - next) as u64);
        next = end;
    }
    progress.finish_and_clear();
    Ok(ids)
}

/// The four aspects of customer `n`, stored exactly as the HTTP edge stores them (the typed
/// aspects serialised to JSON).
pub(super) fn customer_edits(n: usize) -> anyhow::Result<Vec<AspectEdit>> {
    let edit = |aspect: &str, body: String| AspectEdit {
        aspect: aspect.to_owned(),
        body: Some(body),
        unique_keys: Vec::new(),
    };
    Ok(vec![
        edit(
            "person",
            serde_json::to_string(&registration::Person {
                kind: "natural".into(),
                salutation: Some("MS".into()),
                given_name: "Erika".into(),
                family_name: format!("Muster{n}"),
                birthdate: None,
                email: None,
            })?,
        ),
        edit(
            "address.home",
            serde_json::to_string(&registration::Address {
                street: format!("Hauptstraße {n}"),
                zip: "53111".into(),
                city: "Bonn".into(),
            })?,
        ),
        edit(
            "address.bill",
            serde_json::to_string(&registration::Address {
                street: format!("Postfach {n}"),
                zip: "53112".into(),
                city: "Bonn".into(),
            })?,
        ),
        edit(
            "bankaccount",
            serde_json::to_string(&registration::BankAccount {
                owner: format!("Erika Muster{n}"),
                iban: "DE89370400440532013000".into(),
                bic: None,
            })?,
        ),
    ])
}

/// The billing copy unit, served by `serve_app` (pollers included) on a loopback port.
struct CopyUnit {
    base: String,
    state: hiscale::http::AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), hiscale::unit::UnitError>>,
    client: reqwest::Client,
}

impl Drop for CopyUnit {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Fresh copies per repetition of the initial sync, one of each [`SyncKind`].
pub(super) const SYNCS_PER_REPETITION: usize = 3;

/// How a copy of the initial sync polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncKind {
    /// Asks for a chunk only after applying the one before.
    Unpipelined,
    /// Pipelined, with gzip-compressed chunks.
    Compressed,
    /// Pipelined, uncompressed: figure 1.
    Plain,
}

impl SyncKind {
    fn of_run(run: usize) -> Self {
        match run % SYNCS_PER_REPETITION {
            0 => Self::Unpipelined,
            1 => Self::Compressed,
            _ => Self::Plain,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Unpipelined => "without pipelining",
            Self::Compressed => "pipelined, gzip",
            Self::Plain => "pipelined",
        }
    }
}

impl CopyUnit {
    /// Builds the copy's state (migrations run here, before the clock starts), then serves.
    async fn start(
        backend: Backend,
        database: &str,
        owner: &str,
        kind: SyncKind,
    ) -> anyhow::Result<Self> {
        let listen = free_port().context("finding a free loopback port for the copy")?;
        let config = hiscale::UnitConfig {
            callers: vec![operator()],
            sources: vec![SourceConfig {
                origin: Default::default(),
                collection: COLLECTION.into(),
                url: owner.to_owned(),
                token: BILLING_TOKEN.into(),
                aspects: billing::COPIED_ASPECTS.into(),
                interval_secs: INTERVAL_SECS,
                wait_secs: WAIT_SECS,
                limit: LIMIT,
                interface_version: 1,
                pipeline: kind != SyncKind::Unpipelined,
                compress: kind == SyncKind::Compressed,
            }],
            ..hiscale::UnitConfig::new(
                billing::NAME,
                &format!("billing-bench-{}", backend.label()),
                listen,
                database,
            )
        };
        let state = hiscale::unit::state(&config, billing::service_area())
            .await
            .with_context(|| format!("starting the {} copy unit", backend.label()))?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let server = tokio::spawn(async move {
            hiscale::unit::serve_app(&config, served, axum::Router::new(), async move {
                let _ = stopped.await;
            })
            .await
        });
        let client = hiscale::tls::client_builder()
            .no_proxy()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(WATCH_WAIT_SECS + 30))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base: format!("http://{listen}"),
            state,
            shutdown: Some(shutdown),
            server,
            client,
        })
    }

    fn status(&self) -> hiscale::replication::SourceStatus {
        self.state
            .replication()
            .snapshot()
            .into_iter()
            .find(|status| status.collection == COLLECTION)
            .unwrap_or_default()
    }

    /// Polls the copy's stored cursor until it reaches `target`; returns the time since the
    /// unit was started, and the records applied at each poll (the poller's in-memory count,
    /// read beside the cursor, so sampling adds no query).
    async fn wait_for(&self, label: &str, target: Version) -> anyhow::Result<(Duration, Progress)> {
        let started = Instant::now();
        let mut trace = vec![(0.0, 0)];
        let progress = ProgressBar::new(target.get().max(0) as u64);
        progress.set_style(
            ProgressStyle::with_template(
                "{prefix} sync [{bar:30}] version {pos}/{len}, {per_sec}, eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        progress.set_prefix(label.to_owned());
        loop {
            let cursor = self.state.store().cursor(COLLECTION).await?;
            let applied = self.status().items_applied;
            if cursor >= target {
                let elapsed = started.elapsed();
                progress.finish_and_clear();
                trace.push((elapsed.as_secs_f64(), applied));
                return Ok((elapsed, trace));
            }
            trace.push((started.elapsed().as_secs_f64(), applied));
            progress.set_position(cursor.get().max(0) as u64);
            if self.server.is_finished() {
                progress.finish_and_clear();
                bail!("{label}: the copy unit stopped during its sync (see the log above)");
            }
            tokio::time::sleep(CURSOR_POLL).await;
        }
    }

    async fn stop(mut self, label: &str) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match tokio::time::timeout(Duration::from_secs(15), &mut self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => eprintln!("bench: the {label} copy unit stopped with: {error}"),
            Ok(Err(error)) => eprintln!("bench: the {label} copy unit's task failed: {error}"),
            Err(_) => eprintln!("bench: the {label} copy unit did not stop in time; aborted"),
        }
    }
}

/// A port on 127.0.0.1 nobody listens on right now (`serve_app` binds the configured one).
fn free_port() -> std::io::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    listener.local_addr()
}

/// One acknowledged write: its version and when its response arrived.
struct Written {
    version: u64,
    acknowledged: Instant,
    latency: Duration,
}

/// `PUT address.bill` at a fixed rate on distinct customers while the watcher follows the
/// copy's feed; every write must show up there.
async fn lag(
    label: &str,
    plan: ReplicationPlan,
    owner: &Unit,
    copy: &CopyUnit,
    ids: &[String],
) -> anyhow::Result<LagResult> {
    let writes = plan.writes();
    anyhow::ensure!(writes > 0, "the lag run needs at least one write");
    eprintln!(
        "{label}: long-poll lag: PUT address.bill at {}/s for {} s, watching the copy's feed",
        plan.write_rate, plan.lag_seconds
    );
    let from = copy.state.store().cursor(COLLECTION).await?;
    let chunks_before = copy.status().chunks_applied;
    let (target, target_seen) = tokio::sync::watch::channel(None::<u64>);
    // The owner's own feed, watched the same way, splits the lag into the owner's part and
    // the copy's (the operator's token: the bench is no consumer the owner records).
    let owner_watcher = tokio::spawn(watch(
        owner.client().clone(),
        format!("{}/{COLLECTION}", owner.base()),
        from.get().max(0) as u64,
        target_seen.clone(),
    ));
    let watcher = tokio::spawn(watch(
        copy.client.clone(),
        format!("{}/{COLLECTION}", copy.base),
        from.get().max(0) as u64,
        target_seen,
    ));
    // Let the watcher's first long poll reach the copy before the first write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if watcher.is_finished() {
        return match watcher.await {
            Ok(Err(error)) => Err(error.context(format!("{label}: the watcher failed"))),
            _ => bail!("{label}: the watcher stopped before the first write"),
        };
    }

    let interval = Duration::from_secs_f64(1.0 / f64::from(plan.write_rate));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(LAG_WRITES_IN_FLIGHT));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..writes {
        tokio::time::sleep_until((started + interval * n as u32).into()).await;
        let permit = in_flight.clone().acquire_owned().await?;
        // Distinct customers, spread over all of them: no version supersedes another.
        let id = &ids[n * ids.len() / writes];
        let request = owner
            .client()
            .put(format!("{}/{COLLECTION}/{id}/address.bill", owner.base()))
            .bearer_auth(TOKEN)
            .header(CONTENT_TYPE, MEDIA_TYPE)
            .header(ACCEPT, MEDIA_TYPE)
            .body(
                serde_json::json!({
                    "street": format!("Rechnungsweg {n}"),
                    "zip": "53113",
                    "city": "Bonn",
                })
                .to_string(),
            );
        tasks.spawn(async move {
            let sent = Instant::now();
            let response = request.send().await.context("PUT address.bill")?;
            let acknowledged = Instant::now();
            drop(permit);
            let status = response.status();
            let etag = response
                .headers()
                .get(ETAG)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let body = response.bytes().await?;
            anyhow::ensure!(
                status == reqwest::StatusCode::OK,
                "PUT address.bill answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
            let version = etag
                .as_deref()
                .and_then(|tag| tag.trim_start_matches("W/").trim_matches('"').parse().ok())
                .with_context(|| format!("PUT address.bill answered the ETag {etag:?}"))?;
            anyhow::Ok(Written {
                version,
                acknowledged,
                latency: acknowledged - sent,
            })
        });
    }
    let mut written = Vec::with_capacity(writes);
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a writer task panicked").and_then(|r| r) {
            Ok(write) => written.push(write),
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    let writing = started.elapsed();
    if let Some(error) = failure {
        watcher.abort();
        owner_watcher.abort();
        return Err(error.context(format!("{label}: a write of the lag run failed")));
    }
    let last = written.iter().map(|w| w.version).max().unwrap_or(0);
    let _ = target.send(Some(last));
    let seen = match tokio::time::timeout(DRAIN_TIMEOUT, watcher).await {
        Ok(Ok(Ok(seen))) => seen,
        Ok(Ok(Err(error))) => return Err(error.context(format!("{label}: the watcher failed"))),
        Ok(Err(error)) => bail!("{label}: the watcher task failed: {error}"),
        Err(_) => bail!(
            "{label}: the copy's feed did not reach version {last} within {} s of the last \
             write (cursor {})",
            DRAIN_TIMEOUT.as_secs(),
            copy.status().cursor
        ),
    };
    let owner_seen = match tokio::time::timeout(DRAIN_TIMEOUT, owner_watcher).await {
        Ok(Ok(Ok(seen))) => seen,
        Ok(Ok(Err(error))) => {
            return Err(error.context(format!("{label}: the owner's watcher failed")));
        }
        Ok(Err(error)) => bail!("{label}: the owner's watcher task failed: {error}"),
        Err(_) => bail!(
            "{label}: the owner's feed did not reach version {last} within {} s of the last write",
            DRAIN_TIMEOUT.as_secs()
        ),
    };
    let chunks = copy.status().chunks_applied - chunks_before;
    let mut owner_lags_ms: Vec<f64> = written
        .iter()
        .filter_map(|write| {
            let appeared = owner_seen.get(&write.version)?;
            Some(signed_millis(*appeared, write.acknowledged))
        })
        .collect();
    owner_lags_ms.sort_by(f64::total_cmp);

    let mut lags_ms = Vec::with_capacity(written.len());
    let mut missing = Vec::new();
    for write in &written {
        match seen.get(&write.version) {
            Some(appeared) => lags_ms.push(signed_millis(*appeared, write.acknowledged)),
            None => missing.push(write.version),
        }
    }
    if !missing.is_empty() {
        missing.sort_unstable();
        bail!(
            "{label}: {} of {} acknowledged writes never appeared on the copy's feed, although \
             it reached version {last}; first missing versions: {:?}",
            missing.len(),
            written.len(),
            &missing[..missing.len().min(10)]
        );
    }
    lags_ms.sort_by(f64::total_cmp);
    let mut puts: Vec<Duration> = written.iter().map(|w| w.latency).collect();
    puts.sort_unstable();
    Ok(LagResult {
        planned: writes,
        lags_ms,
        owner_lags_ms,
        puts,
        writing,
        chunks,
    })
}

/// `later - earlier` in milliseconds, negative when `later` came first.
fn signed_millis(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(after) => after.as_secs_f64() * 1000.0,
        None => -(earlier.duration_since(later).as_secs_f64() * 1000.0),
    }
}

/// Long-polls the copy's feed of `address.bill` from `version` on and records when each item
/// version first appears; returns once the feed has passed the target the writer sets.
async fn watch(
    client: reqwest::Client,
    url: String,
    mut version: u64,
    mut target: tokio::sync::watch::Receiver<Option<u64>>,
) -> anyhow::Result<HashMap<u64, Instant>> {
    let mut seen = HashMap::new();
    let reached = |version: u64, target: Option<u64>| target.is_some_and(|t| version >= t);
    loop {
        if reached(version, *target.borrow()) {
            return Ok(seen);
        }
        let request = client
            .get(format!(
                "{url}?version={version}&wait={WATCH_WAIT_SECS}&aspects=~address.bill&limit=1000"
            ))
            .bearer_auth(TOKEN)
            .header(ACCEPT, MEDIA_TYPE)
            .send();
        tokio::pin!(request);
        let response = loop {
            tokio::select! {
                response = &mut request => break response.context("long-polling the copy's feed")?,
                changed = target.changed() => {
                    if changed.is_err() {
                        // The writer is gone: only the pending poll is left to finish.
                        break (&mut request).await.context("long-polling the copy's feed")?;
                    }
                    if reached(version, *target.borrow()) {
                        return Ok(seen);
                    }
                }
            }
        };
        let arrived = Instant::now();
        let status = response.status();
        let body = response.bytes().await?;
        anyhow::ensure!(
            status == reqwest::StatusCode::OK,
            "the copy's feed answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let chunk: serde_json::Value =
            serde_json::from_slice(&body).context("the copy's feed is not JSON")?;
        for item in chunk["items"].as_array().into_iter().flatten() {
            if let Some(item_version) = item["version"].as_u64() {
                seen.entry(item_version).or_insert(arrived);
            }
        }
        let next = chunk["version"]
            .as_u64()
            .context("the copy's feed has no root version")?;
        anyhow::ensure!(
            next >= version,
            "the copy's feed went back from {version} to {next}"
        );
        version = next;
    }
}

/// Reads the owner's whole feed as the copy's poller does, timing each step on its own:
/// the store query and the rendering (called directly), the HTTP request for the same chunk,
/// parsing, and applying into a scratch database. `limit` is one less than the poller's so
/// that no chunk comes from the owner's chunk cache.
async fn steps(owner: &Unit, scratch: &str, until: Version) -> anyhow::Result<Steps> {
    const STEP_LIMIT: u32 = LIMIT - 1;
    let service_area = billing::service_area();
    let copied = service_area
        .copied()
        .iter()
        .find(|collection| collection.name() == COLLECTION)
        .context("billing copies no customers")?
        .clone();
    let owned = registration::customers();
    let aspects: Vec<String> = billing::COPIED_ASPECTS
        .split('~')
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    let store = hiscale::Store::connect(scratch)
        .await
        .context("opening the scratch database")?;
    let outcome = async {
        let mut steps = Steps::default();
        let mut after = Version::ZERO;
        let max_bytes = hiscale::config::FeedConfig::default().max_chunk_bytes;
        loop {
            let began = Instant::now();
            let horizon = owner.store().horizon(COLLECTION).await?;
            let batch = owner
                .store()
                .read_changes_capped(
                    COLLECTION,
                    after,
                    horizon,
                    &aspects,
                    STEP_LIMIT as usize,
                    max_bytes,
                )
                .await?;
            steps.query += began.elapsed();

            let views: Vec<hiscale::repr::ResourceView<'_>> = batch
                .items
                .iter()
                .map(hiscale::repr::ResourceView::changed)
                .collect();
            let render = |format: hiscale::repr::Format, through_tree: bool| {
                let began = Instant::now();
                let rendered = if through_tree {
                    hiscale::repr::render_feed_through_tree(
                        format,
                        &owned,
                        batch.version,
                        batch.more,
                        &views,
                    )
                } else {
                    hiscale::repr::render_feed(format, &owned, batch.version, batch.more, &views)
                };
                (began.elapsed(), rendered)
            };
            for format in [hiscale::repr::Format::Json, hiscale::repr::Format::Xml] {
                // Alternating which goes first, so caches and drift favour neither.
                let ((spliced, new), (tree, old)) = if steps.chunks % 2 == 0 {
                    let new = render(format, false);
                    (new, render(format, true))
                } else {
                    let old = render(format, true);
                    (render(format, false), old)
                };
                anyhow::ensure!(
                    new == old,
                    "the spliced {format:?} chunk differs from the tree's after version {after}"
                );
                drop((new, old));
                let timing = match format {
                    hiscale::repr::Format::Json => &mut steps.json,
                    hiscale::repr::Format::Xml => &mut steps.xml,
                };
                timing.stored += spliced;
                timing.tree += tree;
                if !tree.is_zero() {
                    timing
                        .ratios
                        .push(spliced.as_secs_f64() / tree.as_secs_f64());
                }
            }

            let began = Instant::now();
            let response = owner
                .client()
                .get(format!(
                    "{}/{COLLECTION}?version={after}&aspects={}&limit={STEP_LIMIT}&wait=0",
                    owner.base(),
                    billing::COPIED_ASPECTS
                ))
                .bearer_auth(TOKEN)
                .header(ACCEPT, MEDIA_TYPE)
                .timeout(STEP_TIMEOUT)
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            steps.get += began.elapsed();
            anyhow::ensure!(
                status == reqwest::StatusCode::OK,
                "the owner's feed answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
            steps.bytes += body.len();
            steps.gzip_bytes += gzip_size(owner, after, STEP_LIMIT).await?;

            let began = Instant::now();
            let chunk = hiscale::repr::parse_feed(&body, &copied)
                .map_err(|error| anyhow::anyhow!("parsing a chunk: {error}"))?;
            let items = hiscale::poller::chunk_items(&copied, &chunk);
            steps.parse += began.elapsed();

            let began = Instant::now();
            store.apply_chunk(COLLECTION, &items, chunk.version).await?;
            steps.apply += began.elapsed();
            steps.chunks += 1;
            steps.records += chunk.items.len();

            anyhow::ensure!(
                chunk.version > after || !chunk.more,
                "the owner's feed did not move past {after}"
            );
            after = chunk.version;
            if !chunk.more && after >= until {
                steps.json.ratios.sort_by(f64::total_cmp);
                steps.xml.ratios.sort_by(f64::total_cmp);
                return anyhow::Ok(steps);
            }
        }
    }
    .await;
    store.close().await;
    outcome
}
