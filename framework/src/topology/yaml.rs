//! YAML for generated manifests ([`super::Topology::kubernetes_manifests`]), written from
//! `serde_json` values: block style for maps and lists, every other string as a JSON string
//! (a JSON string is a valid YAML double-quoted scalar, so nothing is ever misread as a number,
//! a boolean or a comment), and multi-line text — a file in a ConfigMap — as a literal block
//! so that it stays readable. Members keep the order they were built in (the workspace turns on
//! `serde_json`'s `preserve_order`): `apiVersion`, `kind`, `metadata`, `spec`. The tests feed the output to a real YAML reader
//! (`kubernetes-validate`).

use serde_json::{Map, Value};

/// One YAML document for `value`, ending with a line break.
pub(super) fn document(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => sequence(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

fn mapping(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key_text(key));
        out.push(':');
        member(out, value, indent);
    }
}

fn sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The item's first member on the dash's line, the others below it.
                let mut nested = String::new();
                mapping(&mut nested, map, indent + 2);
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                out.push_str(&nested[indent + 2..]);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push_str(&" ".repeat(indent));
                out.push_str("-\n");
                sequence(out, inner, indent + 2);
            }
            scalar => {
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

/// A map member's value after `key:`.
fn member(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            mapping(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            sequence(out, items, indent + 2);
        }
        Value::String(text) if is_block(text) => {
            out.push_str(" |\n");
            for line in text.lines() {
                if !line.is_empty() {
                    out.push_str(&" ".repeat(indent + 2));
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

/// Whether `text` reads back unchanged from a literal block (`|`): several lines ending in
/// exactly one line break, the first not indented (it sets the block's indentation), no
/// carriage returns or other control characters but tabs.
fn is_block(text: &str) -> bool {
    text.contains('\n')
        && text.ends_with('\n')
        && !text.ends_with("\n\n")
        && !text.starts_with([' ', '\n'])
        && !text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// A scalar, or an empty map or list, on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        scalar => scalar.to_string(),
    }
}

/// A key as written: plain when it is a simple name (`app.kubernetes.io/name`), quoted
/// otherwise.
fn key_text(key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if plain {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::document;

    #[test]
    fn maps_lists_and_text_are_written_in_block_style() {
        let value = json!({
            "kind": "ConfigMap",
            "metadata": {"labels": {"app.kubernetes.io/name": "hiscale"}},
            "data": {"file.toml": "# one\n\nname = \"x\"\n", "odd key": "true"},
            "items": [{"name": "a", "port": 8081}, "b", [], {}],
            "empty": {},
        });
        assert_eq!(
            document(&value),
            "kind: \"ConfigMap\"\n\
             metadata:\n  labels:\n    app.kubernetes.io/name: \"hiscale\"\n\
             data:\n  file.toml: |\n    # one\n\n    name = \"x\"\n  \"odd key\": \"true\"\n\
             items:\n  - name: \"a\"\n    port: 8081\n  - \"b\"\n  - []\n  - {}\n\
             empty: {}\n"
        );
    }

    #[test]
    fn text_a_literal_block_would_change_is_quoted() {
        for text in [
            "  indented\nsecond\n",
            "no final break\nx",
            "two breaks\n\n",
            "cr\r\n",
        ] {
            let written = document(&json!({ "text": text }));
            let expected = format!("text: {}\n", serde_json::Value::String(text.to_owned()));
            assert_eq!(written, expected, "{text:?}");
        }
    }
}
