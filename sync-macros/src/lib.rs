//! `#[offline_action]`: turns an `async fn` into an offline-first action of `sync-runtime`.
//!
//! Use it through `sync_runtime::offline_action`; this crate only holds the macro. The work
//! happens in pipeline order: [`args`] reads the attribute, [`signature`] lowers the function
//! into a model, [`valid`] checks that model and [`expand`] writes the code.

mod args;
mod expand;
mod signature;
mod valid;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Makes an `async fn` an offline-first action.
///
/// See `sync_runtime::offline_action` for the documentation.
#[proc_macro_attribute]
pub fn offline_action(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::offline_action(args.into(), item.into()).into()
}
