//! The [`Mirror`]: a copy, in this process's memory, of the store's records that the pages
//! show, kept up to date by listing and reading again only what changed.
//!
//! Every page is built from the copy ([`Mirror::copy`], a [`Store`] like any other) by
//! the same functions `ras status`, `ras report`, `ras runs` and `ras compare` call on a
//! real store, so a page shows what those commands print. A refresh of a page LISTs the
//! prefixes that page depends on, compares each object's version with the one copied,
//! and GETs only the new and changed ones (deleted ones leave the copy): a page left open
//! on a finished 2,000-run sweep costs one LIST a refresh and no GET.
//!
//! Only small records are copied (configs, statuses, logs of metrics, cost records, sweep
//! state); checkpoints, features and predictions are never read. Pictures and job logs
//! are read when a page shows them, and kept while their version stays the same.

use crate::run::{RunKey, RunPaths};
use crate::store::{Listed, Store, StoreError};
use crate::sweep::{SweepKey, SweepPaths};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};

/// What the mirror does with a key of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Copied as soon as a listing shows it (or shows it changed).
    Record,
    /// Read only when a page shows it (a picture, a job log).
    OnDemand,
    /// Never read (checkpoints, features, predictions, launch audit entries, ...).
    Skipped,
}

/// Which kind `key` is (a key relative to the store root).
pub fn kind(key: &str) -> Kind {
    if let Some((_, k)) = RunPaths::parse(key) {
        return match k {
            RunKey::Other(rest) => {
                if (rest.starts_with("pictures/") && rest.ends_with(".png"))
                    || (rest.starts_with("logs/") && rest.ends_with(".log"))
                {
                    Kind::OnDemand
                } else if rest.starts_with("jobs/") && rest.ends_with(".json") {
                    Kind::Record
                } else {
                    Kind::Skipped
                }
            }
            // Megabytes per run on a real dataset: only a sweep page that shows verdicts
            // reads them, by name, once per complete run (`Mirror::fetch`).
            RunKey::PixelHistograms | RunKey::EvalNoisePixels { .. } => Kind::Skipped,
            _ => Kind::Record,
        };
    }
    match SweepPaths::parse(key) {
        Some((_, SweepKey::Launch(_))) | None => Kind::Skipped,
        Some(_) => Kind::Record,
    }
}

/// What one refresh did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncStats {
    pub lists: usize,
    pub reads: usize,
    pub removed: usize,
}

/// An object the mirror knows of, as its last listing showed it.
#[derive(Debug, Clone)]
struct Seen {
    version: String,
    modified_unix: i64,
    size: u64,
}

pub struct Mirror {
    real: Store,
    copy: Store,
    /// Every object of a listed prefix that is not skipped, by key.
    seen: BTreeMap<String, Seen>,
    /// Objects read on demand, with the version they were read at.
    on_demand: HashMap<String, (String, Bytes)>,
    /// Bumped whenever the copy changes: a page built at the same generation is the same.
    generation: u64,
}

impl Mirror {
    pub fn new(real: Store) -> Result<Self, StoreError> {
        let copy = Store::in_memory(real.url())?;
        Ok(Self { real, copy, seen: BTreeMap::new(), on_demand: HashMap::new(), generation: 0 })
    }

    /// The store the mirror copies (its URL names it in pages).
    pub fn real(&self) -> &Store {
        &self.real
    }

    /// The copy the pages read.
    pub fn copy(&self) -> &Store {
        &self.copy
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Lists each prefix (one LIST each, in one batch) and brings the copy's records under
    /// them up to date: new and changed records read (in one batch), removed ones dropped.
    /// `keep` narrows what is copied (a sweep page copies only its own runs out of `runs/`).
    pub fn sync(&mut self, prefixes: &[String], keep: &dyn Fn(&str) -> bool) -> Result<SyncStats, StoreError> {
        if prefixes.is_empty() {
            return Ok(SyncStats::default());
        }
        let listings = self.real.list_versions_many(prefixes)?;
        let mut stats = SyncStats { lists: prefixes.len(), ..Default::default() };
        let mut fetch: Vec<Listed> = vec![];
        for (prefix, listing) in prefixes.iter().zip(listings) {
            let listed: BTreeMap<&str, &Listed> = listing.iter().map(|l| (l.key.as_str(), l)).collect();
            let gone: Vec<String> = self
                .seen
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                .filter(|(k, _)| keep(k) && !listed.contains_key(k.as_str()))
                .map(|(k, _)| k.clone())
                .collect();
            for k in gone {
                self.seen.remove(&k);
                self.on_demand.remove(&k);
                if kind(&k) == Kind::Record {
                    self.copy.delete(&k)?;
                }
                stats.removed += 1;
            }
            for l in listing.iter().filter(|l| kind(&l.key) != Kind::Skipped && keep(&l.key)) {
                let changed = self.seen.get(&l.key).is_none_or(|s| s.version != l.version);
                if changed {
                    if kind(&l.key) == Kind::Record {
                        fetch.push(l.clone());
                    } else {
                        self.on_demand.remove(&l.key);
                        self.generation += 1;
                    }
                    self.seen.insert(
                        l.key.clone(),
                        Seen { version: l.version.clone(), modified_unix: l.modified_unix, size: l.size },
                    );
                }
            }
        }
        if !fetch.is_empty() {
            let keys: Vec<&str> = fetch.iter().map(|l| l.key.as_str()).collect();
            let bytes = self.real.get_many(&keys)?;
            let mut items = vec![];
            for (l, b) in fetch.iter().zip(bytes) {
                match b {
                    Some(b) => items.push((l.key.clone(), b)),
                    // Deleted between the LIST and the GET: the next listing agrees.
                    None => {
                        self.seen.remove(&l.key);
                    }
                }
            }
            stats.reads = fetch.len();
            self.copy.put_many(items)?;
        }
        if stats.reads > 0 || stats.removed > 0 {
            self.generation += 1;
        }
        Ok(stats)
    }

    /// Reads these records (known by name, not listed: one batch of GETs, no LIST) into
    /// the copy, with the versions the answers carry. A missing one is left out; a later
    /// listing of its prefix finds it.
    pub fn fetch(&mut self, keys: &[String]) -> Result<SyncStats, StoreError> {
        let got = self.real.get_many_versioned(keys)?;
        let mut items = vec![];
        for (bytes, l) in got.into_iter().flatten() {
            self.seen.insert(l.key.clone(), Seen { version: l.version, modified_unix: l.modified_unix, size: l.size });
            items.push((l.key, bytes));
        }
        let stats = SyncStats { lists: 0, reads: keys.len(), removed: 0 };
        if !items.is_empty() {
            self.copy.put_many(items)?;
            self.generation += 1;
        }
        Ok(stats)
    }

    /// An on-demand object (a picture, a job log) as the last listing showed it: read
    /// once per version. None when no listing showed it.
    pub fn read_on_demand(&mut self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let Some(seen) = self.seen.get(key) else { return Ok(None) };
        if let Some((v, b)) = self.on_demand.get(key) {
            if *v == seen.version {
                return Ok(Some(b.clone()));
            }
        }
        let version = seen.version.clone();
        let Some(b) = self.real.get(key)? else { return Ok(None) };
        self.on_demand.insert(key.to_string(), (version, b.clone()));
        Ok(Some(b))
    }

    /// Keys the mirror knows of under `prefix`, sorted.
    pub fn keys_under(&self, prefix: &str) -> Vec<String> {
        self.seen
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The earliest and latest modification (Unix seconds) of what the mirror knows under
    /// `prefix`; None when it knows nothing there.
    pub fn modified_range(&self, prefix: &str) -> Option<(i64, i64)> {
        let mut it = self.seen.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix));
        let first = it.next()?.1.modified_unix;
        Some(it.fold((first, first), |(lo, hi), (_, s)| (lo.min(s.modified_unix), hi.max(s.modified_unix))))
    }

    /// The version of a known object (what its listing said).
    pub fn version(&self, key: &str) -> Option<&str> {
        self.seen.get(key).map(|s| s.version.as_str())
    }

    /// The size of a known object.
    pub fn size(&self, key: &str) -> Option<u64> {
        self.seen.get(key).map(|s| s.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_copied_and_the_rest_is_not() {
        assert_eq!(kind("runs/a/status.json"), Kind::Record);
        assert_eq!(kind("runs/a/attempts/1-h-2.json"), Kind::Record);
        assert_eq!(kind("runs/a/jobs/12.json"), Kind::Record);
        assert_eq!(kind("runs/a/jobs/12.sbatch"), Kind::Skipped);
        assert_eq!(kind("runs/a/checkpoints/unified/epoch_0001.safetensors"), Kind::Skipped);
        assert_eq!(kind("runs/a/predictions/bottle.safetensors"), Kind::Skipped);
        assert_eq!(kind("runs/a/pixel_histograms.safetensors"), Kind::Skipped);
        assert_eq!(kind("runs/a/evals/test_jitter_20.pixels.safetensors"), Kind::Skipped);
        assert_eq!(kind("runs/a/rungs/27.json"), Kind::Record, "a search's rung records (its sweep page)");
        assert_eq!(kind("runs/a/pictures/bottle/good_000.png"), Kind::OnDemand);
        assert_eq!(kind("runs/a/logs/123.log"), Kind::OnDemand);
        assert_eq!(kind("sweeps/s/manifest.json"), Kind::Record);
        assert_eq!(kind("sweeps/s/claims/r.1"), Kind::Record);
        assert_eq!(kind("sweeps/s/launches/r.1.host.12"), Kind::Skipped);
        assert_eq!(kind("features/x/bottle.safetensors"), Kind::Skipped);
    }

    #[test]
    fn a_refresh_reads_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let real = Store::open(dir.path().to_str().unwrap()).unwrap();
        real.put("runs/a/status.json", "{}").unwrap();
        real.put("runs/a/train_log.jsonl", "x\n").unwrap();
        real.put("runs/a/checkpoints/unified/epoch_0001.json", "{}").unwrap();
        let mut m = Mirror::new(real.clone()).unwrap();
        let all = |_: &str| true;
        let s = m.sync(&["runs/".into()], &all).unwrap();
        assert_eq!((s.lists, s.reads, s.removed), (1, 2, 0));
        assert_eq!(m.copy().get("runs/a/status.json").unwrap().unwrap().as_ref(), b"{}");
        assert!(m.copy().get("runs/a/checkpoints/unified/epoch_0001.json").unwrap().is_none());
        let g = m.generation();
        assert_eq!(m.sync(&["runs/".into()], &all).unwrap(), SyncStats { lists: 1, reads: 0, removed: 0 });
        assert_eq!(m.generation(), g, "nothing changed: same generation");
        // A changed object (other size: its version changes even where mtimes are coarse).
        real.put("runs/a/train_log.jsonl", "x\ny\n").unwrap();
        real.delete("runs/a/status.json").unwrap();
        let s = m.sync(&["runs/".into()], &all).unwrap();
        assert_eq!((s.reads, s.removed), (1, 1));
        assert!(m.generation() > g);
        assert_eq!(m.copy().get("runs/a/train_log.jsonl").unwrap().unwrap().as_ref(), b"x\ny\n");
        assert!(m.copy().get("runs/a/status.json").unwrap().is_none());
    }
}
