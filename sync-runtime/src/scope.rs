//! Task-local values without tying users to one executor: a wrapper future that installs a
//! value in a thread-local slot for the duration of each poll of the future it wraps.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::cell::RefCell;
use std::thread::LocalKey;

pin_project_lite::pin_project! {
    /// A future that runs with a task-local value installed.
    pub(crate) struct Scoped<T: 'static, F> {
        slot: &'static LocalKey<RefCell<Option<T>>>,
        value: Option<T>,
        #[pin]
        future: F,
    }
}

impl<T: 'static, F> Scoped<T, F> {
    pub(crate) fn new(slot: &'static LocalKey<RefCell<Option<T>>>, value: T, future: F) -> Self {
        Self {
            slot,
            value: Some(value),
            future,
        }
    }
}

impl<T: 'static, F: Future> Future for Scoped<T, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Only this line depends on `F`: the swapping does not, so it is compiled once per
        // kind of value rather than once per wrapped future (one per action).
        let _installed = Installed::new(*this.slot, this.value);
        this.future.poll(cx)
    }
}

/// Our value, swapped into the slot for the duration of one poll, and swapped back out when
/// dropped, even if the inner poll panics.
struct Installed<'a, T: 'static> {
    slot: &'static LocalKey<RefCell<Option<T>>>,
    value: &'a mut Option<T>,
}

impl<'a, T: 'static> Installed<'a, T> {
    fn new(slot: &'static LocalKey<RefCell<Option<T>>>, value: &'a mut Option<T>) -> Self {
        swap(slot, value);
        Self { slot, value }
    }
}

impl<T: 'static> Drop for Installed<'_, T> {
    fn drop(&mut self) {
        swap(self.slot, self.value);
    }
}

fn swap<T: 'static>(slot: &'static LocalKey<RefCell<Option<T>>>, value: &mut Option<T>) {
    slot.with(|cell| core::mem::swap(&mut *cell.borrow_mut(), value));
}

/// Reads a clone of the value installed in `slot`, if any.
pub(crate) fn current<T: Clone + 'static>(
    slot: &'static LocalKey<RefCell<Option<T>>>,
) -> Option<T> {
    slot.with(|cell| cell.borrow().clone())
}
