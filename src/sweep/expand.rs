//! Expansion: a sweep file becomes its runs (datasets x settings x explicit override
//! sets x grid points, `separate` one run per class), each a validated, resolved config
//! with a stable run id, a label, its ranks and its cost.

use super::manifest::{Manifest, PlannedRun, MANIFEST_FORMAT, RAS_VERSION};
use super::{plan, SweepError};
use crate::config::overrides::format as kv;
use crate::config::sweep_file::{locate_config, resolve_config_path};
use crate::config::{RunConfig, Setting, SweepFile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of an expansion that come from the command line.
#[derive(Debug, Clone, Default)]
pub struct ExpandOptions {
    /// Refuse a sweep whose datasets do not hold what its runs name (the first
    /// [`DataIssue`] becomes [`SweepError::Data`]). Off (the library's default), a dataset
    /// that cannot be read is planned from its published sizes, silently: `ras plan` and
    /// `ras sweep` turn it on (`ras plan --no-data-check` does not) and use
    /// [`expand_checked`] to see every issue.
    pub check_data: bool,
    /// `--store URL`: every run and the sweep state go there.
    pub store: Option<String>,
    /// `--set k=v` on the command line, applied after the sweep's own.
    pub overrides: Vec<String>,
    /// Slots of the cluster (caps the planner's rank choice).
    pub max_ranks: usize,
}

/// What is wrong with the data one run names: a missing root, an unknown class, a class
/// with an empty train or test split. `key` is the config key to fix.
#[derive(Debug, Clone, PartialEq)]
pub struct DataIssue {
    pub run_id: String,
    pub label: String,
    pub key: &'static str,
    pub message: String,
}

impl DataIssue {
    pub fn into_error(self, sweep: &Path) -> SweepError {
        SweepError::Data { sweep: sweep.to_path_buf(), label: self.label, key: self.key, message: self.message }
    }
}

/// The scans of one expansion: each dataset (root, layout, metadata files) is scanned
/// once, whatever number of runs read it; each run's classes are then checked against
/// that one scan. A run's class list is not part of the key: the scan lists every class.
/// (dataset kind, root, train metadata, test metadata): what one scan of a dataset reads.
type ScanKey = (String, PathBuf, Option<PathBuf>, Option<PathBuf>);

#[derive(Default)]
pub struct DataScans {
    scans: BTreeMap<ScanKey, Result<std::sync::Arc<crate::data::Scan>, String>>,
    /// How many times a dataset was actually scanned (tests count them).
    pub scanned: usize,
}

impl DataScans {
    fn scan(&mut self, d: &crate::config::DatasetConfig) -> Result<std::sync::Arc<crate::data::Scan>, String> {
        let key = (d.kind.to_string(), d.root.clone(), d.train_meta.clone(), d.test_meta.clone());
        if let Some(r) = self.scans.get(&key) {
            return r.clone();
        }
        self.scanned += 1;
        let all = crate::config::DatasetConfig { classes: vec![], ..d.clone() };
        let r = crate::data::scan_all(&all).map(std::sync::Arc::new).map_err(|e| e.to_string());
        self.scans.insert(key, r.clone());
        r
    }

    /// The classes a config trains on, as its dataset holds them (every class found when
    /// it names none); Err: the key to fix and what is wrong.
    pub fn classes(&mut self, d: &crate::config::DatasetConfig) -> Result<Vec<String>, (&'static str, String)> {
        let scan = self.scan(d).map_err(|e| ("dataset.root", e))?;
        let found = scan.index.class_names();
        if d.classes.is_empty() {
            return Ok(found);
        }
        for c in &d.classes {
            if !found.contains(c) {
                return Err((
                    "dataset.classes",
                    format!("class {c:?} is not in {} (classes there: {})", d.root.display(), found.join(", ")),
                ));
            }
        }
        Ok(d.classes.clone())
    }

    /// Checks a config's dataset: the root exists and reads in its layout, every class it
    /// names exists, and none of its classes has an empty train or test split. Ok: the
    /// number of training images of its classes.
    /// The (train, test) images of the selected classes, or what is wrong (key, message).
    pub fn check(&mut self, d: &crate::config::DatasetConfig) -> Result<(usize, usize), (&'static str, String)> {
        let classes = self.classes(d)?;
        let scan = self.scan(d).map_err(|e| ("dataset.root", e))?;
        let key = if d.classes.is_empty() { "dataset.root" } else { "dataset.classes" };
        for p in &scan.problems {
            if let crate::data::Problem::EmptySplit { class, .. } = p {
                if classes.contains(class) {
                    return Err((key, p.to_string()));
                }
            }
        }
        Ok(scan
            .index
            .classes
            .iter()
            .filter(|(c, _)| classes.contains(c))
            .fold((0, 0), |(a, b), (_, s)| (a + s.train.len(), b + s.test.len())))
    }
}

/// A run expanded but not planned yet: (config, label, variant, dataset, images).
type Loaded = (RunConfig, String, String, String, (usize, usize));

/// Expands a sweep file into its runs, validating every resolved config; with
/// `opts.check_data`, the first [`DataIssue`] is an error.
pub fn expand(path: &Path, opts: &ExpandOptions) -> Result<Manifest, SweepError> {
    let (manifest, issues) = expand_checked(path, opts)?;
    match issues.into_iter().next() {
        Some(i) if opts.check_data => Err(i.into_error(path)),
        _ => Ok(manifest),
    }
}

/// Expands a sweep file and checks every run's data (one scan per dataset, see
/// [`DataScans`]), returning the runs and every issue found, whatever `opts.check_data`
/// says. A run whose dataset cannot be read is planned from the published sizes of its
/// dataset kind.
pub fn expand_checked(path: &Path, opts: &ExpandOptions) -> Result<(Manifest, Vec<DataIssue>), SweepError> {
    let (file, name) = SweepFile::load(path)?;
    let mut data = DataScans::default();
    let mut issues: Vec<DataIssue> = vec![];
    let mut issue_runs: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let bases: Vec<PathBuf> = match &file.base {
        Some(b) => vec![b.clone()],
        None => file.datasets.clone(),
    };
    let settings: Vec<Option<Setting>> = match &file.setting {
        None => vec![None],
        Some(s) => s.to_vec().into_iter().map(Some).collect(),
    };
    let explicit: Vec<BTreeMap<String, toml::Value>> =
        if file.runs.is_empty() { vec![BTreeMap::new()] } else { file.runs.clone() };
    // Cartesian product of the grid axes (BTreeMap order: deterministic).
    let mut points: Vec<Vec<(String, toml::Value)>> = vec![vec![]];
    for (key, values) in &file.grid {
        points = points
            .into_iter()
            .flat_map(|p| values.iter().map(move |v| [p.clone(), vec![(key.clone(), v.clone())]].concat()))
            .collect();
    }
    let mut runs = vec![];
    // (config, label, variant, dataset, images) of every run, planned once `[search]` is
    // resolved against their epochs.
    let mut loaded: Vec<Loaded> = vec![];
    let mut store = opts.store.clone();
    let base_key = if file.base.is_some() { "base" } else { "datasets" };
    // Every `[bases]` entry is looked for before anything expands: a missing one is named.
    for (axis, by_value) in &file.bases {
        for (value, p) in by_value {
            locate_config(path, &format!("[bases.{axis:?}] {value:?}"), p)?;
        }
    }
    for base in &bases {
        let base_path = locate_config(path, base_key, base)?;
        let stem = base_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        for setting in &settings {
            for run in &explicit {
                for point in &points {
                    let base_path =
                        file.base_for(point).map(|b| resolve_config_path(path, b)).unwrap_or_else(|| base_path.clone());
                    let mut over: Vec<String> =
                        file.set.iter().map(|(k, v)| kv(k, &resolve_value_path(path, k, v))).collect();
                    let mut label_parts: Vec<String> = vec![];
                    for (k, v) in run.iter().chain(point.iter().map(|(k, v)| (k, v))) {
                        over.push(kv(k, &resolve_value_path(path, k, v)));
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
                    let cfg = RunConfig::load(&base_path, &over).map_err(|source| SweepError::Config {
                        sweep: name.clone(),
                        label: label0.clone(),
                        source: Box::new(source),
                    })?;
                    let mut expanded: Vec<(RunConfig, String)> = vec![];
                    if cfg.train.setting == Setting::Separate {
                        let classes = match data.classes(&cfg.dataset) {
                            Ok(c) => c,
                            Err((key, message)) => {
                                issues.push(DataIssue {
                                    run_id: cfg.run_id(),
                                    label: label0.clone(),
                                    key,
                                    message: message.clone(),
                                });
                                discover_classes(&cfg, &message)
                                    .map_err(|message| SweepError::Invalid { path: path.into(), message })?
                            }
                        };
                        for class in classes {
                            let mut o = over.clone();
                            o.push(format!("dataset.classes=[{}]", toml::Value::String(class.clone())));
                            o.push(format!("name=\"{}-{}\"", cfg.name, class));
                            let label = format!("{label0} separate class={class}");
                            let c = RunConfig::load(&base_path, &o).map_err(|source| SweepError::Config {
                                sweep: name.clone(),
                                label: label.clone(),
                                source: Box::new(source),
                            })?;
                            expanded.push((c, label));
                        }
                    } else {
                        expanded.push((cfg, label0.clone()));
                    }
                    for (c, label) in expanded {
                        store.get_or_insert_with(|| c.store.clone());
                        let variant =
                            label.split(' ').filter(|p| !p.starts_with("seed=")).collect::<Vec<_>>().join(" ");
                        let images = match data.check(&c.dataset) {
                            Ok(counts) => counts,
                            Err((key, message)) => {
                                // (A run id hashes the whole config: computed once, looked
                                // up in a set, so 20,000 runs plan in seconds.)
                                let run_id = c.run_id();
                                if issue_runs.insert(run_id.clone()) {
                                    issues.push(DataIssue { run_id, label: label.clone(), key, message });
                                }
                                plan::published_images(&c)
                            }
                        };
                        if let Some(r) = file.ranks {
                            c.train.per_rank_batch(r).map_err(|e| SweepError::Invalid {
                                path: path.into(),
                                message: format!("run `{label}`: the sweep's `ranks = {r}`: {e}"),
                            })?;
                        }
                        loaded.push((c, label, variant, stem.clone(), images));
                    }
                }
            }
        }
    }
    // `[search]` against the runs' epochs: a bad key fails here, before anything runs.
    let search = match &file.search {
        None => None,
        Some(sc) => {
            let invalid = |message: String| SweepError::Invalid { path: path.to_path_buf(), message };
            let epochs: std::collections::BTreeSet<usize> = loaded.iter().map(|(c, ..)| c.train.epochs).collect();
            if epochs.len() > 1 {
                return Err(invalid(format!(
                    "[search]: the runs train for different epochs ({epochs:?}); a search compares runs at the same rungs: set train.epochs once for all"
                )));
            }
            Some(sc.resolve(epochs.into_iter().next().unwrap_or(0)).map_err(invalid)?)
        }
    };
    for (mut c, label, variant, stem, images) in loaded {
        // Every run of a search carries its schedule and held-out split (its resolved
        // config says what it was trained on).
        c.search = search.as_ref().map(|s| s.for_run(&name));
        runs.push(plan::planned(c, label, variant, stem, file.ranks, opts.max_ranks, images));
    }
    // The same resolved config twice is one run.
    let mut seen = std::collections::BTreeSet::new();
    runs.retain(|r: &PlannedRun| seen.insert(r.id.clone()));
    // The [paper] templates must name keys every run has: a typo fails here, before
    // anything runs, not in the report after the sweep.
    if let Some(paper) = &file.paper {
        for r in &runs {
            paper.check(&r.config()?).map_err(|message| SweepError::Invalid {
                path: path.to_path_buf(),
                message: format!("run {}: {message}", r.label),
            })?;
        }
    }
    let runs = plan::order(runs);
    let run_ids: std::collections::BTreeSet<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    issues.retain(|i| run_ids.contains(i.run_id.as_str()));
    issues.dedup_by(|a, b| a.run_id == b.run_id);
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT,
        written_by: Some(RAS_VERSION.to_string()),
        name,
        store: store.unwrap_or_default(),
        max_retries: file.max_retries,
        note: file.note,
        paper: file.paper,
        search,
        runs,
    };
    Ok((manifest, issues))
}

/// Config keys whose values are file paths a sweep file may set (`[set]`, grid axes,
/// `[[runs]]`). A relative one that exists next to the sweep file is made absolute (the
/// jobs run in the current folder); any other is left as written, relative to the
/// current folder where the jobs run, as a `--set` on the command line is.
const PATH_KEYS: [&str; 2] = ["dataset.root", "backbone.weights"];

fn resolve_value_path(sweep: &Path, key: &str, v: &toml::Value) -> toml::Value {
    if let (true, toml::Value::String(s)) = (PATH_KEYS.contains(&key), v) {
        let p = Path::new(s);
        if let Some(dir) = sweep.parent().filter(|_| p.is_relative()) {
            let there = dir.join(p);
            if !dir.as_os_str().is_empty() && there.exists() {
                let abs = std::fs::canonicalize(&there).unwrap_or(there);
                return toml::Value::String(abs.display().to_string());
            }
        }
    }
    v.clone()
}

/// The classes of a `separate` expansion whose dataset cannot be read here (`e` says why):
/// the ones the config names, else the dataset kind's published list.
fn discover_classes(cfg: &RunConfig, e: &str) -> Result<Vec<String>, String> {
    if !cfg.dataset.classes.is_empty() {
        return Ok(cfg.dataset.classes.clone());
    }
    match cfg.dataset.kind.published_classes() {
        Some(list) => {
            tracing::warn!(
                "dataset {} not readable here ({e}); expanding `separate` with the published class list",
                cfg.dataset.root.display()
            );
            Ok(list.iter().map(|s| s.to_string()).collect())
        }
        None => Err(format!(
            "setting separate needs the class list: cannot scan {} ({e}); set \"dataset.classes\" in the sweep's [set]",
            cfg.dataset.root.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DatasetConfig, DatasetKind};
    use std::collections::BTreeSet;

    fn synth(root: &Path) {
        let spec = crate::data::synth::SynthSpec {
            classes: 2,
            train_per_class: 2,
            test_good_per_class: 1,
            test_defect_per_kind: 1,
            image_size: 32,
            seed: 1,
        };
        crate::data::synth::generate(root, &spec, &mut |_, _| {}).unwrap();
    }

    #[test]
    fn each_dataset_is_scanned_once_and_its_classes_checked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        synth(&root);
        let found = crate::data::scan_all(&DatasetConfig {
            kind: DatasetKind::Mvtec,
            root: root.clone(),
            classes: vec![],
            train_meta: None,
            test_meta: None,
        })
        .unwrap()
        .index
        .class_names();
        let cfg = |classes: Vec<String>| DatasetConfig {
            kind: DatasetKind::Mvtec,
            root: root.clone(),
            classes,
            train_meta: None,
            test_meta: None,
        };
        let mut scans = DataScans::default();
        let (train, test) = scans.check(&cfg(vec![])).unwrap();
        assert_eq!(train, 4);
        assert!(test >= 4, "1 good + at least 1 defect per class: {test}");
        assert_eq!(scans.check(&cfg(vec![found[0].clone()])).unwrap().0, 2);
        let (key, msg) = scans.check(&cfg(vec!["botle".into()])).unwrap_err();
        assert_eq!(key, "dataset.classes");
        assert!(msg.contains("\"botle\"") && msg.contains(&found.join(", ")), "{msg}");
        assert_eq!(scans.scanned, 1, "one scan for every run on the same dataset");
        let (key, msg) = scans.check(&DatasetConfig { root: dir.path().join("nope"), ..cfg(vec![]) }).unwrap_err();
        assert!(key == "dataset.root" && msg.contains("nope"), "{msg}");
        // A class whose test split is empty.
        std::fs::remove_dir_all(root.join(&found[1]).join("test")).unwrap();
        let mut scans = DataScans::default();
        let (key, msg) = scans.check(&cfg(vec![found[1].clone()])).unwrap_err();
        assert!(key == "dataset.classes" && msg.contains("no test images"), "{msg}");
        assert_eq!(scans.check(&cfg(vec![found[0].clone()])).unwrap().0, 2, "the other class is fine");
    }

    #[test]
    fn a_typo_is_an_issue_naming_run_and_key_and_paths_resolve_next_to_the_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("exp");
        synth(&d.join("data"));
        std::fs::write(d.join("base.toml"), "name = \"b\"\n[dataset]\nroot = \"/nowhere\"\n").unwrap();
        let sweep = d.join("s.toml");
        let first = &crate::data::synth::class_names(2)[0];
        std::fs::write(&sweep, format!("base = \"base.toml\"\n[set]\n\"dataset.root\" = \"data\"\n[grid]\n\"dataset.classes\" = [[\"{first}\"], [\"nope\"]]\n")).unwrap();
        let opts = ExpandOptions { max_ranks: 1, ..Default::default() };
        let (m, issues) = expand_checked(&sweep, &opts).unwrap();
        assert_eq!(m.runs.len(), 2);
        let root = m.runs[0].config().unwrap().dataset.root;
        assert!(root.is_absolute() && root.ends_with("exp/data"), "{}", root.display());
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(
            issues[0].key == "dataset.classes"
                && issues[0].label.contains("nope")
                && issues[0].message.contains(first.as_str()),
            "{issues:?}"
        );
        let err = expand(&sweep, &ExpandOptions { check_data: true, ..opts.clone() }).unwrap_err().to_string();
        assert!(err.contains("s.toml") && err.contains("dataset.classes") && err.contains("nope"), "{err}");
        assert!(expand(&sweep, &opts).is_ok(), "unchecked, the library plans it anyway");
    }

    /// Issue 17: the planner gave VisA (8,659 images at its published size) 5 ranks on an
    /// 8-slot profile, which trains 60 of a 64 batch. Every run of the paper's Table 3, on
    /// any slot count up to 16, now gets a world size that divides its batch.
    #[test]
    fn planned_ranks_always_divide_the_batch() {
        let sweep = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/table3.toml");
        for max_ranks in 1..=16 {
            let m = expand(&sweep, &ExpandOptions { max_ranks, ..Default::default() }).unwrap();
            assert_eq!(m.runs.len(), 3);
            for r in &m.runs {
                let batch = r.config().unwrap().train.batch_size;
                assert!(
                    batch % r.ranks == 0 && r.ranks <= max_ranks,
                    "{} on {max_ranks} slots: {} ranks for batch {batch}",
                    r.label,
                    r.ranks
                );
            }
            let visa = m.runs.iter().find(|r| r.train_images == 8659).expect("VisA planned at its published size");
            assert_eq!(
                visa.ranks,
                [1, 2, 2, 4, 4, 4, 4, 4][..].get(max_ranks - 1).copied().unwrap_or(4),
                "{max_ranks} slots"
            );
        }
    }

    /// `[bases]`: the runs of one grid value load their own base config (its recipe), the
    /// others the sweep's `base`; both stay in `base`'s dataset group. A value or axis that
    /// is not in the grid, or `[bases]` with `datasets`, is an error naming it.
    #[test]
    fn a_grid_value_can_take_another_base_config() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("main.toml"), "name = \"m\"\n[dataset]\nroot = \"/nowhere\"\n").unwrap();
        std::fs::write(
            d.join("other.toml"),
            "name = \"o\"\n[dataset]\nroot = \"/nowhere\"\n[model]\nencoder_layers = 4\ndropout = 0.1\n[train]\nlr = 1e-4\n",
        )
        .unwrap();
        let write = |extra: &str| {
            let sweep = d.join("s.toml");
            std::fs::write(
                &sweep,
                format!("base = \"main.toml\"\n[set]\n\"train.epochs\" = 3\n[grid]\n\"model.decoder\" = [\"ras\", \"uniad\"]\n{extra}"),
            )
            .unwrap();
            sweep
        };
        let opts = ExpandOptions { max_ranks: 1, ..Default::default() };
        let m = expand(&write("[bases.\"model.decoder\"]\nuniad = \"other.toml\"\n"), &opts).unwrap();
        let run = |decoder: &str| m.runs.iter().find(|r| r.label.ends_with(&format!("={decoder}"))).unwrap();
        let (ras, uniad) = (run("\"ras\"").config().unwrap(), run("\"uniad\"").config().unwrap());
        assert_eq!((ras.name.as_str(), ras.model.encoder_layers, ras.train.lr, ras.model.dropout), ("m", 2, 7e-4, 0.0));
        assert_eq!((uniad.name.as_str(), uniad.model.encoder_layers, uniad.train.lr), ("o", 4, 1e-4));
        assert_eq!(
            (uniad.model.decoder, uniad.model.dropout, uniad.train.epochs),
            (crate::config::DecoderKind::Uniad, 0.1, 3)
        );
        assert!(m.runs.iter().all(|r| r.dataset == "main"), "one dataset group");
        for (extra, needle) in [
            ("[bases.\"model.decoder\"]\nuniadd = \"other.toml\"\n", "\"uniadd\" is not a value"),
            ("[bases.\"train.lr\"]\n\"0.1\" = \"other.toml\"\n", "not a [grid] axis"),
        ] {
            let err = expand(&write(extra), &opts).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains("s.toml"), "{err}");
        }
        std::fs::write(d.join("s.toml"), "datasets = [\"main.toml\"]\n[grid]\n\"model.decoder\" = [\"uniad\"]\n[bases.\"model.decoder\"]\nuniad = \"other.toml\"\n").unwrap();
        let err = expand(&d.join("s.toml"), &opts).unwrap_err().to_string();
        assert!(err.contains("give `base`, not `datasets`"), "{err}");
    }

    /// `seeds = [...]` repeats every variant once per seed (the seed axis of the grid);
    /// `[search]` is checked against the runs' epochs before anything runs, each bad value
    /// an error naming its key.
    #[test]
    fn seeds_repeat_variants_and_a_bad_search_fails_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("main.toml"), "name = \"m\"\n[dataset]\nroot = \"/nowhere\"\n").unwrap();
        let write = |extra: &str| {
            let sweep = d.join("s.toml");
            std::fs::write(
                &sweep,
                format!("base = \"main.toml\"\n{extra}\n[set]\n\"train.epochs\" = 9\n[grid]\n\"model.decoder\" = [\"ras\", \"gate_only\"]\n"),
            )
            .unwrap();
            sweep
        };
        let opts = ExpandOptions { max_ranks: 1, ..Default::default() };
        let m = expand(&write("seeds = [0, 1, 2]"), &opts).unwrap();
        assert_eq!(m.runs.len(), 6);
        let variants: BTreeSet<&str> = m.runs.iter().map(|r| r.variant.as_str()).collect();
        assert_eq!(variants.len(), 2, "runs that differ by seed share a variant: {variants:?}");
        let seeds: BTreeSet<u64> = m.runs.iter().map(|r| r.config().unwrap().seed).collect();
        assert_eq!(seeds, BTreeSet::from([0, 1, 2]));
        assert!(m.search.is_none());
        let err = |extra: &str| crate::error_text::chain(&expand(&write(extra), &opts).unwrap_err());
        assert!(err("seeds = [1, 1]").contains("seed twice"));
        let m = expand(&write("[search]\nmethod = \"grid\"\nmetric = \"image_auroc\""), &opts).unwrap();
        assert_eq!(m.search.as_ref().unwrap().rungs, vec![9]);
        // Every run of a search carries its schedule and the sweep's held-out split.
        let m =
            expand(&write("[search]\nmethod = \"asha\"\nmin_epochs = 1\neta = 3\nholdout_seed = 7"), &opts).unwrap();
        assert_eq!(m.search.as_ref().unwrap().rungs, vec![1, 3, 9]);
        for r in &m.runs {
            let rs = r.config().unwrap().search.expect("a search run carries [search]");
            assert_eq!(
                (rs.sweep.as_str(), rs.rungs.clone(), rs.holdout, rs.holdout_seed),
                ("s", vec![1, 3, 9], Some(0.1), 7)
            );
        }
        for (extra, key) in [
            ("[search]\nmethod = \"asha\"\nrungs = [3, 9]\nmetric = \"f1\"", "search.metric"),
            ("[search]\nmethod = \"asha\"\nrungs = [3, 2, 9]", "search.rungs"),
            ("[search]\nmethod = \"asha\"\nrungs = [3, 9]\neta = 1", "search.eta"),
            ("[search]\nmethod = \"asha\"\nrungs = [3, 9]\nbudget_rank_hours = 0.0", "search.budget_rank_hours"),
            ("[search]\nmethod = \"asha\"\nrungs = [3, 9]\nholdout = 0.7", "search.holdout"),
            ("[search]\nmethod = \"asha\"\nrungs = [3, 10]", "train.epochs (9)"),
        ] {
            let e = err(extra);
            assert!(e.contains(key) && e.contains("s.toml"), "{extra}: {e}");
        }
    }
}
