//! Registration's business codes, in one place: the rules a customer's aspects must keep.
//!
//! Each is a `400` answered when a write breaks the rule; clients match on the strings, so
//! they never change once shipped. The framework's own codes live in `hiscale::codes`.

/// `account`: the login is not 3 to 64 letters, digits or `. _ - @`.
pub const INVALID_LOGIN: &str = "invalid-login";
/// `account`: the password is shorter than 8 or longer than 256 characters.
pub const WEAK_PASSWORD: &str = "weak-password";
/// `account`: the password could not be hashed.
pub const INVALID_PASSWORD: &str = "invalid-password";
/// `person`: `type` is neither `natural` nor `legal`.
pub const INVALID_PERSON_TYPE: &str = "invalid-person-type";
/// `person`: the salutation is not one of `MR`, `MS`, `MX`, `DR`.
pub const INVALID_SALUTATION: &str = "invalid-salutation";
/// `person` (v2): the email is not an address like `name@example.org`.
pub const INVALID_EMAIL: &str = "invalid-email";
/// `person` (v2): the birthdate is before 1900-01-01 or after today.
pub const INVALID_BIRTHDATE: &str = "invalid-birthdate";
/// `address.*`: the zip is not 3 to 10 letters, digits, spaces or hyphens.
pub const INVALID_ZIP: &str = "invalid-zip";
/// `bankaccount`: the IBAN's mod-97 checksum does not add up.
pub const INVALID_IBAN: &str = "invalid-iban";
/// `bankaccount`: the BIC is not 8 or 11 upper-case letters or digits.
pub const INVALID_BIC: &str = "invalid-bic";
