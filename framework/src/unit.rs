//! Running one service unit: open the store, build the app, listen, and stop cleanly.

use tokio::net::TcpListener;

use crate::auth::{CallerConfigError, Callers};
use crate::config::UnitConfig;
use crate::http::{AppState, UnitIdentity, app};
use crate::model::ServiceArea;
use crate::store::{self, Store};

/// Why a unit could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("configuration is for SA {configured}, but this is {actual}")]
    WrongServiceArea { configured: String, actual: String },
    #[error(transparent)]
    Callers(#[from] CallerConfigError),
    #[error("store: {0}")]
    Store(#[from] store::Error),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// Builds a unit's state from its configuration (opens and migrates the store).
pub async fn state(config: &UnitConfig, sa: ServiceArea) -> Result<AppState, UnitError> {
    if config.sa != sa.name() {
        return Err(UnitError::WrongServiceArea {
            configured: config.sa.clone(),
            actual: sa.name().to_owned(),
        });
    }
    let callers = Callers::from_config(&config.callers)?;
    let store = Store::connect(&config.database).await?;
    for collection in sa.owned() {
        store.register_collection(collection.name()).await?;
    }
    Ok(AppState::new(
        sa,
        store,
        callers,
        config.limits.clone(),
        UnitIdentity {
            unit: config.unit.clone(),
            zone: config.zone.clone(),
        },
    ))
}

/// Serves a unit until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    config: &UnitConfig,
    sa: ServiceArea,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), UnitError> {
    let state = state(config, sa).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| UnitError::Listen {
            address: config.listen,
            source,
        })?;
    tracing::info!(unit = %config.unit, address = %config.listen, "unit listening");
    let store = state.store().clone();
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(UnitError::Serve)?;
    store.close().await;
    tracing::info!(unit = %config.unit, "unit stopped");
    Ok(())
}
