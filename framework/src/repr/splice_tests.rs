//! Stored documents taken as their text render exactly the bytes the tree rendered, in both
//! formats, whatever the stored text looks like.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::store::ChangedResource;

/// A collection whose qualified aspects are not declared next to each other, with XML
/// attributes on one aspect.
fn collection() -> Collection {
    Collection::new("customers", "customer")
        .qualified_documents("address", "addresses", &["home"])
        .document("person", &["kind", "rank"])
        .qualified_documents("address", "addresses", &["bill"])
        .document("note", &[])
}

const BODIES: &[&str] = &[
    r#"{"firstname":"Ana","lastname":"O'Neil <&>","kind":"vip","rank":3,"tags":["a",null,"b"]}"#,
    r#"{"street":"Main 1","zip":8000,"geo":{"lat":"47.3","lon":"8.5"},"lines":[{"q":1},{"q":-2}]}"#,
    r#"{}"#,
    r#"{"kind":null,"rank":{"x":1},"esc":"a\"b\\c\nd\u0001","empty":[],"deep":[[1,[2]],[]]}"#,
    r#"{"ratio":0.1,"big":1e400,"neg":-0,"huge":123456789012345678901234567890}"#,
    r#"{ "spaced" : 1 , "x" : [ 1 , 2 ] }"#,
    r#"{"dup":1,"other":2,"dup":3}"#,
    r#"{"version":99,"deleted":false,"name":"forged"}"#,
    r#"{"slash":"a\/b","accent":"\u00e9","upper":"\u001F"}"#,
    r#"[1,2]"#,
    r#"null"#,
    r#"not json"#,
    r#"{"kind":true,"rank":-17,"emoji":"🚀"}"#,
];

fn aspect(name: &str, version: i64, body: Option<&str>) -> StoredAspect {
    StoredAspect {
        name: name.to_owned(),
        version: Version::new(version).unwrap(),
        deleted: body.is_none(),
        body: body.map(str::to_owned),
    }
}

fn resources() -> Vec<ChangedResource> {
    let names = ["person", "address.home", "address.bill", "note"];
    let mut items = Vec::new();
    let mut version = 1;
    for (index, body) in BODIES.iter().enumerate() {
        for (offset, name) in names.iter().enumerate() {
            let other = BODIES[(index + offset) % BODIES.len()];
            let mut aspects = vec![aspect(name, version, Some(body))];
            aspects.push(aspect(names[(offset + 1) % 4], version, Some(other)));
            if offset == 2 {
                aspects.push(aspect(names[(offset + 2) % 4], version, None));
            }
            items.push(ChangedResource {
                id: ResourceId::parse(&version.to_string()).unwrap(),
                version: Version::new(version).unwrap(),
                deleted: false,
                aspects,
            });
            version += 1;
        }
    }
    items.push(ChangedResource {
        id: ResourceId::parse(&version.to_string()).unwrap(),
        version: Version::new(version).unwrap(),
        deleted: true,
        aspects: vec![aspect("person", version, None)],
    });
    items
}

#[test]
fn feed_chunks_are_the_bytes_the_tree_rendered() {
    let collection = collection();
    let items = resources();
    let views: Vec<ResourceView<'_>> = items.iter().map(ResourceView::changed).collect();
    for format in [Format::Json, Format::Xml] {
        for more in [false, true] {
            let version = Version::new(77).unwrap();
            let spliced = render_feed(format, &collection, version, more, &views);
            let tree = render_feed_through_tree(format, &collection, version, more, &views);
            assert_eq!(
                String::from_utf8(spliced).unwrap(),
                String::from_utf8(tree).unwrap(),
                "{format:?}"
            );
        }
        let empty = render_feed(format, &collection, Version::ZERO, false, &[]);
        let tree = render_feed_through_tree(format, &collection, Version::ZERO, false, &[]);
        assert_eq!(empty, tree);
    }
}

#[test]
fn single_resources_are_the_bytes_the_tree_rendered() {
    let collection = collection();
    for item in resources() {
        let view = ResourceView::changed(&item);
        let spliced = render_resource(Format::Json, &collection, &view);
        let tree = serde_json::to_vec(&json::resource_value_for_tests(&collection, &view)).unwrap();
        assert_eq!(
            String::from_utf8(spliced).unwrap(),
            String::from_utf8(tree).unwrap()
        );
        // XML: a one-item chunk through the tree holds the same element.
        let xml = String::from_utf8(render_resource(Format::Xml, &collection, &view)).unwrap();
        let chunk = String::from_utf8(render_feed_through_tree(
            Format::Xml,
            &collection,
            Version::ZERO,
            false,
            std::slice::from_ref(&view),
        ))
        .unwrap();
        let element = xml.split_once("?>").unwrap().1;
        assert!(chunk.contains(element), "{element}\nnot in\n{chunk}");
    }
}

#[test]
fn the_spliced_json_is_valid_and_carries_the_stored_fields() {
    let collection = collection();
    let items = resources();
    let views: Vec<ResourceView<'_>> = items.iter().map(ResourceView::changed).collect();
    let chunk = render_feed(Format::Json, &collection, Version::ZERO, false, &views);
    let parsed: serde_json::Value = serde_json::from_slice(&chunk).unwrap();
    assert_eq!(
        parsed["items"][0]["person"]["lastname"],
        serde_json::json!("O'Neil <&>")
    );
    assert_eq!(
        parsed["items"][0]["person"]["version"],
        serde_json::json!(1)
    );
}
