//! The runtime's error type, and the trait that sorts a user's errors into transient and permanent.

use crate::ActionId;
use core::time::Duration;

/// Everything that can go wrong inside the runtime.
///
/// A user's error type converts from this one (`impl From<SyncError> for AppError`), so the
/// outcomes the runtime produces ("queued", "offline and not cached") reach callers through
/// the action's own `Result`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The call was made offline and is queued; it will run on the server once the
    /// connection returns. Carries the queued action's id, so a UI can show "will sync".
    #[error("`{action}` is queued as {id} and will be sent when the connection returns")]
    Queued {
        /// The action's registered name.
        action: &'static str,
        /// The id the action will be replayed with.
        id: ActionId,
    },
    /// On the server: a concurrent copy of this action claimed its id and the database could
    /// not make this request wait for it (a serialization failure or a deadlock). Nothing was
    /// applied by this request; retrying it answers with the recorded response. Transient.
    #[error("action {id} is being applied by a concurrent request; retry it")]
    ActionInProgress {
        /// The action's id.
        id: ActionId,
    },
    /// A query was made offline and no response for these parameters was ever cached.
    #[error("`{action}` is not available offline: no response for these parameters was cached while online")]
    NotCached {
        /// The action's registered name.
        action: &'static str,
    },
    /// Two actions were registered under the same name.
    #[error("the action name `{name}` is registered twice, at {first} and at {second}; give one of them `#[offline_action(name = \"...\")]`")]
    DuplicateAction {
        /// The shared name.
        name: String,
        /// `file:line` of one registration.
        first: String,
        /// `file:line` of the other.
        second: String,
    },
    /// No action with this name is registered in this build.
    #[error("no action named `{name}` is registered in this build")]
    UnknownAction {
        /// The name that was looked up.
        name: String,
    },
    /// Parameters or a response could not be turned into JSON or back.
    #[error("could not {what}: {source}")]
    Serde {
        /// What was being done, e.g. "encode the parameters of `add_product`".
        what: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service was configured twice.
    #[error("the sync service is already configured; `SyncService::builder().install()` may run once per process")]
    AlreadyConfigured,
    /// A replay was requested while one is already running; the running one will pick up the
    /// work.
    #[error("a replay is already running")]
    ReplayInProgress,
}

impl SyncError {
    pub(crate) fn serde(what: impl Into<String>, source: serde_json::Error) -> Self {
        Self::Serde {
            what: what.into(),
            source,
        }
    }
}

/// A failure of a [`Store`](crate::Store) backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not read or write.
    #[error("the local store failed to {operation}: {message}")]
    Backend {
        /// What the store was doing.
        operation: &'static str,
        /// The backend's own description.
        message: String,
    },
    /// The store's file or database holds data this version cannot read.
    #[error("the local store at {location} cannot be used: {reason}")]
    Incompatible {
        /// Where the data lives.
        location: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The backend is out of space or over quota. Nothing was written.
    #[error("the local store is full ({message}); nothing was written")]
    Full {
        /// The backend's own description.
        message: String,
    },
    /// The queued or dead-letter record does not exist.
    #[error("no queued action with id {0}")]
    NotFound(ActionId),
}

/// The runtime's result type.
pub type Result<T, E = SyncError> = core::result::Result<T, E>;

/// Whether an error is worth retrying.
///
/// Implement this for your action's error type. *Transient* errors (the network is down, a
/// timeout, HTTP 5xx or 429) make the runtime treat the call as offline: it answers locally
/// and queues the action for replay. *Permanent* errors (validation, 4xx) are returned to the
/// caller as they are, and during replay move the action to the dead-letter store.
///
/// ```
/// use sync_runtime::{ClassifyError, SyncError};
///
/// #[derive(Debug)]
/// enum AppError {
///     Network(String),
///     Rejected(String),
///     Sync(SyncError),
/// }
///
/// impl From<SyncError> for AppError {
///     fn from(error: SyncError) -> Self {
///         AppError::Sync(error)
///     }
/// }
///
/// impl ClassifyError for AppError {
///     fn is_transient(&self) -> bool {
///         matches!(self, AppError::Network(_))
///     }
/// }
/// # assert!(AppError::Network("down".into()).is_transient());
/// ```
///
/// # Boxed and `anyhow` errors
///
/// An action may also return `Result<T, Box<dyn std::error::Error + Send + Sync>>`, or
/// `anyhow::Result<T>` with the `anyhow` feature: both convert from [`SyncError`], and both
/// implement `ClassifyError` by looking at what they hold. The error and then its sources (for
/// `anyhow`, its context chain) are searched, in order, for a type whose classification is
/// known: [`SyncError`], `std::io::Error`, `reqwest::Error` (with the `reqwest` feature) and
/// every type registered with [`register_error_type!`](crate::register_error_type). The first
/// one found decides. When none is found, the error is **permanent**: returned to the caller
/// online, dead-lettered on replay.
///
/// Register your own error types so that, boxed, they still say what they are:
///
/// ```
/// use sync_runtime::{offline_action, register_error_type, ClassifyError, SyncError};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("the server is busy")]
/// pub struct Busy;
///
/// impl ClassifyError for Busy {
///     fn is_transient(&self) -> bool {
///         true
///     }
/// }
///
/// register_error_type!(Busy);
///
/// type BoxError = Box<dyn std::error::Error + Send + Sync>;
///
/// #[offline_action]
/// pub async fn ping(count: u32) -> Result<u32, BoxError> {
///     if count == 0 {
///         return Err(Busy.into()); // transient: answered offline and queued
///     }
///     Ok(count)
/// }
///
/// let error: BoxError = Box::new(Busy);
/// assert!(error.is_transient());
/// let error: BoxError = "no such product".into();
/// assert!(!error.is_transient(), "nothing inside says otherwise: permanent");
/// ```
///
/// Runtime outcomes reach the caller inside the box: get them back with
/// `error.downcast_ref::<SyncError>()` (a `SyncError::Queued` offline, for instance).
pub trait ClassifyError {
    /// `true` if trying again later may succeed.
    fn is_transient(&self) -> bool;

    /// How long the server asked the client to wait (HTTP `Retry-After`), if it did.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl ClassifyError for SyncError {
    fn is_transient(&self) -> bool {
        matches!(
            self,
            SyncError::Store(StoreError::Backend { .. }) | SyncError::ActionInProgress { .. }
        )
    }
}

impl ClassifyError for std::io::Error {
    fn is_transient(&self) -> bool {
        use std::io::ErrorKind::*;
        matches!(
            self.kind(),
            ConnectionRefused
                | ConnectionReset
                | ConnectionAborted
                | NotConnected
                | BrokenPipe
                | TimedOut
                | Interrupted
                | UnexpectedEof
                | WouldBlock
        )
    }
}
