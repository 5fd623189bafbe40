//! Offline-first products, end to end: a real HTTP server (axum, SQLite) and two phones whose
//! `#[offline_action]` functions call it.
//!
//! The story: actions online; the server goes away; actions are answered from the local
//! store and queued; both phones change the same product; the server comes back; the queues
//! drain on their own, each action applied once, in order; the edit the user made last
//! wins; and the server's data and the phones' local data agree. Exits with 0 only if they do.
//!
//! Run: `cargo run --example products` (everything stays on 127.0.0.1).

mod client;
mod model;
mod server;

use client::{
    add_product, add_stock, delete_product, get_products, update_price, AppError, Client,
};
use model::{money, NewProduct, Product};
use server::ProductServer;
use std::collections::HashSet;
use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;
use sync_runtime::{ActionKind, SyncError};

const TENANT: &str = "corner-cafe";
const SYNC_LIMIT: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> ExitCode {
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
    let a = Client::open(&dir.path().join("phone-a.sqlite3"), &server.url())?;
    let b = Client::open(&dir.path().join("phone-b.sqlite3"), &server.url())?;
    println!(
        "Server on {} (SQLite); phones A and B each keep a local SQLite store.",
        server.url()
    );

    println!("1. Online");
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
        "   A at {}: Latte -> 3.10, with no signal",
        clock(a_latte.updated_at)
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

    println!("5. B changed the Latte last, so B's price wins everywhere, though A's arrived last");
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
