//! Row 7 of BENCHMARKS.md: a write request through `server::apply_once_async` on PostgreSQL,
//! against the same handler without it, in the same run.
//!
//! One axum handler, `POST /products` with the action headers: in one transaction from a
//! connection pool (deadpool-postgres), insert the product and a change-log row (prepared,
//! cached statements), commit, answer with the product as JSON. `/with` runs those writes
//! inside `apply_once_async` (claim the action id, run them, record the response); `/plain`
//! runs them as they are; `/plain-two-round-trips`, the control, runs them with two prepared
//! `SELECT 1` in the same transaction (as many round trips as `apply_once_async` adds).
//! Requests are sent one after another over one keep-alive
//! connection (reqwest) on 127.0.0.1, each with a new action id, in interleaved rounds on one
//! tokio thread shared with the server.
//!
//! Needs a PostgreSQL server: `SYNC_TEST_POSTGRES_URL` (or `DATABASE_URL`) is its connection
//! string; `bash scripts/postgres.sh cargo bench --bench server_postgres` starts a throwaway
//! cluster for it. Under `cargo test --all-targets` it runs a few requests as a smoke test
//! (and says so and passes without a server, unless `CI` is set).

#[allow(dead_code)]
#[path = "../examples/products/model.rs"]
mod model;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use deadpool_postgres::{Manager, Pool, Transaction};
use model::{CreateProduct, Product};
use std::time::Instant;
use sync_runtime::http::{ACTION_ID_HEADER, ACTION_TIMESTAMP_HEADER};
use sync_runtime::server::{apply_once_async, postgres, ActionHeaders, Applied};
use sync_runtime::{Clock, SyncError, SystemClock};
use tokio_postgres::NoTls;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Failed(String);

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.0).into_response()
    }
}

impl From<tokio_postgres::Error> for Failed {
    fn from(error: tokio_postgres::Error) -> Self {
        Failed(error.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for Failed {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Failed(error.to_string())
    }
}

impl From<SyncError> for Failed {
    fn from(error: SyncError) -> Self {
        Failed(error.to_string())
    }
}

/// The change both variants make: a product row and a change-log row.
async fn add(
    tx: &Transaction<'_>,
    new: &CreateProduct,
    action: &ActionHeaders,
) -> Result<Product, Failed> {
    let at = action.timestamp.map_or(0, |t| t.as_millis());
    let insert = tx
        .prepare_cached(
            "INSERT INTO products (id, tenant_id, name, price_cents, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    let updated_at = i64::try_from(at).unwrap_or(i64::MAX);
    tx.execute(
        &insert,
        &[
            &new.id,
            &new.tenant_id,
            &new.name,
            &new.price_cents,
            &updated_at,
            &action.id.0,
        ],
    )
    .await?;
    let log = tx
        .prepare_cached("INSERT INTO changes (action_id, change) VALUES ($1, $2)")
        .await?;
    tx.execute(&log, &[&action.id.0, &format!("add {}", new.name)])
        .await?;
    Ok(Product {
        id: new.id.clone(),
        tenant_id: new.tenant_id.clone(),
        name: new.name.clone(),
        price_cents: new.price_cents,
        updated_at: at,
    })
}

fn parse(body: &[u8]) -> Result<CreateProduct, Failed> {
    serde_json::from_slice(body).map_err(|e| Failed(e.to_string()))
}

async fn plain(
    State(pool): State<Pool>,
    action: ActionHeaders,
    body: Bytes,
) -> Result<Json<Product>, Failed> {
    let new = parse(&body)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let product = add(&tx, &new, &action).await?;
    tx.commit().await?;
    Ok(Json(product))
}

/// The control for what `apply_once_async` adds: the handler alone plus two prepared
/// statements that do nothing (`SELECT 1`) in its transaction, as many round trips to the
/// database as the record's claim and response. If this costs what `apply_once_async` does,
/// the overhead is those round trips, not the work the statements do.
async fn plain_two_round_trips(
    State(pool): State<Pool>,
    action: ActionHeaders,
    body: Bytes,
) -> Result<Json<Product>, Failed> {
    let new = parse(&body)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let nothing = tx.prepare_cached("SELECT 1").await?;
    tx.query_one(&nothing, &[]).await?;
    let product = add(&tx, &new, &action).await?;
    tx.query_one(&nothing, &[]).await?;
    tx.commit().await?;
    Ok(Json(product))
}

/// Through `apply_once_async` on the pooled transaction: the record's statements are
/// prepared once per connection.
async fn with_apply_once(
    State(pool): State<Pool>,
    action: ActionHeaders,
    body: Bytes,
) -> Result<Json<Product>, Failed> {
    let new = parse(&body)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let applied = apply_once_async(&tx, action.id, &body, add(&tx, &new, &action)).await?;
    tx.commit().await?;
    Ok(Json(Applied::into_response(applied)))
}

/// Through `apply_once_async` on the plain `tokio_postgres::Transaction` underneath: the
/// record's statements are sent unprepared.
async fn with_apply_once_unprepared(
    State(pool): State<Pool>,
    action: ActionHeaders,
    body: Bytes,
) -> Result<Json<Product>, Failed> {
    let new = parse(&body)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let plain: &tokio_postgres::Transaction<'_> = &tx;
    let applied = apply_once_async(plain, action.id, &body, add(&tx, &new, &action)).await?;
    tx.commit().await?;
    Ok(Json(Applied::into_response(applied)))
}

const SCHEMA: &str = "
    DROP TABLE IF EXISTS products, changes, applied_actions;
    CREATE TABLE products (
        id text PRIMARY KEY, tenant_id text NOT NULL, name text NOT NULL,
        price_cents bigint NOT NULL, updated_at bigint NOT NULL, updated_by uuid NOT NULL
    );
    CREATE TABLE changes (seq bigserial PRIMARY KEY, action_id uuid NOT NULL, change text NOT NULL);
";

async fn requests(http: &reqwest::Client, url: &str, count: usize) {
    for n in 0..count {
        let id = uuid::Uuid::now_v7();
        let body = CreateProduct {
            tenant_id: "bench".into(),
            id: uuid::Uuid::now_v7().to_string(),
            name: format!("Product {n}"),
            price_cents: 100,
        };
        let response = http
            .post(url)
            .header(ACTION_ID_HEADER, id.to_string())
            // The time the user acted: now (the server refuses stamps from its future or
            // older than the clients' time-to-live).
            .header(ACTION_TIMESTAMP_HEADER, SystemClock.now().0.to_string())
            .json(&body)
            .send()
            .await
            .expect("the server answers");
        assert!(response.status().is_success(), "{}", response.status());
        let product: Product = response.json().await.expect("a product");
        assert_eq!(product.id, body.id);
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let full = std::env::args().any(|a| a == "--bench");
    let url =
        match std::env::var("SYNC_TEST_POSTGRES_URL").or_else(|_| std::env::var("DATABASE_URL")) {
            Ok(url) => url,
            Err(_) if std::env::var_os("CI").is_some() => {
                return Err(
                    "CI is set but SYNC_TEST_POSTGRES_URL is not: run through scripts/postgres.sh"
                        .into(),
                )
            }
            Err(_) => {
                println!("apply_once on PostgreSQL: no SYNC_TEST_POSTGRES_URL, not measured");
                return Ok(());
            }
        };
    let (rounds, per_round) = if full {
        (env_or("BENCH_ROUNDS", 10), env_or("BENCH_PER_ROUND", 1000))
    } else {
        (1, 20)
    };

    let config: tokio_postgres::Config = url.parse()?;
    let pool = Pool::builder(Manager::new(config, NoTls))
        .max_size(4)
        .build()?;
    {
        let mut client = pool.get().await?;
        client.batch_execute(SCHEMA).await?;
        postgres::migrate(&mut client).await?;
    }
    let app = Router::new()
        .route("/plain", post(plain))
        .route("/plain-two-round-trips", post(plain_two_round_trips))
        .route("/with", post(with_apply_once))
        .route("/with-unprepared", post(with_apply_once_unprepared))
        .with_state(pool.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder().no_proxy().build()?;
    let variants = [
        ("the handler alone", format!("{base}/plain")),
        (
            "in apply_once_async, pooled transaction",
            format!("{base}/with"),
        ),
        (
            "in apply_once_async, unprepared",
            format!("{base}/with-unprepared"),
        ),
        (
            "the handler + two no-op round trips (control)",
            format!("{base}/plain-two-round-trips"),
        ),
    ];

    // Warm up every path (connections, cached statements).
    for (_, url) in &variants {
        requests(&http, url, 50).await;
    }
    let mut times = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        // Each round runs the variants in a different order.
        for step in 0..variants.len() {
            let variant = (round + step) % variants.len();
            let start = Instant::now();
            requests(&http, &variants[variant].1, per_round).await;
            times[variant].push(start.elapsed().as_secs_f64());
        }
    }
    let applied: i64 = pool
        .get()
        .await?
        .query_one("SELECT count(*) FROM applied_actions", &[])
        .await?
        .get(0);
    assert_eq!(
        applied as usize,
        2 * (50 + rounds * per_round),
        "one record per request through apply_once"
    );

    let calls = rounds * per_round;
    if full {
        println!("\n## a write request on PostgreSQL ({rounds} rounds x {per_round} requests, interleaved)");
        for ((name, _), times) in variants.iter().zip(&times) {
            let total: f64 = times.iter().sum();
            println!(
                "  {name:<46} {total:>7.2} s for {calls} requests  {:>5.0} µs each",
                total / calls as f64 * 1e6
            );
        }
        for (variant, (name, _)) in variants.iter().enumerate().skip(1) {
            let ratios: Vec<f64> = times[variant]
                .iter()
                .zip(&times[0])
                .map(|(o, t)| o / t)
                .collect();
            println!(
                "  => {name}: {:.3}x the time (median of per-round ratios, range {:.3}..{:.3}; target <= 1.15x)",
                median(ratios.clone()),
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(0.0, f64::max),
            );
        }
    } else {
        println!("apply_once on PostgreSQL: smoke test passed");
    }
    Ok(())
}
