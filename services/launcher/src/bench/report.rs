//! The results and the plain-text tables they print as.

use std::fmt;
use std::time::Duration;

use super::alloc::{Allocation, ServerSettings, Technique};
use super::load::{Backend, Sample};
use super::logical::LogicalResult;
use super::replication::ReplicationRun;
use super::{ALLOC_WRITERS, Plan, READERS, WRITERS};

#[derive(Debug, Default)]
pub(super) struct HttpResults {
    pub(super) reads: Vec<Sample>,
    /// The same GETs at a unit on the same database without the cache of rendered reads.
    pub(super) reads_uncached: Vec<Sample>,
    /// `GET /heartbeat` at the unit of `reads`.
    pub(super) heartbeats: Vec<Sample>,
    pub(super) writes: Vec<Sample>,
}

#[derive(Debug)]
pub(super) struct Report {
    pub(super) plan: Plan,
    pub(super) sqlite: HttpResults,
    pub(super) postgres_http: HttpResults,
    /// PUTs on the SQLite unit whose store runs with `synchronous = NORMAL`.
    pub(super) sqlite_normal_writes: Vec<Sample>,
    pub(super) postgres: Option<ServerSettings>,
    pub(super) allocation: Option<Allocation>,
    /// One run per backend measured, SQLite first.
    pub(super) replication: Vec<ReplicationRun>,
    /// The settings of the PostgreSQL server(s) replication ran on (the bench's own
    /// durable clusters when it started them).
    pub(super) replication_postgres: Option<ServerSettings>,
    /// PostgreSQL's logical replication of the same rows (figure 1's reference).
    pub(super) logical: Option<LogicalResult>,
    /// Figure 3: HiScale's writes against raw inserts on the bench's first durable cluster.
    pub(super) writes: Option<super::writes::WriteRates>,
    /// The tombstone purge on SQLite.
    pub(super) purge: Option<super::purge::PurgeSample>,
}

impl Report {
    pub(super) fn new(plan: Plan) -> Self {
        Self {
            plan,
            sqlite: HttpResults::default(),
            postgres_http: HttpResults::default(),
            sqlite_normal_writes: Vec::new(),
            postgres: None,
            allocation: None,
            replication: Vec::new(),
            replication_postgres: None,
            logical: None,
            writes: None,
            purge: None,
        }
    }

    pub(super) fn http_mut(&mut self, backend: Backend) -> &mut HttpResults {
        match backend {
            Backend::Sqlite => &mut self.sqlite,
            Backend::Postgres => &mut self.postgres_http,
        }
    }
}

/// Median, minimum and maximum of the rates, and medians of the latencies.
#[derive(Debug, Clone, Copy)]
pub(super) struct Summary {
    pub(super) rate: f64,
    low: f64,
    high: f64,
    p50: Duration,
    p99: Duration,
    runs: usize,
}

/// The medians every table shows (`results.rs` writes the same ones to Markdown).
pub(super) fn summarise(samples: &[Sample]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut rates: Vec<f64> = samples.iter().map(|s| s.per_second).collect();
    rates.sort_by(f64::total_cmp);
    let mut p50: Vec<Duration> = samples.iter().map(|s| s.p50).collect();
    let mut p99: Vec<Duration> = samples.iter().map(|s| s.p99).collect();
    p50.sort_unstable();
    p99.sort_unstable();
    let middle = rates.len() / 2;
    let rate = if rates.len().is_multiple_of(2) {
        (rates[middle - 1] + rates[middle]) / 2.0
    } else {
        rates[middle]
    };
    Some(Summary {
        rate,
        low: rates[0],
        high: rates[rates.len() - 1],
        p50: p50[middle],
        p99: p99[middle],
        runs: samples.len(),
    })
}

fn rate_cell(summary: Option<Summary>) -> String {
    match summary {
        None => "–".into(),
        Some(s) if s.runs > 1 => format!("{:.0} [{:.0}–{:.0}]", s.rate, s.low, s.high),
        Some(s) => format!("{:.0}", s.rate),
    }
}

fn latency_cell(summary: Option<Summary>) -> String {
    summary.map_or_else(
        || "–".into(),
        |s| format!("{} / {} ms", millis(s.p50), millis(s.p99)),
    )
}

fn millis(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.1}")
    }
}

/// `feed / reference = ratio×` of two sets of samples' medians.
fn chunk_ratio(feed: &[Sample], reference: &[Sample]) -> String {
    match (summarise(feed), summarise(reference)) {
        (Some(f), Some(r)) if r.rate > 0.0 => {
            format!("{:.0} / {:.0} = {:.2}×", f.rate, r.rate, f.rate / r.rate)
        }
        _ => "–".into(),
    }
}

fn ratio_cell(numerator: Option<Summary>, denominator: Option<Summary>) -> String {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d.rate > 0.0 => format!("{:.2}", n.rate / d.rate),
        _ => "–".into(),
    }
}

/// Writes rows as columns separated by ` | `, each padded to its widest cell.
fn table(f: &mut fmt::Formatter<'_>, rows: &[Vec<String>]) -> fmt::Result {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (index, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str(" | ");
            }
            line.push_str(cell);
            let pad = widths[c].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        writeln!(f, "{}", line.trim_end())?;
        if index == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            writeln!(f, "{}", rule.join("-|-"))?;
        }
    }
    Ok(())
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|cell| (*cell).to_owned()).collect()
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = &self.plan;
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        writeln!(f)?;
        if plan.http {
            writeln!(
                f,
                "hiscale bench: medians of {} run(s) × {} s after a {} ms warm-up; [min–max] of the runs",
                plan.repetitions,
                plan.duration.as_secs(),
                plan.warm_up.as_millis()
            )?;
        } else {
            writeln!(f, "hiscale bench: replication only")?;
        }
        writeln!(
            f,
            "machine: {cores} CPU(s); load client and units share this process and \
             its runtime; loopback HTTP/1.1 with keep-alive"
        )?;
        if plan.http {
            writeln!(
                f,
                "data: {} customers (person, addresses, bankaccount; no account), JSON v1",
                plan.customers
            )?;
        }
        writeln!(
            f,
            "sqlite: temporary file, journal_mode=WAL, synchronous=FULL (one fsync per write \
             transaction: durable across a power cut)"
        )?;
        match &self.postgres {
            Some(settings) => {
                writeln!(
                    f,
                    "postgres: {}, fsync={}, synchronous_commit={}, full_page_writes={}, \
                     wal_sync_method={}",
                    settings.version,
                    settings.fsync,
                    settings.synchronous_commit,
                    settings.full_page_writes,
                    settings.wal_sync_method
                )?;
                if !settings.durable() {
                    writeln!(
                        f,
                        "  NOTE: commits are NOT durable on this server, so commit costs (and the \
                         allocation ratio) are understated; for durable numbers run \
                         `HISCALE_PG_DURABLE=1 scripts/with-postgres cargo run --release -- bench`"
                    )?;
                }
            }
            // The HTTP measurements' server; replication describes its own clusters below.
            None if plan.http => writeln!(
                f,
                "postgres: not measured (give --postgres URL or HISCALE_TEST_POSTGRES, e.g. \
                 `scripts/with-postgres cargo run --release -- bench`)"
            )?,
            None => {}
        }
        if plan.http {
            self.http_tables(f)?;
        }
        if !self.replication.is_empty() {
            self.replication_table(f)?;
        }
        if let Some(purge) = &self.purge {
            writeln!(f, "\n{}", super::purge::Line(purge))?;
        }
        Ok(())
    }
}

impl Report {
    fn http_tables(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        let sqlite_reads = summarise(&self.sqlite.reads);
        let sqlite_writes = summarise(&self.sqlite.writes);
        let pg_reads = summarise(&self.postgres_http.reads);
        let pg_writes = summarise(&self.postgres_http.writes);
        let rows = vec![
            row(&["measurement", "sqlite", "postgres", "postgres/sqlite"]),
            vec![
                format!("GET /customers/{{id}} req/s ({READERS} clients)"),
                rate_cell(sqlite_reads),
                rate_cell(pg_reads),
                ratio_cell(pg_reads, sqlite_reads),
            ],
            vec![
                "  GET latency p50 / p99".into(),
                latency_cell(sqlite_reads),
                latency_cell(pg_reads),
                String::new(),
            ],
            vec![
                "  the same GETs without the read cache, req/s".into(),
                rate_cell(summarise(&self.sqlite.reads_uncached)),
                rate_cell(summarise(&self.postgres_http.reads_uncached)),
                String::new(),
            ],
            vec![
                "  GET with cache / without".into(),
                ratio_cell(sqlite_reads, summarise(&self.sqlite.reads_uncached)),
                ratio_cell(pg_reads, summarise(&self.postgres_http.reads_uncached)),
                String::new(),
            ],
            vec![
                "  GET /heartbeat req/s (same unit, same clients)".into(),
                rate_cell(summarise(&self.sqlite.heartbeats)),
                rate_cell(summarise(&self.postgres_http.heartbeats)),
                String::new(),
            ],
            vec![
                "  GET with cache / /heartbeat; without cache / /heartbeat".into(),
                format!(
                    "{}; {}",
                    ratio_cell(sqlite_reads, summarise(&self.sqlite.heartbeats)),
                    ratio_cell(
                        summarise(&self.sqlite.reads_uncached),
                        summarise(&self.sqlite.heartbeats)
                    )
                ),
                format!(
                    "{}; {}",
                    ratio_cell(pg_reads, summarise(&self.postgres_http.heartbeats)),
                    ratio_cell(
                        summarise(&self.postgres_http.reads_uncached),
                        summarise(&self.postgres_http.heartbeats)
                    )
                ),
                String::new(),
            ],
            vec![
                format!("PUT /customers/{{id}}/address.home writes/s ({WRITERS} writers)"),
                rate_cell(sqlite_writes),
                rate_cell(pg_writes),
                ratio_cell(pg_writes, sqlite_writes),
            ],
            vec![
                "  PUT latency p50 / p99".into(),
                latency_cell(sqlite_writes),
                latency_cell(pg_writes),
                String::new(),
            ],
        ];
        table(f, &rows)?;

        let normal_writes = summarise(&self.sqlite_normal_writes);
        if normal_writes.is_some() {
            writeln!(f)?;
            writeln!(
                f,
                "SQLite writes: synchronous FULL vs NORMAL (the PUTs above, {WRITERS} writers; \
                 FULL is the sqlite column above, NORMAL a second unit measured next to it in \
                 every repetition, in alternating order):"
            )?;
            let rows = vec![
                row(&["measurement", "FULL", "NORMAL", "FULL/NORMAL"]),
                vec![
                    "PUT /customers/{id}/address.home writes/s".into(),
                    rate_cell(sqlite_writes),
                    rate_cell(normal_writes),
                    ratio_cell(sqlite_writes, normal_writes),
                ],
                vec![
                    "  PUT latency p50 / p99".into(),
                    latency_cell(sqlite_writes),
                    latency_cell(normal_writes),
                    String::new(),
                ],
            ];
            table(f, &rows)?;
            writeln!(
                f,
                "  NORMAL is measured only to price durability: a power cut loses its last \
                 commits and the version counter with them, so exposed versions would be reused"
            )?;
        }

        if let Some(allocation) = &self.allocation {
            writeln!(f)?;
            writeln!(
                f,
                "version allocation on PostgreSQL, one INSERT per transaction, tx/s \
                 (fsync={}, synchronous_commit={}):",
                self.postgres.as_ref().map_or("?", |s| s.fsync.as_str()),
                self.postgres
                    .as_ref()
                    .map_or("?", |s| s.synchronous_commit.as_str()),
            )?;
            writeln!(
                f,
                "  (a) BEGIN; UPDATE bench_counter SET v = v + 1 RETURNING v; INSERT; COMMIT   \
                 (row lock held across the commit)"
            )?;
            writeln!(
                f,
                "  (b) BEGIN; WITH w AS MATERIALIZED (SELECT pg_current_xact_id()) SELECT \
                 nextval('bench_seq') FROM w; INSERT; COMMIT   (the store's technique)"
            )?;
            let mut rows = vec![row(&[
                "writers",
                "(a) counter-row lock",
                "(a) p50",
                "(b) xact id + sequence",
                "(b) p50",
                "(b)/(a)",
            ])];
            let cell = |technique, writers| summarise(allocation.samples(technique, writers));
            for writers in [1, ALLOC_WRITERS] {
                let a = cell(Technique::CounterRow, writers);
                let b = cell(Technique::XactSequence, writers);
                rows.push(vec![
                    writers.to_string(),
                    rate_cell(a),
                    a.map_or_else(|| "–".into(), |s| format!("{} ms", millis(s.p50))),
                    rate_cell(b),
                    b.map_or_else(|| "–".into(), |s| format!("{} ms", millis(s.p50))),
                    ratio_cell(b, a),
                ]);
            }
            rows.push(vec![
                format!("{ALLOC_WRITERS} vs 1 writer(s)"),
                ratio_cell(
                    cell(Technique::CounterRow, ALLOC_WRITERS),
                    cell(Technique::CounterRow, 1),
                ),
                String::new(),
                ratio_cell(
                    cell(Technique::XactSequence, ALLOC_WRITERS),
                    cell(Technique::XactSequence, 1),
                ),
                String::new(),
                String::new(),
            ]);
            table(f, &rows)?;
            writeln!(
                f,
                "  {ALLOC_WRITERS} vs 1: how throughput grows with concurrent writers; with durable \
                 commits, growth means commits share WAL flushes (group commit)"
            )?;
        }
        Ok(())
    }
}

impl Report {
    pub(super) fn run_of(&self, backend: Backend) -> Option<&ReplicationRun> {
        self.replication.iter().find(|run| run.backend == backend)
    }

    fn replication_table(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(plan) = self.plan.replication else {
            return Ok(());
        };
        let sqlite = self.run_of(Backend::Sqlite);
        let postgres = self.run_of(Backend::Postgres);
        let own_clusters = if self.logical.is_some() {
            " (the bench's own two clusters: owner on the first, copy on the second)"
        } else {
            ""
        };
        let durability = match &self.replication_postgres {
            Some(settings) => format!(
                "sqlite synchronous=FULL, WAL; postgres{own_clusters} fsync={}, \
                 synchronous_commit={}, full_page_writes={}",
                settings.fsync, settings.synchronous_commit, settings.full_page_writes
            ),
            None => "sqlite synchronous=FULL, WAL".into(),
        };
        writeln!(f)?;
        writeln!(
            f,
            "replication, registration (owner) → billing (copy of {}), both units in this \
             process ({durability}):",
            billing::COPIED_ASPECTS
        )?;
        writeln!(
            f,
            "  initial sync: {} customers written with Store::commit in batches of 1000, then a \
             fresh copy polls limit=1000, wait=20 s; timed from the copy's start until its \
             stored cursor reaches the owner's version (checked every 50 ms); median of {} \
             run(s), each into a fresh copy; a record is one customer with its 3 copied aspects",
            plan.customers, plan.repetitions
        )?;
        writeln!(
            f,
            "  lag: PUT /customers/{{id}}/address.bill at {}/s for {} s (distinct customers, \
             open loop, at most {} in flight) while a watcher long-polls the copy's own feed \
             (wait=20, aspects=~address.bill) and another the owner's; lag = version first on \
             the copy's feed − PUT response",
            plan.write_rate,
            plan.lag_seconds,
            super::replication::LAG_WRITES_IN_FLIGHT
        )?;
        let cell = |run: Option<&ReplicationRun>, show: &dyn Fn(&ReplicationRun) -> String| {
            run.map_or_else(|| "–".to_owned(), show)
        };
        let ratio = |get: &dyn Fn(&ReplicationRun) -> f64| match (sqlite, postgres) {
            (Some(s), Some(p)) if get(s) > 0.0 => format!("{:.2}", get(p) / get(s)),
            _ => "–".into(),
        };
        let line = |label: String, show: &dyn Fn(&ReplicationRun) -> String, ratio: String| {
            vec![label, cell(sqlite, show), cell(postgres, show), ratio]
        };
        let rows = vec![
            row(&["measurement", "sqlite", "postgres", "postgres/sqlite"]),
            line(
                "owner fill (Store::commit, 1000 per transaction), customers/s".into(),
                &|run| format!("{:.0}", run.sync.fill_per_second()),
                ratio(&|run| run.sync.fill_per_second()),
            ),
            line(
                "initial sync owner → copy, records/s".into(),
                &|run| {
                    let rates = run.sync.rates();
                    match (rates.first(), rates.last()) {
                        (Some(low), Some(high)) if rates.len() > 1 => {
                            format!("{:.0} [{low:.0}–{high:.0}]", run.sync.records_per_second())
                        }
                        _ => format!("{:.0}", run.sync.records_per_second()),
                    }
                },
                ratio(&|run| run.sync.records_per_second()),
            ),
            line(
                "  the same without pipelining (median), records/s".into(),
                &|run| format!("{:.0}", run.sync.unpipelined_per_second()),
                ratio(&|run| run.sync.unpipelined_per_second()),
            ),
            line(
                "  pipelined ÷ not (median of back-to-back pairs)".into(),
                &|run| format!("{:.2}×", run.sync.pipelining_ratio()),
                String::new(),
            ),
            line(
                "  the same with gzip-compressed chunks (median), records/s".into(),
                &|run| format!("{:.0}", run.sync.compressed_per_second()),
                ratio(&|run| run.sync.compressed_per_second()),
            ),
            line(
                "  gzip ÷ plain (median of the repetitions' pairs)".into(),
                &|run| format!("{:.2}×", run.sync.compression_ratio()),
                String::new(),
            ),
            line(
                "  sync time / chunks applied / records applied".into(),
                &|run| {
                    let s = &run.sync;
                    format!("{:.2} s / {} / {}", s.sync.as_secs_f64(), s.chunks, s.items)
                },
                String::new(),
            ),
            line(
                "  customers counted on the copy".into(),
                &|run| {
                    let s = &run.sync;
                    format!("{} of {}", s.copied, s.customers)
                },
                String::new(),
            ),
            line(
                "  poller steps alone (separate pass), s: owner GET / parse / apply".into(),
                &|run| {
                    let s = &run.steps;
                    format!(
                        "{:.2} / {:.2} / {:.2}",
                        s.get.as_secs_f64(),
                        s.parse.as_secs_f64(),
                        s.apply.as_secs_f64()
                    )
                },
                String::new(),
            ),
            line(
                "    owner GET's parts called directly, s: query / render JSON".into(),
                &|run| {
                    let s = &run.steps;
                    format!(
                        "{:.2} / {:.2}",
                        s.query.as_secs_f64(),
                        s.json.stored.as_secs_f64()
                    )
                },
                String::new(),
            ),
            line(
                "    render JSON through trees (before), s / spliced÷tree per chunk, median".into(),
                &|run| {
                    let json = &run.steps.json;
                    format!(
                        "{:.2} / {:.2}×",
                        json.tree.as_secs_f64(),
                        json.median_ratio()
                    )
                },
                String::new(),
            ),
            line(
                "    render XML walked / through trees (before), s / ÷ per chunk, median".into(),
                &|run| {
                    let xml = &run.steps.xml;
                    format!(
                        "{:.2} / {:.2} / {:.2}×",
                        xml.stored.as_secs_f64(),
                        xml.tree.as_secs_f64(),
                        xml.median_ratio()
                    )
                },
                String::new(),
            ),
            line(
                "    chunks / MiB of JSON".into(),
                &|run| {
                    let s = &run.steps;
                    format!("{} / {:.1}", s.chunks, s.bytes as f64 / (1024.0 * 1024.0))
                },
                String::new(),
            ),
            line(
                "figure 7: bytes on the wire per record, JSON plain / gzip".into(),
                &|run| {
                    let s = &run.steps;
                    match (s.bytes_per_record(), s.gzip_bytes_per_record()) {
                        (Some(plain), Some(gzip)) => format!("{plain:.0} / {gzip:.0}"),
                        _ => "–".into(),
                    }
                },
                String::new(),
            ),
            line(
                "long-poll lag p50 / p99 / max".into(),
                &|run| {
                    let l = &run.lag;
                    format!(
                        "{:.1} / {:.1} / {:.1} ms",
                        l.lag_at(0.50),
                        l.lag_at(0.99),
                        l.lags_ms.last().copied().unwrap_or_default()
                    )
                },
                ratio(&|run| run.lag.lag_at(0.50)),
            ),
            line(
                "  the same at the owner's own feed, p50 / p99".into(),
                &|run| {
                    let l = &run.lag;
                    format!(
                        "{:.1} / {:.1} ms",
                        l.owner_lag_at(0.50),
                        l.owner_lag_at(0.99)
                    )
                },
                String::new(),
            ),
            line(
                "  writes measured (all arrived) / writes/s achieved".into(),
                &|run| {
                    let l = &run.lag;
                    format!(
                        "{}/{} / {:.0}",
                        l.lags_ms.len(),
                        l.planned,
                        l.achieved_rate()
                    )
                },
                String::new(),
            ),
            line(
                "  PUT latency p50 / p99".into(),
                &|run| {
                    let l = &run.lag;
                    format!("{} / {} ms", millis(l.put_at(0.50)), millis(l.put_at(0.99)))
                },
                String::new(),
            ),
            line(
                "  chunks the copy applied during the writes".into(),
                &|run| run.lag.chunks.to_string(),
                String::new(),
            ),
            line(
                format!(
                    "figure 5: feed chunks/s, {} records JSON ({} clients): feed / \
                     pre-serialised = ratio (goal ≥ 0.6×)",
                    super::chunks::CHUNK_LIMIT,
                    super::chunks::CLIENTS
                ),
                &|run| chunk_ratio(&run.chunks.json, &run.chunks.json_reference),
                String::new(),
            ),
            line(
                "  the same, XML".into(),
                &|run| chunk_ratio(&run.chunks.xml, &run.chunks.xml_reference),
                String::new(),
            ),
            line(
                "  chunk size JSON / XML, KiB".into(),
                &|run| {
                    format!(
                        "{:.1} / {:.1}",
                        run.chunks.json_bytes as f64 / 1024.0,
                        run.chunks.xml_bytes as f64 / 1024.0
                    )
                },
                String::new(),
            ),
            line(
                "figure 6: peak RSS during fill and sync, whole process (owner, copy, bench), \
                 MiB (goal ≤ 256 MB)"
                    .into(),
                &|run| {
                    run.sync
                        .peak_rss_kib
                        .map_or_else(|| "–".into(), |kib| format!("{:.0}", kib as f64 / 1024.0))
                },
                String::new(),
            ),
        ];
        table(f, &rows)?;
        figure_six_phases(f, [sqlite, postgres])?;
        self.figure_one(f, sqlite, postgres)?;
        self.figure_three(f)
    }

    /// Figure 3: HiScale's writes against raw inserts, same durable database, side by side.
    fn figure_three(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(writes) = &self.writes else {
            return Ok(());
        };
        let (Some(rest), Some(raw)) = (summarise(&writes.rest), summarise(&writes.raw)) else {
            return Ok(());
        };
        writeln!(f)?;
        writeln!(
            f,
            "figure 3: writes/s, {} clients each, on the bench's first cluster (durable), \
             medians of {} run(s), alternating:",
            super::writes::CLIENTS,
            writes.rest.len()
        )?;
        let ratio = if raw.rate > 0.0 {
            rest.rate / raw.rate
        } else {
            0.0
        };
        let rows = vec![
            row(&["measurement", "writes/s", "p50 / p99", "goal"]),
            vec![
                "PUT /customers/{id}/address.home (gap-free versions)".into(),
                format!("{:.0}", rest.rate),
                format!("{} / {} ms", millis(rest.p50), millis(rest.p99)),
                String::new(),
            ],
            vec![
                "raw single-row INSERT (sqlx, autocommit)".into(),
                format!("{:.0}", raw.rate),
                format!("{} / {} ms", millis(raw.p50), millis(raw.p99)),
                String::new(),
            ],
            vec![
                "ratio PUT ÷ INSERT".into(),
                format!("{ratio:.2}×"),
                String::new(),
                "≥ 0.7×".into(),
            ],
        ];
        table(f, &rows)
    }

    /// Figure 1: HiScale's initial syncs beside PostgreSQL's logical replication of the same
    /// rows, as ratios measured in this run.
    fn figure_one(
        &self,
        f: &mut fmt::Formatter<'_>,
        sqlite: Option<&ReplicationRun>,
        postgres: Option<&ReplicationRun>,
    ) -> fmt::Result {
        let Some(reference) = &self.logical else {
            writeln!(
                f,
                "\nfigure 1 reference (PostgreSQL logical replication): not measured (no \
                 PostgreSQL server binaries found; give --pg-bin or HISCALE_PG_BIN)"
            )?;
            return Ok(());
        };
        let rates = reference.rates();
        let median = reference.median_rate();
        let spread = match (rates.first(), rates.last()) {
            (Some(low), Some(high)) if rates.len() > 1 => format!(" [{low:.0}–{high:.0}]"),
            _ => String::new(),
        };
        let rate = |run: Option<&ReplicationRun>| run.map(|run| run.sync.records_per_second());
        let rate_text = |rate: Option<f64>| rate.map_or_else(|| "–".into(), |r| format!("{r:.0}"));
        let ratio_text = |rate: Option<f64>| match rate {
            Some(r) if median > 0.0 => format!("{:.2}×", r / median),
            _ => "–".into(),
        };
        writeln!(f)?;
        writeln!(
            f,
            "figure 1: initial sync of {} customers, billing's 3 aspects, ratios to PostgreSQL \
             {} logical replication measured in this run (medians of {} run(s) each):",
            reference.customers,
            reference.publisher.version,
            reference.syncs.len()
        )?;
        let rows = vec![
            row(&[
                "figure",
                "HiScale sqlite → sqlite",
                "HiScale postgres → postgres",
                "PostgreSQL logical replication",
                "goal",
            ]),
            vec![
                "initial sync, customers/s".into(),
                rate_text(rate(sqlite)),
                rate_text(rate(postgres)),
                format!("{median:.0}{spread}"),
                String::new(),
            ],
            vec![
                "ratio to logical replication".into(),
                ratio_text(rate(sqlite)),
                ratio_text(rate(postgres)),
                "1.00×".into(),
                "≥ 1.0×".into(),
            ],
        ];
        // Figure 2: the long-poll lag's p99 against logical replication's, same write rate.
        let lag_p99 = |run: Option<&ReplicationRun>| run.map(|run| run.lag.lag_at(0.99));
        let reference_p99 = reference.lag_at(0.99);
        let lag_ratio = |p99: Option<f64>| match (p99, reference_p99) {
            (Some(ours), Some(theirs)) if theirs > 0.0 => format!("{:.2}×", ours / theirs),
            _ => "–".into(),
        };
        let ms = |value: Option<f64>| value.map_or_else(|| "–".into(), |v| format!("{v:.1} ms"));
        let mut rows = rows;
        rows.push(vec![
            "figure 2: lag p99 (p50 in the lag table above)".into(),
            ms(lag_p99(sqlite)),
            ms(lag_p99(postgres)),
            match (reference.lag_at(0.5), reference_p99) {
                (Some(p50), Some(p99)) => format!("{p99:.1} ms (p50 {p50:.1} ms)"),
                _ => "not measured".into(),
            },
            String::new(),
        ]);
        rows.push(vec![
            "  p99 ratio to logical replication".into(),
            lag_ratio(lag_p99(sqlite)),
            lag_ratio(lag_p99(postgres)),
            "1.00×".into(),
            "≤ 2.0×".into(),
        ]);
        table(f, &rows)?;
        writeln!(
            f,
            "  reference: publication FOR TABLE customers (id, version, person, address_bill, \
             bankaccount) on the first cluster (wal_level=logical; address_home stays behind), \
             subscription on the second WITH (synchronous_commit = on); timed from CREATE \
             SUBSCRIPTION until the table is copied and committed (state s/r, checked every \
             50 ms), rows counted after; figure 2's reference updates address_bill (and a rising \
             version) of distinct customers at the same rate on the publisher, one durable \
             commit each (overlapping on 16 connections), and reads the subscriber's new versions every 1 ms: lag = first seen \
             there − the update's commit acknowledged"
        )?;
        writeln!(
            f,
            "  durability: publisher fsync={} synchronous_commit={} full_page_writes={}; \
             subscriber fsync={} synchronous_commit={} full_page_writes={}; HiScale's \
             postgres owner and copy on the same two clusters; sqlite synchronous=FULL",
            reference.publisher.fsync,
            reference.publisher.synchronous_commit,
            reference.publisher.full_page_writes,
            reference.subscriber.fsync,
            reference.subscriber.synchronous_commit,
            reference.subscriber.full_page_writes,
        )
    }
}

/// Figure 6 phase by phase: where the peak comes from (the fill, or which sync).
fn figure_six_phases(
    f: &mut fmt::Formatter<'_>,
    runs: [Option<&ReplicationRun>; 2],
) -> fmt::Result {
    let runs: Vec<&ReplicationRun> = runs.into_iter().flatten().collect();
    if runs.iter().all(|run| run.sync.memory.is_empty()) {
        return Ok(());
    }
    writeln!(
        f,
        "\nfigure 6 phase by phase, MiB resident at the phase's start → its peak (the allocator \
         keeps what an earlier phase freed; the figure is the highest peak of the fill and the \
         syncs, the later phases show what the next run starts from):"
    )?;
    for run in runs {
        let phases: Vec<String> = run
            .sync
            .memory
            .iter()
            .map(|phase| {
                format!(
                    "{} {:.0} → {:.0}",
                    phase.phase,
                    phase.start_kib as f64 / 1024.0,
                    phase.peak_kib as f64 / 1024.0
                )
            })
            .collect();
        let before = run
            .sync
            .resident_before_kib
            .map_or_else(String::new, |kib| {
                format!("before the run {:.0}; ", kib as f64 / 1024.0)
            });
        writeln!(f, "  {before}{}", phases.join("; "))?;
    }
    Ok(())
}
