//! Version allocation on PostgreSQL in isolation: what a counter row locked until commit costs
//! against the store's technique (transaction id first, then a sequence value).
//!
//! Each transaction draws one number and inserts one row, and commits with whatever
//! durability the server is configured for. With a counter row, the next writer waits for the
//! lock until the previous commit (and its WAL flush) is done, so commits cannot share a
//! flush; with a sequence they can (group commit).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::load::{BoxFuture, Sample, Step, drive};
use super::{ALLOC_WRITERS, Plan};

/// The server's settings that decide what a commit costs.
#[derive(Debug, Clone)]
pub(super) struct ServerSettings {
    pub(super) version: String,
    pub(super) fsync: String,
    pub(super) synchronous_commit: String,
    pub(super) full_page_writes: String,
    pub(super) wal_sync_method: String,
}

impl ServerSettings {
    pub(super) fn durable(&self) -> bool {
        self.fsync == "on" && self.synchronous_commit != "off"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Technique {
    /// `UPDATE bench_counter SET v = v + 1 RETURNING v`, lock held across the commit.
    CounterRow,
    /// `WITH w AS MATERIALIZED (SELECT pg_current_xact_id()) SELECT nextval(…) FROM w`.
    XactSequence,
}

/// Median tx/s samples per (technique, writers).
#[derive(Debug, Default)]
pub(super) struct Allocation {
    /// (technique, writers, samples)
    pub(super) runs: Vec<(Technique, usize, Vec<Sample>)>,
}

impl Allocation {
    pub(super) fn samples(&self, technique: Technique, writers: usize) -> &[Sample] {
        self.runs
            .iter()
            .find(|(t, w, _)| *t == technique && *w == writers)
            .map_or(&[], |(_, _, samples)| samples.as_slice())
    }
}

pub(super) async fn server_settings(url: &str) -> anyhow::Result<ServerSettings> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(15))
        .connect(url)
        .await
        .context("connecting to the bench database")?;
    let show = async |name: &'static str| -> anyhow::Result<String> {
        let statement = format!("SHOW {name}");
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
            .fetch_one(&pool)
            .await
            .with_context(|| format!("SHOW {name}"))?;
        Ok(value)
    };
    let settings = ServerSettings {
        version: show("server_version").await?,
        fsync: show("fsync").await?,
        synchronous_commit: show("synchronous_commit").await?,
        full_page_writes: show("full_page_writes").await?,
        wal_sync_method: show("wal_sync_method").await?,
    };
    pool.close().await;
    Ok(settings)
}

/// Both techniques with 1 and with 8 writers, repetitions alternating between techniques.
pub(super) async fn compare(plan: Plan, url: &str) -> anyhow::Result<Allocation> {
    let pool = PgPoolOptions::new()
        .max_connections(ALLOC_WRITERS as u32)
        .min_connections(ALLOC_WRITERS as u32)
        .acquire_timeout(Duration::from_secs(15))
        .connect(url)
        .await
        .context("connecting to the bench database")?;
    let outcome = compare_on(plan, &pool).await;
    pool.close().await;
    outcome
}

async fn compare_on(plan: Plan, pool: &PgPool) -> anyhow::Result<Allocation> {
    for statement in [
        "CREATE TABLE bench_counter (id integer PRIMARY KEY, v bigint NOT NULL)",
        "INSERT INTO bench_counter (id, v) VALUES (1, 0)",
        "CREATE SEQUENCE bench_seq",
        "CREATE TABLE bench_rows (technique smallint NOT NULL, v bigint NOT NULL, \
         writer integer NOT NULL, payload text NOT NULL, PRIMARY KEY (technique, v))",
    ] {
        sqlx::query(statement)
            .execute(pool)
            .await
            .with_context(|| format!("setting up: {statement}"))?;
    }
    let techniques = [Technique::CounterRow, Technique::XactSequence];
    let mut allocation = Allocation::default();
    for writers in [ALLOC_WRITERS, 1] {
        for technique in techniques {
            eprintln!(
                "postgres: allocation warm-up, {} with {writers} writer(s)",
                label(technique)
            );
            run(pool, technique, writers, plan.warm_up).await?;
        }
        for repetition in 1..=plan.repetitions {
            for technique in techniques {
                eprintln!(
                    "postgres: allocation {} with {writers} writer(s), run {repetition}/{}…",
                    label(technique),
                    plan.repetitions
                );
                let sample = run(pool, technique, writers, plan.duration).await?;
                match allocation
                    .runs
                    .iter_mut()
                    .find(|(t, w, _)| *t == technique && *w == writers)
                {
                    Some((_, _, samples)) => samples.push(sample),
                    None => allocation.runs.push((technique, writers, vec![sample])),
                }
            }
        }
    }
    Ok(allocation)
}

fn label(technique: Technique) -> &'static str {
    match technique {
        Technique::CounterRow => "counter-row lock",
        Technique::XactSequence => "xact id + sequence",
    }
}

async fn run(
    pool: &PgPool,
    technique: Technique,
    writers: usize,
    duration: Duration,
) -> anyhow::Result<Sample> {
    let pool = pool.clone();
    let step: Step = Arc::new(
        move |writer: usize, _random: u64| -> BoxFuture<anyhow::Result<()>> {
            let pool = pool.clone();
            Box::pin(async move {
                let mut transaction = pool.begin().await?;
                let (code, v): (i16, i64) = match technique {
                    Technique::CounterRow => (
                        1,
                        sqlx::query_scalar(
                            "UPDATE bench_counter SET v = v + 1 WHERE id = 1 RETURNING v",
                        )
                        .fetch_one(&mut *transaction)
                        .await?,
                    ),
                    Technique::XactSequence => (
                        2,
                        sqlx::query_scalar(
                            "WITH w AS MATERIALIZED (SELECT pg_current_xact_id()) \
                         SELECT nextval('bench_seq') FROM w",
                        )
                        .fetch_one(&mut *transaction)
                        .await?,
                    ),
                };
                sqlx::query(
                "INSERT INTO bench_rows (technique, v, writer, payload) VALUES ($1, $2, $3, $4)",
            )
            .bind(code)
            .bind(v)
            .bind(i32::try_from(writer).unwrap_or(i32::MAX))
            .bind("Hauptstraße 1, 53111 Bonn")
            .execute(&mut *transaction)
            .await?;
                transaction.commit().await?;
                anyhow::Ok(())
            })
        },
    );
    drive(writers, duration, step).await
}

/// Drops the bench database, closing whatever sessions still use it.
pub(super) async fn drop_database(server: &str, database: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        database.starts_with("hs_bench_")
            && database
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "refusing to drop {database:?}"
    );
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&format!("{server}/postgres"))
        .await?;
    let statement = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
    let outcome = sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(&pool)
        .await;
    pool.close().await;
    outcome?;
    Ok(())
}
