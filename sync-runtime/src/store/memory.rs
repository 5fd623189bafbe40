//! An in-memory store, for tests and for apps that need no durability. Clones share the data,
//! so a "restart" in a test is a new service over a clone of the same store.

use super::local_data::{self, LocalData, PendingWrite};
use super::{Applied, Batch, Counts, DeadLetter, QueuedAction, Record, Store, Write};
use crate::{boxed, ActionId, ActionKind, BoxFuture, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// A [`Store`] that keeps everything in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    next_seq: u64,
    /// Ordered by id: the order in which the user acted.
    queue: BTreeMap<ActionId, QueuedAction>,
    /// (name, params) of each queued query, so dedupe does not scan the queue.
    queued_query_ids: HashMap<(String, String), ActionId>,
    /// The ids queued in each ordering scope, so a scope's head is one lookup.
    scopes: HashMap<String, BTreeSet<ActionId>>,
    dead: Vec<DeadLetter>,
    data: HashMap<String, BTreeMap<String, Record>>,
    /// The pending writes of each queued action, by (collection, key).
    pending: HashMap<ActionId, BTreeMap<(String, String), PendingWrite>>,
    /// The queued actions that wrote each record.
    writers: HashMap<(String, String), BTreeSet<ActionId>>,
    /// Confirmed writes kept aside while queued actions have written the record.
    shadows: HashMap<(String, String), Record>,
    /// What each dead letter's action wrote.
    dead_writes: HashMap<ActionId, Vec<Write>>,
    clock_offset: Option<i64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied batch (apply validates
        // before it mutates), so the data behind a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn validate(&self, batch: &Batch) -> Result<(), StoreError> {
        let queued = |id: &ActionId| self.queue.contains_key(id);
        let dead = |id: &ActionId| self.dead.iter().any(|d| d.action.id == *id);
        if let Some(r) = &batch.reschedule {
            if !queued(&r.id) {
                return Err(StoreError::NotFound(r.id));
            }
        }
        if let Some(b) = &batch.bury {
            if !queued(&b.id) {
                return Err(StoreError::NotFound(b.id));
            }
        }
        for id in batch.revive.iter().map(|(id, _)| id).chain(&batch.discard) {
            if !dead(id) {
                return Err(StoreError::NotFound(*id));
            }
        }
        Ok(())
    }

    fn apply(&mut self, batch: Batch) -> Result<Applied, StoreError> {
        let pending_for = batch.enqueue.as_ref().map(|new| new.id);
        let mut applied = Applied::default();
        for write in &batch.writes {
            if ready(local_data::write(self, write, pending_for, batch.complete))? {
                applied.writes_applied += 1;
            }
        }
        if let Some(id) = batch.complete {
            self.remove_queued(id);
            ready(local_data::release(self, id))?;
        }
        if let Some(r) = batch.reschedule {
            if let Some(action) = self.queue.get_mut(&r.id) {
                action.retries = r.retries;
                action.next_attempt_at = r.next_attempt_at;
                action.last_error = Some(r.last_error);
            }
        }
        if let Some(b) = batch.bury {
            if let Some(action) = self.remove_queued(b.id) {
                self.dead.push(DeadLetter {
                    action,
                    reason: b.reason,
                    message: b.message,
                    failed_at: b.failed_at,
                });
                applied.rolled_back = ready(local_data::roll_back(self, b.id))?;
            }
        }
        if let Some((id, now)) = batch.revive {
            if let Some(pos) = self.dead.iter().position(|d| d.action.id == id) {
                let mut action = self.dead.remove(pos).action;
                // The queue keeps at most one copy of a call and of a query: if the same one
                // was queued again meanwhile, reviving just drops the dead letter.
                let duplicate = self.queue.contains_key(&action.id)
                    || self
                        .queued_query(action.kind, &action.name, &action.params)
                        .is_some();
                if !duplicate {
                    action.retries = 0;
                    action.next_attempt_at = now;
                    action.queued_at = now;
                    action.last_error = None;
                    self.insert_queued(action);
                }
                ready(local_data::revive(self, id, !duplicate))?;
            }
        }
        if let Some(id) = batch.discard {
            self.dead.retain(|d| d.action.id != id);
            ready(local_data::discard(self, id))?;
        }
        if let Some(new) = batch.enqueue {
            if self.queue.contains_key(&new.id) {
                // Enqueueing the same id twice keeps the first.
                applied.queued = Some(new.id);
            } else {
                // A refresh of a query already queued replaces it, at the new call's place.
                let replaced = self
                    .queued_query(new.kind, &new.name, &new.params)
                    .map(|existing| existing.id);
                if let Some(replaced) = replaced {
                    self.remove_queued(replaced);
                    ready(local_data::release(self, replaced))?;
                    applied.replaced = Some(replaced);
                }
                self.insert_queued(QueuedAction {
                    seq: 0,
                    id: new.id,
                    name: new.name,
                    version: new.version,
                    kind: new.kind,
                    params: new.params,
                    timestamp: new.timestamp,
                    queued_at: new.queued_at,
                    retries: 0,
                    next_attempt_at: new.queued_at,
                    last_error: None,
                    scope: new.scope,
                });
                applied.queued = Some(new.id);
            }
        }
        Ok(applied)
    }

    fn queued_query(&self, kind: ActionKind, name: &str, params: &str) -> Option<&QueuedAction> {
        if kind != ActionKind::Query {
            return None;
        }
        let id = self
            .queued_query_ids
            .get(&(name.to_owned(), params.to_owned()))?;
        self.queue.get(id)
    }

    /// Inserts at the action's id, with the next sequence number.
    fn insert_queued(&mut self, mut action: QueuedAction) {
        self.next_seq += 1;
        action.seq = self.next_seq;
        if action.kind == ActionKind::Query {
            self.queued_query_ids
                .insert((action.name.clone(), action.params.clone()), action.id);
        }
        self.scopes
            .entry(action.scope.clone())
            .or_default()
            .insert(action.id);
        self.queue.insert(action.id, action);
    }

    fn remove_queued(&mut self, id: ActionId) -> Option<QueuedAction> {
        let action = self.queue.remove(&id)?;
        if action.kind == ActionKind::Query {
            self.queued_query_ids
                .remove(&(action.name.clone(), action.params.clone()));
        }
        if let Some(ids) = self.scopes.get_mut(&action.scope) {
            ids.remove(&id);
            if ids.is_empty() {
                self.scopes.remove(&action.scope);
            }
        }
        Some(action)
    }
}

/// Runs a local-data step on the in-memory state; its futures are ready when first polled.
fn ready<T>(
    step: impl core::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    local_data::ready(step, || StoreError::Backend {
        operation: "apply a batch",
        message: "a step of the memory store did not complete at once".to_owned(),
    })
}

fn record_key(collection: &str, key: &str) -> (String, String) {
    (collection.to_owned(), key.to_owned())
}

impl LocalData for State {
    type Fail = StoreError;

    async fn record(&mut self, collection: &str, key: &str) -> Result<Option<Record>, Self::Fail> {
        Ok(self
            .data
            .get(collection)
            .and_then(|records| records.get(key))
            .cloned())
    }

    async fn set_record(
        &mut self,
        collection: &str,
        key: &str,
        record: Option<&Record>,
    ) -> Result<(), Self::Fail> {
        match record {
            Some(record) => {
                self.data
                    .entry(collection.to_owned())
                    .or_default()
                    .insert(key.to_owned(), record.clone());
            }
            None => {
                if let Some(records) = self.data.get_mut(collection) {
                    records.remove(key);
                }
            }
        }
        Ok(())
    }

    async fn pending_on(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Vec<PendingWrite>, Self::Fail> {
        let record = record_key(collection, key);
        let Some(writers) = self.writers.get(&record) else {
            return Ok(Vec::new());
        };
        Ok(writers
            .iter()
            .filter_map(|action| self.pending.get(action)?.get(&record).cloned())
            .collect())
    }

    async fn pending_of(&mut self, action: ActionId) -> Result<Vec<PendingWrite>, Self::Fail> {
        Ok(self
            .pending
            .get(&action)
            .map(|writes| writes.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn put_pending(&mut self, write: &PendingWrite) -> Result<(), Self::Fail> {
        let record = record_key(&write.collection, &write.key);
        self.writers
            .entry(record.clone())
            .or_default()
            .insert(write.action);
        self.pending
            .entry(write.action)
            .or_default()
            .insert(record, write.clone());
        Ok(())
    }

    async fn delete_pending(
        &mut self,
        action: ActionId,
        collection: &str,
        key: &str,
    ) -> Result<(), Self::Fail> {
        let record = record_key(collection, key);
        if let Some(writes) = self.pending.get_mut(&action) {
            writes.remove(&record);
            if writes.is_empty() {
                self.pending.remove(&action);
            }
        }
        if let Some(writers) = self.writers.get_mut(&record) {
            writers.remove(&action);
            if writers.is_empty() {
                self.writers.remove(&record);
            }
        }
        Ok(())
    }

    async fn shadow(&mut self, collection: &str, key: &str) -> Result<Option<Record>, Self::Fail> {
        Ok(self.shadows.get(&record_key(collection, key)).cloned())
    }

    async fn set_shadow(
        &mut self,
        collection: &str,
        key: &str,
        record: Option<&Record>,
    ) -> Result<(), Self::Fail> {
        let name = record_key(collection, key);
        match record {
            Some(record) => self.shadows.insert(name, record.clone()),
            None => self.shadows.remove(&name),
        };
        Ok(())
    }

    async fn put_dead_writes(
        &mut self,
        action: ActionId,
        writes: &[Write],
    ) -> Result<(), Self::Fail> {
        self.dead_writes.insert(action, writes.to_vec());
        Ok(())
    }

    async fn take_dead_writes(&mut self, action: ActionId) -> Result<Vec<Write>, Self::Fail> {
        Ok(self.dead_writes.remove(&action).unwrap_or_default())
    }
}

impl Store for MemoryStore {
    fn apply(&self, batch: Batch) -> BoxFuture<'_, Result<Applied, StoreError>> {
        let result = {
            let mut state = self.lock();
            state.validate(&batch).and_then(|()| state.apply(batch))
        };
        boxed(async move { result })
    }

    fn get<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        let record = self
            .lock()
            .data
            .get(collection)
            .and_then(|records| records.get(key))
            .cloned();
        boxed(async move { Ok(record) })
    }

    fn scan<'a>(
        &'a self,
        collection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Record)>, StoreError>> {
        let records = self
            .lock()
            .data
            .get(collection)
            .map(|records| {
                records
                    .iter()
                    .map(|(k, r)| (k.clone(), r.clone()))
                    .collect()
            })
            .unwrap_or_default();
        boxed(async move { Ok(records) })
    }

    fn queued(
        &self,
        after: Option<ActionId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<QueuedAction>, StoreError>> {
        use core::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, Excluded);
        let page = self
            .lock()
            .queue
            .range((start, Unbounded))
            .take(limit)
            .map(|(_, q)| q.clone())
            .collect();
        boxed(async move { Ok(page) })
    }

    fn scope_heads(&self) -> BoxFuture<'_, Result<Vec<QueuedAction>, StoreError>> {
        let state = self.lock();
        let mut heads: Vec<QueuedAction> = state
            .scopes
            .values()
            .filter_map(|ids| ids.first())
            .filter_map(|id| state.queue.get(id).cloned())
            .collect();
        drop(state);
        heads.sort_by_key(|head| head.id);
        boxed(async move { Ok(heads) })
    }

    fn queued_in_scope<'a>(
        &'a self,
        scope: &'a str,
        after: Option<ActionId>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<QueuedAction>, StoreError>> {
        use core::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, Excluded);
        let state = self.lock();
        let page = state
            .scopes
            .get(scope)
            .map(|ids| {
                ids.range((start, Unbounded))
                    .take(limit)
                    .filter_map(|id| state.queue.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default();
        drop(state);
        boxed(async move { Ok(page) })
    }

    fn last_queued_id(&self) -> BoxFuture<'_, Result<Option<ActionId>, StoreError>> {
        let last = self.lock().queue.keys().next_back().copied();
        boxed(async move { Ok(last) })
    }

    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>> {
        let dead = self.lock().dead.clone();
        boxed(async move { Ok(dead) })
    }

    fn counts(&self) -> BoxFuture<'_, Result<Counts, StoreError>> {
        let state = self.lock();
        let counts = Counts {
            pending: state.queue.len() as u64,
            dead: state.dead.len() as u64,
        };
        boxed(async move { Ok(counts) })
    }

    fn clock_offset(&self) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
        let offset = self.lock().clock_offset;
        boxed(async move { Ok(offset) })
    }

    fn set_clock_offset(&self, offset_millis: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        self.lock().clock_offset = Some(offset_millis);
        boxed(async { Ok(()) })
    }
}
