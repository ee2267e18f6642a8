//! Every byte that outlives a process goes through here: one object-store URL
//! (a local folder by default; s3://, gs://, az:// by URL, credentials from the
//! usual environment variables), keys relative to its root.
//!
//! A remote store (s3://, gs://, az://) that does not answer (connection refused or
//! reset, a request timing out, 5xx / 429) is retried with backoff for a budget of
//! `RAS_STORE_RETRY_S` seconds (default [`DEFAULT_RETRY_S`]); `RAS_STORE_TIMEOUT_S` bounds
//! one request (default 30 s: a server that hangs, e.g. stopped, is retried rather than
//! waited on forever). Past the budget the error is [`StoreError::Unavailable`], which
//! [`StoreError::is_outage`] recognises (and the errors wrapping it ask): the run records it as an
//! infrastructure failure and `ras` exits 74 (`ExitStatus::Infra`).
//!
//! Writes are atomic: one object is one PUT (the local backend writes a temporary file
//! and renames it). Multi-object artefacts are "write then publish": the data objects
//! first, then a small JSON record holding their sha256, which readers verify.

mod batch;
mod listing;
mod remote;
mod requests;
pub mod safetensors_header;
pub mod tensors;

pub use listing::Listed;
pub use remote::{known_down, Outage, Patience, DEFAULT_RETRY_S};
use remote::{remote_backend, transient, Remote, DOWN, QUICK};
pub use requests::{concurrency, request_counts, take_max_in_flight, RequestCounts, DEFAULT_CONCURRENCY};
use requests::{counters, InFlight};

use bytes::Bytes;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("store {url}: cannot {op} {key}")]
    Backend {
        url: String,
        op: &'static str,
        key: String,
        // Boxed: object_store's error is large, and every Result of the store carries it.
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("store {url}: {key} already exists")]
    AlreadyExists { url: String, key: String },
    #[error("store {url}: {key} is corrupt: sha256 {actual} but its record says {expected}")]
    Corrupt { url: String, key: String, expected: String, actual: String },
    #[error(
        "no store at {url}: folder {folder} does not exist (check the store URL: --store, or the config's `store`)"
    )]
    Missing { url: String, folder: String },
    #[error("store {0}: cannot start I/O runtime")]
    Runtime(String, #[source] std::io::Error),
    #[error("store {url}: cannot {op} {key}")]
    Unavailable {
        url: String,
        op: &'static str,
        key: String,
        #[source]
        source: Outage,
    },
    #[error("{0}")]
    Setting(String),
}

impl StoreError {
    /// Whether the store stayed unreachable past its retry budget ([`StoreError::Unavailable`]):
    /// an infrastructure failure, not the caller's.
    pub fn is_outage(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// A handle on one store root. Cheap to clone; blocking API (the training loop is
/// synchronous), run on a private current-thread tokio runtime.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    root: ObjPath,
    url: String,
    rt: Arc<tokio::runtime::Runtime>,
    /// Remote stores only (a local folder's errors are not outages: None).
    remote: Option<Remote>,
    /// Whether its calls count in [`request_counts`]: not for an in-memory copy
    /// ([`Store::in_memory`]), whose calls are no requests to any store.
    counted: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.url)
    }
}

/// A record as the store keeps it (pretty JSON): what `put_json` writes, for callers that
/// batch records with other objects (`put_many`).
pub fn json_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("serialisable record")
}

/// The folder of a `file://` URL, given what follows `file://`. A URL's host part is not
/// a folder: `file://tmp/x` would otherwise silently mean `./tmp/x`. So the rest must be
/// an absolute path (`file:///tmp/x`) or start with `.` (`file://./x`, `file://../x`,
/// this tool's spelling of a relative folder).
pub(crate) fn file_url_path(rest: &str) -> Result<&str, String> {
    if rest.starts_with('/') || rest == "." || rest == ".." || rest.starts_with("./") || rest.starts_with("../") {
        return Ok(rest);
    }
    if rest.is_empty() {
        return Err("no folder after file://; use file:///abs/path or file://./relative/path".into());
    }
    let host = rest.split('/').next().unwrap_or(rest);
    Err(format!(
        "{host:?} would be the URL's host, not a folder; use file:///{rest} for an absolute path or file://./{rest} for a relative one"
    ))
}

/// Hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Store {
    /// Opens a store from a URL: `file:///abs`, `file://./rel`, a plain path, `s3://bucket/prefix`,
    /// `gs://...`, `az://...`. A local folder is created if missing (for commands that
    /// write: train, sweep); readers use [`Store::open_existing`].
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, true)
    }

    /// Opens a store that must already exist, for commands that only read (eval, status,
    /// report): a local folder that is not there is an error naming the URL, not a new
    /// empty store (a mistyped `--store` must not leave folders behind). Remote stores
    /// open as with [`Store::open`]; a missing object there shows as a missing object.
    pub fn open_existing(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, false)
    }

    /// Opens a store to read what it may already hold (`ras plan`'s measurements): a local
    /// folder that is not there reads as an empty store and is not created. Nothing is
    /// ever written through it.
    pub fn open_for_reading(url: &str) -> Result<Self, StoreError> {
        match Self::open_with(url, false) {
            Err(StoreError::Missing { .. }) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::Runtime(url.to_string(), e))?;
                let empty = Arc::new(object_store::memory::InMemory::new());
                Ok(Self {
                    inner: empty,
                    root: ObjPath::default(),
                    url: url.to_string(),
                    rt: Arc::new(rt),
                    remote: None,
                    counted: true,
                })
            }
            r => r,
        }
    }

    fn open_with(url: &str, create: bool) -> Result<Self, StoreError> {
        let bad = |message: String| StoreError::Url { url: url.to_string(), message };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Runtime(url.to_string(), e))?;
        let local_path = if let Some(rest) = url.strip_prefix("file://") {
            Some(file_url_path(rest).map_err(bad)?.to_string())
        } else if !url.contains("://") {
            Some(url.to_string())
        } else {
            None
        };
        let mut remote = None;
        let (inner, root, display): (Arc<dyn ObjectStore>, ObjPath, String) = if let Some(p) = local_path {
            let p = std::path::Path::new(&p);
            if create {
                std::fs::create_dir_all(p).map_err(|e| bad(format!("cannot create folder {}: {e}", p.display())))?;
            } else if !p.is_dir() {
                return Err(StoreError::Missing { url: url.to_string(), folder: p.display().to_string() });
            }
            let abs = std::fs::canonicalize(p).map_err(|e| bad(format!("cannot resolve {}: {e}", p.display())))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&abs).map_err(|e| bad(e.to_string()))?;
            (Arc::new(fs), ObjPath::default(), format!("file://{}", abs.display()))
        } else {
            let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
            let root = ObjPath::from_url_path(parsed.path()).map_err(|e| bad(e.to_string()))?;
            let p = Patience::from_env()?;
            let full = remote_backend(url, parsed.scheme(), &p, p.retry).map_err(bad)?;
            let quick = remote_backend(url, parsed.scheme(), &p, p.retry.min(QUICK)).map_err(bad)?;
            remote = Some(Remote { patience: p, quick });
            (full, root, url.to_string())
        };
        Ok(Self { inner, root, url: display, rt: Arc::new(rt), remote, counted: true })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn bump(&self, counter: &std::sync::atomic::AtomicU64) {
        if self.counted {
            counters::bump(counter);
        }
    }

    fn path(&self, key: &str) -> ObjPath {
        key.split('/').filter(|s| !s.is_empty()).fold(self.root.clone(), |p, part| p.clone().join(part))
    }

    fn backend(&self, op: &'static str, key: &str, source: object_store::Error) -> StoreError {
        StoreError::Backend { url: self.url.clone(), op, key: key.to_string(), source: Box::new(source) }
    }

    /// Runs one backend call; a remote store that does not answer is tried again (with
    /// backoff) until the retry budget is spent, counted from the first try. object_store
    /// retries most failures itself within the same budget; this loop catches the ones it
    /// returns at once (a timed-out conditional create, a body cut off mid-read). A future,
    /// so that a batch ([`Store::get_many`], ...) keeps several calls in flight on the
    /// store's runtime, each with its own retry budget; single calls block on it.
    async fn call_async<'s, T, F, Fut>(&'s self, op: &'static str, key: &str, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut(&'s dyn ObjectStore) -> Fut,
        Fut: std::future::Future<Output = Result<T, object_store::Error>>,
    {
        use std::sync::atomic::Ordering::SeqCst;
        let start = Instant::now();
        let mut pause = Duration::from_millis(200);
        // While the store is known to be down, a short budget (see `Remote`).
        let (client, budget): (&'s dyn ObjectStore, Duration) = match &self.remote {
            Some(r) if known_down() => (r.quick.as_ref(), r.patience.retry.min(QUICK)),
            Some(r) => (self.inner.as_ref(), r.patience.retry),
            None => (self.inner.as_ref(), Duration::ZERO),
        };
        loop {
            let res = {
                let _in_flight = InFlight::enter();
                f(client).await
            };
            let e = match res {
                Ok(v) => {
                    if self.remote.is_some() {
                        DOWN.store(false, SeqCst);
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            let Some(p) = self.remote.as_ref().map(|r| r.patience).filter(|_| transient(&e)) else {
                return Err(self.backend(op, key, e));
            };
            if start.elapsed() + pause < budget {
                tracing::warn!(store = %self.url, key, "store did not answer ({e}); retrying in {:.1} s", pause.as_secs_f64());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
            DOWN.store(true, SeqCst);
            let outage = Outage {
                waited_s: start.elapsed().as_secs_f64(),
                budget_s: p.retry.as_secs_f64(),
                source: Box::new(e),
            };
            return Err(StoreError::Unavailable { url: self.url.clone(), op, key: key.to_string(), source: outage });
        }
    }

    /// Writes (or replaces) one object atomically.
    pub fn put(&self, key: &str, bytes: impl Into<Bytes>) -> Result<(), StoreError> {
        self.rt.block_on(self.put_async(key, bytes.into()))
    }

    async fn put_async(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.bump(&counters::PUT);
        let path = self.path(key);
        let payload = PutPayload::from(bytes);
        self.call_async("write", key, |c| c.put(&path, payload.clone())).await.map(|_| ())
    }

    /// Writes an object only if it does not exist yet (conditional create). When a try
    /// got no answer and a later one finds the object, the object is read back: holding
    /// exactly these bytes, it is the earlier try's (it landed, its answer was lost).
    pub fn put_new(&self, key: &str, bytes: impl Into<Bytes>) -> Result<(), StoreError> {
        self.rt.block_on(self.put_new_async(key, bytes.into()))
    }

    async fn put_new_async(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.bump(&counters::PUT);
        let path = self.path(key);
        let tries = std::cell::Cell::new(0u32);
        let res = self
            .call_async("create", key, |c| {
                tries.set(tries.get() + 1);
                let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
                c.put_opts(&path, PutPayload::from(bytes.clone()), opts)
            })
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(StoreError::Backend { source, .. }) if matches!(*source, object_store::Error::AlreadyExists { .. }) => {
                if tries.get() > 1 && self.get_async(key).await?.is_some_and(|b| b == bytes) {
                    return Ok(());
                }
                Err(StoreError::AlreadyExists { url: self.url.clone(), key: key.to_string() })
            }
            Err(e) => Err(e),
        }
    }

    /// Reads one object; `None` if it does not exist.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.rt.block_on(self.get_async(key))
    }

    async fn get_async(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.bump(&counters::GET);
        let path = &self.path(key);
        self.call_async("read", key, |c| async move {
            match c.get(path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    pub fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.rt.block_on(self.exists_async(key))
    }

    async fn exists_async(&self, key: &str) -> Result<bool, StoreError> {
        self.bump(&counters::HEAD);
        let path = &self.path(key);
        self.call_async("inspect", key, |c| async move {
            match c.head(path).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Keys (relative to the store root) of every object under `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.rt.block_on(self.list_async(prefix))
    }

    async fn list_async(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.list_versions_async(prefix).await?.into_iter().map(|l| l.key).collect())
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.rt.block_on(self.delete_async(key))
    }

    async fn delete_async(&self, key: &str) -> Result<(), StoreError> {
        self.bump(&counters::DELETE);
        let path = &self.path(key);
        self.call_async("delete", key, |c| async move {
            match c.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
    }

    fn decode_json<T: serde::de::DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            url: self.url.clone(),
            key: key.to_string(),
            expected: "valid JSON".into(),
            actual: e.to_string(),
        })
    }

    pub fn put_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        self.put(key, json_bytes(value))
    }

    /// Reads a JSON object; `Ok(None)` when missing; an undecodable one is reported as corrupt.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.get(key)?.map(|b| self.decode_json(key, &b)).transpose()
    }

    /// Reads an object and checks it against the sha256 recorded when it was published.
    pub fn get_verified(&self, key: &str, sha256: &str) -> Result<Option<Bytes>, StoreError> {
        self.get(key)?.map(|b| self.verify(key, sha256, b)).transpose()
    }

    /// `bytes` of `key` if they hash to `sha256`, else [`StoreError::Corrupt`].
    fn verify(&self, key: &str, sha256: &str, bytes: Bytes) -> Result<Bytes, StoreError> {
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            return Err(StoreError::Corrupt {
                url: self.url.clone(),
                key: key.to_string(),
                expected: sha256.into(),
                actual,
            });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_round_trip_list_and_conditional_create() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        s.put("runs/a/x.json", b"{}".to_vec()).unwrap();
        s.put("runs/a/y.bin", vec![1u8, 2, 3]).unwrap();
        assert_eq!(s.get("runs/a/y.bin").unwrap().unwrap().as_ref(), &[1, 2, 3]);
        assert!(s.get("runs/a/missing").unwrap().is_none());
        assert_eq!(s.list("runs/a").unwrap(), vec!["runs/a/x.json".to_string(), "runs/a/y.bin".to_string()]);
        s.put_new("lock", b"1".to_vec()).unwrap();
        assert!(matches!(s.put_new("lock", b"2".to_vec()), Err(StoreError::AlreadyExists { .. })));
        assert_eq!(s.get("lock").unwrap().unwrap().as_ref(), b"1");
    }

    #[test]
    fn verified_read_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&format!("file://{}", dir.path().display())).unwrap();
        s.put("blob", b"hello".to_vec()).unwrap();
        let good = sha256_hex(b"hello");
        assert!(s.get_verified("blob", &good).unwrap().is_some());
        std::fs::write(dir.path().join("blob"), b"hellO").unwrap();
        assert!(matches!(s.get_verified("blob", &good), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn readers_do_not_create_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ras-store");
        let url = format!("file://{}", missing.display());
        let err = Store::open_existing(&url).unwrap_err().to_string();
        assert!(err.contains("no store at") && err.contains(&url), "{err}");
        assert!(!missing.exists(), "a reader created {}", missing.display());
        Store::open(&url).unwrap();
        assert!(missing.is_dir());
        Store::open_existing(&url).unwrap();
    }

    #[test]
    fn file_urls_with_a_host_part_are_refused() {
        let err = Store::open("file://tmp/x").unwrap_err().to_string();
        assert!(err.contains("file:///tmp/x") && err.contains("file://./tmp/x"), "{err}");
        assert!(Store::open("file://").is_err());
        // Absolute and ./-relative file URLs keep working.
        let dir = tempfile::tempdir().unwrap();
        Store::open(&format!("file://{}/abs", dir.path().display())).unwrap();
        assert!(dir.path().join("abs").is_dir());
        let cwd = std::env::current_dir().unwrap();
        let rel = dir.path().strip_prefix("/").unwrap();
        let up = cwd.components().count() - 1;
        let url = format!("file://./{}{}/rel", "../".repeat(up), rel.display());
        Store::open(&url).unwrap();
        assert!(dir.path().join("rel").is_dir(), "{url}");
    }

    #[test]
    fn patience_defaults_and_bad_values_name_the_variable() {
        let d = Patience::parse(None, None).unwrap();
        assert_eq!(d, Patience { retry: Duration::from_secs(DEFAULT_RETRY_S), timeout: None });
        let p = Patience::parse(Some("2.5"), Some("4")).unwrap();
        assert_eq!((p.retry, p.timeout), (Duration::from_millis(2500), Some(Duration::from_secs(4))));
        assert_eq!(p.timeout_value().as_deref(), Some("4000ms"));
        assert_eq!(p.retry_config().retry_timeout, Duration::from_millis(2500));
        assert_eq!(Patience::parse(Some("0"), None).unwrap().retry, Duration::ZERO);
        let err = Patience::parse(Some("5m"), None).unwrap_err().to_string();
        assert!(err.contains("RAS_STORE_RETRY_S=\"5m\""), "{err}");
        let err = Patience::parse(None, Some("0")).unwrap_err().to_string();
        assert!(err.contains("RAS_STORE_TIMEOUT_S"), "{err}");
    }

    /// A real S3 client against a port nobody listens on: every call is retried for the
    /// budget, then fails as an outage naming the key and the knob.
    #[test]
    fn an_unreachable_s3_store_is_retried_for_the_budget_then_an_outage() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let p = Patience { retry: Duration::from_millis(1500), timeout: Some(Duration::from_secs(2)) };
        let client = |budget| -> Arc<dyn ObjectStore> {
            Arc::new(
                object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name("b")
                    .with_region("us-east-1")
                    .with_access_key_id("k")
                    .with_secret_access_key("s")
                    .with_endpoint(format!("http://127.0.0.1:{port}"))
                    .with_allow_http(true)
                    .with_retry(Patience { retry: budget, ..p }.retry_config())
                    .build()
                    .unwrap(),
            )
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let remote = Remote { patience: p, quick: client(p.retry.min(QUICK)) };
        let s = Store {
            inner: client(p.retry),
            root: ObjPath::from("pre"),
            url: "s3://b/pre".into(),
            rt: Arc::new(rt),
            remote: Some(remote),
            counted: true,
        };
        let t = Instant::now();
        let err = s.put("runs/r/status.json", b"{}".to_vec()).unwrap_err();
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(1400) && waited < Duration::from_secs(10), "waited {waited:?}");
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        assert!(err.is_outage());
        let err = anyhow::Error::new(err);
        let text = format!("{err:#}");
        assert!(text.contains("runs/r/status.json") && text.contains("RAS_STORE_RETRY_S"), "{text}");
        assert!(known_down());
        // A conditional create and a read fail the same way (timeouts and refusals are
        // retried for them too).
        assert!(matches!(s.put_new("claims/x.0", b"1".to_vec()), Err(StoreError::Unavailable { .. })));
        assert!(matches!(s.get("runs/r/status.json"), Err(StoreError::Unavailable { .. })));
        // Local-folder errors are never outages.
        let dir = tempfile::tempdir().unwrap();
        let local = Store::open(dir.path().to_str().unwrap()).unwrap();
        std::fs::create_dir_all(dir.path().join("d/x")).unwrap();
        let e = local.put("d/x", b"1".to_vec()).unwrap_err();
        assert!(!matches!(e, StoreError::Unavailable { .. }), "{e:?}");
        DOWN.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    #[test]
    fn a_store_opened_for_reading_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/not-yet", dir.path().display());
        let s = Store::open_for_reading(&url).unwrap();
        assert!(s.list("runs/").unwrap().is_empty());
        assert!(s.get("runs/x/status.json").unwrap().is_none());
        assert!(!dir.path().join("not-yet").exists(), "reading created the folder");
        // An existing one is read as it is.
        Store::open(&url).unwrap().put("runs/x/a.json", b"{}".to_vec()).unwrap();
        assert_eq!(Store::open_for_reading(&url).unwrap().list("runs/").unwrap(), vec!["runs/x/a.json".to_string()]);
    }

    #[test]
    fn unknown_scheme_is_an_error() {
        let err = Store::open("ftp://host/x").unwrap_err().to_string();
        assert!(err.contains("ftp"), "{err}");
    }
}
