use sync_runtime::{ClassifyError, SyncError};

#[derive(ClassifyError)]
pub enum AppError {
    #[classify(delegate)]
    Sync(SyncError, String),
}

fn main() {}
