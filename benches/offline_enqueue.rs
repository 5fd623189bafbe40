//! Row 2 of BENCHMARKS.md: how fast calls are queued offline into SQLite, against the raw
//! rusqlite inserts a user would otherwise write.
//!
//! - ours: an `#[offline_action]` mutation called while offline: the generated local stub
//!   runs, then one `Store::apply` enqueues the call (one SQLite transaction).
//! - raw, plain table: one autocommit `INSERT` per call into a queue table with the same
//!   columns (`seq` autoincrement, `id` unique), of the same row (a fresh uuid v7 and the same
//!   parameters JSON, serialized in the loop as the user would).
//! - raw, the store's schema: the same `INSERT` into a file the store created, so its
//!   indexes and trigger run too: what is left is the runtime's own cost.
//!
//! All three files are in WAL mode with `synchronous = NORMAL`, the store's settings.
//!
//! Run: `cargo bench --bench offline_enqueue`

#[path = "support/mod.rs"]
mod support;

use futures::executor::block_on;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{compare, Plan, Variant};
use sync_runtime::store::SqliteStore;
use sync_runtime::{offline_action, ClassifyError, ManualConnectivity, SyncError, SyncService};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("network")]
    Network,
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for BenchError {
    fn is_transient(&self) -> bool {
        matches!(self, BenchError::Network)
    }
}

/// Saves a note on the server. Offline it is queued (no local handler: the caller gets
/// `SyncError::Queued`).
#[offline_action]
pub async fn save_note(id: String, text: String) -> Result<(), BenchError> {
    let _ = (id, text);
    Err(BenchError::Network)
}

/// The same parameters as `save_note`, for the raw baseline's JSON.
#[derive(Serialize)]
struct SaveNote<'a> {
    id: &'a str,
    text: &'a str,
}

const TEXT: &str =
    "Call the supplier about the late delivery of shirts, then update the stock counts.";

const PLAIN_QUEUE: &str = "
CREATE TABLE queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT
);";

fn open_raw(path: &Path) -> Connection {
    let connection = Connection::open(path).expect("open");
    connection
        .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .expect("WAL");
    connection
        .pragma_update(None, "synchronous", "NORMAL")
        .expect("synchronous");
    connection
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One call queued by hand: mint an id, serialize the parameters, insert the row.
fn raw_enqueue(connection: &Connection, note: &str) {
    let id = uuid::Uuid::now_v7().to_string();
    let params = serde_json::to_string(&SaveNote {
        id: note,
        text: TEXT,
    })
    .expect("json");
    let now = now_millis();
    connection
        .prepare_cached(
            "INSERT INTO queue (id, name, version, kind, params, timestamp, retries, next_attempt_at, last_error) \
             VALUES (?1, 'save_note', 1, 'mutation', ?2, ?3, 0, ?3, NULL)",
        )
        .expect("prepare")
        .execute(params![id, params, now])
        .expect("insert");
}

fn main() {
    let plan = Plan::from_args(30, Duration::from_millis(100));
    let dir = tempfile::tempdir().expect("temp dir");

    let service = SyncService::builder()
        .store(SqliteStore::open(dir.path().join("ours.sqlite3")).expect("store"))
        .connectivity(ManualConnectivity::new(false))
        .build()
        .expect("no duplicate action names");

    let plain = open_raw(&dir.path().join("plain.sqlite3"));
    plain.execute_batch(PLAIN_QUEUE).expect("schema");

    let same_schema_path = dir.path().join("same-schema.sqlite3");
    drop(SqliteStore::open(&same_schema_path).expect("the store creates its schema"));
    let same_schema = open_raw(&same_schema_path);

    let results = compare(
        "offline enqueue into SQLite (one transaction per call)",
        plan,
        vec![
            Variant::new("raw rusqlite INSERT, plain queue table", |n| {
                for _ in 0..n {
                    raw_enqueue(&plain, "note-1");
                }
            }),
            Variant::new("#[offline_action] called offline (stub + enqueue)", |n| {
                block_on(service.scope(async {
                    for _ in 0..n {
                        let result = save_note("note-1".into(), TEXT.into()).await;
                        debug_assert!(matches!(
                            result,
                            Err(BenchError::Sync(SyncError::Queued { .. }))
                        ));
                    }
                }))
            }),
            Variant::new("raw rusqlite INSERT, the store's schema", |n| {
                for _ in 0..n {
                    raw_enqueue(&same_schema, "note-1");
                }
            }),
        ],
    );
    if plan.full && results.len() == 3 {
        let raw = &results[0];
        let ours = &results[1];
        println!(
            "  => ours {:.0} calls/s vs raw {:.0} inserts/s: {:.3}x the raw rate (target >= 0.9x); vs the store's schema raw: {:.3}x",
            1.0 / ours.per_iter.as_secs_f64(),
            1.0 / raw.per_iter.as_secs_f64(),
            1.0 / ours.ratio,
            results[2].ratio / ours.ratio,
        );
    }
    if results.len() == 3 {
        let queued = block_on(service.queued()).expect("read the queue").len();
        assert!(queued > 0, "the offline calls were queued");
    }
}
