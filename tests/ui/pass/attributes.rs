//! Docs and other attributes stay on the function; argument docs and `#[serde]` move to the
//! fields; `#[cfg]` applies to every generated item.

#![deny(missing_docs)]

use sync_runtime::__private::Action;
use sync_runtime::{offline_action, ClassifyError, SyncError};

/// The error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Network.
    #[error("network: {0}")]
    Network(String),
    /// Sync.
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Network(_))
    }
}

/// Sets a price.
#[offline_action(version = 2)]
#[must_use = "the price may not be set"]
#[allow(clippy::cast_possible_truncation)]
#[inline]
pub async fn set_price(
    /// The product.
    id: u64,
    /// The price in cents; missing in version 1 calls.
    #[serde(default)]
    cents: u64,
) -> Result<u32, AppError> {
    #![allow(unused_mut)]
    let mut price = cents as u32;
    price += id as u32;
    Ok(price)
}

/// Only in builds with an impossible cfg: nothing of it may remain.
#[cfg(any())]
#[offline_action]
pub async fn never(id: NoSuchType) -> Result<(), AppError> {
    unreachable!()
}

/// A cfg after the attribute is copied to the generated items.
#[offline_action]
#[cfg(any())]
pub async fn never_either(id: NoSuchType) -> Result<(), AppError> {
    unreachable!()
}

fn main() {
    let params: SetPriceParams = serde_json::from_str(r#"{"id":1}"#).unwrap();
    assert_eq!(params.cents, 0);
    assert_eq!(
        futures::executor::block_on(SetPriceAction::server(params)).unwrap(),
        1
    );
    let _unpolled = set_price(1, 2);
}
