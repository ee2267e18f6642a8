//! Every byte that outlives a process goes through here: one object-store URL
//! (a local folder by default; s3://, gs://, az:// by URL, credentials from the
//! usual environment variables), keys relative to its root.
//!
//! Writes are atomic: one object is one PUT (the local backend writes a temporary file
//! and renames it). Multi-object artefacts are "write then publish": the data objects
//! first, then a small JSON record holding their sha256, which readers verify.

pub mod tensors;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("store {url}: cannot {op} {key}: {source}")]
    Backend { url: String, op: &'static str, key: String, #[source] source: object_store::Error },
    #[error("store {url}: {key} already exists")]
    AlreadyExists { url: String, key: String },
    #[error("store {url}: {key} is corrupt: sha256 {actual} but its record says {expected}")]
    Corrupt { url: String, key: String, expected: String, actual: String },
    #[error("no store at {url}: folder {folder} does not exist (check the store URL: --store, or the config's `store`)")]
    Missing { url: String, folder: String },
    #[error("store {0}: cannot start I/O runtime: {1}")]
    Runtime(String, #[source] std::io::Error),
}

/// A handle on one store root. Cheap to clone; blocking API (the training loop is
/// synchronous), run on a private current-thread tokio runtime.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    root: ObjPath,
    url: String,
    rt: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.url)
    }
}

/// Store calls made by this process, by kind (`ras bench coordinator` prints them per
/// poll cycle). A `list` counts once however many pages the backend returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    pub get: u64,
    pub put: u64,
    pub head: u64,
    pub list: u64,
    pub delete: u64,
}

impl RequestCounts {
    /// What was made between `earlier` and `self`.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            get: self.get - earlier.get,
            put: self.put - earlier.put,
            head: self.head - earlier.head,
            list: self.list - earlier.list,
            delete: self.delete - earlier.delete,
        }
    }
}

mod counters {
    use std::sync::atomic::{AtomicU64, Ordering};
    pub static GET: AtomicU64 = AtomicU64::new(0);
    pub static PUT: AtomicU64 = AtomicU64::new(0);
    pub static HEAD: AtomicU64 = AtomicU64::new(0);
    pub static LIST: AtomicU64 = AtomicU64::new(0);
    pub static DELETE: AtomicU64 = AtomicU64::new(0);
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Store calls made so far by this process.
pub fn request_counts() -> RequestCounts {
    use std::sync::atomic::Ordering::Relaxed;
    RequestCounts {
        get: counters::GET.load(Relaxed),
        put: counters::PUT.load(Relaxed),
        head: counters::HEAD.load(Relaxed),
        list: counters::LIST.load(Relaxed),
        delete: counters::DELETE.load(Relaxed),
    }
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
            let store: Arc<dyn ObjectStore> = match parsed.scheme() {
                "s3" => Arc::new(
                    object_store::aws::AmazonS3Builder::from_env().with_url(url).build().map_err(|e| bad(e.to_string()))?,
                ),
                "gs" => Arc::new(
                    object_store::gcp::GoogleCloudStorageBuilder::from_env()
                        .with_url(url)
                        .build()
                        .map_err(|e| bad(e.to_string()))?,
                ),
                "az" | "abfs" | "abfss" | "azure" => Arc::new(
                    object_store::azure::MicrosoftAzureBuilder::from_env()
                        .with_url(url)
                        .build()
                        .map_err(|e| bad(e.to_string()))?,
                ),
                other => return Err(bad(format!("unknown scheme {other:?}; use file://, s3://, gs:// or az://"))),
            };
            (store, root, url.to_string())
        };
        Ok(Self { inner, root, url: display, rt: Arc::new(rt) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> ObjPath {
        key.split('/').filter(|s| !s.is_empty()).fold(self.root.clone(), |p, part| p.clone().join(part))
    }

    fn backend(&self, op: &'static str, key: &str, source: object_store::Error) -> StoreError {
        StoreError::Backend { url: self.url.clone(), op, key: key.to_string(), source }
    }

    /// Writes (or replaces) one object atomically.
    pub fn put(&self, key: &str, bytes: impl Into<Bytes>) -> Result<(), StoreError> {
        counters::bump(&counters::PUT);
        let path = self.path(key);
        self.rt
            .block_on(self.inner.put(&path, PutPayload::from(bytes.into())))
            .map(|_| ())
            .map_err(|e| self.backend("write", key, e))
    }

    /// Writes an object only if it does not exist yet (conditional create).
    pub fn put_new(&self, key: &str, bytes: impl Into<Bytes>) -> Result<(), StoreError> {
        counters::bump(&counters::PUT);
        let path = self.path(key);
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.rt.block_on(self.inner.put_opts(&path, PutPayload::from(bytes.into()), opts)) {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                Err(StoreError::AlreadyExists { url: self.url.clone(), key: key.to_string() })
            }
            Err(e) => Err(self.backend("create", key, e)),
        }
    }

    /// Reads one object; `None` if it does not exist.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        counters::bump(&counters::GET);
        let path = self.path(key);
        let res = self.rt.block_on(async {
            match self.inner.get(&path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        res.map_err(|e| self.backend("read", key, e))
    }

    pub fn exists(&self, key: &str) -> Result<bool, StoreError> {
        counters::bump(&counters::HEAD);
        let path = self.path(key);
        match self.rt.block_on(self.inner.head(&path)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.backend("inspect", key, e)),
        }
    }

    /// Keys (relative to the store root) of every object under `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        counters::bump(&counters::LIST);
        let path = self.path(prefix);
        let metas: Vec<_> = self
            .rt
            .block_on(self.inner.list(Some(&path)).try_collect::<Vec<_>>())
            .map_err(|e| self.backend("list", prefix, e))?;
        let root = self.root.as_ref();
        let mut keys: Vec<String> = metas
            .into_iter()
            .map(|m| {
                let full = m.location.as_ref().to_string();
                full.strip_prefix(root).unwrap_or(&full).trim_start_matches('/').to_string()
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        counters::bump(&counters::DELETE);
        let path = self.path(key);
        match self.rt.block_on(self.inner.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.backend("delete", key, e)),
        }
    }

    pub fn put_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let text = serde_json::to_vec_pretty(value).expect("serialisable record");
        self.put(key, text)
    }

    /// Reads a JSON object; `Ok(None)` when missing; an undecodable one is reported as corrupt.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.get(key)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| StoreError::Corrupt {
                url: self.url.clone(),
                key: key.to_string(),
                expected: "valid JSON".into(),
                actual: e.to_string(),
            }),
        }
    }

    /// Reads an object and checks it against the sha256 recorded when it was published.
    pub fn get_verified(&self, key: &str, sha256: &str) -> Result<Option<Bytes>, StoreError> {
        let Some(bytes) = self.get(key)? else { return Ok(None) };
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            return Err(StoreError::Corrupt { url: self.url.clone(), key: key.to_string(), expected: sha256.into(), actual });
        }
        Ok(Some(bytes))
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
    fn unknown_scheme_is_an_error() {
        let err = Store::open("ftp://host/x").unwrap_err().to_string();
        assert!(err.contains("ftp"), "{err}");
    }
}
