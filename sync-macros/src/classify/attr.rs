//! The `#[classify(...)]` attributes: `transient`, `permanent`, `delegate`,
//! `retry_after = field` and, on the type, `crate = path`.

use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::{Attribute, Expr, ExprLit, Ident, Index, Lit, Member, Path};

use crate::args::{parse_pairs, plain_path, required};
use crate::valid::Errors;

/// The keys `#[classify(...)]` understands, in the order the documentation lists them.
const KEYS: &str = "`transient`, `permanent`, `delegate`, `retry_after`, `crate`";

/// Every `#[classify(...)]` of one type, variant or field, merged. Each key is `None` when it
/// was not given, or was given in a way that has been reported.
#[derive(Default)]
pub(crate) struct Classify {
    /// `transient`: trying again later may succeed.
    pub transient: Option<Ident>,
    /// `permanent`: the default, written out.
    pub permanent: Option<Ident>,
    /// `delegate`: the only field answers.
    pub delegate: Option<Ident>,
    /// `retry_after = field`: the field holding the wait the server asked for.
    pub retry_after: Option<RetryAfter>,
    /// `crate = path`: where `sync_runtime` is, for crates that re-export it.
    pub krate: Option<Crate>,
    /// Whether a `crate = ...` was given but could not be read.
    pub bad_crate: bool,
}

/// A `retry_after = field`.
pub(crate) struct RetryAfter {
    /// The `retry_after` key.
    pub key: Ident,
    /// The field it names: `wait` or `0`.
    pub field: Member,
}

/// A `crate = path`.
pub(crate) struct Crate {
    /// The `crate` key.
    pub key: Ident,
    /// Where `sync_runtime` is.
    pub path: Path,
}

impl Classify {
    /// Reads the `#[classify(...)]` attributes among `attrs`, pushing an error for each key
    /// that is unknown, repeated, contradicts another or has a bad value, and keeping the rest.
    pub fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut classify = Classify::default();
        for attr in attrs.iter().filter(|attr| is_classify(attr)) {
            let parsed = attr.parse_args_with(|input: ParseStream| {
                parse_pairs(input, &format!("expected one of {KEYS}"), |key, value| {
                    if let Err(error) = classify.set(key, value) {
                        errors.push(error);
                    }
                })
            });
            errors.check(parsed);
        }
        classify
    }

    /// The keys that classify, as written, in the order the documentation lists them.
    pub fn keys(&self) -> impl Iterator<Item = &Ident> {
        [
            self.transient.as_ref(),
            self.permanent.as_ref(),
            self.delegate.as_ref(),
            self.retry_after
                .as_ref()
                .map(|retry_after| &retry_after.key),
        ]
        .into_iter()
        .flatten()
    }

    /// Stores one `key [= value]`, checking the value and that it fits the keys before it.
    fn set(&mut self, key: &Ident, value: Option<Expr>) -> syn::Result<()> {
        let name = key.unraw().to_string();
        let seen = match name.as_str() {
            "transient" => self.transient.is_some(),
            "permanent" => self.permanent.is_some(),
            "delegate" => self.delegate.is_some(),
            "retry_after" => self.retry_after.is_some(),
            "crate" => self.krate.is_some() || self.bad_crate,
            _ => {
                return Err(syn::Error::new(
                    key.span(),
                    format!("unknown `classify` argument `{name}`; expected one of {KEYS}"),
                ))
            }
        };
        if seen {
            return Err(syn::Error::new(
                key.span(),
                format!("`{name}` is repeated; give it once"),
            ));
        }
        self.check_fits(key, &name)?;
        match name.as_str() {
            "transient" => self.transient = Some(flag(key, value)?),
            "permanent" => self.permanent = Some(flag(key, value)?),
            "delegate" => self.delegate = Some(flag(key, value)?),
            "retry_after" => {
                self.retry_after = Some(RetryAfter {
                    key: key.clone(),
                    field: field(key, value)?,
                });
            }
            _ => match krate(key, value) {
                Ok(path) => {
                    self.krate = Some(Crate {
                        key: key.clone(),
                        path,
                    });
                }
                Err(error) => {
                    self.bad_crate = true;
                    return Err(error);
                }
            },
        }
        Ok(())
    }

    /// Reports `key` when it contradicts a key given before it. The error goes on the later
    /// key, and that key is dropped.
    fn check_fits(&self, key: &Ident, name: &str) -> syn::Result<()> {
        let contradiction = match name {
            "transient" if self.permanent.is_some() => {
                "`transient` and `permanent` contradict each other; keep one"
            }
            "permanent" if self.transient.is_some() => {
                "`permanent` and `transient` contradict each other; keep one"
            }
            "transient" | "permanent" | "retry_after" if self.delegate.is_some() => {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "`{name}` cannot be combined with `delegate`: the delegated field answers \
                         both `is_transient` and `retry_after`; remove `{name}`"
                    ),
                ));
            }
            "delegate" => match self.keys().next() {
                Some(other) => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "`delegate` cannot be combined with `{}`: the delegated field \
                             answers both `is_transient` and `retry_after`; keep one",
                            other.unraw()
                        ),
                    ));
                }
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        Err(syn::Error::new(key.span(), contradiction))
    }
}

/// Whether `attr` is a `#[classify(...)]`.
pub(crate) fn is_classify(attr: &Attribute) -> bool {
    attr.path().is_ident("classify")
}

/// `transient`, `permanent` or `delegate`: a bare flag.
fn flag(key: &Ident, value: Option<Expr>) -> syn::Result<Ident> {
    match value {
        None => Ok(key.clone()),
        Some(value) => Err(syn::Error::new_spanned(
            value,
            format!(
                "`{0}` takes no value: write `#[classify({0})]`",
                key.unraw()
            ),
        )),
    }
}

/// `retry_after = field`: a field name, or the index of a tuple field.
fn field(key: &Ident, value: Option<Expr>) -> syn::Result<Member> {
    let message = "`retry_after` takes the field holding the wait, like `retry_after = wait` or, \
                   in a tuple variant, `retry_after = 0`";
    match required(key, value, message)? {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit),
            attrs,
        }) if attrs.is_empty() && lit.suffix().is_empty() => {
            let index = lit
                .base10_parse::<u32>()
                .map_err(|_| syn::Error::new(lit.span(), message))?;
            Ok(Member::Unnamed(Index {
                index,
                span: lit.span(),
            }))
        }
        other => {
            let path = plain_path(other, message)?;
            match path.get_ident() {
                Some(ident) => Ok(Member::Named(ident.clone())),
                None => Err(syn::Error::new_spanned(path, message)),
            }
        }
    }
}

/// `crate = path`: where the runtime crate is.
fn krate(key: &Ident, value: Option<Expr>) -> syn::Result<Path> {
    let message =
        "`crate` takes the path of the `sync_runtime` crate, like `crate = ::my_sdk::sync`";
    plain_path(required(key, value, message)?, message)
}
