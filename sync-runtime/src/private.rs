//! What `#[offline_action]` expands to. Not public API: names here may change in any release.

pub use crate::action::{Action, ActionKind};
pub use crate::erased::RegisteredErrorType;
pub use crate::maybe_send::MaybeSend;
pub use crate::registry::Registration;
pub use crate::service::SyncService;
pub use crate::SyncError;
pub use core::future::Future;
pub use inventory;
pub use serde;

use crate::context::ActionContext;
use crate::ClassifyError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Checked for every argument type of an action.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument of an `#[offline_action]` fn",
    label = "arguments are queued as JSON, so this type must implement `Serialize`, `Deserialize`, `Clone` and `Debug`",
    note = "derive them: `#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]`"
)]
pub trait ActionArg:
    Serialize + DeserializeOwned + Clone + core::fmt::Debug + MaybeSend + 'static
{
}
// `do_not_recommend` keeps the error on this trait's message instead of one error per
// missing supertrait.
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Clone + core::fmt::Debug + MaybeSend + 'static> ActionArg
    for T
{
}

/// Checked for an action's success type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by an `#[offline_action]` fn",
    label = "responses are cached as JSON, so this type must implement `Serialize` and `Deserialize`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait ActionOutput: Serialize + DeserializeOwned + MaybeSend + 'static {}
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + MaybeSend + 'static> ActionOutput for T {}

/// Checked for an action's error type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error type of an `#[offline_action]` fn",
    label = "the error type must implement `From<sync_runtime::SyncError>`, `sync_runtime::ClassifyError` and `Display`",
    note = "`From<SyncError>` lets \"queued\" and \"offline\" outcomes reach callers; `ClassifyError` tells retryable failures from permanent ones"
)]
pub trait ActionError:
    From<SyncError> + ClassifyError + core::fmt::Display + MaybeSend + 'static
{
}
#[diagnostic::do_not_recommend]
impl<E: From<SyncError> + ClassifyError + core::fmt::Display + MaybeSend + 'static> ActionError
    for E
{
}

/// What `scope = ...` may evaluate to: anything `Display`, whose text names the scope.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot name an ordering scope",
    label = "`scope = ...` must evaluate to something that implements `Display` (a string, a number, an id)",
    note = "the expression sees the arguments by reference: name a field that is `Display`, like `scope = product.id`, or build a string with `format!`"
)]
pub trait ScopeKey {
    /// The scope's name.
    fn scope_key(&self) -> String;
}

#[diagnostic::do_not_recommend]
impl<T: core::fmt::Display + ?Sized> ScopeKey for T {
    fn scope_key(&self) -> String {
        self.to_string()
    }
}

/// The ordering scope `scope = ...` evaluated to, as the queue stores it.
pub fn scope_key<T: ScopeKey + ?Sized>(value: &T) -> String {
    value.scope_key()
}

/// Splits an action's return type into its success and error types, so `Result` aliases work.
///
/// No bounds here: what the two types must implement is checked once each, by
/// [`check_output`] and [`check_error`], so a type that does not fit is reported once.
#[diagnostic::on_unimplemented(
    message = "an `#[offline_action]` fn must return `Result<T, E>`, not `{Self}`",
    label = "expected `Result<T, E>` (or an alias of it)"
)]
pub trait ActionResult {
    /// The success type.
    type Ok;
    /// The error type.
    type Err;
}

impl<T, E> ActionResult for Result<T, E> {
    type Ok = T;
    type Err = E;
}

// The checks. The macro calls each once per type, in a `const _`, spanned at the type in the
// user's signature: that call is the one place a type that does not fit is reported. Every other
// generated item holds only when the checks pass (its bounds repeat them, higher-ranked so that
// rustc treats them as assumptions), or falls back to the items of `unchecked`, so it reports
// nothing more.

/// Checks an argument type (as stored in the parameters struct).
pub const fn check_arg<T: ActionArg>() {}

/// Checks the success type `T` of the return type `R`. `T` is the type as the user wrote it
/// inside `R` when the macro can see it (the bounds that repeat this check must name it as
/// written: through the projection, rustc finds them ambiguous), else `R`'s projection.
pub const fn check_output<R: ActionResult<Ok = T>, T: ActionOutput>() {}

/// Checks the error type `E` of the return type `R`; see [`check_output`].
pub const fn check_error<R: ActionResult<Err = E>, E: ActionError>() {}

/// The items generated code reaches through an action type `A`, available only when `A`
/// implements `Action`, that is, when the checks passed. Otherwise the same names resolve to
/// the fallbacks of [`unchecked`], which report nothing: the failed check already did.
pub struct Checked<A>(core::marker::PhantomData<fn() -> A>);

impl<A: Action> Checked<A> {
    /// What the action's registration says about it, for a parameters struct whose fields
    /// carry no `#[serde(...)]` attribute: replay decodes them by position, with less code per
    /// action (see `decode::by_position`).
    pub const ENTRY: Entry = Entry::of::<A>(crate::registry::replay_by_position::<A>);

    /// What the action's registration says about it, for a parameters struct with
    /// `#[serde(...)]` attributes on its fields: replay decodes them by name, so that the
    /// attributes apply.
    pub const ENTRY_BY_NAME: Entry = Entry::of::<A>(crate::registry::replay::<A>);

    /// Runs a call through the current service: what the rewritten function awaits.
    ///
    /// The future is `Send` on every target, as the function's future was before the
    /// attribute: frameworks that require it (Leptos' `Action::new`, `Resource::new`) keep
    /// accepting the call. On wasm32 the browser's futures are not `Send`; there is one
    /// thread, so a `SendWrapper` can claim it safely (it would panic if ever moved to
    /// another thread).
    pub fn execute(params: A::Params) -> impl Future<Output = Result<A::Output, A::Error>> {
        // Called when the generated `async fn` is first polled, so `current()` is read then.
        let call = SyncService::current().run::<A>(params, None);
        #[cfg(target_arch = "wasm32")]
        let call = send_wrapper::SendWrapper::new(call);
        call
    }
}

/// Turns a borrowed argument into the owned value the parameters struct stores.
pub struct Own<T: ?Sized>(core::marker::PhantomData<fn(&T)>);

impl<T: ?Sized + ToOwned> Own<T> {
    /// `value.to_owned()`.
    pub fn own(value: &T) -> T::Owned {
        value.to_owned()
    }
}

/// What a registration knows about its action besides where it is defined.
pub struct Entry {
    pub(crate) name: &'static str,
    pub(crate) version: u32,
    pub(crate) kind: ActionKind,
    pub(crate) replay: crate::registry::ReplayFn,
}

impl Entry {
    const fn of<A: Action>(replay: crate::registry::ReplayFn) -> Self {
        Self {
            name: A::NAME,
            version: A::VERSION,
            kind: A::KIND,
            replay,
        }
    }
}

/// The registration of the action described by `entry`, defined at `module_path`,
/// `file`:`line`.
pub const fn registration(
    entry: Entry,
    module_path: &'static str,
    file: &'static str,
    line: u32,
) -> Registration {
    Registration::from_entry(entry, module_path, file, line)
}

/// The fallbacks of [`Checked`] and [`Own`], in scope in generated code. Rustc picks them only
/// when the inherent items do not apply, which happens only in a build that fails anyway, on the
/// check that explains why; they exist so that nothing else fails with it.
pub mod unchecked {
    use super::{Checked, Entry, Own};
    use crate::registry::{Attempt, ReplayFn};
    use crate::{boxed, ActionKind};

    /// The fallbacks of [`Checked`].
    pub trait UncheckedAction {
        /// A placeholder entry.
        const ENTRY: Entry = UNCHECKED_ENTRY;

        /// A placeholder entry.
        const ENTRY_BY_NAME: Entry = UNCHECKED_ENTRY;

        /// A future of whatever type the function returns; never built (see [`FailedCheck`]).
        fn execute<P, R>(_params: P) -> core::future::Pending<R> {
            let () = FailedCheck::<R>::STOP;
            core::future::pending()
        }
    }

    impl<A> UncheckedAction for Checked<A> {}

    /// The fallback of [`Own`].
    pub trait UnownedArg<T: ?Sized> {
        /// A value of whatever type the field has; never built (see [`FailedCheck`]).
        fn own<O>(_value: &T) -> O {
            let () = FailedCheck::<O>::STOP;
            unreachable!("a type that failed its check is never owned")
        }
    }

    impl<T: ?Sized> UnownedArg<T> for Own<T> {}

    /// A fallback is only picked in a build that already failed its checks, which never gets
    /// as far as code generation. Should one ever be picked in a build that passed them, its
    /// code generation evaluates `STOP` and fails the build, rather than a call hanging.
    pub struct FailedCheck<T>(core::marker::PhantomData<T>);

    impl<T> FailedCheck<T> {
        /// Fails the build where it is evaluated.
        pub const STOP: () = panic!("an `#[offline_action]` check failed; see the errors above");
    }

    const UNCHECKED_ENTRY: Entry = Entry {
        name: "",
        version: 0,
        kind: ActionKind::Mutation,
        replay: UNCHECKED_REPLAY,
    };

    const UNCHECKED_REPLAY: ReplayFn =
        |_, _| boxed(async { Attempt::BadParams("this action failed its checks".into()) });
}

/// A function usable as an action's `local = path` handler: an `async fn` taking the action's
/// arguments (owned) and returning the action's `Result`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the local handler of this `#[offline_action]`",
    label = "expected an `async fn` taking the action's arguments as owned values `{Args}` and returning `{R}`"
)]
pub trait LocalHandler<Args, R> {
    /// The handler's future.
    type Future: Future<Output = R> + MaybeSend;
    /// Calls the handler with the arguments as a tuple.
    fn call_with(&self, args: Args) -> Self::Future;
}

macro_rules! local_handler_for_arity {
    ($($arg:ident)*) => {
        #[diagnostic::do_not_recommend]
        impl<Func, Fut, R, $($arg,)*> LocalHandler<($($arg,)*), R> for Func
        where
            Func: Fn($($arg),*) -> Fut,
            Fut: Future<Output = R> + MaybeSend,
        {
            type Future = Fut;
            #[allow(non_snake_case)]
            fn call_with(&self, ($($arg,)*): ($($arg,)*)) -> Fut {
                (self)($($arg),*)
            }
        }
    };
}

local_handler_for_arity!();
local_handler_for_arity!(A1);
local_handler_for_arity!(A1 A2);
local_handler_for_arity!(A1 A2 A3);
local_handler_for_arity!(A1 A2 A3 A4);
local_handler_for_arity!(A1 A2 A3 A4 A5);
local_handler_for_arity!(A1 A2 A3 A4 A5 A6);
local_handler_for_arity!(A1 A2 A3 A4 A5 A6 A7);
local_handler_for_arity!(A1 A2 A3 A4 A5 A6 A7 A8);
local_handler_for_arity!(A1 A2 A3 A4 A5 A6 A7 A8 A9);
local_handler_for_arity!(A1 A2 A3 A4 A5 A6 A7 A8 A9 A10);
local_handler_for_arity!(A1 A2 A3 A4 A5 A6 A7 A8 A9 A10 A11);
local_handler_for_arity!(A1 A2 A3 A4 A5 A6 A7 A8 A9 A10 A11 A12);

/// Calls a user's local handler, checking its signature against the action's.
pub fn call_local<H, Args, R>(handler: H, args: Args) -> H::Future
where
    H: LocalHandler<Args, R>,
{
    handler.call_with(args)
}

/// `store_in`: runs an action's body and writes its answer to `collection`, under
/// `key(&answer)`, with the action's outcome.
pub async fn store_answer<T, E>(
    body: impl Future<Output = Result<T, E>>,
    collection: &'static str,
    key: impl Fn(&T) -> String,
) -> Result<T, E>
where
    T: serde::Serialize + DeserializeOwned,
    E: From<SyncError>,
{
    let answer = body.await?;
    if let Some(ctx) = ActionContext::current() {
        ctx.collection::<T>(collection)
            .put(key(&answer), &answer)
            .await?;
    }
    Ok(answer)
}

/// `store_all_in`: runs an action's body and makes its list answer the records of
/// `collection` for which `within` holds (see [`Collection::refresh`](crate::Collection::refresh)).
pub async fn store_all_answers<L, T, E>(
    body: impl Future<Output = Result<L, E>>,
    collection: &'static str,
    key: impl Fn(&T) -> String,
    within: impl Fn(&T) -> bool,
) -> Result<L, E>
where
    for<'a> &'a L: IntoIterator<Item = &'a T>,
    T: serde::Serialize + DeserializeOwned,
    E: From<SyncError>,
{
    let answer = body.await?;
    if let Some(ctx) = ActionContext::current() {
        ctx.collection::<T>(collection)
            .refresh(&answer, key, within)
            .await?;
    }
    Ok(answer)
}

/// The generated local handler of a query without `local = ...`: the response cached for these
/// parameters while online, or [`SyncError::NotCached`].
pub async fn cached_response<A: Action>(params: A::Params) -> Result<A::Output, A::Error> {
    match ActionContext::current() {
        Some(ctx) => ctx.service().cached::<A>(&params).await,
        None => Err(SyncError::NotCached { action: A::NAME }.into()),
    }
}

/// The generated local handler of a mutation without `local = ...`: [`SyncError::Queued`] with
/// the id the action is queued under.
pub fn queued<A: Action>(_params: A::Params) -> Queued<A> {
    Queued(core::marker::PhantomData)
}

/// The future [`queued`] returns. Not an `async fn`, so that each action adds only a call of
/// the runtime's (non-generic) `queued_error` to the user's crate.
pub struct Queued<A>(core::marker::PhantomData<fn() -> A>);

impl<A: Action> Future for Queued<A> {
    type Output = Result<A::Output, A::Error>;

    fn poll(
        self: core::pin::Pin<&mut Self>,
        _: &mut core::task::Context<'_>,
    ) -> core::task::Poll<Self::Output> {
        // Read when polled, inside the action's scope (not when the stub is called).
        core::task::Poll::Ready(Err(queued_error(A::NAME).into()))
    }
}

fn queued_error(action: &'static str) -> SyncError {
    match ActionContext::current() {
        Some(ctx) => {
            ctx.mark_queued();
            SyncError::Queued {
                action,
                id: ctx.id(),
            }
        }
        None => SyncError::NotCached { action },
    }
}
