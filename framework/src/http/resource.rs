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
use super::read_cache::{ReadCache, Rendered};
use super::{ApiError, AppState};
use crate::aspect::{AspectName, AspectSelector, Selection, SelectorError};
use crate::auth::Caller;
use crate::business::{Draft, MAX_ATTEMPTS, Refusal};
use crate::codes;
use crate::facade;
use crate::interface::Negotiated;
use crate::model::{AspectDef, Collection, Ownership, Role};
use crate::repr::{self, ParseLimits, ResourceView, WireAspect};
use crate::store::{AspectEdit, Change, Committed, ReadStamp, StoredResource, Target};
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
    // A caller that reaches every resource (not a session) reads through the cache of renders.
    let cached = state.inner.reads.enabled() && caller.customer().is_none();
    let key =
        |stamp: &ReadStamp| ReadCache::key(collection.name(), &id, stamp, &selection, negotiated);
    if cached {
        let stamp = state
            .store()
            .read_stamp(collection.name(), &id)
            .await?
            .filter(|stamp| !stamp.deleted)
            .ok_or_else(not_found)?;
        if let Some(hit) = state.inner.reads.get(&key(&stamp)).await {
            return read_answer(&state, collection, negotiated, &headers, hit);
        }
    }
    let stored = state
        .store()
        .read(collection.name(), &id)
        .await?
        .filter(|resource| !resource.deleted && caller.reaches(collection, resource))
        .ok_or_else(not_found)?;
    let resource = facade::present(collection, negotiated.version, &stored);
    let view = ResourceView::of(&resource, |name| selection_has(&selection, name));
    let rendered = Rendered {
        version: view.version,
        body: Bytes::from(repr::render_resource(negotiated.format, collection, &view)),
    };
    if cached {
        // Under the stamp of exactly what was rendered (a write since the stamp above was
        // read makes this a newer state, under its own stamp).
        let key = key(&ReadStamp::of(&stored));
        state.inner.reads.insert(key, rendered.clone()).await;
    }
    read_answer(&state, collection, negotiated, &headers, rendered)
}

/// The answer to a read: `304` when `If-None-Match` names its version, else the body; with
/// its `ETag` either way.
fn read_answer(
    state: &AppState,
    collection: &Collection,
    negotiated: Negotiated,
    headers: &HeaderMap,
    rendered: Rendered,
) -> Result<Response, ApiError> {
    let etag = negotiated.etag(rendered.version);
    if let Some(condition) = header_text(headers, header::IF_NONE_MATCH) {
        let condition = TagCondition::parse(condition).ok_or_else(bad_condition)?;
        if condition.matches_representation(&etag) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            set_header(&mut response, header::ETAG, &etag.header_value());
            set_header(&mut response, header::VARY, "Accept");
            return Ok(response);
        }
    }
    let mut response = answer(state, collection, negotiated, StatusCode::OK, rendered.body);
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
    require_writer(&caller, collection)?;
    if caller.customer().is_some() && !matches!(collection.ownership(), Ownership::Field(_)) {
        return Err(ApiError::forbidden(
            codes::WRITE_NOT_GRANTED,
            format!("a session cannot create {}", collection.name()),
        ));
    }
    let negotiated = negotiate(&state, collection, &headers, &url_version)?;
    query_params(query.as_deref(), &[])?;
    let (body_version, format) = state.interfaces_of(collection.owner()).body_type(
        header_text(&headers, header::CONTENT_TYPE),
        url_version.as_ref().map(|v| v.0.0),
    )?;
    let form = state.require_stored_form(body_version)?;
    let body = body.map_err(body_rejection)?;
    let resource = repr::parse_resource(
        format,
        &body,
        &facade::view(collection, body_version),
        ParseLimits::default(),
    )?;
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
    let mut aspects = resource.aspects;
    require_writable(
        &caller,
        collection,
        aspects.iter().map(|aspect| &aspect.name),
    )?;
    for aspect in &mut aspects {
        // An older version's input becomes a canonical one (its facade), then is validated.
        aspect.fields = facade::accept_old(
            collection,
            body_version,
            &aspect.name,
            std::mem::take(&mut aspect.fields),
            None,
        )
        .map_err(|invalid| ApiError::bad_request(invalid.code, invalid.message))?;
        stamp_owner(&caller, collection, aspect);
    }
    let mut draft = Draft::new(collection.name());
    for (name, body) in accept_all(collection, aspects).await? {
        draft.set_document(&name, body);
    }
    let draft = run_rules(&state, collection, &caller, draft).await?;
    let terms = Terms {
        precondition: None,
        form,
    };
    let committed =
        commit_draft(&state, collection, &caller, Target::Create, terms, &draft).await?;
    let (Some((id, version)), Some(written)) = (
        committed.changes.first().cloned(),
        committed.written.first(),
    ) else {
        return Err(ApiError::internal("a committed create reported no change"));
    };
    metrics::counter!("hiscale_writes_total", "collection" => collection.name().to_owned(), "kind" => "create")
        .increment(1);
    let written = facade::present(collection, negotiated.version, written);
    let view = written_view(&caller, collection, &written);
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
    set_header(
        &mut response,
        header::ETAG,
        &negotiated.etag(version).header_value(),
    );
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
    require_writer(&caller, collection)?;
    let negotiated = negotiate(&state, collection, &headers, &url_version)?;
    query_params(query.as_deref(), &[])?;
    let definition = declared_aspect(collection, &aspect)?;
    require_writable(&caller, collection, [&definition.name])?;
    let precondition = if_match(&headers)?;
    let (body_version, format) = state.interfaces_of(collection.owner()).body_type(
        header_text(&headers, header::CONTENT_TYPE),
        url_version.as_ref().map(|v| v.0.0),
    )?;
    let form = state.require_stored_form(body_version)?;
    let terms = Terms { precondition, form };
    let body = body.map_err(body_rejection)?;
    let shown = facade::view(collection, body_version);
    let shown_definition = shown.find(&definition.name).unwrap_or(definition);
    let mut wire = repr::parse_aspect_of(format, &body, shown_definition, ParseLimits::default())?;
    if wire.version.is_some() {
        return Err(forged_version());
    }
    let id = ResourceId::parse(&id).ok_or_else(not_found)?;
    let committed = if facade::facade_for(collection, &definition.name, body_version).is_some() {
        put_through_facade(&state, collection, &caller, &id, terms, body_version, wire).await?
    } else {
        stamp_owner(&caller, collection, &mut wire);
        let accepted = accept_all(collection, vec![wire]).await?;
        change_with_rules(
            &state,
            collection,
            &caller,
            &id,
            terms,
            false,
            |mut draft| {
                for (name, body) in &accepted {
                    draft.set_document(name, body.clone());
                }
                std::future::ready(Ok(draft))
            },
        )
        .await?
    };
    metrics::counter!("hiscale_writes_total", "collection" => collection.name().to_owned(), "kind" => "put")
        .increment(1);
    let written = committed
        .written
        .first()
        .ok_or_else(|| ApiError::internal("a committed write reported no change"))?;
    let version = written.version;
    let written = facade::present(collection, negotiated.version, written);
    let view = written_view(&caller, collection, &written);
    let body = repr::render_resource(negotiated.format, collection, &view);
    let mut response = answer(&state, collection, negotiated, StatusCode::OK, body);
    set_header(
        &mut response,
        header::ETAG,
        &negotiated.etag(version).header_value(),
    );
    Ok(response)
}

/// `PUT` of an aspect through an older version's facade: the old input becomes a canonical
/// one given the stored document it replaces (so fields only newer versions know survive),
/// and the write is pinned to the version read; tried again when another writer came first
/// (unless the client's own `If-Match` decides).
async fn put_through_facade(
    state: &AppState,
    collection: &Collection,
    caller: &Caller,
    id: &ResourceId,
    terms: Terms,
    body_version: crate::interface::InterfaceVersion,
    wire: WireAspect,
) -> Result<Committed, ApiError> {
    let precondition = terms.precondition;
    let name = wire.name.to_string();
    for _ in 0..MAX_ATTEMPTS {
        let current = state
            .store()
            .read(collection.name(), id)
            .await?
            .filter(|resource| !resource.deleted && caller.reaches(collection, resource))
            .ok_or_else(not_found)?;
        let stored: Option<Value> = current
            .aspects
            .iter()
            .find(|aspect| aspect.name == name && !aspect.deleted)
            .and_then(|aspect| serde_json::from_str(aspect.body.as_deref()?).ok());
        let mut aspect = wire.clone();
        aspect.fields = facade::accept_old(
            collection,
            body_version,
            &aspect.name,
            aspect.fields,
            stored.as_ref(),
        )
        .map_err(|invalid| ApiError::bad_request(invalid.code, invalid.message))?;
        stamp_owner(caller, collection, &mut aspect);
        let accepted = accept_all(collection, vec![aspect]).await?;
        let pinned = precondition
            .clone()
            .unwrap_or_else(|| TagCondition::exactly(current.version));
        let outcome = change_with_rules(
            state,
            collection,
            caller,
            id,
            Terms {
                precondition: Some(pinned),
                form: terms.form,
            },
            false,
            |mut draft| {
                for (name, body) in &accepted {
                    draft.set_document(name, body.clone());
                }
                std::future::ready(Ok(draft))
            },
        )
        .await;
        match outcome {
            Err(ApiError { status, .. })
                if status == StatusCode::PRECONDITION_FAILED && precondition.is_none() => {}
            other => return other,
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        codes::WRITE_CONFLICT,
        "other writers kept changing the resource; read it and try again",
    ))
}

/// Changes an existing resource: reads it (a session only what it owns), lets `change` set
/// aspects on it, runs the collection's rules and commits. When rules or `change` read the
/// resource (`reads_current`), the commit is pinned to the version they saw and tried again
/// when another writer came first; otherwise only the client's `If-Match` applies.
pub(super) async fn change_with_rules<F, Fut>(
    state: &AppState,
    collection: &Collection,
    caller: &Caller,
    id: &ResourceId,
    terms: Terms,
    reads_current: bool,
    change: F,
) -> Result<Committed, ApiError>
where
    F: Fn(Draft) -> Fut,
    Fut: std::future::Future<Output = Result<Draft, Refusal>>,
{
    let pinned = reads_current || !collection.rules().is_empty();
    let precondition = terms.precondition.clone();
    for _ in 0..MAX_ATTEMPTS {
        let current = if pinned || caller.customer().is_some() {
            let resource = state
                .store()
                .read(collection.name(), id)
                .await?
                .filter(|resource| !resource.deleted && caller.reaches(collection, resource))
                .ok_or_else(not_found)?;
            Draft::stored(collection.name(), &resource)
        } else {
            Draft::existing(collection.name(), id.clone())
        };
        let draft = change(current).await?;
        let draft = run_rules(state, collection, caller, draft).await?;
        let condition = match (&precondition, pinned) {
            (Some(given), _) => Some(given.clone()),
            (None, true) => Some(TagCondition::exactly(draft.version())),
            (None, false) => None,
        };
        let target = Target::Update(id.clone());
        let attempt = Terms {
            precondition: condition,
            form: terms.form,
        };
        match commit_draft(state, collection, caller, target, attempt, &draft).await {
            Err(ApiError { status, .. })
                if status == StatusCode::PRECONDITION_FAILED
                    && precondition.is_none()
                    && pinned =>
            {
                continue;
            }
            other => return other,
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        codes::WRITE_CONFLICT,
        "other writers kept changing the resource; read it and try again",
    ))
}

/// Runs the collection's rules, in declaration order, on what a write will store.
pub(super) async fn run_rules(
    state: &AppState,
    collection: &Collection,
    caller: &Caller,
    mut draft: Draft,
) -> Result<Draft, ApiError> {
    for rule in collection.rules() {
        draft = (rule.0)(state.context(caller.customer().cloned()), draft).await?;
    }
    Ok(draft)
}

/// Stores what `draft` sets as one change; a session's change must leave the resource its own.
pub(super) async fn commit_draft(
    state: &AppState,
    collection: &Collection,
    caller: &Caller,
    target: Target,
    terms: Terms,
    draft: &Draft,
) -> Result<Committed, ApiError> {
    if let (Some(customer), Ownership::Field(lookup)) = (caller.customer(), collection.ownership())
    {
        let owner = draft
            .document(&lookup.aspect.to_string())
            .and_then(|document| document.get(&lookup.field))
            .and_then(Value::as_str);
        if owner != Some(customer.as_str()) {
            return Err(ApiError::forbidden(
                codes::WRITE_NOT_GRANTED,
                format!("a session writes only resources of its own customer ({lookup:?})"),
            ));
        }
    }
    let edits = draft.edits(collection)?;
    if edits.is_empty() {
        return Err(ApiError::internal("a write with nothing to store"));
    }
    let committed = commit_change(state, collection, target, terms, edits).await?;
    Ok(committed)
}

/// The answer to a write shows what it wrote, of it only what the caller may read.
pub(super) fn written_view<'r>(
    caller: &Caller,
    collection: &Collection,
    written: &'r StoredResource,
) -> ResourceView<'r> {
    let readable = caller.readable(collection.aspect_names());
    ResourceView::of(written, |name| selection_has(&readable, name))
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
    require_operator_write(&caller)?;
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
    require_operator_write(&caller)?;
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
    // A deletion stores no document: the form does not matter.
    let terms = Terms {
        precondition,
        form: state.stored_form(),
    };
    let committed = commit_change(state, collection, target, terms, edits).await?;
    metrics::counter!("hiscale_writes_total", "collection" => collection.name().to_owned(), "kind" => "delete")
        .increment(1);
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some((_, version)) = committed.changes.first() {
        set_header(
            &mut response,
            header::ETAG,
            &ETag::of(*version).header_value(),
        );
    }
    Ok(response)
}

/// Runs each aspect's business validation off the async threads (password hashing is slow);
/// answers the stored documents.
async fn accept_all(
    collection: &Collection,
    aspects: Vec<WireAspect>,
) -> Result<Vec<(AspectName, Value)>, ApiError> {
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
    super::run_blocking(move || {
        work.into_iter()
            .map(|(definition, fields)| {
                let body = definition.accept(fields)?.body;
                Ok((definition.name, body))
            })
            .collect::<Result<Vec<_>, crate::aspect::Invalid>>()
    })
    .await?
    .map_err(|invalid| ApiError::bad_request(invalid.code, invalid.message))
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
    // `Deprecation`, `Sunset` and the successor link come from the interface middleware.
    set_header(&mut response, header::VARY, "Accept");
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

pub(super) fn selection_has(selection: &Selection, name: &str) -> bool {
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

/// Copies are read-only: writes go to the owner, which the answer names. A collection the
/// owner's units write themselves (login's revocations) is read-only to every caller there
/// too: an operator's `DELETE` of a revocation before its `exp` revived the session (issue 25).
pub(super) fn require_owner(collection: &Collection) -> Result<(), ApiError> {
    match collection.role() {
        Role::Owner if !collection.writable_by_callers() => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::READ_ONLY_COPY,
            format!(
                "{} is read-only to callers: the {} service area writes it itself",
                collection.name(),
                collection.owner()
            ),
        )),
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

/// Deletes stay with the operator.
fn require_operator_write(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_operator() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            codes::WRITE_NOT_GRANTED,
            format!("{} may read, but not delete", caller.name),
        ))
    }
}

/// Who may create and change resources: the operator, and sessions where the collection lets
/// them (on resources they own; see [`commit_draft`]).
pub(super) fn require_writer(caller: &Caller, collection: &Collection) -> Result<(), ApiError> {
    if caller.is_operator() || (caller.customer().is_some() && collection.sessions_write()) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            codes::WRITE_NOT_GRANTED,
            format!(
                "{} may read, but not write {}",
                caller.name,
                collection.name()
            ),
        ))
    }
}

/// A session writes only aspects it may read (its session grant), so a grant that hides an
/// aspect also keeps sessions from overwriting it.
fn require_writable<'n>(
    caller: &Caller,
    collection: &Collection,
    names: impl IntoIterator<Item = &'n AspectName>,
) -> Result<(), ApiError> {
    if caller.customer().is_none() {
        return Ok(());
    }
    let readable = caller.readable(collection.aspect_names());
    for name in names {
        if !readable.contains(name) {
            return Err(ApiError::forbidden(
                codes::WRITE_NOT_GRANTED,
                format!("a session may not write {name} here"),
            ));
        }
    }
    Ok(())
}

/// For a session, the field naming a resource's customer is the session's customer, whatever
/// the body said: it is never taken from the request.
fn stamp_owner(caller: &Caller, collection: &Collection, aspect: &mut WireAspect) {
    if let (Some(customer), Ownership::Field(lookup)) = (caller.customer(), collection.ownership())
        && aspect.name == lookup.aspect
    {
        aspect.fields.insert(
            lookup.field.clone(),
            Value::String(customer.as_str().to_owned()),
        );
    }
}

pub(super) fn if_match(headers: &HeaderMap) -> Result<Option<TagCondition>, ApiError> {
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

pub(super) fn body_rejection(rejection: BytesRejection) -> ApiError {
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

/// What a write is held to besides its content: the client's `If-Match`, and the form its
/// documents are stored in, read once when the request began.
#[derive(Debug, Clone)]
pub(super) struct Terms {
    pub(super) precondition: Option<TagCondition>,
    pub(super) form: crate::interface::InterfaceVersion,
}

/// Stores one change as one new version and wakes the long polls waiting for it.
async fn commit_change(
    state: &AppState,
    collection: &Collection,
    target: Target,
    terms: Terms,
    edits: Vec<AspectEdit>,
) -> Result<Committed, ApiError> {
    let Terms { precondition, form } = terms;
    let mut edits = edits;
    crate::facade::in_stored_form(collection, form, &mut edits);
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
    Ok(committed)
}
