//! `/admin/restore`: the owner's `restoring` state, as operators see and end it.
//!
//! A rolled-back owner enters the state on its own (the feed notices a consumer ahead of it)
//! or when an operator says so (`POST`); writes are refused meanwhile. Refilling from the
//! peers' copies is not built yet: `DELETE` ends the state without it, moving the counter past
//! every version a consumer reported, so no version and no id is handed out twice. What the
//! peers hold beyond the restored version stays with them (named in the answer).

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

/// `POST /admin/restore`: the operator says this owner was restored from a backup; every
/// owned collection refuses writes until `DELETE`.
pub(super) async fn enter(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    require_operator(&caller)?;
    for collection in state.service_area().owned() {
        let current = state.store().current_version(collection.name()).await?;
        state
            .store()
            .enter_restoring(collection.name(), &caller.name, current, current)
            .await?;
    }
    tracing::warn!(by = %caller.name, "restoring: writes are refused until DELETE /admin/restore");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "restoring": state.store().restoring().await? })),
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
        if let Some(next_after) = state.store().leave_restoring(&restoring.collection).await? {
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
