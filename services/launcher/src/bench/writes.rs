//! Figure 3: gap-free owner writes per second against raw single-row inserts, 8 clients each,
//! on the same durable PostgreSQL database (the bench's first own cluster: fsync and
//! synchronous_commit on).
//!
//! HiScale's side is `PUT /customers/{id}/address.home` at a registration unit in this
//! process (a version drawn from the collection's sequence, the aspect row, the resource row,
//! one commit). The reference is an sqlx loop of `INSERT INTO … VALUES ($1)` with the same
//! address document, one autocommit statement each, on its own pool of as many connections as
//! clients. The two alternate within each repetition, so drift on a shared machine hits both.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;

use super::load::{Backend, BoxFuture, Sample, Step, Unit, drive};

/// Concurrent clients on each side.
pub(super) const CLIENTS: usize = 8;
/// Customers the writers spread their `PUT`s over.
const CUSTOMERS: usize = 200;

/// Figure 3's samples.
#[derive(Debug, Clone, Default)]
pub(super) struct WriteRates {
    /// HiScale's `PUT`s, one sample per repetition.
    pub(super) rest: Vec<Sample>,
    /// Raw single-row inserts, one sample per repetition.
    pub(super) raw: Vec<Sample>,
}

/// Measures both sides `repetitions` times for `duration` each on a fresh database of the
/// durable server at `server`.
pub(super) async fn measure(
    server: &str,
    duration: Duration,
    repetitions: usize,
) -> anyhow::Result<WriteRates> {
    let database = hiscale::store::ensure_postgres_database(server, "hs_bench_writes").await?;
    eprintln!("postgres (durable): figure 3: starting a registration unit, {CUSTOMERS} customers");
    let mut unit = Unit::start(Backend::Postgres, &database).await?;
    let outcome = async {
        unit.seed(CUSTOMERS).await?;
        let raw = PgPoolOptions::new()
            .max_connections(CLIENTS as u32)
            .connect(&database)
            .await
            .context("connecting the raw inserts' pool")?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS hs_bench_raw_inserts \
             (id bigserial PRIMARY KEY, body jsonb NOT NULL)",
        )
        .execute(&raw)
        .await
        .context("creating the raw inserts' table")?;
        let mut rates = WriteRates::default();
        for run in 1..=repetitions {
            eprintln!(
                "postgres (durable): figure 3: PUTs, then raw inserts, run {run}/{repetitions}"
            );
            rates.rest.push(unit.writes(CLIENTS, duration).await?);
            rates.raw.push(raw_inserts(&raw, duration).await?);
        }
        raw.close().await;
        anyhow::Ok(rates)
    }
    .await;
    unit.stop().await;
    outcome
}

async fn raw_inserts(pool: &sqlx::PgPool, duration: Duration) -> anyhow::Result<Sample> {
    let pool = pool.clone();
    let step: Step = Arc::new(
        move |_worker: usize, random: u64| -> BoxFuture<anyhow::Result<()>> {
            let pool = pool.clone();
            Box::pin(async move {
                let body = serde_json::json!({
                    "street": format!("Teststraße {}", random % 10_000),
                    "zip": "53111",
                    "city": "Bonn",
                });
                sqlx::query("INSERT INTO hs_bench_raw_inserts (body) VALUES ($1)")
                    .bind(body)
                    .execute(&pool)
                    .await
                    .context("a raw insert")?;
                Ok(())
            })
        },
    );
    drive(CLIENTS, duration, step).await
}
