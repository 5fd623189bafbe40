//! Actions written by a `macro_rules!` macro, whose `$ty` fragments reach the attribute
//! wrapped in invisible groups.

use sync_runtime::__private::Action;
use sync_runtime::{offline_action, ClassifyError, SyncError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("network: {0}")]
    Network(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Network(_))
    }
}

macro_rules! echo_action {
    ($name:ident, $arg:ty, $out:ty) => {
        #[offline_action(query)]
        pub async fn $name(value: $arg) -> Result<$out, AppError> {
            Ok(value.to_owned())
        }
    };
}

echo_action!(echo_str, &str, String);
echo_action!(echo_bytes, &[u8], Vec<u8>);

fn main() {
    let text = futures::executor::block_on(EchoStrAction::server(EchoStrParams { value: "hi".into() }));
    assert_eq!(text.unwrap(), "hi");
    let bytes = futures::executor::block_on(EchoBytesAction::server(EchoBytesParams { value: vec![1] }));
    assert_eq!(bytes.unwrap(), [1]);
}
