//! The todo list's server functions, compiled on both sides: on the server (native) their
//! bodies run against SQLite; in the page (wasm32) `#[server]` turns each into a request, and
//! `#[offline_action]` makes that request offline-first.
//!
//! What made them offline-first is one line each: `#[offline_action(...)]`, plus
//! `client = OfflineClient` in `#[server]` (the action id and timestamp headers) and, on the
//! server, `run_once` around the change (each action applied once, however often it is sent).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use sync_runtime::offline_action;
use sync_runtime::server_fn::OfflineClient;

/// One todo, as the server stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Todo {
    /// The id of the action that created it (minted on the client, so a todo made offline
    /// has its final id at once).
    pub id: String,
    /// What to do.
    pub title: String,
    /// Done or not.
    pub done: bool,
    /// When the user added it, in milliseconds since the Unix epoch: the list's order.
    pub created_at: u64,
}

/// Every todo, oldest first. Offline: the page's local copy (see `local`).
#[server(client = OfflineClient)]
#[offline_action(query, local = local::list_todos)]
pub async fn list_todos() -> Result<Vec<Todo>, ServerFnError> {
    db::read(db::list)
}

/// Adds a todo. Offline: shown at once, sent when the connection returns.
#[server(client = OfflineClient)]
#[offline_action(local = local::add_todo)]
pub async fn add_todo(title: String) -> Result<Todo, ServerFnError> {
    let action = leptos_axum::extract().await?;
    db::write(|tx| sync_runtime::server::run_once(tx, action, |tx| db::add(tx, action, &title)))
}

/// Flips a todo between done and not done. Not idempotent, so applied once per call: a
/// replay of a call whose response was lost gets the recorded answer and flips nothing.
#[server(client = OfflineClient)]
#[offline_action(local = local::toggle_todo)]
pub async fn toggle_todo(id: String) -> Result<Todo, ServerFnError> {
    let action = leptos_axum::extract().await?;
    db::write(|tx| sync_runtime::server::run_once(tx, action, |tx| db::toggle(tx, &id)))
}

/// Deletes a todo (deleting one that is gone already is fine).
#[offline_action(local = local::delete_todo)]
#[server(client = OfflineClient)]
pub async fn delete_todo(id: String) -> Result<(), ServerFnError> {
    let action = leptos_axum::extract().await?;
    db::write(|tx| sync_runtime::server::run_once(tx, action, |tx| db::delete(tx, &id)))
}

/// The offline answers, against the page's local copy of the list (the collection `todos`,
/// in IndexedDB). Each runs in the same store transaction that queues its call.
#[cfg(target_arch = "wasm32")]
pub mod local {
    use super::Todo;
    use leptos::prelude::ServerFnError;
    use sync_runtime::{ActionContext, Collection, SyncError};

    /// The collection the page keeps its copy of the list in.
    pub const TODOS: &str = "todos";

    fn context() -> Result<ActionContext, ServerFnError> {
        ActionContext::current().ok_or_else(|| ServerFnError::new("not inside an action"))
    }

    fn todos(cx: &ActionContext) -> Collection<Todo> {
        cx.collection(TODOS)
    }

    fn store_error(error: SyncError) -> ServerFnError {
        ServerFnError::from(error)
    }

    pub async fn list_todos() -> Result<Vec<Todo>, ServerFnError> {
        let mut list: Vec<Todo> = todos(&context()?)
            .list()
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|(_, todo)| todo)
            .collect();
        list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(list)
    }

    pub async fn add_todo(title: String) -> Result<Todo, ServerFnError> {
        let cx = context()?;
        let title = title.trim().to_owned();
        if title.is_empty() {
            // Refused here as the server would: nothing is queued.
            return Err(ServerFnError::new("a todo needs a title"));
        }
        let todo = Todo {
            id: cx.id().to_string(),
            title,
            done: false,
            created_at: cx.timestamp().as_millis(),
        };
        todos(&cx)
            .put(todo.id.clone(), &todo)
            .await
            .map_err(store_error)?;
        Ok(todo)
    }

    pub async fn toggle_todo(id: String) -> Result<Todo, ServerFnError> {
        let cx = context()?;
        let Some(mut todo) = todos(&cx).get(&id).await.map_err(store_error)? else {
            return Err(ServerFnError::new(format!("no todo {id}")));
        };
        todo.done = !todo.done;
        todos(&cx).put(id, &todo).await.map_err(store_error)?;
        Ok(todo)
    }

    pub async fn delete_todo(id: String) -> Result<(), ServerFnError> {
        let cx = context()?;
        todos(&cx).delete(id).await.map_err(store_error)
    }
}

/// The server's database: SQLite, with the record of applied actions beside the todos.
#[cfg(not(target_arch = "wasm32"))]
pub mod db {
    use super::Todo;
    use leptos::prelude::{use_context, ServerFnError};
    use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use sync_runtime::server::ActionHeaders;

    /// The database, shared by the server's handlers (provided to server functions as
    /// Leptos context).
    #[derive(Clone)]
    pub struct Db(Arc<Mutex<Connection>>);

    impl Db {
        /// Opens (or creates) the database at `path`.
        pub fn open(path: &Path) -> Result<Self, Box<dyn std::error::Error>> {
            let connection = Connection::open(path)?;
            connection.execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE IF NOT EXISTS todos (
                     id TEXT PRIMARY KEY NOT NULL,
                     title TEXT NOT NULL,
                     done INTEGER NOT NULL,
                     created_at INTEGER NOT NULL
                 );",
            )?;
            sync_runtime::server::migrate(&connection)?;
            Ok(Self(Arc::new(Mutex::new(connection))))
        }

        /// The todos and how many actions were applied, for the end-to-end test's checks.
        pub fn snapshot(&self) -> Result<(Vec<Todo>, u64), rusqlite::Error> {
            let connection = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let todos = list(&connection).map_err(|e| match e {
                Error::Db(e) => e,
                Error::Bad(message) => rusqlite::Error::InvalidParameterName(message),
            })?;
            let applied: i64 =
                connection
                    .query_row("SELECT count(*) FROM applied_actions", [], |row| row.get(0))?;
            Ok((todos, u64::try_from(applied).unwrap_or(0)))
        }
    }

    /// Why a change failed: a database error, or a request the server refuses.
    #[derive(Debug)]
    pub enum Error {
        /// SQLite failed.
        Db(rusqlite::Error),
        /// The request is wrong; the message says why.
        Bad(String),
    }

    impl From<rusqlite::Error> for Error {
        fn from(error: rusqlite::Error) -> Self {
            Error::Db(error)
        }
    }

    impl From<sync_runtime::SyncError> for Error {
        fn from(error: sync_runtime::SyncError) -> Self {
            Error::Bad(error.to_string())
        }
    }

    impl From<Error> for ServerFnError {
        fn from(error: Error) -> Self {
            match error {
                Error::Db(e) => ServerFnError::new(format!("database: {e}")),
                Error::Bad(message) => ServerFnError::new(message),
            }
        }
    }

    fn db() -> Result<Db, ServerFnError> {
        use_context::<Db>().ok_or_else(|| ServerFnError::new("the server has no database"))
    }

    /// Runs `read` on the database.
    pub fn read<T>(read: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, ServerFnError> {
        let db = db()?;
        let connection = db.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(read(&connection)?)
    }

    /// Runs `change` in an immediate transaction and commits it if it succeeds.
    pub fn write<T>(
        change: impl FnOnce(&Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, ServerFnError> {
        let db = db()?;
        let mut connection = db.0.lock().unwrap_or_else(|p| p.into_inner());
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Error::from)?;
        let answer = change(&tx)?;
        tx.commit().map_err(Error::from)?;
        Ok(answer)
    }

    fn todo(row: &rusqlite::Row<'_>) -> rusqlite::Result<Todo> {
        Ok(Todo {
            id: row.get(0)?,
            title: row.get(1)?,
            done: row.get(2)?,
            created_at: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
        })
    }

    pub fn list(connection: &Connection) -> Result<Vec<Todo>, Error> {
        let mut query = connection
            .prepare("SELECT id, title, done, created_at FROM todos ORDER BY created_at, id")?;
        let todos = query.query_map([], todo)?.collect::<Result<_, _>>()?;
        Ok(todos)
    }

    fn get(tx: &Transaction<'_>, id: &str) -> Result<Option<Todo>, Error> {
        Ok(tx
            .query_row(
                "SELECT id, title, done, created_at FROM todos WHERE id = ?1",
                [id],
                todo,
            )
            .optional()?)
    }

    pub fn add(
        tx: &Transaction<'_>,
        action: Option<ActionHeaders>,
        title: &str,
    ) -> Result<Todo, Error> {
        let title = title.trim();
        if title.is_empty() {
            return Err(Error::Bad("a todo needs a title".into()));
        }
        // The client's action id is the todo's id; a client that sends none gets a new one.
        let (id, created_at) = match action {
            Some(action) => (
                action.id.to_string(),
                action.timestamp.map_or_else(now, |t| t.as_millis()),
            ),
            None => (uuid::Uuid::now_v7().to_string(), now()),
        };
        let todo = Todo {
            id,
            title: title.to_owned(),
            done: false,
            created_at,
        };
        tx.execute(
            "INSERT INTO todos (id, title, done, created_at) VALUES (?1, ?2, 0, ?3)",
            rusqlite::params![
                todo.id,
                todo.title,
                i64::try_from(todo.created_at).unwrap_or(i64::MAX)
            ],
        )?;
        Ok(todo)
    }

    pub fn toggle(tx: &Transaction<'_>, id: &str) -> Result<Todo, Error> {
        let Some(mut todo) = get(tx, id)? else {
            return Err(Error::Bad(format!("no todo {id}")));
        };
        todo.done = !todo.done;
        tx.execute(
            "UPDATE todos SET done = ?2 WHERE id = ?1",
            rusqlite::params![id, todo.done],
        )?;
        Ok(todo)
    }

    pub fn delete(tx: &Transaction<'_>, id: &str) -> Result<(), Error> {
        tx.execute("DELETE FROM todos WHERE id = ?1", [id])?;
        Ok(())
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}
