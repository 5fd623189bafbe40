//! `&str`, `&[T]`, `&T`, `&Path` and `&'static str` arguments are stored owned and borrowed again for
//! the body; the local handler takes them owned.

use serde::{Deserialize, Serialize};
use sync_runtime::__private::Action;
use sync_runtime::{offline_action, ClassifyError, SyncError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tag(pub String);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub name: String,
    pub tags: Vec<Tag>,
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

#[offline_action(local = retag_locally)]
pub async fn retag(
    name: &str,
    mut tags: &[Tag],
    base: &Product,
    source: &'static str,
    log: &std::path::Path,
) -> Result<Product, AppError> {
    let _: &std::path::Path = log;
    if tags.len() > 2 {
        tags = &tags[..2];
    }
    let tags: Vec<Tag> = tags.to_vec();
    let _: &str = source;
    Ok(Product {
        name: name.to_owned(),
        tags: [base.tags.as_slice(), &tags].concat(),
    })
}

async fn retag_locally(
    name: String,
    tags: Vec<Tag>,
    base: Product,
    source: String,
    log: std::path::PathBuf,
) -> Result<Product, AppError> {
    let _ = (base, source, log);
    Ok(Product { name, tags })
}

fn main() {
    let params = RetagParams {
        name: "tea".to_owned(),
        tags: vec![Tag("a".into()), Tag("b".into()), Tag("c".into())],
        base: Product {
            name: String::new(),
            tags: vec![Tag("z".into())],
        },
        source: "ui".to_owned(),
        log: std::path::PathBuf::from("/tmp/log"),
    };
    let online = futures::executor::block_on(RetagAction::server(params.clone())).unwrap();
    assert_eq!(online.tags.len(), 3);
    let offline = futures::executor::block_on(RetagAction::local(params)).unwrap();
    assert_eq!(offline.tags.len(), 3);
    let base = Product {
        name: String::new(),
        tags: Vec::new(),
    };
    let _unpolled = retag("tea", &[], &base, "ui", std::path::Path::new("x"));
}
