//! `RESULTS.md` (in `--results-dir`, `docs/bench` by default): the figures as one
//! Markdown table (figure, HiScale, reference, ratio, goal) with the durability settings of
//! both sides, the machine, the date and the bench's parameters, so that a run's results can
//! be committed and read without the terminal it printed to.
//!
//! The numbers are the text report's own medians (`report::summarise`, the syncs' medians,
//! the lag's percentiles): this module only lays them out. A figure this run did not measure
//! gets a row that says so and why; no number is ever made up for it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::alloc::ServerSettings;
use super::load::{Backend, Sample};
use super::plots::Plot;
use super::report::{HttpResults, Report, summarise};
use super::{READERS, WRITERS};

/// The file's name in the results directory.
pub(super) const FILE: &str = "RESULTS.md";

/// Figure 6's goal: peak resident memory of the whole process, in bytes (256 MB).
const RSS_GOAL_BYTES: f64 = 256.0e6;

/// What the run was, besides its numbers.
#[derive(Debug, Clone)]
pub(super) struct RunContext {
    /// UTC, to the minute.
    pub(super) date: String,
    /// `/proc/cpuinfo`'s first model name.
    pub(super) cpu: String,
    pub(super) cores: usize,
    /// The command line, program name without its directory.
    pub(super) command: String,
}

impl RunContext {
    /// This process, now.
    pub(super) fn now() -> Self {
        let now = time::OffsetDateTime::now_utc();
        let mut args = std::env::args();
        let program = args
            .next()
            .map(|arg| {
                Path::new(&arg)
                    .file_name()
                    .map_or(arg.clone(), |name| name.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "hiscale".into());
        Self {
            date: format!(
                "{}-{:02}-{:02} {:02}:{:02} UTC",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute()
            ),
            cpu: cpu_model().unwrap_or_else(|| "unknown CPU model".into()),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            command: std::iter::once(program)
                .chain(args)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// The first `model name` of `/proc/cpuinfo` (Linux on x86 and most others); `None` where
/// the file or the line is missing.
fn cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .filter(|model| !model.is_empty())
}

/// Writes `dir/RESULTS.md` (the directory must exist); answers its path.
pub(super) fn write(
    dir: &Path,
    report: &Report,
    context: &RunContext,
    plots: &[Plot],
) -> anyhow::Result<PathBuf> {
    let path = dir.join(FILE);
    std::fs::write(&path, markdown(report, context, plots))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// One row of the table.
#[derive(Debug)]
struct Row {
    figure: String,
    hiscale: String,
    reference: String,
    ratio: String,
    goal: String,
}

impl Row {
    /// A figure this run did not measure, with the reason.
    fn not_measured(figure: impl Into<String>, why: &str) -> Self {
        Self {
            figure: figure.into(),
            hiscale: format!("not measured ({why})"),
            reference: "—".into(),
            ratio: "—".into(),
            goal: "—".into(),
        }
    }
}

/// The goal's text with whether this run met it.
fn goal(text: &str, met: bool) -> String {
    format!("{text} ({})", if met { "met" } else { "not met" })
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    }
}

/// The whole file.
pub(super) fn markdown(report: &Report, context: &RunContext, plots: &[Plot]) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_markdown(&mut out, report, context, plots);
    out
}

fn write_markdown(
    out: &mut String,
    report: &Report,
    context: &RunContext,
    plots: &[Plot],
) -> std::fmt::Result {
    writeln!(out, "# HiScale benchmark results")?;
    writeln!(out)?;
    writeln!(
        out,
        "Written by `hiscale bench` on {}: {} CPU(s), {}. Every number is the median of the \
         repetitions listed under Parameters, the same medians the bench prints as text tables; \
         a ratio is HiScale ÷ reference, measured in the same run on the same machine. Load \
         client and units share one process, so these are ratios for one machine, not capacity \
         figures.",
        context.date, context.cores, context.cpu
    )?;
    writeln!(out)?;
    writeln!(out, "| figure | HiScale | reference | ratio | goal |")?;
    writeln!(out, "| --- | --- | --- | --- | --- |")?;
    for row in rows(report) {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            row.figure, row.hiscale, row.reference, row.ratio, row.goal
        )?;
    }
    writeln!(out)?;
    if report
        .logical
        .as_ref()
        .is_some_and(|logical| !logical.lags_ms.is_empty())
    {
        writeln!(
            out,
            "Figure 2's reference updates distinct customers at the same rate on the logical \
             replication publisher (one durable commit each) and reads the subscriber's \
             new versions every 1 ms, so its lags are late by up to 1 ms; HiScale's watcher \
             long-polls the copy's feed."
        )?;
    } else {
        writeln!(
            out,
            "Figure 2 has no reference measured in this run (it comes with the logical \
             replication reference), so its ratio stays “—”."
        )?;
    }
    lag_and_memory_notes(out, report)?;
    durability(out, report)?;
    parameters(out, report, context)?;
    if !plots.is_empty() {
        writeln!(out)?;
        writeln!(out, "## Plots")?;
        for plot in plots {
            writeln!(out)?;
            writeln!(out, "{}", plot.description)?;
            writeln!(out)?;
            writeln!(out, "![{}]({})", plot.title, plot.file)?;
        }
    }
    Ok(())
}

/// Every figure's rows, in the order.
fn rows(report: &Report) -> Vec<Row> {
    let mut rows = Vec::new();
    let replication_skipped = report.plan.replication.is_none();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        rows.push(figure_one(report, backend, replication_skipped));
    }
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let figure = format!("2: long-poll lag, {}", backend_name(backend));
        let reference = report
            .logical
            .as_ref()
            .and_then(|logical| Some((logical.lag_at(0.99)?, logical.lag_at(0.5)?)));
        rows.push(match report.run_of(backend) {
            Some(run) => {
                let ours = run.lag.lag_at(0.99);
                let hiscale = format!(
                    "p99 {ours:.1} ms (p50 {:.1} ms, {} writes)",
                    run.lag.lag_at(0.50),
                    run.lag.lags_ms.len()
                );
                match reference {
                    Some((p99, p50)) if p99 > 0.0 => Row {
                        figure,
                        hiscale,
                        reference: format!(
                            "p99 {p99:.1} ms (p50 {p50:.1} ms; logical replication, the same \
                             write rate)"
                        ),
                        ratio: format!("{:.2}×", ours / p99),
                        goal: goal("p99 ≤ 2× the reference's", ours <= 2.0 * p99),
                    },
                    _ => Row {
                        figure,
                        hiscale,
                        reference: "not measured".into(),
                        ratio: "—".into(),
                        goal: "p99 ≤ 2× the reference's (no reference measured)".into(),
                    },
                }
            }
            None => Row::not_measured(figure, replication_reason(backend, replication_skipped)),
        });
    }
    rows.push(figure_three(report));
    for backend in [Backend::Sqlite, Backend::Postgres] {
        rows.push(figure_four(report, backend));
    }
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for json in [true, false] {
            rows.push(figure_five(report, backend, json, replication_skipped));
        }
    }
    for backend in [Backend::Sqlite, Backend::Postgres] {
        rows.push(compressed_sync(report, backend, replication_skipped));
    }
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let figure = format!(
            "6: peak RSS during fill and sync, {} (whole process: owner, copy, bench)",
            backend_name(backend)
        );
        rows.push(match report.run_of(backend) {
            Some(run) => match run.sync.peak_rss_kib {
                Some(kib) => {
                    let bytes = kib as f64 * 1024.0;
                    Row {
                        figure,
                        hiscale: format!(
                            "{:.0} MB ({:.0} MiB)",
                            bytes / 1.0e6,
                            bytes / (1024.0 * 1024.0)
                        ),
                        reference: "—".into(),
                        ratio: "—".into(),
                        goal: goal("≤ 256 MB", bytes <= RSS_GOAL_BYTES),
                    }
                }
                None => Row::not_measured(figure, "/proc/self/status has no VmHWM here"),
            },
            None => Row::not_measured(figure, replication_reason(backend, replication_skipped)),
        });
    }
    for backend in [Backend::Sqlite, Backend::Postgres] {
        rows.push(figure_seven(report, backend, replication_skipped));
    }
    rows
}

/// Figure 3: HiScale's gap-free writes against raw single-row inserts, durable PostgreSQL.
fn figure_three(report: &Report) -> Row {
    let figure = format!(
        "3: PUT address.home vs raw single-row INSERT, PostgreSQL (durable), writes/s ({} clients)",
        super::writes::CLIENTS
    );
    let Some(writes) = &report.writes else {
        return Row::not_measured(
            figure,
            "needs the bench's own durable clusters: --pg-bin / HISCALE_PG_BIN without \
             --skip-reference, and replication",
        );
    };
    rate_row(
        figure,
        (&writes.rest, &writes.raw),
        "raw INSERT, same database",
        0.7,
    )
}

/// A row of HiScale's median rate against the reference's, measured side by side, with the
/// goal "ratio ≥ `least`".
fn rate_row(figure: String, (ours, theirs): (&[Sample], &[Sample]), what: &str, least: f64) -> Row {
    match (summarise(ours), summarise(theirs)) {
        (Some(ours), Some(theirs)) if theirs.rate > 0.0 => {
            let ratio = ours.rate / theirs.rate;
            Row {
                figure,
                hiscale: format!("{:.0}", ours.rate),
                reference: format!("{:.0} ({what})", theirs.rate),
                ratio: format!("{ratio:.2}×"),
                goal: goal(&format!("≥ {least:.1}×"), ratio >= least),
            }
        }
        _ => Row::not_measured(figure, "no samples"),
    }
}

/// Figure 1's sync again with gzip-compressed chunks, against the same uncompressed run.
fn compressed_sync(report: &Report, backend: Backend, skipped: bool) -> Row {
    let name = backend_name(backend);
    let figure = format!("1 (gzip): initial sync {name} → {name}, customers/s");
    let Some(run) = report.run_of(backend) else {
        return Row::not_measured(figure, replication_reason(backend, skipped));
    };
    Row {
        figure,
        hiscale: format!("{:.0}", run.sync.compressed_per_second()),
        reference: format!(
            "{:.0} (the same sync uncompressed)",
            run.sync.records_per_second()
        ),
        ratio: format!("{:.2}×", run.sync.compression_ratio()),
        goal: "report (its own row, beside the uncompressed rate)".into(),
    }
}

/// Figure 7: the bytes a record costs on the wire during the initial sync, against what
/// logical replication's table sync sends (its `COPY`) for the same columns.
fn figure_seven(report: &Report, backend: Backend, skipped: bool) -> Row {
    let name = backend_name(backend);
    let figure = format!("7: bytes on the wire per record, initial sync from {name}, gzip (plain)");
    let Some(run) = report.run_of(backend) else {
        return Row::not_measured(figure, replication_reason(backend, skipped));
    };
    let (Some(plain), Some(gzip)) = (
        run.steps.bytes_per_record(),
        run.steps.gzip_bytes_per_record(),
    ) else {
        return Row::not_measured(figure, "no records");
    };
    let hiscale = format!("{gzip:.0} ({plain:.0})");
    match &report.logical {
        Some(reference) if reference.copy_bytes_per_record > 0.0 => {
            let ratio = gzip / reference.copy_bytes_per_record;
            Row {
                figure,
                hiscale,
                reference: format!(
                    "{:.0} (logical replication's COPY, uncompressed)",
                    reference.copy_bytes_per_record
                ),
                ratio: format!("{ratio:.2}×"),
                goal: goal("report; ≤ 1.0×", ratio <= 1.0),
            }
        }
        _ => Row {
            figure,
            hiscale,
            reference: "not measured (--skip-reference, or no PostgreSQL server binaries)".into(),
            ratio: "—".into(),
            goal: "report; ≤ 1.0× (no reference measured)".into(),
        },
    }
}

/// Why a backend's replication figures are missing.
fn replication_reason(backend: Backend, skipped: bool) -> &'static str {
    match (skipped, backend) {
        (true, _) => "--skip-replication",
        (false, Backend::Sqlite) => "no run",
        (false, Backend::Postgres) => {
            "no PostgreSQL: --pg-bin / HISCALE_PG_BIN without --skip-reference, or --postgres / \
             HISCALE_TEST_POSTGRES"
        }
    }
}

/// Figure 1: the initial sync against PostgreSQL's logical replication of the same rows.
fn figure_one(report: &Report, backend: Backend, skipped: bool) -> Row {
    let name = backend_name(backend);
    let figure = format!("1: initial sync {name} → {name}, customers/s");
    let Some(run) = report.run_of(backend) else {
        return Row::not_measured(figure, replication_reason(backend, skipped));
    };
    let rate = run.sync.records_per_second();
    let hiscale = format!("{rate:.0}");
    match &report.logical {
        Some(reference) => {
            let median = reference.median_rate();
            let ratio = if median > 0.0 { rate / median } else { 0.0 };
            Row {
                figure,
                hiscale,
                reference: format!(
                    "{median:.0} (PostgreSQL {} logical replication)",
                    reference.publisher.version
                ),
                ratio: format!("{ratio:.2}×"),
                goal: goal("≥ 1.0×", median > 0.0 && ratio >= 1.0),
            }
        }
        None => Row {
            figure,
            hiscale,
            reference: "not measured (--skip-reference, or no PostgreSQL server binaries: \
                        --pg-bin / HISCALE_PG_BIN)"
                .into(),
            ratio: "—".into(),
            goal: "≥ 1.0× (no reference measured)".into(),
        },
    }
}

/// Figure 4: a single resource's GET against `/heartbeat` at the same unit.
fn figure_four(report: &Report, backend: Backend) -> Row {
    let figure = format!(
        "4: GET /customers/{{id}} vs GET /heartbeat, {}, req/s ({READERS} clients)",
        backend_name(backend)
    );
    let http: &HttpResults = match backend {
        Backend::Sqlite => &report.sqlite,
        Backend::Postgres => &report.postgres_http,
    };
    match (summarise(&http.reads), summarise(&http.heartbeats)) {
        (Some(_), Some(heartbeats)) if heartbeats.rate > 0.0 => {
            rate_row(figure, (&http.reads, &http.heartbeats), "/heartbeat", 0.8)
        }
        _ if !report.plan.http => Row::not_measured(figure, "--replication-only"),
        _ => Row::not_measured(
            figure,
            match backend {
                Backend::Sqlite => "no samples",
                Backend::Postgres => {
                    "no PostgreSQL server given: --postgres / HISCALE_TEST_POSTGRES"
                }
            },
        ),
    }
}

/// Figure 5: the feed's chunks/s against the same chunk pre-serialised.
fn figure_five(report: &Report, backend: Backend, json: bool, skipped: bool) -> Row {
    let format = if json { "JSON" } else { "XML" };
    let figure = format!(
        "5: feed chunks/s of {} records, {format}, {} ({} clients)",
        super::chunks::CHUNK_LIMIT,
        backend_name(backend),
        super::chunks::CLIENTS
    );
    let Some(run) = report.run_of(backend) else {
        return Row::not_measured(figure, replication_reason(backend, skipped));
    };
    let (feed, reference) = if json {
        (&run.chunks.json, &run.chunks.json_reference)
    } else {
        (&run.chunks.xml, &run.chunks.xml_reference)
    };
    rate_row(figure, (feed, reference), "pre-serialised", 0.6)
}

fn settings(settings: &ServerSettings) -> String {
    format!(
        "PostgreSQL {}, fsync={}, synchronous_commit={}, full_page_writes={}, \
         wal_sync_method={}{}",
        settings.version,
        settings.fsync,
        settings.synchronous_commit,
        settings.full_page_writes,
        settings.wal_sync_method,
        if settings.durable() {
            ""
        } else {
            " (commits NOT durable: commit costs are understated)"
        }
    )
}

fn durability(out: &mut String, report: &Report) -> std::fmt::Result {
    writeln!(out)?;
    writeln!(out, "## Durability")?;
    writeln!(out)?;
    writeln!(
        out,
        "- SQLite (every SQLite figure): a temporary file, journal_mode=WAL, synchronous=FULL \
         (one fsync per write transaction: durable across a power cut). synchronous=NORMAL \
         appears only in the text report's write comparison, to price that fsync."
    )?;
    match &report.postgres {
        Some(server) => writeln!(out, "- PostgreSQL, HTTP (figure 4): {}", settings(server))?,
        None => writeln!(out, "- PostgreSQL, HTTP (figure 4): not measured")?,
    }
    match &report.replication_postgres {
        Some(server) => writeln!(
            out,
            "- PostgreSQL, replication (figures 1, 2, 5, 6, 7{}): {}",
            if report.logical.is_some() {
                "; and 3), the bench's own two clusters (owner and figure 3 on the first, copy \
                 on the second"
            } else {
                ""
            },
            settings(server)
        )?,
        None => writeln!(out, "- PostgreSQL, replication: not measured")?,
    }
    match &report.logical {
        Some(reference) => writeln!(
            out,
            "- Reference (figures 1, 2 and 7), PostgreSQL logical replication across the same \
             two clusters, subscription WITH (synchronous_commit = on): publisher {}; subscriber \
             {}",
            settings(&reference.publisher),
            settings(&reference.subscriber)
        ),
        None => writeln!(out, "- Reference (figures 1, 2 and 7): not measured"),
    }
}

fn parameters(out: &mut String, report: &Report, context: &RunContext) -> std::fmt::Result {
    let plan = &report.plan;
    writeln!(out)?;
    writeln!(out, "## Parameters")?;
    writeln!(out)?;
    writeln!(out, "- command: `{}`", context.command)?;
    if plan.http {
        writeln!(
            out,
            "- HTTP (figure 4): {} customers; {} repetition(s) × {} s per measurement after a \
             {} ms warm-up; {READERS} reading clients, {WRITERS} writers",
            plan.customers,
            plan.repetitions,
            plan.duration.as_secs(),
            plan.warm_up.as_millis()
        )?;
    } else {
        writeln!(out, "- HTTP (figure 4): not measured (--replication-only)")?;
    }
    match plan.replication {
        Some(replication) => {
            writeln!(
                out,
                "- replication (figures 1, 2, 5, 6, 7): {} customers in the owner; {} \
                 repetition(s) of the initial sync (each into a fresh copy: pipelined, beside as \
                 many without pipelining and as many pipelined with gzip-compressed chunks), of \
                 the logical replication reference and of figure 5 ({} s each); figure 7 counts \
                 the chunks of a separate pass over the whole feed, as rendered and as gzip sends \
                 them",
                replication.customers,
                replication.repetitions,
                replication.chunk_seconds.as_secs()
            )?;
            writeln!(
                out,
                "- lag (figure 2): PUT address.bill at {} writes/s for {} s while a watcher \
                 long-polls the copy's feed; lag = version first on the copy's feed − PUT \
                 response; the reference updates at the same rate for as long\n\
                 - writes (figure 3): {} clients on each side, {} s per run, as many runs as the \
                 replication's repetitions, alternating",
                replication.write_rate,
                replication.lag_seconds,
                super::writes::CLIENTS,
                replication.chunk_seconds.as_secs()
            )
        }
        None => writeln!(out, "- replication: not measured (--skip-replication)"),
    }
}

/// Under the table: where figure 2's lag arises (the owner's own feed against the copy's) and
/// what figure 6's peak is made of (what the process held before the run, and what the fill
/// and the syncs added to it), per backend.
fn lag_and_memory_notes(out: &mut impl std::fmt::Write, report: &Report) -> std::fmt::Result {
    for run in &report.replication {
        let label = backend_name(run.backend);
        let lag = &run.lag;
        if !lag.owner_lags_ms.is_empty() {
            writeln!(out)?;
            writeln!(
                out,
                "Figure 2, {label}: the same writes showed on the owner's own feed (long-polled \
                 beside the copy's) after p50 {:.1} ms, p99 {:.1} ms; on the copy's after p50 \
                 {:.1} ms, p99 {:.1} ms.",
                lag.owner_lag_at(0.50),
                lag.owner_lag_at(0.99),
                lag.lag_at(0.50),
                lag.lag_at(0.99)
            )?;
        }
        let figure: Vec<_> = run
            .sync
            .memory
            .iter()
            .filter(|phase| phase.in_figure)
            .collect();
        let (Some(before), Some(added)) = (
            run.sync.resident_before_kib,
            figure
                .iter()
                .map(|phase| phase.peak_kib.saturating_sub(phase.start_kib))
                .max(),
        ) else {
            continue;
        };
        writeln!(out)?;
        writeln!(
            out,
            "Figure 6, {label}: the process held {:.0} MiB before this backend's run (what earlier \
             phases of the bench left, which the allocator keeps for reuse); the fill and the \
             syncs added at most {:.0} MiB above where each began.",
            before as f64 / 1024.0,
            added as f64 / 1024.0
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of a run that measured nothing (as a run without any backend would).
    fn empty_report(args: &[&str]) -> Report {
        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            bench: super::super::BenchOptions,
        }
        let command = <Command as clap::Parser>::try_parse_from(
            std::iter::once("bench").chain(args.iter().copied()),
        )
        .expect("the options parse");
        Report::new(super::super::Plan::of(&command.bench))
    }

    #[test]
    fn figures_not_measured_get_rows_that_say_so_and_no_numbers() {
        let context = RunContext {
            date: "2026-01-01 00:00 UTC".into(),
            cpu: "a CPU".into(),
            cores: 2,
            command: "hiscale bench".into(),
        };
        let text = markdown(&empty_report(&["--quick"]), &context, &[]);
        assert!(text.contains("| figure | HiScale | reference | ratio | goal |"));
        let rows: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("| ") && !line.starts_with("| figure"))
            .filter(|line| !line.starts_with("| ---"))
            .collect();
        for figure in ["1", "1 (gzip)", "2", "3", "4", "5", "6", "7"] {
            assert!(
                rows.iter()
                    .any(|row| row.starts_with(&format!("| {figure}:"))
                        || row.starts_with(&format!("| {figure} |"))),
                "no row for figure {figure} in:\n{text}"
            );
        }
        for row in &rows {
            assert!(row.contains("not measured"), "{row}");
            assert!(!row.contains('×'), "a ratio without a measurement: {row}");
        }
        assert!(text.contains("2 CPU(s), a CPU"));
        assert!(text.contains("- command: `hiscale bench`"));
        assert!(!text.contains("## Plots"));
    }

    #[test]
    fn the_cpu_model_is_read_or_left_out() {
        // Either a non-empty model or none; never an empty string in the file.
        assert!(cpu_model().is_none_or(|model| !model.is_empty()));
    }

    #[test]
    fn a_goal_says_whether_it_was_met() {
        assert_eq!(goal("≥ 1.0×", true), "≥ 1.0× (met)");
        assert_eq!(goal("≥ 1.0×", false), "≥ 1.0× (not met)");
    }
}
