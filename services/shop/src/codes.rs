//! Shop's business codes. Clients match on the strings; they never change once shipped.

/// `400`: a product's name is empty or its price not above zero.
pub const INVALID_PRODUCT: &str = "invalid-product";
/// `400`: an order has no line, more than 50, a quantity outside 1 to 99, or a product twice.
pub const INVALID_ORDER: &str = "invalid-order";
/// `400`: an order names a product the catalogue does not hold.
pub const UNKNOWN_PRODUCT: &str = "unknown-product";
/// `400`: an order names a customer shop's copy does not hold.
pub const UNKNOWN_CUSTOMER: &str = "unknown-customer";
/// `400`: an order's products are priced in different currencies.
pub const MIXED_CURRENCIES: &str = "mixed-currencies";
/// `409`: the order is cancelled: it cannot be cancelled again or changed.
pub const ORDER_CANCELLED: &str = "order-cancelled";
/// `409`: the order is placed: its customer and lines do not change (only its status does);
/// cancel it and place a new one.
pub const ORDER_PLACED: &str = "order-placed";
