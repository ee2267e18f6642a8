//! The store as the place a researcher works from: every run it holds (`ras runs`), two or
//! more runs side by side (`ras compare`), and the look-ups of a run or a sweep by its id
//! or name that must not create anything when they find nothing (`ras eval RUN`,
//! `ras status NAME --store URL`; a sweep file or name: `sweeps`).
//!
//! Cost of a listing: ONE LIST of `runs/` (which tells which records each run has), then
//! at most `4 + MAX_ATTEMPT_RECORDS` GETs per run: its config, its env.json (which
//! backbone weights it used), its status, its final metrics (only when complete and not
//! filtered out) and its cost records
//! (`runs/<id>/attempts/*.json`, objects with a `rank_hours` field). Nothing is read for
//! a record the listing does not show. And one LIST of `sweeps/`: which runs a sweep
//! cancelled for good (`ras cancel --run`), shown as cancelled unless complete.

pub mod sweeps;

pub use sweeps::{find_sweep, load_sweep, report_job_command, work_dir, LoadedSweep, OpenError};

use crate::config::sweep_file::alpha;
use crate::eval::MetricsTable;
use crate::run::{FinalMetrics, RunKey, RunPaths, RunState, RunStatus};
use crate::store::{Store, StoreError};
use crate::sweep::{Manifest, SweepError, SweepKey, SweepPaths};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Most cost records read per run (a run has one per attempt).
pub const MAX_ATTEMPT_RECORDS: usize = 64;

/// Config keys `ras runs` shows, with their column titles.
pub const KEY_COLUMNS: [(&str, &str); 7] = [
    ("dataset.kind", "dataset"),
    ("model.decoder", "decoder"),
    ("model.encoder_layers", "T_e"),
    ("model.decoder_layers", "T_d"),
    ("train.setting", "setting"),
    ("seed", "seed"),
    ("train.epochs", "epochs"),
];

/// How to search another store: the end of every "not found" error.
pub(crate) const OTHER_STORE: &str = "name another store with --store URL or RAS_STORE=URL";

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("no store at {url} (no such folder); {OTHER_STORE}")]
    NoStore { url: String },
    #[error("no run {run} in the store {url}; {OTHER_STORE}, and `ras runs --store URL` lists its runs")]
    NoRun { run: String, url: String },
    #[error("no run {run}: no store at {url} (folder {folder} does not exist); {OTHER_STORE}")]
    NoRunNoStore { run: String, url: String, folder: String },
    #[error("no sweep {name} in {url}; sweeps there: {available}")]
    NoSweep { name: String, url: String, available: String },
    #[error("--filter {0}")]
    Filter(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored sweep manifest this version cannot read (`Manifest::read`).
    #[error(transparent)]
    Sweep(#[from] SweepError),
}

impl RunsError {
    /// Whether the store stayed unreachable past its retry budget (see [`crate::store::StoreError::is_outage`]).
    pub fn is_outage(&self) -> bool {
        match self {
            RunsError::Store(e) => e.is_outage(),
            RunsError::Sweep(e) => e.is_outage(),
            _ => false,
        }
    }
}

/// Opens a store that must exist already: a local folder that is not there is an error,
/// and is not created (as `Store::open` would).
pub fn open_existing(url: &str) -> Result<Store, RunsError> {
    // Store::open_existing also refuses `file://host/...` URLs, naming the two spellings.
    Store::open_existing(url).map_err(|e| match e {
        StoreError::Missing { .. } => RunsError::NoStore { url: url.to_string() },
        e => e.into(),
    })
}

/// Opens the store holding run `run`: "no run RUN in STORE" when the store or the run is
/// not there, and nothing created either way.
pub fn open_run(url: &str, run: &str) -> Result<Store, RunsError> {
    let store = match Store::open_existing(url) {
        Err(StoreError::Missing { url, folder }) => {
            return Err(RunsError::NoRunNoStore { run: run.to_string(), url, folder })
        }
        r => r?,
    };
    let paths = RunPaths::new(run);
    if run.is_empty() || run.contains('/') || !(store.exists(&paths.config())? || store.exists(&paths.status())?) {
        return Err(RunsError::NoRun { run: run.to_string(), url: store.url().to_string() });
    }
    Ok(store)
}

/// The manifest a sweep's coordinator saved (`sweeps/<name>/manifest.json`): the runs it
/// launched, with no sweep file, base configs or cluster profile needed. Unknown: the
/// error lists the sweeps the store holds; one this version cannot read: the error of
/// `Manifest::read`.
pub fn saved_sweep(store: &Store, name: &str) -> Result<Manifest, RunsError> {
    if !name.is_empty() && !name.contains('/') {
        if let Some(m) = Manifest::read(store, name)? {
            return Ok(m);
        }
    }
    let names: BTreeSet<String> = store
        .list(SweepPaths::ROOT)?
        .iter()
        .filter_map(|k| match SweepPaths::parse(k)? {
            (paths, SweepKey::Manifest) => Some(paths.name().to_string()),
            _ => None,
        })
        .collect();
    let available =
        if names.is_empty() { "none".to_string() } else { names.into_iter().collect::<Vec<_>>().join(", ") };
    Err(RunsError::NoSweep { name: name.to_string(), url: store.url().to_string(), available })
}

/// A config value as the tables print it and `--filter` matches it: strings without
/// quotes, whole floats without ".0", arrays and tables as TOML.
fn text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => alpha(*f),
        other => other.to_string(),
    }
}

/// Every leaf of a config as `dotted.key -> value` (arrays are leaves).
pub fn flatten(v: &toml::Value) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), text(leaf));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    out
}

/// `--filter KEY=VALUE`: a resolved config key (`model.decoder=ras`; short names
/// `decoder`, `T_e`, `T_d`, `setting`, `epochs` for the shown columns), or `state`, `id`.
#[derive(Debug, Clone)]
pub struct Filter {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for Filter {
    type Err = RunsError;
    fn from_str(s: &str) -> Result<Self, RunsError> {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            RunsError::Filter(format!(
                "{s:?}: give KEY=VALUE (a config key such as model.decoder=ras, or state=complete)"
            ))
        })?;
        let key = match k.trim() {
            "decoder" => "model.decoder",
            "T_e" | "te" => "model.encoder_layers",
            "T_d" | "td" => "model.decoder_layers",
            "setting" => "train.setting",
            "epochs" => "train.epochs",
            "kind" => "dataset.kind",
            other => other,
        };
        Ok(Filter { key: key.to_string(), value: v.trim().trim_matches('"').to_string() })
    }
}

/// One run of the store, as `ras runs` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub name: Option<String>,
    /// running, complete, failed, preempted, cancelled (for good, by its sweep); "unknown"
    /// without a status record.
    pub state: String,
    pub epoch: Option<usize>,
    /// The shown config values (`KEY_COLUMNS`), by dotted key.
    pub values: BTreeMap<String, String>,
    pub mean_image_auroc: Option<f64>,
    pub mean_pixel_auroc: Option<f64>,
    /// Sum of the run's cost records; None without any.
    pub rank_hours: Option<f64>,
    /// Which backbone features the run learnt from: its architecture and weights, e.g.
    /// `b4 sha256:3f2a9c1e` or `b0 random-init-seed-0` (`backbone_label`).
    pub backbone: String,
}

/// A run's backbone in a few characters: the architecture, and the weights' sha256 (first
/// 8 hex digits) or random-init seed, as the run recorded them in env.json; before the
/// run recorded them (not started), what its config names (a weights file's name, not yet
/// hashed). A run's numbers depend on this more than on anything else.
pub fn backbone_label(config: Option<&BTreeMap<String, String>>, env: Option<&serde_json::Value>) -> String {
    let arch = config
        .and_then(|c| c.get("backbone.arch"))
        .map(|a| a.trim_start_matches("efficientnet-").to_string())
        .unwrap_or_else(|| "-".into());
    let recorded = env.and_then(|e| e.pointer("/backbone/weights")).and_then(|w| w.as_str());
    let weights = match recorded {
        Some(w) if w.starts_with("random-init") => w.to_string(),
        Some(w) => format!("sha256:{}", &w[..w.len().min(8)]),
        None => match config.and_then(|c| c.get("backbone.weights")).filter(|w| !w.is_empty()) {
            Some(file) => format!("file {}", file.rsplit('/').next().unwrap_or(file)),
            None => format!(
                "random-init-seed-{}",
                config.and_then(|c| c.get("backbone.init_seed")).map(String::as_str).unwrap_or("0")
            ),
        },
    };
    format!("{arch} {weights}")
}

fn state_name(s: &Option<RunStatus>) -> String {
    match s.as_ref().map(|s| &s.state) {
        Some(RunState::Running) => "running",
        Some(RunState::Complete) => "complete",
        Some(RunState::Failed) => "failed",
        Some(RunState::Preempted) => "preempted",
        Some(RunState::Infra) => "infra",
        Some(RunState::Paused) => "paused",
        None => "unknown",
    }
    .to_string()
}

/// What one LIST of `runs/` shows of each run.
#[derive(Default)]
struct Listed {
    config: bool,
    env: bool,
    status: bool,
    final_metrics: bool,
    attempts: Vec<String>,
}

/// Every run under `runs/` that passes every filter, by id (see the module doc for what
/// it reads). A filter key that is no config key of any run is an error (a typo would
/// otherwise match nothing, silently).
pub fn list_runs(store: &Store, filters: &[Filter]) -> Result<Vec<RunSummary>, RunsError> {
    let mut runs: BTreeMap<String, Listed> = BTreeMap::new();
    for key in store.list(RunPaths::ROOT)? {
        let Some((paths, kind)) = RunPaths::parse(&key) else { continue };
        let l = runs.entry(paths.id().to_string()).or_default();
        match kind {
            RunKey::Config => l.config = true,
            RunKey::Env => l.env = true,
            RunKey::Status => l.status = true,
            RunKey::FinalMetrics => l.final_metrics = true,
            RunKey::Attempt { .. } => l.attempts.push(key),
            _ => {}
        }
    }
    let mut out = vec![];
    let mut known_keys: BTreeSet<String> = ["state", "id", "name"].iter().map(|s| s.to_string()).collect();
    // Configs and statuses of every run in one batch each; then, of the runs that pass
    // the filters, final metrics and cost records in one batch each.
    let ids: Vec<&String> = runs.keys().collect();
    let config_keys: Vec<String> =
        runs.iter().filter(|(_, l)| l.config).map(|(id, _)| RunPaths::new(id.as_str()).config()).collect();
    let status_keys: Vec<String> =
        runs.iter().filter(|(_, l)| l.status).map(|(id, _)| RunPaths::new(id.as_str()).status()).collect();
    let env_keys: Vec<String> =
        runs.iter().filter(|(_, l)| l.env).map(|(id, _)| RunPaths::new(id.as_str()).env()).collect();
    let mut configs = store.get_many(&config_keys)?.into_iter();
    let mut envs = store.get_json_many::<serde_json::Value, _>(&env_keys)?.into_iter();
    let mut statuses = store.get_json_many::<RunStatus, _>(&status_keys)?.into_iter();
    let cancelled = crate::sweep::cancel::cancelled_in_store(store)?;
    let mut passed: Vec<(RunSummary, &Listed)> = vec![];
    'runs: for id in ids {
        let l = &runs[id];
        let config: Option<BTreeMap<String, String>> = match l.config {
            true => configs
                .next()
                .flatten()
                .and_then(|b| toml::from_str::<toml::Value>(&String::from_utf8_lossy(&b)).ok())
                .map(|v| flatten(&v)),
            false => None,
        };
        if let Some(c) = &config {
            known_keys.extend(c.keys().cloned());
        }
        let status: Option<RunStatus> = if l.status { statuses.next().flatten() } else { None };
        // (Read for every run, filtered or not: the batches are consumed in order.)
        let env: Option<serde_json::Value> = if l.env { envs.next().flatten() } else { None };
        let mut state = state_name(&status);
        if state != "complete" && cancelled.contains(id) {
            state = "cancelled".into();
        }
        for f in filters {
            let have = match f.key.as_str() {
                "state" => Some(state.clone()),
                "id" => Some(id.clone()),
                k => config.as_ref().and_then(|c| c.get(k).cloned()),
            };
            if have.as_deref() != Some(f.value.as_str()) {
                continue 'runs;
            }
        }
        let summary = RunSummary {
            id: id.clone(),
            name: config.as_ref().and_then(|c| c.get("name").cloned()),
            state,
            epoch: status.as_ref().map(|s| s.epoch),
            values: KEY_COLUMNS
                .iter()
                .filter_map(|(k, _)| Some((k.to_string(), config.as_ref()?.get(*k)?.clone())))
                .collect(),
            mean_image_auroc: None,
            mean_pixel_auroc: None,
            rank_hours: None,
            backbone: backbone_label(config.as_ref(), env.as_ref()),
        };
        passed.push((summary, l));
    }
    let with_metrics: Vec<usize> =
        (0..passed.len()).filter(|&i| passed[i].1.final_metrics && passed[i].0.state == "complete").collect();
    let keys: Vec<String> =
        with_metrics.iter().map(|&i| RunPaths::new(passed[i].0.id.as_str()).final_metrics()).collect();
    for (&i, fm) in with_metrics.iter().zip(store.get_json_many::<FinalMetrics, _>(&keys)?) {
        if let Some(fm) = fm {
            passed[i].0.mean_image_auroc = Some(fm.metrics.mean.image_auroc);
            passed[i].0.mean_pixel_auroc = Some(fm.metrics.mean.pixel_auroc);
        }
    }
    let attempt_keys: Vec<&String> =
        passed.iter().flat_map(|(_, l)| l.attempts.iter().take(MAX_ATTEMPT_RECORDS)).collect();
    let mut records = store.get_many(&attempt_keys)?.into_iter();
    for (mut summary, l) in passed {
        for _ in l.attempts.iter().take(MAX_ATTEMPT_RECORDS) {
            // A record that does not parse (torn by a crash) is left out.
            let rec = records.next().flatten().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
            if let Some(h) = rec.as_ref().and_then(|r| r.get("rank_hours")).and_then(|h| h.as_f64()) {
                *summary.rank_hours.get_or_insert(0.0) += h;
            }
        }
        out.push(summary);
    }
    if let Some(f) = filters.iter().find(|f| !known_keys.contains(&f.key)) {
        if known_keys.len() > 3 {
            return Err(RunsError::Filter(format!(
                "{}={}: no run has the config key {:?} (keys look like model.decoder, train.epochs)",
                f.key, f.value, f.key
            )));
        }
    }
    Ok(out)
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.1}", 100.0 * v)).unwrap_or_else(|| "-".into())
}

/// `ras runs`: one line per run.
pub fn render_runs(runs: &[RunSummary], store: &str) -> String {
    let mut s = format!("{:<28} {:<9} {:>9}", "run", "state", "epoch");
    for (_, title) in KEY_COLUMNS {
        s += &format!(" {title:>8}");
    }
    s += &format!(" {:>8} {:>8} {:>8}  {}\n", "I-AUROC", "P-AUROC", "rank-h", "backbone");
    for r in runs {
        let epoch = match (r.epoch, r.values.get("train.epochs")) {
            (Some(e), Some(n)) => format!("{e}/{n}"),
            (Some(e), None) => e.to_string(),
            _ => "-".into(),
        };
        s += &format!("{:<28} {:<9} {:>9}", r.id, r.state, epoch);
        for (k, _) in KEY_COLUMNS {
            s += &format!(" {:>8}", r.values.get(k).map(String::as_str).unwrap_or("-"));
        }
        let h = r.rank_hours.map(|h| format!("{h:.3}")).unwrap_or_else(|| "-".into());
        s += &format!(" {:>8} {:>8} {:>8}  {}\n", pct(r.mean_image_auroc), pct(r.mean_pixel_auroc), h, r.backbone);
    }
    s += &format!("{} runs in {store}\n", runs.len());
    s
}

/// What `ras runs` prints: the table, or with `json` one JSON array.
pub fn render_runs_as(runs: &[RunSummary], store: &str, json: bool) -> String {
    if json {
        serde_json::to_string_pretty(runs).expect("serialisable") + "\n"
    } else {
        render_runs(runs, store)
    }
}

/// What `ras compare` prints: the tables, or with `json` one JSON object.
pub fn render_compare_as(c: &Comparison, json: bool) -> String {
    if json {
        serde_json::to_string_pretty(c).expect("serialisable") + "\n"
    } else {
        render_compare(c)
    }
}

/// Runs side by side: the config keys whose values differ, and their final metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub runs: Vec<ComparedRun>,
    /// Config key -> each run's value ("-" where a run has no such key).
    pub differences: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComparedRun {
    pub id: String,
    pub state: String,
    /// Final metrics (complete runs only).
    pub metrics: Option<MetricsTable>,
}

/// Reads each run's config, status and final metrics (3 GETs a run); a run without a
/// config in the store is "no run RUN in STORE".
pub fn compare(store: &Store, ids: &[String]) -> Result<Comparison, RunsError> {
    let mut configs = vec![];
    let mut runs = vec![];
    // One batch of each kind of record (a comparison of many runs on a remote store).
    let paths: Vec<RunPaths> = ids.iter().map(|id| RunPaths::new(id.as_str())).collect();
    let cfgs = store.get_many(&paths.iter().map(|p| p.config()).collect::<Vec<_>>())?;
    let statuses = store.get_json_many::<RunStatus, _>(&paths.iter().map(|p| p.status()).collect::<Vec<_>>())?;
    let finals =
        store.get_json_many::<FinalMetrics, _>(&paths.iter().map(|p| p.final_metrics()).collect::<Vec<_>>())?;
    for (((id, cfg), status), fm) in ids.iter().zip(cfgs).zip(statuses).zip(finals) {
        let cfg = cfg
            .and_then(|b| toml::from_str::<toml::Value>(&String::from_utf8_lossy(&b)).ok())
            .ok_or_else(|| RunsError::NoRun { run: id.clone(), url: store.url().to_string() })?;
        configs.push(flatten(&cfg));
        let state = state_name(&status);
        let metrics = if state == "complete" { fm.map(|f| f.metrics) } else { None };
        runs.push(ComparedRun { id: id.clone(), state, metrics });
    }
    let keys: BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    let mut differences = BTreeMap::new();
    for k in keys {
        let vals: Vec<String> = configs.iter().map(|c| c.get(k).cloned().unwrap_or_else(|| "-".into())).collect();
        if vals.iter().any(|v| v != &vals[0]) {
            differences.insert(k.clone(), vals);
        }
    }
    Ok(Comparison { runs, differences })
}

/// A Markdown table (`| a | b |`), columns padded.
fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let width: Vec<usize> =
        (0..n).map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(1).max(3)).collect();
    let line = |cells: &[String]| {
        format!("| {} |\n", cells.iter().zip(&width).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join(" | "))
    };
    let mut s = line(header);
    s += &format!("|{}|\n", width.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
    for r in rows {
        s += &line(r);
    }
    s
}

/// `ras compare`: the runs ([1], [2], ...), the differing config keys, then mean and
/// per-class I-AUROC, P-AUROC and AUPRO side by side.
pub fn render_compare(c: &Comparison) -> String {
    let mut s = String::new();
    for (i, r) in c.runs.iter().enumerate() {
        s += &format!("[{}] {} ({})\n", i + 1, r.id, r.state);
    }
    let tags: Vec<String> = (1..=c.runs.len()).map(|i| format!("[{i}]")).collect();
    s += "\nconfig differences:\n";
    if c.differences.is_empty() {
        s += "(none: the same resolved config)\n";
    } else {
        let header: Vec<String> = std::iter::once("key".to_string()).chain(tags.iter().cloned()).collect();
        let rows: Vec<Vec<String>> =
            c.differences.iter().map(|(k, v)| std::iter::once(k.clone()).chain(v.iter().cloned()).collect()).collect();
        s += &table(&header, &rows);
    }
    let classes: BTreeSet<&String> =
        c.runs.iter().filter_map(|r| r.metrics.as_ref()).flat_map(|m| m.classes.keys()).collect();
    s += "\nfinal metrics (%):\n";
    type Metric = fn(&crate::eval::ClassMetrics) -> f64;
    let metrics: [(&str, Metric); 3] =
        [("I-AUROC", |m| m.image_auroc), ("P-AUROC", |m| m.pixel_auroc), ("AUPRO", |m| m.aupro)];
    let mut header = vec!["class".to_string()];
    for (name, _) in &metrics {
        header.extend(tags.iter().map(|t| format!("{name} {t}")));
    }
    let mut rows = vec![];
    for class in std::iter::once(None).chain(classes.into_iter().map(Some)) {
        let mut row = vec![class.cloned().unwrap_or_else(|| "mean".into())];
        for (_, f) in &metrics {
            for r in &c.runs {
                let m = r.metrics.as_ref().and_then(|t| match class {
                    None => Some(&t.mean),
                    Some(cl) => t.classes.get(cl),
                });
                row.push(pct(m.map(f)));
            }
        }
        rows.push(row);
    }
    s += &table(&header, &rows);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_with_short_names() {
        let f: Filter = "T_e=1".parse().unwrap();
        assert_eq!((f.key.as_str(), f.value.as_str()), ("model.encoder_layers", "1"));
        let f: Filter = "model.decoder=\"ras\"".parse().unwrap();
        assert_eq!((f.key.as_str(), f.value.as_str()), ("model.decoder", "ras"));
        assert!("nokey".parse::<Filter>().is_err());
    }

    #[test]
    fn flatten_gives_dotted_leaves() {
        let v: toml::Value = toml::from_str(
            "name = \"a\"\n[model]\ndecoder = \"ras\"\nneighbor_size = [7, 7]\n[train]\nlr = 0.001\nepochs = 2\n",
        )
        .unwrap();
        let f = flatten(&v);
        assert_eq!(f["model.decoder"], "ras");
        assert_eq!(f["model.neighbor_size"], "[7, 7]");
        assert_eq!(f["train.epochs"], "2");
        assert_eq!(f["name"], "a");
    }

    #[test]
    fn missing_local_store_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("nope").display());
        let err = open_run(&url, "x-1234").unwrap_err().to_string();
        assert!(err.starts_with(&format!("no run x-1234: no store at {url}")), "{err}");
        assert!(!dir.path().join("nope").exists());
        let store = Store::open(&format!("file://{}", dir.path().join("s").display())).unwrap();
        let err = open_run(store.url(), "x-1234").unwrap_err().to_string();
        assert!(err.starts_with(&format!("no run x-1234 in the store {};", store.url())), "{err}");
        assert!(!dir.path().join("s/runs").exists());
        let err = saved_sweep(&store, "t").unwrap_err().to_string();
        assert!(err.contains("no sweep t in") && err.ends_with("sweeps there: none"), "{err}");
    }

    #[test]
    fn backbone_label_prefers_what_the_run_recorded() {
        let cfg: BTreeMap<String, String> =
            [("backbone.arch", "efficientnet-b4"), ("backbone.weights", "/w/efficientnet-b4.safetensors")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let env = serde_json::json!({"backbone": {"weights": "3f2a9c1e77aa0000ffff"}});
        assert_eq!(backbone_label(Some(&cfg), Some(&env)), "b4 sha256:3f2a9c1e");
        assert_eq!(backbone_label(Some(&cfg), None), "b4 file efficientnet-b4.safetensors");
        let random = serde_json::json!({"backbone": {"weights": "random-init-seed-7"}});
        assert_eq!(backbone_label(Some(&cfg), Some(&random)), "b4 random-init-seed-7");
        let mut unset = cfg.clone();
        unset.remove("backbone.weights");
        unset.insert("backbone.init_seed".into(), "5".into());
        assert_eq!(backbone_label(Some(&unset), None), "b4 random-init-seed-5");
    }

    #[test]
    fn file_url_with_a_host_part_is_refused_by_readers() {
        let err = open_run("file://tmp/x", "x-1234").unwrap_err().to_string();
        assert!(err.contains("file:///tmp/x") && err.contains("file://./tmp/x"), "{err}");
        assert!(open_existing("file://").is_err());
    }
}
