use sync_runtime::ClassifyError;

#[derive(ClassifyError)]
#[classify(delegate)]
pub struct Context<E>(E);

fn main() {
    assert!(Context(String::new()).is_transient());
}
