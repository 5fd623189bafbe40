use sync_runtime::ClassifyError;

#[derive(ClassifyError)]
pub union AppError {
    code: u32,
    signal: i32,
}

fn main() {}
