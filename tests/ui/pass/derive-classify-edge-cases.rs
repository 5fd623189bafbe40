//! An empty enum, keys spread over several attributes, raw identifiers and a type from a
//! `macro_rules!`.

use std::time::Duration;
use sync_runtime::ClassifyError;

#[derive(ClassifyError)]
pub enum Never {}

#[derive(ClassifyError)]
pub enum Spread {
    #[classify(transient)]
    #[classify(retry_after = r#type)]
    r#Busy { r#type: Duration },
    #[classify()]
    Plain,
}

macro_rules! error_type {
    ($name:ident, $wait:ty) => {
        #[derive(ClassifyError)]
        pub enum $name {
            #[classify(transient, retry_after = 0)]
            Busy($wait),
        }
    };
}

error_type!(FromMacro, Option<Duration>);

fn main() {
    let wait = Duration::from_secs(1);
    assert_eq!(Spread::Busy { r#type: wait }.retry_after(), Some(wait));
    assert!(!Spread::Plain.is_transient());
    assert_eq!(FromMacro::Busy(Some(wait)).retry_after(), Some(wait));
    let _ = |never: &Never| never.is_transient();
}
