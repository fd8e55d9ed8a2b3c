//! Versions, entity tags and resource ids: the numbers and names clients echo back to us.

use std::fmt;

/// A position in a collection's single, ever-growing version counter. `0` means "nothing yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version(i64);

impl Version {
    pub const ZERO: Version = Version(0);
    /// The greatest version a caller may name: 2^53 − 1, the largest integer a JSON client
    /// (JavaScript's numbers) holds exactly. A counter never gets near it in practice, so a
    /// caller naming more is mistaken or hostile, and taken at its word it would move the
    /// counter (a refill continues past what consumers claim) to where ids stop being exact.
    pub const MAX_NAMED: Version = Version((1 << 53) - 1);

    /// Versions are non-negative; anything else is not one of ours.
    pub fn new(value: i64) -> Option<Self> {
        (value >= 0).then_some(Self(value))
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// Parses a query parameter such as `version=4711` (at most [`Version::MAX_NAMED`]).
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse::<i64>()
            .ok()
            .and_then(Self::new)
            .filter(|version| *version <= Self::MAX_NAMED)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

/// A resource id assigned by the owner. Ids are opaque strings on the wire; ours are decimal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId(String);

impl ResourceId {
    /// The longest id we accept from a path; ours are at most 19 digits.
    pub const MAX_LEN: usize = 64;

    /// Accepts ids made of ASCII letters, digits, `-` and `_`.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = !text.is_empty()
            && text.len() <= Self::MAX_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| Self(text.to_owned()))
    }

    /// The id the owner hands out: the version of the resource's creation, unique by
    /// construction and never reused.
    pub fn from_version(version: Version) -> Self {
        Self(version.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// The strong entity tag of a representation: the resource's version, plus the name of the
/// representation unless it is the protocol's reference one (JSON of interface version 1):
/// `"7"`, `"7-xml"`, `"7-v2"`, `"7-v2-xml"`. The representations of one state differ in their
/// bytes, so a cache must never take one for another (RFC 9110 8.8.3); a write's `If-Match` is
/// about the state, so it accepts the tag of any representation of the current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETag {
    pub version: Version,
    /// Empty for the reference representation; else e.g. `xml`, `v2`, `v2-xml`.
    pub variant: String,
}

impl ETag {
    /// The tag of the reference representation, and of answers without one (a deletion).
    pub fn of(version: Version) -> Self {
        Self {
            version,
            variant: String::new(),
        }
    }

    /// The tag of the representation called `variant` (see the type).
    pub fn of_variant(version: Version, variant: impl Into<String>) -> Self {
        Self {
            version,
            variant: variant.into(),
        }
    }

    pub fn header_value(&self) -> String {
        if self.variant.is_empty() {
            format!("\"{}\"", self.version)
        } else {
            format!("\"{}-{}\"", self.version, self.variant)
        }
    }

    /// Reads the inside of a tag (`7`, `7-xml`); `None` when it is not one of ours.
    fn parse_opaque(inner: &str) -> Option<Self> {
        let (number, variant) = inner.split_once('-').unwrap_or((inner, ""));
        let named = inner.contains('-');
        if named
            && (variant.is_empty()
                || !variant
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        {
            return None;
        }
        Some(Self::of_variant(Version::parse(number)?, variant))
    }
}

/// What an `If-Match` / `If-None-Match` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagCondition {
    /// `*`: any current representation.
    Any,
    /// A list of tags, compared as the header requires (see the parsers).
    Tags(Vec<ETag>),
}

impl TagCondition {
    /// Matches exactly `version`: what business code pins a change to after reading.
    pub fn exactly(version: Version) -> Self {
        Self::Tags(vec![ETag::of(version)])
    }

    /// Parses an `If-None-Match` value (weak comparison: `W/"7"` matches `"7"`, as RFC 9110
    /// says for it); `None` when it is not a list of entity tags.
    pub fn parse(header: &str) -> Option<Self> {
        Self::parse_with(header, true)
    }

    /// Parses an `If-Match` value (strong comparison, RFC 9110 13.1.1: a weak tag never
    /// matches); `None` when it is not a list of entity tags.
    pub fn parse_strong(header: &str) -> Option<Self> {
        Self::parse_with(header, false)
    }

    fn parse_with(header: &str, weak_matches: bool) -> Option<Self> {
        let header = header.trim();
        if header == "*" {
            return Some(Self::Any);
        }
        let mut tags = Vec::new();
        for part in header.split(',') {
            let part = part.trim();
            let (weak, tag) = match part.strip_prefix("W/") {
                Some(tag) => (true, tag),
                None => (false, part),
            };
            let inner = tag.strip_prefix('"')?.strip_suffix('"')?;
            // A tag that is not one of ours, or a weak one under strong comparison, can never
            // match; keep it as "no match".
            if let Some(tag) = ETag::parse_opaque(inner).filter(|_| weak_matches || !weak) {
                tags.push(tag);
            }
        }
        Some(Self::Tags(tags))
    }

    /// Whether the condition names state `current`, in any representation (`If-Match`).
    pub fn matches(&self, current: Version) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|tag| tag.version == current),
        }
    }

    /// Whether the condition names exactly the representation `current` (`If-None-Match`: a
    /// client holding the XML of a state still needs its JSON).
    pub fn matches_representation(&self, current: &ETag) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.contains(current),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parse_table() {
        let check = |input: &str, expected: Option<i64>| {
            assert_eq!(
                Version::parse(input).map(Version::get),
                expected,
                "{input:?}"
            );
        };
        check("0", Some(0));
        check("4711", Some(4711));
        check("9007199254740991", Some((1 << 53) - 1));
        check("9007199254740992", None);
        check("9223372036854775807", None);
        check("9223372036854775808", None);
        check("1000000000000000000000000000000", None);
        check("-1", None);
        check("+1", None);
        check("1.5", None);
        check("", None);
        check("abc", None);
    }

    #[test]
    fn tag_condition_table() {
        let check = |header: &str, current: i64, expected: Option<bool>| {
            let outcome = TagCondition::parse(header).map(|c| c.matches(Version(current)));
            assert_eq!(outcome, expected, "{header:?} against {current}");
        };
        check("\"7\"", 7, Some(true));
        check("\"7\"", 8, Some(false));
        check("W/\"7\"", 7, Some(true));
        check("\"1\", \"7\"", 7, Some(true));
        check("*", 3, Some(true));
        check("\"abc\"", 3, Some(false));
        check("\"7-xml\"", 7, Some(true));
        check("\"7-\"", 7, Some(false));
        check("\"7-X\"", 7, Some(false));
        check("7", 7, None);
        check("\"7", 7, None);
        let strong = |header: &str, current: i64| {
            TagCondition::parse_strong(header).map(|c| c.matches(Version(current)))
        };
        assert_eq!(strong("\"7\"", 7), Some(true));
        assert_eq!(
            strong("W/\"7\"", 7),
            Some(false),
            "a weak tag never matches If-Match"
        );
        assert_eq!(strong("W/\"7\", \"7\"", 7), Some(true));
        assert_eq!(strong("W/7", 7), None);
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn each_representation_has_its_own_tag_and_if_none_match_names_one() {
        let json = ETag::of(Version(7));
        let xml = ETag::of_variant(Version(7), "xml");
        assert_eq!(json.header_value(), "\"7\"");
        assert_eq!(xml.header_value(), "\"7-xml\"");
        assert_eq!(
            ETag::of_variant(Version(7), "v2-xml").header_value(),
            "\"7-v2-xml\""
        );
        let held = TagCondition::parse("W/\"7-xml\"").unwrap();
        assert!(held.matches_representation(&xml));
        assert!(!held.matches_representation(&json));
        assert!(
            TagCondition::parse("*")
                .unwrap()
                .matches_representation(&json)
        );
        // A write is about the state: the XML's tag names version 7 for If-Match.
        assert!(
            TagCondition::parse_strong("\"7-xml\"")
                .unwrap()
                .matches(Version(7))
        );
    }

    #[test]
    fn resource_id_table() {
        assert!(ResourceId::parse("1234").is_some());
        assert!(ResourceId::parse("a-b_C9").is_some());
        assert!(ResourceId::parse("").is_none());
        assert!(ResourceId::parse("../etc").is_none());
        assert!(ResourceId::parse(&"1".repeat(65)).is_none());
    }
}
