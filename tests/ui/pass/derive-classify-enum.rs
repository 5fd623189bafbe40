//! Every form on an enum, used as the error of an `#[offline_action]` fn; one import brings
//! both the trait and the derive.

use std::time::Duration;
use sync_runtime::ClassifyError;
use sync_runtime::{offline_action, SyncError};

#[derive(Debug, thiserror::Error, ClassifyError)]
pub enum AppError {
    #[error("network")]
    #[classify(transient)]
    Network,
    #[error("busy")]
    #[classify(transient, retry_after = wait)]
    Busy {
        wait: Option<Duration>,
        reason: String,
    },
    #[error("rate limited")]
    #[classify(transient, retry_after = 1)]
    RateLimited(u16, Duration, String),
    #[error("rejected")]
    Rejected(String),
    #[error("conflict")]
    #[classify(permanent)]
    Conflict { product: u64 },
    #[error(transparent)]
    #[classify(delegate)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    #[classify(delegate)]
    Sync {
        #[from]
        source: SyncError,
    },
}

#[offline_action]
pub async fn save(text: String) -> Result<usize, AppError> {
    Ok(text.len())
}

fn main() {
    let wait = Duration::from_secs(9);
    let busy = AppError::Busy {
        wait: Some(wait),
        reason: String::new(),
    };
    assert!(busy.is_transient());
    assert_eq!(busy.retry_after(), Some(wait));
    assert_eq!(
        AppError::RateLimited(429, wait, String::new()).retry_after(),
        Some(wait)
    );
    assert!(!AppError::Conflict { product: 1 }.is_transient());
    assert!(AppError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)).is_transient());
    assert!(!AppError::from(SyncError::ReplayInProgress).is_transient());
    let _ = save;
}
