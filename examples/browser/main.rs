//! Serves the browser example on one origin: the page (`index.html`, the wasm app, the
//! service worker) from the directory `examples/browser/build.sh` fills, and the products
//! API of `examples/products` over a SQLite file. One origin, so the page needs no CORS and
//! its service worker's scope covers it.
//!
//! Run: `examples/browser/build.sh && cargo run --example browser`, then open the printed
//! address. Options: `--addr 127.0.0.1:8080` (port 0 picks a free one), `--dist DIR` (default
//! `target/browser-example`), `--db FILE` (default `target/browser-example.sqlite3`).

// The products server and its wire types, shared with the products example.
#[allow(dead_code)] // this binary needs only part of them
#[path = "../products/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "../products/server.rs"]
mod server;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use server::ProductServer;
use std::error::Error;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;

struct Options {
    addr: String,
    dist: PathBuf,
    db: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\nusage: browser [--addr HOST:PORT] [--dist DIR] [--db FILE]");
            return ExitCode::from(2);
        }
    };
    match serve(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("the browser example's server failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let mut options = Options {
        addr: "127.0.0.1:8080".to_owned(),
        dist: target.join("browser-example"),
        db: target.join("browser-example.sqlite3"),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => options.addr = value,
            "--dist" => options.dist = value.into(),
            "--db" => options.db = value.into(),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

async fn serve(options: Options) -> Result<(), Box<dyn Error + Send + Sync>> {
    if !options.dist.join("index.html").is_file() {
        return Err(format!(
            "{} has no index.html; build the page first: examples/browser/build.sh",
            options.dist.display()
        )
        .into());
    }
    // The products server also listens on a port of its own; only its routes are used here,
    // next to the page's files.
    let products = ProductServer::start(&options.db).await?;
    let dist = Arc::new(options.dist);
    let app = products
        .routes()
        .fallback_service(get(move |uri: Uri| static_file(Arc::clone(&dist), uri)));
    let listener = TcpListener::bind(&options.addr).await?;
    // The end-to-end test reads the address from this line (it asks for port 0).
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// A file of the page, by its path under `dist`; `/` is `index.html`.
async fn static_file(dist: Arc<PathBuf>, uri: Uri) -> Response {
    let path = match uri.path().trim_start_matches('/') {
        "" => "index.html",
        path => path,
    };
    // Plain names only (no `..`, no root): nothing outside `dist` can be asked for.
    let relative = Path::new(path);
    if !relative
        .components()
        .all(|part| matches!(part, Component::Normal(_)))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    let file = dist.join(relative);
    match tokio::task::spawn_blocking(move || std::fs::read(file)).await {
        Ok(Ok(bytes)) => (
            [
                (CONTENT_TYPE, content_type(path)),
                // Always revalidate, so a new build reaches the service worker's install.
                (CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The type the browser needs: `application/wasm` lets it compile the module while it
/// downloads, and JavaScript modules must be served as JavaScript.
fn content_type(path: &str) -> &'static str {
    match Path::new(path).extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
