//! Billing's business codes. Clients match on the strings; they never change once shipped.

/// `400`: an invoice written by hand names no order or customer id (`^[A-Za-z0-9_-]{1,64}$`), or a total not above zero.
pub const INVALID_INVOICE: &str = "invalid-invoice";
