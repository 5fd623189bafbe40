//! A TCP proxy on 127.0.0.1 that stands between HTTP clients and a server and breaks
//! connections on purpose: seeded, so the n-th connection always gets the same fault.
//!
//! Each accepted connection gets one fate, drawn from the seeded generator in the order
//! connections arrive: passed through, refused (reset at once), reset in the middle of its
//! request (part of it forwarded), its response lost (the request forwarded, the server's
//! whole answer read and then the client's connection reset without it), delayed (then
//! passed), or answered `503 Service Unavailable` with `Retry-After: 0` or `1` by the proxy
//! itself. Faults act per connection, which is per request for clients that keep no idle
//! connections (the products client sets `pool_max_idle_per_host(0)`).
//!
//! The server behind it can go away and come back on another port
//! ([`FaultProxy::set_upstream`]); while there is none, connections are reset at once, as a
//! refused connection would be. Every connection ends within [`CONNECTION_LIMIT`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The longest a proxied connection lives.
pub const CONNECTION_LIMIT: Duration = Duration::from_secs(10);
/// The longest delay the `Delay` fault adds.
pub const MAX_DELAY: Duration = Duration::from_millis(400);
/// The response header by which the products server marks an answer replayed from its
/// record of applied actions.
const REPLAYED_HEADER: &[u8] = b"idempotent-replayed";

/// What happens to one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Pass,
    Refuse,
    ResetMidRequest,
    LoseResponse,
    Delay,
    Unavailable,
}

impl Fate {
    pub const FAULTS: [Fate; 5] = [
        Fate::Refuse,
        Fate::ResetMidRequest,
        Fate::LoseResponse,
        Fate::Delay,
        Fate::Unavailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fate::Pass => "passed",
            Fate::Refuse => "refused",
            Fate::ResetMidRequest => "reset mid-request",
            Fate::LoseResponse => "response lost",
            Fate::Delay => "delayed",
            Fate::Unavailable => "503",
        }
    }

    fn index(self) -> usize {
        match self {
            Fate::Pass => 0,
            Fate::Refuse => 1,
            Fate::ResetMidRequest => 2,
            Fate::LoseResponse => 3,
            Fate::Delay => 4,
            Fate::Unavailable => 5,
        }
    }
}

/// What the proxy did so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProxyCounts {
    /// Connections per fate, indexed as [`Fate::index`].
    pub fates: [u64; 6],
    /// Connections reset because no server was there.
    pub no_server: u64,
    /// Answers the server marked as replayed: requests carrying an action id it had already
    /// applied, answered from its record instead of applied again.
    pub replayed_answers: u64,
}

impl ProxyCounts {
    pub fn of(&self, fate: Fate) -> u64 {
        self.fates[fate.index()]
    }

    pub fn faults(&self) -> u64 {
        Fate::FAULTS.iter().map(|f| self.of(*f)).sum()
    }

    pub fn add(&mut self, other: &ProxyCounts) {
        for (mine, theirs) in self.fates.iter_mut().zip(other.fates) {
            *mine += theirs;
        }
        self.no_server += other.no_server;
        self.replayed_answers += other.replayed_answers;
    }
}

struct Shared {
    upstream: Mutex<Option<SocketAddr>>,
    /// The chance of a fault per connection, out of 1,000.
    fault_per_mille: AtomicU64,
    rng: Mutex<fastrand::Rng>,
    fates: [AtomicU64; 6],
    no_server: AtomicU64,
    replayed_answers: AtomicU64,
}

/// The proxy; it stops accepting when dropped.
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FaultProxy {
    /// Listens on a free loopback port; forwards to `upstream`.
    pub async fn start(seed: u64, upstream: Option<SocketAddr>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            fault_per_mille: AtomicU64::new(0),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            fates: Default::default(),
            no_server: AtomicU64::new(0),
            replayed_answers: AtomicU64::new(0),
        });
        let accepting = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = Arc::clone(&accepting);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CONNECTION_LIMIT, shared.handle(client)).await;
                });
            }
        });
        Ok(Self {
            address,
            shared,
            accept,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Where connections go from now on; `None` while the server is away.
    pub fn set_upstream(&self, upstream: Option<SocketAddr>) {
        *lock(&self.shared.upstream) = upstream;
    }

    /// The chance that a connection meets a fault, from 0.0 (none) to 1.0.
    pub fn set_fault_rate(&self, rate: f64) {
        let per_mille = (rate.clamp(0.0, 1.0) * 1000.0).round() as u64;
        self.shared
            .fault_per_mille
            .store(per_mille, Ordering::SeqCst);
    }

    pub fn counts(&self) -> ProxyCounts {
        let mut fates = [0; 6];
        for (count, atomic) in fates.iter_mut().zip(&self.shared.fates) {
            *count = atomic.load(Ordering::SeqCst);
        }
        ProxyCounts {
            fates,
            no_server: self.shared.no_server.load(Ordering::SeqCst),
            replayed_answers: self.shared.replayed_answers.load(Ordering::SeqCst),
        }
    }
}

impl Shared {
    /// The next connection's fate and its parameter (a delay in ms, or the `Retry-After`).
    fn draw(&self) -> (Fate, u64) {
        let mut rng = lock(&self.rng);
        let faulty = rng.u64(0..1000) < self.fault_per_mille.load(Ordering::SeqCst);
        let fate = if faulty {
            Fate::FAULTS[rng.usize(0..Fate::FAULTS.len())]
        } else {
            Fate::Pass
        };
        let parameter = match fate {
            Fate::Delay => rng.u64(0..=MAX_DELAY.as_millis() as u64),
            Fate::Unavailable => rng.u64(0..=1),
            _ => rng.u64(0..1000),
        };
        (fate, parameter)
    }

    async fn handle(&self, mut client: TcpStream) {
        let (fate, parameter) = self.draw();
        let upstream = *lock(&self.upstream);
        let Some(upstream) = upstream else {
            self.no_server.fetch_add(1, Ordering::SeqCst);
            reset(client);
            return;
        };
        self.fates[fate.index()].fetch_add(1, Ordering::SeqCst);
        match fate {
            Fate::Refuse => reset(client),
            Fate::Unavailable => {
                // Read the request's head first, so the client is not cut off mid-write.
                let _ = read_head(&mut client).await;
                let body = br#"{"error":"the proxy is overloaded"}"#;
                let response = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nretry-after: {parameter}\r\n\
                     content-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n",
                    body.len()
                );
                let _ = client.write_all(response.as_bytes()).await;
                let _ = client.write_all(body).await;
                let _ = client.shutdown().await;
            }
            Fate::Delay => {
                tokio::time::sleep(Duration::from_millis(parameter)).await;
                self.pass(client, upstream).await;
            }
            Fate::Pass => self.pass(client, upstream).await,
            Fate::ResetMidRequest => {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    self.no_server.fetch_add(1, Ordering::SeqCst);
                    return reset(client);
                };
                let mut first = vec![0; 64 * 1024];
                let Ok(n) = client.read(&mut first).await else {
                    return reset(client);
                };
                // Forward a part of what arrived (never all of it), then cut both sides.
                let part = if n > 1 { (parameter as usize) % n } else { 0 };
                let mut server = server;
                let _ = server.write_all(&first[..part]).await;
                reset(server);
                reset(client);
            }
            Fate::LoseResponse => {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    self.no_server.fetch_add(1, Ordering::SeqCst);
                    return reset(client);
                };
                let (mut client, mut server) = (client, server);
                let response = {
                    let (mut client_read, _) = client.split();
                    let (mut server_read, mut server_write) = server.split();
                    let forward = async {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                        std::future::pending::<Vec<u8>>().await
                    };
                    tokio::select! {
                        response = read_response(&mut server_read) => response,
                        never = forward => never,
                    }
                };
                if contains(&response, REPLAYED_HEADER) {
                    self.replayed_answers.fetch_add(1, Ordering::SeqCst);
                }
                // The server answered in full; the client never sees it.
                reset(client);
                drop(server);
            }
        }
    }

    /// Copies both ways until either side closes, noting replayed answers on the way back.
    async fn pass(&self, client: TcpStream, upstream: SocketAddr) {
        let Ok(server) = TcpStream::connect(upstream).await else {
            self.no_server.fetch_add(1, Ordering::SeqCst);
            return reset(client);
        };
        let (mut from_client, mut to_client) = client.into_split();
        let (mut from_server, mut to_server) = server.into_split();
        let upward = async {
            let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
            let _ = to_server.shutdown().await;
        };
        let downward = async {
            let mut buffer = vec![0; 16 * 1024];
            // The head of each answer arrives in one read in practice (a few hundred bytes on
            // loopback); a header split across reads would go uncounted, not miscounted.
            loop {
                match from_server.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if contains(&buffer[..n], REPLAYED_HEADER) {
                            self.replayed_answers.fetch_add(1, Ordering::SeqCst);
                        }
                        if to_client.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to_client.shutdown().await;
        };
        tokio::join!(upward, downward);
    }
}

/// Closes with a reset (RST), not an orderly end (FIN).
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// Reads until the end of an HTTP head (`\r\n\r\n`), at most 64 KiB.
async fn read_head(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buffer = [0; 4096];
    while !contains(&head, b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    head
}

/// Reads one whole HTTP response: its head, then a body of `content-length` bytes or a
/// chunked body up to its last chunk.
async fn read_response(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut response = read_head(stream).await;
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return response;
    };
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let length = head.lines().find_map(|line| {
        line.strip_prefix("content-length:")
            .and_then(|value| value.trim().parse::<usize>().ok())
    });
    let chunked = head.contains("transfer-encoding: chunked");
    let mut buffer = [0; 4096];
    loop {
        let body = &response[end + 4..];
        let complete = match length {
            Some(length) => body.len() >= length,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => true,
        };
        if complete {
            return response;
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return response,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
        }
    }
}
