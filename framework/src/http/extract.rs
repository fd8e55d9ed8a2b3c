//! Turning the raw request into typed values at the edge: the URL version prefix, the caller,
//! query parameters and the body, each refused with our own error body when wrong.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};

use super::{ApiError, AppState};
use crate::auth::{Caller, Grant};
use crate::codes;
use crate::interface::InterfaceVersion;
use crate::version::ResourceId;

/// The interface version named by a `/v{N}/` URL prefix, when the request had one.
#[derive(Debug, Clone, Copy)]
pub struct UrlVersion(pub InterfaceVersion);

/// Strips `/v{N}` from the path before routing, remembering `N` for negotiation; one router
/// then serves `/customers/1` and `/v1/customers/1` alike.
pub(super) async fn strip_version_prefix(mut request: Request) -> Request {
    let path = request.uri().path();
    let Some(rest) = path.strip_prefix("/v") else {
        return request;
    };
    let (number, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some(version) = (!number.is_empty() && number.len() <= 6)
        .then(|| number.parse::<InterfaceVersion>().ok())
        .flatten()
    else {
        return request;
    };
    let tail = if tail.is_empty() { "/" } else { tail };
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{tail}?{query}"),
        None => tail.to_owned(),
    };
    if let Ok(uri) = path_and_query.parse::<Uri>() {
        *request.uri_mut() = uri;
        request.extensions_mut().insert(UrlVersion(version));
    }
    request
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if parts.extensions.get::<super::signup::SignUp>().is_some() {
            // Admitted by the sign-up path (a collection open to sign-up, within its bounds):
            // it creates as the operator would, and answers with the new id alone.
            return Ok(Caller {
                name: "sign-up".to_owned(),
                grant: Grant::Operator,
            });
        }
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::UNAUTHENTICATED,
                "send Authorization: Bearer <token>",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let invalid = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::INVALID_TOKEN,
                "the bearer token is not known here",
            )
        };
        let token = token.ok_or_else(invalid)?;
        if let Some(caller) = state.inner.callers.find(token) {
            return Ok(caller.clone());
        }
        // Not a configured caller: perhaps a user's session token from login.
        let claims = state.verify_session(token)?;
        let customer = ResourceId::parse(&claims.sub).ok_or_else(invalid)?;
        Ok(Caller {
            name: format!("user:{}", claims.login),
            grant: Grant::Session {
                customer,
                aspects: state.inner.session_grant.clone(),
            },
        })
    }
}

/// The query parameters of a request, each allowed at most once, only those a route knows.
pub(super) fn query_params(
    query: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(|_| {
            ApiError::bad_request(codes::BAD_QUERY, "the query string is not well-formed")
        })?;
    for (index, (key, _)) in pairs.iter().enumerate() {
        if !allowed.contains(&key.as_str()) {
            return Err(ApiError::bad_request(
                codes::UNKNOWN_PARAMETER,
                format!(
                    "unknown query parameter '{}'; this path takes: {}",
                    shorten(key),
                    allowed.join(", ")
                ),
            ));
        }
        if pairs[..index].iter().any(|(earlier, _)| earlier == key) {
            return Err(ApiError::bad_request(
                codes::REPEATED_PARAMETER,
                format!("query parameter '{key}' is given more than once"),
            ));
        }
    }
    Ok(pairs)
}

pub(super) fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

/// `X-Forwarded-Prefix` from the gateway or HAProxy, when it is a plain path.
pub(super) fn forwarded_prefix(headers: &HeaderMap) -> String {
    header_text(
        headers,
        header::HeaderName::from_static("x-forwarded-prefix"),
    )
    .filter(|prefix| {
        prefix.starts_with('/')
            && !prefix.starts_with("//") // a protocol-relative URL would name another host
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
    })
    .map(|prefix| prefix.trim_end_matches('/').to_owned())
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::query_params;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1_000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any query string is read or refused with a code, never a panic; what is read holds
        /// only the allowed names, each once.
        #[test]
        fn any_query_string_is_read_or_refused(
            query in "((version|limit|wait|aspects|[a-z%]{1,6})(=[a-z0-9~.%+&=]{0,8})?&?){0,6}|.{0,40}"
        ) {
            let allowed = ["version", "limit", "wait", "aspects"];
            if let Ok(pairs) = query_params(Some(&query), &allowed) {
                for (index, (key, _)) in pairs.iter().enumerate() {
                    prop_assert!(allowed.contains(&key.as_str()));
                    prop_assert!(pairs[..index].iter().all(|(earlier, _)| earlier != key));
                }
            }
        }
    }
}
