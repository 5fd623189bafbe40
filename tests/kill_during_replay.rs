//! Kills a real process (SIGKILL) in the middle of replaying a SQLite-backed queue, restarts
//! it, and checks that every action reached the server exactly once, in order.
//!
//! The client runs as a child process (this same test binary, re-run with a role in its
//! environment). The "server" records applied action ids in a file of its own and answers a
//! repeated id with the stored result: an idempotency key check, as a real server would do.
#![cfg(unix)]

use futures::executor::block_on;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use sync_runtime::store::SqliteStore;
use sync_runtime::{
    offline_action, ActionContext, ClassifyError, ManualConnectivity, SyncError, SyncService,
};

const ACTIONS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("server i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        true
    }
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).expect("set by the parent test"))
}

/// Appends `n` to the server's log once per action id.
#[offline_action]
pub async fn record(n: usize) -> Result<usize, AppError> {
    let id = ActionContext::current()
        .expect("in an action")
        .id()
        .to_string();
    let log = env_path("KILL_TEST_SERVER_LOG");
    let seen = fs::read_to_string(&log).unwrap_or_default();
    if !seen.lines().any(|line| line.starts_with(&id)) {
        let mut file = OpenOptions::new().create(true).append(true).open(&log)?;
        writeln!(file, "{id} {n}")?;
        file.sync_all()?;
    }
    // The crash window that matters: applied on the server, not yet marked done locally.
    if std::env::var("KILL_TEST_HANG_AT")
        .ok()
        .and_then(|v| v.parse().ok())
        == Some(n)
    {
        println!("APPLIED {n}");
        std::io::stdout().flush()?;
        std::thread::sleep(Duration::from_secs(600));
    }
    if let Some(ms) = std::env::var("KILL_TEST_SLOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    Ok(n)
}

fn client(online: bool) -> SyncService {
    let store = SqliteStore::open(env_path("KILL_TEST_DB")).expect("the database opens");
    SyncService::builder()
        .store(store)
        .connectivity(ManualConnectivity::new(online))
        .build()
        .expect("service builds")
}

/// The child process. Does nothing unless the parent test set its role.
#[test]
fn child_process() {
    match std::env::var("KILL_TEST_ROLE").as_deref() {
        Ok("enqueue") => {
            let service = client(false);
            for n in 0..ACTIONS {
                let err = block_on(service.scope(record(n))).unwrap_err();
                assert!(
                    matches!(err, AppError::Sync(SyncError::Queued { .. })),
                    "{err}"
                );
            }
        }
        Ok("replay") => {
            let service = client(true);
            let report = block_on(service.replay()).expect("replay runs");
            println!(
                "DONE synced={} remaining={}",
                report.synced, report.remaining
            );
        }
        _ => {}
    }
}

fn run_child(dir: &Path, role: &str, extra: &[(&str, String)]) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KILL_TEST_ROLE", role)
        .env("KILL_TEST_DB", dir.join("client.sqlite3"))
        .env("KILL_TEST_SERVER_LOG", dir.join("server.log"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in extra {
        command.env(key, value);
    }
    command.spawn().expect("the child starts")
}

/// Runs a replay child and SIGKILLs it as soon as its stdout shows `marker`.
fn replay_and_kill_at(dir: &Path, marker: &str, extra: &[(&str, String)]) {
    let mut child = run_child(dir, "replay", extra);
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.contains(marker) {
            break;
        }
        assert!(
            !line.starts_with("DONE"),
            "the child finished before the kill: {line}"
        );
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed");
}

fn server_log(dir: &Path) -> Vec<usize> {
    fs::read_to_string(dir.join("server.log"))
        .unwrap_or_default()
        .lines()
        .map(|line| line.split(' ').nth(1).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn sigkill_during_replay_then_restart_applies_each_action_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let status = run_child(dir.path(), "enqueue", &[]).wait().unwrap();
    assert!(status.success(), "the enqueue child succeeded");

    // Killed right after the server applied action 5 but before the client recorded it.
    replay_and_kill_at(
        dir.path(),
        "APPLIED 5",
        &[("KILL_TEST_HANG_AT", "5".into())],
    );
    assert_eq!(server_log(dir.path()), (0..=5).collect::<Vec<_>>());

    // Killed again, after action 17.
    replay_and_kill_at(
        dir.path(),
        "APPLIED 17",
        &[("KILL_TEST_HANG_AT", "17".into())],
    );
    assert_eq!(server_log(dir.path()), (0..=17).collect::<Vec<_>>());

    // Killed at an arbitrary moment of a slow replay.
    let mut child = run_child(dir.path(), "replay", &[("KILL_TEST_SLOW_MS", "20".into())]);
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap();
    child.wait().unwrap();

    // The last run finishes the queue.
    let output = run_child(dir.path(), "replay", &[])
        .wait_with_output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("remaining=0"), "{stdout}");

    assert_eq!(
        server_log(dir.path()),
        (0..ACTIONS).collect::<Vec<_>>(),
        "every action applied exactly once, in the order it was made"
    );
}
