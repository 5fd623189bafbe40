use sync_runtime::{offline_action, SyncError};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Product {
    pub id: u64,
}

#[offline_action(scope = product)]
pub async fn rename(product: Product, name: String) -> Result<(), SyncError> {
    let _ = (product, name);
    Ok(())
}

fn main() {}
