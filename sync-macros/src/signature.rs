//! Lowers the annotated function into a model of what the expansion needs: its arguments,
//! how each one is stored, its return type and its body.
//!
//! Lowering never fails: whatever the macro cannot support is kept as written, for
//! [`valid`](crate::valid) to report with a precise span.

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{
    AttrStyle, Attribute, Block, FnArg, Ident, ItemFn, Pat, PatIdent, Receiver, ReturnType,
    Signature, Token, Type, TypeReference, Visibility,
};

/// An `async fn` under `#[offline_action]`.
pub(crate) struct ActionFn {
    /// Attributes of the function, inner ones (`#![...]` in the body) turned outer.
    pub attrs: Vec<Attribute>,
    /// The function's visibility, shared by the generated types.
    pub vis: Visibility,
    /// The signature as written.
    pub sig: Signature,
    /// Receivers and arguments, in order.
    pub inputs: Vec<Input>,
    /// The return type; `None` when there is no `-> ...`.
    pub output: Option<Box<Type>>,
    /// The body: the action's online path.
    pub body: Box<Block>,
}

/// One entry of the parameter list.
pub(crate) enum Input {
    /// `self`, `&self`, `self: Box<Self>`...: never supported.
    Receiver(Receiver),
    /// `pattern: Type`.
    Arg(Arg),
}

/// A typed argument.
pub(crate) struct Arg {
    /// Its attributes: doc comments and `#[serde(...)]` go to the parameters struct's field.
    pub attrs: Vec<Attribute>,
    /// The pattern as written.
    pub pat: Box<Pat>,
    /// The name it binds, when the pattern is a plain (maybe `mut`) name.
    pub binding: Option<Binding>,
    /// The type as written.
    pub ty: Box<Type>,
    /// How the argument is stored in the parameters struct.
    pub shape: Shape,
}

/// A plain `name` or `mut name` pattern.
pub(crate) struct Binding {
    /// `mut`, kept for the body's binding.
    pub mutability: Option<Token![mut]>,
    /// The name, which is also the field's name.
    pub ident: Ident,
}

/// How an argument's type maps onto an owned field.
pub(crate) enum Shape {
    /// An owned value, stored as it is.
    Owned,
    /// `&str`, stored as a `String`.
    Str(TypeReference),
    /// `&[T]`, stored as a `Vec<T>`; holds `T`.
    Slice(TypeReference, Box<Type>),
    /// `&T` for a sized `T`, stored as a clone; holds `T`.
    Cloned(TypeReference, Box<Type>),
    /// `&T` for another unsized `T` (`&Path`, `&OsStr`, `&dyn Trait`), stored as
    /// `<T as ToOwned>::Owned`; holds `T`.
    ToOwned(TypeReference, Box<Type>),
    /// `&mut T`: never supported.
    MutRef(TypeReference),
}

impl Arg {
    /// The argument's name; a placeholder where the pattern has none, which only a failed
    /// check can reach.
    pub fn ident(&self) -> Ident {
        self.binding.as_ref().map_or_else(
            || Ident::new("_", Span::call_site()),
            |binding| binding.ident.clone(),
        )
    }
}

impl ActionFn {
    /// The function's name.
    pub fn ident(&self) -> &Ident {
        &self.sig.ident
    }

    /// The typed arguments, skipping receivers (which checks have already rejected).
    pub fn args(&self) -> impl Iterator<Item = &Arg> {
        self.inputs.iter().filter_map(|input| match input {
            Input::Arg(arg) => Some(arg),
            Input::Receiver(_) => None,
        })
    }
}

/// Builds the model of `item`.
pub(crate) fn lower(item: ItemFn) -> ActionFn {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;
    let attrs = attrs
        .into_iter()
        .map(|mut attr| {
            attr.style = AttrStyle::Outer;
            attr
        })
        .collect();
    let inputs = sig.inputs.iter().cloned().map(lower_input).collect();
    let output = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some(ty.clone()),
    };
    ActionFn {
        attrs,
        vis,
        sig,
        inputs,
        output,
        body: block,
    }
}

/// Lowers one entry of the parameter list.
fn lower_input(input: FnArg) -> Input {
    match input {
        FnArg::Receiver(receiver) => Input::Receiver(receiver),
        FnArg::Typed(typed) => {
            let binding = match &*typed.pat {
                Pat::Ident(PatIdent {
                    attrs,
                    by_ref: None,
                    mutability,
                    ident,
                    subpat: None,
                }) if attrs.is_empty() => Some(Binding {
                    mutability: *mutability,
                    ident: ident.clone(),
                }),
                _ => None,
            };
            Input::Arg(Arg {
                shape: shape_of(&typed.ty),
                attrs: typed.attrs,
                pat: typed.pat,
                binding,
                ty: typed.ty,
            })
        }
    }
}

/// Sorts a type into owned values and the references the macro knows how to own.
fn shape_of(ty: &Type) -> Shape {
    let Type::Reference(reference) = ungroup(ty) else {
        return Shape::Owned;
    };
    if reference.mutability.is_some() {
        return Shape::MutRef(reference.clone());
    }
    match ungroup(&reference.elem) {
        Type::Path(path) if path.qself.is_none() && path.path.is_ident("str") => {
            Shape::Str(reference.clone())
        }
        Type::Slice(slice) => Shape::Slice(reference.clone(), slice.elem.clone()),
        elem if is_unsized(elem) => Shape::ToOwned(reference.clone(), Box::new(elem.clone())),
        elem => Shape::Cloned(reference.clone(), Box::new(elem.clone())),
    }
}

/// The unsized types besides `str` and slices that arguments borrow. Sized types are stored as
/// they are, so a missing `Clone` is reported as such rather than through `ToOwned`.
fn is_unsized(elem: &Type) -> bool {
    match elem {
        Type::TraitObject(_) => true,
        Type::Path(path) if path.qself.is_none() => path.path.segments.last().is_some_and(|last| {
            ["Path", "OsStr", "CStr"]
                .iter()
                .any(|name| last.ident == name)
        }),
        _ => false,
    }
}

/// Looks through parentheses and the invisible groups `macro_rules!` puts around `$ty`.
pub(crate) fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => ungroup(&group.elem),
        Type::Paren(paren) => ungroup(&paren.elem),
        other => other,
    }
}

/// Tokens as source text, spaced as people write Rust rather than one space between every
/// token: for messages, and for the type bounds serde reads back from strings.
pub(crate) fn source_text(tokens: &impl ToTokens) -> String {
    let mut text = String::new();
    write_source(tokens.to_token_stream(), &mut text);
    text
}

/// Appends `tokens` to `text`; see [`source_text`].
fn write_source(tokens: TokenStream, text: &mut String) {
    // A word after a word needs a space; so does anything after a keyword like `as` or `dyn`.
    let mut after_word = false;
    let mut after_keyword = false;
    for token in tokens {
        if after_keyword {
            text.push(' ');
        }
        after_keyword = false;
        match token {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => ("{ ", " }"),
                    Delimiter::None => ("", ""),
                };
                text.push_str(open);
                write_source(group.stream(), text);
                text.push_str(close);
                after_word = false;
            }
            TokenTree::Punct(punct) => {
                let spaced = matches!(punct.as_char(), '+' | '=');
                if spaced {
                    text.push(' ');
                }
                text.push(punct.as_char());
                if spaced || matches!(punct.as_char(), ',' | ';') {
                    text.push(' ');
                }
                after_word = false;
            }
            word => {
                let word = word.to_string();
                if after_word && !after_keyword {
                    text.push(' ');
                }
                after_keyword = matches!(word.as_str(), "as" | "dyn" | "impl" | "for" | "mut");
                text.push_str(&word);
                after_word = !after_keyword;
            }
        }
    }
}
