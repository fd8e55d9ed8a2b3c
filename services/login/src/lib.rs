//! The login service area: signs customers in against its read-only copy of their `account`
//! (polled from registration) and issues session tokens that every SA verifies on its own.

pub mod codes;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use hiscale::http::{ApiError, AppState};
use hiscale::session::SessionIssuer;
use hiscale::{Collection, ServiceArea, UnitConfig};
use serde::Deserialize;
use serde_json::json;

pub const NAME: &str = "login";

/// The aspect login copies from registration (its grant there).
pub const COPIED_ASPECTS: &str = "~account";

pub fn service_area() -> ServiceArea {
    ServiceArea::new(NAME).copies(
        "registration",
        Collection::new("customers", "customer")
            .document("account", &[])
            .unique("account", "login"),
    )
}

/// How long session tokens live unless the configuration says otherwise.
pub const DEFAULT_SESSION_SECS: u64 = 8 * 3600;

/// Login's routes for a unit configured with `config`: it signs sessions, so it needs
/// `sessions.signing_key` (from the topology's secrets).
pub fn unit_routes(config: &UnitConfig) -> Result<Router<AppState>, String> {
    let key = config
        .sessions
        .signing_key
        .as_deref()
        .ok_or("login needs sessions.signing_key to issue session tokens")?;
    let ttl = config.sessions.ttl_secs.unwrap_or(DEFAULT_SESSION_SECS);
    let issuer = SessionIssuer::from_hex(key, ttl)
        .map_err(|error| format!("sessions.signing_key: {error}"))?;
    Ok(routes(issuer))
}

/// Login's own route: `POST /sessions` with `{"login": …, "password": …}`.
pub fn routes(issuer: SessionIssuer) -> Router<AppState> {
    let issuer = Arc::new(issuer);
    Router::new().route(
        "/sessions",
        post(move |state: State<AppState>, body: axum::body::Bytes| {
            sign_in(state, issuer.clone(), body)
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    login: String,
    password: String,
}

/// Checks the password against the copied Argon2id hash and answers with a session token.
/// Unknown logins and wrong passwords get the same answer, after the same amount of work.
async fn sign_in(
    State(state): State<AppState>,
    issuer: Arc<SessionIssuer>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let credentials: Credentials = serde_json::from_slice(&body).map_err(|_| {
        ApiError::bad_request(
            codes::BAD_CREDENTIALS_BODY,
            "send {\"login\": …, \"password\": …} as JSON",
        )
    })?;
    if credentials.login.len() > 256 || credentials.password.len() > 1024 {
        return Err(ApiError::bad_request(
            codes::BAD_CREDENTIALS_BODY,
            "login or password too long",
        ));
    }
    let store = state.store();
    let holder = store
        .find_unique("customers", "login", &credentials.login)
        .await?;
    let stored_hash = match &holder {
        Some(id) => store
            .read("customers", id)
            .await?
            .filter(|resource| !resource.deleted)
            .and_then(|resource| {
                resource
                    .aspects
                    .into_iter()
                    .find(|aspect| aspect.name == "account" && !aspect.deleted)
            })
            .and_then(|aspect| aspect.body)
            .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|body| {
                body.get("pwdhash")
                    .and_then(|hash| hash.as_str())
                    .map(str::to_owned)
            }),
        None => None,
    };
    let password = credentials.password;
    // A few at a time per unit (each Argon2 check holds ~19 MiB); beyond, `503 busy`.
    let verified = hiscale::http::run_blocking(move || match stored_hash {
        Some(hash) => hiscale::auth::verify_password(&password, &hash),
        None => {
            // Spend the same effort on an unknown login, so timing does not tell who exists.
            let _ = hiscale::auth::hash_password(&password);
            false
        }
    })
    .await?;
    let Some(id) = holder.filter(|_| verified) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::BAD_CREDENTIALS,
            "login or password is wrong",
        ));
    };
    let token = issuer.issue(&id, &credentials.login);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "customer": id.as_str() })),
    ))
}
