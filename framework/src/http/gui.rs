//! `GET /gui/manifest.json` and `GET /gui/{file}`: the SA's GUI plugin, served by its own
//! units (see [`crate::gui`]). The manifest is written per request, so the versions it says
//! the SA serves follow an operator's retirement within the interface cache's refresh.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::codes;
use crate::interface::InterfaceState;

/// The manifest the GUI shell reads first.
pub(super) async fn manifest(State(state): State<AppState>) -> Result<Response, ApiError> {
    let gui = plugin(&state)?;
    let serves: Vec<_> = state
        .interfaces()
        .list()
        .into_iter()
        .filter(|(_, version_state)| *version_state != InterfaceState::Retired)
        .map(|(version, _)| version)
        .collect();
    let body = gui
        .manifest(state.service_area().name(), &serves)
        .to_string();
    Ok(file_response(body, "application/json", "no-cache"))
}

/// One of the plugin's embedded files.
pub(super) async fn file(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let gui = plugin(&state)?;
    let (body, content_type) = gui
        .find(&path)
        .ok_or_else(|| ApiError::not_found(codes::NOT_FOUND, format!("no GUI file {path:?}")))?;
    // Revalidated each time: a plugin is versioned with its SA, and a unit updated in place
    // must not leave browsers on the old module.
    Ok(file_response(body.to_owned(), content_type, "no-cache"))
}

fn plugin(state: &AppState) -> Result<&crate::gui::Gui, ApiError> {
    state
        .service_area()
        .gui_plugin()
        .ok_or_else(|| ApiError::not_found(codes::NOT_FOUND, "this service area has no GUI plugin"))
}

fn file_response(body: String, content_type: &'static str, cache: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}
