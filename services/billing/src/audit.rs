//! Which open invoices no longer say what their order says: the operator's check after
//! orders could still be changed once invoiced (before shop froze a placed order's lines).
//! Billing's job only creates and voids invoices, so such an invoice stays wrong until an
//! operator corrects it; this names every one.

use std::collections::BTreeMap;

use hiscale::types::Money;

use crate::{Invoice, InvoiceStatus};

/// An open invoice whose total is not its order's total now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub invoice: String,
    pub order: String,
    pub invoiced: Money,
    /// The order's total now (`None` when the order has none).
    pub now: Option<Money>,
}

/// The open invoices of `invoices` (id and document) whose total differs from their order's
/// in `order_totals` (order id → the order's total now, `None` when it has none), in the
/// invoices' order. An invoice of an order not in `order_totals` (deleted: what was billed
/// stays on record) is no difference; a void invoice neither.
pub fn differences<'a>(
    order_totals: &BTreeMap<String, Option<Money>>,
    invoices: impl IntoIterator<Item = (&'a str, &'a Invoice)>,
) -> Vec<Difference> {
    invoices
        .into_iter()
        .filter(|(_, invoice)| invoice.status == InvoiceStatus::Open)
        .filter_map(|(id, invoice)| {
            let now = order_totals.get(&invoice.order)?;
            (now.as_ref() != Some(&invoice.total)).then(|| Difference {
                invoice: id.to_owned(),
                order: invoice.order.clone(),
                invoiced: invoice.total.clone(),
                now: now.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hiscale::types::Timestamp;

    fn eur(amount: &str) -> Money {
        serde_json::from_value(serde_json::json!({"amount": amount, "currency": "EUR"}))
            .expect("an amount in EUR")
    }

    fn invoice(order: &str, total: &str, status: InvoiceStatus) -> Invoice {
        Invoice {
            order: order.into(),
            customer: "1".into(),
            total: eur(total),
            status,
            issued: Timestamp::now(),
        }
    }

    #[test]
    fn names_open_invoices_whose_order_total_moved_and_nothing_else() {
        let orders = BTreeMap::from([
            ("1".to_owned(), Some(eur("12.50"))),
            ("2".to_owned(), Some(eur("9791.10"))),
            ("3".to_owned(), Some(eur("5.00"))),
            ("4".to_owned(), None),
        ]);
        let invoices = [
            ("10", invoice("1", "12.5", InvoiceStatus::Open)),
            ("11", invoice("2", "12.50", InvoiceStatus::Open)),
            ("12", invoice("3", "1.00", InvoiceStatus::Void)),
            ("13", invoice("4", "3.00", InvoiceStatus::Open)),
            ("14", invoice("99", "3.00", InvoiceStatus::Open)),
        ];
        let found = differences(&orders, invoices.iter().map(|(id, doc)| (*id, doc)));
        assert_eq!(
            found,
            vec![
                Difference {
                    invoice: "11".into(),
                    order: "2".into(),
                    invoiced: eur("12.50"),
                    now: Some(eur("9791.10")),
                },
                Difference {
                    invoice: "13".into(),
                    order: "4".into(),
                    invoiced: eur("3.00"),
                    now: None,
                },
            ]
        );
    }
}
