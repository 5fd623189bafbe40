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
pub async fn rename<'a>(name: String, tags: Vec<&'a str>) -> Result<(), AppError> {
    let _ = (name, tags);
    Ok(())
}

fn main() {
    let _ = rename(String::new(), Vec::new());
}
