//! Row 9 of BENCHMARKS.md: replaying queued calls spread over 8 ordering scopes against the
//! products example's HTTP server (axum + SQLite on 127.0.0.1), against making the same
//! requests directly, one after another.
//!
//! - ours: `add_product` calls are queued offline, each in the scope of its tenant (8
//!   tenants), through `SyncService::execute_action_in_scope`; then the connection comes
//!   back and the background replay drains the queue, up to 4 scopes at a time (the default
//!   `replay_concurrency`), storing each answer locally and deleting each call from the queue.
//! - direct: the same `POST /products` requests (same JSON bodies, same idempotency headers,
//!   the same reqwest settings: a fresh connection per request), each awaited and decoded
//!   before the next, with no local store.
//!
//! Two variants, against the same server and database:
//!
//! - 0 ms: plain loopback, where a request costs CPU and no waiting.
//! - delayed: the same routes behind a layer that sleeps a fixed time (`tokio::time::sleep`,
//!   `SCOPES_BENCH_LATENCY_MS`, 5 ms by default) before each request reaches the handler, as
//!   a request waits on the network in a real deployment. Both ours and direct go through it.
//!
//! In interleaved rounds (2,000 calls per variant and side each by default, 5 rounds: 10,000
//! calls per variant and side) on a two-thread tokio runtime shared with the server.
//! Afterwards, the server's log of applied changes must hold every queued call once, each
//! scope's calls in the order they were made.
//!
//! Run: `cargo bench --bench replay_scopes` (`BENCH_ROUNDS`, `BENCH_PER_ROUND`,
//! `SCOPES_BENCH_LATENCY_MS` to change; a latency of 0 runs the 0 ms variant only).

#[allow(dead_code)]
#[path = "../examples/products/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "support/direct.rs"]
mod direct;

#[path = "../examples/products/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "../examples/products/server.rs"]
mod server;

use client::{AddProductAction, AddProductParams, Client};
use futures::{FutureExt, StreamExt};
use model::NewProduct;
use server::ProductServer;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use sync_runtime::SyncEvent;

const SCOPES: usize = 8;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Queues `count` products offline, round-robin over the round's 8 tenants, each call in its
/// tenant's scope. Returns, for each queued call's id, its scope and its number in the scope.
async fn queue_offline(
    client: &Client,
    round: &str,
    count: usize,
) -> HashMap<String, (String, usize)> {
    client.network.set_online(false);
    for n in 0..count {
        let tenant = format!("{round}-tenant-{}", n % SCOPES);
        let params = AddProductParams {
            tenant_id: tenant.clone(),
            product: NewProduct::new(&format!("Product {}", n / SCOPES), 100 + n as i64),
        };
        let local = client
            .call(
                client
                    .service
                    .execute_action_in_scope::<AddProductAction>(params, tenant.clone()),
            )
            .await
            .expect("answered locally");
        assert_eq!(local.tenant_id, tenant);
    }
    let queued = client.service.queued().await.expect("the queue reads");
    assert_eq!(queued.len(), count);
    queued
        .into_iter()
        .map(|q| {
            let params: AddProductParams = serde_json::from_str(&q.params).expect("params");
            let n: usize = params
                .product
                .name
                .trim_start_matches("Product ")
                .parse()
                .expect("a numbered product");
            assert_eq!(q.scope, params.tenant_id, "queued in its tenant's scope");
            (q.id.to_string(), (q.scope, n))
        })
        .collect()
}

/// Brings the connection back and waits until the background replay has drained the queue.
/// Returns the transient failures replay met (each one makes its scope back off).
async fn replay(client: &Client) -> Vec<String> {
    let mut status = client.service.subscribe();
    let mut events = client.service.events();
    client.network.set_online(true);
    while let Some(now) = status.next().await {
        if now.pending == 0 && !now.syncing {
            break;
        }
    }
    let status = client.status().await.expect("status");
    assert_eq!(status.pending, 0, "the queue drained");
    assert_eq!(status.dead, 0, "nothing failed: {:?}", status.last_error);
    let mut failures = Vec::new();
    while let Some(Some(event)) = events.next().now_or_never() {
        if let SyncEvent::Retrying { error, .. } = event {
            failures.push(error);
        }
    }
    failures
}

/// The same requests, made directly, one after another.
async fn direct(http: &reqwest::Client, url: &str, round: &str, count: usize) {
    for n in 0..count {
        let tenant = format!("{round}-direct-{}", n % SCOPES);
        let product = NewProduct::new(&format!("Product {}", n / SCOPES), 100 + n as i64);
        direct::add_product(http, url, &tenant, product).await;
    }
}

/// Checks that the server applied each scope's calls in the order they were made, each once.
fn check_order(server_db: &std::path::Path, made: &HashMap<String, (String, usize)>) {
    let db = rusqlite::Connection::open_with_flags(
        server_db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the server's database");
    let mut statement = db
        .prepare("SELECT action_id FROM changes ORDER BY seq")
        .expect("the changes log");
    let applied: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .expect("read the changes log");
    let mut next: HashMap<&str, usize> = HashMap::new();
    let mut seen = 0;
    for id in &applied {
        let Some((scope, n)) = made.get(id) else {
            continue; // a direct request or the warm-up
        };
        let expected = next.entry(scope.as_str()).or_insert(0);
        assert_eq!(n, expected, "scope {scope} applied out of order");
        *expected += 1;
        seen += 1;
    }
    assert_eq!(seen, made.len(), "every queued call was applied once");
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

/// Holds each request for `latency` before it reaches the routes: the time it would spend on
/// the network. It waits without holding anything, so waiting requests overlap.
async fn delay(
    axum::extract::State(latency): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    tokio::time::sleep(latency).await;
    next.run(request).await
}

/// One variant: a client with its own store, against the server at `url`.
struct Variant {
    name: String,
    url: String,
    client: Client,
    made: HashMap<String, (String, usize)>,
    ours: Vec<f64>,
    theirs: Vec<f64>,
    failures: Vec<String>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, per_round) = if full {
        (env_or("BENCH_ROUNDS", 5), env_or("BENCH_PER_ROUND", 2000))
    } else {
        (1, 40)
    };
    let latency_ms = env_or("SCOPES_BENCH_LATENCY_MS", 5);
    let dir = tempfile::tempdir()?;
    let server_db = dir.path().join("server.sqlite3");
    let server = ProductServer::start(&server_db).await?;
    // The same routes, state and database, behind the delay, on a second port.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let delayed_url = format!("http://{}", listener.local_addr()?);
    let latency = Duration::from_millis(latency_ms as u64);
    let delayed_app = server
        .routes()
        .layer(axum::middleware::from_fn_with_state(latency, delay));
    let delayed_server = tokio::spawn(async move { axum::serve(listener, delayed_app).await });

    let mut targets = vec![("0 ms".to_owned(), server.url())];
    if latency_ms > 0 {
        targets.push((format!("{latency_ms} ms"), delayed_url));
    }
    let mut variants = Vec::new();
    for (index, (name, url)) in targets.into_iter().enumerate() {
        let client = Client::open(&dir.path().join(format!("client-{index}.sqlite3")), &url)?;
        variants.push(Variant {
            name,
            url,
            client,
            made: HashMap::new(),
            ours: Vec::new(),
            theirs: Vec::new(),
            failures: Vec::new(),
        });
    }
    // The example client's settings, for the direct requests too.
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()?;

    // Warm up both paths of each variant.
    for (index, v) in variants.iter_mut().enumerate() {
        let label = format!("warm-up-{index}");
        queue_offline(&v.client, &label, 16).await;
        v.failures.extend(replay(&v.client).await);
        direct(&http, &v.url, &label, 16).await;
    }

    for round in 0..rounds {
        for (index, v) in variants.iter_mut().enumerate() {
            let label = format!("round-{round}-{index}");
            let queued = queue_offline(&v.client, &label, per_round).await;
            v.made.extend(queued);
            for step in 0..2 {
                let start = Instant::now();
                if (step == 0) == (round % 2 == 0) {
                    v.failures.extend(replay(&v.client).await);
                    v.ours.push(start.elapsed().as_secs_f64());
                } else {
                    direct(&http, &v.url, &label, per_round).await;
                    v.theirs.push(start.elapsed().as_secs_f64());
                }
            }
        }
    }
    for v in &variants {
        check_order(&server_db, &v.made);
    }

    let total = |times: &[f64]| times.iter().sum::<f64>();
    if full {
        println!(
            "\n## replay over {SCOPES} ordering scopes against the products server ({rounds} rounds x {per_round} calls per variant, interleaved)"
        );
    }
    for v in &variants {
        let ratios: Vec<f64> = v.ours.iter().zip(&v.theirs).map(|(o, t)| o / t).collect();
        if !full {
            continue;
        }
        println!("\n### {} added before each request", v.name);
        println!(
            "  direct requests, one after another                 {:>7.2} s for {} calls  {:>7.0} calls/s",
            total(&v.theirs),
            rounds * per_round,
            (rounds * per_round) as f64 / total(&v.theirs)
        );
        println!(
            "  background replay, {SCOPES} scopes, 4 at a time         {:>7.2} s for {} calls  {:>7.0} calls/s",
            total(&v.ours),
            rounds * per_round,
            (rounds * per_round) as f64 / total(&v.ours)
        );
        for (round, (o, t)) in v.ours.iter().zip(&v.theirs).enumerate() {
            println!("  round {round}: replay {o:.3} s, direct {t:.3} s");
        }
        println!(
            "  transient failures during replay: {} {:?}",
            v.failures.len(),
            v.failures.iter().take(3).collect::<Vec<_>>()
        );
        println!(
            "  => {}: replay takes {:.3}x the direct time (total {:.3}x; median of per-round ratios, range {:.3}..{:.3}; goal <= 0.5x); each scope in order",
            v.name,
            median(ratios.clone()),
            total(&v.ours) / total(&v.theirs),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
    }
    if !full {
        let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
        println!(
            "replay over scopes ({}): smoke test passed, each scope in order",
            names.join(", ")
        );
    }
    delayed_server.abort();
    server.stop().await;
    Ok(())
}
