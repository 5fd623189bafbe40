//! A lifetime parameter that no argument or return type uses (left over in real code, as in
//! `async fn add_todo<'a>(contents: String)`) is accepted; the call is queued and replayed.

use sync_runtime::__private::Action;
use sync_runtime::{offline_action, ClassifyError, ManualConnectivity, MemoryStore, SyncError, SyncService};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("network")]
    Network,
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Network)
    }
}

#[offline_action]
pub async fn add_todo<'a>(contents: String) -> Result<usize, AppError> {
    Ok(contents.len())
}

#[offline_action]
pub async fn add_tagged<'a, 'b: 'a>(contents: String, tags: Vec<String>) -> Result<usize, AppError> {
    Ok(contents.len() + tags.len())
}

fn main() {
    assert_eq!(AddTodoAction::NAME, "add_todo");
    let net = ManualConnectivity::new(false);
    let service = SyncService::builder()
        .store(MemoryStore::new())
        .connectivity(net.clone())
        .build()
        .unwrap();
    futures::executor::block_on(service.scope(async {
        assert!(matches!(add_todo("milk".into()).await, Err(AppError::Sync(SyncError::Queued { .. }))));
        assert!(add_tagged("eggs".into(), vec!["x".into()]).await.is_err());
        net.set_online(true);
        assert_eq!(add_todo("bread".into()).await.unwrap(), 5, "an online call goes after the queue drained");
    }));
    assert!(futures::executor::block_on(service.queued()).unwrap().is_empty());
}
