//! The billing service area: invoices customers, so it keeps a read-only copy of who they are,
//! where bills go and what to debit (`~person~address.bill~bankaccount`), polled from
//! registration's feed. The copy is declared by shape only.

use hiscale::{Collection, ServiceArea};

pub const NAME: &str = "billing";

/// The aspects billing copies from registration (its grant there).
pub const COPIED_ASPECTS: &str = "~person~address.bill~bankaccount";

pub fn service_area() -> ServiceArea {
    ServiceArea::new(NAME).copies(
        "registration",
        Collection::new("customers", "customer")
            .owned_by_itself()
            .document("person", &["type"])
            .qualified_documents("address", "addresses", &["bill"])
            .document("bankaccount", &[]),
    )
}
