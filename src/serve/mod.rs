//! `ras serve`: a read-only web view of a store, served by the `ras` binary (axum on
//! tokio), from the store alone: no database, no second service, nothing loaded from
//! anywhere but the binary (pages, style and script are compiled in).
//!
//! - `mirror`    the store's records copied in memory, refreshed by reading only what changed
//! - `dashboard` which part of the store each page reads, and when; pages kept until it changes
//! - `pages`     home and sweep pages: built by the functions the CLI prints with
//! - `run_pages` a run's page, and runs compared
//! - `html`      escaping, tables, the report's Markdown and cells as HTML
//! - `http`      routes, the token, names checked against the store layout, live fragments
//! - `secrets`   what never leaves the server
//!
//! Security: it binds 127.0.0.1 unless told otherwise, and anything else needs a token
//! (`--token` or `RAS_SERVE_TOKEN`); it never writes to the store.

pub mod dashboard;
pub mod html;
mod http;
pub mod mirror;
pub mod pages;
pub mod run_pages;
pub mod secrets;

pub use dashboard::{Dashboard, Route};
pub use http::valid_name;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The default address: this machine only.
pub const DEFAULT_BIND: &str = "127.0.0.1:8765";

/// Seconds a store request is retried, and one request may take, before a page says the
/// store does not answer (`RAS_STORE_RETRY_S`, `RAS_STORE_TIMEOUT_S` where set): a page
/// waits seconds, not the minutes a training run waits out an outage.
pub const SERVE_RETRY_S: u64 = 5;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub store: String,
    pub bind: String,
    pub token: Option<String>,
    /// How often an open page asks whether it changed (and the least time between two
    /// refreshes of one page from the store).
    pub refresh: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--bind {0:?} is not ADDRESS:PORT (e.g. 127.0.0.1:8765, or 0.0.0.0:8765 with a token)")]
    Bind(String),
    #[error(
        "refusing to serve on {0}, which other machines can reach, without a token: set --token TOKEN or RAS_SERVE_TOKEN (anyone with it can read every run of the store), or bind 127.0.0.1"
    )]
    NeedsToken(SocketAddr),
    #[error("--token: give at least 16 characters (it guards every run of the store)")]
    WeakToken,
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot start the server's runtime")]
    Runtime(#[source] std::io::Error),
}

/// Requests in flight at once for a page's reads (`RAS_STORE_CONCURRENCY` where set): a
/// sweep page's first view is one burst of thousands of small GETs, and on a remote
/// store each is a round trip. Measured on the test S3 server behind 20 ms (`ras bench
/// serve --s3`, 2000 runs, 6001 GETs): 13.1 s at the default 32, 3.97 s at 128.
pub const SERVE_CONCURRENCY: usize = 128;

/// The store settings of a reader that answers people: a short retry budget and request
/// timeout ([`SERVE_RETRY_S`]) and more requests in flight ([`SERVE_CONCURRENCY`]), each
/// unless set in the environment. Call before any store is opened and any thread starts.
/// Returns the variables it set.
pub fn reader_defaults() -> Vec<&'static str> {
    let mut set = vec![];
    for (var, value) in [
        ("RAS_STORE_RETRY_S", SERVE_RETRY_S.to_string()),
        ("RAS_STORE_TIMEOUT_S", SERVE_RETRY_S.to_string()),
        ("RAS_STORE_CONCURRENCY", SERVE_CONCURRENCY.to_string()),
    ] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, value);
            set.push(var);
        }
    }
    set
}

/// The address to bind: `bind` parsed and checked (anything but loopback needs a token).
pub fn check_bind(bind: &str, token: Option<&str>) -> Result<SocketAddr, ServeError> {
    let addr: SocketAddr = bind.parse().map_err(|_| ServeError::Bind(bind.to_string()))?;
    match token {
        Some(t) if t.len() < 16 => Err(ServeError::WeakToken),
        None if !addr.ip().is_loopback() => Err(ServeError::NeedsToken(addr)),
        _ => Ok(addr),
    }
}

/// Serves until Ctrl-C or SIGTERM. `ready` gets the line to show once the server listens:
/// its URL (port 0 binds a free port: the URL names the one it got) and the store.
pub fn serve(opts: &ServeOptions, ready: impl FnOnce(&str)) -> Result<(), ServeError> {
    let addr = check_bind(&opts.bind, opts.token.as_deref())?;
    let _ = reader_defaults();
    let store = crate::store::Store::open_existing(&opts.store)?;
    let store_url = store.url().to_string();
    let secrets = secrets::Secrets::from_env(opts.token.as_deref(), &opts.store);
    let app = Arc::new(http::AppState {
        dashboard: Mutex::new(Dashboard::new(store, opts.refresh)?),
        token: opts.token.clone(),
        secrets,
        refresh_ms: opts.refresh.as_millis() as u64,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Listen { addr, source })?;
        let bound = listener.local_addr().map_err(|source| ServeError::Listen { addr, source })?;
        let token = if app.token.is_some() { " (token required: open it once as URL?token=TOKEN)" } else { "" };
        ready(&format!("ras serve: http://{bound}/{token} shows store {} (read-only; Ctrl-C stops)", store_url));
        let router = axum::Router::new().fallback(http::handle).with_state(app);
        axum::serve(listener, router)
            .with_graceful_shutdown(stopped())
            .await
            .map_err(|source| ServeError::Listen { addr, source })
    })
}

/// Ctrl-C or SIGTERM.
async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}
