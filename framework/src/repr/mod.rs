//! Wire representations: parsing client bodies and rendering resources and errors, in XML
//! and JSON, shaped as PROTOCOL.md shows.
//!
//! Both formats parse into the same [`WireResource`] and render from the same store records,
//! so XML and JSON can never drift apart in what they carry.

mod json;
mod raw;
mod strict_json;
mod xml;

use serde_json::{Map, Value};

use crate::aspect::AspectName;
use crate::codes;
use crate::model::{AspectDef, Collection};
use crate::shape::Shape;
use crate::store::{ChangedResource, StoredAspect, StoredResource};
use crate::version::{ResourceId, Version};

/// The two wire formats every interface version speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
}

/// A resource as a client sent it, before the aspects' own validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WireResource {
    /// Present only when the client tried to set it (which is refused).
    pub id: Option<String>,
    pub version: Option<String>,
    pub aspects: Vec<WireAspect>,
}

/// One aspect as a client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct WireAspect {
    pub name: AspectName,
    /// Present only when the client tried to set it (which is refused).
    pub version: Option<String>,
    pub fields: Map<String, Value>,
}

/// A body that cannot be understood; always a `400` with this stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadBody {
    pub code: &'static str,
    pub message: String,
}

impl BadBody {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// How deep and how large a parsed body may be, beyond the byte limit of the HTTP layer.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    pub max_depth: usize,
    pub max_elements: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_depth: 8,
            max_elements: 2_000,
        }
    }
}

/// Parses a whole resource (`POST`).
pub fn parse_resource(
    format: Format,
    body: &[u8],
    collection: &Collection,
    limits: ParseLimits,
) -> Result<WireResource, BadBody> {
    let resource = match format {
        Format::Xml => xml::parse_resource(body, collection, limits),
        Format::Json => json::parse_resource(body, collection, limits),
    }?;
    for aspect in &resource.aspects {
        representable_fields(aspect)?;
    }
    Ok(resource)
}

/// Parses the body of `PUT /{collection}/{id}/{aspect}`: that aspect's element alone,
/// without its declaration, so XML leaves stay text (enough for text-only aspects).
/// Prefer [`parse_aspect_of`], which coerces XML to the aspect's typed fields.
pub fn parse_aspect(
    format: Format,
    body: &[u8],
    name: &AspectName,
    limits: ParseLimits,
) -> Result<WireAspect, BadBody> {
    let aspect = match format {
        Format::Xml => xml::parse_aspect(body, name, &Shape::Any, limits),
        Format::Json => json::parse_aspect(body, limits, name),
    }?;
    representable_fields(&aspect)?;
    Ok(aspect)
}

/// Parses the body of `PUT /{collection}/{id}/{aspect}` for the declared aspect: XML is
/// coerced to its input's shape (integers, lists, records), as in [`parse_resource`].
pub fn parse_aspect_of(
    format: Format,
    body: &[u8],
    definition: &AspectDef,
    limits: ParseLimits,
) -> Result<WireAspect, BadBody> {
    parse_input(format, body, &definition.name, definition.shape(), limits)
}

/// Parses a body shaped like `shape`, in an element (or object) named `name`: an aspect's, or
/// a command's input (`<cancel><reason>…</reason></cancel>`).
pub fn parse_input(
    format: Format,
    body: &[u8],
    name: &AspectName,
    shape: &crate::shape::Shape,
    limits: ParseLimits,
) -> Result<WireAspect, BadBody> {
    let aspect = match format {
        Format::Xml => xml::parse_aspect(body, name, shape, limits),
        Format::Json => json::parse_aspect(body, limits, name),
    }?;
    representable_fields(&aspect)?;
    Ok(aspect)
}

/// Refuses a string XML 1.0 cannot carry anywhere in an input's fields, names and values
/// alike (see [`crate::types::is_xml_char`]): stored, it could not be answered as XML. Every
/// body parser above ends here, so JSON and XML, aspects and commands, obey one rule. The
/// message names the field and the code point, never the value. Bounded by the parse limits
/// (depth and element count) the body already met.
fn representable_fields(aspect: &WireAspect) -> Result<(), BadBody> {
    representable_members(&aspect.fields, "", &aspect.name)
}

fn representable_members(
    members: &Map<String, Value>,
    path: &str,
    aspect: &AspectName,
) -> Result<(), BadBody> {
    for (name, value) in members {
        if let Some(character) = crate::types::unrepresentable(name) {
            let place = if path.is_empty() {
                format!("a field name of {aspect}")
            } else {
                format!("a field name in '{path}' of {aspect}")
            };
            return Err(unrepresentable(&place, character));
        }
        representable_value(value, &crate::shape::join(path, name), aspect)?;
    }
    Ok(())
}

fn representable_value(value: &Value, path: &str, aspect: &AspectName) -> Result<(), BadBody> {
    match value {
        Value::String(text) => match crate::types::unrepresentable(text) {
            Some(character) => Err(unrepresentable(
                &format!("field '{path}' of {aspect}"),
                character,
            )),
            None => Ok(()),
        },
        Value::Array(items) => items.iter().enumerate().try_for_each(|(index, item)| {
            representable_value(item, &format!("{path}[{index}]"), aspect)
        }),
        Value::Object(members) => representable_members(members, path, aspect),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn unrepresentable(place: &str, character: char) -> BadBody {
    BadBody::new(
        codes::UNREPRESENTABLE_CHARACTER,
        format!(
            "{place} holds the character U+{:04X}, which XML cannot carry (control characters \
             other than tab, line feed and carriage return, U+FFFE and U+FFFF are refused)",
            u32::from(character)
        ),
    )
}

/// What to render of one resource: its id, the version to show and the aspects to carry.
#[derive(Debug, Clone)]
pub struct ResourceView<'a> {
    pub id: &'a ResourceId,
    pub version: Version,
    pub deleted: bool,
    pub aspects: Vec<&'a StoredAspect>,
}

impl<'a> ResourceView<'a> {
    /// The carried aspects with their declarations, in the collection's declared order (the
    /// order both formats render in).
    fn declared_aspects<'c>(
        &'c self,
        collection: &'c Collection,
    ) -> impl Iterator<Item = (&'c AspectDef, &'c StoredAspect)> {
        collection.aspects().iter().filter_map(|definition| {
            let name = definition.name.to_string();
            self.aspects
                .iter()
                .find(|aspect| aspect.name == name)
                .map(|aspect| (definition, *aspect))
        })
    }

    /// A feed item: its changed aspects, tombstones included.
    pub fn changed(resource: &'a ChangedResource) -> Self {
        Self {
            id: &resource.id,
            version: resource.version,
            deleted: resource.deleted,
            aspects: if resource.deleted {
                Vec::new()
            } else {
                resource.aspects.iter().collect()
            },
        }
    }

    /// The live aspects of `resource` that `keep` accepts; the version shown (and the ETag)
    /// is the greatest version among the selected aspects, tombstones included (so a deletion
    /// moves it too), and never below the resource's purged tombstones (so a purge never moves
    /// it back to an older state's).
    pub fn of(resource: &'a StoredResource, keep: impl Fn(&str) -> bool) -> Self {
        let selected: Vec<&StoredAspect> = resource
            .aspects
            .iter()
            .filter(|aspect| keep(&aspect.name))
            .collect();
        let version = selected
            .iter()
            .map(|aspect| aspect.version)
            .max()
            .unwrap_or(Version::ZERO)
            .max(resource.purged_version);
        Self {
            id: &resource.id,
            version,
            deleted: resource.deleted,
            aspects: selected
                .into_iter()
                .filter(|aspect| !aspect.deleted)
                .collect(),
        }
    }
}

/// Renders one resource (`GET`, and the answers to writes).
pub fn render_resource(
    format: Format,
    collection: &Collection,
    view: &ResourceView<'_>,
) -> Vec<u8> {
    match format {
        Format::Xml => xml::render_resource(collection, view),
        Format::Json => json::render_resource(collection, view),
    }
}

/// Renders one chunk of the delta feed: root `version` and `more`, then the items.
pub fn render_feed(
    format: Format,
    collection: &Collection,
    version: Version,
    more: bool,
    items: &[ResourceView<'_>],
) -> Vec<u8> {
    match format {
        Format::Xml => xml::render_feed(collection, version, more, items, xml::Source::Stored),
        Format::Json => json::render_feed(collection, version, more, items),
    }
}

/// [`render_feed`] as it rendered before stored documents were taken as their text: every
/// document parsed into a `serde_json::Value` tree and printed again. The same bytes (a test
/// checks); kept so that `hiscale bench` can measure both side by side in one run.
#[doc(hidden)]
pub fn render_feed_through_tree(
    format: Format,
    collection: &Collection,
    version: Version,
    more: bool,
    items: &[ResourceView<'_>],
) -> Vec<u8> {
    match format {
        Format::Xml => xml::render_feed(collection, version, more, items, xml::Source::Tree),
        Format::Json => json::render_feed_through_tree(collection, version, more, items),
    }
}

/// A feed chunk as a poller reads it (JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedChunk {
    pub version: Version,
    pub more: bool,
    pub items: Vec<FeedItem>,
}

/// One resource of a received chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    pub id: ResourceId,
    pub version: Version,
    pub deleted: bool,
    pub aspects: Vec<FeedAspect>,
}

/// One aspect of a received chunk; `body` is `None` for a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedAspect {
    pub name: AspectName,
    pub version: Version,
    pub body: Option<Value>,
}

/// Parses a feed chunk received in JSON, keeping only the aspects `collection` declares.
pub fn parse_feed(body: &[u8], collection: &Collection) -> Result<FeedChunk, BadBody> {
    json::parse_feed(body, collection)
}

/// Renders a resource to create (`POST`), given as its JSON form (aspects by name, qualified
/// ones under their container): as it is for JSON, as the XML the parser reads back for XML.
/// The OpenAPI document shows request examples in both formats with it.
pub fn render_input(format: Format, collection: &Collection, resource: &Value) -> Vec<u8> {
    match format {
        Format::Xml => xml::render_input(collection, resource),
        Format::Json => serde_json::to_vec(resource).unwrap_or_default(),
    }
}

/// Renders the uniform error body with its stable code.
pub fn render_error(format: Format, code: &str, message: &str) -> Vec<u8> {
    match format {
        Format::Xml => xml::render_error(code, message),
        Format::Json => json::render_error(code, message),
    }
}

/// The fields of a stored aspect body, in stored order; a body that is not a JSON object
/// (never written by us) renders as no fields rather than failing the whole response.
fn stored_fields(aspect: &StoredAspect) -> Map<String, Value> {
    aspect
        .body
        .as_deref()
        .and_then(|body| serde_json::from_str::<Value>(body).ok())
        .and_then(|value| match value {
            Value::Object(fields) => Some(fields),
            _ => None,
        })
        .unwrap_or_default()
}

/// Whether a stored document's text is exactly what parsing it into a `serde_json::Value` and
/// printing that again gives (so the round trip can be skipped).
pub(crate) fn is_canonical(body: &str) -> bool {
    raw::canonical(body).is_some()
}

/// The declared aspect a body names, or `unknown-aspect`.
fn declared(collection: &Collection, name: &str) -> Result<AspectName, BadBody> {
    AspectName::parse(name)
        .ok()
        .filter(|parsed| collection.find(parsed).is_some())
        .ok_or_else(|| BadBody::new(codes::UNKNOWN_ASPECT, format!("unknown aspect '{name}'")))
}

/// Text of a scalar field for XML (strings as they are, anything else as JSON text).
fn field_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod splice_tests;
#[cfg(test)]
mod text_tests;
#[cfg(test)]
mod typed_tests;
