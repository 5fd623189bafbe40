//! Whether the server can be reached: a [`Connectivity`] source tells the service, and calls
//! the service back when that changes so the queue replays by itself.

use crate::{Listener, MaybeSend, MaybeSync};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A source of "are we online?".
///
/// It is only a hint: the service also treats a transient failure of a server body as
/// "offline until the next success", because a browser can report online with no internet.
pub trait Connectivity: MaybeSend + MaybeSync + 'static {
    /// `true` if the server is believed reachable.
    fn is_online(&self) -> bool;

    /// Registers a callback for changes; the service uses it to replay when the connection
    /// returns. Sources that never change may ignore it.
    fn on_change(&self, listener: Listener<bool>);
}

/// Connectivity set by hand: for tests, and for native apps that learn about the network
/// some other way. Clones share the same state.
///
/// ```
/// use sync_runtime::{Connectivity, ManualConnectivity};
///
/// let net = ManualConnectivity::new(true);
/// net.set_online(false);
/// assert!(!net.is_online());
/// ```
#[derive(Clone, Default)]
pub struct ManualConnectivity {
    inner: Arc<ManualInner>,
}

#[derive(Default)]
struct ManualInner {
    online: AtomicBool,
    listeners: Mutex<Vec<Listener<bool>>>,
}

impl core::fmt::Debug for ManualConnectivity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ManualConnectivity")
            .field("online", &self.is_online())
            .finish()
    }
}

impl ManualConnectivity {
    /// A source that starts online or offline.
    pub fn new(online: bool) -> Self {
        let connectivity = Self::default();
        connectivity.inner.online.store(online, Ordering::SeqCst);
        connectivity
    }

    /// Changes the state; listeners hear about real changes only.
    pub fn set_online(&self, online: bool) {
        let was = self.inner.online.swap(online, Ordering::SeqCst);
        if was != online {
            let listeners = self
                .inner
                .listeners
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for listener in listeners.iter() {
                listener(online);
            }
        }
    }
}

impl Connectivity for ManualConnectivity {
    fn is_online(&self) -> bool {
        self.inner.online.load(Ordering::SeqCst)
    }

    fn on_change(&self, listener: Listener<bool>) {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(listener);
    }
}
