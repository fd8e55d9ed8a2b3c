//! `hiscale serve --config FILE`: one service unit in this process.

use std::path::Path;

use anyhow::Context;

/// Runs the unit described by `config_path` until SIGTERM or Ctrl-C.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = hiscale::UnitConfig::load(config_path)?;
    let sa = service_area(&config.sa).with_context(|| {
        format!(
            "unknown service area {:?} in {}",
            config.sa,
            config_path.display()
        )
    })?;
    hiscale::unit::serve(&config, sa, shutdown_signal()).await?;
    Ok(())
}

/// The service areas this binary can run, by name.
pub fn service_area(name: &str) -> Option<hiscale::ServiceArea> {
    match name {
        registration::NAME => Some(registration::service_area()),
        _ => None,
    }
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
