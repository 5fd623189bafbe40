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

pub struct Catalog;

impl Catalog {
    #[offline_action]
    pub async fn add_product(&self, name: String) -> Result<u64, AppError> {
        Ok(name.len() as u64)
    }
}

fn main() {
    let _ = Catalog.add_product(String::new());
}
