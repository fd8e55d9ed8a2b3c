//! Signing up: `POST /{collection}` without a token, where the collection is declared
//! [`open_to_sign_up`](crate::Collection::open_to_sign_up). Everything else about the create is
//! the ordinary one (validation, password hashing, unique logins); this module only bounds it
//! and keeps its answer short.
//!
//! Bounds, like login's password checks: each unit takes at most [`SIGN_UPS_PER_MINUTE`]
//! attempts a minute (valid or not; beyond, `429 too-many-sign-ups` with `Retry-After`), and the
//! Argon2 hashing runs on the blocking pool four at a time (`503 busy` beyond). The answer
//! names only the new id: what was stored (the password hash) is read back by nobody without a
//! grant for it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, resource};
use crate::codes;

/// Sign-up attempts one unit takes per minute.
pub const SIGN_UPS_PER_MINUTE: u32 = 20;
const WINDOW: Duration = Duration::from_secs(60);

/// Marks a request the sign-up path admitted; only this module inserts it, and the caller
/// extractor turns it into the sign-up caller.
#[derive(Debug, Clone, Copy)]
pub(super) struct SignUp;

/// The attempts of the current minute at this unit.
#[derive(Debug)]
pub(super) struct Limiter {
    window: Mutex<(Instant, u32)>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            window: Mutex::new((Instant::now(), 0)),
        }
    }
}

impl Limiter {
    /// Takes one attempt, or says how long until the next window.
    fn take(&self) -> Result<(), Duration> {
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if now.duration_since(window.0) >= WINDOW {
            *window = (now, 0);
        }
        if window.1 >= SIGN_UPS_PER_MINUTE {
            return Err(WINDOW.saturating_sub(now.duration_since(window.0)));
        }
        window.1 += 1;
        Ok(())
    }
}

/// `POST /{collection}`: an anonymous request to a collection open to sign-up is admitted
/// within the bounds; every other request is the ordinary create.
pub(super) async fn create_or_sign_up(State(state): State<AppState>, request: Request) -> Response {
    let anonymous = !request.headers().contains_key(header::AUTHORIZATION);
    let open = request
        .uri()
        .path()
        .strip_prefix('/')
        .and_then(|name| state.service_area().collection(name))
        .is_some_and(|collection| collection.is_open_to_sign_up());
    if !(anonymous && open) {
        return resource::create.call(request, state).await;
    }
    if let Err(wait) = state.inner.sign_ups.take() {
        tracing::warn!("sign-up refused: this unit took {SIGN_UPS_PER_MINUTE} this minute");
        let mut refused = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::TOO_MANY_SIGN_UPS,
            "too many sign-ups right now; try again in a minute",
        )
        .into_response();
        refused.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return refused;
    }
    let mut request = request;
    request.extensions_mut().insert(SignUp);
    let created = resource::create.call(request, state).await;
    if created.status() != StatusCode::CREATED {
        return created;
    }
    shorten(created)
}

/// The created resource's answer without its body's aspects: status, `Location` and `ETag`
/// stay, the body names only the id, in the format the create answered in.
fn shorten(created: Response) -> Response {
    let (mut parts, _) = created.into_parts();
    let id = parts
        .headers
        .get(header::LOCATION)
        .and_then(|location| location.to_str().ok())
        .and_then(|location| location.rsplit('/').next())
        .unwrap_or_default()
        .to_owned();
    let xml = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("xml"));
    let body = if xml {
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<created><id>{id}</id></created>")
    } else {
        serde_json::json!({ "id": id }).to_string()
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_takes_a_minutes_attempts_then_refuses() {
        let limiter = Limiter::default();
        for _ in 0..SIGN_UPS_PER_MINUTE {
            assert!(limiter.take().is_ok());
        }
        let wait = limiter.take().err();
        assert!(wait.is_some_and(|wait| wait <= WINDOW), "{wait:?}");
    }
}
