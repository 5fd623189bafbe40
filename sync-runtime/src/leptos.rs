//! The sync status as a Leptos signal: feature `leptos`.
//!
//! ```ignore
//! use leptos::prelude::*;
//!
//! #[component]
//! fn SyncBadge() -> impl IntoView {
//!     let status = sync_runtime::leptos::sync_status();
//!     view! {
//!         <span>{move || if status.get().online { "online" } else { "offline" }}</span>
//!         <span>{move || format!("{} changes waiting", status.get().pending)}</span>
//!     }
//! }
//! ```

use crate::{SyncService, SyncStatus};
use futures_util::StreamExt;
use leptos::prelude::{signal, ReadSignal, Set};

/// The status of [`SyncService::current`] as a signal, updated on every change (pending
/// count, dead letters, online, syncing, last error). Call it in a component or at start-up,
/// on the client: it spawns a task on Leptos' executor that follows
/// [`SyncService::subscribe`] for as long as the page lives.
pub fn sync_status() -> ReadSignal<SyncStatus> {
    sync_status_of(&SyncService::current())
}

/// [`sync_status`] of a given service.
pub fn sync_status_of(service: &SyncService) -> ReadSignal<SyncStatus> {
    let (status, set_status) = signal(service.status());
    let mut updates = service.subscribe();
    leptos::task::spawn_local(async move {
        while let Some(next) = updates.next().await {
            set_status.set(next);
        }
    });
    status
}
