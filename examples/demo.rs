//! The whole story in one run: actions online, the server goes away, actions answered locally
//! and queued, the app restarts, the server comes back, the queue drains by itself, and the
//! server's data and the local data agree.
//!
//! The "server" here lives in this process behind a switch, so the demo needs no network. Its
//! handler is idempotent by action id, as a real server using the action id as an idempotency
//! key is.
//!
//! Run: `cargo run --example demo`

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use sync_runtime::store::SqliteStore;
use sync_runtime::{
    offline_action, ActionContext, ClassifyError, RetryPolicy, SyncError, SyncService,
    TokioExecutor,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot reach the server")]
    Unreachable,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Unreachable)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub id: String,
    pub text: String,
}

/// The in-process server: notes by id, and the action ids it has applied.
static SERVER_UP: AtomicBool = AtomicBool::new(true);
static SERVER: Mutex<BTreeMap<String, Note>> = Mutex::new(BTreeMap::new());
static APPLIED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn server_add(action_id: String, note: Note) -> Result<Note, AppError> {
    if !SERVER_UP.load(Ordering::SeqCst) {
        return Err(AppError::Unreachable);
    }
    let mut applied = APPLIED.lock().unwrap();
    if !applied.contains(&action_id) {
        applied.push(action_id);
        SERVER.lock().unwrap().insert(note.id.clone(), note.clone());
    }
    Ok(note)
}

/// Adds a note. Offline, `add_note_locally` answers and the call is queued.
#[offline_action(local = add_note_locally)]
pub async fn add_note(text: String) -> Result<Note, AppError> {
    if text.trim().is_empty() {
        return Err(AppError::Invalid("a note needs text".into()));
    }
    let cx = ActionContext::current().expect("inside the action");
    let note = server_add(
        cx.id().to_string(),
        Note {
            id: cx.id().to_string(),
            text,
        },
    )?;
    // Keep the server's answer locally; it replaces the optimistic copy (same key, same time).
    cx.collection::<Note>("notes")
        .put(note.id.clone(), &note)
        .await?;
    Ok(note)
}

async fn add_note_locally(text: String) -> Result<Note, AppError> {
    if text.trim().is_empty() {
        return Err(AppError::Invalid("a note needs text".into()));
    }
    let cx = ActionContext::current().expect("inside the action");
    let note = Note {
        id: cx.id().to_string(),
        text,
    };
    cx.collection::<Note>("notes")
        .put(note.id.clone(), &note)
        .await?;
    Ok(note)
}

fn start(db: &std::path::Path) -> SyncService {
    SyncService::builder()
        .store(SqliteStore::open(db).expect("the local database opens"))
        .executor(TokioExecutor::current().expect("inside tokio"))
        .retry_policy(RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            ..RetryPolicy::default()
        })
        .build()
        .expect("the service starts")
}

async fn local_notes(service: &SyncService) -> Vec<Note> {
    let notes = service
        .collection::<Note>("notes")
        .list()
        .await
        .expect("local read");
    notes.into_iter().map(|(_, note)| note).collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    let dir = std::env::temp_dir().join(format!("sync-runtime-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("client.sqlite3");
    let service = start(&db);

    println!("1. Online");
    for text in ["buy milk", "call Ana"] {
        let note = service
            .scope(add_note(text.into()))
            .await
            .expect("online add");
        println!(
            "   add_note({text:?}) -> saved on the server as {}",
            short(&note.id)
        );
    }

    println!("2. The server goes away");
    SERVER_UP.store(false, Ordering::SeqCst);
    for text in ["fix the bike", "book flights", "water plants"] {
        let note = service
            .scope(add_note(text.into()))
            .await
            .expect("answered locally");
        println!(
            "   add_note({text:?}) -> answered locally ({}), queued",
            short(&note.id)
        );
    }
    let invalid = service.scope(add_note("  ".into())).await;
    println!("   add_note(\"  \") -> {}", invalid.unwrap_err());
    let status = service.refresh_status().await.expect("status");
    println!(
        "   {} changes waiting; {} notes visible locally",
        status.pending,
        local_notes(&service).await.len()
    );

    println!("3. The app restarts (the queue is in {})", db.display());
    drop(service);
    let service = start(&db);
    let status = service.refresh_status().await.expect("status");
    println!("   after restart: {} changes waiting", status.pending);

    println!("4. The server comes back; the queue drains by itself");
    SERVER_UP.store(true, Ordering::SeqCst);
    for _ in 0..100 {
        if service.refresh_status().await.expect("status").pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = service.refresh_status().await.expect("status");
    println!(
        "   {} waiting, {} dead letters",
        status.pending, status.dead
    );

    let server: Vec<Note> = SERVER.lock().unwrap().values().cloned().collect();
    let local = local_notes(&service).await;
    let applied = APPLIED.lock().unwrap().len();
    println!(
        "5. Server: {} notes ({applied} actions applied); local: {} notes",
        server.len(),
        local.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    if server == local && applied == 5 && status.pending == 0 {
        println!("   server and local data agree: every action applied exactly once");
        ExitCode::SUCCESS
    } else {
        println!("   MISMATCH\n   server: {server:?}\n   local:  {local:?}");
        ExitCode::FAILURE
    }
}

/// The random tail of a uuid v7 (its head is the timestamp, the same for notes made together).
fn short(id: &str) -> &str {
    &id[id.len() - 8..]
}
