//! The reference of figure 1: PostgreSQL's own logical replication of the same customers,
//! the same documents and the same three aspects billing copies, between two durable
//! clusters (the ones HiScale's PostgreSQL → PostgreSQL sync runs across).
//!
//! The publisher holds one row per customer (`id`, `version`, one `jsonb` column per aspect,
//! `account` left empty as in HiScale's owner) filled with the documents HiScale's owner
//! stores; the publication names a column list (`id, version, person, address_bill,
//! bankaccount`: `address_home` stays behind, as it does for billing). The subscriber's
//! table has those columns. The initial sync is timed from `CREATE SUBSCRIPTION` (slot
//! creation included, as HiScale's includes its copy unit's start) until its table's state is
//! `s`/`r` (copied and committed), checked every 50 ms like HiScale's cursor; the rows are then
//! counted. Each repetition drops the subscription and subscribes a fresh database: the
//! subscriber starts no second table sync for a table (by its oid) within
//! `wal_retrieve_retry_interval` (5 s) of the last, which reusing one table added to every
//! repetition after the first. The launcher, too, starts workers at most once per
//! `wal_retrieve_retry_interval`: a repetition that subscribed sooner after the one before
//! idled up to 5 s before its copy began (seen in the plot of the rate over time), so each
//! repetition after the first waits out that interval first, untimed.
//! The subscription commits with `synchronous_commit = on` (its default is `off`), so the
//! copy is durable at the subscriber as HiScale's copy is.
//! For the plot of the rate over time, the same 50 ms poll reads the rows the subscriber's
//! table sync has copied so far (`pg_stat_progress_copy.tuples_processed` of its `COPY`): the
//! table itself shows no rows before the copy commits.
//!
//! The last repetition's subscription stays for figure 2's reference (`lag`): updates at the
//! rate HiScale's lag run writes, timed from their commit to the subscriber showing them. The
//! bytes its `COPY` sends per customer are figure 7's reference.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::alloc::{ServerSettings, server_settings};
use super::replication::{Progress, customer_edits, median_index};

/// Customers per fill transaction (as HiScale's owner fill).
const FILL_BATCH: usize = 1000;
/// How often the subscription's state is looked at.
const STATE_POLL: Duration = Duration::from_millis(50);
/// Bound on one initial sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(600);
const PUBLISHER_DATABASE: &str = "hs_bench_ref_pub";
/// The subscriber's databases are this plus the repetition's number.
const SUBSCRIBER_DATABASE: &str = "hs_bench_ref_sub";

/// The reference's initial syncs.
#[derive(Debug, Clone)]
pub(super) struct LogicalResult {
    pub(super) customers: usize,
    /// One duration per repetition, in run order.
    pub(super) syncs: Vec<Duration>,
    /// Each repetition's rows copied over time (the order of `syncs`).
    pub(super) progress: Vec<Progress>,
    pub(super) publisher: ServerSettings,
    pub(super) subscriber: ServerSettings,
    /// Bytes its table sync's `COPY` sends per customer (figure 7's reference).
    pub(super) copy_bytes_per_record: f64,
    /// Figure 2's reference: milliseconds from each update's commit at the publisher to the
    /// subscriber showing it, sorted; empty when not measured.
    pub(super) lags_ms: Vec<f64>,
}

impl LogicalResult {
    /// The lag at `fraction` (0.5: the median), milliseconds.
    pub(super) fn lag_at(&self, fraction: f64) -> Option<f64> {
        let last = self.lags_ms.len().checked_sub(1)?;
        let index = ((self.lags_ms.len() as f64 * fraction) as usize).min(last);
        self.lags_ms.get(index).copied()
    }

    /// The median customers per second (figure 1's reference).
    pub(super) fn median_rate(&self) -> f64 {
        let rates = self.rates();
        rates.get(rates.len() / 2).copied().unwrap_or(0.0)
    }

    /// The progress of the repetition whose time is the median.
    pub(super) fn median_progress(&self) -> Option<&Progress> {
        median_index(&self.syncs).and_then(|index| self.progress.get(index))
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
}

/// Fills the publisher, then syncs a subscription `repetitions` times.
pub(super) async fn run(
    publisher_server: &str,
    publisher_port: u16,
    subscriber_server: &str,
    customers: usize,
    repetitions: usize,
    lag_plan: LagPlan,
) -> anyhow::Result<LogicalResult> {
    let publisher_url =
        hiscale::store::ensure_postgres_database(publisher_server, PUBLISHER_DATABASE).await?;
    let publisher = connect(&publisher_url).await?;
    eprintln!("logical replication: filling the publisher with {customers} customers");
    fill(&publisher, customers).await?;
    sqlx::raw_sql(
        "CREATE PUBLICATION hs_bench_pub FOR TABLE customers \
         (id, version, person, address_bill, bankaccount)",
    )
    .execute(&publisher)
    .await
    .context("creating the publication")?;
    let mut syncs = Vec::with_capacity(repetitions);
    let mut progress = Vec::with_capacity(repetitions);
    let mut lags_ms = Vec::new();
    let mut subscriber_url = String::new();
    let mut last_start: Option<Instant> = None;
    for run in 1..=repetitions {
        if let Some(started) = last_start {
            let interval = retry_interval(subscriber_server).await?;
            let ready = started + interval + Duration::from_millis(200);
            if ready > Instant::now() {
                eprintln!(
                    "logical replication: waiting out wal_retrieve_retry_interval ({} ms) since \
                     the last subscription",
                    interval.as_millis()
                );
                tokio::time::sleep_until(ready.into()).await;
            }
        }
        eprintln!("logical replication: initial sync {run}/{repetitions}…");
        subscriber_url = hiscale::store::ensure_postgres_database(
            subscriber_server,
            &format!("{SUBSCRIBER_DATABASE}{run}"),
        )
        .await?;
        let subscriber = connect(&subscriber_url).await?;
        sqlx::raw_sql(
            "CREATE TABLE customers (id bigint PRIMARY KEY, version bigint NOT NULL, \
             person jsonb, address_bill jsonb, bankaccount jsonb)",
        )
        .execute(&subscriber)
        .await
        .context("creating the subscriber's table")?;
        last_start = Some(Instant::now());
        let (took, trace) = tokio::time::timeout(
            SYNC_TIMEOUT,
            sync_once(&subscriber, publisher_port, customers),
        )
        .await
        .with_context(|| {
            format!(
                "logical replication did not finish its initial sync within {} s",
                SYNC_TIMEOUT.as_secs()
            )
        })??;
        eprintln!(
            "logical replication: {customers} customers in {:.2} s",
            took.as_secs_f64()
        );
        syncs.push(took);
        progress.push(trace);
        if run == repetitions {
            // The last subscription stays for figure 2's reference, on rows it holds.
            eprintln!(
                "logical replication: lag: UPDATE address_bill at {}/s for {} s, watching the \
                 subscriber",
                lag_plan.write_rate, lag_plan.seconds
            );
            let measured = lag(&publisher, &subscriber, customers, lag_plan).await;
            drop_subscription(&subscriber).await?;
            lags_ms = measured?;
        } else {
            drop_subscription(&subscriber).await?;
        }
        subscriber.close().await;
    }
    let copy_bytes_per_record = copy_bytes_per_record(&publisher).await?;
    let result = LogicalResult {
        customers,
        syncs,
        progress,
        copy_bytes_per_record,
        lags_ms,
        publisher: server_settings(&publisher_url).await?,
        subscriber: server_settings(&subscriber_url).await?,
    };
    publisher.close().await;
    Ok(result)
}

/// What the initial sync's `COPY` sends per customer: the published columns in `COPY`'s text
/// format (tab-separated, `\N` for NULL, a newline), counted on the publisher, plus the five
/// bytes of the `CopyData` message that carries each row. The protocol sends it uncompressed.
async fn copy_bytes_per_record(publisher: &PgPool) -> anyhow::Result<f64> {
    let bytes: f64 = sqlx::query_scalar(
        "SELECT SUM(octet_length(id::text) + octet_length(version::text) \
                + octet_length(COALESCE(person::text, '\\N')) \
                + octet_length(COALESCE(address_bill::text, '\\N')) \
                + octet_length(COALESCE(bankaccount::text, '\\N')) + 4 + 1 + 5)::float8 \
                / GREATEST(COUNT(*), 1) FROM customers",
    )
    .fetch_one(publisher)
    .await
    .context("counting the COPY's bytes")?;
    Ok(bytes)
}

/// The subscriber server's `wal_retrieve_retry_interval`.
async fn retry_interval(subscriber_server: &str) -> anyhow::Result<Duration> {
    let pool = connect(&format!(
        "{}/postgres",
        subscriber_server.trim_end_matches('/')
    ))
    .await?;
    let millis: Option<String> = sqlx::query_scalar(
        "SELECT setting FROM pg_settings WHERE name = 'wal_retrieve_retry_interval'",
    )
    .fetch_optional(&pool)
    .await
    .context("reading wal_retrieve_retry_interval")?;
    pool.close().await;
    // The setting is in milliseconds; 5 s (PostgreSQL's default) where it cannot be read.
    let millis = millis
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(5000);
    Ok(Duration::from_millis(millis))
}

async fn connect(url: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(15))
        .connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// The same documents as HiScale's owner, one row per customer.
async fn fill(pool: &PgPool, customers: usize) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE customers (id bigint PRIMARY KEY, version bigint NOT NULL, \
         account jsonb, person jsonb, address_home jsonb, address_bill jsonb, bankaccount jsonb)",
    )
    .execute(pool)
    .await
    .context("creating the publisher's table")?;
    let mut next = 0;
    while next < customers {
        let end = (next + FILL_BATCH).min(customers);
        let mut rows = Vec::with_capacity(end - next);
        for n in next..end {
            let mut row = serde_json::Map::new();
            row.insert("id".into(), (n + 1).into());
            row.insert("version".into(), (n + 1).into());
            for edit in customer_edits(n)? {
                let column = edit.aspect.replace('.', "_");
                let body: serde_json::Value =
                    serde_json::from_str(edit.body.as_deref().unwrap_or("null"))?;
                row.insert(column, body);
            }
            rows.push(serde_json::Value::Object(row));
        }
        sqlx::query(
            "INSERT INTO customers (id, version, person, address_home, address_bill, bankaccount) \
             SELECT id, version, person, address_home, address_bill, bankaccount \
             FROM jsonb_to_recordset($1::text::jsonb) AS r(id bigint, version bigint, \
             person jsonb, address_home jsonb, address_bill jsonb, bankaccount jsonb)",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(pool)
        .await
        .with_context(|| format!("filling customers {next}..{end}"))?;
        next = end;
    }
    Ok(())
}

/// One subscription from scratch to its table's copy committed; returns how long it took and
/// the rows copied at each poll.
async fn sync_once(
    subscriber: &PgPool,
    publisher_port: u16,
    customers: usize,
) -> anyhow::Result<(Duration, Progress)> {
    let create = format!(
        "CREATE SUBSCRIPTION hs_bench_sub CONNECTION 'host=127.0.0.1 port={publisher_port} \
         dbname={PUBLISHER_DATABASE} user=postgres' PUBLICATION hs_bench_pub \
         WITH (synchronous_commit = 'on')"
    );
    let began = Instant::now();
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(subscriber)
        .await
        .context("creating the subscription")?;
    let mut trace = vec![(0.0, 0)];
    let mut copying = 0;
    let took = loop {
        // One round trip for both: the state, and the rows the table sync's COPY has
        // processed (no row in the view before the COPY starts and after it ends).
        let (state, processed): (Option<String>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT srsubstate::text FROM pg_subscription_rel r \
             JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = 'hs_bench_sub'), \
             (SELECT max(tuples_processed) FROM pg_stat_progress_copy \
             WHERE datname = current_database())",
        )
        .fetch_one(subscriber)
        .await?;
        if matches!(state.as_deref(), Some("s" | "r")) {
            break began.elapsed();
        }
        if let Some(processed) = processed {
            copying = copying.max(u64::try_from(processed).unwrap_or(0));
        }
        trace.push((began.elapsed().as_secs_f64(), copying));
        tokio::time::sleep(STATE_POLL).await;
    };
    trace.push((took.as_secs_f64(), customers as u64));
    let copied: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(subscriber)
        .await?;
    if copied != customers as i64 {
        drop_subscription(subscriber).await?;
        bail!("logical replication copied {copied} customers, not {customers}");
    }
    Ok((took, trace))
}

async fn drop_subscription(subscriber: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql("DROP SUBSCRIPTION hs_bench_sub")
        .execute(subscriber)
        .await
        .context("dropping the subscription")?;
    Ok(())
}

/// Figure 2's reference run.
#[derive(Debug, Clone, Copy)]
pub(super) struct LagPlan {
    /// Updates per second (HiScale's lag run writes as many `PUT`s).
    pub(super) write_rate: u32,
    pub(super) seconds: u64,
}

/// How often the watcher looks at the subscriber: the reference's lags are late by up to this
/// (HiScale's watcher long-polls and is told at once).
const LAG_POLL: Duration = Duration::from_millis(1);
/// After the last update, how long the subscriber may take to show them all.
const LAG_DRAIN: Duration = Duration::from_secs(60);
/// The reference writer's connections.
const WRITER_CONNECTIONS: u32 = 16;

/// Figure 2's reference, on the subscription the last initial sync left running: one writer
/// updates distinct customers' `address_bill` at `write_rate` (open loop, each update its own
/// durable commit, as HiScale's `PUT`s are) and sets their `version` to a new, rising number;
/// a watcher reads the subscriber's new versions every millisecond (by index, above the highest
/// number below which all have arrived). Lag = first seen at the subscriber − the update's
/// commit acknowledged.
async fn lag(
    publisher: &PgPool,
    subscriber: &PgPool,
    customers: usize,
    plan: LagPlan,
) -> anyhow::Result<Vec<f64>> {
    let writes = (plan.write_rate as usize * plan.seconds as usize).min(customers);
    anyhow::ensure!(writes > 0, "the lag run has no writes");
    sqlx::raw_sql("CREATE INDEX IF NOT EXISTS customers_version ON customers (version)")
        .execute(subscriber)
        .await
        .context("indexing the subscriber's versions")?;
    // Above every version the fill gave.
    let base = customers as i64;
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(vec![None; writes]));
    // Connections of its own, so updates overlap when one commit takes longer than the
    // interval (as HiScale's PUTs do over the unit's pool).
    let publisher = PgPoolOptions::new()
        .max_connections(WRITER_CONNECTIONS)
        .connect_with(publisher.connect_options().as_ref().clone())
        .await
        .context("connecting the reference's writers")?;
    let writer = {
        let publisher = publisher.clone();
        let acknowledged = acknowledged.clone();
        let interval = Duration::from_secs_f64(1.0 / f64::from(plan.write_rate.max(1)));
        // Open loop, as HiScale's writer: each update is sent at its time, however long the
        // ones before take (the pool's connections bound how many run at once).
        tokio::spawn(async move {
            let began = Instant::now();
            let mut updates = tokio::task::JoinSet::new();
            for n in 0..writes {
                tokio::time::sleep_until((began + interval * n as u32).into()).await;
                let publisher = publisher.clone();
                let acknowledged = acknowledged.clone();
                updates.spawn(async move {
                    let address = serde_json::json!({
                        "street": format!("Rechnungsweg {n}"), "zip": "53111", "city": "Bonn"
                    });
                    sqlx::query(
                        "UPDATE customers SET version = $1, address_bill = $2 WHERE id = $3",
                    )
                    .bind(base + n as i64 + 1)
                    .bind(address)
                    .bind(n as i64 + 1)
                    .execute(&publisher)
                    .await
                    .with_context(|| format!("update {n}"))?;
                    if let Ok(mut acknowledged) = acknowledged.lock() {
                        acknowledged[n] = Some(Instant::now());
                    }
                    anyhow::Ok(())
                });
            }
            while let Some(done) = updates.join_next().await {
                done.context("an update task")??;
            }
            anyhow::Ok(())
        })
    };
    let mut seen: Vec<Option<Instant>> = vec![None; writes];
    // Every update below `floor` has arrived; above it, updates that overlapped may commit
    // out of order, so each is looked for by its own version.
    let mut floor = 0usize;
    let mut arrived = 0usize;
    let deadline = Instant::now() + Duration::from_secs(plan.seconds) + LAG_DRAIN;
    while arrived < writes {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the subscriber showed {arrived} of {writes} updates within {} s after the writing",
            LAG_DRAIN.as_secs()
        );
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM customers WHERE version > $1")
                .bind(base + floor as i64)
                .fetch_all(subscriber)
                .await?;
        let now = Instant::now();
        for version in versions {
            let Ok(index) = usize::try_from(version - base - 1) else {
                continue;
            };
            if let Some(slot) = seen.get_mut(index).filter(|slot| slot.is_none()) {
                *slot = Some(now);
                arrived += 1;
            }
        }
        while seen.get(floor).is_some_and(Option::is_some) {
            floor += 1;
        }
        tokio::time::sleep(LAG_POLL).await;
    }
    writer.await.context("the writer task")??;
    publisher.close().await;
    let acknowledged = acknowledged
        .lock()
        .map_err(|_| anyhow::anyhow!("the writer's record is poisoned"))?
        .clone();
    let mut lags: Vec<f64> = acknowledged
        .iter()
        .zip(&seen)
        .filter_map(|(acked, seen)| Some(seen.as_ref()?.saturating_duration_since((*acked)?)))
        .map(|lag| lag.as_secs_f64() * 1000.0)
        .collect();
    anyhow::ensure!(
        lags.len() == writes,
        "{} of {writes} updates have both times",
        lags.len()
    );
    lags.sort_by(f64::total_cmp);
    Ok(lags)
}
