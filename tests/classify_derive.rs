//! `#[derive(ClassifyError)]` against the runtime: what each kind of variant answers, and that a
//! transient error from an `#[offline_action]` body makes the call go offline and be queued, for
//! as long as the error's `retry_after` asks.

use futures::executor::block_on;
use std::cell::RefCell;
use std::io;
use std::time::Duration;
use sync_runtime::{
    offline_action, ClassifyError, ManualClock, ManualConnectivity, MemoryStore, StoreError,
    SyncError, SyncService, Timestamp,
};

#[derive(Debug, thiserror::Error, ClassifyError)]
pub enum AppError {
    #[error("the network is down")]
    #[classify(transient)]
    Network,
    #[error("the server is busy")]
    #[classify(transient, retry_after = wait)]
    Busy { wait: Option<Duration>, queue: u32 },
    #[error("too many requests")]
    #[classify(transient, retry_after = 0)]
    RateLimited(Duration),
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("the product changed on the server")]
    #[classify(permanent)]
    Conflict { product: u64 },
    #[error(transparent)]
    #[classify(delegate)]
    Io(#[from] io::Error),
    #[error(transparent)]
    #[classify(delegate)]
    Sync(#[from] SyncError),
}

/// A struct that is transient as a whole, with the wait in a tuple field after the status.
#[derive(Debug, ClassifyError)]
#[classify(transient, retry_after = 1)]
pub struct Unavailable(u16, Duration);

/// A newtype that asks the error it wraps.
#[derive(Debug, ClassifyError)]
#[classify(delegate)]
pub struct Transport {
    source: io::Error,
}

/// A struct with no attribute: permanent.
#[derive(Debug, ClassifyError)]
pub struct Invalid;

fn store_failure() -> SyncError {
    SyncError::from(StoreError::Backend {
        operation: "write",
        message: "disk busy".to_owned(),
    })
}

fn answers(error: &impl ClassifyError) -> (bool, Option<Duration>) {
    (error.is_transient(), error.retry_after())
}

#[test]
fn each_variant_answers_what_its_attribute_says() {
    let minute = Duration::from_secs(60);
    let cases = [
        (AppError::Network, (true, None)),
        (
            AppError::Busy {
                wait: Some(minute),
                queue: 3,
            },
            (true, Some(minute)),
        ),
        (
            AppError::Busy {
                wait: None,
                queue: 3,
            },
            (true, None),
        ),
        (AppError::RateLimited(minute), (true, Some(minute))),
        (AppError::Rejected("no".to_owned()), (false, None)),
        (AppError::Conflict { product: 7 }, (false, None)),
        (AppError::Io(io::ErrorKind::TimedOut.into()), (true, None)),
        (AppError::Io(io::ErrorKind::NotFound.into()), (false, None)),
        (AppError::Sync(store_failure()), (true, None)),
        (AppError::Sync(SyncError::AlreadyConfigured), (false, None)),
    ];
    for (error, expected) in cases {
        assert_eq!(answers(&error), expected, "{error:?}");
    }
}

#[test]
fn delegated_variants_answer_like_the_wrapped_error() {
    for error in [
        io::Error::from(io::ErrorKind::ConnectionReset),
        io::Error::from(io::ErrorKind::PermissionDenied),
    ] {
        let expected = answers(&error);
        assert_eq!(answers(&AppError::from(error)), expected);
    }
    for error in [store_failure(), SyncError::ReplayInProgress] {
        let expected = answers(&error);
        assert_eq!(answers(&AppError::from(error)), expected);
    }
}

#[test]
fn structs_answer_as_a_whole() {
    let wait = Duration::from_secs(5);
    let unavailable = Unavailable(503, wait);
    assert_eq!(answers(&unavailable), (true, Some(wait)));
    assert_eq!(unavailable.0, 503);
    assert_eq!(
        answers(&Transport {
            source: io::ErrorKind::BrokenPipe.into()
        }),
        (true, None)
    );
    assert_eq!(
        answers(&Transport {
            source: io::ErrorKind::InvalidData.into()
        }),
        (false, None)
    );
    assert_eq!(answers(&Invalid), (false, None));
}

thread_local! {
    // Each test runs on its own thread with `block_on`, so each has its own script.
    /// What the server answers next, in order; an empty script means success.
    static SCRIPT: RefCell<Vec<AppError>> = const { RefCell::new(Vec::new()) };
    /// How many times the body ran.
    static CALLS: RefCell<u32> = const { RefCell::new(0) };
}

fn fail_next(error: AppError) {
    SCRIPT.with(|script| script.borrow_mut().push(error));
}

fn body_calls() -> u32 {
    CALLS.with(|calls| *calls.borrow())
}

/// Sends a message; the simulated server answers from the script.
#[offline_action]
pub async fn send_message(text: String) -> Result<usize, AppError> {
    CALLS.with(|calls| *calls.borrow_mut() += 1);
    SCRIPT.with(|script| {
        let mut script = script.borrow_mut();
        if script.is_empty() {
            Ok(text.len())
        } else {
            Err(script.remove(0))
        }
    })
}

fn service() -> (SyncService, ManualClock) {
    let clock = ManualClock::new(Timestamp(1_750_000_000_000));
    let service = SyncService::builder()
        .store(MemoryStore::new())
        .connectivity(ManualConnectivity::new(true))
        .clock(clock.clone())
        .build()
        .expect("no duplicate action names in this binary");
    (service, clock)
}

fn assert_queued(result: Result<usize, AppError>) {
    assert!(
        matches!(result, Err(AppError::Sync(SyncError::Queued { .. }))),
        "expected the call to be queued, got {result:?}"
    );
}

#[test]
fn a_transient_error_makes_the_call_go_offline_and_queued() {
    let (service, _clock) = service();
    fail_next(AppError::Network);
    assert_queued(block_on(service.scope(send_message("hi".to_owned()))));
    assert_eq!(block_on(service.queued()).unwrap().len(), 1);
    let status = service.status();
    assert!(!status.online, "a transient error means offline");
    assert_eq!(status.last_error.as_deref(), Some("the network is down"));
}

#[test]
fn a_delegated_transient_error_goes_offline_too() {
    // A fresh service for each error: after the first, the service is offline and the body
    // would not run.
    for error in [
        AppError::Io(io::ErrorKind::TimedOut.into()),
        AppError::Sync(store_failure()),
    ] {
        let (sync, _clock) = service();
        fail_next(error);
        assert_queued(block_on(sync.scope(send_message("hi".to_owned()))));
        assert_eq!(block_on(sync.queued()).unwrap().len(), 1);
    }
    assert_eq!(body_calls(), 2);
}

#[test]
fn a_permanent_error_is_returned_and_nothing_is_queued() {
    let (service, _clock) = service();
    fail_next(AppError::Conflict { product: 1 });
    fail_next(AppError::Io(io::ErrorKind::NotFound.into()));
    let first = block_on(service.scope(send_message("hi".to_owned())));
    assert!(
        matches!(first, Err(AppError::Conflict { product: 1 })),
        "{first:?}"
    );
    let second = block_on(service.scope(send_message("hi".to_owned())));
    assert!(matches!(second, Err(AppError::Io(_))), "{second:?}");
    assert!(block_on(service.queued()).unwrap().is_empty());
    assert!(service.status().online);
}

#[test]
fn retry_after_keeps_the_service_offline_for_the_wait() {
    let (service, clock) = service();
    fail_next(AppError::Busy {
        wait: Some(Duration::from_secs(3600)),
        queue: 12,
    });
    assert_queued(block_on(service.scope(send_message("a".to_owned()))));
    assert_eq!(body_calls(), 1);

    // Far past the default backoff, but not past the server's wait: still offline.
    clock.advance(Duration::from_secs(1800));
    assert_queued(block_on(service.scope(send_message("b".to_owned()))));
    assert_eq!(body_calls(), 1, "offline calls do not reach the server");

    clock.advance(Duration::from_secs(1801));
    assert_eq!(block_on(service.replay()).unwrap().synced, 2);
    assert_eq!(
        block_on(service.scope(send_message("abc".to_owned()))).unwrap(),
        3
    );
    assert_eq!(body_calls(), 4);
}
