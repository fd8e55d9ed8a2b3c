//! The registration service area: the owner of `customers`, where people sign up.
//!
//! Only business rules live here (what each aspect holds, what makes it valid); routes,
//! storage, versions and representations come from the framework.

pub mod codes;
mod iban;

use hiscale::{Aspect, Collection, Invalid, ServiceArea};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use iban::{iban, iban_is_valid};

/// The service area's name, as used in media types (`application/vnd.registration.v1+xml`).
pub const NAME: &str = "registration";

/// The registration SA: owns customers with their account, person, addresses and bank account.
pub fn service_area() -> ServiceArea {
    ServiceArea::new(NAME).owns(customers())
}

/// The customers collection as registration declares it.
pub fn customers() -> Collection {
    Collection::new("customers", "customer")
        .aspect::<Account>("account")
        .aspect::<Person>("person")
        .qualified::<Address>("address", "addresses", &["home", "bill"])
        .aspect::<BankAccount>("bankaccount")
        .unique("account", "login")
        .owned_by_itself()
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
    pub login: String,
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

/// Who the customer is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// `natural` or `legal` (written as an XML attribute).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salutation: Option<String>,
    pub firstname: String,
    pub lastname: String,
}

impl Aspect for Person {
    type Input = Person;
    const XML_ATTRIBUTES: &'static [&'static str] = &["type"];

    fn example() -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "type": "natural", "salutation": "MS", "firstname": "Olga", "lastname": "Wronka"
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
        require_text("firstname", &input.firstname, 100)?;
        require_text("lastname", &input.lastname, 100)?;
        Ok(input)
    }
}

/// A postal address (home or bill).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub street: String,
    pub zip: String,
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
    pub owner: String,
    /// ISO 13616, checksum validated; stored without spaces.
    pub iban: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
