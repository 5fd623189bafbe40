//! `name`, `version` and `params` override the defaults.

use serde::{Deserialize, Serialize};
use sync_runtime::__private::Action;
use sync_runtime::{offline_action, ClassifyError, SyncError};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Order {
    pub lines: Vec<(String, u32)>,
}

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

#[offline_action(name = "orders/place.v2", version = 3, params = PlaceOrderArgs)]
pub async fn place_order(customer_id: u64, order: Order) -> Result<u64, AppError> {
    Ok(customer_id + order.lines.len() as u64)
}

fn main() {
    assert_eq!(PlaceOrderAction::NAME, "orders/place.v2");
    assert_eq!(PlaceOrderAction::VERSION, 3);
    let args = PlaceOrderArgs {
        customer_id: 1,
        order: Order {
            lines: vec![("tea".into(), 2)],
        },
    };
    assert_eq!(
        futures::executor::block_on(PlaceOrderAction::server(args)).unwrap(),
        2
    );
}
