//! `crate = path` for a crate that re-exports the runtime under another name.

mod sdk {
    pub use ::sync_runtime as sync;
}

use sdk::sync::ClassifyError;

#[derive(Debug, ClassifyError)]
#[classify(crate = crate::sdk::sync)]
pub enum AppError {
    #[classify(transient)]
    Network,
    #[classify(delegate)]
    Sync(sdk::sync::SyncError),
}

fn main() {
    assert!(AppError::Network.is_transient());
    assert!(!AppError::Sync(sdk::sync::SyncError::AlreadyConfigured).is_transient());
}
