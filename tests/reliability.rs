//! Ordering and timing rules that real networks test: the queue is in the order the user
//! acted whatever order failures arrive in; a revived dead letter gets a fresh time-to-live;
//! the connection coming back cuts the head's backoff short, in the foreground and in the
//! background driver.

use futures::executor::block_on;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use sync_runtime::store::DeadReason;
use sync_runtime::{
    offline_action, ActionContext, ClassifyError, Clock, ManualClock, ManualConnectivity,
    MemoryStore, RetryPolicy, SyncError, SyncService, Timestamp,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the server is unreachable")]
    Unreachable,
    #[error("rejected: {0}")]
    Rejected(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Unreachable)
    }
}

thread_local! {
    /// Held by the test: `slow_note` waits here, then fails as the network drops.
    static GATE: RefCell<Option<futures::channel::oneshot::Receiver<()>>> = const { RefCell::new(None) };
    static STARTED: Cell<bool> = const { Cell::new(false) };
    /// What the server answers to the next `note` calls (`None`: success).
    static SCRIPT: RefCell<Vec<Option<AppError>>> = const { RefCell::new(Vec::new()) };
    /// (text, timestamp) of every note the server applied, in order.
    static SERVER: RefCell<Vec<(String, u64)>> = const { RefCell::new(Vec::new()) };
}

/// A note whose request is in flight when the network drops: it waits at the gate, then
/// fails with a transient error.
#[offline_action(local = note_locally)]
pub async fn slow_note(text: String) -> Result<String, AppError> {
    STARTED.with(|s| s.set(true));
    let gate = GATE.with(|g| g.borrow_mut().take());
    if let Some(gate) = gate {
        gate.await.ok();
        return Err(AppError::Unreachable);
    }
    apply_note(text)
}

/// A note, answered as `SCRIPT` says.
#[offline_action(local = note_locally)]
pub async fn note(text: String) -> Result<String, AppError> {
    let scripted = SCRIPT.with(|s| {
        let mut s = s.borrow_mut();
        (!s.is_empty()).then(|| s.remove(0)).flatten()
    });
    match scripted {
        Some(error) => Err(error),
        None => apply_note(text),
    }
}

fn apply_note(text: String) -> Result<String, AppError> {
    let cx = ActionContext::current().expect("in an action");
    SERVER.with(|s| {
        s.borrow_mut()
            .push((text.clone(), cx.timestamp().as_millis()))
    });
    Ok(text)
}

async fn note_locally(text: String) -> Result<String, AppError> {
    Ok(text)
}

fn server() -> Vec<(String, u64)> {
    SERVER.with(|s| s.borrow().clone())
}

fn service(policy: RetryPolicy) -> (SyncService, ManualConnectivity, ManualClock) {
    let net = ManualConnectivity::new(true);
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let service = SyncService::builder()
        .store(MemoryStore::new())
        .connectivity(net.clone())
        .clock(clock.clone())
        .retry_policy(policy)
        .seed(3)
        .build()
        .unwrap();
    (service, net, clock)
}

fn long_backoff() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_secs(300),
        jitter: 0.0,
        ..RetryPolicy::default()
    }
}

#[test]
fn a_call_whose_request_fails_late_is_queued_in_the_order_the_user_acted() {
    let (service, net, _clock) = service(RetryPolicy::default());
    let (open_gate, gate) = futures::channel::oneshot::channel::<()>();
    GATE.with(|g| *g.borrow_mut() = Some(gate));
    // X starts online; while its request hangs, the network drops and the user makes Y,
    // which is answered locally and queued. Then X's request fails.
    let x = service.scope(slow_note("X".into()));
    let then_y = service.scope(async {
        // `join` polls X first: its request is in flight by now.
        assert!(STARTED.with(Cell::get), "X started first");
        net.set_online(false);
        let y = note("Y".into()).await;
        open_gate.send(()).ok();
        y
    });
    let (x, y) = block_on(futures::future::join(x, then_y));
    assert_eq!((x.unwrap(), y.unwrap()), ("X".to_owned(), "Y".to_owned()));
    let queued = block_on(service.queued()).unwrap();
    assert_eq!(
        queued.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(),
        ["slow_note", "note"],
        "X was made first, so it is queued first"
    );
    net.set_online(true);
    let report = block_on(service.replay()).unwrap();
    assert_eq!(report.synced, 2);
    assert_eq!(
        server().into_iter().map(|(t, _)| t).collect::<Vec<_>>(),
        ["X", "Y"]
    );
}

#[test]
fn a_revived_dead_letter_gets_a_fresh_time_to_live_and_keeps_its_timestamp() {
    let (service, net, clock) = service(RetryPolicy::default());
    net.set_online(false);
    block_on(service.scope(note("late".into()))).unwrap();
    let made_at = block_on(service.queued()).unwrap()[0].timestamp;
    net.set_online(true);
    SCRIPT.with(|s| {
        s.borrow_mut()
            .push(Some(AppError::Rejected("not now".into())))
    });
    let report = block_on(service.replay()).unwrap();
    assert_eq!(report.dead_lettered, 1);

    // The user retries it long after the time-to-live has passed since they acted.
    clock.advance(RetryPolicy::default().ttl + Duration::from_secs(86_400));
    let dead = block_on(service.dead_letters()).unwrap();
    block_on(service.retry_dead_letter(dead[0].action.id)).unwrap();
    let report = block_on(service.replay()).unwrap();
    assert_eq!(
        (report.synced, report.dead_lettered),
        (1, 0),
        "the revived call was replayed, not expired again"
    );
    assert_eq!(
        server(),
        [("late".to_owned(), made_at.as_millis())],
        "with the time the user acted"
    );
    assert!(block_on(service.dead_letters()).unwrap().is_empty());
}

#[test]
fn a_call_older_than_the_time_to_live_still_expires() {
    let (service, net, clock) = service(RetryPolicy::default());
    net.set_online(false);
    block_on(service.scope(note("stale".into()))).unwrap();
    clock.advance(RetryPolicy::default().ttl + Duration::from_secs(1));
    net.set_online(true);
    let report = block_on(service.replay()).unwrap();
    assert_eq!(report.dead_lettered, 1);
    let dead = block_on(service.dead_letters()).unwrap();
    assert_eq!(dead[0].reason, DeadReason::Expired);
}

#[test]
fn the_connection_coming_back_cuts_the_heads_backoff_short() {
    let (service, net, clock) = service(long_backoff());
    net.set_online(false);
    block_on(service.scope(note("n".into()))).unwrap();
    net.set_online(true);
    SCRIPT.with(|s| s.borrow_mut().push(Some(AppError::Unreachable)));
    let report = block_on(service.replay()).unwrap();
    assert_eq!((report.synced, report.retried), (0, 1));
    let next = report.next_attempt_at.expect("a backoff");
    assert_eq!(next.saturating_since(clock.now()), Duration::from_secs(300));
    // Still within the backoff: the head waits.
    assert_eq!(block_on(service.replay()).unwrap().synced, 0);

    // The connection drops and comes back: the head goes at once.
    net.set_online(false);
    net.set_online(true);
    let report = block_on(service.replay()).unwrap();
    assert_eq!(report.synced, 1, "{report:?}");
    assert_eq!(server().len(), 1);
}

#[test]
fn a_reconnection_cuts_only_one_backoff_short() {
    let (service, net, _clock) = service(long_backoff());
    net.set_online(false);
    block_on(service.scope(note("n".into()))).unwrap();
    net.set_online(true);
    SCRIPT.with(|s| {
        s.borrow_mut()
            .extend([Some(AppError::Unreachable), Some(AppError::Unreachable)])
    });
    assert_eq!(block_on(service.replay()).unwrap().retried, 1);
    net.set_online(false);
    net.set_online(true);
    // The attempt right after reconnecting fails too: now the backoff holds again.
    assert_eq!(block_on(service.replay()).unwrap().retried, 1);
    let report = block_on(service.replay()).unwrap();
    assert_eq!((report.synced, report.retried), (0, 0));
    assert!(server().is_empty());
}

#[test]
fn the_background_driver_wakes_when_the_connection_comes_back() {
    static APPLIED: AtomicUsize = AtomicUsize::new(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let net = ManualConnectivity::new(false);
        let service = SyncService::builder()
            .store(MemoryStore::new())
            .connectivity(net.clone())
            .retry_policy(long_backoff())
            .executor(sync_runtime::TokioExecutor::current().unwrap())
            .build()
            .unwrap();
        service.scope(note("n".into())).await.unwrap();
        SCRIPT.with(|s| s.borrow_mut().push(Some(AppError::Unreachable)));
        // Online: the driver replays, fails, and sleeps for the 300 s backoff.
        net.set_online(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(service.status().pending, 1);
        assert!(server().is_empty());

        net.set_online(false);
        net.set_online(true);
        for _ in 0..100 {
            if !server().is_empty() {
                APPLIED.fetch_add(1, Ordering::SeqCst);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert_eq!(
        APPLIED.load(Ordering::SeqCst),
        1,
        "the driver slept through the reconnection"
    );
}

#[test]
fn an_answer_arriving_after_the_connection_dropped_does_not_show_online() {
    let (service, net, _clock) = service(RetryPolicy::default());
    let (open_gate, gate) = futures::channel::oneshot::channel::<()>();
    LATE_GATE.with(|g| *g.borrow_mut() = Some(gate));
    let call = service.scope(late_note("n".into()));
    let drop_then_answer = async {
        net.set_online(false);
        assert!(!service.status().online);
        open_gate.send(()).ok();
    };
    let (answer, ()) = block_on(futures::future::join(call, drop_then_answer));
    assert_eq!(answer.unwrap(), "n");
    assert!(
        !service.status().online,
        "the late answer made the status say online while the connectivity says offline"
    );
}

thread_local! {
    static LATE_GATE: RefCell<Option<futures::channel::oneshot::Receiver<()>>> = const { RefCell::new(None) };
}

/// A request whose answer arrives when the test opens the gate.
#[offline_action(local = note_locally)]
pub async fn late_note(text: String) -> Result<String, AppError> {
    let gate = LATE_GATE.with(|g| g.borrow_mut().take());
    if let Some(gate) = gate {
        gate.await.ok();
    }
    apply_note(text)
}

#[test]
fn a_call_made_after_a_restart_with_the_clock_set_back_is_queued_after_the_older_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.sqlite3");
    let open = |clock: &ManualClock| {
        SyncService::builder()
            .store(sync_runtime::SqliteStore::open(&path).unwrap())
            .connectivity(ManualConnectivity::new(false))
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let first = open(&clock);
    block_on(first.scope(note("before the restart".into()))).unwrap();
    drop(first);
    // The device's clock is set back an hour before the app starts again.
    clock.set(Timestamp(1_800_000_000_000 - 3_600_000));
    let second = open(&clock);
    block_on(second.scope(note("after the restart".into()))).unwrap();
    let queued = block_on(second.queued()).unwrap();
    assert_eq!(
        queued.iter().map(|q| q.params.as_str()).collect::<Vec<_>>(),
        [
            r#"{"text":"before the restart"}"#,
            r#"{"text":"after the restart"}"#
        ],
        "the queue keeps the order the user acted in"
    );
}
