//! `/admin/restore`: the owner's `restoring` state, as operators see and end it.
//!
//! A rolled-back owner enters the state on its own (the feed notices a consumer ahead of it)
//! or when an operator says so; writes are refused meanwhile. `POST` refills it from the
//! peers' copies (`restore_from`) and leaves the state once every peer was read; `DELETE`
//! leaves it without a refill. Either way the counter moves past every version a consumer
//! reported or a peer held, so no version and no id is handed out twice.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use super::ops::require_operator;
use super::{ApiError, AppState};
use crate::auth::Caller;

/// `GET /admin/restore`: which owned collections are restoring, why and since when.
pub(super) async fn status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_operator(&caller)?;
    Ok(Json(
        json!({ "restoring": state.store().restoring().await? }),
    ))
}

/// `POST /admin/restore`: the operator says this owner was restored (or it noticed itself):
/// every owned collection refuses writes, is refilled from the peers' copies, and takes writes
/// again once every peer was read, its counter past everything seen. A peer that could not be
/// read keeps the collection restoring (named in the answer): `POST` again, or `DELETE`.
pub(super) async fn enter(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    require_operator(&caller)?;
    let already: Vec<String> = state
        .store()
        .restoring()
        .await?
        .into_iter()
        .map(|restoring| restoring.collection)
        .collect();
    for collection in state.service_area().owned() {
        if already.iter().any(|name| name == collection.name()) {
            continue;
        }
        let current = state.store().current_version(collection.name()).await?;
        state
            .store()
            .enter_restoring(collection.name(), &caller.name, current, current)
            .await?;
    }
    tracing::warn!(by = %caller.name, peers = state.inner.restore_from.len(), "restoring: refilling from the peers' copies");
    let refilled = crate::restore::refill(&state, &state.inner.restore_from).await?;
    let status = if refilled
        .iter()
        .all(|report| report.continues_after.is_some())
    {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(json!({ "refilled": refilled, "restoring": state.store().restoring().await? })),
    ))
}

/// `DELETE /admin/restore`: ends `restoring` without a refill: each collection's counter moves
/// past the greatest version a consumer reported, and writes are taken again.
pub(super) async fn leave(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_operator(&caller)?;
    let before = state.store().restoring().await?;
    let mut continued = Vec::new();
    for restoring in before {
        if let Some(next_after) = state
            .store()
            .leave_restoring(&restoring.collection, crate::version::Version::ZERO)
            .await?
        {
            tracing::warn!(by = %caller.name, collection = %restoring.collection,
                restored_to = restoring.restored_to, continues_after = %next_after,
                "left restoring without a refill: versions in between stay with the consumers that hold them");
            continued.push(json!({
                "collection": restoring.collection,
                "restored_to": restoring.restored_to,
                "continues_after": next_after.get(),
                "not_refilled": format!("versions {}..={} (held by consumers, not by this store)",
                    restoring.restored_to + 1, next_after.get()),
            }));
        }
    }
    Ok(Json(json!({ "left": continued })))
}
