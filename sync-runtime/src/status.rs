//! What a UI shows: how many changes wait, whether a sync is running, what went wrong; and the
//! events behind it.

use crate::store::{DeadLetter, DeadReason, QueuedAction, RecordKey};
use crate::{ActionId, Timestamp};
use futures_channel::mpsc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// A snapshot of the service's state, e.g. for "3 changes waiting".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncStatus {
    /// Actions waiting in the queue.
    pub pending: u64,
    /// Actions in the dead-letter store.
    pub dead: u64,
    /// A replay is running.
    pub syncing: bool,
    /// Another service on the same store (another process or window on the same SQLite
    /// file, another tab) holds the replay lock while calls wait: it replays them, and this
    /// service takes over if it stops with calls left. Cleared when this service replays
    /// again or finds the queue empty.
    pub replaying_elsewhere: bool,
    /// The server is believed reachable.
    pub online: bool,
    /// The most recent failure, cleared by the next success.
    pub last_error: Option<String>,
    /// The ordering scopes whose head waits for its next attempt (after a transient failure,
    /// or a `Retry-After`), in id order of their heads, as of the last replay. The calls of
    /// other scopes replay meanwhile. Empty when nothing waits.
    pub waiting: Vec<ScopeWait>,
}

/// An ordering scope whose head waits, for [`SyncStatus::waiting`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScopeWait {
    /// The scope (`""`: the global scope).
    pub scope: String,
    /// The call at the head of the scope, which the rest of the scope waits behind.
    pub id: ActionId,
    /// Its action's name.
    pub name: String,
    /// Its failed attempts so far.
    pub retries: u32,
    /// When it will be tried again.
    pub next_attempt_at: Timestamp,
    /// Why its last attempt failed.
    pub last_error: Option<String>,
}

impl ScopeWait {
    pub(crate) fn of(head: &QueuedAction) -> Self {
        ScopeWait {
            scope: head.scope.clone(),
            id: head.id,
            name: head.name.clone(),
            retries: head.retries,
            next_attempt_at: head.next_attempt_at,
            last_error: head.last_error.clone(),
        }
    }
}

/// Something that happened to a queued action.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncEvent {
    /// A call was queued to run when the connection returns.
    Queued {
        /// The call's id.
        id: ActionId,
        /// The action's name.
        name: String,
    },
    /// A queued call reached the server and its answer was stored.
    Synced {
        /// The call's id.
        id: ActionId,
        /// The action's name.
        name: String,
    },
    /// A queued call failed transiently and will be tried again.
    Retrying {
        /// The call's id.
        id: ActionId,
        /// The action's name.
        name: String,
        /// The call's ordering scope (`""`: the global scope), whose later calls wait.
        scope: String,
        /// Failed attempts so far.
        retries: u32,
        /// Why it failed.
        error: String,
    },
    /// A queued call was moved to the dead-letter store.
    DeadLettered {
        /// The call's id.
        id: ActionId,
        /// The action's name.
        name: String,
        /// The call's ordering scope (`""`: the global scope).
        scope: String,
        /// Why.
        reason: DeadReason,
        /// What happened, in words.
        message: String,
    },
    /// A call moved to the dead-letter store had written local data (through its local
    /// handler, while offline): those records were put back to what they held before it
    /// (or to the server's value written since). Follows its
    /// [`DeadLettered`](SyncEvent::DeadLettered).
    RolledBack {
        /// The call's id.
        id: ActionId,
        /// The action's name.
        name: String,
        /// The records restored. A record a later queued call wrote too keeps that call's
        /// value and is not listed.
        records: Vec<RecordKey>,
    },
}

/// A queued call that will not be replayed: what
/// [`SyncServiceBuilder::on_rejected`](crate::SyncServiceBuilder::on_rejected) hooks receive.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// The dead letter, with the reason (a permanent error from the server is
    /// [`DeadReason::Rejected`]) and the call's parameters.
    pub dead_letter: DeadLetter,
    /// The local records rolled back, as in [`SyncEvent::RolledBack`].
    pub rolled_back: Vec<RecordKey>,
}

/// Holds the status and fans out changes and events to subscribers.
#[derive(Default)]
pub(crate) struct StatusHub {
    inner: Mutex<HubInner>,
    /// Copies of what every call reads, kept by [`update`](Self::update) under the lock,
    /// read without it: the pending count, and whether the status is online with no error.
    pending: AtomicU64,
    online_and_clear: AtomicBool,
}

#[derive(Default)]
struct HubInner {
    status: SyncStatus,
    /// Bumped by every change to the counts, so a refresh can tell it raced one.
    generation: u64,
    counts_loaded: bool,
    status_subscribers: Vec<mpsc::UnboundedSender<SyncStatus>>,
    event_subscribers: Vec<mpsc::UnboundedSender<SyncEvent>>,
}

impl StatusHub {
    fn lock(&self) -> MutexGuard<'_, HubInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self) -> SyncStatus {
        self.lock().status.clone()
    }

    pub(crate) fn pending(&self) -> u64 {
        self.pending.load(Ordering::SeqCst)
    }

    pub(crate) fn counts_loaded(&self) -> bool {
        self.lock().counts_loaded
    }

    /// Sets `online` and clears the last error, as [`update`](Self::update) would, without
    /// copying the status when both are already so (every successful online call asks).
    pub(crate) fn set_online_clear_error(&self, online: bool) {
        if online && self.online_and_clear.load(Ordering::SeqCst) {
            return;
        }
        self.update(|s| {
            s.online = online;
            s.last_error = None;
        });
    }

    /// Changes the status and tells subscribers if anything changed.
    pub(crate) fn update(&self, change: impl FnOnce(&mut SyncStatus)) {
        let mut inner = self.lock();
        let before = inner.status.clone();
        change(&mut inner.status);
        if (inner.status.pending, inner.status.dead) != (before.pending, before.dead) {
            inner.generation += 1;
        }
        self.pending.store(inner.status.pending, Ordering::SeqCst);
        self.online_and_clear.store(
            inner.status.online && inner.status.last_error.is_none(),
            Ordering::SeqCst,
        );
        if inner.status != before {
            let status = inner.status.clone();
            inner
                .status_subscribers
                .retain(|tx| tx.unbounded_send(status.clone()).is_ok());
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Sets the counts read from the store, unless they changed since `generation` was read
    /// (then the store read may predate that change). Returns whether it set them.
    pub(crate) fn set_counts_if_unchanged(&self, generation: u64, pending: u64, dead: u64) -> bool {
        {
            let mut inner = self.lock();
            if inner.generation != generation {
                return false;
            }
            inner.counts_loaded = true;
        }
        self.update(|s| {
            s.pending = pending;
            s.dead = dead;
            // Nothing waits, so nothing is being replayed elsewhere for this service.
            if pending == 0 {
                s.replaying_elsewhere = false;
            }
        });
        true
    }

    pub(crate) fn emit(&self, event: SyncEvent) {
        self.lock()
            .event_subscribers
            .retain(|tx| tx.unbounded_send(event.clone()).is_ok());
    }

    pub(crate) fn subscribe_status(&self) -> mpsc::UnboundedReceiver<SyncStatus> {
        let (tx, rx) = mpsc::unbounded();
        let mut inner = self.lock();
        // The first item is the current state, so a UI can render from the stream alone.
        let _ = tx.unbounded_send(inner.status.clone());
        inner.status_subscribers.push(tx);
        rx
    }

    pub(crate) fn subscribe_events(&self) -> mpsc::UnboundedReceiver<SyncEvent> {
        let (tx, rx) = mpsc::unbounded();
        self.lock().event_subscribers.push(tx);
        rx
    }
}
