//! Row 6 of BENCHMARKS.md: queueing offline and replaying in a real browser, over IndexedDB,
//! against raw rexie code doing the same by hand. Ignored in the normal browser test run;
//! run it with (after `source scripts/wasm-toolchain.sh`):
//!
//! ```sh
//! CARGO_TARGET_DIR=target/wasm cargo +debweb test -p sync-runtime --release \
//!     --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort \
//!     --test web_bench -- --include-ignored --nocapture
//! ```
//!
//! - enqueue, ours: an `#[offline_action]` called offline: the generated stub runs, then one
//!   `IndexedDbStore::apply` (one readwrite transaction) queues the call.
//! - enqueue, raw: one readwrite transaction per call that `add`s the same record (a fresh
//!   uuid v7, the same parameters JSON) to an auto-increment object store; once without an
//!   index, once with a unique index on the id (as the store keeps, to find a call by id).
//! - replay, ours: `SyncService::replay` against a no-op action body.
//! - replay, raw: per call, a readonly transaction reads the head, the parameters are decoded
//!   and the same no-op body runs (outside the transaction: IndexedDB commits a transaction as
//!   soon as anything else is awaited), then a readwrite transaction deletes the record.
//!
//! The variants run in interleaved rounds; each ratio is the median of the per-round ratios.
#![cfg(target_arch = "wasm32")]

use js_sys::{Object, Reflect};
use rexie::{Index, ObjectStore, Rexie, TransactionMode, TransactionResult};
use serde::{Deserialize, Serialize};
use sync_runtime::store::IndexedDbStore;
use sync_runtime::{offline_action, ClassifyError, ManualConnectivity, SyncError, SyncService};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const ROUNDS: usize = 6;
const PER_ROUND: usize = 100;
const TEXT: &str =
    "Call the supplier about the late delivery of shirts, then update the stock counts.";

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

/// The same arguments as `save_note`, for the raw variants.
#[derive(Serialize, Deserialize)]
struct SaveNote {
    id: String,
    text: String,
}

fn no_op_body(id: String, text: String) -> Result<(), BenchError> {
    let _ = (id, text);
    Ok(())
}

/// Saves a note on the server (here: does nothing). Offline it is queued.
#[offline_action]
pub async fn save_note(id: String, text: String) -> Result<(), BenchError> {
    no_op_body(id, text)
}

/// `performance.now()`, in milliseconds.
fn now() -> f64 {
    let performance = Reflect::get(&js_sys::global(), &"performance".into()).expect("performance");
    let now = Reflect::get(&performance, &"now".into()).expect("performance.now");
    js_sys::Function::from(now)
        .call0(&performance)
        .expect("call performance.now")
        .as_f64()
        .expect("a number")
}

fn fresh_name(what: &str) -> String {
    format!("bench-{what}-{}", js_sys::Date::now())
}

async fn raw_database(name: &str, indexed: bool) -> Rexie {
    let mut queue = ObjectStore::new("queue")
        .key_path("seq")
        .auto_increment(true);
    if indexed {
        queue = queue.add_index(Index::new("by_id", "id").unique(true));
    }
    Rexie::builder(name)
        .version(1)
        .add_object_store(queue)
        .build()
        .await
        .expect("open the raw database")
}

fn set(object: &Object, key: &str, value: JsValue) {
    Reflect::set(object, &key.into(), &value).expect("set a field");
}

/// The record a user queueing by hand would store: the same fields as the store's.
fn raw_record(note: &str) -> JsValue {
    let params = serde_json::to_string(&SaveNote {
        id: note.to_owned(),
        text: TEXT.to_owned(),
    })
    .expect("json");
    let now = js_sys::Date::now();
    let record = Object::new();
    set(
        &record,
        "id",
        uuid::Uuid::now_v7().to_string().as_str().into(),
    );
    set(&record, "name", "save_note".into());
    set(&record, "version", 1.into());
    set(&record, "kind", "mutation".into());
    set(&record, "params", params.as_str().into());
    set(&record, "timestamp", now.into());
    set(&record, "retries", 0.into());
    set(&record, "next_attempt_at", now.into());
    set(&record, "last_error", JsValue::NULL);
    record.into()
}

async fn raw_enqueue(db: &Rexie, note: &str) {
    let tx = db
        .transaction(&["queue"], TransactionMode::ReadWrite)
        .expect("transaction");
    let store = tx.store("queue").expect("store");
    store.add(&raw_record(note), None).await.expect("add");
    assert!(matches!(
        tx.done().await.expect("commit"),
        TransactionResult::Committed
    ));
}

/// Replays up to `limit` records by hand; returns how many.
async fn raw_drain(db: &Rexie, limit: usize) -> usize {
    let mut done = 0;
    while done < limit {
        let tx = db
            .transaction(&["queue"], TransactionMode::ReadOnly)
            .expect("transaction");
        let head = tx
            .store("queue")
            .expect("store")
            .get_all(None, Some(1))
            .await
            .expect("read the head");
        tx.done().await.expect("finish reading");
        let Some(record) = head.into_iter().next() else {
            break;
        };
        let params = Reflect::get(&record, &"params".into())
            .ok()
            .and_then(|p| p.as_string())
            .expect("params");
        let SaveNote { id, text } = serde_json::from_str(&params).expect("decode the params");
        no_op_body(id, text).expect("the body");
        let seq = Reflect::get(&record, &"seq".into()).expect("seq");
        let tx = db
            .transaction(&["queue"], TransactionMode::ReadWrite)
            .expect("transaction");
        tx.store("queue")
            .expect("store")
            .delete(seq)
            .await
            .expect("delete");
        assert!(matches!(
            tx.done().await.expect("commit"),
            TransactionResult::Committed
        ));
        done += 1;
    }
    done
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// One line: the median time per operation and the median per-round ratio to `baseline`.
fn report(name: &str, times: &[f64], baseline: &[f64]) {
    let per_op = median(times.to_vec()) / PER_ROUND as f64;
    let ratios: Vec<f64> = times.iter().zip(baseline).map(|(t, b)| t / b).collect();
    console_log!(
        "  {name:<56} {per_op:>7.3} ms/op {:>8.0} op/s  time ratio {:.3}",
        1000.0 / per_op,
        median(ratios)
    );
}

#[wasm_bindgen_test]
#[ignore = "a benchmark: run with --include-ignored (see the top of this file)"]
async fn indexeddb_enqueue_and_replay_against_raw_rexie() {
    let ours_name = fresh_name("ours");
    let plain_name = fresh_name("raw-plain");
    let indexed_name = fresh_name("raw-indexed");
    let net = ManualConnectivity::new(false);
    let service = SyncService::builder()
        .store(
            IndexedDbStore::open(&ours_name)
                .await
                .expect("open the store"),
        )
        .connectivity(net.clone())
        .build()
        .expect("no duplicate action names");
    let plain = raw_database(&plain_name, false).await;
    let indexed = raw_database(&indexed_name, true).await;

    // Warm up each path once.
    let _ = service
        .scope(save_note("warm-up".into(), TEXT.into()))
        .await;
    raw_enqueue(&plain, "warm-up").await;
    raw_enqueue(&indexed, "warm-up").await;

    let (mut ours_enqueue, mut plain_enqueue, mut indexed_enqueue) =
        (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_replay, mut raw_replay) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        net.set_online(false);
        for step in 0..3 {
            let variant = if round % 2 == 0 { step } else { 2 - step };
            let start = now();
            match variant {
                0 => {
                    service
                        .scope(async {
                            for n in 0..PER_ROUND {
                                let result = save_note(format!("note-{n}"), TEXT.into()).await;
                                assert!(matches!(
                                    result,
                                    Err(BenchError::Sync(SyncError::Queued { .. }))
                                ));
                            }
                        })
                        .await;
                    ours_enqueue.push(now() - start);
                }
                1 => {
                    for n in 0..PER_ROUND {
                        raw_enqueue(&plain, &format!("note-{n}")).await;
                    }
                    plain_enqueue.push(now() - start);
                }
                _ => {
                    for n in 0..PER_ROUND {
                        raw_enqueue(&indexed, &format!("note-{n}")).await;
                    }
                    indexed_enqueue.push(now() - start);
                }
            }
        }
        net.set_online(true);
        for step in 0..2 {
            let ours_first = round % 2 == 0;
            let start = now();
            if (step == 0) == ours_first {
                let report = service.replay().await.expect("replay");
                assert_eq!(report.synced, PER_ROUND + usize::from(round == 0));
                ours_replay.push(now() - start);
            } else {
                let limit = PER_ROUND + usize::from(round == 0);
                assert_eq!(raw_drain(&plain, limit).await, limit);
                raw_replay.push(now() - start);
            }
        }
    }

    console_log!(
        "\n## IndexedDB in headless Chromium ({ROUNDS} rounds x {PER_ROUND} calls, interleaved)"
    );
    console_log!("enqueue (one readwrite transaction per call):");
    report(
        "raw rexie add, auto-increment store",
        &plain_enqueue,
        &plain_enqueue,
    );
    report(
        "raw rexie add, auto-increment store + unique id index",
        &indexed_enqueue,
        &plain_enqueue,
    );
    report(
        "#[offline_action] called offline (stub + enqueue)",
        &ours_enqueue,
        &plain_enqueue,
    );
    console_log!("replay (no-op body):");
    report(
        "raw rexie: read head, run body, delete",
        &raw_replay,
        &raw_replay,
    );
    report("SyncService::replay", &ours_replay, &raw_replay);
    let rate = |times: &[f64]| {
        1.0 / median(
            times
                .iter()
                .zip(&plain_enqueue)
                .map(|(t, b)| t / b)
                .collect(),
        )
    };
    console_log!(
        "  => enqueue: ours {:.3}x the raw rate (target >= 0.8x), {:.3}x the indexed raw rate; replay: ours {:.3}x the raw rate",
        rate(&ours_enqueue),
        median(
            indexed_enqueue
                .iter()
                .zip(&ours_enqueue)
                .map(|(i, o)| i / o)
                .collect()
        ),
        median(
            raw_replay
                .iter()
                .zip(&ours_replay)
                .map(|(r, o)| r / o)
                .collect()
        ),
    );

    drop(service);
    plain.close();
    indexed.close();
    for name in [ours_name, plain_name, indexed_name] {
        let _ = Rexie::delete(&name).await;
    }
}

thread_local! {
    /// The next `flaky_ping` fails (transiently).
    static FAIL_NEXT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// When the last `flaky_ping` reached its body (`performance.now()`).
    static REACHED: std::cell::Cell<Option<f64>> = const { std::cell::Cell::new(None) };
}

/// A request that fails when `FAIL_NEXT` says so; records when it reached the body.
#[offline_action(local = flaky_ping_locally)]
pub async fn flaky_ping(n: u32) -> Result<u32, BenchError> {
    if FAIL_NEXT.with(|f| f.replace(false)) {
        return Err(BenchError::Network);
    }
    if REACHED.with(std::cell::Cell::get).is_none() {
        REACHED.with(|r| r.set(Some(now())));
    }
    Ok(n)
}

async fn flaky_ping_locally(n: u32) -> Result<u32, BenchError> {
    Ok(n)
}

/// Dispatches the page's `online` or `offline` event, as the browser does when the network
/// comes and goes.
fn network_event(name: &str) {
    use wasm_bindgen::JsCast;
    let target: web_sys::EventTarget = js_sys::global().unchecked_into();
    target
        .dispatch_event(&web_sys::Event::new(name).expect("an event"))
        .expect("dispatched");
}

async fn sleep_ms(ms: u64) {
    use sync_runtime::Executor;
    sync_runtime::browser::BrowserExecutor
        .sleep(std::time::Duration::from_millis(ms))
        .await;
}

/// Row 7 of BENCHMARKS.md, in the browser: from the `online` event to the first replayed
/// request, when the head of the queue is waiting out a 5-minute backoff, against the same
/// when the head never failed (same run). Median of 20 reconnections each.
#[wasm_bindgen_test]
#[ignore = "a benchmark: run with --include-ignored (see the top of this file)"]
async fn reconnect_to_first_replayed_request() {
    const RECONNECTIONS: usize = 20;
    let name = fresh_name("reconnect");
    let service = SyncService::builder()
        .store(IndexedDbStore::open(&name).await.expect("open the store"))
        .connectivity(sync_runtime::browser::BrowserConnectivity::new())
        .executor(sync_runtime::browser::BrowserExecutor)
        .retry_policy(sync_runtime::RetryPolicy {
            initial_backoff: std::time::Duration::from_secs(300),
            jitter: 0.0,
            ..sync_runtime::RetryPolicy::default()
        })
        .build()
        .expect("no duplicate action names");
    let (mut after_backoff, mut baseline) = (Vec::new(), Vec::new());
    for round in 0..RECONNECTIONS * 2 {
        let backoff = round % 2 == 0;
        network_event("offline");
        let _ = service
            .scope(flaky_ping(1))
            .await
            .expect("answered locally");
        if backoff {
            FAIL_NEXT.with(|f| f.set(true));
            network_event("online");
            while FAIL_NEXT.with(std::cell::Cell::get) {
                sleep_ms(1).await;
            }
            sleep_ms(20).await;
            assert_eq!(service.status().pending, 1, "the failed head waits");
            network_event("offline");
        }
        REACHED.with(|r| r.set(None));
        let changed = now();
        network_event("online");
        let reached = loop {
            if let Some(reached) = REACHED.with(std::cell::Cell::get) {
                break reached;
            }
            assert!(
                now() - changed < 10_000.0,
                "no replay within 10 s of reconnecting"
            );
            sleep_ms(1).await;
        };
        while service.status().pending > 0 {
            sleep_ms(1).await;
        }
        if backoff {
            after_backoff.push(reached - changed);
        } else {
            baseline.push(reached - changed);
        }
    }
    console_log!(
        "\n## reconnect -> first replayed request, IndexedDB, headless Chromium ({RECONNECTIONS} each, median)\n  head waiting out a 5-minute backoff: {:.2} ms\n  baseline, head never failed: {:.2} ms\n  target <= 50 ms",
        median(after_backoff),
        median(baseline)
    );
    drop(service);
    let _ = Rexie::delete(&name).await;
}
