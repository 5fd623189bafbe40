use sync_runtime::ClassifyError;

#[derive(ClassifyError)]
pub enum AppError {
    #[classify(transient, permanent)]
    Network,
}

fn main() {}
