//! `hiscale bench --restore-only`: how fast a rolled-back owner refills itself from a peer's
//! copy, in records (aspects applied) per second.
//!
//! A billing copy holding `records` changed aspects (person, address.bill, bankaccount of
//! `records / 3` customers, applied straight into its store) is served on loopback; each
//! repetition restores an empty registration store (`restoring` from version 0) and runs
//! `hiscale::restore::refill` against it, exactly what `POST /admin/restore` and
//! `hiscale restore` run. Correctness is checked every time: every customer came back, and
//! the counter continues after the copy's newest version.

use std::time::{Duration, Instant};

use anyhow::Context;
use hiscale::Version;
use hiscale::config::PeerConfig;
use hiscale::restore::{Peers, Progress};
use hiscale::store::{ChunkAspect, ChunkItem, Store};
use hiscale::version::ResourceId;

use super::load::{Backend, TOKEN, operator};

const COLLECTION: &str = "customers";
/// Customers per chunk applied to the copy while filling it.
const FILL_CHUNK: usize = 1000;
/// The aspects billing's copy holds, of the four each customer has.
const COPIED: [&str; 3] = ["person", "address.bill", "bankaccount"];
/// No refill may take longer.
const REFILL_TIMEOUT: Duration = Duration::from_secs(600);

/// One measured refill.
#[derive(Debug, Clone, Copy)]
pub(super) struct RefillSample {
    pub(super) records: u64,
    pub(super) seconds: f64,
}

impl RefillSample {
    pub(super) fn per_second(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }
}

/// Fills a copy at `copy_url` with `records` aspects and refills `repetitions` fresh owners
/// (`owner_url(n)` names the n-th one's database) from it.
pub(super) async fn run(
    backend: Backend,
    records: usize,
    repetitions: usize,
    copy_database: &str,
    owner_databases: &[String],
) -> anyhow::Result<Vec<RefillSample>> {
    let label = backend.label();
    let customers = records.div_ceil(COPIED.len()).max(1);
    let listen = {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.local_addr()?
    };
    let config = hiscale::UnitConfig {
        callers: vec![operator()],
        ..hiscale::UnitConfig::new(
            billing::NAME,
            &format!("billing-restore-{label}"),
            listen,
            copy_database,
        )
    };
    let state = hiscale::unit::state(&config, billing::service_area())
        .await
        .with_context(|| format!("{label}: opening the copy's store"))?;
    eprintln!(
        "{label}: restore: filling the copy with {customers} customers ({} records)",
        customers * COPIED.len()
    );
    fill_copy(state.store(), customers).await?;
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = state.clone();
    let server_config = config.clone();
    let server = tokio::spawn(async move {
        hiscale::unit::serve_app(
            &server_config,
            served,
            hiscale::http::Routes::new(),
            async move {
                let _ = stopped.await;
            },
        )
        .await
    });
    let peer = PeerConfig {
        origin: Default::default(),
        sa: billing::NAME.into(),
        collection: COLLECTION.into(),
        url: format!("http://{listen}"),
        token: TOKEN.into(),
        aspects: billing::COPIED_ASPECTS.into(),
        interface_version: 1,
    };
    let mut samples = Vec::new();
    let mut outcome = Ok(());
    for (run, database) in owner_databases.iter().enumerate().take(repetitions) {
        match refill_once(database, &peer, customers).await {
            Ok(sample) => {
                eprintln!(
                    "{label}: restore run {}/{repetitions}: {} records in {:.2} s, {:.0} records/s",
                    run + 1,
                    sample.records,
                    sample.seconds,
                    sample.per_second()
                );
                samples.push(sample);
            }
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    let _ = shutdown.send(());
    if tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .is_err()
    {
        eprintln!("bench: the {label} copy did not stop in time");
    }
    outcome.map(|()| samples)
}

/// Applies `customers` customers, each at its own version, to the copy's store.
async fn fill_copy(store: &Store, customers: usize) -> anyhow::Result<()> {
    let mut next = 1usize;
    while next <= customers {
        let end = (next + FILL_CHUNK - 1).min(customers);
        let mut items = Vec::with_capacity(end + 1 - next);
        for n in next..=end {
            let version = Version::new(i64::try_from(n)?).context("a version out of range")?;
            items.push(ChunkItem {
                id: ResourceId::from_version(version),
                version,
                deleted: false,
                aspects: bodies(n)?
                    .into_iter()
                    .map(|(name, body)| ChunkAspect {
                        name: name.to_owned(),
                        version,
                        body: Some(body),
                        unique_keys: Vec::new(),
                    })
                    .collect(),
            });
        }
        let cursor = Version::new(i64::try_from(end)?).context("a version out of range")?;
        store.apply_chunk(COLLECTION, &items, cursor).await?;
        next = end + 1;
    }
    Ok(())
}

/// The three aspects of customer `n` billing's copy holds, as stored.
fn bodies(n: usize) -> anyhow::Result<[(&'static str, String); 3]> {
    Ok([
        (
            COPIED[0],
            // Billing polls v1: its copy holds the v1 form, which the owner upgrades on read.
            serde_json::json!({
                "type": "natural",
                "salutation": "MS",
                "firstname": "Erika",
                "lastname": format!("Muster{n}"),
            })
            .to_string(),
        ),
        (
            COPIED[1],
            serde_json::to_string(&registration::Address {
                street: format!("Postfach {n}"),
                zip: "53112".into(),
                city: "Bonn".into(),
            })?,
        ),
        (
            COPIED[2],
            serde_json::to_string(&registration::BankAccount {
                owner: format!("Erika Muster{n}"),
                iban: "DE89370400440532013000".into(),
                bic: None,
            })?,
        ),
    ])
}

/// Restores an empty owner at `database` from `peer` and checks what came back.
async fn refill_once(
    database: &str,
    peer: &PeerConfig,
    customers: usize,
) -> anyhow::Result<RefillSample> {
    let sa = registration::service_area();
    let store = Store::connect(database).await?;
    store.register_collection(COLLECTION).await?;
    hiscale::restore::enter_all(&store, &sa, "bench", None).await?;
    let began = Instant::now();
    let reports = tokio::time::timeout(
        REFILL_TIMEOUT,
        hiscale::restore::refill(
            &store,
            &sa,
            Peers {
                all: std::slice::from_ref(peer),
                only: None,
                trust: &hiscale::tls::Trust::default(),
                margin: 0,
            },
            &Progress::default(),
        ),
    )
    .await
    .context("the refill took longer than 600 s")??;
    let seconds = began.elapsed().as_secs_f64();
    let report = reports
        .first()
        .context("the refill reported no collection")?;
    let peer_report = report.peers.first().context("the refill read no peer")?;
    anyhow::ensure!(
        peer_report.error.is_none(),
        "the peer could not be read: {:?}",
        peer_report.error
    );
    anyhow::ensure!(
        report.continues_after == Some(i64::try_from(customers)?),
        "the counter continues after {:?}, not after the copy's newest version {customers} (no margin here)",
        report.continues_after
    );
    let restored = store.count_resources(COLLECTION).await?;
    anyhow::ensure!(
        restored == customers as u64,
        "{restored} customers came back, not {customers}"
    );
    store.close().await;
    Ok(RefillSample {
        records: peer_report.aspects_applied,
        seconds,
    })
}

/// Prints the medians per backend.
pub(super) fn print(results: &[(Backend, Vec<RefillSample>)]) {
    println!("\nrefill of a rolled-back owner from one peer's copy (records = aspects applied)");
    println!(
        "{:<10} {:>10} {:>6} {:>16} {:>16}",
        "backend", "records", "runs", "median rec/s", "median seconds"
    );
    for (backend, samples) in results {
        let mut rates: Vec<f64> = samples.iter().map(RefillSample::per_second).collect();
        let mut seconds: Vec<f64> = samples.iter().map(|sample| sample.seconds).collect();
        rates.sort_by(f64::total_cmp);
        seconds.sort_by(f64::total_cmp);
        let median = |sorted: &[f64]| sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        println!(
            "{:<10} {:>10} {:>6} {:>16.0} {:>16.2}",
            backend.label(),
            samples.first().map_or(0, |sample| sample.records),
            samples.len(),
            median(&rates),
            median(&seconds)
        );
    }
}
