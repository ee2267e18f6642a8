//! A listing with each object's size and version, and a store held in memory: what an
//! incremental reader needs (`ras serve` keeps a copy of the records it shows and, on a
//! refresh, reads again only the objects whose version changed).

use super::{counters, Store, StoreError};
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::ObjectStoreExt;
use std::sync::Arc;

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Relative to the store root.
    pub key: String,
    pub size: u64,
    /// What changes when the object is written again: its ETag where the backend gives
    /// one, else its modification time (nanoseconds) and size.
    pub version: String,
    /// Seconds since the Unix epoch.
    pub modified_unix: i64,
}

impl Listed {
    /// `key` as the backend describes it: its ETag, else its modification time and size.
    fn of(key: String, m: &object_store::ObjectMeta) -> Self {
        let nanos = m.last_modified.timestamp_nanos_opt().unwrap_or_default();
        let version = m.e_tag.clone().unwrap_or_else(|| format!("{nanos}-{}", m.size));
        Listed { key, size: m.size, version, modified_unix: m.last_modified.timestamp() }
    }
}

impl Store {
    /// Every object under `prefix` with its size and version, sorted by key (one LIST,
    /// however many pages the backend returns).
    pub fn list_versions(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        self.rt.block_on(self.list_versions_async(prefix))
    }

    /// [`Store::list_versions`] of many prefixes, at most `concurrency()` in flight.
    pub fn list_versions_many<K: AsRef<str>>(&self, prefixes: &[K]) -> Result<Vec<Vec<Listed>>, StoreError> {
        use futures::StreamExt;
        self.rt.block_on(
            futures::stream::iter(prefixes)
                .map(|p| self.list_versions_async(p.as_ref()))
                .buffered(super::concurrency())
                .try_collect(),
        )
    }

    pub(super) async fn list_versions_async(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        self.bump(&counters::LIST);
        let path = self.path(prefix);
        let metas: Vec<_> = self.call_async("list", prefix, |c| c.list(Some(&path)).try_collect::<Vec<_>>()).await?;
        let root = self.root.as_ref();
        let mut out: Vec<Listed> = metas
            .into_iter()
            .map(|m| {
                let full = m.location.as_ref().to_string();
                Listed::of(full.strip_prefix(root).unwrap_or(&full).trim_start_matches('/').to_string(), &m)
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Many objects with their version, as one batch (`None` for each that does not
    /// exist): an incremental reader that knows which keys it wants reads them without
    /// listing first.
    pub fn get_many_versioned<K: AsRef<str>>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Option<(bytes::Bytes, Listed)>>, StoreError> {
        use futures::StreamExt;
        self.rt.block_on(
            futures::stream::iter(keys)
                .map(|k| self.get_versioned_async(k.as_ref()))
                .buffered(super::concurrency())
                .try_collect(),
        )
    }

    async fn get_versioned_async(&self, key: &str) -> Result<Option<(bytes::Bytes, Listed)>, StoreError> {
        self.bump(&counters::GET);
        let path = &self.path(key);
        self.call_async("read", key, |c| async move {
            match c.get(path).await {
                Ok(r) => {
                    let listed = Listed::of(key.to_string(), &r.meta);
                    Ok(Some((r.bytes().await?, listed)))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// An empty store held in this process's memory, shown as `label` in messages. Its
    /// calls are not requests to any store and do not count in [`super::request_counts`].
    pub fn in_memory(label: &str) -> Result<Store, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Runtime(label.to_string(), e))?;
        Ok(Store {
            inner: Arc::new(object_store::memory::InMemory::new()),
            root: ObjPath::default(),
            url: label.to_string(),
            rt: Arc::new(rt),
            remote: None,
            counted: false,
        })
    }
}
