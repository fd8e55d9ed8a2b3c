//! `hiscale bench`: micro-benchmarks of the REST edge and of the store's version allocation,
//! measured side by side in one run and printed as one table of medians and ratios.
//!
//! * HTTP: the registration unit runs in this process on `127.0.0.1:0`, once per backend
//!   (SQLite in a temporary file always, PostgreSQL in a fresh database when a server is
//!   given), and is driven over real loopback HTTP/1.1 with keep-alive: `GET /customers/{id}`
//!   with 16 clients, `PUT /customers/{id}/address.home` with 8 writers on distinct ids. The
//!   GETs run in each repetition beside the same GETs at a second unit on the same database
//!   without the cache of rendered reads, and beside the unit's `/heartbeat`, in rotating
//!   order.
//! * SQLite durability: the same PUTs against a second SQLite unit whose store runs with
//!   `synchronous = NORMAL`, measured in each repetition next to the SQLite (`FULL`) unit, in
//!   alternating order, to show what one fsync per write transaction costs.
//! * Version allocation (PostgreSQL only): a counter row locked until commit versus what the
//!   store does (transaction id first, then a sequence), with 8 writers and with 1.
//!
//! * Replication (`replication.rs`): the initial sync of a fresh billing copy from a filled
//!   owner, in records per second, and the long-poll lag from a write's acknowledgement at
//!   the owner to its appearance on the copy's own feed, per backend. Where PostgreSQL's
//!   server binaries are found, the bench starts two durable clusters of its own
//!   (`cluster.rs`): HiScale's PostgreSQL → PostgreSQL sync runs across them (owner on the
//!   first, copy on the second), and so does the reference, PostgreSQL's logical replication
//!   of the same rows and columns (`logical.rs`).
//!
//! * The tombstone purge on SQLite (`purge.rs`): the longest a batch holds the write lock
//!   and the whole purge's time, for 100,000 deleted customers (10,000 with `--quick`;
//!   alone with `--purge-only`).
//!
//! Every measurement runs for a fixed time and is repeated; the table shows medians. The same
//! medians also go to `RESULTS.md` (`results.rs`), a Markdown table of the figures
//! beside their references and goals, with SVG plots of the sync's rate over time and of the
//! lag's distribution (`plots.rs`), in `--results-dir` (`docs/bench` by default). Runs of
//! the backends alternate so that drift on a shared machine hits both alike. This is a
//! micro-benchmark for judging ratios on one machine, not a capacity figure: client and unit
//! share one process and its runtime.

mod alloc;
mod chunks;
mod cluster;
mod load;
mod logical;
mod plots;
mod purge;
mod replication;
mod report;
mod restore;
mod results;
mod writes;

use std::time::Duration;

use anyhow::Context;
use hiscale::store::SqliteSync;

use load::Unit;
use replication::{Databases, ReplicationPlan};
use report::Report;

/// Options of `hiscale bench`.
#[derive(Debug, clap::Args)]
pub struct BenchOptions {
    /// PostgreSQL server URL (e.g. postgres://postgres@127.0.0.1:5432/); SQLite only without.
    #[arg(long, env = "HISCALE_TEST_POSTGRES")]
    pub postgres: Option<String>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// A fast smoke run: 1 s per measurement, 1 repetition, 50 customers; replication with
    /// 5,000 customers and 50 writes/s for 3 s.
    #[arg(long, conflicts_with = "seconds")]
    pub quick: bool,
    /// Measure only replication (initial sync and long-poll lag), not reads, writes and
    /// version allocation.
    #[arg(long, conflicts_with = "skip_replication")]
    pub replication_only: bool,
    /// Leave replication out.
    #[arg(long)]
    pub skip_replication: bool,
    /// Measure only the refill of a rolled-back owner from a peer's copy (records/s).
    #[arg(long, conflicts_with_all = ["replication_only", "skip_replication"])]
    pub restore_only: bool,
    /// Measure only the tombstone purge on SQLite (write lock per batch, whole purge).
    #[arg(long, conflicts_with_all = ["replication_only", "skip_replication", "restore_only"])]
    pub purge_only: bool,
    /// Customers deleted before the purge is measured [default: 100000; --quick 10000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub purge_tombstones: Option<u64>,
    /// Changed aspects the peer's copy holds for the refill [default: 100000; --quick 2000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(3..=10_000_000))]
    pub restore_records: Option<u64>,
    /// Customers in the owner before the copy's initial sync [default: 100000; --quick 5000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub sync_customers: Option<u64>,
    /// PostgreSQL server binaries for the bench's own durable clusters (the logical
    /// replication reference and HiScale's PostgreSQL → PostgreSQL sync across them)
    /// [default: the newest /usr/lib/postgresql/*/bin].
    #[arg(long, env = "HISCALE_PG_BIN")]
    pub pg_bin: Option<std::path::PathBuf>,
    /// Leave out the logical replication reference and the bench's own clusters.
    #[arg(long)]
    pub skip_reference: bool,
    /// Writes per second during the lag measurement (figure 2 asks for 1,000) [default: 1000;
    /// --quick 50].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub write_rate: Option<u32>,
    /// Seconds of writing during the lag measurement [default: 10; --quick 3].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub lag_seconds: Option<u64>,
    /// Where RESULTS.md (the figures as a Markdown table) and the SVG plots go; created if
    /// missing, files of the same names replaced (not written by --restore-only).
    #[arg(long, value_name = "DIR", default_value = "docs/bench")]
    pub results_dir: std::path::PathBuf,
}

/// How much to measure, derived from the options.
#[derive(Debug, Clone, Copy)]
struct Plan {
    duration: Duration,
    repetitions: usize,
    customers: usize,
    warm_up: Duration,
    /// Whether reads, writes and version allocation are measured.
    http: bool,
    /// Customers deleted before the purge is measured; `None`: the purge is not.
    purge: Option<usize>,
    replication: Option<ReplicationPlan>,
}

/// Concurrent HTTP clients reading single resources.
const READERS: usize = 16;
/// Concurrent HTTP writers, each on its own customers.
const WRITERS: usize = 8;
/// Concurrent writers in the allocation comparison (besides the 1-writer runs).
const ALLOC_WRITERS: usize = 8;

impl Plan {
    fn of(options: &BenchOptions) -> Self {
        let (sync_customers, write_rate, lag_seconds) = if options.quick {
            (5_000, 50, 3)
        } else {
            (100_000, 1_000, 10)
        };
        let replication = (!options.skip_replication).then(|| ReplicationPlan {
            customers: options
                .sync_customers
                .map_or(sync_customers, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            write_rate: options.write_rate.unwrap_or(write_rate),
            lag_seconds: options.lag_seconds.unwrap_or(lag_seconds),
            chunk_seconds: if options.quick {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(options.seconds)
            },
            repetitions: if options.quick { 1 } else { 3 },
        });
        let http = !options.replication_only;
        let purge = (!options.replication_only).then(|| {
            options
                .purge_tombstones
                .map_or(if options.quick { 10_000 } else { 100_000 }, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                })
        });
        if options.quick {
            Self {
                duration: Duration::from_secs(1),
                repetitions: 1,
                customers: 50,
                warm_up: Duration::from_millis(200),
                http,
                purge,
                replication,
            }
        } else {
            Self {
                duration: Duration::from_secs(options.seconds),
                repetitions: 3,
                customers: 200,
                warm_up: Duration::from_millis(500),
                http,
                purge,
                replication,
            }
        }
    }
}

/// What must be removed at the end, however the run ends.
#[derive(Debug, Default)]
struct Leftovers {
    sqlite_dir: Option<tempfile::TempDir>,
    /// (server URL without trailing slash, database name)
    postgres_databases: Vec<(String, String)>,
}

impl Leftovers {
    /// Creates a fresh bench database on `server` (remembered for removal first, so that a
    /// failure half-way leaves nothing behind) and returns its URL.
    async fn postgres_database(&mut self, server: &str, role: &str) -> anyhow::Result<String> {
        let database = format!("{}_{role}", unique_database_name());
        self.postgres_databases
            .push((server.to_owned(), database.clone()));
        eprintln!("postgres: creating database {database}");
        hiscale::store::ensure_postgres_database(server, &database)
            .await
            .with_context(|| format!("creating database {database} on {server}"))
    }

    async fn remove(&mut self) {
        if let Some(dir) = self.sqlite_dir.take()
            && let Err(error) = dir.close()
        {
            eprintln!("bench: could not remove the SQLite temp directory: {error}");
        }
        for (server, database) in std::mem::take(&mut self.postgres_databases) {
            match tokio::time::timeout(
                Duration::from_secs(20),
                alloc::drop_database(&server, &database),
            )
            .await
            {
                Ok(Ok(())) => eprintln!("bench: dropped database {database}"),
                Ok(Err(error)) => {
                    eprintln!("bench: could not drop database {database}: {error:#}");
                }
                Err(_) => eprintln!("bench: timed out dropping database {database}"),
            }
        }
    }
}

pub async fn run(options: BenchOptions) -> anyhow::Result<()> {
    let plan = Plan::of(&options);
    let server = options
        .postgres
        .as_deref()
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| url.trim_end_matches('/').to_owned());
    let mut leftovers = Leftovers::default();
    if options.restore_only {
        let outcome = tokio::select! {
            outcome = measure_restore(&options, server.as_deref(), &mut leftovers) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        leftovers.remove().await;
        restore::print(&outcome?);
        return Ok(());
    }
    if options.purge_only {
        let dir = tempfile::Builder::new()
            .prefix("hiscale-bench-purge-")
            .tempdir()
            .context("creating a temporary directory for SQLite")?;
        let url = format!("sqlite://{}/purge.db", dir.path().display());
        let outcome = tokio::select! {
            outcome = purge::run(&url, plan.purge.unwrap_or(100_000)) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        drop(dir);
        println!("{}", purge::Line(&outcome?));
        return Ok(());
    }
    let pg_bin = if options.skip_reference {
        None
    } else {
        cluster::Cluster::find_bin(options.pg_bin.as_deref())
    };
    let outcome = tokio::select! {
        outcome = measure(plan, server.as_deref(), pg_bin, &mut leftovers) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    leftovers.remove().await;
    let report = outcome?;
    print!("{report}");
    write_results(&options.results_dir, &report)
}

/// Writes the plots and `RESULTS.md` into `dir` after the text report is printed, so that a
/// failure here loses no numbers.
fn write_results(dir: &std::path::Path, report: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the results directory {}", dir.display()))?;
    let plots = plots::write(dir, report)?;
    let written = results::write(dir, report, &results::RunContext::now(), &plots)?;
    eprintln!(
        "bench: wrote {}{}",
        written.display(),
        plots
            .iter()
            .map(|plot| format!(", {}", dir.join(plot.file).display()))
            .collect::<String>()
    );
    Ok(())
}

/// The refill benchmark on SQLite, and on PostgreSQL when a server is given.
async fn measure_restore(
    options: &BenchOptions,
    server: Option<&str>,
    leftovers: &mut Leftovers,
) -> anyhow::Result<Vec<(load::Backend, Vec<restore::RefillSample>)>> {
    let records = options
        .restore_records
        .map_or(if options.quick { 2_000 } else { 100_000 }, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        });
    let repetitions = if options.quick { 1 } else { 3 };
    let dir = tempfile::Builder::new()
        .prefix("hiscale-bench-restore-")
        .tempdir()
        .context("creating a temporary directory for SQLite")?;
    let sqlite = |name: &str| format!("sqlite://{}/{name}.db", dir.path().display());
    let owners: Vec<String> = (0..repetitions)
        .map(|n| sqlite(&format!("owner-{n}")))
        .collect();
    let mut results = Vec::new();
    let samples = restore::run(
        load::Backend::Sqlite,
        records,
        repetitions,
        &sqlite("copy"),
        &owners,
    )
    .await;
    leftovers.sqlite_dir = Some(dir);
    results.push((load::Backend::Sqlite, samples?));
    if let Some(server) = server {
        let copy = leftovers.postgres_database(server, "restore_copy").await?;
        let mut owners = Vec::new();
        for n in 0..repetitions {
            owners.push(
                leftovers
                    .postgres_database(server, &format!("restore_owner{n}"))
                    .await?,
            );
        }
        let samples = restore::run(
            load::Backend::Postgres,
            records,
            repetitions,
            &copy,
            &owners,
        )
        .await?;
        results.push((load::Backend::Postgres, samples));
    }
    Ok(results)
}

async fn measure(
    plan: Plan,
    server: Option<&str>,
    pg_bin: Option<std::path::PathBuf>,
    leftovers: &mut Leftovers,
) -> anyhow::Result<Report> {
    let mut report = Report::new(plan);

    let dir = tempfile::Builder::new()
        .prefix("hiscale-bench-")
        .tempdir()
        .context("creating a temporary directory for SQLite")?;
    let sqlite_dir = dir.path().to_owned();
    leftovers.sqlite_dir = Some(dir);

    if plan.http {
        http_and_allocation(plan, server, &sqlite_dir, leftovers, &mut report).await?;
    }
    if let Some(tombstones) = plan.purge {
        let url = format!("sqlite://{}/purge.db", sqlite_dir.display());
        report.purge = Some(purge::run(&url, tombstones).await?);
    }
    if let Some(replication) = plan.replication {
        let sqlite = |name: &str| format!("sqlite://{}/{name}.db", sqlite_dir.display());
        let databases = Databases {
            owner: sqlite("replication-owner"),
            copies: (0..replication::SYNCS_PER_REPETITION * replication.repetitions)
                .map(|run| sqlite(&format!("replication-copy-{run}")))
                .collect(),
            scratch: sqlite("replication-scratch"),
        };
        let run = replication::run(load::Backend::Sqlite, replication, &databases).await?;
        report.replication.push(run);
        if let Some(bin) = pg_bin {
            own_clusters(replication, &bin, &mut report).await?;
        } else if let Some(server) = server {
            let mut copies = Vec::new();
            for run in 0..replication::SYNCS_PER_REPETITION * replication.repetitions {
                copies.push(
                    leftovers
                        .postgres_database(server, &format!("copy{run}"))
                        .await?,
                );
            }
            let databases = Databases {
                owner: leftovers.postgres_database(server, "owner").await?,
                copies,
                scratch: leftovers.postgres_database(server, "steps").await?,
            };
            report.replication_postgres = Some(alloc::server_settings(&databases.owner).await?);
            let run = replication::run(load::Backend::Postgres, replication, &databases).await?;
            report.replication.push(run);
        }
    }
    Ok(report)
}

/// Starts two durable clusters (the first with `wal_level = logical`), runs HiScale's
/// PostgreSQL → PostgreSQL replication across them (owner on the first, copy on the second),
/// then the logical replication reference of the same rows; both clusters are removed after.
async fn own_clusters(
    replication: ReplicationPlan,
    bin: &std::path::Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!(
        "postgres: starting two durable clusters ({}) for PostgreSQL → PostgreSQL",
        bin.display()
    );
    let publisher_bin = bin.to_owned();
    let publisher = cluster::blocking(move || {
        cluster::Cluster::start(
            &publisher_bin,
            "publisher",
            &[
                ("wal_level", "logical"),
                ("max_wal_senders", "10"),
                ("max_replication_slots", "10"),
            ],
        )
    })
    .await?;
    let subscriber_bin = bin.to_owned();
    let subscriber =
        cluster::blocking(move || cluster::Cluster::start(&subscriber_bin, "subscriber", &[]))
            .await?;
    let (first, second) = (publisher.server_url(), subscriber.server_url());
    let mut copies = Vec::new();
    for run in 0..replication::SYNCS_PER_REPETITION * replication.repetitions {
        copies.push(
            hiscale::store::ensure_postgres_database(&second, &format!("hs_bench_copy{run}"))
                .await?,
        );
    }
    let databases = Databases {
        owner: hiscale::store::ensure_postgres_database(&first, "hs_bench_owner").await?,
        copies,
        scratch: hiscale::store::ensure_postgres_database(&second, "hs_bench_steps").await?,
    };
    report.replication_postgres = Some(alloc::server_settings(&databases.owner).await?);
    let run = replication::run(load::Backend::Postgres, replication, &databases).await?;
    report.replication.push(run);
    let reference = logical::run(
        &first,
        publisher.port(),
        &second,
        replication.customers,
        replication.repetitions,
        logical::LagPlan {
            write_rate: replication.write_rate,
            seconds: replication.lag_seconds,
        },
    )
    .await?;
    report.logical = Some(reference);
    report.writes =
        Some(writes::measure(&first, replication.chunk_seconds, replication.repetitions).await?);
    // Stopping a cluster blocks (pg_ctl): off the runtime's threads.
    cluster::blocking(move || {
        drop(publisher);
        drop(subscriber);
        Ok(())
    })
    .await
}

/// The registration unit's reads and writes on each backend, then version allocation.
async fn http_and_allocation(
    plan: Plan,
    server: Option<&str>,
    sqlite_dir: &std::path::Path,
    leftovers: &mut Leftovers,
    report: &mut Report,
) -> anyhow::Result<()> {
    let sqlite_url = format!("sqlite://{}/registration.db", sqlite_dir.display());
    let mut units = Vec::new();
    eprintln!("sqlite: starting the registration unit");
    units.push(Unit::start(load::Backend::Sqlite, &sqlite_url).await?);

    let normal_url = format!("sqlite://{}/registration-normal.db", sqlite_dir.display());
    eprintln!("sqlite: starting a registration unit with synchronous=NORMAL");
    let mut normal =
        Unit::start_sqlite(&normal_url, "registration-normal", SqliteSync::Normal).await?;

    let mut postgres_url = None;
    if let Some(server) = server {
        let url = leftovers.postgres_database(server, "http").await?;
        report.postgres = Some(alloc::server_settings(&url).await?);
        eprintln!("postgres: starting the registration unit");
        units.push(Unit::start(load::Backend::Postgres, &url).await?);
        postgres_url = Some(url);
    }

    for unit in &mut units {
        eprintln!(
            "{}: creating {} customers",
            unit.backend.label(),
            plan.customers
        );
        unit.seed(plan.customers).await?;
    }
    eprintln!(
        "sqlite synchronous=NORMAL: creating {} customers",
        plan.customers
    );
    normal.seed(plan.customers).await?;

    let mut uncached = Vec::new();
    for (unit, url) in units
        .iter()
        .zip(std::iter::once(sqlite_url.as_str()).chain(postgres_url.as_deref()))
    {
        eprintln!(
            "{}: starting a second registration unit without the read cache",
            unit.backend.label()
        );
        uncached.push(Unit::start_uncached(unit, url).await?);
    }

    let outcome = http_measurements(plan, &units, &uncached, &normal, report).await;
    for unit in units.into_iter().chain(uncached) {
        unit.stop().await;
    }
    normal.stop().await;
    outcome?;

    if let Some(url) = postgres_url {
        report.allocation = Some(alloc::compare(plan, &url).await?);
    }
    Ok(())
}

/// Whose PUT samples a write run adds to.
#[derive(Debug, Clone, Copy)]
enum Writes {
    Of(load::Backend),
    /// The SQLite unit whose store runs with `synchronous = NORMAL`.
    SqliteNormal,
}

/// GET then PUT, each repeated, alternating backends within a repetition; the PUTs also run
/// on `normal` (SQLite, `synchronous = NORMAL`) next to the SQLite unit, in turns first and
/// second so that neither always runs after the other.
/// The GETs also run on `uncached` (a unit on the same database without the read cache) and
/// against `/heartbeat`, in rotating order within each repetition.
async fn http_measurements(
    plan: Plan,
    units: &[Unit],
    uncached: &[Unit],
    normal: &Unit,
    report: &mut Report,
) -> anyhow::Result<()> {
    for (unit, plain) in units.iter().zip(uncached) {
        eprintln!("{}: warm-up", unit.backend.label());
        unit.reads(READERS, plan.warm_up).await?;
        plain.reads(READERS, plan.warm_up).await?;
        unit.writes(WRITERS, plan.warm_up).await?;
    }
    eprintln!("sqlite synchronous=NORMAL: warm-up");
    normal.writes(WRITERS, plan.warm_up).await?;
    for run in 1..=plan.repetitions {
        for (unit, plain) in units.iter().zip(uncached) {
            let label = unit.backend.label();
            eprintln!(
                "{label}: GET (cached, uncached, /heartbeat) run {run}/{}…",
                plan.repetitions
            );
            for turn in 0..3 {
                match (turn + run) % 3 {
                    0 => {
                        let sample = unit.reads(READERS, plan.duration).await?;
                        report.http_mut(unit.backend).reads.push(sample);
                    }
                    1 => {
                        let sample = plain.reads(READERS, plan.duration).await?;
                        report.http_mut(unit.backend).reads_uncached.push(sample);
                    }
                    _ => {
                        let sample = unit.heartbeats(READERS, plan.duration).await?;
                        report.http_mut(unit.backend).heartbeats.push(sample);
                    }
                }
            }
        }
    }
    let mut order: Vec<(&Unit, Writes)> = units
        .iter()
        .map(|unit| (unit, Writes::Of(unit.backend)))
        .collect();
    // `units` starts with SQLite (FULL); NORMAL goes next to it.
    order.insert(1, (normal, Writes::SqliteNormal));
    for run in 1..=plan.repetitions {
        if run > 1 {
            order.swap(0, 1);
        }
        for &(unit, writes) in &order {
            let label = match writes {
                Writes::Of(backend) => backend.label(),
                Writes::SqliteNormal => "sqlite synchronous=NORMAL",
            };
            eprintln!("{label}: PUT run {run}/{}…", plan.repetitions);
            let sample = unit.writes(WRITERS, plan.duration).await?;
            match writes {
                Writes::Of(backend) => report.http_mut(backend).writes.push(sample),
                Writes::SqliteNormal => report.sqlite_normal_writes.push(sample),
            }
        }
    }
    Ok(())
}

/// `hs_bench_<pid>_<nanoseconds>`: unique enough for one machine, and a plain identifier.
fn unique_database_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() % 1_000_000_000_000);
    format!("hs_bench_{}_{nanos}", std::process::id())
}
