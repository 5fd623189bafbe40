//! Pending writes, shadowed server values and roll-back: the rules every backend applies to
//! local data, written once over the few reads and writes a backend provides
//! ([`LocalData`]).
//!
//! See the [store module docs](super#local-data-that-stays-true) for what they guarantee.

use super::{Record, RecordKey, Stamp, Write};
use crate::ActionId;

/// What a queued action wrote to one record, and what the record held before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingWrite {
    /// The queued action.
    pub action: ActionId,
    /// The record's collection.
    pub collection: String,
    /// The record's key.
    pub key: String,
    /// What the action wrote (`None`: it deleted the record).
    pub value: Option<String>,
    /// The stamp of the action's write; orders the actions that wrote one record.
    pub stamp: Stamp,
    /// The record before the action wrote it (`None`: there was no record): what a roll-back
    /// puts back.
    pub prior: Option<Record>,
}

/// The reads and writes of local data a backend provides inside one transaction.
///
/// Memory and SQLite answer at once (their futures are ready when first polled); IndexedDB
/// awaits only its own requests, so the transaction stays open.
#[allow(async_fn_in_trait)]
pub(crate) trait LocalData {
    /// The backend's error.
    type Fail;

    /// The record, tombstones included.
    async fn record(&mut self, collection: &str, key: &str) -> Result<Option<Record>, Self::Fail>;

    /// Stores `record`, or removes the record entirely (no tombstone) for `None`.
    async fn set_record(
        &mut self,
        collection: &str,
        key: &str,
        record: Option<&Record>,
    ) -> Result<(), Self::Fail>;

    /// The pending writes of every queued action to this record.
    async fn pending_on(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Vec<PendingWrite>, Self::Fail>;

    /// The pending writes of one action.
    async fn pending_of(&mut self, action: ActionId) -> Result<Vec<PendingWrite>, Self::Fail>;

    /// Inserts or replaces the pending write of `write.action` to its record.
    async fn put_pending(&mut self, write: &PendingWrite) -> Result<(), Self::Fail>;

    /// Forgets the pending write of `action` to the record.
    async fn delete_pending(
        &mut self,
        action: ActionId,
        collection: &str,
        key: &str,
    ) -> Result<(), Self::Fail>;

    /// The newest confirmed write kept aside for this record while it has pending writes.
    async fn shadow(&mut self, collection: &str, key: &str) -> Result<Option<Record>, Self::Fail>;

    /// Sets or clears the shadowed server value of the record.
    async fn set_shadow(
        &mut self,
        collection: &str,
        key: &str,
        record: Option<&Record>,
    ) -> Result<(), Self::Fail>;

    /// Keeps what a dead action wrote, for when it is revived.
    async fn put_dead_writes(
        &mut self,
        action: ActionId,
        writes: &[Write],
    ) -> Result<(), Self::Fail>;

    /// Reads and forgets what a dead action wrote.
    async fn take_dead_writes(&mut self, action: ActionId) -> Result<Vec<Write>, Self::Fail>;
}

/// Applies one write of a batch: a pending write of `pending_for` if the batch queues that
/// action, else a confirmed write (of the answer of `completing`, if the batch completes an
/// action). Returns whether it took effect.
pub(crate) async fn write<T: LocalData>(
    tx: &mut T,
    write: &Write,
    pending_for: Option<ActionId>,
    completing: Option<ActionId>,
) -> Result<bool, T::Fail> {
    match pending_for {
        Some(action) => write_pending(tx, action, write, false).await,
        None => write_confirmed(tx, write, completing).await,
    }
}

/// A confirmed write: last-write-wins on the record, or on the record's shadowed server value
/// while queued actions have written it.
///
/// The answer of an action leaving the queue, to a record that action wrote, replaces the
/// shadowed value whatever their stamps: it is the server's state after the action, while a
/// refresh stamped later but made before the server saw the action is not.
async fn write_confirmed<T: LocalData>(
    tx: &mut T,
    write: &Write,
    completing: Option<ActionId>,
) -> Result<bool, T::Fail> {
    let (collection, key) = (write.collection.as_str(), write.key.as_str());
    let record = Record {
        value: write.value.clone(),
        stamp: write.stamp,
    };
    let writers = tx.pending_on(collection, key).await?;
    if !writers.is_empty() {
        let own_answer = completing.is_some_and(|id| writers.iter().any(|w| w.action == id));
        if !own_answer {
            let shadow = tx.shadow(collection, key).await?;
            if shadow.is_some_and(|s| write.stamp < s.stamp) {
                return Ok(false);
            }
        }
        tx.set_shadow(collection, key, Some(&record)).await?;
        return Ok(true);
    }
    let existing = tx.record(collection, key).await?;
    if existing.is_some_and(|r| write.stamp < r.stamp) {
        return Ok(false);
    }
    tx.set_record(collection, key, Some(&record)).await?;
    Ok(true)
}

/// A write of the queued `action`: replaces the record if not older (always, if `force`),
/// remembering what it held before the action's first write to it.
async fn write_pending<T: LocalData>(
    tx: &mut T,
    action: ActionId,
    write: &Write,
    force: bool,
) -> Result<bool, T::Fail> {
    let (collection, key) = (write.collection.as_str(), write.key.as_str());
    let existing = tx.record(collection, key).await?;
    if !force && existing.as_ref().is_some_and(|r| write.stamp < r.stamp) {
        return Ok(false);
    }
    let earlier = tx
        .pending_on(collection, key)
        .await?
        .into_iter()
        .find(|p| p.action == action);
    let prior = match earlier {
        Some(own) => own.prior,
        None => existing,
    };
    tx.put_pending(&PendingWrite {
        action,
        collection: write.collection.clone(),
        key: write.key.clone(),
        value: write.value.clone(),
        stamp: Stamp {
            timestamp: write.stamp.timestamp,
            action,
        },
        prior,
    })
    .await?;
    let record = Record {
        value: write.value.clone(),
        stamp: write.stamp,
    };
    tx.set_record(collection, key, Some(&record)).await?;
    Ok(true)
}

/// `action` left the queue successfully: each record it wrote that no other queued action
/// wrote takes its shadowed server value, if one was written meanwhile and is not older than
/// the record (the answer to an earlier action does not undo a later edit).
pub(crate) async fn release<T: LocalData>(tx: &mut T, action: ActionId) -> Result<(), T::Fail> {
    for pending in tx.pending_of(action).await? {
        let (collection, key) = (pending.collection.as_str(), pending.key.as_str());
        tx.delete_pending(action, collection, key).await?;
        if !tx.pending_on(collection, key).await?.is_empty() {
            continue;
        }
        if let Some(shadow) = tx.shadow(collection, key).await? {
            tx.set_shadow(collection, key, None).await?;
            let current = tx.record(collection, key).await?;
            if current.is_none_or(|r| shadow.stamp >= r.stamp) {
                tx.set_record(collection, key, Some(&shadow)).await?;
            }
        }
    }
    Ok(())
}

/// `action` was moved to the dead letters: puts back what each record it wrote held before,
/// keeps its writes for a revive, and returns the records restored.
///
/// A record a later queued action wrote too keeps that write, whose roll-back target becomes
/// this action's. A record no other queued action wrote goes back to the newer of its prior
/// state and the server's value shadowed meanwhile.
pub(crate) async fn roll_back<T: LocalData>(
    tx: &mut T,
    action: ActionId,
) -> Result<Vec<RecordKey>, T::Fail> {
    let written = tx.pending_of(action).await?;
    let mut restored = Vec::new();
    for pending in &written {
        let (collection, key) = (pending.collection.as_str(), pending.key.as_str());
        tx.delete_pending(action, collection, key).await?;
        let others = tx.pending_on(collection, key).await?;
        let later = others
            .iter()
            .filter(|other| other.stamp > pending.stamp)
            .min_by_key(|other| other.stamp);
        if let Some(later) = later {
            let mut later = later.clone();
            later.prior.clone_from(&pending.prior);
            tx.put_pending(&later).await?;
            continue;
        }
        let target = if others.is_empty() {
            let shadow = tx.shadow(collection, key).await?;
            tx.set_shadow(collection, key, None).await?;
            newer(pending.prior.clone(), shadow)
        } else {
            pending.prior.clone()
        };
        tx.set_record(collection, key, target.as_ref()).await?;
        restored.push(RecordKey::new(collection, key));
    }
    let writes: Vec<Write> = written
        .into_iter()
        .map(|pending| Write {
            collection: pending.collection,
            key: pending.key,
            value: pending.value,
            stamp: pending.stamp,
        })
        .collect();
    if !writes.is_empty() {
        tx.put_dead_writes(action, &writes).await?;
    }
    Ok(restored)
}

/// A dead letter went back into the queue (`requeued`) or was dropped: its kept writes are
/// applied again as pending writes if it was requeued, except to records a later queued
/// action wrote, and forgotten either way.
pub(crate) async fn revive<T: LocalData>(
    tx: &mut T,
    action: ActionId,
    requeued: bool,
) -> Result<(), T::Fail> {
    let writes = tx.take_dead_writes(action).await?;
    if !requeued {
        return Ok(());
    }
    for write in &writes {
        let overtaken = tx
            .pending_on(&write.collection, &write.key)
            .await?
            .iter()
            .any(|other| other.action != action && other.stamp > write.stamp);
        if !overtaken {
            // The user asked for this change again: it shows, even over a newer value the
            // server sent since the roll-back, which a roll-back would put back.
            write_pending(tx, action, write, true).await?;
        }
    }
    Ok(())
}

/// Forgets what a discarded dead letter wrote.
pub(crate) async fn discard<T: LocalData>(tx: &mut T, action: ActionId) -> Result<(), T::Fail> {
    tx.take_dead_writes(action).await?;
    Ok(())
}

/// The newer of two states of a record; `b` on a tie. No record is older than any.
fn newer(a: Option<Record>, b: Option<Record>) -> Option<Record> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.stamp >= a.stamp { b } else { a }),
        (a, b) => b.or(a),
    }
}

/// Runs a local-data step of a backend whose futures are ready when first polled (memory,
/// SQLite), without an executor: those backends apply a batch inside a lock or a
/// transaction, and may themselves be called from inside an executor.
pub(crate) fn ready<T, F>(
    future: impl core::future::Future<Output = Result<T, F>>,
    pending: impl FnOnce() -> F,
) -> Result<T, F> {
    use futures_util::FutureExt;
    core::pin::pin!(future)
        .now_or_never()
        .unwrap_or_else(|| Err(pending()))
}
