//! The IndexedDB store in a real browser: the shared conformance cases, durability across
//! closing and reopening, several connections on one database (several tabs), and opening
//! errors. Run with `wasm-bindgen-test` in headless Chromium (see `scripts/wasm-toolchain.sh`).
#![cfg(target_arch = "wasm32")]

use std::cell::Cell;
use sync_runtime::store::{
    conformance, Batch, Bury, Counts, DeadReason, IndexedDbStore, NewQueued, Stamp, Write,
};
use sync_runtime::{ActionId, ActionKind, Store, StoreError, Timestamp};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

thread_local! {
    static NEXT_DB: Cell<u32> = const { Cell::new(0) };
}

/// A database name no earlier run or test used.
fn fresh_name(what: &str) -> String {
    let n = NEXT_DB.with(|next| {
        next.set(next.get() + 1);
        next.get()
    });
    format!("test-{what}-{}-{n}", js_sys::Date::now())
}

async fn open(name: &str) -> IndexedDbStore {
    IndexedDbStore::open(name)
        .await
        .unwrap_or_else(|e| panic!("open {name}: {e}"))
}

async fn delete(name: &str) {
    IndexedDbStore::delete_database(name)
        .await
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
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

async fn apply(store: &dyn Store, batch: Batch) {
    store
        .apply(batch)
        .await
        .unwrap_or_else(|e| panic!("apply: {e}"));
}

async fn enqueue(store: &dyn Store, n: u128) {
    let mut batch = Batch::new();
    batch.enqueue = Some(mutation(n));
    apply(store, batch).await;
}

#[wasm_bindgen_test]
async fn indexeddb_store_conforms() {
    for case in conformance::CASES {
        console_log!("store conformance: {}", case.name);
        let name = fresh_name(case.name);
        let store = open(&name).await;
        case.run(&store).await;
        drop(store);
        delete(&name).await;
    }
}

#[wasm_bindgen_test]
async fn a_lazily_opened_store_conforms_too() {
    // The default service's store opens on first use; run a few cases through that path.
    for case in conformance::CASES.iter().take(5) {
        let name = fresh_name(case.name);
        let store = IndexedDbStore::new(name.clone());
        case.run(&store).await;
        drop(store);
        delete(&name).await;
    }
}

#[derive(Debug, PartialEq)]
struct Contents {
    queue: Vec<sync_runtime::store::QueuedAction>,
    dead: Vec<sync_runtime::store::DeadLetter>,
    counts: Counts,
    products: Vec<(String, sync_runtime::store::Record)>,
}

async fn contents(store: &dyn Store) -> Contents {
    Contents {
        queue: store.queued(None, usize::MAX).await.expect("queue"),
        dead: store.dead_letters().await.expect("dead letters"),
        counts: store.counts().await.expect("counts"),
        products: store.scan("products").await.expect("scan"),
    }
}

#[wasm_bindgen_test]
async fn queue_survives_closing_and_reopening() {
    let name = fresh_name("durable");
    let (before, last_seq) = {
        let store = open(&name).await;
        for n in 1..=5 {
            let mut batch = Batch::new();
            batch.enqueue = Some(mutation(n));
            batch.writes = vec![Write {
                collection: "products".to_owned(),
                key: format!("p{n}"),
                value: Some(format!(r#"{{"name":"item {n}"}}"#)),
                stamp: Stamp {
                    timestamp: Timestamp(1_000 + n as u64),
                    action: id(n),
                },
            }];
            apply(&store, batch).await;
        }
        let mut batch = Batch::new();
        batch.bury = Some(Bury {
            id: id(2),
            reason: DeadReason::Rejected,
            message: "no".to_owned(),
            failed_at: Timestamp(9_000),
        });
        apply(&store, batch).await;
        let last_seq = store.queued(None, usize::MAX).await.expect("queue")[3].seq;
        let mut batch = Batch::new();
        batch.complete = Some(id(5));
        apply(&store, batch).await;
        (contents(&store).await, last_seq)
        // Dropped here: the connection closes.
    };
    assert_eq!(
        before.counts,
        Counts {
            pending: 3,
            dead: 1
        }
    );

    let store = open(&name).await;
    assert_eq!(
        contents(&store).await,
        before,
        "the store changed across closing and reopening"
    );
    enqueue(&store, 6).await;
    let queue = store.queued(None, usize::MAX).await.expect("queue");
    let last = queue.last().expect("a queue");
    assert_eq!(last.id, id(6));
    assert!(
        last.seq > last_seq,
        "seq {} reused after reopening (last was {last_seq})",
        last.seq
    );
    drop(store);
    delete(&name).await;
}

#[wasm_bindgen_test]
async fn two_connections_share_one_queue() {
    // Two tabs: two connections to one database, writing in turns.
    let name = fresh_name("two-tabs");
    let first = open(&name).await;
    let second = open(&name).await;
    for n in 1..=20 {
        let store: &dyn Store = if n % 2 == 0 { &first } else { &second };
        enqueue(store, n).await;
    }
    for store in [&first, &second] {
        let queue = store.queued(None, usize::MAX).await.expect("queue");
        assert_eq!(
            queue.iter().map(|q| q.id).collect::<Vec<_>>(),
            (1..=20).map(id).collect::<Vec<_>>()
        );
        assert!(queue.windows(2).all(|w| w[0].seq < w[1].seq));
    }
    drop((first, second));
    delete(&name).await;
}

#[wasm_bindgen_test]
async fn a_failed_batch_leaves_nothing_behind_across_a_reopen() {
    let name = fresh_name("atomic");
    {
        let store = open(&name).await;
        enqueue(&store, 1).await;
        let mut batch = Batch::new();
        batch.enqueue = Some(mutation(2));
        batch.complete = Some(id(1));
        batch.bury = Some(Bury {
            id: id(99),
            reason: DeadReason::Rejected,
            message: "unknown".to_owned(),
            failed_at: Timestamp(1),
        });
        match store.apply(batch).await {
            Err(StoreError::NotFound(missing)) => assert_eq!(missing, id(99)),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    let store = open(&name).await;
    let queue = store.queued(None, usize::MAX).await.expect("queue");
    assert_eq!(queue.iter().map(|q| q.id).collect::<Vec<_>>(), [id(1)]);
    drop(store);
    delete(&name).await;
}

#[wasm_bindgen_test]
async fn a_database_from_a_newer_version_is_incompatible() {
    let name = fresh_name("newer");
    // Create the database at a schema version this build does not know.
    let factory = js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into()).expect("indexedDB");
    let open_fn = js_sys::Reflect::get(&factory, &"open".into())
        .expect("indexedDB.open")
        .dyn_into::<js_sys::Function>()
        .expect("a function");
    let request = open_fn
        .call2(&factory, &JsValue::from_str(&name), &JsValue::from(99))
        .expect("open request");
    let opened = js_sys::Promise::new(&mut |resolve, reject| {
        let _ = js_sys::Reflect::set(&request, &"onsuccess".into(), &resolve);
        let _ = js_sys::Reflect::set(&request, &"onerror".into(), &reject);
    });
    wasm_bindgen_futures::JsFuture::from(opened)
        .await
        .expect("opened at version 99");
    let db = js_sys::Reflect::get(&request, &"result".into()).expect("the database");
    let close = js_sys::Reflect::get(&db, &"close".into())
        .expect("close")
        .dyn_into::<js_sys::Function>()
        .expect("a function");
    close.call0(&db).expect("close");

    match IndexedDbStore::open(&name).await {
        Err(StoreError::Incompatible { location, reason }) => {
            assert!(location.contains(&name), "{location}");
            assert!(reason.contains("newer"), "{reason}");
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }
    // The lazy store reports the same on every call, and never panics.
    let lazy = IndexedDbStore::new(name.clone());
    for _ in 0..2 {
        assert!(matches!(
            lazy.counts().await,
            Err(StoreError::Incompatible { .. })
        ));
    }
    drop(lazy);
    delete(&name).await;
}

/// A database created by schema version 1 (before ordering scopes and local data kept true)
/// is upgraded in place: its queued call and dead letter come back in the global scope, its
/// records stay, and the object stores of version 2 work on them.
#[wasm_bindgen_test]
async fn a_version_1_database_is_upgraded_and_keeps_its_records() {
    use rexie::{Index, ObjectStore, Rexie, TransactionMode};
    let name = fresh_name("v1");
    // The object stores version 1 created.
    let v1 = Rexie::builder(&name)
        .version(1)
        .add_object_store(
            ObjectStore::new("queue")
                .key_path("seq")
                .add_index(Index::new("by_id", "id").unique(true))
                .add_index(Index::new_array("by_query", ["kind", "name", "params"])),
        )
        .add_object_store(
            ObjectStore::new("dead_letters")
                .key_path("dead_seq")
                .add_index(Index::new("by_id", "action.id")),
        )
        .add_object_store(ObjectStore::new("records").key_path_array(["collection", "key"]))
        .add_object_store(ObjectStore::new("meta"))
        .build()
        .await
        .expect("create a version 1 database");
    let record = js_sys::Object::new();
    for (field, value) in [
        ("collection", JsValue::from_str("products")),
        ("key", JsValue::from_str("p1")),
        ("value", JsValue::from_str("v0")),
        ("timestamp", JsValue::from_f64(5.0)),
        ("action", JsValue::from_str(&id(5).to_string())),
    ] {
        js_sys::Reflect::set(&record, &field.into(), &value).expect("set a field");
    }
    // A call queued by version 1: no `scope` (nor `queued_at`) field.
    let queued = js_sys::Object::new();
    for (field, value) in [
        ("seq", JsValue::from_f64(1.0)),
        ("id", JsValue::from_str(&id(4).to_string())),
        ("name", JsValue::from_str("add_product")),
        ("version", JsValue::from_f64(1.0)),
        ("kind", JsValue::from_str("mutation")),
        ("params", JsValue::from_str("{}")),
        ("timestamp", JsValue::from_f64(4.0)),
        ("retries", JsValue::from_f64(0.0)),
        ("next_attempt_at", JsValue::from_f64(4.0)),
        ("last_error", JsValue::NULL),
    ] {
        js_sys::Reflect::set(&queued, &field.into(), &value).expect("set a field");
    }
    // A dead letter of version 1: its action has no `scope` either.
    let buried = js_sys::Object::new();
    let buried_action = js_sys::Object::assign(&js_sys::Object::new(), &queued);
    for (field, value) in [
        ("seq", JsValue::from_f64(2.0)),
        ("id", JsValue::from_str(&id(3).to_string())),
    ] {
        js_sys::Reflect::set(&buried_action, &field.into(), &value).expect("set a field");
    }
    for (field, value) in [
        ("dead_seq", JsValue::from_f64(1.0)),
        ("action", buried_action.into()),
        ("reason", JsValue::from_str("rejected")),
        ("message", JsValue::from_str("the server refused it")),
        ("failed_at", JsValue::from_f64(9.0)),
    ] {
        js_sys::Reflect::set(&buried, &field.into(), &value).expect("set a field");
    }
    let tx = v1
        .transaction(
            &["queue", "dead_letters", "records", "meta"],
            TransactionMode::ReadWrite,
        )
        .expect("a transaction");
    tx.store("dead_letters")
        .expect("dead letters")
        .put(&buried, None)
        .await
        .expect("bury a call");
    tx.store("queue")
        .expect("queue")
        .put(&queued, None)
        .await
        .expect("queue a call");
    tx.store("records")
        .expect("records")
        .put(&record, None)
        .await
        .expect("write a record");
    tx.store("meta")
        .expect("meta")
        .put(
            &JsValue::from(1),
            Some(&JsValue::from_str("schema_version")),
        )
        .await
        .expect("write the schema version");
    tx.done().await.expect("commit");
    v1.close();

    let store = open(&name).await;
    let p1 = store.get("products", "p1").await.expect("read p1");
    assert_eq!(p1.and_then(|r| r.value).as_deref(), Some("v0"));
    // The old call is in the global scope, where replay reads it (the scope index leaves out
    // records without a scope, so the upgrade gives it one).
    let heads = store.scope_heads().await.expect("scope heads");
    assert_eq!(
        heads
            .iter()
            .map(|q| (q.id, q.scope.as_str()))
            .collect::<Vec<_>>(),
        [(id(4), "")]
    );
    let in_scope = store
        .queued_in_scope("", None, 10)
        .await
        .expect("the global scope");
    assert_eq!(in_scope.len(), 1);
    assert_eq!(
        (in_scope[0].id, in_scope[0].queued_at),
        (id(4), Timestamp(4))
    );
    let dead = store.dead_letters().await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].action.id, dead[0].scope(), dead[0].message.as_str()),
        (id(3), "", "the server refused it")
    );
    // A pending write over the old record, a server value kept aside, and a roll-back.
    let mut batch = Batch::new();
    batch.writes.push(Write {
        collection: "products".to_owned(),
        key: "p1".to_owned(),
        value: Some("edited".to_owned()),
        stamp: Stamp {
            timestamp: Timestamp(1_006),
            action: id(6),
        },
    });
    batch.enqueue = Some(mutation(6));
    apply(&store, batch).await;
    let mut refresh = Batch::new();
    refresh.writes.push(Write {
        collection: "products".to_owned(),
        key: "p1".to_owned(),
        value: Some("server".to_owned()),
        stamp: Stamp {
            timestamp: Timestamp(2_000),
            action: id(7),
        },
    });
    apply(&store, refresh).await;
    let read = store.get("products", "p1").await.expect("read p1");
    assert_eq!(read.and_then(|r| r.value).as_deref(), Some("edited"));
    let mut bury = Batch::new();
    bury.bury = Some(Bury {
        id: id(6),
        reason: DeadReason::Rejected,
        message: "no".to_owned(),
        failed_at: Timestamp(3_000),
    });
    let applied = store.apply(bury).await.expect("bury");
    assert_eq!(applied.rolled_back.len(), 1);
    let read = store.get("products", "p1").await.expect("read p1");
    assert_eq!(read.and_then(|r| r.value).as_deref(), Some("server"));
    drop(store);
    delete(&name).await;
}

/// A plain JavaScript object with these fields, as the store writes them.
fn object(fields: &[(&str, JsValue)]) -> js_sys::Object {
    let object = js_sys::Object::new();
    for (field, value) in fields {
        js_sys::Reflect::set(&object, &JsValue::from_str(field), value).expect("set a field");
    }
    object
}

/// A queued call as schema version 2 wrote it, under its number `seq`.
fn v2_queued(seq: f64, n: u128, scope: &str) -> js_sys::Object {
    object(&[
        ("seq", JsValue::from_f64(seq)),
        ("id", JsValue::from_str(&id(n).to_string())),
        ("name", JsValue::from_str("add_product")),
        ("version", JsValue::from_f64(1.0)),
        ("kind", JsValue::from_str("mutation")),
        ("params", JsValue::from_str(&format!(r#"{{"n":{n}}}"#))),
        ("timestamp", JsValue::from_f64(1_000.0 + n as f64)),
        ("retries", JsValue::from_f64(0.0)),
        ("next_attempt_at", JsValue::from_f64(1_000.0 + n as f64)),
        ("queued_at", JsValue::from_f64(1_000.0 + n as f64)),
        ("last_error", JsValue::NULL),
        ("scope", JsValue::from_str(scope)),
    ])
}

/// A record (or a shadowed value) as schema version 2 wrote it.
fn v2_record(value: &str, timestamp: f64, action: u128) -> js_sys::Object {
    object(&[
        ("collection", JsValue::from_str("products")),
        ("key", JsValue::from_str("p1")),
        ("value", JsValue::from_str(value)),
        ("timestamp", JsValue::from_f64(timestamp)),
        ("action", JsValue::from_str(&id(action).to_string())),
    ])
}

/// A database created by schema version 2, whose queue was numbered by a counter in `meta`,
/// is upgraded to the queue that numbers its calls itself: its calls keep their numbers,
/// scopes and order, its dead letter, record, pending write and shadowed server value stay,
/// and new calls are numbered after every number the old counter handed out.
#[wasm_bindgen_test]
async fn a_version_2_database_is_upgraded_and_keeps_its_records() {
    use rexie::{Index, ObjectStore, Rexie, TransactionMode};
    let name = fresh_name("v2");
    // The object stores version 2 created.
    let v2 = Rexie::builder(&name)
        .version(2)
        .add_object_store(
            ObjectStore::new("queue")
                .key_path("seq")
                .add_index(Index::new("by_id", "id").unique(true))
                .add_index(Index::new_array("by_query", ["kind", "name", "params"]))
                .add_index(Index::new_array("by_scope", ["scope", "id"])),
        )
        .add_object_store(
            ObjectStore::new("dead_letters")
                .key_path("dead_seq")
                .add_index(Index::new("by_id", "action.id")),
        )
        .add_object_store(ObjectStore::new("records").key_path_array(["collection", "key"]))
        .add_object_store(ObjectStore::new("meta"))
        .add_object_store(
            ObjectStore::new("pending_writes")
                .key_path_array(["action", "collection", "key"])
                .add_index(Index::new("by_action", "action"))
                .add_index(Index::new_array("by_record", ["collection", "key"])),
        )
        .add_object_store(ObjectStore::new("shadowed").key_path_array(["collection", "key"]))
        .add_object_store(
            ObjectStore::new("dead_writes")
                .key_path_array(["action", "collection", "key"])
                .add_index(Index::new("by_action", "action")),
        )
        .build()
        .await
        .expect("create a version 2 database");
    // Calls 4 (numbered 3) and 2 (numbered 5, queued later in another scope); call 3 was
    // numbered 6 and buried; the call numbered 7 was completed, so the counter is past every
    // number still stored.
    let queue = [v2_queued(3.0, 4, ""), v2_queued(5.0, 2, "product:p1")];
    let buried = object(&[
        ("dead_seq", JsValue::from_f64(1.0)),
        ("action", v2_queued(6.0, 3, "").into()),
        ("reason", JsValue::from_str("rejected")),
        ("message", JsValue::from_str("the server refused it")),
        ("failed_at", JsValue::from_f64(9.0)),
    ]);
    // Call 4 edited p1 (which held v0); the server's newer value waits aside.
    let record = v2_record("edited", 1_004.0, 4);
    let pending = v2_record("edited", 1_004.0, 4);
    js_sys::Reflect::set(&pending, &"prior".into(), &v2_record("v0", 5.0, 5).into())
        .expect("set the prior record");
    let shadowed = v2_record("server", 2_000.0, 7);
    let tx = v2
        .transaction(
            &[
                "queue",
                "dead_letters",
                "records",
                "meta",
                "pending_writes",
                "shadowed",
            ],
            TransactionMode::ReadWrite,
        )
        .expect("a transaction");
    for queued in &queue {
        tx.store("queue")
            .expect("queue")
            .put(queued, None)
            .await
            .expect("queue a call");
    }
    tx.store("dead_letters")
        .expect("dead letters")
        .put(&buried, None)
        .await
        .expect("bury a call");
    tx.store("records")
        .expect("records")
        .put(&record, None)
        .await
        .expect("write a record");
    tx.store("pending_writes")
        .expect("pending writes")
        .put(&pending, None)
        .await
        .expect("write a pending write");
    tx.store("shadowed")
        .expect("shadowed")
        .put(&shadowed, None)
        .await
        .expect("shadow a server value");
    let meta = tx.store("meta").expect("meta");
    for (key, value) in [
        ("schema_version", 2.0),
        ("last_seq", 7.0),
        ("last_dead_seq", 1.0),
    ] {
        meta.put(&JsValue::from_f64(value), Some(&JsValue::from_str(key)))
            .await
            .expect("write meta");
    }
    tx.done().await.expect("commit");
    v2.close();

    let store = open(&name).await;
    let queued = store.queued(None, 10).await.expect("the queue");
    assert_eq!(
        queued
            .iter()
            .map(|q| (q.id, q.seq, q.scope.as_str(), q.params.as_str()))
            .collect::<Vec<_>>(),
        [
            (id(2), 5, "product:p1", r#"{"n":2}"#),
            (id(4), 3, "", r#"{"n":4}"#)
        ],
        "the calls of version 2, in id order"
    );
    let heads = store.scope_heads().await.expect("scope heads");
    assert_eq!(
        heads.iter().map(|q| q.id).collect::<Vec<_>>(),
        [id(2), id(4)]
    );
    let dead = store.dead_letters().await.expect("dead letters");
    assert_eq!(
        dead.iter()
            .map(|d| (d.action.id, d.action.seq, d.message.as_str()))
            .collect::<Vec<_>>(),
        [(id(3), 6, "the server refused it")]
    );
    let p1 = store.get("products", "p1").await.expect("read p1");
    assert_eq!(p1.and_then(|r| r.value).as_deref(), Some("edited"));
    assert_eq!(
        store.counts().await.expect("counts"),
        Counts {
            pending: 2,
            dead: 1
        }
    );

    // New calls go after every number the counter of version 2 handed out, and after the old
    // calls in id order; an id already queued is still kept once.
    enqueue(&store, 9).await;
    enqueue(&store, 4).await;
    let queued = store.queued(None, 10).await.expect("the queue");
    assert_eq!(
        queued.iter().map(|q| q.id).collect::<Vec<_>>(),
        [id(2), id(4), id(9)]
    );
    let new_seq = queued[2].seq;
    assert!(new_seq > 7, "a new call got number {new_seq}, not past 7");
    let mut revive = Batch::new();
    revive.revive = Some((id(3), Timestamp(10_000)));
    apply(&store, revive).await;
    let revived = store.queued(None, 10).await.expect("the queue");
    let revived = revived.iter().find(|q| q.id == id(3)).expect("3 revived");
    assert!(
        revived.seq > new_seq,
        "the revived call got number {}, not past {new_seq}",
        revived.seq
    );

    // Call 4 leaves the queue: its pending write goes, and the shadowed server value takes
    // over.
    let mut complete = Batch::new();
    complete.complete = Some(id(4));
    apply(&store, complete).await;
    let p1 = store.get("products", "p1").await.expect("read p1");
    assert_eq!(p1.and_then(|r| r.value).as_deref(), Some("server"));
    drop(store);

    // Reopening upgrades nothing more: the numbers go on.
    let store = open(&name).await;
    enqueue(&store, 10).await;
    let queued = store.queued(None, 10).await.expect("the queue");
    let last = queued.last().expect("a queue");
    assert_eq!(last.id, id(10));
    assert!(last.seq > revived.seq, "number {} reused", last.seq);
    drop(store);
    delete(&name).await;
}
