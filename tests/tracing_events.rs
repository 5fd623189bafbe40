//! With the `tracing` feature, the runtime reports what it does: each call's route, what was
//! queued, every replay attempt and its outcome, dead letters. Never the parameters.

use futures::executor::block_on;
use std::sync::{Arc, Mutex};
use sync_runtime::{
    offline_action, ClassifyError, ManualConnectivity, MemoryStore, SyncError, SyncService,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("unreachable")]
    Unreachable,
    #[error("rejected")]
    Rejected,
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Unreachable)
    }
}

/// The secret in the parameters must never reach a log.
const SECRET: &str = "hunter2-card-4111";

/// What the server answers next: popped from the end; empty means success.
type Answer = Result<(), fn() -> AppError>;
static ANSWERS: Mutex<Vec<Answer>> = Mutex::new(Vec::new());

#[offline_action]
pub async fn save_card(number: String) -> Result<(), AppError> {
    assert_eq!(number, SECRET);
    let next = ANSWERS.lock().unwrap().pop();
    match next {
        Some(Err(error)) => Err(error()),
        _ => Ok(()),
    }
}

/// Every event: its message and fields as text.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "sync_runtime"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn calls_queue_replay_and_dead_letters_are_traced_without_parameters() {
    let recorder = Recorder::default();
    let lines = Arc::clone(&recorder.0);
    tracing::subscriber::with_default(recorder, || {
        let net = ManualConnectivity::new(true);
        let service = SyncService::builder()
            .store(MemoryStore::new())
            .connectivity(net.clone())
            .build()
            .unwrap();
        block_on(service.scope(save_card(SECRET.into()))).unwrap();
        net.set_online(false);
        block_on(service.scope(save_card(SECRET.into()))).unwrap_err();
        block_on(service.scope(save_card(SECRET.into()))).unwrap_err();
        net.set_online(true);
        // Answers are popped from the end: first a transient failure, then a rejection, then
        // success for the second queued call.
        ANSWERS
            .lock()
            .unwrap()
            .extend::<[Answer; 2]>([Err(|| AppError::Rejected), Err(|| AppError::Unreachable)]);
        block_on(service.replay()).unwrap();
        net.set_online(false);
        net.set_online(true);
        block_on(service.replay()).unwrap();
    });
    let lines = lines.lock().unwrap().clone();
    let all = lines.join("\n");
    let has = |needle: &str| lines.iter().any(|line| line.contains(needle));
    assert!(has(r#"route="online""#), "{all}");
    assert!(has(r#"route="local""#), "{all}");
    assert!(has("message=queued"), "{all}");
    assert!(has("message=replaying") && has("attempt=1"), "{all}");
    assert!(has(r#"outcome="retry""#) && has("backoff_ms="), "{all}");
    assert!(
        has(r#"outcome="dead_letter""#) && has("reason=rejected"),
        "{all}"
    );
    assert!(has(r#"outcome="synced""#), "{all}");
    assert!(
        !all.contains(SECRET),
        "the parameters reached a log:\n{all}"
    );
}
