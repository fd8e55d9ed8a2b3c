//! Early answers reach the client. A unit may answer before it has read the request's body: a
//! body announced larger than the limit (`413`), a method the path does not take (`405`), no
//! token (`401`). Closing a connection with unread data in it makes the kernel reset it, and a
//! client still sending — or a gateway relaying — then loses the answer and sees a broken
//! connection (the demo's gateway answered `502` for 28 of 60 such 12 MB requests). So after
//! the answer is made, the unread rest of the body is read and thrown away, up to
//! [`DRAIN_LIMIT_BYTES`] and within [`DRAIN_TIMEOUT`], before the answer goes out; a body
//! beyond either bound closes the connection (`Connection: close`), as it would have. This holds
//! for `Expect: 100-continue` too: a proxy may pass the header on and send the body anyway
//! (reading the body lets hyper send `100 Continue` to a client that waits for it). A client that
//! sends nothing for [`DRAIN_IDLE`] is not waited for: a body the handler already gave up on
//! (stalled past `body_read_timeout_secs`) closes its connection a moment after the answer. An
//! answer that closes its connection anyway (`408 body-too-slow`) is not held back for a body
//! that is not coming.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};

/// The most of an unread body a unit reads to let its answer through; beyond it the
/// connection is closed (the client gets the answer or a reset, as without draining).
pub const DRAIN_LIMIT_BYTES: u64 = 32 * 1024 * 1024;
/// How long draining may take at most: a client that sends slowly is not waited for.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long draining waits for the next part of the body.
pub const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// The middleware: see the module's documentation.
pub(super) async fn drain_unread(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let slot = Arc::new(Mutex::new(Some(body)));
    let shared = Body::new(SharedBody(Arc::clone(&slot)));
    let mut response = next.run(Request::from_parts(parts, shared)).await;
    let unread = lock(&slot).take();
    let Some(body) = unread.filter(|body| !body.is_end_stream()) else {
        return response;
    };
    if closes(&response) {
        // The answer gave up on the body already (`408 body-too-slow`, a connection kept for
        // checks): waiting for the rest would only hold the connection longer.
        return response;
    }
    if !drain(body).await {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Whether `response` closes its connection anyway.
fn closes(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"))
}

/// Reads and discards `body`; whether it ended within the bounds.
async fn drain(mut body: Body) -> bool {
    let reading = async {
        let mut read: u64 = 0;
        loop {
            let frame = match tokio::time::timeout(DRAIN_IDLE, body.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => return true,
                Ok(Some(Err(_))) | Err(_) => return false,
            };
            if let Some(data) = frame.data_ref() {
                read = read.saturating_add(data.len() as u64);
                if read > DRAIN_LIMIT_BYTES {
                    return false;
                }
            }
        }
    };
    tokio::time::timeout(DRAIN_TIMEOUT, reading)
        .await
        .unwrap_or(false)
}

/// The body the handler gets: reads go to the request's body, which stays in the shared slot
/// where the middleware finds it again whatever the handler did.
struct SharedBody(Arc<Mutex<Option<Body>>>);

impl HttpBody for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match lock(&self.0).as_mut() {
            Some(body) => Pin::new(body).poll_frame(context),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.0).as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.0)
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

/// Nothing holding the lock can leave the slot half changed, so a poisoned lock is usable.
fn lock(body: &Mutex<Option<Body>>) -> MutexGuard<'_, Option<Body>> {
    body.lock().unwrap_or_else(PoisonError::into_inner)
}
