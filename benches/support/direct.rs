//! The baseline the replay benchmarks measure against: a products request made directly,
//! with the headers the runtime would send, and its answer checked.

use crate::model::{CreateProduct, NewProduct, Product};
use std::time::{SystemTime, UNIX_EPOCH};
use sync_runtime::http::{ACTION_ID_HEADER, ACTION_TIMESTAMP_HEADER};

/// Creates `product` for `tenant` on the products server at `url` in one request, stamped
/// now, and checks the answer.
pub async fn add_product(http: &reqwest::Client, url: &str, tenant: &str, product: NewProduct) {
    let body = CreateProduct {
        tenant_id: tenant.to_owned(),
        id: product.id,
        name: product.name,
        price_cents: product.price_cents,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let response = http
        .post(format!("{url}/products"))
        .header(ACTION_ID_HEADER, uuid::Uuid::now_v7().to_string())
        .header(ACTION_TIMESTAMP_HEADER, now.to_string())
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    assert!(response.status().is_success(), "{}", response.status());
    let created: Product =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("a product");
    assert_eq!(created.tenant_id, tenant);
}
