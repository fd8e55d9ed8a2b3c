//! The shop service area: sells to customers, so it keeps a read-only copy of who they are and
//! where they live (`~person~address.home`), polled from registration's feed.
//!
//! The copy is declared by shape only: the rules of these aspects are registration's business.

use hiscale::{Collection, ServiceArea};

pub const NAME: &str = "shop";

/// The aspects shop copies from registration (its grant there).
pub const COPIED_ASPECTS: &str = "~person~address.home";

pub fn service_area() -> ServiceArea {
    ServiceArea::new(NAME).copies(
        "registration",
        Collection::new("customers", "customer")
            .owned_by_itself()
            .document("person", &["type"])
            .qualified_documents("address", "addresses", &["home"]),
    )
}
