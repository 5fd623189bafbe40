//! The products example end to end: its real axum server on 127.0.0.1 and its client's
//! `#[offline_action]` functions over HTTP. The server is cut off (its listener stops, so
//! connections are refused) and restored; a response is lost after the server committed;
//! bad actions reach the queue. Each test checks the server's data and the client's local
//! data: every action applied exactly once, in order.

// The example's own code, shared: each test uses part of it.
#[allow(dead_code)]
#[path = "../examples/products/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "../examples/products/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "../examples/products/server.rs"]
mod server;

use client::{add_product, delete_product, get_products, update_price, Client, SkewedClock};
use model::{ErrorBody, NewProduct, Product};
use serde_json::json;
use server::ProductServer;
use std::collections::HashSet;
use std::time::Duration;
use sync_runtime::store::{Batch, DeadReason, NewQueued};
use sync_runtime::{ActionId, ActionKind, Clock, Registry, SystemClock};
use tempfile::TempDir;

const TENANT: &str = "corner-cafe";
/// How long a queue may take to drain after the server is back (it takes well under a
/// second; the margin is for a loaded machine).
const LIMIT: Duration = Duration::from_secs(20);

async fn start() -> (TempDir, ProductServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = ProductServer::start(&dir.path().join("server.sqlite3"))
        .await
        .unwrap();
    (dir, server)
}

fn phone(dir: &TempDir, name: &str, server: &ProductServer) -> Client {
    Client::open(&dir.path().join(format!("{name}.sqlite3")), &server.url()).unwrap()
}

fn prices(products: &[Product]) -> Vec<(&str, i64)> {
    products
        .iter()
        .map(|p| (p.name.as_str(), p.price_cents))
        .collect()
}

fn changes(server: &ProductServer) -> Vec<String> {
    let changes = server.changes().unwrap();
    let ids: HashSet<&String> = changes.iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids.len(),
        changes.len(),
        "an action applied twice: {changes:?}"
    );
    changes.into_iter().map(|(_, change)| change).collect()
}

/// Puts a row in the client's queue as a build with other actions, or a bug, might have.
async fn enqueue(phone: &Client, name: &str, params: serde_json::Value) -> ActionId {
    let id = ActionId(uuid::Uuid::now_v7());
    let version = Registry::global()
        .unwrap()
        .get(name)
        .map_or(1, |r| r.version);
    let mut batch = Batch::new();
    batch.enqueue = Some(NewQueued {
        id,
        name: name.into(),
        version,
        kind: ActionKind::Mutation,
        params: params.to_string(),
        timestamp: SystemClock.now(),
        queued_at: SystemClock.now(),
        scope: String::new(),
    });
    phone.service.store().apply(batch).await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_and_restored_every_action_reaches_the_server_once_in_order() {
    let (dir, server) = start().await;
    let phone = phone(&dir, "phone", &server);
    let coffee = phone
        .call(add_product(TENANT.into(), NewProduct::new("Coffee", 300)))
        .await
        .unwrap();
    let cake = phone
        .call(add_product(TENANT.into(), NewProduct::new("Cake", 400)))
        .await
        .unwrap();

    server.stop().await;
    let refused = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(server.url())
        .send()
        .await
        .unwrap_err();
    assert!(refused.is_connect(), "the listener is gone: {refused}");

    let bread = phone
        .call(add_product(TENANT.into(), NewProduct::new("Bread", 250)))
        .await
        .unwrap();
    phone
        .call(update_price(coffee.id.clone(), 320))
        .await
        .unwrap();
    phone.call(delete_product(cake.id.clone())).await.unwrap();
    phone
        .call(update_price(bread.id.clone(), 260))
        .await
        .unwrap();
    phone
        .call(update_price(coffee.id.clone(), 330))
        .await
        .unwrap();
    let offline = phone.call(get_products(TENANT.into())).await.unwrap();
    assert_eq!(prices(&offline), [("Bread", 260), ("Coffee", 330)]);
    assert_eq!(phone.local_products(TENANT).await.unwrap(), offline);
    assert_eq!(
        phone.status().await.unwrap().pending,
        6,
        "5 writes, 1 refresh"
    );
    let queued: Vec<String> = phone
        .service
        .queued()
        .await
        .unwrap()
        .iter()
        .filter(|q| q.kind == ActionKind::Mutation)
        .map(|q| q.id.to_string())
        .collect();
    assert_eq!(
        server.applied_count().unwrap(),
        2,
        "nothing reached the server"
    );

    server.restart().await.unwrap();
    let status = phone.wait_until_synced(LIMIT).await.unwrap();
    assert_eq!(status.dead, 0);

    let on_server = server.products(TENANT).unwrap();
    assert_eq!(prices(&on_server), [("Bread", 260), ("Coffee", 330)]);
    assert_eq!(phone.local_products(TENANT).await.unwrap(), on_server);
    assert_eq!(
        changes(&server),
        [
            "add Coffee 3.00",
            "add Cake 4.00",
            "add Bread 2.50",
            "price Coffee 3.00 -> 3.20",
            "delete Cake",
            "price Bread 2.50 -> 2.60",
            "price Coffee 3.20 -> 3.30",
        ]
    );
    let replayed_ids: Vec<String> = server.changes().unwrap()[2..]
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        replayed_ids, queued,
        "replayed in order, with the queued ids"
    );
    assert_eq!(server.applied_count().unwrap(), 7);
    assert_eq!(server.replays_answered(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_lost_after_commit_is_answered_from_the_record_not_applied_again() {
    let (dir, server) = start().await;
    let phone = phone(&dir, "phone", &server);

    // Each write commits on the server, then its connection drops before the response: the
    // client takes it for a network failure, answers locally, queues the call and replays it
    // with the same id.
    server.drop_next_response();
    let tea = phone
        .call(add_product(TENANT.into(), NewProduct::new("Tea", 200)))
        .await
        .unwrap();
    phone.wait_until_synced(LIMIT).await.unwrap();
    assert_eq!(server.replays_answered(), 1);

    server.drop_next_response();
    let cheaper = phone.call(update_price(tea.id.clone(), 180)).await.unwrap();
    assert_eq!(cheaper.price_cents, 180);
    phone.wait_until_synced(LIMIT).await.unwrap();
    assert_eq!(server.replays_answered(), 2);
    assert_eq!(prices(&server.products(TENANT).unwrap()), [("Tea", 180)]);
    assert_eq!(
        phone.local_products(TENANT).await.unwrap(),
        server.products(TENANT).unwrap()
    );

    // Applied again, a delete would now fail with 404 and land in the dead letters.
    server.drop_next_response();
    phone.call(delete_product(tea.id.clone())).await.unwrap();
    let status = phone.wait_until_synced(LIMIT).await.unwrap();
    assert_eq!(server.replays_answered(), 3);
    assert_eq!(status.dead, 0);
    assert!(server.products(TENANT).unwrap().is_empty());
    assert!(phone.local_products(TENANT).await.unwrap().is_empty());

    assert_eq!(
        changes(&server),
        ["add Tea 2.00", "price Tea 2.00 -> 1.80", "delete Tea"]
    );
    assert_eq!(server.applied_count().unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_actions_are_dead_lettered_with_the_reason_and_the_rest_of_the_queue_drains() {
    let (dir, server) = start().await;
    let phone = phone(&dir, "phone", &server);
    let coffee = phone
        .call(add_product(TENANT.into(), NewProduct::new("Coffee", 300)))
        .await
        .unwrap();

    phone.network.set_online(false);
    phone
        .call(update_price(coffee.id.clone(), 310))
        .await
        .unwrap();
    // Refused by the client: no such action in this build, or parameters that do not fit it.
    let unknown = enqueue(&phone, "rename_product", json!({ "product_id": coffee.id })).await;
    let garbage = enqueue(&phone, "add_product", json!({ "tenant_id": 5 })).await;
    // Well-formed for the client, refused by the server.
    let product = |name: &str, price_cents: i64| {
        json!({
            "tenant_id": TENANT,
            "product": { "id": uuid::Uuid::now_v7().to_string(), "name": name, "price_cents": price_cents },
        })
    };
    let negative = enqueue(&phone, "add_product", product("Gift card", -500)).await;
    let nameless = enqueue(&phone, "add_product", product("  ", 100)).await;
    let missing = enqueue(
        &phone,
        "update_price",
        json!({ "product_id": "no-such-product", "price_cents": 100 }),
    )
    .await;
    phone
        .call(add_product(TENANT.into(), NewProduct::new("Bread", 250)))
        .await
        .unwrap();
    assert_eq!(phone.status().await.unwrap().pending, 7);

    phone.network.set_online(true);
    let status = phone.wait_until_synced(LIMIT).await.unwrap();
    assert_eq!(status.dead, 5);

    let dead: Vec<(ActionId, DeadReason, String)> = phone
        .service
        .dead_letters()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.action.id, d.reason, d.message))
        .collect();
    let expected = [
        (
            unknown,
            DeadReason::UnknownAction,
            "no action named `rename_product` is registered in this build",
        ),
        (
            garbage,
            DeadReason::BadParams,
            "the parameters no longer match version 1 of `add_product`: invalid type: integer `5`",
        ),
        (
            negative,
            DeadReason::Rejected,
            "the server answered 400: a price cannot be negative (got -500 cents)",
        ),
        (
            nameless,
            DeadReason::Rejected,
            "the server answered 400: a product needs a name",
        ),
        (
            missing,
            DeadReason::Rejected,
            "the server answered 404: there is no product no-such-product",
        ),
    ];
    assert_eq!(dead.len(), expected.len(), "{dead:#?}");
    for ((id, reason, message), (want_id, want_reason, want_message)) in dead.iter().zip(expected) {
        assert_eq!((*id, *reason), (want_id, want_reason), "{message}");
        assert!(message.starts_with(want_message), "{message}");
    }

    let on_server = server.products(TENANT).unwrap();
    assert_eq!(prices(&on_server), [("Bread", 250), ("Coffee", 310)]);
    assert_eq!(phone.local_products(TENANT).await.unwrap(), on_server);
    assert_eq!(
        changes(&server),
        [
            "add Coffee 3.00",
            "price Coffee 3.00 -> 3.10",
            "add Bread 2.50"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_bad_requests_with_a_4xx_that_says_why() {
    let (_dir, server) = start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = server.url();
    let key = uuid::Uuid::now_v7().to_string();
    let valid = json!({ "tenant_id": TENANT, "id": uuid::Uuid::now_v7().to_string(), "name": "Tea", "price_cents": 200 });

    let cases = [
        (
            http.post(format!("{url}/products")).json(&valid),
            400,
            "the `idempotency-key` header is missing",
        ),
        (
            http.post(format!("{url}/products"))
                .header("idempotency-key", "once please")
                .json(&valid),
            400,
            "the `idempotency-key` header must be an action id (a uuid)",
        ),
        (
            http.post(format!("{url}/products"))
                .header("idempotency-key", &key)
                .header("x-action-timestamp", "yesterday")
                .json(&valid),
            400,
            "the `x-action-timestamp` header must be milliseconds",
        ),
        (
            http.post(format!("{url}/products"))
                .header("idempotency-key", &key)
                .body("{not json"),
            400,
            "the request body is not valid: key must be a string",
        ),
        (
            http.post(format!("{url}/products"))
                .header("idempotency-key", &key)
                .json(
                    &json!({ "tenant_id": TENANT, "id": "7", "name": "Tea", "price_cents": 200 }),
                ),
            400,
            "a product id must be a uuid",
        ),
        (
            http.put(format!("{url}/products/nothing-here/price"))
                .header("idempotency-key", &key)
                .json(&json!({ "price_cents": 100 })),
            404,
            "there is no product nothing-here",
        ),
        (
            http.put(format!("{url}/products/nothing-here/price"))
                .header("idempotency-key", &key)
                .json(&json!({ "price_cents": -1 })),
            400,
            "a price cannot be negative",
        ),
        (
            http.delete(format!("{url}/products/nothing-here"))
                .header("idempotency-key", &key),
            404,
            "there is no product nothing-here",
        ),
        (
            http.get(format!("{url}/products")),
            400,
            "the `tenant` query parameter is required",
        ),
    ];
    for (request, status, message) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{message}");
        let body: ErrorBody = response.json().await.unwrap();
        assert!(body.error.starts_with(message), "{}", body.error);
    }
    assert_eq!(
        server.applied_count().unwrap(),
        0,
        "a refused write records nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phones_editing_offline_the_later_edit_wins_whichever_syncs_first() {
    for later_edit_syncs_first in [true, false] {
        let (dir, server) = start().await;
        let a = phone(&dir, "a", &server);
        let b = phone(&dir, "b", &server);
        let latte = a
            .call(add_product(TENANT.into(), NewProduct::new("Latte", 320)))
            .await
            .unwrap();
        b.call(get_products(TENANT.into())).await.unwrap();

        a.network.set_online(false);
        b.network.set_online(false);
        let earlier = a.call(update_price(latte.id.clone(), 310)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let later = b.call(update_price(latte.id.clone(), 340)).await.unwrap();
        assert!(later.updated_at > earlier.updated_at);

        let (first, second) = if later_edit_syncs_first {
            (&b, &a)
        } else {
            (&a, &b)
        };
        first.network.set_online(true);
        first.wait_until_synced(LIMIT).await.unwrap();
        second.network.set_online(true);
        second.wait_until_synced(LIMIT).await.unwrap();

        let on_server = server.products(TENANT).unwrap();
        assert_eq!(prices(&on_server), [("Latte", 340)]);
        assert_eq!(on_server[0].updated_at, later.updated_at);
        assert_eq!(b.local_products(TENANT).await.unwrap(), on_server);
        if later_edit_syncs_first {
            // A's update lost: the server's answer to it carried the winner.
            assert_eq!(a.local_products(TENANT).await.unwrap(), on_server);
        }
        // Reading the list brings each phone what the other did.
        assert_eq!(
            a.call(get_products(TENANT.into())).await.unwrap(),
            on_server
        );
        assert_eq!(
            b.call(get_products(TENANT.into())).await.unwrap(),
            on_server
        );
        assert_eq!(a.local_products(TENANT).await.unwrap(), on_server);
        assert_eq!(b.local_products(TENANT).await.unwrap(), on_server);
        let expected_log = if later_edit_syncs_first {
            [
                "add Latte 3.20",
                "price Latte 3.20 -> 3.40",
                "price Latte 3.10 ignored: made before the change it would replace",
            ]
        } else {
            [
                "add Latte 3.20",
                "price Latte 3.20 -> 3.10",
                "price Latte 3.10 -> 3.40",
            ]
        };
        assert_eq!(changes(&server), expected_log);
        server.stop().await;
    }
}

const HOUR_MILLIS: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_an_hour_fast_stamps_by_the_servers_clock_so_the_later_edit_wins() {
    for a_edits_offline in [false, true] {
        let (dir, server) = start().await;
        let fast = SkewedClock {
            ahead_millis: HOUR_MILLIS,
        };
        let a =
            Client::open_with_clock(&dir.path().join("a.sqlite3"), &server.url(), fast).unwrap();
        let b = phone(&dir, "b", &server);
        // A's first answer from the server tells it how far off its clock is.
        a.call(get_products(TENANT.into())).await.unwrap();
        let offset = a.service.clock_offset();
        assert!(
            (-HOUR_MILLIS - 2_000..=-HOUR_MILLIS + 2_000).contains(&offset),
            "{offset}"
        );
        let latte = a
            .call(add_product(TENANT.into(), NewProduct::new("Latte", 320)))
            .await
            .unwrap();
        b.call(get_products(TENANT.into())).await.unwrap();

        // A edits (offline or not), then B edits later in real time.
        a.network.set_online(!a_edits_offline);
        let earlier = a.call(update_price(latte.id.clone(), 310)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let later = b.call(update_price(latte.id.clone(), 340)).await.unwrap();
        assert!(
            later.updated_at > earlier.updated_at,
            "A stamped {} by a clock an hour fast; B {} after it",
            earlier.updated_at,
            later.updated_at
        );
        a.network.set_online(true);
        a.wait_until_synced(LIMIT).await.unwrap();

        let on_server = server.products(TENANT).unwrap();
        assert_eq!(prices(&on_server), [("Latte", 340)], "B wins on the server");
        assert_eq!(b.local_products(TENANT).await.unwrap(), on_server);
        if a_edits_offline {
            // A's replayed edit lost; the server's answer to it carried B's price.
            assert_eq!(a.local_products(TENANT).await.unwrap(), on_server);
        }
        a.call(get_products(TENANT.into())).await.unwrap();
        assert_eq!(
            a.local_products(TENANT).await.unwrap(),
            on_server,
            "and on A"
        );
        assert_eq!(a.status().await.unwrap().dead, 0);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offset_is_kept_across_a_restart_and_used_offline() {
    let (dir, server) = start().await;
    let fast = SkewedClock {
        ahead_millis: HOUR_MILLIS,
    };
    let database = dir.path().join("a.sqlite3");
    let a = Client::open_with_clock(&database, &server.url(), fast).unwrap();
    let latte = a
        .call(add_product(TENANT.into(), NewProduct::new("Latte", 320)))
        .await
        .unwrap_err();
    // Its very first action was stamped by the fast clock, before any answer: refused, and
    // the answer taught it the server's clock.
    assert!(latte.to_string().contains("ahead"), "{latte}");
    let learnt = a.service.clock_offset();
    assert!(learnt < -HOUR_MILLIS + 2_000, "{learnt}");
    drop(a);

    // Restarted with no network: the saved offset stamps the offline edit.
    let a = Client::open_with_clock(&database, &server.url(), fast).unwrap();
    a.network.set_online(false);
    let before = SystemClock.now().as_millis();
    let tea = a
        .call(add_product(TENANT.into(), NewProduct::new("Tea", 200)))
        .await
        .unwrap();
    assert!(
        tea.updated_at < before + 60_000,
        "stamped {} by the corrected clock, not an hour ahead of {before}",
        tea.updated_at
    );
    assert_eq!(a.service.clock_offset(), learnt);
    a.network.set_online(true);
    a.wait_until_synced(LIMIT).await.unwrap();
    assert_eq!(prices(&server.products(TENANT).unwrap()), [("Tea", 200)]);
    assert_eq!(a.status().await.unwrap().dead, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_stamp_is_refused_with_a_clear_message_and_nothing_changes() {
    let (dir, server) = start().await;
    let a = phone(&dir, "a", &server);
    let latte = a
        .call(add_product(TENANT.into(), NewProduct::new("Latte", 320)))
        .await
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let put = |timestamp: String, price: i64| {
        http.put(format!("{}/products/{}/price", server.url(), latte.id))
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .header("x-action-timestamp", timestamp)
            .json(&json!({ "price_cents": price }))
            .send()
    };
    let refused = put("99999999999999".into(), 999).await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
    assert!(refused.headers().contains_key("x-server-time"));
    let message = refused.json::<ErrorBody>().await.unwrap().error;
    assert!(
        message.contains("99999999999999ms") && message.contains("at most 120s ahead is accepted"),
        "{message}"
    );
    let expired = put("1000".into(), 998).await.unwrap();
    assert_eq!(expired.status(), reqwest::StatusCode::BAD_REQUEST);
    let message = expired.json::<ErrorBody>().await.unwrap().error;
    assert!(message.contains("have expired"), "{message}");
    assert_eq!(prices(&server.products(TENANT).unwrap()), [("Latte", 320)]);
    assert_eq!(server.applied_count().unwrap(), 1);

    // An honest edit after it wins as it should.
    let now = SystemClock.now().as_millis().to_string();
    assert!(put(now, 150).await.unwrap().status().is_success());
    assert_eq!(prices(&server.products(TENANT).unwrap()), [("Latte", 150)]);
    server.stop().await;
}
