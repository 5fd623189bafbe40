//! The service: routes each action call online or offline, queues, replays, and reports status.

use crate::context::{ActionContext, Collection, Phase};
use crate::id::IdMinter;
use crate::registry::{Attempt, Registry};
use crate::status::StatusHub;
use crate::store::{
    Applied, Batch, Bury, DeadLetter, DeadReason, NewQueued, QueuedAction, Reschedule, Stamp,
    Store, Write,
};
use crate::trace;
use crate::{
    Action, ActionId, ActionKind, BoxFuture, ClassifyError, Clock, Connectivity,
    ManualConnectivity, MaybeSend, MaybeSync, MemoryStore, ReplayLock, RetryPolicy, SyncError,
    SyncEvent, SyncStatus, SystemClock, Timestamp,
};
use core::future::Future;
use core::time::Duration;
use futures_util::Stream;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

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
    migrations: HashMap<String, Migration>,
    extensions: HashMap<core::any::TypeId, crate::maybe_send::AnyValue>,
    ids: Mutex<IdMinter>,
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
}

impl core::fmt::Debug for SyncService {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SyncService")
            .field("status", &self.status())
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// Configures a [`SyncService`].
#[must_use]
pub struct SyncServiceBuilder {
    store: Option<Arc<dyn Store>>,
    connectivity: Option<Arc<dyn Connectivity>>,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    executor: Option<Arc<dyn Executor>>,
    replay_lock: LockChoice,
    migrations: HashMap<String, Migration>,
    extensions: HashMap<core::any::TypeId, crate::maybe_send::AnyValue>,
    seed: Option<u64>,
}

/// Which replay lock a builder was told to use.
enum LockChoice {
    /// The store's own ([`Store::replay_lock`]), else the platform's (Web Locks in the browser).
    Default,
    Given(Arc<dyn ReplayLock>),
    Without,
}

impl core::fmt::Debug for SyncServiceBuilder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SyncServiceBuilder")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl SyncServiceBuilder {
    /// Where the queue, dead letters and local data live. Default: a [`MemoryStore`], which
    /// keeps nothing across restarts; use `SqliteStore` (native) or `IndexedDbStore` (browser)
    /// for durability. ([`SyncService::current`] without any configuration is durable.)
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Where the queue, dead letters and local data live, shared with other owners.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// What says whether the server is reachable. Default: always online (transient failures
    /// still switch to the offline path).
    pub fn connectivity(mut self, connectivity: impl Connectivity) -> Self {
        self.connectivity = Some(Arc::new(connectivity));
        self
    }

    /// The clock; inject a [`ManualClock`](crate::ManualClock) in tests.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How transient failures are retried.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Where background replay runs. Without one, the queue replays when
    /// [`SyncService::replay`] is called, and before the next call of an action made online.
    pub fn executor(mut self, executor: impl Executor) -> Self {
        self.executor = Some(Arc::new(executor));
        self
    }

    /// A lock taken around each replay, shared with other services on the same store, so
    /// that only one of them replays at a time (see [`ReplayLock`]). Default: the store's
    /// ([`Store::replay_lock`]: for a `SqliteStore` on a file, a
    /// [`FileReplayLock`](crate::FileReplayLock) beside it, which every process on that file
    /// shares); else the browser's Web Locks on wasm32, and none for other native stores.
    pub fn replay_lock(mut self, lock: impl ReplayLock) -> Self {
        self.replay_lock = LockChoice::Given(Arc::new(lock));
        self
    }

    /// Replays without any lock shared with other services, not even the store's: for a
    /// store that this service alone ever opens. Within the service, replays still run one
    /// at a time.
    pub fn without_replay_lock(mut self) -> Self {
        self.replay_lock = LockChoice::Without;
        self
    }

    /// Seeds the jitter's random numbers, for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Attaches a value of your own (an HTTP client, a base URL…) that action bodies and
    /// local handlers reach through [`SyncService::extension`], usually as
    /// `ActionContext::current()?.service().extension::<T>()`. One value per type; a second
    /// value of the same type replaces the first.
    pub fn extension<T: MaybeSend + MaybeSync + 'static>(mut self, value: T) -> Self {
        self.extensions
            .insert(core::any::TypeId::of::<T>(), Box::new(value));
        self
    }

    /// Registers a [`Migration`] for calls of `action` queued by an older version.
    pub fn migrate(mut self, action: &str, migration: Migration) -> Self {
        self.migrations.insert(action.to_owned(), migration);
        self
    }

    /// Builds the service. Fails if two actions in this program share a name.
    pub fn build(self) -> Result<SyncService, SyncError> {
        Registry::global()?;
        Ok(self.build_unchecked())
    }

    /// Builds the service without checking the registry; with duplicate action names, every
    /// call then reports the duplicate.
    fn build_unchecked(self) -> SyncService {
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let replay_lock = match self.replay_lock {
            LockChoice::Default => store.replay_lock().or_else(platform_replay_lock),
            LockChoice::Given(lock) => Some(lock),
            LockChoice::Without => None,
        };
        let inner = Arc::new(Inner {
            store,
            connectivity: self
                .connectivity
                .unwrap_or_else(|| Arc::new(ManualConnectivity::new(true))),
            clock: self.clock,
            policy: self.policy,
            executor: self.executor,
            replay_lock,
            migrations: self.migrations,
            extensions: self.extensions,
            ids: Mutex::new(IdMinter::new()),
            rng: Mutex::new(
                self.seed
                    .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
            ),
            hub: StatusHub::default(),
            replaying: AtomicBool::new(false),
            replay_again: AtomicBool::new(false),
            driver_running: AtomicBool::new(false),
            offline_until: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            reconnected: AtomicBool::new(false),
            wake_driver: Mutex::new(None),
            kicks: AtomicU64::new(0),
        });
        let online = inner.connectivity.is_online();
        inner.hub.update(|s| s.online = online);
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        inner.connectivity.on_change(Box::new(move |online| {
            if let Some(inner) = weak.upgrade() {
                let service = SyncService { inner };
                service.inner.hub.update(|s| s.online = online);
                if online {
                    service.reconnected();
                }
            }
        }));
        let service = SyncService { inner };
        service.kick_replay();
        service
    }

    /// Builds the service and makes it the one [`SyncService::current`] returns. May succeed
    /// once per process.
    pub fn install(self) -> Result<SyncService, SyncError> {
        let service = self.build()?;
        global::set(service.clone())?;
        Ok(service)
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

/// What one [`SyncService::replay`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Calls that reached the server and were removed from the queue.
    pub synced: usize,
    /// Calls moved to the dead-letter store.
    pub dead_lettered: usize,
    /// Transient failures (the head of the queue stays and waits).
    pub retried: usize,
    /// Calls still queued.
    pub remaining: u64,
    /// If the head of the queue is waiting for its backoff: when it may be tried again.
    pub next_attempt_at: Option<Timestamp>,
    /// Another replay was already running; this call did nothing (the running one goes round
    /// once more to pick up anything new). Also set with
    /// [`replayed_elsewhere`](Self::replayed_elsewhere).
    pub already_running: bool,
    /// Another service on the same store (another process or window on the same SQLite file,
    /// another tab) holds the [`ReplayLock`] and is replaying the queue; this call did nothing.
    /// `remaining` says what still waits (read from the store) and, if anything does,
    /// `next_attempt_at` when to look again: if that replay stops with calls left (its
    /// process died, or it went offline), the next look takes over. A background driver
    /// looks again by itself.
    pub replayed_elsewhere: bool,
}

/// Why a replay pass stopped short of an empty queue.
enum Stop {
    Empty,
    Waiting(Timestamp),
    Offline,
}

impl SyncService {
    /// Starts configuring a service.
    pub fn builder() -> SyncServiceBuilder {
        SyncServiceBuilder {
            store: None,
            connectivity: None,
            clock: Arc::new(SystemClock),
            policy: RetryPolicy::default(),
            executor: None,
            replay_lock: LockChoice::Default,
            migrations: HashMap::new(),
            extensions: HashMap::new(),
            seed: None,
        }
    }

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

    /// Every queued call, in replay order.
    pub async fn queued(&self) -> Result<Vec<QueuedAction>, SyncError> {
        Ok(self.inner.store.queued(None, usize::MAX).await?)
    }

    /// Every dead letter, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, SyncError> {
        Ok(self.inner.store.dead_letters().await?)
    }

    /// Moves a dead letter back into the queue with its retries reset and a fresh time-to-live
    /// (its timestamp, which last-write-wins compares, stays), and replays. It goes back to
    /// its place in the order the user acted.
    pub async fn retry_dead_letter(&self, id: ActionId) -> Result<(), SyncError> {
        let mut batch = Batch::new();
        batch.revive = Some((id, self.inner.clock.now()));
        self.inner.store.apply(batch).await?;
        // Re-read rather than count: a revived query may merge with one already queued.
        self.refresh_status().await?;
        self.kick_replay();
        Ok(())
    }

    /// Moves the first queued call whose stored row cannot be read (edited or damaged outside
    /// this crate) to the dead letters, so the rest of the queue can drain, and replays.
    ///
    /// Such a row stops replay with [`StoreError::Incompatible`](crate::StoreError) naming the
    /// row (in the status's `last_error` too): nothing is skipped silently. Call this (again
    /// for each bad row) to set it aside; the dead letter keeps what could be read of it, with
    /// [`DeadReason::Unreadable`] and a [`SyncEvent::DeadLettered`]. Returns it, or `None` if
    /// every queued row reads.
    pub async fn set_aside_unreadable(&self) -> Result<Option<DeadLetter>, SyncError> {
        let dead = self
            .inner
            .store
            .set_aside_unreadable(self.inner.clock.now())
            .await?;
        if let Some(dead) = &dead {
            trace::dead_lettered(
                &dead.action.name,
                dead.action.id,
                dead.reason,
                &dead.message,
            );
            self.inner.hub.update(|s| {
                s.pending = s.pending.saturating_sub(1);
                s.dead += 1;
                s.last_error = Some(dead.message.clone());
            });
            self.inner.hub.emit(SyncEvent::DeadLettered {
                id: dead.action.id,
                name: dead.action.name.clone(),
                reason: dead.reason,
                message: dead.message.clone(),
            });
            self.kick_replay();
        }
        Ok(dead)
    }

    /// Deletes a dead letter for good.
    pub async fn discard_dead_letter(&self, id: ActionId) -> Result<(), SyncError> {
        let mut batch = Batch::new();
        batch.discard = Some(id);
        self.inner.store.apply(batch).await?;
        self.inner.hub.update(|s| s.dead = s.dead.saturating_sub(1));
        Ok(())
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
        let millis = self.inner.clock.now().as_millis();
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
        self.inner.connectivity.is_online()
            && self.inner.clock.now().as_millis() >= self.inner.offline_until.load(Ordering::SeqCst)
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
        self.inner.hub.update(|s| {
            s.online = true;
            s.last_error = None;
        });
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
            self.refresh_status().await?;
        }
        Ok(())
    }

    /// Runs one call of action `A`: online through its server body, else through its local
    /// handler with the call queued. `#[offline_action]` functions call this.
    ///
    /// Only what depends on `A` is in this generic function (calling the body or the local
    /// handler, and serializing `A`'s types); the rest is in non-generic helpers, compiled once
    /// in this crate instead of once per action in the user's crate (BENCHMARKS.md, row 5).
    pub async fn execute_action<A: Action>(
        &self,
        params: A::Params,
    ) -> Result<A::Output, A::Error> {
        let params_json = canonical_json(&params)
            .map_err(|e| SyncError::serde(format!("encode the parameters of `{}`", A::NAME), e))?;
        let (id, timestamp, online) = self.begin_call().await?;
        trace::call_routed(A::NAME, id, online);
        if online {
            let context = ActionContext::new(self.clone(), id, A::NAME, timestamp, Phase::Online);
            match context.clone().scope(A::server(params.clone())).await {
                Ok(output) => {
                    let answer =
                        (A::KIND == ActionKind::Query).then(|| serde_json::to_string(&output));
                    self.store_answer(&context, &params_json, answer).await;
                    return Ok(output);
                }
                Err(error) if error.is_transient() => {
                    trace::online_failed(A::NAME, id, &error, true);
                    let retry_after = error.retry_after().or(context.noted_retry_after());
                    self.mark_unreachable(error.to_string(), retry_after);
                }
                Err(error) => {
                    trace::online_failed(A::NAME, id, &error, false);
                    return Err(error);
                }
            }
        }
        let context = ActionContext::new(self.clone(), id, A::NAME, timestamp, Phase::Offline);
        let result = context.clone().scope(A::local(params)).await;
        // A local handler that fails rejects the call, as the server would; the generated
        // mutation stub fails with `Queued` on purpose, and a query always queues a refresh.
        if result.is_ok() || context.is_marked_queued() || A::KIND == ActionKind::Query {
            let call = NewQueued {
                id,
                name: A::NAME.to_owned(),
                version: A::VERSION,
                kind: A::KIND,
                params: params_json,
                timestamp,
                queued_at: self.inner.clock.now(),
            };
            self.queue_call(&context, call, result.is_ok()).await?;
        }
        result
    }

    /// Checks the registry, loads the counts, mints the call's id, and says whether the call
    /// goes to the server first.
    async fn begin_call(&self) -> Result<(ActionId, Timestamp, bool), SyncError> {
        Registry::global()?;
        self.ensure_counts().await?;
        let (id, timestamp) = self.new_id();
        Ok((id, timestamp, self.goes_online().await))
    }

    /// Whether the call goes to the server first.
    async fn goes_online(&self) -> bool {
        // While calls wait in the queue the server does not reflect them yet: a mutation sent
        // now would overtake them, and a query's answer would be stamped newer than their
        // optimistic writes and hide them. Both take the local path until the queue drains.
        let backlog = self.inner.hub.pending() > 0;
        if backlog && self.inner.executor.is_none() && self.is_reachable() {
            // Nothing replays in the background: drain the queue first.
            let _ = self.replay().await;
        }
        let backlog = self.inner.hub.pending() > 0;
        self.is_reachable() && !backlog
    }

    /// Stores what a successful online call wrote, and a query's answer (`answer`, if the
    /// action is a query). The server has already applied the call, so a failure here is
    /// reported in the status, not returned.
    async fn store_answer(
        &self,
        context: &ActionContext,
        params_json: &str,
        answer: Option<Result<String, serde_json::Error>>,
    ) {
        self.mark_reachable();
        let mut batch = Batch::new();
        batch.writes = context.take_writes();
        match answer {
            Some(Ok(json)) => batch.writes.push(cache_write(
                context.name(),
                params_json,
                json,
                context.stamp(),
            )),
            Some(Err(e)) => self.note_error(format!(
                "could not cache the answer of `{}`: {e}",
                context.name()
            )),
            None => {}
        }
        if !batch.is_empty() {
            if let Err(e) = self.inner.store.apply(batch).await {
                trace::store_error("store an online answer", &e);
                self.note_error(e.to_string());
            }
        }
    }

    fn note_error(&self, error: String) {
        self.inner.hub.update(|s| s.last_error = Some(error));
    }

    /// Queues a call answered offline, with its local handler's writes if `keep_writes`.
    async fn queue_call(
        &self,
        context: &ActionContext,
        call: NewQueued,
        keep_writes: bool,
    ) -> Result<(), SyncError> {
        let (id, name) = (call.id, call.name.clone());
        let mut batch = Batch::new();
        if keep_writes {
            batch.writes = context.take_writes();
        }
        batch.enqueue = Some(call);
        let applied: Applied = self.inner.store.apply(batch).await?;
        if applied.queued == Some(id) {
            trace::queued(&name, id, applied.replaced);
            if applied.replaced.is_none() {
                self.inner.hub.update(|s| s.pending += 1);
            }
            self.inner.hub.emit(SyncEvent::Queued { id, name });
        }
        self.kick_replay();
        Ok(())
    }

    /// The answer a query got online for these parameters, if one was cached.
    pub(crate) async fn cached<A: Action>(
        &self,
        params: &A::Params,
    ) -> Result<A::Output, A::Error> {
        let key = canonical_json(params)
            .map_err(|e| SyncError::serde(format!("encode the parameters of `{}`", A::NAME), e))?;
        let record = self
            .inner
            .store
            .get(&cache_collection(A::NAME), &key)
            .await
            .map_err(SyncError::from)?;
        match record.and_then(|r| r.value) {
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                SyncError::serde(format!("decode the cached answer of `{}`", A::NAME), e).into()
            }),
            None => Err(SyncError::NotCached { action: A::NAME }.into()),
        }
    }

    /// Starts a background replay if an executor is configured and none is running.
    fn kick_replay(&self) {
        let Some(executor) = self.inner.executor.clone() else {
            return;
        };
        self.inner.kicks.fetch_add(1, Ordering::SeqCst);
        if self.inner.driver_running.swap(true, Ordering::SeqCst) {
            self.inner.replay_again.store(true, Ordering::SeqCst);
            if let Some(wake) = lock(&self.inner.wake_driver).take() {
                let _ = wake.send(());
            }
            return;
        }
        let service = self.clone();
        let sleeper = Arc::clone(&executor);
        executor.spawn(crate::boxed(async move {
            // If this task dies (a panic in a server body), the next trigger must still be able
            // to start a driver.
            let _running = DriverGuard(&service);
            loop {
                service.drive_replay(&*sleeper).await;
                service.inner.driver_running.store(false, Ordering::SeqCst);
                // A trigger that arrived while this driver was finishing saw it running and
                // left the work to it: go round again rather than lose that trigger. Taken,
                // not just read: only a replay that holds the replay lock clears the flag, so
                // while another service holds it, a flag left set would send this loop round
                // and round without ever awaiting, hogging a thread (and, on a one-thread
                // runtime, starving the holder it waits for).
                let wanted = service.inner.replay_again.swap(false, Ordering::SeqCst);
                if !wanted || service.inner.driver_running.swap(true, Ordering::SeqCst) {
                    break;
                }
            }
        }));
    }

    /// Replays, then sleeps until the head's backoff has passed and replays again, while
    /// anything is queued and the connection is up.
    async fn drive_replay(&self, sleeper: &dyn Executor) {
        let mut store_failures = 0u32;
        loop {
            let kicks_seen = self.inner.kicks.load(Ordering::SeqCst);
            let wait = match self.replay().await {
                // A caller's own `replay()` of this service is running: it goes round once
                // more for this trigger. Look again when it is likely done; going round at once
                // would spin on the flag this very call set, and on a one-thread executor
                // never let that replay finish.
                Ok(report)
                    if report.already_running
                        && !report.replayed_elsewhere
                        && self.inner.replaying.load(Ordering::SeqCst) =>
                {
                    Some(Duration::from_millis(10))
                }
                // Another service or process replays: look again at the time it says, and
                // take over then if that one stopped with calls left.
                Ok(report) if report.remaining > 0 && self.inner.connectivity.is_online() => report
                    .next_attempt_at
                    .map(|at| at.saturating_since(self.inner.clock.now())),
                Ok(_) => None,
                // The store failed (locked, full, a bad row…): report it and try again after
                // a backoff while anything waits, rather than leave the queue for good.
                Err(error) => {
                    trace::store_error("replay", &error);
                    self.note_error(format!("replay failed: {error}"));
                    store_failures = store_failures.saturating_add(1);
                    (self.inner.hub.pending() > 0 && self.inner.connectivity.is_online())
                        .then(|| self.backoff(store_failures, None))
                }
            };
            let Some(wait) = wait else { return };
            // Sleep until the head's next attempt, or until a trigger (the connection coming
            // back, a new call) wakes the driver sooner.
            let (wake, woken) = futures_channel::oneshot::channel();
            *lock(&self.inner.wake_driver) = Some(wake);
            if self.inner.kicks.load(Ordering::SeqCst) != kicks_seen {
                // A trigger arrived before the waker was in place: go round at once.
                lock(&self.inner.wake_driver).take();
                continue;
            }
            let sleep = sleeper.sleep(wait.max(Duration::from_millis(10)));
            futures_util::future::select(sleep, woken).await;
            lock(&self.inner.wake_driver).take();
        }
    }

    /// Replays the queue now, in order, until it is empty, the head must wait for its
    /// backoff, or the server is unreachable. Only one replay runs at a time.
    pub async fn replay(&self) -> Result<ReplayReport, SyncError> {
        if self.inner.replaying.swap(true, Ordering::SeqCst) {
            self.inner.replay_again.store(true, Ordering::SeqCst);
            return Ok(ReplayReport {
                already_running: true,
                ..ReplayReport::default()
            });
        }
        let _running = ReplayGuard(self);
        let Some(lock) = self.inner.replay_lock.clone() else {
            return self.replay_holding_lock().await;
        };
        // Other services on the same store (other tabs, processes, windows) replay too: run
        // only while holding the shared lock, and skip if one of them holds it.
        let (sender, result) = futures_channel::oneshot::channel();
        let service = self.clone();
        // The lock may run the work as a task of its own: keep this service current there.
        let work = self.scope(async move {
            let _ = sender.send(service.replay_holding_lock().await);
        });
        lock.run_exclusive(crate::boxed(work)).await;
        match result.await {
            Ok(result) => result,
            Err(_) => self.replayed_elsewhere().await,
        }
    }

    /// What a replay reports when another holder of the replay lock is replaying: the
    /// pending count, and a time to look again, in case that replay ends before it sees the
    /// calls this service queued meanwhile, or its holder dies. The count is read from the
    /// store, so this service's own calls take the local path exactly while calls wait.
    async fn replayed_elsewhere(&self) -> Result<ReplayReport, SyncError> {
        const LOOK_AGAIN: Duration = Duration::from_secs(1);
        let status = self.refresh_status().await?;
        trace::replayed_elsewhere(status.pending);
        self.inner
            .hub
            .update(|s| s.replaying_elsewhere = status.pending > 0);
        Ok(ReplayReport {
            already_running: true,
            replayed_elsewhere: true,
            remaining: status.pending,
            next_attempt_at: (status.pending > 0)
                .then(|| self.inner.clock.now().saturating_add(LOOK_AGAIN)),
            ..ReplayReport::default()
        })
    }

    async fn replay_holding_lock(&self) -> Result<ReplayReport, SyncError> {
        self.inner.hub.update(|s| {
            s.syncing = true;
            s.replaying_elsewhere = false;
        });
        let mut report = ReplayReport::default();
        let result = loop {
            self.inner.replay_again.store(false, Ordering::SeqCst);
            match self.replay_pass(&mut report).await {
                Ok(Stop::Empty) if self.inner.replay_again.load(Ordering::SeqCst) => continue,
                Ok(Stop::Waiting(at)) => {
                    report.next_attempt_at = Some(at);
                    break Ok(());
                }
                Ok(_) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let status = self.refresh_status().await;
        report.remaining = self.inner.hub.pending();
        result?;
        status?;
        Ok(report)
    }

    async fn replay_pass(&self, report: &mut ReplayReport) -> Result<Stop, SyncError> {
        let registry = Registry::global()?;
        let mut cut_backoff = self.inner.reconnected.swap(false, Ordering::SeqCst);
        loop {
            let Some(head) = self.inner.store.queued(None, 1).await?.into_iter().next() else {
                return Ok(Stop::Empty);
            };
            let now = self.inner.clock.now();
            if now.saturating_since(head.queued_at) > self.inner.policy.ttl {
                let message = format!(
                    "waited longer than the time-to-live of {:?}",
                    self.inner.policy.ttl
                );
                self.bury(&head, DeadReason::Expired, message, report)
                    .await?;
                continue;
            }
            // Once after the connection came back, the head goes at once: the backoff it got
            // while the connection was down says nothing about the connection now.
            if head.next_attempt_at > now && !core::mem::take(&mut cut_backoff) {
                return Ok(Stop::Waiting(head.next_attempt_at));
            }
            cut_backoff = false;
            if !self.inner.connectivity.is_online() {
                return Ok(Stop::Offline);
            }
            let Some(registration) = registry.get(&head.name) else {
                let message = format!(
                    "no action named `{}` is registered in this build",
                    head.name
                );
                self.bury(&head, DeadReason::UnknownAction, message, report)
                    .await?;
                continue;
            };
            let params = match self.migrate(&head, registration.version) {
                Ok(params) => params,
                Err(message) => {
                    self.bury(&head, DeadReason::BadParams, message, report)
                        .await?;
                    continue;
                }
            };
            let context = ActionContext::new(
                self.clone(),
                head.id,
                registration.name,
                head.timestamp,
                Phase::Replay,
            );
            let attempt_number = head.retries.saturating_add(1);
            trace::replay_attempt(&head.name, head.id, attempt_number);
            let attempt = (registration.replay)(params, context.clone());
            match catch_panic(attempt).await {
                Attempt::Done(json) => {
                    trace::replay_synced(&head.name, head.id, attempt_number);
                    self.mark_reachable();
                    let mut batch = Batch::new();
                    batch.writes = context.take_writes();
                    if head.kind == ActionKind::Query {
                        batch.writes.push(cache_write(
                            registration.name,
                            &head.params,
                            json,
                            context.stamp(),
                        ));
                    }
                    batch.complete = Some(head.id);
                    self.inner.store.apply(batch).await?;
                    self.inner
                        .hub
                        .update(|s| s.pending = s.pending.saturating_sub(1));
                    self.inner.hub.emit(SyncEvent::Synced {
                        id: head.id,
                        name: head.name.clone(),
                    });
                    report.synced += 1;
                }
                Attempt::BadParams(error) => {
                    let message = format!(
                        "the parameters no longer match version {} of `{}`: {error}",
                        registration.version, head.name
                    );
                    self.bury(&head, DeadReason::BadParams, message, report)
                        .await?;
                }
                Attempt::Failed {
                    transient: true,
                    retry_after,
                    message,
                } => {
                    report.retried += 1;
                    self.mark_unreachable(message.clone(), retry_after);
                    let retries = head.retries.saturating_add(1);
                    if retries > self.inner.policy.max_retries {
                        let message = format!(
                            "gave up after {retries} transient failures; the last: {message}"
                        );
                        self.bury(&head, DeadReason::TooManyRetries, message, report)
                            .await?;
                        continue;
                    }
                    let backoff = self.backoff(retries, retry_after);
                    trace::replay_retry(&head.name, head.id, attempt_number, &message, backoff);
                    let next_attempt_at = now.saturating_add(backoff);
                    let mut batch = Batch::new();
                    batch.reschedule = Some(Reschedule {
                        id: head.id,
                        retries,
                        next_attempt_at,
                        last_error: message.clone(),
                    });
                    self.inner.store.apply(batch).await?;
                    self.inner.hub.emit(SyncEvent::Retrying {
                        id: head.id,
                        name: head.name.clone(),
                        retries,
                        error: message,
                    });
                    return Ok(Stop::Waiting(next_attempt_at));
                }
                Attempt::Failed {
                    transient: false,
                    message,
                    ..
                } => {
                    self.bury(&head, DeadReason::Rejected, message, report)
                        .await?;
                }
            }
        }
    }

    /// The parameters to replay `head` with under this build's `version` of its action.
    fn migrate(&self, head: &QueuedAction, version: u32) -> Result<String, String> {
        if head.version == version {
            return Ok(head.params.clone());
        }
        if let Some(migration) = self.inner.migrations.get(&head.name) {
            let value: serde_json::Value = serde_json::from_str(&head.params)
                .map_err(|e| format!("the queued parameters are not JSON: {e}"))?;
            let migrated = migration(head.version, value)
                .map_err(|e| format!("migrating from version {} failed: {e}", head.version))?;
            return serde_json::to_string(&migrated).map_err(|e| e.to_string());
        }
        if head.version > version {
            return Err(format!(
                "queued by version {} of `{}`, but this build only knows version {version}",
                head.version, head.name
            ));
        }
        // An older version with no migration: try its parameters as they are.
        Ok(head.params.clone())
    }

    async fn bury(
        &self,
        head: &QueuedAction,
        reason: DeadReason,
        message: String,
        report: &mut ReplayReport,
    ) -> Result<(), SyncError> {
        trace::dead_lettered(&head.name, head.id, reason, &message);
        let mut batch = Batch::new();
        batch.bury = Some(Bury {
            id: head.id,
            reason,
            message: message.clone(),
            failed_at: self.inner.clock.now(),
        });
        self.inner.store.apply(batch).await?;
        self.inner.hub.update(|s| {
            s.pending = s.pending.saturating_sub(1);
            s.dead += 1;
            s.last_error = Some(message.clone());
        });
        self.inner.hub.emit(SyncEvent::DeadLettered {
            id: head.id,
            name: head.name.clone(),
            reason,
            message,
        });
        report.dead_lettered += 1;
        Ok(())
    }
}

/// Clears `driver_running` when the driver task ends, however it ends.
struct DriverGuard<'a>(&'a SyncService);

impl Drop for DriverGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.inner.driver_running.store(false, Ordering::SeqCst);
        }
    }
}

struct ReplayGuard<'a>(&'a SyncService);

impl Drop for ReplayGuard<'_> {
    fn drop(&mut self) {
        self.0.inner.hub.update(|s| s.syncing = false);
        self.0.inner.replaying.store(false, Ordering::SeqCst);
    }
}

/// Where the default service keeps its data on native targets: `$SYNC_RUNTIME_DB` if set,
/// else `<data dir>/sync-runtime/<program name>.sqlite3`.
#[cfg(not(target_arch = "wasm32"))]
pub fn default_database_path() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("SYNC_RUNTIME_DB") {
        return Some(path.into());
    }
    let program = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "app".to_owned());
    Some(
        dirs::data_local_dir()?
            .join("sync-runtime")
            .join(format!("{program}.sqlite3")),
    )
}

#[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
fn default_store() -> Arc<dyn Store> {
    let Some(path) = default_database_path() else {
        return Arc::new(Unavailable::message(
            "no data directory is known for this user; set SYNC_RUNTIME_DB to a file path".into(),
        ));
    };
    if let Some(parent) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            return Arc::new(Unavailable::message(format!(
                "cannot create {}: {e}",
                parent.display()
            )));
        }
    }
    match crate::store::SqliteStore::open(&path) {
        Ok(store) => Arc::new(store),
        Err(e) => Arc::new(Unavailable(e)),
    }
}

#[cfg(all(not(feature = "sqlite"), not(target_arch = "wasm32")))]
fn default_store() -> Arc<dyn Store> {
    // Without the `sqlite` feature there is no durable store to default to; say so on use
    // rather than losing queued work silently in memory.
    Arc::new(Unavailable::message(
        "the `sqlite` feature is off, so there is no default durable store; configure one with SyncService::builder().store(..).install()".into(),
    ))
}

/// The default service in the browser keeps its data in IndexedDB, opened on first use.
#[cfg(target_arch = "wasm32")]
fn default_store() -> Arc<dyn Store> {
    Arc::new(crate::store::IndexedDbStore::new(
        crate::browser::DEFAULT_DATABASE,
    ))
}

/// What the default service adds to a builder's defaults on this platform: in the browser,
/// connectivity from the browser's events, and background replay on the page's event loop
/// (started at once, so that calls queued before a reload replay at page load).
#[cfg(target_arch = "wasm32")]
fn platform_defaults(builder: SyncServiceBuilder) -> SyncServiceBuilder {
    builder
        .connectivity(crate::browser::BrowserConnectivity::new())
        .executor(crate::browser::BrowserExecutor)
}

#[cfg(not(target_arch = "wasm32"))]
fn platform_defaults(builder: SyncServiceBuilder) -> SyncServiceBuilder {
    builder
}

/// Tabs of one origin share the browser's storage, so replays take a Web Lock by default.
#[cfg(target_arch = "wasm32")]
fn platform_replay_lock() -> Option<Arc<dyn ReplayLock>> {
    Some(Arc::new(crate::browser::WebLocks::default()))
}

/// Native stores that others can open say so themselves ([`Store::replay_lock`]); the rest
/// have one owner.
#[cfg(not(target_arch = "wasm32"))]
fn platform_replay_lock() -> Option<Arc<dyn ReplayLock>> {
    None
}

/// A store that could not be opened: every call reports why, so nothing is silently lost.
/// (The browser's default store reports its own opening errors.)
#[cfg(not(target_arch = "wasm32"))]
struct Unavailable(crate::StoreError);

#[cfg(not(target_arch = "wasm32"))]
impl Unavailable {
    fn message(message: String) -> Self {
        Self(crate::StoreError::Backend {
            operation: "open the default store",
            message,
        })
    }

    /// The open error again, of the same kind (a damaged file stays permanent, a full disk
    /// stays full).
    fn error(&self) -> crate::StoreError {
        use crate::StoreError::{Backend, Full, Incompatible, NotFound};
        match &self.0 {
            Backend { operation, message } => Backend {
                operation,
                message: message.clone(),
            },
            Incompatible { location, reason } => Incompatible {
                location: location.clone(),
                reason: reason.clone(),
            },
            Full { message } => Full {
                message: message.clone(),
            },
            NotFound(id) => NotFound(*id),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Store for Unavailable {
    fn apply(&self, _batch: Batch) -> BoxFuture<'_, Result<Applied, crate::StoreError>> {
        let error = self.error();
        crate::boxed(async move { Err(error) })
    }

    fn get<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<crate::store::Record>, crate::StoreError>> {
        let error = self.error();
        crate::boxed(async move { Err(error) })
    }

    fn scan<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, crate::store::Record)>, crate::StoreError>> {
        let error = self.error();
        crate::boxed(async move { Err(error) })
    }

    fn queued(
        &self,
        _: Option<ActionId>,
        _: usize,
    ) -> BoxFuture<'_, Result<Vec<QueuedAction>, crate::StoreError>> {
        let error = self.error();
        crate::boxed(async move { Err(error) })
    }

    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, crate::StoreError>> {
        let error = self.error();
        crate::boxed(async move { Err(error) })
    }

    fn counts(&self) -> BoxFuture<'_, Result<crate::store::Counts, crate::StoreError>> {
        let error = self.error();
        crate::boxed(async move { Err(error) })
    }
}

/// Runs a replay attempt, turning a panic in the user's server body into a permanent failure,
/// so one bad call cannot stop the queue behind it.
#[cfg(not(target_arch = "wasm32"))]
async fn catch_panic(attempt: BoxFuture<'static, Attempt>) -> Attempt {
    use futures_util::FutureExt;
    match core::panic::AssertUnwindSafe(attempt).catch_unwind().await {
        Ok(attempt) => attempt,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            Attempt::Failed {
                transient: false,
                retry_after: None,
                message: format!("the server body panicked: {what}"),
            }
        }
    }
}

/// On wasm32 a panic aborts the module (panic=abort), so there is nothing to catch.
#[cfg(target_arch = "wasm32")]
async fn catch_panic(attempt: BoxFuture<'static, Attempt>) -> Attempt {
    attempt.await
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
    serde_json::to_value(value).and_then(|v| serde_json::to_string(&v))
}

/// Locks `mutex`, taking the value of a poisoned one (a panicking body must not stop replay).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
