//! One conformance suite for the server half's record of applied actions
//! (`server::AsyncAppliedActions` through `server::apply_once_async`), run against SQLite
//! (a `rusqlite` transaction) and a real PostgreSQL (a `tokio-postgres` transaction, and a
//! pooled `deadpool-postgres` one), plus
//! what only PostgreSQL can show: concurrent copies of one action on separate connections.
//!
//! The PostgreSQL half needs a server: `SYNC_TEST_POSTGRES_URL` is its connection string
//! (`scripts/postgres.sh` starts a throwaway cluster and sets it). Without it those tests
//! say so and pass, unless `CI` is set: then they fail, so CI cannot skip them silently.
//! Needs the `deadpool-postgres` feature (and `sqlite`, the default).
#![cfg(all(
    feature = "sqlite",
    feature = "deadpool-postgres",
    not(target_arch = "wasm32")
))]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use sync_runtime::server::postgres as pg;
use sync_runtime::server::{self, apply_once_async, retention_cutoff, run_once_async, Applied};
use sync_runtime::{ActionId, ClassifyError, RetryPolicy, SyncError, Timestamp};
use tokio_postgres::{Client, IsolationLevel, NoTls};

#[derive(Debug, PartialEq)]
enum TestError {
    Invalid,
    Sync(String, bool),
}

impl From<SyncError> for TestError {
    fn from(error: SyncError) -> Self {
        let transient = error.is_transient();
        TestError::Sync(error.to_string(), transient)
    }
}

fn id(n: u128) -> ActionId {
    ActionId(uuid::Uuid::from_u128(n))
}

fn now() -> Timestamp {
    use sync_runtime::Clock;
    sync_runtime::SystemClock.now()
}

/// What the suite needs from a database: an `items` table and the record of applied actions.
trait Backend {
    /// Whether the record keeps request fingerprints (an id reused with other parameters is
    /// then reported as `ReplayedDifferently`).
    const KEEPS_FINGERPRINTS: bool;

    /// Adds an item named `name` through `apply_once_async` in one transaction, committed if
    /// it succeeds; answers the number of items after the insert. An empty name is invalid.
    async fn add_item(&mut self, action: ActionId, name: &str) -> Result<Applied<i64>, TestError>;

    /// As `add_item` without the header: `run_once_async` with no action.
    async fn add_item_without_id(&mut self, name: &str) -> Result<i64, TestError>;

    /// Applies an item and drops the transaction without committing, as a crash would.
    async fn abandon_item(&mut self, action: ActionId, name: &str);

    async fn names(&mut self) -> Vec<String>;

    async fn applied(&mut self) -> i64;

    async fn forget_before(&mut self, before: Timestamp) -> u64;
}

struct Sqlite(rusqlite::Connection);

impl Sqlite {
    fn new() -> Self {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE items (name TEXT NOT NULL)")
            .unwrap();
        server::migrate(&db).unwrap();
        Sqlite(db)
    }
}

fn sqlite_insert(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<i64, TestError> {
    if name.is_empty() {
        return Err(TestError::Invalid);
    }
    tx.execute("INSERT INTO items (name) VALUES (?1)", [name])
        .unwrap();
    Ok(tx
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap())
}

impl Backend for Sqlite {
    const KEEPS_FINGERPRINTS: bool = false;

    async fn add_item(&mut self, action: ActionId, name: &str) -> Result<Applied<i64>, TestError> {
        let tx = self
            .0
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        let applied = apply_once_async(&tx, action, name.as_bytes(), async {
            sqlite_insert(&tx, name)
        })
        .await?;
        tx.commit().unwrap();
        Ok(applied)
    }

    async fn add_item_without_id(&mut self, name: &str) -> Result<i64, TestError> {
        let tx = self.0.transaction().unwrap();
        let n = run_once_async(&tx, None, name.as_bytes(), async {
            sqlite_insert(&tx, name)
        })
        .await?;
        tx.commit().unwrap();
        Ok(n)
    }

    async fn abandon_item(&mut self, action: ActionId, name: &str) {
        let tx = self.0.transaction().unwrap();
        apply_once_async(&tx, action, name.as_bytes(), async {
            sqlite_insert(&tx, name)
        })
        .await
        .unwrap();
        drop(tx);
    }

    async fn names(&mut self) -> Vec<String> {
        let mut query = self.0.prepare("SELECT name FROM items").unwrap();
        let rows = query.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    async fn applied(&mut self) -> i64 {
        self.0
            .query_row("SELECT count(*) FROM applied_actions", [], |r| r.get(0))
            .unwrap()
    }

    async fn forget_before(&mut self, before: Timestamp) -> u64 {
        server::forget_applied_before(&self.0, before).unwrap() as u64
    }
}

/// A fresh database on the PostgreSQL named by `SYNC_TEST_POSTGRES_URL`, with `items` and
/// `applied_actions`; `None` (the test passes, saying why) when the variable is not set,
/// outside CI.
async fn fresh_database() -> Option<tokio_postgres::Config> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let url = match std::env::var("SYNC_TEST_POSTGRES_URL") {
        Ok(url) => url,
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but SYNC_TEST_POSTGRES_URL is not: run through scripts/postgres.sh")
        }
        Err(_) => {
            eprintln!("SYNC_TEST_POSTGRES_URL is not set: PostgreSQL not tested (scripts/postgres.sh sets it)");
            return None;
        }
    };
    let mut config: tokio_postgres::Config = url.parse().expect("SYNC_TEST_POSTGRES_URL");
    let admin = connect(&config).await;
    let name = format!(
        "conformance_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    config.dbname(&name);
    let mut client = connect(&config).await;
    client
        .batch_execute("CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL)")
        .await
        .unwrap();
    pg::migrate(&mut client).await.unwrap();
    pg::migrate(&mut client).await.unwrap(); // again: opening an existing database must work
    Some(config)
}

async fn connect(config: &tokio_postgres::Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

struct Postgres(Client);

impl Postgres {
    async fn new() -> Option<Self> {
        let config = fresh_database().await?;
        Some(Postgres(connect(&config).await))
    }
}

async fn pg_insert(tx: &tokio_postgres::Transaction<'_>, name: &str) -> Result<i64, TestError> {
    if name.is_empty() {
        return Err(TestError::Invalid);
    }
    tx.execute("INSERT INTO items (name) VALUES ($1)", &[&name])
        .await
        .unwrap();
    Ok(tx
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0))
}

impl Backend for Postgres {
    const KEEPS_FINGERPRINTS: bool = true;

    async fn add_item(&mut self, action: ActionId, name: &str) -> Result<Applied<i64>, TestError> {
        let tx = self.0.transaction().await.unwrap();
        let applied = apply_once_async(&tx, action, name.as_bytes(), async {
            pg_insert(&tx, name).await
        })
        .await?;
        tx.commit().await.unwrap();
        Ok(applied)
    }

    async fn add_item_without_id(&mut self, name: &str) -> Result<i64, TestError> {
        let tx = self.0.transaction().await.unwrap();
        let n = run_once_async(&tx, None, name.as_bytes(), async {
            pg_insert(&tx, name).await
        })
        .await?;
        tx.commit().await.unwrap();
        Ok(n)
    }

    async fn abandon_item(&mut self, action: ActionId, name: &str) {
        let tx = self.0.transaction().await.unwrap();
        apply_once_async(&tx, action, name.as_bytes(), async {
            pg_insert(&tx, name).await
        })
        .await
        .unwrap();
        drop(tx);
    }

    async fn names(&mut self) -> Vec<String> {
        let rows = self.0.query("SELECT name FROM items", &[]).await.unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    async fn applied(&mut self) -> i64 {
        self.0
            .query_one("SELECT count(*) FROM applied_actions", &[])
            .await
            .unwrap()
            .get(0)
    }

    async fn forget_before(&mut self, before: Timestamp) -> u64 {
        pg::forget_applied_before(&self.0, before).await.unwrap()
    }
}

/// PostgreSQL through a deadpool pool: its transactions prepare the statements once per
/// connection.
struct Pooled(deadpool_postgres::Pool);

impl Pooled {
    async fn new() -> Option<Self> {
        let config = fresh_database().await?;
        let manager = deadpool_postgres::Manager::new(config, NoTls);
        Some(Pooled(
            deadpool_postgres::Pool::builder(manager)
                .max_size(2)
                .build()
                .unwrap(),
        ))
    }
}

impl Backend for Pooled {
    const KEEPS_FINGERPRINTS: bool = true;

    async fn add_item(&mut self, action: ActionId, name: &str) -> Result<Applied<i64>, TestError> {
        let mut client = self.0.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let applied = apply_once_async(&tx, action, name.as_bytes(), async {
            pg_insert(&tx, name).await
        })
        .await?;
        tx.commit().await.unwrap();
        Ok(applied)
    }

    async fn add_item_without_id(&mut self, name: &str) -> Result<i64, TestError> {
        let mut client = self.0.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let n = run_once_async(&tx, None, name.as_bytes(), async {
            pg_insert(&tx, name).await
        })
        .await?;
        tx.commit().await.unwrap();
        Ok(n)
    }

    async fn abandon_item(&mut self, action: ActionId, name: &str) {
        let mut client = self.0.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        apply_once_async(&tx, action, name.as_bytes(), async {
            pg_insert(&tx, name).await
        })
        .await
        .unwrap();
        drop(tx);
    }

    async fn names(&mut self) -> Vec<String> {
        let client = self.0.get().await.unwrap();
        let rows = client.query("SELECT name FROM items", &[]).await.unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    async fn applied(&mut self) -> i64 {
        let client = self.0.get().await.unwrap();
        client
            .query_one("SELECT count(*) FROM applied_actions", &[])
            .await
            .unwrap()
            .get(0)
    }

    async fn forget_before(&mut self, before: Timestamp) -> u64 {
        let client = self.0.get().await.unwrap();
        pg::forget_applied_before(&**client, before).await.unwrap()
    }
}

// The suite: every backend must pass each of these.

async fn the_same_action_twice_is_applied_once(mut db: impl Backend) {
    assert_eq!(db.add_item(id(1), "tea").await, Ok(Applied::Fresh(1)));
    assert_eq!(db.add_item(id(1), "tea").await, Ok(Applied::Replayed(1)));
    assert_eq!(db.add_item(id(2), "tea").await, Ok(Applied::Fresh(2)));
    assert_eq!((db.names().await.len(), db.applied().await), (2, 2));
}

async fn a_failing_change_records_nothing_and_may_be_tried_again(mut db: impl Backend) {
    assert_eq!(db.add_item(id(1), "").await, Err(TestError::Invalid));
    assert_eq!((db.names().await.len(), db.applied().await), (0, 0));
    assert_eq!(db.add_item(id(1), "tea").await, Ok(Applied::Fresh(1)));
}

async fn a_transaction_that_never_commits_forgets_the_id_with_the_change(mut db: impl Backend) {
    db.abandon_item(id(1), "tea").await;
    assert_eq!((db.names().await.len(), db.applied().await), (0, 0));
    assert_eq!(db.add_item(id(1), "tea").await, Ok(Applied::Fresh(1)));
}

async fn an_id_replayed_with_other_parameters_answers_the_first_and_applies_nothing<B: Backend>(
    mut db: B,
) {
    db.add_item(id(1), "tea").await.unwrap();
    let again = db.add_item(id(1), "coffee").await;
    let expected = if B::KEEPS_FINGERPRINTS {
        Applied::ReplayedDifferently(1)
    } else {
        Applied::Replayed(1)
    };
    assert_eq!(again, Ok(expected));
    assert_eq!(db.names().await, ["tea"]);
}

async fn requests_without_an_id_simply_run(mut db: impl Backend) {
    assert_eq!(db.add_item_without_id("tea").await, Ok(1));
    assert_eq!(db.add_item_without_id("tea").await, Ok(2));
    assert_eq!(db.applied().await, 0);
}

async fn records_older_than_the_ttl_and_a_margin_are_forgotten(mut db: impl Backend) {
    db.add_item(id(1), "tea").await.unwrap();
    let ttl = RetryPolicy::default().ttl;
    let margin = Duration::from_secs(24 * 3600);
    assert_eq!(
        db.forget_before(retention_cutoff(now(), ttl, margin)).await,
        0
    );
    assert_eq!(db.applied().await, 1);
    // Eight days on, the record is older than the seven-day TTL plus a day.
    let later = Timestamp(now().as_millis() + 8 * 24 * 3600 * 1000 + 1000);
    assert_eq!(
        db.forget_before(retention_cutoff(later, ttl, margin)).await,
        1
    );
    assert_eq!(db.applied().await, 0);
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Sqlite::new()).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    if let Some(db) = super::Postgres::new().await {
                        super::$test(db).await;
                    }
                }
            )*
        }

        mod postgres_pooled {
            $(
                #[tokio::test]
                async fn $test() {
                    if let Some(db) = super::Pooled::new().await {
                        super::$test(db).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    the_same_action_twice_is_applied_once,
    a_failing_change_records_nothing_and_may_be_tried_again,
    a_transaction_that_never_commits_forgets_the_id_with_the_change,
    an_id_replayed_with_other_parameters_answers_the_first_and_applies_nothing,
    requests_without_an_id_simply_run,
    records_older_than_the_ttl_and_a_margin_are_forgotten,
);

// PostgreSQL only: two connections, as two server instances would have.

/// Runs `apply_once_async` for `action` on its own connection in a task: the change adds an
/// item, then reports through `started` and waits for `go` before returning; the task
/// commits when `commit` is true, otherwise rolls back.
fn copy_of(
    mut client: Client,
    isolation: IsolationLevel,
    action: ActionId,
    started: tokio::sync::oneshot::Sender<()>,
    go: tokio::sync::oneshot::Receiver<()>,
    commit: bool,
) -> tokio::task::JoinHandle<Result<Applied<i64>, TestError>> {
    tokio::spawn(async move {
        let tx = client
            .build_transaction()
            .isolation_level(isolation)
            .start()
            .await
            .unwrap();
        let applied = apply_once_async(&tx, action, b"tea", async {
            let n = pg_insert(&tx, "tea").await?;
            let _ = started.send(());
            let _ = go.await;
            Ok(n)
        })
        .await;
        if commit && applied.is_ok() {
            tx.commit().await.unwrap();
        }
        applied
    })
}

async fn race(
    isolation: IsolationLevel,
    first_commits: bool,
) -> Option<(Applied<i64>, Result<Applied<i64>, TestError>, Vec<String>)> {
    let config = fresh_database().await?;
    let (started, first_started) = tokio::sync::oneshot::channel();
    let (release, go) = tokio::sync::oneshot::channel();
    let first = copy_of(
        connect(&config).await,
        isolation,
        id(7),
        started,
        go,
        first_commits,
    );
    first_started.await.unwrap();
    // The first copy holds the id and has changed the data, uncommitted.
    // Its own change (if it runs) does not wait: its `go` has no sender.
    let (started, _) = tokio::sync::oneshot::channel();
    let (_, go) = tokio::sync::oneshot::channel();
    let second = copy_of(connect(&config).await, isolation, id(7), started, go, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second copy must wait for the first"
    );
    release.send(()).unwrap();
    let first = first.await.unwrap().unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second copy finishes once the first does")
        .unwrap();
    let mut db = Postgres(connect(&config).await);
    Some((first, second, db.names().await))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_concurrent_copy_waits_for_the_first_and_answers_with_its_response() {
    let Some((first, second, names)) = race(IsolationLevel::ReadCommitted, true).await else {
        return;
    };
    assert_eq!(first, Applied::Fresh(1));
    assert_eq!(second, Ok(Applied::Replayed(1)));
    assert_eq!(names, ["tea"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_concurrent_copy_applies_the_action_when_the_first_rolls_back() {
    let Some((first, second, names)) = race(IsolationLevel::ReadCommitted, false).await else {
        return;
    };
    assert_eq!(first, Applied::Fresh(1));
    // The first copy's item was rolled back with its claim: the second applies it, once.
    assert!(matches!(second, Ok(Applied::Fresh(_))), "{second:?}");
    assert_eq!(names, ["tea"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_under_repeatable_read_a_concurrent_copy_gets_a_retryable_error() {
    let Some((first, second, names)) = race(IsolationLevel::RepeatableRead, true).await else {
        return;
    };
    assert_eq!(first, Applied::Fresh(1));
    match second {
        Err(TestError::Sync(message, transient)) => {
            assert!(transient, "{message}");
            assert!(message.contains("concurrent request; retry"), "{message}");
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
    assert_eq!(names, ["tea"]);
}

#[tokio::test]
async fn postgres_last_write_wins_applies_only_newer_writes() {
    let Some(config) = fresh_database().await else {
        return;
    };
    let client = connect(&config).await;
    client
        .batch_execute(
            "CREATE TABLE prices (id text PRIMARY KEY, cents bigint NOT NULL,
                                  updated_at bigint NOT NULL, updated_by uuid NOT NULL);
             INSERT INTO prices VALUES ('tea', 200, 1000, '00000000-0000-0000-0000-000000000005')",
        )
        .await
        .unwrap();
    let statement = format!(
        "UPDATE prices SET cents = $2, updated_at = $3, updated_by = $4 WHERE id = $1 AND {}",
        pg::LAST_WRITE_WINS
            .replace("$ts", "$3")
            .replace("$id", "$4")
    );
    let write = async |cents: i64, at: i64, by: ActionId| {
        client
            .execute(&statement, &[&"tea", &cents, &at, &by.0])
            .await
            .unwrap()
    };
    assert_eq!(write(100, 999, id(9)).await, 0, "older: ignored");
    assert_eq!(
        write(110, 1000, id(4)).await,
        0,
        "same time, smaller id: ignored"
    );
    assert_eq!(
        write(120, 1000, id(6)).await,
        1,
        "same time, larger id: applied"
    );
    assert_eq!(write(130, 2000, id(1)).await, 1, "newer: applied");
    let cents: i64 = client
        .query_one("SELECT cents FROM prices", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(cents, 130);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_concurrent_copy_with_a_lock_timeout_gets_a_retryable_error() {
    let Some(config) = fresh_database().await else {
        return;
    };
    let (started, first_started) = tokio::sync::oneshot::channel();
    let (release, go) = tokio::sync::oneshot::channel();
    let first = copy_of(
        connect(&config).await,
        IsolationLevel::ReadCommitted,
        id(8),
        started,
        go,
        true,
    );
    first_started.await.unwrap();
    let mut client = connect(&config).await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL lock_timeout = '100ms'")
        .await
        .unwrap();
    let second = apply_once_async(&tx, id(8), b"tea", async { pg_insert(&tx, "tea").await }).await;
    match second {
        Err(TestError::Sync(message, transient)) => {
            assert!(transient, "{message}");
            assert!(message.contains("concurrent request; retry"), "{message}");
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
    drop(tx);
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap(), Ok(Applied::Fresh(1)));
    assert_eq!(Postgres(connect(&config).await).names().await, ["tea"]);
}
