//! Several services on one SQLite queue file: two services in one process, and two real
//! processes (this test binary, re-run with a role in its environment). Each writer queues
//! its calls offline, then all replay at once. Every call must reach the server once, and
//! each writer's calls in the order they were made.
//!
//! The "server" is a SQLite file of its own: every request is logged in `sends`, and the
//! change (a row in `applied`) goes through `server::apply_once`, as a real server would.

use futures::executor::block_on;
use rusqlite::{Connection, TransactionBehavior};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use sync_runtime::server::{self, apply_once};
use sync_runtime::store::SqliteStore;
use sync_runtime::{
    offline_action, ActionContext, ClassifyError, ManualConnectivity, ReplayLock, ReplayReport,
    SyncError, SyncService, TokioExecutor,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("server database: {0}")]
    Server(#[from] rusqlite::Error),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        !matches!(self, AppError::Sync(SyncError::Queued { .. }))
    }
}

/// Where the server keeps its data, and how it behaves; attached to each client service.
#[derive(Clone, Debug)]
struct Server {
    path: PathBuf,
    /// Each request takes this long.
    slow: Option<Duration>,
    /// After applying this (writer, n), the request hangs: the process is about to be killed.
    hang_at: Option<(usize, usize)>,
}

impl Server {
    fn new(path: PathBuf) -> Self {
        let db = Connection::open(&path).unwrap();
        db.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .unwrap();
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS sends (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 id TEXT NOT NULL, writer INTEGER NOT NULL, n INTEGER NOT NULL,
                 pid INTEGER NOT NULL, at_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS applied (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 writer INTEGER NOT NULL, n INTEGER NOT NULL);",
        )
        .unwrap();
        server::migrate(&db).unwrap();
        Self {
            path,
            slow: None,
            hang_at: None,
        }
    }

    fn apply(&self, writer: usize, n: usize) -> Result<(), AppError> {
        let id = ActionContext::current().expect("in an action").id();
        let mut db = Connection::open(&self.path)?;
        db.busy_timeout(Duration::from_secs(30))?;
        // A test server: durability across power loss does not matter, speed does.
        db.pragma_update(None, "synchronous", "OFF")?;
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO sends (id, writer, n, pid, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                id.to_string(),
                sql(writer),
                sql(n),
                std::process::id(),
                now_ms()
            ],
        )?;
        apply_once(&tx, id, |tx| -> Result<(), AppError> {
            tx.execute(
                "INSERT INTO applied (writer, n) VALUES (?1, ?2)",
                rusqlite::params![sql(writer), sql(n)],
            )?;
            Ok(())
        })?;
        tx.commit()?;
        if self.hang_at == Some((writer, n)) {
            println!("APPLIED {writer} {n}");
            std::thread::sleep(Duration::from_secs(600));
        }
        if let Some(slow) = self.slow {
            std::thread::sleep(slow);
        }
        Ok(())
    }

    /// Every request, in arrival order: (writer, n, pid, at_ms).
    fn sends(&self) -> Vec<(usize, usize, u32, i64)> {
        let db = Connection::open(&self.path).unwrap();
        let mut statement = db
            .prepare("SELECT writer, n, pid, at_ms FROM sends ORDER BY seq")
            .unwrap();
        statement
            .query_map([], |row| {
                Ok((
                    number(row.get(0)?),
                    number(row.get(1)?),
                    row.get(2)?,
                    row.get(3)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The calls applied, in the order the server applied them: (writer, n).
    fn applied(&self) -> Vec<(usize, usize)> {
        let db = Connection::open(&self.path).unwrap();
        let mut statement = db
            .prepare("SELECT writer, n FROM applied ORDER BY seq")
            .unwrap();
        statement
            .query_map([], |row| Ok((number(row.get(0)?), number(row.get(1)?))))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

fn sql(number: usize) -> i64 {
    i64::try_from(number).unwrap()
}

fn number(sql: i64) -> usize {
    usize::try_from(sql).unwrap()
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Call `n` of `writer`.
#[offline_action]
pub async fn record(writer: usize, n: usize) -> Result<(), AppError> {
    let cx = ActionContext::current().expect("in an action");
    let server = cx
        .service()
        .extension::<Server>()
        .expect("a server")
        .clone();
    server.apply(writer, n)
}

/// A client on the queue file `db`, offline until its connectivity says otherwise.
fn client(db: &Path, server: &Server) -> (SyncService, ManualConnectivity) {
    let net = ManualConnectivity::new(false);
    let service = SyncService::builder()
        .store(SqliteStore::open(db).expect("the queue opens"))
        .connectivity(net.clone())
        .extension(server.clone())
        .build()
        .expect("service builds");
    (service, net)
}

fn enqueue(service: &SyncService, writer: usize, calls: usize) {
    for n in 0..calls {
        let err = block_on(service.scope(record(writer, n))).unwrap_err();
        assert!(
            matches!(err, AppError::Sync(SyncError::Queued { .. })),
            "{err}"
        );
    }
}

/// Checks that every call of every writer was applied once, in the order it was made
/// (`calls[w]` calls by writer `w`), and returns how many requests the server received beyond
/// one per call. Also prints whether each writer's requests arrived in order, as a server
/// without `apply_once` would apply them.
fn check_once_in_order(server: &Server, calls: &[usize]) -> usize {
    let applied = server.applied();
    let sends = server.sends();
    let total: usize = calls.iter().sum();
    println!(
        "requests {}, applied {}, expected {total}",
        sends.len(),
        applied.len(),
    );
    let mut ordered = true;
    for (writer, &count) in calls.iter().enumerate() {
        let expected: Vec<usize> = (0..count).collect();
        let of_writer = |calls: &mut dyn Iterator<Item = (usize, usize)>| -> Vec<usize> {
            calls
                .filter(|(w, _)| *w == writer)
                .map(|(_, n)| n)
                .collect()
        };
        let mine = of_writer(&mut applied.iter().copied());
        let requests = of_writer(&mut sends.iter().map(|&(w, n, _, _)| (w, n)));
        println!(
            "writer {writer}: {} applied, in order: {}; {} requests, in order: {}",
            mine.len(),
            mine == expected,
            requests.len(),
            requests == expected
        );
        ordered &= mine == expected;
    }
    assert_eq!(applied.len(), total, "each call applied once");
    assert!(ordered, "each writer's calls applied in order");
    sends.len() - applied.len()
}

/// Two services on one file (two windows of a desktop app), each with 1,500 queued calls,
/// replay at the same time, each until it sees nothing left.
#[test]
fn two_services_on_one_file_replay_each_call_once_in_order() {
    const CALLS: usize = 1500;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.sqlite3");
    let server = Server::new(dir.path().join("server.sqlite3"));
    let services: Vec<_> = (0..2).map(|_| client(&db, &server)).collect();
    for (writer, (service, _)) in services.iter().enumerate() {
        enqueue(service, writer, CALLS);
    }

    let start = Arc::new(Barrier::new(2));
    let threads: Vec<_> = services
        .into_iter()
        .map(|(service, net)| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                net.set_online(true);
                start.wait();
                let mut reports = Vec::new();
                loop {
                    let report = block_on(service.replay()).expect("replay runs");
                    if !report.replayed_elsewhere {
                        println!("replay: {report:?}");
                    }
                    let done = report.remaining == 0 && !report.already_running;
                    reports.push(report);
                    if done {
                        return reports;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    let reports: Vec<Vec<ReplayReport>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        check_once_in_order(&server, &[CALLS, CALLS]),
        0,
        "nothing sent twice"
    );
    let synced: usize = reports.iter().flatten().map(|r| r.synced).sum();
    assert_eq!(synced, 2 * CALLS, "each call synced by one of them");
    assert!(
        reports
            .iter()
            .flatten()
            .any(|r| r.replayed_elsewhere && r.already_running && r.remaining > 0),
        "one of them was told the other replays, and what still waits"
    );
}

/// Two services with background drivers on one file: going online starts both drivers at
/// once; one replays, the other sees "replayed elsewhere" and waits until the queue is empty.
#[test]
fn two_background_drivers_on_one_file_replay_each_call_once_in_order() {
    const CALLS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.sqlite3");
    let mut server = Server::new(dir.path().join("server.sqlite3"));
    server.slow = Some(Duration::from_millis(1));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let elsewhere = runtime.block_on(async {
        let clients: Vec<(SyncService, ManualConnectivity)> = (0..2)
            .map(|_| {
                let net = ManualConnectivity::new(false);
                let service = SyncService::builder()
                    .store(SqliteStore::open(&db).unwrap())
                    .connectivity(net.clone())
                    .executor(TokioExecutor::current().unwrap())
                    .extension(server.clone())
                    .build()
                    .unwrap();
                (service, net)
            })
            .collect();
        for (writer, (service, _)) in clients.iter().enumerate() {
            for n in 0..CALLS {
                service.scope(record(writer, n)).await.unwrap_err();
            }
        }
        let statuses: Vec<_> = clients.iter().map(|(s, _)| s.subscribe()).collect();
        for (_, net) in &clients {
            net.set_online(true);
        }
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let mut idle = true;
                for (service, _) in &clients {
                    let status = service.refresh_status().await.unwrap();
                    idle &= status.pending == 0 && !status.syncing;
                }
                if idle {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("both services see an empty queue");
        let mut elsewhere = Vec::new();
        for (mut stream, (service, _)) in statuses.into_iter().zip(&clients) {
            let mut seen = false;
            while let Some(Some(status)) =
                futures::FutureExt::now_or_never(futures::StreamExt::next(&mut stream))
            {
                seen |= status.replaying_elsewhere;
            }
            assert!(!service.status().replaying_elsewhere, "cleared at the end");
            elsewhere.push(seen);
        }
        elsewhere
    });
    assert_eq!(
        check_once_in_order(&server, &[CALLS, CALLS]),
        0,
        "nothing sent twice"
    );
    assert!(
        elsewhere.iter().any(|&seen| seen),
        "one service's status said another replays: {elsewhere:?}"
    );
}

/// While another service replays the shared queue, this one's new calls do not overtake
/// the calls waiting there: they take the local path and are queued behind them, and calls go
/// online again once the queue is empty.
#[test]
fn calls_made_while_another_service_replays_wait_their_turn() {
    const CALLS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.sqlite3");
    let mut server = Server::new(dir.path().join("server.sqlite3"));
    server.slow = Some(Duration::from_millis(5));
    let (holder, holder_net) = client(&db, &server);
    enqueue(&holder, 0, CALLS);
    let (other, other_net) = client(&db, &server);
    other_net.set_online(true);
    holder_net.set_online(true);

    let replaying = std::thread::spawn({
        let holder = holder.clone();
        move || block_on(holder.replay()).expect("replay runs")
    });
    while !holder.status().syncing {
        std::thread::sleep(Duration::from_millis(1));
    }
    let err = block_on(other.scope(record(1, 0))).unwrap_err();
    assert!(
        matches!(err, AppError::Sync(SyncError::Queued { .. })),
        "queued behind the calls waiting, not sent ahead of them: {err}"
    );
    let status = other.status();
    assert!(
        status.replaying_elsewhere && !status.syncing && status.pending > 1,
        "{status:?}"
    );

    let report = replaying.join().unwrap();
    assert_eq!(
        report.synced,
        CALLS + 1,
        "the holder replayed the later call too"
    );
    block_on(other.scope(record(1, 1))).expect("online again once the queue is empty");
    let status = other.status();
    assert!(
        !status.replaying_elsewhere && status.pending == 0,
        "{status:?}"
    );
    assert_eq!(check_once_in_order(&server, &[CALLS, 2]), 0);
}

/// A service told to replay without a lock does, even while another holds the store's lock.
#[test]
fn without_replay_lock_a_service_replays_regardless() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.sqlite3");
    let server = Server::new(dir.path().join("server.sqlite3"));
    let (service, _) = client(&db, &server);
    enqueue(&service, 0, 3);
    let store = SqliteStore::open(&db).unwrap();
    let lock = store.file_replay_lock().unwrap().clone();
    let (release, released) = futures::channel::oneshot::channel::<()>();
    let mut held = lock.run_exclusive(Box::pin(async move {
        let _ = released.await;
    }));
    assert!(futures::FutureExt::now_or_never(&mut held).is_none());

    let locked = SyncService::builder()
        .store(SqliteStore::open(&db).unwrap())
        .extension(server.clone())
        .build()
        .unwrap();
    let report = block_on(locked.replay()).unwrap();
    assert!(
        report.replayed_elsewhere && report.remaining == 3,
        "{report:?}"
    );

    let unlocked = SyncService::builder()
        .store(store)
        .without_replay_lock()
        .extension(server.clone())
        .build()
        .unwrap();
    let report = block_on(unlocked.replay()).unwrap();
    assert_eq!((report.synced, report.replayed_elsewhere), (3, false));
    let _ = release.send(());
    assert!(block_on(held));
    assert_eq!(check_once_in_order(&server, &[3]), 0);
}

// ---- Two real processes --------------------------------------------------------------------

/// A replay lock another holder has all along: it refuses every replay and counts the
/// attempts. The first attempt takes a while, as a real lock's first use may.
#[derive(Clone, Default)]
struct HeldElsewhere {
    attempts: Arc<std::sync::atomic::AtomicUsize>,
}

impl ReplayLock for HeldElsewhere {
    fn run_exclusive(
        &self,
        _work: sync_runtime::BoxFuture<'static, ()>,
    ) -> sync_runtime::BoxFuture<'static, bool> {
        let first = self
            .attempts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            == 0;
        sync_runtime::boxed(async move {
            if first {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        })
    }
}

/// A call queued while the background driver is busy leaves it a trigger to serve. While
/// another service holds the replay lock, nothing of this service's clears that trigger: the
/// driver must serve it once and stop, not go round without end (which hogged a thread, and
/// with two such services on a two-thread runtime starved the lock's holder for good).
#[test]
fn a_driver_refused_the_replay_lock_goes_round_once_not_forever() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let lock = HeldElsewhere::default();
    let attempts = runtime.block_on(async {
        let service = SyncService::builder()
            .connectivity(ManualConnectivity::new(false))
            .replay_lock(lock.clone())
            .executor(TokioExecutor::current().unwrap())
            .build()
            .expect("service builds");
        // The driver started with the service is in its first, slow, attempt.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let err = service.scope(record(0, 0)).await.unwrap_err();
        assert!(
            matches!(err, AppError::Sync(SyncError::Queued { .. })),
            "{err}"
        );
        // Waited on another thread: a worker that never yields must not stall the wait.
        tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(500)))
            .await
            .unwrap();
        lock.attempts.load(std::sync::atomic::Ordering::SeqCst)
    });
    // A driver that never awaits would keep a worker busy: do not wait for it.
    runtime.shutdown_background();
    assert!(
        attempts <= 3,
        "the driver tried the lock {attempts} times in half a second"
    );
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The child process: does nothing unless the parent test set its role.
#[test]
fn child_process() {
    let Some(role) = env("SHARED_QUEUE_ROLE") else {
        return;
    };
    let db = PathBuf::from(env("SHARED_QUEUE_DB").unwrap());
    let mut server = Server {
        path: PathBuf::from(env("SHARED_QUEUE_SERVER").unwrap()),
        slow: env("SHARED_QUEUE_SLOW_MS").map(|ms| Duration::from_millis(ms.parse().unwrap())),
        hang_at: None,
    };
    if let Some(at) = env("SHARED_QUEUE_HANG_AT") {
        let (writer, n) = at.split_once(' ').unwrap();
        server.hang_at = Some((writer.parse().unwrap(), n.parse().unwrap()));
    }
    match role.as_str() {
        "enqueue" => {
            let writer = env("SHARED_QUEUE_WRITER").unwrap().parse().unwrap();
            let calls = env("SHARED_QUEUE_CALLS").unwrap().parse().unwrap();
            enqueue(&client(&db, &server).0, writer, calls);
        }
        "replay" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_time()
                .build()
                .unwrap();
            runtime.block_on(async {
                let service = SyncService::builder()
                    .store(SqliteStore::open(&db).unwrap())
                    .connectivity(ManualConnectivity::new(true))
                    .executor(TokioExecutor::current().unwrap())
                    .extension(server)
                    .build()
                    .unwrap();
                let mut said_elsewhere = false;
                loop {
                    let status = service.refresh_status().await.unwrap();
                    if status.replaying_elsewhere && !said_elsewhere {
                        println!("ELSEWHERE pending={}", status.pending);
                        said_elsewhere = true;
                    }
                    if status.pending == 0 && !status.syncing {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                println!("DONE");
            });
        }
        other => panic!("unknown role {other}"),
    }
}

/// A child process of this test binary, its stdout read line by line on a thread.
struct ChildProcess {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ChildProcess {
    fn start(dir: &Path, role: &str, extra: &[(&str, String)]) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SHARED_QUEUE_ROLE", role)
            .env("SHARED_QUEUE_DB", dir.join("queue.sqlite3"))
            .env("SHARED_QUEUE_SERVER", dir.join("server.sqlite3"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in extra {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the child starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for a line with `marker` (libtest may print the first line after its own
    /// `test child_process ... `), and returns it from the marker on.
    fn expect(&self, marker: &str, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(marker) => {
                    return line[line.find(marker).unwrap_or(0)..].to_owned();
                }
                Ok(_) => {}
                Err(e) => panic!("no `{marker}` line from the child within {within:?}: {e}"),
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn finish(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the child failed: {status}");
    }
}

impl Drop for ChildProcess {
    /// A failed test leaves no child behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both writers queue their calls at the same time, each in its own process.
fn enqueue_in_two_processes(dir: &Path, calls: usize) {
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            ChildProcess::start(
                dir,
                "enqueue",
                &[
                    ("SHARED_QUEUE_WRITER", writer.to_string()),
                    ("SHARED_QUEUE_CALLS", calls.to_string()),
                ],
            )
        })
        .collect();
    for writer in writers {
        writer.finish();
    }
}

/// Two instances of one program on the same default file, each with its own calls queued,
/// replay at the same time.
#[cfg(unix)]
#[test]
fn two_processes_on_one_file_replay_each_call_once_in_order() {
    const CALLS: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::new(dir.path().join("server.sqlite3"));
    enqueue_in_two_processes(dir.path(), CALLS);
    let replayers: Vec<_> = (0..2)
        .map(|_| ChildProcess::start(dir.path(), "replay", &[]))
        .collect();
    for replayer in replayers {
        replayer.expect("DONE", Duration::from_secs(120));
        replayer.finish();
    }
    assert_eq!(
        check_once_in_order(&server, &[CALLS, CALLS]),
        0,
        "nothing sent twice"
    );
}

/// The process that replays is killed (SIGKILL) right after the server applied a call and
/// before it could mark it done; the other process, waiting on the lock, takes over the rest
/// of the queue. Only the call in flight is sent again, and `apply_once` absorbs it.
#[cfg(unix)]
#[test]
fn a_replayer_killed_mid_replay_is_taken_over_by_the_other_process() {
    const CALLS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::new(dir.path().join("server.sqlite3"));
    enqueue_in_two_processes(dir.path(), CALLS);

    let holder = ChildProcess::start(
        dir.path(),
        "replay",
        &[("SHARED_QUEUE_HANG_AT", format!("0 {}", CALLS / 2))],
    );
    holder.expect("APPLIED", Duration::from_secs(120));
    let waiter = ChildProcess::start(dir.path(), "replay", &[]);
    let seen = waiter.expect("ELSEWHERE", Duration::from_secs(60));
    println!("the waiting process: {seen}");

    let mut holder = holder;
    let killed_at = now_ms();
    holder.child.kill().expect("SIGKILL");
    assert!(
        !holder.child.wait().unwrap().success(),
        "the holder was killed"
    );
    waiter.expect("DONE", Duration::from_secs(120));
    let waiter_pid = waiter.pid();
    waiter.finish();

    let sends = server.sends();
    let first_after = sends
        .iter()
        .find(|&&(_, _, pid, _)| pid == waiter_pid)
        .map(|&(_, _, _, at)| at)
        .expect("the waiting process sent the rest");
    let takeover = first_after.saturating_sub(killed_at);
    println!("takeover after SIGKILL: {takeover} ms");
    assert!(
        takeover < 5_000,
        "took over within the look-again time: {takeover} ms"
    );
    let mut sent_twice: Vec<_> = sends.iter().map(|&(w, n, _, _)| (w, n)).collect();
    sent_twice.sort_unstable();
    let sent_twice: Vec<_> = sent_twice
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
        .collect();
    assert_eq!(
        sent_twice,
        [(0, CALLS / 2)],
        "only the call in flight at the kill was sent again"
    );
    assert_eq!(check_once_in_order(&server, &[CALLS, CALLS]), 1);
}
