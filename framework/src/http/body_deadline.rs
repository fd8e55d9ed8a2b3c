//! A request body arrives within a total deadline (`limits.body_deadline_secs`, counted from the
//! end of the request's head), however steadily it trickles in. The stall timeout
//! (`body_read_timeout_secs`) only catches a body that stops: a client sending one byte every
//! five seconds kept a connection for as long as it liked, and 1,030 such clients held all but
//! two of a unit's 1,024 connections (issue 25). Past the deadline the body's next read fails,
//! whatever the handler was doing with it, and the answer becomes `408 body-too-slow` with
//! `Connection: close`: the rest of the body is not worth waiting for (`drain` leaves such a
//! connection alone).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::time::Sleep;

use super::ApiError;
use crate::codes;

/// The middleware, with the deadline as its state: see the module's documentation.
pub(super) async fn bound_body(
    State(deadline): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let expired = Arc::new(AtomicBool::new(false));
    let bounded = Body::new(DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(deadline)),
        expired: Arc::clone(&expired),
    });
    let response = next.run(Request::from_parts(parts, bounded)).await;
    if !expired.load(Ordering::Acquire) {
        return response;
    }
    metrics::counter!("hiscale_bodies_too_slow_total").increment(1);
    let mut refused = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        codes::BODY_TOO_SLOW,
        format!(
            "the request body did not arrive within {} s",
            deadline.as_secs()
        ),
    )
    .into_response();
    refused
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    refused
}

/// What a read past the deadline fails with (the handler's own error answer is replaced).
#[derive(Debug)]
struct BodyTooSlow;

impl std::fmt::Display for BodyTooSlow {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("the request body did not arrive within its deadline")
    }
}

impl std::error::Error for BodyTooSlow {}

/// A body whose reads fail once its deadline has passed, noting that they did.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(context).is_ready() {
            this.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow))));
        }
        Pin::new(&mut this.inner).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::Router;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// A body that sends one byte and then one more every `every`, `count` in all.
    fn trickle(count: usize, every: Duration) -> Body {
        let stream = futures_util::stream::unfold(0, move |sent| async move {
            if sent == count {
                return None;
            }
            if sent > 0 {
                tokio::time::sleep(every).await;
            }
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"a")), sent + 1))
        });
        Body::from_stream(stream)
    }

    async fn check(body: Body, expected: StatusCode) {
        let app = Router::new()
            .route(
                "/",
                post(|body: Bytes| async move { format!("{} bytes", body.len()) }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_millis(300),
                bound_body,
            ));
        let request = Request::post("/").body(body).unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), expected);
        if expected == StatusCode::REQUEST_TIMEOUT {
            assert_eq!(response.headers()[header::CONNECTION], "close");
            let report = response
                .extensions()
                .get::<super::super::error::ErrorReport>();
            assert_eq!(report.map(|report| report.code), Some(codes::BODY_TOO_SLOW));
        }
        let _ = response.into_body().collect().await;
    }

    #[tokio::test]
    async fn a_body_that_trickles_past_the_deadline_is_refused() {
        // Never stalling long, but 10 bytes at 100 ms apart take 900 ms.
        check(
            trickle(10, Duration::from_millis(100)),
            StatusCode::REQUEST_TIMEOUT,
        )
        .await;
    }

    #[tokio::test]
    async fn bodies_within_the_deadline_are_read() {
        check(trickle(3, Duration::from_millis(50)), StatusCode::OK).await;
        check(Body::from("whole"), StatusCode::OK).await;
        check(Body::empty(), StatusCode::OK).await;
    }
}
