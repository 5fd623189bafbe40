//! The context an action body or local handler runs in: its id, its timestamp, and the local
//! data it may read and write.

use crate::scope::{self, Scoped};
use crate::store::{Record, Stamp, Write};
use crate::{ActionId, SyncError, SyncService, Timestamp};
use core::future::Future;
use core::marker::PhantomData;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

thread_local! {
    static CURRENT: RefCell<Option<ActionContext>> = const { RefCell::new(None) };
}

/// Where an action is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The first attempt, online: the server body is running.
    Online,
    /// Offline: the local handler is running.
    Offline,
    /// A queued call is being replayed: the server body is running.
    Replay,
}

/// The action being run on this task.
///
/// Inside an `#[offline_action]` body or local handler, [`ActionContext::current`] returns it.
/// Send [`id`](ActionContext::id) to the server as an idempotency key: it stays the same
/// through every retry and replay of one call.
///
/// Writes made through [`collection`](ActionContext::collection) are held back and committed
/// with the action's outcome in one store transaction: with the queued record when offline,
/// with the cached response when online. Every write carries the action's timestamp, so
/// last-write-wins orders them by when the user acted.
#[derive(Clone)]
pub struct ActionContext {
    inner: Arc<Inner>,
}

struct Inner {
    service: SyncService,
    id: ActionId,
    name: &'static str,
    timestamp: Timestamp,
    phase: Phase,
    /// The device's clock when this attempt started: the send time of its requests, for
    /// [`ActionContext::note_server_time`].
    started_at: Timestamp,
    writes: Mutex<Vec<Write>>,
    queued: AtomicBool,
    retry_after: Mutex<Option<core::time::Duration>>,
}

impl core::fmt::Debug for ActionContext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ActionContext")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .field("timestamp", &self.inner.timestamp)
            .field("phase", &self.inner.phase)
            .finish_non_exhaustive()
    }
}

impl ActionContext {
    pub(crate) fn new(
        service: SyncService,
        id: ActionId,
        name: &'static str,
        timestamp: Timestamp,
        phase: Phase,
    ) -> Self {
        let started_at = service.local_time();
        Self::started_at(service, id, name, timestamp, phase, started_at)
    }

    /// As [`new`](Self::new), with the device's clock reading the call already took.
    pub(crate) fn started_at(
        service: SyncService,
        id: ActionId,
        name: &'static str,
        timestamp: Timestamp,
        phase: Phase,
        started_at: Timestamp,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                started_at,
                service,
                id,
                name,
                timestamp,
                phase,
                writes: Mutex::new(Vec::new()),
                queued: AtomicBool::new(false),
                retry_after: Mutex::new(None),
            }),
        }
    }

    /// The action running on this task, or `None` outside an action.
    pub fn current() -> Option<Self> {
        scope::current(&CURRENT)
    }

    /// Runs `future` with this context as [`ActionContext::current`].
    pub(crate) fn scope<F: Future>(self, future: F) -> Scoped<Self, F> {
        Scoped::new(&CURRENT, self, future)
    }

    /// The call's id: the same through every retry and replay. Use it as an idempotency key.
    pub fn id(&self) -> ActionId {
        self.inner.id
    }

    /// The action's registered name.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// When the user acted, by the server's clock as the device estimated it then (its own
    /// clock corrected by the offset it learnt from the server's answers, see
    /// [`SyncService::observe_server_time`]). Never earlier than the timestamp of an action
    /// minted before it by the same service, even when the clock steps back.
    pub fn timestamp(&self) -> Timestamp {
        self.inner.timestamp
    }

    /// Whether this is the first online attempt, the offline handler, or a replay.
    pub fn phase(&self) -> Phase {
        self.inner.phase
    }

    /// The stamp this action's writes carry.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            timestamp: self.inner.timestamp,
            action: self.inner.id,
        }
    }

    /// Remembers how long the server asked this attempt to wait (an HTTP `Retry-After`),
    /// for transports that see the response but cannot put it into the action's error type.
    ///
    /// When the attempt fails with a transient error whose
    /// [`ClassifyError::retry_after`](crate::ClassifyError::retry_after) says nothing, the
    /// runtime waits this long instead of its own backoff (capped by
    /// [`RetryPolicy::max_retry_after`](crate::RetryPolicy::max_retry_after)). The
    /// `server_fn` client `server_fn::OfflineClient` (feature `server-fn`) calls it.
    pub fn note_retry_after(&self, wait: core::time::Duration) {
        *lock(&self.inner.retry_after) = Some(wait);
    }

    /// Reports the server's clock, read from a successful answer to a request this attempt
    /// made (the `x-server-time` header, or `Date`: see [`crate::http::server_time`]), so that
    /// the service stamps the next actions with the server's time rather than a device clock
    /// that may be wrong (see [`SyncService::observe_server_time`]; the attempt's start is
    /// taken as the time the request was sent). The timestamp of this action, and of every
    /// action already queued, does not change. `server_fn::OfflineClient` (feature
    /// `server-fn`) calls it.
    pub fn note_server_time(&self, server_time: Timestamp) {
        self.inner
            .service
            .observe_server_time(server_time, self.inner.started_at);
    }

    /// What [`note_retry_after`](Self::note_retry_after) remembered, if anything.
    pub(crate) fn noted_retry_after(&self) -> Option<core::time::Duration> {
        *lock(&self.inner.retry_after)
    }

    /// The service running this action.
    pub fn service(&self) -> &SyncService {
        &self.inner.service
    }

    /// A typed collection of local data, written as part of this action.
    pub fn collection<T>(&self, name: &str) -> Collection<T> {
        Collection {
            name: name.to_owned(),
            service: self.inner.service.clone(),
            action: Some(self.clone()),
            _type: PhantomData,
        }
    }

    pub(crate) fn mark_queued(&self) {
        self.inner.queued.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_marked_queued(&self) -> bool {
        self.inner.queued.load(Ordering::SeqCst)
    }

    fn writes(&self) -> MutexGuard<'_, Vec<Write>> {
        lock(&self.inner.writes)
    }

    pub(crate) fn take_writes(&self) -> Vec<Write> {
        core::mem::take(&mut *self.writes())
    }

    fn pending_write(&self, collection: &str, key: &str) -> Option<Option<String>> {
        self.writes()
            .iter()
            .rev()
            .find(|w| w.collection == collection && w.key == key)
            .map(|w| w.value.clone())
    }
}

/// A typed view of one collection of local data (JSON records keyed by string).
///
/// Obtained from [`ActionContext::collection`] inside an action (writes commit with the
/// action's outcome), or from [`SyncService::collection`] outside one (writes commit at once,
/// stamped with the current time).
///
/// ```
/// # use sync_runtime::{MemoryStore, ManualConnectivity, SyncService};
/// # futures::executor::block_on(async {
/// let service = SyncService::builder()
///     .store(MemoryStore::new())
///     .connectivity(ManualConnectivity::new(true))
///     .build()?;
/// let notes = service.collection::<String>("notes");
/// notes.put("a", &"first".to_owned()).await?;
/// assert_eq!(notes.get("a").await?, Some("first".to_owned()));
/// # Ok::<(), sync_runtime::SyncError>(())
/// # }).unwrap();
/// ```
pub struct Collection<T> {
    name: String,
    service: SyncService,
    action: Option<ActionContext>,
    _type: PhantomData<fn() -> T>,
}

impl<T> core::fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.name)
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

impl<T> Collection<T> {
    pub(crate) fn detached(service: SyncService, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            service,
            action: None,
            _type: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Collection<T> {
    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn decode(&self, key: &str, json: &str) -> Result<T, SyncError> {
        serde_json::from_str(json).map_err(|e| {
            SyncError::serde(
                format!("decode record `{key}` of collection `{}`", self.name),
                e,
            )
        })
    }

    /// Reads one record, seeing this action's own pending writes.
    pub async fn get(&self, key: &str) -> Result<Option<T>, SyncError> {
        if let Some(pending) = self
            .action
            .as_ref()
            .and_then(|a| a.pending_write(&self.name, key))
        {
            return pending.map(|json| self.decode(key, &json)).transpose();
        }
        let record = self.service.store().get(&self.name, key).await?;
        record
            .and_then(|r| r.value)
            .map(|json| self.decode(key, &json))
            .transpose()
    }

    /// Reads every live record, ordered by key, seeing this action's own pending writes.
    pub async fn list(&self) -> Result<Vec<(String, T)>, SyncError> {
        let mut merged: BTreeMap<String, Option<String>> = self
            .service
            .store()
            .scan(&self.name)
            .await?
            .into_iter()
            .map(|(key, Record { value, .. })| (key, value))
            .collect();
        if let Some(action) = &self.action {
            for write in action.writes().iter().filter(|w| w.collection == self.name) {
                merged.insert(write.key.clone(), write.value.clone());
            }
        }
        merged
            .into_iter()
            .filter_map(|(key, value)| value.map(|json| (key, json)))
            .map(|(key, json)| {
                let value = self.decode(&key, &json)?;
                Ok((key, value))
            })
            .collect()
    }

    /// Writes a record (last-write-wins by the action's timestamp).
    pub async fn put(&self, key: impl Into<String>, value: &T) -> Result<(), SyncError> {
        let key = key.into();
        let json = self.encode(&key, value)?;
        self.write(key, Some(json)).await
    }

    /// Deletes a record, leaving a tombstone so an older write cannot bring it back.
    pub async fn delete(&self, key: impl Into<String>) -> Result<(), SyncError> {
        self.write(key.into(), None).await
    }

    /// Makes the collection hold what the server listed: puts each listed record under
    /// `key(record)`, and deletes every stored record for which `within` holds that the list
    /// does not hold (`|_| true`: the list is the whole collection; a filter such as
    /// `|p| p.tenant_id == tenant` when the list is one tenant's). A record that no longer
    /// decodes as `T` is left alone.
    ///
    /// Records that queued calls wrote keep their pending values: the store keeps the
    /// server's aside until those calls have replayed (see
    /// [the store docs](crate::store#local-data-that-stays-true)), so a refresh never hides a
    /// change waiting to sync. `#[offline_action(store_all_in = "...", key = ..., within =
    /// ...)]` calls this with an action's answer.
    ///
    /// ```
    /// # use sync_runtime::{MemoryStore, ManualConnectivity, SyncService};
    /// # futures::executor::block_on(async {
    /// # let service = SyncService::builder()
    /// #     .store(MemoryStore::new())
    /// #     .connectivity(ManualConnectivity::new(true))
    /// #     .build()?;
    /// let notes = service.collection::<(String, String)>("notes");
    /// notes.put("stale", &("stale".to_owned(), "gone from the server".to_owned())).await?;
    /// let listed = [("a".to_owned(), "first".to_owned())];
    /// notes.refresh(&listed, |(id, _)| id.clone(), |_| true).await?;
    /// assert_eq!(notes.list().await?, [("a".to_owned(), listed[0].clone())]);
    /// # Ok::<(), sync_runtime::SyncError>(())
    /// # }).unwrap();
    /// ```
    pub async fn refresh<'a, K>(
        &self,
        listed: impl IntoIterator<Item = &'a T>,
        key: impl Fn(&T) -> K,
        within: impl Fn(&T) -> bool,
    ) -> Result<(), SyncError>
    where
        T: 'a,
        K: Into<String>,
    {
        let mut writes: BTreeMap<String, Option<String>> = BTreeMap::new();
        for record in listed {
            let key = key(record).into();
            let json = self.encode(&key, record)?;
            writes.insert(key, Some(json));
        }
        for (stored_key, record) in self.service.store().scan(&self.name).await? {
            let Some(json) = record.value else { continue };
            if writes.contains_key(&stored_key) {
                continue;
            }
            if let Ok(value) = serde_json::from_str::<T>(&json) {
                if within(&value) {
                    writes.insert(stored_key, None);
                }
            }
        }
        self.write_all(writes.into_iter().collect()).await
    }

    fn encode(&self, key: &str, value: &T) -> Result<String, SyncError> {
        serde_json::to_string(value).map_err(|e| {
            SyncError::serde(
                format!("encode record `{key}` of collection `{}`", self.name),
                e,
            )
        })
    }

    async fn write(&self, key: String, value: Option<String>) -> Result<(), SyncError> {
        self.write_all(vec![(key, value)]).await
    }

    /// Writes records together: with the action's outcome inside an action, else at once in
    /// one batch stamped with the current time.
    async fn write_all(&self, records: Vec<(String, Option<String>)>) -> Result<(), SyncError> {
        if records.is_empty() {
            return Ok(());
        }
        let stamp = match &self.action {
            Some(action) => action.stamp(),
            None => self.service.new_stamp(),
        };
        let writes = records.into_iter().map(|(key, value)| Write {
            collection: self.name.clone(),
            key,
            value,
            stamp,
        });
        match &self.action {
            Some(action) => {
                action.writes().extend(writes);
                Ok(())
            }
            None => {
                let mut batch = crate::store::Batch::new();
                batch.writes.extend(writes);
                self.service.store().apply(batch).await?;
                Ok(())
            }
        }
    }
}

/// Locks `mutex`, taking the value of a poisoned one (a panicking body must not stop replay).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
