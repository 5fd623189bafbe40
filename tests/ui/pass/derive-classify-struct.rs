//! Structs: classified as a whole, by name or index, and delegating newtypes.

use std::time::Duration;
use sync_runtime::{ClassifyError, SyncError};

#[derive(ClassifyError)]
#[classify(transient, retry_after = r#in)]
pub struct Overloaded {
    pub r#type: String,
    pub r#in: Duration,
}

#[derive(ClassifyError)]
#[classify(transient, retry_after = 0)]
pub struct Throttled(pub Option<Duration>);

#[derive(ClassifyError)]
#[classify(transient)]
pub struct Offline;

#[derive(ClassifyError)]
#[classify(permanent)]
pub struct Invalid {
    pub field: &'static str,
}

#[derive(ClassifyError)]
pub struct Unclassified;

#[derive(ClassifyError)]
#[classify(delegate)]
pub struct Sync(pub SyncError);

#[derive(ClassifyError)]
#[classify(delegate)]
pub struct Transport {
    pub source: std::io::Error,
}

fn main() {
    let wait = Duration::from_secs(2);
    let overloaded = Overloaded {
        r#type: String::new(),
        r#in: wait,
    };
    assert_eq!(
        (overloaded.is_transient(), overloaded.retry_after()),
        (true, Some(wait))
    );
    assert_eq!(Throttled(None).retry_after(), None);
    assert!(Offline.is_transient());
    assert!(!Invalid { field: "name" }.is_transient());
    assert!(!Unclassified.is_transient());
    assert!(!Sync(SyncError::ReplayInProgress).is_transient());
    let transport = Transport {
        source: std::io::ErrorKind::ConnectionReset.into(),
    };
    assert!(transport.is_transient());
}
