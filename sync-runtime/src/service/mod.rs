//! The service: routes each action call online or offline, queues, replays, and reports status.
//!
//! Each job has its own module: `builder` (configuring a service), `call` (routing one call
//! online or to its local handler, and queueing it), `replay` (the replay loop, retries,
//! backoff and the background driver), `dead_letters` (the queue and dead-letter API),
//! `server_clock` (the offset to the server's clock that stamps are corrected by) and
//! `defaults` (the zero-configuration service of each platform). This module holds the
//! service's state and what they share: status, reachability, ids.

use crate::context::{ActionContext, Collection, Phase};
use crate::id::IdMinter;
use crate::registry::{Attempt, Registry};
use crate::status::StatusHub;
use crate::store::{
    Applied, Batch, Bury, DeadLetter, DeadReason, NewQueued, QueuedAction, RecordKey, Reschedule,
    Stamp, Store, Write,
};
use crate::trace;
use crate::{
    Action, ActionId, ActionKind, BoxFuture, ClassifyError, Clock, Connectivity,
    ManualConnectivity, MaybeSend, MaybeSync, MemoryStore, Rejection, ReplayLock, RetryPolicy,
    SyncError, SyncEvent, SyncStatus, SystemClock, Timestamp,
};
use core::future::Future;
use core::time::Duration;
use futures_util::Stream;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

mod builder;
mod call;
mod dead_letters;
mod defaults;
mod replay;
mod server_clock;

pub use builder::SyncServiceBuilder;
#[cfg(not(target_arch = "wasm32"))]
pub use defaults::default_database_path;
pub use replay::ReplayReport;

use defaults::{default_store, platform_defaults, platform_replay_lock};

/// Where background work runs: replay after the connection returns, and retries after a
/// backoff. Any executor works; see [`SyncServiceBuilder::executor`].
pub trait Executor: MaybeSend + MaybeSync + 'static {
    /// Runs a task in the background.
    fn spawn(&self, task: BoxFuture<'static, ()>);
    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Rewrites the parameters of calls queued by an older version of an action.
///
/// Receives the version the call was queued with and its parameters; returns parameters this
/// build's action accepts, or a reason to move the call to the dead-letter store.
pub type Migration =
    fn(from_version: u32, params: serde_json::Value) -> Result<serde_json::Value, String>;

/// The offline-first action service.
///
/// Cheap to clone: clones share everything. Most apps configure one with
/// [`SyncService::builder`] and [`install`](SyncServiceBuilder::install) it at start-up;
/// `#[offline_action]` functions then reach it through [`SyncService::current`].
#[derive(Clone)]
pub struct SyncService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    connectivity: Arc<dyn Connectivity>,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    executor: Option<Arc<dyn Executor>>,
    replay_lock: Option<Arc<dyn ReplayLock>>,
    /// How many ordering scopes replay at once.
    replay_concurrency: usize,
    migrations: HashMap<String, Migration>,
    extensions: HashMap<core::any::TypeId, crate::maybe_send::AnyValue>,
    on_rejected: Option<crate::maybe_send::Hook<Rejection>>,
    ids: Mutex<IdMinter>,
    server_clock: server_clock::ServerClock,
    rng: Mutex<fastrand::Rng>,
    hub: StatusHub,
    replaying: AtomicBool,
    replay_again: AtomicBool,
    driver_running: AtomicBool,
    /// After a transient failure, calls go straight to the local path until this time
    /// (milliseconds), because a reachable-looking network may not reach the server.
    offline_until: AtomicU64,
    consecutive_failures: AtomicU64,
    /// Set when the connection comes back: the next replay tries the head at once instead of
    /// waiting out the backoff it got while the connection was down.
    reconnected: AtomicBool,
    /// Wakes the background driver from its sleep until the head's next attempt.
    wake_driver: Mutex<Option<futures_channel::oneshot::Sender<()>>>,
    /// Counts triggers, so the driver notices one that came while it was not asleep yet.
    kicks: AtomicU64,
    /// The registry was checked and the counts and clock offset loaded: calls skip that.
    ready: AtomicBool,
}

impl core::fmt::Debug for SyncService {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SyncService")
            .field("status", &self.status())
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

thread_local! {
    static SCOPED: RefCell<Option<SyncService>> = const { RefCell::new(None) };
}

#[cfg(not(target_arch = "wasm32"))]
mod global {
    use super::SyncService;
    use crate::SyncError;
    use std::sync::OnceLock;

    static GLOBAL: OnceLock<SyncService> = OnceLock::new();

    pub(super) fn get_or_init(init: impl FnOnce() -> SyncService) -> SyncService {
        GLOBAL.get_or_init(init).clone()
    }

    pub(super) fn set(service: SyncService) -> Result<(), SyncError> {
        GLOBAL
            .set(service)
            .map_err(|_| SyncError::AlreadyConfigured)
    }
}

#[cfg(target_arch = "wasm32")]
mod global {
    use super::SyncService;
    use crate::SyncError;
    use std::cell::OnceCell;

    thread_local! {
        static GLOBAL: OnceCell<SyncService> = const { OnceCell::new() };
    }

    pub(super) fn get_or_init(init: impl FnOnce() -> SyncService) -> SyncService {
        GLOBAL.with(|cell| cell.get_or_init(init).clone())
    }

    pub(super) fn set(service: SyncService) -> Result<(), SyncError> {
        GLOBAL.with(|cell| cell.set(service).map_err(|_| SyncError::AlreadyConfigured))
    }
}

impl SyncService {
    /// The service actions use: the one installed with [`scope`](SyncService::scope) for the
    /// running task if any, else the installed one, else a default one (created on first use).
    pub fn current() -> SyncService {
        if let Some(scoped) = crate::scope::current(&SCOPED) {
            return scoped;
        }
        // Inside an action body (a replay runs in the background, outside any `scope`), an
        // action calling another belongs to the same service.
        if let Some(action) = ActionContext::current() {
            return action.service().clone();
        }
        global::get_or_init(Self::default_service)
    }

    fn default_service() -> SyncService {
        // Unchecked: `current()` cannot fail, and with duplicate action names every call
        // reports the duplicate instead.
        platform_defaults(SyncService::builder())
            .shared_store(default_store())
            .build_unchecked()
    }

    /// Runs `future` with this service as [`SyncService::current`], whatever is installed.
    /// Tests use it to give each test its own service.
    pub fn scope<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        crate::scope::Scoped::new(&SCOPED, self.clone(), future)
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// The value of type `T` attached with [`SyncServiceBuilder::extension`], if any.
    pub fn extension<T: 'static>(&self) -> Option<&T> {
        self.inner
            .extensions
            .get(&core::any::TypeId::of::<T>())
            .and_then(|value| value.downcast_ref::<T>())
    }

    /// The store, shared: to build another service over the same data.
    pub fn shared_store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.inner.store)
    }

    /// The current status.
    pub fn status(&self) -> SyncStatus {
        self.inner.hub.get()
    }

    /// A stream of status changes, starting with the current status.
    pub fn subscribe(&self) -> impl Stream<Item = SyncStatus> + Unpin {
        self.inner.hub.subscribe_status()
    }

    /// A stream of [`SyncEvent`]s from now on.
    pub fn events(&self) -> impl Stream<Item = SyncEvent> + Unpin {
        self.inner.hub.subscribe_events()
    }

    /// A typed collection of local data, outside any action: writes are stamped with the
    /// current time.
    pub fn collection<T>(&self, name: &str) -> Collection<T> {
        Collection::detached(self.clone(), name)
    }

    /// Re-reads the pending and dead-letter counts from the store.
    pub async fn refresh_status(&self) -> Result<SyncStatus, SyncError> {
        // A call queued while the store was being read would be lost from the count (and a
        // lower count lets a new call overtake the queue): read again until nothing changed
        // the counts meanwhile.
        for _ in 0..8 {
            let generation = self.inner.hub.generation();
            let counts = self.inner.store.counts().await?;
            if self
                .inner
                .hub
                .set_counts_if_unchanged(generation, counts.pending, counts.dead)
            {
                return Ok(self.status());
            }
        }
        Ok(self.status())
    }

    pub(crate) fn new_stamp(&self) -> Stamp {
        let (action, timestamp) = self.new_id();
        Stamp { timestamp, action }
    }

    fn new_id(&self) -> (ActionId, Timestamp) {
        self.new_id_at(self.inner.clock.now())
    }

    /// A new id and stamp by the device's clock reading `local`, corrected.
    fn new_id_at(&self, local: Timestamp) -> (ActionId, Timestamp) {
        let millis = self.corrected_millis_at(local);
        let id = self
            .inner
            .ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .mint(millis);
        // The id's own millisecond (its top 48 bits), not the clock reading: the minter never
        // goes back when the clock does, so neither do the stamps last-write-wins compares.
        let minted = u64::try_from(id.as_u128() >> 80).unwrap_or(millis);
        (ActionId(id), Timestamp(minted))
    }

    fn is_reachable(&self) -> bool {
        self.reachable_unless_backing_off(|| self.inner.clock.now())
    }

    /// [`is_reachable`](Self::is_reachable) at the clock reading `now`.
    fn is_reachable_at(&self, now: Timestamp) -> bool {
        self.reachable_unless_backing_off(|| now)
    }

    /// Online, and not backing off after a transient failure (the clock is read only then).
    fn reachable_unless_backing_off(&self, now: impl FnOnce() -> Timestamp) -> bool {
        if !self.inner.connectivity.is_online() {
            return false;
        }
        let until = self.inner.offline_until.load(Ordering::SeqCst);
        until == 0 || now().as_millis() >= until
    }

    /// The connection came back (the connectivity says so, or a call got through after
    /// failures): replay at once, cutting short the backoff the head got while it was down.
    fn reconnected(&self) {
        self.inner.offline_until.store(0, Ordering::SeqCst);
        self.inner.reconnected.store(true, Ordering::SeqCst);
        self.kick_replay();
    }

    fn mark_reachable(&self) {
        let was_down = self.inner.consecutive_failures.swap(0, Ordering::SeqCst) > 0;
        if was_down && self.inner.replaying.load(Ordering::SeqCst) {
            // A replayed call got through: the replay itself goes on with the next one.
            self.inner.offline_until.store(0, Ordering::SeqCst);
        } else if was_down {
            self.reconnected();
        }
        self.inner.offline_until.store(0, Ordering::SeqCst);
        // An answer to a request sent before the connection dropped can arrive after the
        // `offline` event: the connectivity, not the late answer, says whether we are online.
        let online = self.inner.connectivity.is_online();
        self.inner.hub.set_online_clear_error(online);
    }

    fn mark_unreachable(&self, error: String, retry_after: Option<Duration>) {
        let failures = self
            .inner
            .consecutive_failures
            .fetch_add(1, Ordering::SeqCst)
            + 1;
        let wait = self.backoff(u32::try_from(failures).unwrap_or(u32::MAX), retry_after);
        let until = self.inner.clock.now().saturating_add(wait);
        self.inner
            .offline_until
            .store(until.as_millis(), Ordering::SeqCst);
        self.inner.hub.update(|s| {
            s.online = false;
            s.last_error = Some(error);
        });
    }

    fn backoff(&self, retries: u32, retry_after: Option<Duration>) -> Duration {
        let random = self
            .inner
            .rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .f64();
        self.inner.policy.backoff(retries, random, retry_after)
    }

    async fn ensure_counts(&self) -> Result<(), SyncError> {
        if !self.inner.hub.counts_loaded() {
            // First call of this service: its ids start above every id already queued (an
            // earlier run's clock may have been ahead of this one's).
            if let Some(last) = self.inner.store.last_queued_id().await? {
                lock(&self.inner.ids).floor(last.0);
            }
            self.refresh_status().await?;
        }
        Ok(())
    }

    fn note_error(&self, error: String) {
        self.inner.hub.update(|s| s.last_error = Some(error));
    }
}

/// The collection a query's answers are cached in.
pub(crate) fn cache_collection(action: &str) -> String {
    format!("__cache/{action}")
}

fn cache_write(action: &str, params_json: &str, json: String, stamp: Stamp) -> Write {
    Write {
        collection: cache_collection(action),
        key: params_json.to_owned(),
        value: Some(json),
        stamp,
    }
}

/// JSON with object keys sorted, so equal parameters always give the same cache key.
fn canonical_json<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    // Only the conversion depends on `T`; writing the value out is compiled once.
    value_json(serde_json::to_value(value))
}

/// The JSON text of a value that `canonical_json` converted.
fn value_json(
    value: Result<serde_json::Value, serde_json::Error>,
) -> Result<String, serde_json::Error> {
    serde_json::to_string(&value?)
}

/// Locks `mutex`, taking the value of a poisoned one (a panicking body must not stop replay).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
