//! Lowers the type under `#[derive(ClassifyError)]` into a model: its cases (the struct, or each
//! variant of the enum), what each one's attributes say, and the fields they name.
//!
//! Lowering only fails on attributes it cannot read; anything else is kept as written, for
//! [`valid`](super::valid) to report with a precise span.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Field, Fields, Generics, Ident, Index, Member, Token};

use super::attr::Classify;
use crate::valid::Errors;

/// A type under `#[derive(ClassifyError)]`.
pub(crate) struct ErrorType<'a> {
    /// Its name.
    pub ident: &'a Ident,
    /// Its generics, as written.
    pub generics: &'a Generics,
    /// The `#[classify(...)]` on the type itself.
    pub attrs: Classify,
    /// Its shape.
    pub body: Body<'a>,
}

/// The shape of the type.
pub(crate) enum Body<'a> {
    /// A struct: the whole value is one case, classified by the type's own attributes.
    Struct(&'a Fields),
    /// An enum: one case per variant.
    Enum(Vec<Variant<'a>>),
    /// A union: never supported.
    Union(Token![union]),
}

/// A variant of an enum.
pub(crate) struct Variant<'a> {
    /// Its name.
    pub ident: &'a Ident,
    /// Its fields.
    pub fields: &'a Fields,
    /// Its `#[classify(...)]`.
    pub attrs: Classify,
}

/// The struct, or one variant: something with fields and a classification.
pub(crate) struct Case<'a> {
    /// The struct's or the variant's name.
    pub ident: &'a Ident,
    /// Its fields.
    pub fields: &'a Fields,
    /// What its `#[classify(...)]` says.
    pub attrs: &'a Classify,
}

/// What a case answers.
pub(crate) enum Class<'a> {
    /// Not worth retrying: `is_transient` is `false`.
    Permanent,
    /// Worth retrying, maybe after the wait in a field.
    Transient {
        /// The field `retry_after` returns.
        retry_after: Option<FieldRef<'a>>,
    },
    /// The only field answers both methods.
    Delegate(FieldRef<'a>),
}

/// A field of a case, and how to reach it.
pub(crate) struct FieldRef<'a> {
    /// Its name, or its index in a tuple.
    pub member: Member,
    /// The field as written.
    pub field: &'a Field,
}

/// Builds the model of `input`, pushing an error for each attribute that cannot be read.
pub(crate) fn lower<'a>(input: &'a DeriveInput, errors: &mut Errors) -> ErrorType<'a> {
    let attrs = Classify::parse(&input.attrs, errors);
    let body = match &input.data {
        Data::Struct(data) => Body::Struct(&data.fields),
        Data::Enum(data) => Body::Enum(
            data.variants
                .iter()
                .map(|variant| Variant {
                    ident: &variant.ident,
                    fields: &variant.fields,
                    attrs: Classify::parse(&variant.attrs, errors),
                })
                .collect(),
        ),
        Data::Union(data) => Body::Union(data.union_token),
    };
    ErrorType {
        ident: &input.ident,
        generics: &input.generics,
        attrs,
        body,
    }
}

impl ErrorType<'_> {
    /// The cases to classify: the struct, or each variant; none for a union.
    pub fn cases(&self) -> Vec<Case<'_>> {
        match &self.body {
            Body::Struct(fields) => vec![Case {
                ident: self.ident,
                fields,
                attrs: &self.attrs,
            }],
            Body::Enum(variants) => variants
                .iter()
                .map(|variant| Case {
                    ident: variant.ident,
                    fields: variant.fields,
                    attrs: &variant.attrs,
                })
                .collect(),
            Body::Union(_) => Vec::new(),
        }
    }
}

impl<'a> Case<'a> {
    /// What the case answers. Meaningful once [`valid`](super::valid) has passed.
    pub fn class(&self) -> Class<'a> {
        if self.attrs.delegate.is_some() {
            if let Some(field) = self.only_field() {
                return Class::Delegate(field);
            }
        }
        if self.attrs.transient.is_none() {
            return Class::Permanent;
        }
        Class::Transient {
            retry_after: self
                .attrs
                .retry_after
                .as_ref()
                .and_then(|retry_after| self.field(&retry_after.field)),
        }
    }

    /// The field `member` names, if the case has it.
    pub fn field(&self, member: &Member) -> Option<FieldRef<'a>> {
        self.members()
            .find(|field| same_member(&field.member, member))
    }

    /// The field of a case with exactly one.
    pub fn only_field(&self) -> Option<FieldRef<'a>> {
        let mut members = self.members();
        match (members.next(), members.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    /// Every field with its member, in order.
    pub fn members(&self) -> impl Iterator<Item = FieldRef<'a>> {
        self.fields
            .iter()
            .enumerate()
            .map(|(index, field)| FieldRef {
                member: field.ident.clone().map_or_else(
                    || {
                        Member::Unnamed(Index {
                            index: u32::try_from(index).unwrap_or(u32::MAX),
                            span: Span::call_site(),
                        })
                    },
                    Member::Named,
                ),
                field,
            })
    }
}

/// Whether two members name the same field, `r#type` and `type` alike.
fn same_member(a: &Member, b: &Member) -> bool {
    match (a, b) {
        (Member::Named(a), Member::Named(b)) => a.unraw() == b.unraw(),
        (Member::Unnamed(a), Member::Unnamed(b)) => a.index == b.index,
        _ => false,
    }
}
