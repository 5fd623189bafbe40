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

#[offline_action]
pub async fn tag(tags: std::collections::HashMap<&str, u32>) -> Result<usize, AppError> {
    Ok(tags.len())
}

fn main() {
    let _ = tag(std::collections::HashMap::new());
}
