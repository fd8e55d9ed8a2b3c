//! A test-only service area with typed fields: `things` whose `order` aspect holds text, an
//! integer, decimals, money, a boolean, a date, a timestamp, an enumeration, a list of nested
//! records, a list of text and optional fields; and a copy of it that knows no types.

use hiscale::types::{Date, Decimal, Money, Timestamp};
use hiscale::{Aspect, Collection, Invalid, ServiceArea};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Backend, TestApp, callers, fresh_database};

/// The owner's name (media types `application/vnd.typed.v1+…`).
pub const NAME: &str = "typed";
/// The copying SA's name.
pub const COPY: &str = "typedcopy";

/// `400`: the order's total is not the sum of its lines.
pub const TOTAL_MISMATCH: &str = "total-mismatch";

/// Where an order stands (an enumeration: snake_case text on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    OnHold,
    Shipped,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub sku: String,
    pub quantity: i64,
    pub price: Money,
}

/// An order with every kind of field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub title: String,
    pub count: i64,
    pub weight: Decimal,
    pub total: Money,
    pub paid: bool,
    pub due: Date,
    pub created: Timestamp,
    pub status: Status,
    pub lines: Vec<Line>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

impl Aspect for Order {
    type Input = Order;
    const XML_ATTRIBUTES: &'static [&'static str] = &["status", "count"];

    fn accept(input: Order) -> Result<Self, Invalid> {
        let mut sum = Money {
            amount: Decimal::ZERO,
            currency: input.total.currency,
        };
        for line in &input.lines {
            let amount = line
                .price
                .checked_mul(line.quantity)
                .ok_or_else(|| Invalid::new(TOTAL_MISMATCH, "a line is too large"))?;
            sum = sum
                .checked_add(&amount)
                .map_err(|error| Invalid::new(TOTAL_MISMATCH, error.to_string()))?;
        }
        if sum.amount != input.total.amount {
            return Err(Invalid::new(
                TOTAL_MISMATCH,
                format!("the lines add up to {sum}, not {}", input.total),
            ));
        }
        Ok(input)
    }

    fn example() -> Option<serde_json::Value> {
        Some(example_order())
    }
}

/// A plain text aspect next to the typed one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Label {
    pub text: String,
}

impl Aspect for Label {
    type Input = Label;

    fn accept(input: Label) -> Result<Self, Invalid> {
        Ok(input)
    }

    fn example() -> Option<serde_json::Value> {
        Some(serde_json::json!({"text": "fragile"}))
    }
}

/// An order with every field set, as JSON.
pub fn example_order() -> serde_json::Value {
    serde_json::json!({
        "title": "Spring <order> & more",
        "count": 3,
        "weight": "1.250",
        "total": {"amount": "27.50", "currency": "EUR"},
        "paid": false,
        "due": "2026-03-01",
        "created": "2026-02-27T09:15:00.5Z",
        "status": "on_hold",
        "lines": [
            {"sku": "A-1", "quantity": 2, "price": {"amount": "10.00", "currency": "EUR"}},
            {"sku": "B-2", "quantity": 1, "price": {"amount": "7.50", "currency": "EUR"}}
        ],
        "tags": [],
        "note": "",
        "discount": "0.00",
        "priority": -1
    })
}

/// The owner: `things` with a typed `order` and a text `label`.
pub fn service_area() -> ServiceArea {
    ServiceArea::new(NAME).owns(
        Collection::new("things", "thing")
            .aspect::<Order>("order")
            .aspect::<Label>("label"),
    )
}

/// A copy of `things` as documents: no types, the owner's XML attributes.
pub fn copy_area() -> ServiceArea {
    ServiceArea::new(COPY).copies(
        NAME,
        Collection::new("things", "thing")
            .document("order", Order::XML_ATTRIBUTES)
            .document("label", &[]),
    )
}

/// `sa` in-process on a fresh database of `backend`.
pub async fn start(backend: Backend, sa: ServiceArea) -> TestApp {
    let database = fresh_database(backend).await;
    let config = hiscale::UnitConfig {
        callers: callers(),
        ..hiscale::UnitConfig::new(
            sa.name(),
            &format!("{}-test", sa.name()),
            ([127, 0, 0, 1], 0).into(),
            &database.url,
        )
    };
    let state = hiscale::unit::state(&config, sa).await.expect("unit state");
    let router = hiscale::http::app(state.clone());
    TestApp {
        router,
        state,
        database,
    }
}
