//! The zero-configuration service of each platform: where its data lives, and a store that
//! reports why the default one could not be opened.

use super::*;

/// Where the default service keeps its data on native targets: `$SYNC_RUNTIME_DB` if set,
/// else `<data dir>/sync-runtime/<program name>.sqlite3`.
#[cfg(not(target_arch = "wasm32"))]
pub fn default_database_path() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("SYNC_RUNTIME_DB") {
        return Some(path.into());
    }
    let program = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "app".to_owned());
    Some(
        dirs::data_local_dir()?
            .join("sync-runtime")
            .join(format!("{program}.sqlite3")),
    )
}

#[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
pub(super) fn default_store() -> Arc<dyn Store> {
    let Some(path) = default_database_path() else {
        return Arc::new(Unavailable::message(
            "no data directory is known for this user; set SYNC_RUNTIME_DB to a file path".into(),
        ));
    };
    if let Some(parent) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            return Arc::new(Unavailable::message(format!(
                "cannot create {}: {e}",
                parent.display()
            )));
        }
    }
    match crate::store::SqliteStore::open(&path) {
        Ok(store) => Arc::new(store),
        Err(e) => Arc::new(Unavailable(e)),
    }
}

#[cfg(all(not(feature = "sqlite"), not(target_arch = "wasm32")))]
pub(super) fn default_store() -> Arc<dyn Store> {
    // Without the `sqlite` feature there is no durable store to default to; say so on use
    // rather than losing queued work silently in memory.
    Arc::new(Unavailable::message(
        "the `sqlite` feature is off, so there is no default durable store; configure one with SyncService::builder().store(..).install()".into(),
    ))
}

/// The default service in the browser keeps its data in IndexedDB, opened on first use.
#[cfg(target_arch = "wasm32")]
pub(super) fn default_store() -> Arc<dyn Store> {
    Arc::new(crate::store::IndexedDbStore::new(
        crate::browser::DEFAULT_DATABASE,
    ))
}

/// What the default service adds to a builder's defaults on this platform: in the browser,
/// connectivity from the browser's events, and background replay on the page's event loop
/// (started at once, so that calls queued before a reload replay at page load).
#[cfg(target_arch = "wasm32")]
pub(super) fn platform_defaults(builder: SyncServiceBuilder) -> SyncServiceBuilder {
    builder
        .connectivity(crate::browser::BrowserConnectivity::new())
        .executor(crate::browser::BrowserExecutor)
}

#[cfg(not(target_arch = "wasm32"))]
pub(super) fn platform_defaults(builder: SyncServiceBuilder) -> SyncServiceBuilder {
    builder
}

/// Tabs of one origin share the browser's storage, so replays take a Web Lock by default.
#[cfg(target_arch = "wasm32")]
pub(super) fn platform_replay_lock() -> Option<Arc<dyn ReplayLock>> {
    Some(Arc::new(crate::browser::WebLocks::default()))
}

/// Native stores that others can open say so themselves ([`Store::replay_lock`]); the rest
/// have one owner.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn platform_replay_lock() -> Option<Arc<dyn ReplayLock>> {
    None
}

/// A store that could not be opened: every call reports why, so nothing is silently lost.
/// (The browser's default store reports its own opening errors.)
#[cfg(not(target_arch = "wasm32"))]
struct Unavailable(crate::StoreError);

#[cfg(not(target_arch = "wasm32"))]
impl Unavailable {
    fn message(message: String) -> Self {
        Self(crate::StoreError::Backend {
            operation: "open the default store",
            message,
        })
    }

    /// The open error again, of the same kind (a damaged file stays permanent, a full disk
    /// stays full).
    fn error(&self) -> crate::StoreError {
        use crate::StoreError::{Backend, Full, Incompatible, NotFound};
        match &self.0 {
            Backend { operation, message } => Backend {
                operation,
                message: message.clone(),
            },
            Incompatible { location, reason } => Incompatible {
                location: location.clone(),
                reason: reason.clone(),
            },
            Full { message } => Full {
                message: message.clone(),
            },
            NotFound(id) => NotFound(*id),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Store for Unavailable {
    fn apply(&self, _batch: Batch) -> BoxFuture<'_, Result<Applied, crate::StoreError>> {
        let error = self.error();
        crate::boxed(async move { Err(error) })
    }

    fn get<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<crate::store::Record>, crate::StoreError>> {
        let error = self.error();
        crate::boxed(async move { Err(error) })
    }

    fn scan<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, crate::store::Record)>, crate::StoreError>> {
        let error = self.error();
        crate::boxed(async move { Err(error) })
    }

    fn queued(
        &self,
        _: Option<ActionId>,
        _: usize,
    ) -> BoxFuture<'_, Result<Vec<QueuedAction>, crate::StoreError>> {
        let error = self.error();
        crate::boxed(async move { Err(error) })
    }

    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, crate::StoreError>> {
        let error = self.error();
        crate::boxed(async move { Err(error) })
    }

    fn counts(&self) -> BoxFuture<'_, Result<crate::store::Counts, crate::StoreError>> {
        let error = self.error();
        crate::boxed(async move { Err(error) })
    }
}
