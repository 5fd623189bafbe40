//! The server's half of "once per call": record each applied action id in the server's own
//! database, in the same transaction as the change it made, so a replayed action is applied
//! once; and read the headers that carry the id and the time the user acted.
//!
//! A client replays a queued action with the id it minted before the first attempt, so a
//! request whose response was lost (the server applied it, then the connection dropped) comes
//! back with the same id. [`apply_once`] answers it with the response recorded the first time
//! instead of applying it again. Because the record is written in the transaction that makes
//! the change, there is no moment at which the change is committed and the id is not (or the
//! other way round), whatever crashes.
//!
//! The core is the small [`AppliedActions`] trait, implemented here for a `rusqlite`
//! [`Transaction`](rusqlite::Transaction) (feature `sqlite`, the default); any database with
//! transactions can implement it. Its async twin, [`AsyncAppliedActions`] with
//! [`apply_once_async`], is implemented for every `AppliedActions` and, with the `postgres`
//! feature, for a `tokio-postgres` transaction (module `postgres`): the contract for servers that
//! run as several instances on one database. [`ActionHeaders`] reads the id and timestamp
//! from request headers, and with the `axum` feature is an axum extractor that also refuses
//! timestamps the server cannot trust ([`TimestampPolicy`]: too far in its future, or
//! expired); [`server_time_header`] tells clients the server's clock, by which they stamp
//! actions.
//!
//! ```
//! # #[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use sync_runtime::server::{self, apply_once, Applied};
//! use sync_runtime::ActionId;
//!
//! let mut db = rusqlite::Connection::open_in_memory()?;
//! db.execute_batch("CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0);")?;
//! server::migrate(&db)?;
//!
//! let id: ActionId = "0191e4a4-7d2a-7c3e-9a5b-1f2e3d4c5b6a".parse()?;
//! for _ in 0..2 {
//!     // The same action arrives twice: the second time, the change does not run.
//!     let tx = db.transaction()?;
//!     let applied = apply_once(&tx, id, |tx| {
//!         tx.execute("UPDATE counter SET n = n + 1", [])?;
//!         let n: i64 = tx.query_row("SELECT n FROM counter", [], |row| row.get(0))?;
//!         Ok::<_, Box<dyn std::error::Error>>(n)
//!     })?;
//!     tx.commit()?;
//!     assert_eq!(applied.response(), &1);
//! }
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "sqlite", not(target_arch = "wasm32"))))]
//! # fn main() {}
//! ```

use crate::{ActionId, SyncError, Timestamp};
use core::future::Future;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The header names, also here for server code (defined in [`crate::http`], which clients use).
pub use crate::http::{ACTION_ID_HEADER, ACTION_TIMESTAMP_HEADER, SERVER_TIME_HEADER};
#[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
pub use sqlite::{forget_applied_before, migrate};

/// A record of the actions a server has applied, kept in the server's own database.
///
/// Implement it for your database's *transaction* type, so that [`apply_once`] writes the
/// record in the same transaction as the change. The record needs a unique key on the id:
/// if two copies of one action race past [`applied_response`](Self::applied_response), the
/// second [`record_applied`](Self::record_applied) must fail, which rolls its change back.
pub trait AppliedActions {
    /// The response recorded when `id` was applied, as JSON, or `None` if it was not.
    fn applied_response(&self, id: ActionId) -> Result<Option<String>, SyncError>;

    /// Records that `id` was applied, with its response as JSON. Fails if `id` is already
    /// recorded.
    fn record_applied(&self, id: ActionId, response: &str) -> Result<(), SyncError>;
}

/// What [`apply_once`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied<T> {
    /// The change ran now, and its response was recorded with the action id.
    Fresh(T),
    /// The action was applied before: the change did not run, and this is the response
    /// recorded then (send it again, as if the first response had arrived).
    Replayed(T),
    /// The action id was applied before for a *different* request (a client bug, or a forged
    /// id): the new request did not run, and this is the response recorded for the first.
    /// Answer with it and log the mismatch. Only [`apply_once_async`] notices this.
    ReplayedDifferently(T),
}

impl<T> Applied<T> {
    /// The response, fresh or recorded.
    pub fn response(&self) -> &T {
        match self {
            Applied::Fresh(response)
            | Applied::Replayed(response)
            | Applied::ReplayedDifferently(response) => response,
        }
    }

    /// The response, fresh or recorded.
    pub fn into_response(self) -> T {
        match self {
            Applied::Fresh(response)
            | Applied::Replayed(response)
            | Applied::ReplayedDifferently(response) => response,
        }
    }

    /// `true` if the action was applied before and the change did not run now.
    pub fn is_replayed(&self) -> bool {
        !matches!(self, Applied::Fresh(_))
    }
}

/// Runs `change` unless action `id` was already applied, and records `id` with the change's
/// response in the same transaction.
///
/// - `id` already recorded: returns [`Applied::Replayed`] with the recorded response;
///   `change` does not run.
/// - otherwise: runs `change`; on `Ok`, records `id` with the response and returns
///   [`Applied::Fresh`]. On `Err`, records nothing and returns the error.
///
/// Commit the transaction only when this returns `Ok`; dropping it on `Err` rolls back the
/// change's partial writes. A failed change is not recorded, so the same id may be tried
/// again (a validation error then fails again the same way).
///
/// # Errors
///
/// `change`'s error; or, converted into `E`, a [`SyncError`] if the record cannot be read or
/// written or the response cannot be turned into JSON and back.
pub fn apply_once<L, T, E>(
    ledger: &L,
    id: ActionId,
    change: impl FnOnce(&L) -> Result<T, E>,
) -> Result<Applied<T>, E>
where
    L: AppliedActions + ?Sized,
    T: Serialize + DeserializeOwned,
    E: From<SyncError>,
{
    if let Some(json) = ledger.applied_response(id)? {
        let response = serde_json::from_str(&json).map_err(|e| {
            SyncError::serde(format!("decode the response recorded for action {id}"), e)
        })?;
        return Ok(Applied::Replayed(response));
    }
    let response = change(ledger)?;
    let json = serde_json::to_string(&response)
        .map_err(|e| SyncError::serde(format!("encode the response of action {id}"), e))?;
    ledger.record_applied(id, &json)?;
    Ok(Applied::Fresh(response))
}

/// [`apply_once`] for requests that may come without an action id: with `action`, the change
/// runs once per id and a repeat gets the recorded response; without (a client that sends no
/// headers, or a server function called in process while rendering), it simply runs.
///
/// In a Leptos server function on axum (with this crate's `axum` feature, [`ActionHeaders`]
/// is an extractor):
///
/// ```ignore
/// let action = leptos_axum::extract().await?;
/// db.write(|tx| server::run_once(tx, action, |tx| toggle(tx, &id)))
/// ```
///
/// # Errors
///
/// As [`apply_once`].
pub fn run_once<L, T, E>(
    ledger: &L,
    action: Option<ActionHeaders>,
    change: impl FnOnce(&L) -> Result<T, E>,
) -> Result<T, E>
where
    L: AppliedActions + ?Sized,
    T: Serialize + DeserializeOwned,
    E: From<SyncError>,
{
    match action {
        Some(action) => apply_once(ledger, action.id, change).map(Applied::into_response),
        None => change(ledger),
    }
}

/// The async twin of [`AppliedActions`]: the record of applied actions for databases whose
/// clients are async (PostgreSQL through `tokio-postgres`, feature `postgres`), used by
/// [`apply_once_async`].
///
/// Every [`AppliedActions`] (a `rusqlite` transaction) is one too, so both databases keep one
/// contract and pass one conformance suite. An implementation *claims* the id before the
/// change runs, in the change's transaction, under a unique key: a concurrent copy of the
/// action then waits on that key until the first transaction commits (and answers with its
/// recorded response) or rolls back (and applies the action itself).
pub trait AsyncAppliedActions {
    /// Claims `id` for this transaction, or returns the record of a committed transaction
    /// that applied it. `fingerprint` identifies the request (see [`fingerprint`]); a ledger
    /// may keep it to notice an id reused with different parameters.
    ///
    /// # Errors
    ///
    /// [`SyncError::ActionInProgress`] when a concurrent copy holds the id and the database
    /// cannot wait for it; [`SyncError::Store`] if the database fails.
    fn claim(
        &self,
        id: ActionId,
        fingerprint: i64,
    ) -> impl Future<Output = Result<Claim, SyncError>> + Send;

    /// Records the response of the action this transaction claimed, as JSON.
    ///
    /// # Errors
    ///
    /// [`SyncError::Store`] if the database fails, or the id is already recorded.
    fn record_response(
        &self,
        id: ActionId,
        fingerprint: i64,
        response: &str,
    ) -> impl Future<Output = Result<(), SyncError>> + Send;
}

/// What [`AsyncAppliedActions::claim`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The id was not applied: this transaction holds it until it commits or rolls back.
    Claimed,
    /// The id was applied by a committed transaction.
    Applied {
        /// The response recorded then, as JSON.
        response: String,
        /// The [`fingerprint`] of the request that applied it, if the ledger keeps one.
        fingerprint: Option<i64>,
    },
}

/// A synchronous ledger is an async one whose futures are ready at once. It checks before the
/// change and records after it, so give it a transaction that writers take one at a time
/// (SQLite's immediate transactions); its primary key still stops a racing copy.
impl<L: AppliedActions + ?Sized> AsyncAppliedActions for L {
    fn claim(
        &self,
        id: ActionId,
        _fingerprint: i64,
    ) -> impl Future<Output = Result<Claim, SyncError>> + Send {
        let claim = self.applied_response(id).map(|recorded| match recorded {
            Some(response) => Claim::Applied {
                response,
                fingerprint: None,
            },
            None => Claim::Claimed,
        });
        core::future::ready(claim)
    }

    fn record_response(
        &self,
        id: ActionId,
        _fingerprint: i64,
        response: &str,
    ) -> impl Future<Output = Result<(), SyncError>> + Send {
        core::future::ready(self.record_applied(id, response))
    }
}

/// A stable 64-bit fingerprint (FNV-1a) of a request's parameters, stored with the action id
/// by [`apply_once_async`] so that an id replayed with *different* parameters is noticed
/// ([`Applied::ReplayedDifferently`]). Not cryptographic: it only decides what is reported,
/// never what is applied.
///
/// ```
/// use sync_runtime::server::fingerprint;
/// assert_eq!(fingerprint(b"PUT /products/1/price {\"price_cents\":250}"),
///            fingerprint(b"PUT /products/1/price {\"price_cents\":250}"));
/// assert_ne!(fingerprint(b"a"), fingerprint(b"b"));
/// ```
pub fn fingerprint(request: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in request {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// [`apply_once`] for async databases: runs `change` unless action `id` was already applied,
/// and records `id` with the change's response in the same transaction.
///
/// `change` is a future that makes the change in the ledger's transaction (an `async` block
/// borrowing it); it is awaited only when the id is not applied yet. The id is claimed first ([`AsyncAppliedActions::claim`]), so on PostgreSQL a concurrent
/// copy of the action (a retry that reached another server instance while this one runs)
/// waits for this transaction and then answers with its response, or gets the retryable
/// [`SyncError::ActionInProgress`]; the change never runs twice. `request` is what the
/// client asked for (say the method, path and body): an id seen before with a different
/// request is answered with the recorded response, as [`Applied::ReplayedDifferently`], and
/// the new request is not applied.
///
/// Commit the transaction only when this returns `Ok`; dropping it on `Err` rolls back the
/// claim and the change's partial writes, so the same id may be tried again.
///
/// On PostgreSQL (feature `postgres`), with `tx` a `tokio_postgres` or `deadpool_postgres`
/// transaction:
///
/// ```ignore
/// let tx = client.transaction().await?;
/// let applied = apply_once_async(&tx, action.id, &body, async {
///     tx.execute("UPDATE counter SET n = n + 1", &[]).await?;
///     Ok::<_, AppError>(())
/// }).await?;
/// tx.commit().await?;
/// ```
///
/// The same contract on a `rusqlite` transaction, as every [`AppliedActions`] is an
/// [`AsyncAppliedActions`]:
///
/// ```
/// # #[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sync_runtime::server::{self, apply_once_async};
/// use sync_runtime::ActionId;
///
/// let mut db = rusqlite::Connection::open_in_memory()?;
/// db.execute_batch("CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0);")?;
/// server::migrate(&db)?;
/// let id: ActionId = "0191e4a4-7d2a-7c3e-9a5b-1f2e3d4c5b6a".parse()?;
/// futures::executor::block_on(async {
///     for _ in 0..2 {
///         let tx = db.transaction()?;
///         let applied = apply_once_async(&tx, id, b"POST /counter", async {
///             tx.execute("UPDATE counter SET n = n + 1", [])?;
///             Ok::<i64, Box<dyn std::error::Error>>(tx.query_row("SELECT n FROM counter", [], |r| r.get(0))?)
///         })
///         .await?;
///         tx.commit()?;
///         assert_eq!(applied.response(), &1);
///     }
///     Ok(())
/// })
/// # }
/// # #[cfg(not(all(feature = "sqlite", not(target_arch = "wasm32"))))]
/// # fn main() {}
/// ```
///
/// # Errors
///
/// `change`'s error; or, converted into `E`, a [`SyncError`] if the record cannot be read or
/// written or the response cannot be turned into JSON and back.
pub async fn apply_once_async<L, T, E>(
    ledger: &L,
    id: ActionId,
    request: &[u8],
    change: impl Future<Output = Result<T, E>>,
) -> Result<Applied<T>, E>
where
    L: AsyncAppliedActions + ?Sized,
    T: Serialize + DeserializeOwned,
    E: From<SyncError>,
{
    let request = fingerprint(request);
    if let Claim::Applied {
        response,
        fingerprint,
    } = ledger.claim(id, request).await?
    {
        let response = serde_json::from_str(&response).map_err(|e| {
            SyncError::serde(format!("decode the response recorded for action {id}"), e)
        })?;
        return Ok(match fingerprint {
            Some(recorded) if recorded != request => Applied::ReplayedDifferently(response),
            _ => Applied::Replayed(response),
        });
    }
    let response = change.await?;
    let json = serde_json::to_string(&response)
        .map_err(|e| SyncError::serde(format!("encode the response of action {id}"), e))?;
    ledger.record_response(id, request, &json).await?;
    Ok(Applied::Fresh(response))
}

/// The cutoff for `forget_applied_before` (SQLite's `server::forget_applied_before` or
/// PostgreSQL's `postgres::forget_applied_before`) at `now`: `ttl` plus `margin` ago, or
/// the epoch. Pass the clients' [`RetryPolicy::ttl`](crate::RetryPolicy::ttl), after which
/// they give up on a queued action, and a margin for their clocks and their last retry.
///
/// ```
/// use std::time::Duration;
/// use sync_runtime::server::retention_cutoff;
/// use sync_runtime::{RetryPolicy, Timestamp};
///
/// let ttl = RetryPolicy::default().ttl;
/// let cutoff = retention_cutoff(Timestamp(1_000_000_000_000), ttl, Duration::from_secs(86_400));
/// assert_eq!(cutoff, Timestamp(1_000_000_000_000 - 8 * 86_400_000));
/// ```
pub fn retention_cutoff(
    now: Timestamp,
    ttl: core::time::Duration,
    margin: core::time::Duration,
) -> Timestamp {
    let keep = ttl.saturating_add(margin).as_millis();
    let keep = u64::try_from(keep).unwrap_or(u64::MAX);
    Timestamp(now.as_millis().saturating_sub(keep))
}

/// [`run_once`] for async databases: [`apply_once_async`] when the request carries an action
/// id, otherwise the change simply runs.
///
/// # Errors
///
/// As [`apply_once_async`].
pub async fn run_once_async<L, T, E>(
    ledger: &L,
    action: Option<ActionHeaders>,
    request: &[u8],
    change: impl Future<Output = Result<T, E>>,
) -> Result<T, E>
where
    L: AsyncAppliedActions + ?Sized,
    T: Serialize + DeserializeOwned,
    E: From<SyncError>,
{
    match action {
        Some(action) => apply_once_async(ledger, action.id, request, change)
            .await
            .map(Applied::into_response),
        None => change.await,
    }
}

/// The action id and timestamp a request carries, read from the headers
/// [`ACTION_ID_HEADER`] and [`ACTION_TIMESTAMP_HEADER`].
///
/// With the `axum` feature this is an extractor: a handler taking `ActionHeaders` answers
/// `400 Bad Request` (with a JSON `{"error": "..."}` body saying which header is wrong) when
/// the id is missing or is not a uuid, or the timestamp is not a number, is further in the
/// future than the server's clock allows or has expired ([`TimestampPolicy`], from the
/// request's extensions or the default); a handler taking `Option<ActionHeaders>` accepts
/// requests without an id. [`ActionHeaders::parse`] and `from_headers` only read: call
/// [`ActionHeaders::validate`] on what they return.
///
/// ```
/// use sync_runtime::server::ActionHeaders;
///
/// let headers = ActionHeaders::parse(Some("0191e4a4-7d2a-7c3e-9a5b-1f2e3d4c5b6a"), Some("1700000000000"))
///     .unwrap()
///     .expect("an id was sent");
/// assert_eq!(headers.timestamp.map(|t| t.as_millis()), Some(1_700_000_000_000));
/// assert!(ActionHeaders::parse(Some("not-a-uuid"), None).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActionHeaders {
    /// The action id: the idempotency key for [`apply_once`].
    pub id: ActionId,
    /// When the user acted, if the client said; order updates by it (last-write-wins).
    pub timestamp: Option<Timestamp>,
}

impl ActionHeaders {
    /// Reads the two header values. `Ok(None)` if there is no id (the request does not come
    /// from an action); an error if a value is there but malformed.
    ///
    /// # Errors
    ///
    /// [`HeaderError::BadId`] or [`HeaderError::BadTimestamp`].
    pub fn parse(id: Option<&str>, timestamp: Option<&str>) -> Result<Option<Self>, HeaderError> {
        let Some(id) = id else {
            return Ok(None);
        };
        let id = id.trim().parse().map_err(|_| HeaderError::BadId {
            value: id.to_owned(),
        })?;
        let timestamp = timestamp
            .map(|value| {
                value
                    .trim()
                    .parse()
                    .map(Timestamp)
                    .map_err(|_| HeaderError::BadTimestamp {
                        value: value.to_owned(),
                    })
            })
            .transpose()?;
        Ok(Some(Self { id, timestamp }))
    }
}

/// Which action timestamps a server accepts: not later than its own clock plus
/// [`max_ahead`](Self::max_ahead), not older than [`max_age`](Self::max_age).
///
/// Last-write-wins trusts the time a client says the user acted. One request stamped far in
/// the future would win every conflict after it, for ever; a device whose clock is fast would
/// win them until its clock catches up. Clients stamp by the server's clock (they learn the
/// offset from [`SERVER_TIME_HEADER`] or `Date`), so an
/// honest stamp is at most a round trip and a clock drift ahead: such a stamp is refused, not
/// clamped, because a clamped stamp would still beat edits made after it. A stamp older than
/// any client keeps a call queued ([`RetryPolicy::ttl`](crate::RetryPolicy::ttl), seven days
/// by default) is refused as expired.
///
/// The [`ActionHeaders`] extractor (feature `axum`) checks [`TimestampPolicy::default`], or the
/// policy found in the request's extensions (`.layer(Extension(policy))`); elsewhere, call
/// [`ActionHeaders::validate`].
///
/// ```
/// use sync_runtime::server::TimestampPolicy;
/// use std::time::Duration;
///
/// let policy = TimestampPolicy { max_ahead: Duration::from_secs(30), ..TimestampPolicy::default() };
/// assert_eq!(TimestampPolicy::default().max_ahead, Duration::from_secs(120));
/// # let _ = policy;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampPolicy {
    /// How far past the server's clock a timestamp may be: what a client's corrected clock can
    /// be off by (a round trip, drift since the last answer). Default: 2 minutes.
    pub max_ahead: core::time::Duration,
    /// How old a timestamp may be: longer than clients keep a call queued. Default: 8 days
    /// (the default [`RetryPolicy::ttl`](crate::RetryPolicy::ttl) of 7 days, plus a day).
    pub max_age: core::time::Duration,
}

impl Default for TimestampPolicy {
    fn default() -> Self {
        Self {
            max_ahead: core::time::Duration::from_secs(120),
            max_age: core::time::Duration::from_secs(8 * 24 * 3600),
        }
    }
}

impl ActionHeaders {
    /// Checks the timestamp (if any) against the server's clock `now` and `policy`: refused
    /// if later than `now + max_ahead` or earlier than `now - max_age`. Nothing is applied
    /// for a refused request, and the client, getting a `400`, moves the call to its dead
    /// letters with the message.
    ///
    /// ```
    /// use sync_runtime::server::{ActionHeaders, HeaderError, TimestampPolicy};
    /// use sync_runtime::Timestamp;
    ///
    /// let now = Timestamp(1_700_000_000_000);
    /// let sent = ActionHeaders::parse(Some("0191e4a4-7d2a-7c3e-9a5b-1f2e3d4c5b6a"), Some("99999999999999"))
    ///     .unwrap()
    ///     .unwrap();
    /// let refused = sent.validate(now, &TimestampPolicy::default()).unwrap_err();
    /// assert!(matches!(refused, HeaderError::FutureTimestamp { .. }));
    /// ```
    ///
    /// # Errors
    ///
    /// [`HeaderError::FutureTimestamp`] or [`HeaderError::ExpiredTimestamp`].
    pub fn validate(self, now: Timestamp, policy: &TimestampPolicy) -> Result<Self, HeaderError> {
        let Some(timestamp) = self.timestamp else {
            return Ok(self);
        };
        let latest = now.saturating_add(policy.max_ahead);
        if timestamp > latest {
            return Err(HeaderError::FutureTimestamp {
                timestamp,
                server_time: now,
                ahead: timestamp.saturating_since(now),
                max_ahead: policy.max_ahead,
            });
        }
        let age = now.saturating_since(timestamp);
        if age > policy.max_age {
            return Err(HeaderError::ExpiredTimestamp {
                timestamp,
                age,
                max_age: policy.max_age,
            });
        }
        Ok(self)
    }
}

/// The response header carrying the server's clock: [`SERVER_TIME_HEADER`] and the
/// milliseconds since the Unix epoch now. Add it to every answer (with axum, a `map_response` layer) so clients can stamp actions
/// by the server's clock to the millisecond; without it they fall back to the `Date` header.
///
/// ```
/// let (name, value) = sync_runtime::server::server_time_header();
/// assert_eq!(name, "x-server-time");
/// assert!(value.parse::<u64>().is_ok());
/// ```
pub fn server_time_header() -> (&'static str, String) {
    use crate::Clock;
    (
        crate::http::SERVER_TIME_HEADER,
        crate::SystemClock.now().as_millis().to_string(),
    )
}

/// Why a request's action headers were refused. With the `axum` feature it is a
/// `400 Bad Request` response with a JSON body `{"error": "<this error's message>"}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// There is no id header.
    #[error("the `{header}` header is missing: send the action id with every request that changes data", header = crate::http::ACTION_ID_HEADER)]
    MissingId,
    /// The id header is not a uuid.
    #[error("the `{header}` header must be an action id (a uuid), not {value:?}", header = crate::http::ACTION_ID_HEADER)]
    BadId {
        /// What was sent.
        value: String,
    },
    /// The timestamp header is not a number of milliseconds.
    #[error("the `{header}` header must be milliseconds since the Unix epoch, not {value:?}", header = crate::http::ACTION_TIMESTAMP_HEADER)]
    BadTimestamp {
        /// What was sent.
        value: String,
    },
    /// The timestamp is later than the server's clock allows ([`TimestampPolicy::max_ahead`]):
    /// the client's clock is wrong, or the stamp was made up.
    #[error("the `{header}` header says the action happened at {timestamp}, {ahead:?} after the server's clock ({server_time}); at most {max_ahead:?} ahead is accepted: stamp actions by the server's clock (the `{server_header}` or `Date` response header)", header = crate::http::ACTION_TIMESTAMP_HEADER, server_header = crate::http::SERVER_TIME_HEADER)]
    FutureTimestamp {
        /// What was sent.
        timestamp: Timestamp,
        /// The server's clock.
        server_time: Timestamp,
        /// How far ahead of the server's clock it is.
        ahead: core::time::Duration,
        /// The most accepted.
        max_ahead: core::time::Duration,
    },
    /// The timestamp is older than any client keeps a call queued
    /// ([`TimestampPolicy::max_age`]).
    #[error("the `{header}` header says the action happened at {timestamp}, {age:?} ago; actions older than {max_age:?} have expired", header = crate::http::ACTION_TIMESTAMP_HEADER)]
    ExpiredTimestamp {
        /// What was sent.
        timestamp: Timestamp,
        /// How old it is by the server's clock.
        age: core::time::Duration,
        /// The oldest accepted.
        max_age: core::time::Duration,
    },
}

#[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
mod sqlite {
    use super::AppliedActions;
    use crate::{ActionId, Clock, StoreError, SyncError, SystemClock, Timestamp};
    use rusqlite::{Connection, OptionalExtension, Transaction};

    // WITHOUT ROWID: the table is looked up by id only, so the id itself is the storage key.
    const SCHEMA: &str = "
        CREATE TABLE IF NOT EXISTS applied_actions (
            id TEXT PRIMARY KEY NOT NULL,
            response TEXT NOT NULL,
            applied_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS applied_actions_by_time ON applied_actions (applied_at);
    ";

    fn backend(operation: &'static str, error: rusqlite::Error) -> SyncError {
        SyncError::Store(StoreError::Backend {
            operation,
            message: error.to_string(),
        })
    }

    fn millis(timestamp: Timestamp) -> i64 {
        i64::try_from(timestamp.as_millis()).unwrap_or(i64::MAX)
    }

    /// Creates the `applied_actions` table (id, response, applied_at) that the
    /// [`AppliedActions`] impl for [`Transaction`] uses, if it does not exist yet. Run it
    /// once when the server opens its database.
    ///
    /// # Errors
    ///
    /// [`SyncError::Store`] if SQLite fails.
    pub fn migrate(connection: &Connection) -> Result<(), SyncError> {
        connection
            .execute_batch(SCHEMA)
            .map_err(|e| backend("create the applied_actions table", e))
    }

    /// Deletes the records of actions applied before `before`, and returns how many.
    ///
    /// Records are only needed while a client may still replay the action: keep them longer
    /// than the clients' [`RetryPolicy::ttl`](crate::RetryPolicy::ttl) (seven days by
    /// default), after which a client gives up on a queued action.
    ///
    /// # Errors
    ///
    /// [`SyncError::Store`] if SQLite fails.
    pub fn forget_applied_before(
        connection: &Connection,
        before: Timestamp,
    ) -> Result<usize, SyncError> {
        connection
            .execute(
                "DELETE FROM applied_actions WHERE applied_at < ?1",
                [millis(before)],
            )
            .map_err(|e| backend("forget old applied actions", e))
    }

    /// The record lives in the `applied_actions` table (see [`migrate`]). Use an
    /// [`Immediate`](rusqlite::TransactionBehavior::Immediate) transaction when several
    /// connections write, so two copies of an action wait for each other instead of failing
    /// with `SQLITE_BUSY`; either way the table's primary key keeps one of them from applying.
    impl AppliedActions for Transaction<'_> {
        fn applied_response(&self, id: ActionId) -> Result<Option<String>, SyncError> {
            self.query_row(
                "SELECT response FROM applied_actions WHERE id = ?1",
                [id.to_string()],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| backend("look up an applied action", e))
        }

        fn record_applied(&self, id: ActionId, response: &str) -> Result<(), SyncError> {
            self.execute(
                "INSERT INTO applied_actions (id, response, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![id.to_string(), response, millis(SystemClock.now())],
            )
            .map(drop)
            .map_err(|e| backend("record an applied action", e))
        }
    }
}

#[cfg(all(feature = "postgres", not(target_arch = "wasm32")))]
pub mod postgres;

#[cfg(all(feature = "axum", not(target_arch = "wasm32")))]
mod axum_extractor {
    use super::{ActionHeaders, HeaderError, TimestampPolicy};
    use crate::http::{ACTION_ID_HEADER, ACTION_TIMESTAMP_HEADER};
    use crate::{Clock, SystemClock};
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::header::CONTENT_TYPE;
    use http::request::Parts;
    use http::{HeaderMap, HeaderValue, StatusCode};

    impl ActionHeaders {
        /// Reads the action headers from a request's headers: `Ok(None)` without an id.
        ///
        /// # Errors
        ///
        /// As [`ActionHeaders::parse`]; a value that is not visible ASCII is malformed.
        pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, HeaderError> {
            fn text(value: &HeaderValue) -> &str {
                // Not visible ASCII can be neither a uuid nor a number: let parse refuse it.
                value.to_str().unwrap_or("\u{fffd}")
            }
            Self::parse(
                headers.get(ACTION_ID_HEADER).map(text),
                headers.get(ACTION_TIMESTAMP_HEADER).map(text),
            )
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for ActionHeaders {
        type Rejection = HeaderError;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HeaderError> {
            ActionHeaders::from_headers(&parts.headers)?
                .ok_or(HeaderError::MissingId)
                .and_then(|headers| checked(headers, parts))
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for ActionHeaders {
        type Rejection = HeaderError;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, HeaderError> {
            ActionHeaders::from_headers(&parts.headers)?
                .map(|headers| checked(headers, parts))
                .transpose()
        }
    }

    /// The timestamp checked against the system clock and the request's [`TimestampPolicy`]
    /// extension, or the default policy.
    fn checked(headers: ActionHeaders, parts: &Parts) -> Result<ActionHeaders, HeaderError> {
        let policy = parts
            .extensions
            .get::<TimestampPolicy>()
            .copied()
            .unwrap_or_default();
        headers.validate(SystemClock.now(), &policy)
    }

    impl IntoResponse for HeaderError {
        fn into_response(self) -> Response {
            let body = serde_json::json!({ "error": self.to_string() }).to_string();
            (
                StatusCode::BAD_REQUEST,
                [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                body,
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    fn id(n: u128) -> ActionId {
        ActionId(uuid::Uuid::from_u128(n))
    }

    /// The trait's contract on the smallest possible database: a map.
    #[derive(Default)]
    struct MapLedger(RefCell<HashMap<ActionId, String>>);

    impl AppliedActions for MapLedger {
        fn applied_response(&self, id: ActionId) -> Result<Option<String>, SyncError> {
            Ok(self.0.borrow().get(&id).cloned())
        }

        fn record_applied(&self, id: ActionId, response: &str) -> Result<(), SyncError> {
            self.0.borrow_mut().insert(id, response.to_owned());
            Ok(())
        }
    }

    #[derive(Debug, PartialEq)]
    enum TestError {
        Invalid,
        Sync(String),
    }

    impl From<SyncError> for TestError {
        fn from(error: SyncError) -> Self {
            TestError::Sync(error.to_string())
        }
    }

    #[test]
    fn the_second_call_with_an_id_returns_the_first_response_without_running() {
        let ledger = MapLedger::default();
        let runs = std::cell::Cell::new(0);
        // Captures `runs` by reference only, so it is `Copy` and can run more than once.
        let change = |_: &MapLedger| {
            runs.set(runs.get() + 1);
            Ok::<_, TestError>(format!("run {}", runs.get()))
        };
        let first = apply_once(&ledger, id(1), change).unwrap();
        let second = apply_once(&ledger, id(1), change).unwrap();
        let other = apply_once(&ledger, id(2), change).unwrap();
        assert_eq!(first, Applied::Fresh("run 1".to_owned()));
        assert_eq!(second, Applied::Replayed("run 1".to_owned()));
        assert_eq!(other, Applied::Fresh("run 2".to_owned()));
        assert_eq!(runs.get(), 2);
    }

    #[test]
    fn a_failed_change_records_nothing_and_may_be_tried_again() {
        let ledger = MapLedger::default();
        let failed = apply_once(&ledger, id(1), |_| Err::<u32, _>(TestError::Invalid));
        assert_eq!(failed, Err(TestError::Invalid));
        assert!(ledger.0.borrow().is_empty());
        let retried = apply_once(&ledger, id(1), |_| Ok::<_, TestError>(7)).unwrap();
        assert_eq!(retried, Applied::Fresh(7));
    }

    #[test]
    fn a_recorded_response_that_no_longer_decodes_is_an_error_not_a_second_run() {
        let ledger = MapLedger::default();
        ledger.record_applied(id(1), "\"text\"").unwrap();
        let result = apply_once(&ledger, id(1), |_| -> Result<u32, TestError> {
            panic!("must not run again")
        });
        assert!(
            matches!(&result, Err(TestError::Sync(m)) if m.contains("decode the response recorded")),
            "{result:?}"
        );
    }

    #[test]
    fn fingerprints_are_fnv_1a_and_never_change() {
        // Stored with each applied action: a change here would flag every replay of an
        // action recorded before it as a different request.
        let as_signed = |hash: u64| i64::from_ne_bytes(hash.to_ne_bytes());
        assert_eq!(fingerprint(b""), as_signed(0xcbf2_9ce4_8422_2325));
        assert_eq!(fingerprint(b"a"), as_signed(0xaf63_dc4c_8601_ec8c));
        assert_eq!(fingerprint(b"foobar"), as_signed(0x8594_4171_f739_67e8));
    }

    #[test]
    fn headers_parse_or_say_what_is_wrong() {
        let uuid = "0191e4a4-7d2a-7c3e-9a5b-1f2e3d4c5b6a";
        assert_eq!(ActionHeaders::parse(None, Some("5")), Ok(None));
        assert_eq!(
            ActionHeaders::parse(Some(uuid), None),
            Ok(Some(ActionHeaders {
                id: uuid.parse().unwrap(),
                timestamp: None
            }))
        );
        let bad_id = ActionHeaders::parse(Some("42"), None).unwrap_err();
        assert_eq!(
            bad_id.to_string(),
            "the `idempotency-key` header must be an action id (a uuid), not \"42\""
        );
        let bad_time = ActionHeaders::parse(Some(uuid), Some("yesterday")).unwrap_err();
        assert_eq!(
            bad_time.to_string(),
            "the `x-action-timestamp` header must be milliseconds since the Unix epoch, not \"yesterday\""
        );
    }

    #[test]
    fn timestamps_from_the_future_or_too_old_are_refused_with_what_was_wrong() {
        let now = Timestamp(1_700_000_000_000);
        let policy = TimestampPolicy::default();
        let sent = |millis: u64| ActionHeaders {
            id: id(1),
            timestamp: Some(Timestamp(millis)),
        };
        for fine in [now.0, now.0 + 120_000, now.0 - 8 * 24 * 3_600_000] {
            assert_eq!(sent(fine).validate(now, &policy), Ok(sent(fine)));
        }
        let untimed = ActionHeaders {
            id: id(1),
            timestamp: None,
        };
        assert_eq!(untimed.validate(now, &policy), Ok(untimed));

        let future = sent(99_999_999_999_999).validate(now, &policy).unwrap_err();
        assert!(
            matches!(future, HeaderError::FutureTimestamp { .. }),
            "{future:?}"
        );
        let message = future.to_string();
        assert!(
            message.starts_with(
                "the `x-action-timestamp` header says the action happened at 99999999999999ms"
            ) && message.contains(
                "after the server's clock (1700000000000ms); at most 120s ahead is accepted"
            ),
            "{message}"
        );
        let just_past = sent(now.0 + 120_001).validate(now, &policy).unwrap_err();
        assert!(matches!(just_past, HeaderError::FutureTimestamp { .. }));

        let old = sent(now.0 - 8 * 24 * 3_600_000 - 1)
            .validate(now, &policy)
            .unwrap_err();
        assert!(
            matches!(old, HeaderError::ExpiredTimestamp { .. }),
            "{old:?}"
        );
        assert!(old.to_string().contains("have expired"), "{old}");

        let strict = TimestampPolicy {
            max_ahead: core::time::Duration::ZERO,
            ..policy
        };
        assert!(sent(now.0 + 1).validate(now, &strict).is_err());
    }

    #[cfg(all(feature = "sqlite", not(target_arch = "wasm32")))]
    mod sqlite {
        use super::*;
        use rusqlite::Connection;

        fn database() -> Connection {
            let db = Connection::open_in_memory().unwrap();
            db.execute_batch("CREATE TABLE items (name TEXT NOT NULL)")
                .unwrap();
            migrate(&db).unwrap();
            migrate(&db).unwrap(); // again: opening an existing database must work
            db
        }

        fn add_item(
            db: &mut Connection,
            action: ActionId,
            name: &str,
        ) -> Result<Applied<i64>, TestError> {
            let tx = db.transaction().unwrap();
            let applied = apply_once(&tx, action, |tx| {
                if name.is_empty() {
                    return Err(TestError::Invalid);
                }
                tx.execute("INSERT INTO items (name) VALUES (?1)", [name])
                    .unwrap();
                Ok(tx.last_insert_rowid())
            })?;
            tx.commit().unwrap();
            Ok(applied)
        }

        fn count(db: &Connection, table: &str) -> i64 {
            db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        }

        #[test]
        fn the_same_action_twice_is_applied_once() {
            let mut db = database();
            assert_eq!(add_item(&mut db, id(1), "tea"), Ok(Applied::Fresh(1)));
            assert_eq!(add_item(&mut db, id(1), "tea"), Ok(Applied::Replayed(1)));
            assert_eq!(add_item(&mut db, id(2), "tea"), Ok(Applied::Fresh(2)));
            assert_eq!((count(&db, "items"), count(&db, "applied_actions")), (2, 2));
        }

        #[test]
        fn a_failing_change_records_nothing() {
            let mut db = database();
            assert_eq!(add_item(&mut db, id(1), ""), Err(TestError::Invalid));
            assert_eq!((count(&db, "items"), count(&db, "applied_actions")), (0, 0));
        }

        #[test]
        fn a_rolled_back_transaction_forgets_the_id_with_the_change() {
            let mut db = database();
            let tx = db.transaction().unwrap();
            apply_once(&tx, id(1), |tx| {
                tx.execute("INSERT INTO items (name) VALUES ('tea')", [])
                    .map_err(|e| TestError::Sync(e.to_string()))
            })
            .unwrap();
            drop(tx); // the process died before commit
            assert_eq!((count(&db, "items"), count(&db, "applied_actions")), (0, 0));
            assert!(add_item(&mut db, id(1), "tea").unwrap().response() > &0);
        }

        #[test]
        fn recording_an_id_twice_fails_so_a_racing_copy_rolls_back() {
            let mut db = database();
            let tx = db.transaction().unwrap();
            tx.record_applied(id(1), "1").unwrap();
            let second = tx.record_applied(id(1), "1").unwrap_err();
            assert!(
                second.to_string().contains("record an applied action"),
                "{second}"
            );
        }

        #[test]
        fn old_records_can_be_forgotten() {
            let mut db = database();
            add_item(&mut db, id(1), "tea").unwrap();
            assert_eq!(forget_applied_before(&db, Timestamp(0)).unwrap(), 0);
            assert_eq!(forget_applied_before(&db, Timestamp(u64::MAX)).unwrap(), 1);
        }
    }

    #[cfg(all(feature = "axum", not(target_arch = "wasm32")))]
    mod axum {
        use super::*;
        use crate::Clock;
        use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
        use axum_core::response::IntoResponse;

        fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
            let mut request = http::Request::builder();
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.body(()).unwrap().into_parts().0
        }

        fn extract(headers: &[(&str, &str)]) -> Result<ActionHeaders, HeaderError> {
            futures::executor::block_on(
                <ActionHeaders as FromRequestParts<()>>::from_request_parts(
                    &mut parts(headers),
                    &(),
                ),
            )
        }

        #[test]
        fn the_extractor_reads_both_headers() {
            let uuid = "0191e4a4-7d2a-7c3e-9a5b-1f2e3d4c5b6a";
            let now = crate::SystemClock.now();
            let sent = now.as_millis().to_string();
            let headers = extract(&[("Idempotency-Key", uuid), ("X-Action-Timestamp", &sent)]);
            assert_eq!(
                headers,
                Ok(ActionHeaders {
                    id: uuid.parse().unwrap(),
                    timestamp: Some(now)
                })
            );
        }

        #[test]
        fn a_missing_or_garbage_key_is_a_400_with_a_json_message() {
            assert_eq!(extract(&[]), Err(HeaderError::MissingId));
            let garbage = extract(&[("idempotency-key", "yes please")]).unwrap_err();
            let response = garbage.into_response();
            assert_eq!(response.status(), http::StatusCode::BAD_REQUEST);
            assert_eq!(
                response.headers()[http::header::CONTENT_TYPE],
                "application/json"
            );
        }

        #[test]
        fn the_extractor_refuses_a_timestamp_from_the_future_by_the_policy_it_finds() {
            let uuid = "0191e4a4-7d2a-7c3e-9a5b-1f2e3d4c5b6a";
            let refused = extract(&[
                ("idempotency-key", uuid),
                ("x-action-timestamp", "99999999999999"),
            ]);
            assert!(
                matches!(refused, Err(HeaderError::FutureTimestamp { .. })),
                "{refused:?}"
            );
            assert_eq!(
                refused.unwrap_err().into_response().status(),
                http::StatusCode::BAD_REQUEST
            );

            let now = crate::SystemClock.now().as_millis();
            let soon = (now + 60_000).to_string();
            assert!(extract(&[("idempotency-key", uuid), ("x-action-timestamp", &soon)]).is_ok());
            let mut strict = parts(&[("idempotency-key", uuid), ("x-action-timestamp", &soon)]);
            strict.extensions.insert(TimestampPolicy {
                max_ahead: core::time::Duration::from_secs(1),
                ..TimestampPolicy::default()
            });
            let refused = futures::executor::block_on(
                <ActionHeaders as OptionalFromRequestParts<()>>::from_request_parts(
                    &mut strict,
                    &(),
                ),
            );
            assert!(
                matches!(refused, Err(HeaderError::FutureTimestamp { .. })),
                "{refused:?}"
            );
        }

        #[test]
        fn the_optional_extractor_accepts_no_key_but_not_a_bad_one() {
            let optional = |headers: &[(&str, &str)]| {
                futures::executor::block_on(
                    <ActionHeaders as OptionalFromRequestParts<()>>::from_request_parts(
                        &mut parts(headers),
                        &(),
                    ),
                )
            };
            assert_eq!(optional(&[]), Ok(None));
            assert!(optional(&[("idempotency-key", "x")]).is_err());
        }
    }
}
