//! What a run records about itself in the store, beside its model: its status (read by
//! launchers and the sweep coordinator to decide what to do next), its logs, its final
//! metrics and the environment that produced them. Kept apart from the training loop
//! because other processes write some of it too (`mark_failed_unless_recorded`, the
//! `--force` clean-up in the mpirun launcher), and they must agree on the formats.

use super::error::{Result, RunError};
use super::paths::RunPaths;
use super::run_id;
use crate::backbone::BackboneIdentity;
use crate::config::{RunConfig, Setting};
use crate::eval::{ClassMetrics, MetricsTable};
use crate::features::CacheStats;
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Complete,
    Failed,
    /// Stopped by SIGTERM/SIGUSR1 after a checkpoint: requeue it and it resumes.
    Preempted,
    /// Stopped because the store stayed unreachable past its retry budget
    /// (`RAS_STORE_RETRY_S`; the error says which key): an infrastructure failure, not the
    /// run's. Started again it resumes from its last checkpoint; a sweep requeues it
    /// without using up an attempt. Recorded only if the store answers again in time: a
    /// run whose store is still down when it gives up keeps its previous status.
    Infra,
    /// A search run that reached the rung its sweep allows: checkpointed, its selection
    /// metric recorded (`rungs/<epoch>.json`), waiting for its sweep to promote it (then
    /// it resumes from the checkpoint) or not.
    Paused,
}

impl RunState {
    /// Whether an attempt that ended in this state counts against the sweep's
    /// `max_retries`: a preempted run checkpointed (resuming it is progress, not a retry),
    /// and an infrastructure failure is not the run's.
    pub fn uses_an_attempt(&self) -> bool {
        !matches!(self, RunState::Preempted | RunState::Infra | RunState::Paused)
    }
}

/// Exit code of a worker that checkpointed and stopped on SIGTERM/SIGUSR1: the launcher
/// requeues it (EX_TEMPFAIL).
pub const EXIT_REQUEUE: u8 = crate::exit::ExitStatus::Requeue.code();

/// What `status.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStatus {
    pub state: RunState,
    pub run_id: String,
    pub epoch: usize,
    pub updated_unix: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `final_metrics.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalMetrics {
    pub epoch: usize,
    pub setting: Setting,
    pub metrics: MetricsTable,
    /// The public code's selection (best (mean I-AUROC + mean P-AUROC)/2 on the test
    /// set): optimistic, reported only as a labelled extra.
    pub best_on_test_extra: Option<(usize, MetricsTable)>,
    pub backbone_pretrained: bool,
    pub feature_cache: CacheStats,
    /// Per class, the final model's score of every test image and its label (in the
    /// order of the class's test set): what a verdict's bootstrap resamples. Empty in runs
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub image_scores: BTreeMap<String, ImageScores>,
}

/// One class's test images: the final model's image scores and the labels (true =
/// anomalous).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageScores {
    pub scores: Vec<f32>,
    pub labels: Vec<bool>,
}

impl FinalMetrics {
    /// What `ras train` and `ras eval` print about a finished run `run_id` in `store`.
    pub fn render_outcome(&self, run_id: &str, store: &str) -> String {
        let prefix = RunPaths::new(run_id).prefix();
        let mut s = format!("run {run_id} (epoch {}, {:?}) in {store}/{prefix}\n", self.epoch, self.setting);
        if !self.backbone_pretrained {
            s += "NOTE: random-init backbone (no backbone.weights): not comparable to the paper's numbers\n";
        }
        s + &self.metrics.render()
    }
}

/// The epoch whose metrics have the best (mean I-AUROC + mean P-AUROC) (the earliest
/// among equals), as `FinalMetrics::best_on_test_extra` reports it.
pub(crate) fn best_on_test(
    by_epoch: &BTreeMap<usize, BTreeMap<String, ClassMetrics>>,
) -> Option<(usize, MetricsTable)> {
    by_epoch.iter().map(|(e, m)| (*e, MetricsTable::new(m.clone()))).max_by(|a, b| {
        let key = |t: &MetricsTable| t.mean.image_auroc + t.mean.pixel_auroc;
        key(&a.1).total_cmp(&key(&b.1)).then(b.0.cmp(&a.0))
    })
}

/// Writes `status.json` for one rank: rank 0 writes every state, the other ranks only
/// "failed" and "infra" (the error of whichever rank failed must reach the store).
pub(crate) struct StatusWriter<'a> {
    store: &'a Store,
    paths: &'a RunPaths,
    root: bool,
}

impl<'a> StatusWriter<'a> {
    pub fn new(store: &'a Store, paths: &'a RunPaths, root: bool) -> Self {
        Self { store, paths, root }
    }

    pub fn write(&self, state: RunState, epoch: usize, error: Option<String>) -> Result<(), StoreError> {
        if !self.root && !matches!(state, RunState::Failed | RunState::Infra) {
            return Ok(());
        }
        let status =
            RunStatus { state, run_id: self.paths.id().to_string(), epoch, updated_unix: crate::unix_now(), error };
        self.store.put_json(&self.paths.status(), &status)
    }
}

/// The final metrics of a run the store holds as complete; None when it is not complete
/// (or its final metrics are missing).
pub(crate) fn completed(store: &Store, paths: &RunPaths) -> Result<Option<FinalMetrics>, StoreError> {
    match store.get_json::<RunStatus>(&paths.status())? {
        Some(st) if st.state == RunState::Complete => store.get_json::<FinalMetrics>(&paths.final_metrics()),
        _ => Ok(None),
    }
}

/// What a run's status.json says of its last attempt, for an error about a run that is
/// not finished: "" when it is running or has no status, else "; its last attempt <state>
/// at epoch N: <reason>".
pub(crate) fn last_attempt_text(store: &Store, paths: &RunPaths) -> Result<String, StoreError> {
    let Some(st) = store.get_json::<RunStatus>(&paths.status())? else { return Ok(String::new()) };
    let state = match st.state {
        RunState::Running | RunState::Complete => return Ok(String::new()),
        RunState::Failed => "failed",
        RunState::Preempted => "was preempted (stopped after a checkpoint)",
        RunState::Infra => "stopped on a store outage",
        RunState::Paused => "paused at a rung of its search (its sweep promotes it or not)",
    };
    let reason = st.error.map(|e| format!(": {e}")).unwrap_or_default();
    Ok(format!("; its last attempt {state} at epoch {}{reason}", st.epoch))
}

/// Marks a run failed with `reason` unless a rank already recorded an outcome
/// (complete, failed, preempted): used by launchers when the job dies from outside.
pub fn mark_failed_unless_recorded(cfg: &RunConfig, reason: &str) -> Result<(), StoreError> {
    let store = Store::open(&cfg.store)?;
    let id = run_id(cfg);
    let key = RunPaths::new(id.as_str()).status();
    let current = store.get_json::<RunStatus>(&key)?;
    if let Some(st) = &current {
        if st.state != RunState::Running {
            return Ok(());
        }
    }
    let epoch = current.map(|s| s.epoch).unwrap_or(0);
    store.put_json(
        &key,
        &RunStatus {
            state: RunState::Failed,
            run_id: id,
            epoch,
            updated_unix: crate::unix_now(),
            error: Some(reason.to_string()),
        },
    )?;
    Ok(())
}

/// The resolved config a run stored (`config.toml`); None when the store has no such run.
/// Every reader of a finished run (eval, export, predict) starts here.
pub fn stored_config(store: &Store, paths: &RunPaths) -> Result<Option<RunConfig>> {
    let Some(text) = store.get(&paths.config())? else { return Ok(None) };
    let text = std::str::from_utf8(&text).map_err(|source| RunError::NotUtf8 { key: paths.config(), source })?;
    Ok(Some(RunConfig::from_toml(text, std::path::Path::new(&paths.config()))?))
}

/// Deletes everything a run has in the store (`--force`: run again from scratch). Must
/// happen once, before any rank starts.
pub fn discard(store: &Store, paths: &RunPaths) -> Result<(), StoreError> {
    // The lease stays: it is the caller's (`--force` takes it before discarding); so does
    // its history (an audit of who wrote the run, this discard included).
    let (lease, history) = (paths.lease(), format!("{}/", paths.leases()));
    let keys: Vec<String> = store
        .list(&paths.prefix())?
        .into_iter()
        .filter(|k| !k.starts_with(&lease) && !k.starts_with(&history))
        .collect();
    store.delete_many(&keys)
}

/// What a run records about the software and machine that produced it.
pub fn environment(device: tch::Device, backbone: &BackboneIdentity, cache: &CacheStats) -> serde_json::Value {
    serde_json::json!({
        "ras_version": env!("CARGO_PKG_VERSION"),
        "git_commit": env!("RAS_GIT_COMMIT"),
        "tch_version": "0.24.0",
        "libtorch_version": env!("RAS_LIBTORCH_VERSION"),
        "device": format!("{device:?}"),
        "cuda_available": tch::Cuda::is_available(),
        "torch_threads": tch::get_num_threads(),
        "hostname": crate::hostname(),
        "backbone": backbone,
        "backbone_warning": (!backbone.pretrained).then_some("random-init backbone: metrics are not comparable to the paper"),
        "feature_cache": cache,
    })
}

/// A run's logs while it trains: the metrics of every class per eval epoch (filled model
/// by model), and the `train_log.jsonl` lines. Both files are rewritten whole, so a
/// resumed run first reads them back (`load`) and drops what its checkpoint does not cover.
#[derive(Default)]
pub(crate) struct RunLogs {
    pub by_epoch: BTreeMap<usize, BTreeMap<String, ClassMetrics>>,
    pub train_log: Vec<serde_json::Value>,
}

impl RunLogs {
    /// The logs a previous attempt of the run stored (empty where none). A torn tail (the
    /// last line cut short by a writer that died, a full disk or a partial copy) is
    /// dropped with a warning: the run resumes from its checkpoint, re-evaluates the
    /// checkpoint's epoch if its metrics were in the lost line, and rewrites both files
    /// whole at their next write. An unreadable line before the last is not a torn tail
    /// but damage this cannot repair: an error naming the key and line.
    pub fn load(store: &Store, paths: &RunPaths) -> Result<Self> {
        let mut logs = Self::default();
        let key = paths.metrics_log();
        let [metrics, train] = <[_; 2]>::try_from(store.get_many(&[&key, &paths.train_log()])?).expect("two answers");
        if let Some(text) = metrics {
            for (n, v) in read_jsonl(&text, &key)? {
                let e = v["epoch"].as_u64().ok_or_else(|| RunError::LogNoEpoch { key: key.clone(), line: n })? as usize;
                let t: MetricsTable = serde_json::from_value(v["metrics"].clone())
                    .map_err(|source| RunError::LogMetrics { key: key.clone(), line: n, source })?;
                logs.by_epoch.insert(e, t.classes);
            }
        }
        let key = paths.train_log();
        if let Some(text) = train {
            logs.train_log = read_jsonl(&text, &key)?.into_iter().map(|(_, v)| v).collect();
        }
        Ok(logs)
    }

    /// Drops `model`'s training lines after `epoch` (the epoch it resumes from).
    pub fn keep_train_until(&mut self, model: &str, epoch: usize) {
        self.train_log.retain(|v| v["model"] != model || v["epoch"].as_u64().unwrap_or(0) as usize <= epoch);
    }

    pub fn push_train(&mut self, model: &str, epoch: usize, loss: f64, lr: f64) {
        self.train_log.push(serde_json::json!({"model": model, "epoch": epoch, "loss": loss, "lr": lr}));
    }

    pub fn write_train_log(&self, store: &Store, paths: &RunPaths) -> Result<(), StoreError> {
        store.put(&paths.train_log(), self.train_log.iter().map(|v| format!("{v}\n")).collect::<String>())
    }

    pub fn write_metrics_log(&self, store: &Store, paths: &RunPaths) -> Result<(), StoreError> {
        let mut text = String::new();
        for (epoch, classes) in &self.by_epoch {
            text += &serde_json::json!({"epoch": epoch, "metrics": MetricsTable::new(classes.clone())}).to_string();
            text.push('\n');
        }
        store.put(&paths.metrics_log(), text)
    }
}

/// The JSON lines of the store object `key` with their 1-based line numbers. The writers
/// end every line with a newline, so only the last line can be torn: if it does not
/// parse it is dropped with a warning naming the key and line. Any other unparsable line
/// is an error naming them. (Lines are parsed as bytes: a cut can split a UTF-8 character.)
pub(crate) fn read_jsonl(text: &[u8], key: &str) -> Result<Vec<(usize, serde_json::Value)>> {
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    let last = lines.iter().rposition(|l| !l.trim_ascii().is_empty());
    let mut out = vec![];
    for (i, line) in lines.iter().enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(v) => out.push((i + 1, v)),
            Err(e) if Some(i) == last => {
                tracing::warn!(
                    key,
                    line = i + 1,
                    "dropping the torn last line ({e}); the run resumes from its checkpoint and rewrites the log"
                );
            }
            Err(error) => return Err(RunError::LogDamaged { key: key.to_string(), line: i + 1, error }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::read_jsonl;

    #[test]
    fn a_torn_tail_is_dropped_a_damaged_middle_is_named() {
        let ok = b"{\"epoch\":1}\n{\"epoch\":2}\n";
        assert_eq!(read_jsonl(ok, "runs/x/metrics.jsonl").unwrap().len(), 2);
        // Cut mid-line (also mid-character): the last line goes, the rest stays.
        let torn = "{\"epoch\":1}\n{\"epoch\":2, \"name\": \"gr\u{e4}".as_bytes();
        let torn = &torn[..torn.len() - 1];
        let got = read_jsonl(torn, "runs/x/metrics.jsonl").unwrap();
        assert_eq!(got.iter().map(|(n, v)| (*n, v["epoch"].as_u64())).collect::<Vec<_>>(), vec![(1, Some(1))]);
        // Damage before the last line is an error naming the key and the line.
        let bad = b"{\"epoch\":1}\n{\"epo\n{\"epoch\":3}\n";
        let err = read_jsonl(bad, "runs/x/train_log.jsonl").unwrap_err().to_string();
        assert!(err.contains("runs/x/train_log.jsonl line 2"), "{err}");
    }
}
