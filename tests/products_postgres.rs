//! The products example's PostgreSQL server (`examples/products/pg_server.rs`) as several
//! instances on one database, each its own process, as behind a load balancer:
//!
//! - two instances, three clients replaying 1,000 actions each through a proxy that sends a
//!   share of them to both instances at the same moment: every action applied once, and the
//!   final rows equal those of a run on one instance;
//! - an instance killed (SIGKILL) in the middle of a transaction: nothing half-applied, and
//!   the replay completes on the other instance;
//! - bad input: malformed or missing action headers, and an action id replayed with other
//!   parameters (answered with the recorded response, not applied).
//!
//! Needs a PostgreSQL server: `SYNC_TEST_POSTGRES_URL` is its connection string
//! (`scripts/postgres.sh` starts a throwaway cluster and sets it; `scripts/test.sh` uses it).
//! Without it the tests say so and pass, unless `CI` is set: then they fail.

#[allow(dead_code)]
#[path = "../examples/products/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "../examples/products/pg_server.rs"]
mod pg_server;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use model::{CreateProduct, PriceChange, Product};
use pg_server::{Options, PgProductServer, REPLAYED_HEADER};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use sync_runtime::http::{ACTION_ID_HEADER, ACTION_TIMESTAMP_HEADER};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Config, NoTls};

const URL_VARIABLE: &str = "SYNC_TEST_POSTGRES_URL";
// What a child process running `instance` reads.
const CHILD_URL: &str = "PRODUCTS_INSTANCE_DATABASE_URL";
const CHILD_DATABASE: &str = "PRODUCTS_INSTANCE_DATABASE";
const CHILD_PAUSE_MS: &str = "PRODUCTS_INSTANCE_PAUSE_MS";

/// The cluster's connection string; `None` (the test passes, saying why) when it is not set,
/// outside CI.
fn cluster() -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {URL_VARIABLE} is not: run through scripts/postgres.sh")
        }
        Err(_) => {
            eprintln!(
                "{URL_VARIABLE} is not set: PostgreSQL not tested (scripts/postgres.sh sets it)"
            );
            None
        }
    }
}

async fn connect(config: &Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// Creates an empty database on the cluster; returns its name and a config naming it.
async fn fresh_database(url: &str) -> (String, Config) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut config: Config = url.parse().expect(URL_VARIABLE);
    let admin = connect(&config).await;
    let name = format!(
        "products_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    config.dbname(&name);
    (name, config)
}

/// Not a test: one server instance, run by the other tests as a child process of this test
/// binary (`--ignored --exact instance`), until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a server instance that the other tests start as a child process"]
async fn instance() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let mut config: Config = url.parse().unwrap();
    config.dbname(std::env::var(CHILD_DATABASE).unwrap());
    let pause = std::env::var(CHILD_PAUSE_MS)
        .ok()
        .map(|ms| Duration::from_millis(ms.parse().unwrap()));
    let options = Options {
        port: 0,
        pool_size: Some(8),
        pause_before_commit: pause,
    };
    let server = PgProductServer::start(config, options).await.unwrap();
    println!("products: serving on {}", server.url());
    std::future::pending::<()>().await;
}

/// A server instance in its own process, and the lines it prints.
struct Instance {
    url: String,
    process: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Instance {
    async fn start(url: &str, database: &str, pause_before_commit: Option<Duration>) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--ignored",
                "--exact",
                "instance",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_URL, url)
            .env(CHILD_DATABASE, database)
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(pause) = pause_before_commit {
            command.env(CHILD_PAUSE_MS, pause.as_millis().to_string());
        }
        let mut process = command.spawn().expect("start an instance");
        let mut stdout = BufReader::new(process.stdout.take().unwrap()).lines();
        let (send, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let prefix = "products: serving on ";
        let url = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.recv())
                .await
                .expect("the instance starts")
                .expect("the instance prints its address");
            // libtest may have started the line ("test instance ... ").
            if let Some(at) = line.find(prefix) {
                break line[at + prefix.len()..].trim().to_owned();
            }
        };
        Instance {
            url,
            process,
            lines,
        }
    }

    /// Waits for a line containing `text`.
    async fn wait_for(&mut self, text: &str) {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("the instance prints {text:?}"))
                .expect("the instance is running");
            if line.contains(text) {
                return;
            }
        }
    }
}

/// One queued action, as a client replays it.
#[derive(Clone, Debug)]
struct Action {
    id: uuid::Uuid,
    timestamp: u64,
    method: reqwest::Method,
    path: String,
    body: String,
}

impl Action {
    fn add(id: uuid::Uuid, timestamp: u64, product: uuid::Uuid, name: &str, cents: i64) -> Self {
        let body = CreateProduct {
            tenant_id: "cafe".into(),
            id: product.to_string(),
            name: name.into(),
            price_cents: cents,
        };
        Action {
            id,
            timestamp,
            method: reqwest::Method::POST,
            path: "/products".into(),
            body: serde_json::to_string(&body).unwrap(),
        }
    }

    fn price(id: uuid::Uuid, timestamp: u64, product: uuid::Uuid, cents: i64) -> Self {
        Action {
            id,
            timestamp,
            method: reqwest::Method::PUT,
            path: format!("/products/{product}/price"),
            body: serde_json::to_string(&PriceChange { price_cents: cents }).unwrap(),
        }
    }

    /// Sends the action to `base` until it is answered (a 503 is retried, as clients do).
    async fn replay(&self, http: &reqwest::Client, base: &str) -> reqwest::Response {
        for _ in 0..100 {
            let response = http
                .request(self.method.clone(), format!("{base}{}", self.path))
                .header(ACTION_ID_HEADER, self.id.to_string())
                .header(ACTION_TIMESTAMP_HEADER, self.timestamp.to_string())
                .header("content-type", "application/json")
                .body(self.body.clone())
                .send()
                .await
                .expect("the request is answered");
            if response.status() != StatusCode::SERVICE_UNAVAILABLE {
                assert!(
                    response.status().is_success(),
                    "{self:?}: {}",
                    response.status()
                );
                return response;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{self:?} was never applied");
    }
}

/// An hour ago, in Unix milliseconds: action timestamps the servers accept (they refuse stamps
/// from their future and stamps older than the clients' time-to-live).
fn recent() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970");
    u64::try_from(now.as_millis()).expect("a millisecond count") - 3_600_000
}

fn uuid(client: u64, n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128((u128::from(client + 1) << 64) | u128::from(n))
}

/// The shared products, created first; then three clients' queues: each adds its own 20
/// products, then changes prices of any of them at times that interleave with the other
/// clients', so last-write-wins decides the final prices.
fn workload(per_client: u64) -> (Vec<Action>, Vec<Vec<Action>>) {
    let base = recent();
    let shared: Vec<uuid::Uuid> = (0..20).map(|n| uuid(99, 1000 + n)).collect();
    let setup = shared
        .iter()
        .enumerate()
        .map(|(n, &product)| {
            Action::add(
                uuid(99, n as u64),
                base,
                product,
                &format!("Shared {n}"),
                100,
            )
        })
        .collect();
    let clients = (0..3)
        .map(|client| {
            let mut rng = fastrand::Rng::with_seed(client);
            let own: Vec<uuid::Uuid> = (0..20).map(|n| uuid(client, 10_000 + n)).collect();
            let mut actions: Vec<Action> = own
                .iter()
                .enumerate()
                .map(|(n, &product)| {
                    let name = format!("Client {client} product {n}");
                    Action::add(uuid(client, n as u64), base + 1, product, &name, 200)
                })
                .collect();
            for n in actions.len() as u64..per_client {
                let product = if rng.bool() {
                    shared[rng.usize(..shared.len())]
                } else {
                    own[rng.usize(..own.len())]
                };
                let at = base + 10 + rng.u64(0..5_000);
                actions.push(Action::price(
                    uuid(client, n),
                    at,
                    product,
                    rng.i64(1..100_000),
                ));
            }
            actions
        })
        .collect();
    (setup, clients)
}

/// Replays the setup, then the three queues concurrently (each in order), through `base`.
async fn run(base: &str, setup: &[Action], clients: &[Vec<Action>]) {
    let http = reqwest::Client::new();
    for action in setup {
        action.replay(&http, base).await;
    }
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .map(|actions| {
            let (http, base) = (http.clone(), base.to_owned());
            tokio::spawn(async move {
                for action in &actions {
                    action.replay(&http, &base).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// A load balancer that forwards each request to one instance, in turn, and every
/// `duplicate_every`-th to both at the same moment (as a client's retry after a timeout
/// while the first request still runs), answering with the first instance's response.
struct Proxy {
    instances: [String; 2],
    http: reqwest::Client,
    duplicate_every: u64,
    requests: AtomicU64,
    duplicated: AtomicU64,
    /// Duplicated requests where both instances answered as if applying it.
    applied_twice: AtomicU64,
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if [ACTION_ID_HEADER, ACTION_TIMESTAMP_HEADER, "content-type"].contains(&name.as_str()) {
            headers.insert(name.clone(), value.clone());
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let send = |instance: &String| {
        proxy
            .http
            .request(parts.method.clone(), format!("{instance}{path}"))
            .headers(headers.clone())
            .body(body.clone())
            .send()
    };
    let n = proxy.requests.fetch_add(1, Ordering::SeqCst);
    let response = if n % proxy.duplicate_every == 0 {
        proxy.duplicated.fetch_add(1, Ordering::SeqCst);
        let (first, second) = tokio::join!(send(&proxy.instances[0]), send(&proxy.instances[1]));
        let (first, second) = (first.unwrap(), second.unwrap());
        let fresh = |r: &reqwest::Response| {
            r.status().is_success() && !r.headers().contains_key(REPLAYED_HEADER)
        };
        if fresh(&first) && fresh(&second) {
            proxy.applied_twice.fetch_add(1, Ordering::SeqCst);
        }
        first
    } else {
        send(&proxy.instances[(n % 2) as usize]).await.unwrap()
    };
    let status = response.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            out_headers.insert(name.clone(), value.clone());
        }
    }
    let body = response.bytes().await.unwrap();
    (status, out_headers, body).into_response()
}

async fn start_proxy(instances: [String; 2], duplicate_every: u64) -> (String, Arc<Proxy>) {
    let proxy = Arc::new(Proxy {
        instances,
        http: reqwest::Client::new(),
        duplicate_every,
        requests: AtomicU64::new(0),
        duplicated: AtomicU64::new(0),
        applied_twice: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(Arc::clone(&proxy));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, proxy)
}

async fn rows(config: &Config) -> Vec<(String, String, i64, i64, uuid::Uuid)> {
    let client = connect(config).await;
    client
        .query(
            "SELECT id, name, price_cents, updated_at, updated_by FROM products ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// (changes logged, distinct action ids among them, applied_actions records).
async fn applied(config: &Config) -> (i64, i64, i64) {
    let client = connect(config).await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM changes), (SELECT count(DISTINCT action_id) FROM changes),
                    (SELECT count(*) FROM applied_actions)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_three_clients_and_duplicated_deliveries_apply_each_action_once() {
    let Some(url) = cluster() else {
        return;
    };
    let (setup, clients) = workload(1_000);
    let total = (setup.len() + clients.iter().map(Vec::len).sum::<usize>()) as i64;

    // Two instances on one database, behind a proxy that duplicates every fourth request.
    let (name, config) = fresh_database(&url).await;
    let a = Instance::start(&url, &name, None).await;
    let b = Instance::start(&url, &name, None).await;
    let (proxy_url, proxy) = start_proxy([a.url.clone(), b.url.clone()], 4).await;
    run(&proxy_url, &setup, &clients).await;
    let duplicated = proxy.duplicated.load(Ordering::SeqCst);
    assert!(duplicated > 700, "{duplicated} duplicated deliveries");
    assert_eq!(proxy.applied_twice.load(Ordering::SeqCst), 0);
    assert_eq!(applied(&config).await, (total, total, total));
    let two = rows(&config).await;

    // The same actions on one instance and a fresh database.
    let (single_name, single_config) = fresh_database(&url).await;
    let single = Instance::start(&url, &single_name, None).await;
    run(&single.url, &setup, &clients).await;
    assert_eq!(applied(&single_config).await, (total, total, total));
    assert_eq!(rows(&single_config).await, two);
    assert_eq!(two.len(), 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_mid_transaction_leaves_nothing_and_the_other_applies_the_replay() {
    let Some(url) = cluster() else {
        return;
    };
    let (name, config) = fresh_database(&url).await;
    let mut doomed = Instance::start(&url, &name, Some(Duration::from_secs(120))).await;
    let survivor = Instance::start(&url, &name, None).await;
    let action = Action::add(uuid(5, 1), recent(), uuid(5, 2), "Tea", 250);

    let http = reqwest::Client::new();
    let first = tokio::spawn({
        let (action, http, base) = (action.clone(), http.clone(), doomed.url.clone());
        async move {
            http.request(action.method.clone(), format!("{base}{}", action.path))
                .header(ACTION_ID_HEADER, action.id.to_string())
                .header(ACTION_TIMESTAMP_HEADER, action.timestamp.to_string())
                .header("content-type", "application/json")
                .body(action.body.clone())
                .send()
                .await
        }
    });
    // The product row, its change log entry and the claim are written, not committed.
    doomed.wait_for("pausing before commit").await;
    doomed.process.start_kill().unwrap(); // SIGKILL
    doomed.process.wait().await.unwrap();
    assert!(
        first.await.unwrap().is_err(),
        "the killed instance never answers"
    );

    // PostgreSQL rolls the dead connection's transaction back: nothing is half-applied.
    let watcher = connect(&config).await;
    for _ in 0..100 {
        let open: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = $1 AND state LIKE 'idle in transaction%'",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(applied(&config).await, (0, 0, 0));
    assert!(rows(&config).await.is_empty());

    // The client replays the action with the same id; the other instance applies it, once.
    let response = action.replay(&http, &survivor.url).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(!response.headers().contains_key(REPLAYED_HEADER));
    let again = action.replay(&http, &survivor.url).await;
    assert_eq!(again.headers()[REPLAYED_HEADER], "true");
    assert_eq!(applied(&config).await, (1, 1, 1));
    assert_eq!(rows(&config).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_action_headers_are_refused_and_a_reused_id_never_applies_new_parameters() {
    let Some(url) = cluster() else {
        return;
    };
    let (_, config) = fresh_database(&url).await;
    let server = PgProductServer::start(config.clone(), Options::default())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let post = |headers: &[(&str, &[u8])], body: String| {
        let mut request = http
            .post(format!("{}/products", server.url()))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(
                *name,
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        request.send()
    };
    let tea = Action::add(uuid(7, 1), recent(), uuid(7, 2), "Tea", 250);
    let id = tea.id.to_string();

    // Missing, malformed and forged headers: 400 with a message naming the header.
    for headers in [
        vec![],
        vec![(ACTION_ID_HEADER, b"42".as_slice())],
        vec![(ACTION_ID_HEADER, b"not-a-uuid".as_slice())],
        vec![(ACTION_ID_HEADER, b"\xff\xfe".as_slice())],
        vec![
            (ACTION_ID_HEADER, id.as_bytes()),
            (ACTION_TIMESTAMP_HEADER, b"yesterday".as_slice()),
        ],
        vec![
            (ACTION_ID_HEADER, id.as_bytes()),
            (ACTION_TIMESTAMP_HEADER, b"-5".as_slice()),
        ],
        vec![
            (ACTION_ID_HEADER, id.as_bytes()),
            (
                ACTION_TIMESTAMP_HEADER,
                b"99999999999999999999999".as_slice(),
            ),
        ],
    ] {
        let response = post(&headers, tea.body.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{headers:?}");
        let error: model::ErrorBody = response.json().await.unwrap();
        assert!(
            error.error.contains(ACTION_ID_HEADER) || error.error.contains(ACTION_TIMESTAMP_HEADER),
            "{}",
            error.error
        );
    }
    assert_eq!(applied(&config).await, (0, 0, 0));

    // The action once, then its id again with other parameters (another name and price, then
    // another route): answered with the first response, flagged, and not applied.
    let first: Product = tea.replay(&http, &server.url()).await.json().await.unwrap();
    let forged = Action::add(tea.id, tea.timestamp, uuid(7, 3), "Coffee", 1);
    let response = forged.replay(&http, &server.url()).await;
    assert_eq!(response.headers()[REPLAYED_HEADER], "different-request");
    assert_eq!(response.json::<Product>().await.unwrap(), first);
    let other_route = Action::price(tea.id, tea.timestamp + 1, uuid(7, 2), 1);
    let response = other_route.replay(&http, &server.url()).await;
    assert_eq!(response.headers()[REPLAYED_HEADER], "different-request");
    assert_eq!(response.json::<Product>().await.unwrap(), first);
    let rows = rows(&config).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].1.as_str(), rows[0].2), ("Tea", 250));
    assert_eq!(applied(&config).await, (1, 1, 1));
}
