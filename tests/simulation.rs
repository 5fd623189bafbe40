//! Deterministic simulation: thousands of random schedules of user actions, connectivity
//! flips, clock jumps, device clocks that go wrong (an hour fast or slow, a little off),
//! replays, restarts, and a server that fails transiently (before applying, or after applying
//! with the response lost) and permanently, and refuses stamps from its future.
//!
//! Afterwards every action the user made must be applied on the (idempotent) simulated server
//! exactly once and in the order it was made (with ordering scopes, one per key: in the order
//! it was made among the calls of its key), or sit in the dead-letter store with a reason;
//! the local data must hold, at every moment, the last write by the time the user acted that
//! was not dead-lettered (a dead-lettered call's local write is rolled back); once the queue
//! has drained, every local value must be the server's, or the roll-back target of a
//! dead-lettered call the server applied anyway (its answer lost until the device gave up);
//! and after each answer from the server, the device's corrected clock must read the
//! server's within a second.

use futures::executor::block_on;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use sync_runtime::store::DeadReason;
use sync_runtime::{
    offline_action, ActionContext, ActionId, ClassifyError, Clock, ManualClock, ManualConnectivity,
    MemoryStore, RetryPolicy, SqliteStore, Store, SyncError, SyncService, Timestamp,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("connection lost")]
    Network,
    #[error("the server refuses value {0}")]
    Refused(i64),
    #[error("the server refuses a stamp from its future")]
    FromTheFuture,
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
    /// Each key's value, with the stamp that wrote it: last-write-wins, as a real server.
    values: HashMap<String, (i64, (Timestamp, ActionId))>,
    /// The server's clock; the device's reads this plus its skew.
    now: u64,
    /// Calls refused because their stamp was in the server's future.
    from_the_future: HashSet<ActionId>,
}

/// How far past its clock the simulated server accepts stamps (as `TimestampPolicy`'s default).
const MAX_AHEAD_MILLIS: u64 = 120_000;

impl Server {
    fn handle(&mut self, context: &ActionContext, key: &str, value: i64) -> Result<i64, AppError> {
        let id = context.id();
        let rng = self.rng.as_mut().expect("seeded");
        if rng.f64() < self.fail_before {
            return Err(AppError::Network);
        }
        // Every answer from here on carries the server's clock (`x-server-time`).
        context.note_server_time(Timestamp(self.now));
        if context.timestamp().as_millis() > self.now + MAX_AHEAD_MILLIS {
            self.from_the_future.insert(id);
            return Err(AppError::FromTheFuture);
        }
        if let Some(response) = self.responses.get(&id) {
            return Ok(*response);
        }
        if refused(value) {
            return Err(AppError::Refused(value));
        }
        self.responses.insert(id, value);
        self.log.push(id);
        let stamp = (context.timestamp(), id);
        let current = self.values.get(key).map(|(_, s)| *s);
        if current.is_none_or(|current| stamp >= current) {
            self.values.insert(key.to_owned(), (value, stamp));
        }
        if rng.f64() < self.fail_after {
            // Applied, but the response never reaches the client.
            return Err(AppError::Network);
        }
        Ok(value)
    }
}

thread_local! {
    static SERVER: RefCell<Server> = RefCell::new(Server::default());
    static LAST_ID: RefCell<Option<(ActionId, Timestamp)>> = const { RefCell::new(None) };
}

fn note_id() -> ActionContext {
    let context = ActionContext::current().expect("inside an action");
    LAST_ID.with(|last| *last.borrow_mut() = Some((context.id(), context.timestamp())));
    context
}

/// Sets `key` to `value` on the server; keeps the server's answer locally.
#[offline_action(local = set_value_locally)]
pub async fn set_value(key: String, value: i64) -> Result<i64, AppError> {
    let context = note_id();
    let stored = SERVER.with(|s| s.borrow_mut().handle(&context, &key, value))?;
    context
        .collection::<i64>("values")
        .put(key, &stored)
        .await?;
    Ok(stored)
}

/// `set_value` with one ordering scope per key: the calls of a key stay in order, keys do not
/// wait for each other.
#[offline_action(scope = key, local = set_value_locally)]
pub async fn set_value_by_key(key: String, value: i64) -> Result<i64, AppError> {
    let context = note_id();
    let stored = SERVER.with(|s| s.borrow_mut().handle(&context, &key, value))?;
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

#[derive(Debug)]
struct Call {
    id: ActionId,
    timestamp: Timestamp,
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
    /// Whether the device's clock goes wrong in this schedule (half of them).
    skewed: bool,
    /// Device clock minus server clock, in milliseconds.
    skew: i64,
    skew_changes: usize,
    /// Calls go through `set_value_by_key`, one ordering scope per key.
    scoped: bool,
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
    fn new(seed: u64, mut storage: S, scoped: bool) -> Self {
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
            skewed: seed % 2 == 1,
            skew: 0,
            skew_changes: 0,
            scoped,
        }
    }

    /// The server's clock: the device's minus its skew.
    fn server_now(&self) -> u64 {
        self.clock
            .now()
            .as_millis()
            .saturating_add_signed(-self.skew)
    }

    /// The device's clock goes wrong (or right again) by a jump, as when a user sets it.
    fn change_skew(&mut self) {
        const SKEWS: [i64; 6] = [0, 3_600_000, -3_600_000, 30_000, -5_000, 7_200_000];
        let skew = SKEWS[self.rng.usize(..SKEWS.len())];
        let server_now = self.server_now();
        self.clock
            .set(Timestamp(server_now.saturating_add_signed(skew)));
        self.skew = skew;
        self.skew_changes += 1;
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
        let server_now = self.server_now();
        SERVER.with(|s| s.borrow_mut().now = server_now);
        let result = if self.scoped {
            block_on(self.service.scope(set_value_by_key(key.clone(), value)))
        } else {
            block_on(self.service.scope(set_value(key.clone(), value)))
        };
        let (id, timestamp) = LAST_ID
            .with(|last| last.borrow_mut().take())
            .expect("the call ran");
        let outcome = match result {
            Ok(_) if self.is_queued(id) => Outcome::Queued,
            Ok(_) => Outcome::Online,
            Err(AppError::Refused(_) | AppError::FromTheFuture) => Outcome::RefusedOnline,
            Err(other) => panic!("call {id} failed unexpectedly: {other}"),
        };
        if !matches!(outcome, Outcome::Queued) {
            // The server answered: the device now reads the server's clock.
            let corrected = self.service.corrected_time().as_millis();
            assert!(
                corrected.abs_diff(server_now) <= 1_000,
                "corrected clock {corrected}, server's {server_now}"
            );
        }
        // Every call gets an id of its own, across restarts and clock changes: a repeated id
        // would be answered by the server as the earlier call, and this one lost.
        assert!(
            self.calls.iter().all(|c| c.id != id),
            "call id {id} was minted twice"
        );
        self.calls.push(Call {
            id,
            timestamp,
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
            55..=57 if self.skewed => self.change_skew(),
            58..=69 => self
                .clock
                .advance(Duration::from_millis(self.rng.u64(0..90_000))),
            70..=84 => self.replay(),
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
            self.replay();
        }
        panic!(
            "the queue did not drain: {:?}",
            block_on(self.service.queued()).unwrap()
        );
    }

    fn replay(&mut self) {
        let server_now = self.server_now();
        SERVER.with(|s| s.borrow_mut().now = server_now);
        block_on(self.service.replay()).expect("replay never fails on a healthy store");
    }

    /// The ids of the dead letters, with their reasons.
    fn dead(&self) -> HashMap<ActionId, DeadReason> {
        block_on(self.service.dead_letters())
            .unwrap()
            .into_iter()
            .map(|d| (d.action.id, d.reason))
            .collect()
    }

    /// The calls whose local write stands, each key's last by the time the user acted (its
    /// stamp): by the server's clock as the device knew it, so after a device clock found to
    /// be far too fast, a later call can be stamped before the fast clock's. A dead-lettered
    /// call's write was rolled back, so it does not stand.
    fn last_writes(&self, dead: &HashMap<ActionId, DeadReason>) -> HashMap<&str, &Call> {
        let mut last: HashMap<&str, &Call> = HashMap::new();
        for call in &self.calls {
            if matches!(call.outcome, Outcome::RefusedOnline) || dead.contains_key(&call.id) {
                continue;
            }
            let newer = last
                .get(call.key.as_str())
                .is_none_or(|l| (call.timestamp, call.id) >= (l.timestamp, l.id));
            if newer {
                last.insert(&call.key, call);
            }
        }
        last
    }

    fn local_values(&self) -> HashMap<String, i64> {
        block_on(self.service.collection::<i64>("values").list())
            .unwrap()
            .into_iter()
            .collect()
    }

    /// At every moment, the local value of a key is the one the user wrote last: a replayed
    /// earlier call never overwrites a later offline edit, and a dead-lettered call's write
    /// gives way to the one before it (no record if there was none).
    fn check_local_view(&self, seed: u64) {
        let local = self.local_values();
        let expected: HashMap<&str, i64> = self
            .last_writes(&self.dead())
            .into_iter()
            .map(|(key, call)| (key, call.value))
            .collect();
        for (key, value) in &local {
            assert_eq!(
                expected.get(key.as_str()),
                Some(value),
                "seed {seed}: local value of {key}"
            );
        }
        assert_eq!(
            expected.len(),
            local.len(),
            "seed {seed}: local keys {local:?}, expected {expected:?}"
        );
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
        let dead = self.dead();
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
                        let future = SERVER.with(|s| s.borrow().from_the_future.contains(&call.id));
                        assert!(
                            (refused(call.value) || future) && !applied,
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
        // The server saw the calls in the order the user made them. Not when the device's
        // clock went wrong: a call stamped by a clock an hour fast, queued, waits behind the
        // calls stamped after the device learnt the server's clock (the queue goes by stamp),
        // and across a restart, until the first answer, a clock set back an hour stamps an
        // hour early.
        // With scopes, the calls of each key in the order they were made; keys may interleave.
        if !self.skewed {
            let key_of: HashMap<ActionId, &str> =
                self.calls.iter().map(|c| (c.id, c.key.as_str())).collect();
            let lines: Vec<Option<&str>> = if self.scoped {
                let mut keys: Vec<&str> = key_of.values().copied().collect();
                keys.sort_unstable();
                keys.dedup();
                keys.into_iter().map(Some).collect()
            } else {
                vec![None]
            };
            for line in lines {
                let in_line = |id: &ActionId| line.is_none() || key_of.get(id).copied() == line;
                let made: Vec<ActionId> = self
                    .calls
                    .iter()
                    .map(|c| c.id)
                    .filter(|id| applied_once.contains(id) && in_line(id))
                    .collect();
                let seen: Vec<ActionId> = log.iter().copied().filter(|id| in_line(id)).collect();
                assert_eq!(
                    seen, made,
                    "seed {seed}: the server applied calls of {line:?} out of order"
                );
            }
        }

        // Local data agrees with the server wherever the key's last standing call reached the
        // server.
        let local = self.local_values();
        for (key, call) in self.last_writes(&dead) {
            if applied_once.contains(&call.id) {
                assert_eq!(
                    local.get(key),
                    Some(&call.value),
                    "seed {seed}: local value of {key}; its calls: {:#?}; dead: {dead:?}; applied in order: {log:?}",
                    self.calls.iter().filter(|c| c.key == key).collect::<Vec<_>>()
                );
            }
        }
        // The queue has drained: every local value is the server's, unless the server's was
        // written by a call the device dead-lettered (it gave up while the answers were
        // lost): then the local value is that call's roll-back target, the standing write.
        let keys: HashSet<&String> = local.keys().chain(server_values.keys()).collect();
        for key in keys {
            let server = server_values.get(key);
            if local.get(key) == server.map(|(value, _)| value) {
                continue;
            }
            let written_by_dead = server.is_some_and(|(_, (_, id))| dead.contains_key(id));
            assert!(
                written_by_dead,
                "seed {seed}: local {:?} and server {:?} differ for {key}",
                local.get(key),
                server
            );
            let standing = self.last_writes(&dead).get(key.as_str()).map(|c| c.value);
            assert_eq!(
                local.get(key).copied(),
                standing,
                "seed {seed}: {key} is not the roll-back target"
            );
        }
    }
}

fn run<S: Storage>(seed: u64, storage: S, steps: usize, scoped: bool) -> (usize, usize, usize) {
    let mut world = World::new(seed, storage, scoped);
    for _ in 0..steps {
        world.step();
        world.check_local_view(seed);
    }
    world.drain();
    world.check(seed);
    (world.calls.len(), world.restarts, world.skew_changes)
}

#[test]
fn random_schedules_on_the_memory_store_lose_nothing_and_apply_once_in_order() {
    let schedules = 2_000;
    let (mut calls, mut restarts, mut skews) = (0, 0, 0);
    for seed in 0..schedules {
        let (c, r, k) = run(seed, Memory(MemoryStore::new()), 80, false);
        calls += c;
        restarts += r;
        skews += k;
    }
    assert!(
        calls > 50_000 && restarts > 5_000 && skews > 1_500,
        "the schedules exercise little: {calls} calls, {restarts} restarts, {skews} clock changes"
    );
}

#[test]
fn random_schedules_on_sqlite_with_reopens_lose_nothing_and_apply_once_in_order() {
    let schedules = 500;
    let (mut calls, mut restarts, mut skews) = (0, 0, 0);
    for seed in 10_000..10_000 + schedules {
        let (c, r, k) = run(seed, Sqlite::new(), 80, false);
        calls += c;
        restarts += r;
        skews += k;
    }
    assert!(
        calls > 10_000 && restarts > 1_000 && skews > 300,
        "the schedules exercise little: {calls} calls, {restarts} restarts, {skews} clock changes"
    );
}

#[test]
fn random_schedules_with_a_scope_per_key_keep_each_key_in_order_on_the_memory_store() {
    let schedules = 800;
    let (mut calls, mut restarts) = (0, 0);
    for seed in 20_000..20_000 + schedules {
        let (c, r, _) = run(seed, Memory(MemoryStore::new()), 80, true);
        calls += c;
        restarts += r;
    }
    assert!(
        calls > 20_000 && restarts > 2_000,
        "the schedules exercise little: {calls} calls, {restarts} restarts"
    );
}

#[test]
fn random_schedules_with_a_scope_per_key_keep_each_key_in_order_on_sqlite() {
    let schedules = 150;
    let (mut calls, mut restarts) = (0, 0);
    for seed in 30_000..30_000 + schedules {
        let (c, r, _) = run(seed, Sqlite::new(), 80, true);
        calls += c;
        restarts += r;
    }
    assert!(
        calls > 3_000 && restarts > 300,
        "the schedules exercise little: {calls} calls, {restarts} restarts"
    );
}
