use sync_runtime::{offline_action, SyncError};

#[offline_action(scope = product_id)]
pub async fn rename(id: u64, name: String) -> Result<(), SyncError> {
    let _ = (id, name);
    Ok(())
}

fn main() {}
