//! The action trait that `#[offline_action]` implements, and the ids actions carry.

use crate::{ClassifyError, MaybeSend, SyncError};
use core::fmt;
use core::future::Future;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The id of one call of an action: a time-ordered uuid (v7), minted before the first attempt
/// and kept through every retry and replay. Send it to the server as an idempotency key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionId(pub uuid::Uuid);

impl ActionId {
    /// The underlying uuid.
    pub const fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActionId({})", self.0)
    }
}

impl core::str::FromStr for ActionId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

/// Whether an action reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// A read. Offline it is answered from the cached response; at most one refresh per
    /// parameters is queued.
    Query,
    /// A write. Offline it is answered by the local handler and every call is queued.
    Mutation,
}

/// An offline-first action. `#[offline_action]` implements this for you; you rarely write it
/// by hand.
pub trait Action: 'static {
    /// The stable name the action is queued and replayed under.
    const NAME: &'static str;
    /// The version stored with each queued call, so a later build can tell old calls apart.
    const VERSION: u32;
    /// Read or write.
    const KIND: ActionKind;

    /// The action's arguments, as one serializable struct.
    type Params: Serialize + DeserializeOwned + Clone + MaybeSend + 'static;
    /// The success value.
    type Output: Serialize + DeserializeOwned + MaybeSend + 'static;
    /// The error type; it converts from [`SyncError`] so runtime outcomes flow through it.
    type Error: From<SyncError> + ClassifyError + core::fmt::Display + MaybeSend + 'static;

    /// The online path: the original function body.
    fn server(
        params: Self::Params,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + MaybeSend;

    /// The offline path: answers from the local store.
    fn local(
        params: Self::Params,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + MaybeSend;

    /// The ordering scope of a call with these parameters, `""` (the global scope) unless the
    /// action declares one (`#[offline_action(scope = ...)]`).
    ///
    /// Queued calls of one scope replay one at a time, in the order they were made; calls of
    /// different scopes replay independently, so one that waits (a backoff, a `Retry-After`)
    /// holds back only its own scope. Calls of the global scope and of other scopes are not
    /// ordered against each other either.
    fn scope(params: &Self::Params) -> String {
        let _ = params;
        String::new()
    }
}
