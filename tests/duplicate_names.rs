//! Two actions registered under one name are reported with both locations, never silently
//! merged.

use sync_runtime::{offline_action, ClassifyError, SyncError, SyncService};

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct AppError(#[from] SyncError);

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        false
    }
}

mod orders {
    use super::AppError;

    #[sync_runtime::offline_action]
    pub async fn save(total: u32) -> Result<u32, AppError> {
        Ok(total)
    }
}

/// Named like `orders::save` on purpose.
#[offline_action(name = "save")]
pub async fn save_draft(text: String) -> Result<usize, AppError> {
    Ok(text.len())
}

#[test]
fn building_a_service_names_both_definitions() {
    let err = SyncService::builder().build().unwrap_err();
    let SyncError::DuplicateAction {
        name,
        first,
        second,
    } = &err
    else {
        panic!("expected DuplicateAction, got {err:?}");
    };
    assert_eq!(name, "save");
    assert_ne!(first, second);
    for location in [first, second] {
        assert!(
            location.starts_with("tests/duplicate_names.rs:"),
            "{location}"
        );
    }
    let message = err.to_string();
    assert!(message.contains("registered twice"), "{message}");
    assert!(
        message.contains(first.as_str()) && message.contains(second.as_str()),
        "{message}"
    );
}

#[test]
fn calling_an_action_reports_the_duplicate_instead_of_running() {
    let err = futures::executor::block_on(save_draft("hi".into())).unwrap_err();
    assert!(
        matches!(err, AppError(SyncError::DuplicateAction { .. })),
        "{err:?}"
    );
    let err = futures::executor::block_on(orders::save(3)).unwrap_err();
    assert!(
        matches!(err, AppError(SyncError::DuplicateAction { .. })),
        "{err:?}"
    );
}
