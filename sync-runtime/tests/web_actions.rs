//! `#[offline_action]` functions in a real browser, over IndexedDB: online, offline (queued
//! durably), replayed when the `online` event fires and at start-up, dead-lettered when the
//! action is unknown, one replaying tab at a time (Web Locks), and the default service.
#![cfg(target_arch = "wasm32")]

use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::time::Duration;
use sync_runtime::browser::{BrowserConnectivity, BrowserExecutor};
use sync_runtime::store::{Batch, DeadReason, IndexedDbStore, NewQueued};
use sync_runtime::{
    offline_action, ActionContext, ActionId, ActionKind, ClassifyError, Connectivity, Executor,
    ManualConnectivity, Registry, Store, SyncError, SyncService, Timestamp,
};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the network is down")]
    Network,
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Network)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub id: String,
    pub text: String,
}

thread_local! {
    /// What the simulated server applied: (action id, what), in order.
    static APPLIED: RefCell<Vec<(ActionId, String)>> = const { RefCell::new(Vec::new()) };
    static NEXT_DB: Cell<u32> = const { Cell::new(0) };
}

/// Simulates one request to the server, applied at most once per action id.
fn request(what: String) -> Result<ActionId, AppError> {
    let id = ActionContext::current()
        .expect("bodies run inside an action")
        .id();
    APPLIED.with(|applied| {
        let mut applied = applied.borrow_mut();
        assert!(
            !applied.iter().any(|(seen, _)| *seen == id),
            "action {id} reached the server twice"
        );
        applied.push((id, what));
    });
    Ok(id)
}

fn applied() -> Vec<(ActionId, String)> {
    APPLIED.with(|applied| applied.borrow().clone())
}

fn applied_named(prefix: &str) -> Vec<String> {
    applied()
        .into_iter()
        .map(|(_, what)| what)
        .filter(|what| what.starts_with(prefix))
        .collect()
}

/// Adds a note on the server.
#[offline_action(local = add_note_locally)]
pub async fn add_note(text: String) -> Result<Note, AppError> {
    let id = request(format!("add {text}"))?;
    Ok(Note {
        id: id.to_string(),
        text,
    })
}

async fn add_note_locally(text: String) -> Result<Note, AppError> {
    let context = ActionContext::current().expect("in an action");
    let note = Note {
        id: context.id().to_string(),
        text,
    };
    context
        .collection::<Note>("notes")
        .put(note.id.clone(), &note)
        .await?;
    Ok(note)
}

/// Archives a note; no local handler, so offline it reports `Queued`.
#[offline_action]
pub async fn archive_note(id: String) -> Result<(), AppError> {
    request(format!("archive {id}"))?;
    Ok(())
}

/// A request that takes a while, to hold the replay lock.
#[offline_action]
pub async fn slow_ping(n: u32) -> Result<u32, AppError> {
    BrowserExecutor.sleep(Duration::from_millis(300)).await;
    request(format!("ping {n}"))?;
    Ok(n)
}

/// A database name no earlier run or test used.
fn fresh_name(what: &str) -> String {
    let n = NEXT_DB.with(|next| {
        next.set(next.get() + 1);
        next.get()
    });
    format!("test-{what}-{}-{n}", js_sys::Date::now())
}

async fn open(name: &str) -> IndexedDbStore {
    IndexedDbStore::open(name)
        .await
        .unwrap_or_else(|e| panic!("open {name}: {e}"))
}

async fn sleep(millis: u64) {
    BrowserExecutor.sleep(Duration::from_millis(millis)).await;
}

/// Fires `online` or `offline` at the global object, as the browser does.
fn dispatch(event: &str) {
    let target = js_sys::global()
        .dyn_into::<web_sys::EventTarget>()
        .expect("the global object is an event target");
    let event = web_sys::Event::new(event).expect("an event");
    target.dispatch_event(&event).expect("dispatched");
}

/// Waits until `service` has nothing queued, for at most five seconds.
async fn drained(service: &SyncService) -> bool {
    for _ in 0..250 {
        if service.queued().await.expect("queue").is_empty() {
            return true;
        }
        sleep(20).await;
    }
    false
}

fn browser_service(store: IndexedDbStore, connectivity: BrowserConnectivity) -> SyncService {
    SyncService::builder()
        .store(store)
        .connectivity(connectivity)
        .executor(BrowserExecutor)
        .build()
        .expect("no duplicate action names")
}

#[wasm_bindgen_test]
async fn online_runs_offline_queues_durably_and_the_online_event_replays() {
    let name = fresh_name("actions");
    let before = applied().len();

    // Online: the body runs, nothing is queued.
    let connectivity = BrowserConnectivity::new();
    assert!(
        connectivity.is_online(),
        "headless Chromium reports navigator.onLine"
    );
    let service = browser_service(open(&name).await, connectivity.clone());
    let first = service
        .scope(add_note("first".into()))
        .await
        .expect("online call");
    assert_eq!(applied_named("add first"), ["add first"]);
    assert!(service.queued().await.expect("queue").is_empty());

    // Offline: answered locally and queued, never sent.
    dispatch("offline");
    assert!(!connectivity.is_online(), "the offline event was heard");
    let local = service
        .scope(add_note("second".into()))
        .await
        .expect("the local handler answers offline");
    let queued = service.scope(archive_note(first.id.clone())).await;
    let Err(AppError::Sync(SyncError::Queued { id: archive_id, .. })) = queued else {
        panic!("expected Queued, got {queued:?}");
    };
    assert_eq!(
        applied().len(),
        before + 1,
        "offline calls reached the server"
    );
    let queue = service.queued().await.expect("queue");
    assert_eq!(
        queue.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(),
        ["add_note", "archive_note"]
    );
    assert_eq!(queue[0].id.to_string(), local.id);
    assert_eq!(queue[1].id, archive_id);

    // Close everything, as a page reload would, and reopen the database: the queue is there.
    drop(service);
    drop(connectivity);
    sleep(50).await;
    let reopened = open(&name).await;
    assert_eq!(
        reopened.queued(None, usize::MAX).await.expect("queue"),
        queue,
        "the queue did not survive closing and reopening the database"
    );
    let connectivity = BrowserConnectivity::new();
    dispatch("offline");
    let service = browser_service(reopened, connectivity.clone());
    sleep(100).await;
    assert_eq!(applied().len(), before + 1, "replayed while offline");
    assert_eq!(service.queued().await.expect("queue").len(), 2);

    // The connection returns: the `online` event starts the replay on the executor.
    dispatch("online");
    assert!(
        drained(&service).await,
        "the online event did not replay the queue"
    );
    let after: Vec<_> = applied().into_iter().skip(before).collect();
    assert_eq!(
        after
            .iter()
            .map(|(_, what)| what.clone())
            .collect::<Vec<_>>(),
        [
            "add first".to_owned(),
            "add second".to_owned(),
            format!("archive {}", first.id)
        ],
        "each call reached the server once, in order"
    );
    assert_eq!(
        after[1].0.to_string(),
        local.id,
        "replayed with the queued id"
    );
    assert_eq!(after[2].0, archive_id, "replayed with the queued id");
    let status = service.refresh_status().await.expect("status");
    assert_eq!((status.pending, status.dead), (0, 0));
    drop(service);
    sleep(20).await;
    IndexedDbStore::delete_database(&name)
        .await
        .expect("delete");
}

#[wasm_bindgen_test]
async fn calls_queued_before_a_reload_replay_when_the_service_starts() {
    let name = fresh_name("startup");
    {
        let store = open(&name).await;
        let offline = SyncService::builder()
            .store(store)
            .connectivity(ManualConnectivity::new(false))
            .build()
            .expect("service");
        offline
            .scope(add_note("queued before reload".into()))
            .await
            .expect("local answer");
        assert_eq!(offline.queued().await.expect("queue").len(), 1);
    }
    sleep(20).await;
    // A new page: the service starts online and replays without any event or call.
    let service = browser_service(open(&name).await, BrowserConnectivity::new());
    assert!(drained(&service).await, "nothing replayed at start-up");
    assert_eq!(
        applied_named("add queued before reload"),
        ["add queued before reload"]
    );
}

#[wasm_bindgen_test]
async fn an_unknown_action_is_dead_lettered_and_replay_goes_on() {
    let name = fresh_name("unknown");
    let store = open(&name).await;
    for (n, name, params) in [
        (1, "removed_in_last_deploy", r#"{"x":1}"#),
        (2, "add_note", r#"{"text":"after the unknown one"}"#),
    ] {
        let mut batch = Batch::new();
        batch.enqueue = Some(NewQueued {
            id: ActionId(uuid::Uuid::now_v7()),
            name: name.to_owned(),
            version: 1,
            kind: ActionKind::Mutation,
            params: params.to_owned(),
            timestamp: Timestamp(js_sys::Date::now() as u64 + n),
            queued_at: Timestamp(js_sys::Date::now() as u64 + n),
            scope: String::new(),
        });
        store.apply(batch).await.expect("enqueue");
    }
    let service = SyncService::builder()
        .store(store)
        .connectivity(ManualConnectivity::new(true))
        .build()
        .expect("service");
    let report = service.replay().await.expect("replay");
    assert_eq!((report.dead_lettered, report.synced), (1, 1), "{report:?}");
    assert_eq!(report.remaining, 0);
    let dead = service.dead_letters().await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].action.name, "removed_in_last_deploy");
    assert_eq!(dead[0].reason, DeadReason::UnknownAction);
    assert_eq!(
        applied_named("add after the unknown one"),
        ["add after the unknown one"]
    );
}

#[wasm_bindgen_test]
async fn only_one_tab_replays_at_a_time() {
    let name = fresh_name("tabs");
    let store = open(&name).await;
    let mut batch = Batch::new();
    batch.enqueue = Some(NewQueued {
        id: ActionId(uuid::Uuid::now_v7()),
        name: "slow_ping".to_owned(),
        version: 1,
        kind: ActionKind::Mutation,
        params: r#"{"n":7}"#.to_owned(),
        timestamp: Timestamp(js_sys::Date::now() as u64),
        queued_at: Timestamp(js_sys::Date::now() as u64),
        scope: String::new(),
    });
    store.apply(batch).await.expect("enqueue");
    // Two tabs: two services, each with its own connection, sharing the default Web Lock.
    let tab = |store: IndexedDbStore| {
        SyncService::builder()
            .store(store)
            .connectivity(ManualConnectivity::new(true))
            .build()
            .expect("service")
    };
    let first = tab(store);
    let second = tab(open(&name).await);

    let (done, first_report) = futures_channel::oneshot::channel();
    let replaying = first.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let _ = done.send(replaying.replay().await);
    });
    sleep(100).await;
    let skipped = second.replay().await.expect("replay");
    assert!(
        skipped.already_running,
        "the second tab replayed while the first held the lock: {skipped:?}"
    );
    assert_eq!(skipped.synced, 0);
    assert_eq!(skipped.remaining, 1, "it reports what still waits");
    assert!(
        skipped.next_attempt_at.is_some(),
        "it says when to look again"
    );

    let report = first_report.await.expect("first replay").expect("replay");
    assert_eq!(report.synced, 1);
    assert_eq!(applied_named("ping 7"), ["ping 7"]);
    let again = second.replay().await.expect("replay");
    assert!(!again.already_running, "the lock was released");
    assert_eq!((again.synced, again.remaining), (0, 0));
}

#[wasm_bindgen_test]
async fn actions_register_through_inventory_in_the_wasm_build() {
    let registry = Registry::global().expect("no duplicate names");
    for (name, kind) in [
        ("add_note", ActionKind::Mutation),
        ("archive_note", ActionKind::Mutation),
        ("slow_ping", ActionKind::Mutation),
    ] {
        let registration = registry
            .get(name)
            .unwrap_or_else(|| panic!("`{name}` is not registered"));
        assert_eq!(registration.kind, kind);
        assert!(
            registration.file.ends_with("web_actions.rs"),
            "{}",
            registration.file
        );
    }
}

#[wasm_bindgen_test]
async fn the_default_service_uses_indexeddb_with_no_configuration() {
    // No builder, no scope: `SyncService::current()` opens the `sync-runtime` database.
    let note = add_note("through the default service".into())
        .await
        .expect("online call");
    assert_eq!(note.text, "through the default service");
    let service = SyncService::current();
    let counts = service.store().counts().await.expect("IndexedDB opened");
    assert_eq!(counts.pending, 0);
    assert!(service.status().online);
}
