//! The browser example's page, built to wasm32: a product list with an add form, an
//! online/offline indicator and a count of changes waiting, over the products server's API.
//!
//! Everything offline-first comes from `sync_runtime` with no configuration: in the browser,
//! `SyncService::current()` keeps its queue and the local `products` collection in
//! IndexedDB, follows the browser's `online`/`offline` events, and replays queued calls on
//! the page's event loop (one tab at a time, through the Web Locks API). The service worker
//! (`static/sw.js`) keeps the page itself loadable offline.
//!
//! Build: `examples/browser/build.sh`; serve: `cargo run --example browser`.
// Only the wasm32 build has a page to run; natively the crate is empty, so that workspace
// builds and lints pass over it.
#![cfg(target_arch = "wasm32")]

mod actions;
mod api;
mod ui;

// The wire types the products server uses (examples/products): the page and the server
// agree on them by sharing one file, as a real app would share a small crate.
#[path = "../../../products/model.rs"]
#[allow(dead_code)] // the page uses only some of the server's types
mod model;

use wasm_bindgen::prelude::wasm_bindgen;

/// Runs when the module is instantiated (`init()` in `index.html`).
#[wasm_bindgen(start)]
pub fn start() {
    // A panic in wasm shows as "unreachable executed"; log its message instead.
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&info.to_string().into());
    }));
    wasm_bindgen_futures::spawn_local(async {
        if let Err(error) = ui::start().await {
            web_sys::console::error_2(&"the page failed to start:".into(), &error);
        }
    });
}
