//! A request's head within bounds, refused in the protocol's error format: a request target
//! longer than [`MAX_TARGET_BYTES`] is `414 uri-too-long`, more than [`MAX_HEADERS`] headers or
//! more than [`MAX_HEADER_BYTES`] of them `431 headers-too-large`. The bounds sit well inside
//! hyper's own (a 400 KiB read buffer, 100 headers), whose answers carry no body or code, so an
//! oversized head a client can send gets an answer it can read.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::codes;

/// The longest request target (path and query) a unit takes.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;
/// The most request headers a unit takes.
pub const MAX_HEADERS: usize = 64;
/// The most bytes of request headers (names and values) a unit takes.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

pub(super) async fn refuse_oversized(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target > MAX_TARGET_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            codes::URI_TOO_LONG,
            format!("the request target has {target} bytes; at most {MAX_TARGET_BYTES} are taken"),
        )
        .into_response();
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            codes::HEADERS_TOO_LARGE,
            format!(
                "{} headers of {bytes} bytes; at most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} \
                 bytes are taken",
                headers.len()
            ),
        )
        .into_response();
    }
    next.run(request).await
}
