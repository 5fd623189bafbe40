//! `scope = ...` computes each call's ordering scope from its arguments, by reference: a plain
//! argument, a field, a `format!`, a literal; borrowed arguments too. Without it, the global
//! scope.

use serde::{Deserialize, Serialize};
use sync_runtime::__private::Action;
use sync_runtime::{offline_action, ClassifyError, SyncError};

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

#[offline_action(scope = product_id)]
pub async fn set_stock(product_id: String, count: u32) -> Result<u32, AppError> {
    let _ = product_id;
    Ok(count)
}

#[offline_action(scope = product.id)]
pub async fn rename(product: Product, name: &str) -> Result<String, AppError> {
    Ok(format!("{}: {name}", product.id))
}

#[offline_action(scope = format!("tenant:{tenant}/product:{}", product.id))]
pub async fn archive(tenant: &str, product: &Product) -> Result<(), AppError> {
    let _ = (tenant, product);
    Ok(())
}

#[offline_action(scope = "settings")]
pub async fn save_settings(theme: String) -> Result<(), AppError> {
    let _ = theme;
    Ok(())
}

#[offline_action(scope = id, query)]
pub async fn product_name(id: u64) -> Result<String, AppError> {
    Ok(id.to_string())
}

#[offline_action]
pub async fn ping() -> Result<(), AppError> {
    Ok(())
}

fn main() {
    let product = Product {
        id: 7,
        name: "Lamp".into(),
    };
    assert_eq!(
        SetStockAction::scope(&SetStockParams {
            product_id: "p-1".into(),
            count: 3,
        }),
        "p-1"
    );
    let params = RenameParams {
        product: product.clone(),
        name: "Desk lamp".into(),
    };
    assert_eq!(RenameAction::scope(&params), "7");
    // The scope borrowed its arguments: they are still there.
    assert_eq!(params.product.name, "Lamp");
    assert_eq!(
        ArchiveAction::scope(&ArchiveParams {
            tenant: "acme".into(),
            product,
        }),
        "tenant:acme/product:7"
    );
    assert_eq!(
        SaveSettingsAction::scope(&SaveSettingsParams {
            theme: "dark".into()
        }),
        "settings"
    );
    assert_eq!(ProductNameAction::scope(&ProductNameParams { id: 9 }), "9");
    assert_eq!(PingAction::scope(&PingParams {}), "");
}
