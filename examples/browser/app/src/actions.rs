//! The page's two server actions, made offline-first with `#[offline_action]`, and the local
//! `products` collection they keep in IndexedDB.
//!
//! Each body is the online path: a request to the products server (same origin) carrying the
//! action id, which is the server's idempotency key, and the time the user acted; its answer
//! is written to the collection (`store_in`, `store_all_in`). Each local handler is the
//! offline path, reading and writing the same collection, so a product added offline is
//! listed at once, survives a reload, and is replaced by the server's copy when the queued
//! call replays, or removed if the server refuses it.

use crate::api;
use crate::model::{invalid, CreateProduct, Product};
use std::collections::HashSet;
use std::time::Duration;
use sync_runtime::http::is_transient_status;
use sync_runtime::{
    offline_action, ActionContext, ActionKind, ClassifyError, Collection, SyncError, SyncService,
};

/// The local collection of products, keyed by product id.
pub(crate) const PRODUCTS: &str = "products";

/// The queued name of [`add_product`], to find its calls in the queue.
pub(crate) const ADD_PRODUCT: &str = "add_product";

/// What can go wrong in an action, sorted for the runtime by [`ClassifyError`].
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No response arrived: offline, refused, reset or timed out. Transient.
    #[error("cannot reach the server: {0}")]
    Network(String),
    /// The server answered with an error status; 5xx, 408 and 429 are transient, the rest
    /// say the request itself is wrong.
    #[error("the server answered {status}: {message}")]
    Server {
        status: u16,
        transient: bool,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The input is not a valid product, or the page cannot make the request at all.
    #[error("{0}")]
    Invalid(String),
    /// The server's answer is not what this build expects.
    #[error("the server's answer is not what was expected: {0}")]
    BadResponse(String),
    /// What the runtime reports: "queued", "not cached", a failing local store.
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        match self {
            AppError::Network(_) => true,
            AppError::Server { transient, .. } => *transient,
            AppError::Invalid(_) | AppError::BadResponse(_) => false,
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

impl AppError {
    pub(crate) fn server(status: u16, message: String, retry_after: Option<Duration>) -> Self {
        AppError::Server {
            status,
            transient: is_transient_status(status),
            message,
            retry_after,
        }
    }
}

/// Lists a tenant's products; the answer becomes the tenant's local products (a product
/// added here and still waiting to be sent stays until its add has replayed). Offline (or
/// when the server cannot be reached), [`products_locally`] answers instead.
#[offline_action(
    query,
    local = products_locally,
    store_all_in = PRODUCTS,
    key = |p: &Product| p.id.clone(),
    within = |p: &Product| p.tenant_id == tenant_id
)]
pub async fn get_products(tenant_id: String) -> Result<Vec<Product>, AppError> {
    let path = format!(
        "/products?tenant={}",
        js_sys::encode_uri_component(&tenant_id)
    );
    api::get(&path).await
}

async fn products_locally(tenant_id: String) -> Result<Vec<Product>, AppError> {
    let cx = context()?;
    local_products(&cx.collection(PRODUCTS), &tenant_id).await
}

/// Adds a product. Its id is the action id, so the product keeps one id on this page, in
/// the queue and on the server. If the server refuses it on replay, the runtime removes it
/// from the local collection again.
#[offline_action(local = add_product_locally, store_in = PRODUCTS, key = |p: &Product| p.id.clone())]
pub async fn add_product(
    tenant_id: String,
    name: String,
    price_cents: i64,
) -> Result<Product, AppError> {
    let cx = context()?;
    let body = CreateProduct {
        tenant_id,
        id: cx.id().to_string(),
        name,
        price_cents,
    };
    api::send_json("POST", "/products", &body, &cx).await
}

async fn add_product_locally(
    tenant_id: String,
    name: String,
    price_cents: i64,
) -> Result<Product, AppError> {
    let cx = context()?;
    // The server's own check, so an invalid product is refused at once offline too, rather
    // than queued and dead-lettered later.
    if let Some(problem) = invalid(&name, price_cents) {
        return Err(AppError::Invalid(problem));
    }
    let product = Product {
        id: cx.id().to_string(),
        tenant_id,
        name: name.trim().to_owned(),
        price_cents,
        updated_at: cx.timestamp().as_millis(),
    };
    cx.collection::<Product>(PRODUCTS)
        .put(product.id.clone(), &product)
        .await?;
    Ok(product)
}

fn context() -> Result<ActionContext, AppError> {
    ActionContext::current()
        .ok_or_else(|| AppError::Invalid("the products actions run inside an action".into()))
}

/// A tenant's products in the local collection, by name.
pub(crate) async fn local_products(
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

/// The ids of products whose add is still queued (the action id is the product id), to mark
/// them "waiting" on the page.
pub(crate) async fn products_waiting(service: &SyncService) -> Result<HashSet<String>, AppError> {
    Ok(service
        .queued()
        .await?
        .into_iter()
        .filter(|q| q.kind == ActionKind::Mutation && q.name == ADD_PRODUCT)
        .map(|q| q.id.to_string())
        .collect())
}
