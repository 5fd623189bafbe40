use std::time::Duration;
use sync_runtime::ClassifyError;

#[derive(ClassifyError)]
pub enum AppError {
    #[classify(transient, retry_after = wait)]
    #[classify(retry_after = wait)]
    Busy { wait: Duration },
}

fn main() {}
