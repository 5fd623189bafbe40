//! A durable store in one SQLite file, for native apps (desktop, mobile, servers).

use super::local_data::{self, LocalData, PendingWrite};
use super::{
    Applied, Batch, Bury, Counts, DeadLetter, DeadReason, QueuedAction, Record, Reschedule, Stamp,
    Store, Write,
};
use crate::{
    boxed, ActionId, ActionKind, BoxFuture, FileReplayLock, ReplayLock, StoreError, Timestamp,
};
use core::fmt;
use rusqlite::types::FromSql;
use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, Transaction,
    TransactionBehavior,
};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Marks the file as ours in the SQLite header (`PRAGMA application_id`): ASCII "SYNC".
const APPLICATION_ID: i32 = 0x5359_4E43;

/// The schema this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i32 = 3;

/// Stored in the `meta` table, a second check that a file with our application id is ours.
const FORMAT: &str = "sync-runtime store";

/// The `meta` key under which [`Store::set_clock_offset`] keeps the server's clock offset.
const CLOCK_OFFSET_KEY: &str = "clock_offset";

/// `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`; a new file starts at 0.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3];

// Timestamps are stored bit for bit as INTEGER (see `to_sql_u64`), and SQL never orders or
// compares them, so a saturated `Timestamp(u64::MAX)` round-trips. `seq` uses AUTOINCREMENT
// because plain rowids are reused after the last row is deleted, and the queue order must
// never repeat a number. Dead letters keep their burial order in `position`. The pending and
// dead counts are kept by triggers, so `counts` reads one row however long the queue is
// (version 3 drops both the AUTOINCREMENT and the counts, for cheaper commits).
const SCHEMA_V1: &str = "
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('format', 'sync-runtime store');

CREATE TABLE queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT
);
CREATE UNIQUE INDEX queue_query_dedupe ON queue (name, params) WHERE kind = 'query';

CREATE TABLE dead (
    position INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    failed_at INTEGER NOT NULL
);
CREATE INDEX dead_by_id ON dead (id);

CREATE TABLE data (
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    timestamp INTEGER NOT NULL,
    action TEXT NOT NULL,
    PRIMARY KEY (collection, key)
);

CREATE TABLE counts (
    only INTEGER PRIMARY KEY CHECK (only = 0),
    pending INTEGER NOT NULL,
    dead INTEGER NOT NULL
);
INSERT INTO counts (only, pending, dead) VALUES (0, 0, 0);
CREATE TRIGGER queue_insert_counts AFTER INSERT ON queue
    BEGIN UPDATE counts SET pending = pending + 1; END;
CREATE TRIGGER queue_delete_counts AFTER DELETE ON queue
    BEGIN UPDATE counts SET pending = pending - 1; END;
CREATE TRIGGER dead_insert_counts AFTER INSERT ON dead
    BEGIN UPDATE counts SET dead = dead + 1; END;
CREATE TRIGGER dead_delete_counts AFTER DELETE ON dead
    BEGIN UPDATE counts SET dead = dead - 1; END;
";

// Version 2, one upgrade from version 1 for three changes planned together:
// - reliability: `queued_at`, the time a call entered the queue or was last revived (its
//   time-to-live counts from there, not from when the user acted); the queue is read in id
//   order (the order the user acted), through the index `id UNIQUE` already gives it;
// - ordering scopes: `scope`, the ordering scope of a call ('' is the one global scope), with
//   an index to find each scope's head;
// - local data that stays true: `pending_writes`, what each queued call's local handler wrote
//   (`value`, stamped `timestamp` and the call's id) and what the record held before
//   (`prior_*`; a NULL `prior_action` means there was no record), to keep pending values over
//   server refreshes and to roll them back when the call is rejected; `shadowed`, the newest
//   server value of a record that queued calls wrote, which takes over when they are done;
//   `dead_writes`, what each dead letter's call wrote, applied again when it is revived.
// Rows of version 1 get `queued_at = timestamp` and the global scope.
const SCHEMA_V2: &str = "
ALTER TABLE queue ADD COLUMN queued_at INTEGER NOT NULL DEFAULT 0;
UPDATE queue SET queued_at = timestamp;
ALTER TABLE queue ADD COLUMN scope TEXT NOT NULL DEFAULT '';
CREATE INDEX queue_by_scope ON queue (scope, id);
ALTER TABLE dead ADD COLUMN queued_at INTEGER NOT NULL DEFAULT 0;
UPDATE dead SET queued_at = timestamp;
ALTER TABLE dead ADD COLUMN scope TEXT NOT NULL DEFAULT '';

CREATE TABLE pending_writes (
    action TEXT NOT NULL,
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    timestamp INTEGER NOT NULL,
    prior_value TEXT,
    prior_timestamp INTEGER,
    prior_action TEXT,
    PRIMARY KEY (action, collection, key)
) WITHOUT ROWID;
CREATE INDEX pending_writes_by_record ON pending_writes (collection, key);

CREATE TABLE shadowed (
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    timestamp INTEGER NOT NULL,
    action TEXT NOT NULL,
    PRIMARY KEY (collection, key)
) WITHOUT ROWID;

CREATE TABLE dead_writes (
    action TEXT NOT NULL,
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    timestamp INTEGER NOT NULL,
    PRIMARY KEY (action, collection, key)
) WITHOUT ROWID;
";

// Version 3, one upgrade from version 2, so that queueing a call writes no page a plain queue
// table would not (each page is a frame in the write-ahead log on every commit):
// - no `counts` table and no triggers keeping it: the store counts the queue when first
//   asked and then keeps the counts itself, from what each batch changed, counting again
//   when another connection has written to the file (`PRAGMA data_version`);
// - `queue.seq` without AUTOINCREMENT, whose `sqlite_sequence` row is one more page per
//   insert. Numbers must still never be reused: a new call gets one more than the largest of
//   the queue's `seq` and the floor kept in `meta`, and deleting the call with the largest
//   `seq` raises the floor to it (a trigger, which only writes when the queue's newest call
//   goes: once when it is drained, not once per call). The floor starts at what
//   `sqlite_sequence` held, so numbers given out under version 2 are not given out again.
// The queue table is rebuilt (SQLite cannot drop AUTOINCREMENT in place), keeping every row
// and its `seq`.
const SCHEMA_V3: &str = "
DROP TRIGGER IF EXISTS queue_insert_counts;
DROP TRIGGER IF EXISTS queue_delete_counts;
DROP TRIGGER IF EXISTS dead_insert_counts;
DROP TRIGGER IF EXISTS dead_delete_counts;
DROP TABLE IF EXISTS counts;

INSERT OR REPLACE INTO meta (key, value)
    VALUES ('queue_seq_floor', coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'queue'), 0));
CREATE TABLE queue_v3 (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    queued_at INTEGER NOT NULL DEFAULT 0,
    scope TEXT NOT NULL DEFAULT ''
);
INSERT INTO queue_v3 (seq, id, name, version, kind, params, timestamp, retries, next_attempt_at, last_error, queued_at, scope)
    SELECT seq, id, name, version, kind, params, timestamp, retries, next_attempt_at, last_error, queued_at, scope FROM queue;
DROP TABLE queue;
ALTER TABLE queue_v3 RENAME TO queue;
CREATE UNIQUE INDEX queue_query_dedupe ON queue (name, params) WHERE kind = 'query';
CREATE INDEX queue_by_scope ON queue (scope, id);
CREATE TRIGGER queue_seq_floor AFTER DELETE ON queue
    WHEN NOT EXISTS (SELECT 1 FROM queue WHERE seq > old.seq)
    BEGIN
        INSERT INTO meta (key, value) VALUES ('queue_seq_floor', old.seq)
            ON CONFLICT (key) DO UPDATE SET value = excluded.value
            WHERE CAST(meta.value AS INTEGER) < CAST(excluded.value AS INTEGER);
    END;
";

/// The `seq` of a call entering the queue: one more than any number given out before (see
/// [`SCHEMA_V3`]). Each part is one index search.
macro_rules! next_seq {
    () => {
        "(max(coalesce((SELECT max(seq) FROM queue), 0), \
coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'queue_seq_floor'), 0)) + 1)"
    };
}

/// The columns of a queued action, in the order `decode_queued` reads them; the dead-letter
/// table has the same ones first. A macro so that `concat!` builds each statement at compile
/// time.
macro_rules! queued_columns {
    () => {
        "seq, id, name, version, kind, params, timestamp, retries, next_attempt_at, last_error, queued_at, scope"
    };
}

/// The smallest id of each scope: a walk from scope to scope through the index on
/// (scope, id), one index search per scope, however long the queue is.
const SCOPE_HEADS: &str = concat!(
    "WITH RECURSIVE scopes (current) AS (",
    "SELECT (SELECT min(scope) FROM queue) ",
    "UNION ALL SELECT (SELECT min(scope) FROM queue WHERE scope > current) ",
    "FROM scopes WHERE current IS NOT NULL) ",
    "SELECT ",
    queued_columns!(),
    " FROM scopes JOIN queue ON queue.id = ",
    "(SELECT min(id) FROM queue AS head WHERE head.scope = current)"
);

/// How long a write waits for another connection (another process on the same file) to
/// finish its transaction before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Store`] that keeps everything in one SQLite file.
///
/// Each [`apply`](Store::apply) is one SQLite transaction. The file is in WAL mode with
/// `synchronous = NORMAL`: a batch whose `apply` returned survives a crash of the process
/// (including `kill -9`), because it is already in the write-ahead log the operating system
/// holds; on power loss or an operating-system crash the last few batches may be rolled back,
/// never half-applied.
///
/// SQLite is a blocking library: each call does its work when its future is first polled and
/// blocks the calling thread while it does, usually well under a millisecond, as any embedded
/// database would. The store holds one connection behind a mutex; several processes may open
/// the same file (writes wait for each other up to five seconds).
///
/// Services on the same file, in one process or several, replay the queue one at a time:
/// each takes a [`FileReplayLock`] on `<file>.replay.lock` around its replay (see
/// [`Store::replay_lock`]); the others report
/// [`replayed_elsewhere`](crate::ReplayReport::replayed_elsewhere) and take over when the
/// holder stops with calls left. An in-memory store has no lock: nothing else can open it.
///
/// The file's schema is versioned. Opening a file written by a newer version of this crate,
/// a SQLite file of another application, or a file that is not a SQLite database fails with
/// [`StoreError::Incompatible`] instead of touching it. A file of an older version is
/// upgraded in place, in one transaction, by the first store of the newer version that opens
/// it; stop every process of the older version on the same file first (each checks the
/// version only when it opens the file, so one still running would misread the new schema).
///
/// ```
/// use sync_runtime::store::SqliteStore;
/// use sync_runtime::Store;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("offline.db");
/// let store = SqliteStore::open(&path)?;
/// # futures::executor::block_on(async {
/// assert_eq!(store.counts().await?.pending, 0);
/// # Ok::<(), sync_runtime::StoreError>(())
/// # })?;
/// # Ok(())
/// # }
/// ```
pub struct SqliteStore {
    connection: Mutex<Locked>,
    location: String,
    /// The replay lock beside the file; `None` in memory.
    replay_lock: Option<FileReplayLock>,
}

/// The connection, and what the store knows of the counts, under one lock.
struct Locked {
    connection: Connection,
    /// The counts as of this connection's last look; `None` until first asked.
    counts: Option<KnownCounts>,
}

/// The number of queued calls and dead letters, kept in memory so that neither queueing a
/// call (no counter row to write) nor reading the counts (no table to count) costs a page.
/// This connection's own batches add what they change; a write by any other connection to
/// the file changes `PRAGMA data_version`, and the next read counts again.
#[derive(Clone, Copy)]
struct KnownCounts {
    data_version: i64,
    pending: i64,
    dead: i64,
}

/// What a batch changed in the number of queued calls and dead letters.
#[derive(Default)]
struct CountChange {
    pending: i64,
    dead: i64,
}

impl CountChange {
    /// Adds `rows` (what a statement's `execute` answered) to `count`.
    fn add(count: &mut i64, rows: usize) {
        *count += i64::try_from(rows).unwrap_or(i64::MAX);
    }

    /// Takes `rows` from `count`.
    fn remove(count: &mut i64, rows: usize) {
        *count -= i64::try_from(rows).unwrap_or(i64::MAX);
    }
}

/// How to open a [`SqliteStore`]. The defaults suit an app's own store.
#[derive(Clone, Debug, Default)]
pub struct SqliteOptions {
    read_only: bool,
    max_size: Option<u64>,
}

impl SqliteOptions {
    /// The defaults: read-write, created if missing, no size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens an existing store without ever writing to it, for example to inspect another
    /// app's queue. Every non-empty [`apply`](Store::apply) fails with
    /// [`StoreError::Backend`].
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Caps the file at about `bytes` (rounded up to whole SQLite pages; never below what it
    /// already holds). A batch that would grow it further fails with [`StoreError::Full`]
    /// and writes nothing.
    #[must_use]
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }
}

impl SqliteStore {
    /// Opens the store in the file at `path`, creating the file if it does not exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::Incompatible`] if the file is not a store this version can use;
    /// [`StoreError::Backend`] if it cannot be opened at all.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens the store in the file at `path` with `options`.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`]; a read-only open of a missing or empty file also fails.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let location = path.display().to_string();
        // No SQLITE_OPEN_URI: a file named "file:..." is a file, not a URI with options.
        let flags = if options.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let connection = Connection::open_with_flags(path, flags)
            .map_err(|e| to_store_error("open", &location, e))?;
        Self::set_up(connection, location, &options)
    }

    /// A store that lives in memory and disappears when dropped: the SQLite code path without
    /// the file, for tests.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if SQLite cannot allocate the database.
    pub fn in_memory() -> Result<Self, StoreError> {
        let location = ":memory:".to_owned();
        let connection =
            Connection::open_in_memory().map_err(|e| to_store_error("open", &location, e))?;
        Self::set_up(connection, location, &SqliteOptions::default())
    }

    fn set_up(
        mut connection: Connection,
        location: String,
        options: &SqliteOptions,
    ) -> Result<Self, StoreError> {
        let fail = |e: Failure| e.into_store_error("open", &location);
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail(e.into()))?;
        // Check before changing anything, so a foreign or newer file is left exactly as it was.
        let found = retry_busy(|| schema_version(&connection)).map_err(fail)?;
        if options.read_only {
            if found < SCHEMA_VERSION {
                let holds = if found == 0 {
                    "is empty".to_owned()
                } else {
                    format!("holds schema version {found}")
                };
                return Err(StoreError::Incompatible {
                    location,
                    reason: format!(
                        "it {holds} and was opened read-only, so it cannot be set up to schema version {SCHEMA_VERSION}"
                    ),
                });
            }
        } else {
            // journal_mode answers with the mode in force; an in-memory database stays "memory",
            // and a file system without shared memory keeps its rollback journal. Both are fine.
            retry_busy(|| Ok(connection.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?))
                .map_err(fail)?;
            connection
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(|e| fail(e.into()))?;
            retry_busy(|| migrate(&mut connection)).map_err(fail)?;
        }
        if let Some(bytes) = options.max_size {
            let page_size: i64 = connection
                .pragma_query_value(None, "page_size", |row| row.get(0))
                .map_err(|e| fail(e.into()))?;
            let page_size = u64::try_from(page_size).unwrap_or(1).max(1);
            let pages = i64::try_from(bytes.div_ceil(page_size)).unwrap_or(i64::MAX);
            connection
                .pragma_update(None, "max_page_count", pages)
                .map_err(|e| fail(e.into()))?;
        }
        // Beside the file SQLite opened (an absolute path), with symbolic links resolved, so
        // that every way of naming the file names the same lock. Empty in memory.
        let replay_lock = connection
            .path()
            .filter(|file| !file.is_empty())
            .map(|file| {
                let file = Path::new(file);
                FileReplayLock::beside(std::fs::canonicalize(file).unwrap_or_else(|_| file.into()))
            });
        Ok(Self {
            connection: Mutex::new(Locked {
                connection,
                counts: None,
            }),
            location,
            replay_lock,
        })
    }

    /// Where the data lives: the file path, or `:memory:`.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The lock services on this file take around each replay, or `None` for a store in
    /// memory.
    pub fn file_replay_lock(&self) -> Option<&FileReplayLock> {
        self.replay_lock.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, Locked> {
        // A panic while the lock was held dropped its rusqlite Transaction, which rolls back,
        // so the connection behind a poisoned lock is consistent.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn run<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut Connection) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        work(&mut self.lock().connection).map_err(|e| e.into_store_error(operation, &self.location))
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Store for SqliteStore {
    fn apply(&self, batch: Batch) -> BoxFuture<'_, Result<Applied, StoreError>> {
        boxed(async move {
            if batch.is_empty() {
                return Ok(Applied::default());
            }
            let mut locked = self.lock();
            let Locked { connection, counts } = &mut *locked;
            let mut change = CountChange::default();
            let applied = (|| {
                // IMMEDIATE takes the write lock up front: a deferred transaction that reads
                // first and then writes can fail with SQLITE_BUSY without waiting when another
                // process wrote in between.
                let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                validate(&tx, &batch)?;
                let applied = apply_batch(&tx, batch, &mut change)?;
                tx.commit()?;
                Ok(applied)
            })()
            .map_err(|e: Failure| e.into_store_error("apply a batch", &self.location))?;
            // Only once committed: a batch that failed changed nothing.
            if let Some(known) = counts {
                known.pending += change.pending;
                known.dead += change.dead;
            }
            Ok(applied)
        })
    }

    fn get<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        boxed(async move {
            self.run("read a record", |connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT value, timestamp, action FROM data WHERE collection = ?1 AND key = ?2",
                )?;
                let mut rows = statement.query(params![collection, key])?;
                match rows.next()? {
                    Some(row) => Ok(Some(decode_record(row, collection, key, 0)?)),
                    None => Ok(None),
                }
            })
        })
    }

    fn scan<'a>(
        &'a self,
        collection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Record)>, StoreError>> {
        boxed(async move {
            self.run("scan a collection", |connection| {
                let mut statement = connection
                    .prepare_cached("SELECT key, value, timestamp, action FROM data WHERE collection = ?1 ORDER BY key")?;
                let mut rows = statement.query(params![collection])?;
                let mut records = Vec::new();
                while let Some(row) = rows.next()? {
                    let key: String = column(row, 0, || format!("a record of collection {collection:?}"))?;
                    let record = decode_record(row, collection, &key, 1)?;
                    records.push((key, record));
                }
                Ok(records)
            })
        })
    }

    fn queued(
        &self,
        after: Option<ActionId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<QueuedAction>, StoreError>> {
        boxed(async move {
            // Ids are stored as lowercase hyphenated uuids, whose text order is their order;
            // the empty string is before every id.
            let after = after.map(|id| id.to_string()).unwrap_or_default();
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            self.run("read the queue", |connection| {
                let mut statement = connection.prepare_cached(concat!(
                    "SELECT ",
                    queued_columns!(),
                    " FROM queue WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))?;
                let rows = statement.query(params![after, limit])?;
                decode_queue_page(rows)
            })
        })
    }

    fn scope_heads(&self) -> BoxFuture<'_, Result<Vec<QueuedAction>, StoreError>> {
        boxed(async move {
            self.run("read the head of each scope", |connection| {
                let mut statement = connection.prepare_cached(SCOPE_HEADS)?;
                let rows = statement.query([])?;
                let mut heads = decode_queue_page(rows)?;
                heads.sort_by_key(|head| head.id);
                Ok(heads)
            })
        })
    }

    fn queued_in_scope<'a>(
        &'a self,
        scope: &'a str,
        after: Option<ActionId>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<QueuedAction>, StoreError>> {
        boxed(async move {
            let after = after.map(|id| id.to_string()).unwrap_or_default();
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            self.run("read a scope of the queue", |connection| {
                let mut statement = connection.prepare_cached(concat!(
                    "SELECT ",
                    queued_columns!(),
                    " FROM queue WHERE scope = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                ))?;
                let rows = statement.query(params![scope, after, limit])?;
                decode_queue_page(rows)
            })
        })
    }

    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>> {
        boxed(async move {
            self.run("read the dead letters", |connection| {
                let mut statement = connection.prepare_cached(concat!(
                    "SELECT ",
                    queued_columns!(),
                    ", reason, message, failed_at FROM dead ORDER BY position"
                ))?;
                let mut rows = statement.query([])?;
                let mut dead = Vec::new();
                while let Some(row) = rows.next()? {
                    dead.push(decode_dead(row)?);
                }
                Ok(dead)
            })
        })
    }

    fn set_aside_unreadable(
        &self,
        failed_at: Timestamp,
    ) -> BoxFuture<'_, Result<Option<DeadLetter>, StoreError>> {
        boxed(async move { self.set_aside(failed_at) })
    }

    fn last_queued_id(&self) -> BoxFuture<'_, Result<Option<ActionId>, StoreError>> {
        boxed(async move {
            self.run("read the queue's last id", |connection| {
                let last: Option<String> = connection
                    .prepare_cached("SELECT id FROM queue ORDER BY id DESC LIMIT 1")?
                    .query_row([], |row| row.get(0))
                    .optional()?;
                // A last id that is not one (a hand-edited row) sets no floor; reading the
                // queue reports that row.
                Ok(last.and_then(|id| id.parse().ok()))
            })
        })
    }

    fn counts(&self) -> BoxFuture<'_, Result<Counts, StoreError>> {
        boxed(async move {
            let mut locked = self.lock();
            let Locked { connection, counts } = &mut *locked;
            known_counts(connection, counts)
                .map_err(|e| e.into_store_error("count the queue", &self.location))
        })
    }

    /// A [`FileReplayLock`] beside the file, shared with every service and process that opens
    /// it; none in memory.
    fn replay_lock(&self) -> Option<Arc<dyn ReplayLock>> {
        let lock = self.replay_lock.clone()?;
        Some(Arc::new(lock))
    }

    fn clock_offset(&self) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
        boxed(async move {
            self.run("read the clock offset", |connection| {
                let value: Option<String> = connection
                    .query_row(
                        "SELECT value FROM meta WHERE key = ?1",
                        [CLOCK_OFFSET_KEY],
                        |row| row.get(0),
                    )
                    .optional()?;
                // A value that does not read (edited outside this crate) is no offset: the
                // next answer from the server sets a fresh one.
                Ok(value.and_then(|text| text.parse().ok()))
            })
        })
    }

    fn set_clock_offset(&self, offset_millis: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        boxed(async move {
            self.run("save the clock offset", |connection| {
                connection.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![CLOCK_OFFSET_KEY, offset_millis.to_string()],
                )?;
                Ok(())
            })
        })
    }
}

impl SqliteStore {
    /// See [`Store::set_aside_unreadable`].
    fn set_aside(&self, failed_at: Timestamp) -> Result<Option<DeadLetter>, StoreError> {
        let mut locked = self.lock();
        let Locked { connection, counts } = &mut *locked;
        let set_aside = (|| {
            // The queue loses a row to the dead letters, but a row of the queue that cannot be
            // read may also be one the counts were never told of (edited in by hand): after
            // this, count again.
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some((seq, error)) = first_unreadable(&tx)? else {
                return Ok(None);
            };
            // What a dead letter needs, salvaged as text: any column can hold anything in a
            // hand-edited file. An id that is not a uuid gets a new one (the original is in
            // the message), so the dead letter can be listed, retried or discarded.
            let text = |column: &str| -> Result<String, Failure> {
                use rusqlite::types::ValueRef;
                Ok(tx.query_row(
                    &format!("SELECT {column} FROM queue WHERE seq = ?1"),
                    [seq],
                    |row| {
                        Ok(match row.get_ref(0)? {
                            ValueRef::Null => String::new(),
                            ValueRef::Integer(n) => n.to_string(),
                            ValueRef::Real(x) => x.to_string(),
                            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
                                String::from_utf8_lossy(bytes).into_owned()
                            }
                        })
                    },
                )?)
            };
            let raw_id = text("id")?;
            let id = raw_id
                .parse::<ActionId>()
                .unwrap_or_else(|_| ActionId(uuid::Uuid::new_v4()));
            let name = text("name")?;
            let params = text("params")?;
            let message = format!(
                "the queued row could not be read and was set aside: {error} (id as stored: {raw_id:?})"
            );
            let number = |column: &str| -> Result<u64, Failure> {
                let value: Option<i64> = tx.query_row(
                    &format!("SELECT CASE typeof({column}) WHEN 'integer' THEN {column} END FROM queue WHERE seq = ?1"),
                    [seq],
                    |row| row.get(0),
                )?;
                Ok(value.map_or(0, from_sql_u64))
            };
            let timestamp = Timestamp(number("timestamp")?);
            let queued_at = Timestamp(number("queued_at")?);
            let scope = text("scope")?;
            let kind = match text("kind")?.as_str() {
                "query" => ActionKind::Query,
                _ => ActionKind::Mutation,
            };
            tx.prepare_cached(
                "INSERT INTO dead (seq, id, name, version, kind, params, timestamp, retries, next_attempt_at, last_error, queued_at, reason, message, failed_at, scope) \
                 VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, 0, ?6, NULL, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                seq,
                id.to_string(),
                name,
                kind_name(kind),
                params,
                to_sql_u64(timestamp.0),
                to_sql_u64(queued_at.0),
                DeadReason::Unreadable.as_str(),
                message,
                to_sql_u64(failed_at.0),
                scope
            ])?;
            tx.prepare_cached("DELETE FROM queue WHERE seq = ?1")?
                .execute([seq])?;
            // Its local writes are rolled back like those of any call that cannot be
            // replayed; under an id that is not one, they are only let go.
            match raw_id.parse::<ActionId>() {
                Ok(stored) => {
                    ready(local_data::roll_back(&mut LocalRows(&tx), stored))?;
                }
                Err(_) => {
                    tx.prepare_cached("DELETE FROM pending_writes WHERE action = ?1")?
                        .execute(params![raw_id])?;
                }
            }
            tx.commit()?;
            Ok(Some(DeadLetter {
                action: QueuedAction {
                    seq: u64::try_from(seq).unwrap_or(0),
                    id,
                    name,
                    version: 0,
                    kind,
                    params,
                    timestamp,
                    queued_at,
                    retries: 0,
                    next_attempt_at: timestamp,
                    last_error: None,
                    scope,
                },
                reason: DeadReason::Unreadable,
                message,
                failed_at,
            }))
        })()
        .map_err(|e: Failure| {
            e.into_store_error("set aside an unreadable queued row", &self.location)
        });
        if matches!(set_aside, Ok(Some(_))) {
            *counts = None;
        }
        set_aside
    }
}

/// Decodes rows of the queue, saying how to get past one that does not decode.
fn decode_queue_page(mut rows: rusqlite::Rows<'_>) -> Result<Vec<QueuedAction>, Failure> {
    let mut page = Vec::new();
    while let Some(row) = rows.next()? {
        page.push(decode_queued(row, "queue").map_err(|e| match e {
            Failure::BadData(reason) => Failure::BadData(format!(
                "{reason}; `SyncService::set_aside_unreadable` moves the row to the dead letters so the rest of the queue can drain"
            )),
            other => other,
        })?);
    }
    Ok(page)
}

/// The first queued row (in queue order) that does not decode, with the reason.
fn first_unreadable(tx: &Transaction<'_>) -> Result<Option<(i64, String)>, Failure> {
    let mut statement = tx.prepare_cached(concat!(
        "SELECT ",
        queued_columns!(),
        " FROM queue ORDER BY id"
    ))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        match decode_queued(row, "queue") {
            Ok(_) => {}
            Err(Failure::BadData(reason)) => return Ok(Some((row.get(0)?, reason))),
            Err(other) => return Err(other),
        }
    }
    Ok(None)
}

/// Reads the file's schema version: 0 for a new, empty database; an error for anything that is
/// not a store this build can read.
fn schema_version(connection: &Connection) -> Result<i32, Failure> {
    let application_id: i32 =
        connection.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let version: i32 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if application_id == 0 {
        let objects: i64 =
            connection.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
        if objects == 0 {
            return Ok(0);
        }
        return Err(Failure::Incompatible(format!(
            "it is a SQLite database of another application (it holds {objects} schema objects and no sync-runtime application id)"
        )));
    }
    if application_id != APPLICATION_ID {
        return Err(Failure::Incompatible(format!(
            "it is a SQLite database of another application (application id {application_id:#010x}, sync-runtime's is {APPLICATION_ID:#010x})"
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(Failure::Incompatible(format!(
            "it holds schema version {version}, written by a newer version of the app; this build reads versions up to {SCHEMA_VERSION}"
        )));
    }
    if version < 1 {
        return Err(Failure::Incompatible(format!(
            "it carries sync-runtime's application id but schema version {version}, which no version of sync-runtime writes"
        )));
    }
    let format: Option<String> = connection
        .query_row("SELECT value FROM meta WHERE key = 'format'", [], |row| {
            row.get(0)
        })
        .optional()
        .map_err(|e| {
            Failure::Incompatible(format!(
                "it carries sync-runtime's application id but its meta table is unreadable: {e}"
            ))
        })?;
    if format.as_deref() != Some(FORMAT) {
        return Err(Failure::Incompatible(format!(
            "it carries sync-runtime's application id but its meta table says {format:?}, not {FORMAT:?}"
        )));
    }
    Ok(version)
}

/// Runs a step of opening the file again while SQLite answers "busy" without waiting, up to
/// [`BUSY_TIMEOUT`]. The busy handler covers most waits, but not all: a connection that
/// opens while another process recovers the write-ahead log of a process killed mid-write,
/// or checkpoints it on closing, can be told "database is locked" at once.
fn retry_busy<T>(mut step: impl FnMut() -> Result<T, Failure>) -> Result<T, Failure> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match step() {
            Err(Failure::Sql(rusqlite::Error::SqliteFailure(error, _)))
                if matches!(
                    error.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Brings the schema up to [`SCHEMA_VERSION`] in one transaction, so a crash leaves either the
/// old schema or the new one.
fn migrate(connection: &mut Connection) -> Result<(), Failure> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read again under the write lock: another process may have set the file up meanwhile.
    let found = schema_version(&tx)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    for step in &MIGRATIONS[usize::try_from(found).unwrap_or(0)..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Checks that every queued action and dead letter the batch names exists, before anything
/// changes, exactly as the in-memory store does.
fn validate(tx: &Transaction<'_>, batch: &Batch) -> Result<(), Failure> {
    let queued = |id: &ActionId| exists(tx, "SELECT 1 FROM queue WHERE id = ?1", id);
    let dead = |id: &ActionId| exists(tx, "SELECT 1 FROM dead WHERE id = ?1", id);
    for id in batch
        .reschedule
        .iter()
        .map(|r| &r.id)
        .chain(batch.bury.iter().map(|b| &b.id))
    {
        if !queued(id)? {
            return Err(Failure::Store(StoreError::NotFound(*id)));
        }
    }
    for id in batch.revive.iter().map(|(id, _)| id).chain(&batch.discard) {
        if !dead(id)? {
            return Err(Failure::Store(StoreError::NotFound(*id)));
        }
    }
    Ok(())
}

fn exists(tx: &Transaction<'_>, sql: &str, id: &ActionId) -> Result<bool, Failure> {
    Ok(tx.prepare_cached(sql)?.exists(params![id.to_string()])?)
}

/// The counts, from memory while no other connection has written to the file since they were
/// taken, else counted (in one read transaction, with the data version they belong to).
fn known_counts(
    connection: &mut Connection,
    known: &mut Option<KnownCounts>,
) -> Result<Counts, Failure> {
    let as_counts = |counts: KnownCounts| {
        Some(Counts {
            pending: u64::try_from(counts.pending).ok()?,
            dead: u64::try_from(counts.dead).ok()?,
        })
    };
    let version = data_version(connection)?;
    if let Some(counts) = known.filter(|k| k.data_version == version) {
        if let Some(counts) = as_counts(counts) {
            return Ok(counts);
        }
    }
    let tx = connection.transaction()?;
    let (pending, dead) = tx
        .prepare_cached("SELECT (SELECT count(*) FROM queue), (SELECT count(*) FROM dead)")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let counts = KnownCounts {
        // Inside the transaction: the version of the snapshot just counted.
        data_version: data_version(&tx)?,
        pending,
        dead,
    };
    tx.commit()?;
    *known = Some(counts);
    as_counts(counts).ok_or_else(|| Failure::BadData("a count is negative".to_owned()))
}

/// `PRAGMA data_version`: changes when another connection commits to the file, never for
/// this connection's own commits.
fn data_version(connection: &Connection) -> Result<i64, Failure> {
    Ok(connection
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |row| row.get(0))?)
}

/// Applies a validated batch in the in-memory store's order: writes, complete, reschedule,
/// bury, revive, discard, enqueue; `change` is told what it did to the counts.
fn apply_batch(
    tx: &Transaction<'_>,
    batch: Batch,
    change: &mut CountChange,
) -> Result<Applied, Failure> {
    let mut applied = Applied::default();
    let mut data = LocalRows(tx);
    let pending_for = batch.enqueue.as_ref().map(|new| new.id);
    for write in &batch.writes {
        if ready(local_data::write(
            &mut data,
            write,
            pending_for,
            batch.complete,
        ))? {
            applied.writes_applied += 1;
        }
    }
    if let Some(id) = batch.complete {
        let removed = tx
            .prepare_cached("DELETE FROM queue WHERE id = ?1")?
            .execute(params![id.to_string()])?;
        CountChange::remove(&mut change.pending, removed);
        ready(local_data::release(&mut data, id))?;
    }
    if let Some(Reschedule {
        id,
        retries,
        next_attempt_at,
        last_error,
    }) = &batch.reschedule
    {
        tx.prepare_cached(
            "UPDATE queue SET retries = ?2, next_attempt_at = ?3, last_error = ?4 WHERE id = ?1",
        )?
        .execute(params![
            id.to_string(),
            retries,
            to_sql_u64(next_attempt_at.0),
            last_error
        ])?;
    }
    if let Some(Bury {
        id,
        reason,
        message,
        failed_at,
    }) = &batch.bury
    {
        let buried = tx
            .prepare_cached(concat!(
                "INSERT INTO dead (",
                queued_columns!(),
                ", reason, message, failed_at) SELECT ",
                queued_columns!(),
                ", ?2, ?3, ?4 FROM queue WHERE id = ?1"
            ))?
            .execute(params![
                id.to_string(),
                reason.as_str(),
                message,
                to_sql_u64(failed_at.0)
            ])?;
        CountChange::add(&mut change.dead, buried);
        let removed = tx
            .prepare_cached("DELETE FROM queue WHERE id = ?1")?
            .execute(params![id.to_string()])?;
        CountChange::remove(&mut change.pending, removed);
        if removed > 0 {
            applied.rolled_back = ready(local_data::roll_back(&mut data, *id))?;
        }
    }
    if let Some((id, now)) = batch.revive {
        let position: Option<i64> = tx
            .prepare_cached("SELECT position FROM dead WHERE id = ?1 ORDER BY position LIMIT 1")?
            .query_row(params![id.to_string()], |row| row.get(0))
            .optional()?;
        if let Some(position) = position {
            // OR IGNORE: if the same call or the same query is queued already, the unique
            // indexes turn the revive into dropping the dead letter, and the queue keeps one.
            let requeued = tx.prepare_cached(concat!(
                "INSERT OR IGNORE INTO queue (seq, id, name, version, kind, params, timestamp, retries, next_attempt_at, last_error, queued_at, scope) SELECT ",
                next_seq!(),
                ", id, name, version, kind, params, timestamp, 0, ?2, NULL, ?2, scope FROM dead WHERE position = ?1"
            ))?
            .execute(params![position, to_sql_u64(now.0)])?;
            CountChange::add(&mut change.pending, requeued);
            let removed = tx
                .prepare_cached("DELETE FROM dead WHERE position = ?1")?
                .execute(params![position])?;
            CountChange::remove(&mut change.dead, removed);
            ready(local_data::revive(&mut data, id, requeued > 0))?;
        }
    }
    if let Some(id) = batch.discard {
        let removed = tx
            .prepare_cached("DELETE FROM dead WHERE id = ?1")?
            .execute(params![id.to_string()])?;
        CountChange::remove(&mut change.dead, removed);
        ready(local_data::discard(&mut data, id))?;
    }
    if let Some(new) = batch.enqueue {
        let id = new.id.to_string();
        let duplicate: Option<String> = if new.kind == ActionKind::Query {
            tx.prepare_cached(
                "SELECT id FROM queue WHERE kind = 'query' AND name = ?1 AND params = ?2",
            )?
            .query_row(params![new.name, new.params], |row| row.get(0))
            .optional()?
        } else {
            None
        };
        // Enqueueing the same id twice keeps the first. A mutation learns it from the insert
        // (ignored by the unique index on ids), without a lookup of its own; a query must
        // know before it replaces a queued copy of itself.
        if new.kind == ActionKind::Query
            && exists(tx, "SELECT 1 FROM queue WHERE id = ?1", &new.id)?
        {
            applied.queued = Some(new.id);
        } else {
            if let Some(existing) = duplicate {
                // A refresh of a query already queued replaces it, at the new call's place.
                let replaced = parse_id(&existing, || format!("the queued query {:?}", new.name))?;
                let removed = tx
                    .prepare_cached("DELETE FROM queue WHERE id = ?1")?
                    .execute(params![existing])?;
                CountChange::remove(&mut change.pending, removed);
                ready(local_data::release(&mut data, replaced))?;
                applied.replaced = Some(replaced);
            }
            let queued = tx.prepare_cached(concat!(
                "INSERT OR IGNORE INTO queue (seq, id, name, version, kind, params, timestamp, retries, next_attempt_at, last_error, queued_at, scope) VALUES (",
                next_seq!(),
                ", ?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, NULL, ?7, ?8)"
            ))?
            .execute(params![
                id,
                new.name,
                new.version,
                kind_name(new.kind),
                new.params,
                to_sql_u64(new.timestamp.0),
                to_sql_u64(new.queued_at.0),
                new.scope
            ])?;
            CountChange::add(&mut change.pending, queued);
            applied.queued = Some(new.id);
        }
    }
    Ok(applied)
}

/// Runs a local-data step inside the transaction; SQLite answers at once, so its futures are
/// ready when first polled.
fn ready<T>(step: impl core::future::Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    local_data::ready(step, || {
        Failure::Store(StoreError::Backend {
            operation: "apply a batch",
            message: "a step of the SQLite store did not complete at once".to_owned(),
        })
    })
}

/// The local-data tables, read and written inside one transaction. Stamps are compared in
/// Rust with [`Stamp`]'s own order (in `local_data`), so last-write-wins matches every backend
/// exactly, whatever SQLite would make of the stored text and integers.
struct LocalRows<'a>(&'a Transaction<'a>);

impl LocalRows<'_> {
    fn pending(
        &self,
        sql: &str,
        bind: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<PendingWrite>, Failure> {
        let mut statement = self.0.prepare_cached(sql)?;
        let mut rows = statement.query(bind)?;
        let mut found = Vec::new();
        while let Some(row) = rows.next()? {
            let collection: String = column(row, 1, || "a pending write".to_owned())?;
            let key: String = column(row, 2, || "a pending write".to_owned())?;
            let whose =
                || format!("the pending write to record {key:?} of collection {collection:?}");
            let action: String = column(row, 0, whose)?;
            let action = parse_id(&action, whose)?;
            let prior_action: Option<String> = column(row, 7, whose)?;
            let prior = match prior_action {
                Some(prior_action) => Some(Record {
                    value: column(row, 5, whose)?,
                    stamp: Stamp {
                        timestamp: Timestamp(from_sql_u64(
                            column::<Option<i64>>(row, 6, whose)?.unwrap_or(0),
                        )),
                        action: parse_id(&prior_action, whose)?,
                    },
                }),
                None => None,
            };
            found.push(PendingWrite {
                action,
                value: column(row, 3, whose)?,
                stamp: Stamp {
                    timestamp: Timestamp(from_sql_u64(column(row, 4, whose)?)),
                    action,
                },
                prior,
                collection,
                key,
            });
        }
        Ok(found)
    }

    /// One record of `data` or `shadowed` (the same columns), read by `select`.
    fn read_record(
        &self,
        select: &str,
        collection: &str,
        key: &str,
    ) -> Result<Option<Record>, Failure> {
        let mut statement = self.0.prepare_cached(select)?;
        let mut rows = statement.query(params![collection, key])?;
        match rows.next()? {
            Some(row) => Ok(Some(decode_record(row, collection, key, 0)?)),
            None => Ok(None),
        }
    }

    /// Writes a record of `data` or `shadowed` with `upsert`, or removes it with `delete`.
    fn write_record(
        &self,
        upsert: &str,
        delete: &str,
        collection: &str,
        key: &str,
        record: Option<&Record>,
    ) -> Result<(), Failure> {
        match record {
            Some(record) => {
                self.0.prepare_cached(upsert)?.execute(params![
                    collection,
                    key,
                    record.value,
                    to_sql_u64(record.stamp.timestamp.0),
                    record.stamp.action.to_string()
                ])?;
            }
            None => {
                self.0
                    .prepare_cached(delete)?
                    .execute(params![collection, key])?;
            }
        }
        Ok(())
    }
}

/// The columns `LocalRows::pending` reads, in its order.
macro_rules! pending_columns {
    () => {
        "action, collection, key, value, timestamp, prior_value, prior_timestamp, prior_action"
    };
}

impl LocalData for LocalRows<'_> {
    type Fail = Failure;

    async fn record(&mut self, collection: &str, key: &str) -> Result<Option<Record>, Failure> {
        self.read_record(
            "SELECT value, timestamp, action FROM data WHERE collection = ?1 AND key = ?2",
            collection,
            key,
        )
    }

    async fn set_record(
        &mut self,
        collection: &str,
        key: &str,
        record: Option<&Record>,
    ) -> Result<(), Failure> {
        self.write_record(
            "INSERT INTO data (collection, key, value, timestamp, action) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (collection, key) DO UPDATE \
             SET value = excluded.value, timestamp = excluded.timestamp, action = excluded.action",
            "DELETE FROM data WHERE collection = ?1 AND key = ?2",
            collection,
            key,
            record,
        )
    }

    async fn pending_on(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Vec<PendingWrite>, Failure> {
        self.pending(
            concat!(
                "SELECT ",
                pending_columns!(),
                " FROM pending_writes WHERE collection = ?1 AND key = ?2"
            ),
            &[&collection, &key],
        )
    }

    async fn pending_of(&mut self, action: ActionId) -> Result<Vec<PendingWrite>, Failure> {
        self.pending(
            concat!(
                "SELECT ",
                pending_columns!(),
                " FROM pending_writes WHERE action = ?1 ORDER BY collection, key"
            ),
            &[&action.to_string()],
        )
    }

    async fn put_pending(&mut self, write: &PendingWrite) -> Result<(), Failure> {
        let prior = write.prior.as_ref();
        self.0
            .prepare_cached(concat!(
                "INSERT OR REPLACE INTO pending_writes (",
                pending_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                write.action.to_string(),
                write.collection,
                write.key,
                write.value,
                to_sql_u64(write.stamp.timestamp.0),
                prior.and_then(|p| p.value.as_deref()),
                prior.map(|p| to_sql_u64(p.stamp.timestamp.0)),
                prior.map(|p| p.stamp.action.to_string()),
            ])?;
        Ok(())
    }

    async fn delete_pending(
        &mut self,
        action: ActionId,
        collection: &str,
        key: &str,
    ) -> Result<(), Failure> {
        self.0
            .prepare_cached(
                "DELETE FROM pending_writes WHERE action = ?1 AND collection = ?2 AND key = ?3",
            )?
            .execute(params![action.to_string(), collection, key])?;
        Ok(())
    }

    async fn shadow(&mut self, collection: &str, key: &str) -> Result<Option<Record>, Failure> {
        self.read_record(
            "SELECT value, timestamp, action FROM shadowed WHERE collection = ?1 AND key = ?2",
            collection,
            key,
        )
    }

    async fn set_shadow(
        &mut self,
        collection: &str,
        key: &str,
        record: Option<&Record>,
    ) -> Result<(), Failure> {
        self.write_record(
            "INSERT OR REPLACE INTO shadowed (collection, key, value, timestamp, action) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            "DELETE FROM shadowed WHERE collection = ?1 AND key = ?2",
            collection,
            key,
            record,
        )
    }

    async fn put_dead_writes(&mut self, action: ActionId, writes: &[Write]) -> Result<(), Failure> {
        for write in writes {
            self.0
                .prepare_cached(
                    "INSERT OR REPLACE INTO dead_writes (action, collection, key, value, timestamp) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    action.to_string(),
                    write.collection,
                    write.key,
                    write.value,
                    to_sql_u64(write.stamp.timestamp.0)
                ])?;
        }
        Ok(())
    }

    async fn take_dead_writes(&mut self, action: ActionId) -> Result<Vec<Write>, Failure> {
        let id = action.to_string();
        let mut writes = Vec::new();
        {
            let mut statement = self.0.prepare_cached(
                "SELECT collection, key, value, timestamp FROM dead_writes WHERE action = ?1 ORDER BY collection, key",
            )?;
            let mut rows = statement.query(params![id])?;
            while let Some(row) = rows.next()? {
                let whose = || format!("a local write of the dead letter {action}");
                writes.push(Write {
                    collection: column(row, 0, whose)?,
                    key: column(row, 1, whose)?,
                    value: column(row, 2, whose)?,
                    stamp: Stamp {
                        timestamp: Timestamp(from_sql_u64(column(row, 3, whose)?)),
                        action,
                    },
                });
            }
        }
        self.0
            .prepare_cached("DELETE FROM dead_writes WHERE action = ?1")?
            .execute(params![id])?;
        Ok(writes)
    }
}

fn decode_record(
    row: &Row<'_>,
    collection: &str,
    key: &str,
    first: usize,
) -> Result<Record, Failure> {
    let whose = || format!("record {key:?} of collection {collection:?}");
    let value: Option<String> = column(row, first, whose)?;
    let timestamp: i64 = column(row, first + 1, whose)?;
    let action: String = column(row, first + 2, whose)?;
    Ok(Record {
        value,
        stamp: Stamp {
            timestamp: Timestamp(from_sql_u64(timestamp)),
            action: parse_id(&action, whose)?,
        },
    })
}

/// Decodes the `queued_columns!()` at the start of a row of `table`.
fn decode_queued(row: &Row<'_>, table: &str) -> Result<QueuedAction, Failure> {
    let seq: i64 = column(row, 0, || format!("a row of the {table} table"))?;
    let whose = || format!("the {table} row with seq {seq}");
    let id: String = column(row, 1, whose)?;
    let version: i64 = column(row, 3, whose)?;
    let kind: String = column(row, 4, whose)?;
    let retries: i64 = column(row, 7, whose)?;
    Ok(QueuedAction {
        seq: u64::try_from(seq)
            .map_err(|_| Failure::BadData(format!("{} has a negative seq", whose())))?,
        id: parse_id(&id, whose)?,
        name: column(row, 2, whose)?,
        version: u32::try_from(version).map_err(|_| {
            Failure::BadData(format!(
                "{} has version {version}, outside 0..=u32::MAX",
                whose()
            ))
        })?,
        kind: match kind.as_str() {
            "query" => ActionKind::Query,
            "mutation" => ActionKind::Mutation,
            _ => {
                return Err(Failure::BadData(format!(
                    "{} has unknown kind {kind:?}",
                    whose()
                )))
            }
        },
        params: column(row, 5, whose)?,
        timestamp: Timestamp(from_sql_u64(column(row, 6, whose)?)),
        retries: u32::try_from(retries).map_err(|_| {
            Failure::BadData(format!(
                "{} has retries {retries}, outside 0..=u32::MAX",
                whose()
            ))
        })?,
        next_attempt_at: Timestamp(from_sql_u64(column(row, 8, whose)?)),
        last_error: column(row, 9, whose)?,
        queued_at: Timestamp(from_sql_u64(column(row, 10, whose)?)),
        scope: column(row, 11, whose)?,
    })
}

fn decode_dead(row: &Row<'_>) -> Result<DeadLetter, Failure> {
    let action = decode_queued(row, "dead-letter")?;
    let whose = || format!("the dead letter {}", action.id);
    let reason: String = column(row, 12, whose)?;
    let Some(reason) = DeadReason::parse(&reason) else {
        return Err(Failure::BadData(format!(
            "{} has unknown reason {reason:?}",
            whose()
        )));
    };
    let message = column(row, 13, whose)?;
    let failed_at = Timestamp(from_sql_u64(column(row, 14, whose)?));
    Ok(DeadLetter {
        action,
        reason,
        message,
        failed_at,
    })
}

/// Reads a column, naming the row if its stored type is not the expected one (SQLite lets any
/// column hold any type, so a hand-edited file can hold anything).
fn column<T: FromSql>(
    row: &Row<'_>,
    index: usize,
    whose: impl Fn() -> String,
) -> Result<T, Failure> {
    row.get(index).map_err(|e| match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => Failure::BadData(format!("{}: {e}", whose())),
        other => Failure::Sql(other),
    })
}

fn parse_id(text: &str, whose: impl Fn() -> String) -> Result<ActionId, Failure> {
    text.parse().map_err(|e| {
        Failure::BadData(format!(
            "{} has action id {text:?}, which is not a uuid ({e})",
            whose()
        ))
    })
}

const fn kind_name(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Query => "query",
        ActionKind::Mutation => "mutation",
    }
}

/// Stores a `u64` in SQLite's signed INTEGER bit for bit, so values above `i64::MAX` (a
/// saturated timestamp) survive; only Rust ever compares them.
const fn to_sql_u64(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// The inverse of [`to_sql_u64`].
const fn from_sql_u64(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

/// What went wrong inside, before it is given the store's location and the operation.
#[derive(Debug)]
enum Failure {
    Sql(rusqlite::Error),
    Store(StoreError),
    /// A stored value this build cannot read.
    BadData(String),
    /// The file as a whole is not a store this build can use.
    Incompatible(String),
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Failure::Sql(error)
    }
}

impl Failure {
    fn into_store_error(self, operation: &'static str, location: &str) -> StoreError {
        match self {
            Failure::Sql(error) => to_store_error(operation, location, error),
            Failure::Store(error) => error,
            Failure::BadData(reason) => StoreError::Incompatible {
                location: location.to_owned(),
                reason: format!("{reason} (while trying to {operation})"),
            },
            Failure::Incompatible(reason) => StoreError::Incompatible {
                location: location.to_owned(),
                reason,
            },
        }
    }
}

/// Sorts SQLite's errors into what a caller can act on: a full disk and a damaged or foreign
/// file are not worth retrying; anything else may be.
fn to_store_error(operation: &'static str, location: &str, error: rusqlite::Error) -> StoreError {
    let incompatible = |reason: String| StoreError::Incompatible {
        location: location.to_owned(),
        reason,
    };
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full {
            message: format!("{location}: {error}"),
        },
        Some(ErrorCode::NotADatabase) => {
            incompatible(format!("it is not a SQLite database ({error})"))
        }
        Some(ErrorCode::DatabaseCorrupt) => incompatible(format!(
            "the file is damaged ({error}); restore it or delete it to start empty"
        )),
        Some(ErrorCode::ReadOnly) => StoreError::Backend {
            operation,
            message: format!("{location} is read-only ({error})"),
        },
        _ => StoreError::Backend {
            operation,
            message: format!("{location}: {error}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(connection: &Connection, sql: &str) -> String {
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap_or_else(|e| panic!("cannot explain {sql}: {e}"));
        let details = statement
            .query_map([], |row| row.get::<_, String>(3))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .unwrap_or_else(|e| panic!("cannot explain {sql}: {e}"));
        details.join("; ")
    }

    /// The queue, the dedupe and the record lookups must never scan a table: a long offline
    /// session can queue thousands of actions.
    #[test]
    fn hot_queries_use_an_index() {
        let store = SqliteStore::in_memory().unwrap_or_else(|e| panic!("{e}"));
        let locked = store.lock();
        let connection = &locked.connection;
        let cases = [
            (
                concat!(
                    "SELECT ",
                    queued_columns!(),
                    " FROM queue WHERE id > 'x' ORDER BY id LIMIT 10"
                )
                .to_owned(),
                "INDEX sqlite_autoindex_queue",
            ),
            (
                "SELECT id FROM queue WHERE kind = 'query' AND name = 'a' AND params = 'b'"
                    .to_owned(),
                "INDEX queue_query_dedupe",
            ),
            (
                "SELECT 1 FROM queue WHERE id = 'x'".to_owned(),
                "INDEX sqlite_autoindex_queue",
            ),
            (
                "SELECT 1 FROM dead WHERE id = 'x'".to_owned(),
                "INDEX dead_by_id",
            ),
            (
                concat!(
                    "SELECT ",
                    queued_columns!(),
                    " FROM queue WHERE scope = 'a' AND id > 'x' ORDER BY id LIMIT 1"
                )
                .to_owned(),
                "INDEX queue_by_scope",
            ),
            (
                "SELECT value FROM data WHERE collection = 'a' AND key = 'b'".to_owned(),
                "INDEX sqlite_autoindex_data",
            ),
            (
                "SELECT key FROM data WHERE collection = 'a' ORDER BY key".to_owned(),
                "INDEX sqlite_autoindex_data",
            ),
            (
                concat!(
                    "SELECT ",
                    pending_columns!(),
                    " FROM pending_writes WHERE collection = 'a' AND key = 'b'"
                )
                .to_owned(),
                "INDEX pending_writes_by_record",
            ),
            (
                concat!(
                    "SELECT ",
                    pending_columns!(),
                    " FROM pending_writes WHERE action = 'x' ORDER BY collection, key"
                )
                .to_owned(),
                "PRIMARY KEY",
            ),
            (
                "SELECT value FROM shadowed WHERE collection = 'a' AND key = 'b'".to_owned(),
                "PRIMARY KEY",
            ),
            (
                "SELECT collection, key FROM dead_writes WHERE action = 'x' ORDER BY collection, key"
                    .to_owned(),
                "PRIMARY KEY",
            ),
        ];
        for (sql, expected) in cases {
            let plan = plan(connection, &sql);
            assert!(
                plan.contains(expected),
                "{sql}\nplan: {plan}\nexpected: {expected}"
            );
            assert!(
                plan.starts_with("SEARCH") && !plan.contains("TEMP B-TREE"),
                "{sql} scans or sorts: {plan}"
            );
        }
        // The walk over the scopes scans only its own few rows.
        let heads = plan(connection, SCOPE_HEADS);
        assert!(
            heads.contains("queue_by_scope") && !heads.contains("SCAN queue"),
            "{SCOPE_HEADS}\nplan: {heads}"
        );
        // The next queue number and the trigger that keeps the floor: index searches (the
        // max of the rowid is its last entry), never a walk over the queue.
        for sql in [
            concat!("SELECT ", next_seq!()),
            "SELECT 1 FROM queue WHERE seq > 5",
        ] {
            let found = plan(connection, sql);
            assert!(
                !found.contains("SCAN queue") && !found.contains("SCAN meta"),
                "{sql} scans: {found}"
            );
        }
    }

    /// Every way of naming the file names one lock beside it; a store in memory has none.
    #[test]
    fn file_stores_share_a_replay_lock_beside_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let real = dir.path().join("queue.sqlite3");
        let store = SqliteStore::open(&real).unwrap_or_else(|e| panic!("{e}"));
        let expected = std::fs::canonicalize(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .join("queue.sqlite3.replay.lock");
        let lock = store.file_replay_lock().map(FileReplayLock::path);
        assert_eq!(lock, Some(expected.as_path()));
        assert!(Store::replay_lock(&store).is_some());
        #[cfg(unix)]
        {
            let link = dir.path().join("link.sqlite3");
            std::os::unix::fs::symlink(&real, &link).unwrap_or_else(|e| panic!("{e}"));
            let through_link = SqliteStore::open(&link).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                through_link.file_replay_lock().map(FileReplayLock::path),
                Some(expected.as_path())
            );
        }
        let memory = SqliteStore::in_memory().unwrap_or_else(|e| panic!("{e}"));
        assert!(memory.file_replay_lock().is_none());
        assert!(Store::replay_lock(&memory).is_none());
    }

    #[test]
    fn large_u64_round_trips() {
        for value in [0, 1, i64::MAX as u64, 1 << 63, u64::MAX] {
            assert_eq!(from_sql_u64(to_sql_u64(value)), value);
        }
    }
}
