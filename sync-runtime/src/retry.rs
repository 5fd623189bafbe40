//! When a queued action is tried again: exponential backoff with jitter, capped, honouring
//! the server's `Retry-After`; and when it is given up on.

use core::time::Duration;

/// How replay retries transient failures and when it gives up.
///
/// ```
/// use sync_runtime::RetryPolicy;
/// use std::time::Duration;
///
/// let policy = RetryPolicy {
///     max_retries: 5,
///     ..RetryPolicy::default()
/// };
/// assert_eq!(policy.ttl, Duration::from_secs(7 * 24 * 3600));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// The wait after the first failure.
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// Each failure multiplies the wait by this.
    pub multiplier: f64,
    /// The share of each wait that is random (0.0 = none, 1.0 = anywhere from 0 to the wait),
    /// so many clients coming back online do not retry in lockstep.
    pub jitter: f64,
    /// Transient failures allowed before the action moves to the dead-letter store.
    pub max_retries: u32,
    /// How long an action may wait in the queue before it moves to the dead-letter store.
    pub ttl: Duration,
    /// The longest `Retry-After` honoured. A server asking for more (or a broken header)
    /// would otherwise park the queue, and every call, for that long.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.5,
            max_retries: 25,
            ttl: Duration::from_secs(7 * 24 * 3600),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt number `retries + 1`, given a uniform random number in
    /// `[0, 1)` and the server's `Retry-After`, if any. The server's wish wins when longer, up
    /// to [`max_retry_after`](Self::max_retry_after).
    pub fn backoff(&self, retries: u32, random: f64, retry_after: Option<Duration>) -> Duration {
        let exponent = i32::try_from(retries.saturating_sub(1)).unwrap_or(i32::MAX);
        let max = self.max_backoff.as_secs_f64();
        let base = (self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent)).min(max);
        let jitter = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        // `try_`: a huge configured cap (say `Duration::MAX` for "none") must not panic.
        let wait = Duration::try_from_secs_f64((base * (1.0 - jitter)).max(0.0))
            .unwrap_or(self.max_backoff);
        match retry_after {
            Some(server) if server > wait => server.min(self.max_retry_after.max(wait)),
            _ => wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_is_capped() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let waits: Vec<u64> = (1..=12)
            .map(|n| policy.backoff(n, 0.5, None).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    #[test]
    fn jitter_only_shortens_within_its_share() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(3, 0.0, None), Duration::from_secs(4));
        assert_eq!(policy.backoff(3, 0.999_999, None).as_millis(), 2000);
    }

    #[test]
    fn retry_after_wins_when_longer() {
        let policy = RetryPolicy::default();
        let server = Duration::from_secs(90);
        assert_eq!(policy.backoff(1, 0.0, Some(server)), server);
        assert_eq!(
            policy.backoff(20, 0.0, Some(Duration::from_secs(1))),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn retry_after_is_capped() {
        let policy = RetryPolicy::default();
        let year = Duration::from_secs(365 * 24 * 3600);
        assert_eq!(policy.backoff(1, 0.0, Some(year)), policy.max_retry_after);
    }
}
