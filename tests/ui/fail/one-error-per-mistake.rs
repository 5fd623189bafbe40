//! Three mistakes in one signature: three errors, each on its type.

use sync_runtime::offline_action;

pub struct NewProduct {
    pub name: String,
}

pub struct Product {
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("failed")]
pub struct AppError;

#[offline_action]
pub async fn add_product(product: NewProduct) -> Result<Product, AppError> {
    Ok(Product { name: product.name })
}

fn main() {}
