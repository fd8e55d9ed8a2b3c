//! The catalogue: products with a price, written by the operator, read by every session.

use hiscale::types::Money;
use hiscale::{Aspect, Collection, Invalid};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::codes;

pub(crate) fn collection() -> Collection {
    Collection::new("products", "product")
        .aspect::<Product>("product")
        .readable_by_every_session()
}

/// What a product is and what it costs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Umbrella", "price": {"amount": "12.50", "currency": "EUR"}}))]
pub struct Product {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*[^\s\x00-\x1f\x7f-\x9f\uFFFE\uFFFF][^\x00-\x1f\x7f-\x9f\uFFFE\uFFFF]*$"
    )]
    pub name: String,
    pub price: Money,
}

impl Aspect for Product {
    type Input = Product;

    fn accept(input: Product) -> Result<Self, Invalid> {
        let name_ok = (1..=200).contains(&input.name.trim().chars().count())
            && !input.name.chars().any(char::is_control);
        if !name_ok || input.price.amount <= hiscale::types::Decimal::ZERO {
            return Err(Invalid::new(
                codes::INVALID_PRODUCT,
                "a product has a name of 1 to 200 characters and a price above zero",
            ));
        }
        Ok(input)
    }
}
