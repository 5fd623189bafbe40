//! `crate = path` for a crate that re-exports the runtime under another name.

mod sdk {
    pub use ::sync_runtime as sync;
}

use sdk::sync::{offline_action, ClassifyError, SyncError};

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

#[offline_action(crate = crate::sdk::sync, query)]
pub async fn greet(name: &str) -> Result<String, AppError> {
    Ok(format!("hello, {name}"))
}

fn main() {
    use sdk::sync::__private::Action;
    let params = GreetParams {
        name: "ada".to_owned(),
    };
    assert_eq!(
        futures::executor::block_on(GreetAction::server(params)).unwrap(),
        "hello, ada"
    );
}
