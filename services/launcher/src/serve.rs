//! `hiscale serve --config FILE`: one service unit in this process.

use std::path::Path;

use anyhow::Context;
use hiscale::http::AppState;
use hiscale::session::SessionIssuer;

/// How long login's session tokens live unless the configuration says otherwise.
const DEFAULT_SESSION_SECS: u64 = 8 * 3600;

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
    let own_routes = own_routes(&config)?;
    let state = hiscale::unit::state(&config, sa).await?;
    hiscale::unit::serve_app(&config, state, own_routes, shutdown_signal()).await?;
    Ok(())
}

/// The service areas this binary can run, by name.
pub fn service_area(name: &str) -> Option<hiscale::ServiceArea> {
    match name {
        registration::NAME => Some(registration::service_area()),
        login::NAME => Some(login::service_area()),
        shop::NAME => Some(shop::service_area()),
        billing::NAME => Some(billing::service_area()),
        _ => None,
    }
}

/// The routes an SA adds beside the framework's: login signs users in.
fn own_routes(config: &hiscale::UnitConfig) -> anyhow::Result<axum::Router<AppState>> {
    if config.sa != login::NAME {
        return Ok(axum::Router::new());
    }
    let key = config
        .sessions
        .signing_key
        .as_deref()
        .context("login needs sessions.signing_key to issue session tokens")?;
    let issuer = SessionIssuer::from_hex(
        key,
        config.sessions.ttl_secs.unwrap_or(DEFAULT_SESSION_SECS),
    )?;
    Ok(login::routes(issuer))
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
