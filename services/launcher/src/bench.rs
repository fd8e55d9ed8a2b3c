//! `hiscale bench`: micro-benchmarks of the REST edge and of the store's version allocation,
//! measured side by side in one run and printed as one table of medians and ratios.
//!
//! * HTTP: the registration unit runs in this process on `127.0.0.1:0`, once per backend
//!   (SQLite in a temporary file always, PostgreSQL in a fresh database when a server is
//!   given), and is driven over real loopback HTTP/1.1 with keep-alive: `GET /customers/{id}`
//!   with 16 clients, `PUT /customers/{id}/address.home` with 8 writers on distinct ids.
//! * Version allocation (PostgreSQL only): a counter row locked until commit versus what the
//!   store does (transaction id first, then a sequence), with 8 writers and with 1.
//!
//! Every measurement runs for a fixed time and is repeated; the table shows medians. Runs of
//! the backends alternate so that drift on a shared machine hits both alike. This is a
//! micro-benchmark for judging ratios on one machine, not a capacity figure: client and unit
//! share one process and its runtime.

mod alloc;
mod load;
mod report;

use std::time::Duration;

use anyhow::Context;

use load::Unit;
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
    /// A fast smoke run: 1 s per measurement, 1 repetition, 50 customers.
    #[arg(long, conflicts_with = "seconds")]
    pub quick: bool,
}

/// How much to measure, derived from the options.
#[derive(Debug, Clone, Copy)]
struct Plan {
    duration: Duration,
    repetitions: usize,
    customers: usize,
    warm_up: Duration,
}

/// Concurrent HTTP clients reading single resources.
const READERS: usize = 16;
/// Concurrent HTTP writers, each on its own customers.
const WRITERS: usize = 8;
/// Concurrent writers in the allocation comparison (besides the 1-writer runs).
const ALLOC_WRITERS: usize = 8;

impl Plan {
    fn of(options: &BenchOptions) -> Self {
        if options.quick {
            Self {
                duration: Duration::from_secs(1),
                repetitions: 1,
                customers: 50,
                warm_up: Duration::from_millis(200),
            }
        } else {
            Self {
                duration: Duration::from_secs(options.seconds),
                repetitions: 3,
                customers: 200,
                warm_up: Duration::from_millis(500),
            }
        }
    }
}

/// What must be removed at the end, however the run ends.
#[derive(Debug, Default)]
struct Leftovers {
    sqlite_dir: Option<tempfile::TempDir>,
    /// (server URL without trailing slash, database name)
    postgres_database: Option<(String, String)>,
}

impl Leftovers {
    async fn remove(&mut self) {
        if let Some(dir) = self.sqlite_dir.take()
            && let Err(error) = dir.close()
        {
            eprintln!("bench: could not remove the SQLite temp directory: {error}");
        }
        if let Some((server, database)) = self.postgres_database.take() {
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
    let outcome = tokio::select! {
        outcome = measure(plan, server.as_deref(), &mut leftovers) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    leftovers.remove().await;
    let report = outcome?;
    print!("{report}");
    Ok(())
}

async fn measure(
    plan: Plan,
    server: Option<&str>,
    leftovers: &mut Leftovers,
) -> anyhow::Result<Report> {
    let mut report = Report::new(plan);

    let dir = tempfile::Builder::new()
        .prefix("hiscale-bench-")
        .tempdir()
        .context("creating a temporary directory for SQLite")?;
    let sqlite_url = format!("sqlite://{}/registration.db", dir.path().display());
    leftovers.sqlite_dir = Some(dir);

    let mut units = Vec::new();
    eprintln!("sqlite: starting the registration unit");
    units.push(Unit::start(load::Backend::Sqlite, &sqlite_url).await?);

    if let Some(server) = server {
        let database = unique_database_name();
        leftovers.postgres_database = Some((server.to_owned(), database.clone()));
        eprintln!("postgres: creating database {database}");
        let url = hiscale::store::ensure_postgres_database(server, &database)
            .await
            .with_context(|| format!("creating database {database} on {server}"))?;
        report.postgres = Some(alloc::server_settings(&url).await?);
        eprintln!("postgres: starting the registration unit");
        units.push(Unit::start(load::Backend::Postgres, &url).await?);
    }

    for unit in &mut units {
        eprintln!(
            "{}: creating {} customers",
            unit.backend.label(),
            plan.customers
        );
        unit.seed(plan.customers).await?;
    }

    let outcome = http_measurements(plan, &units, &mut report).await;
    for unit in units {
        unit.stop().await;
    }
    outcome?;

    if let Some((server, database)) = &leftovers.postgres_database {
        let url = format!("{server}/{database}");
        report.allocation = Some(alloc::compare(plan, &url).await?);
    }
    Ok(report)
}

/// GET then PUT, each repeated, alternating backends within a repetition.
async fn http_measurements(plan: Plan, units: &[Unit], report: &mut Report) -> anyhow::Result<()> {
    for unit in units {
        eprintln!("{}: warm-up", unit.backend.label());
        unit.reads(READERS, plan.warm_up).await?;
        unit.writes(WRITERS, plan.warm_up).await?;
    }
    for run in 1..=plan.repetitions {
        for unit in units {
            eprintln!(
                "{}: GET run {run}/{}…",
                unit.backend.label(),
                plan.repetitions
            );
            let sample = unit.reads(READERS, plan.duration).await?;
            report.http_mut(unit.backend).reads.push(sample);
        }
    }
    for run in 1..=plan.repetitions {
        for unit in units {
            eprintln!(
                "{}: PUT run {run}/{}…",
                unit.backend.label(),
                plan.repetitions
            );
            let sample = unit.writes(WRITERS, plan.duration).await?;
            report.http_mut(unit.backend).writes.push(sample);
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
