//! The shop service area: sells from its catalogue (`products`) to customers, who place and
//! cancel their `orders`. It keeps a read-only copy of who the customers are and where they
//! live (`~person~address.home`), polled from registration's feed; billing copies the orders.
//!
//! Only business rules live here; routes, storage, versions, grants and sessions come from the
//! framework.

pub mod codes;
mod orders;
mod products;

use hiscale::{Collection, ServiceArea};

pub use orders::{CancelInput, Line, LineInput, Order, OrderInput, OrderStatus, Status};
pub use products::Product;

pub const NAME: &str = "shop";

/// The aspects shop copies from registration (its grant there).
pub const COPIED_ASPECTS: &str = "~person~address.home";

pub fn service_area() -> ServiceArea {
    ServiceArea::new(NAME)
        .owns(products::collection())
        .owns(orders::collection())
        .copies(
            "registration",
            Collection::new("customers", "customer")
                .owned_by_itself()
                .document("person", &["type"])
                .qualified_documents("address", "addresses", &["home"]),
        )
        .gui(gui())
}

/// Shop's GUI plugin: the home address from shop's copy, the catalogue, placing and
/// cancelling orders.
pub fn gui() -> hiscale::gui::Gui {
    hiscale::gui::Gui::new("Shop", "Laden")
        .file("plugin.js", include_str!("../gui/plugin.js"))
        .needs(&[1])
}
