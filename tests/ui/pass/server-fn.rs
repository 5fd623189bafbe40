//! `#[offline_action]` on `server_fn` server functions (the client half, as a browser or native
//! client builds it), in both attribute orders, with `ServerFnError` and no error type of the
//! app's own. Then the behaviour: offline, the call is answered locally and queued; online,
//! the replay reaches the server function's endpoint with the action id and timestamp
//! headers, and a proxy's 503 on the way is transient.

use serde::{Deserialize, Serialize};
use server_fn::error::ServerFnError;
use server_fn_macro_default::server;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use sync_runtime::server_fn::{OfflineClient, ReqwestClient};
use std::time::Duration;
use sync_runtime::{
    offline_action, ActionContext, Clock, ManualConnectivity, MemoryStore, RetryPolicy,
    SyncService, SystemClock,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Todo {
    pub id: String,
    pub title: String,
}

async fn add_todo_locally(title: String) -> Result<Todo, ServerFnError> {
    let cx = ActionContext::current().expect("inside the action");
    Ok(Todo { id: cx.id().to_string(), title })
}

#[server(client = OfflineClient<ReqwestClient>)]
#[offline_action(local = add_todo_locally)]
pub async fn add_todo(title: String) -> Result<Todo, ServerFnError> {
    unreachable!("the server's half does not run in a client build")
}

#[offline_action(query)]
#[server(client = OfflineClient<ReqwestClient>)]
pub async fn count_todos() -> Result<u32, ServerFnError> {
    unreachable!("the server's half does not run in a client build")
}

/// An app's own server function error, as Leptos 0.8 recommends: `FromServerFnError`, plus
/// `From<SyncError>` and `ClassifyError` for the offline layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum TodoError {
    #[error("{0}")]
    ServerFn(server_fn::error::ServerFnErrorErr),
    #[error("no such todo")]
    NotFound,
    #[error("{0}")]
    Offline(String),
}

impl server_fn::error::FromServerFnError for TodoError {
    type Encoder = server_fn::codec::JsonEncoding;

    fn from_server_fn_error(error: server_fn::error::ServerFnErrorErr) -> Self {
        TodoError::ServerFn(error)
    }
}

impl From<sync_runtime::SyncError> for TodoError {
    fn from(error: sync_runtime::SyncError) -> Self {
        TodoError::Offline(error.to_string())
    }
}

impl sync_runtime::ClassifyError for TodoError {
    fn is_transient(&self) -> bool {
        matches!(self, TodoError::ServerFn(e) if sync_runtime::server_fn::is_transient(e))
    }
}

#[server(client = OfflineClient<ReqwestClient>)]
#[offline_action]
pub async fn remove_todo(id: String) -> Result<(), TodoError> {
    unreachable!("the server's half does not run in a client build")
}

/// A server on loopback: answers each request with the next of `answers`, and returns the
/// request heads it saw (lowercased) when done.
fn server(answers: Vec<String>) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut heads = Vec::new();
        for answer in answers {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                let line = line.to_ascii_lowercase();
                if let Some(value) = line.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            head.push_str(&String::from_utf8(body).unwrap());
            (&stream).write_all(answer.as_bytes()).unwrap();
            heads.push(head);
        }
        heads
    });
    (url, handle)
}

fn json(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let connectivity = ManualConnectivity::new(false);
    let service = SyncService::builder()
        .store(MemoryStore::new())
        .connectivity(connectivity.clone())
        .retry_policy(RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    let run = async {
        // Offline: the local handler answers, the call is queued.
        let todo = add_todo("milk".to_owned()).await.unwrap();
        assert_eq!(todo.title, "milk");
        // A custom error type: offline, "queued" arrives through it.
        let removed = remove_todo("t1".to_owned()).await;
        assert!(
            matches!(&removed, Err(TodoError::Offline(message)) if message.contains("queued")),
            "{removed:?}"
        );
        let queued = service.queued().await.unwrap();
        assert_eq!(queued.len(), 2);
        assert_eq!(queued[0].id.to_string(), todo.id);

        // Online: the first replay meets a proxy's 503 (transient, kept), the second reaches
        // the server function.
        let answer = format!(r#"{{"id":"{}","title":"milk"}}"#, todo.id);
        let (url, heads) = server(vec![
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
            json("200 OK", &answer),
            json("200 OK", "null"),
        ]);
        server_fn::client::set_server_url(Box::leak(url.into_boxed_str()));
        connectivity.set_online(true);
        let before = SystemClock.now().as_millis();
        let first = service.replay().await.unwrap();
        assert_eq!(first.synced, 0, "{first:?}");
        assert_eq!(service.queued().await.unwrap().len(), 2, "a 503 keeps the calls queued");
        // The proxy's `Retry-After: 1` (not the 10 ms backoff) sets the next attempt.
        let next = first.next_attempt_at.expect("a next attempt").as_millis();
        assert!(next >= before + 900, "next attempt in {} ms", next - before);
        let mut synced = 0;
        for _ in 0..100 {
            synced += service.replay().await.unwrap().synced;
            if synced == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(synced, 2, "add_todo, then remove_todo");
        assert!(service.queued().await.unwrap().is_empty());
        assert!(service.dead_letters().await.unwrap().is_empty());

        let mut heads = heads.join().unwrap();
        assert_eq!(heads.len(), 3);
        let remove = heads.pop().unwrap();
        assert!(remove.starts_with("post /api/remove_todo"), "{remove}");
        assert!(remove.contains("idempotency-key: "), "{remove}");
        for head in &heads {
            assert!(head.starts_with("post /api/add_todo"), "{head}");
            assert!(head.contains(&format!("idempotency-key: {}\r\n", todo.id)), "{head}");
            assert!(head.contains("x-action-timestamp: "), "{head}");
            assert!(head.ends_with("title=milk"), "{head}");
        }
        let _ = count_todos;

    };
    service.scope(run).await;
}
