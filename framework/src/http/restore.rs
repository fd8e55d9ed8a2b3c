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
use crate::restore::RefillError;

/// `GET /admin/restore`: which owned collections are restoring, why and since when; what the
/// start gate holds; and the progress of the refill running now (or the last one).
pub(super) async fn status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_operator(&caller)?;
    Ok(Json(json!({
        "restoring": state.store().restoring().await?,
        "gate": state.gate().held(),
        "refill": state.refill_progress().snapshot(),
    })))
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
    crate::restore::enter_all(state.store(), state.service_area(), &caller.name, None).await?;
    tracing::warn!(by = %caller.name, peers = state.restore_from().len(), "restoring: refilling from the peers' copies");
    let refilled = match refill(&state).await {
        Ok(refilled) => refilled,
        Err(RefillError::Running) => {
            return Ok((
                StatusCode::CONFLICT,
                Json(json!({
                    "error": { "code": crate::codes::REFILL_RUNNING,
                        "message": "a refill is running already: GET /admin/restore shows its progress" },
                    "refill": state.refill_progress().snapshot(),
                })),
            ));
        }
        Err(RefillError::Store(error)) => return Err(error.into()),
    };
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

/// Refills from every peer the unit knows, with the unit's progress.
async fn refill(state: &AppState) -> Result<Vec<crate::restore::RefillReport>, RefillError> {
    crate::restore::refill(
        state.store(),
        state.service_area(),
        crate::restore::Peers {
            all: state.restore_from(),
            only: None,
            trust: state.trust(),
            margin: state.feed_config().rollback_margin,
        },
        state.refill_progress(),
    )
    .await
}

/// Refills in the background after a consumer proved the store was rolled back, when there
/// are peers to refill from (otherwise the owner waits for an operator). Decided so because
/// the refill is harmless to repeat and the only way to bring back what the copies hold; an
/// operator who wants to choose (`DELETE`, `hiscale restore --from`) still can.
pub(super) fn refill_on_its_own(state: &AppState) {
    if state.restore_from().is_empty() || !state.feed_config().refill_on_rollback {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        match refill(&state).await {
            Ok(reports) => {
                for report in reports {
                    tracing::warn!(collection = %report.collection, continues_after = ?report.continues_after,
                        unreachable = ?report.unreachable, unaccounted = ?report.unaccounted,
                        "refilled on its own after a consumer reported a version ahead");
                }
            }
            Err(RefillError::Running) => {}
            Err(RefillError::Store(error)) => {
                tracing::error!(%error, "the refill after a rollback failed; POST /admin/restore retries it");
            }
        }
    });
}

/// `POST /admin/restore/release`: opens the start gate without the consumers not heard from
/// yet (an operator knows they are gone, or that the store was not rolled back).
pub(super) async fn release(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_operator(&caller)?;
    let released = state.gate().release(state.store());
    for held in &released {
        tracing::warn!(by = %caller.name, collection = %held.collection, waiting_for = ?held.waiting_for,
            "start gate released by an operator without these consumers");
    }
    Ok(Json(json!({ "released": released })))
}

/// `DELETE /admin/restore`: ends `restoring` without a refill: each collection's counter moves
/// past the greatest version a consumer reported or a unit exposed, plus the rollback margin,
/// and writes are taken again.
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
            .leave_restoring(
                &restoring.collection,
                crate::store::Leave {
                    at_least: crate::version::Version::ZERO,
                    past_claims: true,
                    margin: state.feed_config().rollback_margin,
                },
            )
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
