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

#[offline_action(local = rename_locally)]
pub async fn rename(id: u64, name: String) -> Result<String, AppError> {
    Ok(format!("{id}:{name}"))
}

pub async fn rename_locally(id: u64, name: String) -> Option<String> {
    Some(format!("{id}:{name}"))
}

fn main() {
    let _ = rename(1, String::new());
}
