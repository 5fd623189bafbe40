//! `ClassifyError for reqwest::Error` (feature `reqwest`) against real sockets on 127.0.0.1:
//! what the network or the server does to a request decides whether replay tries it again.

use std::net::SocketAddr;
use std::time::Duration;
use sync_runtime::ClassifyError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// A one-shot HTTP "server": reads the request head, writes `response` as it is (which may
/// be cut short on purpose), and closes the connection. `None`: never answers.
async fn answer_once(response: Option<String>) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buffer = [0; 1024];
        while !head.ends_with(b"\r\n\r\n") {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buffer[..n]),
            }
        }
        match response {
            Some(response) => {
                let _ = socket.write_all(response.as_bytes()).await;
            }
            None => tokio::time::sleep(Duration::from_secs(10)).await,
        }
    });
    address
}

async fn get(address: SocketAddr) -> Result<reqwest::Response, reqwest::Error> {
    client().get(format!("http://{address}/")).send().await
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let address = {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        listener.local_addr().unwrap()
    }; // closed again: nothing listens there
    let error = get(address).await.unwrap_err();
    assert!(error.is_connect(), "{error}");
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let error = get(answer_once(None).await).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_connection_closed_before_the_response_is_transient() {
    let error = get(answer_once(Some(String::new())).await)
        .await
        .unwrap_err();
    assert!(error.is_request(), "{error}");
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_body_cut_off_is_transient_but_a_body_that_is_not_the_json_expected_is_not() {
    let cut = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"name\":";
    let response = get(answer_once(Some(cut.into())).await).await.unwrap();
    let error = response.json::<serde_json::Value>().await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");

    let garbage = "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nnot json";
    let response = get(answer_once(Some(garbage.into())).await).await.unwrap();
    let error = response.json::<serde_json::Value>().await.unwrap_err();
    assert!(error.is_decode(), "{error}");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn a_status_error_is_transient_for_5xx_408_429_only() {
    let cases = [
        ("503 Service Unavailable", true),
        ("500 Internal Server Error", true),
        ("429 Too Many Requests", true),
        ("408 Request Timeout", true),
        ("501 Not Implemented", false),
        ("404 Not Found", false),
        ("400 Bad Request", false),
        ("409 Conflict", false),
    ];
    for (status, transient) in cases {
        let response = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        let address = answer_once(Some(response)).await;
        let error = get(address).await.unwrap().error_for_status().unwrap_err();
        assert_eq!(error.is_transient(), transient, "{status}");
    }
}
