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

pub struct Api {
    pub base: u32,
}

#[offline_action]
impl Api {
    #[offline_action]
    pub async fn add(&self, a: u32) -> Result<u32, AppError> {
        Ok(self.base + a)
    }
}

fn main() {
    let _ = Api { base: 1 }.add(2);
}
