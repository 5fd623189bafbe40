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

#[offline_action(nmae = "products.add")]
pub async fn add_product(name: String) -> Result<usize, AppError> {
    Ok(name.len())
}

fn main() {
    let _ = add_product(String::new());
}
