//! Snapshot tests: parse → expand → pretty-print, and the errors of bad inputs with where
//! they point.

use std::fmt::Write as _;

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// Splits `source`, an item starting with `#[offline_action(...)]`, into the attribute's
/// arguments and the item, keeping spans that point into `source`.
fn split(source: &str) -> (TokenStream, TokenStream) {
    let mut tokens = source
        .parse::<TokenStream>()
        .expect("test input must tokenize")
        .into_iter();
    let (Some(TokenTree::Punct(pound)), Some(TokenTree::Group(attr))) =
        (tokens.next(), tokens.next())
    else {
        panic!("test input must start with `#[offline_action...]`");
    };
    assert_eq!(pound.as_char(), '#');
    assert_eq!(attr.delimiter(), Delimiter::Bracket);
    let mut attr = attr.stream().into_iter();
    assert!(matches!(attr.next(), Some(TokenTree::Ident(name)) if name == "offline_action"));
    let args = match attr.next() {
        Some(TokenTree::Group(args)) => args.stream(),
        None => TokenStream::new(),
        Some(other) => panic!("unexpected `{other}` in the attribute"),
    };
    (args, tokens.collect())
}

/// The expansion of `source`, pretty-printed.
fn expand(source: &str) -> String {
    let (args, item) = split(source);
    let expanded = crate::expand::offline_action(args, item);
    let file = syn::parse_file(&expanded.to_string()).expect("the expansion must parse");
    prettyplease::unparse(&file)
}

/// The errors for `source`, each shown under the line it points at.
fn errors(source: &str) -> String {
    let (args, item) = split(source);
    let Err(error) = crate::expand::expand(args, item) else {
        panic!("expected errors for:\n{source}");
    };
    show_errors(source, error)
}

/// The `#[derive(ClassifyError)]` expansion of `source`, the item as the derive receives it,
/// pretty-printed.
fn derive(source: &str) -> String {
    let item = source.parse().expect("test input must tokenize");
    let expanded = crate::classify::derive(item);
    let file = syn::parse_file(&expanded.to_string()).expect("the expansion must parse");
    prettyplease::unparse(&file)
}

/// The errors `#[derive(ClassifyError)]` reports for `source`.
fn derive_errors(source: &str) -> String {
    let item = source.parse().expect("test input must tokenize");
    let Err(error) = crate::classify::expand(item) else {
        panic!("expected errors for:\n{source}");
    };
    show_errors(source, error)
}

/// Each error in `error`, shown under the line of `source` it points at.
fn show_errors(source: &str, error: syn::Error) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    for error in error {
        let span = error.span();
        let (start, end) = (span.start(), span.end());
        let line = lines[start.line - 1];
        let width = if end.line == start.line {
            end.column.saturating_sub(start.column).max(1)
        } else {
            line.len() - start.column
        };
        writeln!(out, "error: {error}").unwrap();
        writeln!(out, "  --> {}:{}", start.line, start.column + 1).unwrap();
        writeln!(out, "   | {line}").unwrap();
        writeln!(
            out,
            "   | {}{}\n",
            " ".repeat(start.column),
            "^".repeat(width)
        )
        .unwrap();
    }
    out
}

/// Snapshots the expansion of a source file-like string.
macro_rules! expansion {
    ($name:ident, $source:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(expand($source));
        }
    };
}

/// Snapshots the errors of a bad input.
macro_rules! rejects {
    ($name:ident, $source:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(errors($source));
        }
    };
}

/// Snapshots what `#[derive(ClassifyError)]` generates for a type.
macro_rules! derives {
    ($name:ident, $source:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(derive($source));
        }
    };
}

/// Snapshots the errors of a type `#[derive(ClassifyError)]` rejects.
macro_rules! derive_rejects {
    ($name:ident, $source:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(derive_errors($source));
        }
    };
}

expansion!(
    mutation,
    r#"
#[offline_action]
/// Adds a product.
pub async fn add_product(tenant_id: String, product: NewProduct) -> Result<Product, AppError> {
    api::post(&tenant_id, &product).await
}
"#
);

expansion!(
    query,
    r#"
#[offline_action(query)]
pub async fn get_products(business_type: String, tenant_id: String) -> Result<Vec<Product>, AppError> {
    api::get(&format!("/products?type={business_type}&tenant={tenant_id}")).await
}
"#
);

expansion!(
    local_handler,
    r#"
#[offline_action(local = add_product_locally)]
/// Adds.
pub async fn add_product(tenant_id: String, product: NewProduct) -> Result<Product, AppError> {
    api::post("/products", &product).await
}
"#
);

expansion!(
    borrowed_arguments,
    r#"
#[offline_action(local = store::rename_locally)]
pub(crate) async fn rename(id: &str, mut tags: &[Tag], product: &Product, note: &'static str, file: &std::path::Path) -> Result<(), AppError> {
    tags = &tags[1..];
    api::rename(id, tags, product, note, file).await
}
"#
);

expansion!(
    borrows_inside_arguments,
    r#"
#[offline_action]
pub async fn search(query: Option<&str>, tags: &[&str], mut pairs: Vec<(&str, u32)>, seen: &Vec<&Tag>) -> Result<u32, AppError> {
    api::search(query, tags, pairs, seen).await
}
"#
);

expansion!(
    associated_fns,
    r#"
#[offline_action]
impl Api {
    /// Adds.
    #[offline_action(local = Self::add_locally)]
    pub async fn add(a: u32, mut b: &str) -> Result<Self, AppError> {
        Self::post(a, b).await
    }

    async fn add_locally(a: u32, b: String) -> Result<Api, AppError> {
        todo!()
    }
}
"#
);

rejects!(
    impl_block_errors,
    r#"
#[offline_action(query)]
impl<T> Named for Api<T> {
    #[offline_action(nmae = "x")]
    pub async fn add(&self) -> Result<u32, AppError> {
        todo!()
    }
}
"#
);

rejects!(
    impl_block_without_actions,
    r#"
#[offline_action]
impl Api {
    pub async fn add() -> Result<u32, AppError> {
        todo!()
    }
}
"#
);

expansion!(
    zero_arguments,
    r#"
#[offline_action(query)]
async fn ping() -> Result<(), AppError> {
    api::ping().await
}
"#
);

expansion!(
    zero_arguments_with_local_handler,
    r#"
#[offline_action(local = ping_locally)]
async fn ping() -> Result<(), AppError> {
    api::ping().await
}
"#
);

expansion!(
    overrides,
    r#"
#[offline_action(name = "catalog.products/add-v2", version = 3, params = NewProductArgs, crate = ::my_sdk::sync)]
pub async fn r#add_product(mut product: NewProduct) -> Result<Product, AppError> {
    product.name = product.name.trim().to_owned();
    api::post("/products", &product).await
}
"#
);

expansion!(
    result_alias,
    r#"
#[offline_action]
pub async fn archive(id: u64) -> AppResult<Archived> {
    let archived = api::archive(id).await?;
    Ok(archived)
}
"#
);

expansion!(
    attributes,
    r#"
#[offline_action]
/// Sets the price.
///
/// # Errors
/// When the server refuses.
#[cfg(feature = "prices")]
#[allow(clippy::cast_possible_truncation)]
#[expect(clippy::float_cmp)]
#[must_use = "the price may not be set"]
pub async fn set_price(
    /// The product to change.
    id: u64,
    /// The new price, in cents.
    #[serde(default)]
    cents: u64,
    _reason: String,
) -> Result<(), AppError> {
    #![allow(unused_variables)]
    api::set_price(id, cents as u32).await
}
"#
);

#[test]
fn errors_keep_the_function_as_written() {
    insta::assert_snapshot!(expand(
        r#"
#[offline_action(nmae = "x")]
pub fn add(a: u8) -> Result<u8, AppError> {
    Ok(a)
}
"#
    ));
}

rejects!(
    not_async,
    r#"
#[offline_action]
pub fn add_product(product: NewProduct) -> Result<Product, AppError> { todo!() }
"#
);

rejects!(
    every_header_error,
    r#"
#[offline_action]
#[sync_runtime::offline_action]
pub const unsafe extern "C" fn add<'a, T: Clone>(x: T, ...) -> Result<T, AppError> where T: Copy { todo!() }
"#
);

rejects!(
    lifetime_parameters,
    r#"
#[offline_action]
pub async fn add<'a>(name: &'a str) -> Result<(), AppError> { todo!() }
"#
);

rejects!(
    where_clause,
    r#"
#[offline_action]
pub async fn add(name: String) -> Result<(), AppError> where String: Clone { todo!() }
"#
);

rejects!(
    receivers,
    r#"
#[offline_action]
pub async fn add(&self, name: String) -> Result<(), AppError> { todo!() }
"#
);

rejects!(
    patterns,
    r#"
#[offline_action]
pub async fn add(_: u8, (a, b): (u8, u8), ref c: u8, d @ 1..=3: u8, #[allow(unused)] e: u8) -> Result<(), AppError> { todo!() }
"#
);

rejects!(
    argument_types,
    r#"
#[offline_action]
pub async fn add(a: &mut Vec<u8>, b: impl Into<String>, c: Cow<'a, str>, d: Vec<&str>, e: &'a str, f: Cow<'_, str>, g: &'static str, h: Box<dyn Fn(&str)>) -> Result<(), AppError> { todo!() }
"#
);

rejects!(
    return_types,
    r#"
#[offline_action]
pub async fn add() -> Result<impl Serialize, AppError> { todo!() }
"#
);

rejects!(
    surely_not_results,
    r#"
#[offline_action]
pub async fn a() -> Option<Vec<u8>> { todo!() }
"#
);

rejects!(
    unit_return_type,
    r#"
#[offline_action]
pub async fn b() -> () { todo!() }
"#
);

rejects!(
    borrowed_return_type,
    r#"
#[offline_action]
pub async fn add(name: &str) -> Result<&str, AppError> { todo!() }
"#
);

rejects!(
    missing_return_type,
    r#"
#[offline_action]
pub async fn add(name: String) { todo!() }
"#
);

expansion!(
    scoped_mutation,
    r#"
#[offline_action(scope = format!("product:{product_id}"))]
pub async fn set_stock(product_id: &str, count: u32) -> Result<(), AppError> {
    api::put(product_id, count).await
}
"#
);

expansion!(
    store_in,
    r#"
#[offline_action(local = add_product_locally, store_in = "products", key = |p: &Product| p.id.clone())]
pub async fn add_product(tenant_id: String, product: NewProduct) -> Result<Product, AppError> {
    api::post(&tenant_id, &product).await
}
"#
);

expansion!(
    store_all_in,
    r#"
#[offline_action(query, store_all_in = "products", key = |p: &Product| p.id.clone(), within = |p: &Product| p.tenant_id == tenant_id)]
pub async fn get_products(tenant_id: String) -> Result<Vec<Product>, AppError> {
    api::get(&tenant_id).await
}
"#
);

rejects!(
    scope_errors,
    r#"
#[offline_action(scope, scope = async { 1 }, query = true)]
pub async fn add(a: u8) -> Result<(), AppError> { todo!() }
"#
);

rejects!(
    write_through_misuse,
    r#"
#[offline_action(store_in = "", store_all_in = "b", within = |p: &P| true, key = 3)]
pub async fn add() -> Result<(), AppError> { todo!() }
"#
);

rejects!(
    scope_return,
    r#"
#[offline_action(scope = return, version = 2)]
pub async fn add(a: u8) -> Result<(), AppError> { todo!() }
"#
);

rejects!(
    write_through_missing_parts,
    r#"
#[offline_action(store_in = 3, within = |p: &P| true)]
pub async fn add() -> Result<(), AppError> { todo!() }
"#
);

rejects!(
    key_without_store,
    r#"
#[offline_action(key = |p: &P| p.id.clone())]
pub async fn add() -> Result<P, AppError> { todo!() }
"#
);

rejects!(
    not_a_function,
    r#"
#[offline_action]
pub struct Product { name: String }
"#
);

rejects!(
    unknown_and_repeated_keys,
    r#"
#[offline_action(query, nmae = "x", query, local = a, local = b)]
pub async fn add() -> Result<(), AppError> { todo!() }
"#
);

rejects!(
    bad_values,
    r#"
#[offline_action(name = "", version = 0, query = true, local = |x| x, params = a::B, crate = "sync_runtime")]
pub async fn add() -> Result<(), AppError> { todo!() }
"#
);

rejects!(
    more_bad_values,
    r#"
#[offline_action(name = "add product", version = 4294967296, params, crate)]
pub async fn add() -> Result<(), AppError> { todo!() }
"#
);

rejects!(
    suffixed_version,
    r#"
#[offline_action(name = add, version = 2u8)]
pub async fn add() -> Result<(), AppError> { todo!() }
"#
);

rejects!(
    argument_syntax,
    r#"
#[offline_action(query local = a)]
pub async fn add() -> Result<(), AppError> { todo!() }
"#
);

rejects!(
    errors_from_arguments_and_function_together,
    r#"
#[offline_action(nmae = "x")]
pub fn add(self) -> Result<(), AppError> { todo!() }
"#
);

derives!(
    classify_enum,
    r#"
pub enum AppError {
    #[error("the network is down")]
    #[classify(transient)]
    Network,
    #[classify(transient)]
    Timeout(u32),
    #[classify(transient, retry_after = wait)]
    Busy { wait: Option<Duration>, message: String },
    #[classify(transient, retry_after = 1)]
    RateLimited(u16, core::time::Duration, String),
    #[classify(transient, retry_after = 0)]
    Throttled(Duration),
    #[classify(permanent)]
    Rejected { reason: String },
    NotFound(String, u64),
    Gone,
    #[error(transparent)]
    #[classify(delegate)]
    Http(#[from] HttpError),
    #[classify(delegate)]
    Sync { source: SyncError },
}
"#
);

derives!(
    classify_enum_without_waits,
    r#"
enum StoreFailure {
    #[classify(transient)]
    Locked,
    Corrupt { path: String },
}
"#
);

derives!(
    classify_empty_enum,
    r#"
pub enum Never {}
"#
);

derives!(
    classify_struct,
    r#"
#[classify(transient, retry_after = retry_in)]
pub struct Overloaded {
    pub retry_in: Duration,
    pub r#type: String,
}
"#
);

derives!(
    classify_permanent_struct,
    r#"
pub struct Invalid(String);
"#
);

derives!(
    classify_delegate_newtype,
    r#"
#[classify(delegate)]
pub struct ApiError(#[from] std::io::Error);
"#
);

derives!(
    classify_generics,
    r#"
#[derive(Debug)]
#[classify(crate = ::my_sdk::sync)]
pub enum Wrapped<'a, E: std::error::Error, F> where F: Clone {
    #[classify(delegate)]
    Inner(E),
    #[classify(delegate)]
    Boxed(Box<F>),
    #[classify(delegate)]
    Again { error: E },
    #[classify(delegate)]
    Io(std::io::Error),
    #[classify(transient)]
    Borrowed(&'a str),
}
"#
);

#[test]
fn classify_errors_keep_a_fallback_impl() {
    insta::assert_snapshot!(derive(
        r#"
pub enum AppError<T> {
    #[classify(transeint)]
    Network(T),
}
"#
    ));
}

derive_rejects!(
    classify_unknown_and_repeated_keys,
    r#"
enum AppError {
    #[classify(transient, transient, tansient)]
    #[classify(retry_after = wait, retry_after = wait)]
    Busy { wait: Duration },
}
"#
);

derive_rejects!(
    classify_contradictions,
    r#"
enum AppError {
    #[classify(transient, permanent)]
    A,
    #[classify(permanent)]
    #[classify(transient)]
    B,
    #[classify(delegate, transient, retry_after = 0)]
    C(Duration),
    #[classify(permanent, delegate)]
    D(HttpError),
}
"#
);

derive_rejects!(
    classify_delegate_field_count,
    r#"
enum AppError {
    #[classify(delegate)]
    Unit,
    #[classify(delegate)]
    Empty(),
    #[classify(delegate)]
    Two(HttpError, String),
    #[classify(delegate)]
    Named { a: HttpError, b: String },
}
"#
);

derive_rejects!(
    classify_retry_after_errors,
    r#"
enum AppError {
    #[classify(transient, retry_after = wiat)]
    Named { wait: Duration, reason: String },
    #[classify(transient, retry_after = 2)]
    Tuple(Duration, String),
    #[classify(transient, retry_after = wait)]
    Positional(Duration),
    #[classify(transient, retry_after = 0)]
    Unit,
    #[classify(retry_after = wait)]
    NotTransient { wait: Duration },
    #[classify(permanent, retry_after = 0)]
    Permanent(Duration),
}
"#
);

derive_rejects!(
    classify_bad_values,
    r#"
#[classify(crate = "sync_runtime", transient = true)]
struct AppError {
    #[classify(delegate)]
    inner: Duration,
}
"#
);

derive_rejects!(
    classify_more_bad_values,
    r#"
#[classify(transient, retry_after = self.wait, delegate = yes)]
struct AppError(Duration);
"#
);

derive_rejects!(
    classify_retry_after_without_value,
    r#"
#[classify(transient, retry_after)]
struct AppError(Duration);
"#
);

derive_rejects!(
    classify_misplaced_keys,
    r#"
#[classify(transient, permanent, crate = ::sdk)]
#[classify(delegate, retry_after = 0)]
enum AppError {
    #[classify(crate = ::sdk)]
    Network,
}
"#
);

derive_rejects!(
    classify_attribute_syntax,
    r#"
enum AppError {
    #[classify]
    A,
    #[classify(transient retry_after = 0)]
    B(Duration),
    #[classify(= 1)]
    C,
}
"#
);

derive_rejects!(
    classify_union,
    r#"
#[classify(transient)]
union AppError { code: u32, other: f32 }
"#
);

#[test]
fn pascal_case() {
    use crate::expand::pascal_case;
    assert_eq!(pascal_case("add_product"), "AddProduct");
    assert_eq!(pascal_case("get_v2_items"), "GetV2Items");
    assert_eq!(pascal_case("_private__thing_"), "PrivateThing");
    assert_eq!(pascal_case("fetchAll"), "FetchAll");
    assert_eq!(pascal_case("_1st"), "Fn1st");
    assert_eq!(pascal_case("ćwiczenie"), "Ćwiczenie");
}
