//! Local data stays true: a value written offline survives server refreshes until its call
//! replays, and a call the server rejects takes its local writes back with it.

use futures::executor::block_on;
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_runtime::store::{DeadReason, RecordKey};
use sync_runtime::{
    offline_action, ActionContext, ClassifyError, ManualClock, ManualConnectivity, MemoryStore,
    Rejection, SyncError, SyncEvent, SyncService, Timestamp,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub price: i64,
}

fn product(id: &str, name: &str, price: i64) -> Product {
    Product {
        id: id.to_owned(),
        name: name.to_owned(),
        price,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        match self {
            AppError::Sync(e) => e.is_transient(),
            _ => false,
        }
    }
}

thread_local! {
    /// The server's products.
    static SERVER: RefCell<BTreeMap<String, Product>> = const { RefCell::new(BTreeMap::new()) };
}

const PRODUCTS: &str = "products";

/// The server rejects this price and any name containing "taken".
const UNLUCKY_PRICE: i64 = 13;

fn server() -> Vec<Product> {
    SERVER.with(|s| s.borrow().values().cloned().collect())
}

fn server_put(product: Product) {
    SERVER.with(|s| s.borrow_mut().insert(product.id.clone(), product));
}

fn cx() -> ActionContext {
    ActionContext::current().expect("inside an action")
}

/// Lists the server's products (in a shop, one tenant's; here the products whose name does
/// not start with `shop`); the answer refreshes the local collection.
#[offline_action(
    query,
    local = list_products_locally,
    store_all_in = "products",
    key = |p: &Product| p.id.clone(),
    within = |p: &Product| p.name.starts_with(&prefix)
)]
pub async fn list_products(prefix: String) -> Result<Vec<Product>, AppError> {
    Ok(server()
        .into_iter()
        .filter(|p| p.name.starts_with(&prefix))
        .collect())
}

async fn list_products_locally(prefix: String) -> Result<Vec<Product>, AppError> {
    let listed = cx().collection::<Product>(PRODUCTS).list().await?;
    Ok(listed
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| p.name.starts_with(&prefix))
        .collect())
}

#[offline_action(local = add_product_locally, store_in = "products", key = |p: &Product| p.id.clone())]
pub async fn add_product(product: Product) -> Result<Product, AppError> {
    if product.name.contains("taken") {
        return Err(AppError::Rejected(format!(
            "the name {:?} is taken",
            product.name
        )));
    }
    server_put(product.clone());
    Ok(product)
}

async fn add_product_locally(product: Product) -> Result<Product, AppError> {
    cx().collection(PRODUCTS)
        .put(product.id.clone(), &product)
        .await?;
    Ok(product)
}

#[offline_action(local = set_price_locally, store_in = "products", key = |p: &Product| p.id.clone())]
pub async fn set_price(id: String, price: i64) -> Result<Product, AppError> {
    if price == UNLUCKY_PRICE {
        return Err(AppError::Rejected(format!("{price} is not a price")));
    }
    let updated = SERVER.with(|s| {
        let mut s = s.borrow_mut();
        let p = s.get_mut(&id)?;
        p.price = price;
        Some(p.clone())
    });
    updated.ok_or_else(|| AppError::Rejected(format!("no product {id}")))
}

async fn set_price_locally(id: String, price: i64) -> Result<Product, AppError> {
    let products = cx().collection::<Product>(PRODUCTS);
    let Some(mut p) = products.get(&id).await? else {
        return Err(AppError::Invalid(format!("no product {id}")));
    };
    p.price = price;
    products.put(id, &p).await?;
    Ok(p)
}

struct Device {
    service: SyncService,
    net: ManualConnectivity,
}

fn device(store: &MemoryStore, clock: &ManualClock, online: bool) -> Device {
    device_with(store, clock, online, None)
}

fn device_with(
    store: &MemoryStore,
    clock: &ManualClock,
    online: bool,
    rejections: Option<Arc<Mutex<Vec<Rejection>>>>,
) -> Device {
    let net = ManualConnectivity::new(online);
    let mut builder = SyncService::builder()
        .store(store.clone())
        .connectivity(net.clone())
        .clock(clock.clone())
        .seed(3);
    if let Some(rejections) = rejections {
        builder = builder.on_rejected(move |rejection| {
            rejections
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(rejection);
            async {}
        });
    }
    Device {
        service: builder.build().expect("build a service"),
        net,
    }
}

impl Device {
    fn run<T>(&self, action: impl core::future::Future<Output = T>) -> T {
        block_on(self.service.scope(action))
    }

    fn local(&self) -> Vec<Product> {
        block_on(self.service.collection::<Product>(PRODUCTS).list())
            .expect("list local products")
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    fn local_one(&self, id: &str) -> Option<Product> {
        block_on(self.service.collection::<Product>(PRODUCTS).get(id)).expect("read a product")
    }
}

fn start() -> (MemoryStore, ManualClock) {
    SERVER.with(|s| s.borrow_mut().clear());
    (
        MemoryStore::new(),
        ManualClock::new(Timestamp(1_800_000_000_000)),
    )
}

fn events_of(events: &mut (impl futures::Stream<Item = SyncEvent> + Unpin)) -> Vec<SyncEvent> {
    let mut seen = Vec::new();
    while let Some(Some(event)) = events.next().now_or_never() {
        seen.push(event);
    }
    seen
}

/// Two tabs over one store: one edits offline, the other refreshes the list online while the
/// edit waits. The refresh must not hide the edit; once the edit replays, the server's value
/// shows.
#[test]
fn an_offline_edit_survives_a_server_refresh_until_it_replays() {
    let (store, clock) = start();
    server_put(product("p1", "Tea", 100));
    let editor = device(&store, &clock, false);
    let refresher = device(&store, &clock, true);
    refresher
        .run(list_products(String::new()))
        .expect("first refresh");
    assert_eq!(refresher.local(), [product("p1", "Tea", 100)]);

    clock.advance(Duration::from_millis(5));
    editor
        .run(set_price("p1".into(), 150))
        .expect("an offline edit");
    assert_eq!(editor.local_one("p1"), Some(product("p1", "Tea", 150)));

    // Someone renames the product on the server; the other tab lists products online, its
    // answer stamped later than the edit.
    server_put(product("p1", "Green tea", 100));
    clock.advance(Duration::from_millis(5));
    let listed = refresher
        .run(list_products(String::new()))
        .expect("refresh while queued");
    assert_eq!(listed, [product("p1", "Green tea", 100)]);
    assert_eq!(
        editor.local_one("p1"),
        Some(product("p1", "Tea", 150)),
        "a server refresh must not hide an edit still waiting in the queue"
    );

    editor.net.set_online(true);
    let report = block_on(editor.service.replay()).expect("replay");
    assert_eq!(report.synced, 1);
    assert_eq!(server(), [product("p1", "Green tea", 150)]);
    assert_eq!(
        editor.local(),
        server(),
        "once the edit replayed, the server's value shows"
    );
}

/// A refresh made before the server saw an offline add does not delete the product, neither
/// while the add waits nor after it replays (its answer arrives last and shows).
#[test]
fn a_refresh_without_an_offline_add_does_not_delete_it() {
    let (store, clock) = start();
    server_put(product("p1", "Tea", 100));
    let editor = device(&store, &clock, false);
    let refresher = device(&store, &clock, true);
    refresher
        .run(list_products(String::new()))
        .expect("first refresh");
    clock.advance(Duration::from_millis(5));
    editor
        .run(add_product(product("p2", "Coffee", 300)))
        .expect("an offline add");

    // A refresh from the other tab that does not list p2 yet.
    clock.advance(Duration::from_millis(5));
    server_put(product("p3", "Cocoa", 50));
    let listed = refresher
        .run(list_products(String::new()))
        .expect("a refresh");
    assert_eq!(listed.len(), 2, "the refresh went to the server");
    assert_eq!(
        editor.local_one("p2"),
        Some(product("p2", "Coffee", 300)),
        "a refresh that does not list a product added offline must not delete it"
    );
    assert_eq!(editor.local_one("p3"), Some(product("p3", "Cocoa", 50)));

    editor.net.set_online(true);
    block_on(editor.service.replay()).expect("replay");
    assert_eq!(editor.local(), server());
    assert_eq!(editor.local().len(), 3);
}

/// An add the server rejects on replay disappears locally; the event and the hook name it;
/// retrying the dead letter shows it again.
#[test]
fn a_rejected_offline_add_disappears_and_the_event_names_it() {
    let (store, clock) = start();
    server_put(product("p1", "Tea", 100));
    let rejections = Arc::new(Mutex::new(Vec::new()));
    let device = device_with(&store, &clock, true, Some(Arc::clone(&rejections)));
    device
        .run(list_products(String::new()))
        .expect("first refresh");
    device.net.set_online(false);
    let mut events = device.service.events();

    device
        .run(add_product(product("p9", "taken name", 10)))
        .expect("an offline add");
    assert_eq!(device.local().len(), 2, "the add shows at once");

    device.net.set_online(true);
    let report = block_on(device.service.replay()).expect("replay");
    assert_eq!(report.dead_lettered, 1);
    let p9 = RecordKey::new(PRODUCTS, "p9");
    assert_eq!(report.rolled_back, std::slice::from_ref(&p9));
    assert_eq!(device.local_one("p9"), None, "the rejected add is gone");
    assert_eq!(device.local(), server());

    let dead = block_on(device.service.dead_letters()).expect("dead letters");
    let rolled_back: Vec<_> = events_of(&mut events)
        .into_iter()
        .filter_map(|event| match event {
            SyncEvent::RolledBack { id, name, records } => Some((id, name, records)),
            _ => None,
        })
        .collect();
    assert_eq!(
        rolled_back,
        [(
            dead[0].action.id,
            "add_product".to_owned(),
            vec![p9.clone()]
        )]
    );
    let seen = rejections.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(seen.len(), 1, "the hook runs once");
    assert_eq!(seen[0].dead_letter.reason, DeadReason::Rejected);
    assert_eq!(seen[0].dead_letter.action.name, "add_product");
    assert_eq!(seen[0].rolled_back, [p9]);

    // Retrying shows the product again while it waits.
    device.net.set_online(false);
    block_on(device.service.retry_dead_letter(dead[0].action.id)).expect("retry");
    assert_eq!(
        device.local_one("p9"),
        Some(product("p9", "taken name", 10)),
        "a retried dead letter writes its local values again"
    );
}

/// Two queued edits of one product: the first is rejected, the second's value stays (and
/// reaches the server); when the second is the one rejected, the first's value comes back.
#[test]
fn a_rejected_edit_rolls_back_only_what_no_later_edit_wrote() {
    let (store, clock) = start();
    server_put(product("p1", "Tea", 100));
    server_put(product("p2", "Coffee", 300));
    let device = device(&store, &clock, true);
    device
        .run(list_products(String::new()))
        .expect("first refresh");
    device.net.set_online(false);
    let mut events = device.service.events();

    device
        .run(set_price("p1".into(), UNLUCKY_PRICE))
        .expect("first edit of p1");
    clock.advance(Duration::from_millis(5));
    device
        .run(set_price("p1".into(), 200))
        .expect("second edit of p1");
    clock.advance(Duration::from_millis(5));
    device
        .run(set_price("p2".into(), 350))
        .expect("first edit of p2");
    clock.advance(Duration::from_millis(5));
    device
        .run(set_price("p2".into(), UNLUCKY_PRICE))
        .expect("second edit of p2");
    assert_eq!(device.local_one("p1").map(|p| p.price), Some(200));
    assert_eq!(device.local_one("p2").map(|p| p.price), Some(UNLUCKY_PRICE));

    device.net.set_online(true);
    let report = block_on(device.service.replay()).expect("replay");
    assert_eq!((report.synced, report.dead_lettered), (2, 2));
    assert_eq!(
        report.rolled_back,
        [RecordKey::new(PRODUCTS, "p2")],
        "only the record no later edit wrote is rolled back"
    );
    assert_eq!(
        device.local_one("p1").map(|p| p.price),
        Some(200),
        "the later edit's value stays when the earlier one is rejected"
    );
    assert_eq!(
        device.local_one("p2").map(|p| p.price),
        Some(350),
        "rejecting the later edit puts back the earlier one's value"
    );
    assert_eq!(device.local(), server());
    let rolled_back = events_of(&mut events)
        .into_iter()
        .filter(|event| matches!(event, SyncEvent::RolledBack { .. }))
        .count();
    assert_eq!(rolled_back, 1);
}

/// `store_all_in` with `within`: a list answer replaces only the stored records it covers;
/// `store_in` writes an online answer under its key.
#[test]
fn a_list_answer_replaces_only_the_records_within_it() {
    let (store, clock) = start();
    server_put(product("p1", "Tea", 100));
    server_put(product("p2", "Coffee", 300));
    let device = device(&store, &clock, true);
    device.run(list_products(String::new())).expect("list all");
    assert_eq!(device.local().len(), 2);

    SERVER.with(|s| s.borrow_mut().clear());
    server_put(product("p3", "Tisane", 80));
    let listed = device
        .run(list_products("T".into()))
        .expect("list the products starting with T");
    assert_eq!(listed, [product("p3", "Tisane", 80)]);
    assert_eq!(
        device.local(),
        [product("p2", "Coffee", 300), product("p3", "Tisane", 80)],
        "Tea is gone from the list it belonged to; Coffee, outside it, stays"
    );

    device
        .run(add_product(product("p4", "Mate", 120)))
        .expect("an online add");
    assert_eq!(
        device.local_one("p4"),
        Some(product("p4", "Mate", 120)),
        "`store_in` keeps the online answer"
    );
}
