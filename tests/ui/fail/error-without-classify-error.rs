use sync_runtime::{offline_action, SyncError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("network: {0}")]
    Network(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

#[offline_action]
pub async fn add_product(name: String) -> Result<usize, AppError> {
    Ok(name.len())
}

fn main() {
    let _ = add_product(String::new());
}
