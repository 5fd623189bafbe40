//! The tests every [`Store`] backend runs: a new backend is done when it passes them.
//!
//! The in-memory store ([`MemoryStore`](super::MemoryStore)) is the reference; these cases
//! pin down what the rest of the runtime relies on: the queue's order and sequence numbers,
//! query dedupe, retries and dead letters, atomic batches, last-write-wins, pending writes that
//! survive server writes and roll back with their buried action, reads, and the queue read by
//! ordering scope.
//!
//! Each case takes a fresh, empty store and panics with a message saying what differed, so it
//! drops into any test harness. The cases use only the [`Store`] trait: no executor, threads
//! or file system, so they run on wasm32 too (for example under `wasm-bindgen-test`).
//!
//! Run them all with [`run_all`], giving it a way to make a fresh store:
//!
//! ```
//! use sync_runtime::store::{conformance, MemoryStore};
//!
//! // In a `#[test]` function:
//! futures::executor::block_on(conformance::run_all(|| async { MemoryStore::new() }));
//! ```
//!
//! The factory is async because some backends open asynchronously (IndexedDB). A backend
//! in a file gives each case its own file:
//!
//! ```
//! # #[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use sync_runtime::store::{conformance, SqliteStore};
//!
//! let dir = tempfile::tempdir()?;
//! let mut n = 0;
//! futures::executor::block_on(conformance::run_all(|| {
//!     n += 1;
//!     let store = SqliteStore::open(dir.path().join(format!("{n}.db"))).expect("open");
//!     async move { store }
//! }));
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "sqlite", not(target_arch = "wasm32"))))]
//! # fn main() {}
//! ```
//!
//! To run one case, or to report each case separately, use [`CASES`].

use super::{
    Applied, Batch, Bury, Counts, DeadLetter, DeadReason, NewQueued, QueuedAction, Record,
    RecordKey, Reschedule, Stamp, Store, Write,
};
use crate::{boxed, ActionId, ActionKind, BoxFuture, StoreError, Timestamp};
use core::fmt;
use core::future::Future;

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name, the same as its function's.
    pub name: &'static str,
    test: for<'a> fn(&'a dyn Store) -> BoxFuture<'a, ()>,
}

impl Case {
    /// Runs the case against `store`, which must be fresh and empty. Panics if the store
    /// does not conform.
    pub fn run<'a>(&self, store: &'a dyn Store) -> BoxFuture<'a, ()> {
        (self.test)(store)
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Runs every case in [`CASES`], each on a fresh store from `fresh`. Panics at the first case
/// that fails; the name of each case is printed before it runs, so a test harness that
/// captures output shows which one failed.
pub async fn run_all<S, F>(mut fresh: impl FnMut() -> F)
where
    S: Store,
    F: Future<Output = S>,
{
    for case in CASES {
        println!("store conformance: {}", case.name);
        let store = fresh().await;
        case.run(&store).await;
    }
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case, in the order [`run_all`] runs them.
        pub const CASES: &[Case] = &[$(Case {
            name: stringify!($name),
            test: |store| boxed($name(store)),
        }),*];
    };
}

cases![
    empty_store_reads_empty,
    empty_batch_changes_nothing,
    queue_in_action_id_order,
    seq_never_reused,
    queued_pages,
    last_queued_id_is_the_greatest,
    same_id_enqueued_once,
    queries_deduplicated,
    complete_unknown_is_ok,
    reschedule_updates_retry_state,
    bury_moves_to_dead_letters,
    unknown_ids_not_found,
    failed_batch_applies_nothing,
    revive_requeues_with_fresh_ttl,
    revive_keeps_one_queued_query,
    discard_removes_dead_letter,
    last_write_wins,
    tombstones_block_older_writes,
    scan_orders_by_key,
    collections_are_isolated,
    counts_follow_queue_and_dead,
    writes_and_queue_change_together,
    unicode_and_large_values,
    saturated_timestamps_round_trip,
    clock_offset_round_trips,
    scopes_keep_their_calls_in_id_order,
    scope_heads_follow_the_queue,
    dead_letters_and_revive_keep_the_scope,
    pending_writes_survive_confirmed_writes,
    rejected_writes_roll_back,
    roll_back_keeps_later_writes,
];

/// A fresh store reads as empty.
pub async fn empty_store_reads_empty(store: &dyn Store) {
    assert_eq!(
        counts(store).await,
        Counts::default(),
        "a fresh store has no pending or dead actions"
    );
    assert_eq!(queue(store).await, [], "a fresh store has an empty queue");
    assert_eq!(dead(store).await, [], "a fresh store has no dead letters");
    assert_eq!(
        get(store, "products", "p1").await,
        None,
        "a fresh store has no records"
    );
    assert_eq!(
        scan(store, "products").await,
        [],
        "a fresh store has no collections"
    );
}

/// An empty batch applies nothing and reports nothing.
pub async fn empty_batch_changes_nothing(store: &dyn Store) {
    enqueue(store, mutation(1, r#"{"n":1}"#)).await;
    enqueue(store, mutation(2, r#"{"n":2}"#)).await;
    bury(store, 2, DeadReason::Rejected).await;
    apply(
        store,
        writes([put("products", "p1", "one", 100, 1)]),
        "write p1",
    )
    .await;
    let before = snapshot(store, &["products"]).await;
    let applied = apply(store, Batch::new(), "an empty batch").await;
    assert_eq!(
        applied,
        Applied::default(),
        "an empty batch reports nothing applied"
    );
    assert_eq!(
        snapshot(store, &["products"]).await,
        before,
        "an empty batch changed the store"
    );
}

/// The queue returns actions in the order of their ids (the order in which the user acted),
/// whatever order they were queued in, with every field as it was given; `seq` increases in
/// the order they were queued.
pub async fn queue_in_action_id_order(store: &dyn Store) {
    let mut expected = Vec::new();
    // Queued out of id order, as when an online call that started first fails last.
    let order: Vec<u128> = (1..=100).map(|k| (k * 37) % 101).collect();
    for &n in &order {
        // Every seventh is a query, so order holds across kinds.
        let new = if n % 7 == 0 {
            query(n, &format!(r#"{{"page":{n}}}"#))
        } else {
            mutation(n, &format!(r#"{{"n":{n}}}"#))
        };
        let applied = enqueue(store, new.clone()).await;
        assert_eq!(
            applied.queued,
            Some(new.id),
            "enqueue of {} reports its id",
            new.id
        );
        expected.push(new);
    }
    let queued = queue(store).await;
    let mut by_id = expected.clone();
    by_id.sort_by_key(|new| new.id);
    assert_eq!(
        queued.iter().map(|q| q.id).collect::<Vec<_>>(),
        by_id.iter().map(|n| n.id).collect::<Vec<_>>(),
        "the queue is not in action id order"
    );
    let seq_in_enqueue_order: Vec<u64> = order
        .iter()
        .map(|&n| queued.iter().find(|q| q.id == id(n)).map_or(0, |q| q.seq))
        .collect();
    for pair in seq_in_enqueue_order.windows(2) {
        assert!(
            pair[0] < pair[1],
            "seq not strictly increasing in enqueue order: {} then {}",
            pair[0],
            pair[1]
        );
    }
    for (q, new) in queued.iter().zip(&by_id) {
        assert_eq!(q.name, new.name, "name of {}", q.id);
        assert_eq!(q.version, new.version, "version of {}", q.id);
        assert_eq!(q.kind, new.kind, "kind of {}", q.id);
        assert_eq!(q.params, new.params, "params of {}", q.id);
        assert_eq!(q.timestamp, new.timestamp, "timestamp of {}", q.id);
        assert_eq!(q.queued_at, new.queued_at, "queued_at of {}", q.id);
        assert_eq!(q.retries, 0, "a new action has no retries ({})", q.id);
        assert_eq!(
            q.next_attempt_at, new.queued_at,
            "a new action is due when it is queued ({})",
            q.id
        );
        assert_eq!(
            q.last_error, None,
            "a new action has no last error ({})",
            q.id
        );
    }
}

/// A sequence number is never handed out twice, even after the actions holding the highest
/// ones are completed or buried.
pub async fn seq_never_reused(store: &dyn Store) {
    let mut seen = Vec::new();
    for n in 1..=3 {
        enqueue(store, mutation(n, "{}")).await;
    }
    seen.extend(queue(store).await.iter().map(|q| q.seq));
    let max = |seen: &[u64]| seen.iter().copied().max().unwrap_or(0);

    complete(store, 3).await;
    enqueue(store, mutation(4, "{}")).await;
    let seq4 = seq_of(store, 4).await;
    assert!(
        seq4 > max(&seen),
        "seq {seq4} after completing the tail reuses or precedes {seen:?}"
    );
    seen.push(seq4);

    let before_bury = queue(store).await.into_iter().find(|q| q.id == id(4));
    bury(store, 4, DeadReason::Rejected).await;
    let buried = dead(store)
        .await
        .into_iter()
        .find(|d| d.action.id == id(4))
        .map(|d| d.action);
    assert_eq!(
        buried, before_bury,
        "a dead letter keeps the action as it was queued, seq included"
    );
    enqueue(store, mutation(5, "{}")).await;
    let seq5 = seq_of(store, 5).await;
    assert!(
        seq5 > max(&seen),
        "seq {seq5} after burying the tail reuses or precedes {seen:?}"
    );
    seen.push(seq5);

    for n in [1, 2, 5] {
        complete(store, n).await;
    }
    assert_eq!(queue(store).await, [], "every action was completed");
    enqueue(store, mutation(6, "{}")).await;
    let seq6 = seq_of(store, 6).await;
    assert!(
        seq6 > max(&seen),
        "seq {seq6} after emptying the queue reuses or precedes {seen:?}"
    );
    seen.push(seq6);

    revive(store, 4, 9_000).await;
    let revived = seq_of(store, 4).await;
    assert!(
        revived > max(&seen),
        "a revived action got seq {revived}, not past {seen:?}"
    );
}

/// `queued(after, limit)` pages through the queue by action id.
pub async fn queued_pages(store: &dyn Store) {
    for n in 1..=10 {
        enqueue(store, mutation(n, "{}")).await;
    }
    complete(store, 5).await;
    let all = queue(store).await;
    assert_eq!(all.len(), 9, "nine actions remain queued");

    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = queued(store, after, 3).await;
        assert!(
            page.len() <= 3,
            "a page of limit 3 held {} actions",
            page.len()
        );
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(
        paged, all,
        "paging by 3 does not give the whole queue in order"
    );

    assert_eq!(queued(store, None, 0).await, [], "limit 0 returns nothing");
    assert_eq!(
        queued(store, None, 1).await,
        all[..1],
        "limit 1 returns the head"
    );
    assert_eq!(
        queued(store, Some(id(0)), 100).await,
        all,
        "after the nil id returns everything"
    );
    let last = all[all.len() - 1].id;
    assert_eq!(
        queued(store, Some(last), 10).await,
        [],
        "nothing comes after the tail"
    );
    assert_eq!(
        queued(store, Some(id(u128::MAX)), 10).await,
        [],
        "nothing comes after the max id"
    );
    let fourth = &all[3];
    assert_eq!(fourth.id, id(4), "the fourth queued action is 4");
    assert_eq!(
        queued(store, Some(fourth.id), 1)
            .await
            .first()
            .map(|q| q.id),
        Some(id(6)),
        "paging after 4 skips the completed 5"
    );
}

/// `last_queued_id` is the greatest id queued, whatever order they were queued in.
pub async fn last_queued_id_is_the_greatest(store: &dyn Store) {
    async fn last(store: &dyn Store) -> Option<ActionId> {
        store
            .last_queued_id()
            .await
            .unwrap_or_else(|e| panic!("last_queued_id failed: {e}"))
    }
    assert_eq!(last(store).await, None, "an empty queue has no last id");
    for n in [5, 9, 2, 7] {
        enqueue(store, mutation(n, "{}")).await;
    }
    assert_eq!(last(store).await, Some(id(9)), "the greatest of 5, 9, 2, 7");
    complete(store, 9).await;
    assert_eq!(
        last(store).await,
        Some(id(7)),
        "after the greatest completed"
    );
    for n in [2, 5, 7] {
        complete(store, n).await;
    }
    assert_eq!(last(store).await, None, "emptied");
}

/// Enqueueing an id that is already queued keeps the first and reports its id.
pub async fn same_id_enqueued_once(store: &dyn Store) {
    let first = mutation(1, r#"{"v":"first"}"#);
    enqueue(store, first.clone()).await;
    let mut again = mutation(1, r#"{"v":"second"}"#);
    again.timestamp = Timestamp(99_999);
    let applied = enqueue(store, again).await;
    assert_eq!(
        applied.queued,
        Some(first.id),
        "a second enqueue of the same id reports it queued"
    );
    let queued = queue(store).await;
    assert_eq!(queued.len(), 1, "the same id was queued twice");
    assert_eq!(
        queued[0].params, first.params,
        "the second enqueue replaced the first's params"
    );
    assert_eq!(
        queued[0].timestamp, first.timestamp,
        "the second enqueue replaced the first's timestamp"
    );
    assert_eq!(
        counts(store).await.pending,
        1,
        "pending counts the same id twice"
    );
}

/// A query is queued once per (name, params): a new identical query replaces the queued one
/// at its own place, so the refresh runs after the calls queued in between. Mutations are
/// queued every time.
pub async fn queries_deduplicated(store: &dyn Store) {
    let params = r#"{"tenant":"t1"}"#;
    let q1 = query(1, params);
    assert_eq!(
        enqueue(store, q1.clone()).await.queued,
        Some(id(1)),
        "the first query is queued"
    );
    enqueue(store, mutation(2, r#"{"between":true}"#)).await;
    let replacing = enqueue(store, query(3, params)).await;
    assert_eq!(
        (replacing.queued, replacing.replaced),
        (Some(id(3)), Some(id(1))),
        "an identical query replaces the one already queued"
    );
    assert_eq!(
        ids(store).await,
        [id(2), id(3)],
        "the refresh moved behind the call queued in between"
    );
    assert_eq!(counts(store).await.pending, 2, "pending after a replace");
    complete(store, 2).await;
    complete(store, 3).await;
    assert_eq!(
        enqueue(store, q1.clone()).await.queued,
        Some(id(1)),
        "the first query again"
    );

    assert_eq!(
        enqueue(store, query(3, r#"{"tenant":"t2"}"#)).await.queued,
        Some(id(3)),
        "other params are another query"
    );
    let mut other_name = query(4, params);
    other_name.name = "get_orders".to_owned();
    assert_eq!(
        enqueue(store, other_name).await.queued,
        Some(id(4)),
        "another name is another query"
    );
    let mut same_as_mutation = mutation(5, params);
    same_as_mutation.name = q1.name.clone();
    let mut again_as_mutation = same_as_mutation.clone();
    again_as_mutation.id = id(6);
    assert_eq!(
        enqueue(store, same_as_mutation).await.queued,
        Some(id(5)),
        "a mutation is never deduplicated"
    );
    assert_eq!(
        enqueue(store, again_as_mutation).await.queued,
        Some(id(6)),
        "a mutation is never deduplicated"
    );
    assert_eq!(
        ids(store).await,
        [id(1), id(3), id(4), id(5), id(6)],
        "queue after dedupe"
    );
    assert_eq!(counts(store).await.pending, 5, "pending after dedupe");

    complete(store, 1).await;
    assert_eq!(
        enqueue(store, query(7, params)).await.queued,
        Some(id(7)),
        "once the query completed, the same query is queued again"
    );
    assert_eq!(
        ids(store).await.last(),
        Some(&id(7)),
        "the new query goes to the tail"
    );

    let mut batch = Batch::new();
    batch.complete = Some(id(7));
    batch.enqueue = Some(query(8, params));
    assert_eq!(
        apply(store, batch, "complete a query and queue it again")
            .await
            .queued,
        Some(id(8)),
        "a batch completes before it enqueues"
    );

    bury(store, 8, DeadReason::TooManyRetries).await;
    assert_eq!(
        enqueue(store, query(9, params)).await.queued,
        Some(id(9)),
        "a dead letter does not stop the same query from being queued"
    );
    assert_eq!(
        ids(store).await,
        [id(3), id(4), id(5), id(6), id(9)],
        "queue at the end"
    );
}

/// Completing an action that is not queued succeeds and changes nothing.
pub async fn complete_unknown_is_ok(store: &dyn Store) {
    let applied = apply(store, completing(42), "complete an unknown id").await;
    assert_eq!(
        applied,
        Applied::default(),
        "completing an unknown id reports nothing"
    );
    enqueue(store, mutation(1, "{}")).await;
    bury(store, 1, DeadReason::Rejected).await;
    enqueue(store, mutation(2, "{}")).await;
    let before = snapshot(store, &[]).await;
    apply(store, completing(1), "complete a dead letter's id").await;
    apply(store, completing(42), "complete an unknown id").await;
    assert_eq!(
        snapshot(store, &[]).await,
        before,
        "complete touched something other than the queue"
    );
}

/// A reschedule records a failed attempt and leaves the action in place.
pub async fn reschedule_updates_retry_state(store: &dyn Store) {
    for n in 1..=3 {
        enqueue(store, mutation(n, "{}")).await;
    }
    let before = queue(store).await;
    let applied = apply(
        store,
        rescheduling(2, 1, 5_000, "timed out"),
        "reschedule 2",
    )
    .await;
    assert_eq!(
        applied,
        Applied::default(),
        "a reschedule reports nothing applied"
    );
    apply(
        store,
        rescheduling(2, 2, 9_000, "503 Service Unavailable"),
        "reschedule 2 again",
    )
    .await;
    let after = queue(store).await;
    assert_eq!(
        after.iter().map(|q| (q.id, q.seq)).collect::<Vec<_>>(),
        before.iter().map(|q| (q.id, q.seq)).collect::<Vec<_>>(),
        "a reschedule moved an action"
    );
    let mut expected = before[1].clone();
    expected.retries = 2;
    expected.next_attempt_at = Timestamp(9_000);
    expected.last_error = Some("503 Service Unavailable".to_owned());
    assert_eq!(after[1], expected, "the rescheduled action");
    assert_eq!(after[0], before[0], "a reschedule changed another action");
    assert_eq!(after[2], before[2], "a reschedule changed another action");
}

/// A bury moves the action, as it was, to the dead letters with the reason, message and time.
pub async fn bury_moves_to_dead_letters(store: &dyn Store) {
    let reasons = [
        DeadReason::Rejected,
        DeadReason::UnknownAction,
        DeadReason::BadParams,
        DeadReason::TooManyRetries,
        DeadReason::Expired,
    ];
    for n in 1..=6 {
        enqueue(store, mutation(n, &format!(r#"{{"n":{n}}}"#))).await;
    }
    apply(
        store,
        rescheduling(3, 4, 7_000, "connection reset"),
        "reschedule 3",
    )
    .await;
    let before = queue(store).await;
    // Bury out of queue order: dead letters are listed in the order they died.
    let order = [3u128, 1, 5, 2, 4];
    for (n, reason) in order.iter().zip(reasons) {
        let mut batch = Batch::new();
        batch.bury = Some(Bury {
            id: id(*n),
            reason,
            message: format!("{reason} happened to {n}"),
            failed_at: Timestamp(10_000 + *n as u64),
        });
        let applied = apply(store, batch, "bury").await;
        assert_eq!(
            applied,
            Applied::default(),
            "a bury reports nothing applied"
        );
    }
    assert_eq!(ids(store).await, [id(6)], "buried actions are still queued");
    let expected: Vec<DeadLetter> = order
        .iter()
        .zip(reasons)
        .map(|(n, reason)| DeadLetter {
            action: before
                .iter()
                .find(|q| q.id == id(*n))
                .cloned()
                .unwrap_or_else(|| panic!("{n} was queued")),
            reason,
            message: format!("{reason} happened to {n}"),
            failed_at: Timestamp(10_000 + *n as u64),
        })
        .collect();
    assert_eq!(dead(store).await, expected, "dead letters, oldest first");
    assert_eq!(
        counts(store).await,
        Counts {
            pending: 1,
            dead: 5
        },
        "counts after burying five"
    );
}

/// Rescheduling or burying an action that is not queued, or reviving or discarding one that is
/// not a dead letter, fails with `NotFound` and changes nothing.
pub async fn unknown_ids_not_found(store: &dyn Store) {
    enqueue(store, mutation(1, "{}")).await;
    enqueue(store, mutation(2, "{}")).await;
    bury(store, 2, DeadReason::Rejected).await;
    let before = snapshot(store, &[]).await;
    let cases: [(&str, Batch, u128); 8] = [
        (
            "reschedule of an unknown id",
            rescheduling(99, 1, 1, "x"),
            99,
        ),
        ("bury of an unknown id", burying(99), 99),
        ("revive of an unknown id", reviving(99, 1), 99),
        ("discard of an unknown id", discarding(99), 99),
        ("revive of a queued action", reviving(1, 1), 1),
        ("discard of a queued action", discarding(1), 1),
        ("reschedule of a dead letter", rescheduling(2, 1, 1, "x"), 2),
        ("bury of a dead letter", burying(2), 2),
    ];
    for (what, batch, missing) in cases {
        expect_not_found(store.apply(batch).await, missing, what);
        assert_eq!(
            snapshot(store, &[]).await,
            before,
            "a failed {what} changed the store"
        );
    }
}

/// A batch that fails applies none of its parts.
pub async fn failed_batch_applies_nothing(store: &dyn Store) {
    enqueue(store, mutation(1, "{}")).await;
    enqueue(store, mutation(2, "{}")).await;
    enqueue(store, mutation(3, "{}")).await;
    bury(store, 3, DeadReason::Rejected).await;
    apply(
        store,
        writes([put("products", "p0", "old", 100, 1)]),
        "write p0",
    )
    .await;
    let before = snapshot(store, &["products"]).await;

    type Spoil = fn(&mut Batch);
    let everything_then = |bad: Spoil| {
        let mut batch = writes([
            put("products", "p0", "new", 200, 2),
            put("products", "p1", "added", 200, 2),
        ]);
        batch.enqueue = Some(mutation(10, "{}"));
        batch.complete = Some(id(1));
        batch.reschedule = Some(Reschedule {
            id: id(2),
            retries: 1,
            next_attempt_at: Timestamp(5_000),
            last_error: "x".to_owned(),
        });
        bad(&mut batch);
        batch
    };
    let bad_parts: [(&str, Spoil); 4] = [
        ("a bury of an unknown id", |b| b.bury = Some(bury_of(99))),
        ("a revive of an unknown id", |b| {
            b.revive = Some((id(99), Timestamp(1)))
        }),
        ("a discard of an unknown id", |b| b.discard = Some(id(99))),
        ("a reschedule of an unknown id", |b| {
            b.reschedule = Some(Reschedule {
                id: id(99),
                retries: 1,
                next_attempt_at: Timestamp(1),
                last_error: "x".to_owned(),
            });
        }),
    ];
    for (what, bad) in bad_parts {
        expect_not_found(
            store.apply(everything_then(bad)).await,
            99,
            &format!("a batch with {what}"),
        );
        assert_eq!(
            snapshot(store, &["products"]).await,
            before,
            "a batch with {what} was partly applied"
        );
    }

    let mut batch = writes([put("products", "p1", "added", 200, 2)]);
    batch.revive = Some((id(3), Timestamp(1)));
    batch.bury = Some(bury_of(99));
    expect_not_found(
        store.apply(batch).await,
        99,
        "a batch with a revive and a bad bury",
    );
    assert_eq!(
        snapshot(store, &["products"]).await,
        before,
        "a batch with a revive and a bad bury was partly applied"
    );
}

/// A revive puts the dead letter back in the queue at its id's place (the order in which the
/// user acted) with a new seq, a fresh retry state and a fresh time-to-live (`queued_at`),
/// keeping its timestamp (which last-write-wins compares), and removes the dead letter.
pub async fn revive_requeues_with_fresh_ttl(store: &dyn Store) {
    enqueue(store, mutation(1, r#"{"n":1}"#)).await;
    apply(
        store,
        rescheduling(1, 4, 7_000, "timed out"),
        "reschedule 1",
    )
    .await;
    bury(store, 1, DeadReason::TooManyRetries).await;
    enqueue(store, mutation(2, r#"{"n":2}"#)).await;
    let buried = dead(store).await.remove(0).action;

    let applied = apply(store, reviving(1, 50_000), "revive 1").await;
    assert_eq!(applied.writes_applied, 0, "a revive applies no writes");
    let queued = queue(store).await;
    assert_eq!(
        queued.iter().map(|q| q.id).collect::<Vec<_>>(),
        [id(1), id(2)],
        "a revived action goes back to its id's place"
    );
    assert!(
        queued[0].seq > queued[1].seq,
        "a revived action gets a new, higher seq"
    );
    assert!(
        queued[0].seq > buried.seq,
        "a revived action keeps its old seq"
    );
    let expected = QueuedAction {
        seq: queued[0].seq,
        retries: 0,
        next_attempt_at: Timestamp(50_000),
        queued_at: Timestamp(50_000),
        last_error: None,
        ..buried.clone()
    };
    assert_eq!(
        queued[0], expected,
        "the revived action (same call and timestamp, fresh retry state and time-to-live)"
    );
    assert_eq!(
        queued[0].timestamp, buried.timestamp,
        "the timestamp is kept"
    );
    assert_eq!(
        dead(store).await,
        [],
        "the dead letter is still there after a revive"
    );
    assert_eq!(
        counts(store).await,
        Counts {
            pending: 2,
            dead: 0
        },
        "counts after a revive"
    );
    complete(store, 1).await;
    assert_eq!(
        ids(store).await,
        [id(2)],
        "a revived action completes like any other"
    );
}

/// Reviving a query while the same query (name and params) is queued again leaves one queued
/// query and no dead letter: both would fetch the same thing. Mutations are always revived.
pub async fn revive_keeps_one_queued_query(store: &dyn Store) {
    let params = r#"{"tenant":"t1"}"#;
    enqueue(store, query(1, params)).await;
    bury(store, 1, DeadReason::TooManyRetries).await;
    enqueue(store, query(2, params)).await;
    apply(
        store,
        reviving(1, 9_000),
        "revive a query that is queued again",
    )
    .await;
    assert_eq!(
        ids(store).await,
        [id(2)],
        "the queue holds the same query twice"
    );
    assert_eq!(
        dead(store).await,
        [],
        "the revived query is still a dead letter"
    );
    assert_eq!(
        counts(store).await,
        Counts {
            pending: 1,
            dead: 0
        },
        "counts after reviving a duplicate query"
    );

    enqueue(store, mutation(3, params)).await;
    bury(store, 3, DeadReason::Rejected).await;
    enqueue(store, mutation(4, params)).await;
    apply(store, reviving(3, 9_000), "revive a mutation").await;
    assert_eq!(
        ids(store).await,
        [id(2), id(3), id(4)],
        "identical mutations are both queued"
    );
}

/// A discard deletes a dead letter for good.
pub async fn discard_removes_dead_letter(store: &dyn Store) {
    for n in 1..=3 {
        enqueue(store, mutation(n, "{}")).await;
    }
    bury(store, 1, DeadReason::Rejected).await;
    bury(store, 2, DeadReason::Expired).await;
    let applied = apply(store, discarding(1), "discard 1").await;
    assert_eq!(
        applied,
        Applied::default(),
        "a discard reports nothing applied"
    );
    assert_eq!(
        dead(store)
            .await
            .iter()
            .map(|d| d.action.id)
            .collect::<Vec<_>>(),
        [id(2)],
        "dead letters after a discard"
    );
    assert_eq!(ids(store).await, [id(3)], "a discard changed the queue");
    assert_eq!(
        counts(store).await,
        Counts {
            pending: 1,
            dead: 1
        },
        "counts after a discard"
    );
    expect_not_found(
        store.apply(discarding(1)).await,
        1,
        "a second discard of the same dead letter",
    );
}

/// A write replaces a record only if its stamp (timestamp, then action id) is not older.
pub async fn last_write_wins(store: &dyn Store) {
    let lww = |value: &str, timestamp: u64, action: u128| {
        writes([put("products", "p1", value, timestamp, action)])
    };
    let value = |record: Option<Record>| record.and_then(|r| r.value);

    assert_eq!(
        apply(store, lww("v1", 100, 10), "first write")
            .await
            .writes_applied,
        1,
        "a first write applies"
    );
    assert_eq!(
        get(store, "products", "p1").await,
        Some(Record {
            value: Some("v1".to_owned()),
            stamp: stamp(100, 10)
        }),
        "the record after its first write"
    );
    let steps: [(&str, u64, u128, usize, &str); 6] = [
        (
            "v2",
            200,
            5,
            1,
            "a newer timestamp wins, whatever the action id",
        ),
        (
            "v3",
            150,
            99,
            0,
            "an older timestamp loses, whatever the action id",
        ),
        ("v4", 200, 5, 1, "an equal stamp replaces"),
        ("v5", 200, 4, 0, "same timestamp, smaller action id loses"),
        ("v6", 200, 6, 1, "same timestamp, larger action id wins"),
        (
            "v7",
            199,
            u128::MAX,
            0,
            "an older timestamp loses even to the largest action id",
        ),
    ];
    let mut current = "v1";
    for (v, timestamp, action, applied, what) in steps {
        let got = apply(store, lww(v, timestamp, action), what)
            .await
            .writes_applied;
        assert_eq!(got, applied, "{what}: writes_applied");
        if applied == 1 {
            current = v;
        }
        assert_eq!(
            value(get(store, "products", "p1").await).as_deref(),
            Some(current),
            "{what}"
        );
    }

    // Action ids order by their bytes, first byte first, as uuid v7s order by time.
    let high_first_byte = 0x0100_0000_0000_0000_0000_0000_0000_0000;
    apply(
        store,
        writes([put("ids", "k", "high", 500, high_first_byte)]),
        "write with a high first byte",
    )
    .await;
    let applied = apply(
        store,
        writes([put("ids", "k", "low", 500, 0xff)]),
        "write with a high last byte",
    )
    .await;
    assert_eq!(
        applied.writes_applied, 0,
        "action ids compare by their first byte first"
    );
    assert_eq!(
        value(get(store, "ids", "k").await).as_deref(),
        Some("high"),
        "action ids compare by their first byte first"
    );

    let batch = writes([
        put("products", "p2", "a", 300, 1),
        put("products", "p1", "stale", 1, 1),
        put("products", "p3", "b", 300, 1),
        put("products", "p2", "older than the write before", 299, 1),
        put("products", "p3", "newer than the write before", 301, 1),
    ]);
    let applied = apply(store, batch, "mixed writes").await;
    assert_eq!(
        applied.writes_applied, 3,
        "writes_applied counts only the writes that replaced"
    );
    assert_eq!(
        value(get(store, "products", "p2").await).as_deref(),
        Some("a"),
        "writes in one batch apply in order"
    );
    assert_eq!(
        value(get(store, "products", "p3").await).as_deref(),
        Some("newer than the write before"),
        "writes in one batch apply in order"
    );
    assert_eq!(
        value(get(store, "products", "p1").await).as_deref(),
        Some(current),
        "a stale write in a batch applied"
    );
}

/// A delete leaves a tombstone that stops older writes from bringing the record back.
pub async fn tombstones_block_older_writes(store: &dyn Store) {
    apply(store, writes([put("products", "p1", "v1", 100, 1)]), "put").await;
    let applied = apply(store, writes([delete("products", "p1", 200, 2)]), "delete").await;
    assert_eq!(applied.writes_applied, 1, "a newer delete applies");
    let tombstone = Record {
        value: None,
        stamp: stamp(200, 2),
    };
    assert_eq!(
        get(store, "products", "p1").await,
        Some(tombstone.clone()),
        "a delete leaves a tombstone"
    );
    assert_eq!(
        scan(store, "products").await,
        [("p1".to_owned(), tombstone.clone())],
        "scan includes tombstones"
    );
    let applied = apply(
        store,
        writes([put("products", "p1", "stale", 150, 9)]),
        "older put",
    )
    .await;
    assert_eq!(
        applied.writes_applied, 0,
        "an older put after a delete applied"
    );
    assert_eq!(
        get(store, "products", "p1").await,
        Some(tombstone),
        "an older put brought a deleted record back"
    );
    let applied = apply(
        store,
        writes([put("products", "p1", "again", 300, 3)]),
        "newer put",
    )
    .await;
    assert_eq!(
        applied.writes_applied, 1,
        "a newer put after a delete applies"
    );
    assert_eq!(
        get(store, "products", "p1")
            .await
            .and_then(|r| r.value)
            .as_deref(),
        Some("again"),
        "a newer put"
    );

    let applied = apply(
        store,
        writes([delete("products", "never", 10, 4)]),
        "delete a missing record",
    )
    .await;
    assert_eq!(
        applied.writes_applied, 1,
        "deleting a record never written leaves a tombstone"
    );
    assert_eq!(
        get(store, "products", "never").await,
        Some(Record {
            value: None,
            stamp: stamp(10, 4)
        }),
        "deleting a record never written leaves a tombstone"
    );
}

/// `scan` returns a collection's records ordered by key (byte order of the UTF-8 text), and
/// `get` reads one.
pub async fn scan_orders_by_key(store: &dyn Store) {
    let keys = [
        "b", "a", "c", "aa", "B", "é", "z", "10", "9", "a b", "a\u{7f}",
    ];
    let batch = writes(
        keys.iter()
            .enumerate()
            .map(|(n, key)| put("products", key, &format!("value of {key}"), 100, n as u128)),
    );
    assert_eq!(
        apply(store, batch, "write keys").await.writes_applied,
        keys.len(),
        "every key is new"
    );
    apply(
        store,
        writes([delete("products", "c", 200, 99)]),
        "delete c",
    )
    .await;

    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    let scanned = scan(store, "products").await;
    assert_eq!(
        scanned
            .iter()
            .map(|(key, _)| key.as_str())
            .collect::<Vec<_>>(),
        sorted,
        "scan is not ordered by key"
    );
    for (key, record) in &scanned {
        assert_eq!(
            Some(record.clone()),
            get(store, "products", key).await,
            "scan and get disagree on {key:?}"
        );
    }
    assert_eq!(
        scanned
            .iter()
            .find(|(key, _)| key == "c")
            .map(|(_, r)| r.value.clone()),
        Some(None),
        "scan includes the tombstone of c"
    );
    assert_eq!(
        get(store, "products", "missing").await,
        None,
        "get of a missing key"
    );
    assert_eq!(
        get(store, "missing", "a").await,
        None,
        "get in a missing collection"
    );
    assert_eq!(
        scan(store, "missing").await,
        [],
        "scan of a missing collection"
    );
}

/// Records in one collection are invisible from another, however the names look alike.
pub async fn collections_are_isolated(store: &dyn Store) {
    let batch = writes([
        put("a", "b/c", "a|b/c", 1, 1),
        put("a/b", "c", "a/b|c", 1, 1),
        put("a", "b", "a|b", 1, 1),
        put("ab", "", "ab|", 1, 1),
        put("A", "b", "A|b", 1, 1),
        put("a", "shared", "a|shared", 1, 1),
        put("other", "shared", "other|shared", 1, 1),
    ]);
    apply(store, batch, "write look-alike collections").await;
    let values = |records: Vec<(String, Record)>| {
        records
            .into_iter()
            .map(|(key, record)| (key, record.value.unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    let pairs = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        values(scan(store, "a").await),
        pairs(&[("b", "a|b"), ("b/c", "a|b/c"), ("shared", "a|shared")]),
        "scan of a"
    );
    assert_eq!(
        values(scan(store, "a/b").await),
        pairs(&[("c", "a/b|c")]),
        "scan of a/b"
    );
    assert_eq!(
        values(scan(store, "A").await),
        pairs(&[("b", "A|b")]),
        "collection names are case-sensitive"
    );
    assert_eq!(
        values(scan(store, "ab").await),
        pairs(&[("", "ab|")]),
        "an empty key"
    );
    assert_eq!(scan(store, "").await, [], "the empty collection");

    apply(
        store,
        writes([delete("other", "shared", 2, 2)]),
        "delete other/shared",
    )
    .await;
    assert_eq!(
        get(store, "a", "shared")
            .await
            .and_then(|r| r.value)
            .as_deref(),
        Some("a|shared"),
        "a delete in one collection reached another"
    );
    let applied = apply(
        store,
        writes([put("a", "shared", "older", 0, 0)]),
        "older write in a",
    )
    .await;
    assert_eq!(applied.writes_applied, 0, "an older write in a applied");
    let applied = apply(
        store,
        writes([put("fresh", "shared", "older", 0, 0)]),
        "write in a new collection",
    )
    .await;
    assert_eq!(
        applied.writes_applied, 1,
        "another collection's stamp blocked a write"
    );
}

/// `counts` follows every change to the queue and the dead letters.
pub async fn counts_follow_queue_and_dead(store: &dyn Store) {
    let check = |expected: (u64, u64), after: &'static str| async move {
        let got = counts(store).await;
        assert_eq!(
            got,
            Counts {
                pending: expected.0,
                dead: expected.1
            },
            "counts after {after}"
        );
        let queued = queue(store).await.len() as u64;
        let dead = dead(store).await.len() as u64;
        assert_eq!(
            (got.pending, got.dead),
            (queued, dead),
            "counts disagree with the lists after {after}"
        );
    };
    check((0, 0), "nothing").await;
    for n in 1..=3 {
        enqueue(store, mutation(n, "{}")).await;
    }
    check((3, 0), "three enqueues").await;
    enqueue(store, query(4, "{}")).await;
    enqueue(store, query(5, "{}")).await;
    check((4, 0), "a duplicate query").await;
    enqueue(store, mutation(1, "{}")).await;
    check((4, 0), "a duplicate id").await;
    bury(store, 1, DeadReason::Rejected).await;
    bury(store, 2, DeadReason::Expired).await;
    check((2, 2), "two burials").await;
    complete(store, 42).await;
    check((2, 2), "completing an unknown id").await;
    let _ = store.apply(burying(42)).await;
    check((2, 2), "a failed batch").await;
    revive(store, 1, 1).await;
    check((3, 1), "a revive").await;
    apply(store, discarding(2), "discard 2").await;
    check((3, 0), "a discard").await;
    // The duplicate query 5 replaced 4.
    for n in [1, 3, 5] {
        complete(store, n).await;
    }
    check((0, 0), "completing everything").await;
    apply(store, writes([put("products", "p1", "v", 1, 1)]), "a write").await;
    check((0, 0), "a write").await;
}

/// Local writes and queue changes in one batch are applied together.
pub async fn writes_and_queue_change_together(store: &dyn Store) {
    let mut batch = writes([put("products", "p1", "offline", 100, 1)]);
    batch.enqueue = Some(mutation(1, r#"{"product":"p1"}"#));
    let applied = apply(store, batch, "write and enqueue").await;
    assert_eq!(
        applied,
        Applied {
            queued: Some(id(1)),
            replaced: None,
            writes_applied: 1,
            rolled_back: Vec::new(),
        },
        "a write and an enqueue in one batch"
    );
    assert_eq!(
        ids(store).await,
        [id(1)],
        "the enqueue of a write-and-enqueue batch"
    );

    let mut batch = writes([
        put("products", "p1", "from the server", 100, 1),
        put("products", "p2", "new", 100, 1),
    ]);
    batch.complete = Some(id(1));
    let applied = apply(store, batch, "write the server's answer and complete").await;
    assert_eq!(
        applied.writes_applied, 2,
        "the writes of a write-and-complete batch"
    );
    assert_eq!(
        applied.queued, None,
        "a batch without an enqueue reports nothing queued"
    );
    assert_eq!(
        ids(store).await,
        [],
        "the complete of a write-and-complete batch"
    );
    assert_eq!(
        get(store, "products", "p1")
            .await
            .and_then(|r| r.value)
            .as_deref(),
        Some("from the server"),
        "the write of a write-and-complete batch"
    );

    enqueue(store, mutation(2, "{}")).await;
    let mut batch = writes([put("products", "p3", "x", 100, 2)]);
    batch.reschedule = Some(Reschedule {
        id: id(2),
        retries: 1,
        next_attempt_at: Timestamp(2_000),
        last_error: "offline".to_owned(),
    });
    apply(store, batch, "write and reschedule").await;
    assert_eq!(
        queue(store).await[0].retries,
        1,
        "the reschedule of a write-and-reschedule batch"
    );
    assert!(
        get(store, "products", "p3").await.is_some(),
        "the write of a write-and-reschedule batch"
    );
}

/// Text of any language, text that looks like markup or SQL, and values of a megabyte are
/// stored exactly.
pub async fn unicode_and_large_values(store: &dyn Store) {
    let mut large = String::with_capacity((1 << 20) + 64);
    while large.len() < 1 << 20 {
        large.push_str("héllo wörld ✓ 𝄞 日本語 \"quoted\" \\ ");
    }
    let tricky = "'; DROP TABLE queue; -- <script>\u{0007}</script> \u{fffd} 🍮";

    let mut write = put("produits ✓", "clé 🔑", &large, 100, 1);
    write.value = Some(large.clone());
    let applied = apply(
        store,
        writes([write, put("produits ✓", tricky, tricky, 100, 1)]),
        "large write",
    )
    .await;
    assert_eq!(applied.writes_applied, 2, "unicode writes");
    assert_eq!(
        get(store, "produits ✓", "clé 🔑")
            .await
            .and_then(|r| r.value)
            .map(|v| v == large),
        Some(true),
        "a 1 MiB unicode value did not round-trip"
    );
    assert_eq!(
        get(store, "produits ✓", tricky)
            .await
            .and_then(|r| r.value)
            .as_deref(),
        Some(tricky),
        "a value that looks like SQL"
    );
    assert_eq!(
        scan(store, "produits ✓").await.len(),
        2,
        "scan of a unicode collection"
    );

    let mut action = mutation(
        1,
        &format!(r#"{{"name":"Crème brûlée 🍮","note":"{tricky}"}}"#),
    );
    action.name = "añadir_producto_✓".to_owned();
    enqueue(store, action.clone()).await;
    let mut big = query(2, &format!(r#"{{"blob":"{large}"}}"#));
    big.name = "get_報告".to_owned();
    enqueue(store, big.clone()).await;
    let mut same_big = big.clone();
    same_big.id = id(3);
    let replacing = enqueue(store, same_big).await;
    assert_eq!(
        (replacing.queued, replacing.replaced),
        (Some(id(3)), Some(id(2))),
        "dedupe of a query with 1 MiB params"
    );
    apply(
        store,
        rescheduling(1, 1, 5, "délai dépassé ⏱"),
        "unicode reschedule",
    )
    .await;
    let queued = queue(store).await;
    assert_eq!(queued.len(), 2, "unicode enqueues");
    assert_eq!(queued[0].name, action.name, "a unicode action name");
    assert_eq!(queued[0].params, action.params, "unicode params");
    assert_eq!(
        queued[0].last_error.as_deref(),
        Some("délai dépassé ⏱"),
        "a unicode last error"
    );
    assert!(
        queued[1].params == big.params,
        "1 MiB params did not round-trip"
    );

    let mut batch = Batch::new();
    batch.bury = Some(Bury {
        id: id(1),
        reason: DeadReason::Rejected,
        message: format!("rejeté 🚫 {tricky}"),
        failed_at: Timestamp(6),
    });
    apply(store, batch, "unicode bury").await;
    let dead = dead(store).await;
    assert_eq!(
        dead[0].message,
        format!("rejeté 🚫 {tricky}"),
        "a unicode dead-letter message"
    );
    assert_eq!(
        dead[0].action.last_error.as_deref(),
        Some("délai dépassé ⏱"),
        "a unicode last error in a dead letter"
    );
}

/// The extremes of `Timestamp` survive: zero, and the `u64::MAX` a saturated backoff gives.
pub async fn saturated_timestamps_round_trip(store: &dyn Store) {
    let mut action = mutation(1, "{}");
    action.timestamp = Timestamp::ZERO;
    enqueue(store, action).await;
    assert_eq!(
        queue(store).await[0].timestamp,
        Timestamp::ZERO,
        "a zero timestamp"
    );
    apply(
        store,
        rescheduling(1, u32::MAX, u64::MAX, "backoff saturated"),
        "saturated reschedule",
    )
    .await;
    let queued = queue(store).await;
    assert_eq!(
        queued[0].next_attempt_at,
        Timestamp(u64::MAX),
        "next_attempt_at of u64::MAX"
    );
    assert_eq!(queued[0].retries, u32::MAX, "retries of u32::MAX");
    let mut batch = Batch::new();
    batch.bury = Some(Bury {
        id: id(1),
        reason: DeadReason::TooManyRetries,
        message: "gave up".to_owned(),
        failed_at: Timestamp(u64::MAX),
    });
    apply(store, batch, "bury at u64::MAX").await;
    let dead = dead(store).await;
    assert_eq!(
        dead[0].failed_at,
        Timestamp(u64::MAX),
        "failed_at of u64::MAX"
    );
    assert_eq!(
        dead[0].action.next_attempt_at,
        Timestamp(u64::MAX),
        "a dead letter's next_attempt_at of u64::MAX"
    );
}

/// Each call keeps its ordering scope, and `queued_in_scope` reads one scope in id order
/// (whatever order the calls were queued in), paged by `after` and `limit`, while `queued`
/// still reads every scope together in id order.
pub async fn scopes_keep_their_calls_in_id_order(store: &dyn Store) {
    // Queued out of id order, across three scopes; "" is the global scope.
    let calls: [(u128, &str); 9] = [
        (5, "product:1"),
        (2, ""),
        (9, "product:2"),
        (1, "product:1"),
        (7, "product:1"),
        (4, "product:2"),
        (3, ""),
        (8, ""),
        (6, "Ünïcödé 🚀"),
    ];
    for (n, scope) in calls {
        enqueue(store, scoped(n, scope)).await;
    }
    let in_scope = |scope: &'static str, after: Option<u128>, limit: usize| async move {
        store
            .queued_in_scope(scope, after.map(id), limit)
            .await
            .unwrap_or_else(|e| panic!("queued_in_scope({scope:?}) failed: {e}"))
            .into_iter()
            .map(|q| {
                assert_eq!(q.scope, scope, "{} read from scope {scope:?}", q.id);
                q.id
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(in_scope("product:1", None, 10).await, [id(1), id(5), id(7)]);
    assert_eq!(in_scope("product:2", None, 10).await, [id(4), id(9)]);
    assert_eq!(in_scope("", None, 10).await, [id(2), id(3), id(8)]);
    assert_eq!(in_scope("Ünïcödé 🚀", None, 10).await, [id(6)]);
    assert_eq!(in_scope("product:1", None, 1).await, [id(1)], "limit");
    assert_eq!(in_scope("product:1", Some(1), 1).await, [id(5)], "after");
    assert_eq!(in_scope("product:1", Some(5), 10).await, [id(7)], "after");
    assert_eq!(
        in_scope("product:1", Some(7), 10).await,
        none(),
        "after the last"
    );
    assert_eq!(in_scope("product:1", None, 0).await, none(), "limit 0");
    assert_eq!(
        in_scope("product", None, 10).await,
        none(),
        "a prefix is another scope"
    );
    assert_eq!(
        in_scope("nobody", None, 10).await,
        none(),
        "an unknown scope"
    );
    let all = queue(store).await;
    assert_eq!(
        all.iter().map(|q| q.id).collect::<Vec<_>>(),
        (1..=9).map(id).collect::<Vec<_>>(),
        "queued() reads all scopes in id order"
    );
    for (n, scope) in calls {
        let found = all.iter().find(|q| q.id == id(n)).map(|q| q.scope.as_str());
        assert_eq!(found, Some(scope), "the scope of {n}");
    }
}

/// `scope_heads` lists the smallest id of each scope that has calls, in id order, and follows
/// completions, burials and new calls.
pub async fn scope_heads_follow_the_queue(store: &dyn Store) {
    let read_heads = || async {
        store
            .scope_heads()
            .await
            .unwrap_or_else(|e| panic!("scope_heads failed: {e}"))
            .into_iter()
            .map(|q| (q.id, q.scope))
            .collect::<Vec<_>>()
    };
    let expect = |pairs: &[(u128, &str)]| {
        pairs
            .iter()
            .map(|(n, scope)| (id(*n), (*scope).to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        read_heads().await,
        expect(&[]),
        "an empty queue has no heads"
    );
    for (n, scope) in [(3, "b"), (1, "a"), (2, "b"), (4, "a"), (5, "")] {
        enqueue(store, scoped(n, scope)).await;
    }
    assert_eq!(read_heads().await, expect(&[(1, "a"), (2, "b"), (5, "")]));
    complete(store, 1).await;
    assert_eq!(
        read_heads().await,
        expect(&[(2, "b"), (4, "a"), (5, "")]),
        "after completing a's head"
    );
    bury(store, 2, DeadReason::Rejected).await;
    assert_eq!(
        read_heads().await,
        expect(&[(3, "b"), (4, "a"), (5, "")]),
        "after burying b's head"
    );
    complete(store, 5).await;
    enqueue(store, scoped(6, "c")).await;
    assert_eq!(
        read_heads().await,
        expect(&[(3, "b"), (4, "a"), (6, "c")]),
        "the global scope emptied, c appeared"
    );
    apply(
        store,
        rescheduling(4, 2, 9_000, "503"),
        "reschedule a's head",
    )
    .await;
    let heads = store.scope_heads().await.unwrap_or_else(|e| panic!("{e}"));
    let a = heads.iter().find(|q| q.id == id(4));
    assert_eq!(
        a.map(|q| (q.retries, q.next_attempt_at, q.last_error.as_deref())),
        Some((2, Timestamp(9_000), Some("503"))),
        "a head carries its retry state"
    );
}

/// A dead letter keeps its call's scope, and reviving it puts it back in that scope.
pub async fn dead_letters_and_revive_keep_the_scope(store: &dyn Store) {
    enqueue(store, scoped(1, "order:17")).await;
    enqueue(store, scoped(2, "order:17")).await;
    bury(store, 1, DeadReason::TooManyRetries).await;
    let letters = dead(store).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].scope(), "order:17", "the dead letter's scope");
    revive(store, 1, 20_000).await;
    let in_scope = store
        .queued_in_scope("order:17", None, 10)
        .await
        .unwrap_or_else(|e| panic!("queued_in_scope failed: {e}"));
    assert_eq!(
        in_scope.iter().map(|q| q.id).collect::<Vec<_>>(),
        [id(1), id(2)],
        "revived at its id's place in its scope"
    );
}

/// A confirmed write (a server's answer, a list refresh) to a record that a queued action
/// wrote keeps the pending value; the newest such write takes over when the last action that
/// wrote the record leaves the queue, if it is not older than the record, and the action's
/// own answer takes over whatever its stamp.
pub async fn pending_writes_survive_confirmed_writes(store: &dyn Store) {
    apply(
        store,
        writes([put("products", "p1", "server v0", 100, 1)]),
        "seed p1",
    )
    .await;
    queue_with_writes(store, 2, [put("products", "p1", "edited", 200, 2)]).await;
    assert_eq!(
        value(store, "products", "p1").await.as_deref(),
        Some("edited")
    );

    let refresh = apply(
        store,
        writes([put("products", "p1", "server v1", 300, 3)]),
        "a newer server value of a pending record",
    )
    .await;
    assert_eq!(
        refresh.writes_applied, 1,
        "a newer confirmed write to a pending record is kept aside"
    );
    assert_eq!(
        value(store, "products", "p1").await.as_deref(),
        Some("edited"),
        "a confirmed write must not replace a value a queued action wrote"
    );
    let older = apply(
        store,
        writes([put("products", "p1", "stale", 250, 4)]),
        "an older server value of a pending record",
    )
    .await;
    assert_eq!(
        older.writes_applied, 0,
        "a confirmed write older than the value kept aside is ignored"
    );
    assert_eq!(
        scan(store, "products").await.len(),
        1,
        "scan sees the pending record"
    );
    complete(store, 2).await;
    assert_eq!(
        get(store, "products", "p1").await,
        Some(Record {
            value: Some("server v1".to_owned()),
            stamp: stamp(300, 3)
        }),
        "once its last queued writer is done, a record takes the server value kept aside"
    );
    let after = apply(
        store,
        writes([put("products", "p1", "server v2", 400, 5)]),
        "a server value after the queue drained",
    )
    .await;
    assert_eq!(after.writes_applied, 1);
    assert_eq!(
        value(store, "products", "p1").await.as_deref(),
        Some("server v2"),
        "a record no queued action wrote takes confirmed writes at once"
    );

    // The action's own answer arrives after a refresh made before the server saw it: the
    // answer is what shows, although the refresh is stamped later.
    queue_with_writes(store, 11, [put("products", "p5", "edited", 1_100, 11)]).await;
    apply(
        store,
        writes([put("products", "p5", "listed before the replay", 1_200, 12)]),
        "a refresh of p5",
    )
    .await;
    let mut done = writes([put("products", "p5", "answer", 1_100, 11)]);
    done.complete = Some(id(11));
    apply(store, done, "replay 11 with its answer").await;
    assert_eq!(
        value(store, "products", "p5").await.as_deref(),
        Some("answer"),
        "the answer written with the completion takes over"
    );

    // No server value meanwhile: the pending value stays.
    queue_with_writes(store, 6, [put("products", "p2", "local", 600, 6)]).await;
    complete(store, 6).await;
    assert_eq!(
        value(store, "products", "p2").await.as_deref(),
        Some("local"),
        "a record nobody refreshed keeps what its action wrote"
    );

    // A server value older than the pending one does not take over.
    queue_with_writes(store, 7, [put("products", "p3", "local", 700, 7)]).await;
    apply(
        store,
        writes([put("products", "p3", "old", 650, 8)]),
        "an old server value of p3",
    )
    .await;
    complete(store, 7).await;
    assert_eq!(
        value(store, "products", "p3").await.as_deref(),
        Some("local"),
        "a server value older than the pending write is dropped when the action is done"
    );

    // A list refresh that deletes a record added offline: the record shows until its
    // action is done, then the deletion takes over.
    queue_with_writes(store, 9, [put("products", "p4", "added", 900, 9)]).await;
    apply(
        store,
        writes([delete("products", "p4", 950, 10)]),
        "a refresh without p4",
    )
    .await;
    assert_eq!(
        value(store, "products", "p4").await.as_deref(),
        Some("added"),
        "a refresh must not delete a record a queued action wrote"
    );
    complete(store, 9).await;
    assert_eq!(
        get(store, "products", "p4").await,
        Some(Record {
            value: None,
            stamp: stamp(950, 10)
        }),
        "the shadowed deletion takes over once the action is done"
    );
}

/// A buried action's writes are rolled back (a record it created disappears), the records are
/// named, and a revive writes them again.
pub async fn rejected_writes_roll_back(store: &dyn Store) {
    apply(
        store,
        writes([put("products", "p1", "v0", 100, 1)]),
        "seed p1",
    )
    .await;
    queue_with_writes(
        store,
        2,
        [
            put("products", "p1", "edit", 200, 2),
            put("products", "p2", "new", 200, 2),
        ],
    )
    .await;
    let buried = apply(store, burying(2), "bury 2").await;
    assert_eq!(
        buried.rolled_back,
        [
            RecordKey::new("products", "p1"),
            RecordKey::new("products", "p2")
        ],
        "a bury names the records it rolled back"
    );
    assert_eq!(
        get(store, "products", "p1").await,
        Some(Record {
            value: Some("v0".to_owned()),
            stamp: stamp(100, 1)
        }),
        "an edit rolls back to the record before it"
    );
    assert_eq!(
        get(store, "products", "p2").await,
        None,
        "a record the rejected action created disappears"
    );

    apply(store, reviving(2, 9_000), "revive 2").await;
    assert_eq!(
        value(store, "products", "p1").await.as_deref(),
        Some("edit")
    );
    assert_eq!(
        value(store, "products", "p2").await.as_deref(),
        Some("new"),
        "a revive writes the dead action's values again"
    );

    apply(
        store,
        writes([put("products", "p1", "server", 300, 3)]),
        "a server value while 2 is queued again",
    )
    .await;
    assert_eq!(
        value(store, "products", "p1").await.as_deref(),
        Some("edit")
    );
    let buried = apply(store, burying(2), "bury 2 again").await;
    assert_eq!(buried.rolled_back.len(), 2);
    assert_eq!(
        value(store, "products", "p1").await.as_deref(),
        Some("server"),
        "a roll-back takes the server value written meanwhile over the older prior"
    );
    assert_eq!(get(store, "products", "p2").await, None);

    apply(store, discarding(2), "discard 2").await;
    assert_eq!(dead(store).await, [], "discarded");
    // A completed action rolls nothing back.
    queue_with_writes(store, 4, [put("products", "p5", "kept", 400, 4)]).await;
    assert_eq!(
        apply(store, completing(4), "complete 4").await.rolled_back,
        []
    );
    assert_eq!(
        value(store, "products", "p5").await.as_deref(),
        Some("kept")
    );
}

/// Two queued actions wrote one record: rejecting the first keeps the second's value (and
/// hands it the first's roll-back target); rejecting the last puts back the one before.
pub async fn roll_back_keeps_later_writes(store: &dyn Store) {
    apply(
        store,
        writes([put("products", "p1", "v0", 100, 1)]),
        "seed p1",
    )
    .await;
    queue_with_writes(store, 2, [put("products", "p1", "first", 200, 2)]).await;
    queue_with_writes(store, 3, [put("products", "p1", "second", 300, 3)]).await;
    let buried = apply(store, burying(2), "bury the first").await;
    assert_eq!(
        buried.rolled_back,
        [],
        "a record a later queued action wrote is not rolled back"
    );
    assert_eq!(
        value(store, "products", "p1").await.as_deref(),
        Some("second"),
        "the later queued write stays"
    );
    let buried = apply(store, burying(3), "bury the second").await;
    assert_eq!(buried.rolled_back, [RecordKey::new("products", "p1")]);
    assert_eq!(
        get(store, "products", "p1").await,
        Some(Record {
            value: Some("v0".to_owned()),
            stamp: stamp(100, 1)
        }),
        "the later action inherits the rejected one's roll-back target"
    );

    queue_with_writes(store, 4, [put("products", "p2", "a", 400, 4)]).await;
    queue_with_writes(store, 5, [put("products", "p2", "b", 500, 5)]).await;
    let buried = apply(store, burying(5), "bury the later").await;
    assert_eq!(buried.rolled_back, [RecordKey::new("products", "p2")]);
    assert_eq!(
        value(store, "products", "p2").await.as_deref(),
        Some("a"),
        "rejecting the later write puts back the earlier queued one"
    );
    apply(
        store,
        writes([put("products", "p2", "server", 450, 6)]),
        "a server value of p2",
    )
    .await;
    assert_eq!(
        value(store, "products", "p2").await.as_deref(),
        Some("a"),
        "the earlier action still protects the record"
    );
    complete(store, 4).await;
    assert_eq!(
        value(store, "products", "p2").await.as_deref(),
        Some("server"),
        "the server value takes over when the earlier action is done"
    );
}

// Helpers: building batches and reading the store, each panicking with what it was doing.

/// Queues mutation `n` with its local handler's writes.
async fn queue_with_writes(store: &dyn Store, n: u128, local: impl IntoIterator<Item = Write>) {
    let mut batch = writes(local);
    batch.enqueue = Some(mutation(n, &format!("{{\"n\":{n}}}")));
    apply(store, batch, &format!("queue {} with its writes", id(n))).await;
}

async fn value(store: &dyn Store, collection: &str, key: &str) -> Option<String> {
    get(store, collection, key).await.and_then(|r| r.value)
}

/// An action id that sorts by `n`.
fn id(n: u128) -> ActionId {
    ActionId(uuid::Uuid::from_u128(n))
}

fn stamp(timestamp: u64, action: u128) -> Stamp {
    Stamp {
        timestamp: Timestamp(timestamp),
        action: id(action),
    }
}

fn mutation(n: u128, params: &str) -> NewQueued {
    NewQueued {
        id: id(n),
        name: "add_product".to_owned(),
        version: 3,
        kind: ActionKind::Mutation,
        params: params.to_owned(),
        timestamp: Timestamp(1_000 + n as u64),
        queued_at: Timestamp(5_000 + n as u64),
        scope: String::new(),
    }
}

fn none() -> Vec<ActionId> {
    Vec::new()
}

fn scoped(n: u128, scope: &str) -> NewQueued {
    NewQueued {
        scope: scope.to_owned(),
        ..mutation(n, &format!(r#"{{"n":{n}}}"#))
    }
}

fn query(n: u128, params: &str) -> NewQueued {
    NewQueued {
        name: "get_products".to_owned(),
        kind: ActionKind::Query,
        ..mutation(n, params)
    }
}

fn put(collection: &str, key: &str, value: &str, timestamp: u64, action: u128) -> Write {
    Write {
        collection: collection.to_owned(),
        key: key.to_owned(),
        value: Some(value.to_owned()),
        stamp: stamp(timestamp, action),
    }
}

fn delete(collection: &str, key: &str, timestamp: u64, action: u128) -> Write {
    Write {
        value: None,
        ..put(collection, key, "", timestamp, action)
    }
}

fn writes(writes: impl IntoIterator<Item = Write>) -> Batch {
    let mut batch = Batch::new();
    batch.writes = writes.into_iter().collect();
    batch
}

fn completing(n: u128) -> Batch {
    let mut batch = Batch::new();
    batch.complete = Some(id(n));
    batch
}

fn rescheduling(n: u128, retries: u32, next_attempt_at: u64, last_error: &str) -> Batch {
    let mut batch = Batch::new();
    batch.reschedule = Some(Reschedule {
        id: id(n),
        retries,
        next_attempt_at: Timestamp(next_attempt_at),
        last_error: last_error.to_owned(),
    });
    batch
}

fn bury_of(n: u128) -> Bury {
    Bury {
        id: id(n),
        reason: DeadReason::Rejected,
        message: format!("{n} was rejected"),
        failed_at: Timestamp(8_000),
    }
}

fn burying(n: u128) -> Batch {
    let mut batch = Batch::new();
    batch.bury = Some(bury_of(n));
    batch
}

fn reviving(n: u128, now: u64) -> Batch {
    let mut batch = Batch::new();
    batch.revive = Some((id(n), Timestamp(now)));
    batch
}

fn discarding(n: u128) -> Batch {
    let mut batch = Batch::new();
    batch.discard = Some(id(n));
    batch
}

async fn apply(store: &dyn Store, batch: Batch, what: &str) -> Applied {
    store
        .apply(batch)
        .await
        .unwrap_or_else(|e| panic!("{what}: apply failed: {e}"))
}

async fn enqueue(store: &dyn Store, new: NewQueued) -> Applied {
    let what = format!("enqueue {}", new.id);
    let mut batch = Batch::new();
    batch.enqueue = Some(new);
    apply(store, batch, &what).await
}

async fn complete(store: &dyn Store, n: u128) {
    apply(store, completing(n), &format!("complete {}", id(n))).await;
}

async fn bury(store: &dyn Store, n: u128, reason: DeadReason) {
    let mut batch = burying(n);
    if let Some(bury) = &mut batch.bury {
        bury.reason = reason;
    }
    apply(store, batch, &format!("bury {}", id(n))).await;
}

async fn revive(store: &dyn Store, n: u128, now: u64) {
    apply(store, reviving(n, now), &format!("revive {}", id(n))).await;
}

fn expect_not_found(result: Result<Applied, StoreError>, missing: u128, what: &str) {
    match result {
        Err(StoreError::NotFound(got)) if got == id(missing) => {}
        Err(StoreError::NotFound(got)) => {
            panic!("{what}: NotFound names {got}, not {}", id(missing))
        }
        other => panic!("{what}: expected NotFound({}), got {other:?}", id(missing)),
    }
}

async fn queued(store: &dyn Store, after: Option<ActionId>, limit: usize) -> Vec<QueuedAction> {
    store
        .queued(after, limit)
        .await
        .unwrap_or_else(|e| panic!("queued({after:?}, {limit}) failed: {e}"))
}

async fn queue(store: &dyn Store) -> Vec<QueuedAction> {
    queued(store, None, usize::MAX).await
}

async fn ids(store: &dyn Store) -> Vec<ActionId> {
    queue(store).await.into_iter().map(|q| q.id).collect()
}

async fn seq_of(store: &dyn Store, n: u128) -> u64 {
    queue(store)
        .await
        .into_iter()
        .find(|q| q.id == id(n))
        .map(|q| q.seq)
        .unwrap_or_else(|| panic!("{} is not queued", id(n)))
}

async fn dead(store: &dyn Store) -> Vec<DeadLetter> {
    store
        .dead_letters()
        .await
        .unwrap_or_else(|e| panic!("dead_letters failed: {e}"))
}

async fn counts(store: &dyn Store) -> Counts {
    store
        .counts()
        .await
        .unwrap_or_else(|e| panic!("counts failed: {e}"))
}

async fn get(store: &dyn Store, collection: &str, key: &str) -> Option<Record> {
    store
        .get(collection, key)
        .await
        .unwrap_or_else(|e| panic!("get({collection:?}, {key:?}) failed: {e}"))
}

async fn scan(store: &dyn Store, collection: &str) -> Vec<(String, Record)> {
    store
        .scan(collection)
        .await
        .unwrap_or_else(|e| panic!("scan({collection:?}) failed: {e}"))
}

/// Everything a store holds, to check that a failed batch changed nothing.
#[derive(Debug, PartialEq)]
struct Snapshot {
    queue: Vec<QueuedAction>,
    dead: Vec<DeadLetter>,
    counts: Counts,
    collections: Vec<Vec<(String, Record)>>,
}

async fn snapshot(store: &dyn Store, collections: &[&str]) -> Snapshot {
    let mut scanned = Vec::new();
    for collection in collections {
        scanned.push(scan(store, collection).await);
    }
    Snapshot {
        queue: queue(store).await,
        dead: dead(store).await,
        counts: counts(store).await,
        collections: scanned,
    }
}

/// The server's clock offset reads back as last saved, negative or not, and batches leave it
/// alone. A store that keeps no offset (the trait's default) reads `None` throughout.
pub async fn clock_offset_round_trips(store: &dyn Store) {
    assert_eq!(
        store.clock_offset().await.unwrap(),
        None,
        "a fresh store has none"
    );
    store.set_clock_offset(-3_600_000).await.unwrap();
    let kept = store.clock_offset().await.unwrap();
    if kept.is_none() {
        store.set_clock_offset(42).await.unwrap();
        assert_eq!(
            store.clock_offset().await.unwrap(),
            None,
            "kept none, then one"
        );
        return;
    }
    assert_eq!(kept, Some(-3_600_000));
    store.set_clock_offset(1 << 40).await.unwrap();
    let mut batch = Batch::new();
    batch.writes.push(Write {
        collection: "c".into(),
        key: "k".into(),
        value: Some("1".into()),
        stamp: stamp(1, 1),
    });
    store.apply(batch).await.unwrap();
    assert_eq!(store.clock_offset().await.unwrap(), Some(1 << 40));
}
