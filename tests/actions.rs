//! Behaviour of `#[offline_action]` functions against the runtime: online, offline, queued,
//! cached, replayed, and registered.

use futures::executor::block_on;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::time::Duration;
use sync_runtime::store::DeadReason;
use sync_runtime::{
    offline_action, ActionContext, ActionId, ActionKind, ClassifyError, ManualClock,
    ManualConnectivity, MemoryStore, Registry, SyncError, SyncService, Timestamp,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the network is down")]
    Network,
    #[error("rejected: {0}")]
    Rejected(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Network)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewProduct {
    pub name: String,
    pub price_cents: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub price_cents: u64,
}

/// What the simulated server does with the next request, and what it has applied.
#[derive(Default)]
struct Server {
    /// Errors to return for the next requests, in order.
    failures: Vec<AppError>,
    /// (action id, description) of every request applied, in order.
    applied: Vec<(ActionId, String)>,
    products: Vec<Product>,
}

thread_local! {
    // Each test runs on its own thread with `block_on`, so each has its own server.
    static SERVER: RefCell<Server> = RefCell::new(Server::default());
}

fn server<R>(f: impl FnOnce(&mut Server) -> R) -> R {
    SERVER.with(|s| f(&mut s.borrow_mut()))
}

/// Simulates one request: fails with the next scripted failure, or applies `apply` once per
/// action id (the server's idempotency check).
fn request<R>(what: String, apply: impl FnOnce(&mut Server) -> R) -> Result<R, AppError> {
    let id = ActionContext::current()
        .expect("bodies run inside an action")
        .id();
    server(|s| {
        if !s.failures.is_empty() {
            return Err(s.failures.remove(0));
        }
        assert!(
            !s.applied.iter().any(|(seen, _)| *seen == id),
            "action {id} was applied twice"
        );
        s.applied.push((id, what));
        Ok(apply(s))
    })
}

/// Adds a product for a tenant.
#[offline_action(local = add_product_locally)]
pub async fn add_product(tenant_id: String, product: NewProduct) -> Result<Product, AppError> {
    let id = ActionContext::current()
        .expect("in an action")
        .id()
        .to_string();
    request(format!("add {}", product.name), |s| {
        let created = Product {
            id,
            tenant_id,
            name: product.name,
            price_cents: product.price_cents,
        };
        s.products.push(created.clone());
        created
    })
}

async fn add_product_locally(tenant_id: String, product: NewProduct) -> Result<Product, AppError> {
    let context = ActionContext::current().expect("in an action");
    let created = Product {
        id: context.id().to_string(),
        tenant_id,
        name: product.name,
        price_cents: product.price_cents,
    };
    context
        .collection::<Product>("products")
        .put(created.id.clone(), &created)
        .await?;
    Ok(created)
}

/// Renames a product; no local handler, so offline it is queued and reported as such.
#[offline_action(name = "products.rename", version = 2)]
pub async fn rename_product(id: &str, name: &str) -> Result<(), AppError> {
    request(format!("rename {id} to {name}"), |s| {
        for p in s.products.iter_mut().filter(|p| p.id == id) {
            p.name = name.to_owned();
        }
    })
}

/// Lists a tenant's products.
#[offline_action(query)]
pub async fn list_products(tenant_id: String) -> Result<Vec<Product>, AppError> {
    request(format!("list {tenant_id}"), |s| {
        s.products
            .iter()
            .filter(|p| p.tenant_id == tenant_id)
            .cloned()
            .collect()
    })
}

/// Deletes everything; the server refuses.
#[offline_action]
pub async fn delete_everything() -> Result<u32, AppError> {
    Err(AppError::Rejected("not allowed".into()))
}

/// Tags a product. The arguments' serde attributes shape the queued parameters, so replay
/// decodes them by name.
#[offline_action]
pub async fn tag_product(
    #[serde(rename = "product")] product_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")] tags: Vec<String>,
) -> Result<(), AppError> {
    request(
        format!("tag {product_id} with [{}]", tags.join(",")),
        |_| (),
    )
}

fn service(online: bool) -> (SyncService, ManualConnectivity, ManualClock) {
    let net = ManualConnectivity::new(online);
    let clock = ManualClock::new(Timestamp(1_750_000_000_000));
    let service = SyncService::builder()
        .store(MemoryStore::new())
        .connectivity(net.clone())
        .clock(clock.clone())
        .build()
        .expect("no duplicate action names in this binary");
    (service, net, clock)
}

fn shirt() -> NewProduct {
    NewProduct {
        name: "shirt".into(),
        price_cents: 1999,
    }
}

#[test]
fn online_call_returns_the_body_value_and_queues_nothing() {
    let (service, _net, _clock) = service(true);
    let created = block_on(service.scope(add_product("t1".into(), shirt()))).unwrap();
    assert_eq!(created.name, "shirt");
    assert_eq!(server(|s| s.products.clone()), vec![created]);
    assert!(block_on(service.queued()).unwrap().is_empty());
    assert_eq!(service.status().pending, 0);
}

#[test]
fn offline_call_returns_the_local_value_and_queues_name_and_params() {
    let (service, _net, _clock) = service(false);
    let local = block_on(service.scope(add_product("t1".into(), shirt()))).unwrap();
    assert_eq!(local.tenant_id, "t1");
    assert!(
        server(|s| s.applied.is_empty()),
        "offline calls must not reach the server"
    );

    let queued = block_on(service.queued()).unwrap();
    assert_eq!(queued.len(), 1);
    let record = &queued[0];
    assert_eq!(record.name, "add_product");
    assert_eq!(record.version, 1);
    assert_eq!(record.kind, ActionKind::Mutation);
    assert_eq!(
        record.id.to_string(),
        local.id,
        "the queued id is the one the handler saw"
    );
    let params: serde_json::Value = serde_json::from_str(&record.params).unwrap();
    assert_eq!(
        params,
        serde_json::json!({"tenant_id": "t1", "product": {"name": "shirt", "price_cents": 1999}})
    );
    assert_eq!(service.status().pending, 1);

    // The local handler's write is visible to later offline reads.
    let products = block_on(service.collection::<Product>("products").list()).unwrap();
    assert_eq!(products, vec![(local.id.clone(), local)]);
}

#[test]
fn offline_mutation_without_local_handler_reports_queued_with_its_id() {
    let (service, _net, _clock) = service(false);
    let err = block_on(service.scope(rename_product("p1", "hat"))).unwrap_err();
    let AppError::Sync(SyncError::Queued { action, id }) = err else {
        panic!("expected a Queued error, got {err:?}");
    };
    assert_eq!(action, "products.rename");
    let queued = block_on(service.queued()).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].id, id);
    assert_eq!(queued[0].name, "products.rename");
    assert_eq!(queued[0].version, 2);
    assert_eq!(queued[0].params, r#"{"id":"p1","name":"hat"}"#);
}

#[test]
fn transient_failure_online_falls_back_to_offline_with_the_same_id() {
    let (service, _net, _clock) = service(true);
    server(|s| s.failures.push(AppError::Network));
    let local = block_on(service.scope(add_product("t1".into(), shirt()))).unwrap();
    let queued = block_on(service.queued()).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].id.to_string(), local.id);
    assert!(
        !service.status().online,
        "a transport failure means offline"
    );
    assert!(service
        .status()
        .last_error
        .unwrap()
        .contains("network is down"));
}

#[test]
fn permanent_failure_online_is_returned_and_nothing_is_queued() {
    let (service, _net, _clock) = service(true);
    let err = block_on(service.scope(delete_everything())).unwrap_err();
    assert!(matches!(err, AppError::Rejected(_)), "{err:?}");
    assert!(block_on(service.queued()).unwrap().is_empty());
}

#[test]
fn queries_are_cached_online_and_served_offline() {
    let (service, net, _clock) = service(true);
    block_on(service.scope(add_product("t1".into(), shirt()))).unwrap();
    let online = block_on(service.scope(list_products("t1".into()))).unwrap();
    assert_eq!(online.len(), 1);

    net.set_online(false);
    let offline = block_on(service.scope(list_products("t1".into()))).unwrap();
    assert_eq!(offline, online, "offline, a query answers from the cache");

    let err = block_on(service.scope(list_products("other".into()))).unwrap_err();
    assert!(
        matches!(
            err,
            AppError::Sync(SyncError::NotCached {
                action: "list_products"
            })
        ),
        "{err:?}"
    );
    // Each offline query queues one refresh per parameters, however often it is called; the
    // latest call's refresh takes the place of the earlier one.
    block_on(service.scope(list_products("t1".into()))).unwrap();
    let queued = block_on(service.queued()).unwrap();
    let refreshes: Vec<_> = queued.iter().map(|q| q.params.as_str()).collect();
    assert_eq!(
        refreshes,
        [r#"{"tenant_id":"other"}"#, r#"{"tenant_id":"t1"}"#]
    );
    assert_eq!(service.status().pending, 2, "two refreshes wait");
}

#[test]
fn replay_sends_queued_calls_once_in_order() {
    let (service, net, clock) = service(false);
    block_on(service.scope(async {
        add_product("t1".into(), shirt()).await.unwrap();
        let _ = rename_product("p1", "hat").await;
        add_product(
            "t1".into(),
            NewProduct {
                name: "sock".into(),
                price_cents: 5,
            },
        )
        .await
        .unwrap();
    }));
    let ids: Vec<ActionId> = block_on(service.queued())
        .unwrap()
        .iter()
        .map(|q| q.id)
        .collect();

    net.set_online(true);
    server(|s| s.failures.push(AppError::Network));
    let first = block_on(service.replay()).unwrap();
    assert_eq!((first.synced, first.retried, first.remaining), (0, 1, 3));
    assert!(
        first.next_attempt_at.is_some(),
        "a transient failure backs off"
    );

    // Replay on demand ignores nothing: the head waits for its backoff.
    let waiting = block_on(service.replay()).unwrap();
    assert_eq!(waiting.synced, 0);

    clock.advance(Duration::from_secs(3600));
    let second = block_on(service.replay()).unwrap();
    assert_eq!((second.synced, second.remaining), (3, 0));
    let applied: Vec<(ActionId, String)> = server(|s| s.applied.clone());
    assert_eq!(applied.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
    assert_eq!(
        applied
            .iter()
            .map(|(_, what)| what.as_str())
            .collect::<Vec<_>>(),
        ["add shirt", "rename p1 to hat", "add sock"]
    );
}

#[test]
fn a_rejected_replay_is_dead_lettered_and_the_rest_continue() {
    let (service, net, _clock) = service(false);
    block_on(service.scope(async {
        delete_everything().await.unwrap_err();
        add_product("t1".into(), shirt()).await.unwrap();
    }));
    net.set_online(true);
    let report = block_on(service.replay()).unwrap();
    assert_eq!((report.synced, report.dead_lettered), (1, 1));
    let dead = block_on(service.dead_letters()).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].action.name, "delete_everything");
    assert_eq!(dead[0].reason, DeadReason::Rejected);
    assert!(dead[0].message.contains("not allowed"));
    assert_eq!((service.status().pending, service.status().dead), (0, 1));
}

#[test]
fn replay_reads_parameters_shaped_by_serde_attributes() {
    let (service, net, _clock) = service(false);
    block_on(service.scope(async {
        let _ = tag_product("p1".into(), vec!["red".into()]).await;
        let _ = tag_product("p2".into(), Vec::new()).await;
    }));
    let queued = block_on(service.queued()).unwrap();
    let params: Vec<serde_json::Value> = queued
        .iter()
        .map(|q| serde_json::from_str(&q.params).unwrap())
        .collect();
    assert_eq!(
        params,
        [
            serde_json::json!({"product": "p1", "tags": ["red"]}),
            serde_json::json!({"product": "p2"}),
        ]
    );

    net.set_online(true);
    let report = block_on(service.replay()).unwrap();
    assert_eq!((report.synced, report.dead_lettered), (2, 0));
    let applied: Vec<String> = server(|s| s.applied.iter().map(|(_, what)| what.clone()).collect());
    assert_eq!(applied, ["tag p1 with [red]", "tag p2 with []"]);
}

#[test]
fn the_action_context_is_there_inside_actions_only() {
    assert!(ActionContext::current().is_none());
    let (service, _net, _clock) = service(true);
    let created = block_on(service.scope(add_product("t1".into(), shirt()))).unwrap();
    let applied_id = server(|s| s.applied[0].0);
    assert_eq!(created.id, applied_id.to_string());
    assert!(ActionContext::current().is_none());
}

#[test]
fn the_registry_finds_every_action_in_this_binary() {
    let registry = Registry::global().unwrap();
    let mut names: Vec<_> = registry.iter().map(|r| r.name).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "add_product",
            "delete_everything",
            "list_products",
            "products.rename",
            "tag_product"
        ]
    );
    let rename = registry.get("products.rename").unwrap();
    assert_eq!(rename.version, 2);
    assert_eq!(rename.kind, ActionKind::Mutation);
    assert_eq!(rename.module_path, "actions");
    assert!(rename.file.ends_with("actions.rs"), "{}", rename.file);
    let list = registry.get("list_products").unwrap();
    assert_eq!(list.kind, ActionKind::Query);
    assert!(
        registry.get("rename_product").is_none(),
        "`name = ...` replaces the fn name"
    );
}
