//! Actions written the way existing apps write their server functions: `anyhow` and boxed
//! errors, associated fns, borrowed types inside arguments. Each runs online, offline (queued)
//! and replayed.

use futures::executor::block_on;
use std::cell::RefCell;
use std::error::Error;
use std::time::Duration;
use sync_runtime::{
    offline_action, register_error_type, ActionContext, ActionId, ClassifyError, ManualClock,
    ManualConnectivity, MemoryStore, SyncError, SyncService, Timestamp,
};

/// What the simulated server fails with next, and what it has applied.
#[derive(Default)]
struct Server {
    /// Errors for the next requests, in order.
    failures: Vec<Failure>,
    /// (action id, description) of every request applied, in order.
    applied: Vec<(ActionId, String)>,
}

/// A scripted failure, turned into each action's error type.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// A timed-out connection: an `std::io::Error`, transient.
    Timeout,
    /// Our own transient error type, registered with `register_error_type!`.
    Busy,
    /// A plain message: nothing says it is transient, so it is permanent.
    Rejected,
}

#[derive(Debug, thiserror::Error)]
#[error("the server is busy")]
struct Busy;

impl ClassifyError for Busy {
    fn is_transient(&self) -> bool {
        true
    }
}

register_error_type!(Busy);

thread_local! {
    static SERVER: RefCell<Server> = RefCell::new(Server::default());
}

fn server<R>(f: impl FnOnce(&mut Server) -> R) -> R {
    SERVER.with(|s| f(&mut s.borrow_mut()))
}

/// One request: the next scripted failure, or `what` applied once per action id.
fn request(what: String) -> Result<(), Failure> {
    let id = ActionContext::current().expect("inside an action").id();
    server(|s| {
        if !s.failures.is_empty() {
            return Err(s.failures.remove(0));
        }
        assert!(
            !s.applied.iter().any(|(seen, _)| *seen == id),
            "applied twice"
        );
        s.applied.push((id, what));
        Ok(())
    })
}

fn applied() -> Vec<String> {
    server(|s| s.applied.iter().map(|(_, what)| what.clone()).collect())
}

fn service(online: bool) -> (SyncService, ManualConnectivity, ManualClock) {
    let net = ManualConnectivity::new(online);
    let clock = ManualClock::new(Timestamp(1_750_000_000_000));
    let service = SyncService::builder()
        .store(MemoryStore::new())
        .connectivity(net.clone())
        .clock(clock.clone())
        .build()
        .expect("no duplicate action names");
    (service, net, clock)
}

/// Replays once with the next attempt failing transiently, then after the backoff.
fn replay_after_one_retry(service: &SyncService, clock: &ManualClock, failure: Failure) -> usize {
    server(|s| s.failures.push(failure));
    let retried = block_on(service.replay()).unwrap();
    assert_eq!(
        (retried.synced, retried.retried),
        (0, 1),
        "{failure:?} is transient"
    );
    clock.advance(Duration::from_secs(3600));
    let report = block_on(service.replay()).unwrap();
    assert_eq!(report.remaining, 0);
    report.synced
}

/// The `SyncError` inside an erased error, as a caller gets it back.
fn sync_error<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a SyncError> {
    error.downcast_ref::<SyncError>()
}

mod anyhow_errors {
    use super::*;

    /// Saves a note; fails the way `anyhow` code does.
    #[offline_action]
    pub async fn save_note(text: String) -> anyhow::Result<usize> {
        request(format!("save {text}")).map_err(|failure| match failure {
            Failure::Timeout => {
                anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::TimedOut))
                    .context("saving the note")
            }
            Failure::Busy => anyhow::Error::new(Busy),
            Failure::Rejected => anyhow::anyhow!("notes cannot be empty"),
        })?;
        Ok(text.len())
    }

    #[test]
    fn online_offline_and_replayed() {
        let (service, net, clock) = service(true);
        assert_eq!(block_on(service.scope(save_note("a".into()))).unwrap(), 1);

        // An io timeout under context is transient: the call is queued, and the caller gets
        // the runtime's `Queued` back out of the `anyhow::Error`.
        server(|s| s.failures.push(Failure::Timeout));
        let queued = block_on(service.scope(save_note("b".into()))).unwrap_err();
        assert!(
            matches!(sync_error(queued.as_ref()), Some(SyncError::Queued { .. })),
            "{queued:?}"
        );
        net.set_online(false);
        let offline = block_on(service.scope(save_note("c".into()))).unwrap_err();
        assert!(matches!(
            offline.downcast_ref::<SyncError>(),
            Some(SyncError::Queued { .. })
        ));
        assert_eq!(block_on(service.queued()).unwrap().len(), 2);

        net.set_online(true);
        assert_eq!(replay_after_one_retry(&service, &clock, Failure::Busy), 2);
        assert_eq!(applied(), ["save a", "save b", "save c"]);
    }

    #[test]
    fn nothing_inside_says_transient_so_it_is_permanent() {
        let (service, _net, _clock) = service(true);
        server(|s| s.failures.push(Failure::Rejected));
        let error = block_on(service.scope(save_note(String::new()))).unwrap_err();
        assert_eq!(error.to_string(), "notes cannot be empty");
        assert!(block_on(service.queued()).unwrap().is_empty());
    }
}

mod boxed_errors {
    use super::*;

    type BoxError = Box<dyn Error + Send + Sync>;

    /// Deletes a file on the server; fails with boxed errors, as Dioxus examples do.
    #[offline_action(name = "boxed.delete")]
    pub async fn delete_file(path: String) -> Result<(), BoxError> {
        request(format!("delete {path}")).map_err(|failure| -> BoxError {
            match failure {
                Failure::Timeout => Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)),
                Failure::Busy => Box::new(Busy),
                Failure::Rejected => "no such file".into(),
            }
        })
    }

    #[test]
    fn online_offline_and_replayed() {
        let (service, _net, clock) = service(true);
        block_on(service.scope(delete_file("a".into()))).unwrap();

        server(|s| s.failures.push(Failure::Rejected));
        let rejected = block_on(service.scope(delete_file("c".into()))).unwrap_err();
        assert_eq!(
            rejected.to_string(),
            "no such file",
            "permanent: returned as it is"
        );
        assert!(block_on(service.queued()).unwrap().is_empty());

        // Our registered type, boxed, is transient: the call is queued.
        server(|s| s.failures.push(Failure::Busy));
        let queued = block_on(service.scope(delete_file("b".into()))).unwrap_err();
        assert!(
            matches!(sync_error(&*queued), Some(SyncError::Queued { .. })),
            "{queued:?}"
        );

        assert_eq!(
            replay_after_one_retry(&service, &clock, Failure::Timeout),
            1
        );
        assert_eq!(applied(), ["delete a", "delete b"]);
    }
}

mod borrows_inside_arguments {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    pub enum AppError {
        #[error("timed out")]
        Timeout,
        #[error(transparent)]
        Sync(#[from] SyncError),
    }

    impl ClassifyError for AppError {
        fn is_transient(&self) -> bool {
            matches!(self, AppError::Timeout)
        }
    }

    /// Tags a product: an optional note and a slice of borrowed tags.
    #[offline_action(name = "borrows.tag")]
    pub async fn tag(id: u64, note: Option<&str>, tags: &[&str]) -> Result<usize, AppError> {
        request(format!("tag {id} {note:?} {tags:?}")).map_err(|_| AppError::Timeout)?;
        Ok(tags.len())
    }

    #[test]
    fn online_offline_and_replayed() {
        let (service, net, clock) = service(true);
        let tags = ["red", "big"];
        assert_eq!(
            block_on(service.scope(tag(1, Some("new"), &tags))).unwrap(),
            2
        );

        net.set_online(false);
        let queued = block_on(service.scope(tag(2, None, &["small"]))).unwrap_err();
        assert!(
            matches!(queued, AppError::Sync(SyncError::Queued { .. })),
            "{queued:?}"
        );
        let records = block_on(service.queued()).unwrap();
        assert_eq!(
            records[0].params,
            r#"{"id":2,"note":null,"tags":["small"]}"#
        );

        net.set_online(true);
        assert_eq!(
            replay_after_one_retry(&service, &clock, Failure::Timeout),
            1
        );
        assert_eq!(
            applied(),
            [
                r#"tag 1 Some("new") ["red", "big"]"#,
                r#"tag 2 None ["small"]"#
            ]
        );
    }
}

mod associated_fns {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    pub enum AppError {
        #[error("timed out")]
        Timeout,
        #[error(transparent)]
        Sync(#[from] SyncError),
    }

    impl ClassifyError for AppError {
        fn is_transient(&self) -> bool {
            matches!(self, AppError::Timeout)
        }
    }

    /// Server functions grouped on a type, as apps do.
    pub struct Api;

    #[offline_action]
    impl Api {
        /// Adds two numbers on the server; offline, answers locally.
        #[offline_action(local = Self::add_locally)]
        pub async fn add(a: u32, b: u32) -> Result<u32, AppError> {
            request(format!("add {a} {b}")).map_err(|_| AppError::Timeout)?;
            Ok(Self::sum(a, b))
        }

        async fn add_locally(a: u32, b: u32) -> Result<u32, AppError> {
            Ok(Self::sum(a, b))
        }

        fn sum(a: u32, b: u32) -> u32 {
            a + b
        }
    }

    #[test]
    fn online_offline_and_replayed() {
        let (service, net, clock) = service(true);
        assert_eq!(block_on(service.scope(Api::add(1, 2))).unwrap(), 3);

        net.set_online(false);
        assert_eq!(
            block_on(service.scope(Api::add(3, 4))).unwrap(),
            7,
            "answered locally"
        );
        let queued = block_on(service.queued()).unwrap();
        assert_eq!(queued[0].name, "Api::add");
        assert_eq!(queued[0].params, r#"{"a":3,"b":4}"#);

        net.set_online(true);
        assert_eq!(
            replay_after_one_retry(&service, &clock, Failure::Timeout),
            1
        );
        assert_eq!(applied(), ["add 1 2", "add 3 4"]);
    }
}
