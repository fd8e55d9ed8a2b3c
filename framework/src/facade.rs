//! Facades: older interface versions of an aspect over one domain model.
//!
//! The newest interface version is canonical: it is what the store holds and what the
//! aspect's type ([`crate::Aspect`]) validates. An older version `N` of an aspect whose shape
//! changed is a facade, a pair of JSON→JSON functions declared by the SA
//! ([`crate::Collection::facade`]):
//!
//! * `to_old(stored)` renders the canonical document as version `N` shows it (reads, the feed,
//!   the answers to writes);
//! * `from_old(input, current)` turns a version-`N` input into a canonical input, given the
//!   stored document it replaces (`None` on create), so a write through an old version never
//!   erases fields only newer versions know.
//!
//! Both formats render from and parse into the same JSON documents, so one pair serves XML and
//! JSON alike. Aspects without a facade for a version are the same in every version.
//!
//! Documents stored before the canonical form changed are not migrated in one blocking step:
//! an `upgrade` function ([`crate::Collection::upgrade`]) turns a stored document of an older
//! form into the canonical one whenever it is read (it must leave canonical documents alone),
//! and the next write stores the canonical form.

use std::borrow::Cow;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use crate::aspect::{AspectName, Invalid};
use crate::codes;
use crate::interface::InterfaceVersion;
use crate::model::Collection;
use crate::shape::Shape;
use crate::store::{ChangedResource, StoredAspect, StoredResource};

/// A JSON object: one aspect's fields.
pub type Document = Map<String, Value>;

/// Renders a canonical stored document as an older version shows it.
pub type ToOld = fn(&Document) -> Document;

/// Turns an older version's input into a canonical input, keeping what only newer versions
/// know from `current` (the stored document, canonical; `None` when creating).
pub type FromOld = fn(Document, Option<&Document>) -> Document;

/// Turns a stored document of an older canonical form into the current one (and leaves a
/// current one as it is).
pub type Upgrade = fn(Document) -> Document;

/// One aspect's facade for one older interface version.
#[derive(Clone)]
pub struct Facade {
    /// The aspect's name (`person`), or a qualified family's (`address`) for all its aspects.
    pub aspect: String,
    pub version: InterfaceVersion,
    pub to_old: ToOld,
    pub from_old: FromOld,
    /// The old input's shape: what its XML is coerced to and its JSON checked against.
    pub shape: Arc<Shape>,
    check: fn(&Document) -> Result<(), Invalid>,
    input_schema: fn() -> RefOr<Schema>,
    schemas: fn(&mut Vec<(String, RefOr<Schema>)>),
}

impl std::fmt::Debug for Facade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Facade")
            .field("aspect", &self.aspect)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Facade {
    /// A facade whose old input has the type `Old` (its schema documents the old version,
    /// its shape coerces XML, and the input must deserialize into it).
    pub fn new<Old: DeserializeOwned + utoipa::ToSchema>(
        aspect: &str,
        version: InterfaceVersion,
        to_old: ToOld,
        from_old: FromOld,
    ) -> Self {
        Self {
            aspect: aspect.to_owned(),
            version,
            to_old,
            from_old,
            shape: Arc::new(Shape::of::<Old>()),
            check: check_as::<Old>,
            input_schema: || Old::schema(),
            schemas: |schemas| Old::schemas(schemas),
        }
    }

    /// Whether this facade covers the aspect `name` (`address.home` for family `address`).
    pub fn covers(&self, name: &str) -> bool {
        name == self.aspect
            || name
                .strip_prefix(self.aspect.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    }

    /// Checks an old input against the old type (field types, then serde), so an old client
    /// hears about its own field names, before it is converted.
    pub fn check(&self, fields: &Document) -> Result<(), Invalid> {
        for (name, value) in fields {
            self.shape
                .field(name)
                .check(value, name)
                .map_err(|(path, expected)| {
                    Invalid::new(
                        codes::INVALID_FIELD,
                        format!("field '{path}' of {} must be {expected}", self.aspect),
                    )
                })?;
        }
        (self.check)(fields)
    }

    /// The old input's schema, for the old version's OpenAPI document.
    pub fn input_schema(&self) -> RefOr<Schema> {
        (self.input_schema)()
    }

    /// The component schemas the old input's schema refers to.
    pub fn component_schemas(&self) -> Vec<(String, RefOr<Schema>)> {
        let mut schemas = Vec::new();
        (self.schemas)(&mut schemas);
        schemas
    }
}

fn check_as<Old: DeserializeOwned>(fields: &Document) -> Result<(), Invalid> {
    serde_path_to_error::deserialize::<_, Old>(Value::Object(fields.clone()))
        .map(|_| ())
        .map_err(|error| Invalid::new(codes::INVALID_ASPECT, error.to_string()))
}

/// A stored upgrade of one aspect (or family).
#[derive(Debug, Clone)]
pub struct StoredUpgrade {
    pub aspect: String,
    pub upgrade: Upgrade,
}

/// A stored document as the canonical form: upgraded when the collection declares an upgrade
/// for the aspect.
pub fn canonical(collection: &Collection, aspect: &str, document: Document) -> Document {
    match collection
        .upgrades()
        .iter()
        .find(|upgrade| covers(&upgrade.aspect, aspect))
    {
        Some(upgrade) => (upgrade.upgrade)(document),
        None => document,
    }
}

fn covers(declared: &str, name: &str) -> bool {
    name == declared
        || name
            .strip_prefix(declared)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The facade of `aspect` for interface `version`, if that version shows it differently.
pub fn facade_for<'c>(
    collection: &'c Collection,
    aspect: &AspectName,
    version: InterfaceVersion,
) -> Option<&'c Facade> {
    let name = aspect.to_string();
    collection
        .facades()
        .iter()
        .find(|facade| facade.version == version && facade.covers(&name))
}

/// The collection as interface `version` parses it (facade shapes), borrowed when that
/// version has no facade.
pub fn view(collection: &Collection, version: InterfaceVersion) -> Cow<'_, Collection> {
    if collection
        .facades()
        .iter()
        .any(|facade| facade.version == version)
    {
        Cow::Owned(collection.as_version(version))
    } else {
        Cow::Borrowed(collection)
    }
}

/// Whether rendering `version` of `collection` changes any stored document.
fn converts(collection: &Collection, version: InterfaceVersion) -> bool {
    !collection.upgrades().is_empty()
        || collection
            .facades()
            .iter()
            .any(|facade| facade.version == version)
}

/// One stored body as `version` shows it: upgraded to the canonical form, then through the
/// version's facade. A body that is not a JSON object is left alone (it renders as no fields).
fn present_body(
    collection: &Collection,
    version: InterfaceVersion,
    name: &str,
    body: &str,
) -> Option<String> {
    let Ok(Value::Object(document)) = serde_json::from_str::<Value>(body) else {
        return None;
    };
    let document = canonical(collection, name, document);
    let document = match collection
        .facades()
        .iter()
        .find(|facade| facade.version == version && facade.covers(name))
    {
        Some(facade) => (facade.to_old)(&document),
        None => document,
    };
    serde_json::to_string(&Value::Object(document)).ok()
}

/// Whether an upgrade or a facade of `version` covers the aspect `name`.
fn changes_aspect(collection: &Collection, version: InterfaceVersion, name: &str) -> bool {
    collection
        .upgrades()
        .iter()
        .any(|upgrade| covers(&upgrade.aspect, name))
        || collection
            .facades()
            .iter()
            .any(|facade| facade.version == version && facade.covers(name))
}

fn present_aspects(
    collection: &Collection,
    version: InterfaceVersion,
    aspects: &[StoredAspect],
) -> Vec<StoredAspect> {
    aspects
        .iter()
        .map(|aspect| StoredAspect {
            body: aspect.body.as_deref().map(|body| {
                // A document no upgrade or facade changes was parsed and printed again here,
                // which leaves canonical text as it is: only the rest still takes that trip.
                if !changes_aspect(collection, version, &aspect.name)
                    && crate::repr::is_canonical(body)
                {
                    return body.to_owned();
                }
                present_body(collection, version, &aspect.name, body)
                    .unwrap_or_else(|| body.to_owned())
            }),
            ..aspect.clone()
        })
        .collect()
}

/// A stored resource as interface `version` shows it (borrowed when nothing changes).
pub fn present<'r>(
    collection: &Collection,
    version: InterfaceVersion,
    resource: &'r StoredResource,
) -> Cow<'r, StoredResource> {
    if !converts(collection, version) {
        return Cow::Borrowed(resource);
    }
    Cow::Owned(StoredResource {
        aspects: present_aspects(collection, version, &resource.aspects),
        ..resource.clone()
    })
}

/// Feed items as interface `version` shows them (borrowed when nothing changes).
pub fn present_changes<'r>(
    collection: &Collection,
    version: InterfaceVersion,
    items: &'r [ChangedResource],
) -> Cow<'r, [ChangedResource]> {
    if !converts(collection, version) {
        return Cow::Borrowed(items);
    }
    Cow::Owned(
        items
            .iter()
            .map(|item| ChangedResource {
                aspects: present_aspects(collection, version, &item.aspects),
                ..item.clone()
            })
            .collect(),
    )
}

/// An input of interface `version` as a canonical input: checked against the old type and
/// converted, keeping what only newer versions know from `current` (stored, any form).
/// Unchanged when the version shows the aspect as it is.
pub fn accept_old(
    collection: &Collection,
    version: InterfaceVersion,
    aspect: &AspectName,
    fields: Document,
    current: Option<&Value>,
) -> Result<Document, Invalid> {
    let Some(facade) = facade_for(collection, aspect, version) else {
        return Ok(fields);
    };
    facade.check(&fields)?;
    let name = aspect.to_string();
    let current = current
        .and_then(Value::as_object)
        .map(|document| canonical(collection, &name, document.clone()));
    Ok((facade.from_old)(fields, current.as_ref()))
}

/// The edits' documents in the form of interface `form`: through that version's facade where
/// it shows an aspect differently (`to_old`), unchanged otherwise.
pub(crate) fn in_stored_form(
    collection: &Collection,
    form: InterfaceVersion,
    edits: &mut [crate::store::AspectEdit],
) {
    for edit in edits {
        let Some(body) = &edit.body else { continue };
        let Some(facade) = collection
            .facades()
            .iter()
            .find(|facade| facade.version == form && facade.covers(&edit.aspect))
        else {
            continue;
        };
        if let Ok(Value::Object(document)) = serde_json::from_str::<Value>(body) {
            edit.body = Some(Value::Object((facade.to_old)(&document)).to_string());
        }
    }
}
