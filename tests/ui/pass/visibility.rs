//! The generated types take the function's visibility, so they are usable where it is.

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

mod outer {
    pub mod inner {
        use super::super::{offline_action, AppError};

        #[offline_action]
        pub async fn public(id: u64) -> Result<u64, AppError> {
            Ok(id)
        }

        #[offline_action]
        pub(crate) async fn crate_wide(id: u64) -> Result<u64, AppError> {
            Ok(id)
        }

        #[offline_action]
        pub(super) async fn parent_only(id: u64) -> Result<u64, AppError> {
            Ok(id)
        }

        #[offline_action]
        async fn private(id: u64) -> Result<u64, AppError> {
            Ok(id)
        }

        pub(crate) fn use_private() -> u64 {
            let _unpolled = private(1);
            PrivateParams { id: 1 }.id
        }
    }

    pub fn use_parent_only() -> u64 {
        let _unpolled = inner::parent_only(1);
        inner::ParentOnlyParams { id: 2 }.id
    }
}

fn main() {
    let _ = outer::inner::PublicParams { id: 1 };
    let _ = outer::inner::PublicAction;
    let _ = outer::inner::CrateWideParams { id: 1 };
    let _ = outer::inner::CrateWideAction;
    let _unpolled = (outer::inner::public(1), outer::inner::crate_wide(1));
    assert_eq!(outer::use_parent_only(), 2);
    assert_eq!(outer::inner::use_private(), 1);
}
