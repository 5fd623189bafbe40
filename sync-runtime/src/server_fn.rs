//! Server functions (`server_fn`, the RPC layer of Leptos) as offline actions: feature
//! `server-fn`.
//!
//! Put `#[offline_action]` on a `#[server]` function and choose [`OfflineClient`] as its
//! client. Callers, the endpoint's path, its HTTP method and its codec stay as they were:
//!
//! ```ignore
//! #[server(client = sync_runtime::server_fn::OfflineClient)]
//! #[offline_action(local = add_todo_locally)]
//! pub async fn add_todo(title: String) -> Result<Todo, ServerFnError> {
//!     // Runs on the server, once per action id (see `sync_runtime::leptos::apply_once`).
//!     # todo!()
//! }
//! ```
//!
//! - **Attribute order.** Either order works. `#[server]` expands first (if `#[offline_action]`
//!   is written above it, it steps aside and comes back below it); `#[offline_action]` then
//!   makes the client half offline-first and leaves the server half (the `ssr` build, where
//!   the body runs in process) exactly as `#[server]` wrote it: a call made while rendering on
//!   the server is never queued.
//! - **Headers.** [`OfflineClient`] wraps the client the server function would use anyway
//!   (the browser's `fetch` on wasm32, `reqwest` with `OfflineClient<ReqwestClient>`) and adds
//!   the action id and timestamp headers ([`crate::http`]) to every request an action makes.
//! - **Errors.** `ServerFnError` works with no error type of your own: it converts from
//!   [`SyncError`](crate::SyncError) (server_fn's blanket `From` for errors, as
//!   `ServerFnError::ServerError` with the message) and implements
//!   [`ClassifyError`] here. A request that never reached the server
//!   (`ServerFnError::Request`) is transient; so is a `408`, `429` or `5xx` that did not come
//!   from the server function itself (a proxy, a load balancer, a server still starting:
//!   [`OfflineClient`] turns it into a `Request` error and keeps its `Retry-After`). An error
//!   the server function returned is permanent. Your own error types that implement
//!   `FromServerFnError` classify the `ServerFnErrorErr` they wrap with [`is_transient`].

use crate::http::{
    action_headers, is_transient_status, parse_retry_after, server_time, SERVER_TIME_HEADER,
};
use crate::{ActionContext, ClassifyError};
use core::future::Future;
use core::marker::PhantomData;
use server_fn::client::Client;
use server_fn::error::{FromServerFnError, ServerFnErrorErr, SERVER_FN_ERROR_HEADER};
use server_fn::response::ClientRes;
use server_fn::ServerFnError;

pub use server_fn::client::browser::BrowserClient;
#[cfg(all(feature = "reqwest", not(target_arch = "wasm32")))]
pub use server_fn::client::reqwest::ReqwestClient;

/// A request error means the request never reached the server function (no connection, the
/// connection dropped, or a proxy answered in its place, see [`OfflineClient`]): transient.
/// Everything else is the server function's answer, or a request the client could not even
/// build or decode: permanent.
impl<E> ClassifyError for ServerFnError<E> {
    fn is_transient(&self) -> bool {
        matches!(self, ServerFnError::Request(_))
    }
}

/// The error server_fn's clients make: a request error is transient (see [`is_transient`]).
/// This also lets `anyhow::Error` and boxed errors that wrap one classify it.
impl ClassifyError for ServerFnErrorErr {
    fn is_transient(&self) -> bool {
        is_transient(self)
    }
}

/// Whether a server function error is worth trying again later, for your own error types that
/// implement `FromServerFnError`: `true` for [`ServerFnErrorErr::Request`] (the request never
/// reached the server function), `false` for the rest.
///
/// ```
/// # #[derive(Debug)]
/// # enum AppError { ServerFn(server_fn::error::ServerFnErrorErr), NotFound }
/// use sync_runtime::ClassifyError;
///
/// impl ClassifyError for AppError {
///     fn is_transient(&self) -> bool {
///         match self {
///             AppError::ServerFn(error) => sync_runtime::server_fn::is_transient(error),
///             AppError::NotFound => false,
///         }
///     }
/// }
/// # let offline = server_fn::error::ServerFnErrorErr::Request("connection refused".into());
/// # assert!(AppError::ServerFn(offline).is_transient());
/// ```
pub fn is_transient(error: &ServerFnErrorErr) -> bool {
    matches!(error, ServerFnErrorErr::Request(_))
}

/// A `server_fn` client that makes a server function's requests carry the action id and
/// timestamp headers, and reports answers that did not come from the server function as
/// transient. Choose it with `#[server(client = sync_runtime::server_fn::OfflineClient)]`.
///
/// `C` is the client it wraps: [`BrowserClient`] by default (the browser's `fetch`, which is
/// also what Leptos names on the server); `OfflineClient<ReqwestClient>` on native clients
/// (features `server-fn` and `reqwest`).
///
/// For each request made inside an action ([`ActionContext::current`]), it:
/// - adds [`ACTION_ID_HEADER`](crate::http::ACTION_ID_HEADER) and
///   [`ACTION_TIMESTAMP_HEADER`](crate::http::ACTION_TIMESTAMP_HEADER), the same on every
///   retry and replay of one call, so the server can apply it once;
/// - turns a `408`, `425`, `429` or `5xx` answer without server_fn's error header (so not the
///   server function's own error) into `ServerFnErrorErr::Request`, which classifies as
///   transient, and passes its `Retry-After` on to the runtime
///   ([`ActionContext::note_retry_after`]);
/// - reports the server's clock from any other answer (the
///   [`SERVER_TIME_HEADER`], else `Date`) with
///   [`ActionContext::note_server_time`], so that actions are stamped by the server's clock
///   even on a device whose clock is wrong.
///
/// Requests made outside an action pass through untouched.
pub struct OfflineClient<C = BrowserClient>(PhantomData<fn() -> C>);

impl<E, IS, OS, C> Client<E, IS, OS> for OfflineClient<C>
where
    C: Client<E, IS, OS>,
    C::Request: ActionRequest,
    C::Response: AnswerHeaders,
    E: FromServerFnError + Send,
{
    type Request = C::Request;
    type Response = C::Response;

    fn send(mut request: Self::Request) -> impl Future<Output = Result<Self::Response, E>> + Send {
        let in_action = match ActionContext::current() {
            Some(cx) => {
                for (name, value) in action_headers(&cx) {
                    request.set_action_header(name, &value);
                }
                true
            }
            None => false,
        };
        let sent = C::send(request);
        async move {
            let response = sent.await?;
            let status = ClientRes::<E>::status(&response);
            if in_action && !is_transient_status(status) {
                // An answer from the server itself (not a proxy standing in for it): its
                // clock corrects the stamps of the next actions.
                let server_time = server_time(
                    response.answer_header(SERVER_TIME_HEADER).as_deref(),
                    response.answer_header("date").as_deref(),
                );
                if let (Some(time), Some(cx)) = (server_time, ActionContext::current()) {
                    cx.note_server_time(time);
                }
            }
            if !in_action
                || !is_transient_status(status)
                || response.answer_header(SERVER_FN_ERROR_HEADER).is_some()
            {
                return Ok(response);
            }
            let retry_after = response
                .answer_header("retry-after")
                .as_deref()
                .and_then(parse_retry_after);
            if let (Some(wait), Some(cx)) = (retry_after, ActionContext::current()) {
                cx.note_retry_after(wait);
            }
            let reason = ClientRes::<E>::status_text(&response);
            Err(E::from_server_fn_error(ServerFnErrorErr::Request(format!(
                "the server did not run the server function: HTTP {status} {reason}"
            ))))
        }
    }

    fn open_websocket(
        path: &str,
    ) -> impl Future<
        Output = Result<
            (
                impl futures_util::Stream<Item = Result<server_fn::Bytes, server_fn::Bytes>>
                    + Send
                    + 'static,
                impl futures_util::Sink<server_fn::Bytes> + Send + 'static,
            ),
            E,
        >,
    > + Send {
        C::open_websocket(path)
    }

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        C::spawn(future);
    }
}

/// A request type [`OfflineClient`] can add the action headers to. Implemented for the
/// requests of server_fn's browser and reqwest clients.
pub trait ActionRequest {
    /// Sets header `name` to `value`.
    fn set_action_header(&mut self, name: &'static str, value: &str);
}

/// A response type [`OfflineClient`] can read headers of. Implemented for the responses of
/// server_fn's browser and reqwest clients.
pub trait AnswerHeaders {
    /// The value of header `name`, if there is one.
    fn answer_header(&self, name: &str) -> Option<String>;
}

impl ActionRequest for server_fn::request::browser::BrowserRequest {
    fn set_action_header(&mut self, name: &'static str, value: &str) {
        self.headers().set(name, value);
    }
}

impl AnswerHeaders for server_fn::response::browser::BrowserResponse {
    fn answer_header(&self, name: &str) -> Option<String> {
        self.generate_headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }
}

#[cfg(all(feature = "reqwest", not(target_arch = "wasm32")))]
impl ActionRequest for reqwest::Request {
    fn set_action_header(&mut self, name: &'static str, value: &str) {
        if let Ok(value) = reqwest::header::HeaderValue::from_str(value) {
            self.headers_mut()
                .insert(reqwest::header::HeaderName::from_static(name), value);
        }
    }
}

#[cfg(all(feature = "reqwest", not(target_arch = "wasm32")))]
impl AnswerHeaders for reqwest::Response {
    fn answer_header(&self, name: &str) -> Option<String> {
        self.headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_are_transient_and_answers_are_not() {
        let cases: [(ServerFnError, bool); 5] = [
            (ServerFnError::Request("connection refused".into()), true),
            (ServerFnError::ServerError("title is empty".into()), false),
            (ServerFnError::Deserialization("bad json".into()), false),
            (ServerFnError::Args("missing title".into()), false),
            (ServerFnError::Response("cannot encode".into()), false),
        ];
        for (error, transient) in cases {
            assert_eq!(error.is_transient(), transient, "{error:?}");
        }
        assert!(is_transient(&ServerFnErrorErr::Request("reset".into())));
        assert!(!is_transient(&ServerFnErrorErr::ServerError("no".into())));
    }
}

#[cfg(all(test, feature = "reqwest", not(target_arch = "wasm32")))]
mod reqwest_client_tests {
    use super::*;
    use crate::context::{ActionContext, Phase};
    use crate::{ActionId, MemoryStore, SyncService, Timestamp};
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    /// Answers one request on loopback with `answer`; returns the URL and the request's head.
    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/add_todo", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            (&stream).write_all(answer.as_bytes()).unwrap();
            head
        });
        (url, server)
    }

    fn context() -> ActionContext {
        let service = SyncService::builder()
            .store(MemoryStore::new())
            .build()
            .unwrap();
        let id: ActionId = "0191e4a4-7d2a-7c3e-9a5b-1f2e3d4c5b6a".parse().unwrap();
        ActionContext::new(
            service,
            id,
            "add_todo",
            Timestamp(1_700_000_000_123),
            Phase::Online,
        )
    }

    async fn send(url: &str) -> Result<reqwest::Response, ServerFnError> {
        let request = reqwest::Client::new()
            .post(url)
            .body("title=milk")
            .build()
            .unwrap();
        <OfflineClient<ReqwestClient> as Client<ServerFnError>>::send(request).await
    }

    #[tokio::test]
    async fn a_proxys_503_is_transient_and_its_retry_after_reaches_the_runtime() {
        let (url, server) = serve_once(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
        let cx = context();
        let answer = cx.clone().scope(send(&url)).await;
        let head = server.join().unwrap();
        assert!(
            head.contains("idempotency-key: 0191e4a4-7d2a-7c3e-9a5b-1f2e3d4c5b6a\r\n"),
            "{head}"
        );
        assert!(
            head.contains("x-action-timestamp: 1700000000123\r\n"),
            "{head}"
        );
        match answer {
            Err(error @ ServerFnError::Request(_)) => {
                assert!(error.is_transient());
                assert!(error.to_string().contains("HTTP 503"), "{error}");
            }
            other => panic!("expected a transient request error, got {other:?}"),
        }
        assert_eq!(cx.noted_retry_after(), Some(Duration::from_secs(7)));
    }

    #[tokio::test]
    async fn the_server_functions_own_error_passes_through() {
        let (url, server) = serve_once(
            "HTTP/1.1 500 Internal Server Error\r\nserverfnerror: /api/add_todo\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
        let cx = context();
        let answer = cx.clone().scope(send(&url)).await;
        server.join().unwrap();
        let response = answer.expect("server_fn decodes the error itself");
        assert_eq!(response.status().as_u16(), 500);
        assert_eq!(cx.noted_retry_after(), None);
    }

    #[tokio::test]
    async fn requests_outside_an_action_pass_through_untouched() {
        let (url, server) = serve_once(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
        let response = send(&url).await.expect("no action, no reinterpretation");
        let head = server.join().unwrap();
        assert_eq!(response.status().as_u16(), 503);
        assert!(!head.contains("idempotency-key"), "{head}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let answer = context()
            .scope(send(&format!("http://127.0.0.1:{port}/api/add_todo")))
            .await;
        assert!(matches!(&answer, Err(e) if e.is_transient()), "{answer:?}");
    }
}
