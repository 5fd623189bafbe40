//! The link-time registry of actions: each `#[offline_action]` submits a const
//! [`Registration`] through `inventory`, and replay finds actions by name here, so a queued
//! call can run after a restart without any closure surviving.

use crate::context::ActionContext;
use crate::{boxed, decode, Action, ActionKind, BoxFuture, ClassifyError, SyncError};
use core::fmt;
use core::time::Duration;
use std::collections::HashMap;
use std::sync::OnceLock;

/// A registered action: its name and version, where it is defined, and how to replay it.
pub struct Registration {
    /// The stable action name.
    pub name: &'static str,
    /// The action's current version.
    pub version: u32,
    /// Read or write.
    pub kind: ActionKind,
    /// `module_path!()` of the definition.
    pub module_path: &'static str,
    /// `file!()` of the definition.
    pub file: &'static str,
    /// `line!()` of the definition.
    pub line: u32,
    pub(crate) replay: ReplayFn,
}

/// Runs a queued call's server body from its JSON parameters.
pub(crate) type ReplayFn =
    fn(params: String, context: ActionContext) -> BoxFuture<'static, Attempt>;

/// The result of running a server body from JSON.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// The server accepted it; the JSON response.
    Done(String),
    /// The parameters do not deserialize into this build's params type.
    BadParams(String),
    /// The server body failed.
    Failed {
        transient: bool,
        retry_after: Option<Duration>,
        message: String,
    },
}

impl Registration {
    /// The registration of action `A`, defined at `module_path`, `file`:`line`.
    pub const fn new<A: Action>(module_path: &'static str, file: &'static str, line: u32) -> Self {
        Self {
            name: A::NAME,
            version: A::VERSION,
            kind: A::KIND,
            module_path,
            file,
            line,
            replay: replay::<A>,
        }
    }

    /// The registration `#[offline_action]` generates (see `__private::registration`).
    pub(crate) const fn from_entry(
        entry: crate::__private::Entry,
        module_path: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        Self {
            name: entry.name,
            version: entry.version,
            kind: entry.kind,
            module_path,
            file,
            line,
            replay: entry.replay,
        }
    }

    /// `file:line` of the definition.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("module_path", &self.module_path)
            .field("file", &self.file)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

inventory::collect!(Registration);

/// The [`ReplayFn`] of action `A`, decoding its parameters by field name.
pub(crate) fn replay<A: Action>(
    params: String,
    context: ActionContext,
) -> BoxFuture<'static, Attempt> {
    replay_decoded::<A>(params, context, decode::by_name)
}

/// The [`ReplayFn`] of action `A`, whose parameters struct's fields carry no `#[serde(...)]`
/// attribute, decoding them by position (see [`decode::by_position`]).
pub(crate) fn replay_by_position<A: Action>(
    params: String,
    context: ActionContext,
) -> BoxFuture<'static, Attempt> {
    replay_decoded::<A>(params, context, decode::by_position)
}

/// Runs action `A`'s server body on the parameters `decode` reads from `params`.
///
/// Compiled once per action in the user's crate, so it holds only what depends on `A` itself:
/// decoding is generic over the parameters type alone, and turning the outcome into an
/// [`Attempt`] over the success and error types alone, which actions often share. Only
/// [`server_boxed`] holds the body's future (see [`replay_started`]).
fn replay_decoded<A: Action>(
    params: String,
    context: ActionContext,
    decode: fn(&str) -> Result<A::Params, serde_json::Error>,
) -> BoxFuture<'static, Attempt> {
    replay_started(context, move |context: &ActionContext| {
        Ok(server_boxed::<A>(context, decode(&params)?))
    })
}

/// Action `A`'s server body on `params`, running in `context`, boxed.
fn server_boxed<A: Action>(
    context: &ActionContext,
    params: A::Params,
) -> BoxFuture<'static, Result<A::Output, A::Error>> {
    boxed(context.clone().scope(A::server(params)))
}

/// Runs the body that `start` decodes the parameters for and starts, and makes its outcome an
/// [`Attempt`].
///
/// `start` boxes the body's future, so the type of this future does not contain it. When a
/// body is edited, rustc recompiles every codegen unit with code for a type that contains the
/// body's future, and those units hold that code for every action of the module: keeping the
/// body's future out of the replay code keeps an edit from recompiling it.
fn replay_started<T, E, S>(context: ActionContext, start: S) -> BoxFuture<'static, Attempt>
where
    T: serde::Serialize + 'static,
    E: ClassifyError + fmt::Display + 'static,
    S: FnOnce(&ActionContext) -> Result<BoxFuture<'static, Result<T, E>>, serde_json::Error>
        + crate::MaybeSend
        + 'static,
{
    // Decoded inside the future, whose panics replay catches, like the body's.
    boxed(async move {
        let body = match start(&context) {
            Ok(body) => body,
            Err(e) => return Attempt::BadParams(e.to_string()),
        };
        attempt(body.await, &context)
    })
}

/// The attempt a server body's outcome makes.
fn attempt<T, E>(outcome: Result<T, E>, context: &ActionContext) -> Attempt
where
    T: serde::Serialize,
    E: ClassifyError + fmt::Display,
{
    match outcome {
        Ok(output) => match serde_json::to_string(&output) {
            Ok(json) => Attempt::Done(json),
            Err(e) => Attempt::Failed {
                transient: false,
                retry_after: None,
                message: format!("the response could not be encoded as JSON: {e}"),
            },
        },
        Err(error) => Attempt::Failed {
            transient: error.is_transient(),
            retry_after: error.retry_after().or(context.noted_retry_after()),
            message: error.to_string(),
        },
    }
}

/// Every action linked into this program, by name.
#[derive(Debug)]
pub struct Registry {
    by_name: HashMap<&'static str, &'static Registration>,
}

impl Registry {
    /// The registry of this program, built on first use. Fails if two actions share a name,
    /// naming both definitions.
    pub fn global() -> Result<&'static Registry, SyncError> {
        static GLOBAL: OnceLock<Result<Registry, [&'static Registration; 2]>> = OnceLock::new();
        match GLOBAL.get_or_init(|| Registry::from_iter(inventory::iter::<Registration>)) {
            Ok(registry) => Ok(registry),
            Err([first, second]) => Err(SyncError::DuplicateAction {
                name: first.name.to_owned(),
                first: first.location(),
                second: second.location(),
            }),
        }
    }

    fn from_iter(
        registrations: impl IntoIterator<Item = &'static Registration>,
    ) -> Result<Self, [&'static Registration; 2]> {
        let mut by_name = HashMap::new();
        // Sorted so that the error names the same pair whatever the link order was.
        let mut all: Vec<_> = registrations.into_iter().collect();
        all.sort_by_key(|r| (r.name, r.file, r.line));
        for registration in all {
            if let Some(first) = by_name.insert(registration.name, registration) {
                return Err([first, registration]);
            }
        }
        Ok(Self { by_name })
    }

    /// The action registered under `name`.
    pub fn get(&self, name: &str) -> Option<&'static Registration> {
        self.by_name.get(name).copied()
    }

    /// Every registered action, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &'static Registration> + '_ {
        self.by_name.values().copied()
    }

    /// How many actions are registered.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// `true` if no action is registered.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
