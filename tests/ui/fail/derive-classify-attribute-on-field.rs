use std::time::Duration;
use sync_runtime::ClassifyError;

#[derive(ClassifyError)]
pub enum AppError {
    #[classify(transient)]
    Busy {
        #[classify(retry_after)]
        wait: Duration,
    },
}

fn main() {}
