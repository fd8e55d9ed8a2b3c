//! `hiscale restore`: refills an SA's restored database from the copies its peers keep, with
//! its units stopped or running; prints progress and a final report, and fails when a peer
//! could not be read (run it again with `--from PEER` once that peer is back).
//!
//! The work is `hiscale::restore` (what `POST /admin/restore` runs too); this is its command
//! line: which store, which peers, and the tables.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hiscale::restore::{Peers, Progress, RefillReport};
use hiscale::topology::Secrets;

use crate::{registry, topology};

/// Which SA to refill: `--topology FILE --secrets FILE --sa NAME`, or `--config FILE` (a unit
/// configuration with its database and `restore_from`, as the tests write them).
#[derive(Debug, Clone, Args)]
pub struct RestoreOptions {
    /// The deployment, e.g. deploy/topology.toml.
    #[arg(long, value_name = "FILE", requires_all = ["secrets", "sa"], required_unless_present = "config")]
    pub topology: Option<PathBuf>,
    /// Bearer tokens (the SA's own token reads the peers' copies).
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
    /// The SA whose database was restored, e.g. registration.
    #[arg(long, value_name = "NAME")]
    pub sa: Option<String>,
    /// A unit's complete TOML configuration instead of a topology.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["topology", "secrets", "sa"])]
    pub config: Option<PathBuf>,
    /// Read only this peer SA's copies (one that could not be read the first time).
    #[arg(long, value_name = "PEER")]
    pub from: Option<String>,
}

/// How often progress is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Runs the refill; an error when a peer could not be read.
pub async fn run(options: &RestoreOptions) -> anyhow::Result<()> {
    let config = unit_config(options)?;
    let (_, sa) = registry::find(&config.sa)
        .with_context(|| format!("this binary runs no service area {:?}", config.sa))?;
    if let Some(from) = &options.from
        && !config.restore_from.iter().any(|peer| &peer.sa == from)
    {
        let known: Vec<&str> = config
            .restore_from
            .iter()
            .map(|peer| peer.sa.as_str())
            .collect();
        anyhow::bail!(
            "{from} keeps no copy of what {} owns; the peers are: {}",
            config.sa,
            known.join(", ")
        );
    }
    let trust = hiscale::tls::Trust::load(&config.ca_certificates)?;
    let store = hiscale::store::Store::connect(&config.database)
        .await
        .with_context(|| format!("cannot open {}'s database", config.sa))?;
    hiscale::restore::enter_all(&store, &sa, "hiscale restore", None).await?;
    let progress = Progress::default();
    let printer = tokio::spawn(print_progress(progress.clone()));
    let outcome = hiscale::restore::refill(
        &store,
        &sa,
        Peers {
            all: &config.restore_from,
            only: options.from.as_deref(),
            trust: &trust,
            margin: config.feed.rollback_margin,
        },
        &progress,
    )
    .await;
    printer.abort();
    store.close().await;
    let reports = outcome?;
    print_reports(&reports);
    let unreachable: Vec<String> = reports
        .iter()
        .flat_map(|report| report.unreachable.iter().cloned())
        .collect();
    if !unreachable.is_empty() {
        anyhow::bail!(
            "could not read {}: the collection stays restoring; run `hiscale restore --from PEER` once it is back",
            unreachable.join(", ")
        );
    }
    Ok(())
}

/// The SA's configuration as one of its units has it (its database and peers).
fn unit_config(options: &RestoreOptions) -> anyhow::Result<hiscale::UnitConfig> {
    if let Some(path) = &options.config {
        return Ok(hiscale::UnitConfig::load(path)?);
    }
    let (Some(path), Some(secrets), Some(sa)) = (&options.topology, &options.secrets, &options.sa)
    else {
        anyhow::bail!("name an SA: --topology FILE --secrets FILE --sa NAME, or --config FILE");
    };
    let topology = topology::load_checked(path)?;
    let secrets = Secrets::load(secrets)?;
    let unit = topology
        .service_area(sa)
        .and_then(|deployment| deployment.units.first())
        .map(|unit| unit.get_ref().name.clone())
        .with_context(|| format!("the topology names no unit of {sa:?}"))?;
    Ok(topology.unit_config(&unit, &secrets, &topology::service_areas())?)
}

/// Prints each peer's progress every second while the refill runs.
async fn print_progress(progress: Progress) {
    loop {
        tokio::time::sleep(PROGRESS_INTERVAL).await;
        for peer in progress.snapshot().peers.iter().filter(|peer| !peer.done) {
            println!(
                "  {} from {}: {} resources, {} records, {:.0} records/s",
                peer.collection,
                peer.sa,
                peer.resources,
                peer.aspects_applied,
                peer.records_per_sec
            );
        }
    }
}

/// The final report: per collection and peer what came back, then what may be lost.
fn print_reports(reports: &[RefillReport]) {
    if reports.is_empty() {
        println!("nothing is restoring");
    }
    for report in reports {
        println!(
            "\n{}: restored to {}, greatest version reported {}",
            report.collection, report.restored_to, report.greatest_reported
        );
        if let Some(reason) = &report.not_refillable {
            println!("  not refillable: {reason}");
        }
        if !report.peers.is_empty() {
            println!(
                "  {:<14} {:<40} {:>10} {:>10} {:>10} {:>12}  outcome",
                "peer", "aspects", "resources", "records", "newest", "records/s"
            );
            for peer in &report.peers {
                println!(
                    "  {:<14} {:<40} {:>10} {:>10} {:>10} {:>12.0}  {}",
                    peer.sa,
                    peer.aspects,
                    peer.resources,
                    peer.aspects_applied,
                    peer.newest,
                    peer.records_per_sec,
                    peer.error.as_deref().unwrap_or("read")
                );
            }
        }
        for peer in report
            .peers
            .iter()
            .filter(|p| !p.kept_from_backup.is_empty())
        {
            println!(
                "  {}'s copy is of interface v{}, which lacks {}: kept as the backup had them \
                 (their changes after the backup are not restored)",
                peer.sa,
                peer.interface_version,
                peer.kept_from_backup.join(", ")
            );
        }
        if !report.not_held.is_empty() {
            println!(
                "  held by no peer (changes after the backup lost): {}",
                report.not_held.join(", ")
            );
        }
        for range in &report.unaccounted {
            println!(
                "  may be lost: {} versions {}..={} (no reachable peer accounted for them)",
                range.aspect, range.from, range.to
            );
        }
        if !report.unseen_versions.is_empty() {
            let shown: Vec<String> = report
                .unseen_versions
                .iter()
                .take(20)
                .map(|[from, to]| {
                    if from == to {
                        from.to_string()
                    } else {
                        format!("{from}..={to}")
                    }
                })
                .collect();
            println!(
                "  versions no peer showed ({} ranges{}; ids of resources no peer held are among them): {}{}",
                report.unseen_versions.len(),
                if report.unseen_truncated {
                    ", cut short"
                } else {
                    ""
                },
                shown.join(", "),
                if report.unseen_versions.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            );
        }
        match report.continues_after {
            Some(next) => println!("  writes continue after version {next}"),
            None => println!(
                "  still restoring: could not read {}",
                report.unreachable.join(", ")
            ),
        }
    }
}
