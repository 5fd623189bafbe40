//! Classifies errors whose type is erased, `Box<dyn Error + Send + Sync>` and (with the `anyhow`
//! feature) `anyhow::Error`, by the errors they hold.

use crate::{ClassifyError, SyncError};
use core::time::Duration;
use std::error::Error;

/// Finds a classification inside one error: `Some` when the error is of a known type.
type Finder = for<'a> fn(&'a (dyn Error + 'static)) -> Option<&'a dyn ClassifyError>;

/// The error types of this crate and of its optional dependencies that an erased error is
/// searched for, one line each. Types of other crates take part through
/// [`register_error_type!`](crate::register_error_type).
const KNOWN: &[Finder] = &[
    downcast::<SyncError>,
    downcast::<std::io::Error>,
    #[cfg(all(feature = "reqwest", not(target_arch = "wasm32")))]
    downcast::<reqwest::Error>,
    #[cfg(feature = "server-fn")]
    downcast::<server_fn::error::ServerFnErrorErr>,
];

/// `error` as a `T`, if it is one.
fn downcast<'a, T: Error + ClassifyError + 'static>(
    error: &'a (dyn Error + 'static),
) -> Option<&'a dyn ClassifyError> {
    error
        .downcast_ref::<T>()
        .map(|error| error as &dyn ClassifyError)
}

/// An error type registered with [`register_error_type!`](crate::register_error_type).
#[doc(hidden)]
pub struct RegisteredErrorType {
    find: Finder,
}

impl RegisteredErrorType {
    /// The registration of `T`.
    pub const fn of<T: Error + ClassifyError + 'static>() -> Self {
        Self {
            find: downcast::<T>,
        }
    }
}

inventory::collect!(RegisteredErrorType);

/// The classification of the first error in `error`'s chain (itself, then its sources) whose
/// type is known: one of [`KNOWN`] or a registered one. `None`: nothing inside says.
fn classify_chain<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a dyn ClassifyError> {
    let mut next = Some(error);
    while let Some(error) = next {
        let registered = inventory::iter::<RegisteredErrorType>
            .into_iter()
            .map(|registered| registered.find);
        if let Some(found) = KNOWN
            .iter()
            .copied()
            .chain(registered)
            .find_map(|find| find(error))
        {
            return Some(found);
        }
        next = error.source();
    }
    None
}

/// `is_transient` of an erased error: what the error found inside says, else permanent.
fn is_transient(error: &(dyn Error + 'static)) -> bool {
    classify_chain(error).is_some_and(ClassifyError::is_transient)
}

/// `retry_after` of an erased error: what the error found inside says.
fn retry_after(error: &(dyn Error + 'static)) -> Option<Duration> {
    classify_chain(error).and_then(ClassifyError::retry_after)
}

/// Classified by the errors it holds; see [`ClassifyError`].
impl ClassifyError for Box<dyn Error + Send + Sync + 'static> {
    fn is_transient(&self) -> bool {
        is_transient(&**self)
    }

    fn retry_after(&self) -> Option<Duration> {
        retry_after(&**self)
    }
}

/// Classified by the errors it holds; see [`ClassifyError`].
impl ClassifyError for Box<dyn Error + 'static> {
    fn is_transient(&self) -> bool {
        is_transient(&**self)
    }

    fn retry_after(&self) -> Option<Duration> {
        retry_after(&**self)
    }
}

/// Classified by the errors it holds, context included; see [`ClassifyError`].
#[cfg(feature = "anyhow")]
impl ClassifyError for anyhow::Error {
    fn is_transient(&self) -> bool {
        is_transient(self.as_ref())
    }

    fn retry_after(&self) -> Option<Duration> {
        retry_after(self.as_ref())
    }
}

/// Lets a boxed or `anyhow` error that holds one of your error types be classified by that
/// type's [`ClassifyError`] impl.
///
/// `Box<dyn Error + Send + Sync>` and `anyhow::Error` implement `ClassifyError` by looking
/// inside: the error and then its sources, in order, for a type they know (`SyncError`,
/// `std::io::Error`, `reqwest::Error` with the `reqwest` feature, and the types registered
/// here). The first one found decides; when none is, the error is permanent.
///
/// ```
/// use sync_runtime::{register_error_type, ClassifyError};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("the payment service is busy")]
/// pub struct PaymentBusy;
///
/// impl ClassifyError for PaymentBusy {
///     fn is_transient(&self) -> bool {
///         true
///     }
/// }
///
/// register_error_type!(PaymentBusy);
///
/// let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(PaymentBusy);
/// assert!(boxed.is_transient());
/// ```
#[macro_export]
macro_rules! register_error_type {
    ($($ty:ty),+ $(,)?) => {
        $(
            $crate::__private::inventory::submit! {
                $crate::__private::RegisteredErrorType::of::<$ty>()
            }
        )+
    };
}
