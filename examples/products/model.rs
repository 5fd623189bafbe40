//! The wire types the server and the client share (in a real app, a small crate both
//! depend on).

use serde::{Deserialize, Serialize};

/// A product, as the server stores it and both sides exchange it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub price_cents: i64,
    /// When the user whose change this product last took acted, in milliseconds since the
    /// Unix epoch: what last-write-wins compares.
    pub updated_at: u64,
}

/// A product about to be created. The client picks its id, so a product created offline
/// keeps the same id locally, in the queue and on the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProduct {
    pub id: String,
    pub name: String,
    pub price_cents: i64,
}

impl NewProduct {
    pub fn new(name: &str, price_cents: i64) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            price_cents,
        }
    }
}

/// The body of `POST /products`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateProduct {
    pub tenant_id: String,
    pub id: String,
    pub name: String,
    pub price_cents: i64,
}

/// The body of `PUT /products/{id}/price`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PriceChange {
    pub price_cents: i64,
}

/// The body of `POST /products/{id}/stock`: units received, added to the product's stock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StockDelivery {
    pub quantity: i64,
}

/// The body of every error response: `{"error": "what is wrong"}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// Why the server refuses a product; the client's local handlers ask the same, so an
/// invalid change is refused at once offline too.
pub fn invalid(name: &str, price_cents: i64) -> Option<String> {
    if name.trim().is_empty() {
        Some("a product needs a name".to_owned())
    } else if price_cents < 0 {
        Some(format!(
            "a price cannot be negative (got {} cents)",
            price_cents
        ))
    } else {
        None
    }
}

/// `250` → `"2.50"`.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}
