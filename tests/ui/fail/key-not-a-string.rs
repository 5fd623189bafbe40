use sync_runtime::{offline_action, ClassifyError, SyncError};

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

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Product {
    pub id: String,
    pub tenant_id: String,
}

#[offline_action(store_in = "products", key = |p: &Product| p.id.len())]
pub async fn add_product(product: Product) -> Result<Product, AppError> {
    Ok(product)
}

fn main() {
    let _ = add_product;
}
