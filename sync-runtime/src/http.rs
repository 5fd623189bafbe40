//! Actions over HTTP, for any client or server: the headers that carry an action's id and
//! timestamp and the server's clock, which statuses are worth retrying, `Retry-After`, and (feature `reqwest`)
//! [`ClassifyError`](crate::ClassifyError) for `reqwest::Error`.
//!
//! A client sends [`action_headers`] with every request an action body makes; the server
//! reads them (see [`crate::server`]) to apply each action once and to order updates by the
//! time the user acted.
//!
//! ```
//! use sync_runtime::http::{is_transient_status, parse_retry_after};
//! use std::time::Duration;
//!
//! assert!(is_transient_status(503));
//! assert!(!is_transient_status(404));
//! assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
//! ```

use crate::{ActionContext, Timestamp};
use core::time::Duration;

/// The request header that carries the action id: the idempotency key. It stays the same
/// through every retry and replay of one call, so a server that records it applies the call
/// once (see [`crate::server::apply_once`]).
pub const ACTION_ID_HEADER: &str = "idempotency-key";

/// The request header that carries the action's timestamp: when the user acted, in
/// milliseconds since the Unix epoch. A replay sends the original time, not the time of the
/// replay, so a server can apply last-write-wins by the time the user acted.
pub const ACTION_TIMESTAMP_HEADER: &str = "x-action-timestamp";

/// The response header that carries the server's clock when it answered, in milliseconds
/// since the Unix epoch (the `Date` header has whole seconds only). A client reports it to the
/// runtime ([`ActionContext::note_server_time`]), which then stamps actions with the server's
/// time even when the device's clock is wrong. Servers add it with
/// [`crate::server::server_time_header`].
pub const SERVER_TIME_HEADER: &str = "x-server-time";

/// The server's clock as an answer gives it: [`SERVER_TIME_HEADER`] if present and a number,
/// else the `Date` header (HTTP's IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`), read as the
/// middle of its second. `None` when neither reads.
///
/// ```
/// use sync_runtime::http::server_time;
/// use sync_runtime::Timestamp;
///
/// assert_eq!(server_time(Some("1700000000123"), None), Some(Timestamp(1_700_000_000_123)));
/// assert_eq!(
///     server_time(None, Some("Sun, 06 Nov 1994 08:49:37 GMT")),
///     Some(Timestamp(784_111_777_500))
/// );
/// assert_eq!(server_time(Some("soon"), None), None);
/// ```
pub fn server_time(
    server_time_header: Option<&str>,
    date_header: Option<&str>,
) -> Option<Timestamp> {
    let exact = server_time_header.and_then(|value| {
        let value = value.trim();
        (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
            .then(|| value.parse().ok().map(Timestamp))
            .flatten()
    });
    exact.or_else(|| {
        let seconds = parse_http_date(date_header?)?;
        Some(Timestamp(seconds.checked_mul(1000)?.checked_add(500)?))
    })
}

/// Reads an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, the form HTTP servers send) as
/// seconds since the Unix epoch.
fn parse_http_date(value: &str) -> Option<u64> {
    let rest = value.trim().split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let number = |text: &str, digits: usize| -> Option<u64> {
        (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as u64 + 1;
    let (day, year) = (number(day, 2)?, number(year, 4)?);
    let mut clock = time.split(':');
    let (hour, minute, second) = (
        number(clock.next()?, 2)?,
        number(clock.next()?, 2)?,
        number(clock.next()?, 2)?,
    );
    if clock.next().is_some() || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60
    {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y % 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The headers a request made by an action body carries: [`ACTION_ID_HEADER`] and
/// [`ACTION_TIMESTAMP_HEADER`], as `(name, value)` pairs any HTTP client can add.
///
/// ```
/// # use sync_runtime::{offline_action, ActionContext, SyncError};
/// # #[offline_action]
/// # pub async fn example() -> Result<(), SyncError> {
/// let cx = ActionContext::current().expect("inside an action");
/// for (name, value) in sync_runtime::http::action_headers(&cx) {
///     // request = request.header(name, value);
/// #   let _ = (name, value);
/// }
/// # Ok(())
/// # }
/// ```
pub fn action_headers(cx: &ActionContext) -> [(&'static str, String); 2] {
    [
        (ACTION_ID_HEADER, cx.id().to_string()),
        (
            ACTION_TIMESTAMP_HEADER,
            cx.timestamp().as_millis().to_string(),
        ),
    ]
}

/// Whether a response with this status is worth trying again later: 408 (request timeout),
/// 425 (too early), 429 (too many requests), and 5xx except 501 (not implemented) and 505
/// (HTTP version not supported), which the same request will meet again. Every other status
/// is final: a 4xx means the request itself is wrong, and replaying it cannot help.
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429)
        || ((500..600).contains(&status) && !matches!(status, 501 | 505))
}

/// Reads a `Retry-After` header value in its seconds form (`"120"`).
///
/// Returns `None` for anything else, including the HTTP-date form (`"Wed, 21 Oct 2015
/// 07:28:00 GMT"`), which this helper does not read: the retry policy's own backoff applies
/// then.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits but too large for u64: the server asks for "practically never".
    Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)))
}

/// Errors from `reqwest`: connection failures, timeouts, requests or response bodies cut off
/// by the network, and statuses for which [`is_transient_status`] holds are transient;
/// everything else (a bad URL, a redirect loop, a response that is not the JSON expected,
/// other 4xx) is permanent.
///
/// `reqwest::Error` carries no headers, so it has no `retry_after`: an error type that keeps
/// the response's `Retry-After` (read with [`parse_retry_after`]) can report it.
#[cfg(all(feature = "reqwest", not(target_arch = "wasm32")))]
impl crate::ClassifyError for reqwest::Error {
    fn is_transient(&self) -> bool {
        if let Some(status) = self.status() {
            return is_transient_status(status.as_u16());
        }
        if self.is_builder() || self.is_redirect() {
            return false;
        }
        if self.is_decode() {
            // reqwest reports a body cut off mid-way as a decode error too; only a body that
            // arrived whole and is not what was expected will fail the same way again.
            return !caused_by_json(self);
        }
        self.is_connect() || self.is_timeout() || self.is_request() || self.is_body()
    }
}

#[cfg(all(feature = "reqwest", not(target_arch = "wasm32")))]
fn caused_by_json(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<serde_json::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_worth_retrying() {
        for status in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert!(is_transient_status(status), "{status}");
        }
        for status in [
            200, 204, 301, 400, 401, 403, 404, 409, 410, 422, 501, 505, 600,
        ] {
            assert!(!is_transient_status(status), "{status}");
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Wed, 02 Dec 2026 02:30:05 GMT"),
            Some(1_796_178_605)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 23:59:59 GMT"),
            Some(951_868_799)
        );
        for unread in [
            "",
            "yesterday",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 06 Nov 1994 25:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(unread), None, "{unread:?}");
        }
        assert_eq!(
            server_time(Some("bad"), Some("Thu, 01 Jan 1970 00:00:01 GMT")),
            Some(Timestamp(1_500))
        );
        assert_eq!(server_time(None, None), None);
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        for unread in ["", "-1", "1.5", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(parse_retry_after(unread), None, "{unread:?}");
        }
    }
}
