//! The hook that keeps replay to one runner among everything sharing a store: several browser
//! tabs share one IndexedDB database, and only one of them may replay its queue at a time.

use crate::{BoxFuture, MaybeSend, MaybeSync};

/// A lock around each replay, shared by every service that uses the same store.
///
/// [`SyncService::replay`](crate::SyncService::replay) already runs one replay at a time
/// inside one service. A `ReplayLock` extends that to other services on the same data: other
/// tabs of a web app, or other processes. The default on wasm32 is `browser::WebLocks` (the
/// browser's Web Locks API); native builds have none, since a store there usually has one
/// owner.
///
/// A replay that finds the lock taken does nothing and reports
/// [`already_running`](crate::ReplayReport::already_running), with a time to look again so
/// that calls queued meanwhile are not left waiting for the next trigger.
pub trait ReplayLock: MaybeSend + MaybeSync + 'static {
    /// Runs `work` while holding the lock, if the lock is free now. Resolves to `true` once
    /// `work` has completed, or to `false`, without running `work`, if another holder has
    /// the lock. It must not wait for the lock: a replay that cannot run now is retried later.
    fn run_exclusive(&self, work: BoxFuture<'static, ()>) -> BoxFuture<'static, bool>;
}
