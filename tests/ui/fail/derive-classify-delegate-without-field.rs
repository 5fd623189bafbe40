use sync_runtime::ClassifyError;

#[derive(ClassifyError)]
pub enum AppError {
    #[classify(delegate)]
    Network,
}

fn main() {}
