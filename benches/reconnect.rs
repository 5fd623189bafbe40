//! Row 7 of BENCHMARKS.md: how soon replay starts when the connection comes back.
//!
//! The time from the connectivity change (`ManualConnectivity::set_online(true)`) to the
//! first replayed request reaching the action's body, with background replay on a tokio
//! runtime (`TokioExecutor`), on a SQLite store in a temporary file:
//!
//! - after backoff: the head of the queue failed transiently just before the connection
//!   dropped and is waiting out a 5-minute backoff; the change must cut it short.
//! - baseline (same run): the head was queued offline and never failed, so nothing waits.
//!
//! Median of `BENCH_ROUNDS` (default 50) reconnections each. Target: ≤ 50 ms.
//! Run: `cargo bench --bench reconnect`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use sync_runtime::{
    offline_action, ClassifyError, ManualConnectivity, RetryPolicy, SqliteStore, SyncError,
    SyncService,
};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the server is unreachable")]
    Unreachable,
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for BenchError {
    fn is_transient(&self) -> bool {
        matches!(self, BenchError::Unreachable)
    }
}

/// The next request fails (transiently).
static FAIL_NEXT: AtomicBool = AtomicBool::new(false);
/// When the last request reached the body.
static REACHED: Mutex<Option<Instant>> = Mutex::new(None);

#[offline_action(local = ping_locally)]
pub async fn ping(n: u64) -> Result<u64, BenchError> {
    if FAIL_NEXT.swap(false, Ordering::SeqCst) {
        return Err(BenchError::Unreachable);
    }
    REACHED.lock().unwrap().get_or_insert_with(Instant::now);
    Ok(n)
}

async fn ping_locally(n: u64) -> Result<u64, BenchError> {
    Ok(n)
}

/// One reconnection: queues a call offline (after a failed attempt if `backoff`), reconnects,
/// and returns the time until the replayed request reached the body.
async fn reconnect_once(
    service: &SyncService,
    net: &ManualConnectivity,
    backoff: bool,
) -> Duration {
    net.set_online(false);
    service.scope(ping(1)).await.expect("answered locally");
    if backoff {
        // Online for one attempt that fails: the head now waits out its backoff.
        FAIL_NEXT.store(true, Ordering::SeqCst);
        net.set_online(true);
        while FAIL_NEXT.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(service.status().pending, 1, "the failed head waits");
        net.set_online(false);
    }
    *REACHED.lock().unwrap() = None;
    let changed = Instant::now();
    net.set_online(true);
    let deadline = changed + Duration::from_secs(10);
    loop {
        let reached = *REACHED.lock().unwrap();
        if let Some(reached) = reached {
            // Let the replay finish before the next round.
            while service.status().pending > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            return reached - changed;
        }
        assert!(
            Instant::now() < deadline,
            "no replay within 10 s of reconnecting"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full {
        std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(50)
    } else {
        3
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (after_backoff, baseline) = runtime.block_on(async {
        let net = ManualConnectivity::new(false);
        let service = SyncService::builder()
            .store(SqliteStore::open(dir.path().join("reconnect.sqlite3")).expect("store"))
            .connectivity(net.clone())
            .retry_policy(RetryPolicy {
                initial_backoff: Duration::from_secs(300),
                jitter: 0.0,
                ..RetryPolicy::default()
            })
            .executor(sync_runtime::TokioExecutor::current().expect("runtime"))
            .build()
            .expect("service");
        let (mut after_backoff, mut baseline) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which goes first, so drift in the machine's load hits both alike.
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for backoff in order {
                let took = reconnect_once(&service, &net, backoff).await;
                if backoff {
                    after_backoff.push(took);
                } else {
                    baseline.push(took);
                }
            }
        }
        (after_backoff, baseline)
    });
    let (ours, base) = (median(after_backoff), median(baseline));
    println!("reconnect → first replayed request ({rounds} rounds, median):");
    println!("  head waiting out a 5-minute backoff: {ours:?}");
    println!("  baseline, head never failed:         {base:?}");
    println!(
        "  ratio: {:.2}x; target ≤ 50 ms: {}",
        ours.as_secs_f64() / base.as_secs_f64().max(1e-9),
        if ours <= Duration::from_millis(50) {
            "met"
        } else {
            "missed"
        }
    );
}
