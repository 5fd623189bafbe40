//! The todo app's server: the server functions (Leptos on axum) over a SQLite file, and the
//! page (`index.html`, the wasm app, the service worker) from the directory
//! `examples/leptos-todo/build.sh` fills. One origin, so the page needs no CORS and its
//! service worker's scope covers it.
//!
//! Run: `examples/leptos-todo/build.sh && cargo run -p leptos-todo`, then open the printed
//! address. Options: `--addr 127.0.0.1:8080` (port 0 picks a free one), `--dist DIR` (default
//! `target/leptos-todo`), `--db FILE` (default `target/leptos-todo.sqlite3`).

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    server::main().await
}

#[cfg(not(target_arch = "wasm32"))]
mod server {
    use axum::extract::{Request, State};
    use axum::response::{IntoResponse, Json, Response};
    use axum::routing::{get, post};
    use axum::Router;
    use leptos::prelude::provide_context;
    use leptos_todo::todo::db::Db;
    use std::path::PathBuf;
    use std::process::ExitCode;
    use tower_http::services::ServeDir;

    struct Options {
        addr: String,
        dist: PathBuf,
        db: PathBuf,
    }

    pub(crate) async fn main() -> ExitCode {
        let options = match parse_options(std::env::args().skip(1)) {
            Ok(options) => options,
            Err(message) => {
                eprintln!("{message}\nusage: leptos-todo-server [--addr HOST:PORT] [--dist DIR] [--db FILE]");
                return ExitCode::from(2);
            }
        };
        match serve(options).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("the todo server failed: {error}");
                ExitCode::FAILURE
            }
        }
    }

    fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
            PathBuf::from,
        );
        let mut options = Options {
            addr: "127.0.0.1:8080".to_owned(),
            dist: target.join("leptos-todo"),
            db: target.join("leptos-todo.sqlite3"),
        };
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--addr" => options.addr = value,
                "--dist" => options.dist = value.into(),
                "--db" => options.db = value.into(),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        Ok(options)
    }

    async fn serve(options: Options) -> Result<(), Box<dyn std::error::Error>> {
        if !options.dist.join("index.html").exists() {
            return Err(format!(
                "{} has no index.html: run examples/leptos-todo/build.sh first",
                options.dist.display()
            )
            .into());
        }
        let db = Db::open(&options.db)?;
        let app = Router::new()
            .route("/api/{*fn_name}", post(server_fn))
            .route("/test/state", get(state))
            .fallback_service(ServeDir::new(&options.dist))
            .with_state(db);
        let listener = tokio::net::TcpListener::bind(&options.addr).await?;
        // The end-to-end test reads this line for the address.
        println!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    }

    /// Every server function, with the database in its context.
    async fn server_fn(State(db): State<Db>, request: Request) -> impl IntoResponse {
        leptos_axum::handle_server_fns_with_context(move || provide_context(db.clone()), request)
            .await
    }

    /// The todos and the number of applied actions: what the end-to-end test checks.
    async fn state(State(db): State<Db>) -> Response {
        match db.snapshot() {
            Ok((todos, applied)) => {
                Json(serde_json::json!({ "todos": todos, "applied": applied })).into_response()
            }
            Err(error) => (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                error.to_string(),
            )
                .into_response(),
        }
    }
}
