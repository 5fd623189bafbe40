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

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point(pub i32, pub i32);

// `$crate` paths cannot be written into serde's string bounds; such arguments keep serde's
// own checks.
macro_rules! move_action {
    () => {
        #[offline_action]
        pub async fn move_point(
            point: $crate::Point,
            by: &$crate::Point,
        ) -> Result<$crate::Point, AppError> {
            Ok($crate::Point(point.0 + by.0, point.1 + by.1))
        }
    };
}

move_action!();

fn main() {
    let text =
        futures::executor::block_on(EchoStrAction::server(EchoStrParams { value: "hi".into() }));
    assert_eq!(text.unwrap(), "hi");
    let bytes =
        futures::executor::block_on(EchoBytesAction::server(EchoBytesParams { value: vec![1] }));
    assert_eq!(bytes.unwrap(), [1]);
    let moved = futures::executor::block_on(MovePointAction::server(MovePointParams {
        point: Point(1, 2),
        by: Point(1, 1),
    }));
    assert_eq!(moved.unwrap(), Point(2, 3));
}
