use sync_runtime::ClassifyError;

#[derive(Debug)]
pub struct ParseError;

#[derive(ClassifyError)]
pub enum AppError {
    #[classify(delegate)]
    Parse(ParseError),
}

fn main() {}
