//! `mut` arguments, raw identifiers and argument names that shadow the macro's own.

use serde::{Deserialize, Serialize};
use sync_runtime::__private::Action;
use sync_runtime::{offline_action, ClassifyError, SyncError};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Item {
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

#[offline_action]
pub async fn r#move(
    mut item: Item,
    r#type: String,
    params: u8,
    mut name: &str,
) -> Result<String, AppError> {
    item.name.push_str(&r#type);
    name = name.trim();
    Ok(format!("{}:{params}:{name}", item.name))
}

fn main() {
    assert_eq!(MoveAction::NAME, "move");
    let json = r#"{"item":{"name":"box"},"type":"!","params":3,"name":" x "}"#;
    let params: MoveParams = serde_json::from_str(json).unwrap();
    assert_eq!(
        futures::executor::block_on(MoveAction::server(params)).unwrap(),
        "box!:3:x"
    );
    let _unpolled = r#move(
        Item {
            name: String::new(),
        },
        String::new(),
        0,
        "",
    );
}
