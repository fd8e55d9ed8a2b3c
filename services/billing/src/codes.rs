//! Billing's business codes. Clients match on the strings; they never change once shipped.

/// `400`: an invoice written by hand names no order or customer, or a total not above zero.
pub const INVALID_INVOICE: &str = "invalid-invoice";
