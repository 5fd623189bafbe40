use sync_runtime::ClassifyError;

#[derive(ClassifyError)]
pub enum AppError {
    #[classify(transient, retry_after = seconds)]
    Busy { seconds: u64 },
}

fn main() {}
