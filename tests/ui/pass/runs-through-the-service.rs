//! Calls go through the sync service: online the body runs, and the registration is found by
//! name.

use serde::{Deserialize, Serialize};
use sync_runtime::{offline_action, ClassifyError, MemoryStore, Registry, SyncError, SyncService};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub text: String,
}

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
pub async fn save_note(text: &str) -> Result<Note, AppError> {
    Ok(Note {
        text: text.to_uppercase(),
    })
}

fn main() {
    let registration = Registry::global().unwrap().get("save_note").unwrap();
    assert_eq!(registration.version, 1);
    assert!(registration.file.ends_with("runs-through-the-service.rs"));
    assert_eq!(registration.line, 27);
    let service = SyncService::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let note = futures::executor::block_on(service.scope(save_note("hi"))).unwrap();
    assert_eq!(note.text, "HI");
}
