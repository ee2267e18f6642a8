//! Many keys at once: a bounded number of requests in flight on the store's runtime.
//! A sweep of thousands of runs on a remote store (tens of ms per request) would
//! otherwise wait for each request in turn.

use super::{json_bytes, Store, StoreError};
use bytes::Bytes;
use futures::TryStreamExt;

impl Store {
    /// Runs `one` for every item with at most [`super::concurrency`] in flight, in order; the
    /// first error (in item order among those finished) ends the batch and drops the
    /// calls still in flight.
    fn batch<I, T, Fut>(&self, items: I, one: impl FnMut(I::Item) -> Fut) -> Result<Vec<T>, StoreError>
    where
        I: IntoIterator,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        use futures::StreamExt;
        self.rt.block_on(futures::stream::iter(items).map(one).buffered(super::concurrency()).try_collect())
    }

    // The single-key calls of mod.rs, at most `concurrency()` in flight
    // (`RAS_STORE_CONCURRENCY`), answers in the order of the keys. Each call keeps its
    // own retry budget, so an outage still ends as `StoreError::Unavailable` (exit 74).
    // Callers that publish keep the order themselves: the data objects in one batch,
    // then the publishing object alone, after it.

    /// Reads many objects (`None` for each that does not exist).
    pub fn get_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<Option<Bytes>>, StoreError> {
        self.batch(keys, |k| self.get_async(k.as_ref()))
    }

    /// Reads many JSON objects (`None` for each missing; an undecodable one is corrupt).
    pub fn get_json_many<T: serde::de::DeserializeOwned, K: AsRef<str>>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Option<T>>, StoreError> {
        let bytes = self.get_many(keys)?;
        keys.iter().zip(bytes).map(|(k, b)| b.map(|b| self.decode_json(k.as_ref(), &b)).transpose()).collect()
    }

    /// [`Store::get_verified`] of many (key, sha256) pairs in one batch: `None` for each
    /// missing; the first (in order) that does not match its sha256 is
    /// [`StoreError::Corrupt`].
    pub fn get_verified_many<K: AsRef<str>, S: AsRef<str>>(
        &self,
        items: &[(K, S)],
    ) -> Result<Vec<Option<Bytes>>, StoreError> {
        let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_ref()).collect();
        let fetched = self.get_many(&keys)?;
        items
            .iter()
            .zip(fetched)
            .map(|((k, sha), b)| b.map(|b| self.verify(k.as_ref(), sha.as_ref(), b)).transpose())
            .collect()
    }

    /// Writes (or replaces) many objects, each atomically; all are written when it returns Ok.
    pub fn put_many(&self, items: Vec<(String, Bytes)>) -> Result<(), StoreError> {
        self.batch(items, |(k, b)| async move { self.put_async(&k, b).await }).map(|_| ())
    }

    /// [`Store::put_many`] of JSON records.
    pub fn put_json_many<T: serde::Serialize>(&self, items: &[(String, T)]) -> Result<(), StoreError> {
        self.put_many(items.iter().map(|(k, v)| (k.clone(), Bytes::from(json_bytes(v)))).collect())
    }

    /// Conditional creates of many objects: for each, whether this call created it
    /// (false: it already existed). Any other failure ends the batch.
    pub fn put_new_many(&self, items: Vec<(String, Bytes)>) -> Result<Vec<bool>, StoreError> {
        self.batch(items, |(k, b)| async move {
            match self.put_new_async(&k, b).await {
                Ok(()) => Ok(true),
                Err(StoreError::AlreadyExists { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    /// Whether each object exists.
    pub fn exists_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<bool>, StoreError> {
        self.batch(keys, |k| self.exists_async(k.as_ref()))
    }

    /// Deletes many objects (a missing one is not an error).
    pub fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<(), StoreError> {
        self.batch(keys, |k| self.delete_async(k.as_ref())).map(|_| ())
    }

    /// Lists many prefixes (each as [`Store::list`]).
    pub fn list_many<K: AsRef<str>>(&self, prefixes: &[K]) -> Result<Vec<Vec<String>>, StoreError> {
        self.batch(prefixes, |p| self.list_async(p.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{take_max_in_flight, Store, StoreError};
    use bytes::Bytes;

    #[test]
    fn batches_answer_in_key_order_and_keep_several_requests_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        let items: Vec<(String, Bytes)> =
            (0..100).map(|i| (format!("runs/r{i:03}/status.json"), Bytes::from(format!("{{\"i\":{i}}}")))).collect();
        take_max_in_flight();
        s.put_many(items.clone()).unwrap();
        // The local backend does its file I/O on blocking threads, so the batch's
        // requests are in flight together (other tests may add to the figure, never
        // take from it).
        assert!(take_max_in_flight() >= 2, "a batch of 100 writes went one at a time");
        let mut keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
        keys.push("runs/missing/status.json".into());
        let got = s.get_many(&keys).unwrap();
        for (i, b) in got.iter().take(100).enumerate() {
            assert_eq!(b.as_deref(), Some(format!("{{\"i\":{i}}}").as_bytes()), "answer {i} out of order");
        }
        assert!(got[100].is_none());
        let json: Vec<Option<serde_json::Value>> = s.get_json_many(&keys[..3]).unwrap();
        assert_eq!(json[2].as_ref().unwrap()["i"], 2);
        assert_eq!(s.exists_many(&["runs/r000/status.json", "nope"]).unwrap(), vec![true, false]);
        let lists = s.list_many(&["runs/r001/", "runs/r002/", "runs/none/"]).unwrap();
        assert_eq!(
            lists,
            vec![vec!["runs/r001/status.json".to_string()], vec!["runs/r002/status.json".into()], vec![]]
        );
    }

    #[test]
    fn conditional_creates_in_a_batch_say_which_were_created() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        s.put_new("claims/b.0", b"theirs".to_vec()).unwrap();
        let items = ["claims/a.0", "claims/b.0", "claims/c.0"].map(|k| (k.to_string(), Bytes::from_static(b"mine")));
        assert_eq!(s.put_new_many(items.to_vec()).unwrap(), vec![true, false, true]);
        assert_eq!(s.get("claims/b.0").unwrap().unwrap().as_ref(), b"theirs");
        assert_eq!(s.put_new_many(items.to_vec()).unwrap(), vec![false, false, false]);
    }

    #[test]
    fn verified_reads_in_a_batch_name_the_corrupt_object() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        s.put_many(vec![("a".into(), Bytes::from_static(b"one")), ("b".into(), Bytes::from_static(b"two"))]).unwrap();
        let sha = |b: &[u8]| crate::store::sha256_hex(b);
        let got = s.get_verified_many(&[("a", sha(b"one")), ("gone", sha(b"x")), ("b", sha(b"two"))]).unwrap();
        assert_eq!(got, vec![Some(Bytes::from_static(b"one")), None, Some(Bytes::from_static(b"two"))]);
        let err = s.get_verified_many(&[("a", sha(b"one")), ("b", sha(b"tw0"))]).unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt { key, .. } if key == "b"), "{err:?}");
    }

    #[test]
    fn a_corrupt_record_in_a_batch_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        s.put_many(vec![("a.json".into(), Bytes::from_static(b"{}")), ("b.json".into(), Bytes::from_static(b"{"))])
            .unwrap();
        let err = s.get_json_many::<serde_json::Value, _>(&["a.json", "b.json"]).unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt { key, .. } if key == "b.json"), "{err:?}");
    }
}
