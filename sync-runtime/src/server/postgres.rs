//! The record of applied actions on PostgreSQL (feature `postgres`), through `tokio-postgres`:
//! for servers that run as several instances behind a load balancer on one database.
//!
//! [`migrate`] creates the `applied_actions` table; [`AsyncAppliedActions`] is implemented for
//! a [`Transaction`], so [`apply_once_async`](super::apply_once_async) claims the action id,
//! runs the change and records the response in that one transaction:
//!
//! 1. `INSERT INTO applied_actions ... ON CONFLICT (id) DO NOTHING` claims the id. If another
//!    transaction inserted the same id and has not finished, PostgreSQL makes this insert
//!    wait on the unique key until it commits or rolls back.
//! 2. If the insert added a row, this transaction holds the id: the change runs, then the
//!    response is stored in the row, then the caller commits.
//! 3. If it added none, the id was applied by a committed transaction. Under READ COMMITTED
//!    (PostgreSQL's default) each statement sees what was committed before it started, so
//!    the `SELECT` that follows reads the recorded response. Under REPEATABLE READ or
//!    SERIALIZABLE the waiting insert fails with a serialization error instead, which is
//!    reported as the retryable [`SyncError::ActionInProgress`], as is a deadlock.
//!
//! A copy of an action therefore never runs the change while another copy's transaction is
//! open, on any instance, and a transaction cut off half way (a killed process, a dropped
//! connection) rolls back its claim with its change. The wait lasts as long as the first
//! transaction; to bound it, set `lock_timeout` (`SET LOCAL lock_timeout = '5s'` in the
//! transaction): a claim that times out is [`SyncError::ActionInProgress`] too.
//!
//! # Last-write-wins on server rows
//!
//! Give a row the time the user acted and the action id of the change it last took, and
//! apply an update only if its (timestamp, action id) is not older, in one statement, so two
//! instances updating the row at once cannot both win (the row lock orders them):
//!
//! ```sql
//! UPDATE products SET price_cents = $2, updated_at = $3, updated_by = $4
//! WHERE id = $1 AND (updated_at, updated_by) <= ($3, $4)
//! ```
//!
//! with `updated_at bigint` (milliseconds, [`ActionHeaders::timestamp`](super::ActionHeaders))
//! and `updated_by uuid` (the action id; `uuid` compares as the client's local store does,
//! whatever the database's collation). [`LAST_WRITE_WINS`] is that condition; zero rows
//! updated means a later change already won, which is an answer, not an error.
//!
//! # Retention
//!
//! [`forget_applied_before`] deletes records the clients can no longer replay: run it now
//! and then with a cutoff older than the clients' [`RetryPolicy::ttl`](crate::RetryPolicy::ttl)
//! plus a margin for clock skew: [`retention_cutoff`](super::retention_cutoff).

use super::{AsyncAppliedActions, Claim};
use crate::{ActionId, Clock, StoreError, SyncError, SystemClock, Timestamp};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, GenericClient, Transaction};

/// The condition of a last-write-wins `UPDATE`: true when the row's last change (its
/// `updated_at` timestamp and `updated_by` action id) is not newer than the write, whose
/// timestamp and action id are the parameters `$ts` and `$id`. Substitute the parameter
/// numbers of your statement (see the [module docs](self)).
pub const LAST_WRITE_WINS: &str = "(updated_at, updated_by) <= ($ts, $id)";

// A lock id for `migrate`, so that instances starting together create the table once.
const MIGRATE_LOCK: i64 = 0x6170_706c_6965_6431; // "applied1"

const CLAIM: &str = "INSERT INTO applied_actions (id, fingerprint, applied_at)
                     VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING";
const RECORDED: &str = "SELECT response, fingerprint FROM applied_actions WHERE id = $1";
const RECORD: &str = "UPDATE applied_actions SET response = $2 WHERE id = $1 AND response IS NULL";

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS applied_actions (
        id uuid PRIMARY KEY,
        fingerprint bigint NOT NULL,
        response text,             -- NULL only while the claiming transaction runs
        applied_at bigint NOT NULL -- milliseconds since the Unix epoch
    );
    CREATE INDEX IF NOT EXISTS applied_actions_by_time ON applied_actions (applied_at);
";

fn backend(operation: &'static str, error: &tokio_postgres::Error) -> SyncError {
    // `Display` of a server error says only "db error": the server's own words are its cause.
    let message = match error.as_db_error() {
        Some(db) => format!("{} ({})", db, db.code().code()),
        None => error.to_string(),
    };
    SyncError::Store(StoreError::Backend { operation, message })
}

fn millis(timestamp: Timestamp) -> i64 {
    i64::try_from(timestamp.as_millis()).unwrap_or(i64::MAX)
}

/// Creates the `applied_actions` table (id, request fingerprint, response, applied_at) and
/// its index, if they do not exist yet. Run it when a server instance starts; instances that
/// start together take turns (a transaction-scoped advisory lock).
///
/// # Errors
///
/// [`SyncError::Store`] if PostgreSQL fails.
pub async fn migrate(client: &mut Client) -> Result<(), SyncError> {
    let operation = "create the applied_actions table";
    let tx = client
        .transaction()
        .await
        .map_err(|e| backend(operation, &e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(|e| backend(operation, &e))?;
    tx.batch_execute(SCHEMA)
        .await
        .map_err(|e| backend(operation, &e))?;
    tx.commit().await.map_err(|e| backend(operation, &e))
}

/// Deletes the records of actions applied before `before`, and returns how many.
///
/// Records are only needed while a client may still replay the action: keep them longer
/// than the clients' [`RetryPolicy::ttl`](crate::RetryPolicy::ttl) (seven days by default),
/// after which a client gives up on a queued action. A claim whose transaction is still
/// open is invisible here, so it is not deleted.
///
/// # Errors
///
/// [`SyncError::Store`] if PostgreSQL fails.
pub async fn forget_applied_before(
    client: &impl GenericClient,
    before: Timestamp,
) -> Result<u64, SyncError> {
    client
        .execute(
            "DELETE FROM applied_actions WHERE applied_at < $1",
            &[&millis(before)],
        )
        .await
        .map_err(|e| backend("forget old applied actions", &e))
}

/// The record lives in the `applied_actions` table (see [`migrate`]); the claim is the
/// `INSERT ... ON CONFLICT DO NOTHING` described in the [module docs](self). Its statements
/// are sent unprepared (one round trip each, planned every time); a pooled
/// `deadpool_postgres::Transaction` (feature `deadpool-postgres`) prepares them once per
/// connection.
impl AsyncAppliedActions for Transaction<'_> {
    async fn claim(&self, id: ActionId, fingerprint: i64) -> Result<Claim, SyncError> {
        let at = millis(SystemClock.now());
        let claimed = self
            .execute_typed(
                CLAIM,
                &[
                    (&id.0, Type::UUID),
                    (&fingerprint, Type::INT8),
                    (&at, Type::INT8),
                ],
            )
            .await
            .map_err(|e| claim_error(id, &e))?;
        if claimed == 1 {
            return Ok(Claim::Claimed);
        }
        let row = self
            .query_typed_opt(RECORDED, &[(&id.0, Type::UUID)])
            .await
            .map_err(|e| claim_error(id, &e))?;
        recorded(id, row)
    }

    async fn record_response(
        &self,
        id: ActionId,
        _fingerprint: i64,
        response: &str,
    ) -> Result<(), SyncError> {
        let updated = self
            .execute_typed(RECORD, &[(&id.0, Type::UUID), (&response, Type::TEXT)])
            .await
            .map_err(|e| backend(RECORD_OPERATION, &e))?;
        recorded_once(id, updated)
    }
}

/// As for a plain [`Transaction`], with the statements prepared once per pooled connection
/// (deadpool's statement cache).
#[cfg(feature = "deadpool-postgres")]
impl AsyncAppliedActions for deadpool_postgres::Transaction<'_> {
    async fn claim(&self, id: ActionId, fingerprint: i64) -> Result<Claim, SyncError> {
        let at = millis(SystemClock.now());
        let claim = self
            .prepare_cached(CLAIM)
            .await
            .map_err(|e| claim_error(id, &e))?;
        let claimed = self
            .execute(&claim, &[&id.0, &fingerprint, &at])
            .await
            .map_err(|e| claim_error(id, &e))?;
        if claimed == 1 {
            return Ok(Claim::Claimed);
        }
        let read = self
            .prepare_cached(RECORDED)
            .await
            .map_err(|e| claim_error(id, &e))?;
        let row = self
            .query_opt(&read, &[&id.0])
            .await
            .map_err(|e| claim_error(id, &e))?;
        recorded(id, row)
    }

    async fn record_response(
        &self,
        id: ActionId,
        _fingerprint: i64,
        response: &str,
    ) -> Result<(), SyncError> {
        let record = self
            .prepare_cached(RECORD)
            .await
            .map_err(|e| backend(RECORD_OPERATION, &e))?;
        let updated = self
            .execute(&record, &[&id.0, &response])
            .await
            .map_err(|e| backend(RECORD_OPERATION, &e))?;
        recorded_once(id, updated)
    }
}

const CLAIM_OPERATION: &str = "claim an action id";
const RECORD_OPERATION: &str = "record an applied action";

/// What a claim that inserted nothing found: the row a committed transaction left.
fn recorded(id: ActionId, row: Option<tokio_postgres::Row>) -> Result<Claim, SyncError> {
    match row {
        Some(row) => match row.get::<_, Option<String>>(0) {
            Some(response) => Ok(Claim::Applied {
                response,
                fingerprint: Some(row.get(1)),
            }),
            // Committed without a response: apply_once_async failed and the caller
            // committed anyway. Nothing can be answered for it.
            None => Err(SyncError::Store(StoreError::Backend {
                operation: CLAIM_OPERATION,
                message: format!(
                    "action {id} was claimed by a transaction that committed without \
                     recording a response (commit only when apply_once_async succeeds)"
                ),
            })),
        },
        // Deleted between the two statements (forget_applied_before): try again.
        None => Err(SyncError::ActionInProgress { id }),
    }
}

fn recorded_once(id: ActionId, updated: u64) -> Result<(), SyncError> {
    if updated == 1 {
        Ok(())
    } else {
        Err(SyncError::Store(StoreError::Backend {
            operation: RECORD_OPERATION,
            message: format!("action {id} is not claimed by this transaction"),
        }))
    }
}

fn claim_error(id: ActionId, error: &tokio_postgres::Error) -> SyncError {
    match error.code() {
        Some(code)
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::LOCK_NOT_AVAILABLE
                || *code == SqlState::UNIQUE_VIOLATION =>
        {
            SyncError::ActionInProgress { id }
        }
        _ => backend(CLAIM_OPERATION, error),
    }
}
