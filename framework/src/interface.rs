//! Interface versions: which version and format a request asks for (media type or `/v{N}/`
//! prefix), and the run-time state of each version (active, deprecated, retired).
//!
//! Version state is data, not code: an operator changes it while the unit runs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::repr::Format;
use crate::version::{ETag, Version};

/// An interface version number, `N` in `application/vnd.sa.vN+xml` and `/vN/`.
pub type InterfaceVersion = u32;

/// The life-cycle state of one interface version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceState {
    Active,
    /// Served, with a `Deprecation` header (and `Sunset` when a date is set).
    Deprecated,
    /// Answered with `410 interface-retired`.
    Retired,
}

/// The versions an SA speaks and their states, shared by all handlers of a unit.
///
/// The states are a cache of the SA's database (`hs_interface`), refreshed by the unit at
/// least once a second ([`Interfaces::apply`]), so every unit of the SA agrees within 2 s and a
/// restart keeps what an operator set.
#[derive(Debug, Clone)]
pub struct Interfaces {
    sa: String,
    declared: Vec<InterfaceVersion>,
    /// The default of bare media types while no stored record names one.
    initial_default: InterfaceVersion,
    live: Arc<RwLock<Live>>,
    /// Requests per (version, caller) since the unit started: bounded by the declared versions
    /// and the configured caller names (sessions count as `session`, anything else `unknown`).
    usage: Arc<Mutex<BTreeMap<(InterfaceVersion, String), u64>>>,
}

#[derive(Debug, Clone)]
struct Live {
    states: BTreeMap<InterfaceVersion, VersionInfo>,
    default: InterfaceVersion,
}

/// One version's run-time state as the operator set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct VersionInfo {
    pub state: InterfaceState,
    /// Unix seconds when it was deprecated: `Deprecation: @<seconds>` (RFC 9745).
    pub deprecated_at: Option<i64>,
    /// Unix seconds of the announced end: `Sunset` (RFC 8594).
    pub sunset: Option<i64>,
}

impl VersionInfo {
    const ACTIVE: Self = Self {
        state: InterfaceState::Active,
        deprecated_at: None,
        sunset: None,
    };
}

/// A stored version state, as the unit reads it from its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceRecord {
    pub version: InterfaceVersion,
    pub info: VersionInfo,
    pub is_default: bool,
}

impl InterfaceState {
    /// The stored and wire name (`active`, `deprecated`, `retired`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deprecated => "deprecated",
            Self::Retired => "retired",
        }
    }

    /// Reads a stored name; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "deprecated" => Some(Self::Deprecated),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// What a request negotiated: the version and format to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub version: InterfaceVersion,
    pub format: Format,
    pub state: InterfaceState,
}

impl Negotiated {
    /// The entity tag of this representation of state `version` ([`ETag`]): JSON of
    /// interface version 1 is the reference and carries the bare version.
    pub fn etag(&self, version: Version) -> ETag {
        let variant = match (self.version, self.format) {
            (1, Format::Json) => String::new(),
            (1, Format::Xml) => "xml".to_owned(),
            (interface, Format::Json) => format!("v{interface}"),
            (interface, Format::Xml) => format!("v{interface}-xml"),
        };
        ETag::of_variant(version, variant)
    }
}

/// Why negotiation failed; each is a stable error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiationError {
    /// `406`: nothing in `Accept` is a format we speak.
    NotAcceptable,
    /// `406`: the version asked for does not exist.
    UnknownVersion(InterfaceVersion),
    /// `406`: the URL prefix and the media type name different versions.
    Conflict,
    /// `410`: the version was switched off.
    Retired(InterfaceVersion),
    /// `415`: the body's media type is missing or not one we read.
    UnsupportedMediaType,
}

impl Interfaces {
    /// An SA speaking `versions`, all active; `default` answers generic media types until the
    /// stored state names another.
    pub fn new(sa: &str, versions: &[InterfaceVersion], default: InterfaceVersion) -> Self {
        let states = versions
            .iter()
            .map(|version| (*version, VersionInfo::ACTIVE))
            .collect();
        Self {
            sa: sa.to_owned(),
            declared: versions.to_vec(),
            initial_default: default,
            live: Arc::new(RwLock::new(Live { states, default })),
            usage: Arc::default(),
        }
    }

    pub fn sa(&self) -> &str {
        &self.sa
    }

    /// The versions declared, oldest first.
    pub fn declared(&self) -> &[InterfaceVersion] {
        &self.declared
    }

    /// Every version with its state, for `/admin/interfaces`.
    pub fn list(&self) -> Vec<(InterfaceVersion, InterfaceState)> {
        self.read_live()
            .states
            .iter()
            .map(|(v, info)| (*v, info.state))
            .collect()
    }

    /// A declared version's state, dates included.
    pub fn info(&self, version: InterfaceVersion) -> Option<VersionInfo> {
        self.read_live().states.get(&version).copied()
    }

    /// The version a bare `application/json` or `application/xml` gets.
    pub fn default_version(&self) -> InterfaceVersion {
        self.read_live().default
    }

    /// The newest version after `version` that is not retired: the `successor-version` a
    /// deprecated version's answers link to.
    pub fn successor(&self, version: InterfaceVersion) -> Option<InterfaceVersion> {
        self.read_live()
            .states
            .iter()
            .rev()
            .find(|(v, info)| **v > version && info.state != InterfaceState::Retired)
            .map(|(v, _)| *v)
    }

    /// Changes a version's state in this process only (tests; units take states from their
    /// database through [`Interfaces::apply`]); `false` when the version does not exist.
    pub fn set_state(&self, version: InterfaceVersion, state: InterfaceState) -> bool {
        let mut live = self.write_live();
        match live.states.get_mut(&version) {
            Some(current) => {
                current.state = state;
                true
            }
            None => false,
        }
    }

    /// Takes the stored states: declared versions without a record are active, records of
    /// versions this unit does not declare are ignored (a rolling upgrade's newer units may
    /// have stored them), and the default is the marked record's version when declared here.
    pub fn apply(&self, records: &[InterfaceRecord]) {
        let mut live = self.write_live();
        let mut default = self.initial_default;
        for version in &self.declared {
            let record = records.iter().find(|record| record.version == *version);
            live.states.insert(
                *version,
                record.map_or(VersionInfo::ACTIVE, |record| record.info),
            );
            if record.is_some_and(|record| record.is_default) {
                default = *version;
            }
        }
        live.default = default;
    }

    /// Counts one request for `version` by `caller` (see [`Interfaces::usage`]).
    pub fn count_use(&self, version: InterfaceVersion, caller: &str) {
        if !self.declared.contains(&version) {
            return;
        }
        let mut usage = match self.usage.lock() {
            Ok(usage) => usage,
            Err(poisoned) => poisoned.into_inner(),
        };
        *usage.entry((version, caller.to_owned())).or_insert(0) += 1;
    }

    /// Requests per version and caller at this unit since it started.
    pub fn usage(&self) -> Vec<(InterfaceVersion, String, u64)> {
        let usage = match self.usage.lock() {
            Ok(usage) => usage,
            Err(poisoned) => poisoned.into_inner(),
        };
        usage
            .iter()
            .map(|((version, caller), count)| (*version, caller.clone(), *count))
            .collect()
    }

    /// Chooses the answer's version and format from `Accept` and the URL prefix.
    pub fn negotiate(
        &self,
        accept: Option<&str>,
        url_version: Option<InterfaceVersion>,
    ) -> Result<Negotiated, NegotiationError> {
        let ranges = media_ranges(accept.unwrap_or(""));
        let mut unknown = None;
        let mut chosen = None;
        if ranges.is_empty() {
            chosen = Some((None, Format::Xml));
        }
        for range in &ranges {
            match self.classify(&range.media_type) {
                Some((Some(version), _)) if !self.exists(version) => {
                    unknown.get_or_insert(version);
                }
                Some(found) => {
                    chosen = Some(found);
                    break;
                }
                None => {}
            }
        }
        let Some((media_version, format)) = chosen else {
            return Err(match unknown {
                Some(version) => NegotiationError::UnknownVersion(version),
                None => NegotiationError::NotAcceptable,
            });
        };
        let version = match (media_version, url_version) {
            (Some(a), Some(b)) if a != b => return Err(NegotiationError::Conflict),
            (Some(version), _) | (None, Some(version)) => version,
            (None, None) => self.default_version(),
        };
        let state = self.state_of(version)?;
        Ok(Negotiated {
            version,
            format,
            state,
        })
    }

    /// Reads the version and format of a request body from its `Content-Type`.
    pub fn body_type(
        &self,
        content_type: Option<&str>,
        url_version: Option<InterfaceVersion>,
    ) -> Result<(InterfaceVersion, Format), NegotiationError> {
        let mut parts = content_type.unwrap_or_default().split(';');
        let media_type = parts
            .next()
            .map(|value| value.trim().to_ascii_lowercase())
            .filter(|value| !value.is_empty())
            .ok_or(NegotiationError::UnsupportedMediaType)?;
        // Bodies are read as UTF-8: a body announced in another charset would be misread.
        let other_charset = parts
            .filter_map(|part| part.split_once('='))
            .any(|(name, value)| {
                name.trim().eq_ignore_ascii_case("charset")
                    && !matches!(
                        value.trim().trim_matches('"').to_ascii_lowercase().as_str(),
                        "utf-8" | "utf8"
                    )
            });
        if other_charset {
            return Err(NegotiationError::UnsupportedMediaType);
        }
        let (media_version, format) = match self.classify(&media_type) {
            Some((version, format)) if media_type != "*/*" && media_type != "application/*" => {
                (version, format)
            }
            _ => return Err(NegotiationError::UnsupportedMediaType),
        };
        let version = match (media_version, url_version) {
            (Some(a), Some(b)) if a != b => return Err(NegotiationError::Conflict),
            (Some(version), _) | (None, Some(version)) => version,
            (None, None) => self.default_version(),
        };
        self.state_of(version)?;
        Ok((version, format))
    }

    /// The concrete media type of an answer, e.g. `application/vnd.registration.v1+json`.
    pub fn media_type(&self, version: InterfaceVersion, format: Format) -> String {
        let suffix = match format {
            Format::Xml => "xml",
            Format::Json => "json",
        };
        format!("application/vnd.{}.v{version}+{suffix}", self.sa)
    }

    fn state_of(&self, version: InterfaceVersion) -> Result<InterfaceState, NegotiationError> {
        match self.read_live().states.get(&version).map(|info| info.state) {
            None => Err(NegotiationError::UnknownVersion(version)),
            Some(InterfaceState::Retired) => Err(NegotiationError::Retired(version)),
            Some(state) => Ok(state),
        }
    }

    fn exists(&self, version: InterfaceVersion) -> bool {
        self.read_live().states.contains_key(&version)
    }

    fn read_live(&self) -> std::sync::RwLockReadGuard<'_, Live> {
        // A panic while holding the lock cannot leave the map half-written (single inserts).
        match self.live.read() {
            Ok(live) => live,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write_live(&self) -> std::sync::RwLockWriteGuard<'_, Live> {
        match self.live.write() {
            Ok(live) => live,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// `(version named by the type, format)` for a media type we understand.
    fn classify(&self, media_type: &str) -> Option<(Option<InterfaceVersion>, Format)> {
        match media_type {
            "application/xml" | "text/xml" | "*/*" | "application/*" => {
                return Some((None, Format::Xml));
            }
            "application/json" => return Some((None, Format::Json)),
            _ => {}
        }
        let rest = media_type.strip_prefix("application/vnd.")?;
        let rest = rest.strip_prefix(self.sa.as_str())?.strip_prefix(".v")?;
        let (number, suffix) = rest.split_once('+')?;
        if number.is_empty() || number.len() > 6 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let version = number.parse().ok()?;
        let format = match suffix {
            "xml" => Format::Xml,
            "json" => Format::Json,
            _ => return None,
        };
        Some((Some(version), format))
    }
}

/// One entry of an `Accept` header.
#[derive(Debug)]
struct MediaRange {
    media_type: String,
    quality: f32,
}

/// The ranges of an `Accept` header, best first, without those refused by `q=0`.
fn media_ranges(header: &str) -> Vec<MediaRange> {
    let mut ranges: Vec<MediaRange> = header
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let media_type = pieces.next()?.trim().to_ascii_lowercase();
            if media_type.is_empty() {
                return None;
            }
            let quality = pieces
                .filter_map(|param| param.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            (quality > 0.0).then_some(MediaRange {
                media_type,
                quality,
            })
        })
        .collect();
    ranges.sort_by(|a, b| b.quality.total_cmp(&a.quality));
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        accept: Option<&str>,
        url: Option<u32>,
        expected: Result<(u32, Format), NegotiationError>,
    ) {
        let interfaces = Interfaces::new("registration", &[1, 2], 1);
        interfaces.set_state(2, InterfaceState::Active);
        let outcome = interfaces
            .negotiate(accept, url)
            .map(|negotiated| (negotiated.version, negotiated.format));
        assert_eq!(outcome, expected, "Accept {accept:?}, URL version {url:?}");
    }

    #[test]
    fn negotiation_table() {
        use Format::*;
        use NegotiationError::*;
        check(None, None, Ok((1, Xml)));
        check(Some(""), None, Ok((1, Xml)));
        check(Some("application/json"), None, Ok((1, Json)));
        check(Some("application/xml"), None, Ok((1, Xml)));
        check(Some("*/*"), None, Ok((1, Xml)));
        check(
            Some("application/vnd.registration.v2+json"),
            None,
            Ok((2, Json)),
        );
        check(
            Some("application/vnd.registration.v1+xml"),
            None,
            Ok((1, Xml)),
        );
        check(Some("application/json"), Some(2), Ok((2, Json)));
        check(
            Some("application/vnd.registration.v2+json"),
            Some(2),
            Ok((2, Json)),
        );
        check(
            Some("application/vnd.registration.v2+json"),
            Some(1),
            Err(Conflict),
        );
        check(
            Some("application/vnd.registration.v9+json"),
            None,
            Err(UnknownVersion(9)),
        );
        check(Some("application/json"), Some(9), Err(UnknownVersion(9)));
        check(Some("text/html"), None, Err(NotAcceptable));
        check(
            Some("application/vnd.shop.v1+json"),
            None,
            Err(NotAcceptable),
        );
        check(
            Some("application/json;q=0, application/xml"),
            None,
            Ok((1, Xml)),
        );
        check(
            Some("application/xml;q=0.5, application/json"),
            None,
            Ok((1, Json)),
        );
        check(
            Some("text/html, application/vnd.registration.v9+xml, application/json;q=0.1"),
            None,
            Ok((1, Json)),
        );
    }

    #[test]
    fn retired_versions_are_gone() {
        let interfaces = Interfaces::new("registration", &[1, 2], 1);
        assert!(interfaces.set_state(1, InterfaceState::Retired));
        assert_eq!(
            interfaces.negotiate(None, None),
            Err(NegotiationError::Retired(1))
        );
        assert!(
            interfaces
                .negotiate(Some("application/vnd.registration.v2+xml"), None)
                .is_ok()
        );
        assert!(!interfaces.set_state(3, InterfaceState::Active));
    }

    #[test]
    fn body_types() {
        let interfaces = Interfaces::new("registration", &[1], 1);
        let check = |content_type: Option<&str>,
                     expected: Result<(u32, Format), NegotiationError>| {
            assert_eq!(
                interfaces.body_type(content_type, None),
                expected,
                "{content_type:?}"
            );
        };
        check(
            Some("application/json; charset=utf-8"),
            Ok((1, Format::Json)),
        );
        check(
            Some("application/vnd.registration.v1+xml"),
            Ok((1, Format::Xml)),
        );
        check(
            Some("text/plain"),
            Err(NegotiationError::UnsupportedMediaType),
        );
        check(Some("*/*"), Err(NegotiationError::UnsupportedMediaType));
        check(None, Err(NegotiationError::UnsupportedMediaType));
        check(
            Some("application/json; charset=UTF-8"),
            Ok((1, Format::Json)),
        );
        check(
            Some("application/json; charset=utf-16"),
            Err(NegotiationError::UnsupportedMediaType),
        );
        check(
            Some("application/xml; charset=\"iso-8859-1\""),
            Err(NegotiationError::UnsupportedMediaType),
        );
        check(
            Some("application/vnd.registration.v4+xml"),
            Err(NegotiationError::UnknownVersion(4)),
        );
    }
}
