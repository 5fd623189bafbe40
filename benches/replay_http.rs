//! Row 3 of BENCHMARKS.md: draining queued calls against the products example's real HTTP
//! server (axum + SQLite on 127.0.0.1), against making the same requests directly.
//!
//! - ours: `add_product` (the example's `#[offline_action]`) is called offline; then
//!   `SyncService::replay` sends every queued call to the server, stores each answer
//!   locally and deletes the call from the queue (one SQLite transaction per call).
//! - direct: the same `POST /products` requests (same JSON body, same idempotency headers,
//!   the same reqwest settings: a fresh connection per request), each awaited and its answer
//!   decoded, with no local store.
//!
//! In interleaved rounds (1,000 calls each by default, 10 rounds: 10,000 calls per variant),
//! on one tokio thread shared with the server, so the two variants see the same scheduling.
//!
//! Run: `cargo bench --bench replay_http` (`BENCH_ROUNDS`, `BENCH_PER_ROUND` to change).

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

use client::{add_product, Client};
use model::NewProduct;
use server::ProductServer;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Queues `count` products offline: the server sees nothing of them yet.
async fn queue_offline(client: &Client, tenant: &str, count: usize) {
    client.network.set_online(false);
    for n in 0..count {
        let product = NewProduct::new(&format!("Product {n}"), 100 + n as i64);
        let local = client
            .call(add_product(tenant.to_owned(), product))
            .await
            .expect("answered locally");
        assert_eq!(local.tenant_id, tenant);
    }
}

/// Replays everything queued, in the foreground; returns how many calls reached the server.
async fn replay(client: &Client) -> usize {
    // On this one-thread runtime the background replay that going online starts cannot run
    // before `replay` below has claimed the single replay slot, so `replay` does the work.
    client.network.set_online(true);
    let report = client.service.replay().await.expect("replay");
    assert_eq!(report.remaining, 0, "the queue drained: {report:?}");
    report.synced
}

/// The same requests, made directly.
async fn direct(http: &reqwest::Client, url: &str, tenant: &str, count: usize) {
    for n in 0..count {
        let product = NewProduct::new(&format!("Product {n}"), 100 + n as i64);
        direct::add_product(http, url, tenant, product).await;
    }
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
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, per_round) = if full {
        (env_or("BENCH_ROUNDS", 10), env_or("BENCH_PER_ROUND", 1000))
    } else {
        (1, 20)
    };
    let dir = tempfile::tempdir()?;
    let server = ProductServer::start(&dir.path().join("server.sqlite3")).await?;
    let url = server.url();
    let client = Client::open(&dir.path().join("client.sqlite3"), &url)?;
    // The example client's settings, for the direct requests too.
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()?;

    // Warm up both paths.
    queue_offline(&client, "warm-up", 10).await;
    assert_eq!(replay(&client).await, 10);
    direct(&http, &url, "warm-up-direct", 10).await;

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let tenant = format!("tenant-{round}");
        queue_offline(&client, &tenant, per_round).await;
        for step in 0..2 {
            let start = Instant::now();
            if (step == 0) == (round % 2 == 0) {
                assert_eq!(replay(&client).await, per_round);
                ours.push(start.elapsed().as_secs_f64());
            } else {
                direct(&http, &url, &format!("{tenant}-direct"), per_round).await;
                theirs.push(start.elapsed().as_secs_f64());
            }
        }
    }
    let synced = client.local_products("tenant-0").await?;
    assert_eq!(synced.len(), per_round, "every answer was stored locally");
    let status = client.status().await?;
    assert_eq!(status.pending, 0);

    let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(o, t)| o / t).collect();
    let total = |times: &[f64]| times.iter().sum::<f64>();
    if full {
        println!(
            "\n## replay against the products server ({rounds} rounds x {per_round} calls, interleaved)"
        );
        println!(
            "  direct requests (reqwest, same bodies and headers)   {:>7.2} s for {} calls  {:>7.0} calls/s",
            total(&theirs),
            rounds * per_round,
            (rounds * per_round) as f64 / total(&theirs)
        );
        println!(
            "  SyncService::replay of queued #[offline_action] calls {:>7.2} s for {} calls  {:>7.0} calls/s",
            total(&ours),
            rounds * per_round,
            (rounds * per_round) as f64 / total(&ours)
        );
        println!(
            "  => replay takes {:.3}x the direct time (median of per-round ratios, range {:.3}..{:.3}; target <= 1.2x)",
            median(ratios.clone()),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
    } else {
        println!("replay over HTTP: smoke test passed");
    }
    server.stop().await;
    Ok(())
}
