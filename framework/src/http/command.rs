//! Commands: `POST /{collection}/{id}/{name}`, actions beyond CRUD that a collection declares
//! (`POST /orders/12/cancel`), with the framework's negotiation, errors, `If-Match` and one new
//! version per change.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value};

use super::extract::{UrlVersion, header_text, query_params};
use super::resource::{
    answer, bad_path, body_rejection, change_with_rules, if_match, negotiate, require_owner,
    require_writer, set_header, written_view,
};
use super::{ApiError, AppState};
use crate::aspect::AspectName;
use crate::auth::Caller;
use crate::codes;
use crate::repr::{self, ParseLimits};
use crate::version::ResourceId;

/// `POST /{collection}/{id}/{command}` with the command's input (an empty body is `{}`).
pub(super) async fn run(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
    url_version: Option<Extension<UrlVersion>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (collection_name, id, name) = path.map_err(bad_path)?.0;
    let collection = state.collection(&collection_name)?;
    // An aspect's path takes PUT and DELETE; POST there is a method it does not take.
    if collection
        .aspect_names()
        .iter()
        .any(|aspect| aspect.to_string() == name)
    {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::METHOD_NOT_ALLOWED,
            "an aspect is replaced with PUT and deleted with DELETE",
        ));
    }
    let command = collection.command_named(&name).ok_or_else(|| {
        ApiError::not_found(
            codes::UNKNOWN_COMMAND,
            format!("{} declares no command of that name", collection.name()),
        )
    })?;
    require_owner(collection)?;
    if caller.customer().is_some() && !command.for_sessions {
        return Err(ApiError::forbidden(
            codes::WRITE_NOT_GRANTED,
            format!("a session may not {} here", command.name),
        ));
    }
    if caller.customer().is_none() {
        require_writer(&caller, collection)?;
    }
    let negotiated = negotiate(&state, collection, &headers, &url_version)?;
    query_params(query.as_deref(), &[])?;
    let precondition = if_match(&headers)?;
    let body = body.map_err(body_rejection)?;
    let input = if body.is_empty() {
        Value::Object(Map::new())
    } else {
        let (_, format) = state.interfaces_of(collection.owner()).body_type(
            header_text(&headers, header::CONTENT_TYPE),
            url_version.as_ref().map(|v| v.0.0),
        )?;
        // The input reads like an aspect named after the command (`<cancel>…</cancel>`).
        let element = AspectName::parse(&command.name)
            .map_err(|_| ApiError::internal("a declared command name is not a name"))?;
        let wire = repr::parse_input(
            format,
            &body,
            &element,
            &command.shape,
            ParseLimits::default(),
        )?;
        Value::Object(wire.fields)
    };
    let id = ResourceId::parse(&id)
        .ok_or_else(|| ApiError::not_found(codes::NOT_FOUND, "no such resource"))?;
    let context = state.context(caller.customer().cloned());
    let terms = super::resource::Terms {
        precondition,
        form: state.stored_form(),
    };
    let committed = change_with_rules(&state, collection, &caller, &id, terms, true, {
        let run = command.run.clone();
        move |draft| run(context.clone(), draft, input.clone())
    })
    .await?;
    metrics::counter!("hiscale_writes_total", "collection" => collection.name().to_owned(), "kind" => "command")
        .increment(1);
    let written = committed
        .written
        .first()
        .ok_or_else(|| ApiError::internal("a committed command reported no change"))?;
    let version = written.version;
    let view = written_view(&caller, collection, written);
    let rendered = repr::render_resource(negotiated.format, collection, &view);
    let mut response = answer(&state, collection, negotiated, StatusCode::OK, rendered);
    set_header(
        &mut response,
        header::ETAG,
        &negotiated.etag(version).header_value(),
    );
    Ok(response)
}
