//! Reading and writing one resource: `GET`, `POST`, `PUT` and `DELETE` as PROTOCOL.md says.
//!
//! Every check happens before the store is touched, and a write is one transaction, so a
//! refused request never changes stored data.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::extract::{UrlVersion, forwarded_prefix, header_text, query_params};
use super::{ApiError, AppState};
use crate::aspect::{AspectName, AspectSelector, Selection, SelectorError};
use crate::auth::Caller;
use crate::codes;
use crate::interface::{InterfaceState, Negotiated};
use crate::model::{AspectDef, Collection, Role};
use crate::repr::{self, ParseLimits, ResourceView, WireAspect};
use crate::store::{AspectEdit, Change, Target};
use crate::version::{ETag, ResourceId, TagCondition};

type UrlVersionExt = Option<Extension<UrlVersion>>;

/// `GET /{collection}/{id}?aspects=…`
pub(super) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    url_version: UrlVersionExt,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (collection_name, id) = path.map_err(bad_path)?.0;
    let collection = state.collection(&collection_name)?;
    let negotiated = negotiate(&state, collection, &headers, &url_version)?;
    let params = query_params(query.as_deref(), &["aspects"])?;
    let selection = selection(&state, collection, &caller, param(&params, "aspects"))?;
    let id = ResourceId::parse(&id).ok_or_else(not_found)?;
    if !caller.may_see(&id) {
        return Err(ApiError::forbidden(
            codes::NOT_YOUR_RESOURCE,
            "a session reaches only its own resource",
        ));
    }
    let resource = state
        .store()
        .read(collection.name(), &id)
        .await?
        .filter(|resource| !resource.deleted)
        .ok_or_else(not_found)?;
    let view = ResourceView::of(&resource, |name| selection_has(&selection, name));
    let etag = ETag(view.version);
    if let Some(condition) = header_text(&headers, header::IF_NONE_MATCH) {
        let condition = TagCondition::parse(condition).ok_or_else(bad_condition)?;
        if condition.matches(view.version) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            set_header(&mut response, header::ETAG, &etag.header_value());
            return Ok(response);
        }
    }
    let body = repr::render_resource(negotiated.format, collection, &view);
    let mut response = answer(&state, collection, negotiated, StatusCode::OK, body);
    set_header(&mut response, header::ETAG, &etag.header_value());
    Ok(response)
}

/// `POST /{collection}` with a whole resource; the owner assigns id and versions.
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    url_version: UrlVersionExt,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let collection = state.collection(&path.map_err(bad_path)?.0)?;
    require_owner(collection)?;
    require_writer(&caller)?;
    let negotiated = negotiate(&state, collection, &headers, &url_version)?;
    query_params(query.as_deref(), &[])?;
    let (_, format) = state.interfaces_of(collection.owner()).body_type(
        header_text(&headers, header::CONTENT_TYPE),
        url_version.as_ref().map(|v| v.0.0),
    )?;
    let body = body.map_err(body_rejection)?;
    let resource = repr::parse_resource(format, &body, collection, ParseLimits::default())?;
    if resource.id.is_some() {
        return Err(ApiError::bad_request(
            codes::FORGED_ID,
            "the owner assigns ids; send none",
        ));
    }
    if resource.version.is_some()
        || resource
            .aspects
            .iter()
            .any(|aspect| aspect.version.is_some())
    {
        return Err(forged_version());
    }
    if resource.aspects.is_empty() {
        return Err(ApiError::bad_request(
            codes::EMPTY_RESOURCE,
            "a new resource needs at least one aspect",
        ));
    }
    for (index, aspect) in resource.aspects.iter().enumerate() {
        if resource.aspects[..index]
            .iter()
            .any(|earlier| earlier.name == aspect.name)
        {
            return Err(ApiError::bad_request(
                codes::DUPLICATE_ASPECT,
                format!("aspect {} is given twice", aspect.name),
            ));
        }
    }
    let edits = accept_all(collection, resource.aspects).await?;
    let committed = state
        .store()
        .commit(
            collection.name(),
            vec![Change {
                target: Target::Create,
                precondition: None,
                edits,
            }],
        )
        .await?;
    let (Some((id, version)), Some(written)) = (
        committed.changes.first().cloned(),
        committed.written.first(),
    ) else {
        return Err(ApiError::internal("a committed create reported no change"));
    };
    state.notify_change();
    metrics::counter!("hiscale_writes_total", "collection" => collection.name().to_owned(), "kind" => "create")
        .increment(1);
    let view = ResourceView::of(written, |_| true);
    let body = repr::render_resource(negotiated.format, collection, &view);
    let mut response = answer(&state, collection, negotiated, StatusCode::CREATED, body);
    let location = format!(
        "{}{}/{}/{}",
        forwarded_prefix(&headers),
        url_version
            .map(|v| format!("/v{}", v.0.0))
            .unwrap_or_default(),
        collection.name(),
        id
    );
    set_header(&mut response, header::LOCATION, &location);
    set_header(&mut response, header::ETAG, &ETag(version).header_value());
    Ok(response)
}

/// `PUT /{collection}/{id}/{aspect}`: replaces one aspect.
pub(super) async fn put_aspect(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
    url_version: UrlVersionExt,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (collection_name, id, aspect) = path.map_err(bad_path)?.0;
    let collection = state.collection(&collection_name)?;
    require_owner(collection)?;
    require_writer(&caller)?;
    let negotiated = negotiate(&state, collection, &headers, &url_version)?;
    query_params(query.as_deref(), &[])?;
    let definition = declared_aspect(collection, &aspect)?;
    let precondition = if_match(&headers)?;
    let (_, format) = state.interfaces_of(collection.owner()).body_type(
        header_text(&headers, header::CONTENT_TYPE),
        url_version.as_ref().map(|v| v.0.0),
    )?;
    let body = body.map_err(body_rejection)?;
    let wire = repr::parse_aspect(format, &body, &definition.name, ParseLimits::default())?;
    if wire.version.is_some() {
        return Err(forged_version());
    }
    let id = ResourceId::parse(&id).ok_or_else(not_found)?;
    let edits = accept_all(collection, vec![wire]).await?;
    let committed = state
        .store()
        .commit(
            collection.name(),
            vec![Change {
                target: Target::Update(id),
                precondition,
                edits,
            }],
        )
        .await?;
    state.notify_change();
    metrics::counter!("hiscale_writes_total", "collection" => collection.name().to_owned(), "kind" => "put")
        .increment(1);
    let written = committed
        .written
        .first()
        .ok_or_else(|| ApiError::internal("a committed write reported no change"))?;
    let version = written.version;
    let view = ResourceView::of(written, |_| true);
    let body = repr::render_resource(negotiated.format, collection, &view);
    let mut response = answer(&state, collection, negotiated, StatusCode::OK, body);
    set_header(&mut response, header::ETAG, &ETag(version).header_value());
    Ok(response)
}

/// `DELETE /{collection}/{id}/{aspect}`: leaves an aspect tombstone.
pub(super) async fn delete_aspect(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (collection_name, id, aspect) = path.map_err(bad_path)?.0;
    let collection = state.collection(&collection_name)?;
    require_owner(collection)?;
    require_writer(&caller)?;
    query_params(query.as_deref(), &[])?;
    let definition = declared_aspect(collection, &aspect)?;
    let precondition = if_match(&headers)?;
    let id = ResourceId::parse(&id).ok_or_else(not_found)?;
    let edit = AspectEdit {
        aspect: definition.name.to_string(),
        body: None,
        unique_keys: Vec::new(),
    };
    delete(
        &state,
        collection,
        Target::Update(id),
        precondition,
        vec![edit],
    )
    .await
}

/// `DELETE /{collection}/{id}`: leaves a resource tombstone.
pub(super) async fn delete_resource(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (collection_name, id) = path.map_err(bad_path)?.0;
    let collection = state.collection(&collection_name)?;
    require_owner(collection)?;
    require_writer(&caller)?;
    query_params(query.as_deref(), &[])?;
    let precondition = if_match(&headers)?;
    let id = ResourceId::parse(&id).ok_or_else(not_found)?;
    delete(
        &state,
        collection,
        Target::Delete(id),
        precondition,
        Vec::new(),
    )
    .await
}

async fn delete(
    state: &AppState,
    collection: &Collection,
    target: Target,
    precondition: Option<TagCondition>,
    edits: Vec<AspectEdit>,
) -> Result<Response, ApiError> {
    let committed = state
        .store()
        .commit(
            collection.name(),
            vec![Change {
                target,
                precondition,
                edits,
            }],
        )
        .await?;
    state.notify_change();
    metrics::counter!("hiscale_writes_total", "collection" => collection.name().to_owned(), "kind" => "delete")
        .increment(1);
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some((_, version)) = committed.changes.first() {
        set_header(&mut response, header::ETAG, &ETag(*version).header_value());
    }
    Ok(response)
}

/// Runs each aspect's business validation off the async threads (password hashing is slow).
async fn accept_all(
    collection: &Collection,
    aspects: Vec<WireAspect>,
) -> Result<Vec<AspectEdit>, ApiError> {
    let work: Vec<(AspectDef, Map<String, Value>)> = aspects
        .into_iter()
        .map(|aspect| {
            collection
                .find(&aspect.name)
                .cloned()
                .map(|definition| (definition, aspect.fields))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        codes::UNKNOWN_ASPECT,
                        format!("unknown aspect {}", aspect.name),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let accepted = super::run_blocking(move || {
        work.into_iter()
            .map(|(definition, fields)| {
                let body = definition.accept(fields)?.body;
                Ok((definition.name, body))
            })
            .collect::<Result<Vec<_>, crate::aspect::Invalid>>()
    })
    .await?
    .map_err(|invalid| ApiError::bad_request(invalid.code, invalid.message))?;
    // Unique values are found on the async side: it needs the collection, which stays here.
    Ok(accepted
        .into_iter()
        .map(|(name, body)| AspectEdit {
            unique_keys: collection.unique_keys(&name, &body),
            aspect: name.to_string(),
            body: Some(body.to_string()),
        })
        .collect())
}

pub(super) fn negotiate(
    state: &AppState,
    collection: &Collection,
    headers: &HeaderMap,
    url_version: &UrlVersionExt,
) -> Result<Negotiated, ApiError> {
    Ok(state.interfaces_of(collection.owner()).negotiate(
        header_text(headers, header::ACCEPT),
        url_version.as_ref().map(|version| version.0.0),
    )?)
}

/// A successful answer in the negotiated representation, naming the concrete version served.
pub(super) fn answer(
    state: &AppState,
    collection: &Collection,
    negotiated: Negotiated,
    status: StatusCode,
    body: impl Into<Body>,
) -> Response {
    let mut response = (status, body.into()).into_response();
    let media_type = state
        .interfaces_of(collection.owner())
        .media_type(negotiated.version, negotiated.format);
    set_header(&mut response, header::CONTENT_TYPE, &media_type);
    set_header(&mut response, header::VARY, "Accept");
    if negotiated.state == InterfaceState::Deprecated {
        set_header(
            &mut response,
            header::HeaderName::from_static("deprecation"),
            "true",
        );
    }
    response
}

/// The aspects a read carries: those asked for (all within the caller's grant), or all the
/// caller may read when none are named.
pub(super) fn selection(
    state: &AppState,
    collection: &Collection,
    caller: &Caller,
    asked: Option<&str>,
) -> Result<Selection, ApiError> {
    let readable = caller.readable(collection.aspect_names());
    if readable.is_empty() {
        // Refused before the store is asked, so the answer says nothing about whether the
        // resource exists.
        return Err(ApiError::forbidden(
            codes::NOTHING_GRANTED,
            format!(
                "{} may read no aspect of {} here",
                caller.name,
                collection.name()
            ),
        ));
    }
    let Some(asked) = asked else {
        return Ok(readable);
    };
    let selection = AspectSelector::parse(asked, state.inner.limits.max_selector_chars)
        .and_then(|selector| selector.resolve(collection.aspect_names()))
        .map_err(selector_error)?;
    if !selection.is_within(&readable) {
        let outside: Vec<String> = selection
            .outside(&readable)
            .iter()
            .map(|name| name.to_string())
            .collect();
        return Err(ApiError::forbidden(
            codes::ASPECT_NOT_GRANTED,
            format!("{} may not read {}", caller.name, outside.join(", ")),
        ));
    }
    Ok(selection)
}

fn selection_has(selection: &Selection, name: &str) -> bool {
    selection
        .names()
        .iter()
        .any(|selected| selected.to_string() == name)
}

fn selector_error(error: SelectorError) -> ApiError {
    let code = match error {
        SelectorError::TooLong(_) => codes::SELECTOR_TOO_LONG,
        SelectorError::Unknown(_) => codes::UNKNOWN_ASPECT,
        SelectorError::Empty | SelectorError::MissingTilde | SelectorError::BadName(_) => {
            codes::BAD_SELECTOR
        }
    };
    ApiError::bad_request(code, error.to_string())
}

fn declared_aspect<'c>(collection: &'c Collection, text: &str) -> Result<&'c AspectDef, ApiError> {
    AspectName::parse(text)
        .ok()
        .and_then(|name| collection.find(&name))
        .ok_or_else(|| {
            ApiError::not_found(
                codes::UNKNOWN_ASPECT,
                format!("{} has no such aspect", collection.name()),
            )
        })
}

/// Copies are read-only: writes go to the owner, which the answer names.
fn require_owner(collection: &Collection) -> Result<(), ApiError> {
    match collection.role() {
        Role::Owner => Ok(()),
        Role::Copy { owner } => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::READ_ONLY_COPY,
            format!(
                "this is a read-only copy of {}; write it at its owner, the {owner} service area",
                collection.name()
            ),
        )),
    }
}

fn require_writer(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_operator() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            codes::WRITE_NOT_GRANTED,
            format!("{} may read, but not write", caller.name),
        ))
    }
}

fn if_match(headers: &HeaderMap) -> Result<Option<TagCondition>, ApiError> {
    header_text(headers, header::IF_MATCH)
        .map(|value| TagCondition::parse_strong(value).ok_or_else(bad_condition))
        .transpose()
}

pub(super) fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

pub(super) fn set_header(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::BODY_TOO_LARGE,
            "the request body is too large",
        )
    } else {
        ApiError::bad_request(codes::UNREADABLE_BODY, "the request body could not be read")
    }
}

pub(super) fn bad_path(_: PathRejection) -> ApiError {
    ApiError::bad_request(codes::BAD_PATH, "the path could not be decoded")
}

fn not_found() -> ApiError {
    ApiError::not_found(codes::NOT_FOUND, "no such resource")
}

fn bad_condition() -> ApiError {
    ApiError::bad_request(
        codes::BAD_PRECONDITION,
        "If-Match / If-None-Match must be entity tags like \"7\" or *",
    )
}

fn forged_version() -> ApiError {
    ApiError::bad_request(
        codes::FORGED_VERSION,
        "the owner assigns versions; send none",
    )
}
