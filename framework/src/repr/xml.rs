//! XML in the shape of the design's example customer, with quick-xml. Input is bounded in
//! depth and element count, and documents with a DTD are refused outright (no entity
//! expansion, no external entities). Output is always well-formed: every text and attribute
//! value goes through [`representable`], so a character XML 1.0 cannot carry (stored before
//! the input rule refused it, or copied from an older owner) is written as U+FFFD.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer, XmlVersion};
use serde_json::{Map, Value};

use super::raw::{self, Canonical, Kind, Raw};
use super::{
    BadBody, ParseLimits, ResourceView, WireAspect, WireResource, declared, field_text,
    stored_fields,
};
use crate::aspect::AspectName;
use crate::codes;
use crate::model::{AspectDef, Collection};
use crate::shape::{Shape, join, list_item_name};
use crate::store::StoredAspect;
use crate::types::representable;
use crate::version::Version;

/// A parsed element: enough of XML for business documents (no mixed content, no namespaces).
#[derive(Debug, Default)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

pub(super) fn parse_resource(
    body: &[u8],
    collection: &Collection,
    limits: ParseLimits,
) -> Result<WireResource, BadBody> {
    let root = parse_tree(body, limits)?;
    if root.name != collection.item() {
        return Err(BadBody::new(
            codes::WRONG_ROOT,
            format!(
                "expected a <{}> element, found <{}>",
                collection.item(),
                root.name
            ),
        ));
    }
    if let Some((attribute, _)) = root.attributes.first() {
        return Err(BadBody::new(
            codes::UNEXPECTED_ATTRIBUTE,
            format!("<{}> takes no attribute '{attribute}'", root.name),
        ));
    }
    let mut resource = WireResource::default();
    for child in root.children {
        match child.name.as_str() {
            "id" => resource.id = Some(leaf_text(&child)?),
            "version" => resource.version = Some(leaf_text(&child)?),
            name => {
                if let Some(family) = container_family(collection, name) {
                    for item in child.children {
                        if item.name != family {
                            return Err(BadBody::new(
                                codes::UNKNOWN_ASPECT,
                                format!("<{name}> holds <{family}> elements, not <{}>", item.name),
                            ));
                        }
                        let qualifier = attribute(&item, "type").ok_or_else(|| {
                            BadBody::new(
                                codes::MISSING_QUALIFIER,
                                format!("<{family}> needs a type attribute, e.g. type=\"home\""),
                            )
                        })?;
                        let aspect_name = declared(collection, &format!("{family}.{qualifier}"))?;
                        let shape = shape_of(collection, &aspect_name);
                        resource
                            .aspects
                            .push(aspect(item, aspect_name, true, shape)?);
                    }
                } else {
                    let aspect_name = declared(collection, name)?;
                    if aspect_name.qualifier().is_some() {
                        return Err(BadBody::new(
                            codes::UNKNOWN_ASPECT,
                            format!("unknown element <{name}>"),
                        ));
                    }
                    let shape = shape_of(collection, &aspect_name);
                    resource
                        .aspects
                        .push(aspect(child, aspect_name, false, shape)?);
                }
            }
        }
    }
    Ok(resource)
}

/// The declared input shape of an aspect (`Any` for a copy's documents).
fn shape_of<'c>(collection: &'c Collection, name: &AspectName) -> &'c Shape {
    collection
        .find(name)
        .map(|definition| definition.shape())
        .unwrap_or(&Shape::Any)
}

/// `shape` is the aspect's input shape; with [`Shape::Any`] every leaf stays text.
pub(super) fn parse_aspect(
    body: &[u8],
    name: &AspectName,
    shape: &Shape,
    limits: ParseLimits,
) -> Result<WireAspect, BadBody> {
    let root = parse_tree(body, limits)?;
    if root.name != name.family() {
        return Err(BadBody::new(
            codes::WRONG_ROOT,
            format!(
                "expected a <{}> element, found <{}>",
                name.family(),
                root.name
            ),
        ));
    }
    let qualified = name.qualifier().is_some();
    if let (Some(expected), Some(given)) = (name.qualifier(), attribute(&root, "type"))
        && expected != given
    {
        return Err(BadBody::new(
            codes::QUALIFIER_MISMATCH,
            format!("the path names {name} but the body says type=\"{given}\""),
        ));
    }
    aspect(root, name.clone(), qualified, shape)
}

/// Turns an aspect element into fields: attributes (but a qualifier's `type`) and child
/// elements, each coerced to the JSON its shape expects; `<version>` is kept apart so the
/// caller can refuse a forged one.
fn aspect(
    element: Element,
    name: AspectName,
    qualified: bool,
    shape: &Shape,
) -> Result<WireAspect, BadBody> {
    let mut fields = Map::new();
    let mut version = None;
    for (key, value) in element.attributes {
        if qualified && key == "type" {
            continue;
        }
        let value = scalar(&value, &shape.field(&key), &key, &name)?;
        insert_field(&mut fields, &name, key, value)?;
    }
    for child in element.children {
        if child.name == "version" {
            version = Some(leaf_text(&child)?);
        } else {
            let value = value(&child, &shape.field(&child.name), &child.name, &name)?;
            insert_field(&mut fields, &name, child.name, value)?;
        }
    }
    Ok(WireAspect {
        name,
        version,
        fields,
    })
}

/// One field element as the JSON value its shape expects: text for strings, numbers and
/// booleans from their text, an array from the children of a list (each named by
/// [`list_item_name`]), an object from the children of a record. What does not fit is
/// `invalid-field` naming the field by its path (`lines[1].quantity`).
fn value(
    element: &Element,
    shape: &Shape,
    path: &str,
    aspect: &AspectName,
) -> Result<Value, BadBody> {
    let misfit = |what: String| {
        BadBody::new(
            codes::INVALID_FIELD,
            format!("field '{path}' of {aspect} {what}"),
        )
    };
    let no_text = || {
        if element.text.trim().is_empty() {
            Ok(())
        } else {
            Err(misfit(format!(
                "must hold elements, not text ({})",
                shape.expected()
            )))
        }
    };
    match shape {
        Shape::Array(item) => {
            no_text()?;
            let item_name = list_item_name(&element.name);
            let mut items = Vec::with_capacity(element.children.len());
            for (index, child) in element.children.iter().enumerate() {
                if child.name != item_name {
                    return Err(misfit(format!(
                        "holds <{item_name}> elements, not <{}>",
                        child.name
                    )));
                }
                items.push(value(child, item, &format!("{path}[{index}]"), aspect)?);
            }
            Ok(Value::Array(items))
        }
        Shape::Object { .. } => {
            no_text()?;
            record(element, shape, path, aspect)
        }
        Shape::Any if !element.children.is_empty() => {
            no_text()?;
            record(element, shape, path, aspect)
        }
        Shape::Either(alternatives) => {
            let empty = element.children.is_empty() && element.text.is_empty();
            let textual = alternatives.iter().any(|alternative| {
                matches!(
                    alternative,
                    Shape::Any | Shape::String | Shape::Array(_) | Shape::Object { .. }
                )
            });
            if empty && !textual && alternatives.contains(&Shape::Null) {
                return Ok(Value::Null);
            }
            let mut first = None;
            for alternative in alternatives.iter().filter(|shape| **shape != Shape::Null) {
                match value(element, alternative, path, aspect) {
                    Ok(value) => return Ok(value),
                    Err(error) => {
                        first.get_or_insert(error);
                    }
                }
            }
            Err(first.unwrap_or_else(|| misfit("must be empty".to_owned())))
        }
        Shape::Null if element.children.is_empty() && element.text.is_empty() => Ok(Value::Null),
        _ if !element.children.is_empty() => Err(misfit(format!(
            "must hold text, not elements ({})",
            shape.expected()
        ))),
        _ => scalar(&element.text, shape, path, aspect),
    }
}

/// The children of a record element as an object, each coerced to its field's shape.
fn record(
    element: &Element,
    shape: &Shape,
    path: &str,
    aspect: &AspectName,
) -> Result<Value, BadBody> {
    let mut members = Map::new();
    for child in &element.children {
        if members.contains_key(&child.name) {
            return Err(BadBody::new(
                codes::DUPLICATE_FIELD,
                format!("field '{path}' of {aspect} has <{}> twice", child.name),
            ));
        }
        let inner = join(path, &child.name);
        let member = value(child, &shape.field(&child.name), &inner, aspect)?;
        members.insert(child.name.clone(), member);
    }
    Ok(Value::Object(members))
}

/// Text (an attribute or a leaf element) as the scalar its shape expects. Numbers and
/// booleans may stand between white space; text is kept exactly.
fn scalar(text: &str, shape: &Shape, path: &str, aspect: &AspectName) -> Result<Value, BadBody> {
    let trimmed = text.trim();
    let parsed = match shape {
        Shape::Integer => trimmed
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| trimmed.parse::<u64>().map(Value::from))
            .ok(),
        Shape::Number => serde_json::from_str::<serde_json::Number>(trimmed)
            .ok()
            .map(Value::Number),
        Shape::Boolean => match trimmed {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        Shape::Null => text.is_empty().then_some(Value::Null),
        Shape::Either(alternatives) => alternatives
            .iter()
            .find_map(|alternative| scalar(text, alternative, path, aspect).ok()),
        Shape::Array(_) | Shape::Object { .. } => None,
        Shape::Any | Shape::String => Some(Value::String(text.to_owned())),
    };
    // The refused text is not echoed: it may be anything a client sent.
    parsed.ok_or_else(|| {
        BadBody::new(
            codes::INVALID_FIELD,
            format!("field '{path}' of {aspect} must be {}", shape.expected()),
        )
    })
}

fn insert_field(
    fields: &mut Map<String, Value>,
    aspect: &AspectName,
    key: String,
    value: Value,
) -> Result<(), BadBody> {
    if fields.contains_key(&key) {
        return Err(BadBody::new(
            codes::DUPLICATE_FIELD,
            format!("{aspect} has '{key}' twice"),
        ));
    }
    fields.insert(key, value);
    Ok(())
}

fn leaf_text(element: &Element) -> Result<String, BadBody> {
    if element.children.is_empty() {
        Ok(element.text.clone())
    } else {
        Err(BadBody::new(
            codes::INVALID_FIELD,
            format!("<{}> must hold text, not elements", element.name),
        ))
    }
}

fn attribute<'e>(element: &'e Element, key: &str) -> Option<&'e str> {
    element
        .attributes
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

/// The family whose qualified aspects are grouped in the element `name`, if any.
fn container_family<'c>(collection: &'c Collection, name: &str) -> Option<&'c str> {
    collection
        .aspects()
        .iter()
        .find(|aspect| aspect.container.as_deref() == Some(name))
        .map(|aspect| aspect.name.family())
}

/// Reads the document into a tree, enforcing the limits and refusing DTDs and entities.
fn parse_tree(body: &[u8], limits: ParseLimits) -> Result<Element, BadBody> {
    let text = std::str::from_utf8(body)
        .map_err(|_| BadBody::new(codes::MALFORMED_XML, "the body is not UTF-8"))?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let event = reader.read_event().map_err(|error| {
            BadBody::new(
                codes::MALFORMED_XML,
                format!("not well-formed XML: {error}"),
            )
        })?;
        match event {
            Event::Start(start) => open(&start, &mut stack, &root, &mut elements, limits)?,
            Event::Empty(start) => {
                // `<a/>` has no End event: open and close it at once.
                open(&start, &mut stack, &root, &mut elements, limits)?;
                close(&mut stack, &mut root);
            }
            Event::End(_) => close(&mut stack, &mut root),
            Event::Text(content) => append_text(&mut stack, &content.xml10_content())?,
            Event::CData(content) => {
                append_text(&mut stack, &content.xml10_content())?;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(character)) => character.to_string(),
                    Ok(None) => resolve_predefined_entity(&reference)
                        .ok_or_else(|| {
                            BadBody::new(
                                codes::XML_ENTITY_FORBIDDEN,
                                format!("entity &{}; is not one of XML's five", &*reference),
                            )
                        })?
                        .to_owned(),
                    Err(error) => {
                        return Err(BadBody::new(
                            codes::MALFORMED_XML,
                            format!("bad character reference: {error}"),
                        ));
                    }
                };
                append_text(&mut stack, &resolved)?;
            }
            Event::DocType(_) => {
                return Err(BadBody::new(
                    codes::XML_DTD_FORBIDDEN,
                    "documents with a DOCTYPE are not accepted",
                ));
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(BadBody::new(
            codes::MALFORMED_XML,
            "the document ends inside an element",
        ));
    }
    root.ok_or_else(|| BadBody::new(codes::MALFORMED_XML, "the body holds no element"))
}

fn open(
    start: &BytesStart<'_>,
    stack: &mut Vec<Element>,
    root: &Option<Element>,
    elements: &mut usize,
    limits: ParseLimits,
) -> Result<(), BadBody> {
    *elements += 1;
    if *elements > limits.max_elements {
        return Err(BadBody::new(codes::XML_TOO_LARGE, "too many elements"));
    }
    if root.is_some() {
        return Err(BadBody::new(
            codes::MALFORMED_XML,
            "more than one root element",
        ));
    }
    let name = start.name().as_ref().to_owned();
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|error| {
            BadBody::new(codes::MALFORMED_XML, format!("bad attribute: {error}"))
        })?;
        let key = attribute.key.as_ref().to_owned();
        let value = attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|error| {
                BadBody::new(
                    codes::XML_ENTITY_FORBIDDEN,
                    format!("bad attribute value: {error}"),
                )
            })?
            .into_owned();
        if attributes.iter().any(|(existing, _)| *existing == key) {
            return Err(BadBody::new(
                codes::MALFORMED_XML,
                format!("attribute '{key}' given twice"),
            ));
        }
        attributes.push((key, value));
    }
    stack.push(Element {
        name,
        attributes,
        ..Element::default()
    });
    if stack.len() > limits.max_depth {
        return Err(BadBody::new(
            codes::XML_TOO_DEEP,
            "the document is nested too deeply",
        ));
    }
    Ok(())
}

/// Closes the innermost element (quick-xml has already checked that the names match).
fn close(stack: &mut Vec<Element>, root: &mut Option<Element>) {
    if let Some(element) = stack.pop() {
        match stack.last_mut() {
            Some(parent) => parent.children.push(element),
            None => *root = Some(element),
        }
    }
}

/// Text belongs to the innermost element; outside the root only white space may stand.
fn append_text(stack: &mut [Element], text: &str) -> Result<(), BadBody> {
    match stack.last_mut() {
        Some(element) => {
            if !element.children.is_empty() && text.trim().is_empty() {
                return Ok(());
            }
            element.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(BadBody::new(
            codes::MALFORMED_XML,
            "text outside the root element",
        )),
    }
}

pub(super) fn render_resource(collection: &Collection, view: &ResourceView<'_>) -> Vec<u8> {
    let mut writer = document();
    write_resource(&mut writer, collection, view, Source::Stored);
    writer.into_inner()
}

/// Where a stored aspect's fields are read from while rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// Walked as stored when [`raw::canonical`], through a tree otherwise.
    Stored,
    /// Always through a tree (the rendering before stored text was walked; kept for the
    /// benchmark's side-by-side figure).
    Tree,
}

pub(super) fn render_feed(
    collection: &Collection,
    version: Version,
    more: bool,
    items: &[ResourceView<'_>],
    source: Source,
) -> Vec<u8> {
    let mut writer = document();
    let mut root = BytesStart::new(collection.name());
    root.push_attribute(("version", version.to_string().as_str()));
    root.push_attribute(("more", if more { "true" } else { "false" }));
    write(&mut writer, Event::Start(root.borrow()));
    for item in items {
        write_resource(&mut writer, collection, item, source);
    }
    write(&mut writer, Event::End(BytesEnd::new(collection.name())));
    writer.into_inner()
}

pub(super) fn render_input(collection: &Collection, resource: &Value) -> Vec<u8> {
    let mut writer = document();
    write(
        &mut writer,
        Event::Start(BytesStart::new(collection.item())),
    );
    let mut open_container: Option<&str> = None;
    for definition in collection.aspects() {
        let fields = match (&definition.container, definition.name.qualifier()) {
            (Some(container), Some(qualifier)) => resource
                .get(container)
                .and_then(|group| group.get(qualifier)),
            _ => resource.get(definition.name.to_string()),
        };
        let Some(Value::Object(fields)) = fields else {
            continue;
        };
        let container = definition.container.as_deref();
        if open_container != container {
            if let Some(previous) = open_container {
                write(&mut writer, Event::End(BytesEnd::new(previous)));
            }
            if let Some(next) = container {
                write(&mut writer, Event::Start(BytesStart::new(next)));
            }
            open_container = container;
        }
        write_aspect(&mut writer, definition, None, Fields::Tree(fields));
    }
    if let Some(previous) = open_container {
        write(&mut writer, Event::End(BytesEnd::new(previous)));
    }
    write(&mut writer, Event::End(BytesEnd::new(collection.item())));
    writer.into_inner()
}

fn write_resource(
    writer: &mut Writer<Vec<u8>>,
    collection: &Collection,
    view: &ResourceView<'_>,
    source: Source,
) {
    let mut root = BytesStart::new(collection.item());
    if view.deleted {
        root.push_attribute(("deleted", "true"));
    }
    write(writer, Event::Start(root.borrow()));
    text_element(writer, "version", &view.version.to_string());
    text_element(writer, "id", view.id.as_str());
    let mut open_container: Option<&str> = None;
    for (definition, aspect) in view.declared_aspects(collection) {
        let container = definition.container.as_deref();
        if open_container != container {
            if let Some(previous) = open_container {
                write(writer, Event::End(BytesEnd::new(previous)));
            }
            if let Some(next) = container {
                write(writer, Event::Start(BytesStart::new(next)));
            }
            open_container = container;
        }
        let walked = match source {
            Source::Stored => aspect.body.as_deref().and_then(raw::canonical),
            Source::Tree => None,
        };
        match walked {
            Some(document) => write_aspect(writer, definition, Some(aspect), Fields::Raw(document)),
            None => write_aspect(
                writer,
                definition,
                Some(aspect),
                Fields::Tree(&stored_fields(aspect)),
            ),
        }
    }
    if let Some(previous) = open_container {
        write(writer, Event::End(BytesEnd::new(previous)));
    }
    write(writer, Event::End(BytesEnd::new(collection.item())));
}

/// An aspect's fields: a tree, or a stored document walked as its text.
#[derive(Clone, Copy)]
enum Fields<'a> {
    Tree(&'a Map<String, Value>),
    Raw(Canonical<'a>),
}

/// One aspect's element: qualifier and scalar XML attributes on it, then (for a stored aspect)
/// its version and deletion mark, then the fields.
fn write_aspect(
    writer: &mut Writer<Vec<u8>>,
    definition: &AspectDef,
    stored: Option<&StoredAspect>,
    fields: Fields<'_>,
) {
    let mut element = BytesStart::new(definition.name.family());
    if let Some(qualifier) = definition.name.qualifier() {
        element.push_attribute(("type", qualifier));
    }
    if stored.is_some_and(|aspect| aspect.deleted) {
        element.push_attribute(("deleted", "true"));
    }
    let is_attribute = |key: &str, value: &Value| {
        definition.xml_attributes.contains(&key)
            && !matches!(value, Value::Object(_) | Value::Array(_) | Value::Null)
    };
    let is_raw_attribute = |key: &str, value: Raw<'_>| {
        definition.xml_attributes.contains(&key)
            && !matches!(value.kind(), Kind::Object | Kind::Array | Kind::Null)
    };
    match fields {
        Fields::Tree(fields) => {
            for (key, value) in fields {
                if is_attribute(key, value) {
                    let text = field_text(value);
                    element.push_attribute((key.as_str(), representable(&text).as_ref()));
                }
            }
        }
        Fields::Raw(document) if !definition.xml_attributes.is_empty() => {
            for (key, value) in document.members() {
                if is_raw_attribute(&key, value) {
                    let text = value.text();
                    element.push_attribute((key.as_ref(), representable(&text).as_ref()));
                }
            }
        }
        Fields::Raw(_) => {}
    }
    write(writer, Event::Start(element.borrow()));
    if let Some(aspect) = stored {
        text_element(writer, "version", &aspect.version.to_string());
    }
    match fields {
        Fields::Tree(fields) => {
            for (key, value) in fields {
                if !is_attribute(key, value) {
                    write_field(writer, key, value);
                }
            }
        }
        Fields::Raw(document) => {
            for (key, value) in document.members() {
                if !is_raw_attribute(&key, value) {
                    write_raw_field(writer, &key, value);
                }
            }
        }
    }
    write(writer, Event::End(BytesEnd::new(definition.name.family())));
}

/// [`write_field`] for a value walked in stored text: the same elements, read without a tree.
fn write_raw_field(writer: &mut Writer<Vec<u8>>, name: &str, value: Raw<'_>) {
    match value.kind() {
        Kind::Null => {}
        Kind::Object => {
            write(writer, Event::Start(BytesStart::new(name)));
            for (key, member) in value.members() {
                write_raw_field(writer, &key, member);
            }
            write(writer, Event::End(BytesEnd::new(name)));
        }
        Kind::Array => {
            write(writer, Event::Start(BytesStart::new(name)));
            let item_name = list_item_name(name);
            for item in value.items() {
                if item.kind() == Kind::Null {
                    write(writer, Event::Start(BytesStart::new(item_name.as_ref())));
                    write(writer, Event::End(BytesEnd::new(item_name.as_ref())));
                } else {
                    write_raw_field(writer, &item_name, item);
                }
            }
            write(writer, Event::End(BytesEnd::new(name)));
        }
        Kind::String | Kind::Scalar => text_element(writer, name, &value.text()),
    }
}

/// One stored field as XML, the inverse of [`value`]: text for scalars (numbers and booleans
/// as their JSON text), nested elements for a record, a container of [`list_item_name`]
/// elements for a list (an empty list is an empty element). A `null` field is left out (it
/// reads back as absent); a `null` list item is an empty element, to keep the positions.
fn write_field(writer: &mut Writer<Vec<u8>>, name: &str, value: &Value) {
    match value {
        Value::Null => {}
        Value::Object(members) => {
            write(writer, Event::Start(BytesStart::new(name)));
            for (key, member) in members {
                write_field(writer, key, member);
            }
            write(writer, Event::End(BytesEnd::new(name)));
        }
        Value::Array(items) => {
            write(writer, Event::Start(BytesStart::new(name)));
            let item_name = list_item_name(name);
            for item in items {
                if item.is_null() {
                    write(writer, Event::Start(BytesStart::new(item_name.as_ref())));
                    write(writer, Event::End(BytesEnd::new(item_name.as_ref())));
                } else {
                    write_field(writer, &item_name, item);
                }
            }
            write(writer, Event::End(BytesEnd::new(name)));
        }
        scalar => text_element(writer, name, &field_text(scalar)),
    }
}

pub(super) fn render_error(code: &str, message: &str) -> Vec<u8> {
    let mut writer = document();
    write(&mut writer, Event::Start(BytesStart::new("error")));
    text_element(&mut writer, "code", code);
    text_element(&mut writer, "message", message);
    write(&mut writer, Event::End(BytesEnd::new("error")));
    writer.into_inner()
}

fn document() -> Writer<Vec<u8>> {
    let mut writer = Writer::new(Vec::with_capacity(1024));
    write(
        &mut writer,
        Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)),
    );
    writer
}

/// `<name>text</name>`, the text escaped and made [`representable`]: every text the writer
/// emits (fields, versions, ids, error codes and messages) passes here.
fn text_element(writer: &mut Writer<Vec<u8>>, name: &str, text: &str) {
    write(writer, Event::Start(BytesStart::new(name)));
    write(writer, Event::Text(BytesText::new(&representable(text))));
    write(writer, Event::End(BytesEnd::new(name)));
}

/// Writing into a `Vec` cannot fail; the `io::Result` is an artefact of the generic writer.
fn write(writer: &mut Writer<Vec<u8>>, event: Event<'_>) {
    let _infallible = writer.write_event(event);
}
