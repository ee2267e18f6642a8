//! Sweep files (`jobs/*.toml`) as people write them: a base config (or one per dataset),
//! settings, grid axes, explicit override sets and common overrides. Expanding one into
//! runs is the sweep module's job (`expand`); this file only reads and checks the file.

use super::kinds::Setting;
use super::run::RunConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SweepFileError {
    #[error("cannot read sweep file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sweep file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "sweep file {path}: {key} = {wanted:?} not found; looked in {}. Give a path relative to the sweep file's folder, or an absolute one (a sweep file kept in a jobs/ folder also finds configs/ beside it)",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    ConfigNotFound { path: PathBuf, key: String, wanted: PathBuf, tried: Vec<PathBuf> },
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
    /// Another base config for the runs of one grid value, in place of `base`:
    /// `[bases."model.decoder"] uniad = "configs/uniad-mvtec.toml"` trains the `uniad` runs
    /// from that preset (their own recipe), the grid's and `[set]`'s overrides applied on
    /// top. Their dataset group stays `base`'s stem, so the report sets them in the same
    /// tables. One grid axis at most; only with `base`.
    #[serde(default)]
    pub bases: BTreeMap<String, BTreeMap<String, PathBuf>>,
    /// Explicit override sets (each one a run, crossed with the grid).
    #[serde(default)]
    pub runs: Vec<BTreeMap<String, toml::Value>>,
    /// Free text shown by `ras plan` (e.g. how to re-evaluate without retraining).
    pub note: Option<String>,
    /// Which rows of the paper's tables the sweep's variants reproduce (`ras report`).
    pub paper: Option<PaperMatch>,
    /// Every variant once per seed (`seeds = [0, 1, 2]`): the sweep's `seed` grid axis,
    /// which the report averages over (mean ± std, and a verdict against the paper).
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// How the runs are searched: a grid (the default) or successive halving.
    pub search: Option<super::search::SearchConfig>,
}

/// `[paper]` of a sweep file: which row of which paper table each variant reproduces,
/// spelled out, so that `ras report` never guesses a match from a class name. The row and
/// method are templates over a run's resolved config (`{model.decoder}`,
/// `{model.encoder_layers}`), plus `{class}` (each class, and "mean"), `{alpha}` (a
/// test-time noise scale) and `{dataset}` (the dataset kind); the dataset and setting
/// columns of configs/paper-tables.csv are the run's own `dataset.kind` and `train.setting`.
///
/// ```toml
/// [paper]
/// tables = ["table4"]
/// row = "{model.decoder}"
/// [paper.rename."model.decoder"]
/// ras = "gate_and_transformer"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PaperMatch {
    /// Paper tables (`table1` .. `table6`, as configs/paper-tables.csv names them); a metric
    /// is looked up in each in turn (Table 1 holds image AUROC, Table 2 pixel AUROC).
    pub tables: Vec<String>,
    /// The row key (the csv's `class` column). Without `{class}` only the mean over classes
    /// is compared. Default `{class}`.
    #[serde(default = "class_template")]
    pub row: String,
    /// The method column (`RAS`, `UniAD`). Default `RAS`.
    #[serde(default = "ras_method")]
    pub method: String,
    /// Config values renamed in templates: `[paper.rename."model.decoder"] ras = "..."`.
    #[serde(default)]
    pub rename: BTreeMap<String, BTreeMap<String, String>>,
    /// The report's layout: `classes` (a row per class, Tables 1-2), `rows` (a row per
    /// variant, Tables 3-4), `grid` (Table 5), `noise` (a column per noise scale, Table 6).
    /// Default: by the first table.
    pub layout: Option<PaperLayout>,
    /// For `layout = "grid"`: the config keys of the grid's rows and columns (default
    /// `model.encoder_layers`, `model.decoder_layers`).
    pub grid: Option<[String; 2]>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PaperLayout {
    Classes,
    Rows,
    Grid,
    Noise,
}

/// The value of dotted `key` in a resolved config as a template shows it: strings
/// unquoted, whole floats without ".0" (`model.decoder` -> `ras`, `eval.test_jitter_scale` -> `30`).
pub fn config_value(cfg: &RunConfig, key: &str) -> Option<String> {
    lookup(&toml::Value::try_from(cfg).ok()?, key)
}

fn lookup(value: &toml::Value, key: &str) -> Option<String> {
    let mut v = value;
    for part in key.split('.') {
        v = v.get(part)?;
    }
    Some(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => alpha(*f),
        other => other.to_string(),
    })
}

/// A number as the paper writes it: whole numbers without ".0" (`alpha=30`).
pub fn alpha(a: f64) -> String {
    if a.fract() == 0.0 && a.abs() < 1e15 {
        format!("{}", a as i64)
    } else {
        format!("{a}")
    }
}

fn class_template() -> String {
    "{class}".into()
}

fn ras_method() -> String {
    "RAS".into()
}

impl PaperMatch {
    pub fn layout(&self) -> PaperLayout {
        self.layout.unwrap_or(match self.tables.first().map(String::as_str) {
            Some("table3" | "table4") => PaperLayout::Rows,
            Some("table5") => PaperLayout::Grid,
            Some("table6") => PaperLayout::Noise,
            _ => PaperLayout::Classes,
        })
    }

    /// `template` with every `{key}` replaced: `class`, `alpha`, `dataset`, or a dotted key
    /// of the resolved config (renamed through `rename`). An unknown key, or `{alpha}`
    /// without a noise scale, is an error naming it.
    pub fn render(&self, template: &str, cfg: &RunConfig, class: &str, scale: Option<f64>) -> Result<String, String> {
        let value = toml::Value::try_from(cfg).map_err(|e| e.to_string())?;
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out += &rest[..start];
            let end =
                rest[start..].find('}').ok_or_else(|| format!("[paper] template {template:?}: unclosed '{{'"))? + start;
            let key = &rest[start + 1..end];
            let text = match key {
                "class" => class.to_string(),
                "dataset" => cfg.dataset.kind.to_string(),
                "alpha" => alpha(
                    scale.ok_or_else(|| format!("[paper] template {template:?}: {{alpha}} outside a noise table"))?,
                ),
                _ => lookup(&value, key)
                    .ok_or_else(|| format!("[paper] template {template:?}: no config key {key:?}"))?,
            };
            out += self.rename.get(key).and_then(|r| r.get(&text)).unwrap_or(&text);
            rest = &rest[end + 1..];
        }
        out += rest;
        Ok(out)
    }

    /// Renders the row and method templates for `cfg` (a mean cell, noise 0): the check
    /// `ras plan` and `ras sweep` make before anything runs.
    pub fn check(&self, cfg: &RunConfig) -> Result<(), String> {
        self.render(&self.row, cfg, "mean", Some(0.0))?;
        self.render(&self.method, cfg, "mean", Some(0.0))?;
        Ok(())
    }

    pub fn grid_keys(&self) -> [String; 2] {
        self.grid.clone().unwrap_or_else(|| ["model.encoder_layers".into(), "model.decoder_layers".into()])
    }
}

fn default_retries() -> usize {
    1
}

impl SweepFile {
    pub fn load(path: &Path) -> Result<(Self, String), SweepFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| SweepFileError::Read { path: path.into(), source })?;
        let file: SweepFile =
            toml::from_str(&text).map_err(|e| SweepFileError::Invalid { path: path.into(), message: e.to_string() })?;
        let name = match &file.name {
            Some(n) => n.clone(),
            None => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(SweepFileError::Invalid {
                path: path.into(),
                message: format!("name {name:?} must be ASCII letters, digits, '-', '_' or '.'"),
            });
        }
        if file.base.is_some() != file.datasets.is_empty() {
            return Err(SweepFileError::Invalid {
                path: path.into(),
                message: "give exactly one of `base = \"configs/x.toml\"` or `datasets = [...]`".into(),
            });
        }
        if file.ranks == Some(0) {
            return Err(SweepFileError::Invalid { path: path.into(), message: "ranks must be at least 1".into() });
        }
        if let Some(paper) = &file.paper {
            const TABLES: [&str; 6] = ["table1", "table2", "table3", "table4", "table5", "table6"];
            if paper.tables.is_empty() || paper.tables.iter().any(|t| !TABLES.contains(&t.as_str())) {
                return Err(SweepFileError::Invalid {
                    path: path.into(),
                    message: format!("[paper] tables = {:?}: give one or more of {TABLES:?}", paper.tables),
                });
            }
        }
        file.check_bases().map_err(|message| SweepFileError::Invalid { path: path.into(), message })?;
        let mut file = file;
        if !file.seeds.is_empty() {
            let mut unique = file.seeds.clone();
            unique.sort_unstable();
            unique.dedup();
            let message = if file.grid.contains_key("seed") {
                Some("give seeds = [...] or a [grid] seed axis, not both".to_string())
            } else if unique.len() != file.seeds.len() {
                Some(format!("seeds = {:?} names a seed twice", file.seeds))
            } else {
                None
            };
            if let Some(message) = message {
                return Err(SweepFileError::Invalid { path: path.into(), message });
            }
            // One owner: `seeds` is the grid's seed axis.
            let values = file.seeds.iter().map(|s| toml::Value::Integer(*s as i64)).collect();
            file.grid.insert("seed".into(), values);
        }
        for (k, v) in &file.grid {
            if v.is_empty() {
                return Err(SweepFileError::Invalid {
                    path: path.into(),
                    message: format!("grid axis {k:?} has no values"),
                });
            }
        }
        Ok((file, name))
    }
}

impl SweepFile {
    /// `[bases]` names one grid axis and values of it, with `base` (not `datasets`).
    fn check_bases(&self) -> Result<(), String> {
        if self.bases.is_empty() {
            return Ok(());
        }
        if self.base.is_none() {
            return Err("[bases] replaces `base` for some grid values: give `base`, not `datasets`".into());
        }
        if self.bases.len() > 1 {
            let axes: Vec<&String> = self.bases.keys().collect();
            return Err(format!("[bases] names {axes:?}: give another base for the values of one grid axis only"));
        }
        for (axis, by_value) in &self.bases {
            let Some(values) = self.grid.get(axis) else {
                return Err(format!("[bases.{axis:?}]: {axis:?} is not a [grid] axis"));
            };
            let texts: Vec<String> = values.iter().map(value_text).collect();
            if let Some(v) = by_value.keys().find(|v| !texts.contains(v)) {
                return Err(format!("[bases.{axis:?}] {v:?} is not a value of the grid axis {axis:?} ({texts:?})"));
            }
        }
        Ok(())
    }

    /// The base config of a grid point: `[bases]`'s for one of its values, else `base`.
    pub fn base_for(&self, point: &[(String, toml::Value)]) -> Option<&PathBuf> {
        point.iter().find_map(|(k, v)| self.bases.get(k)?.get(&value_text(v)))
    }
}

/// A grid value as `[bases]` keys name it: strings unquoted, anything else as TOML writes it.
fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Where a config path of a sweep file (`base`, an entry of `datasets`) points, the first
/// that exists of: the path itself when absolute; relative to the sweep file's own folder;
/// relative to the repository (the sweep file's folder's parent, so that `jobs/x.toml`
/// naming `configs/y.toml` works from any current folder); relative to the current folder
/// (as before sweep files resolved against their own folder). None existing: relative to
/// the sweep file's folder, so that the error names where it was looked for.
pub fn resolve_config_path(sweep_path: &Path, p: &Path) -> PathBuf {
    let tried = config_path_candidates(sweep_path, p);
    tried.iter().find(|c| c.exists()).unwrap_or(&tried[0]).clone()
}

/// The places `resolve_config_path` looks, in its order.
fn config_path_candidates(sweep_path: &Path, p: &Path) -> Vec<PathBuf> {
    if p.is_absolute() {
        return vec![p.to_path_buf()];
    }
    let dir = sweep_path.parent().unwrap_or(Path::new(""));
    let mut tried = vec![dir.join(p)];
    tried.extend(dir.parent().map(|r| r.join(p)));
    tried.push(p.to_path_buf());
    tried
}

/// `key = p` of the sweep file at `sweep_path` (`base`, `datasets`, a `[bases]` entry):
/// where `resolve_config_path` finds it, or an error listing every place it looked.
pub fn locate_config(sweep_path: &Path, key: &str, p: &Path) -> Result<PathBuf, SweepFileError> {
    let tried = config_path_candidates(sweep_path, p);
    match tried.iter().find(|c| c.exists()) {
        Some(found) => Ok(found.clone()),
        None => {
            // Listed as absolute paths, once each: "configs/x.toml" says nothing of where.
            let cwd = std::env::current_dir().unwrap_or_default();
            let mut listed: Vec<PathBuf> = vec![];
            for t in tried {
                let abs: PathBuf = cwd.join(t).components().filter(|c| *c != std::path::Component::CurDir).collect();
                if !listed.contains(&abs) {
                    listed.push(abs);
                }
            }
            Err(SweepFileError::ConfigNotFound {
                path: sweep_path.to_path_buf(),
                key: key.to_string(),
                wanted: p.to_path_buf(),
                tried: listed,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_paths_resolve_against_the_sweep_folder_then_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("jobs/configs")).unwrap();
        std::fs::create_dir_all(d.join("configs")).unwrap();
        std::fs::write(d.join("jobs/configs/own.toml"), "").unwrap();
        std::fs::write(d.join("configs/repo.toml"), "").unwrap();
        std::fs::write(d.join("configs/own.toml"), "").unwrap();
        let sweep = d.join("jobs/s.toml");
        assert_eq!(
            resolve_config_path(&sweep, Path::new("configs/own.toml")),
            d.join("jobs/configs/own.toml"),
            "own folder first"
        );
        assert_eq!(
            resolve_config_path(&sweep, Path::new("configs/repo.toml")),
            d.join("configs/repo.toml"),
            "then the repository"
        );
        assert_eq!(resolve_config_path(&sweep, Path::new("configs/none.toml")), d.join("jobs/configs/none.toml"));
        let err = locate_config(&sweep, "base", Path::new("configs/none.toml")).unwrap_err().to_string();
        let cwd = std::env::current_dir().unwrap();
        for place in [d.join("jobs/configs/none.toml"), d.join("configs/none.toml"), cwd.join("configs/none.toml")] {
            assert!(err.contains(&place.display().to_string()), "{place:?} not listed: {err}");
        }
        assert!(err.contains("base = \"configs/none.toml\" not found"), "{err}");
        assert_eq!(locate_config(&sweep, "base", Path::new("configs/repo.toml")).unwrap(), d.join("configs/repo.toml"));
        assert_eq!(resolve_config_path(&sweep, Path::new("/abs/x.toml")), PathBuf::from("/abs/x.toml"));
    }
}
