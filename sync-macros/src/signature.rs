//! Lowers the annotated function into a model of what the expansion needs: its arguments,
//! how each one is stored, its return type and its body.
//!
//! Lowering never fails: whatever the macro cannot support is kept as written, for
//! [`valid`](crate::valid) to report with a precise span.

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::visit::Visit;
use syn::{
    AttrStyle, Attribute, Block, FnArg, GenericArgument, Ident, ItemFn, Pat, PatIdent,
    PathArguments, Receiver, ReturnType, Signature, Token, Type, TypeReference, Visibility,
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
    /// A type with borrows further in (`Option<&str>`, `Vec<&str>`, `&[&str]`, `(&str, u32)`),
    /// stored with each borrow owned (`Option<String>`, `Vec<String>`...).
    Nested(Part),
}

/// A piece of an argument type with borrows inside, and how it is stored owned.
pub(crate) enum Part {
    /// No borrow the macro can own: kept as written (and reported if it borrows).
    Owned(Box<Type>),
    /// `&T` where `T` borrows nothing, stored like a whole borrowed argument (see
    /// [`Shape`]); holds `T`.
    Leaf(TypeReference, Box<Type>),
    /// `Option<P>`, stored as `Option<owned P>`.
    Option(Box<Part>),
    /// `Vec<P>`, stored as `Vec<owned P>`.
    Vec(Box<Part>),
    /// `(P, Q, ...)`, stored as the tuple of the owned parts.
    Tuple(Vec<Part>),
    /// `&[P]` as the whole argument, stored as `Vec<owned P>`.
    RefSlice(TypeReference, Box<Part>),
    /// `&P` as the whole argument, stored as the owned `P`.
    RefTo(TypeReference, Box<Part>),
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
        return match part_of(ty, false) {
            Part::Owned(_) => Shape::Owned,
            nested => Shape::Nested(nested),
        };
    };
    if reference.mutability.is_some() {
        return Shape::MutRef(reference.clone());
    }
    if borrows(&reference.elem) {
        return Shape::Nested(part_of(ty, true));
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

/// Lowers a type with borrows inside; `top` when it is the whole argument, where a reference
/// may hold more borrows (the body's view of it is built in a local first).
fn part_of(ty: &Type, top: bool) -> Part {
    if !borrows(ty) {
        return Part::Owned(Box::new(ty.clone()));
    }
    match ungroup(ty) {
        Type::Reference(reference) if reference.mutability.is_none() => {
            if !borrows(&reference.elem) {
                return Part::Leaf(reference.clone(), reference.elem.clone());
            }
            if !top {
                return Part::Owned(Box::new(ty.clone()));
            }
            match ungroup(&reference.elem) {
                Type::Slice(slice) => {
                    Part::RefSlice(reference.clone(), Box::new(part_of(&slice.elem, false)))
                }
                elem => Part::RefTo(reference.clone(), Box::new(part_of(elem, false))),
            }
        }
        Type::Tuple(tuple) => Part::Tuple(
            tuple
                .elems
                .iter()
                .map(|elem| part_of(elem, false))
                .collect(),
        ),
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last();
            let inner = last.and_then(|last| match &last.arguments {
                PathArguments::AngleBracketed(args) if args.args.len() == 1 => {
                    match &args.args[0] {
                        GenericArgument::Type(inner) => Some(inner),
                        _ => None,
                    }
                }
                _ => None,
            });
            match (last.map(|last| last.ident.to_string()).as_deref(), inner) {
                (Some("Option"), Some(inner)) => Part::Option(Box::new(part_of(inner, false))),
                (Some("Vec"), Some(inner)) => Part::Vec(Box::new(part_of(inner, false))),
                _ => Part::Owned(Box::new(ty.clone())),
            }
        }
        _ => Part::Owned(Box::new(ty.clone())),
    }
}

/// Whether a type holds a reference (not counting the higher-ranked ones of `fn(&str)`).
fn borrows(ty: &Type) -> bool {
    struct Borrows(bool);
    impl<'ast> Visit<'ast> for Borrows {
        fn visit_type_reference(&mut self, _: &'ast TypeReference) {
            self.0 = true;
        }
        fn visit_type_bare_fn(&mut self, _: &'ast syn::TypeBareFn) {}
        fn visit_parenthesized_generic_arguments(
            &mut self,
            _: &'ast syn::ParenthesizedGenericArguments,
        ) {
        }
        fn visit_type(&mut self, ty: &'ast Type) {
            if !matches!(ty, Type::Macro(_)) {
                syn::visit::visit_type(self, ty);
            }
        }
    }
    let mut found = Borrows(false);
    found.visit_type(ty);
    found.0
}

/// The unsized types besides `str` and slices that arguments borrow. Sized types are stored as
/// they are, so a missing `Clone` is reported as such rather than through `ToOwned`.
pub(crate) fn is_unsized(elem: &Type) -> bool {
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
