//! Sweeps: a `jobs/*.toml` file expands into many runs (grid axes, explicit override
//! sets, datasets, unified/separate), and a coordinator drives them to completion.
//!
//! The coordinator keeps no state of its own in memory that matters: everything lives in
//! the store under `sweeps/<name>/`, so that any number of coordinators can be started,
//! killed and restarted on one sweep:
//!
//! ```text
//! sweeps/<name>/manifest.json             the expanded runs: id, label, resolved config, ranks
//! sweeps/<name>/claims/<run id>.<attempt> conditional create (put_new): whoever writes it
//!                                         launches that attempt, nobody else
//! sweeps/<name>/jobs/<run id>.<attempt>.json  what the launcher started (pid or Slurm job id)
//! sweeps/<name>/launches/<run id>.<attempt>.<host>.<pid>  one per submission, never
//!                                         overwritten: the audit that shows no attempt
//!                                         was launched twice
//! sweeps/<name>/features/<key>.claim|.json  the one job that fills a feature cache
//!                                         (dataset + backbone) before the runs reading it
//! sweeps/<name>/cancelled                 written by `ras cancel`: running coordinators
//!                                         launch nothing more and exit; a coordinator
//!                                         started afterwards removes it and resumes
//! ```
//!
//! A run's own outcome is its `runs/<id>/status.json` (written by the run itself), so the
//! state of a sweep is a pure function of the store plus the launcher's view of the jobs.

pub mod plan;

use crate::config::{ConfigError, RunConfig, Setting};
use crate::launch::{JobRecord, JobState, Launcher, Submission};
use crate::run::{RunState, RunStatus};
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("cannot read sweep file {path}: {source}")]
    Read { path: PathBuf, #[source] source: std::io::Error },
    #[error("sweep file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("sweep {sweep}, run {label}: {source}")]
    Config { sweep: String, label: String, #[source] source: ConfigError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("launcher: {0}")]
    Launch(String),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
}

/// One value or a list of them (`setting = "unified"` or `setting = ["unified", "separate"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    fn to_vec(&self) -> Vec<T> {
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
    /// Relative training cost (train images x epochs x GFLOPs per image).
    pub cost: f64,
    /// Feature-cache key proxy (dataset root + backbone identity): the cache is per class,
    /// so the first run on a dataset fills it for every later one.
    pub feature_key: String,
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

/// Published class lists, used to expand `separate` when the data is not on this
/// machine (planning on a laptop for a cluster). Run ids do not depend on where the
/// list came from: each run names its class explicitly.
pub fn published_classes(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "mvtec" => &[
            "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill", "screw", "tile",
            "toothbrush", "transistor", "wood", "zipper",
        ],
        "visa" => &[
            "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2", "pcb3", "pcb4",
            "pipe_fryum",
        ],
        "btad" => &["01", "02", "03"],
        "mpdd" => &["bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes"],
        _ => return None,
    })
}

/// Published training-set sizes, for planning when the data is absent.
fn published_train_images(kind: &str) -> usize {
    match kind {
        "mvtec" => 3629,
        "visa" => 8659,
        "btad" => 1799,
        "mpdd" => 888,
        _ => 100,
    }
}

impl SweepFile {
    pub fn load(path: &Path) -> Result<(Self, String), SweepError> {
        let text = std::fs::read_to_string(path).map_err(|source| SweepError::Read { path: path.into(), source })?;
        let file: SweepFile = toml::from_str(&text).map_err(|e| SweepError::Invalid { path: path.into(), message: e.to_string() })?;
        let name = match &file.name {
            Some(n) => n.clone(),
            None => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(SweepError::Invalid { path: path.into(), message: format!("name {name:?} must be ASCII letters, digits, '-', '_' or '.'") });
        }
        if file.base.is_some() == !file.datasets.is_empty() {
            return Err(SweepError::Invalid {
                path: path.into(),
                message: "give exactly one of `base = \"configs/x.toml\"` or `datasets = [...]`".into(),
            });
        }
        if file.ranks == Some(0) {
            return Err(SweepError::Invalid { path: path.into(), message: "ranks must be at least 1".into() });
        }
        for (k, v) in &file.grid {
            if v.is_empty() {
                return Err(SweepError::Invalid { path: path.into(), message: format!("grid axis {k:?} has no values") });
            }
        }
        Ok((file, name))
    }
}

/// Where a config path of a sweep file points: absolute; relative to the current folder
/// if it exists there; else relative to the repository (the sweep file's folder's parent).
fn resolve_config_path(sweep_path: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() || p.exists() {
        return p.to_path_buf();
    }
    let repo = sweep_path.parent().and_then(|d| d.parent()).unwrap_or(Path::new("."));
    repo.join(p)
}

fn kv(key: &str, value: &toml::Value) -> String {
    format!("{key}={value}")
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
                        over.push(format!("train.setting=\"{}\"", if *s == Setting::Unified { "unified" } else { "separate" }));
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
    let runs = plan::order(runs);
    Ok(Manifest { name, store: store.unwrap_or_default(), max_retries: file.max_retries, note: file.note, runs })
}

fn discover_classes(cfg: &RunConfig) -> Result<Vec<String>, String> {
    if !cfg.dataset.classes.is_empty() {
        return Ok(cfg.dataset.classes.clone());
    }
    match crate::data::scan(&cfg.dataset) {
        Ok(index) => Ok(index.class_names()),
        Err(e) => match published_classes(&cfg.dataset.kind) {
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

/// Where a run stands in the sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPhase {
    /// Never launched.
    Pending,
    /// An attempt is claimed and its job is queued or running.
    Active,
    /// The last attempt ended without completing; attempt `n` may be launched.
    Retry,
    Complete,
    /// Ended without completing after 1 + max_retries attempts (preemptions, which
    /// checkpoint first, do not use up attempts).
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub id: String,
    pub label: String,
    pub phase: RunPhase,
    /// Attempts claimed so far.
    pub attempts: usize,
    pub epoch: usize,
    pub epochs: usize,
    pub ranks: usize,
    pub job: Option<JobRecord>,
    pub error: Option<String>,
    pub mean_iauroc: Option<f64>,
    pub mean_pauroc: Option<f64>,
    /// Seconds to go, from this attempt's pace so far (active runs past epoch 0 only).
    pub eta_s: Option<u64>,
}

/// A claim older than this without a job record belongs to a coordinator that died
/// between claiming and launching: that attempt is over.
const CLAIM_GRACE_S: u64 = 60;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    pub host: String,
    pub pid: u32,
    pub unix: u64,
}

use crate::hostname;

/// The sweep's state in the store.
pub struct SweepState<'a> {
    pub store: &'a Store,
    pub manifest: &'a Manifest,
}

impl<'a> SweepState<'a> {
    fn prefix(&self) -> String {
        format!("sweeps/{}", self.manifest.name)
    }

    /// Writes the manifest (again if the sweep file changed since).
    pub fn publish_manifest(&self) -> Result<(), SweepError> {
        let key = format!("{}/manifest.json", self.prefix());
        let cur: Option<Manifest> = self.store.get_json(&key)?;
        if cur.as_ref() != Some(self.manifest) {
            self.store.put_json(&key, self.manifest)?;
        }
        Ok(())
    }

    pub fn cancelled(&self) -> Result<bool, SweepError> {
        Ok(self.store.exists(&format!("{}/cancelled", self.prefix()))?)
    }

    pub fn clear_cancelled(&self) -> Result<(), SweepError> {
        Ok(self.store.delete(&format!("{}/cancelled", self.prefix()))?)
    }

    pub fn set_cancelled(&self) -> Result<(), SweepError> {
        Ok(self.store.put(&format!("{}/cancelled", self.prefix()), format!("{}\n", now()))?)
    }

    /// Every claim, as (run id, attempt).
    pub fn claims(&self) -> Result<BTreeMap<String, Vec<(usize, Claim)>>, SweepError> {
        let mut out: BTreeMap<String, Vec<(usize, Claim)>> = BTreeMap::new();
        let p = format!("{}/claims/", self.prefix());
        for key in self.store.list(&p)? {
            let Some((id, attempt)) = key.strip_prefix(&p).and_then(|k| k.rsplit_once('.')) else { continue };
            let Ok(attempt) = attempt.parse::<usize>() else { continue };
            let claim: Claim = self.store.get_json(&key)?.unwrap_or(Claim { host: String::new(), pid: 0, unix: 0 });
            out.entry(id.to_string()).or_default().push((attempt, claim));
        }
        for v in out.values_mut() {
            v.sort_by_key(|(a, _)| *a);
        }
        Ok(out)
    }

    /// Claims attempt `attempt` of a run; false if someone else already did.
    pub fn claim(&self, id: &str, attempt: usize) -> Result<bool, SweepError> {
        self.claim_key(&format!("{}/claims/{id}.{attempt}", self.prefix()))
    }

    /// Creates `key` with this process's claim unless it exists (conditional put): true
    /// for the one caller that created it.
    fn claim_key(&self, key: &str) -> Result<bool, SweepError> {
        let c = Claim { host: hostname(), pid: std::process::id(), unix: now() };
        match self.store.put_new(key, serde_json::to_vec(&c).expect("json")) {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub fn job(&self, id: &str, attempt: usize) -> Result<Option<JobRecord>, SweepError> {
        Ok(self.store.get_json(&format!("{}/jobs/{id}.{attempt}.json", self.prefix()))?)
    }

    pub fn record_job(&self, id: &str, attempt: usize, job: &JobRecord) -> Result<(), SweepError> {
        Ok(self.store.put_json(&format!("{}/jobs/{id}.{attempt}.json", self.prefix()), job)?)
    }

    /// Appends to the launch audit (a distinct key per submitting process).
    pub fn record_launch(&self, id: &str, attempt: usize, job: &JobRecord) -> Result<(), SweepError> {
        let key = format!("{}/launches/{id}.{attempt}.{}.{}", self.prefix(), hostname(), std::process::id());
        Ok(self.store.put_json(&key, job)?)
    }

    /// Short name of a feature-cache key (store keys and job names).
    pub fn feature_name(key: &str) -> String {
        format!("features-{}", &crate::store::sha256_hex(key.as_bytes())[..12])
    }

    /// Where the cache of `key` stands: its job, or whether nobody has claimed it yet.
    fn feature_state(&self, key: &str, launcher: &dyn Launcher) -> Result<FeatureState, SweepError> {
        let p = format!("{}/features/{}", self.prefix(), Self::feature_name(key));
        if let Some(job) = self.store.get_json::<JobRecord>(&format!("{p}.json"))? {
            return Ok(match launcher.poll(&job).map_err(SweepError::Launch)? {
                JobState::Active => FeatureState::Running(job),
                JobState::Ended => FeatureState::Ready,
            });
        }
        Ok(match self.store.get_json::<Claim>(&format!("{p}.claim"))? {
            None => FeatureState::Unclaimed,
            // Claimed by a coordinator that died before submitting: the runs fill the
            // cache themselves (each computes only what is missing).
            Some(c) if now().saturating_sub(c.unix) >= CLAIM_GRACE_S => FeatureState::Ready,
            Some(_) => FeatureState::Claimed,
        })
    }

    fn claim_features(&self, key: &str) -> Result<bool, SweepError> {
        self.claim_key(&format!("{}/features/{}.claim", self.prefix(), Self::feature_name(key)))
    }

    fn record_features(&self, key: &str, job: &JobRecord) -> Result<(), SweepError> {
        Ok(self.store.put_json(&format!("{}/features/{}.json", self.prefix(), Self::feature_name(key)), job)?)
    }

    /// Submissions so far (the audit's entries).
    pub fn launch_count(&self) -> Result<usize, SweepError> {
        Ok(self.store.list(&format!("{}/launches/", self.prefix()))?.len())
    }

    /// The state of every run, asking `launcher` about jobs that may still be alive.
    pub fn views(&self, launcher: &dyn Launcher) -> Result<Vec<RunView>, SweepError> {
        let claims = self.claims()?;
        let mut out = vec![];
        for run in &self.manifest.runs {
            let status: Option<RunStatus> = self.store.get_json(&format!("runs/{}/status.json", run.id))?;
            let attempts = claims.get(&run.id).map(|v| v.len()).unwrap_or(0);
            let last = claims.get(&run.id).and_then(|v| v.last().cloned());
            let cfg = run.config();
            let mut view = RunView {
                id: run.id.clone(),
                label: run.label.clone(),
                phase: RunPhase::Pending,
                attempts,
                epoch: status.as_ref().map(|s| s.epoch).unwrap_or(0),
                epochs: cfg.train.epochs,
                ranks: run.ranks,
                job: None,
                error: status.as_ref().and_then(|s| s.error.clone()),
                mean_iauroc: None,
                mean_pauroc: None,
                eta_s: None,
            };
            if let Some(fm) = self.store.get_json::<crate::run::FinalMetrics>(&format!("runs/{}/final_metrics.json", run.id))? {
                view.mean_iauroc = Some(fm.metrics.mean.image_auroc);
                view.mean_pauroc = Some(fm.metrics.mean.pixel_auroc);
            }
            let complete = status.as_ref().map(|s| s.state == RunState::Complete).unwrap_or(false);
            view.phase = if complete {
                if let Some((attempt, _)) = &last {
                    view.job = self.job(&run.id, *attempt)?;
                }
                RunPhase::Complete
            } else if let Some((attempt, claim)) = last {
                let job = self.job(&run.id, attempt)?;
                let alive = match &job {
                    None => now().saturating_sub(claim.unix) < CLAIM_GRACE_S,
                    Some(j) => launcher.poll(j).map_err(SweepError::Launch)? == JobState::Active,
                };
                view.job = job;
                if let (true, Some(st)) = (alive, &status) {
                    if st.epoch > 0 && st.epoch < cfg.train.epochs && st.updated_unix > claim.unix {
                        let per_epoch = (st.updated_unix - claim.unix) as f64 / st.epoch as f64;
                        view.eta_s = Some((per_epoch * (cfg.train.epochs - st.epoch) as f64) as u64);
                    }
                }
                if alive {
                    RunPhase::Active
                } else if attempts > self.manifest.max_retries && status.as_ref().map(|s| s.state != RunState::Preempted).unwrap_or(true) {
                    // (A preempted run checkpointed: resuming it is progress, not a retry.)
                    if status.as_ref().map(|s| s.state == RunState::Running).unwrap_or(true) {
                        // The job died without recording why (killed from outside).
                        let reason = format!("job ended without recording an outcome after {attempts} attempts");
                        crate::run::mark_failed_unless_recorded(&cfg, &reason).map_err(|e| SweepError::Launch(e.to_string()))?;
                        view.error.get_or_insert(reason);
                    }
                    RunPhase::Failed
                } else {
                    RunPhase::Retry
                }
            } else {
                RunPhase::Pending
            };
            out.push(view);
        }
        Ok(out)
    }
}

/// The feature-cache job of one dataset + backbone.
enum FeatureState {
    Unclaimed,
    /// Claimed, job not recorded yet (another coordinator is submitting it).
    Claimed,
    Running(JobRecord),
    /// Its job ended (the cache is filled, or the runs fill what is missing).
    Ready,
}

/// Options of `coordinate`.
pub struct CoordinateOptions {
    /// Submit what can be submitted once and return.
    pub no_wait: bool,
    /// The cluster's nodes and rank slots per node.
    pub shape: plan::ClusterShape,
    /// Node names: given, every run is placed on named nodes (`plan::place`, the rule
    /// `ras plan` simulates) and the launcher pins it there; empty, the cluster places.
    pub node_names: Vec<String>,
    pub poll: std::time::Duration,
    /// Folder for the resolved config files the jobs read (shared with the nodes).
    pub work_dir: PathBuf,
}

/// Drives a sweep: launches pending runs and retries (claim first, so two coordinators
/// never launch the same attempt), waits, and returns the final views. `on_change` is
/// called with the views whenever a run's phase, epoch or attempts changed.
pub fn coordinate(
    store: &Store,
    manifest: &Manifest,
    launcher: &mut dyn Launcher,
    opts: &CoordinateOptions,
    on_change: &mut dyn FnMut(&[RunView]),
) -> Result<Vec<RunView>, SweepError> {
    let state = SweepState { store, manifest };
    state.publish_manifest()?;
    if !opts.no_wait && state.cancelled()? {
        tracing::info!(sweep = manifest.name, "resuming a cancelled sweep");
        state.clear_cancelled()?;
    }
    std::fs::create_dir_all(&opts.work_dir).map_err(|source| SweepError::Io { path: opts.work_dir.clone(), source })?;
    let mut last_shown: Vec<(RunPhase, usize, usize)> = vec![];
    let mut logs_kept = std::collections::BTreeSet::new();
    loop {
        let mut views = state.views(launcher)?;
        // (Before a retry replaces the failed attempt's job in its view.)
        keep_logs(store, &views, &mut logs_kept);
        let cancelled = state.cancelled()?;
        let mut busy: usize = views.iter().filter(|v| v.phase == RunPhase::Active).map(|v| v.ranks).sum();
        let slots = opts.shape.slots();
        let per_node = opts.shape.ranks_per_node.max(1);
        // Slots in use per named node, from the job records of active runs.
        let mut used = vec![0usize; opts.node_names.len()];
        for (run, view) in manifest.runs.iter().zip(views.iter()) {
            if let (RunPhase::Active, Some(job)) = (&view.phase, &view.job) {
                let (_, m) = opts.shape.layout(run.ranks);
                for n in &job.nodes {
                    if let Some(i) = opts.node_names.iter().position(|x| x == n) {
                        used[i] += m.min(per_node);
                    }
                }
            }
        }
        // Feature caches: one job per dataset + backbone fills each, before the runs that
        // read it, so the backbone runs once per image however many runs share it.
        let mut features: BTreeMap<String, FeatureState> = BTreeMap::new();
        if !cancelled {
            for (run, view) in manifest.runs.iter().zip(views.iter()) {
                if !matches!(view.phase, RunPhase::Pending | RunPhase::Retry) || features.contains_key(&run.feature_key) {
                    continue;
                }
                let mut st = state.feature_state(&run.feature_key, launcher)?;
                // (Slurm queues it; locally it needs a free slot like any run.)
                let room = launcher.queues_jobs() || busy < slots;
                if matches!(st, FeatureState::Unclaimed) && room && state.claim_features(&run.feature_key)? {
                    let name = SweepState::feature_name(&run.feature_key);
                    let cfg_path = opts.work_dir.join(format!("{name}.toml"));
                    std::fs::write(&cfg_path, &run.config_toml).map_err(|source| SweepError::Io { path: cfg_path.clone(), source })?;
                    let abs = std::fs::canonicalize(&cfg_path).unwrap_or(cfg_path.clone());
                    let args = ["features".to_string(), abs.display().to_string()];
                    let job = launcher.submit_task(&name, &args, &[], crate::launch::Dependency::AfterAny).map_err(SweepError::Launch)?;
                    state.record_features(&run.feature_key, &job)?;
                    tracing::info!(cache = name, job = job.id, "feature-cache job launched");
                    st = FeatureState::Running(job);
                }
                // Locally the cache job holds a slot. On Slurm the runs submitted behind it
                // take their slots only once it has ended, so it is not counted twice.
                if matches!(st, FeatureState::Running(_)) && !launcher.queues_jobs() {
                    busy += 1;
                }
                features.insert(run.feature_key.clone(), st);
            }
        }
        if !cancelled {
            // Claimed this pass: (run index, attempt, config file, nodes, dependencies).
            let mut claimed: Vec<(usize, usize, PathBuf, Vec<String>, Vec<JobRecord>)> = vec![];
            // A cluster that queues jobs gets every run at once (in plan order) unless the
            // coordinator places runs on named nodes itself, which needs free nodes.
            let cap_slots = !launcher.queues_jobs() || !opts.node_names.is_empty();
            for (idx, (run, view)) in manifest.runs.iter().zip(views.iter()).enumerate() {
                if !matches!(view.phase, RunPhase::Pending | RunPhase::Retry) {
                    continue;
                }
                // After its feature-cache job: submitted now with a dependency where the
                // cluster queues jobs (Slurm), else once the job has ended.
                let after: Vec<JobRecord> = match features.get(&run.feature_key) {
                    Some(FeatureState::Running(job)) if launcher.queues_jobs() => vec![job.clone()],
                    Some(FeatureState::Ready) | None => vec![],
                    Some(_) => continue,
                };
                // A run wider than the whole cluster still runs, alone.
                if cap_slots && busy > 0 && busy + run.ranks > slots {
                    continue;
                }
                let (count, m) = opts.shape.layout(run.ranks);
                let m = m.min(per_node);
                let placement = if opts.node_names.is_empty() {
                    vec![]
                } else {
                    let free: Vec<usize> = used.iter().map(|u| per_node.saturating_sub(*u)).collect();
                    match plan::place(&free, count, m) {
                        Some(p) => p,
                        None => continue, // its nodes are busy: a later pass places it
                    }
                };
                let attempt = view.attempts;
                if !state.claim(&run.id, attempt)? {
                    continue; // another coordinator launches it
                }
                for &i in &placement {
                    used[i] += m;
                }
                let nodes: Vec<String> = placement.iter().map(|&i| opts.node_names[i].clone()).collect();
                let cfg_path = opts.work_dir.join(format!("{}.toml", run.id));
                std::fs::write(&cfg_path, &run.config_toml).map_err(|source| SweepError::Io { path: cfg_path.clone(), source })?;
                claimed.push((idx, attempt, cfg_path, nodes, after));
                busy += run.ranks;
            }
            // Alike runs (same ranks, nodes and dependencies) go out together: one job
            // array on Slurm. Groups keep plan order.
            let mut groups: Vec<Vec<usize>> = vec![];
            for (k, (idx, _, _, nodes, after)) in claimed.iter().enumerate() {
                let same = |g: &Vec<usize>| {
                    let (i0, _, _, n0, a0) = &claimed[g[0]];
                    manifest.runs[*i0].ranks == manifest.runs[*idx].ranks && n0 == nodes && a0 == after
                };
                match groups.iter_mut().find(|g| same(g)) {
                    Some(g) => g.push(k),
                    None => groups.push(vec![k]),
                }
            }
            for g in groups {
                let subs: Vec<Submission> = g
                    .iter()
                    .map(|&k| {
                        let (idx, attempt, cfg, nodes, after) = &claimed[k];
                        Submission { run: &manifest.runs[*idx], config: cfg, attempt: *attempt, nodes, after }
                    })
                    .collect();
                let jobs = launcher.submit_alike(&subs).map_err(SweepError::Launch)?;
                for (sub, job) in subs.iter().zip(jobs) {
                    let attempt = sub.attempt;
                    state.record_job(&sub.run.id, attempt, &job)?;
                    state.record_launch(&sub.run.id, attempt, &job)?;
                    tracing::info!(run = sub.run.id, attempt, job = job.id, nodes = sub.nodes.join(","), "launched");
                    let view = views.iter_mut().find(|v| v.id == sub.run.id).expect("a view per run");
                    view.phase = RunPhase::Active;
                    view.attempts = attempt + 1;
                    view.job = Some(job);
                }
            }
        }
        let shown: Vec<_> = views.iter().map(|v| (v.phase.clone(), v.epoch, v.attempts)).collect();
        if shown != last_shown {
            on_change(&views);
            last_shown = shown;
        }
        let done = views.iter().all(|v| matches!(v.phase, RunPhase::Complete | RunPhase::Failed));
        let stop = cancelled && views.iter().all(|v| v.phase != RunPhase::Active);
        if opts.no_wait || done || stop {
            return Ok(views);
        }
        std::thread::sleep(opts.poll);
    }
}

/// Copies the log of every ended job (a failed attempt before its retry, a finished run)
/// into the store beside the run, `runs/<id>/logs/<job id>.log`, so it outlives the
/// scratch folder and the machine. `kept` remembers what this coordinator already checked.
fn keep_logs(store: &Store, views: &[RunView], kept: &mut std::collections::BTreeSet<String>) {
    for v in views {
        let Some(job) = &v.job else { continue };
        if v.phase == RunPhase::Active {
            continue;
        }
        let key = format!("runs/{}/logs/{}.log", v.id, job.id);
        if !kept.insert(key.clone()) {
            continue;
        }
        match (store.exists(&key), std::fs::read(&job.log)) {
            (Ok(false), Ok(bytes)) => {
                if let Err(e) = store.put(&key, bytes) {
                    tracing::warn!(run = v.id, "keeping log {}: {e}", job.log.display());
                }
            }
            // Already kept, or the log is on a file system this machine does not see.
            (Ok(true), _) | (_, Err(_)) => {}
            (Err(e), _) => tracing::warn!(run = v.id, "store: {e}"),
        }
    }
}

/// Cancels every active job of a sweep and stops its coordinators from launching more.
pub fn cancel(store: &Store, manifest: &Manifest, launcher: &mut dyn Launcher) -> Result<usize, SweepError> {
    let state = SweepState { store, manifest };
    state.set_cancelled()?;
    let mut n = 0;
    let p = format!("{}/features/", state.prefix());
    for key in store.list(&p)?.into_iter().filter(|k| k.ends_with(".json")) {
        if let Some(job) = store.get_json::<JobRecord>(&key)? {
            if launcher.poll(&job).map_err(SweepError::Launch)? == JobState::Active {
                launcher.cancel(&job).map_err(SweepError::Launch)?;
                n += 1;
            }
        }
    }
    for v in state.views(launcher)? {
        if let (RunPhase::Active, Some(job)) = (&v.phase, &v.job) {
            launcher.cancel(job).map_err(SweepError::Launch)?;
            n += 1;
        }
    }
    Ok(n)
}

/// The status table (`ras status`, and `ras sweep` as states change).
pub fn render_views(views: &[RunView]) -> String {
    let mut s = format!(
        "{:<22} {:<9} {:>9} {:>5} {:>8} {:>8} {:>8} {:>7}  {}\n",
        "run", "state", "epoch", "ranks", "attempts", "I-AUROC", "P-AUROC", "ETA", "label"
    );
    let pct = |x: Option<f64>| x.map(|v| format!("{:.1}", 100.0 * v)).unwrap_or_else(|| "-".into());
    for v in views {
        let phase = format!("{:?}", v.phase).to_lowercase();
        s += &format!(
            "{:<22} {:<9} {:>9} {:>5} {:>8} {:>8} {:>8} {:>7}  {}\n",
            v.id,
            phase,
            format!("{}/{}", v.epoch, v.epochs),
            v.ranks,
            v.attempts,
            pct(v.mean_iauroc),
            pct(v.mean_pauroc),
            v.eta_s.map(|e| format!("{}m{:02}s", e / 60, e % 60)).unwrap_or_else(|| "-".into()),
            v.label
        );
    }
    let count = |p: RunPhase| views.iter().filter(|v| v.phase == p).count();
    s += &format!(
        "{} runs: {} complete, {} active, {} pending, {} to retry, {} failed\n",
        views.len(),
        count(RunPhase::Complete),
        count(RunPhase::Active),
        count(RunPhase::Pending),
        count(RunPhase::Retry),
        count(RunPhase::Failed)
    );
    s
}
