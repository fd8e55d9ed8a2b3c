//! The HTTP edge: routes, shared state, and the middleware every answer passes through.
//! Only this module (and its children) names axum types.

mod blocking;
mod command;
mod error;
mod extract;
mod feed;
mod lookup;
mod ops;
mod resource;
mod restore;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
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

use crate::aspect::AspectSelector;
use crate::auth::Callers;
use crate::codes;
use crate::config::{FeedConfig, Limits, PeerConfig};
use crate::interface::Interfaces;
use crate::model::{Collection, ServiceArea};
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
    draining: AtomicBool,
    /// Whether a peer has been seen in the store (or there are none to see).
    peer_seen: AtomicBool,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    sessions: Option<SessionVerifier>,
    /// What sessions may read of their own resource here (all when `None`).
    session_grant: Option<AspectSelector>,
    /// Bumped after every write of this unit, so long polls wake at once.
    changes: tokio::sync::watch::Sender<u64>,
    /// Full feed chunks, rendered: each is a state the owner really had.
    chunks: moka::future::Cache<String, bytes::Bytes>,
    /// When each consumer's position was last written, to spare the database a write per poll.
    consumers_written: Mutex<HashMap<(String, String), (i64, Instant)>>,
    replication: Replication,
    /// The peers whose copies refill this owner after a rollback.
    restore_from: Vec<PeerConfig>,
    /// Holds writes after the start until the consumers have reported.
    gate: Arc<crate::gate::StartGate>,
    /// The refill running now (or last), for `GET /admin/restore`.
    refill: crate::restore::Progress,
}

/// Optional parts of a unit beyond its store and callers.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub feed: FeedConfig,
    pub sessions: Option<SessionVerifier>,
    pub session_grant: Option<AspectSelector>,
    pub replication: Replication,
    pub restore_from: Vec<PeerConfig>,
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
    pub fn new(
        sa: ServiceArea,
        store: Store,
        callers: Callers,
        limits: Limits,
        unit: UnitIdentity,
        extras: Extras,
    ) -> Self {
        let mut interfaces = BTreeMap::new();
        interfaces.insert(sa.name().to_owned(), Interfaces::new(sa.name(), &[1], 1));
        for collection in sa.copied() {
            interfaces
                .entry(collection.owner().to_owned())
                .or_insert_with(|| Interfaces::new(collection.owner(), &[1], 1));
        }
        let chunks = moka::future::Cache::builder()
            .max_capacity(extras.feed.cache_bytes)
            .weigher(|key: &String, chunk: &bytes::Bytes| {
                u32::try_from(key.len() + chunk.len()).unwrap_or(u32::MAX)
            })
            .time_to_live(std::time::Duration::from_secs(60))
            .build();
        Self {
            inner: Arc::new(Inner {
                sa: Arc::new(sa),
                store,
                callers,
                limits,
                feed: extras.feed,
                interfaces,
                peer_seen: AtomicBool::new(unit.peers.is_empty()),
                unit,
                draining: AtomicBool::new(false),
                metrics: crate::telemetry::prometheus(),
                sessions: extras.sessions,
                session_grant: extras.session_grant,
                changes: tokio::sync::watch::channel(0).0,
                chunks,
                consumers_written: Mutex::new(HashMap::new()),
                replication: extras.replication,
                restore_from: extras.restore_from,
                gate: extras.gate,
                refill: crate::restore::Progress::default(),
            }),
        }
    }

    pub fn service_area(&self) -> &ServiceArea {
        &self.inner.sa
    }

    /// What business code of this SA may read and write, acting for `customer` (a session's).
    pub fn context(&self, customer: Option<ResourceId>) -> crate::business::Context {
        crate::business::Context::new(
            self.inner.store.clone(),
            Arc::clone(&self.inner.sa),
            customer,
        )
    }

    pub fn feed_config(&self) -> &FeedConfig {
        &self.inner.feed
    }

    pub fn replication(&self) -> &Replication {
        &self.inner.replication
    }

    /// Tells waiting long polls that this unit just wrote.
    pub(crate) fn notify_change(&self) {
        self.inner
            .changes
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The unit's start gate.
    pub fn gate(&self) -> &Arc<crate::gate::StartGate> {
        &self.inner.gate
    }

    /// The peers whose copies refill this owner after a rollback.
    pub fn restore_from(&self) -> &[PeerConfig] {
        &self.inner.restore_from
    }

    /// Progress of the refill running now (or the last one).
    pub fn refill_progress(&self) -> &crate::restore::Progress {
        &self.inner.refill
    }

    /// This unit's name (it holds the reader lease under it).
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
        .route("/{collection}", get(feed::feed).post(resource::create))
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
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// [`app`] plus an SA's own routes, which get the same error rendering, metrics and limits.
pub fn app_with(state: AppState, own_routes: Routes) -> Router {
    let openapi = crate::openapi::document(&state.inner.sa);
    let docs = utoipa_swagger_ui::SwaggerUi::new("/docs")
        .url("/openapi.json", openapi)
        .config(utoipa_swagger_ui::Config::default().validator_url("none"));
    let routes = Router::new()
        .route("/health", get(ops::health))
        .route("/heartbeat", get(ops::heartbeat))
        .route("/metrics", get(ops::metrics))
        .route("/admin/drain", put(ops::drain).delete(ops::undrain))
        .route("/admin/interfaces", get(ops::list_interfaces))
        .route("/admin/interfaces/{version}", put(ops::set_interface))
        .route("/admin/consumers", get(feed::consumers))
        .route("/admin/purge", axum::routing::post(feed::purge))
        .route("/admin/replication", get(ops::replication))
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
        .layer(middleware::from_fn_with_state(state, render_errors))
        .layer(middleware::from_fn(prefix_redirects))
        .layer(middleware::map_request(extract::strip_version_prefix))
        // A 5xx is logged at WARN: 503s are expected states (drained, database away, busy,
        // restoring) that would flood an ERROR log once a second under HAProxy's checks; real
        // failures are logged at ERROR where they happen (`ApiError::internal`).
        .layer(
            TraceLayer::new_for_http()
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
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
