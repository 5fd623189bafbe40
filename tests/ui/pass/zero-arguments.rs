//! Actions without arguments: a query, a mutation, and one with a local handler.

use sync_runtime::__private::Action;
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

#[offline_action(query)]
pub async fn server_time() -> Result<u64, AppError> {
    Ok(42)
}

#[offline_action]
pub async fn logout() -> Result<(), AppError> {
    Ok(())
}

#[offline_action(local = count_locally)]
pub async fn count() -> Result<u32, AppError> {
    Ok(7)
}

async fn count_locally() -> Result<u32, AppError> {
    Ok(0)
}

fn main() {
    assert_eq!(serde_json::to_string(&ServerTimeParams {}).unwrap(), "{}");
    let _: LogoutParams = serde_json::from_str("{}").unwrap();
    assert_eq!(
        futures::executor::block_on(CountAction::local(CountParams {})).unwrap(),
        0
    );
    assert_eq!(
        futures::executor::block_on(ServerTimeAction::server(ServerTimeParams {})).unwrap(),
        42
    );
    let _unpolled = (server_time(), logout(), count());
}
