//! `X-Request-Id`: one id per request, carried across hops and into the logs.
//!
//! A request that arrives with a well-formed id (from the gateway, HAProxy's client, another
//! SA) keeps it, so one user action can be followed through every unit's log; one without (or
//! with an id too long or with characters a log line should not carry) gets a fresh one. The
//! id is in the request's tracing span (`request_id`) and echoed in the answer.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The header, lower case as HTTP/2 wants it.
pub const REQUEST_ID: &str = "x-request-id";
/// The longest id kept from a caller.
const MAX_LEN: usize = 64;

/// A random prefix per process and a counter: unique without coordination, cheap to make.
static PREFIX: LazyLock<String> = LazyLock::new(|| {
    let mut bytes = [0u8; 6];
    if getrandom::fill(&mut bytes).is_err() {
        // Without randomness the process id still tells this unit's ids from its peers'.
        return format!("p{}", std::process::id());
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
});
static NEXT: AtomicU64 = AtomicU64::new(1);

/// The id of a request: the caller's when well formed, a fresh one otherwise.
pub fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| well_formed(id))
        .map_or_else(fresh, str::to_owned)
}

fn well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'))
}

fn fresh() -> String {
    format!("{}-{}", *PREFIX, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Sets the request's id on the request (for handlers and the next hop) and on the answer.
pub(super) async fn carry(mut request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let value = HeaderValue::from_str(&id).ok();
    if let Some(value) = &value {
        request.headers_mut().insert(REQUEST_ID, value.clone());
    }
    let mut response = next.run(request).await;
    if let Some(value) = value {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(id: Option<&str>) -> Request {
        let mut builder = Request::builder().uri("/");
        if let Some(id) = id {
            builder = builder.header(REQUEST_ID, id);
        }
        builder.body(axum::body::Body::empty()).expect("a request")
    }

    #[test]
    fn a_well_formed_id_is_kept_and_anything_else_replaced() {
        assert_eq!(request_id(&with(Some("abc-123"))), "abc-123");
        for spoiled in [Some(""), Some("has space"), Some("new\\nline"), None] {
            let id = request_id(&with(spoiled));
            assert!(
                well_formed(&id) && Some(id.as_str()) != spoiled,
                "{spoiled:?} -> {id}"
            );
        }
        let long = "x".repeat(MAX_LEN + 1);
        assert_ne!(request_id(&with(Some(&long))), long);
        assert_ne!(request_id(&with(None)), request_id(&with(None)));
    }
}
