//! The browser's durable store: IndexedDB through `rexie` (wasm32 only).
//!
//! Seven object stores live in one database:
//!
//! | object store     | key                         | indexes                                     |
//! | ---------------- | --------------------------- | ------------------------------------------- |
//! | `queue`          | `seq`, generated            | `by_id` (`id`, unique), `by_query` (`[kind, name, params]`), `by_scope` (`[scope, id]`) |
//! | `dead_letters`   | `dead_seq`                  | `by_id` (`action.id`)                       |
//! | `records`        | `[collection, key]`         |                                             |
//! | `meta`           | out of line: a name         |                                             |
//! | `pending_writes` | `[action, collection, key]` | `by_action` (`action`), `by_record` (`[collection, key]`) |
//! | `shadowed`       | `[collection, key]`         |                                             |
//! | `dead_writes`    | `[action, collection, key]` | `by_action` (`action`)                      |
//!
//! Schema version 2 added the queue's `by_scope` index (ordering scopes) and the last three
//! stores, which keep local data true while actions wait: what each queued action wrote and
//! what the record held before, the newest server value of a record queued actions wrote, and
//! what each dead letter's action wrote (see the
//! [store module docs](super#local-data-that-stays-true)).
//!
//! Schema version 3 made the queue number its calls with a key generator (which never reuses
//! a number) instead of a counter in `meta`, so that queueing a mutation is one round of
//! IndexedDB requests: its upgrade recreates the queue and copies the calls over, numbers
//! and all, in the version-change transaction. Until that commits the queue is held twice, so
//! an origin at its storage quota fails to open with [`StoreError::Full`] (nothing is lost:
//! the database keeps version 2 until there is room, and asking for persistent storage with
//! `navigator.storage.persist()` raises the quota in most browsers).
//!
//! `meta` holds the last dead-letter number handed out (so none is ever reused), the schema
//! version and the server's clock offset. Every [`Store::apply`] commits one readwrite
//! transaction: it validates first, aborts on any error so nothing is half-written, and
//! awaits nothing but IndexedDB requests while the transaction is open, because IndexedDB
//! commits a transaction as soon as control returns to the event loop with no request
//! pending. (Queueing a mutation whose id is already queued aborts a first transaction and
//! applies the batch again in a second, which looks the id up.)

use super::local_data::{self, LocalData, PendingWrite};
use super::{
    Applied, Batch, Bury, Counts, DeadLetter, DeadReason, NewQueued, QueuedAction, Record,
    Reschedule, Stamp, Store, Write,
};
use crate::{boxed, ActionId, ActionKind, BoxFuture, StoreError, Timestamp};
use core::fmt;
use futures_util::future::{join, FutureExt, Shared};
use js_sys::{Array, Object, Reflect};
use rexie::{KeyRange, Rexie, Transaction, TransactionMode, TransactionResult};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};

/// The IndexedDB schema version this build creates and reads. A database created by a newer
/// build fails to open with [`StoreError::Incompatible`] rather than being misread.
const SCHEMA_VERSION: u32 = 3;

const QUEUE: &str = "queue";
const DEAD: &str = "dead_letters";
const RECORDS: &str = "records";
const META: &str = "meta";
const PENDING: &str = "pending_writes";
const SHADOWED: &str = "shadowed";
const DEAD_WRITES: &str = "dead_writes";
const BY_ACTION: &str = "by_action";
const BY_RECORD: &str = "by_record";
/// The `meta` key of the server's clock offset (see [`Store::clock_offset`]).
const CLOCK_OFFSET: &str = "clock_offset";
const BY_ID: &str = "by_id";
const BY_QUERY: &str = "by_query";
const BY_SCOPE: &str = "by_scope";
/// The `meta` key of the counter that numbered queued calls before schema version 3.
const LAST_SEQ: &str = "last_seq";
const LAST_DEAD_SEQ: &str = "last_dead_seq";
const SCHEMA: &str = "schema_version";

/// The largest integer a JavaScript number holds exactly (2^53 - 1).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A durable [`Store`] in the browser's IndexedDB (wasm32 only).
///
/// Clones share one connection, which closes when the last clone is dropped. Several tabs may
/// open the same database: IndexedDB serializes their transactions, and the service's
/// [`ReplayLock`](crate::ReplayLock) keeps replay to one tab at a time.
///
/// ```no_run
/// use sync_runtime::{store::IndexedDbStore, SyncService};
///
/// # async fn start() -> Result<(), sync_runtime::SyncError> {
/// let store = IndexedDbStore::open("my-app").await?;
/// SyncService::builder().store(store).install()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct IndexedDbStore {
    inner: Rc<Inner>,
}

struct Inner {
    name: String,
    connection: RefCell<Connection>,
}

/// The state of the one connection clones share.
enum Connection {
    /// Not opened yet, or the last attempt failed (the next call tries again).
    Closed,
    /// Opening: every caller waits for the same attempt.
    Opening(Shared<BoxFuture<'static, Result<Rc<Database>, OpenError>>>),
    Open(Rc<Database>),
}

/// An open database; closes the connection when dropped, so that another connection can
/// upgrade or delete the database without being blocked by a forgotten one.
struct Database(Option<Rexie>);

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(db) = self.0.take() {
            db.close();
        }
    }
}

/// Why opening failed; `Clone` so that every caller waiting on one attempt gets the answer.
#[derive(Clone, Debug)]
enum OpenError {
    Incompatible(String),
    Full(String),
    Backend(String),
}

impl fmt::Debug for IndexedDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.inner.connection.borrow() {
            Connection::Closed => "closed",
            Connection::Opening(_) => "opening",
            Connection::Open(_) => "open",
        };
        f.debug_struct("IndexedDbStore")
            .field("name", &self.inner.name)
            .field("connection", &state)
            .finish()
    }
}

impl IndexedDbStore {
    /// A store over the database `name`, opened on first use.
    ///
    /// For code that cannot wait, such as the default service behind
    /// [`SyncService::current`](crate::SyncService::current). If opening fails, every call
    /// returns the error (and the next call tries again); nothing panics.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            inner: Rc::new(Inner {
                name: name.into(),
                connection: RefCell::new(Connection::Closed),
            }),
        }
    }

    /// Opens (creating or upgrading) the database `name` now, so that a failure shows here.
    ///
    /// Fails with [`StoreError::Incompatible`] if a newer build created the database, and
    /// with [`StoreError::Backend`] if IndexedDB is unavailable (for example in some private
    /// browsing modes).
    pub async fn open(name: impl Into<String>) -> Result<Self, StoreError> {
        let store = Self::new(name);
        store.database().await?;
        Ok(store)
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Deletes the database `name` and everything in it. Waits until every connection to it
    /// is closed, in this tab and others: drop every [`IndexedDbStore`] on it first.
    pub async fn delete_database(name: &str) -> Result<(), StoreError> {
        Rexie::delete(name)
            .await
            .map_err(|e| idb_error("delete the database", &e))
    }

    /// The shared connection, opening it if needed.
    async fn database(&self) -> Result<Rc<Database>, StoreError> {
        let opening = {
            let mut connection = self.inner.connection.borrow_mut();
            match &*connection {
                Connection::Open(db) => return Ok(Rc::clone(db)),
                Connection::Opening(opening) => opening.clone(),
                Connection::Closed => {
                    let opening = boxed(open_database(self.inner.name.clone())).shared();
                    *connection = Connection::Opening(opening.clone());
                    opening
                }
            }
        };
        let result = opening.await;
        let mut connection = self.inner.connection.borrow_mut();
        // Only the first waiter to finish moves the state on; later ones see it moved.
        if matches!(&*connection, Connection::Opening(_)) {
            *connection = match &result {
                Ok(db) => Connection::Open(Rc::clone(db)),
                Err(_) => Connection::Closed,
            };
        }
        result.map_err(|e| match e {
            OpenError::Incompatible(reason) => StoreError::Incompatible {
                location: self.location(),
                reason,
            },
            OpenError::Full(message) => StoreError::Full { message },
            OpenError::Backend(message) => StoreError::Backend {
                operation: "open the IndexedDB database",
                message,
            },
        })
    }

    /// Starts a transaction over `stores`.
    async fn transaction(
        &self,
        stores: &[&str],
        mode: TransactionMode,
    ) -> Result<(Rc<Database>, Transaction), StoreError> {
        let db = self.database().await?;
        let Some(rexie) = db.0.as_ref() else {
            return Err(StoreError::Backend {
                operation: "start a transaction",
                message: "the database connection is closed".to_owned(),
            });
        };
        match rexie.transaction(stores, mode) {
            Ok(transaction) => Ok((db, transaction)),
            Err(e) => {
                // The browser closes a connection when another tab upgrades or deletes the
                // database; forget it so the next call opens a fresh one.
                if dom_exception_name(&e).as_deref() == Some("InvalidStateError") {
                    *self.inner.connection.borrow_mut() = Connection::Closed;
                }
                Err(idb_error("start a transaction", &e))
            }
        }
    }

    fn location(&self) -> String {
        format!("IndexedDB database `{}`", self.inner.name)
    }

    /// Wraps a decoding failure: the data was written by something this build cannot read.
    fn incompatible(&self, reason: String) -> StoreError {
        StoreError::Incompatible {
            location: self.location(),
            reason,
        }
    }

    async fn apply_batch(&self, batch: Batch) -> Result<Applied, StoreError> {
        if batch.is_empty() {
            return Ok(Applied::default());
        }
        // A mutation is added to the queue without looking its id up first, so that queueing
        // it is one round of requests. If the id is already queued, the unique index refuses
        // the add, which aborts the transaction (`rexie` cannot keep a failed request from
        // doing so): the whole batch is then applied again, looking the id up first.
        let again = batch
            .enqueue
            .as_ref()
            .is_some_and(|new| new.kind == ActionKind::Mutation)
            .then(|| batch.clone());
        let result = match (self.apply_once(batch, Lookup::Optimistic).await, again) {
            (Err(Fail::AlreadyQueued), Some(batch)) => self.apply_once(batch, Lookup::First).await,
            (result, _) => result,
        };
        result.map_err(|fail| fail.into_store_error(self))
    }

    /// Applies the batch in one readwrite transaction.
    async fn apply_once(&self, batch: Batch, lookup: Lookup) -> Result<Applied, Fail> {
        let stores = stores_touched(&batch);
        let (_db, transaction) = self
            .transaction(&stores, TransactionMode::ReadWrite)
            .await
            .map_err(Fail::Store)?;
        let result = match Tx::new(&transaction, &stores) {
            Ok(tx) => tx.apply(batch, lookup).await,
            Err(e) => Err(Fail::Idb("open the object stores", e)),
        };
        match result {
            Ok(applied) => match transaction.done().await {
                Ok(TransactionResult::Committed) => Ok(applied),
                Ok(TransactionResult::Aborted) => Err(Fail::Store(unexplained_abort().await)),
                Err(e) => Err(Fail::Idb("commit", e)),
            },
            Err(fail) => {
                // Nothing was written yet if validation failed, and a failed request has
                // already aborted the transaction; abort anyway so no partial batch can
                // commit. An error here means it was already aborted.
                let _ = transaction.abort().await;
                Err(fail)
            }
        }
    }

    async fn read<T>(
        &self,
        stores: &[&str],
        read: impl AsyncFnOnce(Tx) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        let (_db, transaction) = self.transaction(stores, TransactionMode::ReadOnly).await?;
        let tx =
            Tx::new(&transaction, stores).map_err(|e| idb_error("open the object stores", &e))?;
        read(tx).await.map_err(|fail| fail.into_store_error(self))
    }
}

/// Opens the database, creating or upgrading its object stores, and records the schema.
///
/// `rexie`'s builder can only add the object stores and indexes that are missing, and it
/// deletes every object store it is not told about. Schema version 3 recreates the queue with
/// a key generator and copies its calls over, which only code of our own in the
/// `upgradeneeded` event can do: [`schema::create_or_upgrade`] opens the database first, at
/// this build's version, and `rexie` then opens it at the version it has, which upgrades
/// nothing.
async fn open_database(name: String) -> Result<Rc<Database>, OpenError> {
    let open_error = |e: rexie::Error| match dom_exception_name(&e).as_deref() {
        Some("VersionError") => OpenError::Incompatible(format!(
            "it was created by a newer version of sync-runtime (this build reads schema \
             version {SCHEMA_VERSION})"
        )),
        Some("QuotaExceededError") => OpenError::Full(quota_message(&e)),
        _ => OpenError::Backend(describe(&e)),
    };
    schema::create_or_upgrade(&name)
        .await
        .map_err(|e| open_error(e.into()))?;
    let rexie = Rexie::builder(&name).build().await.map_err(open_error)?;
    let db = Rc::new(Database(Some(rexie)));
    // Another tab may have deleted (or a newer build upgraded) the database between the two
    // opens; the next call tries again.
    match db.0.as_ref().map(Rexie::version) {
        Some(Ok(version)) if version == SCHEMA_VERSION => {}
        _ => {
            return Err(OpenError::Backend(
                "the database was deleted or upgraded while it was being opened".to_owned(),
            ))
        }
    }
    record_schema(&db).await?;
    Ok(db)
}

/// Writes the schema version into `meta` on first open (and after an upgrade), and checks it
/// on later ones. The upgrades of the records themselves that need no version change run
/// here, in the same transaction.
async fn record_schema(db: &Database) -> Result<(), OpenError> {
    let backend = |e: rexie::Error| OpenError::Backend(describe(&e));
    let Some(rexie) = db.0.as_ref() else {
        return Err(OpenError::Backend(
            "the database connection is closed".to_owned(),
        ));
    };
    let transaction = rexie
        .transaction(&[QUEUE, META], TransactionMode::ReadWrite)
        .map_err(backend)?;
    let meta = transaction.store(META).map_err(backend)?;
    let stored = meta.get(JsValue::from_str(SCHEMA)).await.map_err(backend)?;
    match stored.and_then(|v| v.as_f64()) {
        Some(version) if version > f64::from(SCHEMA_VERSION) => {
            let _ = transaction.abort().await;
            return Err(OpenError::Incompatible(format!(
                "it holds schema version {version}, newer than this build's {SCHEMA_VERSION}"
            )));
        }
        Some(version) if version >= f64::from(SCHEMA_VERSION) => {}
        Some(version) => {
            let queue = transaction.store(QUEUE).map_err(backend)?;
            if version < 2.0 {
                upgrade_to_v2::queued_rows(&queue).await.map_err(backend)?;
            }
            upgrade_to_v3::continue_numbering(&queue, &meta)
                .await
                .map_err(backend)?;
            meta.put(
                &JsValue::from(SCHEMA_VERSION),
                Some(&JsValue::from_str(SCHEMA)),
            )
            .await
            .map_err(backend)?;
        }
        None => {
            meta.put(
                &JsValue::from(SCHEMA_VERSION),
                Some(&JsValue::from_str(SCHEMA)),
            )
            .await
            .map_err(backend)?;
        }
    }
    match transaction.done().await {
        Ok(TransactionResult::Committed) => Ok(()),
        Ok(TransactionResult::Aborted) => Err(OpenError::Backend(
            "the browser aborted the transaction that records the schema version".to_owned(),
        )),
        Err(e) => Err(backend(e)),
    }
}

/// The object stores of this schema version, and the version change that creates them or
/// upgrades an older database to them.
mod schema {
    use super::{
        BY_ACTION, BY_ID, BY_QUERY, BY_RECORD, BY_SCOPE, DEAD, DEAD_WRITES, META, PENDING, QUEUE,
        RECORDS, SCHEMA_VERSION, SHADOWED,
    };
    use idb::{
        Event as _, Factory, IndexParams, KeyPath, ObjectStoreParams, Request as _, StoreEvent as _,
    };
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Where the queue of versions 1 and 2 waits while its calls are copied into the new one.
    const OLD_QUEUE: &str = "queue_before_v3";

    /// A key path: one property, or several (the key is then an array).
    #[derive(Clone, Copy)]
    enum Path {
        One(&'static str),
        Many(&'static [&'static str]),
    }

    impl Path {
        fn key_path(self) -> KeyPath {
            match self {
                Path::One(path) => KeyPath::new_single(path),
                Path::Many(paths) => KeyPath::new_array(paths.iter().copied()),
            }
        }
    }

    struct Index {
        name: &'static str,
        path: Path,
        unique: bool,
    }

    /// An object store: its key path (`None`: keys are given apart from the values), whether
    /// it numbers its records itself, and its indexes.
    struct Layout {
        name: &'static str,
        key: Option<Path>,
        auto_increment: bool,
        indexes: &'static [Index],
    }

    const RECORD_KEY: Path = Path::Many(&["collection", "key"]);
    const WRITE_KEY: Path = Path::Many(&["action", "collection", "key"]);

    /// Every object store of schema version 3 (see the table in the module docs).
    const LAYOUT: [Layout; 7] = [
        Layout {
            name: QUEUE,
            key: Some(Path::One("seq")),
            // Version 3: IndexedDB numbers the calls, so queueing one needs no counter to be
            // read and written first; a key generator never reuses a number.
            auto_increment: true,
            indexes: &[
                Index {
                    name: BY_ID,
                    path: Path::One("id"),
                    unique: true,
                },
                Index {
                    name: BY_QUERY,
                    path: Path::Many(&["kind", "name", "params"]),
                    unique: false,
                },
                // Version 2: ordering scopes.
                Index {
                    name: BY_SCOPE,
                    path: Path::Many(&["scope", "id"]),
                    unique: false,
                },
            ],
        },
        Layout {
            name: DEAD,
            key: Some(Path::One("dead_seq")),
            auto_increment: false,
            indexes: &[Index {
                name: BY_ID,
                path: Path::One("action.id"),
                unique: false,
            }],
        },
        Layout {
            name: RECORDS,
            key: Some(RECORD_KEY),
            auto_increment: false,
            indexes: &[],
        },
        Layout {
            name: META,
            key: None,
            auto_increment: false,
            indexes: &[],
        },
        // Version 2: local data that stays true.
        Layout {
            name: PENDING,
            key: Some(WRITE_KEY),
            auto_increment: false,
            indexes: &[
                Index {
                    name: BY_ACTION,
                    path: Path::One("action"),
                    unique: false,
                },
                Index {
                    name: BY_RECORD,
                    path: RECORD_KEY,
                    unique: false,
                },
            ],
        },
        Layout {
            name: SHADOWED,
            key: Some(RECORD_KEY),
            auto_increment: false,
            indexes: &[],
        },
        Layout {
            name: DEAD_WRITES,
            key: Some(WRITE_KEY),
            auto_increment: false,
            indexes: &[Index {
                name: BY_ACTION,
                path: Path::One("action"),
                unique: false,
            }],
        },
    ];

    /// What failed inside the version change, which the open request only reports as aborted.
    type Failure = Rc<RefCell<Option<idb::Error>>>;

    /// Opens the database `name` at [`SCHEMA_VERSION`], creating the object stores and indexes
    /// that are missing and recreating a queue of version 1 or 2, then closes it. Fails with
    /// `VersionError` if the database has a newer version.
    pub(super) async fn create_or_upgrade(name: &str) -> Result<(), idb::Error> {
        let failure = Failure::default();
        let mut request = Factory::new()?.open(name, Some(SCHEMA_VERSION))?;
        let failed = Rc::clone(&failure);
        request.on_upgrade_needed(move |event| {
            if let Err(e) = version_change(&event, &failed) {
                *failed.borrow_mut() = Some(e);
                // Nothing of a half-done upgrade stays: the database keeps its old version.
                if let Some(transaction) = event.target().ok().and_then(|r| r.transaction()) {
                    let _ = transaction.abort();
                }
            }
        });
        let opened = request.await;
        // Closed on every path: an open connection would block later upgrades and deletes.
        if let Ok(database) = &opened {
            database.close();
        }
        if let Some(e) = failure.borrow_mut().take() {
            return Err(e);
        }
        opened.map(drop)
    }

    fn version_change(
        event: &idb::event::VersionChangeEvent,
        failure: &Failure,
    ) -> Result<(), idb::Error> {
        let request = event.target()?;
        let database = request.database()?;
        let transaction = request
            .transaction()
            .ok_or(idb::Error::TransactionNotFound)?;
        watch_for_abort(&request, failure)?;
        let has = |name: &str| database.store_names().iter().any(|n| n == name);
        // Versions 1 and 2 numbered the calls with a counter in `meta`: their queue has no key
        // generator, and a key generator is only given when an object store is created. The
        // old queue is set aside under another name while the new one is created.
        let mut old_queue = None;
        if has(QUEUE) {
            let queue = transaction.object_store(QUEUE)?;
            if !queue.auto_increment() {
                queue.set_name(OLD_QUEUE);
                old_queue = Some(queue);
            }
        }
        for layout in &LAYOUT {
            let store = if has(layout.name) {
                transaction.object_store(layout.name)?
            } else {
                let mut params = ObjectStoreParams::new();
                params
                    .auto_increment(layout.auto_increment)
                    .key_path(layout.key.map(Path::key_path));
                database.create_object_store(layout.name, params)?
            };
            let indexes = store.index_names();
            for index in layout.indexes {
                if !indexes.iter().any(|n| n == index.name) {
                    let mut params = IndexParams::new();
                    params.unique(index.unique);
                    store.create_index(index.name, index.path.key_path(), Some(params))?;
                }
            }
        }
        if let Some(old_queue) = old_queue {
            copy_queue(&old_queue, transaction.object_store(QUEUE)?, failure)?;
        }
        Ok(())
    }

    /// Records why the version change aborted, unless a failure is already recorded: a request
    /// that fails (for the quota, say) aborts it, and the open request then only says
    /// `AbortError`, while the transaction says why.
    fn watch_for_abort(
        request: &idb::request::OpenDatabaseRequest,
        failure: &Failure,
    ) -> Result<(), idb::Error> {
        let mut transaction = request
            .transaction()
            .ok_or(idb::Error::TransactionNotFound)?;
        let failed = Rc::clone(failure);
        transaction.on_abort(move |event| {
            let mut failed = failed.borrow_mut();
            if failed.is_none() {
                *failed = event
                    .target()
                    .and_then(|target| idb::Transaction::try_from(target).ok())
                    .and_then(|transaction| transaction.error())
                    .map(idb::Error::DomException);
            }
        });
        // The callback must outlive this function: it runs when the version change ends.
        transaction.forget_callbacks();
        Ok(())
    }

    /// Copies every call of the old queue into the new one under its number (which moves the
    /// new key generator past it), then deletes the old queue; all inside the version change.
    fn copy_queue(
        old_queue: &idb::ObjectStore,
        queue: idb::ObjectStore,
        failure: &Failure,
    ) -> Result<(), idb::Error> {
        let mut read = old_queue.get_all(None, None)?;
        let failed = Rc::clone(failure);
        read.on_success(move |event| {
            let copied = (|| -> Result<(), idb::Error> {
                for value in event.result()? {
                    queue.put(&value, None)?;
                }
                let transaction = event
                    .target()?
                    .transaction()
                    .ok_or(idb::Error::TransactionNotFound)?;
                transaction.database().delete_object_store(OLD_QUEUE)
            })();
            if let Err(e) = copied {
                *failed.borrow_mut() = Some(e);
                if let Some(transaction) = event.target().ok().and_then(|r| r.transaction()) {
                    let _ = transaction.abort();
                }
            }
        });
        // The callback must outlive this function: it runs when the read completes. (A failed
        // read aborts the version change by itself.)
        read.forget_callbacks();
        Ok(())
    }
}

/// Version 2: ordering scopes and local data that stays true.
///
/// Queued calls carry their `scope` (`""` is the global scope), and the queue gets the index
/// `by_scope` on `[scope, id]`, from which replay reads each scope's calls in order. Calls
/// queued by version 1 get the global scope: an index leaves out records that lack its key.
mod upgrade_to_v2 {
    use js_sys::Reflect;
    use wasm_bindgen::JsValue;

    /// Puts every queued call of version 1 in the global scope. Awaits only IndexedDB
    /// requests, inside the transaction that records the new schema version.
    pub(super) async fn queued_rows(queue: &rexie::Store) -> rexie::Result<()> {
        let scope = JsValue::from_str("scope");
        for value in queue.get_all(None, None).await? {
            let has_scope = Reflect::get(&value, &scope).is_ok_and(|found| found.is_string());
            if !has_scope && Reflect::set(&value, &scope, &JsValue::from_str("")).unwrap_or(false) {
                queue.put(&value, None).await?;
            }
        }
        Ok(())
    }
}

/// Version 3: the queue numbers its calls with a key generator (see [`schema`]), instead of
/// the counter `last_seq` in `meta`.
mod upgrade_to_v3 {
    use super::{decode_u64, LAST_SEQ, MAX_SAFE_INTEGER};
    use js_sys::{Object, Reflect};
    use wasm_bindgen::JsValue;

    /// Makes the key generator go on after the last number the old counter handed out, which
    /// may belong to a call no longer queued (completed, or buried: its dead letter keeps it),
    /// then drops the counter. Awaits only IndexedDB requests, inside the transaction that
    /// records the new schema version.
    pub(super) async fn continue_numbering(
        queue: &rexie::Store,
        meta: &rexie::Store,
    ) -> rexie::Result<()> {
        let counter = JsValue::from_str(LAST_SEQ);
        let last = meta
            .get(counter.clone())
            .await?
            .and_then(|value| decode_u64(&value, LAST_SEQ).ok())
            .filter(|&last| last > 0 && last <= MAX_SAFE_INTEGER);
        if let Some(last) = last {
            // Exact: at most 2^53 - 1.
            let key = JsValue::from_f64(last as f64);
            // A key generator moves past every number used as a key in its store, so writing
            // a placeholder under the last number (unless a call still holds it) and deleting
            // it is enough. The placeholder lacks the indexed fields, so no index sees it.
            if !queue.key_exists(key.clone()).await? {
                let placeholder = Object::new();
                Reflect::set(&placeholder, &JsValue::from_str("seq"), &key).map_err(|e| {
                    rexie::Error::IdbError(idb::Error::UnexpectedJsType("an object", e))
                })?;
                queue.put(&placeholder.into(), None).await?;
                queue.delete(key).await?;
            }
        }
        meta.delete(counter).await
    }
}

/// The object stores a batch reads or writes; a transaction must name them up front.
fn stores_touched(batch: &Batch) -> Vec<&'static str> {
    let mut stores = Vec::with_capacity(7);
    // Writes, and every change that moves an action in or out of the queue or the dead
    // letters, may read or change local data; queueing a mutation moves none out (only a
    // query replaces a queued one), so without writes it touches the queue alone.
    if !batch.writes.is_empty()
        || batch
            .enqueue
            .as_ref()
            .is_some_and(|new| new.kind == ActionKind::Query)
        || batch.complete.is_some()
        || batch.bury.is_some()
        || batch.revive.is_some()
        || batch.discard.is_some()
    {
        stores.extend([RECORDS, PENDING, SHADOWED, DEAD_WRITES]);
    }
    if batch.enqueue.is_some()
        || batch.complete.is_some()
        || batch.reschedule.is_some()
        || batch.bury.is_some()
        || batch.revive.is_some()
    {
        stores.push(QUEUE);
    }
    if batch.bury.is_some() || batch.revive.is_some() || batch.discard.is_some() {
        stores.push(DEAD);
    }
    // The counter that numbers the dead letters.
    if batch.bury.is_some() {
        stores.push(META);
    }
    stores
}

/// Why an operation inside a transaction failed, before the database name is attached.
enum Fail {
    Store(StoreError),
    Idb(&'static str, rexie::Error),
    Decode(String),
    /// The unique index refused a call added without looking its id up first: the
    /// transaction is aborted, and the batch is applied again with [`Lookup::First`].
    AlreadyQueued,
}

/// Whether queueing a mutation looks its id up before adding it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// Add it at once: one round of requests, and an aborted transaction if the id is
    /// already queued.
    Optimistic,
    /// Look it up first: enqueueing an id already queued keeps the first.
    First,
}

impl Fail {
    fn into_store_error(self, store: &IndexedDbStore) -> StoreError {
        match self {
            Fail::Store(e) => e,
            Fail::Idb(operation, e) => idb_error(operation, &e),
            Fail::Decode(reason) => store.incompatible(reason),
            // `apply_batch` applies the batch again instead; reported only if that is broken.
            Fail::AlreadyQueued => StoreError::Backend {
                operation: "queue an action",
                message: "its id is already queued".to_owned(),
            },
        }
    }
}

/// The object stores of one transaction, with the operations `apply` and the reads need.
/// Every method awaits IndexedDB requests only.
struct Tx {
    queue: Option<rexie::Store>,
    dead: Option<rexie::Store>,
    records: Option<rexie::Store>,
    meta: Option<rexie::Store>,
    pending: Option<rexie::Store>,
    shadowed: Option<rexie::Store>,
    dead_writes: Option<rexie::Store>,
}

/// Runs an IndexedDB request, naming the operation if it fails.
async fn req<T>(
    operation: &'static str,
    request: impl core::future::Future<Output = rexie::Result<T>>,
) -> Result<T, Fail> {
    request.await.map_err(|e| Fail::Idb(operation, e))
}

impl Tx {
    fn new(transaction: &Transaction, stores: &[&str]) -> rexie::Result<Self> {
        let open = |name: &str| -> rexie::Result<Option<rexie::Store>> {
            if stores.contains(&name) {
                transaction.store(name).map(Some)
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            queue: open(QUEUE)?,
            dead: open(DEAD)?,
            records: open(RECORDS)?,
            meta: open(META)?,
            pending: open(PENDING)?,
            shadowed: open(SHADOWED)?,
            dead_writes: open(DEAD_WRITES)?,
        })
    }

    fn store<'a>(
        slot: &'a Option<rexie::Store>,
        name: &'static str,
    ) -> Result<&'a rexie::Store, Fail> {
        slot.as_ref().ok_or_else(|| {
            Fail::Store(StoreError::Backend {
                operation: "use an object store",
                message: format!("`{name}` is not part of this transaction"),
            })
        })
    }

    fn queue(&self) -> Result<&rexie::Store, Fail> {
        Self::store(&self.queue, QUEUE)
    }

    fn dead(&self) -> Result<&rexie::Store, Fail> {
        Self::store(&self.dead, DEAD)
    }

    fn records(&self) -> Result<&rexie::Store, Fail> {
        Self::store(&self.records, RECORDS)
    }

    fn meta(&self) -> Result<&rexie::Store, Fail> {
        Self::store(&self.meta, META)
    }

    fn pending(&self) -> Result<&rexie::Store, Fail> {
        Self::store(&self.pending, PENDING)
    }

    fn shadowed(&self) -> Result<&rexie::Store, Fail> {
        Self::store(&self.shadowed, SHADOWED)
    }

    fn dead_writes(&self) -> Result<&rexie::Store, Fail> {
        Self::store(&self.dead_writes, DEAD_WRITES)
    }

    /// Applies a batch in the same order as the in-memory reference store.
    async fn apply(mut self, batch: Batch, lookup: Lookup) -> Result<Applied, Fail> {
        self.validate(&batch).await?;
        let mut applied = Applied::default();
        let pending_for = batch.enqueue.as_ref().map(|new| new.id);
        for write in &batch.writes {
            if local_data::write(&mut self, write, pending_for, batch.complete).await? {
                applied.writes_applied += 1;
            }
        }
        if let Some(id) = batch.complete {
            if let Some(action) = self.queued_by_id(id).await? {
                self.delete_queued(action.seq).await?;
            }
            local_data::release(&mut self, id).await?;
        }
        if let Some(reschedule) = batch.reschedule {
            self.reschedule(reschedule).await?;
        }
        if let Some(bury) = batch.bury {
            let id = bury.id;
            if self.bury(bury).await? {
                applied.rolled_back = local_data::roll_back(&mut self, id).await?;
            }
        }
        if let Some((id, now)) = batch.revive {
            let requeued = self.revive(id, now).await?;
            local_data::revive(&mut self, id, requeued).await?;
        }
        if let Some(id) = batch.discard {
            let dead = self.dead()?;
            let keys = req(
                "find dead letters",
                dead.index(BY_ID)
                    .map_err(|e| Fail::Idb("open an index", e))?
                    .get_all_keys(Some(only(&id_key(id))?), None),
            )
            .await?;
            for key in keys {
                req("delete a dead letter", dead.delete(key)).await?;
            }
            local_data::discard(&mut self, id).await?;
        }
        if let Some(new) = batch.enqueue {
            let (queued, replaced) = self.enqueue(new, lookup).await?;
            if let Some(replaced) = replaced {
                local_data::release(&mut self, replaced).await?;
            }
            applied.queued = Some(queued);
            applied.replaced = replaced;
        }
        Ok(applied)
    }

    /// Fails with `NotFound` before anything is written, as the reference store does.
    async fn validate(&self, batch: &Batch) -> Result<(), Fail> {
        let queued_ids = batch
            .reschedule
            .iter()
            .map(|r| r.id)
            .chain(batch.bury.iter().map(|b| b.id));
        for id in queued_ids {
            let count = req(
                "look up a queued action",
                self.queue()?
                    .index(BY_ID)
                    .map_err(|e| Fail::Idb("open an index", e))?
                    .count(Some(only(&id_key(id))?)),
            )
            .await?;
            if count == 0 {
                return Err(Fail::Store(StoreError::NotFound(id)));
            }
        }
        for id in batch.revive.iter().map(|(id, _)| *id).chain(batch.discard) {
            if self.dead_by_id(id).await?.is_none() {
                return Err(Fail::Store(StoreError::NotFound(id)));
            }
        }
        Ok(())
    }

    async fn reschedule(&self, r: Reschedule) -> Result<(), Fail> {
        if let Some(mut action) = self.queued_by_id(r.id).await? {
            action.retries = r.retries;
            action.next_attempt_at = r.next_attempt_at;
            action.last_error = Some(r.last_error);
            self.put_queued(&action).await?;
        }
        Ok(())
    }

    /// Moves the queued action to the dead letters; returns whether it was queued.
    async fn bury(&self, b: Bury) -> Result<bool, Fail> {
        let Some(action) = self.queued_by_id(b.id).await? else {
            return Ok(false);
        };
        {
            self.delete_queued(action.seq).await?;
            let dead_seq = self.take_seq(LAST_DEAD_SEQ).await?;
            let letter = DeadLetter {
                action,
                reason: b.reason,
                message: b.message,
                failed_at: b.failed_at,
            };
            let value = encode_dead(dead_seq, &letter)?;
            req("write a dead letter", self.dead()?.put(&value, None)).await?;
        }
        Ok(true)
    }

    /// Moves the dead letter back into the queue; returns whether it was queued (not
    /// dropped as a duplicate of a call already queued).
    async fn revive(&self, id: ActionId, now: Timestamp) -> Result<bool, Fail> {
        let Some((dead_seq, letter)) = self.dead_by_id(id).await? else {
            return Ok(false);
        };
        req(
            "delete a dead letter",
            self.dead()?.delete(u64_key(dead_seq)?),
        )
        .await?;
        let mut action = letter.action;
        // The queue keeps at most one copy of a call and of a query: if the same one was
        // queued again meanwhile, reviving just drops the dead letter.
        let duplicate = self.queued_by_id(action.id).await?.is_some()
            || (action.kind == ActionKind::Query
                && self
                    .queued_query(&action.name, &action.params)
                    .await?
                    .is_some());
        if !duplicate {
            action.retries = 0;
            action.next_attempt_at = now;
            action.queued_at = now;
            action.last_error = None;
            // A new number from the key generator.
            self.add_queued(&action).await?;
        }
        Ok(!duplicate)
    }

    /// Queues `new`; returns the id now queued for it, and the queued query it replaced.
    ///
    /// Every request costs a turn of the browser's event loop, so the requests that do not
    /// depend on each other are made together (IndexedDB still runs them in the order they
    /// were made), and a mutation queued with [`Lookup::Optimistic`] is one request: the key
    /// generator numbers it, and the unique index on ids refuses it if its id is queued.
    async fn enqueue(
        &self,
        new: NewQueued,
        lookup: Lookup,
    ) -> Result<(ActionId, Option<ActionId>), Fail> {
        let is_query = new.kind == ActionKind::Query;
        let looked_up = is_query || lookup == Lookup::First;
        let mut replaced = None;
        if looked_up {
            // The same call (enqueueing the same id twice keeps the first), or a query with
            // the same name and params.
            let same_query = async {
                if is_query {
                    self.queued_query(&new.name, &new.params).await
                } else {
                    Ok(None)
                }
            };
            let (same_call, same_query) = join(self.queued_by_id(new.id), same_query).await;
            if same_call?.is_some() {
                return Ok((new.id, None));
            }
            replaced = same_query?.map(|existing| (existing.seq, existing.id));
        }
        let action = QueuedAction {
            // Not stored: the key generator numbers the call.
            seq: 0,
            id: new.id,
            name: new.name,
            version: new.version,
            kind: new.kind,
            params: new.params,
            timestamp: new.timestamp,
            queued_at: new.queued_at,
            retries: 0,
            next_attempt_at: new.queued_at,
            last_error: None,
            scope: new.scope,
        };
        let added = match replaced {
            // A refresh of a query already queued replaces it, at the new call's place.
            Some((seq, _)) => {
                let (deleted, added) =
                    join(self.delete_queued(seq), self.add_queued(&action)).await;
                deleted.and(added)
            }
            None => self.add_queued(&action).await,
        };
        match added {
            Err(Fail::Idb(_, e))
                if !looked_up && dom_exception_name(&e).as_deref() == Some("ConstraintError") =>
            {
                Err(Fail::AlreadyQueued)
            }
            added => added.map(|()| (action.id, replaced.map(|(_, id)| id))),
        }
    }

    /// Hands out the next number of the counter `name`; numbers are never reused, even after
    /// the dead letters empty, because the counter lives apart from the records.
    async fn take_seq(&self, name: &str) -> Result<u64, Fail> {
        let next = next_seq(self.read_seq(name).await?, name)?;
        self.write_seq(name, next).await?;
        Ok(next)
    }

    /// The last number the counter `name` handed out (0 if none).
    async fn read_seq(&self, name: &str) -> Result<u64, Fail> {
        match req("read a counter", self.meta()?.get(JsValue::from_str(name))).await? {
            Some(value) => decode_u64(&value, name),
            None => Ok(0),
        }
    }

    async fn write_seq(&self, name: &str, value: u64) -> Result<(), Fail> {
        let key = JsValue::from_str(name);
        req(
            "write a counter",
            self.meta()?.put(&u64_key(value)?, Some(&key)),
        )
        .await?;
        Ok(())
    }

    async fn queued_by_id(&self, id: ActionId) -> Result<Option<QueuedAction>, Fail> {
        let found = req(
            "look up a queued action",
            self.queue()?
                .index(BY_ID)
                .map_err(|e| Fail::Idb("open an index", e))?
                .get(id_key(id)),
        )
        .await?;
        found.map(|value| decode_queued(&value)).transpose()
    }

    /// The first queued query with this name and params, if any.
    async fn queued_query(&self, name: &str, params: &str) -> Result<Option<QueuedAction>, Fail> {
        let key: JsValue = Array::of3(
            &JsValue::from_str(kind_str(ActionKind::Query)),
            &JsValue::from_str(name),
            &JsValue::from_str(params),
        )
        .into();
        let found = req(
            "look up a queued query",
            self.queue()?
                .index(BY_QUERY)
                .map_err(|e| Fail::Idb("open an index", e))?
                .get(key),
        )
        .await?;
        found.map(|value| decode_queued(&value)).transpose()
    }

    /// The oldest dead letter of this id, with its key.
    async fn dead_by_id(&self, id: ActionId) -> Result<Option<(u64, DeadLetter)>, Fail> {
        let found = req(
            "look up a dead letter",
            self.dead()?
                .index(BY_ID)
                .map_err(|e| Fail::Idb("open an index", e))?
                .get(id_key(id)),
        )
        .await?;
        found.map(|value| decode_dead(&value)).transpose()
    }

    async fn put_queued(&self, action: &QueuedAction) -> Result<(), Fail> {
        let value = encode_queued(action)?;
        req("write a queued action", self.queue()?.put(&value, None)).await?;
        Ok(())
    }

    /// Adds a call to the queue under a new number, ignoring `action.seq`.
    async fn add_queued(&self, action: &QueuedAction) -> Result<(), Fail> {
        let value = queued_fields(action)?;
        req("queue an action", self.queue()?.add(&value, None)).await?;
        Ok(())
    }

    async fn delete_queued(&self, seq: u64) -> Result<(), Fail> {
        req(
            "delete a queued action",
            self.queue()?.delete(u64_key(seq)?),
        )
        .await
    }
}

impl Tx {
    /// The pending writes an index finds under `key`.
    async fn pending_by(&self, index: &str, key: JsValue) -> Result<Vec<PendingWrite>, Fail> {
        let values = req(
            "read pending writes",
            self.pending()?
                .index(index)
                .map_err(|e| Fail::Idb("open an index", e))?
                .get_all(Some(only(&key)?), None),
        )
        .await?;
        values.iter().map(decode_pending).collect()
    }
}

impl LocalData for Tx {
    type Fail = Fail;

    async fn record(&mut self, collection: &str, key: &str) -> Result<Option<Record>, Fail> {
        let found = req(
            "read a record",
            self.records()?.get(record_key(collection, key).into()),
        )
        .await?;
        found
            .map(|value| decode_record(&value).map(|(_, record)| record))
            .transpose()
    }

    async fn set_record(
        &mut self,
        collection: &str,
        key: &str,
        record: Option<&Record>,
    ) -> Result<(), Fail> {
        let records = self.records()?;
        match record {
            Some(record) => {
                let value = encode_record(collection, key, record)?;
                req("write a record", records.put(&value, None)).await?;
            }
            None => {
                req(
                    "delete a record",
                    records.delete(record_key(collection, key).into()),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn pending_on(&mut self, collection: &str, key: &str) -> Result<Vec<PendingWrite>, Fail> {
        self.pending_by(BY_RECORD, record_key(collection, key).into())
            .await
    }

    async fn pending_of(&mut self, action: ActionId) -> Result<Vec<PendingWrite>, Fail> {
        let mut found = self.pending_by(BY_ACTION, id_key(action)).await?;
        // IndexedDB orders strings by UTF-16 code unit; the other backends by UTF-8 bytes.
        found.sort_by(|a, b| (&a.collection, &a.key).cmp(&(&b.collection, &b.key)));
        Ok(found)
    }

    async fn put_pending(&mut self, write: &PendingWrite) -> Result<(), Fail> {
        let value = encode_pending(write)?;
        req("write a pending write", self.pending()?.put(&value, None)).await?;
        Ok(())
    }

    async fn delete_pending(
        &mut self,
        action: ActionId,
        collection: &str,
        key: &str,
    ) -> Result<(), Fail> {
        let key: JsValue = Array::of3(
            &id_key(action),
            &JsValue::from_str(collection),
            &JsValue::from_str(key),
        )
        .into();
        req("delete a pending write", self.pending()?.delete(key)).await
    }

    async fn shadow(&mut self, collection: &str, key: &str) -> Result<Option<Record>, Fail> {
        let found = req(
            "read a shadowed server value",
            self.shadowed()?.get(record_key(collection, key).into()),
        )
        .await?;
        found
            .map(|value| decode_record(&value).map(|(_, record)| record))
            .transpose()
    }

    async fn set_shadow(
        &mut self,
        collection: &str,
        key: &str,
        record: Option<&Record>,
    ) -> Result<(), Fail> {
        let shadowed = self.shadowed()?;
        match record {
            Some(record) => {
                let value = encode_record(collection, key, record)?;
                req("write a shadowed server value", shadowed.put(&value, None)).await?;
            }
            None => {
                req(
                    "delete a shadowed server value",
                    shadowed.delete(record_key(collection, key).into()),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn put_dead_writes(&mut self, action: ActionId, writes: &[Write]) -> Result<(), Fail> {
        let dead_writes = self.dead_writes()?;
        for write in writes {
            let record = Record {
                value: write.value.clone(),
                stamp: write.stamp,
            };
            let value = encode_record(&write.collection, &write.key, &record)?;
            set(value.unchecked_ref(), "action", &id_key(action))?;
            req("keep a dead letter's write", dead_writes.put(&value, None)).await?;
        }
        Ok(())
    }

    async fn take_dead_writes(&mut self, action: ActionId) -> Result<Vec<Write>, Fail> {
        let dead_writes = self.dead_writes()?;
        let index = dead_writes
            .index(BY_ACTION)
            .map_err(|e| Fail::Idb("open an index", e))?;
        let range = only(&id_key(action))?;
        let values = req(
            "read a dead letter's writes",
            index.get_all(Some(range), None),
        )
        .await?;
        let mut writes = Vec::with_capacity(values.len());
        for value in &values {
            let (key, record) = decode_record(value)?;
            let collection = string_field(value, "collection")?;
            let stored_key: JsValue = Array::of3(
                &id_key(action),
                &JsValue::from_str(&collection),
                &JsValue::from_str(&key),
            )
            .into();
            req(
                "forget a dead letter's write",
                dead_writes.delete(stored_key),
            )
            .await?;
            writes.push(Write {
                collection,
                key,
                value: record.value,
                stamp: Stamp {
                    timestamp: record.stamp.timestamp,
                    action,
                },
            });
        }
        Ok(writes)
    }
}

/// The number after `last` for the counter `name`, while JavaScript numbers hold it exactly.
fn next_seq(last: u64, name: &str) -> Result<u64, Fail> {
    let next = last + 1;
    if next > MAX_SAFE_INTEGER {
        return Err(Fail::Store(StoreError::Backend {
            operation: "number a queued action",
            message: format!("the counter `{name}` is exhausted"),
        }));
    }
    Ok(next)
}

impl Store for IndexedDbStore {
    fn apply(&self, batch: Batch) -> BoxFuture<'_, Result<Applied, StoreError>> {
        boxed(self.apply_batch(batch))
    }

    fn get<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        boxed(self.read(&[RECORDS], async move |tx: Tx| {
            let found = req(
                "read a record",
                tx.records()?.get(record_key(collection, key).into()),
            )
            .await?;
            found
                .map(|value| decode_record(&value).map(|(_, record)| record))
                .transpose()
        }))
    }

    fn scan<'a>(
        &'a self,
        collection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Record)>, StoreError>> {
        boxed(self.read(&[RECORDS], async move |tx: Tx| {
            // Keys are `[collection, key]`: `[collection]` sorts before all of the
            // collection's keys, and `[collection, []]` after them (arrays sort after strings).
            let lower: JsValue = Array::of1(&JsValue::from_str(collection)).into();
            let upper: JsValue =
                Array::of2(&JsValue::from_str(collection), &Array::new().into()).into();
            let range = KeyRange::bound(&lower, &upper, Some(false), Some(true))
                .map_err(|e| Fail::Idb("build a key range", e.into()))?;
            let values = req("scan records", tx.records()?.get_all(Some(range), None)).await?;
            let mut records = values
                .iter()
                .map(decode_record)
                .collect::<Result<Vec<_>, _>>()?;
            // IndexedDB orders strings by UTF-16 code unit; the contract is UTF-8 byte order.
            records.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(records)
        }))
    }

    fn queued(
        &self,
        after: Option<ActionId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<QueuedAction>, StoreError>> {
        boxed(async move {
            // IndexedDB reads a count of 0 as "no limit".
            if limit == 0 {
                return Ok(Vec::new());
            }
            self.read(&[QUEUE], async move |tx: Tx| {
                // In id order (the order the user acted), through the index on ids: ids are
                // stored as lowercase hyphenated uuids, whose text order is their order.
                let range = match after {
                    Some(id) => Some(
                        KeyRange::lower_bound(&id_key(id), Some(true))
                            .map_err(|e| Fail::Idb("build a key range", e.into()))?,
                    ),
                    None => None,
                };
                let count = u32::try_from(limit).ok();
                let index = tx
                    .queue()?
                    .index(BY_ID)
                    .map_err(|e| Fail::Idb("open an index", e))?;
                let values = req("read the queue", index.get_all(range, count)).await?;
                values.iter().map(decode_queued).collect()
            })
            .await
        })
    }

    fn queued_in_scope<'a>(
        &'a self,
        scope: &'a str,
        after: Option<ActionId>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<QueuedAction>, StoreError>> {
        boxed(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            self.read(&[QUEUE], async move |tx: Tx| {
                // `[scope, id]` from just after `after` (or the empty string, before every id)
                // up to `[scope, []]`: an array sorts after every string in IndexedDB.
                let scope_key = JsValue::from_str(scope);
                let lower: JsValue = Array::of2(
                    &scope_key,
                    &after.map_or_else(|| JsValue::from_str(""), id_key),
                )
                .into();
                let upper: JsValue = Array::of2(&scope_key, &Array::new().into()).into();
                let range = KeyRange::bound(&lower, &upper, Some(after.is_some()), Some(true))
                    .map_err(|e| Fail::Idb("build a key range", e.into()))?;
                let index = tx
                    .queue()?
                    .index(BY_SCOPE)
                    .map_err(|e| Fail::Idb("open an index", e))?;
                let values = req(
                    "read a scope of the queue",
                    index.get_all(Some(range), u32::try_from(limit).ok()),
                )
                .await?;
                values.iter().map(decode_queued).collect()
            })
            .await
        })
    }

    fn last_queued_id(&self) -> BoxFuture<'_, Result<Option<ActionId>, StoreError>> {
        boxed(self.read(&[QUEUE], async move |tx: Tx| {
            // The last entry of the index on ids, read backwards: one record, not the queue.
            let index = tx
                .queue()?
                .index(BY_ID)
                .map_err(|e| Fail::Idb("open an index", e))?;
            let last = req(
                "read the queue's last id",
                index.scan(None, Some(1), None, Some(rexie::Direction::Prev)),
            )
            .await?;
            last.first()
                .map(|(_, value)| decode_queued(value).map(|queued| queued.id))
                .transpose()
        }))
    }

    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>> {
        boxed(self.read(&[DEAD], async move |tx: Tx| {
            let values = req("read the dead letters", tx.dead()?.get_all(None, None)).await?;
            values
                .iter()
                .map(|value| decode_dead(value).map(|(_, letter)| letter))
                .collect()
        }))
    }

    fn counts(&self) -> BoxFuture<'_, Result<Counts, StoreError>> {
        boxed(self.read(&[QUEUE, DEAD], async move |tx: Tx| {
            let pending = req("count the queue", tx.queue()?.count(None)).await?;
            let dead = req("count the dead letters", tx.dead()?.count(None)).await?;
            Ok(Counts {
                pending: u64::from(pending),
                dead: u64::from(dead),
            })
        }))
    }

    fn clock_offset(&self) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
        boxed(self.read(&[META], async move |tx: Tx| {
            let key = JsValue::from_str(CLOCK_OFFSET);
            let value = req("read the clock offset", tx.meta()?.get(key)).await?;
            // Whole milliseconds well inside the range of an f64's exact integers.
            Ok(value
                .and_then(|v| v.as_f64())
                .filter(|v| v.fract() == 0.0 && v.abs() <= MAX_SAFE_INTEGER as f64)
                .map(|v| v as i64))
        }))
    }

    fn set_clock_offset(&self, offset_millis: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        boxed(async move {
            let (_db, transaction) = self
                .transaction(&[META], TransactionMode::ReadWrite)
                .await?;
            let tx = Tx::new(&transaction, &[META])
                .map_err(|e| idb_error("open the object stores", &e))?;
            let saved = async {
                let value = JsValue::from_f64(offset_millis as f64);
                let key = JsValue::from_str(CLOCK_OFFSET);
                req("save the clock offset", tx.meta()?.put(&value, Some(&key))).await
            }
            .await;
            if let Err(fail) = saved {
                let _ = transaction.abort().await;
                return Err(fail.into_store_error(self));
            }
            match transaction.done().await {
                Ok(TransactionResult::Committed) => Ok(()),
                Ok(TransactionResult::Aborted) => Err(unexplained_abort().await),
                Err(e) => Err(idb_error("commit", &e)),
            }
        })
    }
}

// ---- Errors -------------------------------------------------------------------------------

/// The name of the `DOMException` behind an error, such as `QuotaExceededError`.
fn dom_exception_name(error: &rexie::Error) -> Option<String> {
    match error {
        rexie::Error::IdbError(idb::Error::DomException(exception)) => Some(exception.name()),
        rexie::Error::IdbError(other) => js_payload(other)
            .and_then(|value| value.dyn_ref::<web_sys::DomException>().map(|e| e.name())),
        _ => None,
    }
}

/// The JavaScript error some `idb` errors carry (for a request the browser refused at once).
fn js_payload(error: &idb::Error) -> Option<&JsValue> {
    use idb::Error::*;
    match error {
        AddFailed(v)
        | ClearFailed(v)
        | CountFailed(v)
        | DeleteFailed(v)
        | GetAllFailed(v)
        | GetAllKeysFailed(v)
        | GetFailed(v)
        | GetKeyFailed(v)
        | IndexNotFound(v)
        | IndexedDbOpenFailed(v)
        | ObjectStoreNotFound(v)
        | OpenCursorFailed(v)
        | TransactionOpenFailed(v)
        | TransactionCommitError(v)
        | UpdateFailed(v)
        | KeyRangeCreateFailed(v) => Some(v),
        _ => None,
    }
}

/// The most specific description of an error: the `DOMException`'s name and message.
fn describe(error: &rexie::Error) -> String {
    match error {
        rexie::Error::IdbError(idb::Error::DomException(exception)) => {
            format!("{}: {}", exception.name(), exception.message())
        }
        rexie::Error::IdbError(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

fn quota_message(error: &rexie::Error) -> String {
    format!(
        "the browser's storage quota for this site is used up ({}); free space, or ask for \
         persistent storage with navigator.storage.persist()",
        describe(error)
    )
}

/// Maps a `rexie` error: quota errors become [`StoreError::Full`], others
/// [`StoreError::Backend`].
fn idb_error(operation: &'static str, error: &rexie::Error) -> StoreError {
    match dom_exception_name(error).as_deref() {
        Some("QuotaExceededError") => StoreError::Full {
            message: quota_message(error),
        },
        _ => StoreError::Backend {
            operation,
            message: describe(error),
        },
    }
}

/// The browser aborted a transaction whose requests all succeeded. It says why only on the
/// transaction object, which `rexie` does not expose, and the usual reason is the quota
/// (checked when the transaction commits): ask the storage manager how full the site is.
async fn unexplained_abort() -> StoreError {
    match storage_estimate().await {
        Some((usage, quota)) if quota > 0.0 && quota - usage < quota * 0.05 => StoreError::Full {
            message: format!(
                "the browser aborted the write with the site's storage at {usage:.0} of \
                 {quota:.0} bytes; free space, or ask for persistent storage with \
                 navigator.storage.persist()"
            ),
        },
        estimate => StoreError::Backend {
            operation: "commit",
            message: match estimate {
                Some((usage, quota)) => format!(
                    "the browser aborted the transaction (storage at {usage:.0} of {quota:.0} bytes)"
                ),
                None => "the browser aborted the transaction".to_owned(),
            },
        },
    }
}

/// `navigator.storage.estimate()`: (usage, quota) in bytes, if the browser tells.
async fn storage_estimate() -> Option<(f64, f64)> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let storage = Reflect::get(&navigator, &"storage".into()).ok()?;
    let estimate = Reflect::get(&storage, &"estimate".into())
        .ok()?
        .dyn_into::<js_sys::Function>()
        .ok()?;
    let promise = estimate
        .call0(&storage)
        .ok()?
        .dyn_into::<js_sys::Promise>()
        .ok()?;
    let result = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let usage = Reflect::get(&result, &"usage".into()).ok()?.as_f64()?;
    let quota = Reflect::get(&result, &"quota".into()).ok()?.as_f64()?;
    Some((usage, quota))
}

// ---- Encoding -----------------------------------------------------------------------------
//
// Records are plain JavaScript objects, readable in the browser's developer tools. Numbers
// up to 2^53 - 1 are stored as numbers; larger ones (a saturated timestamp) as decimal text,
// since a JavaScript number would round them.

fn set(object: &Object, key: &str, value: &JsValue) -> Result<(), Fail> {
    Reflect::set(object, &JsValue::from_str(key), value)
        .map(drop)
        .map_err(|e| Fail::Decode(format!("could not set `{key}` on a record: {e:?}")))
}

fn field(object: &JsValue, key: &str) -> Result<JsValue, Fail> {
    Reflect::get(object, &JsValue::from_str(key))
        .map_err(|e| Fail::Decode(format!("could not read `{key}` of a record: {e:?}")))
}

fn string_field(object: &JsValue, key: &str) -> Result<String, Fail> {
    field(object, key)?
        .as_string()
        .ok_or_else(|| Fail::Decode(format!("`{key}` of a record is not text")))
}

fn optional_string_field(object: &JsValue, key: &str) -> Result<Option<String>, Fail> {
    let value = field(object, key)?;
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    value
        .as_string()
        .map(Some)
        .ok_or_else(|| Fail::Decode(format!("`{key}` of a record is neither text nor null")))
}

/// A `u64` as stored: a number when exact, else decimal text.
fn encode_u64(value: u64) -> JsValue {
    if value <= MAX_SAFE_INTEGER {
        // Exact: every integer up to 2^53 - 1 is a double.
        JsValue::from_f64(value as f64)
    } else {
        JsValue::from_str(&value.to_string())
    }
}

/// A `u64` used as a key, which must be a number.
fn u64_key(value: u64) -> Result<JsValue, Fail> {
    if value <= MAX_SAFE_INTEGER {
        Ok(JsValue::from_f64(value as f64))
    } else {
        Err(Fail::Store(StoreError::Backend {
            operation: "build a key",
            message: format!("{value} is too large for an IndexedDB number key"),
        }))
    }
}

fn decode_u64(value: &JsValue, what: &str) -> Result<u64, Fail> {
    if let Some(number) = value.as_f64() {
        if number >= 0.0 && number.fract() == 0.0 && number <= MAX_SAFE_INTEGER as f64 {
            // Exact: checked to be a whole number in range.
            return Ok(number as u64);
        }
    } else if let Some(text) = value.as_string() {
        if let Ok(number) = text.parse() {
            return Ok(number);
        }
    }
    Err(Fail::Decode(format!(
        "`{what}` is not a whole number: {value:?}"
    )))
}

fn u64_field(object: &JsValue, key: &str) -> Result<u64, Fail> {
    decode_u64(&field(object, key)?, key)
}

fn u32_field(object: &JsValue, key: &str) -> Result<u32, Fail> {
    let value = u64_field(object, key)?;
    u32::try_from(value).map_err(|_| Fail::Decode(format!("`{key}` is out of range: {value}")))
}

fn id_key(id: ActionId) -> JsValue {
    JsValue::from_str(&id.to_string())
}

fn only(key: &JsValue) -> Result<KeyRange, Fail> {
    KeyRange::only(key).map_err(|e| Fail::Idb("build a key range", e.into()))
}

fn decode_id(object: &JsValue, key: &str) -> Result<ActionId, Fail> {
    let text = string_field(object, key)?;
    text.parse()
        .map_err(|e| Fail::Decode(format!("`{key}` is not an action id ({text:?}): {e}")))
}

const fn kind_str(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Query => "query",
        ActionKind::Mutation => "mutation",
    }
}

fn record_key(collection: &str, key: &str) -> Array {
    Array::of2(&JsValue::from_str(collection), &JsValue::from_str(key))
}

fn encode_queued(action: &QueuedAction) -> Result<JsValue, Fail> {
    let object = queued_fields(action)?;
    set(object.unchecked_ref(), "seq", &u64_key(action.seq)?)?;
    Ok(object)
}

/// Every field of a queued call but its number, `seq`, which the queue's key generator adds
/// to a new call.
fn queued_fields(action: &QueuedAction) -> Result<JsValue, Fail> {
    let object = Object::new();
    set(&object, "id", &id_key(action.id))?;
    set(&object, "name", &JsValue::from_str(&action.name))?;
    set(&object, "version", &JsValue::from(action.version))?;
    set(&object, "kind", &JsValue::from_str(kind_str(action.kind)))?;
    set(&object, "params", &JsValue::from_str(&action.params))?;
    set(&object, "timestamp", &encode_u64(action.timestamp.0))?;
    set(&object, "retries", &JsValue::from(action.retries))?;
    set(
        &object,
        "next_attempt_at",
        &encode_u64(action.next_attempt_at.0),
    )?;
    set(&object, "queued_at", &encode_u64(action.queued_at.0))?;
    let last_error = action
        .last_error
        .as_deref()
        .map_or(JsValue::NULL, JsValue::from_str);
    set(&object, "last_error", &last_error)?;
    set(&object, "scope", &JsValue::from_str(&action.scope))?;
    Ok(object.into())
}

fn decode_queued(value: &JsValue) -> Result<QueuedAction, Fail> {
    let kind = match string_field(value, "kind")?.as_str() {
        "query" => ActionKind::Query,
        "mutation" => ActionKind::Mutation,
        other => return Err(Fail::Decode(format!("unknown action kind {other:?}"))),
    };
    let timestamp = Timestamp(u64_field(value, "timestamp")?);
    // Written before `queued_at` existed: the time-to-live counts from the timestamp.
    let queued_at = if field(value, "queued_at")?.is_undefined() {
        timestamp
    } else {
        Timestamp(u64_field(value, "queued_at")?)
    };
    Ok(QueuedAction {
        seq: u64_field(value, "seq")?,
        id: decode_id(value, "id")?,
        name: string_field(value, "name")?,
        version: u32_field(value, "version")?,
        kind,
        params: string_field(value, "params")?,
        timestamp,
        queued_at,
        retries: u32_field(value, "retries")?,
        next_attempt_at: Timestamp(u64_field(value, "next_attempt_at")?),
        last_error: optional_string_field(value, "last_error")?,
        // Written before ordering scopes existed: the global scope.
        scope: optional_string_field(value, "scope")?.unwrap_or_default(),
    })
}

fn encode_dead(dead_seq: u64, letter: &DeadLetter) -> Result<JsValue, Fail> {
    let object = Object::new();
    set(&object, "dead_seq", &u64_key(dead_seq)?)?;
    set(&object, "action", &encode_queued(&letter.action)?)?;
    set(
        &object,
        "reason",
        &JsValue::from_str(letter.reason.as_str()),
    )?;
    set(&object, "message", &JsValue::from_str(&letter.message))?;
    set(&object, "failed_at", &encode_u64(letter.failed_at.0))?;
    Ok(object.into())
}

fn decode_dead(value: &JsValue) -> Result<(u64, DeadLetter), Fail> {
    let reason = string_field(value, "reason")?;
    let letter = DeadLetter {
        action: decode_queued(&field(value, "action")?)?,
        reason: DeadReason::parse(&reason)
            .ok_or_else(|| Fail::Decode(format!("unknown dead-letter reason {reason:?}")))?,
        message: string_field(value, "message")?,
        failed_at: Timestamp(u64_field(value, "failed_at")?),
    };
    Ok((u64_field(value, "dead_seq")?, letter))
}

fn encode_record(collection: &str, key: &str, record: &Record) -> Result<JsValue, Fail> {
    let object = Object::new();
    set(&object, "collection", &JsValue::from_str(collection))?;
    set(&object, "key", &JsValue::from_str(key))?;
    let value = record
        .value
        .as_deref()
        .map_or(JsValue::NULL, JsValue::from_str);
    set(&object, "value", &value)?;
    set(&object, "timestamp", &encode_u64(record.stamp.timestamp.0))?;
    set(&object, "action", &id_key(record.stamp.action))?;
    Ok(object.into())
}

/// A pending write: the action's write as a record (`value`, `timestamp`, `action`) plus
/// `prior`, the record before it (a record object without its names, or null).
fn encode_pending(write: &PendingWrite) -> Result<JsValue, Fail> {
    let own = Record {
        value: write.value.clone(),
        stamp: write.stamp,
    };
    let value = encode_record(&write.collection, &write.key, &own)?;
    let prior = match &write.prior {
        Some(prior) => encode_record(&write.collection, &write.key, prior)?,
        None => JsValue::NULL,
    };
    set(value.unchecked_ref(), "prior", &prior)?;
    Ok(value)
}

fn decode_pending(value: &JsValue) -> Result<PendingWrite, Fail> {
    let (key, own) = decode_record(value)?;
    let prior = field(value, "prior")?;
    let prior = if prior.is_null() || prior.is_undefined() {
        None
    } else {
        Some(decode_record(&prior)?.1)
    };
    Ok(PendingWrite {
        action: own.stamp.action,
        collection: string_field(value, "collection")?,
        key,
        value: own.value,
        stamp: own.stamp,
        prior,
    })
}

fn decode_record(value: &JsValue) -> Result<(String, Record), Fail> {
    let record = Record {
        value: optional_string_field(value, "value")?,
        stamp: Stamp {
            timestamp: Timestamp(u64_field(value, "timestamp")?),
            action: decode_id(value, "action")?,
        },
    };
    Ok((string_field(value, "key")?, record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

    wasm_bindgen_test_configure!(run_in_browser);

    fn dom_error(name: &str) -> rexie::Error {
        let exception =
            web_sys::DomException::new_with_message_and_name("test", name).expect("a DOMException");
        rexie::Error::IdbError(idb::Error::DomException(exception))
    }

    #[wasm_bindgen_test]
    fn quota_errors_become_full() {
        match idb_error("write a record", &dom_error("QuotaExceededError")) {
            StoreError::Full { message } => {
                assert!(message.contains("QuotaExceededError"), "{message}");
                assert!(message.contains("persist"), "{message}");
            }
            other => panic!("expected Full, got {other:?}"),
        }
        // A refused request carries the exception as a plain JavaScript value.
        let exception =
            web_sys::DomException::new_with_message_and_name("test", "QuotaExceededError")
                .expect("a DOMException");
        let refused = rexie::Error::IdbError(idb::Error::UpdateFailed(exception.into()));
        assert!(matches!(
            idb_error("write a record", &refused),
            StoreError::Full { .. }
        ));
        assert!(matches!(
            idb_error("write a record", &dom_error("UnknownError")),
            StoreError::Backend { .. }
        ));
    }

    #[wasm_bindgen_test]
    fn numbers_round_trip_exactly() {
        for value in [
            0,
            1,
            MAX_SAFE_INTEGER - 1,
            MAX_SAFE_INTEGER,
            MAX_SAFE_INTEGER + 1,
            u64::MAX,
        ] {
            let stored = encode_u64(value);
            assert_eq!(stored.as_f64().is_some(), value <= MAX_SAFE_INTEGER);
            assert!(matches!(decode_u64(&stored, "n"), Ok(v) if v == value));
        }
        assert!(u64_key(MAX_SAFE_INTEGER + 1).is_err());
        for bad in [
            JsValue::from_f64(-1.0),
            JsValue::from_f64(1.5),
            JsValue::from_str("x"),
        ] {
            assert!(decode_u64(&bad, "n").is_err());
        }
    }
}
