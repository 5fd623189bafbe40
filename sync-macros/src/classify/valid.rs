//! Checks the lowered type against what `#[derive(ClassifyError)]` supports, collecting every
//! error, each on the key or field that causes it.

use syn::ext::IdentExt;
use syn::{Fields, Member};

use super::ast::{Body, Case, ErrorType};
use super::attr::is_classify;
use crate::valid::Errors;

/// Checks everything syntax can tell about `ty`.
pub(crate) fn check(ty: &ErrorType, errors: &mut Errors) {
    match &ty.body {
        Body::Union(union_token) => {
            errors.push(syn::Error::new_spanned(
                union_token,
                "`ClassifyError` cannot be derived for a union: use an enum with one variant per \
                 kind of error, or a struct",
            ));
            return;
        }
        Body::Enum(variants) => {
            for key in ty.attrs.keys() {
                errors.push(syn::Error::new(
                    key.span(),
                    format!(
                        "`{}` goes on a variant, not on the enum: mark each variant that needs \
                         it, like `#[classify(transient)]`; the others are permanent",
                        key.unraw()
                    ),
                ));
            }
            for variant in variants {
                if let Some(krate) = &variant.attrs.krate {
                    errors.push(syn::Error::new(
                        krate.key.span(),
                        "`crate` goes on the enum, not on a variant",
                    ));
                }
            }
        }
        Body::Struct(_) => {}
    }
    for case in ty.cases() {
        check_case(&case, errors);
    }
}

/// Checks one case: that the fields its attributes name exist, and its fields' attributes.
fn check_case(case: &Case, errors: &mut Errors) {
    let attrs = case.attrs;
    if let Some(delegate) = &attrs.delegate {
        if case.only_field().is_none() {
            let count = match case.fields.len() {
                0 => "none".to_owned(),
                count => count.to_string(),
            };
            errors.push(syn::Error::new(
                delegate.span(),
                format!(
                    "`delegate` needs exactly one field, the error that answers; `{}` has {count}",
                    case.ident
                ),
            ));
        }
    }
    if let Some(retry_after) = &attrs.retry_after {
        if attrs.transient.is_none() {
            errors.push(syn::Error::new(
                retry_after.key.span(),
                "`retry_after` needs `transient`: only transient errors are retried; write \
                 `#[classify(transient, retry_after = ...)]`",
            ));
        }
        if case.field(&retry_after.field).is_none() {
            errors.push(syn::Error::new_spanned(
                &retry_after.field,
                format!(
                    "`{}` has no field `{}`; {}",
                    case.ident,
                    member_text(&retry_after.field),
                    describe_fields(case.fields)
                ),
            ));
        }
    }
    for attr in case.fields.iter().flat_map(|field| &field.attrs) {
        if is_classify(attr) {
            errors.push(syn::Error::new_spanned(
                attr,
                format!(
                    "`#[classify(...)]` goes on `{}`, not on its fields: name the field there, \
                     like `#[classify(transient, retry_after = wait)]`, or write \
                     `#[classify(delegate)]` to ask the only field",
                    case.ident
                ),
            ));
        }
    }
}

/// A member as written in source.
fn member_text(member: &Member) -> String {
    match member {
        Member::Named(ident) => ident.unraw().to_string(),
        Member::Unnamed(index) => index.index.to_string(),
    }
}

/// What fields `retry_after` can name, for its error.
fn describe_fields(fields: &Fields) -> String {
    let names: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(index, field)| match &field.ident {
            Some(ident) => format!("`{}`", ident.unraw()),
            None => format!("`{index}`"),
        })
        .collect();
    match names.as_slice() {
        [] => "it has no fields".to_owned(),
        [only] => format!("its only field is {only}"),
        [init @ .., last] => format!("its fields are {} and {last}", init.join(", ")),
    }
}
