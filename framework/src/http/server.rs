//! Serving connections with bounds a client cannot stretch (`Limits` in the configuration):
//! at most `max_connections` at once, request headers within `header_read_timeout_secs` (which
//! hyper also applies to a keep-alive connection waiting for its next request, so idle
//! connections go too), request bodies that never stall longer than `body_read_timeout_secs`
//! and arrive whole within `body_deadline_secs` (layers in `app_with`). Long polls are not
//! bounded by these: a unit answering slowly is the server's business.
//!
//! Beyond `max_connections`, [`CHECK_CONNECTIONS`] more are kept for `/health` and
//! `/heartbeat`, so clients holding every connection (bodies drip-fed a byte at a time) cannot
//! take a unit out of HAProxy's rotation or blind its supervisor. Which connection is a check is
//! known only from its request's head, so the few kept connections take anything at first, but
//! a request for another path is answered `503 too-many-connections`, each serves one request,
//! and each must send its head within [`CHECK_HEADER_TIMEOUT`]. Beyond those, a new connection
//! is closed at once.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use super::ApiError;
use crate::codes;
use crate::config::Limits;

/// Connections a unit keeps beyond `max_connections` for `/health` and `/heartbeat`: enough for
/// HAProxy's checks from a few gateways and a supervisor's, each closed after its answer.
const CHECK_CONNECTIONS: usize = 16;

/// How long a connection kept for checks may take to send its request's head. A check sends
/// it at once; a client that takes these connections and sends slowly loses them soon.
const CHECK_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long requests in flight may take to finish after shutdown was asked for (a long poll
/// waits at most a minute).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(65);

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight end.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let clients = Arc::new(Semaphore::new(limits.max_connections));
    let checks = Arc::new(Semaphore::new(CHECK_CONNECTIONS));
    let header_read_timeout = Duration::from_secs(limits.header_read_timeout_secs);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = if let Ok(permit) = Arc::clone(&clients).try_acquire_owned() {
            Connection {
                permit,
                for_checks: false,
                header_read_timeout,
            }
        } else if let Ok(permit) = Arc::clone(&checks).try_acquire_owned() {
            Connection {
                permit,
                for_checks: true,
                header_read_timeout: header_read_timeout.min(CHECK_HEADER_TIMEOUT),
            }
        } else {
            metrics::counter!("hiscale_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        connection.serve(stream, peer, router.clone(), &graceful);
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after shutdown; stopping anyway");
    }
    Ok(())
}

/// Marks the requests of a connection taken from the ones kept for checks.
#[derive(Debug, Clone, Copy)]
struct KeptForChecks;

/// One accepted connection and the budget it counts against.
struct Connection {
    /// Held until the connection ends.
    permit: OwnedSemaphorePermit,
    /// Taken from the [`CHECK_CONNECTIONS`]: one request, a check only.
    for_checks: bool,
    header_read_timeout: Duration,
}

impl Connection {
    /// Serves the connection in its own task, watched by `graceful`.
    fn serve(
        self,
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        router: Router,
        graceful: &GracefulShutdown,
    ) {
        let for_checks = self.for_checks;
        // Every request knows the connection's peer (`ClientAddress` reads it).
        let service = router.map_request(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            if for_checks {
                request.extensions_mut().insert(KeptForChecks);
            }
            request
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .keep_alive(!for_checks)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        let permit = self.permit;
        tokio::spawn(async move {
            // A client that went away or timed out is no error of ours.
            let _ = connection.await;
            drop(permit);
        });
    }
}

/// The middleware refusing, on a connection kept for checks, every request but a check's.
pub(super) async fn checks_only_on_reserve(request: Request, next: Next) -> Response {
    if request.extensions().get::<KeptForChecks>().is_none() || is_check(request.uri().path()) {
        return next.run(request).await;
    }
    metrics::counter!("hiscale_connections_refused_total").increment(1);
    let mut refused = ApiError::unavailable(
        codes::TOO_MANY_CONNECTIONS,
        "the unit holds as many connections as it takes; try again shortly",
    )
    .into_response();
    refused
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    refused
}

/// Whether `path` is one the connections kept for checks serve: `/heartbeat`, `/health` and
/// the checks below it (`/health/…`).
fn is_check(path: &str) -> bool {
    path == "/heartbeat" || path == "/health" || path.starts_with("/health/")
}

#[cfg(test)]
mod tests {
    use super::is_check;

    #[test]
    fn only_health_and_heartbeat_are_checks() {
        fn check(path: &str, expected: bool) {
            assert_eq!(is_check(path), expected, "{path}");
        }
        check("/health", true);
        check("/heartbeat", true);
        check("/health/write", true);
        check("/healthy", false);
        check("/customers", false);
        check("/sessions", false);
        check("/", false);
    }
}
