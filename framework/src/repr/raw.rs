//! Stored aspect documents taken as the text the store holds, without building a
//! `serde_json::Value` tree for each one.
//!
//! Rendering through a tree re-parsed every stored document on every read and feed chunk
//! (about 40 % of the owner's side of an initial sync). Every writer of `hs_aspect` stores
//! `serde_json`'s own compact output, so the text is almost always exactly what the tree would
//! print again. [`canonical`] checks that in one pass without allocating for each value; only
//! then is the text spliced into JSON (and walked for XML). Anything else — white space,
//! duplicate members, escapes serde_json would not write, numbers it would print differently,
//! nesting its parser refuses, a member that collides with the aspect's own `version` or
//! `deleted` — is answered `None`, and the caller renders through the tree as before, so the
//! bytes on the wire are the same either way.

use std::borrow::Cow;
use std::collections::HashSet;

/// The deepest nesting taken as it is. serde_json's parser refuses more than 128 levels (the
/// tree path then renders no fields); anything near that goes through the tree.
const MAX_DEPTH: usize = 100;

/// Members of one object compared pairwise for duplicates; beyond, a set.
const LINEAR_KEYS: usize = 16;

/// A stored document known to be a JSON object in serde_json's canonical form, without
/// top-level `version` or `deleted` members.
#[derive(Debug, Clone, Copy)]
pub(super) struct Canonical<'a> {
    text: &'a str,
}

impl<'a> Canonical<'a> {
    /// The members' text between the braces (empty for `{}`), ready to splice after other
    /// members and a comma.
    pub(super) fn members_text(self) -> &'a str {
        &self.text[1..self.text.len() - 1]
    }

    /// The top-level members, keys decoded.
    pub(super) fn members(self) -> Members<'a> {
        Raw(self.text).members()
    }
}

/// Checks `body` as [`Canonical`]; `None` when the tree must render it.
pub(super) fn canonical(body: &str) -> Option<Canonical<'_>> {
    let mut scan = Scan {
        bytes: body.as_bytes(),
        at: 0,
        keys: Vec::new(),
    };
    if scan.peek() != Some(b'{') {
        return None;
    }
    (scan.object(1, true) && scan.at == body.len()).then_some(Canonical { text: body })
}

/// The validating pass.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Keys of the objects being scanned, innermost last (one buffer for all levels).
    keys: Vec<&'a [u8]>,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some(b'{') => self.object(depth + 1, false),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.integer(),
            _ => false,
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn object(&mut self, depth: usize, top: bool) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        self.at += 1;
        if self.eat(b'}') {
            return true;
        }
        let base = self.keys.len();
        let mut set: Option<HashSet<&'a [u8]>> = None;
        let ok = loop {
            let start = self.at;
            if !self.string() {
                break false;
            }
            let key = &self.bytes[start..self.at];
            // The tree keeps one member per key and puts the aspect's own `version` and
            // `deleted` first: the text would say something else.
            if top && (key == b"\"version\"" || key == b"\"deleted\"") {
                break false;
            }
            let fresh = match &mut set {
                Some(set) => set.insert(key),
                None => {
                    let seen = &self.keys[base..];
                    if seen.contains(&key) {
                        false
                    } else if seen.len() >= LINEAR_KEYS {
                        let mut all: HashSet<&'a [u8]> = seen.iter().copied().collect();
                        all.insert(key);
                        set = Some(all);
                        true
                    } else {
                        self.keys.push(key);
                        true
                    }
                }
            };
            if !fresh || !self.eat(b':') || !self.value(depth) {
                break false;
            }
            if self.eat(b',') {
                continue;
            }
            break self.eat(b'}');
        };
        self.keys.truncate(base);
        ok
    }

    fn array(&mut self, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        self.at += 1;
        if self.eat(b']') {
            return true;
        }
        loop {
            if !self.value(depth) {
                return false;
            }
            if self.eat(b',') {
                continue;
            }
            return self.eat(b']');
        }
    }

    /// A string with exactly the escapes serde_json writes: `\"`, `\\`, `\b`, `\f`, `\n`,
    /// `\r`, `\t`, and `\u00xx` (lower-case hex) for the other control characters; nothing
    /// else escaped (not `/`, not non-ASCII), no raw control character.
    fn string(&mut self) -> bool {
        if !self.eat(b'"') {
            return false;
        }
        loop {
            let Some(byte) = self.peek() else {
                return false;
            };
            self.at += 1;
            match byte {
                b'"' => return true,
                b'\\' => {
                    let Some(escape) = self.peek() else {
                        return false;
                    };
                    self.at += 1;
                    match escape {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let Some(hex) = self.bytes.get(self.at..self.at + 4) else {
                                return false;
                            };
                            if !unicode_escape_is_canonical(hex) {
                                return false;
                            }
                            self.at += 4;
                        }
                        _ => return false,
                    }
                }
                0x00..=0x1f => return false,
                _ => {}
            }
        }
    }

    /// An integer serde_json reads as `i64` or `u64` and prints back as the same text;
    /// fractions and exponents (printed anew through `f64`) and `-0` are not taken.
    fn integer(&mut self) -> bool {
        let start = self.at;
        self.eat(b'-');
        let digits = self.at;
        while self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            self.at += 1;
        }
        let text = &self.bytes[start..self.at];
        let digit_count = self.at - digits;
        if digit_count == 0
            || (digit_count > 1 && self.bytes[digits] == b'0')
            || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
            || text == b"-0"
        {
            return false;
        }
        let Ok(text) = std::str::from_utf8(text) else {
            return false;
        };
        if text.starts_with('-') {
            text.parse::<i64>().is_ok()
        } else {
            text.parse::<u64>().is_ok()
        }
    }
}

/// `\u` followed by `hex`: canonical only for a control character without a short escape.
fn unicode_escape_is_canonical(hex: &[u8]) -> bool {
    let lower_hex = |byte: &u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte);
    if hex[0] != b'0' || hex[1] != b'0' || !hex.iter().all(lower_hex) {
        return false;
    }
    let value =
        u8::from_str_radix(std::str::from_utf8(&hex[2..]).unwrap_or("ff"), 16).unwrap_or(0xff);
    value < 0x20 && !matches!(value, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d)
}

/// One value's text inside a [`Canonical`] document (so known to be valid and canonical).
#[derive(Debug, Clone, Copy)]
pub(super) struct Raw<'a>(&'a str);

/// What a [`Raw`] value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Object,
    Array,
    String,
    Null,
    /// A number or a boolean: its text is what the tree prints.
    Scalar,
}

impl<'a> Raw<'a> {
    pub(super) fn kind(self) -> Kind {
        match self.0.as_bytes().first() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b'n') => Kind::Null,
            _ => Kind::Scalar,
        }
    }

    /// A scalar's text as the XML shows it: a string decoded, anything else its JSON text.
    pub(super) fn text(self) -> Cow<'a, str> {
        if self.kind() == Kind::String {
            decode(self.0)
        } else {
            Cow::Borrowed(self.0)
        }
    }

    /// An object's members (nothing for any other value).
    pub(super) fn members(self) -> Members<'a> {
        Members {
            text: self.0,
            at: usize::from(self.kind() == Kind::Object),
        }
    }

    /// An array's items (nothing for any other value).
    pub(super) fn items(self) -> Items<'a> {
        Items {
            text: self.0,
            at: usize::from(self.kind() == Kind::Array),
        }
    }
}

/// The members of a canonical object, in their order.
#[derive(Debug)]
pub(super) struct Members<'a> {
    text: &'a str,
    /// 0 once finished (or for a value that is no object).
    at: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (Cow<'a, str>, Raw<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.text.as_bytes();
        if self.at == 0 || matches!(bytes.get(self.at), Some(b'}') | None) {
            self.at = 0;
            return None;
        }
        let key_end = skip(bytes, self.at);
        let key = decode(self.text.get(self.at..key_end)?);
        let value_start = key_end + 1;
        let value_end = skip(bytes, value_start);
        let value = Raw(self.text.get(value_start..value_end)?);
        self.at = if bytes.get(value_end) == Some(&b',') {
            value_end + 1
        } else {
            0
        };
        Some((key, value))
    }
}

/// The items of a canonical array, in their order.
#[derive(Debug)]
pub(super) struct Items<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = Raw<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.text.as_bytes();
        if self.at == 0 || matches!(bytes.get(self.at), Some(b']') | None) {
            self.at = 0;
            return None;
        }
        let end = skip(bytes, self.at);
        let item = Raw(self.text.get(self.at..end)?);
        self.at = if bytes.get(end) == Some(&b',') {
            end + 1
        } else {
            0
        };
        Some(item)
    }
}

/// The end of the (valid, canonical, so white-space free) value starting at `at`.
fn skip(bytes: &[u8], at: usize) -> usize {
    let mut at = at;
    let mut depth = 0usize;
    let mut in_string = false;
    while let Some(&byte) = bytes.get(at) {
        at += 1;
        if in_string {
            match byte {
                b'\\' => at += 1,
                b'"' => {
                    in_string = false;
                    if depth == 0 {
                        return at;
                    }
                }
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 0 {
                    // The closer of the enclosing object or array: the scalar ended before it.
                    return at - 1;
                }
                depth -= 1;
                if depth == 0 {
                    return at;
                }
            }
            b',' | b':' if depth == 0 => return at - 1,
            _ => {}
        }
    }
    at
}

/// A canonical string literal (with its quotes) decoded.
fn decode(literal: &str) -> Cow<'_, str> {
    let inner = literal
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(literal);
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut decoded = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(character) = chars.next() {
        if character != '\\' {
            decoded.push(character);
            continue;
        }
        match chars.next() {
            Some('b') => decoded.push('\u{8}'),
            Some('f') => decoded.push('\u{c}'),
            Some('n') => decoded.push('\n'),
            Some('r') => decoded.push('\r'),
            Some('t') => decoded.push('\t'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                if let Some(control) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    decoded.push(control);
                }
            }
            Some(other) => decoded.push(other),
            None => {}
        }
    }
    Cow::Owned(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// What the tree prints for `body`'s members, or `None` where it renders no fields.
    fn via_tree(body: &str) -> Option<String> {
        match serde_json::from_str::<Value>(body).ok()? {
            Value::Object(members) => {
                let text = serde_json::to_string(&Value::Object(members)).ok()?;
                Some(text[1..text.len() - 1].to_owned())
            }
            _ => None,
        }
    }

    #[test]
    fn canonical_text_is_taken_and_splices_to_what_the_tree_prints() {
        for body in [
            r#"{}"#,
            r#"{"a":1}"#,
            r#"{"name":"Ana","age":42,"ok":true,"none":null,"big":18446744073709551615}"#,
            r#"{"min":-9223372036854775808,"zero":0,"neg":-5}"#,
            r#"{"nested":{"x":[1,[2,{}],[]],"y":{"z":"w"}},"list":[]}"#,
            r#"{"esc":"q\"b\\n\nr\rt\tb\bf\f c\u0001\u001f del"}"#,
            r#"{"unicode":"Zoë 🚀 / <&>"}"#,
            r#"{"version2":1,"Version":2,"deleted_at":3}"#,
        ] {
            let spliced = canonical(body).map(|document| document.members_text().to_owned());
            assert_eq!(spliced, via_tree(body), "{body}");
        }
    }

    #[test]
    fn anything_the_tree_would_print_differently_is_refused() {
        for body in [
            r#" {"a":1}"#,
            r#"{"a": 1}"#,
            r#"{"a":1} "#,
            r#"{"a":1,"a":2}"#,
            r#"{"o":{"k":1,"k":2}}"#,
            r#"{"version":3}"#,
            r#"{"a":1,"deleted":true}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1e3}"#,
            r#"{"a":-0}"#,
            r#"{"a":01}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":-9223372036854775809}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u00e9"}"#,
            r#"{"a":"\u000A"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"\u000a"}"#,
            "{\"a\":\"tab\there\"}",
            r#"[1]"#,
            r#"null"#,
            r#"{"a":1"#,
            r#"{"a":tru}"#,
            r#""#,
        ] {
            assert!(canonical(body).is_none(), "took {body}");
        }
    }

    #[test]
    fn duplicates_are_found_beyond_the_linear_scan() {
        let mut members: Vec<String> = (0..40).map(|n| format!("\"k{n}\":{n}")).collect();
        let unique = format!("{{{}}}", members.join(","));
        assert!(canonical(&unique).is_some());
        members.push("\"k3\":0".to_owned());
        assert!(canonical(&format!("{{{}}}", members.join(","))).is_none());
    }

    #[test]
    fn nesting_deeper_than_the_bound_goes_through_the_tree() {
        let deep = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(canonical(&deep).is_none());
        let shallow = format!("{{\"a\":{}1{}}}", "[".repeat(10), "]".repeat(10));
        assert!(canonical(&shallow).is_some());
    }

    #[test]
    fn the_walk_reads_members_items_and_text_back() {
        let body = r#"{"s":"a\"b\n","n":-3,"t":true,"z":null,"o":{"k":[1,"x",{"d":[]}]},"e":[]}"#;
        let document = canonical(body).expect("canonical");
        let members: Vec<(String, Kind, String)> = document
            .members()
            .map(|(key, value)| (key.into_owned(), value.kind(), value.0.to_owned()))
            .collect();
        assert_eq!(
            members,
            vec![
                ("s".into(), Kind::String, r#""a\"b\n""#.into()),
                ("n".into(), Kind::Scalar, "-3".into()),
                ("t".into(), Kind::Scalar, "true".into()),
                ("z".into(), Kind::Null, "null".into()),
                ("o".into(), Kind::Object, r#"{"k":[1,"x",{"d":[]}]}"#.into()),
                ("e".into(), Kind::Array, "[]".into()),
            ]
        );
        let (_, string) = document.members().next().expect("a member");
        assert_eq!(string.text(), "a\"b\n");
        let (_, object) = document.members().nth(4).expect("o");
        let (key, list) = object.members().next().expect("k");
        assert_eq!(key, "k");
        let items: Vec<&str> = list.items().map(|item| item.0).collect();
        assert_eq!(items, vec!["1", r#""x""#, r#"{"d":[]}"#]);
        assert_eq!(document.members().nth(5).expect("e").1.items().count(), 0);
        assert_eq!(canonical("{}").expect("empty").members().count(), 0);
        let control = canonical(r#"{"c":"\u0001x"}"#).expect("control");
        assert_eq!(control.members().next().expect("c").1.text(), "\u{1}x");
    }
}
