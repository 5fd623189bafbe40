//! Generic types: delegated fields that name a type parameter get a bound, others none.

use std::fmt::Debug;
use std::time::Duration;
use sync_runtime::ClassifyError;

#[derive(Debug, ClassifyError)]
#[classify(delegate)]
pub struct Context<T: Debug>(pub T);

#[derive(Debug, ClassifyError)]
pub enum Layered<'a, E: Debug, W: Copy>
where
    W: Into<Duration>,
{
    #[classify(delegate)]
    Inner(E),
    #[classify(delegate)]
    Wrapped { error: Context<E> },
    #[classify(delegate)]
    Io(std::io::Error),
    #[classify(transient)]
    Waiting(W, &'a str),
}

fn main() {
    let timed_out = || std::io::Error::from(std::io::ErrorKind::TimedOut);
    let inner: Layered<'_, std::io::Error, Duration> = Layered::Inner(timed_out());
    assert!(inner.is_transient());
    let wrapped: Layered<'_, std::io::Error, Duration> = Layered::Wrapped {
        error: Context(timed_out()),
    };
    assert!(wrapped.is_transient());
    let io: Layered<'_, std::io::Error, Duration> =
        Layered::Io(std::io::ErrorKind::NotFound.into());
    assert!(!io.is_transient());
    assert!(Context(Layered::<std::io::Error, Duration>::Waiting(
        Duration::ZERO,
        "x"
    ))
    .is_transient());
}
