//! Owned argument types of many shapes: std collections, options, tuples, arrays, `'static`
//! lifetimes, paths with generics.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sync_runtime::__private::Action;
use sync_runtime::{offline_action, ClassifyError, SyncError};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
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

#[offline_action(query)]
pub async fn search(
    filters: HashMap<String, Vec<u32>>,
    order: Option<(String, bool)>,
    window: [u16; 2],
    label: Cow<'static, str>,
    sorted: BTreeMap<u8, std::string::String>,
    cursor: Option<Page<u64>>,
) -> Result<Page<(u32, String)>, AppError> {
    let _ = (order, window, sorted, cursor);
    Ok(Page {
        items: filters
            .into_values()
            .flatten()
            .map(|n| (n, label.to_string()))
            .collect(),
        next: None,
    })
}

fn main() {
    let params = SearchParams {
        filters: HashMap::from([("a".to_owned(), vec![1, 2])]),
        order: None,
        window: [0, 10],
        label: Cow::Borrowed("x"),
        sorted: BTreeMap::new(),
        cursor: None,
    };
    let page = futures::executor::block_on(SearchAction::server(params)).unwrap();
    assert_eq!(page.items.len(), 2);
}
