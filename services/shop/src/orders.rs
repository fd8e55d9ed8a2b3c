//! Orders: a customer places one (lines of product and quantity), shop prices it from its
//! catalogue and checks the customer in its copy; the customer may cancel it. Billing copies
//! orders and invoices them.

use hiscale::types::Money;
use hiscale::version::ResourceId;
use hiscale::{Aspect, Collection, Context, Draft, Invalid, Refusal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::codes;
use crate::products::Product;

pub(crate) fn collection() -> Collection {
    Collection::new("orders", "order")
        .aspect::<Order>("order")
        .aspect::<Status>("status")
        .owned_by("order", "customer")
        .writable_by_sessions()
        .rule(price_and_check)
        .command("cancel", true, cancel)
}

/// An order as a client writes it. A session's order is its own customer's, whatever
/// `customer` says; prices come from the catalogue, never from the request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"customer": "1", "lines": [{"product": "2", "quantity": 3}]}))]
pub struct OrderInput {
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub customer: Option<String>,
    #[schema(min_items = 1, max_items = 50)]
    pub lines: Vec<LineInput>,
}

/// One line as a client writes it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    /// A product's id in the catalogue.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub product: String,
    #[schema(minimum = 1, maximum = 99)]
    pub quantity: i64,
}

/// An order as stored: every line priced from the catalogue when it was placed, and the
/// total. (`unit_price` and `total` are set by shop's pricing rule before anything is stored.)
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub customer: String,
    pub lines: Vec<Line>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Money>,
}

/// One priced line.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub product: String,
    pub quantity: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Money>,
}

impl Aspect for Order {
    type Input = OrderInput;

    fn accept(input: OrderInput) -> Result<Self, Invalid> {
        let invalid = |message: &str| Invalid::new(codes::INVALID_ORDER, message);
        let customer = input
            .customer
            .filter(|id| ResourceId::parse(id).is_some())
            .ok_or_else(|| invalid("an order names its customer's id"))?;
        if !(1..=50).contains(&input.lines.len()) {
            return Err(invalid("an order has 1 to 50 lines"));
        }
        let mut lines: Vec<Line> = Vec::with_capacity(input.lines.len());
        for line in input.lines {
            if !(1..=99).contains(&line.quantity) || ResourceId::parse(&line.product).is_none() {
                return Err(invalid(
                    "each line names a product and a quantity of 1 to 99",
                ));
            }
            if lines.iter().any(|earlier| earlier.product == line.product) {
                return Err(invalid("each product appears on one line"));
            }
            lines.push(Line {
                product: line.product,
                quantity: line.quantity,
                unit_price: None,
            });
        }
        Ok(Self {
            customer,
            lines,
            total: None,
        })
    }
}

/// Where an order stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "placed"}))]
pub struct Status {
    pub status: OrderStatus,
    /// Free text: at most 200 characters, none that XML cannot carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\uFFFE\uFFFF]*$"
    )]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Placed,
    Cancelled,
}

impl Aspect for Status {
    type Input = Status;

    fn accept(input: Status) -> Result<Self, Invalid> {
        if input
            .reason
            .as_ref()
            .is_some_and(|reason| reason.chars().count() > 200)
        {
            return Err(Invalid::new(
                codes::INVALID_ORDER,
                "a reason has at most 200 characters",
            ));
        }
        Ok(input)
    }
}

/// The input of `POST /orders/{id}/cancel` (the body may be empty).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "changed my mind"}))]
pub struct CancelInput {
    /// Free text: at most 200 characters, none that XML cannot carry.
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\uFFFE\uFFFF]*$"
    )]
    pub reason: Option<String>,
}

/// Every write of an order: a cancelled order never changes again, a placed one changes only
/// its status, a new one is `placed`, its customer must be one shop knows, and its lines are
/// priced from the catalogue.
///
/// Why a placed order's lines are frozen: billing invoices an order from its copy as soon as it
/// sees it, and nothing flows back from billing to shop. Were lines still writable, an invoice
/// could keep a total the order no longer has, for good (a customer did exactly that). The
/// rule needs no knowledge of billing and no race with it: it holds for every placed order, so
/// whatever billing copied is what the order stays. To change an order, cancel it and place a
/// new one. The rule reads the stored aspect inside the write, and the write is conditional on
/// the version it read, so two writers cannot slip a change past it.
async fn price_and_check(context: Context, mut draft: Draft) -> Result<Draft, Refusal> {
    let before: Option<Status> = draft.before("status")?;
    let placed_before = keep_placed_lines(&mut draft)?;
    if before
        .as_ref()
        .is_some_and(|status| status.status == OrderStatus::Cancelled)
    {
        return Err(Refusal::conflict(
            codes::ORDER_CANCELLED,
            "the order is cancelled",
        ));
    }
    match draft.get::<Status>("status")? {
        None => draft.set(
            "status",
            &Status {
                status: OrderStatus::Placed,
                reason: None,
            },
        )?,
        Some(status) if before.is_none() && status.status != OrderStatus::Placed => {
            return Err(Refusal::invalid(
                codes::INVALID_ORDER,
                "a new order is placed",
            ));
        }
        Some(_) => {}
    }
    if draft.changes("order") && !placed_before {
        let mut order: Order = draft
            .get("order")?
            .ok_or_else(|| Refusal::invalid(codes::INVALID_ORDER, "an order needs its lines"))?;
        let customer = ResourceId::parse(&order.customer)
            .ok_or_else(|| Refusal::invalid(codes::UNKNOWN_CUSTOMER, "no such customer"))?;
        if context.read("customers", &customer).await?.is_none() {
            return Err(Refusal::invalid(
                codes::UNKNOWN_CUSTOMER,
                "shop knows no such customer",
            ));
        }
        let mut total: Option<Money> = None;
        for line in &mut order.lines {
            let product = match ResourceId::parse(&line.product) {
                Some(id) => context.read("products", &id).await?,
                None => None,
            };
            let product: Product = product
                .and_then(|draft| draft.get("product").transpose())
                .transpose()?
                .ok_or_else(|| {
                    Refusal::invalid(
                        codes::UNKNOWN_PRODUCT,
                        format!("no product {}", line.product),
                    )
                })?;
            let amount = product
                .price
                .checked_mul(line.quantity)
                .ok_or_else(too_large)?;
            total = Some(match total {
                None => amount,
                Some(sum) => sum.checked_add(&amount).map_err(|error| {
                    Refusal::invalid(codes::MIXED_CURRENCIES, error.to_string())
                })?,
            });
            line.unit_price = Some(product.price);
        }
        order.total = total;
        draft.set("order", &order)?;
    }
    Ok(draft)
}

/// A placed order's `order` aspect stays as it was placed. Writing the same customer and lines
/// again (a client repeating its `PUT`) is no change: the stored, priced aspect is kept, so a
/// retry neither fails nor re-prices. Anything else is refused with `409 order-placed`.
/// Whether the order was placed before this write (its lines then need no pricing).
fn keep_placed_lines(draft: &mut Draft) -> Result<bool, Refusal> {
    let Some(placed) = draft.before::<Order>("order")? else {
        return Ok(false);
    };
    if !draft.changes("order") {
        return Ok(true);
    }
    let written: Option<Order> = draft.get("order")?;
    let same_lines = |order: &Order| -> Vec<(String, i64)> {
        let mut lines: Vec<_> = order
            .lines
            .iter()
            .map(|line| (line.product.clone(), line.quantity))
            .collect();
        lines.sort();
        lines
    };
    match written {
        Some(written)
            if written.customer == placed.customer
                && same_lines(&written) == same_lines(&placed) =>
        {
            draft.set("order", &placed)?;
            Ok(true)
        }
        _ => Err(Refusal::conflict(
            codes::ORDER_PLACED,
            "a placed order's lines do not change: cancel it and place a new order",
        )),
    }
}

fn too_large() -> Refusal {
    Refusal::invalid(codes::INVALID_ORDER, "the amount is too large")
}

/// `POST /orders/{id}/cancel`: a placed order becomes cancelled (the rule refuses the rest).
async fn cancel(_: Context, mut draft: Draft, input: CancelInput) -> Result<Draft, Refusal> {
    let status = Status {
        status: OrderStatus::Cancelled,
        reason: input.reason,
    };
    Status::accept(status.clone())?;
    draft.set("status", &status)?;
    Ok(draft)
}
