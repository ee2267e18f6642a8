//! Expansion: a sweep file becomes its runs (datasets x settings x explicit override
//! sets x grid points, `separate` one run per class), each a validated, resolved config
//! with a stable run id, a label, its ranks and its cost.

use super::{plan, SweepError};
use crate::config::overrides::format as kv;
use crate::config::sweep_file::resolve_config_path;
use crate::config::{RunConfig, Setting, SweepFile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One expanded run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlannedRun {
    pub id: String,
    /// What distinguishes it in the sweep (`mvtec model.encoder_layers=0 class=bottle`).
    pub label: String,
    /// The same label without the seed: runs that differ only by seed share a variant.
    pub variant: String,
    /// Base config stem (`mvtec`, `demo`): the report groups tables by it.
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
}

impl PlannedRun {
    pub fn config(&self) -> RunConfig {
        RunConfig::from_toml(&self.config_toml, Path::new("manifest")).expect("manifest configs were validated")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub store: String,
    pub max_retries: usize,
    pub note: Option<String>,
    /// The sweep file's `[paper]`: which paper rows its variants reproduce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper: Option<crate::config::PaperMatch>,
    /// In launch order (feature-cache fillers first, then longest first).
    pub runs: Vec<PlannedRun>,
}

/// Options of an expansion that come from the command line.
#[derive(Debug, Clone, Default)]
pub struct ExpandOptions {
    /// `--store URL`: every run and the sweep state go there.
    pub store: Option<String>,
    /// `--set k=v` on the command line, applied after the sweep's own.
    pub overrides: Vec<String>,
    /// Slots of the cluster (caps the planner's rank choice).
    pub max_ranks: usize,
}

/// Expands a sweep file into its runs, validating every resolved config.
pub fn expand(path: &Path, opts: &ExpandOptions) -> Result<Manifest, SweepError> {
    let (file, name) = SweepFile::load(path)?;
    let bases: Vec<PathBuf> = match &file.base {
        Some(b) => vec![b.clone()],
        None => file.datasets.clone(),
    };
    let settings: Vec<Option<Setting>> = match &file.setting {
        None => vec![None],
        Some(s) => s.to_vec().into_iter().map(Some).collect(),
    };
    let explicit: Vec<BTreeMap<String, toml::Value>> = if file.runs.is_empty() { vec![BTreeMap::new()] } else { file.runs.clone() };
    // Cartesian product of the grid axes (BTreeMap order: deterministic).
    let mut points: Vec<Vec<(String, toml::Value)>> = vec![vec![]];
    for (key, values) in &file.grid {
        points = points
            .into_iter()
            .flat_map(|p| values.iter().map(move |v| [p.clone(), vec![(key.clone(), v.clone())]].concat()))
            .collect();
    }
    let mut runs = vec![];
    let mut store = opts.store.clone();
    for base in &bases {
        let base_path = resolve_config_path(path, base);
        let stem = base_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        for setting in &settings {
            for run in &explicit {
                for point in &points {
                    let mut over: Vec<String> = file.set.iter().map(|(k, v)| kv(k, v)).collect();
                    let mut label_parts: Vec<String> = vec![];
                    for (k, v) in run.iter().chain(point.iter().map(|(k, v)| (k, v))) {
                        over.push(kv(k, v));
                        label_parts.push(kv(k, v));
                    }
                    if let Some(s) = setting {
                        over.push(format!("train.setting=\"{s}\""));
                    }
                    over.extend(opts.overrides.iter().cloned());
                    if let Some(url) = &opts.store {
                        over.push(format!("store={}", toml::Value::String(url.clone())));
                    }
                    let label0 = [vec![stem.clone()], label_parts.clone()].concat().join(" ");
                    let cfg = RunConfig::load(&base_path, &over)
                        .map_err(|source| SweepError::Config { sweep: name.clone(), label: label0.clone(), source })?;
                    let mut expanded: Vec<(RunConfig, String)> = vec![];
                    if cfg.train.setting == Setting::Separate {
                        let classes = discover_classes(&cfg).map_err(|message| SweepError::Invalid { path: path.into(), message })?;
                        for class in classes {
                            let mut o = over.clone();
                            o.push(format!("dataset.classes=[{}]", toml::Value::String(class.clone())));
                            o.push(format!("name=\"{}-{}\"", cfg.name, class));
                            let label = format!("{label0} separate class={class}");
                            let c = RunConfig::load(&base_path, &o)
                                .map_err(|source| SweepError::Config { sweep: name.clone(), label: label.clone(), source })?;
                            expanded.push((c, label));
                        }
                    } else {
                        expanded.push((cfg, label0.clone()));
                    }
                    for (c, label) in expanded {
                        store.get_or_insert_with(|| c.store.clone());
                        let variant = label.split(' ').filter(|p| !p.starts_with("seed=")).collect::<Vec<_>>().join(" ");
                        runs.push(plan::planned(c, label, variant, stem.clone(), file.ranks, opts.max_ranks));
                    }
                }
            }
        }
    }
    // The same resolved config twice is one run.
    let mut seen = std::collections::BTreeSet::new();
    runs.retain(|r: &PlannedRun| seen.insert(r.id.clone()));
    // The [paper] templates must name keys every run has: a typo fails here, before
    // anything runs, not in the report after the sweep.
    if let Some(paper) = &file.paper {
        for r in &runs {
            paper.check(&r.config()).map_err(|message| SweepError::Invalid { path: path.to_path_buf(), message: format!("run {}: {message}", r.label) })?;
        }
    }
    let runs = plan::order(runs);
    Ok(Manifest { name, store: store.unwrap_or_default(), max_retries: file.max_retries, note: file.note, paper: file.paper, runs })
}

fn discover_classes(cfg: &RunConfig) -> Result<Vec<String>, String> {
    if !cfg.dataset.classes.is_empty() {
        return Ok(cfg.dataset.classes.clone());
    }
    match crate::data::scan(&cfg.dataset) {
        Ok(index) => Ok(index.class_names()),
        Err(e) => match cfg.dataset.kind.published_classes() {
            Some(list) => {
                tracing::warn!("dataset {} not readable here ({e}); expanding `separate` with the published class list", cfg.dataset.root.display());
                Ok(list.iter().map(|s| s.to_string()).collect())
            }
            None => Err(format!(
                "setting separate needs the class list: cannot scan {} ({e}); set \"dataset.classes\" in the sweep's [set]",
                cfg.dataset.root.display()
            )),
        },
    }
}

