//! Configuring a service: stores, connectivity, clock, retries, executor, replay lock.

use super::*;

/// Configures a [`SyncService`].
#[must_use]
pub struct SyncServiceBuilder {
    store: Option<Arc<dyn Store>>,
    connectivity: Option<Arc<dyn Connectivity>>,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    executor: Option<Arc<dyn Executor>>,
    replay_lock: LockChoice,
    replay_concurrency: usize,
    migrations: HashMap<String, Migration>,
    extensions: HashMap<core::any::TypeId, crate::maybe_send::AnyValue>,
    seed: Option<u64>,
    on_rejected: Option<crate::maybe_send::Hook<Rejection>>,
}

/// How many ordering scopes replay at once unless the builder says otherwise.
const DEFAULT_REPLAY_CONCURRENCY: usize = 4;

/// Which replay lock a builder was told to use.
pub(super) enum LockChoice {
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
            replay_concurrency: DEFAULT_REPLAY_CONCURRENCY,
            migrations: HashMap::new(),
            extensions: HashMap::new(),
            seed: None,
            on_rejected: None,
        }
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

    /// How many ordering scopes replay at once (default 4; 0 counts as 1). Calls of one scope
    /// always replay one at a time, in the order the user made them; calls of different scopes
    /// run concurrently within the replay task, so the server sees up to this many requests
    /// at once. Set 1 if action bodies block the thread (synchronous database or HTTP code),
    /// or the server must see one request at a time: scopes still do not wait for each other's
    /// backoff, they just take turns.
    pub fn replay_concurrency(mut self, scopes: usize) -> Self {
        self.replay_concurrency = scopes.max(1);
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

    /// Runs `hook` for each queued call that replay moves to the dead letters (the server
    /// rejected it, or it cannot be replayed), after its local writes were rolled back, with
    /// the service as [`SyncService::current`]: to tell the user, or to repair local data the
    /// roll-back cannot know about. [`SyncService::events`] reports the same as
    /// [`SyncEvent::DeadLettered`] and [`SyncEvent::RolledBack`]; the hook is for work that
    /// must happen even with no subscriber. Replay goes on when the hook's future completes.
    ///
    /// ```
    /// # use sync_runtime::{Rejection, SyncService};
    /// let service = SyncService::builder()
    ///     .on_rejected(|rejection: Rejection| async move {
    ///         eprintln!(
    ///             "`{}` was not accepted ({}); {} local records restored",
    ///             rejection.dead_letter.action.name,
    ///             rejection.dead_letter.message,
    ///             rejection.rolled_back.len()
    ///         );
    ///     })
    ///     .build();
    /// # let _ = service;
    /// ```
    pub fn on_rejected<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Rejection) -> Fut + MaybeSend + MaybeSync + 'static,
        Fut: Future<Output = ()> + MaybeSend + 'static,
    {
        self.on_rejected = Some(Arc::new(move |rejection| crate::boxed(hook(rejection))));
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
    pub(super) fn build_unchecked(self) -> SyncService {
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
            replay_concurrency: self.replay_concurrency,
            migrations: self.migrations,
            extensions: self.extensions,
            on_rejected: self.on_rejected,
            ids: Mutex::new(IdMinter::new()),
            server_clock: Default::default(),
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
            ready: AtomicBool::new(false),
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
