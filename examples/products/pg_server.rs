//! The products server on PostgreSQL: the same HTTP API as `server.rs`, for several stateless
//! instances behind a load balancer on one database.
//!
//! Every write goes through `sync_runtime::server::apply_once_async` on a `tokio-postgres`
//! transaction: the action id is claimed (inserted under a unique key) before the change
//! runs, so a copy of the action that reaches another instance at the same moment waits for
//! the first and answers with its recorded response; the change is applied once. An id
//! replayed with a different request is answered with the recorded response and logged.
//! Price updates are last-write-wins in SQL, by (action timestamp, action id).

use crate::model::{invalid, money, CreateProduct, ErrorBody, PriceChange, Product};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use deadpool_postgres::{Manager, Pool};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use sync_runtime::server::{apply_once_async, postgres, ActionHeaders, Applied};
use sync_runtime::{ActionId, ClassifyError, SyncError};
use tokio::net::TcpListener;
use tokio_postgres::{NoTls, Transaction};

/// The response header that marks an answer replayed from `applied_actions`
/// (`different-request` when the id came with different parameters).
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS products (
        id text PRIMARY KEY,
        tenant_id text NOT NULL,
        name text NOT NULL,
        price_cents bigint NOT NULL,
        updated_at bigint NOT NULL, -- when the user behind the last applied change acted
        updated_by uuid NOT NULL    -- that change's action id: breaks ties, as clients do
    );
    -- What each applied action did, in the order the server applied them.
    CREATE TABLE IF NOT EXISTS changes (
        seq bigserial PRIMARY KEY,
        action_id uuid NOT NULL,
        change text NOT NULL
    );
";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One server instance: a connection pool on the shared database and an axum listener.
pub struct PgProductServer {
    address: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    pool: Pool,
    /// Sleep this long after a change, before committing (to stop a process mid-transaction).
    pause_before_commit: Option<Duration>,
}

/// How an instance runs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The loopback port; 0 picks a free one.
    pub port: u16,
    /// Connections in the pool.
    pub pool_size: Option<usize>,
    /// Sleep after each change, before committing, saying so on stdout.
    pub pause_before_commit: Option<Duration>,
}

impl PgProductServer {
    /// Connects to the database `config` names, creates the tables if needed, and serves on
    /// `127.0.0.1:<port>` in the background.
    pub async fn start(config: tokio_postgres::Config, options: Options) -> Result<Self, Error> {
        let manager = Manager::new(config, NoTls);
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.unwrap_or(16))
            .build()?;
        {
            let mut client = pool.get().await?;
            let client: &mut tokio_postgres::Client = &mut client;
            // Instances starting together create the tables once (the lock is per database).
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock(1)", &[]).await?;
            tx.batch_execute(SCHEMA).await?;
            tx.commit().await?;
            postgres::migrate(client).await?;
        }
        let listener = TcpListener::bind(("127.0.0.1", options.port)).await?;
        let server = Self {
            address: listener.local_addr()?,
            shared: Arc::new(Shared {
                pool,
                pause_before_commit: options.pause_before_commit,
            }),
        };
        let app = server.routes();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The API's routes over this instance's pool.
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/products", get(list_products).post(add_product))
            .route("/products/{id}", axum::routing::delete(delete_product))
            .route("/products/{id}/price", put(update_price))
            .with_state(Arc::clone(&self.shared))
    }
}

fn product_from_row(row: &tokio_postgres::Row) -> Product {
    Product {
        id: row.get(0),
        tenant_id: row.get(1),
        name: row.get(2),
        price_cents: row.get(3),
        updated_at: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
    }
}

const PRODUCT_COLUMNS: &str = "id, tenant_id, name, price_cents, updated_at";

/// A refusal, sent as `{"error": "..."}` with its status.
#[derive(Debug)]
enum ApiError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    /// Try again (a concurrent copy of the action, or the database is unreachable).
    Retry(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::Retry(m) => {
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(ErrorBody { error: m }),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
                return response;
            }
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        };
        (status, Json(ErrorBody { error })).into_response()
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        if error.is_closed() {
            ApiError::Retry(format!("database: {error}"))
        } else {
            ApiError::Internal(format!("database: {error}"))
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        ApiError::Retry(format!("database: {error}"))
    }
}

impl From<SyncError> for ApiError {
    fn from(error: SyncError) -> Self {
        if error.is_transient() {
            ApiError::Retry(error.to_string())
        } else {
            ApiError::Internal(error.to_string())
        }
    }
}

impl Shared {
    /// The response to a write that `apply_once_async` applied now or before.
    fn respond<T: Serialize>(
        &self,
        status: StatusCode,
        action: ActionId,
        applied: Applied<T>,
    ) -> Response {
        let replayed = match &applied {
            Applied::Fresh(_) => None,
            Applied::Replayed(_) => Some("true"),
            Applied::ReplayedDifferently(_) => {
                eprintln!(
                    "products: action {action} was replayed with a different request; \
                     answered with the recorded response, the new request not applied"
                );
                Some("different-request")
            }
        };
        let mut response = if status == StatusCode::NO_CONTENT {
            status.into_response()
        } else {
            (status, Json(applied.into_response())).into_response()
        };
        if let Some(replayed) = replayed {
            response
                .headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static(replayed));
        }
        response
    }

    /// Stops here for `pause_before_commit`, when set: the change is made, not committed.
    async fn pause(&self, action: ActionId) {
        if let Some(pause) = self.pause_before_commit {
            println!("products: action {action} applied, pausing before commit");
            tokio::time::sleep(pause).await;
        }
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid: {e}")))
}

/// What a request asks for, as `apply_once_async` fingerprints it.
fn request(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    [method.as_bytes(), b" ", path.as_bytes(), b"\n", body].concat()
}

async fn find(tx: &Transaction<'_>, id: &str) -> Result<Option<Product>, ApiError> {
    let row = tx
        .query_opt(
            &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(product_from_row))
}

async fn log(tx: &Transaction<'_>, action: ActionId, change: String) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO changes (action_id, change) VALUES ($1, $2)",
        &[&action.0, &change],
    )
    .await?;
    Ok(())
}

/// When the user acted: the client's header, or now if it sent none.
fn acted_at(action: &ActionHeaders) -> i64 {
    let millis = action.timestamp.map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        },
        |t| t.as_millis(),
    );
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
    let client = app.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {PRODUCT_COLUMNS} FROM products WHERE tenant_id = $1 ORDER BY name, id"
            ),
            &[&tenant],
        )
        .await?;
    Ok(Json(rows.iter().map(product_from_row).collect()))
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
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let applied = apply_once_async(
        &tx,
        action.id,
        &request("POST", "/products", &body),
        async {
            if find(&tx, &new.id).await?.is_some() {
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
                updated_at: u64::try_from(acted_at(&action)).unwrap_or(0),
            };
            tx.execute(
                "INSERT INTO products (id, tenant_id, name, price_cents, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &product.id,
                    &product.tenant_id,
                    &product.name,
                    &product.price_cents,
                    &acted_at(&action),
                    &action.id.0,
                ],
            )
            .await?;
            let change = format!("add {} {}", product.name, money(product.price_cents));
            log(&tx, action.id, change).await?;
            app.pause(action.id).await;
            Ok(product)
        },
    )
    .await?;
    tx.commit().await?;
    Ok(app.respond(StatusCode::CREATED, action.id, applied))
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
    let path = format!("/products/{id}/price");
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let applied = apply_once_async(&tx, action.id, &request("PUT", &path, &body), async {
        // Last-write-wins in one statement (server::postgres::LAST_WRITE_WINS): the row lock
        // orders two instances updating the same product at once.
        let updated = tx
            .query_opt(
                &format!(
                    "UPDATE products SET price_cents = $2, updated_at = $3, updated_by = $4
                     WHERE id = $1 AND (updated_at, updated_by) <= ($3, $4)
                     RETURNING {PRODUCT_COLUMNS}"
                ),
                &[&id, &price_cents, &acted_at, &action.id.0],
            )
            .await?;
        let (product, change) = match updated {
            Some(row) => {
                let product = product_from_row(&row);
                let change = format!("price {} -> {}", product.name, money(price_cents));
                (product, change)
            }
            None => {
                let Some(current) = find(&tx, &id).await? else {
                    return Err(ApiError::NotFound(format!("there is no product {id}")));
                };
                let change = format!(
                    "price {} {} ignored: made before the change it would replace",
                    current.name,
                    money(price_cents)
                );
                (current, change)
            }
        };
        log(&tx, action.id, change).await?;
        app.pause(action.id).await;
        Ok(product)
    })
    .await?;
    tx.commit().await?;
    Ok(app.respond(StatusCode::OK, action.id, applied))
}

async fn delete_product(
    State(app): State<Arc<Shared>>,
    action: ActionHeaders,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let path = format!("/products/{id}");
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let applied = apply_once_async(&tx, action.id, &request("DELETE", &path, &[]), async {
        let deleted = tx
            .query_opt("DELETE FROM products WHERE id = $1 RETURNING name", &[&id])
            .await?;
        let Some(row) = deleted else {
            return Err(ApiError::NotFound(format!("there is no product {id}")));
        };
        log(
            &tx,
            action.id,
            format!("delete {}", row.get::<_, String>(0)),
        )
        .await?;
        app.pause(action.id).await;
        Ok(())
    })
    .await?;
    tx.commit().await?;
    Ok(app.respond(StatusCode::NO_CONTENT, action.id, applied))
}
