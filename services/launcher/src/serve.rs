//! `hiscale serve`: one service unit in this process, from a topology or a unit file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use hiscale::topology::Secrets;

use crate::{registry, topology};

/// Which unit to run: `--topology FILE --unit NAME --secrets FILE` (what deployments use), or
/// `--config FILE` (one unit's complete configuration, as the tests write them).
#[derive(Debug, Clone, Args)]
pub struct ServeOptions {
    /// The unit's complete TOML configuration.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["topology", "unit", "secrets"], required_unless_present = "topology")]
    pub config: Option<PathBuf>,
    /// The deployment the unit belongs to, e.g. deploy/topology.toml.
    #[arg(long, value_name = "FILE", requires_all = ["unit", "secrets"])]
    pub topology: Option<PathBuf>,
    /// The unit's name in the topology, e.g. registration-1.
    #[arg(long, value_name = "NAME")]
    pub unit: Option<String>,
    /// Bearer tokens and session keys (deploy/secrets.example.toml).
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
}

/// Runs the unit `options` name until SIGTERM or Ctrl-C.
pub async fn run(options: &ServeOptions) -> anyhow::Result<()> {
    let config = unit_config(options)?;
    let (registered, sa) = registry::find(&config.sa)
        .with_context(|| format!("this binary runs no service area {:?}", config.sa))?;
    let own_routes = (registered.routes)(&config).map_err(anyhow::Error::msg)?;
    let state = hiscale::unit::state(&config, sa).await?;
    hiscale::unit::serve_app(&config, state, own_routes, shutdown_signal()).await?;
    Ok(())
}

/// The unit's configuration: read from its file, or derived from the checked topology.
fn unit_config(options: &ServeOptions) -> anyhow::Result<hiscale::UnitConfig> {
    if let Some(path) = &options.config {
        return Ok(hiscale::UnitConfig::load(path)?);
    }
    let (Some(path), Some(unit), Some(secrets)) =
        (&options.topology, &options.unit, &options.secrets)
    else {
        anyhow::bail!("name a unit: --topology FILE --unit NAME --secrets FILE, or --config FILE");
    };
    let topology = topology::load_checked(path)?;
    let secrets = Secrets::load(secrets)?;
    Ok(topology.unit_config(unit, &secrets, &topology::service_areas())?)
}

/// Completes on SIGTERM (what supervisors and systemd send) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops this unit");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
