//! Field types for aspects: exact decimals, money, dates and timestamps, and the rule every
//! text field obeys.
//!
//! Text: every string a client sends, in any field of any body (JSON or XML, aspect or
//! command), holds only characters XML 1.0 can carry ([`is_xml_char`]), so that whatever is
//! stored can be answered in both formats; the framework checks this where it parses a body
//! and refuses the rest with `400 unrepresentable-character`. Data stored before the rule (or
//! copied from an older owner) may still hold such characters: the XML writer replaces them
//! with U+FFFD ([`representable`]) rather than write an ill-formed document.
//!
//! Each is a string on the wire, in JSON and XML alike (`"12.50"`, `"2026-03-01"`), so a value
//! reads the same in both formats and no client ever rounds it through a floating-point
//! number. Each refuses what it cannot hold exactly, with a message naming the expected shape;
//! the framework turns that into `400 invalid-aspect`. Integers, booleans, enumerations
//! (`#[serde(rename_all = "snake_case")]` on a plain enum), lists and nested records need no
//! type here: serde and `utoipa::ToSchema` describe them.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// The most significant digits a [`Decimal`] holds (rust_decimal's 96-bit mantissa).
pub const MAX_DECIMAL_DIGITS: usize = 28;

/// Longest text any of these types parses; anything longer is refused before parsing.
const MAX_TEXT: usize = 64;

/// Why a value was refused, in words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadValue(String);

impl BadValue {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Whether XML 1.0 can carry `c` (its `Char` production): TAB, LF, CR and everything from
/// U+0020 up, except the noncharacters U+FFFE and U+FFFF (a Rust `char` is never a lone
/// surrogate). JSON carries every character; XML decides what a field may hold.
///
/// ```
/// use hiscale::types::is_xml_char;
/// assert!(is_xml_char('\n') && is_xml_char('é') && is_xml_char('\u{1F600}'));
/// assert!(!is_xml_char('\0') && !is_xml_char('\u{1b}') && !is_xml_char('\u{FFFE}'));
/// ```
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
}

/// The first character of `text` that XML 1.0 cannot carry, if any.
pub fn unrepresentable(text: &str) -> Option<char> {
    // Every such character is a byte below 0x20 in UTF-8, or EF BF BE / EF BF BF: a byte scan
    // clears almost all text at half the cost of decoding it (1.1 against 2.2 ns a byte).
    if !text.bytes().any(|byte| byte < 0x20 || byte == 0xEF) {
        return None;
    }
    text.chars().find(|c| !is_xml_char(*c))
}

/// `text` with every character XML 1.0 cannot carry replaced by U+FFFD (borrowed when there
/// is none, which is always so for data written since the rule): how the XML writer shows
/// data stored before it.
///
/// ```
/// use hiscale::types::representable;
/// assert_eq!(representable("a\u{0}b\u{FFFE}"), "a\u{FFFD}b\u{FFFD}");
/// assert!(matches!(representable("Straße\tNr. 1"), std::borrow::Cow::Borrowed(_)));
/// ```
pub fn representable(text: &str) -> Cow<'_, str> {
    if unrepresentable(text).is_none() {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if is_xml_char(c) {
                    c
                } else {
                    char::REPLACEMENT_CHARACTER
                }
            })
            .collect(),
    )
}

/// An exact decimal number such as `12.50`: money and quantities without floating point.
///
/// On the wire always a string of digits with an optional `-` and fraction: no `+`, no
/// exponent, no JSON number (a JSON number may already have been rounded by the client), at
/// most [`MAX_DECIMAL_DIGITS`] digits. The scale is kept: `12.50` stays `12.50`.
///
/// ```
/// use hiscale::types::Decimal;
/// let price: Decimal = "12.50".parse().unwrap();
/// let total = price.checked_mul(3).unwrap().checked_add("0.05".parse().unwrap()).unwrap();
/// assert_eq!(total.to_string(), "37.55");
/// assert_eq!(serde_json::to_string(&price).unwrap(), r#""12.50""#);
/// assert!(serde_json::from_str::<Decimal>("12.5").is_err());
/// assert!("1e3".parse::<Decimal>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Decimal(rust_decimal::Decimal);

impl Decimal {
    /// Zero, without fraction digits.
    pub const ZERO: Self = Self(rust_decimal::Decimal::ZERO);

    /// `self + other`, or `None` when the result does not fit.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).and_then(Self::fitting)
    }

    /// `self - other`, or `None` when the result does not fit.
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).and_then(Self::fitting)
    }

    /// `self × quantity` (a price times a count), or `None` when the result does not fit.
    pub fn checked_mul(self, quantity: i64) -> Option<Self> {
        self.0
            .checked_mul(rust_decimal::Decimal::from(quantity))
            .and_then(Self::fitting)
    }

    /// Digits after the decimal point (`2` for `12.50`).
    pub fn scale(self) -> u32 {
        self.0.scale()
    }

    /// The underlying `rust_decimal` value, for arithmetic this type does not offer.
    pub fn as_rust_decimal(self) -> rust_decimal::Decimal {
        self.0
    }

    /// A result with more digits than the wire allows would not parse back: refuse it.
    fn fitting(value: rust_decimal::Decimal) -> Option<Self> {
        (value.mantissa().unsigned_abs() < 10u128.pow(MAX_DECIMAL_DIGITS as u32))
            .then(|| Self::normal(value))
    }

    /// `-0.00` and `0.00` are one value; keep one spelling.
    fn normal(mut value: rust_decimal::Decimal) -> Self {
        if value.is_zero() {
            value.set_sign_positive(true);
        }
        Self(value)
    }
}

impl From<i64> for Decimal {
    fn from(value: i64) -> Self {
        Self(rust_decimal::Decimal::from(value))
    }
}

impl FromStr for Decimal {
    type Err = BadValue;

    fn from_str(text: &str) -> Result<Self, BadValue> {
        let shape = || {
            BadValue::new(format!(
                "a decimal is digits with an optional '-' and fraction, e.g. \"12.50\", at most {MAX_DECIMAL_DIGITS} digits"
            ))
        };
        if text.len() > MAX_TEXT {
            return Err(shape());
        }
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let (whole, fraction) = match unsigned.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (unsigned, None),
        };
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !fraction.is_none_or(digits) {
            return Err(shape());
        }
        let fraction = fraction.unwrap_or("");
        let significant = whole.trim_start_matches('0').len() + fraction.len();
        if significant > MAX_DECIMAL_DIGITS || fraction.len() > MAX_DECIMAL_DIGITS {
            return Err(shape());
        }
        rust_decimal::Decimal::from_str_exact(text)
            .map(Self::normal)
            .map_err(|_| shape())
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, formatter)
    }
}

/// An ISO 4217-shaped currency code: three upper-case ASCII letters (`EUR`).
///
/// ```
/// use hiscale::types::Currency;
/// let euro: Currency = "EUR".parse().unwrap();
/// assert_eq!(euro.as_str(), "EUR");
/// assert!("eur".parse::<Currency>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn as_str(&self) -> &str {
        // Only upper-case ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// The currency's minor units (ISO 4217): how many decimals its amounts have at most.
    /// `2` for any code the table does not list (EUR, USD and most others).
    ///
    /// ```
    /// use hiscale::types::Currency;
    /// let units = |code: &str| code.parse::<Currency>().unwrap().minor_units();
    /// assert_eq!((units("EUR"), units("JPY"), units("KWD"), units("CLF")), (2, 0, 3, 4));
    /// ```
    pub fn minor_units(&self) -> u32 {
        match self.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            "CLF" | "UYW" => 4,
            _ => 2,
        }
    }
}

impl FromStr for Currency {
    type Err = BadValue;

    fn from_str(text: &str) -> Result<Self, BadValue> {
        match text.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(BadValue::new(
                "a currency is three upper-case letters (ISO 4217), e.g. \"EUR\"",
            )),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// An amount in a currency: `{"amount": "12.50", "currency": "EUR"}` in JSON,
/// `<price><amount>12.50</amount><currency>EUR</currency></price>` in XML. A client's amount
/// has at most its currency's minor units of decimals (ISO 4217: EUR and USD 2, JPY 0, KWD 3);
/// more is `400 too-many-decimals`.
///
/// ```
/// use hiscale::types::Money;
/// let price: Money = "12.50 EUR".parse().unwrap();
/// let twice = price.checked_add(&price).unwrap();
/// assert_eq!(twice.to_string(), "25.00 EUR");
/// assert!(price.checked_add(&"1.00 USD".parse().unwrap()).is_err());
/// assert_eq!(
///     serde_json::to_value(&price).unwrap(),
///     serde_json::json!({"amount": "12.50", "currency": "EUR"})
/// );
/// ```
///
/// The scale is checked on client input only (an aspect's or a command's): amounts stored
/// before the rule, and sums the code computes, still read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, try_from = "MoneyFields")]
#[schema(example = json!({"amount": "12.50", "currency": "EUR"}))]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

/// [`Money`] as read, before its input rule.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyFields {
    amount: Decimal,
    currency: Currency,
}

impl TryFrom<MoneyFields> for Money {
    type Error = BadValue;

    fn try_from(fields: MoneyFields) -> Result<Self, BadValue> {
        let money = Money {
            amount: fields.amount,
            currency: fields.currency,
        };
        if is_reading_input() {
            money
                .check_scale()
                .inspect_err(|_| refuse_input(TOO_MANY_DECIMALS))?;
        }
        Ok(money)
    }
}

/// Why two amounts could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("cannot add {0} to {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("the sum does not fit a decimal")]
    Overflow,
}

impl Money {
    /// The sum of two amounts in the same currency.
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(other.currency, self.currency));
        }
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }

    /// Whether the amount has no more decimals than its currency's minor units
    /// ([`Currency::minor_units`]); the message names the rule, never the amount.
    ///
    /// ```
    /// use hiscale::types::Money;
    /// assert!("12.50 EUR".parse::<Money>().unwrap().check_scale().is_ok());
    /// assert!("12.555 EUR".parse::<Money>().unwrap().check_scale().is_err());
    /// assert!("12.5 JPY".parse::<Money>().unwrap().check_scale().is_err());
    /// ```
    pub fn check_scale(&self) -> Result<(), BadValue> {
        let units = self.currency.minor_units();
        if self.amount.scale() <= units {
            return Ok(());
        }
        Err(BadValue::new(format!(
            "{} amounts have at most {units} decimals (ISO 4217)",
            self.currency
        )))
    }

    /// The amount times a quantity (`None` on overflow).
    pub fn checked_mul(&self, quantity: i64) -> Option<Money> {
        Some(Money {
            amount: self.amount.checked_mul(quantity)?,
            currency: self.currency,
        })
    }
}

impl FromStr for Money {
    type Err = BadValue;

    /// `12.50 EUR`.
    fn from_str(text: &str) -> Result<Self, BadValue> {
        let (amount, currency) = text
            .split_once(' ')
            .ok_or_else(|| BadValue::new("money is written \"12.50 EUR\""))?;
        Ok(Self {
            amount: amount.parse()?,
            currency: currency.parse()?,
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {}", self.amount, self.currency)
    }
}

/// A calendar date, `YYYY-MM-DD` (years 0000 to 9999), checked against the calendar:
/// `2026-02-30` is refused.
///
/// ```
/// use hiscale::types::Date;
/// let date: Date = "2026-03-01".parse().unwrap();
/// assert_eq!(date.to_string(), "2026-03-01");
/// assert!("2026-02-30".parse::<Date>().is_err());
/// assert!("2026-3-1".parse::<Date>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(time::Date);

impl Date {
    pub fn as_time(self) -> time::Date {
        self.0
    }

    /// Today's date in UTC: the upper bound of dates that cannot lie ahead (a birthdate).
    pub fn today() -> Self {
        Self(time::OffsetDateTime::now_utc().date())
    }
}

impl FromStr for Date {
    type Err = BadValue;

    fn from_str(text: &str) -> Result<Self, BadValue> {
        let shape = || BadValue::new("a date is YYYY-MM-DD on the calendar, e.g. \"2026-03-01\"");
        let bytes = text.as_bytes();
        let digits_at = |range: std::ops::Range<usize>| {
            bytes
                .get(range.clone())
                .filter(|part| part.iter().all(u8::is_ascii_digit))
                .and_then(|_| text.get(range))
        };
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(shape());
        }
        let year: i32 = digits_at(0..4)
            .and_then(|part| part.parse().ok())
            .ok_or_else(shape)?;
        let month: u8 = digits_at(5..7)
            .and_then(|part| part.parse().ok())
            .ok_or_else(shape)?;
        let day: u8 = digits_at(8..10)
            .and_then(|part| part.parse().ok())
            .ok_or_else(shape)?;
        let month = time::Month::try_from(month).map_err(|_| shape())?;
        time::Date::from_calendar_date(year, month, day)
            .map(Self)
            .map_err(|_| shape())
    }
}

impl fmt::Display for Date {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day()
        )
    }
}

impl From<time::Date> for Date {
    fn from(value: time::Date) -> Self {
        Self(value)
    }
}

/// An instant, RFC 3339 on the wire (`2026-03-01T12:30:00Z`). Any offset is accepted and
/// the value is kept in UTC, so it always renders with `Z`; fractions of a second are kept
/// (up to nanoseconds) and trailing zeros dropped.
///
/// ```
/// use hiscale::types::Timestamp;
/// let at: Timestamp = "2026-03-01T13:30:00+01:00".parse().unwrap();
/// assert_eq!(at.to_string(), "2026-03-01T12:30:00Z");
/// assert!("2026-03-01 12:30".parse::<Timestamp>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(time::OffsetDateTime);

impl Timestamp {
    /// Now, in UTC.
    pub fn now() -> Self {
        Self(time::OffsetDateTime::now_utc())
    }

    pub fn as_time(self) -> time::OffsetDateTime {
        self.0
    }
}

impl From<time::OffsetDateTime> for Timestamp {
    fn from(value: time::OffsetDateTime) -> Self {
        Self(value.to_offset(time::UtcOffset::UTC))
    }
}

impl FromStr for Timestamp {
    type Err = BadValue;

    fn from_str(text: &str) -> Result<Self, BadValue> {
        let shape = || {
            BadValue::new("a timestamp is RFC 3339 with an offset, e.g. \"2026-03-01T12:30:00Z\"")
        };
        if text.len() > MAX_TEXT {
            return Err(shape());
        }
        let parsed =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|_| shape())?;
        let utc = parsed
            .checked_to_offset(time::UtcOffset::UTC)
            .ok_or_else(shape)?;
        // Only what renders back as RFC 3339 (four-digit years) is kept.
        if !(0..=9999).contains(&utc.year()) {
            return Err(shape());
        }
        Ok(Self(utc))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self
            .0
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|_| fmt::Error)?;
        formatter.write_str(&text)
    }
}

/// The code [`Money`]'s input rule answers (`400`), as `hiscale::codes` names it.
const TOO_MANY_DECIMALS: &str = crate::codes::TOO_MANY_DECIMALS;

/// Whether the current thread reads client input, and the code of a type's input rule that
/// refused it. Serde cannot tell input from stored data, and stored data must keep reading
/// (a rule that refused a product priced before the rule would break every order of it), so
/// the framework marks the two places it reads input: an aspect's input and a command's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Stored,
    Input { refused: Option<&'static str> },
}

thread_local! {
    static READING: Cell<Reading> = const { Cell::new(Reading::Stored) };
}

/// Runs `read` (a synchronous deserialisation of client input) with the types' input rules
/// on, and answers what it returned and the stable code of the rule that refused it, if one
/// did (else the caller's own code applies).
pub(crate) fn reading_input<T>(read: impl FnOnce() -> T) -> (T, Option<&'static str>) {
    let outer = READING.with(|reading| reading.replace(Reading::Input { refused: None }));
    let result = read();
    let refused = match READING.with(|reading| reading.replace(outer)) {
        Reading::Input { refused } => refused,
        Reading::Stored => None,
    };
    (result, refused)
}

fn is_reading_input() -> bool {
    READING.with(|reading| matches!(reading.get(), Reading::Input { .. }))
}

/// Records the first input rule that refused the input being read.
fn refuse_input(code: &'static str) {
    READING.with(|reading| {
        if let Reading::Input { refused: None } = reading.get() {
            reading.set(Reading::Input {
                refused: Some(code),
            });
        }
    });
}

/// Serialises as the `Display` text and deserialises from a string only (never a number), so
/// the wire form is one spelling in JSON and XML.
macro_rules! text_serde {
    ($type:ty, $expecting:literal) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl de::Visitor<'_> for Visitor {
                    type Value = $type;
                    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                        formatter.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$type, E> {
                        text.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
    };
}

text_serde!(Decimal, "a decimal as a string, e.g. \"12.50\"");
text_serde!(Currency, "a currency code as a string, e.g. \"EUR\"");
text_serde!(Date, "a date as a string, e.g. \"2026-03-01\"");
text_serde!(Timestamp, "an RFC 3339 timestamp as a string");

/// A string schema with a pattern or format and an example, named so it becomes one component.
macro_rules! text_schema {
    ($type:ty, $name:literal, $build:expr) => {
        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                let build: fn() -> ObjectBuilder = $build;
                RefOr::T(Schema::Object(build().build()))
            }
        }

        impl ToSchema for $type {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

fn text(description: &str, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .examples([serde_json::Value::String(example.to_owned())])
}

text_schema!(Decimal, "Decimal", || text(
    "An exact decimal number as a string (never a JSON number, no exponent, at most 28 digits)",
    "12.50"
)
.pattern(Some(r"^-?[0-9]+(\.[0-9]+)?$")));
text_schema!(Currency, "Currency", || text(
    "ISO 4217 currency code",
    "EUR"
)
.pattern(Some("^[A-Z]{3}$")));
text_schema!(Date, "Date", || text("A calendar date", "2026-03-01")
    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))));
text_schema!(Timestamp, "Timestamp", || text(
    "An instant, RFC 3339, rendered in UTC with Z",
    "2026-03-01T12:30:00Z"
)
.format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly_and_refuse_the_rest() {
        for good in [
            "0",
            "12.50",
            "-3.1",
            "0.000001",
            "9999999999999999999999999999",
        ] {
            let parsed: Decimal = good.parse().expect(good);
            assert_eq!(parsed.to_string(), good);
        }
        assert_eq!(
            "-0.00".parse::<Decimal>().map(|d| d.to_string()),
            Ok("0.00".into())
        );
        for bad in [
            "",
            "-",
            ".5",
            "5.",
            "+1",
            "1e3",
            "1E3",
            " 1",
            "1 ",
            "0x10",
            "1,5",
            "NaN",
            "1.2.3",
            "99999999999999999999999999999",
            "--1",
        ] {
            assert!(bad.parse::<Decimal>().is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<Decimal>("1.5").is_err());
        assert!(serde_json::from_str::<Decimal>("15").is_err());
        let max: Decimal = "9999999999999999999999999999".parse().expect("fits");
        assert_eq!(max.checked_add(max), None);
        assert_eq!(max.checked_mul(10), None);
    }

    #[test]
    fn dates_and_timestamps() {
        assert!("2024-02-29".parse::<Date>().is_ok());
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-00-10",
            "20260301",
            "2026-03-01T",
            "２０２６-03-01",
        ] {
            assert!(bad.parse::<Date>().is_err(), "{bad:?}");
        }
        let at: Timestamp = "2026-03-01T12:30:00.250+00:00".parse().expect("valid");
        assert_eq!(at.to_string(), "2026-03-01T12:30:00.25Z");
        assert_eq!(at.to_string().parse::<Timestamp>(), Ok(at));
        assert!("0000-01-01T00:30:00+01:00".parse::<Timestamp>().is_err());
        assert!("2026-03-01T12:30:00".parse::<Timestamp>().is_err());
    }

    #[test]
    fn xml_characters() {
        for (character, carried) in [
            ('\u{0}', false),
            ('\u{8}', false),
            ('\t', true),
            ('\n', true),
            ('\u{b}', false),
            ('\u{c}', false),
            ('\r', true),
            ('\u{1f}', false),
            (' ', true),
            ('\u{7f}', true),
            ('\u{85}', true),
            ('\u{D7FF}', true),
            ('\u{E000}', true),
            ('\u{FFFD}', true),
            ('\u{FFFE}', false),
            ('\u{FFFF}', false),
            ('\u{10000}', true),
            ('\u{10FFFF}', true),
        ] {
            assert_eq!(is_xml_char(character), carried, "{character:?}");
            let text = format!("a{character}b");
            assert_eq!(unrepresentable(&text).is_none(), carried, "{character:?}");
            let shown = representable(&text);
            assert!(unrepresentable(&shown).is_none());
            assert_eq!(shown.chars().count(), 3);
            assert_eq!(matches!(shown, Cow::Borrowed(_)), carried);
        }
    }

    /// Reads `money` as client input: the code of the input rule that refused it, if any.
    fn as_input(money: serde_json::Value) -> Result<Money, Option<&'static str>> {
        let (read, refused) = reading_input(|| serde_json::from_value::<Money>(money));
        read.map_err(|_| refused)
    }

    #[test]
    fn client_amounts_have_their_currencys_scale_and_stored_ones_still_read() {
        let money = |amount: &str, currency: &str| serde_json::json!({"amount": amount, "currency": currency});
        for (amount, currency) in [
            ("12.50", "EUR"),
            ("12", "EUR"),
            ("0.1", "USD"),
            ("1200", "JPY"),
            ("1.125", "KWD"),
            ("1.1234", "CLF"),
            ("12.50", "ZZZ"),
        ] {
            assert!(
                as_input(money(amount, currency)).is_ok(),
                "{amount} {currency}"
            );
        }
        for (amount, currency) in [
            ("12.555", "EUR"),
            ("12.500", "EUR"),
            ("0.001", "USD"),
            ("12.5", "JPY"),
            ("1.1250", "KWD"),
            ("1.12345", "CLF"),
        ] {
            assert_eq!(
                as_input(money(amount, currency)).err(),
                Some(Some(TOO_MANY_DECIMALS)),
                "{amount} {currency}"
            );
        }
        // A shape error is no input rule's: the caller's code applies.
        assert_eq!(as_input(money("x", "EUR")).err(), Some(None));
        // Stored data (read outside `reading_input`) keeps every decimal it has.
        let stored: Money = serde_json::from_value(money("12.555", "EUR")).expect("stored");
        assert_eq!(stored.to_string(), "12.555 EUR");
        assert!(stored.check_scale().is_err());
        // The message names the rule, never the amount.
        let message = stored
            .check_scale()
            .expect_err("three decimals")
            .to_string();
        assert!(!message.contains("12.555"), "{message}");
        // The mode ends with the read, also when it is nested.
        let ((inner, _), outer) = reading_input(|| reading_input(is_reading_input));
        assert!(inner && outer.is_none() && !is_reading_input());
    }

    #[test]
    fn today_is_a_date() {
        let today = Date::today();
        assert!(today > "2026-01-01".parse().expect("valid"));
        assert_eq!(today.to_string().parse::<Date>(), Ok(today));
    }

    #[test]
    fn money_adds_in_one_currency() {
        let a: Money = "1.10 EUR".parse().expect("valid");
        let b: Money = "2.205 EUR".parse().expect("valid");
        assert_eq!(
            a.checked_add(&b).map(|m| m.to_string()),
            Ok("3.305 EUR".into())
        );
        assert_eq!(
            a.checked_mul(3).map(|m| m.to_string()),
            Some("3.30 EUR".into())
        );
        let usd: Money = "1 USD".parse().expect("valid");
        assert!(matches!(
            a.checked_add(&usd),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert!(
            serde_json::from_value::<Money>(serde_json::json!({"amount": "1", "currency": "eur"}))
                .is_err()
        );
    }
}
