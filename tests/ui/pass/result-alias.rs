//! A `Result` alias as the return type, with `?` and early `return` in the body.

use serde::{Deserialize, Serialize};
use sync_runtime::__private::Action;
use sync_runtime::{offline_action, ClassifyError, SyncError};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Archived {
    pub id: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("network: {0}")]
    Network(String),
    #[error("bad input: {0}")]
    Parse(#[from] std::num::ParseIntError),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Network(_))
    }
}

pub type AppResult<T> = Result<T, AppError>;

async fn lookup(id: &str) -> AppResult<u64> {
    Ok(id.parse::<u64>()?)
}

#[offline_action]
pub async fn archive(id: String) -> AppResult<Archived> {
    if id.is_empty() {
        return Err(AppError::Network("no id".to_owned()));
    }
    let id = lookup(&id).await?;
    Ok(Archived { id })
}

fn main() {
    let run = |id: &str| {
        futures::executor::block_on(ArchiveAction::server(ArchiveParams { id: id.to_owned() }))
    };
    assert_eq!(run("12").unwrap().id, 12);
    assert!(matches!(run("x"), Err(AppError::Parse(_))));
    assert!(matches!(run(""), Err(AppError::Network(_))));
}
