//! `#[offline_action]` on an `impl` block: the associated fns marked `#[offline_action(...)]`
//! inside become actions.
//!
//! The items an action needs (its parameters struct, action type, `Action` impl and
//! registration) cannot live in an `impl` block, and an attribute on one fn cannot see which
//! type's block it is in. The attribute on the block sees both: each marked fn stays in the
//! block, rewritten, with its body in a hidden associated fn beside it (so `Self` keeps its
//! meaning), and the other items go next to the block.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::punctuated::Punctuated;
use syn::visit_mut::VisitMut;
use syn::{Attribute, Ident, ImplItem, ItemFn, ItemImpl, Meta, Path, ReturnType, Token, Type};

use crate::expand;
use crate::valid::Errors;

/// The type whose `impl` block holds an action.
pub(crate) struct Owner {
    /// The block's self type.
    pub self_ty: Type,
    /// Its name, the last segment of its path: `Api` in `impl crate::api::Api`.
    pub name: Ident,
}

impl Owner {
    /// `path` with a leading `Self` replaced by the owner, for paths used outside the block
    /// (`local = Self::add_locally`).
    pub fn resolve_self(&self, path: &Path) -> TokenStream {
        let mut segments = path.segments.iter();
        match segments.next() {
            Some(first) if first.ident == "Self" && path.leading_colon.is_none() => {
                let self_ty = &self.self_ty;
                let rest = segments.map(|segment| quote!(::#segment));
                quote!(<#self_ty> #(#rest)*)
            }
            _ => path.to_token_stream(),
        }
    }
}

/// Expands `#[offline_action(args)] impl ... { ... }`, or returns every error (see
/// [`without_markers`] for what to emit then).
pub(crate) fn expand(args: TokenStream, mut item: ItemImpl) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    if !args.is_empty() {
        errors.push(syn::Error::new_spanned(
            &args,
            "on an `impl` block, `#[offline_action]` takes no arguments: give them to each \
             fn's `#[offline_action(...)]`",
        ));
    }
    let owner = check_block(&item, &mut errors);
    let mut outside = TokenStream::new();
    let mut marked = 0;
    let mut expanded = Vec::new();
    for impl_item in std::mem::take(&mut item.items) {
        let ImplItem::Fn(mut func) = impl_item else {
            expanded.push(impl_item);
            continue;
        };
        let Some(position) = func.attrs.iter().position(is_offline_action) else {
            expanded.push(ImplItem::Fn(func));
            continue;
        };
        marked += 1;
        let attr = func.attrs.remove(position);
        let Some(args) = errors.check(attribute_args(&attr)) else {
            continue;
        };
        if let Some(default) = &func.defaultness {
            errors.push(syn::Error::new_spanned(
                default,
                "an `#[offline_action]` fn cannot be `default`",
            ));
            continue;
        }
        let mut sig = func.sig;
        ReplaceSelf(&owner.self_ty).visit_signature_types(&mut sig);
        let item_fn = ItemFn {
            attrs: func.attrs,
            vis: func.vis,
            sig,
            block: Box::new(func.block),
        };
        match expand::expand_associated(args, item_fn, &owner) {
            Ok((inside, items)) => {
                expanded.push(ImplItem::Verbatim(inside));
                outside.extend(items);
            }
            Err(error) => errors.push(error),
        }
    }
    if marked == 0 {
        errors.push(syn::Error::new_spanned(
            item.impl_token,
            "no fn in this `impl` block has `#[offline_action]`: mark each associated fn to turn \
             into an action",
        ));
    }
    errors.finish()?;
    item.items = expanded;
    let mut tokens = item.into_token_stream();
    tokens.extend(outside);
    Ok(tokens)
}

/// The item as written, but for an `impl` block without its fns' `#[offline_action]`
/// attributes: emitted with the errors, the block must not expand them one by one.
pub(crate) fn without_markers(item: TokenStream) -> TokenStream {
    let Ok(mut block) = syn::parse2::<ItemImpl>(item.clone()) else {
        return item;
    };
    for impl_item in &mut block.items {
        if let ImplItem::Fn(func) = impl_item {
            func.attrs.retain(|attr| !is_offline_action(attr));
        }
    }
    block.into_token_stream()
}

/// Checks that the block can hold actions, and names its type.
fn check_block(item: &ItemImpl, errors: &mut Errors) -> Owner {
    if let Some((_, path, _)) = &item.trait_ {
        errors.push(syn::Error::new_spanned(
            path,
            "`#[offline_action]` goes on an inherent `impl` block (`impl Api { ... }`), not on \
             a trait impl",
        ));
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &item.generics,
            "an `impl` block with `#[offline_action]` cannot be generic: an action is registered \
             once, under one name, with concrete types",
        ));
    }
    let name = match &*item.self_ty {
        Type::Path(path) if path.qself.is_none() => {
            path.path.segments.last().map(|last| last.ident.clone())
        }
        _ => None,
    };
    let name = name.unwrap_or_else(|| {
        errors.push(syn::Error::new_spanned(
            &item.self_ty,
            "`#[offline_action]` goes on the `impl` block of a named type",
        ));
        Ident::new("Unnamed", proc_macro2::Span::call_site())
    });
    // The fns are checked even when the block is wrong, so one build reports everything; the
    // expansion is then discarded.
    Owner {
        self_ty: (*item.self_ty).clone(),
        name,
    }
}

/// Whether `attr` is `#[offline_action]` (or a path ending in it).
fn is_offline_action(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|last| last.ident == "offline_action")
}

/// The arguments of a fn's `#[offline_action(...)]`.
fn attribute_args(attr: &Attribute) -> syn::Result<TokenStream> {
    match &attr.meta {
        Meta::Path(_) => Ok(TokenStream::new()),
        Meta::List(list) => Ok(list.tokens.clone()),
        Meta::NameValue(name_value) => Err(syn::Error::new_spanned(
            name_value.eq_token,
            "write `#[offline_action(...)]`",
        )),
    }
}

/// Replaces `Self` in a signature's types with the block's type: the generated items that name
/// them live outside the block.
struct ReplaceSelf<'a>(&'a Type);

impl ReplaceSelf<'_> {
    /// Visits the types of the arguments and the return type, not the body.
    fn visit_signature_types(&mut self, sig: &mut syn::Signature) {
        for input in &mut sig.inputs {
            if let syn::FnArg::Typed(typed) = input {
                self.visit_type_mut(&mut typed.ty);
            }
        }
        if let ReturnType::Type(_, ty) = &mut sig.output {
            self.visit_type_mut(ty);
        }
    }
}

impl VisitMut for ReplaceSelf<'_> {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::Path(path) = ty {
            let starts_with_self = path.qself.is_none()
                && path.path.leading_colon.is_none()
                && path
                    .path
                    .segments
                    .first()
                    .is_some_and(|first| first.ident == "Self" && first.arguments.is_none());
            if starts_with_self {
                let self_ty = self.0;
                let rest: Punctuated<_, Token![::]> =
                    path.path.segments.iter().skip(1).cloned().collect();
                *ty = if rest.is_empty() {
                    self_ty.clone()
                } else {
                    syn::parse_quote!(<#self_ty>::#rest)
                };
                return;
            }
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}
