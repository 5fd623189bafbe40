//! Background replay on a tokio runtime.

use crate::{BoxFuture, Executor};
use core::time::Duration;

/// An [`Executor`] that spawns onto a tokio runtime.
///
/// Build it inside the runtime (for example in `#[tokio::main]`): it keeps a handle to the
/// runtime it was created in, so the service can spawn replay from any thread later.
#[derive(Clone, Debug)]
pub struct TokioExecutor {
    handle: tokio::runtime::Handle,
}

impl TokioExecutor {
    /// An executor for the tokio runtime this is called in, or `None` outside one.
    pub fn current() -> Option<Self> {
        tokio::runtime::Handle::try_current()
            .ok()
            .map(|handle| Self { handle })
    }

    /// An executor for the given runtime.
    pub fn new(handle: tokio::runtime::Handle) -> Self {
        Self { handle }
    }
}

impl Executor for TokioExecutor {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        drop(self.handle.spawn(task));
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}
