//! Operations endpoints: what HAProxy, supervisors, Prometheus and operators ask a unit.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
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
    let warning = peer_warning(&state).await
        + &state.gate().warning_lines()
        + &restoring_warning(&state).await;
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
            lines.push_str(&format!(
                "warning: {} is restoring: {} holds version {}, this store handed out {}; \
                 writes are refused (DELETE /admin/restore continues past {})\n",
                r.collection, r.reported_by, r.ahead, r.restored_to, r.ahead
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
    }
    lines
}

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

/// `GET /admin/interfaces`: every interface version and its state.
pub(super) async fn list_interfaces(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_operator(&caller)?;
    let versions: Vec<_> = state
        .interfaces()
        .list()
        .into_iter()
        .map(|(version, status)| json!({"version": format!("v{version}"), "state": status}))
        .collect();
    Ok(Json(json!({ "interfaces": versions })))
}

/// `PUT /admin/interfaces/v{N}` with `{"state":"deprecated"}`: switches a version at run time.
pub(super) async fn set_interface(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    require_operator(&caller)?;
    let number = version
        .strip_prefix('v')
        .and_then(|number| number.parse::<u32>().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                codes::BAD_INTERFACE_VERSION,
                "name the version as v1, v2, …",
            )
        })?;
    #[derive(serde::Deserialize)]
    struct Wanted {
        state: InterfaceState,
    }
    let wanted: Wanted = serde_json::from_slice(&body).map_err(|_| {
        ApiError::bad_request(
            codes::BAD_INTERFACE_STATE,
            "send {\"state\": \"active\" | \"deprecated\" | \"retired\"}",
        )
    })?;
    if !state.interfaces().set_state(number, wanted.state) {
        return Err(ApiError::not_found(
            codes::UNKNOWN_INTERFACE_VERSION,
            format!("there is no v{number}"),
        ));
    }
    tracing::info!(by = %caller.name, version = number, state = ?wanted.state, "interface state changed");
    Ok(StatusCode::NO_CONTENT)
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
