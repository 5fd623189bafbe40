//! Checks the lowered function against what an action can be, collecting every error so one
//! build reports them all, each on the smallest piece of code that causes it.

use syn::visit::Visit;
use syn::{Attribute, GenericParam, Lifetime, Pat, Type, TypeImplTrait, TypeReference};

use crate::signature::{source_text, ungroup, ActionFn, Arg, Input, Part, Shape};

/// Checks everything syntax can tell about `func`.
pub(crate) fn check(func: &ActionFn) -> syn::Result<()> {
    let mut errors = Errors::default();
    check_header(func, &mut errors);
    for input in &func.inputs {
        match input {
            Input::Receiver(receiver) => errors.push(syn::Error::new_spanned(
                receiver,
                "`self` is not supported: `#[offline_action]` goes on free functions and on \
                 associated fns without a receiver, which the runtime can call again when it \
                 replays a queued call",
            )),
            Input::Arg(arg) => check_arg(arg, &mut errors),
        }
    }
    check_output(func, &mut errors);
    errors.finish()
}

/// Checks the qualifiers, generics and attributes of the function.
fn check_header(func: &ActionFn, errors: &mut Errors) {
    let sig = &func.sig;
    if let Some(again) = func.attrs.iter().find(|attr| {
        attr.path()
            .segments
            .last()
            .is_some_and(|last| last.ident == "offline_action")
    }) {
        errors.push(syn::Error::new_spanned(
            again,
            "`#[offline_action]` is applied twice; keep one",
        ));
    }
    // `const async fn` does not exist, so a `const fn` gets one error that says both.
    if let Some(constness) = &sig.constness {
        errors.push(syn::Error::new_spanned(
            constness,
            "an `#[offline_action]` fn must be `async`, not `const`: write `async fn`",
        ));
    } else if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "an `#[offline_action]` fn must be `async`: write `async fn`",
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            unsafety,
            "an `#[offline_action]` fn cannot be `unsafe`: the runtime calls it again on replay, \
             where no caller can uphold its safety contract",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "an `#[offline_action]` fn cannot have an `extern` ABI",
        ));
    }
    let generics = &sig.generics;
    if generics
        .params
        .iter()
        .any(|param| !matches!(param, GenericParam::Lifetime(_)))
    {
        errors.push(syn::Error::new_spanned(
            generics,
            "an `#[offline_action]` fn cannot be generic: an action is registered once, under one \
             name, with concrete argument and return types",
        ));
    } else if let Some(used) = used_lifetime_params(func).first() {
        // Lifetime parameters that nothing uses (left over in real code) are harmless.
        errors.push(syn::Error::new_spanned(
            used,
            "an `#[offline_action]` fn cannot have lifetime parameters that its arguments or \
             return type use: its arguments are stored until replay, so they must own their \
             data (`&str`, `&[T]` and `&T` are fine with the lifetime left out)",
        ));
    } else if let Some(where_clause) = &generics.where_clause {
        errors.push(syn::Error::new_spanned(
            where_clause,
            "an `#[offline_action]` fn cannot have a `where` clause: an action has concrete \
             argument and return types",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            "an `#[offline_action]` fn cannot be variadic",
        ));
    }
}

/// The lifetime parameters of `func` that an argument type or the return type names.
fn used_lifetime_params(func: &ActionFn) -> Vec<&Lifetime> {
    struct Named(Vec<String>);
    impl<'ast> Visit<'ast> for Named {
        fn visit_lifetime(&mut self, lifetime: &'ast Lifetime) {
            self.0.push(lifetime.ident.to_string());
        }
    }
    let mut named = Named(Vec::new());
    for input in &func.inputs {
        if let Input::Arg(arg) = input {
            named.visit_type(&arg.ty);
        }
    }
    if let Some(output) = &func.output {
        named.visit_type(output);
    }
    func.sig
        .generics
        .lifetimes()
        .map(|param| &param.lifetime)
        .filter(|lifetime| named.0.contains(&lifetime.ident.to_string()))
        .collect()
}

/// Checks one argument: its attributes, its pattern and its type.
fn check_arg(arg: &Arg, errors: &mut Errors) {
    for attr in &arg.attrs {
        if !is_field_attr(attr) {
            errors.push(syn::Error::new_spanned(
                attr,
                "only doc comments and `#[serde(...)]` can go on an `#[offline_action]` argument; \
                 they are moved to its field in the parameters struct",
            ));
        }
    }
    if arg.binding.is_none() {
        errors.push(pattern_error(&arg.pat));
    }
    let elem = match &arg.shape {
        Shape::MutRef(reference) => {
            let (and, mutability) = (&reference.and_token, &reference.mutability);
            errors.push(syn::Error::new_spanned(
                quote::quote!(#and #mutability),
                "`&mut` arguments are not supported: a queued call runs later, so changes could \
                 not reach the caller; take the value and return what changed",
            ));
            return;
        }
        Shape::Owned => &*arg.ty,
        Shape::Nested(part) => {
            check_part(part, errors);
            return;
        }
        Shape::Str(reference)
        | Shape::Slice(reference, _)
        | Shape::Cloned(reference, _)
        | Shape::ToOwned(reference, _) => {
            check_reference_lifetime(reference, errors);
            &reference.elem
        }
    };
    check_owned(elem, errors);
}

/// Checks a piece of an argument type with borrows inside.
fn check_part(part: &Part, errors: &mut Errors) {
    match part {
        Part::Owned(ty) => check_owned(ty, errors),
        Part::Leaf(reference, elem) => {
            check_reference_lifetime(reference, errors);
            check_owned(elem, errors);
        }
        Part::Option(inner) | Part::Vec(inner) => check_part(inner, errors),
        Part::Tuple(parts) => {
            for part in parts {
                check_part(part, errors);
            }
        }
        Part::RefSlice(reference, inner) | Part::RefTo(reference, inner) => {
            check_reference_lifetime(reference, errors);
            check_part(inner, errors);
        }
    }
}

/// Checks that a part of an argument type that is stored as written owns its data.
fn check_owned(ty: &Type, errors: &mut Errors) {
    OwnedTypeCheck {
        place: Place::Argument,
        errors,
    }
    .visit_type(ty);
}

/// A reference the macro owns may carry no lifetime, `'_` or `'static`.
fn check_reference_lifetime(reference: &TypeReference, errors: &mut Errors) {
    if let Some(lifetime) = &reference.lifetime {
        if !is_allowed_lifetime(lifetime) {
            errors.push(syn::Error::new_spanned(
                lifetime,
                format!(
                    "a borrowed argument cannot name the lifetime `{lifetime}`: it is stored as \
                     an owned value until replay; leave the lifetime out"
                ),
            ));
        }
    }
}

/// Whether an argument attribute may move onto the parameters struct's field.
pub(crate) fn is_field_attr(attr: &Attribute) -> bool {
    attr.path().is_ident("doc") || attr.path().is_ident("serde")
}

/// `'static`, or the elided `'_`, which a reference may carry at its top level.
fn is_allowed_lifetime(lifetime: &Lifetime) -> bool {
    lifetime.ident == "static" || lifetime.ident == "_"
}

/// The error for an argument pattern that is not a plain name.
fn pattern_error(pat: &Pat) -> syn::Error {
    match pat {
        Pat::Ident(ident) if ident.by_ref.is_some() => syn::Error::new_spanned(
            ident.by_ref,
            "`ref` bindings are not supported in `#[offline_action]` arguments: take the value, \
             or borrow it as `&T`",
        ),
        Pat::Ident(ident) => match &ident.subpat {
            Some((at, subpat)) => syn::Error::new_spanned(
                quote::quote!(#at #subpat),
                "`name @ pattern` is not supported in `#[offline_action]` arguments: bind a name \
                 and match in the body",
            ),
            None => syn::Error::new_spanned(pat, "this argument pattern is not supported"),
        },
        Pat::Wild(_) => syn::Error::new_spanned(
            pat,
            "every `#[offline_action]` argument needs a name: it becomes a field of the \
             parameters struct",
        ),
        _ => syn::Error::new_spanned(
            pat,
            "destructuring is not supported in `#[offline_action]` arguments: each argument \
             becomes a named field of the parameters struct; bind a name and destructure in the \
             body",
        ),
    }
}

/// Checks the return type.
fn check_output(func: &ActionFn, errors: &mut Errors) {
    match &func.output {
        None => errors.push(syn::Error::new(
            func.sig.paren_token.span.close(),
            "an `#[offline_action]` fn must return `Result<T, E>`: add a return type like \
             `-> Result<Product, AppError>`",
        )),
        Some(output) if is_surely_not_a_result(output) => errors.push(syn::Error::new_spanned(
            output,
            format!(
                "an `#[offline_action]` fn must return `Result<T, E>`, not `{}`: offline and \
                 queued outcomes reach the caller through `E`",
                source_text(output)
            ),
        )),
        Some(output) => OwnedTypeCheck {
            place: Place::Output,
            errors,
        }
        .visit_type(output),
    }
}

/// Return types that syntax alone shows are not a `Result`. Anything else, aliases included,
/// is left to the type-level check through `ActionResult`.
fn is_surely_not_a_result(output: &Type) -> bool {
    const NOT_RESULTS: &[&str] = &[
        "Option", "Vec", "String", "Box", "bool", "char", "str", "u8", "u16", "u32", "u64", "u128",
        "usize", "i8", "i16", "i32", "i64", "i128", "isize", "f32", "f64",
    ];
    match ungroup(output) {
        Type::Tuple(_) | Type::Array(_) | Type::Slice(_) | Type::Never(_) | Type::Ptr(_) => true,
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|last| NOT_RESULTS.iter().any(|name| last.ident == name)),
        _ => false,
    }
}

/// Where a type appears, for the wording of its errors.
#[derive(Clone, Copy)]
enum Place {
    /// In an argument, below its outermost `&`.
    Argument,
    /// In the return type.
    Output,
}

impl Place {
    /// Why the type must own its data.
    fn reason(self) -> &'static str {
        match self {
            Place::Argument => "arguments are stored until replay, so they must own their data",
            Place::Output => {
                "results are cached and served again offline, so they must own their data"
            }
        }
    }

    /// What the place is called in messages.
    fn name(self) -> &'static str {
        match self {
            Place::Argument => "an argument type",
            Place::Output => "the return type",
        }
    }
}

/// Finds what an owned, concrete type cannot contain: references, named or elided lifetimes
/// other than `'static`, and `impl Trait`.
struct OwnedTypeCheck<'a> {
    /// Where the type is.
    place: Place,
    /// Where errors go.
    errors: &'a mut Errors,
}

impl<'ast> Visit<'ast> for OwnedTypeCheck<'_> {
    fn visit_type_reference(&mut self, reference: &'ast TypeReference) {
        let hint = match self.place {
            Place::Argument => {
                " (an argument may borrow at its top and inside `Option`, `Vec`, tuples and slices, \
                 where `&str` becomes a `String`; elsewhere, write the owned type)"
            }
            Place::Output => "",
        };
        self.errors.push(syn::Error::new_spanned(
            reference,
            format!(
                "references cannot appear in {}: {}{hint}",
                self.place.name(),
                self.place.reason()
            ),
        ));
    }

    fn visit_lifetime(&mut self, lifetime: &'ast Lifetime) {
        if lifetime.ident != "static" {
            self.errors.push(syn::Error::new_spanned(
                lifetime,
                format!(
                    "the lifetime `{lifetime}` cannot appear in {}: {} (`'static` is fine)",
                    self.place.name(),
                    self.place.reason()
                ),
            ));
        }
    }

    fn visit_type_impl_trait(&mut self, impl_trait: &'ast TypeImplTrait) {
        let message = match self.place {
            Place::Argument => {
                "`impl Trait` is not supported in the arguments of an `#[offline_action]` fn: \
                 each argument becomes a field of the parameters struct, so its type must be \
                 written out"
            }
            Place::Output => {
                "`impl Trait` is not supported in the return type of an `#[offline_action]` fn: \
                 the action names its output type, so it must be written out"
            }
        };
        self.errors
            .push(syn::Error::new_spanned(impl_trait, message));
    }

    // Lifetimes in `fn(&str)` and `Fn(&str)` are higher-ranked, not borrows: leave such types to
    // the trait checks, which reject them for not being serializable.
    fn visit_type_bare_fn(&mut self, _: &'ast syn::TypeBareFn) {}

    fn visit_parenthesized_generic_arguments(
        &mut self,
        _: &'ast syn::ParenthesizedGenericArguments,
    ) {
    }

    fn visit_type(&mut self, ty: &'ast Type) {
        // Macros in type position expand later; there is nothing to see yet.
        if !matches!(ty, Type::Macro(_)) {
            syn::visit::visit_type(self, ty);
        }
    }
}

/// Collects errors so several can be reported at once (`serde_derive`'s `Ctxt` does the same).
#[derive(Default)]
pub(crate) struct Errors {
    /// All errors so far, combined into one.
    combined: Option<syn::Error>,
}

impl Errors {
    /// Adds an error.
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// The value of a step that succeeded; the error of one that failed is kept.
    pub fn check<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    /// `Ok` if nothing was pushed, else every error combined.
    pub fn finish(self) -> syn::Result<()> {
        self.combined.map_or(Ok(()), Err)
    }
}
