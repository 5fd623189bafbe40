//! Deterministic simulation: thousands of random schedules of user actions, connectivity
//! flips, clock jumps, replays, restarts, and a server that fails transiently (before applying,
//! or after applying with the response lost) and permanently.
//!
//! Afterwards every action the user made must be applied on the (idempotent) simulated server
//! exactly once and in the order it was made, or sit in the dead-letter store with a reason;
//! and the local data must hold what the server holds for every key whose last write reached
//! it (last-write-wins by the time the user acted).

use futures::executor::block_on;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use sync_runtime::store::DeadReason;
use sync_runtime::{
    offline_action, ActionContext, ActionId, ClassifyError, ManualClock, ManualConnectivity,
    MemoryStore, RetryPolicy, SqliteStore, Store, SyncError, SyncService, Timestamp,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("connection lost")]
    Network,
    #[error("the server refuses value {0}")]
    Refused(i64),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Network)
    }
}

/// A value the server always refuses.
fn refused(value: i64) -> bool {
    value % 23 == 13
}

/// The simulated server: idempotent by action id, like a real one using the runtime's helper.
#[derive(Default)]
struct Server {
    rng: Option<fastrand::Rng>,
    fail_before: f64,
    fail_after: f64,
    responses: HashMap<ActionId, i64>,
    log: Vec<ActionId>,
    values: HashMap<String, i64>,
}

impl Server {
    fn handle(&mut self, id: ActionId, key: &str, value: i64) -> Result<i64, AppError> {
        let rng = self.rng.as_mut().expect("seeded");
        if rng.f64() < self.fail_before {
            return Err(AppError::Network);
        }
        if let Some(response) = self.responses.get(&id) {
            return Ok(*response);
        }
        if refused(value) {
            return Err(AppError::Refused(value));
        }
        self.responses.insert(id, value);
        self.log.push(id);
        self.values.insert(key.to_owned(), value);
        if rng.f64() < self.fail_after {
            // Applied, but the response never reaches the client.
            return Err(AppError::Network);
        }
        Ok(value)
    }
}

thread_local! {
    static SERVER: RefCell<Server> = RefCell::new(Server::default());
    static LAST_ID: RefCell<Option<ActionId>> = const { RefCell::new(None) };
}

fn note_id() -> ActionContext {
    let context = ActionContext::current().expect("inside an action");
    LAST_ID.with(|last| *last.borrow_mut() = Some(context.id()));
    context
}

/// Sets `key` to `value` on the server; keeps the server's answer locally.
#[offline_action(local = set_value_locally)]
pub async fn set_value(key: String, value: i64) -> Result<i64, AppError> {
    let context = note_id();
    let stored = SERVER.with(|s| s.borrow_mut().handle(context.id(), &key, value))?;
    context
        .collection::<i64>("values")
        .put(key, &stored)
        .await?;
    Ok(stored)
}

async fn set_value_locally(key: String, value: i64) -> Result<i64, AppError> {
    let context = note_id();
    context.collection::<i64>("values").put(key, &value).await?;
    Ok(value)
}

/// How a simulated app reopens its store after a restart.
trait Storage {
    fn open(&mut self) -> Arc<dyn Store>;
}

struct Memory(MemoryStore);

impl Storage for Memory {
    fn open(&mut self) -> Arc<dyn Store> {
        Arc::new(self.0.clone())
    }
}

/// A SQLite file, closed and reopened on every restart.
struct Sqlite {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self {
            path: dir.path().join("client.sqlite3"),
            _dir: dir,
        }
    }
}

impl Storage for Sqlite {
    fn open(&mut self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.path).expect("the database reopens"))
    }
}

#[derive(Debug)]
enum Outcome {
    /// The server answered the call directly.
    Online,
    /// Answered locally and queued.
    Queued,
    /// The server refused it while online; the caller got the error.
    RefusedOnline,
}

struct Call {
    id: ActionId,
    key: String,
    value: i64,
    outcome: Outcome,
}

struct World<S: Storage> {
    rng: fastrand::Rng,
    storage: S,
    clock: ManualClock,
    net: ManualConnectivity,
    service: SyncService,
    calls: Vec<Call>,
    restarts: usize,
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(60),
        max_retries: 8,
        ..RetryPolicy::default()
    }
}

impl<S: Storage> World<S> {
    fn new(seed: u64, mut storage: S) -> Self {
        let clock = ManualClock::new(Timestamp(1_700_000_000_000));
        let net = ManualConnectivity::new(true);
        let service = Self::start(&mut storage, &clock, &net, seed);
        SERVER.with(|s| {
            *s.borrow_mut() = Server {
                rng: Some(fastrand::Rng::with_seed(seed ^ 0x5eed)),
                ..Server::default()
            }
        });
        Self {
            rng: fastrand::Rng::with_seed(seed),
            storage,
            clock,
            net,
            service,
            calls: Vec::new(),
            restarts: 0,
        }
    }

    fn start(
        storage: &mut S,
        clock: &ManualClock,
        net: &ManualConnectivity,
        seed: u64,
    ) -> SyncService {
        SyncService::builder()
            .shared_store(storage.open())
            .clock(clock.clone())
            .connectivity(net.clone())
            .retry_policy(policy())
            .seed(seed)
            .build()
            .expect("service builds")
    }

    fn user_call(&mut self) {
        self.clock
            .advance(Duration::from_millis(1 + self.rng.u64(0..50)));
        let key = format!("k{}", self.rng.u8(0..4));
        let value = i64::from(self.rng.u16(..));
        LAST_ID.with(|last| *last.borrow_mut() = None);
        let result = block_on(self.service.scope(set_value(key.clone(), value)));
        let id = LAST_ID
            .with(|last| last.borrow_mut().take())
            .expect("the call ran");
        let outcome = match result {
            Ok(_) if self.is_queued(id) => Outcome::Queued,
            Ok(_) => Outcome::Online,
            Err(AppError::Refused(_)) => Outcome::RefusedOnline,
            Err(other) => panic!("call {id} failed unexpectedly: {other}"),
        };
        self.calls.push(Call {
            id,
            key,
            value,
            outcome,
        });
    }

    fn is_queued(&self, id: ActionId) -> bool {
        block_on(self.service.queued())
            .unwrap()
            .iter()
            .any(|q| q.id == id)
    }

    fn step(&mut self) {
        match self.rng.u8(0..100) {
            0..=44 => self.user_call(),
            45..=54 => self.net.set_online(!self.rng.bool()),
            55..=69 => self
                .clock
                .advance(Duration::from_millis(self.rng.u64(0..90_000))),
            70..=84 => {
                block_on(self.service.replay()).expect("replay never fails on a healthy store");
            }
            85..=89 => {
                self.restarts += 1;
                self.service =
                    Self::start(&mut self.storage, &self.clock, &self.net, self.rng.u64(..));
            }
            _ => {
                let (before, after) = (self.rng.f64() * 0.6, self.rng.f64() * 0.3);
                SERVER.with(|s| {
                    let mut s = s.borrow_mut();
                    s.fail_before = before;
                    s.fail_after = after;
                });
            }
        }
    }

    fn drain(&mut self) {
        SERVER.with(|s| {
            let mut s = s.borrow_mut();
            s.fail_before = 0.0;
            s.fail_after = 0.0;
        });
        self.net.set_online(true);
        for _ in 0..50 {
            if block_on(self.service.queued()).unwrap().is_empty() {
                return;
            }
            self.clock.advance(Duration::from_secs(600));
            block_on(self.service.replay()).unwrap();
        }
        panic!(
            "the queue did not drain: {:?}",
            block_on(self.service.queued()).unwrap()
        );
    }

    /// At every moment, the local value of a key is the one the user wrote last: a replayed
    /// earlier call never overwrites a later offline edit.
    fn check_local_view(&self, seed: u64) {
        let local: HashMap<String, i64> = block_on(self.service.collection::<i64>("values").list())
            .unwrap()
            .into_iter()
            .collect();
        let mut expected: HashMap<&str, i64> = HashMap::new();
        for call in &self.calls {
            if !matches!(call.outcome, Outcome::RefusedOnline) {
                expected.insert(&call.key, call.value);
            }
        }
        for (key, value) in expected {
            assert_eq!(
                local.get(key),
                Some(&value),
                "seed {seed}: local value of {key}"
            );
        }
        let queued = block_on(self.service.queued()).unwrap().len() as u64;
        let counts = block_on(self.service.store().counts()).unwrap();
        assert_eq!(
            counts.pending, queued,
            "seed {seed}: the store's pending count"
        );
    }

    fn check(&self, seed: u64) {
        let (log, server_values) = SERVER.with(|s| {
            let s = s.borrow();
            (s.log.clone(), s.values.clone())
        });
        let applied_once: HashSet<ActionId> = log.iter().copied().collect();
        assert_eq!(
            applied_once.len(),
            log.len(),
            "seed {seed}: an action was applied twice"
        );
        let dead: HashMap<ActionId, DeadReason> = block_on(self.service.dead_letters())
            .unwrap()
            .into_iter()
            .map(|d| (d.action.id, d.reason))
            .collect();
        for call in &self.calls {
            let applied = applied_once.contains(&call.id);
            match call.outcome {
                Outcome::RefusedOnline => {
                    assert!(
                        !applied && !dead.contains_key(&call.id),
                        "seed {seed}: a refused call lingered"
                    );
                }
                Outcome::Online => {
                    assert!(applied, "seed {seed}: an online success was not applied")
                }
                Outcome::Queued => match dead.get(&call.id) {
                    Some(DeadReason::Rejected) => {
                        assert!(
                            refused(call.value) && !applied,
                            "seed {seed}: wrong rejection"
                        );
                    }
                    // Given up on: it may have reached the server once with the answer lost.
                    Some(DeadReason::TooManyRetries) => {}
                    Some(other) => panic!("seed {seed}: unexpected dead letter reason {other}"),
                    None => assert!(applied, "seed {seed}: queued call {} was lost", call.id),
                },
            }
        }
        // The server saw the calls in the order the user made them.
        let made: Vec<ActionId> = self
            .calls
            .iter()
            .map(|c| c.id)
            .filter(|id| applied_once.contains(id))
            .collect();
        assert_eq!(
            log, made,
            "seed {seed}: the server applied calls out of order"
        );

        // Local data agrees with the server wherever the key's last call reached the server.
        let local: HashMap<String, i64> = block_on(self.service.collection::<i64>("values").list())
            .unwrap()
            .into_iter()
            .collect();
        let mut last_call: HashMap<&str, &Call> = HashMap::new();
        for call in &self.calls {
            if !matches!(call.outcome, Outcome::RefusedOnline) {
                last_call.insert(&call.key, call);
            }
        }
        for (key, call) in last_call {
            if applied_once.contains(&call.id) {
                assert_eq!(
                    server_values.get(key),
                    Some(&call.value),
                    "seed {seed}: server value of {key}"
                );
                assert_eq!(
                    local.get(key),
                    Some(&call.value),
                    "seed {seed}: local value of {key}"
                );
            }
        }
    }
}

fn run<S: Storage>(seed: u64, storage: S, steps: usize) -> (usize, usize) {
    let mut world = World::new(seed, storage);
    for _ in 0..steps {
        world.step();
        world.check_local_view(seed);
    }
    world.drain();
    world.check(seed);
    (world.calls.len(), world.restarts)
}

#[test]
fn random_schedules_on_the_memory_store_lose_nothing_and_apply_once_in_order() {
    let schedules = 2_000;
    let (mut calls, mut restarts) = (0, 0);
    for seed in 0..schedules {
        let (c, r) = run(seed, Memory(MemoryStore::new()), 80);
        calls += c;
        restarts += r;
    }
    assert!(
        calls > 50_000 && restarts > 5_000,
        "the schedules exercise little: {calls} calls, {restarts} restarts"
    );
}

#[test]
fn random_schedules_on_sqlite_with_reopens_lose_nothing_and_apply_once_in_order() {
    let schedules = 500;
    let (mut calls, mut restarts) = (0, 0);
    for seed in 10_000..10_000 + schedules {
        let (c, r) = run(seed, Sqlite::new(), 80);
        calls += c;
        restarts += r;
    }
    assert!(
        calls > 10_000 && restarts > 1_000,
        "the schedules exercise little: {calls} calls, {restarts} restarts"
    );
}
