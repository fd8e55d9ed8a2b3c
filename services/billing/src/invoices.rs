//! Invoices: one per order, written by billing's batch units from its copy of shop's orders.
//! The invoice's `order` is unique, so an order invoiced twice (two batch units racing, or one
//! killed before it recorded its progress) still has exactly one invoice.

use hiscale::types::{Money, Timestamp};
use hiscale::{Aspect, Changed, Collection, Context, Draft, Invalid, Refusal, ResourceId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::codes;

pub(crate) fn collection() -> Collection {
    Collection::new("invoices", "invoice")
        .aspect::<Invoice>("invoice")
        .unique("invoice", "order")
        .lookup("invoice", "order")
        .owned_by("invoice", "customer")
}

/// What a customer owes for one order. `order` and `customer` are ids, checked as such: an
/// invoice written by hand can name no id the schema does not allow.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"order": "7", "customer": "1", "total": {"amount": "37.50", "currency": "EUR"}, "status": "open", "issued": "2026-11-29T12:00:00Z"}))]
pub struct Invoice {
    /// The order's id at shop.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub order: String,
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub customer: String,
    pub total: Money,
    pub status: InvoiceStatus,
    pub issued: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Open,
    Void,
}

impl Aspect for Invoice {
    type Input = Invoice;

    fn accept(input: Invoice) -> Result<Self, Invalid> {
        if ResourceId::parse(&input.order).is_none()
            || ResourceId::parse(&input.customer).is_none()
            || input.total.amount <= hiscale::types::Decimal::ZERO
        {
            return Err(Invalid::new(
                codes::INVALID_INVOICE,
                "an invoice names its order's and customer's ids and a total above zero",
            ));
        }
        Ok(input)
    }
}

/// What billing reads of shop's order documents (a tolerant reader: shop may add fields).
#[derive(Debug, Deserialize)]
struct OrderView {
    customer: String,
    total: Option<Money>,
}

#[derive(Debug, Deserialize)]
struct StatusView {
    status: String,
}

/// How often one change is tried when another batch unit wrote the same invoice meanwhile.
const ATTEMPTS: usize = 3;

/// The batch job: a changed order gets its invoice (once), and a cancelled order's invoice is
/// void. A deleted order keeps its invoice: what was billed stays on record.
pub(crate) async fn invoice_order(context: Context, changed: Changed) -> Result<(), Refusal> {
    let Some(order) = changed.now else {
        return Ok(());
    };
    let cancelled = order
        .get::<StatusView>("status")?
        .is_some_and(|status| status.status == "cancelled");
    for _ in 0..ATTEMPTS {
        let existing = context
            .find("invoices", "order", changed.id.as_str())
            .await?
            .into_iter()
            .next();
        let outcome = match existing {
            Some(invoice) => void_if(&context, invoice, cancelled).await,
            None => create(&context, &order, changed.id.as_str(), cancelled).await,
        };
        match outcome {
            // Another batch unit wrote this invoice meanwhile: look again.
            Err(Refusal::Store(
                hiscale::store::Error::UniqueTaken { .. }
                | hiscale::store::Error::PreconditionFailed { .. },
            )) => continue,
            other => return other,
        }
    }
    Err(Refusal::conflict(
        codes::INVALID_INVOICE,
        format!("the invoice of order {} kept changing", changed.id),
    ))
}

async fn void_if(context: &Context, mut draft: Draft, cancelled: bool) -> Result<(), Refusal> {
    let Some(mut invoice) = draft.get::<Invoice>("invoice")? else {
        return Ok(());
    };
    if cancelled && invoice.status == InvoiceStatus::Open {
        invoice.status = InvoiceStatus::Void;
        draft.set("invoice", &invoice)?;
        context.update(draft).await?;
    }
    Ok(())
}

async fn create(
    context: &Context,
    order: &Draft,
    order_id: &str,
    cancelled: bool,
) -> Result<(), Refusal> {
    let Some(view) = order.get::<OrderView>("order")? else {
        return Ok(());
    };
    let Some(total) = view.total else {
        return Ok(());
    };
    let invoice = Invoice {
        order: order_id.to_owned(),
        customer: view.customer,
        total,
        status: if cancelled {
            InvoiceStatus::Void
        } else {
            InvoiceStatus::Open
        },
        issued: Timestamp::now(),
    };
    let mut draft = Draft::new("invoices");
    draft.set("invoice", &invoice)?;
    context.create(draft).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice(order: &str, customer: &str, amount: &str) -> Invoice {
        serde_json::from_value(serde_json::json!({
            "order": order, "customer": customer,
            "total": {"amount": amount, "currency": "EUR"},
            "status": "open", "issued": "2026-11-29T12:00:00Z"
        }))
        .expect("a well-formed invoice")
    }

    #[test]
    fn an_invoice_names_ids_the_schema_allows_and_a_positive_total() {
        assert!(Invoice::accept(invoice("7", "1", "37.50")).is_ok());
        for (order, customer, amount) in [
            ("7", "P0KTbsOniFtj*", "37.50"),
            ("7 ", "1", "37.50"),
            ("", "1", "37.50"),
            ("7", &"1".repeat(65), "37.50"),
            ("7", "1", "0"),
        ] {
            let refused = Invoice::accept(invoice(order, customer, amount))
                .expect_err("a bad id or total is refused");
            assert_eq!(
                refused.code,
                codes::INVALID_INVOICE,
                "{order:?} {customer:?}"
            );
        }
    }
}
