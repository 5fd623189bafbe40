//! The hook that keeps replay to one runner among everything sharing a store: several browser
//! tabs share one IndexedDB database, several processes (or windows) one SQLite file, and only
//! one of them may replay the queue at a time.

use crate::{BoxFuture, MaybeSend, MaybeSync};

/// A lock around each replay, shared by every service that uses the same store.
///
/// [`SyncService::replay`](crate::SyncService::replay) already runs one replay at a time
/// inside one service. A `ReplayLock` extends that to other services on the same data: other
/// tabs of a web app, other windows or processes of a desktop app. Without it, two services
/// replaying one queue at once would send the same calls twice and out of order.
///
/// A service given no lock takes the one its store suggests
/// ([`Store::replay_lock`](crate::Store::replay_lock)): a [`FileReplayLock`] beside the file
/// for a `SqliteStore`, none for a [`MemoryStore`](crate::MemoryStore) (nothing else can
/// reach it); in the browser, `browser::WebLocks` (the Web Locks API).
///
/// A replay that finds the lock taken does nothing and reports
/// [`replayed_elsewhere`](crate::ReplayReport::replayed_elsewhere), with a time to look again
/// so that calls queued meanwhile, or left by a holder that stopped, are not left waiting for
/// the next trigger.
pub trait ReplayLock: MaybeSend + MaybeSync + 'static {
    /// Runs `work` while holding the lock, if the lock is free now. Resolves to `true` once
    /// `work` has completed, or to `false`, without running `work`, if another holder has
    /// the lock. It must not wait for the lock: a replay that cannot run now is retried later.
    fn run_exclusive(&self, work: BoxFuture<'static, ()>) -> BoxFuture<'static, bool>;
}

#[cfg(not(target_arch = "wasm32"))]
pub use file::FileReplayLock;

#[cfg(not(target_arch = "wasm32"))]
mod file {
    use super::ReplayLock;
    use crate::{boxed, BoxFuture};
    use std::ffi::OsString;
    use std::fs::{File, OpenOptions};
    use std::io::{self, ErrorKind};
    use std::path::{Path, PathBuf};

    /// A [`ReplayLock`] on an operating-system file lock (`flock` on Unix, `LockFileEx` on
    /// Windows) of a small file beside the database: services in any process that use the
    /// same lock file replay one at a time. The default for a file-backed `SqliteStore`, on
    /// `<database>.replay.lock`.
    ///
    /// Each replay opens the lock file anew and tries the lock without waiting, so two
    /// services in one process exclude each other just as two processes do. The operating
    /// system releases the lock the moment its holder's file is closed, including when the
    /// process dies (`kill -9`, a crash, a power-off of the app): a holder that stopped can
    /// never keep the others waiting, and the next look (within a second, with a background
    /// executor) takes over the rest of the queue.
    ///
    /// The lock file is created if missing and left in place (deleting it could let two
    /// holders lock two different files); it stays empty. If it cannot be opened or locked
    /// at all (its directory is gone or not writable, a file system without locks), replay
    /// runs as if this service were alone rather than never: SQLite needs the same directory
    /// and locks for its own files, so such a store is not shared in practice, and servers
    /// dedupe by [`ActionId`](crate::ActionId) as always.
    ///
    /// Why an OS lock rather than a lease row in the database: it needs no change to the
    /// store's schema, it costs no write per replay, and it cannot outlive its holder, so
    /// there is no expiry to tune between "a crashed holder blocks for long" and "a slow
    /// holder loses its lease while it still replays". It is a separate file, not the
    /// database itself, because SQLite's own locks live on the database (on Unix, closing
    /// any other handle to it would drop them).
    ///
    /// ```
    /// use sync_runtime::FileReplayLock;
    ///
    /// let lock = FileReplayLock::beside("app-data/sync.sqlite3");
    /// assert!(lock.path().ends_with("sync.sqlite3.replay.lock"));
    /// ```
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct FileReplayLock {
        path: PathBuf,
    }

    impl FileReplayLock {
        /// A lock on the file at `path`, created on first use.
        pub fn new(path: impl Into<PathBuf>) -> Self {
            Self { path: path.into() }
        }

        /// The lock for the database file at `database`: `<database>.replay.lock`, next to
        /// it (where SQLite keeps its `-wal` and `-shm` files). Give it the same path every
        /// process uses, preferably canonical: a different path to the same database (a
        /// symbolic link) would name a different lock file.
        pub fn beside(database: impl AsRef<Path>) -> Self {
            let mut name = OsString::from(database.as_ref().as_os_str());
            name.push(".replay.lock");
            Self::new(name)
        }

        /// The lock file.
        pub fn path(&self) -> &Path {
            &self.path
        }
    }

    /// Opens the lock file, creating it; read-only if this user may read it but not write it
    /// (a lock needs no write access).
    fn open(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .or_else(|error| match error.kind() {
                ErrorKind::PermissionDenied => File::open(path),
                _ => Err(error),
            })
    }

    impl ReplayLock for FileReplayLock {
        fn run_exclusive(&self, work: BoxFuture<'static, ()>) -> BoxFuture<'static, bool> {
            let path = self.path.clone();
            boxed(async move {
                let Ok(file) = open(&path) else {
                    work.await;
                    return true;
                };
                let mut lock = fd_lock::RwLock::new(file);
                let held = match lock.try_write() {
                    Ok(guard) => Some(guard),
                    Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
                    Err(_) => None,
                };
                work.await;
                // Unlocked here, or wherever this future is dropped: the guard, then the file.
                drop(held);
                true
            })
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::boxed;
    use futures::executor::block_on;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn runs(lock: &FileReplayLock) -> bool {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let acquired = block_on(lock.run_exclusive(boxed(async move {
            flag.store(true, Ordering::SeqCst);
        })));
        assert_eq!(
            acquired,
            ran.load(Ordering::SeqCst),
            "ran exactly when acquired"
        );
        acquired
    }

    /// Two services of one process each open the file: the second is refused while the first
    /// holds the lock, and gets it once the first is done or gone.
    #[test]
    fn one_holder_at_a_time_within_one_process() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let first = FileReplayLock::beside(dir.path().join("queue.sqlite3"));
        let second = FileReplayLock::beside(dir.path().join("queue.sqlite3"));
        assert_eq!(first, second);
        let (release, released) = futures_channel::oneshot::channel::<()>();
        let mut held = first.run_exclusive(boxed(async move {
            let _ = released.await;
        }));
        assert!(
            futures_util::FutureExt::now_or_never(&mut held).is_none(),
            "the first holds the lock, waiting"
        );
        assert!(!runs(&second), "refused while held");
        let _ = release.send(());
        assert!(block_on(held), "the first ran its work");
        assert!(runs(&second), "free once the first is done");

        // A holder dropped mid-work (its task cancelled, or its process gone) frees it too.
        let (_keep, never) = futures_channel::oneshot::channel::<()>();
        let mut held = first.run_exclusive(boxed(async move {
            let _ = never.await;
        }));
        assert!(futures_util::FutureExt::now_or_never(&mut held).is_none());
        assert!(!runs(&second));
        drop(held);
        assert!(runs(&second));
        assert!(dir.path().join("queue.sqlite3.replay.lock").is_file());
    }

    /// Where the lock file cannot be made at all, replay runs rather than never.
    #[test]
    fn an_unusable_lock_file_lets_replay_run() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let lock = FileReplayLock::new(dir.path().join("missing-dir").join("queue.replay.lock"));
        assert!(runs(&lock));
    }
}
