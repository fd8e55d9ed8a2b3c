//! Information aspects: their names, the `~a~b.c` selector, and the typed aspects services
//! declare.
//!
//! Names and selectors are parsed here, at the edge, into types; nothing below a handler ever
//! looks at a raw selector string again.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest aspect name part (family or qualifier) we accept; keeps errors and logs sane.
const MAX_NAME_PART: usize = 64;

/// A simple (`person`) or qualified (`address.home`) aspect name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AspectName {
    family: String,
    qualifier: Option<String>,
}

impl AspectName {
    /// Parses `family` or `family.qualifier`; parts are lower-case ASCII words.
    ///
    /// ```
    /// use hiscale::AspectName;
    /// let name = AspectName::parse("address.home").unwrap();
    /// assert_eq!(name.family(), "address");
    /// assert_eq!(name.qualifier(), Some("home"));
    /// assert!(AspectName::parse("Address").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let (family, qualifier) = match text.split_once('.') {
            Some((family, qualifier)) => (family, Some(qualifier)),
            None => (text, None),
        };
        if !is_name_part(family) || !qualifier.is_none_or(is_name_part) {
            return Err(SelectorError::BadName(truncate(text)));
        }
        Ok(Self {
            family: family.to_owned(),
            qualifier: qualifier.map(str::to_owned),
        })
    }

    pub fn family(&self) -> &str {
        &self.family
    }

    pub fn qualifier(&self) -> Option<&str> {
        self.qualifier.as_deref()
    }
}

impl fmt::Display for AspectName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.qualifier {
            Some(qualifier) => write!(formatter, "{}.{qualifier}", self.family),
            None => formatter.write_str(&self.family),
        }
    }
}

/// One term of a selector: an exact aspect, or a whole family (`~address`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum SelectorTerm {
    Exact(AspectName),
    Family(String),
}

impl SelectorTerm {
    fn matches(&self, name: &AspectName) -> bool {
        match self {
            Self::Exact(exact) => name == exact,
            Self::Family(family) => name.family == *family,
        }
    }
}

/// A parsed `aspects=` parameter, not yet checked against a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AspectSelector {
    terms: Vec<SelectorTerm>,
}

/// Why a selector or aspect name was refused; each maps to a `400` with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("the aspect selector is longer than {0} characters")]
    TooLong(usize),
    #[error("the aspect selector is empty; write e.g. ~person~address.home")]
    Empty,
    #[error("the aspect selector must start with '~', e.g. ~person~address.home")]
    MissingTilde,
    #[error("'{0}' is not an aspect name (lower-case words, optionally qualified: address.home)")]
    BadName(String),
    #[error("unknown aspect '{0}'")]
    Unknown(String),
}

impl AspectSelector {
    /// Parses `~person~address.home`; `max_chars` bounds the work a caller can cause.
    ///
    /// ```
    /// use hiscale::AspectSelector;
    /// assert!(AspectSelector::parse("~person~address", 256).is_ok());
    /// assert!(AspectSelector::parse("person", 256).is_err());
    /// ```
    pub fn parse(text: &str, max_chars: usize) -> Result<Self, SelectorError> {
        if text.chars().count() > max_chars {
            return Err(SelectorError::TooLong(max_chars));
        }
        if text.is_empty() {
            return Err(SelectorError::Empty);
        }
        let Some(rest) = text.strip_prefix('~') else {
            return Err(SelectorError::MissingTilde);
        };
        let terms = rest
            .split('~')
            .map(|part| {
                let name = AspectName::parse(part)?;
                Ok(match name.qualifier {
                    Some(_) => SelectorTerm::Exact(name),
                    None => SelectorTerm::Family(name.family),
                })
            })
            .collect::<Result<Vec<_>, SelectorError>>()?;
        Ok(Self { terms })
    }

    /// The declared aspects this selector names, ignoring names the collection lacks (a grant
    /// spans every collection of an SA, so not every name applies to each).
    pub fn select_known(&self, declared: &[AspectName]) -> Selection {
        Selection {
            names: declared
                .iter()
                .filter(|name| self.terms.iter().any(|term| term.matches(name)))
                .cloned()
                .collect(),
        }
    }

    /// Resolves the selector against the aspects a collection declares, in declaration order.
    /// A bare family name selects the simple aspect of that name or every qualified one.
    pub fn resolve(&self, declared: &[AspectName]) -> Result<Selection, SelectorError> {
        let mut chosen = vec![false; declared.len()];
        for term in &self.terms {
            let mut matched = false;
            for (index, name) in declared.iter().enumerate() {
                if term.matches(name) {
                    chosen[index] = true;
                    matched = true;
                }
            }
            if !matched {
                let shown = match term {
                    SelectorTerm::Exact(exact) => exact.to_string(),
                    SelectorTerm::Family(family) => family.clone(),
                };
                return Err(SelectorError::Unknown(shown));
            }
        }
        Ok(Selection {
            names: declared
                .iter()
                .zip(chosen)
                .filter(|(_, keep)| *keep)
                .map(|(name, _)| name.clone())
                .collect(),
        })
    }
}

/// A set of declared aspects of one collection, in declaration order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    names: Vec<AspectName>,
}

impl Selection {
    /// Every aspect in `declared`.
    pub fn all(declared: &[AspectName]) -> Self {
        Self {
            names: declared.to_vec(),
        }
    }

    /// The aspects in `self` or `other`, in `self`'s order followed by `other`'s new ones.
    pub fn union(&self, other: &Selection) -> Selection {
        let mut names = self.names.clone();
        for name in &other.names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        Selection { names }
    }

    pub fn contains(&self, name: &AspectName) -> bool {
        self.names.contains(name)
    }

    /// Whether every aspect of `self` is also in `other` (a request inside a grant).
    pub fn is_within(&self, other: &Selection) -> bool {
        self.names.iter().all(|name| other.contains(name))
    }

    /// The aspects of `self` that `other` lacks, for naming them in a `403`.
    pub fn outside(&self, other: &Selection) -> Vec<&AspectName> {
        self.names
            .iter()
            .filter(|name| !other.contains(name))
            .collect()
    }

    pub fn intersect(&self, other: &Selection) -> Selection {
        Selection {
            names: self
                .names
                .iter()
                .filter(|name| other.contains(name))
                .cloned()
                .collect(),
        }
    }

    pub fn names(&self) -> &[AspectName] {
        &self.names
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for name in &self.names {
            write!(formatter, "~{name}")?;
        }
        Ok(())
    }
}

/// A typed aspect a service declares: what clients send, what is stored, and the business
/// rules between the two. The framework keeps the stored form as a document.
///
/// ```
/// use hiscale::{Aspect, Invalid};
/// /// `400`: the nickname is empty (a business code, named once like the framework's).
/// const EMPTY_NICKNAME: &str = "empty-nickname";
/// #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
/// #[serde(deny_unknown_fields)]
/// struct Nickname { nickname: String }
/// impl Aspect for Nickname {
///     type Input = Nickname;
///     fn accept(input: Nickname) -> Result<Nickname, Invalid> {
///         if input.nickname.is_empty() {
///             return Err(Invalid::new(EMPTY_NICKNAME, "a nickname needs a letter"));
///         }
///         Ok(input)
///     }
/// }
/// ```
pub trait Aspect: Serialize + utoipa::ToSchema + Sized + Send + Sync + 'static {
    /// What a client writes (may differ: `account` takes a password and stores a hash).
    type Input: DeserializeOwned + utoipa::ToSchema;

    /// Fields written as XML attributes instead of child elements (`<person type="natural">`).
    const XML_ATTRIBUTES: &'static [&'static str] = &[];

    /// Validates and transforms the input into what is stored. May be slow (password
    /// hashing): the framework calls it off the async threads.
    fn accept(input: Self::Input) -> Result<Self, Invalid>;

    /// An input this aspect accepts, as JSON, shown as the example of request bodies in the
    /// OpenAPI document (and posted by the framework's tests, so it must be accepted). `None`
    /// falls back to the input schema's own example (`#[schema(example = …)]`), if any.
    fn example() -> Option<serde_json::Value> {
        None
    }
}

/// A business rule an input broke: becomes a `400` with this code. Services name their codes
/// once, as constants, like the framework's own in [`crate::codes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A value that at most one resource of a collection may hold, e.g. `("login", "owronka")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    pub name: &'static str,
    pub value: String,
}

fn is_name_part(part: &str) -> bool {
    let mut chars = part.chars();
    part.len() <= MAX_NAME_PART
        && chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Keeps echoed input short in error messages.
fn truncate(text: &str) -> String {
    text.chars().take(MAX_NAME_PART).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> Vec<AspectName> {
        [
            "account",
            "person",
            "address.home",
            "address.bill",
            "bankaccount",
        ]
        .iter()
        .map(|name| AspectName::parse(name).expect("declared names are valid"))
        .collect()
    }

    fn check(input: &str, expected: Result<&str, SelectorError>) {
        let resolved = AspectSelector::parse(input, 64)
            .and_then(|selector| selector.resolve(&declared()))
            .map(|selection| selection.to_string());
        assert_eq!(resolved, expected.map(str::to_owned), "selector {input:?}");
    }

    #[test]
    fn selector_table() {
        use SelectorError::*;
        check("~person", Ok("~person"));
        check("~person~address.home", Ok("~person~address.home"));
        check("~address", Ok("~address.home~address.bill"));
        check("~address.bill~person", Ok("~person~address.bill"));
        check("~person~person", Ok("~person"));
        check(
            "~bankaccount~address~account~person",
            Ok("~account~person~address.home~address.bill~bankaccount"),
        );
        check("", Err(Empty));
        check("person", Err(MissingTilde));
        check("~", Err(BadName(String::new())));
        check("~person~", Err(BadName(String::new())));
        check("~Person", Err(BadName("Person".into())));
        check("~address.", Err(BadName("address.".into())));
        check("~.home", Err(BadName(".home".into())));
        check("~address.home.x", Err(BadName("address.home.x".into())));
        check("~per son", Err(BadName("per son".into())));
        check("~pérson", Err(BadName("pérson".into())));
        check("~shoe", Err(Unknown("shoe".into())));
        check("~address.work", Err(Unknown("address.work".into())));
        check("~person.home", Err(Unknown("person.home".into())));
        check(&format!("~{}", "a".repeat(64)), Err(TooLong(64)));
    }

    #[test]
    fn selection_within_grant() {
        let all = declared();
        let grant = AspectSelector::parse("~person~address.home", 64)
            .and_then(|s| s.resolve(&all))
            .expect("valid");
        let asked = AspectSelector::parse("~address", 64)
            .and_then(|s| s.resolve(&all))
            .expect("valid");
        assert!(!asked.is_within(&grant));
        assert_eq!(asked.outside(&grant), vec![&all[3]]);
        assert_eq!(asked.intersect(&grant).to_string(), "~address.home");
    }
}
