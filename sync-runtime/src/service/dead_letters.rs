//! The queue and the dead letters, as the app sees them: list, retry, discard, set aside.

use super::*;

impl SyncService {
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
                scope: dead.action.scope.clone(),
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
}
