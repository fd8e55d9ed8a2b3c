//! The login service area: signs customers in against its read-only copy of their `account`
//! (polled from registration) and issues session tokens that every SA verifies on its own.

pub mod codes;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use hiscale::http::{ApiError, AppState, ClientAddress};
use hiscale::session::{SessionIssuer, SessionVerifier};
use hiscale::{Collection, ServiceArea, UnitConfig};
use serde::Deserialize;
use serde_json::json;

pub const NAME: &str = "login";

/// The aspect login copies from registration (its grant there).
pub const COPIED_ASPECTS: &str = "~account";

pub fn service_area() -> ServiceArea {
    ServiceArea::new(NAME)
        .copies(
            "registration",
            Collection::new("customers", "customer")
                .document("account", &[])
                .unique("account", "login"),
        )
        // A new password (or login), or the customer deleted, ends the earlier sessions.
        .ends_sessions_when_changed("customers", "account")
        .gui(gui())
        .documents("/sessions", sessions_documentation())
        .documents("/sessions/current", logout_documentation())
}

/// `DELETE /sessions/current` in login's OpenAPI document: the session's own bearer token.
fn logout_documentation() -> utoipa::openapi::PathItem {
    use hiscale::openapi::error_response;
    use utoipa::openapi::ResponseBuilder;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};

    let error = |description: &str| error_response(NAME, 1, description);
    let operation = OperationBuilder::new()
        .summary(Some(
            "Sign out: ends the session of the bearer token at every SA (within about a second)",
        ))
        .response(
            "204",
            ResponseBuilder::new()
                .description("signed out: the session is revoked (also when it had ended already)"),
        )
        .response(
            "401",
            error("no bearer token (unauthenticated), or not a valid session (invalid-token)"),
        )
        .response(
            "503",
            error("the revocation could not be stored: database away, or writes held"),
        );
    PathItem::new(HttpMethod::Delete, operation)
}

/// `POST /sessions` in login's OpenAPI document: public (it is how a token is obtained).
fn sessions_documentation() -> utoipa::openapi::PathItem {
    use hiscale::openapi::error_response;
    use utoipa::PartialSchema;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{ContentBuilder, Required, ResponseBuilder};

    let error = |description: &str| error_response(NAME, 1, description);
    let operation = OperationBuilder::new()
        .summary(Some(
            "Sign in: a session token for the customer; no bearer token needed",
        ))
        .securities(Some(Vec::<SecurityRequirement>::new()))
        .request_body(Some(
            RequestBodyBuilder::new()
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Credentials::schema()))
                        .example(Some(
                            json!({"login": "user00001", "password": "demo-00001"}),
                        ))
                        .build(),
                )
                .required(Some(Required::True))
                .build(),
        ))
        .response(
            "201",
            ResponseBuilder::new()
                .description("signed in: the token to send as Authorization: Bearer")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Session::schema()))
                        .build(),
                ),
        )
        .response(
            "400",
            error("not {login, password} as JSON, or a value too long"),
        )
        .response("401", error("login or password is wrong"))
        .response(
            "415",
            error("the credentials not as application/json in UTF-8"),
        )
        .response(
            "429",
            error("this login failed too often; Retry-After says when"),
        )
        .response(
            "503",
            error("busy: too many password checks at once; or database away"),
        );
    PathItem::new(HttpMethod::Post, operation)
}

/// Login's GUI plugin: signing in and out; the shell shows it first. Its only request is
/// `POST /sessions`, which is not a versioned resource, so it needs v1 (the SA's only one).
pub fn gui() -> hiscale::gui::Gui {
    hiscale::gui::Gui::new("Sign in", "Anmelden")
        .file("plugin.js", include_str!("../gui/plugin.js"))
        .needs(&[1])
        .public()
}

/// How long session tokens live unless the configuration says otherwise.
pub const DEFAULT_SESSION_SECS: u64 = hiscale::session::DEFAULT_TTL_SECS;

/// Login's routes for a unit configured with `config`: it signs sessions, so it needs
/// `sessions.signing_key` and `sessions.signing_key_id` (from the topology's secrets), and
/// the signing key's public key among `sessions.public_keys` under the same id (login
/// verifies the tokens it signs out, and every SA must be able to verify what it issues).
pub fn unit_routes(config: &UnitConfig) -> Result<Router<AppState>, String> {
    let key = config
        .sessions
        .signing_key
        .as_deref()
        .ok_or("login needs sessions.signing_key to issue session tokens")?;
    let key_id = config
        .sessions
        .signing_key_id
        .as_deref()
        .ok_or("login needs sessions.signing_key_id, the id its tokens name the key by")?;
    let ttl = config.sessions.ttl_secs.unwrap_or(DEFAULT_SESSION_SECS);
    let issuer = SessionIssuer::new(key_id, key, ttl)
        .map_err(|error| format!("sessions.signing_key: {error}"))?;
    let verifier = SessionVerifier::from_keys(&config.sessions.public_keys)
        .map_err(|error| format!("sessions.public_keys: {error}"))?;
    if !verifier.holds(&issuer) {
        return Err(format!(
            "sessions.public_keys holds no key {key_id:?} matching sessions.signing_key: add \
             the signing key's public key under that id (at every SA first, when rotating)"
        ));
    }
    Ok(routes(issuer))
}

/// Failed sign-ins a login may have within [`ATTEMPT_WINDOW`] before it is refused without a
/// password check. Per unit (an attacker spreading over two units gets twice as many), which is
/// enough to make guessing hopeless while a customer who mistypes a few times never notices.
pub const MAX_FAILED_ATTEMPTS: u32 = 10;
/// Failed sign-ins one client address may have within [`ATTEMPT_WINDOW`], over all logins,
/// before its attempts are refused without a password check: guessing one password for many
/// logins is slowed as much as many passwords for one. Per unit, like the per-login limit;
/// generous, because many customers may share an address (an office, a carrier's NAT). The
/// address is the proxy's `X-Forwarded-For` only when the proxy is trusted
/// (`limits.trusted_proxies`, loopback by default).
pub const MAX_FAILED_PER_ADDRESS: u32 = 100;
/// How long failed attempts are remembered, counted from the latest.
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Logins, and client addresses, whose failures a unit remembers at once (the least recent
/// are forgotten first).
const REMEMBERED: u64 = 100_000;

/// What one login unit shares between requests: the issuer and the failed attempts, per login
/// and per client address.
struct SignIn {
    issuer: SessionIssuer,
    failures: moka::future::Cache<String, u32>,
    failures_by_address: moka::future::Cache<IpAddr, u32>,
}

impl SignIn {
    /// Whether this login, or this client, failed too often lately.
    async fn refuses(&self, login: &str, client: Option<IpAddr>) -> bool {
        let by_login = self.failures.get(login).await.unwrap_or(0) >= MAX_FAILED_ATTEMPTS;
        let by_address = match client {
            Some(address) => {
                self.failures_by_address.get(&address).await.unwrap_or(0) >= MAX_FAILED_PER_ADDRESS
            }
            None => false,
        };
        by_login || by_address
    }

    /// Counts a failure against the login and the client. Concurrent failures of one key
    /// are counted one after the other (a read, then an insert, would lose some), and each
    /// restarts the key's window.
    async fn record_failure(&self, login: String, client: Option<IpAddr>) {
        count_one(&self.failures, login).await;
        if let Some(address) = client {
            count_one(&self.failures_by_address, address).await;
        }
    }
}

async fn count_one<K>(cache: &moka::future::Cache<K, u32>, key: K)
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
{
    cache
        .entry(key)
        .and_upsert_with(|counted| {
            let failed = counted.map_or(0, |entry| entry.into_value());
            std::future::ready(failed.saturating_add(1))
        })
        .await;
}

fn failure_cache<K>() -> moka::future::Cache<K, u32>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
{
    moka::future::Cache::builder()
        .max_capacity(REMEMBERED)
        .time_to_live(ATTEMPT_WINDOW)
        .build()
}

/// Login's own route: `POST /sessions` with `{"login": …, "password": …}`.
pub fn routes(issuer: SessionIssuer) -> Router<AppState> {
    let shared = Arc::new(SignIn {
        issuer,
        failures: failure_cache(),
        failures_by_address: failure_cache(),
    });
    Router::new()
        .route(
            "/sessions",
            post(
                move |state: State<AppState>,
                      ClientAddress(client): ClientAddress,
                      headers: axum::http::HeaderMap,
                      body: axum::body::Bytes| {
                    let shared = shared.clone();
                    async move {
                        json_body(&headers)?;
                        sign_in(state, shared, client, body).await
                    }
                },
            ),
        )
        .route("/sessions/current", delete(sign_out))
}

/// `DELETE /sessions/current`: ends the bearer token's session. The revocation is stored in
/// login's `revocations`, which every other SA copies; each refuses the session
/// (`401 session-revoked`) once its copy has it.
async fn sign_out(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            hiscale::codes::UNAUTHENTICATED,
            "send Authorization: Bearer <session token>",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    let claims = match state.verify_session(token) {
        Ok(claims) => claims,
        // Ended already (signed out before, or by a new password): over, as asked. So a
        // retried DELETE answers like the first, and writes no second entry.
        Err(error) if error.code == hiscale::codes::SESSION_REVOKED => {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        Err(error) => return Err(error),
    };
    hiscale::revocation::revoke_session(&state, &claims).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Refuses a body announced as anything but JSON in UTF-8 (`415`), before any work: read as
/// JSON anyway, a form or a UTF-16 body would be misread rather than refused.
fn json_body(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let mut parts = content_type.split(';');
    let is_json = parts
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    let utf8 = parts.all(|part| match part.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => matches!(
            value.trim().trim_matches('"').to_ascii_lowercase().as_str(),
            "utf-8" | "utf8"
        ),
        _ => true,
    });
    if is_json && utf8 {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            hiscale::codes::UNSUPPORTED_MEDIA_TYPE,
            "send the credentials as application/json (UTF-8)",
        ))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Credentials {
    #[schema(max_length = 256)]
    login: String,
    #[schema(max_length = 1024)]
    password: String,
}

/// A signed-in session: the token and the customer it belongs to.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Session {
    token: String,
    customer: String,
}

/// Checks the password against the copied Argon2id hash and answers with a session token.
/// Unknown logins and wrong passwords get the same answer, after the same amount of work.
async fn sign_in(
    State(state): State<AppState>,
    shared: Arc<SignIn>,
    client: Option<IpAddr>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let credentials: Credentials = serde_json::from_slice(&body).map_err(|_| {
        ApiError::bad_request(
            codes::BAD_CREDENTIALS_BODY,
            "send {\"login\": …, \"password\": …} as JSON",
        )
    })?;
    if credentials.login.chars().count() > 256 || credentials.password.chars().count() > 1024 {
        return Err(ApiError::bad_request(
            codes::BAD_CREDENTIALS_BODY,
            "login or password too long",
        ));
    }
    let key = credentials.login.to_lowercase();
    if shared.refuses(&key, client).await {
        let mut refused = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::TOO_MANY_ATTEMPTS,
            "this login, or this client, failed too often; try again later",
        )
        .into_response();
        refused.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(ATTEMPT_WINDOW.as_secs()),
        );
        return Ok(refused);
    }
    let store = state.store();
    let holder = store
        .find_unique("customers", "login", &credentials.login)
        .await?;
    let account = match &holder {
        Some(id) => store
            .read("customers", id)
            .await?
            .filter(|resource| !resource.deleted)
            .and_then(|resource| {
                resource
                    .aspects
                    .into_iter()
                    .find(|aspect| aspect.name == "account" && !aspect.deleted)
            }),
        None => None,
    };
    // The credentials' version goes into the token: a later change of them ends the session.
    let credentials_version = account.as_ref().map(|aspect| aspect.version.get());
    let stored_hash = account
        .and_then(|aspect| aspect.body)
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|body| {
            body.get("pwdhash")
                .and_then(|hash| hash.as_str())
                .map(str::to_owned)
        });
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
        shared.record_failure(key, client).await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::BAD_CREDENTIALS,
            "login or password is wrong",
        ));
    };
    shared.failures.invalidate(&key).await;
    let (token, _) = shared
        .issuer
        .issue_session(&id, &credentials.login, credentials_version);
    Ok((
        StatusCode::CREATED,
        Json(Session {
            token,
            customer: id.as_str().to_owned(),
        }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hiscale::config::PublicKeyConfig;

    fn config(
        key_id: Option<&str>,
        signing: Option<&str>,
        keys: Vec<PublicKeyConfig>,
    ) -> UnitConfig {
        let mut config = UnitConfig::new(NAME, "login-1", ([127, 0, 0, 1], 1).into(), "sqlite://x");
        config.sessions.signing_key_id = key_id.map(str::to_owned);
        config.sessions.signing_key = signing.map(str::to_owned);
        config.sessions.public_keys = keys;
        config
    }

    fn refusal(config: &UnitConfig) -> String {
        match unit_routes(config) {
            Ok(_) => String::from("accepted"),
            Err(error) => error,
        }
    }

    #[test]
    fn the_signing_key_needs_its_id_and_its_public_key_listed() {
        let (secret, public) = hiscale::session::generate_key_pair().expect("randomness");
        let (_, other) = hiscale::session::generate_key_pair().expect("randomness");
        let listed = PublicKeyConfig::new("k2", &public);
        assert!(unit_routes(&config(Some("k2"), Some(&secret), vec![listed.clone()])).is_ok());
        // During a rotation login may list the old key too.
        let old = PublicKeyConfig::new("k1", &other);
        assert!(
            unit_routes(&config(
                Some("k2"),
                Some(&secret),
                vec![old.clone(), listed.clone()]
            ))
            .is_ok()
        );
        let cases = [
            (
                config(None, Some(&secret), vec![listed.clone()]),
                "sessions.signing_key_id",
            ),
            (
                config(Some("k2"), None, vec![listed.clone()]),
                "sessions.signing_key",
            ),
            (
                config(Some("k2"), Some(&secret), vec![old.clone()]),
                "holds no key \"k2\"",
            ),
            (
                config(Some("k1"), Some(&secret), vec![old.clone(), listed.clone()]),
                "holds no key \"k1\"",
            ),
            (
                config(
                    Some("k2"),
                    Some(&secret),
                    vec![listed.clone(), listed.clone()],
                ),
                "key id \"k2\" is listed twice",
            ),
            (
                config(Some("k2"), Some("beef"), vec![listed.clone()]),
                "64 hex digits",
            ),
            (
                config(Some("k 2"), Some(&secret), vec![listed.clone()]),
                "must be 1 to 32 letters",
            ),
            (
                config(
                    Some("k2"),
                    Some(&secret),
                    vec![PublicKeyConfig::new("k3", "not hex")],
                ),
                "key \"k3\" must be 64 hex digits",
            ),
        ];
        for (config, expected) in cases {
            let refused = refusal(&config);
            assert!(refused.contains(expected), "{refused:?} lacks {expected:?}");
        }
    }
}
