//! The client: five server actions made offline-first with `#[offline_action]`.
//!
//! Each body is the online path: an HTTP request to the products server carrying the action
//! id (the idempotency key) and the time the user acted; `store_in`/`store_all_in` write its
//! answer to the local `products` collection. Each local handler is the offline path: it reads and writes that
//! collection, so a product added offline shows at once in an offline `get_products`. Writes
//! carry the action's timestamp, so the store keeps, per product, the change the user made
//! last.

use crate::model::{
    invalid, CreateProduct, ErrorBody, NewProduct, PriceChange, Product, StockDelivery,
};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use sync_runtime::store::SqliteStore;
use sync_runtime::{
    http, offline_action, ActionContext, ClassifyError, Clock, Collection, ManualConnectivity,
    RetryPolicy, SyncError, SyncService, SyncStatus, SystemClock, Timestamp, TokioExecutor,
};

/// The local collection the actions keep products in, keyed by product id.
pub const PRODUCTS: &str = "products";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot reach the server: {0}")]
    Network(#[from] reqwest::Error),
    #[error("the server answered {status}: {message}")]
    Server {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        match self {
            AppError::Network(e) => e.is_transient(),
            AppError::Server { status, .. } => http::is_transient_status(*status),
            AppError::Invalid(_) => false,
            AppError::Sync(e) => e.is_transient(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            AppError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Lists a tenant's products. Offline: the products in the local store, including what was
/// changed offline. Online, the answer becomes the tenant's local products; those with changes
/// still waiting in the queue keep them until the changes have replayed.
#[offline_action(
    query,
    local = get_products_locally,
    store_all_in = PRODUCTS,
    key = |p: &Product| p.id.clone(),
    within = |p: &Product| p.tenant_id == tenant_id
)]
pub async fn get_products(tenant_id: String) -> Result<Vec<Product>, AppError> {
    let cx = context()?;
    let request = Api::of(&cx)?.request(&cx, Method::GET, &["products"])?;
    send(request.query(&[("tenant", &tenant_id)])).await
}

async fn get_products_locally(tenant_id: String) -> Result<Vec<Product>, AppError> {
    let cx = context()?;
    local_products(&cx.collection(PRODUCTS), &tenant_id).await
}

/// Adds a product to a tenant's catalogue.
#[offline_action(local = add_product_locally, store_in = PRODUCTS, key = |p: &Product| p.id.clone())]
pub async fn add_product(tenant_id: String, product: NewProduct) -> Result<Product, AppError> {
    let cx = context()?;
    let body = CreateProduct {
        tenant_id,
        id: product.id,
        name: product.name,
        price_cents: product.price_cents,
    };
    let request = Api::of(&cx)?.request(&cx, Method::POST, &["products"])?;
    send(request.json(&body)).await
}

async fn add_product_locally(tenant_id: String, product: NewProduct) -> Result<Product, AppError> {
    let cx = context()?;
    if let Some(problem) = invalid(&product.name, product.price_cents) {
        return Err(AppError::Invalid(problem));
    }
    let created = Product {
        id: product.id,
        tenant_id,
        name: product.name.trim().to_owned(),
        price_cents: product.price_cents,
        updated_at: cx.timestamp().as_millis(),
    };
    cx.collection(PRODUCTS)
        .put(created.id.clone(), &created)
        .await?;
    Ok(created)
}

/// Changes a product's price; answers with the product as it is now (a later change by
/// someone else may have won).
#[offline_action(local = update_price_locally, store_in = PRODUCTS, key = |p: &Product| p.id.clone())]
pub async fn update_price(product_id: String, price_cents: i64) -> Result<Product, AppError> {
    let cx = context()?;
    let path = ["products", product_id.as_str(), "price"];
    let request = Api::of(&cx)?.request(&cx, Method::PUT, &path)?;
    send(request.json(&PriceChange { price_cents })).await
}

async fn update_price_locally(product_id: String, price_cents: i64) -> Result<Product, AppError> {
    let cx = context()?;
    if let Some(problem) = invalid("-", price_cents) {
        return Err(AppError::Invalid(problem));
    }
    let products = cx.collection::<Product>(PRODUCTS);
    let Some(mut product) = products.get(&product_id).await? else {
        return Err(AppError::Invalid(format!(
            "there is no product {product_id}"
        )));
    };
    product.price_cents = price_cents;
    product.updated_at = cx.timestamp().as_millis();
    products.put(product_id, &product).await?;
    Ok(product)
}

/// Deletes a product.
#[offline_action(local = delete_product_locally)]
pub async fn delete_product(product_id: String) -> Result<(), AppError> {
    let cx = context()?;
    let request = Api::of(&cx)?.request(&cx, Method::DELETE, &["products", &product_id])?;
    send::<()>(request).await?;
    cx.collection::<Product>(PRODUCTS)
        .delete(product_id)
        .await?;
    Ok(())
}

async fn delete_product_locally(product_id: String) -> Result<(), AppError> {
    let cx = context()?;
    let products = cx.collection::<Product>(PRODUCTS);
    if products.get(&product_id).await?.is_none() {
        return Err(AppError::Invalid(format!(
            "there is no product {product_id}"
        )));
    }
    products.delete(product_id).await?;
    Ok(())
}

/// Adds a delivery of `quantity` units to a product's stock; answers with the units in stock
/// now. Not idempotent: the server counts each delivery once by its action id. It has no
/// local handler (the stock is the server's to count): offline, it is queued and the caller
/// gets `SyncError::Queued`.
#[offline_action]
pub async fn add_stock(product_id: String, quantity: i64) -> Result<i64, AppError> {
    let cx = context()?;
    let path = ["products", product_id.as_str(), "stock"];
    let request = Api::of(&cx)?.request(&cx, Method::POST, &path)?;
    send(request.json(&StockDelivery { quantity })).await
}

fn context() -> Result<ActionContext, AppError> {
    ActionContext::current()
        .ok_or_else(|| AppError::Invalid("the products actions run inside an action".into()))
}

async fn local_products(
    products: &Collection<Product>,
    tenant_id: &str,
) -> Result<Vec<Product>, AppError> {
    let mut list: Vec<Product> = products
        .list()
        .await?
        .into_iter()
        .map(|(_, product)| product)
        .filter(|product| product.tenant_id == tenant_id)
        .collect();
    list.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(list)
}

/// Sends a request and reads a JSON answer (`()` for an empty one); a status that is not a
/// success becomes `AppError::Server` with the server's message and `Retry-After`. An answer
/// from the server itself reports its clock to the runtime, which stamps the next actions by
/// it.
async fn send<T: DeserializeOwned>(request: RequestBuilder) -> Result<T, AppError> {
    let response = request.send().await?;
    let status = response.status();
    if !http::is_transient_status(status.as_u16()) {
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok());
        let server_time = http::server_time(
            header(http::SERVER_TIME_HEADER),
            header(reqwest::header::DATE.as_str()),
        );
        if let (Some(time), Some(cx)) = (server_time, ActionContext::current()) {
            cx.note_server_time(time);
        }
    }
    if status.is_success() {
        let body = response.bytes().await?;
        let json: &[u8] = if status == StatusCode::NO_CONTENT || body.is_empty() {
            b"null"
        } else {
            &body
        };
        return serde_json::from_slice(json).map_err(|e| AppError::Server {
            status: status.as_u16(),
            message: format!("the answer is not what was expected: {e}"),
            retry_after: None,
        });
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(http::parse_retry_after);
    let message = match response.json::<ErrorBody>().await {
        Ok(body) => body.error,
        Err(_) => status.canonical_reason().unwrap_or("no message").to_owned(),
    };
    Err(AppError::Server {
        status: status.as_u16(),
        message,
        retry_after,
    })
}

/// A device clock that is off: the system clock plus `ahead` milliseconds (negative: behind).
#[derive(Clone, Copy, Debug)]
pub struct SkewedClock {
    pub ahead_millis: i64,
}

impl Clock for SkewedClock {
    fn now(&self) -> Timestamp {
        let now = i128::from(SystemClock.now().as_millis()) + i128::from(self.ahead_millis);
        Timestamp(u64::try_from(now.max(0)).unwrap_or(u64::MAX))
    }
}

/// How a client reaches its server.
#[derive(Clone)]
struct Api {
    base: Url,
    http: reqwest::Client,
}

impl Api {
    /// The `Api` of the client an action runs in: each client's service carries its own (a
    /// service extension, there before the service can replay anything at start-up).
    fn of(cx: &ActionContext) -> Result<Api, AppError> {
        cx.service()
            .extension::<Api>()
            .cloned()
            .ok_or_else(|| AppError::Invalid("this client has no server configured".into()))
    }

    /// A request to `path` (segments, each escaped) carrying the action's id and timestamp.
    fn request(
        &self,
        cx: &ActionContext,
        method: Method,
        path: &[&str],
    ) -> Result<RequestBuilder, AppError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| AppError::Invalid(format!("{} cannot have a path", self.base)))?
            .clear()
            .extend(path);
        let mut request = self.http.request(method, url);
        for (name, value) in http::action_headers(cx) {
            request = request.header(name, value);
        }
        Ok(request)
    }
}

/// One device: its own local store, its own network switch, the same server.
pub struct Client {
    pub service: SyncService,
    /// The device's own network (the server may still be down when this says online).
    pub network: ManualConnectivity,
}

impl Client {
    /// A client keeping its data in `database`, talking to the server at `server_url`. Call
    /// it inside a tokio runtime: queued actions replay there in the background.
    pub fn open(
        database: &Path,
        server_url: &str,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Self::open_with_clock(database, server_url, SystemClock)
    }

    /// [`Client::open`] on a device whose clock reads `clock` (a phone whose clock is wrong).
    pub fn open_with_clock(
        database: &Path,
        server_url: &str,
        clock: impl Clock,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let network = ManualConnectivity::new(true);
        let executor = TokioExecutor::current().ok_or("Client::open runs inside tokio")?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            // A fresh connection per request: none outlives a server restart.
            .pool_max_idle_per_host(0)
            .build()?;
        let api = Api {
            base: Url::parse(server_url)?,
            http,
        };
        let service = SyncService::builder()
            .store(SqliteStore::open(database)?)
            .connectivity(network.clone())
            .clock(clock)
            .executor(executor)
            // Short waits between attempts, so the example's outage ends in a blink.
            .retry_policy(RetryPolicy {
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(250),
                max_retries: 200,
                ..RetryPolicy::default()
            })
            // The server it talks to, for the actions' bodies. Given to the builder, not
            // registered afterwards: the service replays what it finds queued as soon as it
            // is built.
            .extension(api)
            .build()?;
        Ok(Self { service, network })
    }

    /// Runs an action (or any future calling actions) as this client.
    pub async fn call<F: Future>(&self, action: F) -> F::Output {
        self.service.scope(action).await
    }

    /// A tenant's products in this client's local store, by name.
    pub async fn local_products(&self, tenant_id: &str) -> Result<Vec<Product>, AppError> {
        local_products(&self.service.collection(PRODUCTS), tenant_id).await
    }

    pub async fn status(&self) -> Result<SyncStatus, AppError> {
        Ok(self.service.refresh_status().await?)
    }

    /// Waits, up to `limit`, until the queue has drained on its own.
    pub async fn wait_until_synced(&self, limit: Duration) -> Result<SyncStatus, AppError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let status = self.status().await?;
            if status.pending == 0 {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AppError::Invalid(format!(
                    "{} actions still waiting after {limit:?}; last error: {:?}",
                    status.pending, status.last_error
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
