//! Associated fns without a receiver, as server functions are often grouped: `#[offline_action]`
//! on the `impl` block, and on each fn to turn into an action. `Self` keeps its meaning in the
//! signature, the body and `local = Self::...`.

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
pub struct Total {
    pub value: u32,
}

#[offline_action]
impl Total {
    /// Adds on the server.
    #[offline_action(local = Self::add_locally)]
    pub async fn add(a: u32, mut b: u32, label: &str) -> Result<Self, AppError> {
        b += Self::offset();
        Ok(Self {
            value: a + b + label.len() as u32,
        })
    }

    async fn add_locally(a: u32, b: u32, label: String) -> Result<Total, AppError> {
        Ok(Total {
            value: a + b + label.len() as u32 + 1000,
        })
    }

    fn offset() -> u32 {
        10
    }

    /// Counts; a query with its own name, returning `anyhow::Result`.
    #[sync_runtime::offline_action(query, name = "totals.count")]
    pub(crate) async fn count() -> anyhow::Result<u32> {
        Ok(3)
    }
}

fn main() {
    assert_eq!(TotalAddAction::NAME, "Total::add");
    assert_eq!(TotalCountAction::NAME, "totals.count");
    let params = TotalAddParams {
        a: 1,
        b: 2,
        label: "xy".into(),
    };
    let online = futures::executor::block_on(TotalAddAction::server(params.clone())).unwrap();
    assert_eq!(online, Total { value: 15 });
    let local = futures::executor::block_on(TotalAddAction::local(params)).unwrap();
    assert_eq!(local, Total { value: 1005 });
    // Callers call the associated fns as before.
    drop(Total::add(1, 2, "x"));
    drop(Total::count());
}
