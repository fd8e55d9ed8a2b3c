//! The HTTP edge: routes, shared state, and the middleware every answer passes through.
//! Only this module (and its children) names axum types.

mod blocking;
mod body_deadline;
mod client_address;
mod command;
mod drain;
mod error;
mod extract;
mod feed;
mod gui;
mod head_bounds;
pub(crate) mod lookup;
mod ops;
mod positions;
mod purge;
mod read_cache;
mod request_id;
mod resource;
mod restore;
mod server;
mod signup;
mod stored_form;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
use error::ErrorReport;
pub use extract::UrlVersion;

pub use crate::replication::Replication;
pub use blocking::run_blocking;
pub use client_address::ClientAddress;
pub use drain::DRAIN_LIMIT_BYTES;
pub use signup::SIGN_UPS_PER_MINUTE;

use crate::aspect::AspectSelector;
use crate::auth::Callers;
use crate::codes;
use crate::config::{FeedConfig, Limits, PeerConfig};
use crate::interface::{
    InterfaceRecord, InterfaceState, InterfaceVersion, Interfaces, VersionInfo,
};

/// How often a unit re-reads the interface version states (an operator's change reaches
/// every unit within this plus one query, well inside the 2 s the contract allows).
const INTERFACE_REFRESH: std::time::Duration = std::time::Duration::from_millis(700);
use crate::model::{Collection, Role, ServiceArea};
use crate::repr::{self, Format};
use crate::session::SessionVerifier;
use crate::store::Store;
use crate::version::ResourceId;

/// Everything a unit's handlers share: one `Clone` of `Arc`s, no globals.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sa: Arc<ServiceArea>,
    store: Store,
    callers: Callers,
    limits: Limits,
    feed: FeedConfig,
    /// Interface versions per owning SA: our own, and those of the SAs whose data we copy
    /// (a copy is served in its owner's media types).
    interfaces: BTreeMap<String, Interfaces>,
    unit: UnitIdentity,
    /// Who holds the reader lease when this process does: the unit's name and a nonce drawn at
    /// start, so that a unit started twice under one name (a replacement during a partition,
    /// an operator's mistake) is two holders, and the one that lost the lease is fenced.
    lease_holder: String,
    draining: AtomicBool,
    /// The interface version whose form documents are written in (`stored_form.rs`).
    stored_form: Arc<std::sync::atomic::AtomicU32>,
    /// Whether a peer has been seen in the store (or there are none to see).
    peer_seen: AtomicBool,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    sessions: Option<SessionVerifier>,
    /// What sessions may read of their own resource here (all when `None`).
    session_grant: Option<AspectSelector>,
    /// The sessions ended before their `exp`, as this unit's store holds them.
    revocations: Arc<crate::revocation::Revocations>,
    /// How long session tokens live (a credentials revocation is kept that long).
    session_ttl_secs: i64,
    /// Bumped after every write of this unit, so long polls wake at once.
    changes: tokio::sync::watch::Sender<u64>,
    /// Full feed chunks, rendered: each is a state the owner really had.
    chunks: moka::future::Cache<String, bytes::Bytes>,
    /// Single-resource reads, rendered, by the state they show.
    reads: read_cache::ReadCache,
    /// Where the consumers of owned feeds stand, written without a write per poll.
    positions: Arc<positions::ConsumerPositions>,
    replication: Replication,
    /// The peers whose copies refill this owner after a rollback.
    restore_from: Vec<PeerConfig>,
    /// Per copied collection owned in several datacenters, those datacenters (the origins its
    /// feed serves one at a time).
    copy_origins: BTreeMap<String, Vec<String>>,
    /// The CAs trusted for HTTPS calls to sources and peers.
    trust: crate::tls::Trust,
    /// Holds writes after the start until the consumers have reported.
    gate: Arc<crate::gate::StartGate>,
    /// The refill running now (or last), for `GET /admin/restore`.
    refill: crate::restore::Progress,
    /// The latest check of PostgreSQL's assumptions, for `/health`.
    assumptions: Arc<crate::assumptions::Assumptions>,
    /// Sign-ups (anonymous creates) taken this minute.
    sign_ups: signup::Limiter,
}

/// Optional parts of a unit beyond its store and callers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extras {
    pub feed: FeedConfig,
    pub sessions: Option<SessionVerifier>,
    pub session_grant: Option<AspectSelector>,
    /// Lifetime of session tokens ([`crate::session::DEFAULT_TTL_SECS`] when absent).
    pub session_ttl_secs: Option<u64>,
    pub replication: Replication,
    pub restore_from: Vec<PeerConfig>,
    /// Per copied collection owned in several datacenters, those datacenters in the
    /// topology's order (see [`crate::origin`]); absent for one owner datacenter.
    pub copy_origins: BTreeMap<String, Vec<String>>,
    /// The CAs trusted for HTTPS calls to sources and peers (the host's roots by default).
    pub trust: crate::tls::Trust,
    /// The interface version each copied collection's source is polled with, by owner SA: a
    /// copy serves only that version (it holds nothing else). v1 when absent.
    pub copy_versions: BTreeMap<String, InterfaceVersion>,
    /// The start gate (open when absent).
    pub gate: Arc<crate::gate::StartGate>,
}

/// What a unit does with its SA's data, as `/heartbeat` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitRole {
    /// A unit of an SA that keeps no copies: it serves what its SA owns.
    Owner,
    /// The unit of a reading SA that polls its sources.
    Primary,
    /// A unit of a reading SA that watches the primary and polls only while it is gone.
    Backup,
    /// A batch unit: runs the SA's jobs, serves only operations (no resources, no feed).
    Batch,
}

/// Who this unit is, for `/heartbeat` and logs.
#[derive(Debug, Clone)]
pub struct UnitIdentity {
    pub unit: String,
    pub zone: Option<String>,
    pub role: UnitRole,
    /// The other units of the SA the topology names (`/health` warns while none of them has
    /// recorded itself in this unit's store).
    pub peers: Vec<String>,
}

impl AppState {
    pub(crate) fn new(
        sa: ServiceArea,
        store: Store,
        callers: Callers,
        limits: Limits,
        unit: UnitIdentity,
        extras: Extras,
    ) -> Self {
        let mut interfaces = BTreeMap::new();
        interfaces.insert(
            sa.name().to_owned(),
            Interfaces::new(sa.name(), sa.interface_versions(), 1),
        );
        for collection in sa.copied() {
            let version = extras
                .copy_versions
                .get(collection.owner())
                .copied()
                .unwrap_or(1);
            interfaces
                .entry(collection.owner().to_owned())
                .or_insert_with(|| Interfaces::new(collection.owner(), &[version], version));
        }
        let chunks = moka::future::Cache::builder()
            .max_capacity(extras.feed.cache_bytes)
            .weigher(|key: &String, chunk: &bytes::Bytes| {
                u32::try_from(key.len() + chunk.len()).unwrap_or(u32::MAX)
            })
            .time_to_live(std::time::Duration::from_secs(60))
            .build();
        let reads = read_cache::ReadCache::new(extras.feed.read_cache_bytes);
        // The canonical form until the units recorded in the store say otherwise.
        let newest_interface = sa.newest_interface_version();
        Self {
            inner: Arc::new(Inner {
                sa: Arc::new(sa),
                store,
                callers,
                limits,
                feed: extras.feed,
                interfaces,
                peer_seen: AtomicBool::new(unit.peers.is_empty()),
                lease_holder: lease_holder(&unit.unit),
                unit,
                draining: AtomicBool::new(false),
                stored_form: Arc::new(std::sync::atomic::AtomicU32::new(newest_interface)),
                metrics: crate::telemetry::prometheus(),
                sessions: extras.sessions,
                session_grant: extras.session_grant,
                revocations: Arc::default(),
                session_ttl_secs: i64::try_from(
                    extras
                        .session_ttl_secs
                        .unwrap_or(crate::session::DEFAULT_TTL_SECS),
                )
                .unwrap_or(i64::MAX),
                changes: tokio::sync::watch::channel(0).0,
                chunks,
                reads,
                positions: Arc::default(),
                replication: extras.replication,
                restore_from: extras.restore_from,
                copy_origins: extras.copy_origins,
                trust: extras.trust,
                gate: extras.gate,
                refill: crate::restore::Progress::default(),
                assumptions: Arc::default(),
                sign_ups: signup::Limiter::default(),
            }),
        }
    }

    pub fn service_area(&self) -> &ServiceArea {
        &self.inner.sa
    }

    /// What the SA's batch jobs run on.
    pub(crate) fn jobs(&self) -> crate::batch::Jobs {
        crate::batch::Jobs {
            store: self.inner.store.clone(),
            sa: Arc::clone(&self.inner.sa),
            stored_form: self.stored_form_cell(),
        }
    }

    /// What business code of this SA may read and write, acting for `customer` (a session's).
    pub fn context(&self, customer: Option<ResourceId>) -> crate::business::Context {
        crate::business::Context::new(
            self.inner.store.clone(),
            Arc::clone(&self.inner.sa),
            customer,
            self.stored_form(),
        )
    }

    /// Whose changes a feed request of `collection` asks for (`origin=`): an owner serves its
    /// own origin's (the default), a copy of a collection owned in several datacenters the one
    /// named.
    pub(crate) fn feed_origin(
        &self,
        collection: &Collection,
        asked: Option<&str>,
    ) -> Result<crate::origin::Origin, ApiError> {
        use crate::origin::Origin;
        let unknown = |name: &str, names: &[String]| {
            ApiError::bad_request(
                codes::UNKNOWN_ORIGIN,
                format!(
                    "origin {name:?} is none of the owner datacenters of {} ({})",
                    collection.name(),
                    if names.is_empty() {
                        "it has one, unnamed".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            )
        };
        match collection.role() {
            Role::Owner => {
                let own = self.inner.store.own_origin();
                match asked {
                    None => Ok(own.own),
                    Some(name) if name == own.own.name => Ok(own.own),
                    Some(name) if own.names.iter().any(|known| known == name) => {
                        Err(ApiError::new(
                            StatusCode::MISDIRECTED_REQUEST,
                            codes::WRONG_DATACENTER,
                            format!(
                                "origin {name}'s changes of {} are written and served in datacenter {name}",
                                collection.name()
                            ),
                        ))
                    }
                    Some(name) => Err(unknown(name, &own.names)),
                }
            }
            Role::Copy { .. } => {
                let names = self
                    .inner
                    .copy_origins
                    .get(collection.name())
                    .map_or(&[][..], Vec::as_slice);
                match asked {
                    None if names.is_empty() => Ok(Origin::single()),
                    Some("") if names.is_empty() => Ok(Origin::single()),
                    None => Err(ApiError::bad_request(
                        codes::ORIGIN_REQUIRED,
                        format!(
                            "{} is owned in several datacenters ({}); ask for one origin's \
                             changes with origin=",
                            collection.name(),
                            names.join(", ")
                        ),
                    )),
                    Some(name) => Origin::among(names, name).ok_or_else(|| unknown(name, names)),
                }
            }
        }
    }

    /// Per collection owned in several datacenters, those datacenters and whether a feed
    /// request must name one (at a copy) or may leave it out (at an owner, its own).
    pub(crate) fn feed_origins(&self) -> BTreeMap<String, (Vec<String>, bool)> {
        let own = self.inner.store.own_origin();
        let mut origins: BTreeMap<String, (Vec<String>, bool)> = self
            .inner
            .copy_origins
            .iter()
            .map(|(collection, names)| (collection.clone(), (names.clone(), true)))
            .collect();
        if !own.own.is_single() {
            for collection in self.inner.sa.owned() {
                origins.insert(
                    collection.name().to_owned(),
                    (vec![own.own.name.clone()], false),
                );
            }
        }
        origins
    }

    pub fn feed_config(&self) -> &FeedConfig {
        &self.inner.feed
    }

    pub fn replication(&self) -> &Replication {
        &self.inner.replication
    }

    /// The sessions ended before their `exp`, as this unit knows them.
    pub fn revocations(&self) -> &Arc<crate::revocation::Revocations> {
        &self.inner.revocations
    }

    /// How long session tokens live, in seconds.
    pub fn session_ttl_secs(&self) -> i64 {
        self.inner.session_ttl_secs
    }

    /// The claims of a bearer session token this unit accepts: signed by a configured key,
    /// unexpired (`401 invalid-token` otherwise) and not revoked (`401 session-revoked`).
    pub fn verify_session(&self, token: &str) -> Result<crate::session::Claims, ApiError> {
        let verifier = self.inner.sessions.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::INVALID_TOKEN,
                "the bearer token is not known here",
            )
        })?;
        let claims = verifier.verify(token).map_err(|error| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::INVALID_TOKEN,
                format!("session refused: {error}"),
            )
        })?;
        if self.inner.revocations.is_revoked(&claims) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::SESSION_REVOKED,
                "this session has ended (signed out, or the credentials changed); sign in again",
            ));
        }
        Ok(claims)
    }

    /// Tells waiting long polls that this unit just wrote, or that another unit of the SA did
    /// (its commit notice arrived, `store/notices.rs`).
    /// Runs until `stopped`: each time this unit's store finds evidence of a rollback (the
    /// counter below what it exposed), drops the rendered chunks and reads and starts the
    /// refill from the peers (when the unit has peers and refills on its own).
    pub(crate) async fn act_on_rollback_evidence(
        self,
        mut stopped: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut noticed = self.store().rollback_noticed();
        loop {
            tokio::select! {
                changed = noticed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.drop_caches();
                    restore::refill_on_its_own(&self);
                }
                _ = stopped.changed() => return,
            }
        }
    }

    /// Forgets the rendered chunks and single-resource reads (after a rollback).
    pub(crate) fn drop_caches(&self) {
        self.inner.chunks.invalidate_all();
        self.inner.reads.clear();
    }

    pub(crate) fn notify_change(&self) {
        self.inner
            .changes
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Writes the consumer positions this unit holds back (`positions.rs`), before a purge or
    /// a listing reads them.
    pub(crate) async fn flush_consumer_positions(&self) -> Result<(), crate::store::Error> {
        self.inner.positions.flush(&self.inner.store).await
    }

    /// The unit's start gate.
    pub(crate) fn gate(&self) -> &Arc<crate::gate::StartGate> {
        &self.inner.gate
    }

    /// The latest check of PostgreSQL's assumptions.
    pub(crate) fn assumptions(&self) -> &Arc<crate::assumptions::Assumptions> {
        &self.inner.assumptions
    }

    /// The peers whose copies refill this owner after a rollback.
    pub fn restore_from(&self) -> &[PeerConfig] {
        &self.inner.restore_from
    }

    /// The CAs this unit trusts for HTTPS calls to its sources and restore peers.
    pub fn trust(&self) -> &crate::tls::Trust {
        &self.inner.trust
    }

    /// Progress of the refill running now (or the last one).
    pub fn refill_progress(&self) -> &crate::restore::Progress {
        &self.inner.refill
    }

    /// This unit's name (it holds the reader lease under it).
    /// This process's name as the reader lease's holder (`unit#nonce`).
    pub fn lease_holder(&self) -> &str {
        &self.inner.lease_holder
    }

    pub fn unit_name(&self) -> &str {
        &self.inner.unit.unit
    }

    /// The zone this unit runs in, when the configuration names one.
    pub fn zone(&self) -> Option<&str> {
        self.inner.unit.zone.as_deref()
    }

    /// This SA's own interface versions.
    pub fn interfaces(&self) -> &Interfaces {
        self.interfaces_of(self.inner.sa.name())
    }

    /// Reads the SA's interface version states from its database into the unit's cache.
    pub async fn refresh_interfaces(&self) -> Result<(), crate::store::Error> {
        let rows = self.store().interface_rows().await?;
        let records: Vec<InterfaceRecord> = rows
            .iter()
            .filter_map(|row| {
                Some(InterfaceRecord {
                    version: row.version,
                    info: VersionInfo {
                        state: InterfaceState::parse(&row.state)?,
                        deprecated_at: row.deprecated_at,
                        sunset: row.sunset,
                    },
                    is_default: row.is_default,
                })
            })
            .collect();
        self.interfaces().apply(&records);
        Ok(())
    }

    /// Re-reads the interface states every `INTERFACE_REFRESH` (0.7 s) while the state lives, so an
    /// operator's change at any unit reaches this one within 2 s. Holds only a weak
    /// reference: the task ends with the unit.
    pub fn watch_interfaces(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut failing = false;
            let mut renewed = std::time::Instant::now();
            loop {
                tokio::time::sleep(INTERFACE_REFRESH).await;
                let Some(inner) = weak.upgrade() else { return };
                let state = AppState { inner };
                let renew = renewed.elapsed() >= stored_form::SEEN_EVERY;
                if renew {
                    renewed = std::time::Instant::now();
                }
                let refreshed = match state.refresh_interfaces().await {
                    Ok(()) => state.refresh_stored_form(renew).await,
                    Err(error) => Err(error),
                };
                match refreshed {
                    Ok(()) => failing = false,
                    Err(error) => {
                        // Keep serving with the states last read; say so once per outage.
                        if !failing {
                            tracing::warn!(%error, "cannot read the interface version states; keeping the last ones");
                        }
                        failing = true;
                    }
                }
            }
        });
    }

    /// The interface versions of the SA that owns a collection.
    fn interfaces_of(&self, owner: &str) -> &Interfaces {
        self.inner
            .interfaces
            .get(owner)
            .or_else(|| self.inner.interfaces.values().next())
            .unwrap_or_else(|| unreachable!("the own SA's interfaces are always present"))
    }

    fn collection(&self, name: &str) -> Result<&Collection, ApiError> {
        self.inner.sa.collection(name).ok_or_else(|| {
            ApiError::not_found(codes::NOT_FOUND, format!("no collection '{name}' here"))
        })
    }
}

/// The whole unit as one router: REST resources, operations, OpenAPI and docs. URL version
/// prefixes (`/v1/…`) are stripped before routing and remembered for negotiation.
pub fn app(state: AppState) -> Router {
    app_with(state, Router::new())
}

/// Routes an SA adds beside the framework's (login's `POST /sessions`), with the unit's state.
pub type Routes = Router<AppState>;

/// The REST resources, the feed, lookups and commands: none on a batch unit, which serves no
/// user traffic.
fn resources(state: &AppState) -> Router<AppState> {
    if state.inner.unit.role == UnitRole::Batch {
        return Router::new();
    }
    Router::new()
        .route(
            "/{collection}",
            get(feed::feed).post(signup::create_or_sign_up),
        )
        .route(
            "/{collection}/{id}",
            get(resource::read).delete(resource::delete_resource),
        )
        .route(
            "/{collection}/{id}/{aspect}",
            put(resource::put_aspect)
                .delete(resource::delete_aspect)
                .post(command::run),
        )
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight end.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router, limits, shutdown).await
}

/// [`app`] plus an SA's own routes, which get the same error rendering, metrics and limits.
pub fn app_with(state: AppState, own_routes: Routes) -> Router {
    // One document per interface version (`/v{N}/openapi.json`; `/openapi.json` is v1), all
    // browsable in `/docs`.
    let urls: Vec<utoipa_swagger_ui::Url<'static>> = state
        .interfaces()
        .declared()
        .iter()
        .map(|version| {
            utoipa_swagger_ui::Url::new(
                Box::leak(format!("v{version}").into_boxed_str()),
                Box::leak(format!("/v{version}/openapi.json").into_boxed_str()),
            )
        })
        .collect();
    let docs = utoipa_swagger_ui::SwaggerUi::new("/docs")
        .config(utoipa_swagger_ui::Config::new(urls).validator_url("none"));
    let routes = Router::new()
        .route("/health", get(ops::health))
        .route("/health/write", get(ops::health_write))
        .route("/heartbeat", get(ops::heartbeat))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/gui/manifest.json", get(gui::manifest))
        .route("/gui/{file}", get(gui::file))
        .route("/admin/drain", put(ops::drain).delete(ops::undrain))
        .route("/admin/interfaces", get(ops::list_interfaces))
        .route("/admin/interfaces/{version}", put(ops::set_interface))
        .route("/admin/consumers", get(feed::consumers))
        .route("/admin/purge", axum::routing::post(feed::purge))
        .route("/admin/replication", get(ops::replication))
        .route("/admin/assumptions", get(ops::assumptions))
        .route(
            "/admin/restore",
            get(restore::status)
                .post(restore::enter)
                .delete(restore::leave),
        )
        .route(
            "/admin/restore/release",
            axum::routing::post(restore::release),
        )
        .merge(resources(&state))
        .merge(docs)
        .merge(own_routes)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.inner.limits.max_body_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            std::time::Duration::from_secs(state.inner.limits.body_read_timeout_secs),
        ))
        .layer(middleware::from_fn_with_state(
            std::time::Duration::from_secs(state.inner.limits.body_deadline_secs),
            body_deadline::bound_body,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state.clone());
    Router::new()
        .fallback_service(routes)
        .layer(CatchPanicLayer::custom(|_panic| {
            ApiError::internal("a handler panicked").into_response()
        }))
        .layer(middleware::from_fn(head_bounds::refuse_oversized))
        .layer(middleware::from_fn(server::checks_only_on_reserve))
        .layer(middleware::from_fn_with_state(state.clone(), render_errors))
        .layer(middleware::from_fn_with_state(state.clone(), allow_header))
        .layer(middleware::from_fn_with_state(state, interface_headers))
        .layer(middleware::from_fn(prefix_redirects))
        .layer(middleware::map_request(extract::strip_version_prefix))
        // A 5xx is logged at WARN: 503s are expected states (drained, database away, busy,
        // restoring) that would flood an ERROR log once a second under HAProxy's checks; real
        // failures are logged at ERROR where they happen (`ApiError::internal`).
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::extract::Request| {
                    let id = request
                        .headers()
                        .get(request_id::REQUEST_ID)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("request", method = %request.method(), uri = %request.uri(), request_id = %id)
                })
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        // gzip for clients that ask (`Accept-Encoding`), at the fastest level: the bench's sync
        // ran as fast with it as without (figure 1's gzip row).
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .quality(tower_http::CompressionLevel::Fastest),
        )
        // An answer made before the body was read reaches the client (`drain`).
        .layer(middleware::from_fn(drain::drain_unread))
        // Outermost, so the span and every layer inside see the id.
        .layer(middleware::from_fn(request_id::carry))
}

/// Redirects (the docs' `/docs` → `/docs/`, say) name paths of this unit; behind the gateway
/// or HAProxy the client reaches them under `X-Forwarded-Prefix`, so the prefix goes first.
async fn prefix_redirects(request: axum::extract::Request, next: middleware::Next) -> Response {
    let prefix = extract::forwarded_prefix(request.headers());
    let mut response = next.run(request).await;
    if prefix.is_empty() || !response.status().is_redirection() {
        return response;
    }
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .filter(|location| location.starts_with('/') && !location.starts_with("//"))
        .map(|location| format!("{prefix}{location}"));
    if let Some(value) = location.and_then(|location| HeaderValue::from_str(&location).ok()) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found(codes::NOT_FOUND, "no such path")
}

/// Every `405` names the methods the path takes (RFC 9110), as the OpenAPI document lists
/// them: a copy (and revocations) takes reads only, an aspect `PUT` and `DELETE`, a command
/// `POST`. The router alone would list every method of its shared `/{collection}/{id}/{aspect}`
/// pattern.
async fn allow_header(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let allowed = allowed_methods(&state.inner.sa, request.uri().path());
    let mut response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allowed) = allowed
    {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allowed));
    }
    response
}

/// The methods a resource path of `sa` takes; `None` for paths that are not a collection's
/// (the router's own answer stands).
fn allowed_methods(sa: &ServiceArea, path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let collection = sa.collection(segments.first()?)?;
    // Read-only to callers: a copy, or what the owner's units write themselves (revocations).
    let owner = collection.writable_by_callers();
    match (segments.as_slice(), owner) {
        ([_], true) => Some("GET,HEAD,POST"),
        ([_, _], true) => Some("GET,HEAD,DELETE"),
        ([_] | [_, _], false) => Some("GET,HEAD"),
        // A copy's aspects are written at the owner only.
        ([_, _, _], false) => Some(""),
        ([_, _, last], true) => {
            let is_aspect = collection
                .aspect_names()
                .iter()
                .any(|name| name.to_string() == *last);
            if is_aspect {
                Some("PUT,DELETE")
            } else if collection.command_names().any(|name| name == *last) {
                Some("POST")
            } else {
                None
            }
        }
        _ => None,
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "this path does not take that method",
    )
}

/// Writes the body of every error answer in the format the caller accepts.
async fn render_errors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let wants_json = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("json"));
    // Errors about a collection speak its owner's media types, like its answers do.
    let owner = request
        .uri()
        .path()
        .split('/')
        .nth(1)
        .and_then(|segment| state.inner.sa.collection(segment))
        .map_or_else(
            || state.inner.sa.name().to_owned(),
            |collection| collection.owner().to_owned(),
        );
    let mut response = next.run(request).await;
    let Some(report) = response.extensions_mut().remove::<ErrorReport>() else {
        return response;
    };
    let format = if wants_json {
        Format::Json
    } else {
        Format::Xml
    };
    let body = repr::render_error(format, report.code, &report.message);
    let media_type = state.interfaces_of(&owner).media_type(1, format);
    let (mut parts, _) = response.into_parts();
    if let Ok(value) = HeaderValue::from_str(&media_type) {
        parts.headers.insert(header::CONTENT_TYPE, value);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Per interface version: counts each request to a collection by caller (for `/metrics` and
/// `GET /admin/interfaces`, so an operator sees who still uses a version before retiring
/// it), and puts `Deprecation` (RFC 9745), `Sunset` (RFC 8594) and a `successor-version`
/// link on every answer served in a deprecated version, whichever handler built it.
async fn interface_headers(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let url_version = request.extensions().get::<UrlVersion>().map(|v| v.0);
    let owner = path
        .split('/')
        .nth(1)
        .and_then(|segment| state.inner.sa.collection(segment))
        .map(|collection| collection.owner().to_owned());
    if let Some(owner) = &owner {
        let interfaces = state.interfaces_of(owner);
        let accept = extract::header_text(request.headers(), header::ACCEPT);
        let version = match interfaces.negotiate(accept, url_version) {
            Ok(negotiated) => Some(negotiated.version),
            Err(crate::interface::NegotiationError::Retired(version)) => Some(version),
            Err(_) => None,
        };
        if let Some(version) = version {
            let caller = caller_label(&state, request.headers());
            interfaces.count_use(version, &caller);
            metrics::counter!("hiscale_interface_requests_total",
                "sa" => owner.clone(), "version" => format!("v{version}"), "caller" => caller)
            .increment(1);
        }
    }
    let prefix = extract::forwarded_prefix(request.headers());
    let mut response = next.run(request).await;
    let Some(owner) = owner else {
        return response;
    };
    let interfaces = state.interfaces_of(&owner);
    let served = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|media_type| {
            media_type
                .strip_prefix(&format!("application/vnd.{owner}.v"))?
                .split('+')
                .next()?
                .parse::<InterfaceVersion>()
                .ok()
        });
    let Some(version) = served else {
        return response;
    };
    let Some(info) = interfaces
        .info(version)
        .filter(|info| info.state == InterfaceState::Deprecated)
    else {
        return response;
    };
    let headers = response.headers_mut();
    if let Some(at) = info.deprecated_at
        && let Ok(value) = HeaderValue::from_str(&format!("@{at}"))
    {
        headers.insert("deprecation", value);
    }
    if let Some(value) = info
        .sunset
        .and_then(http_date)
        .and_then(|date| HeaderValue::from_str(&date).ok())
    {
        headers.insert("sunset", value);
    }
    if let Some(successor) = interfaces.successor(version)
        && let Ok(value) = HeaderValue::from_str(&format!(
            "<{prefix}/v{successor}{path}>; rel=\"successor-version\""
        ))
    {
        headers.insert(header::LINK, value);
    }
    response
}

/// The caller's name for per-version counts: a configured caller's name, `session` for any
/// user session, else `unknown`; a bounded label set whatever tokens clients send.
fn caller_label(state: &AppState, headers: &axum::http::HeaderMap) -> String {
    let token = extract::header_text(headers, header::AUTHORIZATION)
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        Some(token) => match state.inner.callers.find(token) {
            Some(caller) => caller.name.clone(),
            None if state.inner.sessions.is_some()
                && token.starts_with(crate::session::TOKEN_PREFIX) =>
            {
                "session".to_owned()
            }
            None => "unknown".to_owned(),
        },
        None => "unknown".to_owned(),
    }
}

/// Unix seconds as an HTTP-date (RFC 9110, `Sun, 06 Nov 1994 08:49:37 GMT`).
/// `unit#nonce`: 8 random bytes in hex (the clock's nanoseconds if the system has no random).
fn lease_holder(unit: &str) -> String {
    let mut random = [0u8; 8];
    if getrandom::fill(&mut random).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        random = (nanos as u64 ^ u64::from(std::process::id())).to_le_bytes();
    }
    let nonce: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{unit}#{nonce}")
}

pub(crate) fn http_date(seconds: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp(seconds).ok()?;
    let weekday: String = at.weekday().to_string().chars().take(3).collect();
    let month: String = at.month().to_string().chars().take(3).collect();
    Some(format!(
        "{weekday}, {:02} {month} {:04} {:02}:{:02}:{:02} GMT",
        at.day(),
        at.year(),
        at.hour(),
        at.minute(),
        at.second()
    ))
}

/// Counts requests by route and status for `/metrics`.
async fn count_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // A fixed label set: any other method (a client may send anything) counts as `other`, so
    // random methods cannot grow `/metrics` without bound.
    let method = match request.method().as_str() {
        known @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS") => known,
        _ => "other",
    }
    .to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("hiscale_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("hiscale_http_request_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
