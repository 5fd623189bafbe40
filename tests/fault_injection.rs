//! Fault injection end to end: three clients of the products example reach its server
//! through a proxy that breaks connections on purpose (`support/fault_proxy.rs`: refused,
//! reset mid-request, response lost after the server answered, delayed, `503` with
//! `Retry-After`), while their devices go on and offline, the clients restart on their own
//! store files, and the server, a separate process, is killed with SIGKILL and restarted on
//! the same database.
//!
//! Each client makes random actions: adds, price updates, deletes, and stock deliveries (which
//! add to a counter, so applying one twice would show). Every action carries its client and a
//! per-client sequence number in its parameters (the product's name `c<client>-<n>`, or the
//! price or quantity `(client + 1) * 1,000,000 + n`), so the server's log of applied changes
//! says whose action each change was. At the end, with the faults off and every queue
//! drained: every action a client accepted is applied on the server exactly once or sits in
//! that client's dead letters with a reason (never both, unless it was given up on after its
//! answer was lost); each client's actions were applied in the order it made them; no stock
//! delivery counted twice; and every client's local products are the server's.
//!
//! Each schedule runs in one of two modes. Unscoped, the clients call the example's actions as
//! they are: each client's queue is one line, and its actions must apply in the order it made
//! them. Scoped, each write goes in the ordering scope of its product (the product id, through
//! `SyncService::execute_action_in_scope`): a client's actions about one product must apply in
//! the order it made them, while those about different products replay side by side and may
//! apply in any order. Every other check is the same in both.
//!
//! The seed fixes every choice the test makes and the sequence of fates the proxy deals to
//! connections in the order they arrive; which request meets which fate also depends on
//! timing, so a failing seed usually, not always, fails again.
//!
//! ```sh
//! cargo test --test fault_injection -- --nocapture   # CI: seeds 1-3, each in both modes
//! FAULT_SEED=7 cargo test --test fault_injection -- --nocapture             # one seed
//! FAULT_SEED=7 FAULT_MODE=scoped cargo test --test fault_injection -- --nocapture
//! FAULT_SOAK_SECONDS=300 FAULT_STEPS=1000 FAULT_SEED=200 \
//!     cargo test --test fault_injection -- --nocapture                     # the soak
//! ```
//!
//! `FAULT_STEPS` sets the steps per schedule (default 250); `FAULT_MODE` (`unscoped`,
//! `scoped` or `both`, the default) the modes each seed runs in; the soak runs schedules with
//! seeds from `FAULT_SEED` (default 1) upwards until its time is up; `FAULT_DEBUG=1` prints
//! each step and every dead letter. Each schedule prints a line of figures with its seed and
//! mode, and the run a total per mode; a failure prints its seed and mode. The figures go in
//! `RELIABILITY.md`.
#![cfg(unix)]

// The example's own code, shared: this test uses part of it.
#[allow(dead_code)]
#[path = "../examples/products/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "support/fault_proxy.rs"]
mod fault_proxy;
#[allow(dead_code)]
#[path = "../examples/products/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "../examples/products/server.rs"]
mod server;

use client::{
    add_product, add_stock, delete_product, get_products, update_price, AddProductAction,
    AddProductParams, AddStockAction, AddStockParams, AppError, Client, DeleteProductAction,
    DeleteProductParams, UpdatePriceAction, UpdatePriceParams,
};
use fault_proxy::{Fate, FaultProxy, ProxyCounts};
use model::{NewProduct, Product};
use server::ProductServer;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use sync_runtime::{Action, SyncError};

const TENANT: &str = "fault-shop";
const CLIENTS: usize = 3;
/// Sequence numbers stay below this, so `(client + 1) * CODE + n` says both.
const CODE: i64 = 1_000_000;
/// How long the queues may take to drain at the end.
const DRAIN_LIMIT: Duration = Duration::from_secs(90);
/// The fault rates a schedule moves between.
const FAULT_RATES: [f64; 4] = [0.0, 0.1, 0.3, 0.6];

// ---------------------------------------------------------------------------------------
// The server, as a process of its own.

/// The server process: this test binary, re-run with the database in its environment.
/// Does nothing in a normal test run.
#[test]
fn server_process() {
    let Some(database) = std::env::var_os("FAULT_TEST_SERVER_DB") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let server = ProductServer::start(Path::new(&database))
            .await
            .expect("the server starts");
        println!("LISTENING {}", server.url());
        std::io::stdout().flush().expect("stdout");
        // It lives until it is killed, or its parent goes away (stdin closes), at most an hour.
        let parent_gone = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        });
        let _ = tokio::time::timeout(Duration::from_secs(3600), parent_gone).await;
    });
}

struct ServerProcess {
    child: Child,
    address: SocketAddr,
}

impl ServerProcess {
    async fn start(database: PathBuf) -> Self {
        tokio::task::spawn_blocking(move || {
            let mut child = Command::new(std::env::current_exe().expect("the test binary"))
                .args([
                    "server_process",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("FAULT_TEST_SERVER_DB", &database)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("the server process starts");
            let stdout = child.stdout.take().expect("piped");
            let address = BufReader::new(stdout)
                .lines()
                .take(20)
                .map_while(Result::ok)
                .find_map(|line| {
                    // The harness may have printed the test's name on the same line.
                    let at = line.find("LISTENING http://")? + "LISTENING http://".len();
                    line[at..].trim().parse().ok()
                });
            let Some(address) = address else {
                let _ = child.kill();
                panic!("the server process did not say where it listens");
            };
            Self { child, address }
        })
        .await
        .expect("started")
    }
}

impl Drop for ServerProcess {
    /// SIGKILL: the server gets no chance to finish anything.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's database, read from the file while the server runs (or not).
struct ServerData {
    products: Vec<Product>,
    /// (action id, change), in the order applied.
    changes: Vec<(String, String)>,
    stock: HashMap<String, i64>,
}

impl ServerData {
    fn read(database: &Path) -> Self {
        let db = rusqlite::Connection::open(database).expect("the server's database");
        db.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        let mut query = db
            .prepare(
                "SELECT id, tenant_id, name, price_cents, updated_at FROM products
                 WHERE tenant_id = ?1 ORDER BY name, id",
            )
            .expect("products");
        let products = query
            .query_map([TENANT], |row| {
                Ok(Product {
                    id: row.get(0)?,
                    tenant_id: row.get(1)?,
                    name: row.get(2)?,
                    price_cents: row.get(3)?,
                    updated_at: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
                })
            })
            .expect("products")
            .collect::<Result<_, _>>()
            .expect("products");
        let mut query = db
            .prepare("SELECT action_id, change FROM changes ORDER BY seq")
            .expect("changes");
        let changes = query
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("changes")
            .collect::<Result<_, _>>()
            .expect("changes");
        let mut query = db
            .prepare("SELECT product_id, quantity FROM stock")
            .expect("stock");
        let stock = query
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("stock")
            .collect::<Result<_, _>>()
            .expect("stock");
        Self {
            products,
            changes,
            stock,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The clients.

/// How the clients queue their writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// As the example's actions declare: no scope, one line per client.
    Unscoped,
    /// Each write in the ordering scope of its product (the product id), through
    /// `execute_action_in_scope`: one line per product, lines replaying side by side.
    Scoped,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Unscoped => "unscoped",
            Mode::Scoped => "scoped",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Add,
    Price,
    Delete,
    Stock,
}

/// An action a client made.
#[derive(Debug)]
struct Made {
    seq: i64,
    kind: Kind,
    product_id: String,
    /// `Ok` if the client took it (answered by the server, or queued); the error otherwise.
    taken: Result<(), String>,
}

struct Device {
    index: usize,
    mode: Mode,
    store: PathBuf,
    client: Client,
    online: bool,
    next_seq: i64,
    made: Vec<Made>,
    /// Since when its calls have had every chance to drain: its network came back, or the
    /// server did, with calls waiting.
    recovering_since: Option<Instant>,
}

impl Device {
    fn open(index: usize, mode: Mode, store: PathBuf, url: &str) -> Self {
        let client = Client::open(&store, url).expect("the client opens");
        Self {
            index,
            mode,
            store,
            client,
            online: true,
            next_seq: 0,
            made: Vec::new(),
            recovering_since: None,
        }
    }

    fn code(&self, seq: i64) -> i64 {
        (self.index as i64 + 1) * CODE + seq
    }

    fn pending(&self) -> u64 {
        self.client.service.status().pending
    }

    /// Runs a write as this client: the example's action as it is, or (scoped mode) the same
    /// action in the scope of the product it is about.
    async fn write<A: Action<Error = AppError>>(
        &self,
        product_id: &str,
        unscoped: impl std::future::Future<Output = Result<A::Output, AppError>>,
        params: A::Params,
    ) -> Result<(), AppError> {
        match self.mode {
            Mode::Unscoped => self.client.call(unscoped).await.map(drop),
            Mode::Scoped => {
                let service = &self.client.service;
                let call = service.execute_action_in_scope::<A>(params, product_id);
                self.client.call(call).await.map(drop)
            }
        }
    }

    async fn act(&mut self, rng: &mut fastrand::Rng) {
        let seq = self.next_seq;
        self.next_seq += 1;
        assert!(seq < CODE, "too many actions for the encoding");
        let code = self.code(seq);
        let local = self
            .client
            .local_products(TENANT)
            .await
            .expect("the local store reads");
        let own_prefix = format!("c{}-", self.index);
        let own: Vec<&Product> = local
            .iter()
            .filter(|p| p.name.starts_with(&own_prefix))
            .collect();
        let roll = rng.u8(0..100);
        let kind = match roll {
            _ if local.is_empty() => Kind::Add,
            0..=34 => Kind::Add,
            35..=64 => Kind::Price,
            65..=79 => Kind::Stock,
            _ if own.is_empty() => Kind::Add,
            _ => Kind::Delete,
        };
        let (product_id, result) = match kind {
            Kind::Add => {
                let product = NewProduct::new(
                    &format!("c{}-{seq}", self.index),
                    i64::from(rng.u16(100..1000)),
                );
                let id = product.id.clone();
                let params = AddProductParams {
                    tenant_id: TENANT.into(),
                    product: product.clone(),
                };
                let call = add_product(TENANT.into(), product);
                let result = self.write::<AddProductAction>(&id, call, params).await;
                (id, result)
            }
            Kind::Price => {
                let id = local[rng.usize(0..local.len())].id.clone();
                let params = UpdatePriceParams {
                    product_id: id.clone(),
                    price_cents: code,
                };
                let call = update_price(id.clone(), code);
                let result = self.write::<UpdatePriceAction>(&id, call, params).await;
                (id, result)
            }
            Kind::Stock => {
                let id = local[rng.usize(0..local.len())].id.clone();
                let params = AddStockParams {
                    product_id: id.clone(),
                    quantity: code,
                };
                let call = add_stock(id.clone(), code);
                let result = self.write::<AddStockAction>(&id, call, params).await;
                (id, result)
            }
            Kind::Delete => {
                let id = own[rng.usize(0..own.len())].id.clone();
                let params = DeleteProductParams {
                    product_id: id.clone(),
                };
                let call = delete_product(id.clone());
                let result = self.write::<DeleteProductAction>(&id, call, params).await;
                (id, result)
            }
        };
        let taken = match result {
            Ok(()) | Err(AppError::Sync(SyncError::Queued { .. })) => Ok(()),
            Err(error) => Err(error.to_string()),
        };
        if let (Err(error), Some(_)) = (&taken, std::env::var_os("FAULT_DEBUG")) {
            eprintln!(
                "client {} refused its action {seq} ({kind:?} {product_id}): {error}",
                self.index
            );
        }
        self.made.push(Made {
            seq,
            kind,
            product_id,
            taken,
        });
    }

    /// Closes the client (its service and store) and opens it again on the same file, as a
    /// restarted app would; its network starts on.
    fn restart(&mut self, url: &str) {
        let fresh = Client::open(&self.store, url).expect("the client reopens");
        self.client = fresh;
        self.online = true;
    }
}

// ---------------------------------------------------------------------------------------
// One schedule.

#[derive(Debug, Default)]
struct Figures {
    schedules: u64,
    /// Actions the clients took (answered or queued).
    actions: u64,
    /// Actions a client refused at once (the server's 4xx online, or the local check).
    refused: u64,
    proxy: ProxyCounts,
    server_kills: u64,
    client_restarts: u64,
    network_flips: u64,
    /// Changes whose action id the server's log holds more than once.
    applied_twice: u64,
    /// Actions taken that are neither applied nor dead-lettered.
    lost: u64,
    dead: BTreeMap<String, u64>,
    /// Dead letters (given up on) whose action the server had applied: its answer was lost.
    dead_but_applied: u64,
    max_replay_lag: Duration,
    elapsed: Duration,
}

impl Figures {
    fn add(&mut self, other: &Figures) {
        self.schedules += other.schedules;
        self.actions += other.actions;
        self.refused += other.refused;
        self.proxy.add(&other.proxy);
        self.server_kills += other.server_kills;
        self.client_restarts += other.client_restarts;
        self.network_flips += other.network_flips;
        self.applied_twice += other.applied_twice;
        self.lost += other.lost;
        for (reason, count) in &other.dead {
            *self.dead.entry(reason.clone()).or_default() += count;
        }
        self.dead_but_applied += other.dead_but_applied;
        self.max_replay_lag = self.max_replay_lag.max(other.max_replay_lag);
        self.elapsed += other.elapsed;
    }

    fn summary(&self) -> String {
        let faults: Vec<String> = Fate::FAULTS
            .iter()
            .map(|fate| format!("{} {}", fate.name(), self.proxy.of(*fate)))
            .collect();
        let dead: Vec<String> = self.dead.iter().map(|(r, n)| format!("{r} {n}")).collect();
        format!(
            "{} schedules, {} actions ({} refused at once), {} connections: faults {} ({}), \
             {} while the server was down; {} server kills, {} client restarts, {} network \
             flips; duplicates absorbed {}, changes applied twice {}, actions lost {}, dead \
             letters {} ({}; {} of them applied before their answer was lost); max replay \
             lag {:.2} s; {:.1} s",
            self.schedules,
            self.actions,
            self.refused,
            self.proxy.fates.iter().sum::<u64>() + self.proxy.no_server,
            self.proxy.faults(),
            faults.join(", "),
            self.proxy.no_server,
            self.server_kills,
            self.client_restarts,
            self.network_flips,
            self.proxy.replayed_answers,
            self.applied_twice,
            self.lost,
            self.dead.values().sum::<u64>(),
            if dead.is_empty() {
                "none".to_owned()
            } else {
                dead.join(", ")
            },
            self.dead_but_applied,
            self.max_replay_lag.as_secs_f64(),
            self.elapsed.as_secs_f64(),
        )
    }
}

/// The longest one step may take: a call makes at most one request, which the client gives
/// up on after 5 s, and the proxy ends every connection within 10 s.
const STEP_LIMIT: Duration = Duration::from_secs(30);

/// Runs one step of a schedule; a step that hangs fails the test, saying which.
async fn within<T>(seed: u64, what: &str, step: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP_LIMIT, step).await {
        Ok(value) => value,
        Err(_) => panic!("seed {seed}: {what} did not finish in {STEP_LIMIT:?}"),
    }
}

/// Notes each device whose calls can now drain, and the lag of each that has drained.
fn track_recovery(devices: &mut [Device], server_up: bool, figures: &mut Figures) {
    for device in devices.iter_mut() {
        let pending = device.pending();
        if !(device.online && server_up) {
            device.recovering_since = None;
        } else if let Some(since) = device.recovering_since {
            if pending == 0 {
                figures.max_replay_lag = figures.max_replay_lag.max(since.elapsed());
                device.recovering_since = None;
            }
        }
    }
}

fn start_recovering(device: &mut Device) {
    if device.pending() > 0 && device.recovering_since.is_none() {
        device.recovering_since = Some(Instant::now());
    }
}

async fn run_schedule(seed: u64, mode: Mode, steps: usize) -> Figures {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("a temp dir");
    let database = dir.path().join("server.sqlite3");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut server = Some(ServerProcess::start(database.clone()).await);
    let proxy = FaultProxy::start(seed ^ 0xfa17, server.as_ref().map(|s| s.address))
        .await
        .expect("the proxy starts");
    proxy.set_fault_rate(0.3);
    let url = proxy.url();
    let mut devices: Vec<Device> = (0..CLIENTS)
        .map(|i| {
            let store = dir.path().join(format!("client-{i}.sqlite3"));
            Device::open(i, mode, store, &url)
        })
        .collect();
    let mut figures = Figures {
        schedules: 1,
        ..Figures::default()
    };
    let mut down_for = 0u32;

    for _ in 0..steps {
        if server.is_none() {
            if down_for == 0 {
                let restarted = ServerProcess::start(database.clone()).await;
                proxy.set_upstream(Some(restarted.address));
                server = Some(restarted);
                devices.iter_mut().for_each(start_recovering);
            } else {
                down_for -= 1;
            }
        }
        // People act at a human pace, if a quick one: replays run in between.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..20))).await;
        let d = rng.usize(0..CLIENTS);
        let step_started = Instant::now();
        let roll = rng.u8(0..100);
        match roll {
            0..=54 => within(seed, "an action", devices[d].act(&mut rng)).await,
            55..=64 => {
                let device = &mut devices[d];
                device.online = !device.online;
                device.client.network.set_online(device.online);
                figures.network_flips += 1;
                if device.online && server.is_some() {
                    start_recovering(device);
                }
            }
            65..=68 => {
                devices[d].restart(&url);
                figures.client_restarts += 1;
                if server.is_some() {
                    start_recovering(&mut devices[d]);
                }
            }
            69..=71 => {
                if let Some(killed) = server.take() {
                    proxy.set_upstream(None);
                    drop(killed);
                    figures.server_kills += 1;
                    down_for = rng.u32(0..12);
                }
            }
            72..=76 => proxy.set_fault_rate(FAULT_RATES[rng.usize(0..FAULT_RATES.len())]),
            77..=86 => {
                // Whatever it answers (the server's list, or the local one): it is a read.
                let read = devices[d].client.call(get_products(TENANT.into()));
                let _ = within(seed, "a list read", read).await;
            }
            _ => tokio::time::sleep(Duration::from_millis(rng.u64(5..60))).await,
        }
        track_recovery(&mut devices, server.is_some(), &mut figures);
        if std::env::var_os("FAULT_DEBUG").is_some() {
            eprintln!("step roll {roll} client {d}: {:?}", step_started.elapsed());
        }
    }

    // Everything comes back, the faults go on for a while: every queue must drain.
    if server.is_none() {
        let restarted = ServerProcess::start(database.clone()).await;
        proxy.set_upstream(Some(restarted.address));
        server = Some(restarted);
    }
    proxy.set_fault_rate(0.3);
    for device in &mut devices {
        device.online = true;
        device.client.network.set_online(true);
        start_recovering(device);
    }
    let deadline = Instant::now() + DRAIN_LIMIT;
    while devices.iter().any(|d| d.pending() > 0) {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: the queues did not drain in {DRAIN_LIMIT:?}: {:?}",
            devices
                .iter()
                .map(|d| (d.pending(), d.client.service.status().last_error))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        track_recovery(&mut devices, true, &mut figures);
    }
    track_recovery(&mut devices, true, &mut figures);

    // With the faults off, each client reads the list, and must then hold what the server
    // holds.
    proxy.set_fault_rate(0.0);
    for device in &devices {
        let _ = device.client.call(get_products(TENANT.into())).await;
        device
            .client
            .wait_until_synced(DRAIN_LIMIT)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: client {}: {e}", device.index));
    }
    figures.proxy = proxy.counts();
    let data = ServerData::read(&database);
    check(seed, &devices, &data, &mut figures).await;
    for device in &devices {
        assert_eq!(
            device.client.local_products(TENANT).await.expect("reads"),
            data.products,
            "seed {seed}: client {} and the server disagree",
            device.index
        );
    }
    drop(server);
    figures.elapsed = started.elapsed();
    figures
}

/// Whose action (client, sequence number) a logged change was.
fn attribute(
    change: &str,
    owners: &HashMap<&str, (usize, &str)>,
    devices: &[Device],
) -> (usize, i64) {
    let words: Vec<&str> = change.split(' ').collect();
    let from_code = |money: &str| {
        let code: i64 = money
            .trim_start_matches('+')
            .replace('.', "")
            .parse()
            .unwrap_or_else(|_| panic!("a code in {change:?}"));
        (
            usize::try_from(code / CODE - 1).expect("a client"),
            code % CODE,
        )
    };
    match words[0] {
        "add" => from_name(words[1]),
        // "price <name> <old> -> <new>" or "price <name> <new> ignored: ..."
        "price" if words.get(3) == Some(&"->") => from_code(words[4]),
        "price" => from_code(words[2]),
        "stock" => from_code(words[2]),
        "delete" => {
            // An owner may delete a product twice, if it refused the first delete (a
            // product its local store no longer held): the delete applied is the one taken.
            let (owner, product_id) = owners[words[1]];
            let deletes = || {
                devices[owner]
                    .made
                    .iter()
                    .filter(move |m| m.kind == Kind::Delete && m.product_id == product_id)
            };
            let delete = deletes()
                .find(|m| m.taken.is_ok())
                .or_else(|| deletes().next())
                .unwrap_or_else(|| panic!("no delete of {product_id} made by its owner"));
            (owner, delete.seq)
        }
        _ => panic!("an unexpected change: {change:?}"),
    }
}

fn from_name(name: &str) -> (usize, i64) {
    let (client, seq) = name
        .strip_prefix('c')
        .and_then(|rest| rest.split_once('-'))
        .unwrap_or_else(|| panic!("a product name of this test: {name:?}"));
    (client.parse().expect("client"), seq.parse().expect("seq"))
}

async fn check(seed: u64, devices: &[Device], data: &ServerData, figures: &mut Figures) {
    // Who added each product (by name), to place deletes.
    let mut owners: HashMap<&str, (usize, &str)> = HashMap::new();
    let names: Vec<(String, usize, &str)> = devices
        .iter()
        .flat_map(|d| {
            d.made.iter().filter(|m| m.kind == Kind::Add).map(move |m| {
                (
                    format!("c{}-{}", d.index, m.seq),
                    d.index,
                    m.product_id.as_str(),
                )
            })
        })
        .collect();
    for (name, owner, id) in &names {
        owners.insert(name.as_str(), (*owner, *id));
    }

    // The line each action queues in, whose order must hold: its client's (unscoped), or its
    // client's calls about its product (scoped: calls about different products may replay in
    // any order).
    let line = |client: usize, seq: i64| -> (usize, Option<&str>) {
        match devices[client].mode {
            Mode::Unscoped => (client, None),
            Mode::Scoped => {
                let made = devices[client].made.iter().find(|m| m.seq == seq);
                let made = made.unwrap_or_else(|| panic!("client {client} made no action {seq}"));
                (client, Some(made.product_id.as_str()))
            }
        }
    };

    // Nothing applied twice: no action id twice in the log, no (client, n) twice.
    let mut ids = HashSet::new();
    let mut applied: HashMap<(usize, i64), usize> = HashMap::new();
    let mut order: BTreeMap<(usize, Option<&str>), Vec<i64>> = BTreeMap::new();
    for (position, (id, change)) in data.changes.iter().enumerate() {
        if !ids.insert(id.as_str()) {
            figures.applied_twice += 1;
        }
        let (client, seq) = attribute(change, &owners, devices);
        if applied.insert((client, seq), position).is_some() {
            figures.applied_twice += 1;
        }
        order.entry(line(client, seq)).or_default().push(seq);
    }
    assert_eq!(
        figures.applied_twice, 0,
        "seed {seed}: changes applied twice"
    );

    // Each client's actions (scoped: about each product) in the order it made them.
    for (&(client, product), seqs) in &order {
        let of = product.map_or(String::new(), |p| format!(" on {p}"));
        let out_of_order: Vec<_> = seqs.windows(2).filter(|w| w[0] >= w[1]).collect();
        for pair in &out_of_order {
            for seq in pair.iter() {
                let made = devices[client].made.iter().find(|m| m.seq == *seq);
                let logged =
                    data.changes.iter().enumerate().find(|(_, (_, change))| {
                        attribute(change, &owners, devices) == (client, *seq)
                    });
                eprintln!(
                    "seed {seed}: client {client} action {seq}: made {made:?}; logged {logged:?}"
                );
            }
        }
        if !out_of_order.is_empty() {
            eprintln!("seed {seed}: client {client}'s applied order{of}: {seqs:?}");
        }
        assert!(
            out_of_order.is_empty(),
            "seed {seed}: client {client}'s actions{of} applied out of order: {out_of_order:?}"
        );
    }

    // Each delivery counted once: a product's stock is the sum of its logged deliveries.
    let mut delivered: HashMap<&str, i64> = HashMap::new();
    for (_, change) in &data.changes {
        if let Some(rest) = change.strip_prefix("stock ") {
            let mut words = rest.split(' ');
            let name = words.next().expect("a name");
            let quantity: i64 = words
                .next()
                .and_then(|q| q.strip_prefix('+')?.parse().ok())
                .expect("a quantity");
            if let Some((_, id)) = owners.get(name) {
                *delivered.entry(id).or_default() += quantity;
            }
        }
    }
    for product in &data.products {
        assert_eq!(
            data.stock.get(&product.id).copied().unwrap_or(0),
            delivered.get(product.id.as_str()).copied().unwrap_or(0),
            "seed {seed}: the stock of {} is not the sum of its deliveries",
            product.name
        );
    }

    // Every action taken: applied once, or dead-lettered with a reason.
    for device in devices {
        let mut dead: HashMap<i64, sync_runtime::store::DeadReason> = HashMap::new();
        for letter in device.client.service.dead_letters().await.expect("reads") {
            *figures
                .dead
                .entry(letter.reason.as_str().to_owned())
                .or_default() += 1;
            if std::env::var_os("FAULT_DEBUG").is_some() {
                eprintln!(
                    "client {} dead letter {} {}: {} {}",
                    device.index,
                    letter.action.name,
                    letter.action.params,
                    letter.reason,
                    letter.message
                );
            }
            let params: serde_json::Value =
                serde_json::from_str(&letter.action.params).expect("json params");
            let code = |field: &str| params[field].as_i64().map(|c| c % CODE);
            let seq = match letter.action.name.as_str() {
                "add_product" => params["product"]["name"].as_str().map(|n| from_name(n).1),
                "update_price" => code("price_cents"),
                "add_stock" => code("quantity"),
                "delete_product" => device
                    .made
                    .iter()
                    .find(|m| {
                        // The first delete of that product not placed yet.
                        m.kind == Kind::Delete
                            && Some(m.product_id.as_str()) == params["product_id"].as_str()
                            && !dead.contains_key(&m.seq)
                    })
                    .map(|m| m.seq),
                _ => None, // a list refresh given up on: a read, nothing to apply
            };
            if let Some(seq) = seq {
                dead.insert(seq, letter.reason);
            }
        }
        for made in &device.made {
            let was_applied = applied.contains_key(&(device.index, made.seq));
            match (&made.taken, dead.get(&made.seq)) {
                (Err(error), _) => assert!(
                    !was_applied,
                    "seed {seed}: client {} action {} ({:?}) was refused ({error}) yet applied",
                    device.index, made.seq, made.kind
                ),
                (Ok(()), None) => {
                    if !was_applied {
                        figures.lost += 1;
                        let history: Vec<String> = devices
                            .iter()
                            .flat_map(|d| {
                                d.made
                                    .iter()
                                    .filter(|m| m.product_id == made.product_id)
                                    .map(move |m| format!("client {} {m:?}", d.index))
                            })
                            .collect();
                        eprintln!(
                            "seed {seed}: client {} action {} ({:?} {}) was lost; the \
                             product's history: {history:#?}",
                            device.index, made.seq, made.kind, made.product_id
                        );
                    }
                }
                (Ok(()), Some(reason)) => {
                    use sync_runtime::store::DeadReason::{Expired, TooManyRetries};
                    if was_applied {
                        assert!(
                            matches!(reason, TooManyRetries | Expired),
                            "seed {seed}: client {} action {} was applied and also \
                             dead-lettered as {reason}",
                            device.index,
                            made.seq
                        );
                        figures.dead_but_applied += 1;
                    }
                }
            }
        }
        figures.actions += device.made.iter().filter(|m| m.taken.is_ok()).count() as u64;
        figures.refused += device.made.iter().filter(|m| m.taken.is_err()).count() as u64;
    }
    assert_eq!(figures.lost, 0, "seed {seed}: actions lost");
}

/// Prints how to run a failed schedule again.
struct SeedOnFailure(u64, Mode);

impl Drop for SeedOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "FAILED with seed {0}, {1}: FAULT_SEED={0} FAULT_MODE={1} cargo test --test fault_injection -- --nocapture",
                self.0,
                self.1.name()
            );
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_through_faults_and_kills_apply_every_action_once_in_order() {
    let steps = env_number("FAULT_STEPS").map_or(250, |s| s as usize);
    let soak = env_number("FAULT_SOAK_SECONDS").map(Duration::from_secs);
    let first_seed = env_number("FAULT_SEED");
    let seeds: Vec<u64> = match (soak, first_seed) {
        (Some(_), first) => (first.unwrap_or(1)..).take(1_000_000).collect(),
        (None, Some(seed)) => vec![seed],
        (None, None) => vec![1, 2, 3],
    };
    let modes = match std::env::var("FAULT_MODE").ok().as_deref() {
        None | Some("both") => vec![Mode::Unscoped, Mode::Scoped],
        Some("unscoped") => vec![Mode::Unscoped],
        Some("scoped") => vec![Mode::Scoped],
        Some(other) => panic!("FAULT_MODE is unscoped, scoped or both, not {other:?}"),
    };
    let started = Instant::now();
    let mut totals: Vec<(Mode, Figures)> = modes.iter().map(|m| (*m, Figures::default())).collect();
    'seeds: for seed in seeds {
        for (mode, total) in &mut totals {
            if soak.is_some_and(|limit| started.elapsed() >= limit) {
                break 'seeds;
            }
            let guard = SeedOnFailure(seed, *mode);
            let figures = run_schedule(seed, *mode, steps).await;
            drop(guard);
            println!("seed {seed} {}: {}", mode.name(), figures.summary());
            total.add(&figures);
        }
    }
    for (mode, total) in &totals {
        println!("TOTAL {}: {}", mode.name(), total.summary());
    }
}
