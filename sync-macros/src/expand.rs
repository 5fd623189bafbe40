//! Writes the expansion: the rewritten function, its parameters struct, its action type and
//! the action's registration. Falls back to the function as written when a check fails.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, Ident, Item, ItemFn, ItemImpl, LitInt, LitStr, Pat, PatIdent, PatType,
};

use crate::args::{Args, Store};
use crate::impl_block::{self, Owner};
use crate::owned;
use crate::signature::{self, source_text, ActionFn, Arg, Shape};
use crate::valid::{self, Errors};

/// Runs the whole pipeline. On any error, returns the item as written followed by the errors,
/// the way tokio-macros does, so callers and IDEs see only the real problem.
pub(crate) fn offline_action(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args, item.clone()) {
        Ok(expanded) => expanded,
        Err(error) => {
            let mut tokens = impl_block::without_markers(item);
            tokens.extend(error.into_compile_error());
            tokens
        }
    }
}

/// Parses, lowers and checks, collecting every error, then writes the expansion.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    if let Ok(item) = syn::parse2::<ItemImpl>(item.clone()) {
        return impl_block::expand(args, item);
    }
    let mut errors = Errors::default();
    let args = errors.check(syn::parse2::<Args>(args));
    let func = errors.check(parse_fn(item)).map(signature::lower);
    if let Some(func) = &func {
        errors.check(valid::check(func));
    }
    errors.finish()?;
    let (Some(args), Some(func)) = (args, func) else {
        unreachable!("a step that produced nothing has pushed an error");
    };
    Ok(Expansion::new(&args, &func, None).into_token_stream())
}

/// The expansion of an associated fn of `owner` marked `#[offline_action(args)]`: what goes
/// inside the `impl` block (the rewritten fn and its body), and what goes next to it.
pub(crate) fn expand_associated(
    args: TokenStream,
    item: ItemFn,
    owner: &Owner,
) -> syn::Result<(TokenStream, TokenStream)> {
    let mut errors = Errors::default();
    let args = errors.check(syn::parse2::<Args>(args));
    let func = signature::lower(item);
    errors.check(valid::check(&func));
    errors.finish()?;
    let Some(args) = args else {
        unreachable!("a step that produced nothing has pushed an error");
    };
    let expansion = Expansion::new(&args, &func, Some(owner));
    let mut inside = expansion.function();
    inside.extend(expansion.body_fn());
    Ok((inside, expansion.items()))
}

/// Parses the item as a function, or explains that the attribute belongs on one.
fn parse_fn(item: TokenStream) -> syn::Result<ItemFn> {
    syn::parse2::<ItemFn>(item.clone()).map_err(|_| {
        let span = match syn::parse2::<Item>(item) {
            Ok(Item::Struct(item)) => item.struct_token.span,
            Ok(Item::Enum(item)) => item.enum_token.span,
            Ok(Item::Union(item)) => item.union_token.span,
            Ok(Item::Trait(item)) => item.trait_token.span,
            Ok(Item::Impl(item)) => item.impl_token.span,
            Ok(Item::Mod(item)) => item.mod_token.span,
            Ok(Item::Const(item)) => item.const_token.span,
            Ok(Item::Static(item)) => item.static_token.span,
            Ok(Item::Type(item)) => item.type_token.span,
            Ok(Item::Use(item)) => item.use_token.span,
            Ok(Item::ForeignMod(item)) => item.abi.extern_token.span,
            Ok(item) => item.span(),
            Err(_) => Span::call_site(),
        };
        syn::Error::new(
            span,
            "`#[offline_action]` goes on an `async fn` with a body",
        )
    })
}

/// Everything the generated items share.
struct Expansion<'a> {
    /// The checked function.
    func: &'a ActionFn,
    /// The path of the runtime crate, `::sync_runtime` unless `crate = ...` says otherwise.
    krate: TokenStream,
    /// The action's stable name.
    name: LitStr,
    /// The action's version, an unsuffixed literal.
    version: LitInt,
    /// `true` for `query`.
    query: bool,
    /// The user's local handler (with a leading `Self` resolved for an associated fn).
    local: Option<TokenStream>,
    /// `scope = expr`: the ordering scope, an expression over the arguments.
    scope: Option<&'a syn::Expr>,
    /// The type whose `impl` block holds the function, for an associated fn.
    owner: Option<&'a Owner>,
    /// `store_in`/`store_all_in` with `key` and `within`: where the answer is written.
    store: Option<(&'a Store, &'a syn::Expr, Option<&'a syn::Expr>)>,
    /// The parameters struct.
    params: Ident,
    /// The action type.
    action: Ident,
    /// The function's return type.
    output: TokenStream,
    /// Where the return type is: the futures of both paths are spanned there, so a body whose
    /// future does not fit (not `Send`, say) is reported on it.
    output_span: Span,
}

impl<'a> Expansion<'a> {
    /// Resolves names and defaults.
    fn new(args: &'a Args, func: &'a ActionFn, owner: Option<&'a Owner>) -> Self {
        let ident = func.ident();
        let fn_name = ident.unraw().to_string();
        // An associated fn's names start with its type's: `Api::add` is `ApiAddAction`.
        let (pascal, default_name) = match owner {
            Some(owner) => (
                format!("{}{}", owner.name.unraw(), pascal_case(&fn_name)),
                format!("{}::{fn_name}", owner.name.unraw()),
            ),
            None => (pascal_case(&fn_name), fn_name.clone()),
        };
        Expansion {
            func,
            owner,
            store: args
                .store
                .as_ref()
                .zip(args.key.as_ref())
                .map(|(store, key)| (store, key, args.within.as_ref())),
            krate: args
                .krate
                .as_ref()
                .map_or_else(|| quote!(::sync_runtime), ToTokens::to_token_stream),
            name: args
                .name
                .clone()
                .unwrap_or_else(|| LitStr::new(&default_name, ident.span())),
            version: args.version.as_ref().map_or_else(
                || LitInt::new("1", Span::call_site()),
                |version| LitInt::new(&version.value.to_string(), version.span),
            ),
            query: args.query.is_some(),
            scope: args.scope.as_ref(),
            local: args.local.as_ref().map(|path| match owner {
                Some(owner) => owner.resolve_self(path),
                None => path.to_token_stream(),
            }),
            params: args
                .params
                .clone()
                .unwrap_or_else(|| format_ident!("{pascal}Params", span = ident.span())),
            action: format_ident!("{pascal}Action", span = ident.span()),
            // `valid::check` has made sure there is a return type.
            output: func.output.to_token_stream(),
            output_span: func.output.span(),
        }
    }

    /// `::sync_runtime::__private` with every token at `span`, so errors raised through the
    /// hidden traits point at the user's code.
    fn private(&self, span: Span) -> TokenStream {
        let krate = respan(self.krate.clone(), span);
        quote_spanned!(span=> #krate::__private)
    }

    /// The function, now routing every call through the sync service.
    fn function(&self) -> TokenStream {
        let func = self.func;
        let mut sig = func.sig.clone();
        sig.inputs = func
            .args()
            .map(|arg| {
                FnArg::Typed(PatType {
                    attrs: Vec::new(),
                    pat: Box::new(Pat::Ident(PatIdent {
                        attrs: Vec::new(),
                        by_ref: None,
                        mutability: None,
                        ident: hidden(&arg.ident()),
                        subpat: None,
                    })),
                    colon_token: syn::token::Colon::default(),
                    ty: arg.ty.clone(),
                })
            })
            .collect();
        let attrs = &func.attrs;
        let vis = &func.vis;
        let private = self.private(Span::call_site());
        let action = &self.action;
        let params = &self.params;
        let fields = func.args().map(|arg| {
            let field = arg.ident();
            let value = hidden(&field);
            let owned = match &arg.shape {
                Shape::Owned | Shape::MutRef(_) => value.to_token_stream(),
                Shape::Nested(part) => owned::to_owned(part, value.to_token_stream(), &private, 0),
                Shape::Str(reference)
                | Shape::Slice(reference, _)
                | Shape::Cloned(reference, _)
                | Shape::ToOwned(reference, _) => {
                    let elem = &reference.elem;
                    quote!(#private::Own::<#elem>::own(#value))
                }
            };
            quote!(#field: #owned)
        });
        // `unchecked` brings the fallbacks that keep a type that failed its check from being
        // reported again here (see `checks`).
        quote! {
            #(#attrs)*
            #vis #sig {
                #[allow(unused_imports)]
                use #private::unchecked::*;
                #private::Checked::<#action>::execute(#params { #(#fields),* }).await
            }
        }
    }

    /// The argument checks, one per argument, each spanned at its type: the one place where an
    /// argument type that does not fit is reported. The other items hold only when these pass.
    fn checks(&self) -> TokenStream {
        let cfgs = self.cfgs();
        let args = self.func.args().map(|arg| {
            let span = arg.ty.span();
            let private = self.private(span);
            let ty = field_type(arg);
            quote_spanned!(span=> #private::check_arg::<#ty>();)
        });
        let output = |part: ResultPart| {
            let span = part.span(self.func);
            let private = self.private(span);
            let check = Ident::new(part.check(), span);
            let output = respan_located(self.output.clone(), span);
            let ty = self.result_part(part);
            quote_spanned!(span=> #private::#check::<#output, #ty>();)
        };
        let (ok, err) = (output(ResultPart::Ok), output(ResultPart::Err));
        quote! {
            #(#cfgs)*
            const _: () = {
                #(#args)*
                #ok
                #err
            };
        }
    }

    /// The success or error type: as written inside the return type when it shows it
    /// (`Result<T, E>`, `anyhow::Result<T>`), else the return type's projection.
    fn result_part(&self, part: ResultPart) -> TokenStream {
        if let Some(ty) = part.as_written(self.func) {
            return ty.to_token_stream();
        }
        let span = part.span(self.func);
        let output = respan_located(self.output.clone(), span);
        let private = self.private(span);
        let name = Ident::new(part.name(), span);
        quote_spanned!(span=> <#output as #private::ActionResult>::#name)
    }

    /// The checks as bounds, for the items that hold only when they pass. `for<'__a>` keeps
    /// rustc from rejecting them as "trivial bounds" and makes them assumptions inside the item.
    fn arg_bounds(&self) -> Vec<TokenStream> {
        let private = self.private(Span::call_site());
        let mut seen = std::collections::HashSet::new();
        self.func
            .args()
            .map(field_type)
            // Two arguments of one type need one bound, and a type known to pass needs none.
            .filter(|ty| seen.insert(ty.to_string()) && !known_to_pass(ty))
            .map(|ty| quote!(for<'__a> #ty: #private::ActionArg))
            .collect()
    }

    /// The struct the arguments are queued in.
    fn params_struct(&self) -> TokenStream {
        let vis = &self.func.vis;
        let cfgs = self.cfgs();
        let private = self.private(Span::call_site());
        let serde_crate = format!("{}::__private::serde", source_text(&self.krate));
        let doc = format!(
            " The arguments of [`{}`], as queued for replay.",
            self.doc_path()
        );
        let params = &self.params;
        let mut seen = std::collections::HashSet::new();
        let fields = self.func.args().map(|arg| {
            let field = arg.ident();
            let ty = field_type(arg);
            let docs = if arg.attrs.iter().any(|attr| attr.path().is_ident("doc")) {
                TokenStream::new()
            } else {
                let doc = format!(
                    " The `{}` argument of [`{}`].",
                    field.unraw(),
                    self.doc_path()
                );
                quote!(#[doc = #doc])
            };
            let attrs = &arg.attrs;
            // As in `arg_bounds`: one bound per type, none for a type known to pass.
            let bound = if seen.insert(ty.to_string()) && !known_to_pass(&ty) {
                queueable_bound(&ty, &private, arg.ty.span())
            } else {
                TokenStream::new()
            };
            quote! {
                #docs
                #(#attrs)*
                #bound
                #vis #field: #ty
            }
        });
        // The fields are the arguments: a leading `_` marks one the body ignores, not a private
        // field, and the field must stay public for callers to build the struct.
        let clone_and_debug = self.params_clone_and_debug();
        let underscore_fields = self
            .func
            .args()
            .any(|arg| arg.ident().unraw().to_string().starts_with('_'))
            .then(|| quote!(#[allow(clippy::pub_underscore_fields)]));
        quote! {
            #[doc = #doc]
            #(#cfgs)*
            #underscore_fields
            #[derive(#private::serde::Serialize, #private::serde::Deserialize)]
            #[serde(crate = #serde_crate)]
            #vis struct #params {
                #(#fields,)*
            }
            #clone_and_debug
        }
    }

    /// `Clone` and `Debug` for the parameters struct, holding only when every argument type
    /// passes its check (a derive would report a failed one again).
    fn params_clone_and_debug(&self) -> TokenStream {
        let cfgs: Vec<_> = self.cfgs().collect();
        let params = &self.params;
        let bounds = where_clause(self.arg_bounds());
        let fields: Vec<Ident> = self.func.args().map(Arg::ident).collect();
        let names = fields.iter().map(|field| field.unraw().to_string());
        let name = params.to_string();
        let formatter = Ident::new("f", Span::mixed_site());
        quote! {
            #(#cfgs)*
            impl ::core::clone::Clone for #params #bounds {
                fn clone(&self) -> Self {
                    Self { #(#fields: ::core::clone::Clone::clone(&self.#fields),)* }
                }
            }
            #(#cfgs)*
            impl ::core::fmt::Debug for #params #bounds {
                fn fmt(&self, #formatter: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    #formatter.debug_struct(#name)
                        #(.field(#names, &self.#fields))*
                        .finish()
                }
            }
        }
    }

    /// The zero-sized action type.
    fn action_type(&self) -> TokenStream {
        let vis = &self.func.vis;
        let cfgs = self.cfgs();
        let doc = format!(" The offline action behind [`{}`].", self.doc_path());
        let action = &self.action;
        quote! {
            #[doc = #doc]
            #(#cfgs)*
            #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug)]
            #vis struct #action;
        }
    }

    /// The `Action` impl: name, version, kind, types, the online and the offline path.
    fn action_impl(&self) -> TokenStream {
        let cfgs = self.cfgs();
        let private = self.private(Span::call_site());
        let action = &self.action;
        let params = &self.params;
        let name = &self.name;
        let version = &self.version;
        let kind = if self.query {
            quote!(Query)
        } else {
            quote!(Mutation)
        };
        let output = &self.output;
        let (ok, err) = (
            self.result_part(ResultPart::Ok),
            self.result_part(ResultPart::Err),
        );
        let mut bounds = self.arg_bounds();
        if !known_to_pass(&ok) {
            bounds.push(quote!(for<'__a> #ok: #private::ActionOutput));
        }
        // Not even `String` is an error type (it needs `From<SyncError>`): always bounded.
        bounds.push(quote!(for<'__a> #err: #private::ActionError));
        let bounds = where_clause(bounds);
        let server = self.server();
        let local = self.local();
        let scope = self.scope();
        quote! {
            #(#cfgs)*
            impl #private::Action for #action #bounds {
                const NAME: &'static str = #name;
                const VERSION: u32 = #version;
                const KIND: #private::ActionKind = #private::ActionKind::#kind;
                type Params = #params;
                type Output = <#output as #private::ActionResult>::Ok;
                type Error = <#output as #private::ActionResult>::Err;
                #server
                #local
                #scope
            }
        }
    }

    /// `Action::scope`, for `scope = expr`: the expression, evaluated with each argument bound
    /// by reference to its field of the parameters struct.
    fn scope(&self) -> TokenStream {
        let Some(expr) = self.scope else {
            return TokenStream::new();
        };
        let params = &self.params;
        let params_var = Ident::new("params", Span::mixed_site());
        let fields = self.func.args().map(Arg::ident);
        // Spanned at the expression, so a value that cannot name a scope is reported there.
        let span = expr.span();
        let private = self.private(span);
        let key = quote_spanned!(span=> #private::scope_key(&(#expr)));
        quote! {
            fn scope(#params_var: &#params) -> ::std::string::String {
                #[allow(unused_variables)]
                let #params { #(#fields),* } = #params_var;
                #key
            }
        }
    }

    /// The type both paths return: a future of the function's return type.
    fn future(&self) -> TokenStream {
        let private = self.private(self.output_span);
        let output = &self.output;
        quote_spanned! {self.output_span=>
            impl ::core::future::Future<Output = #output> + #private::MaybeSend
        }
    }

    /// `Action::server`: the function's body, run on the arguments taken back out of the
    /// parameters struct.
    fn server(&self) -> TokenStream {
        let future = self.future();
        let params = &self.params;
        let body = &self.func.body.stmts;
        let lints = self.func.attrs.iter().filter_map(lint_for_body);
        let params_var = Ident::new("params", Span::mixed_site());
        // An associated fn's body stays in its `impl` block, where `Self` means what it wrote;
        // the arguments are passed to it there, so their `mut` belongs there too.
        let mutability = |arg: &Arg| {
            arg.binding
                .as_ref()
                .and_then(|binding| binding.mutability)
                .filter(|_| self.owner.is_none())
        };
        let body = match self.owner {
            Some(owner) => {
                let self_ty = &owner.self_ty;
                let body_fn = self.body_fn_ident();
                let args = self.func.args().map(Arg::ident);
                quote!(<#self_ty>::#body_fn(#(#args),*).await)
            }
            None => quote!(#(#body)*),
        };
        let lints: Vec<_> = match self.owner {
            Some(_) => Vec::new(),
            None => lints.collect(),
        };
        let (input, unpack) =
            if self.func.args().next().is_none() {
                (quote!(_), TokenStream::new())
            } else {
                let bindings = self
                    .func
                    .args()
                    .map(|arg| match (&arg.shape, &arg.binding) {
                        (Shape::Owned, Some(binding)) => {
                            let mutability = mutability(arg);
                            let ident = &binding.ident;
                            quote!(#mutability #ident)
                        }
                        _ => arg.ident().to_token_stream(),
                    });
                // Borrowed arguments are borrowed again from their owned fields, so the body sees
                // the types it was written for.
                let borrows = self.func.args().filter_map(|arg| {
                if let Shape::Nested(part) = &arg.shape {
                    let ident = arg.ident();
                    return Some(owned::borrow_back(part, &arg.ty, &ident, &ident, mutability(arg)));
                }
                let (Shape::Str(reference)
                | Shape::Slice(reference, _)
                | Shape::Cloned(reference, _)
                | Shape::ToOwned(reference, _)) = &arg.shape
                else {
                    return None;
                };
                let and = &reference.and_token;
                let elem = &reference.elem;
                let mutability = mutability(arg);
                let ident = arg.ident();
                Some(quote! {
                    let #mutability #ident: #and #elem = ::core::borrow::Borrow::borrow(&#ident);
                })
            });
                (
                    params_var.to_token_stream(),
                    quote! {
                        let #params { #(#bindings),* } = #params_var;
                        #(#borrows)*
                    },
                )
            };
        let run = match self.store {
            None => quote! {
                #unpack
                #body
            },
            Some((store, key, within)) => {
                let private = self.private(Span::call_site());
                let collection = &store.collection;
                let body = quote!(async move {
                    #unpack
                    #body
                });
                if store.list {
                    // `within` may name the arguments: bind copies of them for it.
                    let has_args = self.func.args().next().is_some();
                    let copies = within.filter(|_| has_args).map(|_| {
                        let fields = self.func.args().map(Arg::ident);
                        quote! {
                            #[allow(unused_variables)]
                            let #params { #(#fields),* } = ::core::clone::Clone::clone(&#params_var);
                        }
                    });
                    let within = within.map_or_else(|| quote!(|_| true), ToTokens::to_token_stream);
                    quote! {
                        #copies
                        #private::store_all_answers(#body, #collection, #key, #within).await
                    }
                } else {
                    quote!(#private::store_answer(#body, #collection, #key).await)
                }
            }
        };
        quote! {
            #(#lints)*
            fn server(#input: #params) -> #future {
                async move {
                    #run
                }
            }
        }
    }

    /// `Action::local`: the user's handler, or the generated stub.
    fn local(&self) -> TokenStream {
        let future = self.future();
        let params = &self.params;
        let params_var = Ident::new("params", Span::mixed_site());
        let Some(handler) = &self.local else {
            let private = self.private(Span::call_site());
            let stub = if self.query {
                quote!(cached_response)
            } else {
                quote!(queued)
            };
            return quote! {
                fn local(#params_var: #params) -> #future {
                    #private::#stub::<Self>(#params_var)
                }
            };
        };
        // Spanned at the handler's path, so a handler of the wrong shape is reported there.
        let span = handler.span();
        let private = self.private(span);
        let fields = self.func.args().map(Arg::ident);
        let input = if self.func.args().next().is_none() {
            quote!(_)
        } else {
            params_var.to_token_stream()
        };
        // The argument types are spelled out, so a handler taking others is reported against
        // them rather than as a mismatch inside the generated call; its result type is inferred
        // and then checked, once, against the function's.
        let types = self.func.args().map(field_type);
        let call = quote_spanned! {span=>
            #private::call_local::<_, (#(#types,)*), _>(#handler, (#(#params_var.#fields,)*))
        };
        quote! {
            fn local(#input: #params) -> #future {
                #call
            }
        }
    }

    /// The registration that lets replay find the action by name, even after a restart.
    fn registration(&self) -> TokenStream {
        let cfgs = self.cfgs();
        let action = &self.action;
        // Spanned at the function's name, so `line!()` is the line of the definition.
        let span = self.func.ident().span();
        let private = self.private(span);
        // Replay decodes the parameters by position, with less code per action, unless a
        // `#[serde(...)]` attribute on an argument (a rename, a default) needs them by name.
        let serde_attrs = self
            .func
            .args()
            .flat_map(|arg| &arg.attrs)
            .any(|attr| attr.path().is_ident("serde"));
        let entry = if serde_attrs {
            Ident::new("ENTRY_BY_NAME", span)
        } else {
            Ident::new("ENTRY", span)
        };
        let submit = quote_spanned! {span=>
            #private::inventory::submit! {
                #[allow(unused_imports)]
                use #private::unchecked::*;
                #private::registration(
                    #private::Checked::<#action>::#entry,
                    ::core::module_path!(),
                    ::core::file!(),
                    ::core::line!(),
                )
            }
        };
        quote! {
            #(#cfgs)*
            #submit
        }
    }

    /// The items next to the function: checks, parameters struct, action type and impl, and
    /// registration.
    fn items(&self) -> TokenStream {
        let mut tokens = self.checks();
        tokens.extend(self.params_struct());
        tokens.extend(self.action_type());
        tokens.extend(self.action_impl());
        tokens.extend(self.registration());
        tokens
    }

    /// How docs link to the function: `add`, or `Api::add` for an associated fn.
    fn doc_path(&self) -> String {
        let ident = self.func.ident();
        match self.owner {
            Some(owner) => format!("{}::{ident}", owner.name),
            None => ident.to_string(),
        }
    }

    /// The hidden associated fn that keeps an associated fn's body in its `impl` block.
    fn body_fn_ident(&self) -> Ident {
        format_ident!("__offline_action_{}", self.func.ident().unraw())
    }

    /// An associated fn's body, as written, in a hidden fn next to the rewritten one: the
    /// action's online path calls it, so `Self` and private items keep their meaning.
    fn body_fn(&self) -> TokenStream {
        let func = self.func;
        let mut sig = func.sig.clone();
        sig.ident = self.body_fn_ident();
        let cfgs = self.cfgs();
        let lints = func.attrs.iter().filter_map(lint_for_body);
        let body = &func.body;
        quote! {
            #(#cfgs)*
            #(#lints)*
            #[doc(hidden)]
            #sig #body
        }
    }

    /// The function's `#[cfg(...)]` attributes, which the generated items share.
    fn cfgs(&self) -> impl Iterator<Item = &Attribute> {
        self.func
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"))
    }
}

impl ToTokens for Expansion<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(self.function());
        tokens.extend(self.items());
    }
}

/// The field type that owns what the argument borrows.
fn field_type(arg: &Arg) -> TokenStream {
    let span = arg.ty.span();
    match &arg.shape {
        Shape::Str(_) => quote_spanned!(span=> ::std::string::String),
        Shape::Slice(_, elem) => quote_spanned!(span=> ::std::vec::Vec<#elem>),
        Shape::Cloned(_, elem) => elem.to_token_stream(),
        Shape::ToOwned(_, elem) => {
            quote_spanned!(span=> <#elem as ::std::borrow::ToOwned>::Owned)
        }
        // Reported, when it does not fit, at the argument's type.
        Shape::Nested(part) => respan_located(owned::owned_type(part), span),
        Shape::Owned | Shape::MutRef(_) => arg.ty.to_token_stream(),
    }
}

/// `where` and `bounds`, or nothing when there are none.
fn where_clause(bounds: Vec<TokenStream>) -> TokenStream {
    if bounds.is_empty() {
        TokenStream::new()
    } else {
        quote!(where #(#bounds,)*)
    }
}

/// Whether `ty` passes its check as an argument or a success type whatever the user's code:
/// `()`, a primitive, `String`, or an `Option`, `Vec` or `Box` of one, named by itself or by
/// a path from `std`, `alloc` or `core`.
///
/// Such a type gets no bound on the generated items: it would hold anyway, and each bound on
/// an impl slows rustc's checks of every body in it (for three arguments, bounds took a third
/// of the time rustc spends on an action before code generation). Should a crate shadow one
/// of these names with a type that fails, its check still reports it first.
fn known_to_pass(ty: &TokenStream) -> bool {
    syn::parse2::<syn::Type>(ty.clone()).is_ok_and(|ty| known_type(&ty))
}

/// See [`known_to_pass`].
fn known_type(ty: &syn::Type) -> bool {
    const PRIMITIVES: &[&str] = &[
        "bool", "char", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
        "i128", "isize", "f32", "f64", "String",
    ];
    const WRAPPERS: &[&str] = &["Option", "Vec", "Box"];
    match signature::ungroup(ty) {
        syn::Type::Tuple(tuple) => tuple.elems.is_empty(),
        syn::Type::Path(path) if path.qself.is_none() => {
            let segments = &path.path.segments;
            let from_std = segments.first().is_some_and(|first| {
                ["std", "alloc", "core"].contains(&first.ident.to_string().as_str())
            });
            if segments.len() > 1 && !from_std {
                return false;
            }
            let Some(last) = segments.last() else {
                return false;
            };
            let name = last.ident.to_string();
            match &last.arguments {
                syn::PathArguments::None => PRIMITIVES.contains(&name.as_str()),
                syn::PathArguments::AngleBracketed(args) if WRAPPERS.contains(&name.as_str()) => {
                    matches!(
                        args.args.first(),
                        Some(syn::GenericArgument::Type(inner)) if args.args.len() == 1 && known_type(inner)
                    )
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// `#[serde(bound = "for<'__a> Ty: ActionArg")]` for a field: the argument's check.
///
/// Serde's impls then hold only for queueable argument types, so a type that is not queueable
/// gets one error, with `ActionArg`'s message, where `Action::Params` requires them, instead of
/// errors from inside serde's derived code. The `for<'__a>` keeps rustc from rejecting the bound
/// on the impl itself when it does not hold ("trivial bounds"). The string is spanned at the
/// argument's type, where the error's label points; types naming `$crate` cannot be written in
/// a string and keep serde's own checks.
fn queueable_bound(ty: &TokenStream, private: &TokenStream, span: Span) -> TokenStream {
    let ty = source_text(ty);
    if ty.contains("$crate") {
        return TokenStream::new();
    }
    let bound = LitStr::new(
        &format!("for<'__a> {ty}: {}::ActionArg", source_text(private)),
        span,
    );
    quote!(#[serde(bound = #bound)])
}

/// The function's lint attribute as it applies to the body in `Action::server`.
///
/// `#[expect(...)]` becomes `#[allow(...)]` there: the function keeps the original, and an
/// expectation fulfilled in only one of the two places would warn in the other.
fn lint_for_body(attr: &Attribute) -> Option<Attribute> {
    let path = attr.path();
    if ["allow", "warn", "deny", "forbid"]
        .iter()
        .any(|lint| path.is_ident(lint))
    {
        return Some(attr.clone());
    }
    if !path.is_ident("expect") {
        return None;
    }
    let mut allow = attr.clone();
    if let syn::Meta::List(list) = &mut allow.meta {
        list.path = Ident::new("allow", list.path.span()).into();
    }
    Some(allow)
}

/// The same name, bound with `Span::mixed_site()` hygiene: the rewritten function's parameters
/// are only read by generated code, and clippy leaves bindings from macros alone.
fn hidden(ident: &Ident) -> Ident {
    let mut hidden = ident.clone();
    hidden.set_span(Span::mixed_site().located_at(ident.span()));
    hidden
}

/// `add_product` → `AddProduct`.
pub(crate) fn pascal_case(snake: &str) -> String {
    let mut pascal = String::with_capacity(snake.len());
    for word in snake.split('_').filter(|word| !word.is_empty()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            pascal.extend(first.to_uppercase());
            pascal.push_str(chars.as_str());
        }
    }
    // `_1st` would give `1st`, which cannot start an identifier.
    if !pascal.starts_with(|c: char| c.is_alphabetic()) {
        pascal.insert_str(0, "Fn");
    }
    pascal
}

/// The success or the error type of an action's return type.
#[derive(Clone, Copy)]
enum ResultPart {
    /// `T` in `Result<T, E>`.
    Ok,
    /// `E` in `Result<T, E>`.
    Err,
}

impl ResultPart {
    /// Its position among the return type's type arguments.
    fn index(self) -> usize {
        match self {
            ResultPart::Ok => 0,
            ResultPart::Err => 1,
        }
    }

    /// Its name in `ActionResult`.
    fn name(self) -> &'static str {
        match self {
            ResultPart::Ok => "Ok",
            ResultPart::Err => "Err",
        }
    }

    /// The function that checks it.
    fn check(self) -> &'static str {
        match self {
            ResultPart::Ok => "check_output",
            ResultPart::Err => "check_error",
        }
    }

    /// The type as written in the return type, when it shows: `T` and `E` in `Result<T, E>`,
    /// `T` in an alias like `anyhow::Result<T>` (the check makes sure it is the success type).
    fn as_written(self, func: &ActionFn) -> Option<&syn::Type> {
        let syn::Type::Path(path) = signature::ungroup(func.output.as_deref()?) else {
            return None;
        };
        let syn::PathArguments::AngleBracketed(args) = &path.path.segments.last()?.arguments else {
            return None;
        };
        args.args
            .iter()
            .filter_map(|arg| match arg {
                syn::GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .nth(self.index())
    }

    /// Where its check points: at the type as written, else at the whole return type.
    fn span(self, func: &ActionFn) -> Span {
        self.as_written(func)
            .map_or_else(|| func.output.span(), Spanned::span)
    }
}

/// `tokens` reported at `span`, still resolved where they were written.
fn respan_located(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            let located = token.span().located_at(span);
            if let TokenTree::Group(group) = &mut token {
                let mut respanned =
                    Group::new(group.delimiter(), respan_located(group.stream(), span));
                respanned.set_span(located);
                *group = respanned;
            } else {
                token.set_span(located);
            }
            token
        })
        .collect()
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &mut token {
                let mut respanned = Group::new(group.delimiter(), respan(group.stream(), span));
                respanned.set_span(span);
                *group = respanned;
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}
