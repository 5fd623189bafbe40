//! Send bounds that hold on native targets and vanish on wasm32, where futures are `!Send`.

use core::future::Future;
use core::pin::Pin;

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    /// `Send` on native targets; nothing on wasm32, where the browser's futures are `!Send`.
    pub trait MaybeSend: Send {}
    impl<T: Send + ?Sized> MaybeSend for T {}

    /// `Sync` on native targets; nothing on wasm32.
    pub trait MaybeSync: Sync {}
    impl<T: Sync + ?Sized> MaybeSync for T {}

    /// A boxed future: `Send` on native targets, `!Send` allowed on wasm32.
    pub type BoxFuture<'a, T> =
        core::pin::Pin<Box<dyn core::future::Future<Output = T> + Send + 'a>>;

    /// A boxed callback: `Send + Sync` on native targets.
    pub type Listener<T> = Box<dyn Fn(T) + Send + Sync>;

    /// A value of any type: `Send + Sync` on native targets.
    pub(crate) type AnyValue = Box<dyn core::any::Any + Send + Sync>;

    /// A shared async callback: `Send + Sync` on native targets.
    pub(crate) type Hook<T> =
        std::sync::Arc<dyn Fn(T) -> super::BoxFuture<'static, ()> + Send + Sync>;
}

#[cfg(target_arch = "wasm32")]
mod imp {
    /// `Send` on native targets; nothing on wasm32, where the browser's futures are `!Send`.
    pub trait MaybeSend {}
    impl<T: ?Sized> MaybeSend for T {}

    /// `Sync` on native targets; nothing on wasm32.
    pub trait MaybeSync {}
    impl<T: ?Sized> MaybeSync for T {}

    /// A boxed future: `Send` on native targets, `!Send` allowed on wasm32.
    pub type BoxFuture<'a, T> = core::pin::Pin<Box<dyn core::future::Future<Output = T> + 'a>>;

    /// A boxed callback: `Send + Sync` on native targets.
    pub type Listener<T> = Box<dyn Fn(T)>;

    /// A value of any type: `Send + Sync` on native targets.
    pub(crate) type AnyValue = Box<dyn core::any::Any>;

    /// A shared async callback: `Send + Sync` on native targets.
    pub(crate) type Hook<T> = std::sync::Arc<dyn Fn(T) -> super::BoxFuture<'static, ()>>;
}

pub(crate) use imp::{AnyValue, Hook};
pub use imp::{BoxFuture, Listener, MaybeSend, MaybeSync};

/// Boxes a future into a [`BoxFuture`].
pub fn boxed<'a, F>(future: F) -> BoxFuture<'a, F::Output>
where
    F: Future + MaybeSend + 'a,
{
    Pin::from(Box::new(future))
}
