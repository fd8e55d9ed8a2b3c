//! The demo's stand-in for HAProxy (`deploy/haproxy/haproxy.cfg`): `/{sa}/rest` goes round
//! robin to that service area's units as `/rest`, with `X-Forwarded-Prefix: /{sa}` so the
//! units build `Location` headers that work through the gateway, and the client's address in
//! `X-Forwarded-For`.
//!
//! It stays deliberately small: it streams bodies both ways, skips a unit that refuses the
//! connection (the request was never sent, so trying the next one is safe), sends a read
//! (`GET`, `HEAD`) to one more unit when the first failed mid-request, and answers `502` when
//! no unit is left. Writing methods go only to the units whose `/health/write` passes while
//! any does ([`write_health`]), as HAProxy's write backends do. Everything else a real load
//! balancer does belongs to HAProxy.
//!
//! It has the units' bounds, which HAProxy's configuration has too (issue 25): it serves
//! connections with the units' own server ([`hiscale::http::serve`]: at most `max_connections`
//! clients, request heads within `header_read_timeout_secs`, idle connections closed after as
//! long); it routes only to units whose `/health` passes ([`unit_health`]: not to a drained
//! unit), and answers `503 no-unit-available` when none does; and it refuses a body announced
//! larger than both the service area's `max_body_bytes` and what a unit reads to let its early
//! answer through ([`hiscale::http::DRAIN_LIMIT_BYTES`], 32 MiB) itself, `413 body-too-large`
//! as the unit would, after reading it ([`refuse_too_large`]): forwarded, such a body had its
//! connection reset under the unit's answer, and the client got `502`.
//!
//! Beside the units it serves two things of the demo's own: the GUI shell at `/` and
//! `/shell/…` ([`crate::shell`]; in a deployment a unit serves it, as HAProxy serves no files),
//! and the operator's holds at `/admin/held/{sa}` (`PUT` stops a service area's units and keeps
//! them stopped, `DELETE` lets them start again, `GET /admin/held` lists the holds), with the
//! operator's token. So no service area may be called `shell` or `admin`. And it answers
//! `GET /dc/health` for its datacenter ([`dc_health`]), so no service area may be called `dc`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::header::{CONTENT_TYPE, HeaderName};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hiscale::codes;
use hiscale::config::Limits;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::dc_health;
use super::supervisor::Holds;
use super::unit_health::{HealthChecks, UnitHealth};
use super::write_health::{self, WriteHealth};
use crate::shell::{self, PluginList};

/// What the gateway serves besides the units: the GUI shell and the operator's holds.
#[derive(Clone)]
pub struct Front {
    pub plugins: PluginList,
    /// The operator's bearer token, which `/admin/held/…` requires.
    pub admin_token: String,
    pub holds: Holds,
}

/// One service area the gateway routes to: its units and their bounds.
#[derive(Debug, Clone)]
pub struct RoutedArea {
    pub name: String,
    pub units: Vec<SocketAddr>,
    /// The service area's `limits` (the gateway refuses bodies its units would refuse).
    pub limits: Limits,
}

/// The running gateway; [`Gateway::shutdown`] stops it gracefully, dropping it stops it at once.
pub struct Gateway {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    /// Checks the units' health while the gateway runs.
    _checks: HealthChecks,
}

impl Gateway {
    /// Takes the gateway's port; done before any unit starts, so a port already in use fails
    /// the demo at once.
    pub async fn listen(address: SocketAddr) -> anyhow::Result<TcpListener> {
        TcpListener::bind(address).await.with_context(|| {
            format!(
                "the gateway cannot listen on {address} (is a demo already running? try --port)"
            )
        })
    }

    /// Serves on `listener`, routing each service area of `areas` to its units, answering
    /// `GET /dc/health` for them, and serving `front` (the demo's shell and holds) when given.
    pub fn start(
        listener: TcpListener,
        areas: Vec<RoutedArea>,
        front: Option<Front>,
    ) -> anyhow::Result<Self> {
        let address = listener
            .local_addr()
            .context("cannot read the gateway's address")?;
        let checks = HealthChecks::start(areas.iter().flat_map(|area| area.units.clone()));
        let health = checks.health();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let unit_lists = areas
                .iter()
                .map(|area| (area.name.clone(), area.units.clone()))
                .collect();
            let app = front
                .map(front_routes)
                .unwrap_or_default()
                .merge(dc_health::routes(unit_lists))
                .merge(router(areas, health));
            // The units' own server, with their default bounds on clients (it sets
            // TCP_NODELAY too: without it a keep-alive client waits for its delayed ACK, ~40 ms,
            // before the second segment of each answer leaves).
            hiscale::http::serve(listener, app, &Limits::default(), async {
                // A dropped sender means the same as a sent stop.
                let _ = stopped.await;
            })
            .await
        });
        tracing::info!("gateway listening on http://{address}");
        Ok(Self {
            address,
            stop: Some(stop),
            server: Some(server),
            _checks: checks,
        })
    }

    /// Where the gateway listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting connections and lets requests in flight finish for a short while; long
    /// polls still open after that are cut.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // The server may be gone already; then there is nothing to tell.
            let _ = stop.send(());
        }
        let Some(mut server) = self.server.take() else {
            return;
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(Ok(Ok(()))) => tracing::info!("gateway stopped"),
            Ok(Ok(Err(error))) => tracing::warn!("the gateway failed: {error}"),
            Ok(Err(error)) => tracing::warn!("the gateway task failed: {error}"),
            Err(_) => {
                tracing::info!("gateway stopped, cutting requests still open");
                server.abort();
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

/// How long requests in flight may take to finish when the gateway stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Headers that describe one connection, not the message, and so are not forwarded (RFC 9110
/// section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The gateway's routing table and its connection pool, shared by every request.
#[derive(Clone)]
struct Routes(Arc<RoutesInner>);

struct RoutesInner {
    areas: HashMap<String, Area>,
    client: Client<HttpConnector, ForwardedBody>,
    health: Arc<UnitHealth>,
    /// Which units take writes now.
    writers: WriteHealth,
}

/// One service area's units and whose turn it is next.
struct Area {
    units: Vec<SocketAddr>,
    next: AtomicUsize,
    /// Bodies announced larger are refused here, as the units would.
    max_body_bytes: usize,
}

impl Area {
    /// The order in which this request tries the units whose health passes: round robin among
    /// them for the first choice (so the others share a unit's turns evenly while it is out),
    /// then the others in turn for a unit that refuses the connection.
    fn attempt_order(&self, health: &UnitHealth) -> impl Iterator<Item = SocketAddr> + use<> {
        let passing: Vec<SocketAddr> = self
            .units
            .iter()
            .copied()
            .filter(|unit| health.passing(*unit))
            .collect();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        rotation(start, passing.len()).map(move |index| passing[index])
    }
}

fn router(areas: Vec<RoutedArea>, health: Arc<UnitHealth>) -> Router {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // Idle pooled connections go before a unit would close them (its header read timeout,
    // 30 s), so the gateway never sends a request on a connection the unit is closing.
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(20))
        .build(connector);
    let writers = WriteHealth::start(areas.iter().flat_map(|area| area.units.iter().copied()));
    let areas = areas
        .into_iter()
        .map(|area| {
            let routed = Area {
                units: area.units,
                next: AtomicUsize::new(0),
                max_body_bytes: area.limits.max_body_bytes,
            };
            (area.name, routed)
        })
        .collect();
    Router::new()
        .fallback(forward)
        .with_state(Routes(Arc::new(RoutesInner {
            areas,
            client,
            health,
            writers,
        })))
}

/// The shell and the holds, in front of the forwarding fallback.
fn front_routes(front: Front) -> Router {
    let control = Arc::new(front.clone());
    shell::routes(front.plugins).merge(
        Router::new()
            .route("/admin/held", axum::routing::get(list_holds))
            .route("/admin/held/{sa}", axum::routing::put(hold).delete(release))
            .with_state(control),
    )
}

/// `GET /admin/held`: every service area and whether it is held.
async fn list_holds(State(front): State<Arc<Front>>, headers: HeaderMap) -> Response {
    if let Some(refused) = operator_refusal(&front, &headers) {
        return refused;
    }
    let states: serde_json::Map<String, serde_json::Value> = front
        .holds
        .states()
        .into_iter()
        .map(|(sa, held)| (sa, serde_json::Value::Bool(held)))
        .collect();
    json(StatusCode::OK, serde_json::json!({ "held": states }))
}

/// `PUT /admin/held/{sa}`: stops the service area's units and keeps them stopped.
async fn hold(
    State(front): State<Arc<Front>>,
    Path(sa): Path<String>,
    headers: HeaderMap,
) -> Response {
    change_hold(&front, &headers, &sa, true)
}

/// `DELETE /admin/held/{sa}`: lets the service area's units start again.
async fn release(
    State(front): State<Arc<Front>>,
    Path(sa): Path<String>,
    headers: HeaderMap,
) -> Response {
    change_hold(&front, &headers, &sa, false)
}

fn change_hold(front: &Front, headers: &HeaderMap, sa: &str, held: bool) -> Response {
    if let Some(refused) = operator_refusal(front, headers) {
        return refused;
    }
    let changed = if held {
        front.holds.hold(sa)
    } else {
        front.holds.release(sa)
    };
    match changed {
        Ok(()) => json(
            StatusCode::OK,
            serde_json::json!({ "sa": sa, "held": held }),
        ),
        Err(unknown) => error(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_SERVICE_AREA,
            unknown.to_string(),
        ),
    }
}

/// The holds are the operator's: its bearer token, as at every unit's `/admin/…`. `None` lets
/// the request through; otherwise the refusal to answer with.
fn operator_refusal(front: &Front, headers: &HeaderMap) -> Option<Response> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHENTICATED,
            "send Authorization: Bearer <the operator's token>".to_owned(),
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    (token != Some(front.admin_token.as_str())).then(|| {
        error(
            StatusCode::FORBIDDEN,
            codes::OPERATOR_ONLY,
            "holding a service area is the operator's".to_owned(),
        )
    })
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_string(),
    )
        .into_response()
}

/// Sends one request to a unit of the service area its path names and relays the answer.
async fn forward(State(routes): State<Routes>, request: Request) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(client)| client.ip());
    let (parts, body) = request.into_parts();
    let Some((sa, rest)) = split_service_area(parts.uri.path()) else {
        return error(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_SERVICE_AREA,
            "the path names no service area: use /{sa}/…".to_owned(),
        );
    };
    let Some(area) = routes.0.areas.get(sa) else {
        return error(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_SERVICE_AREA,
            format!("there is no service area named {sa:?}"),
        );
    };
    // Up to what a unit reads to let its early answer through, the unit's own answer (`413`,
    // or `405`, `401` first) reaches the client; beyond, the connection would be reset under
    // it, so the gateway answers for the unit.
    let beyond = area
        .max_body_bytes
        .max(usize::try_from(hiscale::http::DRAIN_LIMIT_BYTES).unwrap_or(usize::MAX));
    if let Some(announced) = larger_than(&parts.headers, beyond) {
        return refuse_too_large(&parts.headers, body, announced, area.max_body_bytes).await;
    }
    let target = match parts.uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    let mut headers = parts.headers;
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    // The known area's name came from the path, so it is always a valid header value.
    if let Ok(prefix) = HeaderValue::try_from(format!("/{sa}")) {
        headers.insert(HeaderName::from_static("x-forwarded-prefix"), prefix);
    }
    // Like HAProxy's `option forwardfor`: the client's address is added to what came before.
    if let Some(Ok(client)) = client.map(|client| HeaderValue::try_from(client.to_string())) {
        headers.append(HeaderName::from_static("x-forwarded-for"), client);
    }
    let body = SharedBody::new(body);
    // A read may go to a second unit once after the first failed mid-request (a pooled
    // connection to a unit that just died), as HAProxy's `retry-on` does; a write never.
    let idempotent = matches!(parts.method, Method::GET | Method::HEAD);
    let writing = write_health::is_writing(&parts.method);
    let mut order: Vec<SocketAddr> = area.attempt_order(&routes.0.health).collect();
    if writing {
        order = routes.0.writers.writers(order);
    }
    let mut retried = false;
    let mut tried = false;
    for unit in order {
        tried = true;
        let Ok(uri) = Uri::try_from(format!("http://{unit}{target}")) else {
            return error(
                StatusCode::BAD_REQUEST,
                codes::BAD_REQUEST,
                "the request target cannot be forwarded".to_owned(),
            );
        };
        let mut forwarded = axum::http::Request::new(body.attempt());
        *forwarded.method_mut() = parts.method.clone();
        *forwarded.uri_mut() = uri;
        *forwarded.headers_mut() = headers.clone();
        match routes.0.client.request(forwarded).await {
            Ok(response) => {
                if writing && response.status() == StatusCode::SERVICE_UNAVAILABLE {
                    routes.0.writers.refused(unit);
                }
                return relay(response);
            }
            Err(failure) if failure.is_connect() && body.is_unsent() => {
                tracing::debug!("unit {unit} of {sa} refused the connection: {failure}");
                routes.0.writers.refused(unit);
            }
            Err(failure) if idempotent && !retried => {
                retried = true;
                tracing::info!("unit {unit} of {sa} failed a read, trying another: {failure}");
            }
            Err(failure) => {
                // The same code as HAProxy's answer for a unit that failed mid-request
                // (deploy/haproxy/haproxy.cfg), so clients see one error either way.
                tracing::warn!("unit {unit} of {sa} failed to answer: {failure:?}");
                return error(
                    StatusCode::BAD_GATEWAY,
                    codes::NO_UNIT_AVAILABLE,
                    format!("the unit of {sa} that took the request failed to answer"),
                );
            }
        }
    }
    if !tried {
        // HAProxy's answer when no server of a backend is up.
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::NO_UNIT_AVAILABLE,
            format!("no unit of {sa} is available (none passes its health check)"),
        );
    }
    error(
        StatusCode::BAD_GATEWAY,
        codes::NO_UNIT_AVAILABLE,
        format!("no unit of {sa} accepted the connection"),
    )
}

/// The most of a refused body the gateway reads so that its `413` reaches the client (closing
/// with unread data resets the connection under the answer); beyond, it closes the connection.
const DRAIN_LIMIT_BYTES: u64 = 256 * 1024 * 1024;
/// How long reading a refused body may take in all, and without a byte arriving.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// The `Content-Length` of a request, when it is larger than `max_body_bytes`.
fn larger_than(headers: &HeaderMap, max_body_bytes: usize) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .filter(|&length| length > max_body_bytes as u64)
}

/// `413 body-too-large`, the units' answer to a body they do not take, after reading and
/// throwing the body away (within [`DRAIN_LIMIT_BYTES`] and [`DRAIN_TIMEOUT`]; beyond either,
/// or when the client waits for `100 Continue` and so sends nothing, the connection closes).
async fn refuse_too_large(
    headers: &HeaderMap,
    body: Body,
    announced: u64,
    max_body_bytes: usize,
) -> Response {
    let expects_continue = headers
        .get(axum::http::header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let drained =
        !expects_continue && announced <= DRAIN_LIMIT_BYTES && drain(body, DRAIN_TIMEOUT).await;
    let mut refused = error(
        StatusCode::PAYLOAD_TOO_LARGE,
        codes::BODY_TOO_LARGE,
        format!("the request body is too large: at most {max_body_bytes} bytes are taken"),
    );
    if !drained {
        refused.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    refused
}

/// Reads `body` to its end and throws it away; whether it ended in time.
async fn drain(mut body: Body, within: Duration) -> bool {
    let reading = async {
        loop {
            let frame = std::future::poll_fn(|context| Pin::new(&mut body).poll_frame(context));
            match tokio::time::timeout(DRAIN_IDLE, frame).await {
                Ok(None) => return true,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(within, reading).await.unwrap_or(false)
}

/// `/{sa}/rest…` → `(sa, "/rest…")`; `/{sa}` alone → `(sa, "/")`; `/` → nothing.
fn split_service_area(path: &str) -> Option<(&str, &str)> {
    let path = path.strip_prefix('/')?;
    let (sa, rest) = match path.find('/') {
        Some(slash) => path.split_at(slash),
        None => (path, "/"),
    };
    (!sa.is_empty()).then_some((sa, rest))
}

/// Indexes `0..count` starting at `start` (modulo `count`), each once.
fn rotation(start: usize, count: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |offset| start.wrapping_add(offset) % count)
}

fn relay(response: axum::http::Response<hyper::body::Incoming>) -> Response {
    let mut response = response.map(Body::new);
    remove_hop_by_hop(response.headers_mut());
    response
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The contract's JSON error body.
fn error(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_string(),
    )
        .into_response()
}

/// A request body that can be offered to one unit after another until one of them starts
/// reading it: the body is only taken out on the first read, so after a refused connection it
/// is still here, whole, for the next unit. Nothing is buffered.
struct SharedBody(Arc<Mutex<Option<Body>>>);

impl SharedBody {
    fn new(body: Body) -> Self {
        Self(Arc::new(Mutex::new(Some(body))))
    }

    /// The body for one attempt.
    fn attempt(&self) -> ForwardedBody {
        ForwardedBody {
            shared: Arc::clone(&self.0),
            taken: None,
        }
    }

    /// Whether no attempt has read from the body yet, so it can still be sent elsewhere.
    fn is_unsent(&self) -> bool {
        lock(&self.0).is_some()
    }
}

/// The body of one forwarded request; see [`SharedBody`].
struct ForwardedBody {
    shared: Arc<Mutex<Option<Body>>>,
    taken: Option<Body>,
}

impl HttpBody for ForwardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.taken.is_none() {
            this.taken = lock(&this.shared).take();
        }
        match &mut this.taken {
            Some(body) => Pin::new(body).poll_frame(context),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(body) => body.is_end_stream(),
            None => lock(&self.shared)
                .as_ref()
                .is_none_or(HttpBody::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(body) => body.size_hint(),
            None => lock(&self.shared)
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint),
        }
    }
}

/// Nothing holding the lock can leave the slot half changed, so a poisoned lock is still
/// usable.
fn lock(shared: &Mutex<Option<Body>>) -> MutexGuard<'_, Option<Body>> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use axum::http::Method;
    use axum::routing::any;
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn rotation_starts_at_the_turn_and_visits_every_unit_once() {
        fn check(start: usize, count: usize, expected: &[usize]) {
            assert_eq!(rotation(start, count).collect::<Vec<_>>(), expected);
        }
        check(0, 3, &[0, 1, 2]);
        check(1, 3, &[1, 2, 0]);
        check(5, 3, &[2, 0, 1]);
        check(usize::MAX, 2, &[1, 0]);
        check(7, 0, &[]);
    }

    #[test]
    fn successive_requests_take_turns() {
        let area = Area {
            units: vec![address(1), address(2), address(3)],
            next: AtomicUsize::new(0),
            max_body_bytes: 1024,
        };
        let health = UnitHealth::assumed_passing(area.units.clone());
        let firsts: Vec<_> = (0..4)
            .filter_map(|_| area.attempt_order(&health).next())
            .map(|unit| unit.port())
            .collect();
        assert_eq!(firsts, [1, 2, 3, 1]);
        // A unit out of the rotation is passed over.
        health.set_passing(address(2), false);
        let firsts: Vec<_> = (0..3)
            .filter_map(|_| area.attempt_order(&health).next())
            .map(|unit| unit.port())
            .collect();
        assert_eq!(firsts, [1, 3, 1]);
    }

    #[test]
    fn paths_name_the_service_area_first() {
        fn check(path: &str, expected: Option<(&str, &str)>) {
            assert_eq!(split_service_area(path), expected, "{path}");
        }
        check(
            "/registration/customers/7",
            Some(("registration", "/customers/7")),
        );
        check("/registration/", Some(("registration", "/")));
        check("/registration", Some(("registration", "/")));
        check("/", None);
        check("//customers", None);
    }

    #[tokio::test]
    async fn skips_units_that_refuse_and_takes_turns_among_the_rest() -> anyhow::Result<()> {
        let dead = refused_address()?;
        let one = echo_unit("one").await?;
        let two = echo_unit("two").await?;
        let app = routed(vec![dead, one, dead, two]).0;
        let mut answered_by = Vec::new();
        for _ in 0..4 {
            let (status, body) = send(
                &app,
                Method::POST,
                "/registration/customers?limit=5",
                "hello",
            )
            .await?;
            assert_eq!(status, StatusCode::OK);
            let echo: serde_json::Value = serde_json::from_str(&body)?;
            assert_eq!(echo["target"], "/customers?limit=5");
            assert_eq!(echo["prefix"], "/registration");
            assert_eq!(echo["body"], "hello");
            answered_by.push(echo["unit"].as_str().unwrap_or_default().to_owned());
        }
        assert_eq!(answered_by, ["one", "one", "two", "two"]);
        Ok(())
    }

    #[tokio::test]
    async fn answers_502_when_no_unit_accepts() -> anyhow::Result<()> {
        let dead = refused_address()?;
        let app = routed(vec![dead, dead]).0;
        let (status, body) = send(&app, Method::GET, "/registration/customers/1", "").await?;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        let body: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(body["error"]["code"], "no-unit-available");
        Ok(())
    }

    /// A unit that takes the request and dies without answering: a read goes to the next unit
    /// once, a write is never sent twice.
    #[tokio::test]
    async fn a_read_goes_to_another_unit_when_one_fails_mid_request() -> anyhow::Result<()> {
        let dying = dying_unit().await?;
        let alive = echo_unit("alive").await?;
        let app = routed(vec![dying, alive]).0;
        let (status, body) = send(&app, Method::GET, "/registration/customers/1", "").await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        let echo: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(echo["unit"], "alive");
        // The turn moved on: start at the dying unit again for the write.
        let _ = send(&app, Method::GET, "/registration/customers/1", "").await?;
        let (status, body) = send(&app, Method::POST, "/registration/customers", "x").await?;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        Ok(())
    }

    /// Writing methods go only to the unit whose `/health/write` passes; reads to both.
    #[tokio::test]
    async fn writes_go_only_to_units_whose_write_check_passes() -> anyhow::Result<()> {
        let refusing = checked_unit("refusing", false).await?;
        let taking = checked_unit("taking", true).await?;
        let app = routed(vec![refusing, taking]).0;
        let answered_by = async |method: Method| -> anyhow::Result<String> {
            let (status, body) = send(&app, method, "/registration/customers", "x").await?;
            assert_eq!(status, StatusCode::OK, "{body}");
            let echo: serde_json::Value = serde_json::from_str(&body)?;
            Ok(echo["unit"].as_str().unwrap_or_default().to_owned())
        };
        // The first checks run at once; two writes in a row on one unit mean they have.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while answered_by(Method::POST).await? != "taking"
            || answered_by(Method::POST).await? != "taking"
        {
            assert!(std::time::Instant::now() < deadline, "no check passed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            for _ in 0..3 {
                assert_eq!(answered_by(method.clone()).await?, "taking", "{method}");
            }
        }
        let mut readers = std::collections::BTreeSet::new();
        for _ in 0..4 {
            readers.insert(answered_by(Method::GET).await?);
        }
        assert_eq!(readers.len(), 2, "{readers:?}");
        Ok(())
    }

    /// An echo unit whose `/health/write` passes or fails.
    async fn checked_unit(name: &'static str, takes_writes: bool) -> anyhow::Result<SocketAddr> {
        let check = axum::routing::get(move || async move {
            if takes_writes {
                (StatusCode::OK, "PASS\n")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "FAIL\nstart gate\n")
            }
        });
        let app = Router::new()
            .route("/health/write", check)
            .fallback(any(move || async move {
                axum::Json(serde_json::json!({ "unit": name }))
            }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(address)
    }

    /// Accepts connections, reads a little and closes them without an answer.
    async fn dying_unit() -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                let mut buffer = [0_u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut connection, &mut buffer).await;
                drop(connection);
            }
        });
        Ok(address)
    }

    #[tokio::test]
    async fn unknown_service_areas_are_404() -> anyhow::Result<()> {
        let app = routed(vec![]).0;
        for path in ["/shopping/customers", "/"] {
            let (status, body) = send(&app, Method::GET, path, "").await?;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            let body: serde_json::Value = serde_json::from_str(&body)?;
            assert_eq!(body["error"]["code"], "unknown-service-area", "{path}");
        }
        Ok(())
    }

    /// A gateway routing `registration` to `units`, all passing, and their health to change.
    fn routed(units: Vec<SocketAddr>) -> (Router, Arc<UnitHealth>) {
        let health = Arc::new(UnitHealth::assumed_passing(units.clone()));
        let area = RoutedArea {
            name: "registration".into(),
            units,
            limits: Limits {
                max_body_bytes: 1024,
                ..Limits::default()
            },
        };
        (router(vec![area], Arc::clone(&health)), health)
    }

    /// No passing unit: `503 no-unit-available`, without trying the units; a body announced
    /// larger than a unit's early answer can get past: `413 body-too-large` from the gateway.
    #[tokio::test]
    async fn answers_for_units_out_of_rotation_and_for_bodies_too_large() -> anyhow::Result<()> {
        let one = echo_unit("one").await?;
        let (app, health) = routed(vec![one]);
        let size = hiscale::http::DRAIN_LIMIT_BYTES + 1;
        let large = axum::http::Request::post("/registration/customers")
            .header("content-length", size.to_string())
            .body(Body::from(vec![b'x'; usize::try_from(size)?]))?;
        let response = app.clone().oneshot(large).await?;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = to_bytes(response.into_body(), 64 * 1024).await?;
        let body: serde_json::Value = serde_json::from_slice(&body)?;
        assert_eq!(body["error"]["code"], "body-too-large");
        health.set_passing(one, false);
        let (status, body) = send(&app, Method::GET, "/registration/customers/1", "").await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(body["error"]["code"], "no-unit-available");
        Ok(())
    }

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A loopback address nobody listens on: a port the system just handed out and took back.
    fn refused_address() -> anyhow::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        Ok(listener.local_addr()?)
    }

    /// A stand-in unit that answers with what it received, as JSON.
    async fn echo_unit(name: &'static str) -> anyhow::Result<SocketAddr> {
        let app = Router::new().fallback(any(move |request: Request| async move {
            let target = request
                .uri()
                .path_and_query()
                .map(|target| target.as_str().to_owned());
            let prefix = request
                .headers()
                .get("x-forwarded-prefix")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let body = to_bytes(request.into_body(), 1024)
                .await
                .unwrap_or_default();
            axum::Json(serde_json::json!({
                "unit": name,
                "target": target,
                "prefix": prefix,
                "body": String::from_utf8_lossy(&body),
            }))
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(address)
    }

    async fn send(
        app: &Router,
        method: Method,
        path: &str,
        body: &'static str,
    ) -> anyhow::Result<(StatusCode, String)> {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from(body))?;
        let response = app.clone().oneshot(request).await?;
        let status = response.status();
        let body = to_bytes(response.into_body(), 64 * 1024).await?;
        Ok((status, String::from_utf8(body.to_vec())?))
    }
}
