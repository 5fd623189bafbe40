//! The design's read: a query with two owned arguments.

use serde::{Deserialize, Serialize};
use sync_runtime::__private::Action;
use sync_runtime::{offline_action, ActionKind, ClassifyError, SyncError};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
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

/// Lists the products of one type for a tenant.
#[offline_action(query)]
pub async fn get_products(
    business_type: String,
    tenant_id: String,
) -> Result<Vec<Product>, AppError> {
    if business_type.is_empty() {
        return Err(AppError::Network(format!("no type for {tenant_id}")));
    }
    Ok(vec![Product {
        id: 1,
        name: business_type,
    }])
}

fn main() {
    assert_eq!(GetProductsAction::NAME, "get_products");
    assert_eq!(GetProductsAction::VERSION, 1);
    assert_eq!(GetProductsAction::KIND, ActionKind::Query);
    let params = GetProductsParams {
        business_type: "tea".to_owned(),
        tenant_id: "acme".to_owned(),
    };
    let json = serde_json::to_string(&params).unwrap();
    assert_eq!(json, r#"{"business_type":"tea","tenant_id":"acme"}"#);
    let _unpolled = get_products("tea".to_owned(), "acme".to_owned());
}
