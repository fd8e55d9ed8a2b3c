//! Running one service unit: open the store, build the app, start its pollers and purge,
//! listen, and stop cleanly.

use std::time::Duration;

use tokio::net::TcpListener;

use crate::aspect::{AspectSelector, SelectorError};
use crate::auth::{CallerConfigError, Callers};
use crate::config::{
    FEED_MAX_LIMIT, FEED_MAX_WAIT_SECS, ReaderRole, SourceConfig, UnitConfig, UnitKind,
};
use crate::http::{AppState, Extras, Replication, Routes, UnitIdentity, UnitRole, app_with};
use crate::model::ServiceArea;
use crate::session::{KeyError, SessionVerifier};
use crate::store::{self, Store};

/// Grants in the configuration are short; this bounds a typo's damage.
pub(crate) const MAX_GRANT_CHARS: usize = 1024;

/// Why a unit could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("configuration is for SA {configured}, but this is {actual}")]
    WrongServiceArea { configured: String, actual: String },
    #[error(transparent)]
    Callers(#[from] CallerConfigError),
    #[error("sessions.public_keys: {0}")]
    SessionKey(#[from] KeyError),
    #[error("sessions.grant: {0}")]
    SessionGrant(#[from] SelectorError),
    #[error("sources: {collection}: {reason}")]
    Source { collection: String, reason: String },
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// A setting outside what the unit can run with (named, with its allowed range).
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Builds a unit's state from its configuration (opens and migrates the store).
pub async fn state(config: &UnitConfig, sa: ServiceArea) -> Result<AppState, UnitError> {
    build_state(config, sa, Store::connect(&config.database)).await
}

/// [`state`] on a store the caller opened (the benchmark opens one with
/// [`store::ConnectOptions`]); `config.database` is not used.
pub async fn state_with_store(
    config: &UnitConfig,
    sa: ServiceArea,
    store: Store,
) -> Result<AppState, UnitError> {
    build_state(config, sa, async { Ok(store) }).await
}

/// Checks the configuration, then opens the store with `open` and builds the state.
async fn build_state(
    config: &UnitConfig,
    sa: ServiceArea,
    open: impl std::future::Future<Output = Result<Store, store::Error>>,
) -> Result<AppState, UnitError> {
    if config.sa != sa.name() {
        return Err(UnitError::WrongServiceArea {
            configured: config.sa.clone(),
            actual: sa.name().to_owned(),
        });
    }
    // The revocations of sessions: owned where sessions are signed, copied everywhere else
    // the configuration names their source (the topology does for every SA).
    let sa = crate::revocation::declare(
        sa,
        config.sessions.signing_key.is_some(),
        config.sessions.revocations_from.as_deref(),
    );
    let sa = match config.newest_interface {
        Some(newest) => sa.interfaces_up_to(newest),
        None => sa,
    };
    check_sources(config, &sa)?;
    config.check().map_err(UnitError::Config)?;
    let trust = crate::tls::Trust::load(&config.ca_certificates)?;
    let callers = Callers::from_config(&config.callers)?;
    let sessions = if config.sessions.public_keys.is_empty() {
        None
    } else {
        Some(SessionVerifier::from_keys(&config.sessions.public_keys)?)
    };
    let session_grant = config
        .sessions
        .grant
        .as_deref()
        .map(|grant| AspectSelector::parse(grant, MAX_GRANT_CHARS))
        .transpose()?;
    let store = open.await?;
    store
        .record_unit(
            &config.unit,
            sa.name(),
            &config.listen.to_string(),
            sa.newest_interface_version(),
        )
        .await?;
    for collection in sa.owned() {
        store.register_collection(collection.name()).await?;
    }
    let own_datacenter = config.datacenter.as_deref().unwrap_or_default();
    let owned: Vec<&str> = sa.owned().iter().map(|c| c.name()).collect();
    store
        .use_origin(&config.owner_datacenters, own_datacenter, &owned)
        .await?;
    for collection in sa.collections() {
        for lookup in collection.lookups() {
            store.ensure_lookup(collection.name(), lookup).await?;
        }
    }
    if let Some(warning) = alone_in_store(&store, &config.peers).await? {
        tracing::warn!(unit = %config.unit, "{warning}");
    }
    // The copy of the revocations alone does not make an SA a reader: its units stay owners
    // (they share the reader lease, so one of them polls at a time).
    let copies_only_revocations = sa
        .copied()
        .iter()
        .all(|copy| copy.name() == crate::revocation::COLLECTION);
    let role = match (config.kind, copies_only_revocations, config.reader.role) {
        (UnitKind::Batch, _, _) => UnitRole::Batch,
        (UnitKind::Service, true, _) => UnitRole::Owner,
        (UnitKind::Service, false, ReaderRole::Primary) => UnitRole::Primary,
        (UnitKind::Service, false, ReaderRole::Backup) => UnitRole::Backup,
    };
    let copy_versions = config
        .sources
        .iter()
        .filter_map(|source| {
            let owner = sa.collection(&source.collection)?.owner().to_owned();
            Some((owner, source.interface_version))
        })
        .collect();
    let gate = std::sync::Arc::new(crate::gate::StartGate::new(
        &store,
        &owned,
        &config.consumers,
        &config.feed,
    ));
    if !gate.is_open() {
        tracing::info!(unit = %config.unit, held = ?gate.held().into_iter().map(|h| h.collection).collect::<Vec<_>>(),
            "start gate: writes wait until every consumer has told this store the version it holds");
    }
    let state = AppState::new(
        sa,
        store,
        callers,
        config.limits.clone(),
        UnitIdentity {
            unit: config.unit.clone(),
            zone: config.zone.clone(),
            role,
            peers: config.peers.clone(),
        },
        Extras {
            feed: config.feed.clone(),
            sessions,
            session_grant,
            session_ttl_secs: config.sessions.ttl_secs,
            replication: Replication::default(),
            restore_from: config.restore_from.clone(),
            trust,
            copy_versions,
            copy_origins: copy_origins(&config.sources),
            gate,
        },
    );
    // Version states are data in the SA's database: read them before serving anything, then
    // follow them.
    state.refresh_interfaces().await?;
    state.refresh_stored_form(false).await?;
    state.watch_interfaces();
    Ok(state)
}

/// A warning when the topology names peers of this unit but none of them has ever recorded
/// itself in `store`: they may be writing to another database, each counting versions and ids
/// on its own. (On a landscape's very first start it also shows until the second unit is up.)
pub async fn alone_in_store(
    store: &Store,
    peers: &[String],
) -> Result<Option<String>, store::Error> {
    if peers.is_empty() {
        return Ok(None);
    }
    let recorded = store.units().await?;
    if recorded.iter().any(|unit| peers.contains(&unit.unit)) {
        return Ok(None);
    }
    Ok(Some(format!(
        "alone in this store: the topology names {}, but none of them has used this database; \
         check that every unit of the SA names the same one",
        peers.join(", ")
    )))
}

/// Refuses sources a poller could only fail on forever: a collection this SA does not copy (or
/// names twice, for one origin), aspects its copy does not declare, `limit` or `wait` beyond the feed's bounds.
fn check_sources(config: &UnitConfig, sa: &ServiceArea) -> Result<(), UnitError> {
    let mut seen = Vec::new();
    for source in &config.sources {
        let refuse = |reason: String| UnitError::Source {
            collection: source.collection.clone(),
            reason,
        };
        // One source per collection, or per origin of a collection owned in several
        // datacenters.
        let key = (source.collection.as_str(), source.origin.name.as_str());
        if seen.contains(&key) {
            return Err(refuse("named by two sources".to_owned()));
        }
        seen.push(key);
        check_source(source, sa).map_err(refuse)?;
    }
    Ok(())
}

/// Why one source cannot work for `sa`, in words: shared by the start-up check and the
/// topology's (`hiscale check`), so both refuse the same things.
pub(crate) fn check_source(source: &SourceConfig, sa: &ServiceArea) -> Result<(), String> {
    let Some(copy) = sa
        .copied()
        .iter()
        .find(|copy| copy.name() == source.collection)
    else {
        return Err(format!("{} does not copy this collection", sa.name()));
    };
    AspectSelector::parse(&source.aspects, MAX_GRANT_CHARS)
        .and_then(|selector| selector.resolve(copy.aspect_names()))
        .map_err(|error| {
            format!(
                "aspects {:?} do not fit the copy {} declares: {error}",
                source.aspects,
                sa.name()
            )
        })?;
    if !(1..=FEED_MAX_LIMIT).contains(&source.limit) {
        return Err(format!(
            "limit {} is outside 1..={FEED_MAX_LIMIT}",
            source.limit
        ));
    }
    if source.wait_secs > FEED_MAX_WAIT_SECS {
        return Err(format!(
            "wait_secs {} is above the feed's {FEED_MAX_WAIT_SECS}",
            source.wait_secs
        ));
    }
    if source.wait_secs == 0 && source.interval_secs == 0 {
        return Err("interval_secs 0 without long polling would poll without pause".to_owned());
    }
    Ok(())
}

/// Serves a unit until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    config: &UnitConfig,
    sa: ServiceArea,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), UnitError> {
    serve_app(config, state(config, sa).await?, Routes::new(), shutdown).await
}

/// Like [`serve`], with an SA's own routes beside the framework's.
pub async fn serve_app(
    config: &UnitConfig,
    state: AppState,
    own_routes: Routes,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), UnitError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| UnitError::Listen {
            address: config.listen,
            source,
        })?;
    tracing::info!(unit = %config.unit, address = %config.listen, "unit listening");
    let (stop_tasks, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = match config.kind {
        UnitKind::Service => crate::poller::spawn(
            state.clone(),
            config.sources.clone(),
            config.reader.clone(),
            stopped.clone(),
        ),
        UnitKind::Batch => vec![tokio::spawn(crate::batch::run(
            state.jobs(),
            stopped.clone(),
        ))],
    };
    if !state.gate().is_open() {
        tasks.push(tokio::spawn(crate::gate::StartGate::run(
            state.gate().clone(),
            state.store().clone(),
            stopped.clone(),
        )));
    }
    tasks.push(tokio::spawn(state.assumptions().clone().run(
        state.store().clone(),
        state.feed_config().clone(),
        stopped.clone(),
    )));
    if config.kind == UnitKind::Service {
        tasks.push(tokio::spawn(crate::revocation::run(
            state.clone(),
            stopped.clone(),
        )));
    }
    let heard = state.clone();
    let store = state.store().clone();
    let listening = stopped.clone();
    tasks.push(tokio::spawn(async move {
        store
            .listen_for_commits(|| heard.notify_change(), listening)
            .await;
    }));
    tasks.push(tokio::spawn(
        state.clone().act_on_rollback_evidence(stopped.clone()),
    ));
    tasks.push(tokio::spawn(purge_periodically(state.clone(), stopped)));
    let store = state.store().clone();
    let router = app_with(state.clone(), own_routes);
    let served = crate::http::serve(listener, router, &config.limits, shutdown)
        .await
        .map_err(UnitError::Serve);
    // Pollers may be inside a long poll; stopping them mid-chunk is harmless because a chunk
    // is applied in one transaction and re-applying it changes nothing.
    let _ = stop_tasks.send(true);
    for task in tasks {
        task.abort();
    }
    // A unit of the previous release that stops no longer holds the stored form back.
    if let Err(error) = store.unit_stopped(&config.unit).await {
        tracing::warn!(%error, "cannot record that this unit stopped");
    }
    store.close().await;
    tracing::info!(unit = %config.unit, "unit stopped");
    served
}

/// Purges tombstones of owned collections that every known consumer has passed.
async fn purge_periodically(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let interval = Duration::from_secs(state.feed_config().purge_interval_secs.max(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if let Err(error) = state.flush_consumer_positions().await {
            tracing::warn!(%error, "could not write the consumers' positions before a purge");
            continue;
        }
        for collection in state.service_area().owned() {
            // The purge logs what it removed; batch by batch, so writers wait milliseconds.
            if let Err(error) = state.purge_tombstones(collection).await {
                tracing::warn!(%error, collection = %collection.name(), "tombstone purge failed");
            }
        }
    }
}

/// Per copied collection owned in several datacenters, those datacenters in counter order, as
/// the sources (one per origin) name them.
fn copy_origins(
    sources: &[crate::config::SourceConfig],
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut origins: std::collections::BTreeMap<String, Vec<&crate::origin::Origin>> =
        std::collections::BTreeMap::new();
    for source in sources.iter().filter(|source| !source.origin.is_single()) {
        origins
            .entry(source.collection.clone())
            .or_default()
            .push(&source.origin);
    }
    origins
        .into_iter()
        .map(|(collection, mut list)| {
            list.sort_by_key(|origin| origin.index);
            let names = list.iter().map(|origin| origin.name.clone()).collect();
            (collection, names)
        })
        .collect()
}
