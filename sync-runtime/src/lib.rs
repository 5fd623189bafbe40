//! Offline-first server actions.
//!
//! Annotate an async function that reaches your server with [`offline_action`]. Online, its
//! body runs and a query's answer is cached in a local store. Offline, a local handler answers
//! from that store and the call is queued durably; when the connection returns, the queue
//! replays by itself, in order, with retries, once per call on the server (each call carries a
//! stable [`ActionId`] to use as an idempotency key). Callers do not change.
//!
//! ```
//! use sync_runtime::{offline_action, ClassifyError, SyncError};
//!
//! #[derive(Debug, thiserror::Error)]
//! pub enum AppError {
//!     #[error("network: {0}")]
//!     Network(String),
//!     #[error(transparent)]
//!     Sync(#[from] SyncError),
//! }
//!
//! impl ClassifyError for AppError {
//!     fn is_transient(&self) -> bool {
//!         matches!(self, AppError::Network(_))
//!     }
//! }
//!
//! /// Adds two numbers on the server.
//! #[offline_action(query)]
//! pub async fn add(a: i64, b: i64) -> Result<i64, AppError> {
//!     Ok(a + b)
//! }
//!
//! # // Not the default service: it would keep its data in the user's data directory.
//! # let service = sync_runtime::SyncService::builder().build().unwrap();
//! # futures::executor::block_on(service.scope(async {
//! assert_eq!(add(2, 3).await.unwrap(), 5);
//! # }));
//! ```
#![deny(missing_docs)]
#![warn(rust_2018_idioms, unreachable_pub)]
// One code path serves both targets: the service shares its parts through `Arc`, which on
// wasm32 (one thread, `!Send` browser futures) holds types that are neither `Send` nor `Sync`.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

mod action;
#[cfg(target_arch = "wasm32")]
pub mod browser;
mod connectivity;
mod context;
mod decode;
mod erased;
mod error;
pub mod http;
mod id;
#[cfg(feature = "leptos")]
pub mod leptos;
mod maybe_send;
mod registry;
mod replay_lock;
mod retry;
mod scope;
pub mod server;
#[cfg(feature = "server-fn")]
pub mod server_fn;
mod service;
mod status;
pub mod store;
mod time;
#[cfg(all(feature = "tokio", not(target_arch = "wasm32")))]
mod tokio_executor;
mod trace;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use action::{Action, ActionId, ActionKind};
pub use connectivity::{Connectivity, ManualConnectivity};
pub use context::{ActionContext, Collection, Phase};
pub use error::{ClassifyError, Result, StoreError, SyncError};
pub use maybe_send::{boxed, BoxFuture, Listener, MaybeSend, MaybeSync};
pub use registry::{Registration, Registry};
#[cfg(not(target_arch = "wasm32"))]
pub use replay_lock::FileReplayLock;
pub use replay_lock::ReplayLock;
pub use retry::RetryPolicy;
#[cfg(not(target_arch = "wasm32"))]
pub use service::default_database_path;
pub use service::{Executor, Migration, ReplayReport, SyncService, SyncServiceBuilder};
pub use status::{Rejection, ScopeWait, SyncEvent, SyncStatus};
pub use store::{MemoryStore, Store};
#[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
pub use store::{SqliteOptions, SqliteStore};
pub use sync_macros::{offline_action, ClassifyError};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
#[cfg(all(feature = "tokio", not(target_arch = "wasm32")))]
pub use tokio_executor::TokioExecutor;
