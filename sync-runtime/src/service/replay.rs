//! Replay: the queue in order, retries with backoff, dead letters, the background driver.

use super::*;
use crate::status::ScopeWait;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::collections::HashSet;

/// What one [`SyncService::replay`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Calls that reached the server and were removed from the queue.
    pub synced: usize,
    /// Calls moved to the dead-letter store.
    pub dead_lettered: usize,
    /// Local records put back to what they held before a call moved to the dead-letter store
    /// wrote them (see [`SyncEvent::RolledBack`]).
    pub rolled_back: Vec<RecordKey>,
    /// Transient failures (the head of the failing call's scope stays and waits).
    pub retried: usize,
    /// Calls still queued.
    pub remaining: u64,
    /// If the head of a scope is waiting for its backoff: the earliest time one of them may
    /// be tried again ([`SyncStatus::waiting`] lists them all).
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
    /// Starts a background replay if an executor is configured and none is running.
    pub(super) fn kick_replay(&self) {
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

    /// Replays the queue now, each ordering scope in order, until every scope is empty or its
    /// head must wait for its backoff, or the server is unreachable. Only one replay runs at a
    /// time; within it, up to [`SyncServiceBuilder::replay_concurrency`] scopes run at once.
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

    /// One pass over the queue: each ordering scope whose head is due replays on its own, up
    /// to [`SyncServiceBuilder::replay_concurrency`] scopes at once, each in id order. A scope
    /// whose head must wait leaves the others going. Ends when every scope is empty or waits,
    /// the connection is down, or the store fails.
    async fn replay_pass(&self, report: &mut ReplayReport) -> Result<Stop, SyncError> {
        let registry = Registry::global()?;
        let limit = self.inner.replay_concurrency.max(1);
        let mut workers = FuturesUnordered::new();
        let mut running: HashSet<String> = HashSet::new();
        // Scopes tried in this pass: a reconnection lets each scope's head go at once, once.
        let mut tried: HashSet<String> = HashSet::new();
        // Scopes whose last run in this pass did nothing (a head that went away meanwhile):
        // not started again, so a store that lists a head it then cannot read cannot spin.
        let mut stalled: HashSet<String> = HashSet::new();
        let mut reconnected = false;
        let mut offline = false;
        let mut failure: Option<SyncError> = None;
        loop {
            let mut waiting = Vec::new();
            if failure.is_none() && !offline {
                match self.inner.store.scope_heads().await {
                    Ok(heads) => {
                        if self.inner.reconnected.swap(false, Ordering::SeqCst) {
                            reconnected = true;
                            tried.clear();
                        }
                        let now = self.inner.clock.now();
                        let earliest = heads.iter().map(|head| head.id).min();
                        for head in heads {
                            if running.contains(&head.scope) {
                                continue;
                            }
                            // A query refresh goes after every call queued before it, in
                            // whatever scope: answered beside them, the server could read
                            // the data before their changes reach it, and that answer,
                            // stamped later, would write the old values back over theirs.
                            // It goes when its id is the queue's first (the scopes holding
                            // earlier calls are running, waiting or started here).
                            if head.kind == ActionKind::Query && Some(head.id) != earliest {
                                continue;
                            }
                            if stalled.contains(&head.scope) {
                                waiting.push(head);
                                continue;
                            }
                            let forced = reconnected && !tried.contains(&head.scope);
                            let expired =
                                now.saturating_since(head.queued_at) > self.inner.policy.ttl;
                            if head.next_attempt_at > now && !forced && !expired {
                                waiting.push(head);
                            } else if workers.len() < limit {
                                tried.insert(head.scope.clone());
                                running.insert(head.scope.clone());
                                workers.push(self.replay_scope(registry, head.scope, forced));
                            }
                        }
                    }
                    Err(error) => failure = Some(error.into()),
                }
            }
            let Some((scope, outcome)) = workers.next().await else {
                if let Some(error) = failure {
                    return Err(error);
                }
                if offline {
                    return Ok(Stop::Offline);
                }
                let next = waiting.iter().map(|head| head.next_attempt_at).min();
                self.inner
                    .hub
                    .update(|s| s.waiting = waiting.iter().map(ScopeWait::of).collect());
                return Ok(match next {
                    Some(at) => Stop::Waiting(at),
                    None => Stop::Empty,
                });
            };
            running.remove(&scope);
            let (stop, counts) = outcome;
            if counts.synced + counts.dead_lettered + counts.retried == 0 {
                stalled.insert(scope);
            }
            report.synced += counts.synced;
            report.dead_lettered += counts.dead_lettered;
            report.retried += counts.retried;
            report.rolled_back.extend(counts.rolled_back);
            match stop {
                Ok(Stop::Offline) => offline = true,
                Ok(Stop::Empty | Stop::Waiting(_)) => {}
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
    }

    /// Replays the calls of one ordering scope in id order until the scope is empty, its head
    /// must wait, or the connection is down. `forced`: the head goes at once, whatever its
    /// backoff (the connection came back since it was scheduled).
    async fn replay_scope(
        &self,
        registry: &Registry,
        scope: String,
        forced: bool,
    ) -> (String, (Result<Stop, SyncError>, ReplayReport)) {
        let mut report = ReplayReport::default();
        let stop = self
            .replay_scope_calls(registry, &scope, forced, &mut report)
            .await;
        (scope, (stop, report))
    }

    async fn replay_scope_calls(
        &self,
        registry: &Registry,
        scope: &str,
        mut forced: bool,
        report: &mut ReplayReport,
    ) -> Result<Stop, SyncError> {
        loop {
            let Some(head) = self
                .inner
                .store
                .queued_in_scope(scope, None, 1)
                .await?
                .into_iter()
                .next()
            else {
                self.inner
                    .hub
                    .update(|s| s.waiting.retain(|wait| wait.scope != scope));
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
            if head.next_attempt_at > now && !forced {
                return Ok(Stop::Waiting(head.next_attempt_at));
            }
            // Only the first head goes at once: the backoff this attempt may earn stands.
            forced = false;
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
            let outcome = catch_panic(attempt).await;
            self.save_clock_offset().await;
            match outcome {
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
                    self.inner.hub.update(|s| {
                        s.pending = s.pending.saturating_sub(1);
                        s.waiting.retain(|wait| wait.id != head.id);
                    });
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
                    let wait = ScopeWait {
                        retries,
                        next_attempt_at,
                        last_error: Some(message.clone()),
                        ..ScopeWait::of(&head)
                    };
                    self.inner.hub.update(|s| {
                        s.waiting.retain(|waiting| waiting.scope != wait.scope);
                        s.waiting.push(wait);
                    });
                    self.inner.hub.emit(SyncEvent::Retrying {
                        id: head.id,
                        name: head.name.clone(),
                        scope: head.scope.clone(),
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
        let failed_at = self.inner.clock.now();
        let mut batch = Batch::new();
        batch.bury = Some(Bury {
            id: head.id,
            reason,
            message: message.clone(),
            failed_at,
        });
        let rolled_back = self.inner.store.apply(batch).await?.rolled_back;
        self.inner.hub.update(|s| {
            s.pending = s.pending.saturating_sub(1);
            s.dead += 1;
            s.last_error = Some(message.clone());
            s.waiting.retain(|wait| wait.id != head.id);
        });
        self.inner.hub.emit(SyncEvent::DeadLettered {
            id: head.id,
            name: head.name.clone(),
            scope: head.scope.clone(),
            reason,
            message: message.clone(),
        });
        if !rolled_back.is_empty() {
            self.inner.hub.emit(SyncEvent::RolledBack {
                id: head.id,
                name: head.name.clone(),
                records: rolled_back.clone(),
            });
        }
        report.dead_lettered += 1;
        report.rolled_back.extend(rolled_back.iter().cloned());
        if let Some(hook) = self.inner.on_rejected.clone() {
            let rejection = Rejection {
                dead_letter: DeadLetter {
                    action: head.clone(),
                    reason,
                    message,
                    failed_at,
                },
                rolled_back,
            };
            self.scope(hook(rejection)).await;
        }
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
