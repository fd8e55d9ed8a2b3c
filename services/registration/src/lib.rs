//! The registration service area: the owner of `customers`, where people sign up.
//!
//! Only business rules live here (what each aspect holds, what makes it valid); routes,
//! storage, versions and representations come from the framework.

pub mod codes;
mod iban;

use hiscale::gui::Gui;
use hiscale::{Aspect, Collection, Invalid, ServiceArea};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use iban::{iban, iban_is_valid};

/// The service area's name, as used in media types (`application/vnd.registration.v1+xml`).
pub const NAME: &str = "registration";

/// The registration SA: owns customers with their account, person, addresses and bank account.
/// Interface v2 is canonical (its `person` has `given_name`, `family_name`, `birthdate` and
/// `email`); v1 shows `person` through a facade with `firstname` and `lastname`.
pub fn service_area() -> ServiceArea {
    ServiceArea::new(NAME)
        .interface_version(2)
        .owns(customers())
        .gui(gui())
}

/// Registration's GUI plugin: signing up, and the signed-in customer's own data. It speaks v2
/// (its `person`), so the shell refuses it once v2 is retired. Public: signing up needs no
/// session.
pub fn gui() -> Gui {
    Gui::new("Your details", "Ihre Daten")
        .file("plugin.js", include_str!("../gui/plugin.js"))
        .needs(&[2])
        .public()
}

/// The customers collection as registration declares it.
pub fn customers() -> Collection {
    Collection::new("customers", "customer")
        .aspect::<Account>("account")
        .aspect::<Person>("person")
        .facade::<PersonV1>("person", 1, person_to_v1, person_from_v1)
        .upgrade("person", upgrade_person)
        .qualified::<Address>("address", "addresses", &["home", "bill"])
        .aspect::<BankAccount>("bankaccount")
        .unique("account", "login")
        .owned_by_itself()
        // Customers change their own person, addresses and bank account (within the session
        // grant, which leaves out the account), and anyone may sign up.
        .writable_by_sessions()
        .open_to_sign_up()
}

/// The login account as stored: the password only as an Argon2id hash and its salt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub login: String,
    pub pwdhash: String,
    pub salt: String,
}

/// The account as a client writes it: with the clear-text password, never a hash.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    #[schema(pattern = "^[A-Za-z0-9._@-]{3,64}$")]
    pub login: String,
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
}

impl Aspect for Account {
    type Input = AccountInput;

    fn example() -> Option<serde_json::Value> {
        Some(serde_json::json!({"login": "owronka", "password": "correct horse battery"}))
    }

    fn accept(input: AccountInput) -> Result<Self, Invalid> {
        let login_ok = (3..=64).contains(&input.login.chars().count())
            && input
                .login
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
        if !login_ok {
            return Err(Invalid::new(
                codes::INVALID_LOGIN,
                "a login is 3 to 64 letters, digits or . _ - @",
            ));
        }
        if !(8..=256).contains(&input.password.chars().count()) {
            return Err(Invalid::new(
                codes::WEAK_PASSWORD,
                "a password has 8 to 256 characters",
            ));
        }
        let (pwdhash, salt) = hiscale::auth::hash_password(&input.password)
            .map_err(|error| Invalid::new(codes::INVALID_PASSWORD, error))?;
        Ok(Self {
            login: input.login,
            pwdhash,
            salt,
        })
    }
}

/// Who the customer is (interface v2, the canonical form).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// `natural` or `legal` (written as an XML attribute).
    #[serde(rename = "type")]
    #[schema(pattern = "^(natural|legal)$")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(MR|MS|MX|DR)$")]
    pub salutation: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*[^\s\x00-\x1f\x7f-\x9f\uFFFE\uFFFF][^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*$"
    )]
    pub given_name: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*[^\s\x00-\x1f\x7f-\x9f\uFFFE\uFFFF][^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*$"
    )]
    pub family_name: String,
    /// From 1900-01-01 to today.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthdate: Option<hiscale::types::Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        max_length = 254,
        pattern = "^[^@\\s\\x00-\\x1f\\uFFFE\\uFFFF]+@[^@\\s\\x00-\\x1f\\uFFFE\\uFFFF]+\\.[^@\\s\\x00-\\x1f\\uFFFE\\uFFFF]+$"
    )]
    pub email: Option<String>,
}

impl Aspect for Person {
    type Input = Person;
    const XML_ATTRIBUTES: &'static [&'static str] = &["type"];

    fn example() -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "type": "natural", "salutation": "MS", "given_name": "Olga", "family_name": "Wronka",
            "birthdate": "1990-04-01", "email": "olga@example.org"
        }))
    }

    fn accept(input: Person) -> Result<Self, Invalid> {
        if !matches!(input.kind.as_str(), "natural" | "legal") {
            return Err(Invalid::new(
                codes::INVALID_PERSON_TYPE,
                "type is natural or legal",
            ));
        }
        if let Some(salutation) = &input.salutation
            && !matches!(salutation.as_str(), "MR" | "MS" | "MX" | "DR")
        {
            return Err(Invalid::new(
                codes::INVALID_SALUTATION,
                "salutation is MR, MS, MX or DR",
            ));
        }
        require_text("given_name", &input.given_name, 100)?;
        require_text("family_name", &input.family_name, 100)?;
        if let Some(birthdate) = input.birthdate {
            require_birthdate(birthdate)?;
        }
        if let Some(email) = &input.email {
            let well_formed = email.len() <= 254
                && email
                    .split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
                && !email.chars().any(|c| c.is_whitespace() || c.is_control());
            if !well_formed {
                return Err(Invalid::new(
                    codes::INVALID_EMAIL,
                    "email is an address like name@example.org (at most 254 characters)",
                ));
            }
        }
        Ok(input)
    }
}

/// Who the customer is, as interface v1 shows it: without birthdate and email, the names as
/// `firstname` and `lastname`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonV1 {
    /// `natural` or `legal` (written as an XML attribute).
    #[serde(rename = "type")]
    #[schema(pattern = "^(natural|legal)$")]
    pub kind: String,
    #[serde(default)]
    #[schema(pattern = "^(MR|MS|MX|DR)$")]
    pub salutation: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*[^\s\x00-\x1f\x7f-\x9f\uFFFE\uFFFF][^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*$"
    )]
    pub firstname: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*[^\s\x00-\x1f\x7f-\x9f\uFFFE\uFFFF][^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*$"
    )]
    pub lastname: String,
}

type Document = serde_json::Map<String, serde_json::Value>;

/// v2 → v1: the names renamed, birthdate and email left out (v1 never had them).
fn person_to_v1(stored: &Document) -> Document {
    let mut old = Document::new();
    for (v2, v1) in [
        ("type", "type"),
        ("salutation", "salutation"),
        ("given_name", "firstname"),
        ("family_name", "lastname"),
    ] {
        if let Some(value) = stored.get(v2) {
            old.insert(v1.to_owned(), value.clone());
        }
    }
    old
}

/// v1 → v2: the names renamed; birthdate and email kept from the stored person (a v1 client
/// cannot see them, so its write must not erase them).
fn person_from_v1(old: Document, current: Option<&Document>) -> Document {
    let mut new = Document::new();
    for (key, value) in old {
        let key = match key.as_str() {
            "firstname" => "given_name".to_owned(),
            "lastname" => "family_name".to_owned(),
            _ => key,
        };
        new.insert(key, value);
    }
    if let Some(current) = current {
        for kept in ["birthdate", "email"] {
            if let Some(value) = current.get(kept) {
                new.insert(kept.to_owned(), value.clone());
            }
        }
    }
    new
}

/// Persons stored before v2 (`firstname`, `lastname`) read as v2; v2 documents stay as they
/// are. Run on every read, so nothing is migrated in one blocking step: the next write stores
/// the v2 form.
fn upgrade_person(stored: Document) -> Document {
    if !stored.contains_key("firstname") && !stored.contains_key("lastname") {
        return stored;
    }
    person_from_v1(stored, None)
}

/// A postal address (home or bill).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*[^\s\x00-\x1f\x7f-\x9f\uFFFE\uFFFF][^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*$"
    )]
    pub street: String,
    #[schema(pattern = "^[A-Za-z0-9 -]{3,10}$")]
    pub zip: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*[^\s\x00-\x1f\x7f-\x9f\uFFFE\uFFFF][^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*$"
    )]
    pub city: String,
}

impl Aspect for Address {
    type Input = Address;

    fn example() -> Option<serde_json::Value> {
        Some(serde_json::json!({"street": "Hauptstraße 1", "zip": "10115", "city": "Berlin"}))
    }

    fn accept(input: Address) -> Result<Self, Invalid> {
        require_text("street", &input.street, 200)?;
        require_text("city", &input.city, 100)?;
        let zip_ok = (3..=10).contains(&input.zip.len())
            && input
                .zip
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
        if !zip_ok {
            return Err(Invalid::new(
                codes::INVALID_ZIP,
                "zip is 3 to 10 letters or digits",
            ));
        }
        Ok(input)
    }
}

/// Where the customer pays from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BankAccount {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*[^\s\x00-\x1f\x7f-\x9f\uFFFE\uFFFF][^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*$"
    )]
    pub owner: String,
    /// ISO 13616, checksum validated; stored without spaces.
    #[schema(pattern = "^[A-Za-z]{2}[0-9]{2}[A-Za-z0-9 ]{11,34}$")]
    pub iban: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Z0-9]{8}([A-Z0-9]{3})?$")]
    pub bic: Option<String>,
}

impl Aspect for BankAccount {
    type Input = BankAccount;

    fn example() -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "owner": "Olga Wronka", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"
        }))
    }

    fn accept(mut input: BankAccount) -> Result<Self, Invalid> {
        require_text("owner", &input.owner, 200)?;
        input.iban = input.iban.replace(' ', "").to_ascii_uppercase();
        if !iban_is_valid(&input.iban) {
            return Err(Invalid::new(
                codes::INVALID_IBAN,
                "the IBAN's checksum does not add up",
            ));
        }
        if let Some(bic) = &input.bic {
            let bic_ok = matches!(bic.len(), 8 | 11)
                && bic
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if !bic_ok {
                return Err(Invalid::new(
                    codes::INVALID_BIC,
                    "a BIC has 8 or 11 upper-case letters or digits",
                ));
            }
        }
        Ok(input)
    }
}

/// Text of at least one visible character and no control character, at most `max_chars`
/// long. The aspects' schemas carry the same rule as a pattern (`[^\s\x00-\x1f\x7f-\x9f]`), so
/// a generated client refuses what the unit would.
fn require_text(field: &'static str, value: &str, max_chars: usize) -> Result<(), Invalid> {
    let length = value.trim().chars().count();
    if length == 0 || value.chars().count() > max_chars || value.chars().any(char::is_control) {
        return Err(Invalid::new(
            hiscale::codes::INVALID_FIELD,
            format!("{field} must be 1 to {max_chars} printable characters"),
        ));
    }
    Ok(())
}

/// The earliest birthdate a customer can have: nobody alive was born before 1900.
const EARLIEST_BIRTHDATE: &str = "1900-01-01";

/// A birthdate from 1900-01-01 to today (UTC): what lies outside is a typing mistake, and the
/// message names the bounds, never the date.
fn require_birthdate(birthdate: hiscale::types::Date) -> Result<(), Invalid> {
    let earliest: hiscale::types::Date = EARLIEST_BIRTHDATE
        .parse()
        .map_err(|_| Invalid::new(codes::INVALID_BIRTHDATE, "the earliest birthdate is wrong"))?;
    if birthdate < earliest || birthdate > hiscale::types::Date::today() {
        return Err(Invalid::new(
            codes::INVALID_BIRTHDATE,
            format!("a birthdate lies between {EARLIEST_BIRTHDATE} and today"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(birthdate: &str) -> Person {
        serde_json::from_value(serde_json::json!({
            "type": "natural", "given_name": "Olga", "family_name": "Wronka",
            "birthdate": birthdate
        }))
        .expect("a well-formed person")
    }

    fn check(birthdate: &str, expected: Result<(), &str>) {
        let accepted = Person::accept(person(birthdate));
        assert_eq!(
            accepted
                .as_ref()
                .map(|_| ())
                .map_err(|refused| refused.code),
            expected,
            "{birthdate}"
        );
        if let Err(refused) = accepted {
            assert!(!refused.message.contains(birthdate), "{}", refused.message);
        }
    }

    #[test]
    fn a_birthdate_lies_between_1900_and_today() {
        let today = hiscale::types::Date::today();
        let tomorrow = hiscale::types::Date::from(today.as_time().next_day().expect("not 9999"));
        check("1900-01-01", Ok(()));
        check("1990-04-01", Ok(()));
        check(&today.to_string(), Ok(()));
        check("0000-01-01", Err(codes::INVALID_BIRTHDATE));
        check("1899-12-31", Err(codes::INVALID_BIRTHDATE));
        check(&tomorrow.to_string(), Err(codes::INVALID_BIRTHDATE));
        check("9999-12-31", Err(codes::INVALID_BIRTHDATE));
    }
}
