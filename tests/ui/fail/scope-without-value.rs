use sync_runtime::{offline_action, SyncError};

#[offline_action(scope)]
pub async fn rename(id: u64, name: String) -> Result<(), SyncError> {
    let _ = (id, name);
    Ok(())
}

#[offline_action(scope = id.await)]
pub async fn archive(id: u64) -> Result<(), SyncError> {
    let _ = id;
    Ok(())
}

fn main() {}
