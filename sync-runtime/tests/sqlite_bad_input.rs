//! The SQLite store meets damaged, foreign, newer, hand-edited, read-only and full files with
//! a clear error, never a panic, and never changes a file it cannot use.
#![cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]

use futures::executor::block_on;
use rusqlite::Connection;
use std::fs;
use std::path::Path;
use sync_runtime::store::{
    Batch, Counts, DeadReason, NewQueued, QueuedAction, SqliteOptions, SqliteStore, Stamp, Write,
};
use sync_runtime::{ActionId, ActionKind, Store, StoreError, Timestamp};
use tempfile::TempDir;

#[test]
fn truncated_file_fails_clearly() {
    let (_dir, path) = temp_file("truncated.db");
    {
        let store = open(&path);
        for n in 1..=300 {
            let mut batch = Batch::new();
            batch.enqueue = Some(mutation(n));
            batch.writes = vec![put(
                "products",
                &format!("p{n:03}"),
                &"x".repeat(1_000),
                n as u64,
            )];
            apply(&store, batch);
        }
    }
    let length = fs::metadata(&path).expect("metadata").len();
    assert!(
        length > 100_000,
        "the store was checkpointed into the file ({length} bytes)"
    );
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|file| file.set_len(length / 2))
        .expect("truncate");

    let errors = match SqliteStore::open(&path) {
        Err(error) => vec![error],
        Ok(store) => {
            let mut errors = Vec::new();
            errors.extend(block_on(store.counts()).err());
            errors.extend(block_on(store.queued(None, usize::MAX)).err());
            errors.extend(block_on(store.dead_letters()).err());
            errors.extend(block_on(store.scan("products")).err());
            for n in 1..=300 {
                errors.extend(block_on(store.get("products", &format!("p{n:03}"))).err());
            }
            let mut batch = Batch::new();
            batch.enqueue = Some(mutation(1_000));
            errors.extend(block_on(store.apply(batch)).err());
            errors
        }
    };
    assert!(!errors.is_empty(), "a file cut in half read as if whole");
    for error in &errors {
        assert!(
            matches!(error, StoreError::Incompatible { reason, .. } if reason.contains("damaged")),
            "not a clear 'damaged' error: {error}"
        );
    }
    println!(
        "truncated file: {} errors, first: {}",
        errors.len(),
        errors[0]
    );
}

#[test]
fn garbage_file_is_incompatible_and_left_alone() {
    let (_dir, path) = temp_file("garbage.db");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()[0]
        })
        .collect();
    for contents in [garbage.as_slice(), b"hello, I am a text file\n".as_slice()] {
        fs::write(&path, contents).expect("write garbage");
        let error = SqliteStore::open(&path).expect_err("garbage opened as a store");
        assert!(
            matches!(&error, StoreError::Incompatible { reason, location } if reason.contains("not a SQLite database") && location.contains("garbage.db")),
            "{error}"
        );
        assert_eq!(
            fs::read(&path).expect("read back"),
            contents,
            "the garbage file was changed"
        );
        println!("{error}");
    }
}

#[test]
fn empty_file_becomes_a_store() {
    let (_dir, path) = temp_file("empty.db");
    fs::write(&path, b"").expect("create an empty file");
    let store = open(&path);
    assert_eq!(block_on(store.counts()).expect("counts"), Counts::default());
}

#[test]
fn another_applications_database_is_incompatible_and_left_alone() {
    let (_dir, path) = temp_file("foreign.db");
    {
        let foreign = Connection::open(&path).expect("foreign db");
        foreign
            .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');")
            .expect("foreign schema");
    }
    let error = SqliteStore::open(&path).expect_err("a foreign database opened as a store");
    assert!(
        matches!(&error, StoreError::Incompatible { reason, .. } if reason.contains("another application")),
        "{error}"
    );
    println!("{error}");
    let foreign = Connection::open(&path).expect("foreign db");
    let mode: String = foreign
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("journal mode");
    assert_eq!(
        mode, "delete",
        "opening a foreign database switched it to WAL"
    );
    let body: String = foreign
        .query_row("SELECT body FROM notes", [], |row| row.get(0))
        .expect("notes");
    assert_eq!(body, "keep me");

    foreign
        .pragma_update(None, "application_id", 0x1234_5678)
        .expect("set application id");
    drop(foreign);
    let error = SqliteStore::open(&path).expect_err("a foreign database opened as a store");
    assert!(
        matches!(&error, StoreError::Incompatible { reason, .. } if reason.contains("0x12345678")),
        "{error}"
    );
}

#[test]
fn future_schema_version_is_incompatible_and_left_alone() {
    let (_dir, path) = temp_file("future.db");
    drop(open(&path));
    Connection::open(&path)
        .and_then(|raw| raw.pragma_update(None, "user_version", 7))
        .expect("set user_version");
    for read_only in [false, true] {
        let error = SqliteStore::open_with(&path, SqliteOptions::new().read_only(read_only))
            .expect_err("a newer schema opened");
        assert!(
            matches!(&error, StoreError::Incompatible { reason, .. } if reason.contains("schema version 7") && reason.contains("newer")),
            "{error}"
        );
        println!("{error}");
    }
    let version: i32 = Connection::open(&path)
        .and_then(|raw| raw.pragma_query_value(None, "user_version", |row| row.get(0)))
        .expect("read user_version");
    assert_eq!(version, 7, "opening a newer store changed its version");
}

#[test]
fn hand_edited_rows_fail_clearly() {
    let (_dir, path) = temp_file("edited.db");
    let store = open(&path);
    let mut batch = Batch::new();
    batch.enqueue = Some(mutation(1));
    batch.writes = vec![put("products", "p1", "fine", 1)];
    apply(&store, batch);
    let raw = Connection::open(&path).expect("raw connection");
    let insert_queued = |id: &str, version: &str, kind: &str, retries: &str| {
        raw.execute(
            &format!(
                "INSERT INTO queue (id, name, version, kind, params, timestamp, retries, next_attempt_at) \
                 VALUES ('{id}', 'edited', {version}, '{kind}', '{{}}', 1, {retries}, 1)"
            ),
            [],
        )
        .expect("insert a queue row");
        raw.last_insert_rowid()
    };
    let expect_queue_error = |needle: &str| {
        let error = block_on(store.queued(None, usize::MAX)).expect_err("an edited row read back");
        assert!(
            matches!(&error, StoreError::Incompatible { reason, .. } if reason.contains(needle)),
            "{error} does not mention {needle}"
        );
        println!("{error}");
    };

    let seq = insert_queued(&id(2).to_string(), "1", "subscription", "0");
    expect_queue_error(&format!("seq {seq} has unknown kind \"subscription\""));
    assert_eq!(
        block_on(store.queued(None, 1))
            .expect("the head before the bad row")
            .len(),
        1,
        "a page that stops before a bad row reads"
    );
    assert_eq!(
        block_on(store.counts()).expect("counts").pending,
        2,
        "counts do not decode rows"
    );
    let cases = [
        ("not-a-uuid", "1", "mutation", "0", "is not a uuid"),
        (&id(3).to_string(), "'one'", "mutation", "0", "version"),
        (&id(4).to_string(), "1", "mutation", "-1", "retries -1"),
        (
            &id(5).to_string(),
            "99999999999",
            "mutation",
            "0",
            "version 99999999999",
        ),
    ];
    for (id, version, kind, retries, needle) in cases {
        raw.execute("DELETE FROM queue WHERE name = 'edited'", [])
            .expect("delete");
        insert_queued(id, version, kind, retries);
        expect_queue_error(needle);
    }
    raw.execute("DELETE FROM queue WHERE name = 'edited'", [])
        .expect("delete");
    assert_eq!(
        block_on(store.queued(None, usize::MAX))
            .expect("queue")
            .len(),
        1,
        "the store reads again once fixed"
    );

    raw.execute(
        &format!(
            "INSERT INTO dead (seq, id, name, version, kind, params, timestamp, retries, next_attempt_at, reason, message, failed_at) \
             VALUES (99, '{}', 'edited', 1, 'mutation', '{{}}', 1, 0, 1, 'exploded', 'boom', 1)",
            id(6)
        ),
        [],
    )
    .expect("insert a dead row");
    let error = block_on(store.dead_letters()).expect_err("an unknown dead reason read back");
    assert!(
        matches!(&error, StoreError::Incompatible { reason, .. } if reason.contains(&format!("dead letter {} has unknown reason \"exploded\"", id(6)))),
        "{error}"
    );
    println!("{error}");

    raw.execute("UPDATE data SET action = 'garbage' WHERE key = 'p1'", [])
        .expect("edit a record");
    let error =
        block_on(store.get("products", "p1")).expect_err("a record with a bad stamp read back");
    assert!(
        matches!(&error, StoreError::Incompatible { reason, .. } if reason.contains("record \"p1\"") && reason.contains("not a uuid")),
        "{error}"
    );
    let mut batch = Batch::new();
    batch.writes = vec![put("products", "p1", "over a bad stamp", 5)];
    batch.enqueue = Some(mutation(7));
    let error = block_on(store.apply(batch)).expect_err("a write over a bad stamp");
    assert!(matches!(&error, StoreError::Incompatible { .. }), "{error}");
    assert_eq!(
        block_on(store.counts()).expect("counts").pending,
        1,
        "a failed batch queued its action"
    );
}

/// A row that cannot be read stops the queue with an error that says what to do; setting it
/// aside moves it to the dead letters with what could be salvaged, and the rest drains.
#[test]
fn an_unreadable_row_can_be_set_aside() {
    let (_dir, path) = temp_file("set-aside.sqlite3");
    let store = open(&path);
    for n in [1, 3] {
        let mut batch = Batch::new();
        batch.enqueue = Some(mutation(n));
        apply(&store, batch);
    }
    let raw = rusqlite::Connection::open(&path).expect("open raw");
    raw.execute(
        &format!(
            "INSERT INTO queue (id, name, version, kind, params, timestamp, retries, next_attempt_at, queued_at) \
             VALUES ('{}', 'edited', 1, 'subscription', '{{\"x\":1}}', 1002, 0, 1002, 1002)",
            id(2)
        ),
        [],
    )
    .expect("insert a bad row");
    raw.execute(
        "INSERT INTO queue (id, name, version, kind, params, timestamp, retries, next_attempt_at, queued_at) \
         VALUES ('not-a-uuid', 'edited', 'one', 'mutation', X'00ff', 'soon', 0, 1, 1)",
        [],
    )
    .expect("insert a worse row");

    let error = block_on(store.queued(None, usize::MAX)).expect_err("the bad row stops the queue");
    assert!(
        error.to_string().contains("set_aside_unreadable"),
        "the error says what to do: {error}"
    );

    let dead = block_on(store.set_aside_unreadable(Timestamp(9_000)))
        .expect("set aside")
        .expect("a row was unreadable");
    assert_eq!(dead.reason, DeadReason::Unreadable);
    assert_eq!(dead.action.id, id(2), "a readable id is kept");
    assert_eq!(dead.action.name, "edited");
    assert_eq!(dead.action.params, r#"{"x":1}"#);
    assert!(dead.message.contains("subscription"), "{}", dead.message);
    assert_eq!(
        queue_of_ids(&store),
        Err(()),
        "the second bad row still stops the queue"
    );

    let worse = block_on(store.set_aside_unreadable(Timestamp(9_001)))
        .expect("set aside")
        .expect("the second bad row");
    assert_ne!(worse.action.id.to_string(), "not-a-uuid");
    assert!(worse.message.contains("not-a-uuid"), "{}", worse.message);
    assert_eq!(
        queue_of_ids(&store),
        Ok(vec![id(1), id(3)]),
        "the rest reads"
    );
    assert_eq!(
        block_on(store.set_aside_unreadable(Timestamp(9_002))).expect("nothing left"),
        None
    );
    let letters = block_on(store.dead_letters()).expect("dead letters read back");
    assert_eq!(
        letters.iter().map(|d| d.reason).collect::<Vec<_>>(),
        [DeadReason::Unreadable, DeadReason::Unreadable]
    );
    assert_eq!(block_on(store.counts()).expect("counts").pending, 2);
    assert_eq!(block_on(store.counts()).expect("counts").dead, 2);
}

/// A queued call set aside as unreadable takes its local writes back, like any call that
/// will not be replayed; a damaged pending-write row fails with an error naming it.
#[test]
fn a_call_set_aside_rolls_back_its_local_writes() {
    let (_dir, path) = temp_file("set-aside-writes.sqlite3");
    let store = open(&path);
    let mut batch = Batch::new();
    batch.writes.push(Write {
        stamp: Stamp {
            timestamp: Timestamp(1_002),
            action: id(2),
        },
        ..put("products", "p1", "added offline", 1_002)
    });
    batch.enqueue = Some(mutation(2));
    apply(&store, batch);
    let raw = rusqlite::Connection::open(&path).expect("open raw");
    raw.execute(
        &format!(
            "UPDATE queue SET kind = 'subscription' WHERE id = '{}'",
            id(2)
        ),
        [],
    )
    .expect("damage the row");
    block_on(store.set_aside_unreadable(Timestamp(9_000)))
        .expect("set aside")
        .expect("a row was unreadable");
    assert_eq!(
        block_on(store.get("products", "p1")).expect("read"),
        None,
        "the set-aside call's record is rolled back"
    );

    let mut batch = Batch::new();
    batch.writes.push(Write {
        stamp: Stamp {
            timestamp: Timestamp(1_003),
            action: id(3),
        },
        ..put("products", "p2", "added offline", 1_003)
    });
    batch.enqueue = Some(mutation(3));
    apply(&store, batch);
    raw.execute("UPDATE pending_writes SET timestamp = 'soon'", [])
        .expect("damage the pending write");
    let mut complete = Batch::new();
    complete.complete = Some(id(3));
    let error = block_on(store.apply(complete)).expect_err("a damaged row fails");
    assert!(
        error.to_string().contains("pending write"),
        "the error names the row: {error}"
    );
}

/// A file written by the previous schema (version 1) opens, is upgraded in place, and keeps
/// everything: the queue (in id order, time-to-live counted from when the user acted), the
/// dead letters and the local data.
#[test]
fn a_version_1_file_is_upgraded_and_keeps_everything() {
    let (_dir, path) = fixture_copy("store-v1.sqlite3");
    let store = open(&path);
    let queue = queue_of(&store);
    assert_eq!(
        queue
            .iter()
            .map(|q| (q.id, q.name.as_str()))
            .collect::<Vec<_>>(),
        [
            (id(1), "add_product"),
            (id(2), "get_products"),
            (id(4), "delete_product")
        ]
    );
    for q in &queue {
        assert_eq!(
            q.queued_at, q.timestamp,
            "{} counts its ttl from its timestamp",
            q.id
        );
        assert_eq!(q.scope, "", "{} is in the global scope", q.id);
    }
    // The upgraded rows are found through the index on (scope, id) too.
    let global = block_on(store.queued_in_scope("", None, 10)).expect("the global scope");
    assert_eq!(
        global, queue,
        "the global scope holds the whole upgraded queue"
    );
    let heads = block_on(store.scope_heads()).expect("scope heads");
    assert_eq!(
        heads
            .iter()
            .map(|q| (q.id, q.scope.as_str()))
            .collect::<Vec<_>>(),
        [(id(1), "")],
        "one scope, the global one"
    );
    let dead = block_on(store.dead_letters()).expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].action.id, id(3));
    assert_eq!(
        dead[0].scope(),
        "",
        "the dead letter is in the global scope"
    );
    assert_eq!(dead[0].message, "the server refused it");
    let record = block_on(store.get("products", "p1"))
        .expect("read")
        .expect("the record");
    assert_eq!(record.value.as_deref(), Some(r#"{"name":"Espresso"}"#));
    assert_eq!(
        block_on(store.counts()).expect("counts"),
        Counts {
            pending: 3,
            dead: 1
        }
    );
    // Revived after the upgrade: back at its place, with a fresh time-to-live.
    let mut batch = Batch::new();
    batch.revive = Some((id(3), Timestamp(1_800_000_000_000)));
    apply(&store, batch);
    let revived = queue_of(&store)
        .into_iter()
        .find(|q| q.id == id(3))
        .expect("revived");
    assert_eq!(revived.queued_at, Timestamp(1_800_000_000_000));
    assert_eq!(revived.timestamp, Timestamp(1_700_000_000_003));
    assert_eq!(revived.scope, "", "revived into the global scope");
    drop(store);
    let raw = rusqlite::Connection::open(&path).expect("open raw");
    let version: i64 = raw
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("version");
    assert_eq!(version, 3);
}

/// A file written by schema version 2 (the fixture: calls queued in two scopes and a query,
/// the newest call replayed, one buried, a server record, a call's pending write, a clock
/// offset) is upgraded in place and keeps everything, and numbers given out before the upgrade
/// are not given out again: the replayed call had seq 6, so the next call gets 7.
#[test]
fn a_version_2_file_is_upgraded_and_keeps_everything() {
    let (_dir, path) = fixture_copy("store-v2.sqlite3");
    let store = open(&path);
    let queue = queue_of(&store);
    assert_eq!(
        queue
            .iter()
            .map(|q| (q.id, q.seq, q.name.as_str(), q.scope.as_str(), q.kind))
            .collect::<Vec<_>>(),
        [
            (id(1), 1, "add_product", "", ActionKind::Mutation),
            (id(2), 2, "add_product", "tenant-a", ActionKind::Mutation),
            (id(4), 4, "delete_product", "", ActionKind::Mutation),
            (id(6), 5, "get_products", "", ActionKind::Query),
        ]
    );
    assert_eq!(queue[0].params, r#"{"n":1}"#);
    assert_eq!(queue[0].timestamp, Timestamp(1_700_000_000_001));
    let heads = block_on(store.scope_heads()).expect("scope heads");
    assert_eq!(
        heads
            .iter()
            .map(|q| (q.id, q.scope.as_str()))
            .collect::<Vec<_>>(),
        [(id(1), ""), (id(2), "tenant-a")]
    );
    let dead = block_on(store.dead_letters()).expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].action.id, dead[0].scope(), dead[0].message.as_str()),
        (id(3), "tenant-b", "the server refused it")
    );
    assert_eq!(
        block_on(store.counts()).expect("counts"),
        Counts {
            pending: 4,
            dead: 1
        }
    );
    let value = |key: &str| {
        block_on(store.get("products", key))
            .expect("read")
            .and_then(|record| record.value)
    };
    assert_eq!(value("p0").as_deref(), Some(r#"{"name":"Latte"}"#));
    assert_eq!(value("p1").as_deref(), Some(r#"{"name":"Espresso"}"#));
    assert_eq!(value("p3"), None, "the buried call's write was rolled back");
    assert_eq!(
        block_on(store.clock_offset()).expect("clock offset"),
        Some(-1_234)
    );

    // Numbers are not reused: 6 went to the call replayed before the upgrade.
    let mut batch = Batch::new();
    batch.enqueue = Some(mutation(7));
    apply(&store, batch);
    let seq_of = |store: &SqliteStore, n: u128| {
        queue_of(store)
            .into_iter()
            .find(|q| q.id == id(n))
            .map(|q| q.seq)
    };
    assert_eq!(seq_of(&store, 7), Some(7));
    // Reviving the dead letter queues it again, with the next number, and brings back its
    // local write.
    let mut batch = Batch::new();
    batch.revive = Some((id(3), Timestamp(1_800_000_000_000)));
    apply(&store, batch);
    assert_eq!(seq_of(&store, 3), Some(8));
    assert_eq!(value("p3").as_deref(), Some(r#"{"name":"Mocha"}"#));
    // The pending write is released when its call is done, and the value stays.
    let mut batch = Batch::new();
    batch.complete = Some(id(1));
    apply(&store, batch);
    assert_eq!(value("p1").as_deref(), Some(r#"{"name":"Espresso"}"#));
    assert_eq!(
        block_on(store.counts()).expect("counts"),
        Counts {
            pending: 5,
            dead: 0
        }
    );
    drop(store);
    let raw = rusqlite::Connection::open(&path).expect("open raw");
    let version: i64 = raw
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("version");
    assert_eq!(version, 3);
    let counts_table: i64 = raw
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'counts'",
            [],
            |row| row.get(0),
        )
        .expect("schema");
    assert_eq!(counts_table, 0, "the counts table is gone");
}

/// Drained to empty, the queue still never gives a number out twice, across reopening.
#[test]
fn queue_numbers_are_not_reused_after_the_queue_is_drained() {
    let (_dir, path) = temp_file("drained.db");
    let mut seen = Vec::new();
    for round in 0..3u128 {
        let store = open(&path);
        for n in 1..=3 {
            let mut batch = Batch::new();
            batch.enqueue = Some(mutation(round * 10 + n));
            apply(&store, batch);
        }
        let queue = queue_of(&store);
        seen.extend(queue.iter().map(|q| q.seq));
        // Drained newest first, so every delete removes the largest number.
        for q in queue.iter().rev() {
            let mut batch = Batch::new();
            batch.complete = Some(q.id);
            apply(&store, batch);
        }
        assert_eq!(block_on(store.counts()).expect("counts").pending, 0);
    }
    assert_eq!(seen, (1..=9).collect::<Vec<u64>>());
}

/// Two stores (two connections, as two processes would have) on one file: each sees the
/// other's changes in its counts.
#[test]
fn counts_follow_writes_from_another_connection() {
    let (_dir, path) = temp_file("shared-counts.db");
    let first = open(&path);
    let second = open(&path);
    let counts = |store: &SqliteStore| block_on(store.counts()).expect("counts");
    assert_eq!(counts(&first), Counts::default());
    assert_eq!(counts(&second), Counts::default());
    for n in 1..=3 {
        let mut batch = Batch::new();
        batch.enqueue = Some(mutation(n));
        apply(&first, batch);
    }
    assert_eq!(counts(&first).pending, 3);
    assert_eq!(
        counts(&second).pending,
        3,
        "the second store saw the first's calls"
    );
    let mut batch = Batch::new();
    batch.bury = Some(sync_runtime::store::Bury {
        id: id(2),
        reason: DeadReason::Rejected,
        message: "no".to_owned(),
        failed_at: Timestamp(5),
    });
    apply(&second, batch);
    let expected = Counts {
        pending: 2,
        dead: 1,
    };
    assert_eq!(counts(&second), expected);
    assert_eq!(counts(&first), expected, "the first store saw the burial");
    // A batch that fails changes no count.
    let mut batch = Batch::new();
    batch.enqueue = Some(mutation(4));
    batch.bury = Some(sync_runtime::store::Bury {
        id: id(99),
        reason: DeadReason::Rejected,
        message: "no".to_owned(),
        failed_at: Timestamp(5),
    });
    block_on(first.apply(batch)).expect_err("burying an unknown call fails");
    assert_eq!(counts(&first), expected);
    // Writes by hand (another program) are seen too.
    let raw = Connection::open(&path).expect("open raw");
    raw.execute("DELETE FROM dead", []).expect("delete by hand");
    assert_eq!(
        counts(&first),
        Counts {
            pending: 2,
            dead: 0
        }
    );
}

#[test]
fn read_only_store_refuses_writes_and_keeps_data() {
    let (_dir, path) = temp_file("read-only.db");
    {
        let store = open(&path);
        let mut batch = Batch::new();
        batch.enqueue = Some(mutation(1));
        batch.writes = vec![put("products", "p1", "kept", 1)];
        apply(&store, batch);
    }
    let before = queue_of(&open(&path));

    let store = SqliteStore::open_with(&path, SqliteOptions::new().read_only(true))
        .expect("open read-only");
    assert_eq!(queue_of(&store), before, "a read-only store reads");
    let mut batch = Batch::new();
    batch.enqueue = Some(mutation(2));
    batch.writes = vec![put("products", "p1", "changed", 2)];
    let error = block_on(store.apply(batch)).expect_err("a read-only store wrote");
    assert!(
        matches!(&error, StoreError::Backend { message, .. } if message.contains("read-only")),
        "{error}"
    );
    println!("{error}");
    drop(store);

    let store = open(&path);
    assert_eq!(
        queue_of(&store),
        before,
        "a refused write changed the queue"
    );
    let record = block_on(store.get("products", "p1")).expect("get");
    assert_eq!(record.and_then(|r| r.value).as_deref(), Some("kept"));
    drop(store);

    // File permissions: the superuser ignores them, so this half only runs for other users.
    let mut permissions = fs::metadata(&path).expect("metadata").permissions();
    permissions.set_readonly(true);
    fs::set_permissions(&path, permissions).expect("chmod 0444");
    let attempt = SqliteStore::open(&path).and_then(|store| {
        let mut batch = Batch::new();
        batch.enqueue = Some(mutation(3));
        block_on(store.apply(batch))
    });
    match attempt {
        Ok(_) => {
            println!("skipped the chmod 0444 half: this user writes to read-only files (root)")
        }
        Err(error) => {
            assert!(
                matches!(&error, StoreError::Backend { message, .. } if message.contains("read-only")),
                "{error}"
            );
            let store = SqliteStore::open_with(&path, SqliteOptions::new().read_only(true))
                .expect("open read-only");
            assert_eq!(
                queue_of(&store),
                before,
                "a refused write changed the queue"
            );
        }
    }
}

#[test]
fn missing_directory_fails_clearly() {
    let (_dir, path) = temp_file("no/such/dir/store.db");
    let error = SqliteStore::open(&path).expect_err("opened a file in a missing directory");
    assert!(
        matches!(&error, StoreError::Backend { operation: "open", message } if message.contains("store.db")),
        "{error}"
    );
    let error = SqliteStore::open_with(&path, SqliteOptions::new().read_only(true))
        .expect_err("opened a missing file");
    assert!(matches!(&error, StoreError::Backend { .. }), "{error}");
}

#[test]
fn full_store_fails_with_full_and_writes_nothing() {
    let (_dir, path) = temp_file("full.db");
    let store =
        SqliteStore::open_with(&path, SqliteOptions::new().max_size(256 * 1024)).expect("open");
    let batch_of = |n: u128| {
        let mut batch = Batch::new();
        batch.enqueue = Some(mutation(n));
        batch.writes = (0..5)
            .map(|k| {
                put(
                    "products",
                    &format!("p{n}-{k}"),
                    &"x".repeat(8 * 1024),
                    n as u64,
                )
            })
            .collect();
        batch
    };
    let mut accepted = 0;
    let error = loop {
        let n = accepted + 1;
        match block_on(store.apply(batch_of(n))) {
            Ok(_) => accepted = n,
            Err(error) => break error,
        }
        assert!(
            accepted < 100,
            "a 256 KiB store took {accepted} batches of 40 KiB"
        );
    };
    assert!(matches!(&error, StoreError::Full { .. }), "{error}");
    assert!(accepted > 0, "the store was full before the first batch");
    println!("{error} after {accepted} batches");

    let check = |store: &SqliteStore| {
        let queue = queue_of(store);
        assert_eq!(
            queue.len() as u128,
            accepted,
            "the batch that did not fit queued its action"
        );
        let records = block_on(store.scan("products")).expect("scan");
        assert_eq!(
            records.len() as u128,
            accepted * 5,
            "the batch that did not fit wrote records"
        );
    };
    check(&store);
    // Freeing the queue still works in a full store.
    let mut batch = Batch::new();
    batch.complete = Some(id(1));
    apply(&store, batch);
    drop(store);

    // Without the cap the same file takes the batch that did not fit.
    let store = open(&path);
    let queue = queue_of(&store);
    assert_eq!(queue.first().map(|q| q.id), Some(id(2)));
    assert_eq!(queue.len() as u128, accepted - 1);
    apply(&store, batch_of(1_000));
}

fn temp_file(name: &str) -> (TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    (dir, path)
}

/// A copy of the fixture file `name` (in `tests/fixtures`), in a temporary directory.
fn fixture_copy(name: &str) -> (TempDir, std::path::PathBuf) {
    let (dir, path) = temp_file(name);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
        &path,
    )
    .expect("copy the fixture");
    (dir, path)
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn apply(store: &SqliteStore, batch: Batch) {
    block_on(store.apply(batch)).unwrap_or_else(|e| panic!("apply: {e}"));
}

fn queue_of(store: &SqliteStore) -> Vec<QueuedAction> {
    block_on(store.queued(None, usize::MAX)).expect("queue")
}

fn queue_of_ids(store: &SqliteStore) -> Result<Vec<ActionId>, ()> {
    block_on(store.queued(None, usize::MAX))
        .map(|queue| queue.into_iter().map(|q| q.id).collect())
        .map_err(drop)
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
