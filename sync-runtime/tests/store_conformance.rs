//! Every store backend passes the shared conformance cases, and the SQLite store keeps what it
//! acknowledged across a restart, a `kill -9`, and a second process on the same file.

use sync_runtime::store::{conformance, MemoryStore};

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn memory_store_conforms() {
    futures::executor::block_on(conformance::run_all(|| async { MemoryStore::new() }));
}

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// The cases compile and pass on wasm32, where every backend's futures are `!Send`.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
async fn memory_store_conforms_in_the_browser() {
    conformance::run_all(|| async { MemoryStore::new() }).await;
}

#[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
mod sqlite {
    use super::*;
    use futures::executor::block_on;
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::time::Instant;
    use sync_runtime::store::{
        Batch, Bury, Counts, DeadLetter, DeadReason, NewQueued, QueuedAction, Record, Reschedule,
        SqliteStore, Stamp, Write,
    };
    use sync_runtime::{ActionId, ActionKind, Store, Timestamp};

    #[test]
    fn sqlite_file_store_conforms() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut n = 0;
        block_on(conformance::run_all(|| {
            n += 1;
            let store = open(&dir.path().join(format!("case-{n}.db")));
            async move { store }
        }));
    }

    #[test]
    fn sqlite_in_memory_store_conforms() {
        block_on(conformance::run_all(|| async {
            SqliteStore::in_memory().unwrap_or_else(|e| panic!("in-memory store: {e}"))
        }));
    }

    #[test]
    fn reopened_store_keeps_the_clock_offset_in_its_meta_table() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("offset.db");
        block_on(open(&path).set_clock_offset(-3_600_000)).unwrap();
        assert_eq!(
            block_on(open(&path).clock_offset()).unwrap(),
            Some(-3_600_000)
        );
    }

    #[test]
    fn reopened_store_keeps_everything_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("restart.db");
        let (before, last_seq) = {
            let store = open(&path);
            for n in 1..=30 {
                let mut batch = Batch::new();
                batch.enqueue = Some(if n % 10 == 0 { query(n) } else { mutation(n) });
                batch.writes = vec![put(
                    "products",
                    &format!("p{n:02}"),
                    &format!("value {n}"),
                    n as u64,
                )];
                apply(&store, batch);
            }
            let mut batch = Batch::new();
            batch.reschedule = Some(Reschedule {
                id: id(3),
                retries: 2,
                next_attempt_at: Timestamp(9_000),
                last_error: "503".to_owned(),
            });
            batch.writes = vec![delete("products", "p05", 1_000)];
            apply(&store, batch);
            for n in [4, 7] {
                let mut batch = Batch::new();
                batch.bury = Some(Bury {
                    id: id(n),
                    reason: DeadReason::Rejected,
                    message: format!("{n} rejected"),
                    failed_at: Timestamp(10_000),
                });
                apply(&store, batch);
            }
            let last_seq = block_on(store.queued(None, usize::MAX))
                .expect("queue")
                .last()
                .map(|q| q.seq);
            // Completing the tail before the restart: its seq must still never come back.
            let mut batch = Batch::new();
            batch.complete = Some(id(30));
            apply(&store, batch);
            (contents(&store), last_seq.expect("a queue"))
        };
        assert_eq!(
            before.counts,
            Counts {
                pending: 27,
                dead: 2
            }
        );

        let store = open(&path);
        assert_eq!(
            contents(&store),
            before,
            "the store changed across a restart"
        );
        let mut batch = Batch::new();
        batch.enqueue = Some(mutation(31));
        apply(&store, batch);
        let queue = block_on(store.queued(None, usize::MAX)).expect("queue");
        assert_eq!(queue.last().map(|q| q.id), Some(id(31)));
        assert!(
            queue.last().map(|q| q.seq) > Some(last_seq),
            "a seq was reused after a restart: {:?} after {last_seq}",
            queue.last().map(|q| q.seq)
        );
    }

    /// The child half of `survives_kill_9`: applies batches until killed, printing each
    /// acknowledged one.
    const CRASH_CHILD: &str = "SYNC_RUNTIME_CRASH_CHILD_DB";

    #[test]
    fn survives_kill_9() {
        if let Some(path) = std::env::var_os(CRASH_CHILD) {
            let store = open(Path::new(&path));
            for n in 1..=1_000_000u128 {
                let mut batch = Batch::new();
                batch.enqueue = Some(mutation(n));
                batch.writes = vec![put("products", &format!("p{n}"), "x", n as u64)];
                apply(&store, batch);
                // A closed pipe means the parent is gone: stop.
                println!("applied {n}");
            }
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("crash.db");
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "sqlite::survives_kill_9",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the child");
        // Keep the pipe open until the kill: a closed pipe would make the child stop by itself.
        let mut output = BufReader::new(child.stdout.take().expect("child stdout"));
        let mut line = String::new();
        let mut acknowledged = 0u128;
        while acknowledged < 500 {
            line.clear();
            if output.read_line(&mut line).expect("child output") == 0 {
                break;
            }
            if let Some(n) = line.trim_end().strip_prefix("applied ") {
                acknowledged = n.parse().expect("a number");
            }
        }
        // Let the child get somewhere into its next batches, so the kill lands mid-transaction
        // as often as between two.
        std::thread::sleep(std::time::Duration::from_micros(fastrand::u64(0..3_000)));
        // SIGKILL on unix: no destructor, no checkpoint, no close.
        child.kill().expect("kill the child");
        let _ = child.wait();
        drop(output);
        assert!(
            acknowledged >= 500,
            "the child stopped early after {acknowledged} batches"
        );

        let store = open(&path);
        let queue = block_on(store.queued(None, usize::MAX)).expect("queue");
        assert!(
            queue.len() as u128 >= acknowledged,
            "{} queued after kill -9, {acknowledged} were acknowledged",
            queue.len()
        );
        for (n, queued) in (1..).zip(&queue) {
            assert_eq!(queued.id, id(n), "queue order after kill -9");
        }
        for n in 1..=acknowledged {
            let record = block_on(store.get("products", &format!("p{n}"))).expect("get");
            assert!(record.is_some(), "record p{n} was acknowledged and lost");
        }
        let records = block_on(store.scan("products")).expect("scan");
        assert_eq!(
            records.len(),
            queue.len(),
            "a batch was half applied when killed"
        );
        println!(
            "kill -9 after {acknowledged} acknowledged batches: {} found",
            queue.len()
        );
    }

    #[test]
    fn two_stores_on_one_file_share_the_queue() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("shared.db");
        let stores = [Arc::new(open(&path)), Arc::new(open(&path))];
        let threads: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(t, store)| {
                let store = Arc::clone(store);
                std::thread::spawn(move || {
                    for n in 0..200u128 {
                        let mut batch = Batch::new();
                        batch.enqueue = Some(mutation(1 + t as u128 * 1_000 + n));
                        apply(&*store, batch);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("writer thread");
        }
        for store in &stores {
            let queue = block_on(store.queued(None, usize::MAX)).expect("queue");
            assert_eq!(queue.len(), 400, "both writers' actions are queued");
            assert!(
                queue.windows(2).all(|w| w[0].id < w[1].id),
                "the queue is in id order"
            );
            let mut seqs: Vec<u64> = queue.iter().map(|q| q.seq).collect();
            seqs.sort_unstable();
            seqs.dedup();
            assert_eq!(seqs.len(), 400, "seqs are unique");
            assert_eq!(block_on(store.counts()).expect("counts").pending, 400);
        }
    }

    /// Not a benchmark, a sanity check of the cost of one small durable batch; prints what it
    /// measured (`cargo test -- --nocapture`).
    #[test]
    fn single_row_applies_are_fast_enough() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(&dir.path().join("timing.db"));
        let count = 2_000u128;
        let started = Instant::now();
        for n in 1..=count {
            let mut batch = Batch::new();
            batch.enqueue = Some(mutation(n));
            apply(&store, batch);
        }
        let enqueue = started.elapsed();
        let started = Instant::now();
        for n in 1..=count {
            let mut batch = Batch::new();
            batch.complete = Some(id(n));
            batch.writes = vec![put(
                "products",
                &format!("p{n}"),
                "{\"name\":\"x\"}",
                n as u64,
            )];
            apply(&store, batch);
        }
        let complete = started.elapsed();
        println!(
            "{count} single-row enqueues: {enqueue:?} ({:?} each); {count} write+complete: {complete:?} ({:?} each)",
            enqueue / count as u32,
            complete / count as u32
        );
        // Generous: a debug build on a loaded 2-core machine. A regression to fsync per batch
        // or a table scan per batch would blow through it.
        assert!(
            enqueue.as_secs() < 20 && complete.as_secs() < 20,
            "{enqueue:?}, {complete:?}"
        );
    }

    #[derive(Debug, PartialEq)]
    struct Contents {
        queue: Vec<QueuedAction>,
        dead: Vec<DeadLetter>,
        counts: Counts,
        products: Vec<(String, Record)>,
    }

    fn contents(store: &SqliteStore) -> Contents {
        Contents {
            queue: block_on(store.queued(None, usize::MAX)).expect("queue"),
            dead: block_on(store.dead_letters()).expect("dead letters"),
            counts: block_on(store.counts()).expect("counts"),
            products: block_on(store.scan("products")).expect("scan"),
        }
    }

    fn open(path: &Path) -> SqliteStore {
        SqliteStore::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
    }

    fn apply(store: &dyn Store, batch: Batch) {
        block_on(store.apply(batch)).unwrap_or_else(|e| panic!("apply: {e}"));
    }

    fn id(n: u128) -> ActionId {
        ActionId(uuid::Uuid::from_u128(n))
    }

    fn mutation(n: u128) -> NewQueued {
        NewQueued {
            id: id(n),
            name: "add_product".to_owned(),
            version: 1,
            kind: ActionKind::Mutation,
            params: format!(r#"{{"n":{n}}}"#),
            timestamp: Timestamp(1_000 + n as u64),
            queued_at: Timestamp(1_000 + n as u64),
            scope: String::new(),
        }
    }

    fn query(n: u128) -> NewQueued {
        NewQueued {
            name: "get_products".to_owned(),
            kind: ActionKind::Query,
            ..mutation(n)
        }
    }

    fn put(collection: &str, key: &str, value: &str, timestamp: u64) -> Write {
        Write {
            collection: collection.to_owned(),
            key: key.to_owned(),
            value: Some(value.to_owned()),
            stamp: Stamp {
                timestamp: Timestamp(timestamp),
                action: id(u128::from(timestamp)),
            },
        }
    }

    fn delete(collection: &str, key: &str, timestamp: u64) -> Write {
        Write {
            value: None,
            ..put(collection, key, "", timestamp)
        }
    }
}
