//! `#[offline_action]` together with `#[server]` (`server_fn` 0.8, Leptos 0.8).
//!
//! `#[server]` must expand first: it derives the endpoint's path from the function's name and
//! module, and keeps every other attribute on what it generates. So:
//! - written above `#[server]`, this attribute steps aside: it emits the function with
//!   `#[server]` first and itself again below it;
//! - below `#[server]`, it then sees what `#[server]` generated. On the client, the function
//!   whose body sends the request: that is the action's online path, expanded as usual. On the
//!   server (`server_fn`'s `ssr` feature), the function that calls the body in process and the
//!   hidden `__server_{name}` function holding the body: both are left exactly as they are, so
//!   a server function called while rendering on the server is never queued.
//!
//! What `#[server]` generates is read by its shape (server_fn_macro 0.8): the server half's
//! function is `async fn name(args) -> R { __server_name(args).await }`.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{Attribute, Expr, ItemFn, Stmt};

use crate::args::Args;

/// What to emit instead of the usual expansion, if the function is a server function's.
pub(crate) fn special_case(args: &TokenStream, func: &ItemFn) -> Option<TokenStream> {
    if let Some(position) = func.attrs.iter().position(is_server_attr) {
        return Some(step_aside(args, func, position));
    }
    is_server_half(func).then(|| func.to_token_stream())
}

/// `#[server]`, `#[server(...)]`, `#[leptos::server]`, `#[server_fn::server]`, ...
fn is_server_attr(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "server")
}

/// Re-emits the function with `#[server]` first and this attribute right below it.
fn step_aside(args: &TokenStream, func: &ItemFn, position: usize) -> TokenStream {
    // An unreadable argument list is reported when the attribute runs again, below `#[server]`.
    let krate = syn::parse2::<Args>(args.clone())
        .ok()
        .and_then(|args| args.krate)
        .map_or_else(|| quote!(::sync_runtime), |path| path.to_token_stream());
    let mut func = func.clone();
    let server = func.attrs.remove(position);
    let rest = &func.attrs;
    let ItemFn {
        vis, sig, block, ..
    } = &func;
    quote! {
        #server
        #[#krate::offline_action(#args)]
        #(#rest)*
        #vis #sig #block
    }
}

/// The server half `#[server]` generates with `ssr`: the hidden `__server_{name}` holding the
/// body, or `name` calling it.
fn is_server_half(func: &ItemFn) -> bool {
    let name = func.sig.ident.to_string();
    if name.starts_with("__server_") && func.attrs.iter().any(is_doc_hidden) {
        return true;
    }
    let [Stmt::Expr(Expr::Await(awaited), None)] = func.block.stmts.as_slice() else {
        return false;
    };
    let Expr::Call(call) = &*awaited.base else {
        return false;
    };
    let Expr::Path(callee) = &*call.func else {
        return false;
    };
    callee.qself.is_none() && callee.path.is_ident(&format!("__server_{name}"))
}

fn is_doc_hidden(attr: &Attribute) -> bool {
    attr.path().is_ident("doc")
        && attr
            .parse_args::<syn::Ident>()
            .is_ok_and(|word| word == "hidden")
}

#[cfg(test)]
mod tests {
    use super::special_case;
    use proc_macro2::TokenStream;
    use quote::quote;

    fn case(args: TokenStream, item: TokenStream) -> Option<String> {
        let func = syn::parse2(item).expect("a fn");
        special_case(&args, &func).map(|tokens| tokens.to_string())
    }

    #[test]
    fn above_server_it_moves_itself_below() {
        let moved = case(
            quote!(local = add_locally),
            quote! {
                /// Adds.
                #[server(client = OfflineClient)]
                pub async fn add(title: String) -> Result<Todo, ServerFnError> { body().await }
            },
        )
        .expect("stepped aside");
        let expected = quote! {
            #[server(client = OfflineClient)]
            #[::sync_runtime::offline_action(local = add_locally)]
            #[doc = r" Adds."]
            pub async fn add(title: String) -> Result<Todo, ServerFnError> { body().await }
        };
        assert_eq!(moved, expected.to_string());
    }

    #[test]
    fn a_crate_override_is_kept_when_it_moves() {
        let moved = case(
            quote!(crate = my_app::sync, query),
            quote! {
                #[leptos::server]
                async fn list() -> Result<Vec<Todo>, ServerFnError> { body().await }
            },
        )
        .expect("stepped aside");
        assert!(
            moved.contains(
                &quote!(#[my_app::sync::offline_action(crate = my_app::sync, query)]).to_string()
            ),
            "{moved}"
        );
    }

    #[test]
    fn the_server_half_is_left_as_server_wrote_it() {
        let wrapper = quote! {
            #[allow(unused_variables)]
            pub async fn add(title: String) -> Result<Todo, ServerFnError> {
                __server_add(title).await
            }
        };
        let dummy = quote! {
            #[doc(hidden)]
            pub async fn __server_add(title: String) -> Result<Todo, ServerFnError> {
                insert(title).await
            }
        };
        for item in [wrapper, dummy] {
            assert_eq!(
                case(quote!(), item.clone()),
                Some(item.to_string()),
                "{item}"
            );
        }
    }

    #[test]
    fn the_client_half_and_plain_fns_are_expanded_as_usual() {
        let client = quote! {
            #[allow(unused_variables)]
            pub async fn add(title: String) -> Result<Todo, ServerFnError> {
                use ::leptos::server_fn::ServerFn;
                let data = Add { title };
                data.run_on_client().await
            }
        };
        let calls_another_fn = quote! {
            pub async fn add(title: String) -> Result<Todo, ServerFnError> {
                __server_other(title).await
            }
        };
        let plain = quote! {
            pub async fn add(title: String) -> Result<Todo, AppError> { api::add(title).await }
        };
        for item in [client, calls_another_fn, plain] {
            assert_eq!(case(quote!(), item.clone()), None, "{item}");
        }
    }
}
