//! The billing service area: invoices customers for their orders. It keeps read-only copies of
//! who the customers are, where bills go and what to debit (`~person~address.bill~bankaccount`,
//! from registration) and of the orders (`~order~status`, from shop), and owns the `invoices`.
//! Its batch units (the design's "Billing Batch") invoice each new order exactly once and void
//! the invoices of cancelled orders.

pub mod audit;
pub mod codes;
mod invoices;

use hiscale::{Collection, ServiceArea};

pub use invoices::{Invoice, InvoiceStatus};

pub const NAME: &str = "billing";

/// The aspects billing copies from registration (its grant there).
pub const COPIED_ASPECTS: &str = "~person~address.bill~bankaccount";

/// The aspects billing copies of shop's orders (its grant there).
pub const COPIED_ORDER_ASPECTS: &str = "~order~status";

pub fn service_area() -> ServiceArea {
    ServiceArea::new(NAME)
        .owns(invoices::collection())
        .copies(
            "registration",
            Collection::new("customers", "customer")
                .owned_by_itself()
                .document("person", &["type"])
                .qualified_documents("address", "addresses", &["bill"])
                .document("bankaccount", &[]),
        )
        // Shop's orders by shape only: their rules are shop's business.
        .copies(
            "shop",
            Collection::new("orders", "order")
                .document("order", &[])
                .document("status", &[])
                .owned_by("order", "customer"),
        )
        .reacts_to("orders", "invoice_orders", invoices::invoice_order)
        .gui(gui())
}

/// Billing's GUI plugin: the invoices, with bill address and bank account from billing's
/// copy.
pub fn gui() -> hiscale::gui::Gui {
    hiscale::gui::Gui::new("Invoices", "Rechnungen")
        .file("plugin.js", include_str!("../gui/plugin.js"))
        .needs(&[1])
}
