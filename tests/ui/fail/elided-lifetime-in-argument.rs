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

use std::borrow::Cow;

#[offline_action]
pub async fn rename(name: Cow<'_, str>) -> Result<String, AppError> {
    Ok(name.into_owned())
}

fn main() {
    let _ = rename(Cow::Borrowed("x"));
}
