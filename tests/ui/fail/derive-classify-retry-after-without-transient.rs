use std::time::Duration;
use sync_runtime::ClassifyError;

#[derive(ClassifyError)]
pub enum AppError {
    #[classify(retry_after = 0)]
    Busy(Duration),
}

fn main() {}
