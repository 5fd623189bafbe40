//! Error types apps already use: `anyhow::Result<T>` and `Box<dyn Error + Send + Sync>`,
//! spelled in full or through an alias, with `?` on other errors in the body.

use sync_runtime::__private::Action;
use sync_runtime::offline_action;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[offline_action(query)]
pub async fn word_count(text: String) -> anyhow::Result<usize> {
    let parsed: u32 = "7".parse()?;
    Ok(text.split_whitespace().count() + parsed as usize)
}

#[offline_action]
pub async fn rename(id: u64, name: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    std::fs::metadata("/")?;
    Ok(format!("{id}: {name}"))
}

#[offline_action]
pub async fn remove(id: u64) -> Result<(), BoxError> {
    if id == 0 {
        return Err("no product 0".into());
    }
    Ok(())
}

fn main() {
    let counted = futures::executor::block_on(WordCountAction::server(WordCountParams {
        text: "a b".into(),
    }));
    assert_eq!(counted.unwrap(), 9);
    let renamed = futures::executor::block_on(RenameAction::server(RenameParams {
        id: 1,
        name: "hat".into(),
    }));
    assert_eq!(renamed.unwrap(), "1: hat");
    let removed = futures::executor::block_on(RemoveAction::server(RemoveParams { id: 0 }));
    assert_eq!(removed.unwrap_err().to_string(), "no product 0");
}
