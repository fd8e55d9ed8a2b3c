//! Text every representation can carry: bodies holding a character XML 1.0 cannot carry are
//! refused in both formats with one code, and whatever is stored (written before the rule, or
//! copied from an older owner) still renders as well-formed XML, U+FFFD in its place.
#![allow(clippy::unwrap_used)]

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::*;
use crate::aspect::{Aspect, Invalid};
use crate::http::testing::well_formed_xml;
use crate::store::ChangedResource;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Note {
    kind: String,
    text: String,
    #[serde(default)]
    tags: Vec<String>,
}

impl Aspect for Note {
    type Input = Note;
    const XML_ATTRIBUTES: &'static [&'static str] = &["kind"];

    fn accept(input: Note) -> Result<Self, Invalid> {
        Ok(input)
    }
}

fn collection() -> Collection {
    Collection::new("notes", "note").aspect::<Note>("note")
}

/// The characters XML 1.0 cannot carry, as a JSON string escape and as XML writes them.
const REFUSED: &[(&str, char)] = &[
    ("\\u0000", '\u{0}'),
    ("\\u0001", '\u{1}'),
    ("\\u0008", '\u{8}'),
    ("\\u000b", '\u{b}'),
    ("\\u001b", '\u{1b}'),
    ("\\u001f", '\u{1f}'),
    ("\\ufffe", '\u{FFFE}'),
    ("\\uffff", '\u{FFFF}'),
];

/// Parses `body` as a whole note resource and answers the code it was refused with.
fn check(format: Format, body: &str, expected: Result<(), &str>) {
    let parsed = parse_resource(
        format,
        body.as_bytes(),
        &collection(),
        ParseLimits::default(),
    );
    assert_eq!(
        parsed.as_ref().map(|_| ()).map_err(|error| error.code),
        expected,
        "{format:?} {body:?}: {parsed:?}"
    );
}

#[test]
fn json_bodies_with_unrepresentable_characters_are_refused_wherever_they_stand() {
    let refused = Err(codes::UNREPRESENTABLE_CHARACTER);
    for (escaped, _) in REFUSED {
        check(
            Format::Json,
            &format!(r#"{{"note":{{"kind":"k","text":"a{escaped}b"}}}}"#),
            refused,
        );
        check(
            Format::Json,
            &format!(r#"{{"note":{{"kind":"k","text":"t","tags":["x","{escaped}"]}}}}"#),
            refused,
        );
        check(
            Format::Json,
            &format!(r#"{{"note":{{"kind":"k","text":"t","a{escaped}":1}}}}"#),
            refused,
        );
    }
    // Tab, line feed, carriage return, DEL, C1 controls and every other plane are carried.
    check(
        Format::Json,
        r#"{"note":{"kind":"k","text":"a\tb\nc\rd\u007f\u0085\ud83d\ude00\ufffd"}}"#,
        Ok(()),
    );
}

#[test]
fn xml_bodies_with_unrepresentable_characters_are_refused_raw_or_as_references() {
    let refused = Err(codes::UNREPRESENTABLE_CHARACTER);
    for (_, character) in REFUSED {
        let code = u32::from(*character);
        // `&#0;` is no character at all: quick-xml refuses it as malformed.
        if code != 0 {
            check(
                Format::Xml,
                &format!("<note><note kind=\"k\"><text>a&#x{code:X};b</text></note></note>"),
                refused,
            );
            check(
                Format::Xml,
                &format!("<note><note kind=\"&#{code};\"><text>t</text></note></note>"),
                refused,
            );
        }
        check(
            Format::Xml,
            &format!("<note><note kind=\"k\"><text>a{character}b</text></note></note>"),
            refused,
        );
    }
    check(
        Format::Xml,
        "<note><note kind=\"k\"><text>a&#9;b&#xA;c&#x85;&#x1F600;</text></note></note>",
        Ok(()),
    );
}

#[test]
fn commands_and_single_aspects_obey_the_same_rule() {
    let name = AspectName::parse("cancel").unwrap();
    for (format, body) in [
        (Format::Json, r#"{"reason":"a\u0000"}"#),
        (Format::Xml, "<cancel><reason>&#x1b;</reason></cancel>"),
    ] {
        let refused = parse_input(
            format,
            body.as_bytes(),
            &name,
            &crate::shape::Shape::Any,
            ParseLimits::default(),
        )
        .unwrap_err();
        assert_eq!(refused.code, codes::UNREPRESENTABLE_CHARACTER, "{body}");
    }
    let note = AspectName::parse("note").unwrap();
    let refused = parse_aspect(
        Format::Json,
        "{\"text\":\"secret\u{FFFE}value\"}".as_bytes(),
        &note,
        ParseLimits::default(),
    )
    .unwrap_err();
    assert_eq!(refused.code, codes::UNREPRESENTABLE_CHARACTER);
    // The message names the field and the code point, never the value.
    assert!(refused.message.contains("'text'"), "{}", refused.message);
    assert!(refused.message.contains("U+FFFE"), "{}", refused.message);
    assert!(!refused.message.contains("secret"), "{}", refused.message);
}

#[test]
fn a_refused_xml_value_is_not_echoed() {
    #[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
    struct Count {
        count: i64,
    }
    impl Aspect for Count {
        type Input = Count;
        fn accept(input: Count) -> Result<Self, Invalid> {
            Ok(input)
        }
    }
    let counts = Collection::new("counts", "count").aspect::<Count>("count");
    let refused = parse_resource(
        Format::Xml,
        b"<count><count><count>secret</count></count></count>",
        &counts,
        ParseLimits::default(),
    )
    .unwrap_err();
    assert_eq!(refused.code, codes::INVALID_FIELD);
    assert!(!refused.message.contains("secret"), "{}", refused.message);
}

/// A note stored before the rule: unrepresentable characters in an attribute, a text and a
/// list item, once as compact text (walked as stored) and once spaced (through a tree).
fn old_notes() -> Vec<ChangedResource> {
    let compact = "{\"kind\":\"a\\u0000b\",\"text\":\"c\\u001bd\\ufffee\\uffff\",\"tags\":[\"\\u0001\",\"ok\"]}";
    let spaced =
        "{ \"kind\" : \"\\u0002\", \"text\" : \"\\u0000 & <x>\", \"tags\" : [ \"\\ufffe\" ] }";
    [compact, spaced]
        .iter()
        .enumerate()
        .map(|(index, body)| {
            let version = Version::new(index as i64 + 1).unwrap();
            ChangedResource {
                id: ResourceId::parse(&version.to_string()).unwrap(),
                version,
                deleted: false,
                aspects: vec![StoredAspect {
                    name: "note".into(),
                    version,
                    deleted: false,
                    body: Some((*body).to_owned()),
                }],
            }
        })
        .collect()
}

#[test]
fn stored_unrepresentable_characters_render_as_replacement_characters() {
    let collection = collection();
    let notes = old_notes();
    let views: Vec<ResourceView<'_>> = notes.iter().map(ResourceView::changed).collect();
    for view in &views {
        let rendered = render_resource(Format::Xml, &collection, view);
        well_formed_xml(&rendered).unwrap();
        let text = String::from_utf8(rendered).unwrap();
        assert!(text.contains('\u{FFFD}'), "{text}");
        // JSON carries every character as stored.
        let json: Value =
            serde_json::from_slice(&render_resource(Format::Json, &collection, view)).unwrap();
        assert!(
            json["note"]["text"]
                .as_str()
                .unwrap()
                .contains(['\u{0}', '\u{1b}'])
        );
    }
    let version = Version::new(2).unwrap();
    for rendered in [
        render_feed(Format::Xml, &collection, version, false, &views),
        render_feed_through_tree(Format::Xml, &collection, version, false, &views),
    ] {
        well_formed_xml(&rendered).unwrap();
    }
    let compact = String::from_utf8(render_resource(Format::Xml, &collection, &views[0])).unwrap();
    assert!(
        compact.contains("kind=\"a\u{FFFD}b\"") && compact.contains("c\u{FFFD}d\u{FFFD}e\u{FFFD}"),
        "{compact}"
    );
}

#[test]
fn error_bodies_are_well_formed_whatever_the_message_holds() {
    let rendered = render_error(Format::Xml, "bad-selector", "'\u{0}a\u{1b}\u{FFFF}' <&>");
    well_formed_xml(&rendered).unwrap();
    let text = String::from_utf8(rendered).unwrap();
    assert!(
        text.contains("\u{FFFD}a\u{FFFD}\u{FFFD}") && text.contains("&lt;&amp;&gt;"),
        "{text}"
    );
    let json: Value = serde_json::from_slice(&render_error(Format::Json, "c", "\u{0}")).unwrap();
    assert_eq!(json["error"]["message"], json!("\u{0}"));
}
