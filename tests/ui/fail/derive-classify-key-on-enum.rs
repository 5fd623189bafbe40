use sync_runtime::ClassifyError;

#[derive(ClassifyError)]
#[classify(transient)]
pub enum AppError {
    Network,
    Timeout,
}

fn main() {}
