//! `#[offline_action]`: turns an `async fn` into an offline-first action of `sync-runtime`;
//! `#[derive(ClassifyError)]`: sorts an error type's values into transient and permanent.
//!
//! Use them through `sync_runtime::offline_action` and `sync_runtime::ClassifyError`; this
//! crate only holds the macros. The attribute's work happens in pipeline order: `args` reads the
//! attribute, `signature` lowers the function into a model, `valid` checks that model and
//! `expand` writes the code. The derive follows the same steps in `classify`.

mod args;
mod classify;
mod expand;
mod impl_block;
mod owned;
mod server_fn;
mod signature;
mod valid;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Makes an `async fn` an offline-first action.
///
/// Callers keep calling the function as before. Each call goes through the sync service:
/// online, the body runs (a query's answer is cached); offline, the local handler answers and
/// the call is queued to run the body later.
///
/// ```ignore
/// use sync_runtime::offline_action;
///
/// #[offline_action(query)]
/// pub async fn get_products(tenant_id: String) -> Result<Vec<Product>, AppError> {
///     api::get(&format!("/products?tenant={tenant_id}")).await
/// }
///
/// #[offline_action(local = add_product_locally)]
/// pub async fn add_product(tenant_id: String, product: &NewProduct) -> Result<Product, AppError> {
///     api::post("/products", product).await
/// }
/// ```
///
/// (Compiled in `sync_runtime`'s documentation and tests; this crate cannot depend on it.)
///
/// # Arguments of the attribute
///
/// - `name = "..."`: the stable name calls are queued under (default: the function's name).
///   ASCII letters, digits and `_ . : / -`.
/// - `version = N`: stored with each queued call (default: 1).
/// - `query`: the action reads; offline it answers from the cached response. Without it the
///   action is a mutation; offline it is answered by the local handler and queued.
/// - `local = path`: the offline answer: an `async fn` taking the arguments as owned values
///   (`String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`) and returning the same `Result`.
///   Without it a query answers from the cache and a mutation with `SyncError::Queued`.
/// - `params = Name`: the name of the parameters struct (default: `{Function}Params`).
/// - `crate = path`: where `sync_runtime` is, for crates that re-export it.
///
/// # What the function must look like
///
/// An `async fn` with no type parameters (lifetime parameters only if nothing uses them),
/// returning `Result<T, E>` (an alias is fine), where every argument is a plain name, `T`
/// and every argument type implement `Serialize` and `Deserialize` (arguments also `Clone`),
/// and `E` implements
/// `From<SyncError>`, `ClassifyError` and `Display` (`anyhow::Error` and
/// `Box<dyn Error + Send + Sync>` do). Arguments may be borrowed (`&str`, `&[T]`, `&T`), also
/// inside `Option`, `Vec`, tuples and slices (`Option<&str>`, `&[&str]`): they are stored owned
/// (`Option<String>`, `Vec<String>`) until the call runs, and callers pass what they always did.
///
/// # Associated fns
///
/// On an `impl` block, the attribute takes no arguments and lets the associated fns marked
/// `#[offline_action(...)]` inside be actions (they take no `self`). The block must be
/// inherent and not generic. Each action is named after the type (`Api::add`, with
/// `ApiAddParams` and `ApiAddAction` next to the block); `Self` keeps its meaning in the
/// signature, the body and `local = Self::...`. (An attribute on a fn alone cannot tell it is
/// in an `impl` block: without the block's attribute, rustc reports the generated items it
/// cannot place there.)
///
/// ```ignore
/// #[offline_action]
/// impl Api {
///     #[offline_action(local = Self::add_locally)]
///     pub async fn add(a: u32, b: u32) -> Result<u32, AppError> { ... }
/// }
/// ```
///
/// # With `#[server]` (`server_fn`, Leptos)
///
/// On a server function, in either order. `#[server]` expands first (written below it, this
/// attribute moves itself under `#[server]`); the client half becomes the action, and the
/// server half (the `ssr` build) is left as `#[server]` wrote it, so calls made while
/// rendering on the server are never queued. See `sync_runtime::server_fn`.
///
/// # What it generates
///
/// Next to the rewritten function: `{Function}Params`, a struct with one field per argument,
/// and `{Function}Action`, the action type implementing `sync_runtime::Action`, registered so
/// queued calls can be replayed after a restart. Both have the function's visibility.
#[proc_macro_attribute]
pub fn offline_action(args: TokenStream, item: TokenStream) -> TokenStream {
    let (args, item) = (args.into(), item.into());
    if let Ok(func) = syn::parse2::<syn::ItemFn>(proc_macro2::TokenStream::clone(&item)) {
        if let Some(tokens) = server_fn::special_case(&args, &func) {
            return tokens.into();
        }
    }
    expand::offline_action(args, item).into()
}

/// Implements `ClassifyError` for an error type, from `#[classify(...)]` attributes.
///
/// Import it with the trait: `use sync_runtime::ClassifyError;` brings both.
///
/// ```ignore
/// use std::time::Duration;
/// use sync_runtime::{ClassifyError, SyncError};
///
/// #[derive(Debug, thiserror::Error, ClassifyError)]
/// pub enum AppError {
///     /// Transient: the call is answered locally and queued.
///     #[error("the server cannot be reached")]
///     #[classify(transient)]
///     Network,
///     /// Transient, and the server said how long to wait.
///     #[error("the server is busy")]
///     #[classify(transient, retry_after = wait)]
///     Busy { wait: Option<Duration> },
///     /// Permanent: no attribute needed.
///     #[error("rejected: {0}")]
///     Rejected(String),
///     /// Whatever the wrapped error says.
///     #[error(transparent)]
///     #[classify(delegate)]
///     Sync(#[from] SyncError),
/// }
///
/// assert!(AppError::Network.is_transient());
/// assert!(!AppError::Rejected("no".into()).is_transient());
/// ```
///
/// (Compiled in `sync_runtime`'s tests; this crate cannot depend on it.)
///
/// # Attributes
///
/// On a variant of an enum, or on a struct:
///
/// - none, or `#[classify(permanent)]`: `is_transient` is `false`.
/// - `#[classify(transient)]`: `is_transient` is `true`.
/// - `#[classify(transient, retry_after = field)]`: also, `retry_after` returns the field, an
///   `Option<Duration>` or a `Duration` (named, or by index in a tuple: `retry_after = 0`).
/// - `#[classify(delegate)]`: for a variant or struct with exactly one field, which implements
///   `ClassifyError`: both methods return what the field's impl returns. For wrapped errors,
///   like `Http(#[from] reqwest::Error)` or `Sync(#[from] SyncError)`.
///
/// On the type itself:
///
/// - `#[classify(crate = path)]`: where `sync_runtime` is, for crates that re-export it.
///
/// Generic types are fine; each delegated field whose type names a type parameter gets a
/// `where Field: ClassifyError` bound. Unions are not supported.
///
/// # What it generates
///
/// One `impl ClassifyError` with `is_transient` (a `match self` with one arm per variant) and,
/// when some case has an answer besides `None`, `retry_after`.
#[proc_macro_derive(ClassifyError, attributes(classify))]
pub fn derive_classify_error(input: TokenStream) -> TokenStream {
    classify::derive(input.into()).into()
}
