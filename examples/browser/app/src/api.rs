//! The HTTP calls the actions make, on the browser's `fetch`, and how their failures are
//! sorted into "try again later" and "this request is wrong".

use crate::actions::AppError;
use crate::model::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use sync_runtime::http::{is_transient_status, parse_retry_after, server_time, SERVER_TIME_HEADER};
use sync_runtime::ActionContext;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Headers, Request, RequestCache, RequestInit, Response};

/// How long a request may take before it counts as a network failure: `fetch` itself never
/// gives up, and a call hanging on a dead connection would keep the queue from moving.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `GET path`, answered with JSON.
pub(crate) async fn get<T: DeserializeOwned>(path: &str) -> Result<T, AppError> {
    let text = send("GET", path, None, None).await?;
    decode(&text)
}

/// `method path` with a JSON body, sent on behalf of the running action: it carries the
/// action's id (the server's idempotency key) and the time the user acted.
pub(crate) async fn send_json<B: Serialize, T: DeserializeOwned>(
    method: &str,
    path: &str,
    body: &B,
    action: &ActionContext,
) -> Result<T, AppError> {
    let body = serde_json::to_string(body)
        .map_err(|e| AppError::Invalid(format!("cannot encode the request: {e}")))?;
    let text = send(method, path, Some(body), Some(action)).await?;
    decode(&text)
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T, AppError> {
    // A complete response that is not what this build expects fails the same way next
    // time: permanent.
    serde_json::from_str(text).map_err(|e| AppError::BadResponse(e.to_string()))
}

async fn send(
    method: &str,
    path: &str,
    body: Option<String>,
    action: Option<&ActionContext>,
) -> Result<String, AppError> {
    let window = web_sys::window().ok_or_else(|| AppError::Invalid("no window".into()))?;
    let headers = Headers::new().map_err(|e| AppError::Invalid(describe(&e)))?;
    let set = |name: &str, value: &str| {
        headers
            .set(name, value)
            .map_err(|e| AppError::Invalid(describe(&e)))
    };
    set("accept", "application/json")?;
    if body.is_some() {
        set("content-type", "application/json")?;
    }
    if let Some(action) = action {
        for (name, value) in sync_runtime::http::action_headers(action) {
            set(name, &value)?;
        }
    }
    let init = RequestInit::new();
    init.set_method(method);
    init.set_headers(&headers);
    // Answers must come from the server, never from the HTTP cache: a stale list would look
    // like data loss.
    init.set_cache(RequestCache::NoStore);
    if let Some(body) = &body {
        init.set_body(&JsValue::from_str(body));
    }
    let timeout = u32::try_from(TIMEOUT.as_millis()).unwrap_or(u32::MAX);
    init.set_signal(Some(&AbortSignal::timeout_with_u32(timeout)));
    let request = Request::new_with_str_and_init(path, &init)
        .map_err(|e| AppError::Invalid(format!("cannot build the request: {}", describe(&e))))?;

    // `fetch` rejects only when no response arrived (offline, refused, reset, timed out):
    // the network's fault, so transient.
    let response: Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(|e| AppError::Network(describe(&e)))?
        .unchecked_into();
    let status = response.status();
    let header = |name: &str| response.headers().get(name).ok().flatten();
    if let Some(action) = action.filter(|_| !is_transient_status(status)) {
        // An answer from the server itself: its clock corrects the stamps of the next
        // actions, whatever this device's clock says.
        let time = server_time(
            header(SERVER_TIME_HEADER).as_deref(),
            header("date").as_deref(),
        );
        if let Some(time) = time {
            action.note_server_time(time);
        }
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .ok()
        .flatten()
        .and_then(|value| parse_retry_after(&value));
    let text = match response.text() {
        Ok(promise) => JsFuture::from(promise).await,
        Err(e) => Err(e),
    }
    // The body was cut off: the network again.
    .map_err(|e| AppError::Network(describe(&e)))?
    .as_string()
    .unwrap_or_default();
    if response.ok() {
        return Ok(text);
    }
    Err(AppError::server(status, server_message(&text), retry_after))
}

/// The `error` field of a JSON error body, or the body itself.
fn server_message(text: &str) -> String {
    serde_json::from_str::<ErrorBody>(text)
        .map_or_else(|_| text.trim().to_owned(), |body| body.error)
}

/// A JavaScript error as text: its `message` when it has one (`TypeError: Failed to fetch`).
fn describe(error: &JsValue) -> String {
    if let Some(error) = error.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    if let Some(exception) = error.dyn_ref::<web_sys::DomException>() {
        return exception.message();
    }
    error.as_string().unwrap_or_else(|| format!("{error:?}"))
}
