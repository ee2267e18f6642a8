//! What an attempt of a run cost: wall time per phase, device, ranks, rank-hours. Rank 0
//! writes one record per attempt (`RunPaths::attempt`) when the attempt ends (complete,
//! preempted, or failed: best effort), so cost is measured, never assumed: `ras status`
//! and `ras report` sum the records, and `ras plan` turns them into throughputs
//! (`sweep::plan`) for runs of the same [`shape_key`].

use super::paths::{RunKey, RunPaths};
use crate::config::{DeviceSpec, RunConfig};
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::time::Instant;

/// What determines a run's speed per image (and so which measurements may predict it):
/// model dims, T_e, T_d, decoder, image size, backbone arch, device kind ("cpu" / "cuda").
/// Not the dataset or the epochs: the planner scales by those.
pub fn shape_key(cfg: &RunConfig, device_kind: &str) -> String {
    let m = &cfg.model;
    format!(
        "{:?} C{} F{} H{} Te{} Td{} nm{} img{} {} {device_kind}",
        m.decoder,
        m.hidden_dim,
        m.ffn_dim,
        m.heads,
        m.encoder_layers,
        m.decoder_layers,
        m.neighbor_mask,
        cfg.backbone.image_size,
        cfg.backbone.arch
    )
}

/// Forward+backward FLOPs of one training image of `cfg`: its backbone's feature channels
/// (from the architecture and output blocks: B0's 120 are not B4's 272) and its token grid
/// (image_size / 16). The planner orders runs by it, scales measured rates with it, and
/// each attempt record keeps it (`AttemptCost::gflop_per_image`).
pub fn flops_per_image(cfg: &RunConfig) -> f64 {
    let channels = crate::backbone::feature_channels(&cfg.backbone);
    crate::model::flops::train_flops_per_image(&cfg.model, channels, cfg.backbone.image_size / 16)
}

/// Which feature cache a run reads, as far as its config says (dataset root and backbone
/// identity; the cache's own key also hashes every image): runs with the same key share
/// one cache, and the planner knows a cache is filled once a record with its key exists.
pub fn feature_key(cfg: &RunConfig) -> String {
    let b = &cfg.backbone;
    format!(
        "{}:{}:{:?}:{}:{}",
        cfg.dataset.root.display(),
        b.arch,
        b.outblocks,
        b.image_size,
        b.weights.as_ref().map(|w| w.display().to_string()).unwrap_or_else(|| format!("init{}", b.init_seed)),
    )
}

/// What a shape key says beyond the model: image size, backbone and device kind (its last
/// three words). Rates of one family may be scaled to another shape of it by FLOPs.
pub fn shape_family(shape: &str) -> String {
    let words: Vec<&str> = shape.split_whitespace().collect();
    words[words.len().saturating_sub(3)..].join(" ")
}

/// The device kind a run of `cfg` computes on where GPUs are `gpus` ("auto" follows the
/// machine): what the planner puts into a shape key before the run exists.
pub fn planned_device_kind(spec: DeviceSpec, gpus: bool) -> &'static str {
    match spec {
        DeviceSpec::Cpu => "cpu",
        DeviceSpec::Cuda(_) => "cuda",
        DeviceSpec::Auto if gpus => "cuda",
        DeviceSpec::Auto => "cpu",
    }
}

/// The kind of a device as shape keys and records spell it.
pub fn device_kind(device: tch::Device) -> &'static str {
    if device.is_cuda() {
        "cuda"
    } else {
        "cpu"
    }
}

/// Seconds per phase of one attempt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// Dataset scan + feature cache fill or load.
    pub features_s: f64,
    /// Training epochs (the steps, all-reduce included).
    pub train_s: f64,
    /// Every evaluation: per eval epoch, the final outputs, the noise evaluations.
    pub eval_s: f64,
    /// The rest of the wall time: checkpoints, logs, setup.
    pub other_s: f64,
}

impl Phases {
    pub fn add(&mut self, o: &Phases) {
        self.features_s += o.features_s;
        self.train_s += o.train_s;
        self.eval_s += o.eval_s;
        self.other_s += o.other_s;
    }
}

/// What the attempt was: a run's own job, or the feature-cache job a sweep launches
/// before the runs of one dataset + backbone (its record goes with the run whose config
/// it was launched with, so that a sweep's records sum to everything it cost).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    #[default]
    Run,
    FeatureCache,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Complete,
    Preempted,
    Failed,
    /// A search run that stopped at a rung (`RunState::Paused`).
    Paused,
    /// Stopped because the store stayed unreachable (`RunState::Infra`): the
    /// infrastructure's failure, which uses no retry (recorded if the store took it).
    Outage,
    /// Not ended yet, or ended without recording how: every attempt writes its record
    /// with this outcome as soon as it holds the run's lease, and again after each
    /// checkpoint (its cost so far), so an attempt killed outright is still counted.
    Interrupted,
}

impl Outcome {
    /// Whether the attempt ran to a point it chose (its rates are whole): not failed,
    /// cut off by the store, or killed.
    pub fn ended_cleanly(self) -> bool {
        matches!(self, Outcome::Complete | Outcome::Preempted | Outcome::Paused)
    }
}

/// `runs/<id>/attempts/<started>-<host>-<pid>.json`: one attempt's cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptCost {
    pub started_unix: u64,
    pub ended_unix: u64,
    #[serde(default)]
    pub job: Job,
    pub outcome: Outcome,
    pub host: String,
    pub pid: u32,
    /// "cpu" or "cuda".
    pub device: String,
    /// The GPU's name where known (tch does not report it: None so far).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_name: Option<String>,
    /// World size.
    pub ranks: usize,
    pub wall_s: f64,
    pub phases: Phases,
    /// wall_s x ranks / 3600.
    pub rank_hours: f64,
    /// = rank_hours on CUDA (one GPU per rank), None on CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_hours: Option<f64>,
    /// Train images x epochs done in this attempt (partial epochs pro rata).
    pub images_trained: u64,
    /// Images the backbone computed (feature cache misses) / scanned (train + test).
    pub features_computed: u64,
    pub feature_images: u64,
    /// Test images predicted, summed over every evaluation.
    pub eval_images: u64,
    pub shape: String,
    /// Forward+backward GFLOP of one training image at the run's shape ([`flops_per_image`]):
    /// what the planner scales this record's rates to other shapes by. None in records
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gflop_per_image: Option<f64>,
    /// The run's [`feature_key`] (None in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_key: Option<String>,
    /// The run's lease token the attempt held (`lease::Lease::token`; None for the
    /// feature-cache job, and in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
}

/// The counters an attempt fills while it runs.
#[derive(Debug, Default)]
struct Counts {
    phases: Phases,
    images_trained: u64,
    features_computed: u64,
    feature_images: u64,
    eval_images: u64,
}

/// Which bucket a timed span goes into.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    Features,
    Train,
    Eval,
}

/// Times the phases of one attempt (`execute` owns one and passes it to its steps: no
/// global state). Interior mutability because the steps share the run by `&`.
pub struct PhaseTimer {
    started: Instant,
    started_unix: u64,
    counts: RefCell<Counts>,
    /// The run's lease token the attempt holds, once it does (`AttemptCost::lease`).
    lease: RefCell<Option<String>>,
    job: Job,
}

impl Default for PhaseTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl PhaseTimer {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            started_unix: crate::unix_now(),
            counts: RefCell::default(),
            lease: RefCell::default(),
            job: Job::Run,
        }
    }

    /// The timer of a sweep's feature-cache job (`Job::FeatureCache`).
    pub fn feature_cache() -> Self {
        Self { job: Job::FeatureCache, ..Self::new() }
    }

    /// Runs `f`, adding its wall time to `phase`.
    pub fn time<T>(&self, phase: Phase, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        let s = t.elapsed().as_secs_f64();
        let mut c = self.counts.borrow_mut();
        match phase {
            Phase::Features => c.phases.features_s += s,
            Phase::Train => c.phases.train_s += s,
            Phase::Eval => c.phases.eval_s += s,
        }
        out
    }

    pub fn add_trained(&self, images: u64) {
        self.counts.borrow_mut().images_trained += images;
    }

    pub fn add_evaluated(&self, images: u64) {
        self.counts.borrow_mut().eval_images += images;
    }

    /// The lease the attempt took (its records carry the token).
    pub fn set_lease(&self, token: Option<&str>) {
        *self.lease.borrow_mut() = token.map(str::to_string);
    }

    /// Writes the attempt's record as it stands (rank 0; see [`Outcome::Interrupted`]).
    /// Best effort: a lost cost record must not fail (or retry) a trained run.
    pub fn record(
        &self,
        store: &Store,
        paths: &RunPaths,
        outcome: Outcome,
        device: tch::Device,
        ranks: usize,
        cfg: &RunConfig,
    ) {
        let rec = self.finish_run(outcome, device, ranks, cfg);
        if let Err(e) = write_attempt(store, paths, &rec) {
            tracing::warn!("cost record of this attempt not written: {}", crate::error_text::chain(&e));
        }
    }

    pub fn set_features(&self, computed: u64, scanned: u64) {
        let mut c = self.counts.borrow_mut();
        (c.features_computed, c.feature_images) = (computed, scanned);
    }

    /// The record of the attempt ending now.
    pub fn finish(&self, outcome: Outcome, device: tch::Device, ranks: usize, shape: String) -> AttemptCost {
        let wall_s = self.started.elapsed().as_secs_f64();
        let c = self.counts.borrow();
        let mut phases = c.phases.clone();
        phases.other_s = (wall_s - phases.features_s - phases.train_s - phases.eval_s).max(0.0);
        let rank_hours = wall_s * ranks as f64 / 3600.0;
        AttemptCost {
            started_unix: self.started_unix,
            ended_unix: crate::unix_now(),
            job: self.job,
            outcome,
            host: crate::hostname(),
            pid: std::process::id(),
            device: device_kind(device).to_string(),
            gpu_name: None,
            ranks,
            wall_s,
            phases,
            rank_hours,
            gpu_hours: device.is_cuda().then_some(rank_hours),
            images_trained: c.images_trained,
            features_computed: c.features_computed,
            feature_images: c.feature_images,
            eval_images: c.eval_images,
            shape,
            gflop_per_image: None,
            feature_key: None,
            lease: self.lease.borrow().clone(),
        }
    }

    /// [`finish`](Self::finish) for a job of `cfg`: its shape key, FLOPs per image and
    /// feature key filled in.
    pub fn finish_run(&self, outcome: Outcome, device: tch::Device, ranks: usize, cfg: &RunConfig) -> AttemptCost {
        let mut rec = self.finish(outcome, device, ranks, shape_key(cfg, device_kind(device)));
        rec.gflop_per_image = Some(flops_per_image(cfg) / 1e9);
        rec.feature_key = Some(feature_key(cfg));
        rec
    }
}

/// `runs/<id>/cost.json`: every attempt record of a run in one object, so that a reader
/// of many runs (`ras status`, `ras report` of a 2,000-run sweep on a remote store) makes
/// one GET a run instead of a LIST and a GET per record. The records under `attempts/`
/// stay the audit; the index is written first and holds the record itself, so a crash
/// between the two writes loses nothing from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostIndex {
    /// Oldest first.
    pub attempts: Vec<AttemptCost>,
}

/// Writes an attempt's record under its run: into the run's index, then on its own.
/// One writer at a time: a run's attempts hold its lease, and its feature-cache job ends
/// before the run starts.
pub fn write_attempt(store: &Store, paths: &RunPaths, rec: &AttemptCost) -> Result<(), StoreError> {
    let key = paths.attempt(rec.started_unix, &rec.host, rec.pid);
    let mut index = match store.get_json::<CostIndex>(&paths.cost_index()) {
        Ok(Some(index)) => index,
        // No index yet (or a torn one): the records written so far are its start.
        Ok(None) | Err(StoreError::Corrupt { .. }) => {
            CostIndex { attempts: listed_attempts(store, std::slice::from_ref(paths))?.remove(0) }
        }
        Err(e) => return Err(e),
    };
    index.attempts.retain(|r| paths.attempt(r.started_unix, &r.host, r.pid) != key);
    index.attempts.push(rec.clone());
    index.attempts.sort_by_key(|r| r.started_unix);
    store.put_json(&paths.cost_index(), &index)?;
    store.put_json(&key, rec)
}

/// Every attempt record of a run, oldest first. A record that does not parse (another
/// version's) is skipped: cost is reported, never relied upon.
pub fn read_attempts(store: &Store, paths: &RunPaths) -> Result<Vec<AttemptCost>, StoreError> {
    Ok(read_attempts_many(store, std::slice::from_ref(paths))?.remove(0))
}

/// [`read_attempts`] of many runs: one batch of GETs of their indexes; only runs with no
/// index (written by a ras before it) are listed, in one batch of LISTs and GETs.
pub fn read_attempts_many(store: &Store, runs: &[RunPaths]) -> Result<Vec<Vec<AttemptCost>>, StoreError> {
    let keys: Vec<String> = runs.iter().map(|p| p.cost_index()).collect();
    let mut out: Vec<Option<Vec<AttemptCost>>> = store
        .get_many(&keys)?
        .into_iter()
        .map(|b| b.and_then(|b| serde_json::from_slice::<CostIndex>(&b).ok()).map(|i| i.attempts))
        .collect();
    let missing: Vec<usize> = (0..runs.len()).filter(|&i| out[i].is_none()).collect();
    let paths: Vec<RunPaths> = missing.iter().map(|&i| runs[i].clone()).collect();
    for (&i, recs) in missing.iter().zip(listed_attempts(store, &paths)?) {
        out[i] = Some(recs);
    }
    Ok(out.into_iter().map(Option::unwrap_or_default).collect())
}

/// The records under `attempts/` of many runs: one batch of LISTs, then one of GETs.
fn listed_attempts(store: &Store, runs: &[RunPaths]) -> Result<Vec<Vec<AttemptCost>>, StoreError> {
    let prefixes: Vec<String> = runs.iter().map(|p| format!("{}/", p.attempts())).collect();
    let listed = store.list_many(&prefixes)?;
    let is_attempt = |k: &str| matches!(RunPaths::parse(k), Some((_, RunKey::Attempt { .. })));
    let keys: Vec<&String> = listed.iter().flatten().filter(|k| is_attempt(k)).collect();
    let mut bytes = store.get_many(&keys)?.into_iter();
    let mut out = vec![];
    for list in &listed {
        // A record that does not parse (torn by a crash) is left out, not an error.
        let mut recs: Vec<AttemptCost> = list
            .iter()
            .filter(|k| is_attempt(k))
            .filter_map(|_| bytes.next().flatten())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        recs.sort_by_key(|r| r.started_unix);
        out.push(recs);
    }
    Ok(out)
}

/// The sum of a run's attempts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CostSummary {
    pub attempts: usize,
    pub wall_s: f64,
    pub phases: Phases,
    pub rank_hours: f64,
    pub gpu_hours: f64,
}

impl CostSummary {
    pub fn of(records: &[AttemptCost]) -> Self {
        let mut s = Self::default();
        for r in records {
            s.add_attempt(r);
        }
        s
    }

    fn add_attempt(&mut self, r: &AttemptCost) {
        self.attempts += 1;
        self.wall_s += r.wall_s;
        self.phases.add(&r.phases);
        self.rank_hours += r.rank_hours;
        self.gpu_hours += r.gpu_hours.unwrap_or(0.0);
    }

    pub fn add(&mut self, o: &CostSummary) {
        self.attempts += o.attempts;
        self.wall_s += o.wall_s;
        self.phases.add(&o.phases);
        self.rank_hours += o.rank_hours;
        self.gpu_hours += o.gpu_hours;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attempts written through the index are read back with one GET a run and no LIST;
    /// a run written before the index existed (records only under attempts/) is listed.
    #[test]
    fn the_cost_index_holds_every_attempt_and_saves_the_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let t = PhaseTimer::new();
        let mut first = t.finish(Outcome::Preempted, tch::Device::Cpu, 1, "s".into());
        first.started_unix = 100;
        let mut second = first.clone();
        second.started_unix = 200;
        second.outcome = Outcome::Complete;
        let (a, b) = (RunPaths::new("run-a"), RunPaths::new("run-b"));
        write_attempt(&store, &a, &second).unwrap();
        write_attempt(&store, &a, &first).unwrap();
        write_attempt(&store, &a, &first).unwrap(); // written again: once in the index
        let index: CostIndex = store.get_json(&a.cost_index()).unwrap().unwrap();
        assert_eq!(index.attempts, vec![first.clone(), second.clone()], "oldest first, no duplicate");
        assert_eq!(store.list(&format!("{}/", a.attempts())).unwrap().len(), 2, "each record also on its own");
        // run-b: an older ras wrote its record without an index.
        store.put_json(&b.attempt(first.started_unix, &first.host, first.pid), &first).unwrap();
        let before = crate::store::request_counts();
        let got = read_attempts_many(&store, &[a.clone(), b.clone()]).unwrap();
        let made = crate::store::request_counts().since(&before);
        assert_eq!(got, vec![vec![first.clone(), second], vec![first]]);
        // Other tests may run store calls at the same time: at least, never fewer.
        assert!(made.get >= 3 && made.list >= 1, "{made:?}");
        let before = crate::store::request_counts();
        read_attempts_many(&store, std::slice::from_ref(&a)).unwrap();
        let made = crate::store::request_counts().since(&before);
        assert!(made.get >= 1, "{made:?}");
        // A later attempt of run-b starts its index from the listed record.
        let mut third = index.attempts[1].clone();
        third.started_unix = 300;
        write_attempt(&store, &b, &third).unwrap();
        let index: CostIndex = store.get_json(&b.cost_index()).unwrap().unwrap();
        assert_eq!(index.attempts.iter().map(|r| r.started_unix).collect::<Vec<_>>(), vec![100, 300]);
    }

    #[test]
    fn a_timer_splits_wall_time_into_phases() {
        let t = PhaseTimer::new();
        t.time(Phase::Train, || std::thread::sleep(std::time::Duration::from_millis(30)));
        t.time(Phase::Eval, || std::thread::sleep(std::time::Duration::from_millis(10)));
        t.add_trained(16);
        let r = t.finish(Outcome::Complete, tch::Device::Cpu, 2, "s".into());
        let p = &r.phases;
        assert!(p.train_s >= 0.03 && p.eval_s >= 0.01 && p.features_s == 0.0, "{p:?}");
        assert!((p.features_s + p.train_s + p.eval_s + p.other_s - r.wall_s).abs() < 1e-9);
        assert!((r.rank_hours - r.wall_s * 2.0 / 3600.0).abs() < 1e-12);
        assert_eq!((r.gpu_hours, r.images_trained, r.device.as_str()), (None, 16, "cpu"));
    }
}
