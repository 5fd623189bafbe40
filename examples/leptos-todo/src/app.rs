//! The page: the list, a form to add, a toggle and a delete button per todo, and the sync
//! status ("offline", "N changes waiting"). It calls the server functions exactly as it would
//! without `#[offline_action]`.

use crate::todo::{add_todo, delete_todo, list_todos, local::TODOS, toggle_todo, Todo};
use leptos::prelude::*;
use sync_runtime::SyncService;

#[component]
pub fn App() -> impl IntoView {
    let status = sync_runtime::leptos::sync_status();
    // Bumped after every change and whenever a sync finishes: the list reloads.
    let (version, set_version) = signal(0u64);
    let reload = move || set_version.update(|v| *v += 1);
    Effect::new(move |previous: Option<(u64, bool)>| {
        let now = (status.get().pending, status.get().syncing);
        if previous.is_some_and(|before| before != now) && now == (0, false) {
            reload();
        }
        now
    });

    let todos = Resource::new(move || version.get(), |_| list_todos());
    Effect::new(move |_| {
        if let Some(Ok(list)) = todos.get() {
            leptos::task::spawn_local(remember(list));
        }
    });
    let (message, set_message) = signal(String::new());
    let report = move |result: Result<(), ServerFnError>| {
        set_message.set(result.err().map(|e| e.to_string()).unwrap_or_default());
        reload();
    };

    let add = Action::new(|title: &String| add_todo(title.clone()));
    let toggle = Action::new(|id: &String| toggle_todo(id.clone()));
    let delete = Action::new(|id: &String| delete_todo(id.clone()));
    Effect::new(move |_| {
        if let Some(result) = add.value().get() {
            report(result.map(drop));
        }
    });
    Effect::new(move |_| {
        if let Some(result) = toggle.value().get() {
            report(result.map(drop));
        }
    });
    Effect::new(move |_| {
        if let Some(result) = delete.value().get() {
            report(result);
        }
    });

    let title = NodeRef::<leptos::html::Input>::new();
    let on_submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let Some(input) = title.get() else { return };
        add.dispatch(input.value());
        input.set_value("");
    };

    view! {
        <header>
            <h1>"Todos"</h1>
            <div class="status" aria-live="polite">
                <span id="connection" class="badge" data-state=move || if status.get().online { "online" } else { "offline" }>
                    {move || if status.get().online { "Online" } else { "Offline" }}
                </span>
                <span id="pending" class="badge" data-count=move || status.get().pending.to_string()>
                    {move || match status.get().pending {
                        0 => "All changes synced".to_owned(),
                        1 => "1 change waiting".to_owned(),
                        n => format!("{n} changes waiting"),
                    }}
                </span>
                <span id="dead" class="badge" hidden=move || status.get().dead == 0>
                    {move || format!("{} rejected", status.get().dead)}
                </span>
            </div>
        </header>
        <main>
            <form id="add-form" autocomplete="off" on:submit=on_submit>
                <input id="title" node_ref=title required placeholder="What needs doing?"/>
                <button type="submit">"Add"</button>
            </form>
            <p id="message" role="status">{message}</p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                <ul id="todos">
                    {move || Suspend::new(async move {
                        match todos.await {
                            Ok(list) => list
                                .into_iter()
                                .map(|todo| view! { <TodoItem todo toggle delete/> })
                                .collect_view()
                                .into_any(),
                            Err(error) => view! { <li class="error">{error.to_string()}</li> }.into_any(),
                        }
                    })}
                </ul>
            </Transition>
        </main>
    }
}

#[component]
fn TodoItem(
    todo: Todo,
    toggle: Action<String, Result<Todo, ServerFnError>>,
    delete: Action<String, Result<(), ServerFnError>>,
) -> impl IntoView {
    let (id_toggle, id_delete) = (todo.id.clone(), todo.id.clone());
    view! {
        <li data-id=todo.id.clone() data-done=todo.done.to_string() class:done=todo.done>
            <label>
                <input type="checkbox" class="toggle" prop:checked=todo.done
                    on:change=move |_| { toggle.dispatch(id_toggle.clone()); }/>
                <span class="title">{todo.title}</span>
            </label>
            <button class="delete" on:click=move |_| { delete.dispatch(id_delete.clone()); }>"Delete"</button>
        </li>
    }
}

/// Keeps the page's local copy of the list (read by the offline answers) equal to what the
/// server said, when nothing waits to be sent: then the server's list is the truth.
async fn remember(list: Vec<Todo>) {
    let service = SyncService::current();
    if service.status().pending > 0 {
        return;
    }
    let todos = service.collection::<Todo>(TODOS);
    let Ok(stored) = todos.list().await else {
        return;
    };
    for (id, _) in stored {
        if !list.iter().any(|todo| todo.id == id) {
            let _ = todos.delete(id).await;
        }
    }
    for todo in &list {
        let _ = todos.put(todo.id.clone(), todo).await;
    }
}
