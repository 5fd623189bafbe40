//! A queued query refresh and ordering scopes: the refresh replays only after every call
//! queued before it, whatever their scopes. If it went side by side with them, the server
//! could answer it before an earlier call's change reached it, and that stale answer, stamped
//! later than the change, would then write back the old value over the change's own answer.

use futures::executor::block_on;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use sync_runtime::{
    offline_action, ActionContext, ClassifyError, ManualClock, ManualConnectivity, MemoryStore,
    SyncError, SyncService, Timestamp,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        false
    }
}

thread_local! {
    /// The server's prices, by product.
    static PRICES: RefCell<BTreeMap<String, i64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Gives way once to the other futures the replay runs beside this one, as a request
/// waiting on the network would.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

async fn network() {
    for _ in 0..8 {
        YieldNow(false).await;
    }
}

fn context() -> ActionContext {
    ActionContext::current().expect("inside an action")
}

/// Sets a product's price, one ordering scope per product; keeps the server's answer.
#[offline_action(scope = product, local = set_price_locally)]
pub async fn set_price(product: String, price: i64) -> Result<i64, AppError> {
    network().await;
    PRICES.with(|p| p.borrow_mut().insert(product.clone(), price));
    context()
        .collection::<i64>("prices")
        .put(product, &price)
        .await?;
    Ok(price)
}

async fn set_price_locally(product: String, price: i64) -> Result<i64, AppError> {
    context()
        .collection::<i64>("prices")
        .put(product, &price)
        .await?;
    Ok(price)
}

/// Every price, as the server has them when the request arrives; the answer is written into
/// the local collection when it comes back.
#[offline_action(query)]
pub async fn list_prices() -> Result<BTreeMap<String, i64>, AppError> {
    let prices = PRICES.with(|p| p.borrow().clone());
    network().await;
    network().await;
    let collection = context().collection::<i64>("prices");
    for (product, price) in &prices {
        collection.put(product.clone(), price).await?;
    }
    Ok(prices)
}

#[test]
fn a_queued_refresh_waits_for_the_calls_queued_before_it_in_every_scope() {
    PRICES.with(|p| p.borrow_mut().insert("espresso".to_owned(), 250));
    let net = ManualConnectivity::new(false);
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let service = SyncService::builder()
        .store(MemoryStore::new())
        .connectivity(net.clone())
        .clock(clock.clone())
        .replay_concurrency(4)
        .build()
        .unwrap();
    block_on(service.scope(async {
        // Offline: a new price, then the list is opened (a refresh is queued).
        assert_eq!(set_price("espresso".to_owned(), 300).await.unwrap(), 300);
        clock.advance(Duration::from_secs(1));
        assert!(matches!(
            list_prices().await,
            Err(AppError::Sync(SyncError::NotCached { .. }))
        ));
    }));
    assert_eq!(service.status().pending, 2);

    net.set_online(true);
    let report = block_on(service.replay()).unwrap();
    assert_eq!((report.synced, report.remaining), (2, 0));
    assert_eq!(PRICES.with(|p| p.borrow()["espresso"]), 300);
    let local = block_on(service.collection::<i64>("prices").get("espresso")).unwrap();
    assert_eq!(
        local,
        Some(300),
        "the refresh answered after the new price reached the server"
    );
}
