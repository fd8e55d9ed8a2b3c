//! Login's codes for `POST /sessions`, in one place; the framework's own live in `hiscale::codes`.
//!
//! Clients match on the strings, so they never change once shipped.

/// `400`: the body is not `{"login": …, "password": …}` in JSON, or either is too long.
pub const BAD_CREDENTIALS_BODY: &str = "bad-credentials-body";
/// `401`: the login is unknown or the password wrong (the same answer for both, on purpose).
pub const BAD_CREDENTIALS: &str = "bad-credentials";
/// `429`: this login failed too often lately; `Retry-After` says when to try again.
pub const TOO_MANY_ATTEMPTS: &str = "too-many-attempts";
