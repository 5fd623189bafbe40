use std::time::Duration;
use sync_runtime::ClassifyError;

#[derive(ClassifyError)]
pub enum AppError {
    #[classify(transient, retry_after = wiat)]
    Busy {
        wait: Option<Duration>,
        reason: String,
    },
}

fn main() {}
