use sync_runtime::{offline_action, ClassifyError, SyncError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        false
    }
}

pub trait Api {
    fn add(a: u32) -> impl std::future::Future<Output = Result<u32, AppError>>;
}

pub struct Server<T>(T);

#[offline_action]
impl<T> Api for Server<T> {
    #[offline_action]
    async fn add(a: u32) -> Result<u32, AppError> {
        Ok(a)
    }
}

fn main() {}
