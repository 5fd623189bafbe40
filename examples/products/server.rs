//! The products server: axum on 127.0.0.1, its data in a SQLite file.
//!
//! Every write goes through `sync_runtime::server::apply_once`, which records the request's
//! action id (the `idempotency-key` header) in the same transaction as the change: a replayed
//! action is answered with the response recorded the first time, never applied twice. Price
//! updates are last-write-wins by the time the user acted (the `x-action-timestamp` header):
//! a product keeps the time of the change it last took, and an update made earlier than that
//! is acknowledged, answered with the current product, and not applied. A stock delivery
//! adds to a counter, so it is not idempotent at all: only the action id keeps a replayed
//! delivery from being counted twice. The `ActionHeaders`
//! extractor refuses, with a 400 that says why, a timestamp more than two minutes ahead of the
//! server's clock (one far-future stamp would otherwise win every later conflict) or older
//! than the clients' time-to-live; every answer carries the server's clock (`x-server-time`),
//! by which clients stamp their actions.
//!
//! The server can stop (the port refuses connections) and restart on the same port with the
//! same database file, and can lose one response after committing, as a dropped connection
//! would.

use crate::model::{invalid, money, CreateProduct, ErrorBody, PriceChange, Product, StockDelivery};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path as FilePath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use sync_runtime::server::{apply_once, ActionHeaders, Applied};
use sync_runtime::{ActionId, SyncError};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The response header that marks an answer replayed from `applied_actions`.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS products (
        id TEXT PRIMARY KEY NOT NULL,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        price_cents INTEGER NOT NULL,
        updated_at INTEGER NOT NULL, -- when the user behind the last applied change acted
        updated_by TEXT NOT NULL     -- that change's action id: breaks ties, as clients do
    );
    -- Units in stock per product: each delivery adds to it.
    CREATE TABLE IF NOT EXISTS stock (
        product_id TEXT PRIMARY KEY NOT NULL,
        quantity INTEGER NOT NULL
    );
    -- What each applied action did, in the order the server applied them.
    CREATE TABLE IF NOT EXISTS changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        action_id TEXT NOT NULL,
        change TEXT NOT NULL
    );
";

/// A products server on `127.0.0.1`, stoppable and restartable on the same port.
pub struct ProductServer {
    address: SocketAddr,
    database: PathBuf,
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

struct Shared {
    /// The open database while the server runs.
    db: Mutex<Option<Connection>>,
    /// Lose the next write's response after committing it.
    drop_next_response: AtomicBool,
    /// Writes answered from `applied_actions` instead of being applied again.
    replays: AtomicU64,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

impl ProductServer {
    /// Opens (or creates) the database at `database` and serves on a free loopback port.
    pub async fn start(database: &FilePath) -> Result<Self, Error> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::open(database, listener)
    }

    /// Opens (or creates) the database at `database` and serves on `listener`.
    pub fn open(database: &FilePath, listener: TcpListener) -> Result<Self, Error> {
        let server = Self {
            address: listener.local_addr()?,
            database: database.to_owned(),
            shared: Arc::new(Shared {
                db: Mutex::new(None),
                drop_next_response: AtomicBool::new(false),
                replays: AtomicU64::new(0),
            }),
            running: Mutex::new(None),
        };
        server.serve(listener)?;
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops listening (new connections are refused), lets requests in flight finish, and
    /// closes the database.
    pub async fn stop(&self) {
        let Some(running) = lock(&self.running).take() else {
            return;
        };
        let _ = running.shutdown.send(());
        let abort = running.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), running.task)
            .await
            .is_err()
        {
            abort.abort();
        }
        *lock(&self.shared.db) = None;
    }

    /// Serves again on the same port, reopening the same database file.
    pub async fn restart(&self) -> Result<(), Error> {
        let listener = TcpListener::bind(self.address).await?;
        self.serve(listener)
    }

    fn serve(&self, listener: TcpListener) -> Result<(), Error> {
        let db = Connection::open(&self.database)?;
        db.busy_timeout(Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        sync_runtime::server::migrate(&db)?;
        *lock(&self.shared.db) = Some(db);

        let app = self.routes();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        *lock(&self.running) = Some(Running { shutdown, task });
        Ok(())
    }

    /// The API's routes over this server's database, for a binary that serves them with more
    /// on one origin (the browser example adds its page).
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/products", get(list_products).post(add_product))
            .route("/products/{id}", axum::routing::delete(delete_product))
            .route("/products/{id}/price", put(update_price))
            .route("/products/{id}/stock", post(add_stock))
            .with_state(Arc::clone(&self.shared))
            // Every answer carries the server's clock in milliseconds: clients stamp actions
            // by it, so a phone whose clock is wrong still orders edits by when users acted.
            .layer(axum::middleware::map_response(with_server_time))
    }

    /// Makes the next write commit and then drop its connection without answering.
    pub fn drop_next_response(&self) {
        self.shared.drop_next_response.store(true, Ordering::SeqCst);
    }

    /// Writes answered from `applied_actions` rather than applied again.
    pub fn replays_answered(&self) -> u64 {
        self.shared.replays.load(Ordering::SeqCst)
    }

    /// A tenant's products, read from the database file (running or not), by name.
    pub fn products(&self, tenant_id: &str) -> rusqlite::Result<Vec<Product>> {
        let db = Connection::open(&self.database)?;
        let mut query = db.prepare(
            "SELECT id, tenant_id, name, price_cents, updated_at FROM products
             WHERE tenant_id = ?1 ORDER BY name, id",
        )?;
        let rows = query.query_map([tenant_id], product_from_row)?;
        rows.collect()
    }

    /// How many actions the server has applied (one row each in `applied_actions`).
    pub fn applied_count(&self) -> rusqlite::Result<u64> {
        let db = Connection::open(&self.database)?;
        let count: i64 =
            db.query_row("SELECT count(*) FROM applied_actions", [], |row| row.get(0))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// What each applied action did, as (action id, change), in the order applied.
    pub fn changes(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let db = Connection::open(&self.database)?;
        let mut query = db.prepare("SELECT action_id, change FROM changes ORDER BY seq")?;
        let rows = query.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect()
    }
}

async fn with_server_time(mut response: Response) -> Response {
    let (name, value) = sync_runtime::server::server_time_header();
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, value);
    }
    response
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A handler that panicked held no transaction open (rusqlite rolls back on drop).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn product_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    Ok(Product {
        id: row.get(0)?,
        tenant_id: row.get(1)?,
        name: row.get(2)?,
        price_cents: row.get(3)?,
        updated_at: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
    })
}

/// A refusal, sent as `{"error": "..."}` with its status.
#[derive(Debug)]
enum ApiError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    Unavailable,
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down".to_owned(),
            ),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        };
        (status, Json(ErrorBody { error })).into_response()
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(error: rusqlite::Error) -> Self {
        ApiError::Internal(format!("database: {error}"))
    }
}

impl From<SyncError> for ApiError {
    fn from(error: SyncError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl Shared {
    /// Reads from the database.
    fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let db = lock(&self.db);
        read(db.as_ref().ok_or(ApiError::Unavailable)?)
    }

    /// Runs `change` in one immediate transaction, committed only if it succeeds.
    fn write<T>(
        &self,
        change: impl FnOnce(&Transaction<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut db = lock(&self.db);
        let db = db.as_mut().ok_or(ApiError::Unavailable)?;
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = change(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// The response to a write that `apply_once` applied now or before.
    fn respond<T: Serialize>(&self, status: StatusCode, applied: Applied<T>) -> Response {
        if self.drop_next_response.swap(false, Ordering::SeqCst) {
            // The change is committed; now lose the answer as a failing network would.
            // Unwinding out of the handler ends the connection's task, so hyper closes the
            // socket without a response; `resume_unwind` skips the panic hook, so nothing is
            // printed.
            std::panic::resume_unwind(Box::new("dropping the connection after commit"));
        }
        let replayed = applied.is_replayed();
        if replayed {
            self.replays.fetch_add(1, Ordering::SeqCst);
        }
        let mut response = if status == StatusCode::NO_CONTENT {
            status.into_response()
        } else {
            (status, Json(applied.into_response())).into_response()
        };
        if replayed {
            response
                .headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        }
        response
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid: {e}")))
}

fn find(tx: &Transaction<'_>, id: &str) -> Result<Option<(Product, String)>, ApiError> {
    let found = tx
        .query_row(
            "SELECT id, tenant_id, name, price_cents, updated_at, updated_by
             FROM products WHERE id = ?1",
            [id],
            |row| Ok((product_from_row(row)?, row.get::<_, String>(5)?)),
        )
        .optional()?;
    Ok(found)
}

fn log(tx: &Transaction<'_>, action: ActionId, change: String) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO changes (action_id, change) VALUES (?1, ?2)",
        params![action.to_string(), change],
    )?;
    Ok(())
}

/// When the user acted: the client's header, or now if it sent none.
fn acted_at(action: &ActionHeaders) -> u64 {
    action.timestamp.map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        },
        |t| t.as_millis(),
    )
}

fn sql_time(millis: u64) -> i64 {
    i64::try_from(millis).unwrap_or(i64::MAX)
}

#[derive(Deserialize)]
struct TenantQuery {
    tenant: Option<String>,
}

async fn list_products(
    State(app): State<Arc<Shared>>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Vec<Product>>, ApiError> {
    let tenant = query
        .tenant
        .ok_or_else(|| ApiError::BadRequest("the `tenant` query parameter is required".into()))?;
    let products = app.read(|db| {
        let mut query = db.prepare(
            "SELECT id, tenant_id, name, price_cents, updated_at FROM products
             WHERE tenant_id = ?1 ORDER BY name, id",
        )?;
        let rows = query.query_map([&tenant], product_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    })?;
    Ok(Json(products))
}

async fn add_product(
    State(app): State<Arc<Shared>>,
    action: ActionHeaders,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: CreateProduct = parse_body(&body)?;
    if let Some(problem) = invalid(&new.name, new.price_cents) {
        return Err(ApiError::BadRequest(problem));
    }
    if new.id.parse::<uuid::Uuid>().is_err() {
        return Err(ApiError::BadRequest(format!(
            "a product id must be a uuid, not {:?}",
            new.id
        )));
    }
    let applied = app.write(|tx| {
        apply_once(tx, action.id, |tx| {
            if find(tx, &new.id)?.is_some() {
                return Err(ApiError::Conflict(format!(
                    "a product with id {} already exists",
                    new.id
                )));
            }
            let product = Product {
                id: new.id.clone(),
                tenant_id: new.tenant_id.clone(),
                name: new.name.trim().to_owned(),
                price_cents: new.price_cents,
                updated_at: acted_at(&action),
            };
            tx.execute(
                "INSERT INTO products (id, tenant_id, name, price_cents, updated_at, updated_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    product.id,
                    product.tenant_id,
                    product.name,
                    product.price_cents,
                    sql_time(product.updated_at),
                    action.id.to_string()
                ],
            )?;
            let change = format!("add {} {}", product.name, money(product.price_cents));
            log(tx, action.id, change)?;
            Ok(product)
        })
    })?;
    Ok(app.respond(StatusCode::CREATED, applied))
}

async fn update_price(
    State(app): State<Arc<Shared>>,
    action: ActionHeaders,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let PriceChange { price_cents } = parse_body(&body)?;
    if let Some(problem) = invalid("-", price_cents) {
        return Err(ApiError::BadRequest(problem));
    }
    let acted_at = acted_at(&action);
    let applied = app.write(|tx| {
        apply_once(tx, action.id, |tx| {
            let Some((current, updated_by)) = find(tx, &id)? else {
                return Err(ApiError::NotFound(format!("there is no product {id}")));
            };
            // Last-write-wins by the time the user acted, the action id breaking ties: the
            // order the client's local store uses, so both sides pick the same winner.
            let newer = (acted_at, action.id.to_string()) >= (current.updated_at, updated_by);
            let change = if newer {
                tx.execute(
                    "UPDATE products SET price_cents = ?2, updated_at = ?3, updated_by = ?4
                     WHERE id = ?1",
                    params![id, price_cents, sql_time(acted_at), action.id.to_string()],
                )?;
                format!(
                    "price {} {} -> {}",
                    current.name,
                    money(current.price_cents),
                    money(price_cents)
                )
            } else {
                format!(
                    "price {} {} ignored: made before the change it would replace",
                    current.name,
                    money(price_cents)
                )
            };
            log(tx, action.id, change)?;
            Ok(find(tx, &id)?.map_or(current, |(product, _)| product))
        })
    })?;
    Ok(app.respond(StatusCode::OK, applied))
}

async fn delete_product(
    State(app): State<Arc<Shared>>,
    action: ActionHeaders,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let applied = app.write(|tx| {
        apply_once(tx, action.id, |tx| {
            let Some((current, _)) = find(tx, &id)? else {
                return Err(ApiError::NotFound(format!("there is no product {id}")));
            };
            tx.execute("DELETE FROM products WHERE id = ?1", [&id])?;
            tx.execute("DELETE FROM stock WHERE product_id = ?1", [&id])?;
            log(tx, action.id, format!("delete {}", current.name))?;
            Ok(())
        })
    })?;
    Ok(app.respond(StatusCode::NO_CONTENT, applied))
}

async fn add_stock(
    State(app): State<Arc<Shared>>,
    action: ActionHeaders,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let StockDelivery { quantity } = parse_body(&body)?;
    if quantity <= 0 {
        return Err(ApiError::BadRequest(format!(
            "a delivery brings at least one unit (got {quantity})"
        )));
    }
    let applied = app.write(|tx| {
        apply_once(tx, action.id, |tx| {
            let Some((current, _)) = find(tx, &id)? else {
                return Err(ApiError::NotFound(format!("there is no product {id}")));
            };
            let total: i64 = tx.query_row(
                "INSERT INTO stock (product_id, quantity) VALUES (?1, ?2)
                 ON CONFLICT (product_id) DO UPDATE SET quantity = quantity + excluded.quantity
                 RETURNING quantity",
                params![id, quantity],
                |row| row.get(0),
            )?;
            log(
                tx,
                action.id,
                format!("stock {} +{quantity} -> {total}", current.name),
            )?;
            Ok(total)
        })
    })?;
    Ok(app.respond(StatusCode::OK, applied))
}
