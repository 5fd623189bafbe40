//! What `#[offline_action]` and `#[derive(ClassifyError)]` generate compiles clean under
//! `#![deny(warnings, clippy::pedantic)]` (run `cargo clippy --all-targets -- -D warnings`):
//! users who lint strictly get no noise from the macros.

#![deny(warnings, clippy::pedantic)]

use core::fmt;
use core::time::Duration;
use serde::{Deserialize, Serialize};
use sync_runtime::{offline_action, ClassifyError, MemoryStore, SyncError, SyncService};

/// An application's error type, classified by the derive in every way it can be.
#[derive(Debug, ClassifyError)]
pub enum AppError {
    /// The server could not be reached.
    #[classify(transient)]
    Network(String),
    /// The server is busy, maybe saying how long to wait.
    #[classify(transient, retry_after = wait)]
    Busy {
        /// The server's `Retry-After`.
        wait: Option<Duration>,
    },
    /// Too many requests: an HTTP status and the wait.
    #[classify(transient, retry_after = 1)]
    RateLimited(u16, Duration),
    /// The server refused.
    Rejected(String),
    /// The product changed on the server.
    #[classify(permanent)]
    Conflict {
        /// The product's id.
        product: u64,
    },
    /// A file could not be read.
    #[classify(delegate)]
    Io(std::io::Error),
    /// A runtime outcome.
    #[classify(delegate)]
    Sync(SyncError),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Network(message) => write!(f, "network: {message}"),
            AppError::Busy { .. } => f.write_str("busy"),
            AppError::RateLimited(status, _) => write!(f, "rate limited ({status})"),
            AppError::Rejected(message) => write!(f, "rejected: {message}"),
            AppError::Conflict { product } => write!(f, "product {product} changed"),
            AppError::Io(error) => fmt::Display::fmt(error, f),
            AppError::Sync(error) => fmt::Display::fmt(error, f),
        }
    }
}

impl From<SyncError> for AppError {
    fn from(error: SyncError) -> Self {
        AppError::Sync(error)
    }
}

/// A struct that is transient as a whole.
#[derive(Debug, ClassifyError)]
#[classify(transient, retry_after = retry_in)]
pub struct Overloaded {
    /// How long to wait.
    pub retry_in: Duration,
}

/// A generic wrapper that asks the error it wraps.
#[derive(Debug, ClassifyError)]
#[classify(delegate)]
pub struct Context<E>(pub E);

/// An error that cannot happen.
#[derive(Debug, ClassifyError)]
pub enum Never {}

/// The application's result type.
pub type AppResult<T> = Result<T, AppError>;

/// A product in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its tags.
    pub tags: Vec<Tag>,
}

/// A tag on a product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag(pub String);

/// Actions in a module of their own, as an application would have them.
pub mod catalog {
    use super::{offline_action, AppError, AppResult, Product, Tag};

    /// Lists the products of a tenant.
    ///
    /// # Errors
    /// When the server fails and nothing is cached.
    #[offline_action(query)]
    pub async fn list_products(tenant_id: String, search: &str) -> AppResult<Vec<Product>> {
        Ok(vec![Product {
            id: tenant_id.len() as u64,
            name: search.to_owned(),
            tags: Vec::new(),
        }])
    }

    /// Adds a product.
    ///
    /// # Errors
    /// When the server refuses the product.
    #[offline_action(local = add_product_locally)]
    pub async fn add_product(tenant_id: String, mut product: Product) -> Result<Product, AppError> {
        product.name = format!("{tenant_id}/{}", product.name);
        Ok(product)
    }

    /// Answers `add_product` offline.
    ///
    /// # Errors
    /// Never; the signature is the action's.
    pub async fn add_product_locally(
        _tenant_id: String,
        product: Product,
    ) -> Result<Product, AppError> {
        core::future::ready(()).await;
        Ok(product)
    }

    /// Tags a product: borrowed arguments of every kind, and names sharing a prefix.
    ///
    /// # Errors
    /// When the server refuses.
    #[offline_action(name = "catalog/tag", version = 2, scope = format!("product:{product_id}"))]
    pub async fn tag_product(
        product_id: u64,
        product_tags: &[Tag],
        product_note: &str,
        product_base: &Product,
        _reason: String,
    ) -> Result<Product, AppError> {
        let mut product = product_base.clone();
        product.id = product_id;
        product.tags.extend_from_slice(product_tags);
        product.name.push_str(product_note);
        Ok(product)
    }

    /// Checks the server is up.
    ///
    /// # Errors
    /// When it is not.
    #[offline_action(query)]
    pub async fn ping() -> Result<(), AppError> {
        Ok(())
    }

    /// Clears the cache: zero arguments and a local handler.
    #[offline_action(local = clear_locally)]
    pub(crate) async fn clear() -> Result<u32, AppError> {
        Err(AppError::Rejected("not allowed".to_owned()))
    }

    /// Answers `clear` offline.
    async fn clear_locally() -> Result<u32, AppError> {
        Ok(core::future::ready(0).await)
    }

    /// A private action, used below so it is not dead code.
    #[offline_action(scope = id)]
    async fn rename(id: u64, name: &str) -> Result<(), AppError> {
        if name.is_empty() {
            return Err(AppError::Rejected(format!("product {id} needs a name")));
        }
        Ok(())
    }

    /// Searches, with borrows inside the arguments.
    ///
    /// # Errors
    /// When the server fails.
    #[offline_action(query)]
    pub async fn search(
        query: Option<&str>,
        tags: &[&str],
        pairs: Vec<(&str, u32)>,
    ) -> Result<usize, AppError> {
        Ok(query.map_or(0, str::len) + tags.len() + pairs.len())
    }

    /// Counts, failing the way `anyhow` code does.
    ///
    /// # Errors
    /// When the text is empty.
    #[offline_action]
    pub async fn count(text: String) -> anyhow::Result<usize> {
        anyhow::ensure!(!text.is_empty(), "nothing to count");
        Ok(text.len())
    }

    /// Calls the private and crate-visible actions.
    ///
    /// # Errors
    /// When one of them fails.
    pub async fn rename_and_clear(id: u64) -> Result<u32, AppError> {
        rename(id, "renamed").await?;
        clear().await
    }
}

#[test]
fn actions_run_online() {
    let service = SyncService::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    futures::executor::block_on(service.scope(async {
        let product = Product {
            id: 1,
            name: "tea".to_owned(),
            tags: Vec::new(),
        };
        let added = catalog::add_product("acme".to_owned(), product.clone())
            .await
            .unwrap();
        assert_eq!(added.name, "acme/tea");
        let tagged =
            catalog::tag_product(7, &[Tag("hot".to_owned())], "!", &product, String::new())
                .await
                .unwrap();
        assert_eq!((tagged.id, tagged.name.as_str()), (7, "tea!"));
        let listed = catalog::list_products("acme".to_owned(), "te")
            .await
            .unwrap();
        assert_eq!(listed[0].name, "te");
        catalog::ping().await.unwrap();
        assert!(catalog::rename_and_clear(1).await.is_err());
    }));
}

#[test]
fn derived_classifications() {
    let wait = Duration::from_secs(30);
    assert!(AppError::Network("down".to_owned()).is_transient());
    assert_eq!(
        AppError::Busy { wait: Some(wait) }.retry_after(),
        Some(wait)
    );
    assert_eq!(AppError::RateLimited(429, wait).retry_after(), Some(wait));
    assert!(!AppError::Rejected("no".to_owned()).is_transient());
    assert!(!AppError::Conflict { product: 1 }.is_transient());
    assert!(AppError::Io(std::io::ErrorKind::TimedOut.into()).is_transient());
    assert!(!AppError::Sync(SyncError::ReplayInProgress).is_transient());
    assert_eq!(Overloaded { retry_in: wait }.retry_after(), Some(wait));
    assert!(Context(AppError::Network(String::new())).is_transient());
    let never: Option<Never> = None;
    assert!(!never.is_some_and(|never| never.is_transient()));
}
