//! What a caller sees when the local store fails: a clear error through the action's own
//! `Result`, and nothing half-written or lost.

use futures::executor::block_on;
use sync_runtime::{
    offline_action, ClassifyError, ManualConnectivity, SqliteOptions, SqliteStore, StoreError,
    SyncError, SyncService,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("offline")]
    Offline,
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Offline)
    }
}

/// Saves a large blob.
#[offline_action]
pub async fn save_blob(blob: String) -> Result<(), AppError> {
    drop(blob);
    Err(AppError::Offline)
}

fn service(store: SqliteStore) -> SyncService {
    SyncService::builder()
        .store(store)
        .connectivity(ManualConnectivity::new(false))
        .build()
        .unwrap()
}

#[test]
fn a_full_disk_is_reported_to_the_caller_and_keeps_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.sqlite3");
    let store = SqliteStore::open_with(&path, SqliteOptions::new().max_size(256 * 1024)).unwrap();
    let service = service(store);
    let blob = "x".repeat(40 * 1024);
    let mut queued = 0;
    let error = loop {
        match block_on(service.scope(save_blob(blob.clone()))) {
            Err(AppError::Sync(SyncError::Queued { .. })) => queued += 1,
            Err(other) => break other,
            Ok(()) => unreachable!("the body always fails"),
        }
        assert!(queued < 100, "the size limit never hit");
    };
    assert!(
        matches!(
            error,
            AppError::Sync(SyncError::Store(StoreError::Full { .. }))
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("full"), "{error}");
    assert!(queued > 0);
    drop(service);

    // Everything queued before the disk filled up is still there.
    let reopened = service_reopened(&path);
    assert_eq!(block_on(reopened.queued()).unwrap().len(), queued);
}

fn service_reopened(path: &std::path::Path) -> SyncService {
    service(SqliteStore::open(path).unwrap())
}

#[test]
fn a_read_only_store_refuses_offline_calls_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.sqlite3");
    drop(SqliteStore::open(&path).unwrap());
    let store = SqliteStore::open_with(&path, SqliteOptions::new().read_only(true)).unwrap();
    let service = service(store);
    let error = block_on(service.scope(save_blob("b".into()))).unwrap_err();
    assert!(
        matches!(
            error,
            AppError::Sync(SyncError::Store(StoreError::Backend { .. }))
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("read-only"), "{error}");
}

#[test]
fn a_damaged_database_file_is_refused_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.sqlite3");
    std::fs::write(&path, b"this is not a database, just some bytes on disk").unwrap();
    let error = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(error, StoreError::Incompatible { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("damaged.sqlite3"), "{error}");
}
