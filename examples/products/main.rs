//! Offline-first products, end to end: a real HTTP server (axum, SQLite) and two phones whose
//! `#[offline_action]` functions call it.
//!
//! The story: phone A's clock is an hour fast, and A learns the server's clock from its first
//! answer; actions online; the server goes away; actions are answered from the local store
//! and queued; both phones change the same product; the server comes back; the queues drain
//! on their own, each action applied once, in order; the edit the user made last wins,
//! whatever A's clock says; a request stamped far in the future is refused; and the server's
//! data and the phones' local data agree. Exits with 0 only if they do.
//!
//! Run: `cargo run --example products` (everything stays on 127.0.0.1, on SQLite files in a
//! temporary directory).
//!
//! The server alone, as one of several instances on PostgreSQL:
//! `DATABASE_URL=postgresql://... cargo run --example products -- serve --port 8080`
//! (or `--database-url <url>`); without a database URL, `serve` uses the SQLite file
//! `products.sqlite3` (`--sqlite <path>` to choose another).

mod client;
mod model;
mod pg_server;
mod server;

use client::{
    add_product, add_stock, delete_product, get_products, update_price, AppError, Client,
    SkewedClock,
};
use model::{money, NewProduct, Product};
use server::ProductServer;
use std::collections::HashSet;
use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;
use sync_runtime::{ActionKind, Clock, SyncError};

const TENANT: &str = "corner-cafe";
const SYNC_LIMIT: Duration = Duration::from_secs(15);
const HOUR_MILLIS: i64 = 3_600_000;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return match serve(&args[1..]).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("products serve: {error}");
                ExitCode::FAILURE
            }
        };
    }
    match story().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("the example failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn story() -> Result<bool, Box<dyn Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;
    let server = ProductServer::start(&dir.path().join("server.sqlite3")).await?;
    let a_clock = SkewedClock {
        ahead_millis: HOUR_MILLIS,
    };
    let a = Client::open_with_clock(&dir.path().join("phone-a.sqlite3"), &server.url(), a_clock)?;
    let b = Client::open(&dir.path().join("phone-b.sqlite3"), &server.url())?;
    println!(
        "Server on {} (SQLite); phones A and B each keep a local SQLite store.",
        server.url()
    );
    println!("Phone A's clock is an hour fast; B's is right.");

    println!("1. Online");
    a.call(get_products(TENANT.into())).await?;
    println!(
        "   A: opens the app (get_products); from the server's answer it learns that its clock \
         is {} ahead, and stamps every action by the server's clock from now on (kept in its \
         store across restarts)",
        offset_text(-a.service.clock_offset())
    );
    let espresso = a
        .call(add_product(TENANT.into(), NewProduct::new("Espresso", 250)))
        .await?;
    let latte = a
        .call(add_product(TENANT.into(), NewProduct::new("Latte", 320)))
        .await?;
    a.call(update_price(espresso.id.clone(), 260)).await?;
    println!("   A: adds Espresso and Latte, Espresso 2.50 -> 2.60: each answered by the server");
    server.drop_next_response();
    let tea = a
        .call(add_product(TENANT.into(), NewProduct::new("Tea", 200)))
        .await?;
    a.wait_until_synced(SYNC_LIMIT).await?;
    println!("   A: adds Tea; the server saves it, but the connection drops before the answer:");
    println!(
        "      A queues it and replays it with the same id: answered from the server's record \
         of applied actions ({} replay), not applied again",
        server.replays_answered()
    );
    let seen = b.call(get_products(TENANT.into())).await?;
    println!("   B: get_products -> {} from the server", names(&seen));

    println!("2. The server stops");
    server.stop().await;
    a.call(add_product(
        TENANT.into(),
        NewProduct::new("Croissant", 210),
    ))
    .await?;
    a.call(update_price(espresso.id.clone(), 280)).await?;
    a.call(delete_product(tea.id.clone())).await?;
    let offline = a.call(get_products(TENANT.into())).await?;
    println!("   A: adds Croissant, Espresso -> 2.80, deletes Tea: answered from the local store");
    // A delivery adds to the server's count: it has no local answer, only a place in the queue.
    match a.call(add_stock(espresso.id.clone(), 12)).await {
        Err(AppError::Sync(SyncError::Queued { .. })) => {
            println!("   A: 12 Espresso delivered: queued, to be counted once by the server");
        }
        other => return Err(format!("a delivery made offline was not queued: {other:?}").into()),
    }
    println!(
        "   A: get_products -> {} from the local store",
        names(&offline)
    );
    let queued = a.service.queued().await?;
    let refreshes = queued
        .iter()
        .filter(|q| q.kind == ActionKind::Query)
        .count();
    println!(
        "   A: {} changes waiting ({} writes, {refreshes} list refresh)",
        a.status().await?.pending,
        queued.len() - refreshes
    );

    println!("3. Both phones change the Latte while the server is away");
    a.network.set_online(false);
    let a_latte = a.call(update_price(latte.id.clone(), 310)).await?;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let b_latte = b.call(update_price(latte.id.clone(), 340)).await?;
    println!(
        "   A at {}: Latte -> 3.10, with no signal (A's own clock read {})",
        clock(a_latte.updated_at),
        clock(a_clock.now().as_millis() - 30)
    );
    println!("   B at {}: Latte -> 3.40", clock(b_latte.updated_at));

    println!("4. The server restarts (same port, same database); the queues drain on their own");
    let mut seen_changes = server.changes()?.len();
    server.restart().await?;
    b.wait_until_synced(SYNC_LIMIT).await?;
    println!("   B syncs: {}", changes_since(&server, &mut seen_changes)?);
    a.network.set_online(true);
    let a_status = a.wait_until_synced(SYNC_LIMIT).await?;
    println!("   A gets its signal back and syncs, in order:");
    println!("      {}", changes_since(&server, &mut seen_changes)?);
    println!(
        "   {} waiting on A, {} on B; {} dead letters",
        a_status.pending,
        b.status().await?.pending,
        a_status.dead + b.status().await?.dead
    );

    println!(
        "5. B changed the Latte last, so B's price wins everywhere, though A's arrived last \
         and A's clock is an hour ahead"
    );
    let refused = far_future_edit(&server, &latte.id).await?;
    println!("   A request stamped in the year 5138 is refused: {refused}");
    b.call(get_products(TENANT.into())).await?;
    let on_server = server.products(TENANT)?;
    let on_a = a.local_products(TENANT).await?;
    let on_b = b.local_products(TENANT).await?;
    println!(
        "   {:<10} {:>7} {:>8} {:>8}",
        "product", "server", "phone A", "phone B"
    );
    let mut rows: Vec<&Product> = on_server.iter().chain(&on_a).chain(&on_b).collect();
    rows.sort_by(|x, y| (&x.name, &x.id).cmp(&(&y.name, &y.id)));
    rows.dedup_by(|x, y| x.id == y.id);
    for product in rows {
        println!(
            "   {:<10} {:>7} {:>8} {:>8}",
            product.name,
            price_of(&on_server, &product.id),
            price_of(&on_a, &product.id),
            price_of(&on_b, &product.id),
        );
    }

    // One row in `applied_actions` per write, and one entry in the change log per applied
    // write, each with a different action id: nothing was applied twice.
    let applied = server.applied_count()?;
    let changes = server.changes()?;
    let distinct: HashSet<&String> = changes.iter().map(|(action, _)| action).collect();
    let once_each = distinct.len() == changes.len() && changes.len() as u64 == applied;
    let agree = on_server == on_a && on_server == on_b && once_each;
    if once_each {
        println!("   {applied} writes reached the server; each was applied once");
    }
    if agree {
        println!("   The server and both phones agree.");
    } else {
        println!(
            "   MISMATCH\n   server:  {on_server:?}\n   phone A: {on_a:?}\n   phone B: {on_b:?}"
        );
    }
    server.stop().await;
    Ok(agree)
}

/// `serve [--port N] [--database-url URL | --sqlite PATH]`: one server instance, until the
/// process is stopped. `DATABASE_URL` stands for `--database-url`.
async fn serve(args: &[String]) -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut port = 8080;
    let mut database_url = std::env::var("DATABASE_URL").ok();
    let mut sqlite = None;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => port = value()?.parse()?,
            "--database-url" => database_url = Some(value()?.clone()),
            "--sqlite" => sqlite = Some(value()?.clone()),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    match (database_url, sqlite) {
        (Some(url), None) => {
            let config: tokio_postgres::Config = url.parse()?;
            let options = pg_server::Options {
                port,
                ..pg_server::Options::default()
            };
            let server = pg_server::PgProductServer::start(config, options).await?;
            println!("products: serving on {} (PostgreSQL)", server.url());
            std::future::pending().await
        }
        (None, sqlite) => {
            let path = sqlite.unwrap_or_else(|| "products.sqlite3".to_owned());
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            let server = ProductServer::open(std::path::Path::new(&path), listener)?;
            println!("products: serving on {} (SQLite {path})", server.url());
            std::future::pending().await
        }
        (Some(_), Some(_)) => Err("give a database URL or --sqlite, not both".into()),
    }
}

/// A price change stamped far in the future, sent by hand (no client would): the server's
/// answer, which must be a 400 that applies nothing.
async fn far_future_edit(
    server: &ProductServer,
    product_id: &str,
) -> Result<String, Box<dyn Error + Send + Sync>> {
    let before = server.changes()?.len();
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .put(format!("{}/products/{product_id}/price", server.url()))
        .header("idempotency-key", uuid::Uuid::now_v7().to_string())
        .header("x-action-timestamp", "99999999999999")
        .json(&serde_json::json!({ "price_cents": 999 }))
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    if status != reqwest::StatusCode::BAD_REQUEST || server.changes()?.len() != before {
        return Err(format!("a far-future stamp was not refused: {status} {body}").into());
    }
    Ok(format!(
        "{status}, \"{}\"",
        body["error"].as_str().unwrap_or("")
    ))
}

/// `1h 00m 00.000s`, roughly, for an offset in milliseconds.
fn offset_text(millis: i64) -> String {
    let sign = if millis < 0 { "-" } else { "" };
    let millis = millis.unsigned_abs();
    format!(
        "{sign}{}h {:02}m {:02}.{:03}s",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000
    )
}

/// What the server applied since `seen` changes, joined by "; ".
fn changes_since(server: &ProductServer, seen: &mut usize) -> rusqlite::Result<String> {
    let changes = server.changes()?;
    let new: Vec<&str> = changes[*seen..].iter().map(|(_, c)| c.as_str()).collect();
    *seen = changes.len();
    Ok(new.join("; "))
}

fn names(products: &[Product]) -> String {
    let names: Vec<&str> = products.iter().map(|p| p.name.as_str()).collect();
    format!("[{}]", names.join(", "))
}

fn price_of(products: &[Product], id: &str) -> String {
    products
        .iter()
        .find(|p| p.id == id)
        .map_or_else(|| "-".to_owned(), |p| money(p.price_cents))
}

/// `hh:mm:ss.mmm UTC` of a timestamp in milliseconds.
fn clock(millis: u64) -> String {
    let seconds = millis / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
        millis % 1000
    )
}
