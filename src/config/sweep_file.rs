//! Sweep files (`jobs/*.toml`) as people write them: a base config (or one per dataset),
//! settings, grid axes, explicit override sets and common overrides. Expanding one into
//! runs is the sweep module's job (`expand`); this file only reads and checks the file.

use super::kinds::Setting;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SweepFileError {
    #[error("cannot read sweep file {path}: {source}")]
    Read { path: PathBuf, #[source] source: std::io::Error },
    #[error("sweep file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// One value or a list of them (`setting = "unified"` or `setting = ["unified", "separate"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A `jobs/*.toml` file, as written by people. Unknown keys are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// Sweep name (the store prefix `sweeps/<name>/`); default: the file's stem.
    pub name: Option<String>,
    /// Base run config, relative to the repository (the folder above `jobs/`) or absolute.
    pub base: Option<PathBuf>,
    /// Several base configs (one per dataset); replaces `base`.
    #[serde(default)]
    pub datasets: Vec<PathBuf>,
    /// `unified`, `separate` (one run per class) or both.
    pub setting: Option<OneOrMany<Setting>>,
    /// How many times a failed run is launched again before it is marked failed for good.
    #[serde(default = "default_retries")]
    pub max_retries: usize,
    /// Ranks per run; default: chosen by the planner from the dataset size.
    pub ranks: Option<usize>,
    /// Overrides applied to every run (`"train.epochs" = 2`).
    #[serde(default)]
    pub set: BTreeMap<String, toml::Value>,
    /// Grid axes: every combination of these values is a run.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<toml::Value>>,
    /// Explicit override sets (each one a run, crossed with the grid).
    #[serde(default)]
    pub runs: Vec<BTreeMap<String, toml::Value>>,
    /// Free text shown by `ras plan` (e.g. how to re-evaluate without retraining).
    pub note: Option<String>,
}

fn default_retries() -> usize {
    1
}

impl SweepFile {
    pub fn load(path: &Path) -> Result<(Self, String), SweepFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| SweepFileError::Read { path: path.into(), source })?;
        let file: SweepFile = toml::from_str(&text).map_err(|e| SweepFileError::Invalid { path: path.into(), message: e.to_string() })?;
        let name = match &file.name {
            Some(n) => n.clone(),
            None => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(SweepFileError::Invalid { path: path.into(), message: format!("name {name:?} must be ASCII letters, digits, '-', '_' or '.'") });
        }
        if file.base.is_some() == !file.datasets.is_empty() {
            return Err(SweepFileError::Invalid {
                path: path.into(),
                message: "give exactly one of `base = \"configs/x.toml\"` or `datasets = [...]`".into(),
            });
        }
        if file.ranks == Some(0) {
            return Err(SweepFileError::Invalid { path: path.into(), message: "ranks must be at least 1".into() });
        }
        for (k, v) in &file.grid {
            if v.is_empty() {
                return Err(SweepFileError::Invalid { path: path.into(), message: format!("grid axis {k:?} has no values") });
            }
        }
        Ok((file, name))
    }
}

/// Where a config path of a sweep file points: absolute; relative to the current folder
/// if it exists there; else relative to the repository (the sweep file's folder's parent).
pub fn resolve_config_path(sweep_path: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() || p.exists() {
        return p.to_path_buf();
    }
    let repo = sweep_path.parent().and_then(|d| d.parent()).unwrap_or(Path::new("."));
    repo.join(p)
}

