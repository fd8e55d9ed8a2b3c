//! Property tests of everything a caller's bytes reach first — the XML and JSON parsers, the
//! feed's reader, the aspect selector, the session token — with many generated cases in the
//! normal test run: no input makes them panic, and what is rendered reads back as it was.

#![allow(clippy::unwrap_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::aspect::{AspectSelector, Selection};
use crate::model::Collection;
use crate::session::{SessionIssuer, SessionVerifier, generate_key_pair};
use crate::store::StoredAspect;

const CASES: u32 = 1_000;

fn customers() -> Collection {
    Collection::new("customers", "customer")
        .document("account", &[])
        .document("person", &["type"])
        .qualified_documents("address", "addresses", &["home", "bill"])
}

/// Text XML can carry as it is: printable, no markup-significant surprises lost in transit.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9äöüßé€ .,:;'\"<>&/()-]{1,24}"
}

/// The fields of one document aspect (no `type`: person's is an XML attribute, tested apart).
fn fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z][a-z_]{0,8}", text(), 1..5).prop_map(|fields| {
        fields
            .into_iter()
            .filter(|(name, _)| name != "type")
            .map(|(name, value)| (name, Value::String(value)))
            .collect()
    })
}

/// A resource to create, in its JSON form: any subset of the aspects, qualified ones grouped.
fn resource() -> impl Strategy<Value = Value> {
    (
        prop::option::of(fields()),
        prop::option::of((fields(), prop::option::of("natural|legal"))),
        prop::option::of(fields()),
        prop::option::of(fields()),
    )
        .prop_filter("at least one aspect", |(a, p, h, b)| {
            a.is_some() || p.is_some() || h.is_some() || b.is_some()
        })
        .prop_map(|(account, person, home, bill)| {
            let mut resource = Map::new();
            if let Some(account) = account {
                resource.insert("account".into(), Value::Object(account));
            }
            if let Some((mut person, kind)) = person {
                if let Some(kind) = kind {
                    person.insert("type".into(), Value::String(kind));
                }
                resource.insert("person".into(), Value::Object(person));
            }
            let mut addresses = Map::new();
            if let Some(home) = home {
                addresses.insert("home".into(), Value::Object(home));
            }
            if let Some(bill) = bill {
                addresses.insert("bill".into(), Value::Object(bill));
            }
            if !addresses.is_empty() {
                resource.insert("addresses".into(), Value::Object(addresses));
            }
            Value::Object(resource)
        })
}

/// The aspects of one feed item: live ones with a body, tombstones without.
fn feed_aspects() -> impl Strategy<Value = Vec<StoredAspect>> {
    prop::sample::subsequence(
        vec!["account", "person", "address.home", "address.bill"],
        1..4,
    )
    .prop_flat_map(|names| {
        let count = names.len();
        (
            Just(names),
            prop::collection::vec((1_i64..1_000_000, prop::option::of(fields())), count),
        )
    })
    .prop_map(|(names, details)| {
        names
            .into_iter()
            .zip(details)
            .map(|(name, (version, body))| StoredAspect {
                name: name.to_owned(),
                version: Version::new(version).unwrap(),
                deleted: body.is_none(),
                body: body.map(|fields| Value::Object(fields).to_string()),
            })
            .collect()
    })
}

proptest! {
    // A failure prints its minimal input; nothing is written into the source tree.
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_bytes_make_a_parser_panic(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let collection = customers();
        let person = AspectName::parse("person").unwrap();
        for format in [Format::Xml, Format::Json] {
            let _ = parse_resource(format, &body, &collection, ParseLimits::default());
            let _ = parse_aspect(format, &body, &person, ParseLimits::default());
        }
        let _ = parse_feed(&body, &collection);
    }

    /// Near-valid XML (the shapes a client sends, with random names and text) reaches deeper
    /// into the parser than random bytes do.
    #[test]
    fn no_xml_like_text_makes_the_parser_panic(
        body in "<(customer|person|addresses)( type=\"[a-z]{0,6}\")?>(<(account|person|address|login|[a-z]{1,6})( type=\"[a-z]{0,6}\")?>([^<]{0,12}|<!\\[CDATA\\[[a-z<]{0,6}\\]\\]>|&[a-z#0-9]{0,6};)</[a-z]{1,8}>){0,5}</(customer|person|addresses)>"
    ) {
        let collection = customers();
        let _ = parse_resource(Format::Xml, body.as_bytes(), &collection, ParseLimits::default());
    }

    #[test]
    fn no_json_like_text_makes_the_parser_panic(
        body in "\\{(\"(account|person|addresses|id|version|[a-z]{1,5})\":(\\{(\"[a-z]{1,5}\":(\"[^\"\\\\]{0,8}\"|[0-9]{1,3}|null|\\[\\]|\\{\\}),?){0,4}\\}|\"x\"|1|null),?){0,5}\\}"
    ) {
        let collection = customers();
        let _ = parse_resource(Format::Json, body.as_bytes(), &collection, ParseLimits::default());
    }

    /// The XML and the JSON of one resource parse to the same thing: the two formats carry the
    /// same data (the facades and the store see no difference).
    #[test]
    fn xml_and_json_of_one_resource_parse_alike(resource in resource()) {
        let collection = customers();
        let limits = ParseLimits::default();
        let json = render_input(Format::Json, &collection, &resource);
        let xml = render_input(Format::Xml, &collection, &resource);
        let from_json = parse_resource(Format::Json, &json, &collection, limits).unwrap();
        let from_xml = parse_resource(Format::Xml, &xml, &collection, limits)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&xml)));
        prop_assert_eq!(from_xml, from_json);
    }

    /// A feed chunk reads back exactly as it was rendered: ids, versions, tombstones, bodies.
    #[test]
    fn a_feed_chunk_reads_back_as_rendered(
        items in prop::collection::vec((1_i64..1_000_000, any::<bool>(), feed_aspects()), 0..6),
        root in 1_i64..2_000_000,
        more in any::<bool>(),
    ) {
        let collection = customers();
        let ids: Vec<ResourceId> = items
            .iter()
            .enumerate()
            .map(|(index, (id, ..))| ResourceId::parse(&(id + index as i64 * 1_000_000).to_string()).unwrap())
            .collect();
        let views: Vec<ResourceView<'_>> = items
            .iter()
            .zip(&ids)
            .map(|((_, deleted, aspects), id)| ResourceView {
                id,
                version: aspects.iter().map(|aspect| aspect.version).max().unwrap(),
                deleted: *deleted,
                aspects: if *deleted { Vec::new() } else { aspects.iter().collect() },
            })
            .collect();
        let root = Version::new(root).unwrap();
        let body = render_feed(Format::Json, &collection, root, more, &views);
        let chunk = parse_feed(&body, &collection).unwrap();
        prop_assert_eq!(chunk.version, root);
        prop_assert_eq!(chunk.more, more);
        prop_assert_eq!(chunk.items.len(), views.len());
        for (item, view) in chunk.items.iter().zip(&views) {
            prop_assert_eq!(&item.id, view.id);
            prop_assert_eq!(item.version, view.version);
            prop_assert_eq!(item.deleted, view.deleted);
            let expected: Vec<(String, Version, Option<Value>)> = view
                .aspects
                .iter()
                .map(|aspect| {
                    let body = aspect.body.as_deref().map(|text| serde_json::from_str(text).unwrap());
                    (aspect.name.clone(), aspect.version, body)
                })
                .collect();
            let mut got: Vec<(String, Version, Option<Value>)> = item
                .aspects
                .iter()
                .map(|aspect| (aspect.name.to_string(), aspect.version, aspect.body.clone()))
                .collect();
            let mut expected = expected;
            got.sort_by(|a, b| a.0.cmp(&b.0));
            expected.sort_by(|a, b| a.0.cmp(&b.0));
            prop_assert_eq!(got, expected);
        }
    }

    /// Any text as a selector: refused with a reason, or read back from what it selects.
    #[test]
    fn a_selector_reads_back_from_what_it_selects(text in "(~(account|person|address|home|bill|address\\.home|address\\.bill|[a-z.]{0,6})){0,5}|[~a-z.]{0,12}|.{0,12}") {
        let declared = customers().aspect_names().to_vec();
        if let Ok(selector) = AspectSelector::parse(&text, 256)
            && let Ok(selection) = selector.resolve(&declared)
            && !selection.is_empty()
        {
            let again = AspectSelector::parse(&selection.to_string(), 256)
                .unwrap()
                .resolve(&declared)
                .unwrap();
            prop_assert_eq!(again, selection.clone());
            prop_assert!(selection.is_within(&Selection::all(&declared)));
        }
    }

    /// No text is a valid session token unless it was issued; none makes the verifier panic.
    #[test]
    fn no_text_passes_for_a_session_token(text in "(v2\\.k1\\.)?[A-Za-z0-9_.-]{0,120}|(v2\\.)?[A-Za-z0-9_-]{0,33}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,90}|.{0,40}") {
        prop_assert!(verifier().verify(&text).is_err());
    }

    /// One character changed anywhere in an issued token, and it is refused.
    #[test]
    fn a_token_changed_anywhere_is_refused(position in 0_usize..200, replacement in "[A-Za-z0-9_.-]") {
        let token = issuer().issue(&ResourceId::parse("42").unwrap(), "owronka");
        let position = position % token.len();
        let mut changed = token.clone();
        changed.replace_range(position..=position, &replacement);
        prop_assume!(changed != token);
        prop_assert!(verifier().verify(&changed).is_err(), "{}", changed);
    }
}

/// One key pair for every case (generating one per case would dominate the run).
fn keys() -> &'static (String, String) {
    static KEYS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| generate_key_pair().unwrap())
}

fn issuer() -> SessionIssuer {
    SessionIssuer::new("k1", &keys().0, 600).unwrap()
}

fn verifier() -> SessionVerifier {
    SessionVerifier::from_hex("k1", &keys().1).unwrap()
}

#[test]
fn the_generated_resources_are_realistic() {
    // The strategy above must produce what a client sends; one fixed case proves the shape.
    let collection = customers();
    let resource = json!({"person": {"type": "natural", "name": "Olga & <Co>"}});
    let xml = render_input(Format::Xml, &collection, &resource);
    let parsed = parse_resource(Format::Xml, &xml, &collection, ParseLimits::default()).unwrap();
    assert_eq!(parsed.aspects.len(), 1);
    assert_eq!(parsed.aspects[0].fields["name"], "Olga & <Co>");
}
