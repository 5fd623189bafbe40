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

/// Serializable, but neither `Clone` nor `Debug`.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct NewProduct {
    pub name: String,
}

#[offline_action]
pub async fn add_product(tenant_id: String, product: &NewProduct) -> Result<usize, AppError> {
    Ok(tenant_id.len() + product.name.len())
}

fn main() {}
