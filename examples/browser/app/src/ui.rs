//! The page: finds its elements in `index.html`, shows the sync status as it changes, lists
//! the local products, and sends the add form through the `add_product` action.
//!
//! The list always shows the local collection (what this device knows, including products
//! still waiting to be sent); the server is asked for the latest list only while the page
//! believes it is online and nothing waits to be sent: at start-up, and each time the queue
//! has drained.

use crate::actions::{self, add_product, get_products, AppError, PRODUCTS};
use crate::model::{money, Product};
use futures_util::StreamExt;
use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;
use sync_runtime::{SyncEvent, SyncService, SyncStatus};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::spawn_local;
use web_sys::{Document, Element, Event, HtmlElement, HtmlFormElement, HtmlInputElement};

/// The one tenant this page shows.
const TENANT: &str = "demo-shop";

/// The page's elements and the service behind it.
struct Page {
    document: Document,
    body: HtmlElement,
    connection: Element,
    pending: Element,
    syncing: Element,
    message: Element,
    list: Element,
    form: HtmlFormElement,
    name: HtmlInputElement,
    price: HtmlInputElement,
    service: SyncService,
    /// Bumped by every list render; a render that finds it moved on was overtaken by a newer
    /// one while it waited for IndexedDB, and drops its stale result.
    renders: Cell<u64>,
    refreshing: Cell<bool>,
}

/// Starts the page: status first (so the offline indicator and the pending count are right
/// before anything else happens), then the local list, then the server's.
pub(crate) async fn start() -> Result<(), JsValue> {
    let page = Rc::new(Page::find(SyncService::current())?);
    // The status starts with a pending count of 0 until the store has been read; read it
    // now so a reload shows what is still waiting.
    if let Err(e) = page.service.refresh_status().await {
        page.say(&format!("The local database cannot be read: {e}"));
    }
    page.show_status(&page.service.status());
    spawn_local(watch_status(Rc::clone(&page)));
    spawn_local(watch_events(Rc::clone(&page)));
    page.listen_for_submit()?;
    page.render_list().await;
    page.body.set_attribute("data-ready", "true")?;
    // With changes still waiting, the refresh comes when they have been sent (watch_status).
    page.refresh().await;
    Ok(())
}

/// Shows every status change. When the queue has just drained while online, the server has
/// everything this page did: fetch the list again for what others did meanwhile.
async fn watch_status(page: Rc<Page>) {
    let mut statuses = page.service.subscribe();
    let mut settled_before = true;
    while let Some(status) = statuses.next().await {
        page.show_status(&status);
        let settled = status.online && status.pending == 0 && !status.syncing;
        if settled && !settled_before {
            let page = Rc::clone(&page);
            spawn_local(async move { page.refresh().await });
        }
        settled_before = settled;
    }
}

/// Lists again whenever a queued call is queued, synced or given up on: its product then
/// changes from "waiting" to the server's copy, or the other way round.
async fn watch_events(page: Rc<Page>) {
    let mut events = page.service.events();
    while let Some(event) = events.next().await {
        match &event {
            SyncEvent::DeadLettered { name, message, .. } => {
                page.say(&format!("The server refused `{name}`: {message}"));
            }
            SyncEvent::RolledBack { records, .. } => {
                // Follows the refusal's own message, which says why.
                let products = records.iter().filter(|r| r.collection == PRODUCTS).count();
                let why = page.message.text_content().unwrap_or_default();
                page.say(&format!(
                    "{why} ({products} product(s) put back as they were)"
                ));
            }
            _ => {}
        }
        page.render_list().await;
    }
}

impl Page {
    fn find(service: SyncService) -> Result<Self, JsValue> {
        let document = web_sys::window()
            .and_then(|window| window.document())
            .ok_or("no document")?;
        let element = |id: &str| {
            document
                .get_element_by_id(id)
                .ok_or_else(|| JsValue::from_str(&format!("index.html has no #{id}")))
        };
        Ok(Self {
            body: document.body().ok_or("no body")?,
            connection: element("connection")?,
            pending: element("pending")?,
            syncing: element("syncing")?,
            message: element("message")?,
            list: element("products")?,
            form: element("add-form")?.dyn_into()?,
            name: element("name")?.dyn_into()?,
            price: element("price")?.dyn_into()?,
            document,
            service,
            renders: Cell::new(0),
            refreshing: Cell::new(false),
        })
    }

    fn show_status(&self, status: &SyncStatus) {
        let (state, label) = if status.online {
            ("online", "Online")
        } else {
            ("offline", "Offline")
        };
        let _ = self.connection.set_attribute("data-state", state);
        self.connection.set_text_content(Some(label));

        let waiting = match status.pending {
            0 => "All changes synced".to_owned(),
            1 => "1 change waiting".to_owned(),
            n => format!("{n} changes waiting"),
        };
        let _ = self
            .pending
            .set_attribute("data-count", &status.pending.to_string());
        self.pending.set_text_content(Some(&waiting));

        let _ = if status.syncing {
            self.syncing.remove_attribute("hidden")
        } else {
            self.syncing.set_attribute("hidden", "")
        };
    }

    fn say(&self, text: &str) {
        self.message.set_text_content(Some(text));
    }

    fn listen_for_submit(self: &Rc<Self>) -> Result<(), JsValue> {
        let page = Rc::clone(self);
        let on_submit = Closure::<dyn FnMut(Event)>::new(move |event: Event| {
            event.prevent_default();
            let page = Rc::clone(&page);
            spawn_local(async move { page.submit().await });
        });
        self.form
            .add_event_listener_with_callback("submit", on_submit.as_ref().unchecked_ref())?;
        // The form lives as long as the page, so its listener does too.
        on_submit.forget();
        Ok(())
    }

    async fn submit(&self) {
        let name = self.name.value();
        let Some(price_cents) = parse_price(&self.price.value()) else {
            self.say("Enter a price such as 2.50");
            return;
        };
        match add_product(TENANT.to_owned(), name, price_cents).await {
            Ok(product) => {
                self.form.reset();
                let _ = self.name.focus();
                let waiting = self.render_list().await;
                if waiting.contains(&product.id) {
                    self.say(&format!(
                        "Saved “{}” on this device; it will be sent when the connection returns.",
                        product.name
                    ));
                } else {
                    self.say(&format!("Added “{}”.", product.name));
                }
            }
            Err(error) => self.say(&error.to_string()),
        }
    }

    /// Asks the server for the latest list, then lists. Only when online with nothing
    /// waiting: otherwise the runtime answers the query locally (the server's list would not
    /// show the waiting changes yet) and queues a refresh, which would count as one more
    /// change waiting.
    async fn refresh(&self) {
        if self.refreshing.replace(true) {
            return;
        }
        let status = self.service.status();
        if status.online && status.pending == 0 {
            match get_products(TENANT.to_owned()).await {
                Ok(_) => {}
                // Unreachable after all: the local list answered, and a refresh is queued.
                Err(AppError::Sync(e)) => self.say(&format!("The local database failed: {e}")),
                Err(e) => self.say(&format!("Could not refresh the list: {e}")),
            }
        }
        self.refreshing.set(false);
        self.render_list().await;
    }

    /// Lists the local products, marking those still waiting to be sent; returns their ids.
    async fn render_list(&self) -> HashSet<String> {
        let ticket = self.renders.get() + 1;
        self.renders.set(ticket);
        let products = self.service.collection::<Product>(PRODUCTS);
        let listed = actions::local_products(&products, TENANT).await;
        let waiting = actions::products_waiting(&self.service)
            .await
            .unwrap_or_default();
        if self.renders.get() != ticket {
            return waiting;
        }
        match listed {
            Ok(listed) => {
                if let Err(e) = self.show_list(&listed, &waiting) {
                    web_sys::console::error_2(&"cannot show the list".into(), &e);
                }
            }
            Err(e) => self.say(&format!("The local database cannot be read: {e}")),
        }
        waiting
    }

    fn show_list(&self, products: &[Product], waiting: &HashSet<String>) -> Result<(), JsValue> {
        self.list.set_text_content(None);
        if products.is_empty() {
            let empty = self.document.create_element("li")?;
            empty.set_class_name("empty");
            empty.set_text_content(Some("No products yet. Add one above."));
            self.list.append_child(&empty)?;
        }
        for product in products {
            let item = self.document.create_element("li")?;
            item.set_attribute("data-id", &product.id)?;
            let name = self.document.create_element("span")?;
            name.set_class_name("name");
            name.set_text_content(Some(&product.name));
            item.append_child(&name)?;
            if waiting.contains(&product.id) {
                item.set_class_name("waiting");
                let tag = self.document.create_element("span")?;
                tag.set_class_name("tag");
                tag.set_text_content(Some("waiting to sync"));
                item.append_child(&tag)?;
            }
            let price = self.document.create_element("span")?;
            price.set_class_name("price");
            price.set_text_content(Some(&money(product.price_cents)));
            item.append_child(&price)?;
            self.list.append_child(&item)?;
        }
        Ok(())
    }
}

/// `"2.5"` or `"2.50"` → 250 cents; `None` for anything that is not a price.
fn parse_price(text: &str) -> Option<i64> {
    let text = text.trim();
    let (units, cents) = text.split_once('.').unwrap_or((text, ""));
    if (units.is_empty() && cents.is_empty()) || cents.len() > 2 {
        return None;
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(units) || !digits(cents) {
        return None;
    }
    let units: i64 = if units.is_empty() {
        0
    } else {
        units.parse().ok()?
    };
    let cents: i64 = format!("{cents:0<2}").parse().ok()?;
    units.checked_mul(100)?.checked_add(cents)
}
