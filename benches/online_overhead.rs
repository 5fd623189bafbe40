//! Row 1 of BENCHMARKS.md: what `#[offline_action]` costs on a call that succeeds online.
//!
//! Each comparison's baseline is what a user would write by hand to get the same local data:
//! the same body called directly, then one raw `Store::apply` of one `Write` holding the same
//! response JSON (serialized by hand, as the user would have to). The bodies do no I/O, so the
//! ratios are the worst case: with a real network call in the body (hundreds of microseconds
//! at least), the same absolute overhead is a far smaller share.
//!
//! Run: `cargo bench --bench online_overhead`

#[path = "support/mod.rs"]
mod support;

use futures::executor::block_on;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use support::{compare, Plan, Variant};
use sync_runtime::store::{Batch, SqliteStore, Stamp, Write};
use sync_runtime::{
    offline_action, ActionContext, ActionId, ClassifyError, ManualConnectivity, MemoryStore, Store,
    SyncError, SyncService, Timestamp,
};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("network")]
    Network,
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for BenchError {
    fn is_transient(&self) -> bool {
        matches!(self, BenchError::Network)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub price_cents: u64,
}

/// The work of the query's body: ten products, about 900 bytes of JSON.
fn catalogue(tenant_id: &str, count: u32) -> Vec<Product> {
    (0..count)
        .map(|i| Product {
            id: format!("0190b7c4-5f6e-7a8b-9c0d-{i:012}"),
            tenant_id: tenant_id.to_owned(),
            name: format!("product number {i}"),
            price_cents: 1999 + u64::from(i),
        })
        .collect()
}

/// The work of the mutation's body: the renamed product as the server returns it.
fn renamed(id: &str, name: &str) -> Product {
    Product {
        id: id.to_owned(),
        tenant_id: "tenant-1".to_owned(),
        name: name.to_owned(),
        price_cents: 1999,
    }
}

/// A query: its answer is cached by the runtime.
#[offline_action(query)]
pub async fn list_products(tenant_id: String, count: u32) -> Result<Vec<Product>, BenchError> {
    Ok(catalogue(&tenant_id, count))
}

async fn list_products_direct(tenant_id: String, count: u32) -> Result<Vec<Product>, BenchError> {
    Ok(catalogue(&tenant_id, count))
}

/// A mutation that keeps the server's answer locally through the action's collection.
#[offline_action]
pub async fn rename_product(id: String, name: String) -> Result<Product, BenchError> {
    let product = renamed(&id, &name);
    ActionContext::current()
        .expect("inside the action")
        .collection::<Product>("products")
        .put(id, &product)
        .await?;
    Ok(product)
}

async fn rename_product_direct(id: String, name: String) -> Result<Product, BenchError> {
    Ok(renamed(&id, &name))
}

/// A mutation that writes nothing locally: the runtime touches no store on success.
#[offline_action]
pub async fn touch_product(id: String) -> Result<u64, BenchError> {
    Ok(id.len() as u64)
}

async fn touch_product_direct(id: String) -> Result<u64, BenchError> {
    Ok(id.len() as u64)
}

/// A stamp for the hand-written baseline: a fixed id and an increasing time, the cheapest a
/// user could make (the runtime mints a uuid v7 per call).
fn baseline_stamp(counter: &mut u64) -> Stamp {
    *counter += 1;
    Stamp {
        timestamp: Timestamp(1_750_000_000_000 + *counter),
        action: ActionId(uuid::Uuid::from_u128(7)),
    }
}

/// One raw write of `value` under `collection`/`key`, as a user caching by hand would do.
async fn raw_write(store: &dyn Store, collection: &str, key: String, value: String, stamp: Stamp) {
    let mut batch = Batch::new();
    batch.writes.push(Write {
        collection: collection.to_owned(),
        key,
        value: Some(value),
        stamp,
    });
    store.apply(batch).await.expect("raw write");
}

fn bench_store(label: &str, store: Arc<dyn Store>, plan: Plan) {
    let service = SyncService::builder()
        .shared_store(Arc::clone(&store))
        .connectivity(ManualConnectivity::new(true))
        .build()
        .expect("no duplicate action names");

    let mut counter = 0u64;
    let raw_store = Arc::clone(&store);
    let query = compare(
        &format!("{label}: query (the runtime caches the answer)"),
        plan,
        vec![
            Variant::new("body + serialize + one raw store write", |n| {
                block_on(async {
                    for _ in 0..n {
                        let out = list_products_direct("tenant-1".into(), 10).await.unwrap();
                        let key = serde_json::to_string(&("tenant-1", 10)).unwrap();
                        let json = serde_json::to_string(&out).unwrap();
                        let stamp = baseline_stamp(&mut counter);
                        raw_write(&*raw_store, "products-cache", key, json, stamp).await;
                    }
                })
            }),
            Variant::new("#[offline_action(query)], online", |n| {
                block_on(service.scope(async {
                    for _ in 0..n {
                        list_products("tenant-1".into(), 10).await.unwrap();
                    }
                }))
            }),
            Variant::new("body only (no local data)", |n| {
                block_on(async {
                    for _ in 0..n {
                        list_products_direct("tenant-1".into(), 10).await.unwrap();
                    }
                })
            }),
        ],
    );

    let mut counter = 0u64;
    let mutation = compare(
        &format!("{label}: mutation writing its answer through ActionContext::collection"),
        plan,
        vec![
            Variant::new("body + serialize + one raw store write", |n| {
                block_on(async {
                    for _ in 0..n {
                        let out = rename_product_direct("p-1".into(), "new name".into())
                            .await
                            .unwrap();
                        let json = serde_json::to_string(&out).unwrap();
                        let stamp = baseline_stamp(&mut counter);
                        raw_write(&*raw_store, "products-raw", "p-1".into(), json, stamp).await;
                    }
                })
            }),
            Variant::new("#[offline_action], online", |n| {
                block_on(service.scope(async {
                    for _ in 0..n {
                        rename_product("p-1".into(), "new name".into())
                            .await
                            .unwrap();
                    }
                }))
            }),
        ],
    );

    let bare = compare(
        &format!("{label}: mutation writing nothing locally"),
        plan,
        vec![
            Variant::new("body only", |n| {
                block_on(async {
                    for _ in 0..n {
                        touch_product_direct("p-1".into()).await.unwrap();
                    }
                })
            }),
            Variant::new("#[offline_action], online", |n| {
                block_on(service.scope(async {
                    for _ in 0..n {
                        touch_product("p-1".into()).await.unwrap();
                    }
                }))
            }),
        ],
    );
    if plan.full && query.len() == 3 && mutation.len() == 2 && bare.len() == 2 {
        println!(
            "  => {label}: query overhead {:.3}x, mutation+write {:.3}x (target <= 1.10x); bare mutation adds {} per call",
            query[1].ratio,
            mutation[1].ratio,
            support::format_duration(bare[1].per_iter.saturating_sub(bare[0].per_iter)),
        );
    }
}

fn main() {
    let plan = Plan::from_args(30, Duration::from_millis(60));
    // `BENCH_STORE=memory` or `BENCH_STORE=sqlite` runs one of the two (e.g. to profile).
    let only = std::env::var("BENCH_STORE").unwrap_or_default();
    if only.is_empty() || only == "memory" {
        bench_store("memory store", Arc::new(MemoryStore::new()), plan);
    }
    if only.is_empty() || only == "sqlite" {
        let dir = tempfile::tempdir().expect("temp dir");
        let sqlite = SqliteStore::open(dir.path().join("online.sqlite3")).expect("sqlite store");
        bench_store(
            "SQLite store (file, WAL, synchronous=NORMAL)",
            Arc::new(sqlite),
            plan,
        );
    }
}
