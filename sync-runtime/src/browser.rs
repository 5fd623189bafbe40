//! What the runtime needs from the browser (wasm32 only): connectivity from `navigator.onLine`
//! and the `online`/`offline` events, an [`Executor`] on the page's event loop, and a
//! [`ReplayLock`] on the Web Locks API so that only one tab replays at a time.
//!
//! [`SyncService::current`](crate::SyncService::current) with no configuration uses all three,
//! with an [`IndexedDbStore`](crate::store::IndexedDbStore) named
//! [`DEFAULT_DATABASE`]. Everything here works in a window and in a worker: it reaches the
//! browser through the global object, whichever it is.

use crate::{boxed, BoxFuture, Connectivity, Executor, Listener, ReplayLock};
use core::cell::{Cell, RefCell};
use core::fmt;
use core::time::Duration;
use futures_channel::oneshot;
use js_sys::{Function, Object, Promise, Reflect};
use std::rc::{Rc, Weak};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Event, EventTarget};

/// The IndexedDB database the default service uses.
pub const DEFAULT_DATABASE: &str = "sync-runtime";

/// The Web Lock the default service takes around each replay.
pub const DEFAULT_REPLAY_LOCK: &str = "sync-runtime:replay";

/// Reads `object[key]`, or `undefined` if that throws.
fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `navigator` of the window or worker, if there is one.
fn navigator() -> Option<JsValue> {
    let navigator = get(&js_sys::global(), "navigator");
    (!navigator.is_undefined() && !navigator.is_null()).then_some(navigator)
}

// ---- Connectivity -------------------------------------------------------------------------

/// Connectivity from the browser: `navigator.onLine` at first, then the window's (or
/// worker's) `online` and `offline` events.
///
/// Only a hint: `navigator.onLine` reads `true` on a network with no internet. The service
/// also treats a transient failure of a server body as "offline until the next success".
/// Every `online` event triggers a replay, even if the state did not change, since it means
/// the network just came back.
///
/// Clones share the state and the event listeners, which are removed when the last clone is
/// dropped.
#[derive(Clone)]
pub struct BrowserConnectivity {
    inner: Rc<ConnectivityInner>,
}

struct ConnectivityInner {
    online: Cell<bool>,
    listeners: RefCell<Vec<SharedListener>>,
    /// The global object the event handlers are registered on, and the handlers, kept alive
    /// for as long as they are registered.
    events: RefCell<Option<Handlers>>,
}

/// A listener, shared so that a snapshot of the list can be called without holding a borrow.
type SharedListener = Rc<dyn Fn(bool)>;

struct Handlers {
    target: EventTarget,
    online: Closure<dyn FnMut(Event)>,
    offline: Closure<dyn FnMut(Event)>,
}

impl Drop for ConnectivityInner {
    fn drop(&mut self) {
        if let Some(handlers) = self.events.get_mut().take() {
            let _ = handlers.target.remove_event_listener_with_callback(
                "online",
                handlers.online.as_ref().unchecked_ref(),
            );
            let _ = handlers.target.remove_event_listener_with_callback(
                "offline",
                handlers.offline.as_ref().unchecked_ref(),
            );
        }
    }
}

impl fmt::Debug for BrowserConnectivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserConnectivity")
            .field("online", &self.inner.online.get())
            .finish_non_exhaustive()
    }
}

impl Default for BrowserConnectivity {
    fn default() -> Self {
        Self::new()
    }
}

impl BrowserConnectivity {
    /// Starts listening. Where there is no `navigator.onLine` or no events (an unusual
    /// global), it reports online and never changes; transient failures still count.
    pub fn new() -> Self {
        let online = navigator()
            .and_then(|navigator| get(&navigator, "onLine").as_bool())
            .unwrap_or(true);
        let inner = Rc::new(ConnectivityInner {
            online: Cell::new(online),
            listeners: RefCell::new(Vec::new()),
            events: RefCell::new(None),
        });
        if let Ok(target) = js_sys::global().dyn_into::<EventTarget>() {
            let handler = |online: bool| {
                let weak: Weak<ConnectivityInner> = Rc::downgrade(&inner);
                Closure::<dyn FnMut(Event)>::new(move |_event: Event| {
                    if let Some(inner) = weak.upgrade() {
                        inner.changed(online);
                    }
                })
            };
            let handlers = Handlers {
                online: handler(true),
                offline: handler(false),
                target,
            };
            let registered = handlers
                .target
                .add_event_listener_with_callback(
                    "online",
                    handlers.online.as_ref().unchecked_ref(),
                )
                .and_then(|()| {
                    handlers.target.add_event_listener_with_callback(
                        "offline",
                        handlers.offline.as_ref().unchecked_ref(),
                    )
                });
            // Kept even if one registration failed, so that drop removes whatever was added.
            *inner.events.borrow_mut() = Some(handlers);
            let _ = registered;
        }
        Self { inner }
    }
}

impl ConnectivityInner {
    fn changed(&self, online: bool) {
        self.online.set(online);
        // A snapshot, so that a listener may register another without a double borrow.
        let listeners = self.listeners.borrow().clone();
        for listener in listeners {
            listener(online);
        }
    }
}

impl Connectivity for BrowserConnectivity {
    fn is_online(&self) -> bool {
        self.inner.online.get()
    }

    fn on_change(&self, listener: Listener<bool>) {
        self.inner.listeners.borrow_mut().push(Rc::from(listener));
    }
}

// ---- Executor -----------------------------------------------------------------------------

/// Runs background work on the page's (or worker's) event loop with
/// `wasm_bindgen_futures::spawn_local`, and sleeps with `setTimeout`.
#[derive(Clone, Copy, Debug, Default)]
pub struct BrowserExecutor;

impl Executor for BrowserExecutor {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        wasm_bindgen_futures::spawn_local(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        // setTimeout takes a signed 32-bit delay and fires at once past it; a capped sleep
        // wakes early, and the replay loop just sleeps again.
        let millis = i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
        let promise = Promise::new(&mut |resolve: Function, _reject: Function| {
            let global = js_sys::global();
            let scheduled = get(&global, "setTimeout")
                .dyn_into::<Function>()
                .ok()
                .and_then(|set_timeout| {
                    set_timeout
                        .call2(&global, &resolve, &JsValue::from(millis))
                        .ok()
                });
            if scheduled.is_none() {
                // No timer in this global: wake now rather than never, so that the replay
                // loop that waits here is not stuck for good.
                let _ = resolve.call0(&JsValue::UNDEFINED);
            }
        });
        boxed(async move {
            let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
        })
    }
}

// ---- Web Locks ----------------------------------------------------------------------------

/// A [`ReplayLock`] on the browser's Web Locks API: tabs (and workers) of one origin that use
/// the same lock name replay one at a time. A tab that finds the lock taken skips its replay
/// and looks again a little later.
///
/// Web Locks exist only in secure contexts (`https:` or `localhost`). Without them this lock
/// lets every replay run, as if the tab were alone; IndexedDB still keeps every write
/// atomic, but two tabs could then send the same queued call, so servers should dedupe by
/// [`ActionId`](crate::ActionId) as always.
#[derive(Clone, Debug)]
pub struct WebLocks {
    name: String,
}

impl WebLocks {
    /// A lock named `name`. Services on different databases should use different names.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Default for WebLocks {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_LOCK)
    }
}

/// The work waiting for the lock and where to report whether it ran. Taken by whichever side
/// gets to it first: the lock callback, or the fallback when the request fails.
type Pending = Rc<RefCell<Option<(BoxFuture<'static, ()>, oneshot::Sender<bool>)>>>;

impl ReplayLock for WebLocks {
    fn run_exclusive(&self, work: BoxFuture<'static, ()>) -> BoxFuture<'static, bool> {
        let name = self.name.clone();
        boxed(async move {
            let Some((locks, request)) = lock_manager() else {
                work.await;
                return true;
            };
            let (ran_sender, ran) = oneshot::channel();
            let pending: Pending = Rc::new(RefCell::new(Some((work, ran_sender))));
            let in_callback = Rc::clone(&pending);
            // The lock is held until the promise the callback returns settles: the end of
            // `work`. With `ifAvailable`, the callback gets `null` if another holder has it.
            let callback = Closure::once_into_js(move |lock: JsValue| -> Promise {
                let Some((work, ran_sender)) = in_callback.borrow_mut().take() else {
                    return Promise::resolve(&JsValue::UNDEFINED);
                };
                if lock.is_null() || lock.is_undefined() {
                    let _ = ran_sender.send(false);
                    return Promise::resolve(&JsValue::UNDEFINED);
                }
                wasm_bindgen_futures::future_to_promise(async move {
                    work.await;
                    let _ = ran_sender.send(true);
                    Ok(JsValue::UNDEFINED)
                })
            });
            let options = Object::new();
            let _ = Reflect::set(&options, &"ifAvailable".into(), &JsValue::TRUE);
            let requested = request
                .call3(&locks, &JsValue::from_str(&name), &options, &callback)
                .ok()
                .and_then(|promise| promise.dyn_into::<Promise>().ok());
            if let Some(promise) = requested {
                // Settles after the callback's promise, that is, after `work` if it ran.
                let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
            }
            let never_called = pending.borrow_mut().take();
            if let Some((work, _)) = never_called {
                // The request failed before calling back (for example a lock name the
                // browser refuses): run as if alone rather than never replaying.
                work.await;
                return true;
            }
            ran.await.unwrap_or(false)
        })
    }
}

/// `navigator.locks` and its `request` method, if this context has the Web Locks API.
fn lock_manager() -> Option<(JsValue, Function)> {
    let locks = get(&navigator()?, "locks");
    if locks.is_undefined() || locks.is_null() {
        return None;
    }
    let request = get(&locks, "request").dyn_into::<Function>().ok()?;
    Some((locks, request))
}
