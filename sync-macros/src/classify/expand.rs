//! Writes the `ClassifyError` impl: `is_transient`, and `retry_after` when some case answers
//! other than `None`. Falls back to an impl that is never called when a check fails.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{DeriveInput, Fields, GenericParam, Generics, Ident, Member, Type};

use super::ast::{self, Body, Case, Class, ErrorType, FieldRef};
use super::valid;
use crate::signature::ungroup;
use crate::valid::Errors;

/// Runs the whole pipeline. On any error, returns the errors and an impl whose methods are
/// never called, so the type still implements the trait and the `#[offline_action]` fns that
/// use it do not add errors of their own.
pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input = match syn::parse2::<DeriveInput>(input) {
        Ok(input) => input,
        Err(error) => return error.into_compile_error(),
    };
    let mut errors = Errors::default();
    let ty = ast::lower(&input, &mut errors);
    valid::check(&ty, &mut errors);
    match errors.finish() {
        Ok(()) => Expansion::new(&ty).into_token_stream(),
        Err(error) => {
            let mut tokens = fallback(&ty);
            tokens.extend(error.into_compile_error());
            tokens
        }
    }
}

/// Parses, lowers and checks, collecting every error, then writes the impl.
#[cfg(test)]
pub(crate) fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input = syn::parse2::<DeriveInput>(input)?;
    let mut errors = Errors::default();
    let ty = ast::lower(&input, &mut errors);
    valid::check(&ty, &mut errors);
    errors.finish()?;
    Ok(Expansion::new(&ty).into_token_stream())
}

/// The impl that stands in for the real one when a check fails. Left out when the
/// `crate = ...` override could not be read, since the trait's path is then unknown.
fn fallback(ty: &ErrorType) -> TokenStream {
    if ty.attrs.bad_crate {
        return TokenStream::new();
    }
    let ident = ty.ident;
    let trait_path = trait_path(ty);
    let (impl_generics, ty_generics, where_clause) = ty.generics.split_for_impl();
    quote! {
        impl #impl_generics #trait_path for #ident #ty_generics #where_clause {
            fn is_transient(&self) -> bool {
                ::core::unreachable!()
            }
        }
    }
}

/// `::sync_runtime::ClassifyError`, or the trait under the `crate = ...` path.
fn trait_path(ty: &ErrorType) -> TokenStream {
    match &ty.attrs.krate {
        Some(krate) => {
            let path = &krate.path;
            quote!(#path::ClassifyError)
        }
        None => quote!(::sync_runtime::ClassifyError),
    }
}

/// The two methods of the trait.
#[derive(Clone, Copy)]
enum Method {
    /// `fn is_transient(&self) -> bool`.
    IsTransient,
    /// `fn retry_after(&self) -> Option<Duration>`.
    RetryAfter,
}

impl Method {
    /// The method's name, for calls to a delegated field's impl.
    fn ident(self) -> Ident {
        let name = match self {
            Method::IsTransient => "is_transient",
            Method::RetryAfter => "retry_after",
        };
        Ident::new(name, Span::call_site())
    }
}

/// What a method returns for one case.
enum Answer<'a> {
    /// A constant: `true`, `false` or `None`.
    Constant(TokenStream),
    /// What the field's own impl of the method answers.
    Delegate(&'a FieldRef<'a>, Method),
    /// The wait in the field, an `Option<Duration>` or a `Duration`.
    Wait(&'a FieldRef<'a>),
}

impl<'a> Answer<'a> {
    /// What `method` returns for a case of `class`.
    fn of(class: &'a Class<'a>, method: Method) -> Self {
        match (class, method) {
            (Class::Delegate(field), _) => Answer::Delegate(field, method),
            (Class::Permanent, Method::IsTransient) => Answer::Constant(quote!(false)),
            (Class::Transient { .. }, Method::IsTransient) => Answer::Constant(quote!(true)),
            (
                Class::Transient {
                    retry_after: Some(field),
                },
                Method::RetryAfter,
            ) => Answer::Wait(field),
            (Class::Permanent | Class::Transient { retry_after: None }, Method::RetryAfter) => {
                Answer::Constant(quote!(::core::option::Option::None))
            }
        }
    }

    /// The field the answer reads, if any.
    fn field(&self) -> Option<&'a FieldRef<'a>> {
        match self {
            Answer::Constant(_) => None,
            Answer::Delegate(field, _) | Answer::Wait(field) => Some(field),
        }
    }
}

/// Everything the impl needs.
struct Expansion<'a> {
    /// The checked type.
    ty: &'a ErrorType<'a>,
    /// The trait's path.
    trait_path: TokenStream,
}

impl<'a> Expansion<'a> {
    /// Resolves the trait's path.
    fn new(ty: &'a ErrorType<'a>) -> Self {
        Expansion {
            ty,
            trait_path: trait_path(ty),
        }
    }

    /// The type's generics, with `Field: ClassifyError` added for each delegated field whose
    /// type names a type parameter. Other delegated fields need no bound: their types either
    /// implement the trait or are reported where the impl calls it.
    fn generics(&self) -> Generics {
        let mut generics = self.ty.generics.clone();
        let params: Vec<&Ident> = self
            .ty
            .generics
            .params
            .iter()
            .filter_map(|param| match param {
                GenericParam::Type(param) => Some(&param.ident),
                _ => None,
            })
            .collect();
        if params.is_empty() {
            return generics;
        }
        let mut bounded: Vec<String> = Vec::new();
        for case in self.ty.cases() {
            let Class::Delegate(field) = case.class() else {
                continue;
            };
            let ty = &field.field.ty;
            let text = ty.to_token_stream().to_string();
            if !mentions_any(ty, &params) || bounded.contains(&text) {
                continue;
            }
            bounded.push(text);
            let trait_path = &self.trait_path;
            generics
                .make_where_clause()
                .predicates
                .push(syn::parse_quote_spanned!(at_type(&field)=> #ty: #trait_path));
        }
        generics
    }

    /// A method's body: one arm per variant, or, for a struct, the answer itself.
    fn body(&self, method: Method) -> TokenStream {
        let cases = self.ty.cases();
        match &self.ty.body {
            Body::Struct(_) => {
                let class = cases[0].class();
                self.struct_answer(&Answer::of(&class, method))
            }
            Body::Enum(_) if cases.is_empty() => quote!(match *self {}),
            Body::Enum(_) => {
                let arms = cases.iter().map(|case| self.arm(case, method));
                quote! {
                    match self {
                        #(#arms)*
                    }
                }
            }
            Body::Union(_) => unreachable!("`valid::check` rejects unions"),
        }
    }

    /// A struct's answer, reading its field through `self`.
    fn struct_answer(&self, answer: &Answer) -> TokenStream {
        match answer {
            Answer::Constant(constant) => constant.clone(),
            Answer::Delegate(field, method) => {
                let member = member_at_type(field);
                let reference = quote_spanned!(at_type(field)=> &self.#member);
                self.delegate(field, *method, &reference)
            }
            Answer::Wait(field) => {
                let member = member_at_type(field);
                wait(field, &quote_spanned!(at_type(field)=> self.#member))
            }
        }
    }

    /// One arm of a `match self`: the variant's pattern, binding the field the answer reads.
    fn arm(&self, case: &Case, method: Method) -> TokenStream {
        let class = case.class();
        let answer = Answer::of(&class, method);
        let binding = answer.field().map(|field| {
            let name = match answer {
                Answer::Delegate(..) => "error",
                _ => "retry_after",
            };
            // Hygienic, and placed at the field's type, where type errors are then reported.
            let span = Span::mixed_site().located_at(at_type(field));
            (field, Ident::new(name, span))
        });
        let pattern = pattern(case, binding.as_ref());
        let value = match (&answer, &binding) {
            (Answer::Constant(constant), _) => constant.clone(),
            (Answer::Delegate(field, method), Some((_, binding))) => {
                self.delegate(field, *method, &binding.to_token_stream())
            }
            (Answer::Wait(field), Some((_, binding))) => {
                wait(field, &quote_spanned!(at_type(field)=> *#binding))
            }
            _ => unreachable!("an answer that reads a field has a binding"),
        };
        quote!(#pattern => #value,)
    }

    /// `ClassifyError::method(field)`, with `reference` a reference to the delegated field.
    /// Spanned at the field's type, so a type that does not implement the trait is reported
    /// there.
    fn delegate(&self, field: &FieldRef, method: Method, reference: &TokenStream) -> TokenStream {
        let span = at_type(field);
        let trait_path = &self.trait_path;
        let method = method.ident();
        quote_spanned!(span=> #trait_path::#method(#reference))
    }
}

/// A span at the field's type, for the generated code that reads the field: a type error there
/// is then reported on the type. It resolves names like the rest of the expansion, and clippy
/// still sees it as generated code.
fn at_type(field: &FieldRef) -> Span {
    Span::call_site().located_at(field.field.ty.span())
}

/// The field's member, spanned like [`at_type`], so `self.field` as a whole is placed there.
fn member_at_type(field: &FieldRef) -> Member {
    let mut member = field.member.clone();
    match &mut member {
        Member::Named(ident) => ident.set_span(at_type(field)),
        Member::Unnamed(index) => index.span = at_type(field),
    }
    member
}

/// The `Option<Duration>` a `retry_after` field holds, given its `value`: the value itself when
/// the field's type is written as an `Option`, else the value wrapped in `Some`.
fn wait(field: &FieldRef, value: &TokenStream) -> TokenStream {
    if is_option(&field.field.ty) {
        value.clone()
    } else {
        quote_spanned!(at_type(field)=> ::core::option::Option::Some(#value))
    }
}

/// Whether `ty` is written as an `Option<...>`.
fn is_option(ty: &Type) -> bool {
    match ungroup(ty) {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|last| last.ident == "Option"),
        _ => false,
    }
}

/// The pattern of a variant: `Self::Name`, `Self::Name(..)` or `Self::Name { .. }`, or, when a
/// field is read, the pattern binding just that field.
fn pattern(case: &Case, binding: Option<&(&FieldRef, Ident)>) -> TokenStream {
    let ident = case.ident;
    let Some((field, binding)) = binding else {
        return match case.fields {
            Fields::Unit => quote!(Self::#ident),
            Fields::Unnamed(_) => quote!(Self::#ident(..)),
            Fields::Named(_) => quote!(Self::#ident { .. }),
        };
    };
    match &field.member {
        Member::Unnamed(index) => {
            let skipped = (0..index.index).map(|_| quote!(_,));
            let rest = (index.index as usize + 1 < case.fields.len()).then(|| quote!(, ..));
            quote!(Self::#ident(#(#skipped)* #binding #rest))
        }
        Member::Named(name) => {
            let rest = (case.fields.len() > 1).then(|| quote!(, ..));
            quote!(Self::#ident { #name: #binding #rest })
        }
    }
}

/// Whether `ty` names one of `params`.
fn mentions_any(ty: &Type, params: &[&Ident]) -> bool {
    /// Looks for paths that start with a type parameter.
    struct Finder<'p> {
        /// The type parameters.
        params: &'p [&'p Ident],
        /// Whether one was found.
        found: bool,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_path(&mut self, path: &'ast syn::Path) {
            if path.leading_colon.is_none()
                && path
                    .segments
                    .first()
                    .is_some_and(|first| self.params.iter().any(|param| first.ident == **param))
            {
                self.found = true;
            }
            syn::visit::visit_path(self, path);
        }
    }
    let mut finder = Finder {
        params,
        found: false,
    };
    finder.visit_type(ty);
    finder.found
}

impl ToTokens for Expansion<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let ident = self.ty.ident;
        let trait_path = &self.trait_path;
        let generics = self.generics();
        let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
        let is_transient = self.body(Method::IsTransient);
        // The trait's default answers `None`: written out only when some case says otherwise.
        let retry_after = self
            .ty
            .cases()
            .iter()
            .any(|case| {
                matches!(
                    case.class(),
                    Class::Delegate(_)
                        | Class::Transient {
                            retry_after: Some(_)
                        }
                )
            })
            .then(|| {
                let body = self.body(Method::RetryAfter);
                quote! {
                    fn retry_after(&self) -> ::core::option::Option<::core::time::Duration> {
                        #body
                    }
                }
            });
        tokens.extend(quote! {
            #[automatically_derived]
            impl #impl_generics #trait_path for #ident #ty_generics #where_clause {
                fn is_transient(&self) -> bool {
                    #is_transient
                }
                #retry_after
            }
        });
    }
}
