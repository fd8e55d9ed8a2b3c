//! Lookups: `GET /{collection}?{field}=…` for a field the collection declares
//! (`GET /orders?customer=12`), paged by resource id, and a session's bare `GET /{collection}`,
//! which lists the resources its customer owns. Answers carry the feed's envelope; the next
//! page is linked (`Link: <…&after={last id}>; rel="next"`) while `more` is true.

use axum::Extension;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::extract::{UrlVersion, forwarded_prefix, query_params};
use super::feed::{bounded, latest_version};
use super::resource::{answer, negotiate, param, selection, selection_has, set_header};
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::business::MAX_FOUND;

/// The longest value a lookup takes (`?customer=…`): longer than any field it could match,
/// and a bound on what a caller makes the store compare.
pub const MAX_LOOKUP_CHARS: usize = 256;
use crate::codes;
use crate::model::{Collection, LookupField, Ownership};
use crate::repr::{self, ResourceView};
use crate::version::ResourceId;

/// Resources per page when the client names no `limit`.
const DEFAULT_LIMIT: usize = 100;

/// Whether `GET /{collection}` is a lookup rather than the feed: always for a session (which
/// reads no feed), and for anyone naming a declared lookup field.
pub(super) fn applies(collection: &Collection, caller: &Caller, query: Option<&str>) -> bool {
    let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or("")) else {
        return false;
    };
    let names = |key: &str| pairs.iter().any(|(name, _)| name == key);
    if caller.customer().is_some() {
        // A session asking for the feed is told it reads none.
        return !names("version") && !names("wait");
    }
    collection
        .lookups()
        .iter()
        .any(|lookup| names(&lookup.field))
}

/// What to look for: a field and its value, or a session's own customer.
enum Wanted<'c> {
    Field(&'c LookupField, String),
    /// The customer resource itself (a session at `customers`).
    Itself(ResourceId),
    /// Every resource (a session at a collection every session reads).
    All,
    Nothing,
}

pub(super) async fn list(
    state: &AppState,
    collection: &Collection,
    caller: &Caller,
    headers: &HeaderMap,
    url_version: &Option<Extension<UrlVersion>>,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let negotiated = negotiate(state, collection, headers, url_version)?;
    let mut allowed: Vec<&str> = collection
        .lookups()
        .iter()
        .map(|lookup| lookup.field.as_str())
        .collect();
    allowed.extend(["after", "limit", "aspects"]);
    let params = query_params(query, &allowed)?;
    let asked: Vec<(&LookupField, &str)> = collection
        .lookups()
        .iter()
        .filter_map(|lookup| param(&params, &lookup.field).map(|value| (lookup, value)))
        .collect();
    if let Some((lookup, value)) = asked
        .iter()
        .find(|(_, value)| value.chars().count() > MAX_LOOKUP_CHARS)
    {
        return Err(ApiError::bad_request(
            codes::BAD_QUERY,
            format!(
                "{} is {} characters long; a lookup value has at most {MAX_LOOKUP_CHARS}",
                lookup.field,
                value.chars().count()
            ),
        ));
    }
    if asked.len() > 1 {
        return Err(ApiError::bad_request(
            codes::BAD_QUERY,
            "name one lookup field at a time",
        ));
    }
    let limit = bounded(
        param(&params, "limit"),
        DEFAULT_LIMIT,
        1,
        MAX_FOUND,
        codes::BAD_LIMIT,
        "limit",
    )?;
    let after = param(&params, "after")
        .map(|text| {
            ResourceId::parse(text).ok_or_else(|| {
                ApiError::bad_request(codes::BAD_CURSOR, "after must be a resource id")
            })
        })
        .transpose()?;
    let selection = selection(state, collection, caller, param(&params, "aspects"))?;
    let wanted = match (caller.customer(), collection.ownership(), asked.first()) {
        (None, _, Some((lookup, value))) => Wanted::Field(lookup, (*value).to_owned()),
        (None, _, None) => Wanted::Nothing,
        // A session asking for another customer's resources finds none of them.
        (Some(customer), Ownership::Field(own), asked) => match asked {
            Some((lookup, value)) if lookup.field != own.field || *value != customer.as_str() => {
                Wanted::Nothing
            }
            _ => Wanted::Field(own, customer.as_str().to_owned()),
        },
        (Some(customer), Ownership::Itself, None) => Wanted::Itself(customer.clone()),
        (Some(_), Ownership::Everyone, Some((lookup, value))) => {
            Wanted::Field(lookup, (*value).to_owned())
        }
        (Some(_), Ownership::Everyone, None) => Wanted::All,
        (Some(_), _, _) => Wanted::Nothing,
    };
    let (ids, more) = match &wanted {
        Wanted::Field(lookup, value) => {
            let mut ids = state
                .store()
                .lookup(collection.name(), lookup, value, after.as_ref(), limit + 1)
                .await?;
            let more = ids.len() > limit;
            ids.truncate(limit);
            (ids, more)
        }
        Wanted::All => {
            let mut ids = state
                .store()
                .list(collection.name(), after.as_ref(), limit + 1)
                .await?;
            let more = ids.len() > limit;
            ids.truncate(limit);
            (ids, more)
        }
        Wanted::Itself(customer) if after.as_ref().is_none_or(|after| customer > after) => {
            (vec![customer.clone()], false)
        }
        Wanted::Itself(_) | Wanted::Nothing => (Vec::new(), false),
    };
    let mut resources = Vec::with_capacity(ids.len());
    for id in &ids {
        if let Some(resource) = state
            .store()
            .read(collection.name(), id)
            .await?
            .filter(|resource| !resource.deleted && caller.reaches(collection, resource))
        {
            resources.push(resource);
        }
    }
    let views: Vec<ResourceView<'_>> = resources
        .iter()
        .map(|resource| ResourceView::of(resource, |name| selection_has(&selection, name)))
        .collect();
    // The list's version is informational; of a copy of several origins, the single cursor
    // it does not keep reads as 0.
    let origin = state.feed_origin(collection, None).unwrap_or_default();
    let version = latest_version(state, collection, &origin).await?;
    let body = repr::render_feed(negotiated.format, collection, version, more, &views);
    let mut response = answer(state, collection, negotiated, StatusCode::OK, body);
    if let (true, Some(last)) = (more, ids.last()) {
        let mut pairs = vec![
            ("after", last.as_str().to_owned()),
            ("limit", limit.to_string()),
        ];
        if let Wanted::Field(lookup, value) = &wanted {
            pairs.insert(0, (lookup.field.as_str(), value.clone()));
        }
        let next = serde_urlencoded::to_string(pairs).unwrap_or_default();
        set_header(
            &mut response,
            header::LINK,
            &format!(
                "<{}/{}?{next}>; rel=\"next\"",
                forwarded_prefix(headers),
                collection.name()
            ),
        );
    }
    Ok(response)
}
