//! JSON in the shape PROTOCOL.md shows: aspects as objects, qualified ones grouped by
//! qualifier under their container (`"addresses":{"home":{…}}`).

use std::io::Write as _;

use serde_json::{Map, Value, json};

use super::raw::{self, Canonical};
use super::strict_json::{DUPLICATE_PREFIX, StrictValue};
use super::{
    BadBody, FeedAspect, FeedChunk, FeedItem, ParseLimits, ResourceView, WireAspect, WireResource,
    declared, stored_fields,
};
use crate::aspect::AspectName;
use crate::codes;
use crate::model::Collection;
use crate::store::StoredAspect;
use crate::version::{ResourceId, Version};

pub(super) fn parse_resource(
    body: &[u8],
    collection: &Collection,
    limits: ParseLimits,
) -> Result<WireResource, BadBody> {
    let root = parse_object(body, limits)?;
    let mut resource = WireResource::default();
    for (key, value) in root {
        match key.as_str() {
            "id" => resource.id = Some(scalar_text(&value)),
            "version" => resource.version = Some(scalar_text(&value)),
            name => {
                let family = collection
                    .aspects()
                    .iter()
                    .find(|aspect| aspect.container.as_deref() == Some(name))
                    .map(|aspect| aspect.name.family().to_owned());
                if let Some(family) = family {
                    let Value::Object(qualified) = value else {
                        return Err(BadBody::new(
                            codes::INVALID_FIELD,
                            format!("\"{name}\" must be an object keyed by type"),
                        ));
                    };
                    for (qualifier, value) in qualified {
                        let aspect_name = declared(collection, &format!("{family}.{qualifier}"))?;
                        resource.aspects.push(aspect(value, aspect_name)?);
                    }
                } else {
                    let aspect_name = declared(collection, name)?;
                    if aspect_name.qualifier().is_some() {
                        return Err(BadBody::new(
                            codes::UNKNOWN_ASPECT,
                            format!("unknown member \"{name}\""),
                        ));
                    }
                    resource.aspects.push(aspect(value, aspect_name)?);
                }
            }
        }
    }
    Ok(resource)
}

pub(super) fn parse_aspect(
    body: &[u8],
    limits: ParseLimits,
    name: &AspectName,
) -> Result<WireAspect, BadBody> {
    let root = parse_object(body, limits)?;
    aspect(Value::Object(root), name.clone())
}

fn aspect(value: Value, name: AspectName) -> Result<WireAspect, BadBody> {
    let Value::Object(object) = value else {
        return Err(BadBody::new(
            codes::INVALID_FIELD,
            format!("\"{name}\" must be an object"),
        ));
    };
    let mut fields = Map::new();
    let mut version = None;
    for (key, value) in object {
        if key == "version" {
            version = Some(scalar_text(&value));
            continue;
        }
        // Any JSON value: the aspect's shape and serde type decide (`AspectDef::accept`).
        fields.insert(key, value);
    }
    Ok(WireAspect {
        name,
        version,
        fields,
    })
}

fn parse_object(body: &[u8], limits: ParseLimits) -> Result<Map<String, Value>, BadBody> {
    let value = serde_json::from_slice::<StrictValue>(body)
        .map(|strict| strict.0)
        .map_err(|error| {
            let message = error.to_string();
            if message.starts_with(DUPLICATE_PREFIX) {
                BadBody::new(codes::DUPLICATE_FIELD, message)
            } else {
                BadBody::new(codes::MALFORMED_JSON, format!("not valid JSON: {message}"))
            }
        })?;
    if depth(&value) > limits.max_depth {
        return Err(BadBody::new(
            codes::JSON_TOO_DEEP,
            "the document is nested too deeply",
        ));
    }
    if count(&value, limits.max_elements) > limits.max_elements {
        return Err(BadBody::new(
            codes::JSON_TOO_LARGE,
            format!(
                "the document holds more than {} values",
                limits.max_elements
            ),
        ));
    }
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(BadBody::new(
            codes::MALFORMED_JSON,
            "the body must be a JSON object",
        )),
    }
}

/// serde_json already stops at 128 levels; our documents are far flatter than that.
fn depth(value: &Value) -> usize {
    match value {
        Value::Object(object) => 1 + object.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Values in the document (as XML counts elements), counting stops once past `limit`.
fn count(value: &Value, limit: usize) -> usize {
    let mut seen = 0usize;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        seen += 1;
        if seen > limit {
            break;
        }
        match value {
            Value::Object(object) => pending.extend(object.values()),
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    seen
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

pub(super) fn render_resource(collection: &Collection, view: &ResourceView<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_resource(&mut out, collection, view);
    out
}

pub(super) fn render_feed(
    collection: &Collection,
    version: Version,
    more: bool,
    items: &[ResourceView<'_>],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + items.len() * 256);
    // As `{"version":…,"more":…,"items":[…]}` through a tree, member for member.
    let _infallible = write!(
        out,
        "{{\"version\":{},\"more\":{more},\"items\":[",
        version.get()
    );
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_resource(&mut out, collection, item);
    }
    out.extend_from_slice(b"]}");
    out
}

/// [`render_feed`] through trees only (see `repr::render_feed_through_tree`).
pub(super) fn render_feed_through_tree(
    collection: &Collection,
    version: Version,
    more: bool,
    items: &[ResourceView<'_>],
) -> Vec<u8> {
    let items: Vec<Value> = items
        .iter()
        .map(|item| resource_value(collection, item))
        .collect();
    serde_json::to_vec(&json!({"version": version.get(), "more": more, "items": items}))
        .unwrap_or_default()
}

/// One resource: its stored documents spliced in as they are where that prints what the tree
/// prints ([`raw::canonical`]), through the tree otherwise.
fn write_resource(out: &mut Vec<u8>, collection: &Collection, view: &ResourceView<'_>) {
    let start = out.len();
    if !splice_resource(out, collection, view) {
        out.truncate(start);
        let _infallible = serde_json::to_writer(&mut *out, &resource_value(collection, view));
    }
}

/// A member of the resource object in the order the tree holds it: an aspect, or a container
/// of qualified aspects (placed where its first aspect is declared).
struct Slot<'v> {
    key: String,
    grouped: bool,
    /// (qualifier, or "" for an ungrouped aspect; the aspect; its fields)
    aspects: Vec<(&'v str, &'v StoredAspect, Option<Canonical<'v>>)>,
}

/// Writes `view` as [`resource_value`] would print it; `false` (with partial output the
/// caller drops) when a document is not canonical or a member name collides, where the tree's
/// map would merge or replace members.
fn splice_resource(out: &mut Vec<u8>, collection: &Collection, view: &ResourceView<'_>) -> bool {
    let mut slots: Vec<Slot<'_>> = Vec::new();
    for (definition, aspect) in view.declared_aspects(collection) {
        let fields = match aspect.body.as_deref() {
            None => None,
            Some(body) => match raw::canonical(body) {
                Some(document) => Some(document),
                None => return false,
            },
        };
        let (key, qualifier) = match (&definition.container, definition.name.qualifier()) {
            (Some(container), Some(qualifier)) => (container.clone(), Some(qualifier)),
            _ => (definition.name.to_string(), None),
        };
        if key == "id" || key == "version" || (view.deleted && key == "deleted") {
            return false;
        }
        match slots.iter_mut().find(|slot| slot.key == key) {
            Some(slot) => {
                let Some(qualifier) = qualifier else {
                    return false;
                };
                if !slot.grouped || slot.aspects.iter().any(|(seen, _, _)| *seen == qualifier) {
                    return false;
                }
                slot.aspects.push((qualifier, aspect, fields));
            }
            None => slots.push(Slot {
                key,
                grouped: qualifier.is_some(),
                aspects: vec![(qualifier.unwrap_or(""), aspect, fields)],
            }),
        }
    }
    out.extend_from_slice(b"{\"id\":");
    let _infallible = serde_json::to_writer(&mut *out, view.id.as_str());
    let _infallible = write!(out, ",\"version\":{}", view.version.get());
    if view.deleted {
        out.extend_from_slice(b",\"deleted\":true");
    }
    for slot in &slots {
        out.push(b',');
        let _infallible = serde_json::to_writer(&mut *out, slot.key.as_str());
        out.push(b':');
        if slot.grouped {
            out.push(b'{');
            for (index, (qualifier, aspect, fields)) in slot.aspects.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                let _infallible = serde_json::to_writer(&mut *out, qualifier);
                out.push(b':');
                write_aspect(out, aspect, *fields);
            }
            out.push(b'}');
        } else if let Some((_, aspect, fields)) = slot.aspects.first() {
            write_aspect(out, aspect, *fields);
        }
    }
    out.push(b'}');
    true
}

/// `{"version":…,"deleted":true?,…fields}` with the fields' text as stored.
fn write_aspect(out: &mut Vec<u8>, aspect: &StoredAspect, fields: Option<Canonical<'_>>) {
    let _infallible = write!(out, "{{\"version\":{}", aspect.version.get());
    if aspect.deleted {
        out.extend_from_slice(b",\"deleted\":true");
    }
    let members = fields.map_or("", Canonical::members_text);
    if !members.is_empty() {
        out.push(b',');
        out.extend_from_slice(members.as_bytes());
    }
    out.push(b'}');
}

/// The resource as a tree: what [`splice_resource`] must print byte for byte, and what renders
/// any document it does not take.
#[cfg(test)]
pub(super) fn resource_value_for_tests(collection: &Collection, view: &ResourceView<'_>) -> Value {
    resource_value(collection, view)
}

fn resource_value(collection: &Collection, view: &ResourceView<'_>) -> Value {
    let mut root = Map::new();
    root.insert("id".into(), Value::String(view.id.as_str().to_owned()));
    root.insert("version".into(), json!(view.version.get()));
    if view.deleted {
        root.insert("deleted".into(), Value::Bool(true));
    }
    for (definition, aspect) in view.declared_aspects(collection) {
        let mut object = Map::new();
        object.insert("version".into(), json!(aspect.version.get()));
        if aspect.deleted {
            object.insert("deleted".into(), Value::Bool(true));
        }
        object.extend(stored_fields(aspect));
        match (&definition.container, definition.name.qualifier()) {
            (Some(container), Some(qualifier)) => {
                let group = root
                    .entry(container.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(group) = group {
                    group.insert(qualifier.to_owned(), Value::Object(object));
                }
            }
            _ => {
                root.insert(definition.name.to_string(), Value::Object(object));
            }
        }
    }
    Value::Object(root)
}

/// Reads a feed chunk in JSON, as a poller receives it.
pub(super) fn parse_feed(body: &[u8], collection: &Collection) -> Result<FeedChunk, BadBody> {
    let root: Value = serde_json::from_slice(body).map_err(|error| {
        BadBody::new(codes::MALFORMED_JSON, format!("not a feed chunk: {error}"))
    })?;
    let version = root
        .get("version")
        .and_then(Value::as_i64)
        .and_then(Version::new)
        .ok_or_else(|| BadBody::new(codes::MALFORMED_FEED, "the chunk has no version"))?;
    let more = root.get("more").and_then(Value::as_bool).unwrap_or(false);
    let empty = Vec::new();
    let items = root
        .get("items")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut parsed = Vec::with_capacity(items.len());
    for item in items {
        parsed.push(feed_item(item, collection)?);
    }
    Ok(FeedChunk {
        version,
        more,
        items: parsed,
    })
}

fn feed_item(item: &Value, collection: &Collection) -> Result<FeedItem, BadBody> {
    let bad = |what: &str| BadBody::new(codes::MALFORMED_FEED, format!("a feed item {what}"));
    let object = item.as_object().ok_or_else(|| bad("is not an object"))?;
    let id = object
        .get("id")
        .and_then(Value::as_str)
        .and_then(ResourceId::parse)
        .ok_or_else(|| bad("has no valid id"))?;
    let version = object
        .get("version")
        .and_then(Value::as_i64)
        .and_then(Version::new)
        .ok_or_else(|| bad("has no version"))?;
    let deleted = object
        .get("deleted")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut aspects = Vec::new();
    for definition in collection.aspects() {
        let value = match (&definition.container, definition.name.qualifier()) {
            (Some(container), Some(qualifier)) => {
                object.get(container).and_then(|group| group.get(qualifier))
            }
            _ => object.get(&definition.name.to_string()),
        };
        let Some(Value::Object(fields)) = value else {
            continue;
        };
        let aspect_version = fields
            .get("version")
            .and_then(Value::as_i64)
            .and_then(Version::new)
            .ok_or_else(|| bad("has an aspect without version"))?;
        let tombstone = fields
            .get("deleted")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let body = (!tombstone).then(|| {
            let document: Map<String, Value> = fields
                .iter()
                .filter(|(key, _)| key.as_str() != "version" && key.as_str() != "deleted")
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            Value::Object(document)
        });
        aspects.push(FeedAspect {
            name: definition.name.clone(),
            version: aspect_version,
            body,
        });
    }
    Ok(FeedItem {
        id,
        version,
        deleted,
        aspects,
    })
}

pub(super) fn render_error(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"error": {"code": code, "message": message}})).unwrap_or_default()
}
