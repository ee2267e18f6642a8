//! The sweep manifest (`sweeps/<name>/manifest.json`): the expanded runs a coordinator
//! launches, which `ras status|report|cancel NAME` read back without the sweep file.
//!
//! It is a file format shared by every version of `ras` that touches the store, so it
//! says which format it is (`format_version`) and which `ras` wrote it (`written_by`),
//! and every read of a stored manifest goes through [`Manifest::read`]: a format this
//! version does not know, JSON that does not parse, or a run config this version cannot
//! parse (a key added by a newer `ras`) is refused there, once, with the key and what to
//! do, instead of failing later in the middle of a status pass, or panicking.

use super::paths::SweepPaths;
use super::SweepError;
use crate::config::RunConfig;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The manifest format this version writes and reads. A manifest without the field is
/// format 1: it was written before the field existed, in the same layout. Raise it for
/// a change an older `ras` would misread (not for an added optional field: older
/// versions ignore fields they do not know).
pub const MANIFEST_FORMAT: u32 = 1;

/// This `ras`'s version, recorded in the manifests it writes.
pub const RAS_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One expanded run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlannedRun {
    pub id: String,
    /// What distinguishes it in the sweep (`mvtec model.encoder_layers=0 class=bottle`).
    pub label: String,
    /// The same label without the seed: runs that differ only by seed share a variant.
    pub variant: String,
    /// Base config stem (`mvtec`, `demo`): the report groups tables by it. A run of a
    /// `[bases]` grid value keeps the sweep's `base` stem (it belongs in the same tables).
    pub dataset: String,
    pub config_toml: String,
    pub ranks: usize,
    pub train_images: usize,
    /// Test images (the evaluation's work); 0 in manifests older than cost estimates.
    #[serde(default)]
    pub test_images: usize,
    /// Relative training cost (train images x epochs x GFLOPs per image).
    pub cost: f64,
    /// Feature-cache key proxy (dataset root + backbone identity): the cache is per class,
    /// so the first run on a dataset fills it for every later one.
    pub feature_key: String,
    /// The plan's cost estimate (`ras plan`, and `ras sweep` before it launches): kept in
    /// the stored manifest so the report sets it against the measured cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<super::estimate::Estimate>,
    /// The config as last parsed from `config_toml` (not stored): a page or report that
    /// asks for the configs of thousands of runs several times parses each once.
    #[serde(skip)]
    pub parsed: ParsedConfig,
}

/// A run's config parsed from its TOML text, kept with the text it came from (so a changed
/// `config_toml` is parsed again). Compares equal to any other: it is a cache, not data.
#[derive(Debug, Clone, Default)]
pub struct ParsedConfig(std::sync::Arc<std::sync::Mutex<Option<(String, RunConfig)>>>);

impl PartialEq for ParsedConfig {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl PlannedRun {
    /// The run's resolved config. An expanded run's always parses, and so does every run
    /// of a manifest [`Manifest::read`] returned (it parsed them all); Err only for a
    /// manifest deserialised some other way, naming the run and what does not parse.
    pub fn config(&self) -> Result<RunConfig, SweepError> {
        let fix = "the manifest was written by another version of ras, or changed since: read this sweep with the ras that wrote it";
        self.parse_config("a sweep manifest", fix)
    }

    /// `manifest` names the manifest in the error, `fix` says what to do.
    fn parse_config(&self, manifest: &str, fix: &str) -> Result<RunConfig, SweepError> {
        let mut memo = self.parsed.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((text, cfg)) = memo.as_ref() {
            if *text == self.config_toml {
                return Ok(cfg.clone());
            }
        }
        let cfg = RunConfig::from_toml(&self.config_toml, Path::new("config_toml")).map_err(|error| {
            SweepError::ManifestConfig {
                manifest: manifest.to_string(),
                run: self.id.clone(),
                fix: fix.to_string(),
                error: Box::new(error),
            }
        })?;
        *memo = Some((self.config_toml.clone(), cfg.clone()));
        Ok(cfg)
    }
}

fn format_1() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// The layout of this record: [`MANIFEST_FORMAT`] when this version wrote it; 1 when
    /// absent (manifests older than the field).
    #[serde(default = "format_1")]
    pub format_version: u32,
    /// The version of `ras` that wrote it; None in manifests older than the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
    pub name: String,
    pub store: String,
    pub max_retries: usize,
    pub note: Option<String>,
    /// The sweep file's `[paper]`: which paper rows its variants reproduce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper: Option<crate::config::PaperMatch>,
    /// The sweep file's `[search]`, resolved (None: a grid, every run to its last epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<crate::config::search::Search>,
    /// In launch order (feature-cache fillers first, then longest first).
    pub runs: Vec<PlannedRun>,
}

/// Who wrote a manifest, for messages: `ras 0.1.0`, or a `ras` older than the field.
fn writer(written_by: Option<&str>) -> String {
    match written_by {
        Some(v) => format!("ras {v}"),
        None => "a ras that did not record its version".to_string(),
    }
}

impl Manifest {
    /// The stored manifest of sweep `name`; None when the store has none. The one way a
    /// stored manifest is read: a format other than [`MANIFEST_FORMAT`], a record that
    /// does not parse, or a run config this version cannot parse is an error naming the
    /// key, the store and the fix (see [`SweepError::ManifestFormat`],
    /// [`SweepError::ManifestCorrupt`], [`SweepError::ManifestConfig`]).
    pub fn read(store: &Store, name: &str) -> Result<Option<Manifest>, SweepError> {
        let key = SweepPaths::new(name).manifest();
        let Some(bytes) = store.get(&key)? else { return Ok(None) };
        let corrupt =
            |problem: String| SweepError::ManifestCorrupt { key: key.clone(), url: store.url().to_string(), problem };
        // The version first, from the JSON alone: a newer format need not deserialise
        // as this version's Manifest, and its error would hide the real reason.
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("is not valid JSON ({e})")))?;
        let written_by = value.get("written_by").and_then(|w| w.as_str()).map(String::from);
        let format = match value.get("format_version") {
            None => Some(u64::from(format_1())),
            Some(v) => v.as_u64(),
        };
        if format != Some(u64::from(MANIFEST_FORMAT)) {
            return Err(SweepError::ManifestFormat {
                key,
                url: store.url().to_string(),
                found: value.get("format_version").map(|v| v.to_string()).unwrap_or_default(),
                writer: writer(written_by.as_deref()),
            });
        }
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| corrupt(format!("does not read as a sweep manifest of format {MANIFEST_FORMAT} ({e})")))?;
        let place = format!("{key} in {}", store.url());
        manifest.configs_in(&place)?;
        Ok(Some(manifest))
    }

    /// Every run's config, in manifest order, parsed once; Err names this manifest's key,
    /// the first run whose config does not parse, and the fix.
    pub fn configs(&self) -> Result<Vec<RunConfig>, SweepError> {
        self.configs_in(&SweepPaths::new(self.name.as_str()).manifest())
    }

    fn configs_in(&self, place: &str) -> Result<Vec<RunConfig>, SweepError> {
        // Written by this very version, a config that does not parse was changed since.
        let fix = match self.written_by.as_deref() {
            Some(v) if v == RAS_VERSION => format!(
                "the manifest was written by this version of ras ({v}) and changed since: restore it, or delete it (the next `ras sweep` of the sweep file writes it again)"
            ),
            w => format!(
                "the manifest was written by {}: read this sweep with that version of ras (or a newer one)",
                writer(w)
            ),
        };
        self.runs.iter().map(|r| r.parse_config(place, &fix)).collect()
    }

    /// Marks the manifest as written by this version, in this version's format (what
    /// every write of it does).
    pub fn stamped(mut self) -> Self {
        self.format_version = MANIFEST_FORMAT;
        self.written_by = Some(RAS_VERSION.to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, config_toml: &str) -> PlannedRun {
        PlannedRun {
            id: id.into(),
            label: id.into(),
            variant: id.into(),
            dataset: "d".into(),
            config_toml: config_toml.into(),
            ranks: 1,
            train_images: 1,
            test_images: 1,
            cost: 1.0,
            feature_key: String::new(),
            estimate: None,
            parsed: Default::default(),
        }
    }

    fn manifest(runs: Vec<PlannedRun>) -> Manifest {
        Manifest {
            format_version: MANIFEST_FORMAT,
            written_by: None,
            name: "s".into(),
            store: String::new(),
            max_retries: 0,
            note: None,
            paper: None,
            search: None,
            runs,
        }
        .stamped()
    }

    const GOOD: &str = "name = \"a\"\n[dataset]\nroot = \"/nowhere\"\n";

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        (dir, store)
    }

    /// The stored JSON of a manifest, edited.
    fn stored(m: &Manifest, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> Vec<u8> {
        let mut v = serde_json::to_value(m).unwrap();
        edit(v.as_object_mut().unwrap());
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_manifest_round_trips_and_one_without_a_version_is_format_1() {
        let (_dir, store) = store();
        assert!(Manifest::read(&store, "s").unwrap().is_none());
        let m = manifest(vec![run("a-1", GOOD)]);
        assert_eq!((m.format_version, m.written_by.as_deref()), (1, Some(RAS_VERSION)));
        store.put_json("sweeps/s/manifest.json", &m).unwrap();
        assert_eq!(Manifest::read(&store, "s").unwrap(), Some(m.clone()));
        // Today's stores: written before the two fields existed.
        store
            .put(
                "sweeps/s/manifest.json",
                stored(&m, |o| {
                    o.remove("format_version");
                    o.remove("written_by");
                }),
            )
            .unwrap();
        let old = Manifest::read(&store, "s").unwrap().unwrap();
        assert_eq!((old.format_version, old.written_by), (1, None));
        assert_eq!(old.runs, m.runs);
    }

    #[test]
    fn a_newer_format_is_refused_naming_key_version_and_writer() {
        let (_dir, store) = store();
        let m = manifest(vec![run("a-1", GOOD)]);
        let newer = stored(&m, |o| {
            o.insert("format_version".into(), 99.into());
            o.insert("written_by".into(), "9.9.9".into());
            // A newer format may change anything: the version is read first.
            o.insert("runs".into(), "elsewhere".into());
        });
        store.put("sweeps/s/manifest.json", newer).unwrap();
        let err = Manifest::read(&store, "s").unwrap_err();
        assert!(matches!(err, SweepError::ManifestFormat { .. }), "{err:?}");
        let err = err.to_string();
        for needle in ["sweeps/s/manifest.json", store.url(), "format 99", "written by ras 9.9.9", "reads format 1"] {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
        let odd = stored(&m, |o| {
            o.insert("format_version".into(), "two".into());
        });
        store.put("sweeps/s/manifest.json", odd).unwrap();
        let err = Manifest::read(&store, "s").unwrap_err().to_string();
        assert!(err.contains("format \"two\"") && err.contains("sweeps/s/manifest.json"), "{err}");
    }

    #[test]
    fn json_that_does_not_parse_is_an_error_naming_the_key() {
        let (_dir, store) = store();
        store.put("sweeps/s/manifest.json", b"{\"name\": \"s\", \"runs\": [".to_vec()).unwrap();
        let err = Manifest::read(&store, "s").unwrap_err();
        assert!(matches!(err, SweepError::ManifestCorrupt { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("sweeps/s/manifest.json") && err.contains("not valid JSON"), "{err}");
        store.put("sweeps/s/manifest.json", b"{\"name\": \"s\"}".to_vec()).unwrap();
        let err = Manifest::read(&store, "s").unwrap_err().to_string();
        assert!(err.contains("sweeps/s/manifest.json") && err.contains("missing field"), "{err}");
    }

    #[test]
    fn a_config_this_version_cannot_parse_names_the_run() {
        let (_dir, store) = store();
        let bad = format!("future_key = 1\n{GOOD}");
        let mut m = manifest(vec![run("a-1", GOOD), run("b-2", &bad)]);
        m.written_by = Some("9.9.9".into());
        store.put_json("sweeps/s/manifest.json", &m).unwrap();
        let err = Manifest::read(&store, "s").unwrap_err();
        assert!(matches!(&err, SweepError::ManifestConfig { run, .. } if run == "b-2"), "{err:?}");
        let err = err.to_string();
        for needle in ["sweeps/s/manifest.json", "run b-2", "future_key", "written by ras 9.9.9", "that version of ras"]
        {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
        // The same error from the manifest in hand, and from the run alone.
        let err = m.configs().unwrap_err().to_string();
        assert!(err.contains("sweeps/s/manifest.json") && err.contains("run b-2"), "{err}");
        let err = m.runs[1].config().unwrap_err().to_string();
        assert!(err.contains("run b-2") && err.contains("future_key"), "{err}");
        assert_eq!(m.runs[0].config().unwrap().name, "a");
        // Written by this very version: the config was changed since.
        m.written_by = Some(RAS_VERSION.into());
        let err = m.configs().unwrap_err().to_string();
        assert!(err.contains("changed since") && err.contains("delete it"), "{err}");
    }
}
