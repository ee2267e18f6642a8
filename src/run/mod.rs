//! One run, end to end: scan the dataset, fill or reuse the feature cache, train one
//! model (unified) or one per class (separate), evaluate every K epochs, and keep
//! everything in the store under `runs/<run id>/`:
//!
//! ```text
//! config.toml            resolved config (what produced everything below)
//! env.json               versions, git commit, device, backbone identity, cache counts
//! status.json            running | complete | failed (+ error, epoch)
//! train_log.jsonl        one line per epoch and model: loss, lr
//! metrics.jsonl          one line per evaluation: per-class and mean metrics
//! final_metrics.json     last-epoch metrics (+ best-on-test as a labelled extra)
//! predictions/<class>.safetensors + .json   image scores, 224x224 maps, keys, labels
//! evals/test_jitter_<s>.json  final model at test-time noise s (eval.noise_scales, ras eval)
//! checkpoints/<model>/epoch_NNNN[_step_SSSSS].{safetensors,json}
//!                        weights + AdamW state, then the record (epoch, step, sha256)
//! ```
//! `status.json` says "complete" only after everything else is written.
//!
//! With several ranks (mpirun / srun), every rank trains on its shard and only rank 0
//! writes to the store. A restarted run resumes from its newest valid checkpoint: the
//! data order and the jitter noise are functions of (seed, epoch, sample), so the model,
//! AdamW state and (epoch, step) are the whole state, and a resumed run ends bit-identical
//! to an uninterrupted one. SIGTERM / SIGUSR1 (Slurm's warning) finish the current step,
//! checkpoint, and exit with `EXIT_REQUEUE`.

use crate::config::{DeviceSpec, RunConfig, Setting};
use crate::data::{imageio, scan, DatasetIndex};
use crate::dist::{self, Collective, WorldInfo};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use crate::eval::{class_metrics, predict, ClassMetrics, MetricsTable};
use crate::features::{load_or_compute, CacheStats, ClassFeatures};
use crate::progress::Progress;
use crate::store::{sha256_hex, tensors, Store};
use crate::train::Trainer;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// Stable id of a run: its name and a hash of its resolved config.
pub fn run_id(cfg: &RunConfig) -> String {
    cfg.run_id()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Complete,
    Failed,
    /// Stopped by SIGTERM/SIGUSR1 after a checkpoint: requeue it and it resumes.
    Preempted,
}

/// Exit code of a worker that checkpointed and stopped on SIGTERM/SIGUSR1: the launcher
/// requeues it (EX_TEMPFAIL).
pub const EXIT_REQUEUE: u8 = crate::exit::ExitStatus::Requeue.code();

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
}

/// What a run returns to its caller. `final_metrics` is None on ranks other than 0 and
/// when the run was preempted.
pub struct RunOutcome {
    pub run_id: String,
    pub prefix: String,
    pub final_metrics: Option<FinalMetrics>,
    pub preempted: bool,
}

pub struct RunOptions {
    pub progress: Progress,
    /// Run again from scratch even if the store holds this run (complete or not).
    pub force: bool,
    /// Raised by SIGTERM / SIGUSR1: checkpoint after the current step and stop.
    pub stop: Arc<AtomicBool>,
}

impl RunOptions {
    pub fn new(progress: Progress, force: bool) -> Self {
        Self { progress, force, stop: Arc::new(AtomicBool::new(false)) }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The device of a single-process command (features, eval) for `train.device`.
pub fn resolve_device(spec: DeviceSpec) -> Result<Device> {
    Ok(WorldInfo::SINGLE.device(spec)?)
}

/// Trains and evaluates one run (resuming it if the store holds a partial one); on any
/// error the run is marked failed with the rank and the error.
pub fn execute(cfg: &RunConfig, opts: &RunOptions) -> Result<RunOutcome> {
    let world = WorldInfo::from_env()?;
    let device = world.device(cfg.train.device)?;
    let coll = dist::connect(world, device)?;
    let store = Store::open(&cfg.store)?;
    let id = run_id(cfg);
    let prefix = format!("runs/{id}");
    let root = world.rank == 0;
    if !opts.force {
        if let Some(st) = store.get_json::<RunStatus>(&format!("{prefix}/status.json"))? {
            if st.state == RunState::Complete {
                if let Some(fm) = store.get_json::<FinalMetrics>(&format!("{prefix}/final_metrics.json"))? {
                    tracing::info!(run = id, "run already complete in {}; not training again (use --force)", store.url());
                    return Ok(RunOutcome { run_id: id, prefix, final_metrics: Some(fm), preempted: false });
                }
            }
        }
    } else if root {
        discard(&store, &id)?;
    }
    // With --force, no rank may start before rank 0 has cleared the old run.
    coll.barrier()?;
    let status = |state: RunState, epoch: usize, error: Option<String>| -> Result<(), crate::store::StoreError> {
        if !root && state != RunState::Failed {
            return Ok(());
        }
        store.put_json(&format!("{prefix}/status.json"), &RunStatus { state, run_id: id.clone(), epoch, updated_unix: now(), error })
    };
    status(RunState::Running, 0, None)?;
    match execute_inner(cfg, opts, &store, &prefix, &status, coll.as_ref(), device) {
        Ok(Finished::Complete(Some(fm))) => {
            status(RunState::Complete, fm.epoch, None)?;
            Ok(RunOutcome { run_id: id, prefix, final_metrics: Some(fm), preempted: false })
        }
        Ok(Finished::Complete(None)) => Ok(RunOutcome { run_id: id, prefix, final_metrics: None, preempted: false }),
        Ok(Finished::Preempted) => Ok(RunOutcome { run_id: id, prefix, final_metrics: None, preempted: true }),
        Err(e) => {
            let reason = if world.world_size > 1 { format!("rank {} of {}: {e:#}", world.rank, world.world_size) } else { format!("{e:#}") };
            // Best effort: the original error matters more than a failed status write.
            let _ = status(RunState::Failed, 0, Some(reason.clone()));
            if world.world_size > 1 {
                // Take the other ranks down now instead of leaving them in a collective.
                eprintln!("error: {reason}");
                coll.abort(1);
            }
            Err(e)
        }
    }
}

/// Deletes everything the store holds for run `id` (`--force`).
pub fn discard(store: &Store, id: &str) -> Result<()> {
    for key in store.list(&format!("runs/{id}"))? {
        store.delete(&key)?;
    }
    Ok(())
}

/// Marks a run failed with `reason` unless a rank already recorded an outcome
/// (complete, failed, preempted): used by launchers when the job dies from outside.
pub fn mark_failed_unless_recorded(cfg: &RunConfig, reason: &str) -> Result<()> {
    let store = Store::open(&cfg.store)?;
    let id = run_id(cfg);
    let key = format!("runs/{id}/status.json");
    let current = store.get_json::<RunStatus>(&key)?;
    if let Some(st) = &current {
        if st.state != RunState::Running {
            return Ok(());
        }
    }
    let epoch = current.map(|s| s.epoch).unwrap_or(0);
    store.put_json(&key, &RunStatus { state: RunState::Failed, run_id: id, epoch, updated_unix: now(), error: Some(reason.to_string()) })?;
    Ok(())
}

/// Everything stored at a checkpoint beside the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub model: String,
    /// Completed epochs.
    pub epoch: usize,
    /// Steps already done in epoch `epoch` (0 at an epoch boundary).
    pub step: usize,
    pub weights: String,
    pub sha256: String,
    pub bytes: usize,
    /// (mean image AUROC + mean pixel AUROC) / 2 at this epoch, when it was an eval epoch.
    pub score: Option<f64>,
}

fn ckpt_key(prefix: &str, model: &str, epoch: usize, step: usize) -> String {
    if step == 0 {
        format!("{prefix}/checkpoints/{model}/epoch_{epoch:04}")
    } else {
        format!("{prefix}/checkpoints/{model}/epoch_{epoch:04}_step_{step:05}")
    }
}

/// All checkpoint records of a model, oldest first (by epoch, then step).
fn checkpoint_records(store: &Store, prefix: &str, model: &str) -> Result<Vec<CheckpointRecord>> {
    let mut recs = vec![];
    for key in store.list(&format!("{prefix}/checkpoints/{model}"))?.into_iter().filter(|k| k.ends_with(".json")) {
        match store.get_json::<CheckpointRecord>(&key) {
            Ok(Some(r)) => recs.push(r),
            Ok(None) => {}
            Err(e) => tracing::warn!(key, "ignoring unreadable checkpoint record: {e}"),
        }
    }
    recs.sort_by_key(|r| (r.epoch, r.step));
    Ok(recs)
}

/// The newest checkpoint whose weights match their recorded sha256; corrupt or
/// half-written ones are skipped (with a warning) in favour of the previous one.
pub fn latest_checkpoint(store: &Store, prefix: &str, model: &str) -> Result<(CheckpointRecord, bytes::Bytes)> {
    latest_valid_checkpoint(store, prefix, model)?.with_context(|| format!("no valid checkpoint under {}/{prefix}/checkpoints/{model}", store.url()))
}

fn latest_valid_checkpoint(store: &Store, prefix: &str, model: &str) -> Result<Option<(CheckpointRecord, bytes::Bytes)>> {
    for rec in checkpoint_records(store, prefix, model)?.into_iter().rev() {
        match store.get_verified(&rec.weights, &rec.sha256) {
            Ok(Some(b)) => return Ok(Some((rec, b))),
            Ok(None) => tracing::warn!(key = rec.weights, "checkpoint weights missing; trying the previous one"),
            Err(e) => tracing::warn!("{e}; trying the previous checkpoint"),
        }
    }
    Ok(None)
}

fn save_checkpoint(store: &Store, prefix: &str, model: &str, epoch: usize, step: usize, score: Option<f64>, keep_last: usize, trainer: &Trainer) -> Result<()> {
    let state = trainer.state_tensors();
    let list: Vec<(&String, &Tensor)> = state.iter().map(|(n, t)| (n, t)).collect();
    let bytes = tensors::encode(&list)?;
    let base = ckpt_key(prefix, model, epoch, step);
    let rec = CheckpointRecord { model: model.into(), epoch, step, weights: format!("{base}.safetensors"), sha256: sha256_hex(&bytes), bytes: bytes.len(), score };
    store.put(&rec.weights, bytes)?;
    store.put_json(&format!("{base}.json"), &rec)?; // publish
    // Retention: the newest `keep_last` plus the best-scoring one.
    let recs = checkpoint_records(store, prefix, model)?;
    let best = recs.iter().filter(|r| r.score.is_some()).max_by(|a, b| a.score.partial_cmp(&b.score).unwrap_or(std::cmp::Ordering::Equal)).map(|r| (r.epoch, r.step));
    let n = recs.len();
    for (i, r) in recs.iter().enumerate() {
        if i + keep_last.max(1) < n && Some((r.epoch, r.step)) != best {
            let base = ckpt_key(prefix, model, r.epoch, r.step);
            store.delete(&format!("{base}.json"))?; // unpublish first
            store.delete(&r.weights)?;
        }
    }
    Ok(())
}

/// Predictions of the whole test set of one class, sharded over the ranks and gathered
/// on rank 0 (None elsewhere) in test order, without the padding duplicates.
fn predict_sharded(trainer: &Trainer, test: &Tensor, cfg: &RunConfig, coll: &dyn Collective, device: Device) -> Result<Option<crate::eval::Predictions>> {
    let world = coll.world();
    if world.world_size == 1 {
        return Ok(Some(predict(&trainer.model, test, cfg.backbone.image_size, cfg.eval.batch_size, cfg.eval.test_jitter_scale, cfg.seed, device)));
    }
    let m = test.size()[0] as usize;
    let order: Vec<usize> = (0..m).collect();
    let mine = dist::shard(&order, world);
    let index = Tensor::from_slice(&mine.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let local = predict(&trainer.model, &test.index_select(0, &index), cfg.backbone.image_size, cfg.eval.batch_size, 0.0, cfg.seed, device);
    if cfg.eval.test_jitter_scale > 0.0 {
        bail!("test-time jitter with several ranks is not supported yet: evaluate with `ras eval --test-jitter` on one rank");
    }
    let packed = Tensor::cat(&[local.scores.unsqueeze(1), local.maps.flatten(1, 2)], 1).contiguous();
    let Some(all) = coll.gather_to_root(&packed)? else { return Ok(None) };
    let per = mine.len();
    let s = cfg.backbone.image_size;
    let mut rows: Vec<Option<Tensor>> = (0..m).map(|_| None).collect();
    for r in 0..world.world_size {
        for j in 0..per {
            let idx = j * world.world_size + r; // position in the padded order
            if idx < m && rows[idx].is_none() {
                rows[idx] = Some(all.get((r * per + j) as i64));
            }
        }
    }
    let rows: Vec<Tensor> = rows.into_iter().map(|t| t.expect("every test image on some rank")).collect();
    let stacked = Tensor::stack(&rows, 0);
    Ok(Some(crate::eval::Predictions { scores: stacked.select(1, 0), maps: stacked.narrow(1, 1, s * s).view([m as i64, s, s]) }))
}

/// How `execute_inner` ended (errors aside). `Complete(None)`: a rank other than 0.
enum Finished {
    Complete(Option<FinalMetrics>),
    Preempted,
}

#[allow(clippy::too_many_arguments)]
fn execute_inner(
    cfg: &RunConfig,
    opts: &RunOptions,
    store: &Store,
    prefix: &str,
    status: &dyn Fn(RunState, usize, Option<String>) -> Result<(), crate::store::StoreError>,
    coll: &dyn Collective,
    device: Device,
) -> Result<Finished> {
    let world = coll.world();
    let root = world.rank == 0;
    if root {
        store.put(&format!("{prefix}/config.toml"), cfg.to_toml())?;
    }
    let index = scan(&cfg.dataset)?;
    index.check_headers()?;
    // Rank 0 fills the cache; the others then read it (no rank computes twice).
    let quiet = Progress::hidden();
    let mut loaded = None;
    if root {
        loaded = Some(load_or_compute(store, &cfg.backbone, device, &index, &opts.progress)?);
    }
    coll.barrier()?;
    let (features, cache) = match loaded {
        Some(l) => l,
        None => load_or_compute(store, &cfg.backbone, device, &index, &quiet)?,
    };
    let identity = crate::backbone::BackboneIdentity::resolve(&cfg.backbone)?;
    // Where every rank runs (collective: all ranks take part), kept with the run so a
    // plan can be checked against what the cluster did.
    let here = crate::dist::placement_of_this_rank(world).to_string();
    let ranks = crate::dist::gather_text(coll, &here, device)?;
    if root {
        let ranks: Vec<serde_json::Value> =
            ranks.unwrap_or_default().iter().map(|t| serde_json::from_str(t).unwrap_or(serde_json::Value::String(t.clone()))).collect();
        let mut env = crate::environment(device, &identity, &cache);
        env["world"] = serde_json::json!({"world_size": world.world_size, "collective": coll.name(), "ranks": ranks});
        store.put_json(&format!("{prefix}/env.json"), &env)?;
    }
    let masks = if root { load_masks(&index, cfg.backbone.image_size)? } else { vec![] };

    // Models: one for every class together, or one per class.
    let groups: Vec<(String, Vec<usize>)> = match cfg.train.setting {
        Setting::Unified => vec![("unified".into(), (0..features.len()).collect())],
        Setting::Separate => features.iter().enumerate().map(|(i, (c, _))| (c.clone(), vec![i])).collect(),
    };
    let channels = features[0].1.train.size()[1];
    let grid = cfg.backbone.image_size / 16;
    let epochs = cfg.train.epochs;
    let is_eval = |e: usize| e % cfg.train.eval_every == 0 || e == epochs;
    let ckpt_every = cfg.checkpoint.every.unwrap_or(cfg.train.eval_every);
    // Per eval epoch: metrics of every class, filled model by model (restored on resume).
    let mut by_epoch: BTreeMap<usize, BTreeMap<String, ClassMetrics>> = BTreeMap::new();
    let mut train_log: Vec<serde_json::Value> = vec![];
    if root && !opts.force {
        if let Some(text) = store.get(&format!("{prefix}/metrics.jsonl"))? {
            for line in std::str::from_utf8(&text)?.lines() {
                let v: serde_json::Value = serde_json::from_str(line)?;
                let e = v["epoch"].as_u64().context("metrics.jsonl line without epoch")? as usize;
                let t: MetricsTable = serde_json::from_value(v["metrics"].clone())?;
                by_epoch.insert(e, t.classes);
            }
        }
        if let Some(text) = store.get(&format!("{prefix}/train_log.jsonl"))? {
            train_log = std::str::from_utf8(&text)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
        }
    }
    let mut final_preds: BTreeMap<String, crate::eval::Predictions> = BTreeMap::new();
    for (model_name, members) in &groups {
        let train_feats = Tensor::cat(&members.iter().map(|&i| features[i].1.train.shallow_clone()).collect::<Vec<_>>(), 0);
        let mut trainer = Trainer::new(&cfg.model, &cfg.train, cfg.seed, channels, grid, device)?;
        let n = train_feats.size()[0] as usize;
        let steps = trainer.steps_per_epoch(n, world.world_size);
        // Resume from the newest valid checkpoint, if any.
        let (mut epoch, mut step) = (0usize, 0usize);
        if !opts.force {
            if let Some((rec, bytes)) = latest_valid_checkpoint(store, prefix, model_name)? {
                trainer.load_state(tensors::decode(&bytes)?).map_err(|e| anyhow::anyhow!("checkpoint {}: {e}", rec.weights))?;
                (epoch, step) = (rec.epoch, rec.step);
                tracing::info!(model = model_name, epoch, step, "resuming from checkpoint");
            }
        }
        let resumed_finished = epoch == epochs;
        train_log.retain(|v| v["model"] != model_name.as_str() || v["epoch"].as_u64().unwrap_or(0) as usize <= epoch);
        trainer.sync_from_root(coll)?;
        let bar = opts.progress.bar((n * epochs) as u64, &format!("train {model_name}"));
        bar.set_position((n * epoch) as u64);
        while epoch < epochs {
            let res = trainer.epoch(&train_feats, epoch, step, coll, &opts.stop, &mut |k| bar.inc(k as u64))?;
            if res.stopped && res.steps_done < steps {
                if root {
                    save_checkpoint(store, prefix, model_name, epoch, res.steps_done, None, cfg.checkpoint.keep_last, &trainer)?;
                    status(RunState::Preempted, epoch, None)?;
                }
                tracing::warn!(epoch, step = res.steps_done, "stopped by signal after a checkpoint; requeue to resume");
                return Ok(Finished::Preempted);
            }
            let done = epoch + 1;
            bar.set_message(format!("epoch {done}/{epochs} loss {:.4}", res.loss));
            if !res.loss.is_finite() {
                bail!("training diverged: loss {} at epoch {done} of model {model_name}", res.loss);
            }
            train_log.push(serde_json::json!({"model": model_name, "epoch": done, "loss": res.loss, "lr": crate::train::lr_at(&cfg.train, epoch)}));
            let mut score = None;
            if is_eval(done) {
                for &i in members {
                    let (class, ClassFeatures { test, .. }) = &features[i];
                    let Some(pred) = predict_sharded(&trainer, test, cfg, coll, device)? else { continue };
                    let labels: Vec<bool> = index.classes[i].1.test.iter().map(|s| s.label).collect();
                    let m = class_metrics(&pred, &labels, &masks[i], cfg.eval.aupro_fpr_limit).with_context(|| format!("metrics of class {class}"))?;
                    by_epoch.entry(done).or_default().insert(class.clone(), m);
                    if done == epochs {
                        final_preds.insert(class.clone(), pred);
                    }
                }
                if root {
                    let t = MetricsTable::new(by_epoch[&done].clone());
                    score = Some((t.mean.image_auroc + t.mean.pixel_auroc) / 2.0);
                    write_metrics_log(store, prefix, &by_epoch)?;
                }
            }
            let stop_now = res.stopped; // signal arrived during the epoch's last step
            if root && (done % ckpt_every == 0 || done == epochs || stop_now) {
                store.put(&format!("{prefix}/train_log.jsonl"), train_log.iter().map(|v| format!("{v}\n")).collect::<String>())?;
                save_checkpoint(store, prefix, model_name, done, 0, score, cfg.checkpoint.keep_last, &trainer)?;
                status(RunState::Running, done, None)?;
            }
            (epoch, step) = (done, 0);
            if stop_now && done < epochs {
                if root {
                    status(RunState::Preempted, done, None)?;
                }
                return Ok(Finished::Preempted);
            }
        }
        // A model that had already finished before a restart: recompute its final
        // predictions. The condition is the same on every rank (collective calls inside).
        if resumed_finished {
            for &i in members {
                if let Some(pred) = predict_sharded(&trainer, &features[i].1.test, cfg, coll, device)? {
                    final_preds.insert(features[i].0.clone(), pred);
                }
            }
        }
        bar.finish_and_clear();
    }
    if !root {
        return Ok(Finished::Complete(None));
    }
    for (i, (class, samples)) in index.classes.iter().enumerate() {
        if cfg.eval.save_predictions {
            let p = &final_preds[class];
            let labels = Tensor::from_slice(&samples.test.iter().map(|s| s.label as u8).collect::<Vec<_>>());
            let bytes = tensors::encode(&[("scores", &p.scores), ("maps", &p.maps), ("labels", &labels), ("masks", &masks[i].to_kind(Kind::Uint8))])?;
            store.put(&format!("{prefix}/predictions/{class}.safetensors"), bytes)?;
            store.put_json(&format!("{prefix}/predictions/{class}.json"), &samples.test)?;
        }
        if cfg.eval.pictures > 0 {
            let p = &final_preds[class];
            let vmax = p.maps.max().double_value(&[]);
            let anomalous = samples.test.iter().enumerate().filter(|(_, s)| s.label).take(cfg.eval.pictures);
            let normal = samples.test.iter().enumerate().filter(|(_, s)| !s.label).take(1);
            for (j, s) in anomalous.chain(normal) {
                let png = crate::eval::pictures::panel_png(&s.path, &masks[i].get(j as i64), &p.maps.get(j as i64), vmax)?;
                let stem = s.key.replace('/', "_");
                store.put(&format!("{prefix}/pictures/{class}/{stem}.png"), png)?;
            }
        }
    }
    let last = by_epoch.get(&epochs).cloned().context("no evaluation at the last epoch")?;
    let best = by_epoch
        .iter()
        .map(|(e, m)| (*e, MetricsTable::new(m.clone())))
        .max_by(|a, b| {
            let key = |t: &MetricsTable| t.mean.image_auroc + t.mean.pixel_auroc;
            key(&a.1).total_cmp(&key(&b.1)).then(b.0.cmp(&a.0))
        });
    let fm = FinalMetrics {
        epoch: epochs,
        setting: cfg.train.setting,
        metrics: MetricsTable::new(last),
        best_on_test_extra: best,
        backbone_pretrained: identity.pretrained,
        feature_cache: cache,
    };
    store.put_json(&format!("{prefix}/final_metrics.json"), &fm)?;
    // Table 6 without retraining: the final model (its last checkpoint) again at each
    // extra test-time noise scale. Before "complete", so a run killed here redoes it.
    if !cfg.eval.noise_scales.is_empty() {
        for (scale, table) in evaluate_with_noise(store, prefix, cfg, &index, &features, &masks, device, &cfg.eval.noise_scales)? {
            tracing::info!(scale, i_auroc = table.mean.image_auroc, p_auroc = table.mean.pixel_auroc, "test-time noise evaluation");
        }
    }
    Ok(Finished::Complete(Some(fm)))
}

/// Ground-truth masks (M, S, S) bool per class, in test order.
fn load_masks(index: &DatasetIndex, size: i64) -> Result<Vec<Tensor>> {
    index
        .classes
        .iter()
        .map(|(_, s)| {
            let m: Vec<Tensor> = s
                .test
                .iter()
                .map(|t| imageio::load_mask(t.mask.as_deref(), &t.path, t.label, size))
                .collect::<Result<_, _>>()?;
            Ok(Tensor::stack(&m, 0))
        })
        .collect()
}

fn write_metrics_log(store: &Store, prefix: &str, by_epoch: &BTreeMap<usize, BTreeMap<String, ClassMetrics>>) -> Result<()> {
    let mut text = String::new();
    for (epoch, classes) in by_epoch {
        text += &serde_json::json!({"epoch": epoch, "metrics": MetricsTable::new(classes.clone())}).to_string();
        text.push('\n');
    }
    store.put(&format!("{prefix}/metrics.jsonl"), text)?;
    Ok(())
}

/// Model weights, named by the module tree, as safetensors bytes (bit-exact).
pub fn model_weights(vs: &tch::nn::VarStore) -> Result<Vec<u8>> {
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let list: Vec<(&String, &Tensor)> = names.into_iter().map(|n| (n, &vars[n])).collect();
    Ok(tensors::encode(&list)?)
}

/// Copies weights (as written by `model_weights`) into `vs`, refusing any mismatch.
pub fn load_model_weights(vs: &mut tch::nn::VarStore, bytes: &[u8]) -> Result<()> {
    let file: BTreeMap<String, Tensor> = tensors::decode(bytes)?.into_iter().collect();
    tensors::copy_matching(&mut vs.variables(), &file)
        .map_err(|diffs| anyhow::anyhow!("checkpoint does not match the model:\n  {}", diffs.join("\n  ")))?;
    Ok(())
}

/// Evaluates a finished run again from its last checkpoint(s) with each test-time jitter
/// scale (paper Table 6), without retraining; features, masks and models are loaded
/// once. Each result is stored as `evals/test_jitter_<scale>.json`.
pub fn reevaluate(store: &Store, run: &str, scales: &[f64], progress: &Progress) -> Result<Vec<(f64, MetricsTable)>> {
    let prefix = format!("runs/{run}");
    let text = store.get(&format!("{prefix}/config.toml"))?.with_context(|| format!("no run {run} in {}", store.url()))?;
    let cfg = RunConfig::from_toml(std::str::from_utf8(&text)?, std::path::Path::new(&format!("{prefix}/config.toml")))?;
    let device = resolve_device(cfg.train.device)?;
    let index = scan(&cfg.dataset)?;
    let (features, _) = load_or_compute(store, &cfg.backbone, device, &index, progress)?;
    let masks = load_masks(&index, cfg.backbone.image_size)?;
    evaluate_with_noise(store, &prefix, &cfg, &index, &features, &masks, device, scales)
}

/// The body of `reevaluate` once features and masks are loaded: also what a run calls
/// after training for its `eval.noise_scales` (rank 0 only, on one process: no shards).
#[allow(clippy::too_many_arguments)]
fn evaluate_with_noise(
    store: &Store,
    prefix: &str,
    cfg: &RunConfig,
    index: &DatasetIndex,
    features: &[(String, ClassFeatures)],
    masks: &[Tensor],
    device: Device,
    scales: &[f64],
) -> Result<Vec<(f64, MetricsTable)>> {
    let channels = features[0].1.train.size()[1];
    let grid = cfg.backbone.image_size / 16;
    let mut tables: Vec<BTreeMap<String, ClassMetrics>> = scales.iter().map(|_| BTreeMap::new()).collect();
    let mut loaded: Option<(String, Trainer)> = None;
    for (i, (class, feats)) in features.iter().enumerate() {
        let model = match cfg.train.setting {
            Setting::Unified => "unified".to_string(),
            Setting::Separate => class.clone(),
        };
        if loaded.as_ref().map(|(m, _)| m != &model).unwrap_or(true) {
            let mut t = Trainer::new(&cfg.model, &cfg.train, cfg.seed, channels, grid, device)?;
            let (rec, bytes) = latest_checkpoint(store, prefix, &model)?;
            t.load_state(tensors::decode(&bytes)?).map_err(|e| anyhow::anyhow!("checkpoint {}: {e}", rec.weights))?;
            loaded = Some((model, t));
        }
        let trainer = &loaded.as_ref().expect("loaded above").1;
        let labels: Vec<bool> = index.classes[i].1.test.iter().map(|s| s.label).collect();
        for (k, &scale) in scales.iter().enumerate() {
            let pred = predict(&trainer.model, &feats.test, cfg.backbone.image_size, cfg.eval.batch_size, scale, cfg.seed, device);
            tables[k].insert(class.clone(), class_metrics(&pred, &labels, &masks[i], cfg.eval.aupro_fpr_limit)?);
        }
    }
    let mut out = vec![];
    for (scale, classes) in scales.iter().zip(tables) {
        let table = MetricsTable::new(classes);
        store.put_json(&format!("{prefix}/evals/test_jitter_{scale}.json"), &table)?;
        out.push((*scale, table));
    }
    Ok(out)
}
