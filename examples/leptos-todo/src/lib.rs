//! A Leptos todo app whose server functions keep working offline.
//!
//! - `todo`: the server functions (both halves) and their offline answers;
//! - `app` (wasm32): the page, a Leptos CSR app;
//! - the server (native) is `src/main.rs`.
//!
//! Build and run: `examples/leptos-todo/build.sh && cargo run -p leptos-todo`, then open the
//! printed address.

pub mod todo;

#[cfg(target_arch = "wasm32")]
mod app;

/// Starts the page: mounts the app into `<body>`.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
