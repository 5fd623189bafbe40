//! Row 4 of BENCHMARKS.md: replay memory stays flat as the queue grows.
//!
//! For each queue size, two fresh child processes of this binary:
//! 1. `fill`: opens a SQLite store and queues `size` calls of a no-op action, one
//!    `Store::apply` (one transaction) per call, as offline calls do; or, with
//!    `BENCH_RAW_FILL=1`, with plain SQL `INSERT`s into the store's queue table in one
//!    transaction (faster; the rows are the same);
//! 2. `replay`: opens the store, builds the service, reads its peak RSS (`VmHWM` in
//!    `/proc/self/status`), replays the whole queue against the no-op action (in process, no
//!    network), and reads the peak RSS again.
//!
//! Run: `cargo bench --bench replay_memory` (sizes 1k, 100k, 1M; `BENCH_SIZES=1000,100000`
//! to choose). Linux only (it reads `/proc`).

use futures::executor::block_on;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use sync_runtime::store::{Batch, NewQueued, SqliteStore};
use sync_runtime::{
    offline_action, ActionId, ActionKind, ClassifyError, ManualConnectivity, Store, SyncError,
    SyncService, Timestamp,
};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("network")]
    Network,
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for BenchError {
    fn is_transient(&self) -> bool {
        matches!(self, BenchError::Network)
    }
}

/// What replay runs for each queued call: nothing, so only the runtime's memory shows.
#[offline_action]
pub async fn noop(n: u64, text: String) -> Result<(), BenchError> {
    let _ = (n, text);
    Ok(())
}

const TEXT: &str =
    "Call the supplier about the late delivery of shirts, then update the stock counts.";

fn params(n: u64) -> String {
    serde_json::json!({ "n": n, "text": TEXT }).to_string()
}

fn now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// `VmHWM` (peak resident set) and `VmRSS`, in KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn fill(path: &Path, size: u64, raw: bool) {
    let start = Instant::now();
    let store = SqliteStore::open(path).expect("open the store");
    let timestamp = now();
    if raw {
        drop(store);
        let mut connection = rusqlite::Connection::open(path).expect("open");
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .expect("synchronous");
        let tx = connection.transaction().expect("begin");
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO queue (id, name, version, kind, params, timestamp, retries, next_attempt_at, last_error) \
                     VALUES (?1, 'noop', 1, 'mutation', ?2, ?3, 0, ?3, NULL)",
                )
                .expect("prepare");
            for n in 0..size {
                let id = uuid::Uuid::now_v7().to_string();
                let ts = i64::try_from(timestamp.0).unwrap_or(i64::MAX);
                insert
                    .execute(rusqlite::params![id, params(n), ts])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    } else {
        block_on(async {
            for n in 0..size {
                let mut batch = Batch::new();
                batch.enqueue = Some(NewQueued {
                    id: ActionId(uuid::Uuid::now_v7()),
                    name: "noop".to_owned(),
                    version: 1,
                    kind: ActionKind::Mutation,
                    params: params(n),
                    timestamp,
                    queued_at: timestamp,
                    scope: String::new(),
                });
                store.apply(batch).await.expect("enqueue");
            }
        });
    }
    println!("fill_seconds={:.3}", start.elapsed().as_secs_f64());
}

fn replay(path: &Path) {
    let service = SyncService::builder()
        .store(SqliteStore::open(path).expect("open the store"))
        .connectivity(ManualConnectivity::new(true))
        .build()
        .expect("no duplicate action names");
    let pending = block_on(service.refresh_status()).expect("counts").pending;
    let (before_hwm, before_rss) = memory();
    let start = Instant::now();
    let report = block_on(service.replay()).expect("replay");
    let seconds = start.elapsed().as_secs_f64();
    let (after_hwm, after_rss) = memory();
    assert_eq!(report.synced as u64, pending, "every queued call replayed");
    assert_eq!(report.remaining, 0);
    println!("pending={pending}");
    println!("replay_seconds={seconds:.3}");
    println!("hwm_before_kib={before_hwm}");
    println!("rss_before_kib={before_rss}");
    println!("hwm_after_kib={after_hwm}");
    println!("rss_after_kib={after_rss}");
}

fn child(args: &[&str]) -> Vec<(String, String)> {
    let exe = std::env::current_exe().expect("this binary");
    let output = Command::new(exe)
        .arg("--child")
        .args(args)
        .output()
        .expect("run the child");
    assert!(
        output.status.success(),
        "child {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn value(pairs: &[(String, String)], key: &str) -> f64 {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let path = PathBuf::from(&args[at + 2]);
        match args[at + 1].as_str() {
            "fill" => fill(
                &path,
                args[at + 3].parse().expect("size"),
                args.get(at + 4).is_some_and(|a| a == "raw"),
            ),
            "replay" => replay(&path),
            other => panic!("unknown child mode {other}"),
        }
        return;
    }
    let full = args.iter().any(|a| a == "--bench");
    let sizes: Vec<u64> = match std::env::var("BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|s| s.trim().parse().expect("BENCH_SIZES: numbers"))
            .collect(),
        Err(_) if full => vec![1_000, 100_000, 1_000_000],
        Err(_) => vec![200],
    };
    let raw_fill = std::env::var("BENCH_RAW_FILL").is_ok_and(|v| v == "1");
    let dir = tempfile::tempdir().expect("temp dir");
    if full {
        println!(
            "\n## replay memory (fill: {})",
            if raw_fill {
                "raw SQL, one transaction"
            } else {
                "Store::apply, one transaction per call"
            }
        );
        println!(
            "  {:>9}  {:>8}  {:>9}  {:>11}  {:>15}  {:>14}  {:>14}",
            "queued",
            "fill s",
            "replay s",
            "replays/s",
            "peak RSS before",
            "peak RSS after",
            "RSS after"
        );
    }
    let mut peaks = Vec::new();
    for &size in &sizes {
        let path = dir.path().join(format!("queue-{size}.sqlite3"));
        let size_arg = size.to_string();
        let path_arg = path.to_string_lossy().into_owned();
        let mut fill_args = vec!["fill", path_arg.as_str(), size_arg.as_str()];
        if raw_fill {
            fill_args.push("raw");
        }
        let filled = child(&fill_args);
        let replayed = child(&["replay", path_arg.as_str()]);
        assert_eq!(value(&replayed, "pending") as u64, size);
        let seconds = value(&replayed, "replay_seconds");
        let after = value(&replayed, "hwm_after_kib");
        peaks.push((size, after));
        if full {
            println!(
                "  {:>9}  {:>8.1}  {:>9.1}  {:>11.0}  {:>11.1} MiB  {:>10.1} MiB  {:>10.1} MiB",
                size,
                value(&filled, "fill_seconds"),
                seconds,
                size as f64 / seconds,
                value(&replayed, "hwm_before_kib") / 1024.0,
                after / 1024.0,
                value(&replayed, "rss_after_kib") / 1024.0,
            );
        }
        let _ = std::fs::remove_file(&path);
    }
    if full {
        for pair in peaks.windows(2) {
            let ((small, a), (large, b)) = (pair[0], pair[1]);
            println!(
                "  => peak RSS from {small} to {large} queued: {:+.1}% (target for 100k -> 1M: < +10%)",
                (b / a - 1.0) * 100.0
            );
        }
    } else {
        println!("replay memory: smoke test passed");
    }
}
