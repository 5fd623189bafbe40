//! How an argument with borrows further in (`Option<&str>`, `&[&str]`) is stored owned, and
//! borrowed back for the body: the three conversions of a [`Part`].

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Ident, Type};

use crate::signature::{is_unsized, ungroup, Part};

/// The owned type `part` is stored as.
pub(crate) fn owned_type(part: &Part) -> TokenStream {
    match part {
        Part::Owned(ty) => ty.to_token_stream(),
        Part::Leaf(_, elem) => leaf_type(elem),
        Part::Option(inner) => {
            let inner = owned_type(inner);
            quote!(::core::option::Option<#inner>)
        }
        Part::Vec(inner) | Part::RefSlice(_, inner) => {
            let inner = owned_type(inner);
            quote!(::std::vec::Vec<#inner>)
        }
        Part::Tuple(parts) => {
            let parts = parts.iter().map(owned_type);
            quote!((#(#parts,)*))
        }
        Part::RefTo(_, inner) => owned_type(inner),
    }
}

/// The owned type of `&elem`, where `elem` borrows nothing.
pub(crate) fn leaf_type(elem: &Type) -> TokenStream {
    let span = elem.span();
    match ungroup(elem) {
        Type::Path(path) if path.qself.is_none() && path.path.is_ident("str") => {
            quote_spanned!(span=> ::std::string::String)
        }
        Type::Slice(slice) => {
            let elem = &slice.elem;
            quote_spanned!(span=> ::std::vec::Vec<#elem>)
        }
        elem if is_unsized(elem) => {
            quote_spanned!(span=> <#elem as ::std::borrow::ToOwned>::Owned)
        }
        elem => elem.to_token_stream(),
    }
}

/// An expression turning `value`, of the type as written, into the owned type. `private` is
/// the runtime's `__private`; `depth` names the closures' bindings apart.
pub(crate) fn to_owned(
    part: &Part,
    value: TokenStream,
    private: &TokenStream,
    depth: usize,
) -> TokenStream {
    let item = binding(depth);
    match part {
        Part::Owned(_) => value,
        Part::Leaf(_, elem) => quote!(#private::Own::<#elem>::own(#value)),
        Part::Option(inner) => {
            let inner = to_owned(inner, item.to_token_stream(), private, depth + 1);
            quote!(::core::option::Option::map(#value, |#item| #inner))
        }
        Part::Vec(inner) => {
            let inner = to_owned(inner, item.to_token_stream(), private, depth + 1);
            collect(
                quote!(::core::iter::IntoIterator::into_iter(#value)),
                &item,
                &inner,
            )
        }
        Part::RefSlice(_, inner) => {
            let cloned = quote!(::core::clone::Clone::clone(#item));
            let inner = to_owned(inner, cloned, private, depth + 1);
            collect(
                quote!(::core::iter::IntoIterator::into_iter(#value)),
                &item,
                &inner,
            )
        }
        Part::RefTo(_, inner) => to_owned(
            inner,
            quote!(::core::clone::Clone::clone(#value)),
            private,
            depth,
        ),
        Part::Tuple(parts) => {
            let names: Vec<Ident> = (0..parts.len())
                .map(|index| format_ident!("{item}_{index}", span = Span::mixed_site()))
                .collect();
            let owned = parts
                .iter()
                .zip(&names)
                .map(|(part, name)| to_owned(part, name.to_token_stream(), private, depth + 1));
            quote!({
                let (#(#names,)*) = #value;
                (#(#owned,)*)
            })
        }
    }
}

/// Statements binding `ident` to the argument as the body expects it, borrowed from `field`,
/// its owned value. `mutability` is the argument's `mut`, if any.
pub(crate) fn borrow_back(
    part: &Part,
    ty: &Type,
    ident: &Ident,
    field: &Ident,
    mutability: Option<syn::Token![mut]>,
) -> TokenStream {
    let ty = without_lifetimes(ty);
    let owned = format_ident!("{ident}_owned", span = Span::mixed_site());
    match part {
        // A reference to a type with borrows: build that type in a local, then borrow it.
        Part::RefSlice(_, inner) => {
            let item = binding(0);
            let view = view(inner, &item, 1);
            let built = collect(
                quote!(::core::iter::IntoIterator::into_iter(&#field)),
                &item,
                &view,
            );
            quote! {
                let #owned: ::std::vec::Vec<_> = #built;
                let #mutability #ident: #ty = &#owned;
            }
        }
        Part::RefTo(_, inner) => {
            let view = view(inner, field, 0);
            quote! {
                let #owned = { let #field = &#field; #view };
                let #mutability #ident: #ty = &#owned;
            }
        }
        part => {
            let view = view(part, field, 0);
            quote! {
                let #mutability #ident: #ty = { let #field = &#field; #view };
            }
        }
    }
}

/// An expression of the type as written, borrowed from `owned`, a reference to the owned
/// value.
fn view(part: &Part, owned: &Ident, depth: usize) -> TokenStream {
    let item = binding(depth);
    match part {
        Part::Owned(_) => quote!(::core::clone::Clone::clone(#owned)),
        Part::Leaf(_, elem) => quote!(::core::borrow::Borrow::<#elem>::borrow(#owned)),
        Part::Option(inner) => {
            let inner = view(inner, &item, depth + 1);
            quote!(::core::option::Option::map(::core::option::Option::as_ref(#owned), |#item| #inner))
        }
        Part::Vec(inner) => {
            let inner = view(inner, &item, depth + 1);
            collect(
                quote!(::core::iter::IntoIterator::into_iter(#owned)),
                &item,
                &inner,
            )
        }
        Part::Tuple(parts) => {
            let views = parts.iter().enumerate().map(|(index, part)| {
                let name = format_ident!("{item}_{index}", span = Span::mixed_site());
                let index = syn::Index::from(index);
                let inner = view(part, &name, depth + 1);
                quote!({ let #name = &#owned.#index; #inner })
            });
            quote!((#(#views,)*))
        }
        // Only the whole argument is a reference to a type with borrows (see `part_of`).
        Part::RefSlice(..) | Part::RefTo(..) => unreachable!("only at the top of an argument"),
    }
}

/// `iter.map(|item| mapped).collect::<Vec<_>>()`, spelled through the traits.
fn collect(iter: TokenStream, item: &Ident, mapped: &TokenStream) -> TokenStream {
    quote! {
        ::core::iter::Iterator::collect::<::std::vec::Vec<_>>(
            ::core::iter::Iterator::map(#iter, |#item| #mapped)
        )
    }
}

/// The closure binding at `depth`, hygienic.
fn binding(depth: usize) -> Ident {
    Ident::new(&format!("item{depth}"), Span::mixed_site())
}

/// `ty` with the lifetimes of its references left out, for the body's bindings: they borrow
/// from the parameters, not for `'static`.
fn without_lifetimes(ty: &Type) -> Type {
    struct Strip;
    impl VisitMut for Strip {
        fn visit_type_reference_mut(&mut self, reference: &mut syn::TypeReference) {
            reference.lifetime = None;
            syn::visit_mut::visit_type_reference_mut(self, reference);
        }
    }
    let mut ty = ty.clone();
    Strip.visit_type_mut(&mut ty);
    ty
}
