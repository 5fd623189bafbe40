//! The design's write: a mutation answered offline by the user's handler.

use serde::{Deserialize, Serialize};
use sync_runtime::__private::Action;
use sync_runtime::{offline_action, ActionKind, ClassifyError, SyncError};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewProduct {
    pub name: String,
    pub price_cents: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub price_cents: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("network: {0}")]
    Network(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Network(_))
    }
}

/// Adds a product to a tenant's catalog.
#[offline_action(local = add_product_locally)]
pub async fn add_product(tenant_id: String, product: NewProduct) -> Result<Product, AppError> {
    let _ = tenant_id;
    Ok(Product {
        id: 1,
        name: product.name,
        price_cents: product.price_cents,
    })
}

/// Answers offline with a provisional product.
pub async fn add_product_locally(
    tenant_id: String,
    product: NewProduct,
) -> Result<Product, AppError> {
    let _ = tenant_id;
    Ok(Product {
        id: 0,
        name: product.name,
        price_cents: product.price_cents,
    })
}

fn main() {
    assert_eq!(AddProductAction::NAME, "add_product");
    assert_eq!(AddProductAction::KIND, ActionKind::Mutation);
    let params = AddProductParams {
        tenant_id: "acme".to_owned(),
        product: NewProduct {
            name: "tea".to_owned(),
            price_cents: 250,
        },
    };
    let local = futures::executor::block_on(AddProductAction::local(params.clone())).unwrap();
    assert_eq!((local.id, local.name.as_str()), (0, "tea"));
    let server = futures::executor::block_on(AddProductAction::server(params)).unwrap();
    assert_eq!(server.id, 1);
}
