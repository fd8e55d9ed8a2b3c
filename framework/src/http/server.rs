//! Serving connections with bounds a client cannot stretch (`Limits` in the configuration):
//! at most `max_connections` at once (beyond, new connections are closed at once), request
//! headers within `header_read_timeout_secs` (which hyper also applies to a keep-alive
//! connection waiting for its next request, so idle connections go too), and request bodies
//! that never stall longer than `body_read_timeout_secs` (a layer in `app_with`). Long polls
//! are not bounded by these: a unit answering slowly is the server's business.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::config::Limits;

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
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let header_read_timeout = Duration::from_secs(limits.header_read_timeout_secs);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics::counter!("hiscale_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Every request knows the connection's peer (`ClientAddress` reads it).
        let service =
            router
                .clone()
                .map_request(move |mut request: axum::extract::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that went away or timed out is no error of ours.
            let _ = connection.await;
            drop(permit);
        });
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
