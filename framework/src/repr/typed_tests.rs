//! Typed fields through both formats: what XML parses is what JSON carries, and what either
//! renders parses back to the same fields.
#![allow(clippy::unwrap_used)]

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::*;
use crate::aspect::{Aspect, Invalid};
use crate::types::{Date, Decimal, Money, Timestamp};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Road,
    AirFreight,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Parcel {
    label: String,
    grams: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Shipment {
    number: i64,
    weight: Decimal,
    cost: Money,
    fragile: bool,
    on: Date,
    at: Timestamp,
    mode: Mode,
    ratio: f64,
    parcels: Vec<Parcel>,
    grid: Vec<Vec<u32>>,
    memo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    discount: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<i64>,
}

impl Aspect for Shipment {
    type Input = Shipment;
    const XML_ATTRIBUTES: &'static [&'static str] = &["mode", "number"];

    fn accept(input: Shipment) -> Result<Self, Invalid> {
        Ok(input)
    }
}

fn collection() -> Collection {
    Collection::new("shipments", "shipment").aspect::<Shipment>("shipment")
}

fn example() -> Value {
    json!({
        "number": 7,
        "weight": "12.500",
        "cost": {"amount": "-3.10", "currency": "CHF"},
        "fragile": true,
        "on": "2024-02-29",
        "at": "2026-01-02T03:04:05Z",
        "mode": "air_freight",
        "ratio": 0.25,
        "parcels": [{"label": "a & <b>", "grams": 0}, {"label": "", "grams": -5}],
        "grid": [[1, 2], [], [3]],
        "memo": null,
        "priority": 3
    })
}

/// Parses a whole resource and returns the fields of its one aspect.
fn parse(format: Format, body: &[u8]) -> Result<Map<String, Value>, BadBody> {
    let resource = parse_resource(format, body, &collection(), ParseLimits::default())?;
    Ok(resource.aspects.into_iter().next().unwrap().fields)
}

fn accept(fields: Map<String, Value>) -> Result<Value, Invalid> {
    let collection = collection();
    collection.aspects()[0]
        .accept(fields)
        .map(|accepted| accepted.body)
}

fn render(format: Format, body: &Value) -> Vec<u8> {
    let id = ResourceId::parse("1").unwrap();
    let stored = StoredAspect {
        name: "shipment".into(),
        version: Version::new(1).unwrap(),
        deleted: false,
        body: Some(body.to_string()),
    };
    let view = ResourceView {
        id: &id,
        version: Version::new(1).unwrap(),
        deleted: false,
        aspects: vec![&stored],
    };
    render_resource(format, &collection(), &view)
}

#[test]
fn every_type_round_trips_through_both_formats() {
    let input = json!({"shipment": example()});
    let xml = render_input(Format::Xml, &collection(), &input);
    let text = String::from_utf8(xml.clone()).unwrap();
    assert!(
        text.contains(r#"<shipment number="7" mode="air_freight">"#),
        "{text}"
    );
    assert!(
        text.contains("<grid><item><item>1</item><item>2</item></item><item></item>"),
        "{text}"
    );
    assert!(
        text.contains("<parcels><parcel><label>a &amp; &lt;b&gt;</label>"),
        "{text}"
    );
    assert!(!text.contains("<memo"), "null fields are left out: {text}");
    let from_xml = parse(Format::Xml, &xml).unwrap();
    let stored = accept(from_xml).unwrap();
    let mut expected = example();
    expected["memo"] = Value::Null;
    assert_eq!(stored, expected);
    let from_json = accept(parse(Format::Json, input.to_string().as_bytes()).unwrap()).unwrap();
    assert_eq!(from_json, stored);

    for format in [Format::Xml, Format::Json] {
        let rendered = render(format, &stored);
        let again = accept(parse(format, &rendered).unwrap()).unwrap();
        assert_eq!(again, stored, "{format:?}");
    }
}

#[test]
fn xml_that_does_not_fit_the_shape_is_refused_naming_the_field() {
    let xml = String::from_utf8(render_input(
        Format::Xml,
        &collection(),
        &json!({"shipment": example()}),
    ))
    .unwrap();
    let refused = |from: &str, to: &str| {
        assert!(xml.contains(from), "{from}");
        parse(Format::Xml, xml.replacen(from, to, 1).as_bytes()).unwrap_err()
    };
    let error = refused("<grams>0</grams>", "<grams>zero</grams>");
    assert_eq!(error.code, codes::INVALID_FIELD);
    assert!(
        error.message.contains("parcels[0].grams"),
        "{}",
        error.message
    );
    let error = refused(r#"number="7""#, r#"number="7.5""#);
    assert_eq!(error.code, codes::INVALID_FIELD);
    let boxed = xml
        .replacen("<parcel>", "<box>", 1)
        .replacen("</parcel>", "</box>", 1);
    let error = parse(Format::Xml, boxed.as_bytes()).unwrap_err();
    assert_eq!(error.code, codes::INVALID_FIELD);
    assert!(error.message.contains("<parcel>"), "{}", error.message);
    let error = refused("<fragile>true</fragile>", "<fragile>1</fragile>");
    assert_eq!(error.code, codes::INVALID_FIELD);
    let error = refused("<ratio>0.25</ratio>", "<ratio>NaN</ratio>");
    assert!(error.message.contains("ratio"), "{}", error.message);
    let error = refused("<label></label>", "<label><b>x</b></label>");
    assert_eq!(error.code, codes::INVALID_FIELD);
    let error = refused("<grams>0</grams>", "<grams>0</grams><grams>1</grams>");
    assert_eq!(error.code, codes::DUPLICATE_FIELD);
    // Decimals stay text in XML; serde refuses a bad one, naming the field.
    let fields = parse(Format::Xml, xml.replacen("12.500", "1e3", 1).as_bytes()).unwrap();
    let invalid = accept(fields).unwrap_err();
    assert_eq!(invalid.code, codes::INVALID_ASPECT);
    assert!(invalid.message.starts_with("weight"), "{}", invalid.message);
}

#[test]
fn json_of_the_wrong_type_is_an_invalid_field() {
    for (field, value, path) in [
        ("weight", json!(12.5), "weight"),
        ("number", json!("7"), "number"),
        ("number", json!(7.5), "number"),
        (
            "parcels",
            json!([{"label": "x", "grams": "1"}]),
            "parcels[0].grams",
        ),
        (
            "cost",
            json!({"amount": 1, "currency": "EUR"}),
            "cost.amount",
        ),
        ("priority", json!(true), "priority"),
    ] {
        let mut shipment = example();
        shipment[field] = value;
        let body = json!({"shipment": shipment}).to_string();
        let invalid = accept(parse(Format::Json, body.as_bytes()).unwrap()).unwrap_err();
        assert_eq!(invalid.code, codes::INVALID_FIELD, "{field}");
        assert!(
            invalid.message.contains(&format!("'{path}'")),
            "{}",
            invalid.message
        );
    }
}

#[test]
fn json_is_bounded_in_values_too() {
    let limits = ParseLimits {
        max_depth: 8,
        max_elements: 10,
    };
    let body = json!({"shipment": {"grid": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}}).to_string();
    let error = parse_resource(Format::Json, body.as_bytes(), &collection(), limits).unwrap_err();
    assert_eq!(error.code, codes::JSON_TOO_LARGE);
}

#[test]
fn list_items_are_named_by_one_rule() {
    use crate::shape::list_item_name;
    for (field, item) in [
        ("lines", "line"),
        ("entries", "entry"),
        ("addresses", "address"),
        ("boxes", "box"),
        ("batches", "batch"),
        ("cases", "case"),
        ("class", "item"),
        ("history", "item"),
        ("item", "item"),
        ("s", "item"),
    ] {
        assert_eq!(list_item_name(field), item, "{field}");
    }
}
