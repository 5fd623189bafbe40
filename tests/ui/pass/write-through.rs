//! `store_in` writes an answer under its key; `store_all_in` makes a list answer the stored
//! records `within` selects (it may name the arguments); without `within`, the whole collection.

use sync_runtime::__private::Action;
use sync_runtime::{offline_action, ClassifyError, SyncError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        false
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Product {
    pub id: String,
    pub tenant_id: String,
}

fn product_id(product: &Product) -> String {
    product.id.clone()
}

#[offline_action(store_in = "products", key = |p: &Product| p.id.clone())]
pub async fn add_product(product: Product) -> Result<Product, AppError> {
    Ok(product)
}

#[offline_action(query, store_all_in = "products", key = product_id, within = |p: &Product| p.tenant_id == tenant_id)]
pub async fn list_products(tenant_id: &str, mut limit: usize) -> Result<Vec<Product>, AppError> {
    limit = limit.min(10);
    Ok((0..limit)
        .map(|n| Product { id: n.to_string(), tenant_id: tenant_id.to_owned() })
        .collect())
}

#[offline_action(query, store_all_in = "tags", key = |tag: &String| tag.clone())]
pub async fn list_tags() -> Result<Vec<String>, AppError> {
    Ok(vec!["new".to_owned()])
}

fn main() {
    // Outside a service the answers pass through unchanged.
    let added = futures::executor::block_on(AddProductAction::server(AddProductParams {
        product: Product { id: "a".into(), tenant_id: "t".into() },
    }));
    assert_eq!(added.unwrap().id, "a");
    let listed = futures::executor::block_on(ListProductsAction::server(ListProductsParams {
        tenant_id: "t".into(),
        limit: 2,
    }));
    assert_eq!(listed.unwrap().len(), 2);
    let tags = futures::executor::block_on(ListTagsAction::server(ListTagsParams {}));
    assert_eq!(tags.unwrap(), ["new"]);
}
