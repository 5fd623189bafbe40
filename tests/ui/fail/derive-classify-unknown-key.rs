use sync_runtime::{offline_action, ClassifyError, SyncError};

#[derive(Debug, thiserror::Error, ClassifyError)]
pub enum AppError {
    #[error("network")]
    #[classify(transeint)]
    Network,
    #[error(transparent)]
    #[classify(delegate)]
    Sync(#[from] SyncError),
}

#[offline_action]
pub async fn save(text: String) -> Result<usize, AppError> {
    Ok(text.len())
}

fn main() {}
