//! Operations endpoints: what HAProxy, supervisors, Prometheus and operators ask a unit.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::codes;
use crate::interface::InterfaceState;

/// How long `/health` waits for the database before calling it unreachable.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health`: `PASS`, or `FAIL` and one reason a line (HAProxy reads the first word).
pub(super) async fn health(State(state): State<AppState>) -> Response {
    let reasons = unavailable_reasons(&state).await;
    let warning = peer_warning(&state).await
        + &state.gate().warning_lines()
        + &restoring_warning(&state).await
        + &state.assumptions().warning_lines();
    let (status, body) = if reasons.is_empty() {
        (StatusCode::OK, format!("PASS\n{warning}"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("FAIL\n{}\n", reasons.join("\n")),
        )
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Why this unit takes no traffic at all (drained, or its database does not answer): the
/// failures of `/health`, which `/health/write` fails on too.
async fn unavailable_reasons(state: &AppState) -> Vec<String> {
    let mut reasons = Vec::new();
    if state.inner.draining.load(Ordering::Relaxed) {
        reasons.push("draining: an operator took this unit out of rotation".to_owned());
    }
    match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, state.store().ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "health check: database unreachable");
            reasons.push("database unreachable".to_owned());
        }
        Err(_) => reasons.push("database did not answer within 2 s".to_owned()),
    }
    reasons
}

/// `GET /health/write`: `PASS` while this unit takes writes for every collection it owns;
/// otherwise `503`, `FAIL` and one reason a line: what fails `/health`, the start gate holding
/// a collection, a collection restoring.
///
/// Why a check of its own: the start gate and `restoring` refuse writes but leave `/health`
/// passing (reads and the feed are served, and the gate opens only when consumers can poll,
/// so failing `/health` would take every unit out and the gate could never open). The
/// gateway routes writing methods to the units this check passes, so a unit whose gate is
/// still closed after a restart gets none of them while it serves reads.
pub(super) async fn health_write(State(state): State<AppState>) -> Response {
    let mut reasons = unavailable_reasons(&state).await;
    let reachable = reasons.is_empty();
    for held in state.gate().held() {
        reasons.push(format!(
            "{} takes no writes until its consumers report their versions (start gate, {} s \
             since the start; waiting for {})",
            held.collection,
            held.seconds,
            held.waiting_for.join(", ")
        ));
    }
    if reachable && !state.service_area().owned().is_empty() {
        match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, state.store().restoring()).await {
            Ok(Ok(restoring)) => reasons.extend(restoring.into_iter().map(|r| {
                format!(
                    "{} is restoring: writes are refused until the refill ends (or DELETE \
                     /admin/restore)",
                    r.collection
                )
            })),
            Ok(Err(error)) => {
                tracing::warn!(%error, "write check: cannot read the restoring collections");
                reasons.push("database unreachable".to_owned());
            }
            Err(_) => reasons.push("database did not answer within 2 s".to_owned()),
        }
    }
    let (status, body) = if reasons.is_empty() {
        (StatusCode::OK, "PASS\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("FAIL\n{}\n", reasons.join("\n")),
        )
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `warning: …` and a line break while no peer the topology names has recorded itself in this
/// unit's store; empty once one has (and from then on without asking the store again). A
/// warning, not a failure: on a landscape's first start the first unit is alone for a while.
async fn peer_warning(state: &AppState) -> String {
    if state.inner.peer_seen.load(Ordering::Relaxed) {
        return String::new();
    }
    let check = crate::unit::alone_in_store(state.store(), &state.inner.unit.peers);
    match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, check).await {
        Ok(Ok(None)) => {
            state.inner.peer_seen.store(true, Ordering::Relaxed);
            tracing::info!("a peer unit has recorded itself in this store");
            String::new()
        }
        Ok(Ok(Some(warning))) => format!("warning: {warning}\n"),
        // The database check above already reports an unreachable store.
        Ok(Err(_)) | Err(_) => String::new(),
    }
}

/// A `warning:` line per owned collection in `restoring` state and per source whose owner was
/// rolled back: reported, never a failure (reads are served, and an owner's trouble must not
/// take its readers out of rotation).
async fn restoring_warning(state: &AppState) -> String {
    let mut lines = String::new();
    if !state.service_area().owned().is_empty()
        && let Ok(Ok(restoring)) =
            tokio::time::timeout(DATABASE_CHECK_TIMEOUT, state.store().restoring()).await
    {
        for r in restoring {
            let why = if r.evidence.is_empty() {
                format!("{} holds version {}", r.reported_by, r.ahead)
            } else {
                r.evidence.clone()
            };
            lines.push_str(&format!(
                "warning: {} is restoring: {why}; the restored data ends at {}; writes are \
                 refused until the refill ends (or DELETE /admin/restore)\n",
                r.collection, r.restored_to
            ));
        }
    }
    for source in state.replication().snapshot() {
        if source.state == crate::replication::SourceState::OwnerRolledBack {
            lines.push_str(&format!(
                "warning: the source of {} was rolled back (version-ahead): the copy holds at {} \
                 until it has restored\n",
                source.collection, source.cursor
            ));
        }
        let stepped_down = source.state == crate::replication::SourceState::SteppedDown;
        if stepped_down
            || (source.state == crate::replication::SourceState::Failing
                && source.silent_seconds >= SILENT_SOURCE_WARN_SECS)
        {
            lines.push_str(&format!(
                "warning: the copy of {} makes no progress: its source has not answered for {:.0} s                  ({}){}\n",
                source.collection,
                source.silent_seconds,
                source.last_error.as_deref().unwrap_or("no error recorded"),
                if stepped_down {
                    "; the reader lease was given up to the backup"
                } else {
                    ""
                }
            ));
        }
        if source.state == crate::replication::SourceState::InterfaceRetired {
            lines.push_str(&format!(
                "warning: the source of {} retired the interface version this copy polls: the \
                 copy holds at {} until its interface_version is moved on\n",
                source.collection, source.cursor
            ));
        }
    }
    lines
}

/// A reader whose source has not answered for this long is named in `/health` (a warning); a
/// primary that gave its lease up for that reason is named at once.
const SILENT_SOURCE_WARN_SECS: f64 = 5.0;

/// `GET /heartbeat`: answers while the process runs; who it is and its reader role.
pub(super) async fn heartbeat(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "sa": state.inner.sa.name(),
        "unit": state.inner.unit.unit,
        "zone": state.inner.unit.zone,
        "role": state.inner.unit.role,
        "reader": state.replication().reader_state(),
    }))
}

/// `GET /metrics`: Prometheus text format.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.inner.metrics.render(),
    )
        .into_response()
}

/// `PUT /admin/drain`: `/health` fails from now on, so HAProxy stops sending traffic here.
pub(super) async fn drain(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    require_operator(&caller)?;
    state.inner.draining.store(true, Ordering::Relaxed);
    tracing::info!(by = %caller.name, "unit drained");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /admin/drain`: back into rotation.
pub(super) async fn undrain(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    require_operator(&caller)?;
    state.inner.draining.store(false, Ordering::Relaxed);
    tracing::info!(by = %caller.name, "unit back in rotation");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /admin/interfaces`: every interface version, its state and dates, which version bare
/// media types get, who polls each version's feed (recorded in the SA's database) and how
/// many requests each caller sent per version to this unit since it started.
pub(super) async fn list_interfaces(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_operator(&caller)?;
    let interfaces = state.interfaces();
    let consumers = state.store().interface_consumers().await?;
    let usage = interfaces.usage();
    let default = interfaces.default_version();
    let versions: Vec<_> = interfaces
        .declared()
        .iter()
        .filter_map(|version| Some((*version, interfaces.info(*version)?)))
        .map(|(version, info)| {
            let polled_by: Vec<_> = consumers
                .iter()
                .filter(|consumer| consumer.interface_version == version)
                .map(|consumer| {
                    json!({"collection": consumer.collection, "consumer": consumer.consumer,
                           "polled_at": consumer.polled_at})
                })
                .collect();
            let requests: serde_json::Map<String, serde_json::Value> = usage
                .iter()
                .filter(|(used, _, _)| *used == version)
                .map(|(_, caller, count)| (caller.clone(), json!(count)))
                .collect();
            json!({
                "version": format!("v{version}"),
                "state": info.state,
                "default": version == default,
                "deprecated_at": info.deprecated_at,
                "sunset": info.sunset.and_then(super::http_date),
                "successor": interfaces.successor(version).map(|v| format!("v{v}")),
                "feed_consumers": polled_by,
                "requests_here": requests,
            })
        })
        .collect();
    Ok(Json(json!({
        "unit": state.unit_name(),
        "default": format!("v{default}"),
        // Documents are written in this version's form (older while a unit of the previous
        // release runs: a rolling upgrade).
        "stored_as": format!("v{}", state.stored_form()),
        "interfaces": versions,
    })))
}

/// `PUT /admin/interfaces/v{N}` with `{"state": "active" | "deprecated" | "retired"}`, and
/// optionally `"sunset"` (RFC 3339, for `Sunset`) and `"default": true` (bare media types get
/// this version from now on). Stored in the SA's database, so every unit follows within 2 s
/// and a restart keeps it. Retiring the last version not retired is refused; retiring one a
/// registered feed consumer polls needs `?force=true`.
pub(super) async fn set_interface(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    require_operator(&caller)?;
    let params = super::extract::query_params(query.as_deref(), &["force"])?;
    let force = match super::resource::param(&params, "force") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                codes::BAD_QUERY,
                "force is true or false",
            ));
        }
    };
    let number = version
        .strip_prefix('v')
        .filter(|number| !number.is_empty() && number.len() <= 6)
        .and_then(|number| number.parse::<u32>().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                codes::BAD_INTERFACE_VERSION,
                "name the version as v1, v2, …",
            )
        })?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wanted {
        state: Option<InterfaceState>,
        #[serde(default)]
        sunset: Option<String>,
        #[serde(default)]
        default: Option<bool>,
    }
    let bad_state = || {
        ApiError::bad_request(
            codes::BAD_INTERFACE_STATE,
            "send {\"state\": \"active\" | \"deprecated\" | \"retired\"}, optionally \
             \"sunset\": \"2027-06-30T00:00:00Z\" and \"default\": true",
        )
    };
    let wanted: Wanted = serde_json::from_slice(&body).map_err(|_| bad_state())?;
    let interfaces = state.interfaces();
    let Some(current) = interfaces.info(number) else {
        return Err(ApiError::not_found(
            codes::UNKNOWN_INTERFACE_VERSION,
            format!("there is no v{number}"),
        ));
    };
    let new_state = wanted.state.unwrap_or(current.state);
    if wanted.state.is_none() && wanted.default.is_none() {
        return Err(bad_state());
    }
    let sunset = match wanted.sunset.as_deref() {
        None => current.sunset.filter(|_| wanted.state.is_none()),
        Some(text) => Some(
            text.parse::<crate::types::Timestamp>()
                .map_err(|_| bad_state())?
                .as_time()
                .unix_timestamp(),
        ),
    };
    let make_default = wanted.default == Some(true);
    if wanted.default == Some(false) {
        // The default moves only by naming its new version.
        return Err(bad_state());
    }
    if new_state == InterfaceState::Retired {
        // Re-read first: another unit may have changed a state within the last second.
        state.refresh_interfaces().await?;
        let others_live = interfaces
            .list()
            .iter()
            .any(|(other, s)| *other != number && *s != InterfaceState::Retired);
        if !others_live || make_default {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                codes::LAST_ACTIVE_INTERFACE,
                format!(
                    "v{number} cannot be retired (or be the default while retired): no other \
                     version would serve the SA's clients"
                ),
            ));
        }
        let polling: Vec<String> = state
            .store()
            .interface_consumers()
            .await?
            .into_iter()
            .filter(|consumer| consumer.interface_version == number)
            .map(|consumer| format!("{} ({})", consumer.consumer, consumer.collection))
            .collect();
        if !polling.is_empty() && !force {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                codes::INTERFACE_IN_USE,
                format!(
                    "v{number} is still polled by {}; move them to another version or retire \
                     with ?force=true (they stop with interface-retired)",
                    polling.join(", ")
                ),
            ));
        }
    }
    state
        .store()
        .set_interface(
            number,
            new_state.as_str(),
            sunset,
            make_default,
            &caller.name,
        )
        .await?;
    state.refresh_interfaces().await?;
    tracing::info!(by = %caller.name, version = number, state = ?new_state, make_default, force, "interface state changed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /openapi.json` (interface v1) and `/v{N}/openapi.json`: the OpenAPI document of one
/// interface version of this SA.
pub(super) async fn openapi(
    State(state): State<AppState>,
    url_version: Option<axum::Extension<super::UrlVersion>>,
) -> Result<Response, ApiError> {
    let version = url_version.map_or(1, |version| version.0.0);
    if !state.interfaces().declared().contains(&version) {
        return Err(ApiError::not_found(
            codes::UNKNOWN_INTERFACE_VERSION,
            format!("there is no v{version}"),
        ));
    }
    let document = crate::openapi::served(state.service_area(), version, &state.feed_origins());
    Ok(Json(document).into_response())
}

pub(super) fn require_operator(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_operator() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            codes::OPERATOR_ONLY,
            "only the operator may call /admin",
        ))
    }
}

/// `GET /admin/replication`: per source, cursor, lag, role and whether it polls or stands by.
pub(super) async fn replication(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_operator(&caller)?;
    let lease = state.store().lease().await?;
    let units = state.store().units().await?;
    Ok(Json(
        json!({ "sources": state.replication().snapshot(), "lease": lease, "units": units }),
    ))
}

/// `GET /admin/assumptions`: checks PostgreSQL's assumptions of the feed now (standby,
/// sequence cache, durability, transactions holding the feed back) and answers the findings.
pub(super) async fn assumptions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_operator(&caller)?;
    state
        .assumptions()
        .check(state.store(), state.feed_config())
        .await;
    Ok(Json(
        serde_json::json!({ "findings": state.assumptions().latest() }),
    ))
}
