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

#[derive(Clone, Debug)]
pub struct Product {
    pub name: String,
}

#[offline_action]
pub async fn add_product(name: String) -> Result<Product, AppError> {
    Ok(Product { name })
}

fn main() {
    let _ = add_product(String::new());
}
