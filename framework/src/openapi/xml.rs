//! The XML side of the OpenAPI document: the request bodies a unit reads as XML, described
//! with OpenAPI's `xml` keyword so that a generated XML client (and schemathesis) writes what
//! the unit's parser takes — the resource's element named by the collection's item, an
//! aspect's by its family, a list wrapped in its field's element with items named by the
//! field's singular (`lines` → `line`), the attributes an aspect declares as attributes, and
//! qualified aspects as `<addresses><address type="home">…` rather than JSON's object keyed by
//! qualifier.
//!
//! Why a second schema per body instead of `xml` on the JSON one: the shapes differ (the
//! qualified container is an object in JSON and a list in XML), and OpenAPI reads no keyword
//! beside a `$ref`, so every XML schema is written out whole (no `$ref`), from the JSON
//! schemas the aspects' types give. It works on the document as JSON because utoipa's schema
//! types cannot hold `xml` on every kind of schema (a `oneOf` has none).

use serde_json::{Map, Value, json};

use crate::model::{Collection, ServiceArea};
use crate::shape::list_item_name;

/// How deep schemas are written out: deeper than any aspect nests (the parser takes 8 levels).
const MAX_DEPTH: usize = 12;

/// Gives every XML request body of `document` (the document of `sa` as JSON) a schema of its
/// own, written out and described for XML.
pub(crate) fn describe(document: &mut Value, sa: &ServiceArea) {
    let components = document["components"]["schemas"].clone();
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for collection in sa.collections() {
        let name = collection.name();
        let create = format!("/{name}");
        let example =
            json_example(paths, &create, "post").map(|example| xml_shaped(collection, example));
        if let Some(content) = xml_body(paths, &create, "post") {
            let schema = resource_input(&components, collection);
            set_schema(content, schema, example);
        }
        for aspect in collection.aspects() {
            let aspect_name = aspect.name.to_string();
            let path = format!("/{name}/{{id}}/{aspect_name}");
            let example = json_example(paths, &path, "put");
            let Some(content) = xml_body(paths, &path, "put") else {
                continue;
            };
            let written = format!(
                "{}_{}_input",
                collection.item(),
                aspect_name.replace('.', "_")
            );
            let mut schema =
                aspect_schema(&components, &written, aspect.xml_attributes, &aspect_name);
            name_element(&mut schema, aspect.name.family());
            set_schema(content, schema, example);
        }
    }
}

/// The `+xml` media types' contents of an operation's request body.
fn xml_body<'d>(
    paths: &'d mut Map<String, Value>,
    path: &str,
    method: &str,
) -> Option<Vec<&'d mut Value>> {
    let content = paths
        .get_mut(path)?
        .get_mut(method)?
        .get_mut("requestBody")?
        .get_mut("content")?
        .as_object_mut()?;
    let xml: Vec<&mut Value> = content
        .iter_mut()
        .filter(|(media, _)| media.ends_with("+xml"))
        .map(|(_, content)| content)
        .collect();
    (!xml.is_empty()).then_some(xml)
}

/// Sets the XML contents' schema and example. The example is an object in the XML side's
/// shape, not XML text: a client that writes bodies from the document (schemathesis, Swagger
/// UI) writes it through the `xml` descriptions, while a text example would be sent as the
/// text of one root element.
fn set_schema(contents: Vec<&mut Value>, schema: Value, example: Option<Value>) {
    for content in contents {
        content["schema"] = schema.clone();
        match &example {
            Some(example) => content["example"] = example.clone(),
            None => {
                if let Some(fields) = content.as_object_mut() {
                    fields.remove("example");
                }
            }
        }
    }
}

/// The example of an operation's JSON request body.
fn json_example(paths: &Map<String, Value>, path: &str, method: &str) -> Option<Value> {
    paths
        .get(path)?
        .get(method)?
        .get("requestBody")?
        .get("content")?
        .as_object()?
        .iter()
        .find(|(media, _)| media.ends_with("+json"))
        .and_then(|(_, content)| content.get("example"))
        .cloned()
}

/// A resource in JSON's shape turned into the XML side's: each qualified container's object
/// keyed by qualifier becomes a list whose items carry their qualifier as `type`.
fn xml_shaped(collection: &Collection, mut resource: Value) -> Value {
    let containers: Vec<&String> = collection
        .aspects()
        .iter()
        .filter_map(|aspect| aspect.container.as_ref())
        .collect();
    if let Some(members) = resource.as_object_mut() {
        for container in containers {
            let Some(Value::Object(qualified)) = members.get(container.as_str()).cloned() else {
                continue;
            };
            let items: Vec<Value> = qualified
                .into_iter()
                .map(|(qualifier, mut aspect)| {
                    aspect["type"] = json!(qualifier);
                    aspect
                })
                .collect();
            members.insert(container.clone(), Value::Array(items));
        }
    }
    resource
}

/// The resource to create: `<{item}>` holding an element per aspect, qualified aspects as
/// `<{container}><{family} type="{qualifier}">…</{family}></{container}>`.
fn resource_input(components: &Value, collection: &Collection) -> Value {
    let mut properties = Map::new();
    let mut containers: Vec<(String, String, Vec<String>, Value)> = Vec::new();
    for aspect in collection.aspects() {
        let aspect_name = aspect.name.to_string();
        let written = format!(
            "{}_{}_input",
            collection.item(),
            aspect_name.replace('.', "_")
        );
        let schema = aspect_schema(components, &written, aspect.xml_attributes, &aspect_name);
        match (&aspect.container, aspect.name.qualifier()) {
            (Some(container), Some(qualifier)) => {
                match containers.iter_mut().find(|(name, ..)| name == container) {
                    Some((_, _, qualifiers, _)) => qualifiers.push(qualifier.to_owned()),
                    None => containers.push((
                        container.clone(),
                        aspect.name.family().to_owned(),
                        vec![qualifier.to_owned()],
                        schema,
                    )),
                }
            }
            _ => {
                properties.insert(aspect_name, schema);
            }
        }
    }
    for (container, family, qualifiers, mut item) in containers {
        // One schema for the family: qualified aspects of one family share their type.
        if let Some(fields) = item.get_mut("properties").and_then(Value::as_object_mut) {
            fields.insert(
                "type".to_owned(),
                json!({"type": "string", "enum": qualifiers, "xml": {"attribute": true}}),
            );
        }
        if let Some(required) = item.get_mut("required").and_then(Value::as_array_mut) {
            required.push(json!("type"));
        } else {
            item["required"] = json!(["type"]);
        }
        name_element(&mut item, &family);
        let count = qualifiers.len();
        properties.insert(
            container.clone(),
            json!({
                "type": "array",
                "items": item,
                "maxItems": count,
                "xml": {"name": container, "wrapped": true},
            }),
        );
    }
    json!({
        "type": "object",
        "properties": properties,
        "minProperties": 1,
        "additionalProperties": false,
        "xml": {"name": collection.item()},
    })
}

/// An aspect's input schema written out for XML: its declared attributes as attributes, its
/// lists wrapped.
fn aspect_schema(components: &Value, component: &str, attributes: &[&str], aspect: &str) -> Value {
    let mut schema = written_out(components, &json!({"$ref": reference(component)}), 0);
    for_lists(&mut schema, None);
    if let Some(fields) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for attribute in attributes {
            if let Some(field) = fields.get_mut(*attribute) {
                field["xml"] = json!({"attribute": true});
            }
        }
    }
    if schema.get("type").is_none() && schema.get("properties").is_none() {
        tracing::debug!(
            aspect,
            "an aspect's input schema is not an object; XML left bare"
        );
    }
    schema
}

fn reference(component: &str) -> String {
    format!("#/components/schemas/{component}")
}

/// `schema` with every `$ref` replaced by what it names (to `MAX_DEPTH`); an `allOf`, `oneOf`
/// or `anyOf` with one object or array among its alternatives (`Option<T>`) also carries that
/// alternative's `properties` or `items` itself, since an XML writer reads them there.
fn written_out(components: &Value, schema: &Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return json!({});
    }
    match schema {
        Value::Object(fields) => {
            if let Some(target) = fields.get("$ref").and_then(Value::as_str) {
                let name = target.rsplit('/').next().unwrap_or_default();
                let resolved = components.get(name).cloned().unwrap_or(json!({}));
                return written_out(components, &resolved, depth + 1);
            }
            let mut out = Map::new();
            for (key, value) in fields {
                let value = match key.as_str() {
                    "properties" => Value::Object(
                        value
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(field, schema)| {
                                (field.clone(), written_out(components, schema, depth + 1))
                            })
                            .collect(),
                    ),
                    "items" | "additionalProperties" if value.is_object() => {
                        written_out(components, value, depth + 1)
                    }
                    "allOf" | "oneOf" | "anyOf" => Value::Array(
                        value
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|alternative| written_out(components, alternative, depth + 1))
                            .collect(),
                    ),
                    _ => value.clone(),
                };
                out.insert(key.clone(), value);
            }
            without_null(&mut out);
            lift_alternative(&mut out);
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// XML has no null: an optional field is left out (the parser reads an empty element of a
/// non-text field as null, but a text field's empty element is the empty string). So `null`
/// is taken out of a field's types and alternatives.
fn without_null(schema: &mut Map<String, Value>) {
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|kind| kind != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            schema.insert("type".to_owned(), only);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(alternatives)) = schema.get_mut(key) {
            alternatives.retain(|alternative| alternative.get("type") != Some(&json!("null")));
        }
    }
}

/// For `Option<T>`'s `oneOf: [null, T]`: the one alternative that is an object or a list lends
/// its `properties` or `items` to the whole, where an XML writer looks for them.
fn lift_alternative(schema: &mut Map<String, Value>) {
    let alternatives: Vec<Value> = ["allOf", "oneOf", "anyOf"]
        .iter()
        .filter_map(|key| schema.get(*key).and_then(Value::as_array))
        .flatten()
        .filter(|alternative| {
            alternative.get("properties").is_some() || alternative.get("items").is_some()
        })
        .cloned()
        .collect();
    if let [only] = alternatives.as_slice() {
        for key in ["properties", "items"] {
            if let Some(value) = only.get(key) {
                schema.entry(key).or_insert_with(|| value.clone());
            }
        }
    }
}

/// Every list under `schema` wrapped in its field's element, its items named by the field's
/// singular (`field` is the name of the field `schema` describes, if any).
fn for_lists(schema: &mut Value, field: Option<&str>) {
    let Some(fields) = schema.as_object_mut() else {
        return;
    };
    if fields.contains_key("items")
        && let Some(field) = field
    {
        let item = list_item_name(field).into_owned();
        fields.insert("xml".to_owned(), json!({"wrapped": true}));
        if let Some(items) = fields.get_mut("items") {
            name_element(items, &item);
            for_lists(items, Some(&item));
        }
    }
    if let Some(properties) = fields.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, property) in properties.iter_mut() {
            for_lists(property, Some(name));
        }
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(alternatives) = fields.get_mut(key).and_then(Value::as_array_mut) {
            for alternative in alternatives {
                for_lists(alternative, field);
            }
        }
    }
}

/// Names the element `schema` describes (keeping its other XML settings).
fn name_element(schema: &mut Value, name: &str) {
    if let Some(fields) = schema.as_object_mut() {
        let xml = fields.entry("xml").or_insert_with(|| json!({}));
        if let Some(xml) = xml.as_object_mut() {
            xml.insert("name".to_owned(), json!(name));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use serde::{Deserialize, Serialize};
    use utoipa::ToSchema;

    use super::*;
    use crate::aspect::{Aspect, Invalid};
    use crate::repr::{Format, ParseLimits, parse_resource};
    use crate::types::{Date, Money};

    #[derive(Serialize, Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    struct Line {
        price: Money,
        quantity: i64,
        on: Option<Date>,
    }

    #[derive(Serialize, Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    struct Order {
        lines: Vec<Line>,
        tags: Option<Vec<String>>,
        kind: String,
    }

    impl Aspect for Order {
        type Input = Order;
        const XML_ATTRIBUTES: &'static [&'static str] = &["kind"];

        fn accept(input: Order) -> Result<Self, Invalid> {
            Ok(input)
        }
    }

    fn service_area() -> ServiceArea {
        ServiceArea::new("orders").owns(
            Collection::new("orders", "order")
                .aspect::<Order>("order")
                .qualified::<Order>("part", "parts", &["a", "b"]),
        )
    }

    #[test]
    fn an_xml_body_written_as_the_document_describes_it_reads_as_its_json_twin() {
        let sa = service_area();
        let mut document = serde_json::to_value(crate::openapi::document(&sa)).unwrap();
        describe(&mut document, &sa);
        let content = &document["paths"]["/orders"]["post"]["requestBody"]["content"];
        let schema = &content["application/vnd.orders.v1+xml"]["schema"];
        assert!(!schema.to_string().contains("$ref"), "{schema}");
        let order = json!({
            "kind": "retail",
            "lines": [
                {"price": {"amount": "1.50", "currency": "EUR"}, "quantity": 2, "on": "2026-12-08"},
                {"price": {"amount": "3.00", "currency": "EUR"}, "quantity": 1}
            ],
            "tags": ["gift", "express"]
        });
        let part = json!({"kind": "spare", "lines": []});
        // The XML side's shape: the qualified aspects as a list with their qualifier.
        let mut as_xml = json!({"order": order, "parts": [part.clone()]});
        as_xml["parts"][0]["type"] = json!("b");
        let body = crate::http::testing::xml_as_described(&as_xml, schema);
        assert!(
            body.starts_with(r#"<order><order kind="retail"><lines><line><price>"#),
            "{body}"
        );
        assert!(
            body.contains(r#"<parts><part kind="spare" type="b"><lines></lines></part></parts>"#)
                || body.contains(
                    r#"<parts><part type="b" kind="spare"><lines></lines></part></parts>"#
                ),
            "{body}"
        );
        let collection = sa.collection("orders").unwrap();
        let from_xml = parse_resource(
            Format::Xml,
            body.as_bytes(),
            collection,
            ParseLimits::default(),
        )
        .unwrap_or_else(|error| panic!("{error:?}: {body}"));
        let json_body = json!({"order": order, "parts": {"b": part}}).to_string();
        let from_json = parse_resource(
            Format::Json,
            json_body.as_bytes(),
            collection,
            ParseLimits::default(),
        )
        .unwrap();
        let sorted = |mut aspects: Vec<crate::repr::WireAspect>| {
            aspects.sort_by_key(|aspect| aspect.name.to_string());
            aspects
        };
        assert_eq!(
            sorted(from_xml.aspects),
            sorted(from_json.aspects),
            "{body}"
        );

        // An aspect's own PUT: its element, named by its family.
        let put = &document["paths"]["/orders/{id}/part.a"]["put"]["requestBody"]["content"]["application/vnd.orders.v1+xml"]
            ["schema"];
        assert_eq!(put["xml"]["name"], "part", "{put}");
        assert_eq!(put["properties"]["lines"]["xml"]["wrapped"], true, "{put}");
        assert_eq!(put["properties"]["tags"]["xml"]["wrapped"], true, "{put}");
        assert_eq!(
            put["properties"]["tags"]["items"]["xml"]["name"], "tag",
            "{put}"
        );
    }
}
