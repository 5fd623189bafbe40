//! Borrows inside argument types (`Option<&str>`, `&[&str]`, `Vec<&str>`, tuples): the
//! parameters struct owns them (`Option<String>`, `Vec<String>`...), callers pass what they
//! passed before, and the body sees the types it was written for.

use serde::{Deserialize, Serialize};
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tag(pub String);

#[offline_action(query)]
pub async fn search(
    query: Option<&str>,
    tags: &[&str],
    mut pairs: Vec<(&str, u32)>,
    chosen: Option<&Tag>,
    all: &Vec<&Tag>,
) -> Result<String, AppError> {
    pairs.push(("z", 0));
    let query: Option<&str> = query;
    let tags: &[&str] = tags;
    let chosen: Option<&Tag> = chosen;
    let all: &Vec<&Tag> = all;
    Ok(format!("{query:?} {tags:?} {pairs:?} {chosen:?} {}", all.len()))
}

fn main() {
    let tag = Tag("x".into());
    // Callers pass exactly what the signature says.
    let all = vec![&tag];
    drop(search(Some("q"), &["a", "b"], vec![("p", 1)], Some(&tag), &all));

    // The parameters struct owns everything.
    let params = SearchParams {
        query: Some("q".to_owned()),
        tags: vec!["a".to_owned(), "b".to_owned()],
        pairs: vec![("p".to_owned(), 1)],
        chosen: None,
        all: vec![tag.clone()],
    };
    let json = serde_json::to_string(&params).unwrap();
    assert_eq!(
        json,
        r#"{"query":"q","tags":["a","b"],"pairs":[["p",1]],"chosen":null,"all":["x"]}"#
    );
    let answer = futures::executor::block_on(SearchAction::server(params)).unwrap();
    assert_eq!(answer, r#"Some("q") ["a", "b"] [("p", 1), ("z", 0)] None 1"#);
}
