//! Ordering scopes: calls of one scope replay in the order the user made them, one at a time;
//! a scope whose head waits (a 503 with `Retry-After: 300`) holds back only itself; without
//! scopes the queue is one line, as before.

use futures::executor::block_on;
use futures::{FutureExt, StreamExt};
use std::cell::RefCell;
use std::time::{Duration, Instant};
use sync_runtime::store::DeadReason;
use sync_runtime::{
    offline_action, ClassifyError, Clock, ManualClock, ManualConnectivity, MemoryStore, SyncError,
    SyncEvent, SyncService, Timestamp,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("503 Service Unavailable, Retry-After: {0:?}")]
    Busy(Duration),
    #[error("rejected: {0}")]
    Rejected(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Busy(_))
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            AppError::Busy(wait) => Some(*wait),
            _ => None,
        }
    }
}

/// What the fake server does with one request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    Busy,
    Reject,
}

thread_local! {
    /// Requests the fake server answers otherwise than with success, by (product, n), once each.
    static SCRIPT: RefCell<Vec<((String, u32), Answer)>> = const { RefCell::new(Vec::new()) };
    /// (product, n) of every request the fake server applied, in order.
    static APPLIED: RefCell<Vec<(String, u32)>> = const { RefCell::new(Vec::new()) };
}

fn script(product: &str, n: u32, answer: Answer) {
    SCRIPT.with(|s| s.borrow_mut().push(((product.to_owned(), n), answer)));
}

fn applied() -> Vec<(String, u32)> {
    APPLIED.with(|a| a.borrow().clone())
}

fn applied_to(product: &str) -> Vec<u32> {
    applied()
        .into_iter()
        .filter(|(p, _)| p == product)
        .map(|(_, n)| n)
        .collect()
}

fn serve(product: String, n: u32) -> Result<u32, AppError> {
    let key = (product, n);
    let scripted = SCRIPT.with(|s| {
        let mut s = s.borrow_mut();
        let found = s.iter().position(|(k, _)| *k == key)?;
        Some(s.remove(found).1)
    });
    match scripted {
        Some(Answer::Busy) => Err(AppError::Busy(Duration::from_secs(300))),
        Some(Answer::Reject) => Err(AppError::Rejected(format!("{key:?}"))),
        None => {
            APPLIED.with(|a| a.borrow_mut().push(key));
            Ok(n)
        }
    }
}

/// Sets the stock of a product: the calls of one product are ordered, products are not.
#[offline_action(scope = product, local = set_stock_locally)]
pub async fn set_stock(product: String, n: u32) -> Result<u32, AppError> {
    serve(product, n)
}

/// The same call without a scope: everything in the one global line.
#[offline_action(local = set_stock_locally)]
pub async fn set_stock_in_line(product: String, n: u32) -> Result<u32, AppError> {
    serve(product, n)
}

async fn set_stock_locally(_product: String, n: u32) -> Result<u32, AppError> {
    Ok(n)
}

const START: Timestamp = Timestamp(1_800_000_000_000);

fn offline_service() -> (SyncService, ManualConnectivity, ManualClock) {
    let net = ManualConnectivity::new(false);
    let clock = ManualClock::new(START);
    let service = SyncService::builder()
        .store(MemoryStore::new())
        .connectivity(net.clone())
        .clock(clock.clone())
        .seed(14)
        .build()
        .unwrap();
    (service, net, clock)
}

/// Queues, offline, A's calls 0..3 and B's calls 0..100, interleaved.
async fn queue_a_and_b(scoped: bool) {
    let call = |product: &'static str, n: u32| async move {
        let answer = if scoped {
            set_stock(product.to_owned(), n).await
        } else {
            set_stock_in_line(product.to_owned(), n).await
        };
        assert_eq!(answer.unwrap(), n, "answered locally");
    };
    call("A", 0).await;
    for n in 0..50 {
        call("B", n).await;
    }
    call("A", 1).await;
    for n in 50..100 {
        call("B", n).await;
    }
    call("A", 2).await;
}

#[test]
fn a_scope_waiting_out_a_retry_after_does_not_hold_back_the_others() {
    let (service, net, clock) = offline_service();
    block_on(service.scope(queue_a_and_b(true)));
    assert_eq!(service.status().pending, 103);
    script("A", 0, Answer::Busy);
    net.set_online(true);

    let started = Instant::now();
    let report = block_on(service.replay()).unwrap();
    let took = started.elapsed();
    assert_eq!(
        applied_to("B"),
        (0..100).collect::<Vec<_>>(),
        "every call of B reached the server, in order"
    );
    assert!(took < Duration::from_secs(1), "B's 100 calls took {took:?}");
    assert_eq!(applied_to("A"), [0u32; 0], "A waits behind its head");
    assert_eq!((report.synced, report.retried), (100, 1));
    let resume_at = START.saturating_add(Duration::from_secs(300));
    assert_eq!(report.next_attempt_at, Some(resume_at));
    assert_eq!(report.remaining, 3);

    // The status says which scope waits, for what, and until when.
    let status = service.status();
    assert_eq!(status.pending, 3);
    assert_eq!(status.waiting.len(), 1, "{:?}", status.waiting);
    let wait = &status.waiting[0];
    assert_eq!(wait.scope, "A");
    assert_eq!(wait.name, "set_stock");
    assert_eq!(wait.retries, 1);
    assert_eq!(wait.next_attempt_at, resume_at);
    assert!(
        wait.last_error
            .as_deref()
            .is_some_and(|e| e.contains("503")),
        "{wait:?}"
    );

    // Not before its time.
    clock.advance(Duration::from_secs(299));
    let report = block_on(service.replay()).unwrap();
    assert_eq!(report.synced, 0);
    assert_eq!(applied_to("A"), [0u32; 0]);

    // Its wait is over: A's calls go, in order.
    clock.advance(Duration::from_secs(1));
    let report = block_on(service.replay()).unwrap();
    assert_eq!(report.synced, 3);
    assert_eq!(applied_to("A"), [0, 1, 2]);
    let status = service.status();
    assert_eq!((status.pending, status.waiting.len()), (0, 0));
}

/// Without scopes the queue is the one line it always was: nothing overtakes the head.
#[test]
fn without_scopes_every_call_waits_behind_the_head() {
    let (service, net, clock) = offline_service();
    block_on(service.scope(queue_a_and_b(false)));
    script("A", 0, Answer::Busy);
    net.set_online(true);
    let report = block_on(service.replay()).unwrap();
    assert_eq!(
        (report.synced, report.retried, report.remaining),
        (0, 1, 103)
    );
    assert_eq!(applied(), []);
    let waiting = service.status().waiting;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].scope, "", "the global scope waits");

    clock.advance(Duration::from_secs(300));
    let report = block_on(service.replay()).unwrap();
    assert_eq!(report.synced, 103);
    let mut expected = vec![("A".to_owned(), 0)];
    expected.extend((0..50).map(|n| ("B".to_owned(), n)));
    expected.push(("A".to_owned(), 1));
    expected.extend((50..100).map(|n| ("B".to_owned(), n)));
    expected.push(("A".to_owned(), 2));
    assert_eq!(applied(), expected, "the order the user acted in");
}

/// A call a scope's server rejects becomes a dead letter that names its scope; the rest of the
/// scope goes on, and the events name the scope too.
#[test]
fn dead_letters_and_events_name_the_scope() {
    let (service, net, clock) = offline_service();
    let mut events = service.events();
    block_on(service.scope(async {
        for n in 0..3 {
            set_stock("C".to_owned(), n).await.unwrap();
        }
    }));
    script("C", 0, Answer::Busy);
    script("C", 1, Answer::Reject);
    net.set_online(true);
    block_on(service.replay()).unwrap();
    clock.advance(Duration::from_secs(300));
    let report = block_on(service.replay()).unwrap();
    assert_eq!((report.synced, report.dead_lettered), (2, 1));
    assert_eq!(applied_to("C"), [0, 2]);
    let dead = block_on(service.dead_letters()).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].scope(), "C");
    assert_eq!(dead[0].reason, DeadReason::Rejected);

    let mut retrying = None;
    let mut dead_lettered = None;
    while let Some(Some(event)) = events.next().now_or_never() {
        match event {
            SyncEvent::Retrying { scope, .. } => retrying = Some(scope),
            SyncEvent::DeadLettered { scope, .. } => dead_lettered = Some(scope),
            _ => {}
        }
    }
    assert_eq!(retrying.as_deref(), Some("C"));
    assert_eq!(dead_lettered.as_deref(), Some("C"));
}

/// A scope chosen at run time, through `execute_action_in_scope`, orders like a declared one.
#[test]
fn a_scope_chosen_at_run_time() {
    let (service, net, clock) = offline_service();
    block_on(service.scope(async {
        for n in 0..3 {
            let params = SetStockInLineParams {
                product: "D".to_owned(),
                n,
            };
            let scope = if n == 0 { "slow" } else { "fast" };
            service
                .execute_action_in_scope::<SetStockInLineAction>(params, scope)
                .await
                .unwrap();
        }
    }));
    let scopes: Vec<String> = block_on(service.queued())
        .unwrap()
        .into_iter()
        .map(|q| q.scope)
        .collect();
    assert_eq!(scopes, ["slow", "fast", "fast"]);
    script("D", 0, Answer::Busy);
    net.set_online(true);
    block_on(service.replay()).unwrap();
    assert_eq!(
        applied_to("D"),
        [1, 2],
        "the fast scope went past the slow one"
    );
    clock.advance(Duration::from_secs(300));
    block_on(service.replay()).unwrap();
    assert_eq!(applied_to("D"), [1, 2, 0]);
}

/// The clock of a paused tokio runtime, so the background driver's 300-second sleep passes at
/// once and agrees with the service's idea of time.
#[derive(Clone)]
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        START.saturating_add(self.0.elapsed())
    }
}

/// In the background: B's calls reach the server while A waits, and A's resume by themselves
/// when its `Retry-After` is over.
#[tokio::test(start_paused = true)]
async fn in_the_background_a_waiting_scope_resumes_by_itself() {
    let net = ManualConnectivity::new(false);
    let clock = TokioClock(tokio::time::Instant::now());
    let service = SyncService::builder()
        .store(MemoryStore::new())
        .connectivity(net.clone())
        .clock(clock.clone())
        .executor(sync_runtime::TokioExecutor::current().unwrap())
        .seed(14)
        .build()
        .unwrap();
    service.scope(queue_a_and_b(true)).await;
    script("A", 0, Answer::Busy);
    let mut status = service.subscribe();
    let started = Instant::now();
    net.set_online(true);
    // Wait until B is done and A waits (paused time does not move while replay works), or
    // everything is done (A's head held everything back until its wait was over).
    loop {
        let now = status.next().await.unwrap();
        if (now.pending == 3 && !now.waiting.is_empty() && !now.syncing) || now.pending == 0 {
            break;
        }
    }
    let took = started.elapsed();
    assert_eq!(applied_to("B"), (0..100).collect::<Vec<_>>());
    assert_eq!(applied_to("A"), [0u32; 0]);
    assert!(took < Duration::from_secs(1), "B's 100 calls took {took:?}");
    let before = clock.now();
    // Nothing left to do but wait: the paused runtime jumps to A's next attempt.
    loop {
        let now = status.next().await.unwrap();
        if now.pending == 0 {
            break;
        }
    }
    assert_eq!(applied_to("A"), [0, 1, 2]);
    let waited = clock.now().as_millis() - before.as_millis();
    assert!(
        (300_000..310_000).contains(&waited),
        "A resumed after {waited} ms"
    );
    assert!(service.status().waiting.is_empty());
}

thread_local! {
    /// Bodies of `slow_step` running now, and the most at once.
    static IN_FLIGHT: RefCell<(usize, usize)> = const { RefCell::new((0, 0)) };
}

/// A request that takes a while, so replays of several scopes overlap.
#[offline_action(scope = format!("job:{job}"), local = slow_step_locally)]
pub async fn slow_step(job: u32, step: u32) -> Result<u32, AppError> {
    IN_FLIGHT.with(|f| {
        let mut f = f.borrow_mut();
        f.0 += 1;
        f.1 = f.1.max(f.0);
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    IN_FLIGHT.with(|f| f.borrow_mut().0 -= 1);
    APPLIED.with(|a| a.borrow_mut().push((format!("job:{job}"), step)));
    Ok(step)
}

async fn slow_step_locally(_job: u32, step: u32) -> Result<u32, AppError> {
    Ok(step)
}

/// Up to `replay_concurrency` scopes replay at once, never two calls of one scope.
async fn most_at_once(concurrency: usize) -> usize {
    IN_FLIGHT.with(|f| *f.borrow_mut() = (0, 0));
    APPLIED.with(|a| a.borrow_mut().clear());
    let net = ManualConnectivity::new(false);
    let service = SyncService::builder()
        .store(MemoryStore::new())
        .connectivity(net.clone())
        .replay_concurrency(concurrency)
        .build()
        .unwrap();
    service
        .scope(async {
            for step in 0..3 {
                for job in 0..5 {
                    slow_step(job, step).await.unwrap();
                }
            }
        })
        .await;
    net.set_online(true);
    let report = service.replay().await.unwrap();
    assert_eq!(report.synced, 15);
    for job in 0..5 {
        assert_eq!(
            applied_to(&format!("job:{job}")),
            [0, 1, 2],
            "job {job} in order"
        );
    }
    IN_FLIGHT.with(|f| f.borrow().1)
}

#[tokio::test]
async fn up_to_replay_concurrency_scopes_replay_at_once() {
    assert_eq!(most_at_once(3).await, 3);
    assert_eq!(most_at_once(8).await, 5, "one call per scope at a time");
    assert_eq!(most_at_once(1).await, 1);
}
