//! What the runtime reports through `tracing` (feature `tracing`): how each call was routed,
//! what was queued, every replay attempt and its outcome, dead letters and store errors.
//!
//! Events carry the action's name and id, attempt counts, backoffs and error messages; never
//! the parameters or the answers, which hold user data. Without the feature these functions
//! do nothing and compile away. They are not generic, so the per-action code stays small.

#![cfg_attr(not(feature = "tracing"), allow(unused_variables))]

use crate::store::DeadReason;
use crate::ActionId;
use core::fmt::Display;
use core::time::Duration;

/// A call went to the server first (`online`) or straight to the local handler.
#[inline]
pub(crate) fn call_routed(action: &str, id: ActionId, online: bool) {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "sync_runtime", action, %id, route = if online { "online" } else { "local" }, "call routed");
}

/// An online call failed; a transient failure is answered locally and queued instead.
#[inline]
pub(crate) fn online_failed(action: &str, id: ActionId, error: &dyn Display, transient: bool) {
    #[cfg(feature = "tracing")]
    if transient {
        tracing::info!(target: "sync_runtime", action, %id, %error, "online call failed transiently: answering locally and queueing");
    } else {
        tracing::debug!(target: "sync_runtime", action, %id, %error, "online call failed permanently: returned to the caller");
    }
}

/// A call was queued (a query refresh may have replaced an earlier one).
#[inline]
pub(crate) fn queued(action: &str, id: ActionId, replaced: Option<ActionId>) {
    #[cfg(feature = "tracing")]
    match replaced {
        Some(replaced) => {
            tracing::info!(target: "sync_runtime", action, %id, %replaced, "queued, replacing an earlier refresh")
        }
        None => tracing::info!(target: "sync_runtime", action, %id, "queued"),
    }
}

/// A queued call is about to be sent; `attempt` counts from 1.
#[inline]
pub(crate) fn replay_attempt(action: &str, id: ActionId, attempt: u32) {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "sync_runtime", action, %id, attempt, "replaying");
}

/// A queued call reached the server and its answer was stored.
#[inline]
pub(crate) fn replay_synced(action: &str, id: ActionId, attempt: u32) {
    #[cfg(feature = "tracing")]
    tracing::info!(target: "sync_runtime", action, %id, attempt, outcome = "synced", "replayed");
}

/// A queued call failed transiently and waits `backoff` before the next attempt.
#[inline]
pub(crate) fn replay_retry(
    action: &str,
    id: ActionId,
    attempt: u32,
    error: &dyn Display,
    backoff: Duration,
) {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: "sync_runtime", action, %id, attempt, outcome = "retry", backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX), %error, "replay failed transiently");
}

/// A queued call was moved to the dead letters.
#[inline]
pub(crate) fn dead_lettered(action: &str, id: ActionId, reason: DeadReason, message: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: "sync_runtime", action, %id, %reason, message, outcome = "dead_letter", "moved to the dead letters");
}

/// The store failed while `doing` something.
#[inline]
pub(crate) fn store_error(doing: &str, error: &dyn Display) {
    #[cfg(feature = "tracing")]
    tracing::error!(target: "sync_runtime", doing, %error, "store error");
}

/// Another service holds the replay lock.
#[inline]
pub(crate) fn replayed_elsewhere(pending: u64) {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "sync_runtime", pending, "another service is replaying this queue");
}
