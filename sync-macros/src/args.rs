//! The attribute's arguments: `#[offline_action(name = "...", version = N, query, local = path,
//! scope = expr, params = Ident, store_in = "...", store_all_in = "...", key = closure,
//! within = closure, crate = path)]`.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprPath, Ident, Lit, LitInt, LitStr, Path, Token};

use crate::valid::Errors;

/// The keys the attribute understands, in the order the documentation lists them.
const KEYS: &str = "`name`, `version`, `query`, `local`, `scope`, `params`, `store_in`, `store_all_in`, `key`, `within`, `crate`";

/// The parsed attribute. Every field is `None` when its key was not given.
#[derive(Default)]
pub(crate) struct Args {
    /// `name = "..."`: the stable name the action is queued under.
    pub name: Option<LitStr>,
    /// `version = N`: stored with each queued call.
    pub version: Option<Version>,
    /// `query`: the action reads rather than writes.
    pub query: Option<Ident>,
    /// `local = path`: the user's offline handler.
    pub local: Option<Path>,
    /// `scope = expr`: the ordering scope of a call, computed from its arguments.
    pub scope: Option<Expr>,
    /// `params = Ident`: the name of the generated parameters struct.
    pub params: Option<Ident>,
    /// `store_in = "..."` or `store_all_in = "..."`: the collection the answer is written to.
    pub store: Option<Store>,
    /// `key = closure`: the key of a record of the answer.
    pub key: Option<Expr>,
    /// `within = closure`: which stored records a list answer replaces.
    pub within: Option<Expr>,
    /// `crate = path`: where `sync_runtime` is, for crates that re-export it.
    pub krate: Option<Path>,
}

/// A checked write-through: `store_in` or `store_all_in`, its collection and `key`.
pub(crate) struct Store {
    /// `store_in` (one record) or `store_all_in` (a list).
    pub list: bool,
    /// The collection's name: a string literal, or the path of a `&str` constant.
    pub collection: Expr,
}

/// A checked `version = N`.
pub(crate) struct Version {
    /// The version number, at least 1.
    pub value: u32,
    /// Where it was written.
    pub span: Span,
}

impl Parse for Args {
    /// Reads `key` and `key = value` pairs separated by commas. Syntax errors stop at once;
    /// wrong keys and values are collected, so one build reports them all.
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = Args::default();
        let mut errors = Errors::default();
        let mut write_through = WriteThrough::default();
        parse_pairs(
            input,
            &format!("expected an argument: one of {KEYS}"),
            |key, value| {
                if let Err(error) = args.set(key, value, &mut write_through) {
                    errors.push(error);
                }
            },
        )?;
        write_through.check(&mut args, &mut errors);
        errors.finish()?;
        Ok(args)
    }
}

/// Reads comma-separated `key` and `key = value` pairs, handing each to `pair`. A token that
/// is not a key fails with `expected` at its span.
pub(crate) fn parse_pairs(
    input: ParseStream,
    expected: &str,
    mut pair: impl FnMut(&Ident, Option<Expr>),
) -> syn::Result<()> {
    while !input.is_empty() {
        let key = input
            .call(Ident::parse_any)
            .map_err(|error| syn::Error::new(error.span(), expected))?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse::<Expr>()?)
        } else {
            None
        };
        pair(&key, value);
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

impl Args {
    /// Stores one `key [= value]`, checking the value.
    fn set(
        &mut self,
        key: &Ident,
        value: Option<Expr>,
        write_through: &mut WriteThrough,
    ) -> syn::Result<()> {
        let name = key.unraw().to_string();
        let seen = match name.as_str() {
            "name" => self.name.is_some(),
            "version" => self.version.is_some(),
            "query" => self.query.is_some(),
            "local" => self.local.is_some(),
            "scope" => self.scope.is_some(),
            "params" => self.params.is_some(),
            "store_in" => write_through.store_in.is_some(),
            "store_all_in" => write_through.store_all_in.is_some(),
            "key" => write_through.key.is_some(),
            "within" => write_through.within.is_some(),
            "crate" => self.krate.is_some(),
            _ => {
                return Err(syn::Error::new(
                    key.span(),
                    format!("unknown `offline_action` argument `{name}`; expected one of {KEYS}"),
                ))
            }
        };
        if seen {
            return Err(syn::Error::new(
                key.span(),
                format!("`{name}` is repeated; give it once"),
            ));
        }
        match name.as_str() {
            "name" => self.name = Some(action_name(key, value)?),
            "version" => self.version = Some(version(key, value)?),
            "query" => self.query = Some(flag(key, value)?),
            "local" => self.local = Some(local(key, value)?),
            "scope" => self.scope = Some(scope(key, value)?),
            "params" => self.params = Some(params(key, value)?),
            "store_in" => write_through.store_in = Some((key.clone(), collection(key, value)?)),
            "store_all_in" => {
                write_through.store_all_in = Some((key.clone(), collection(key, value)?));
            }
            "key" => write_through.key = Some((key.clone(), closure(key, value)?)),
            "within" => write_through.within = Some((key.clone(), closure(key, value)?)),
            _ => self.krate = Some(krate(key, value)?),
        }
        Ok(())
    }
}

/// The write-through keys as given, checked together once all are read.
#[derive(Default)]
struct WriteThrough {
    store_in: Option<(Ident, Expr)>,
    store_all_in: Option<(Ident, Expr)>,
    key: Option<(Ident, Expr)>,
    within: Option<(Ident, Expr)>,
}

impl WriteThrough {
    /// Checks that the keys fit together and moves them into `args`.
    fn check(self, args: &mut Args, errors: &mut Errors) {
        let WriteThrough {
            store_in,
            store_all_in,
            key,
            within,
        } = self;
        if let (Some(_), Some((second, _))) = (&store_in, &store_all_in) {
            errors.push(syn::Error::new(
                second.span(),
                "give `store_in` (the answer is one record) or `store_all_in` (the answer is a list), not both",
            ));
        }
        let store = store_in
            .map(|(ident, lit)| (ident, lit, false))
            .or(store_all_in.map(|(ident, lit)| (ident, lit, true)));
        match (&store, &key) {
            (Some((ident, ..)), None) => errors.push(syn::Error::new(
                ident.span(),
                format!(
                    "`{ident}` needs `key`, the key of a stored record, like `key = |product: &Product| product.id.clone()`"
                ),
            )),
            (None, Some((ident, _))) => errors.push(syn::Error::new(
                ident.span(),
                "`key` says under which key `store_in` or `store_all_in` stores the answer; add one of them",
            )),
            _ => {}
        }
        if let Some((ident, _)) = &within {
            if !matches!(store, Some((_, _, true))) {
                errors.push(syn::Error::new(
                    ident.span(),
                    "`within` says which stored records a list answer replaces; it needs `store_all_in`",
                ));
            }
        }
        args.store = store.map(|(_, collection, list)| Store { list, collection });
        args.key = key.map(|(_, expr)| expr);
        args.within = within.map(|(_, expr)| expr);
    }
}

/// `store_in = "..."` / `store_all_in = "..."`: a non-empty collection name, or the path of a
/// constant holding one.
fn collection(key: &Ident, value: Option<Expr>) -> syn::Result<Expr> {
    let message = format!(
        "`{key}` takes the name of a collection, like `{key} = \"products\"`, or the path of a `&str` constant"
    );
    match required(key, value, &message)? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) if lit.value().is_empty() => Err(syn::Error::new(
            lit.span(),
            "the collection name cannot be empty",
        )),
        expr @ (Expr::Lit(ExprLit {
            lit: Lit::Str(_), ..
        })
        | Expr::Path(_)) => Ok(expr),
        other => Err(syn::Error::new_spanned(other, message)),
    }
}

/// `key = ...` / `within = ...`: a closure or the path of a function.
fn closure(key: &Ident, value: Option<Expr>) -> syn::Result<Expr> {
    let message = if key == "key" {
        "`key` takes a closure from a record of the answer to its key, like `key = |product: &Product| product.id.clone()`"
    } else {
        "`within` takes a closure saying whether a stored record belongs to the listed set, like `within = |product: &Product| product.tenant_id == tenant_id`"
    };
    match required(key, value, message)? {
        expr @ (Expr::Closure(_) | Expr::Path(_)) => Ok(expr),
        other => Err(syn::Error::new_spanned(other, message)),
    }
}

/// `name = "..."`: a non-empty string of ASCII letters, digits and `_ . : / -`.
fn action_name(key: &Ident, value: Option<Expr>) -> syn::Result<LitStr> {
    let message = "`name` takes a string, like `name = \"products.add\"`";
    let lit = match required(key, value, message)? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => lit,
        other => return Err(syn::Error::new_spanned(other, message)),
    };
    let text = lit.value();
    if text.is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            "the action name cannot be empty",
        ));
    }
    if let Some(bad) = text.chars().find(|&c| !is_name_char(c)) {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "the action name cannot contain {bad:?}: use ASCII letters, digits and `_ . : / -`"
            ),
        ));
    }
    Ok(lit)
}

/// Whether `c` may appear in an action name, which ends up in storage keys and logs.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-')
}

/// `version = N`: an integer literal from 1 to `u32::MAX`.
fn version(key: &Ident, value: Option<Expr>) -> syn::Result<Version> {
    let message = "`version` takes a whole number from 1 up, like `version = 2`";
    let lit = match required(key, value, message)? {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => lit,
        other => return Err(syn::Error::new_spanned(other, message)),
    };
    let value = parse_u32(&lit)?;
    if value == 0 {
        return Err(syn::Error::new(
            lit.span(),
            "`version` starts at 1; 0 is not a version",
        ));
    }
    Ok(Version {
        value,
        span: lit.span(),
    })
}

/// Reads an unsuffixed or `u32` literal as a `u32`.
fn parse_u32(lit: &LitInt) -> syn::Result<u32> {
    if !matches!(lit.suffix(), "" | "u32") {
        return Err(syn::Error::new(
            lit.span(),
            format!("`version` is a `u32`; remove the `{}` suffix", lit.suffix()),
        ));
    }
    lit.base10_parse::<u32>()
        .map_err(|_| syn::Error::new(lit.span(), "`version` must fit in a `u32`"))
}

/// `query`: a bare flag.
fn flag(key: &Ident, value: Option<Expr>) -> syn::Result<Ident> {
    match value {
        None => Ok(key.clone()),
        Some(value) => Err(syn::Error::new_spanned(
            value,
            "`query` takes no value: write `#[offline_action(query)]`, and leave it out for a mutation",
        )),
    }
}

/// `local = path`: the path of the offline handler.
fn local(key: &Ident, value: Option<Expr>) -> syn::Result<Path> {
    let message = "`local` takes the path of an `async fn`, like `local = add_product_locally`";
    plain_path(required(key, value, message)?, message)
}

/// `scope = expr`: an expression over the arguments. Only what syntax alone can rule out is
/// refused here; the expression's type is checked where it is used.
fn scope(key: &Ident, value: Option<Expr>) -> syn::Result<Expr> {
    let message = "`scope` takes an expression over the arguments, like `scope = product_id` or `scope = format!(\"product:{product_id}\")`";
    let expr = required(key, value, message)?;
    match &expr {
        Expr::Async(_) | Expr::Await(_) => Err(syn::Error::new_spanned(
            &expr,
            "the `scope` expression runs before the call, outside any `async` context: it cannot be `async` or `.await`",
        )),
        Expr::Return(_) | Expr::Break(_) | Expr::Continue(_) | Expr::Yield(_) => {
            Err(syn::Error::new_spanned(
                &expr,
                "`scope` takes a value computed from the arguments, not control flow",
            ))
        }
        _ => Ok(expr),
    }
}

/// `params = Ident`: the name of the parameters struct.
fn params(key: &Ident, value: Option<Expr>) -> syn::Result<Ident> {
    let message =
        "`params` takes the name of the struct to generate, like `params = NewProductArgs`";
    let path = plain_path(required(key, value, message)?, message)?;
    match path.get_ident() {
        Some(ident) => Ok(ident.clone()),
        None => Err(syn::Error::new_spanned(path, message)),
    }
}

/// `crate = path`: where the runtime crate is.
fn krate(key: &Ident, value: Option<Expr>) -> syn::Result<Path> {
    let message =
        "`crate` takes the path of the `sync_runtime` crate, like `crate = ::my_sdk::sync`";
    plain_path(required(key, value, message)?, message)
}

/// The value of a key that needs one, or an error on the key.
pub(crate) fn required(key: &Ident, value: Option<Expr>, message: &str) -> syn::Result<Expr> {
    value.ok_or_else(|| syn::Error::new(key.span(), message))
}

/// A path expression without attributes or a `<T as Trait>::` qualifier.
pub(crate) fn plain_path(value: Expr, message: &str) -> syn::Result<Path> {
    match value {
        Expr::Path(ExprPath {
            attrs,
            qself: None,
            path,
        }) if attrs.is_empty() => Ok(path),
        other => Err(syn::Error::new(other.span(), message)),
    }
}
