//! The sync engine's rules, one at a time: dead letters and their API, bad queue rows, retries
//! and backoff, `Retry-After`, time-to-live, version migrations, single-flight replay, status
//! and events, and last-write-wins between optimistic and server writes.

use futures::executor::block_on;
use futures::{FutureExt, StreamExt};
use std::cell::{Cell, RefCell};
use std::time::Duration;
use sync_runtime::store::{Batch, DeadReason, NewQueued};
use sync_runtime::{
    offline_action, ActionContext, ActionId, ActionKind, ClassifyError, Clock, ManualClock,
    ManualConnectivity, MemoryStore, RetryPolicy, SyncError, SyncEvent, SyncService, Timestamp,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("service unavailable")]
    Unavailable { retry_after: Option<Duration> },
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Unavailable { .. })
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            AppError::Unavailable { retry_after } => *retry_after,
            _ => None,
        }
    }
}

thread_local! {
    /// What the server answers to the next calls, in order (`None`: success). Empty: success.
    static SCRIPT: RefCell<Vec<Option<AppError>>> = const { RefCell::new(Vec::new()) };
    /// Titles the server stored, in order.
    static SERVER_LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// The server stores titles in upper case.
    static UPPERCASE: Cell<bool> = const { Cell::new(false) };
    static CALLS: Cell<usize> = const { Cell::new(0) };
    static GATE: RefCell<Option<futures::channel::oneshot::Receiver<()>>> = const { RefCell::new(None) };
    static PINGS: Cell<usize> = const { Cell::new(0) };
}

fn fail_next(error: AppError) {
    SCRIPT.with(|s| s.borrow_mut().push(Some(error)));
}

fn succeed_next() {
    SCRIPT.with(|s| s.borrow_mut().push(None));
}

/// Waits at the gate the test holds, so a replay can be caught in the middle.
#[offline_action]
pub async fn gated_ping() -> Result<(), AppError> {
    let gate = GATE.with(|g| g.borrow_mut().take());
    if let Some(gate) = gate {
        gate.await.ok();
    }
    PINGS.with(|p| p.set(p.get() + 1));
    Ok(())
}

fn server_log() -> Vec<String> {
    SERVER_LOG.with(|log| log.borrow().clone())
}

/// Sets a document's title; the server's answer is kept locally.
#[offline_action(local = set_title_locally, version = 2)]
pub async fn set_title(doc: String, title: String) -> Result<String, AppError> {
    CALLS.with(|c| c.set(c.get() + 1));
    let scripted = SCRIPT.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_empty() {
            None
        } else {
            s.remove(0)
        }
    });
    if let Some(error) = scripted {
        return Err(error);
    }
    let stored = if UPPERCASE.with(Cell::get) {
        title.to_uppercase()
    } else {
        title
    };
    SERVER_LOG.with(|log| log.borrow_mut().push(stored.clone()));
    let cx = ActionContext::current().expect("in an action");
    cx.collection::<String>("titles").put(doc, &stored).await?;
    Ok(stored)
}

async fn set_title_locally(doc: String, title: String) -> Result<String, AppError> {
    let cx = ActionContext::current().expect("in an action");
    cx.collection::<String>("titles").put(doc, &title).await?;
    Ok(title)
}

struct Fixture {
    service: SyncService,
    net: ManualConnectivity,
    clock: ManualClock,
}

fn fixture(policy: RetryPolicy) -> Fixture {
    let net = ManualConnectivity::new(false);
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let service = SyncService::builder()
        .store(MemoryStore::new())
        .connectivity(net.clone())
        .clock(clock.clone())
        .retry_policy(policy)
        .seed(7)
        .migrate("set_title", |from, mut params| {
            // Version 1 called the field `name`.
            if from == 1 {
                let name = params["name"].take();
                params["title"] = name;
                params
                    .as_object_mut()
                    .ok_or("params are not an object")?
                    .remove("name");
                Ok(params)
            } else {
                Err(format!("cannot migrate from version {from}"))
            }
        })
        .build()
        .unwrap();
    Fixture {
        service,
        net,
        clock,
    }
}

fn no_jitter() -> RetryPolicy {
    RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    }
}

impl Fixture {
    fn call(&self, doc: &str, title: &str) -> Result<String, AppError> {
        block_on(self.service.scope(set_title(doc.into(), title.into())))
    }

    fn enqueue_raw(&self, name: &str, version: u32, params: &str) -> ActionId {
        let id = ActionId(uuid::Uuid::now_v7());
        let mut batch = Batch::new();
        batch.enqueue = Some(NewQueued {
            id,
            name: name.into(),
            version,
            kind: ActionKind::Mutation,
            params: params.into(),
            timestamp: Timestamp(1_800_000_000_000),
            queued_at: Timestamp(1_800_000_000_000),
            scope: String::new(),
        });
        block_on(self.service.store().apply(batch)).unwrap();
        id
    }

    fn titles(&self) -> Vec<(String, String)> {
        block_on(self.service.collection::<String>("titles").list()).unwrap()
    }
}

#[test]
fn bad_queue_rows_are_dead_lettered_with_a_reason_and_the_rest_replays() {
    let f = fixture(no_jitter());
    f.call("a", "first").unwrap();
    let unknown = f.enqueue_raw("removed_in_this_build", 1, r#"{"x":1}"#);
    let garbage = f.enqueue_raw("set_title", 2, "{not json");
    let wrong_shape = f.enqueue_raw("set_title", 2, r#"{"doc":7}"#);
    let from_the_future = f.enqueue_raw("set_title", 3, r#"{"doc":"a","title":"t"}"#);
    f.call("b", "last").unwrap();

    f.net.set_online(true);
    let report = block_on(f.service.replay()).unwrap();
    assert_eq!(
        (report.synced, report.dead_lettered, report.remaining),
        (2, 4, 0)
    );
    assert_eq!(server_log(), ["first", "last"]);

    let dead = block_on(f.service.dead_letters()).unwrap();
    let reasons: Vec<(ActionId, DeadReason)> =
        dead.iter().map(|d| (d.action.id, d.reason)).collect();
    assert_eq!(
        reasons,
        [
            (unknown, DeadReason::UnknownAction),
            (garbage, DeadReason::BadParams),
            (wrong_shape, DeadReason::BadParams),
            (from_the_future, DeadReason::BadParams),
        ]
    );
    assert!(
        dead[0].message.contains("removed_in_this_build"),
        "{}",
        dead[0].message
    );
    assert!(
        dead[1].message.contains("no longer match"),
        "{}",
        dead[1].message
    );
    assert!(dead[3].message.contains("version 3"), "{}", dead[3].message);
}

#[test]
fn old_versions_are_migrated_by_the_hook() {
    let f = fixture(no_jitter());
    f.enqueue_raw("set_title", 1, r#"{"doc":"a","name":"from v1"}"#);
    f.net.set_online(true);
    let report = block_on(f.service.replay()).unwrap();
    assert_eq!(report.synced, 1);
    assert_eq!(server_log(), ["from v1"]);
}

#[test]
fn dead_letters_can_be_listed_retried_and_discarded() {
    let f = fixture(no_jitter());
    f.call("a", "one").unwrap();
    f.call("b", "two").unwrap();
    f.net.set_online(true);
    fail_next(AppError::BadRequest("title too long".into()));
    fail_next(AppError::BadRequest("forbidden".into()));
    let report = block_on(f.service.replay()).unwrap();
    assert_eq!(report.dead_lettered, 2);
    let dead = block_on(f.service.dead_letters()).unwrap();
    assert_eq!(dead[0].reason, DeadReason::Rejected);
    assert_eq!(dead[0].message, "bad request: title too long");
    assert_eq!(f.service.status().dead, 2);

    block_on(f.service.retry_dead_letter(dead[0].action.id)).unwrap();
    block_on(f.service.discard_dead_letter(dead[1].action.id)).unwrap();
    assert_eq!(
        (f.service.status().pending, f.service.status().dead),
        (1, 0)
    );
    let report = block_on(f.service.replay()).unwrap();
    assert_eq!(report.synced, 1);
    assert_eq!(server_log(), ["one"]);

    let err = block_on(f.service.retry_dead_letter(dead[1].action.id)).unwrap_err();
    assert!(
        err.to_string().contains(&dead[1].action.id.to_string()),
        "{err}"
    );
}

#[test]
fn transient_failures_back_off_exponentially_then_give_up() {
    let f = fixture(RetryPolicy {
        max_retries: 3,
        ..no_jitter()
    });
    f.call("a", "x").unwrap();
    f.net.set_online(true);
    let mut waits = Vec::new();
    for _ in 0..3 {
        fail_next(AppError::Unavailable { retry_after: None });
        let report = block_on(f.service.replay()).unwrap();
        assert_eq!((report.retried, report.remaining), (1, 1));
        let next = report.next_attempt_at.unwrap();
        waits.push(next.saturating_since(f.clock.now()).as_secs());
        // Before the backoff has passed, replay leaves the head alone.
        let calls = CALLS.with(Cell::get);
        block_on(f.service.replay()).unwrap();
        assert_eq!(CALLS.with(Cell::get), calls, "replayed before its backoff");
        f.clock.set(next);
    }
    assert_eq!(waits, [1, 2, 4]);
    let queued = block_on(f.service.queued()).unwrap();
    assert_eq!(queued[0].retries, 3);
    assert_eq!(queued[0].last_error.as_deref(), Some("service unavailable"));

    fail_next(AppError::Unavailable { retry_after: None });
    let report = block_on(f.service.replay()).unwrap();
    assert_eq!(report.dead_lettered, 1);
    let dead = block_on(f.service.dead_letters()).unwrap();
    assert_eq!(dead[0].reason, DeadReason::TooManyRetries);
    assert!(
        dead[0].message.contains("gave up after 4"),
        "{}",
        dead[0].message
    );
}

#[test]
fn retry_after_from_the_server_is_honoured() {
    let f = fixture(no_jitter());
    f.call("a", "x").unwrap();
    f.net.set_online(true);
    fail_next(AppError::Unavailable {
        retry_after: Some(Duration::from_secs(120)),
    });
    let report = block_on(f.service.replay()).unwrap();
    let wait = report
        .next_attempt_at
        .unwrap()
        .saturating_since(f.clock.now());
    assert_eq!(wait, Duration::from_secs(120));
}

#[test]
fn calls_older_than_the_ttl_are_dead_lettered_as_expired() {
    let f = fixture(RetryPolicy {
        ttl: Duration::from_secs(3600),
        ..no_jitter()
    });
    f.call("a", "stale").unwrap();
    f.clock.advance(Duration::from_secs(3601));
    f.call("b", "fresh").unwrap();
    f.net.set_online(true);
    let report = block_on(f.service.replay()).unwrap();
    assert_eq!((report.synced, report.dead_lettered), (1, 1));
    assert_eq!(
        block_on(f.service.dead_letters()).unwrap()[0].reason,
        DeadReason::Expired
    );
    assert_eq!(server_log(), ["fresh"]);
}

#[test]
fn a_second_replay_while_one_runs_does_not_start() {
    let f = fixture(no_jitter());
    let (open_gate, gate) = futures::channel::oneshot::channel::<()>();
    GATE.with(|g| *g.borrow_mut() = Some(gate));
    block_on(f.service.scope(gated_ping())).unwrap_err();
    f.call("a", "after the ping").unwrap();
    f.net.set_online(true);
    block_on(async {
        let first = f.service.replay();
        futures::pin_mut!(first);
        assert!(
            futures::poll!(first.as_mut()).is_pending(),
            "the first replay waits at the gate"
        );
        assert!(f.service.status().syncing);

        let second = f.service.replay().await.unwrap();
        assert!(second.already_running, "{second:?}");
        assert_eq!(second.synced, 0);

        open_gate.send(()).unwrap();
        let first = first.await.unwrap();
        assert_eq!((first.synced, first.remaining), (2, 0));
    });
    assert_eq!(PINGS.with(Cell::get), 1, "the gated body ran once");
    assert_eq!(server_log(), ["after the ping"]);
}

#[test]
fn status_and_events_tell_a_ui_what_happens() {
    let f = fixture(no_jitter());
    let mut statuses = f.service.subscribe();
    let mut events = f.service.events();
    assert_eq!(block_on(statuses.next()).unwrap().pending, 0);

    f.call("a", "one").unwrap();
    f.call("b", "two").unwrap();
    assert_eq!(f.service.status().pending, 2);
    assert!(!f.service.status().online);

    f.net.set_online(true);
    fail_next(AppError::BadRequest("nope".into()));
    block_on(f.service.replay()).unwrap();
    let status = f.service.status();
    assert_eq!((status.pending, status.dead, status.syncing), (0, 1, false));

    let mut seen = Vec::new();
    while let Some(Some(event)) = events.next().now_or_never() {
        seen.push(match event {
            SyncEvent::Queued { .. } => "queued",
            SyncEvent::Synced { .. } => "synced",
            SyncEvent::DeadLettered { .. } => "dead",
            SyncEvent::Retrying { .. } => "retrying",
            SyncEvent::RolledBack { .. } => "rolled back",
            _ => "other",
        });
    }
    assert_eq!(seen, ["queued", "queued", "dead", "rolled back", "synced"]);

    let mut pending_seen = Vec::new();
    let mut syncing_seen = false;
    while let Some(Some(status)) = statuses.next().now_or_never() {
        pending_seen.push(status.pending);
        syncing_seen |= status.syncing;
    }
    assert!(
        pending_seen.contains(&2) && pending_seen.last() == Some(&0),
        "{pending_seen:?}"
    );
    assert!(syncing_seen, "subscribers see the replay start");
}

#[test]
fn a_replayed_earlier_call_never_overwrites_a_later_local_edit() {
    let f = fixture(no_jitter());
    f.call("doc", "first").unwrap();
    f.clock.advance(Duration::from_millis(5));
    f.call("doc", "second").unwrap();
    assert_eq!(f.titles(), [("doc".to_owned(), "second".to_owned())]);

    // The server normalizes titles to upper case. The first call reaches it; the second fails
    // for now.
    UPPERCASE.with(|u| u.set(true));
    succeed_next();
    fail_next(AppError::Unavailable { retry_after: None });
    f.net.set_online(true);
    let report = block_on(f.service.replay()).unwrap();
    assert_eq!((report.synced, report.retried), (1, 1));
    assert_eq!(server_log(), ["FIRST"]);
    // The server's answer to the earlier call is older than the later local edit: it loses.
    assert_eq!(f.titles(), [("doc".to_owned(), "second".to_owned())]);

    f.clock.advance(Duration::from_secs(60));
    let report = block_on(f.service.replay()).unwrap();
    assert_eq!(report.synced, 1);
    // The server's answer to the later call replaces its own optimistic record.
    assert_eq!(f.titles(), [("doc".to_owned(), "SECOND".to_owned())]);
}

#[test]
fn background_and_foreground_replays_both_finish_on_a_one_thread_executor() {
    // Regression: the background driver used to spin on "a replay is already running" and,
    // on a one-thread executor, never let that replay finish. A watchdog thread turns such a
    // hang into a failure.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let report = runtime.block_on(async {
            let net = ManualConnectivity::new(false);
            let service = SyncService::builder()
                .store(MemoryStore::new())
                .connectivity(net.clone())
                .executor(sync_runtime::TokioExecutor::current().unwrap())
                .build()
                .unwrap();
            let (open_gate, gate) = futures::channel::oneshot::channel::<()>();
            GATE.with(|g| *g.borrow_mut() = Some(gate));
            service.scope(gated_ping()).await.unwrap_err();
            // Going online starts the background driver; the foreground replay below holds
            // the slot while it waits at the gate, which a separate task opens later.
            net.set_online(true);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                open_gate.send(()).ok();
            });
            let report = service.replay().await.unwrap();
            service.refresh_status().await.unwrap();
            (report, service.status().pending)
        });
        done.send(report).ok();
    });
    let (report, pending) = finished
        .recv_timeout(Duration::from_secs(30))
        .expect("the replays finished instead of spinning");
    assert_eq!(
        report.synced + usize::from(report.already_running),
        1,
        "{report:?}"
    );
    assert_eq!(pending, 0);
}

/// A server body with a bug.
#[offline_action]
pub async fn explode() -> Result<(), AppError> {
    panic!("boom")
}

#[test]
fn a_panicking_server_body_is_dead_lettered_and_the_rest_replays() {
    let f = fixture(no_jitter());
    block_on(f.service.scope(explode())).unwrap_err();
    f.call("a", "after the panic").unwrap();
    f.net.set_online(true);
    let report = block_on(f.service.replay()).unwrap();
    assert_eq!((report.synced, report.dead_lettered), (1, 1));
    let dead = block_on(f.service.dead_letters()).unwrap();
    assert_eq!(dead[0].reason, DeadReason::Rejected);
    assert!(
        dead[0].message.contains("panicked: boom"),
        "{}",
        dead[0].message
    );
    assert_eq!(server_log(), ["after the panic"]);
}

#[test]
fn a_clock_stepping_back_does_not_make_a_later_write_lose() {
    let f = fixture(no_jitter());
    let notes = f.service.collection::<String>("notes");
    block_on(notes.put("n", &"first".to_owned())).unwrap();
    f.clock.set(Timestamp(1_800_000_000_000 - 60_000));
    block_on(notes.put("n", &"second".to_owned())).unwrap();
    assert_eq!(block_on(notes.get("n")).unwrap().as_deref(), Some("second"));
}
