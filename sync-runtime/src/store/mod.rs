//! The local store: the queue of actions waiting to reach the server, the dead letters, and the
//! local data (cached responses and the collections local handlers read and write).
//!
//! A backend implements the small [`Store`] trait. Every change goes through
//! [`Store::apply`], which applies one [`Batch`] atomically, so "write the server's answer and
//! delete the queued record" is one transaction wherever the backend allows it.
//!
//! # Local data that stays true
//!
//! The writes of a batch that queues an action are that action's *pending writes*: the store
//! remembers, per record, which queued actions wrote it and what the record held before. Any
//! other write (a server's answer, a list refresh, a write outside an action) is a *confirmed*
//! write. While a record has pending writes, a confirmed write does not replace it: the store
//! keeps the newest one aside (the record's *shadowed* server value), and when the last
//! action that wrote the record leaves the queue successfully, that value takes over, unless
//! it is older than the record (the answer to an earlier action does not undo a later edit).
//! An action's own answer to a record it wrote, written in the batch that completes it,
//! replaces the shadowed value whatever the stamps: it is the server's state after the
//! action, which a refresh made before the server saw the action is not. When an action is
//! moved to the dead letters, each record it wrote goes back to the newer of what it held
//! before and the server's value shadowed since, unless a later queued action wrote it too:
//! then that action's write stays and takes over the roll-back target. What a dead action
//! wrote is kept with its dead letter and written again, as pending writes, when it is
//! revived.

pub mod conformance;
#[cfg(target_arch = "wasm32")]
mod indexeddb;
mod local_data;
mod memory;
#[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
mod sqlite;

#[cfg(target_arch = "wasm32")]
pub use indexeddb::IndexedDbStore;
pub use memory::MemoryStore;
#[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
pub use sqlite::{SqliteOptions, SqliteStore};

use crate::{
    ActionId, ActionKind, BoxFuture, MaybeSend, MaybeSync, ReplayLock, StoreError, Timestamp,
};
use core::fmt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What orders two writes to the same record: the time the user acted, then the action id.
///
/// Last-write-wins: a write replaces a record only if its stamp is not older than the
/// record's, so replaying an earlier action never overwrites a later local edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// When the user acted.
    pub timestamp: Timestamp,
    /// The action that wrote; breaks ties between actions in the same millisecond.
    pub action: ActionId,
}

/// One record of local data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The JSON value, or `None` if the record was deleted (a tombstone, kept so an older
    /// write cannot bring it back).
    pub value: Option<String>,
    /// The write that produced this state.
    pub stamp: Stamp,
}

/// A write to local data, applied only if it is not older than what is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The collection, e.g. `"products"`.
    pub collection: String,
    /// The key inside the collection.
    pub key: String,
    /// The JSON value, or `None` to delete.
    pub value: Option<String>,
    /// The action that caused the write.
    pub stamp: Stamp,
}

/// An action call to append to the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewQueued {
    /// The action's id, minted before its first attempt.
    pub id: ActionId,
    /// The registered action name.
    pub name: String,
    /// The action's version when it was queued.
    pub version: u32,
    /// Read or write. A query is not appended if the same name and params are already queued.
    pub kind: ActionKind,
    /// The parameters as canonical JSON.
    pub params: String,
    /// When the user acted.
    pub timestamp: Timestamp,
    /// When the call enters the queue: its time-to-live counts from here.
    pub queued_at: Timestamp,
    /// The call's ordering scope: calls of one scope replay one at a time in id order, and
    /// scopes replay independently of each other. `""` is the global scope, the one every
    /// call is in unless its action declares another.
    pub scope: String,
}

/// An action call waiting in the queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedAction {
    /// A number strictly increasing in the order calls entered the queue, never reused. The
    /// queue itself is ordered by [`id`](Self::id), which is the order in which the user
    /// acted.
    pub seq: u64,
    /// The action's id, used as the idempotency key on the server. Ids are time-ordered and
    /// minted before the first attempt, so they order the queue by when the user acted,
    /// whatever order the calls' failures arrived in.
    pub id: ActionId,
    /// The registered action name.
    pub name: String,
    /// The action's version when it was queued.
    pub version: u32,
    /// Read or write.
    pub kind: ActionKind,
    /// The parameters as JSON.
    pub params: String,
    /// When the user acted.
    pub timestamp: Timestamp,
    /// When the call entered the queue, or was last revived from the dead letters: its
    /// time-to-live counts from here.
    #[serde(default)]
    pub queued_at: Timestamp,
    /// How many attempts failed with a transient error.
    pub retries: u32,
    /// Not to be tried before this time.
    pub next_attempt_at: Timestamp,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// The call's ordering scope (`""`: the global scope). See [`NewQueued::scope`].
    #[serde(default)]
    pub scope: String,
}

/// Why an action was moved to the dead-letter store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeadReason {
    /// The server rejected it with a permanent error.
    Rejected,
    /// This build has no action of that name (for example after a deploy removed it).
    UnknownAction,
    /// The parameters no longer deserialize, or the version is no longer accepted.
    BadParams,
    /// It failed transiently too many times.
    TooManyRetries,
    /// It waited longer than the time-to-live.
    Expired,
    /// Its stored row could not be read (edited or damaged outside this crate) and was set
    /// aside so the rest of the queue could drain.
    Unreadable,
}

impl DeadReason {
    /// A stable lowercase name, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadReason::Rejected => "rejected",
            DeadReason::UnknownAction => "unknown_action",
            DeadReason::BadParams => "bad_params",
            DeadReason::TooManyRetries => "too_many_retries",
            DeadReason::Expired => "expired",
            DeadReason::Unreadable => "unreadable",
        }
    }

    /// Parses [`DeadReason::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "rejected" => DeadReason::Rejected,
            "unknown_action" => DeadReason::UnknownAction,
            "bad_params" => DeadReason::BadParams,
            "too_many_retries" => DeadReason::TooManyRetries,
            "expired" => DeadReason::Expired,
            "unreadable" => DeadReason::Unreadable,
            _ => return None,
        })
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action that will not be replayed again unless someone retries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The action as it was queued, with its retry count and last error.
    pub action: QueuedAction,
    /// Why it stopped.
    pub reason: DeadReason,
    /// What happened, in words.
    pub message: String,
    /// When it was moved here.
    pub failed_at: Timestamp,
}

impl DeadLetter {
    /// The ordering scope the action was queued in (`""`: the global scope). Later calls of
    /// that scope went on without it.
    pub fn scope(&self) -> &str {
        &self.action.scope
    }
}

/// Moves a queued action to the back of its retry schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reschedule {
    /// The queued action.
    pub id: ActionId,
    /// The new retry count.
    pub retries: u32,
    /// Not before this time.
    pub next_attempt_at: Timestamp,
    /// Why the last attempt failed.
    pub last_error: String,
}

/// Moves a queued action to the dead-letter store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bury {
    /// The queued action.
    pub id: ActionId,
    /// Why.
    pub reason: DeadReason,
    /// What happened, in words.
    pub message: String,
    /// When.
    pub failed_at: Timestamp,
}

/// Names one record of local data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordKey {
    /// The collection, e.g. `"products"`.
    pub collection: String,
    /// The key inside the collection.
    pub key: String,
}

impl RecordKey {
    /// The record `key` of `collection`.
    pub fn new(collection: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            collection: collection.into(),
            key: key.into(),
        }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.collection, self.key)
    }
}

/// Changes applied together, all or nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Batch {
    /// Local data writes, each applied only if not older than the stored record.
    ///
    /// In a batch with an [`enqueue`](Self::enqueue), they are the queued action's pending
    /// writes (see the [module docs](self#local-data-that-stays-true)): each replaces the
    /// record if not older, and the store remembers what the record held before. In any other
    /// batch they are confirmed writes: a record that a queued action wrote keeps its pending
    /// value, and the write is kept aside until that action leaves the queue.
    pub writes: Vec<Write>,
    /// Append an action to the queue.
    pub enqueue: Option<NewQueued>,
    /// Delete a queued action that succeeded. Deleting one that is already gone is not an error.
    pub complete: Option<ActionId>,
    /// Record a failed attempt of a queued action.
    pub reschedule: Option<Reschedule>,
    /// Move a queued action to the dead-letter store, rolling back the local data it wrote
    /// ([`Applied::rolled_back`] names the records restored).
    pub bury: Option<Bury>,
    /// Move a dead letter back into the queue (at its id's place), with its retries reset and
    /// a fresh time-to-live from the given time; its timestamp, which last-write-wins
    /// compares, does not change. Its local writes are applied again as pending writes,
    /// except to records that a later queued action wrote.
    pub revive: Option<(ActionId, Timestamp)>,
    /// Delete a dead letter.
    pub discard: Option<ActionId>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// `true` if the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.enqueue.is_none()
            && self.complete.is_none()
            && self.reschedule.is_none()
            && self.bury.is_none()
            && self.revive.is_none()
            && self.discard.is_none()
    }
}

/// What [`Store::apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// For an enqueue: the id now queued for it.
    pub queued: Option<ActionId>,
    /// For an enqueue of a query already queued with the same parameters: the earlier call,
    /// which the new one replaced (the refresh moves to the new call's place in the queue, so
    /// it runs after the calls queued in between).
    pub replaced: Option<ActionId>,
    /// How many writes took effect: replaced what was stored, or (for a confirmed write to a
    /// record a queued action wrote) became its shadowed server value. The rest were older
    /// and ignored.
    pub writes_applied: usize,
    /// For a bury: the records put back to what they held before the buried action wrote them.
    pub rolled_back: Vec<RecordKey>,
}

/// How many actions wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Actions in the queue.
    pub pending: u64,
    /// Actions in the dead-letter store.
    pub dead: u64,
}

/// A storage backend.
///
/// Implementations must make [`apply`](Store::apply) atomic, keep the queue ordered by
/// [`QueuedAction::id`], never reuse a sequence number, keep at most one queued query per
/// (name, params), the latest, and keep each call's ordering scope through burial and revival.
/// The shared conformance tests check all of this.
pub trait Store: MaybeSend + MaybeSync + 'static {
    /// Applies a batch of changes atomically.
    fn apply(&self, batch: Batch) -> BoxFuture<'_, Result<Applied, StoreError>>;

    /// Reads one record of local data, tombstones included.
    fn get<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>>;

    /// Reads every record of a collection (tombstones included), ordered by key.
    fn scan<'a>(
        &'a self,
        collection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Record)>, StoreError>>;

    /// Reads up to `limit` queued actions with an id greater than `after`, in queue order
    /// (by id).
    fn queued(
        &self,
        after: Option<ActionId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<QueuedAction>, StoreError>>;

    /// The head of every ordering scope: the queued action with the smallest id in each scope
    /// that has any, ordered by id. Replay starts one scope's calls from its head.
    ///
    /// The default reads the whole queue; a backend with an index on (scope, id) answers
    /// from it.
    fn scope_heads(&self) -> BoxFuture<'_, Result<Vec<QueuedAction>, StoreError>> {
        crate::boxed(async move {
            let mut seen = std::collections::HashSet::new();
            Ok(self
                .queued(None, usize::MAX)
                .await?
                .into_iter()
                .filter(|queued| seen.insert(queued.scope.clone()))
                .collect())
        })
    }

    /// Reads up to `limit` queued actions of ordering scope `scope` with an id greater than
    /// `after`, in queue order (by id).
    ///
    /// The default filters [`queued`](Store::queued); a backend with an index on
    /// (scope, id) answers from it.
    fn queued_in_scope<'a>(
        &'a self,
        scope: &'a str,
        after: Option<ActionId>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<QueuedAction>, StoreError>> {
        crate::boxed(async move {
            Ok(self
                .queued(after, usize::MAX)
                .await?
                .into_iter()
                .filter(|queued| queued.scope == scope)
                .take(limit)
                .collect())
        })
    }

    /// Reads every dead letter, oldest first.
    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>>;

    /// Counts queued actions and dead letters.
    fn counts(&self) -> BoxFuture<'_, Result<Counts, StoreError>>;

    /// The greatest id in the queue, if any: a new service mints ids above it, so a call made
    /// after a restart with a clock set back still sorts after the calls already queued.
    ///
    /// The default reads the whole queue; a backend with an index on ids answers from it.
    fn last_queued_id(&self) -> BoxFuture<'_, Result<Option<ActionId>, StoreError>> {
        crate::boxed(async move {
            Ok(self
                .queued(None, usize::MAX)
                .await?
                .last()
                .map(|queued| queued.id))
        })
    }

    /// Moves the first queued row that cannot be read (edited or damaged outside this crate,
    /// so that [`queued`](Store::queued) fails on it) to the dead letters with
    /// [`DeadReason::Unreadable`], keeping what can be read of it, so the rest of the queue
    /// drains. Returns the dead letter, or `None` if every queued row reads.
    ///
    /// The default finds nothing: a backend whose rows cannot be damaged (the memory store)
    /// needs no more.
    fn set_aside_unreadable(
        &self,
        failed_at: Timestamp,
    ) -> BoxFuture<'_, Result<Option<DeadLetter>, StoreError>> {
        let _ = failed_at;
        crate::boxed(async { Ok(None) })
    }

    /// The lock that keeps replay of this store's queue to one service at a time, for a
    /// service given none ([`SyncServiceBuilder::replay_lock`](crate::SyncServiceBuilder::replay_lock)).
    /// A store that other services or processes can open too returns a lock they all share
    /// (a `SqliteStore` on a file: a [`FileReplayLock`](crate::FileReplayLock) beside it).
    ///
    /// Each call returns a lock of its own, so that two services holding one store exclude
    /// each other. Default: `None`, for a store that only the service holding it can reach.
    fn replay_lock(&self) -> Option<Arc<dyn ReplayLock>> {
        None
    }

    /// The last saved difference between the server's clock and this device's, in
    /// milliseconds (server minus device), or `None` if none was saved. The service stamps
    /// actions with the device's time plus this offset, so a device whose clock is wrong
    /// still orders its edits by the server's time after a restart, offline included.
    ///
    /// The default keeps nothing (`None`): the service then starts from no correction until
    /// its first answer from the server.
    fn clock_offset(&self) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
        crate::boxed(async { Ok(None) })
    }

    /// Saves the offset [`clock_offset`](Store::clock_offset) reads back. The default drops it.
    fn set_clock_offset(&self, offset_millis: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        let _ = offset_millis;
        crate::boxed(async { Ok(()) })
    }
}
