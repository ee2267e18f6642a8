//! Evaluation of a run's models: during training (every eval epoch, sharded over the
//! ranks), and afterwards from the stored checkpoints at extra test-time noise scales
//! (paper Table 6) without retraining, by the run itself (`eval.noise_scales`) or by
//! `ras eval` (`reevaluate`). Metrics need the ground-truth masks, loaded once per run.

use super::checkpoint::{CheckpointChoice, Checkpointer};
use super::cost::Phase;
use super::error::{Result, RunError};
use super::paths::RunPaths;
use super::records::{ImageScores, RunLogs};
use super::trained::{load_trained, TrainedModel, TrainedWeights};
use super::{execute, resolve_device, stored_config, FinalMetrics, Prepared, Run, RunOptions};
use crate::config::RunConfig;
use crate::config::Setting;
use crate::data::{imageio, scan, DatasetIndex};
use crate::dist::{self, Collective};
use crate::eval::pixel_hist::PixelHistograms;
use crate::eval::{class_metrics, predict, ClassMetrics, MetricsTable, Predictions};
use crate::features::{load_or_compute, ClassFeatures};
use crate::progress::Progress;
use crate::store::{tensors, Store, StoreError};
use crate::train::Trainer;
use std::collections::BTreeMap;
use tch::{Device, Tensor};

/// Predictions of the whole test set of one class, sharded over the ranks and gathered
/// on rank 0 (None elsewhere) in test order, without the padding duplicates.
pub(super) fn predict_sharded(
    trainer: &Trainer,
    test: &Tensor,
    cfg: &RunConfig,
    coll: &dyn Collective,
    device: Device,
) -> Result<Option<Predictions>> {
    let world = coll.world();
    if world.world_size == 1 {
        return Ok(Some(predict(
            &trainer.model,
            test,
            cfg.backbone.image_size,
            cfg.eval.batch_size,
            cfg.eval.test_jitter_scale,
            cfg.seed,
            device,
        )));
    }
    let m = test.size()[0] as usize;
    let order: Vec<usize> = (0..m).collect();
    let mine = dist::shard(&order, world);
    let index = Tensor::from_slice(&mine.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let local = predict(
        &trainer.model,
        &test.index_select(0, &index),
        cfg.backbone.image_size,
        cfg.eval.batch_size,
        0.0,
        cfg.seed,
        device,
    );
    if cfg.eval.test_jitter_scale > 0.0 {
        return Err(RunError::ShardedJitter);
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
    Ok(Some(Predictions { scores: stacked.select(1, 0), maps: stacked.narrow(1, 1, s * s).view([m as i64, s, s]) }))
}

/// Ground-truth masks (M, S, S) bool per class, in test order.
pub(super) fn load_masks(index: &DatasetIndex, size: i64) -> Result<Vec<Tensor>> {
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

/// One test-time noise evaluation as stored: the metrics (the fields of a
/// [`MetricsTable`], so readers of the table read it as before) and exactly which
/// checkpoint of each model produced them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Reevaluation {
    pub scale: f64,
    /// The checkpoint asked for: `final`, `latest`, `best` or `epoch_<E>`.
    pub checkpoint: String,
    /// Model ("unified" or a class) -> the checkpoint evaluated.
    pub models: BTreeMap<String, EvaluatedCheckpoint>,
    #[serde(flatten)]
    pub table: MetricsTable,
    /// Per class, every test image's score and label at this scale (a verdict's
    /// bootstrap, as `FinalMetrics::image_scores`). Empty in evaluations written before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub image_scores: BTreeMap<String, ImageScores>,
    /// The store key it was written to (not stored: it is the object's own name).
    #[serde(skip)]
    pub key: String,
}

impl Reevaluation {
    /// What `ras eval RUN --test-jitter S` prints for this scale.
    pub fn render(&self, run: &str) -> String {
        let used: Vec<String> = self.models.iter().map(|(m, c)| format!("{m} epoch {}", c.epoch)).collect();
        format!(
            "run {run}, test-time jitter scale {}, {} checkpoint ({}) -> {}:\n{}",
            self.scale,
            self.checkpoint,
            used.join(", "),
            self.key,
            self.table.render()
        )
    }
}

/// The checkpoint a [`Reevaluation`] used.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct EvaluatedCheckpoint {
    pub epoch: usize,
    pub step: usize,
    pub sha256: String,
}

/// Evaluates a run again from the checkpoint(s) `choice` names (the final ones unless
/// asked otherwise) with each test-time jitter scale (paper Table 6), without
/// retraining; features, masks and models are loaded once. A missing or corrupt chosen
/// checkpoint is an error. Each result is a new object (see [`store_new`]).
pub fn reevaluate(
    store: &Store,
    run: &str,
    scales: &[f64],
    choice: CheckpointChoice,
    progress: &Progress,
) -> Result<Vec<Reevaluation>> {
    let paths = RunPaths::new(run);
    let cfg = super::records::stored_config(store, &paths)?
        .ok_or_else(|| RunError::NoRun { run: run.into(), url: store.url().into() })?;
    let device = resolve_device(cfg.train.device)?;
    let index = scan(&cfg.dataset)?;
    let (features, _) = load_or_compute(store, &cfg.backbone, device, &index, progress)?;
    let masks = load_masks(&index, cfg.backbone.image_size)?;
    evaluate_with_noise(store, &paths, &cfg, &index, &features, &masks, device, scales, choice)
}

/// The body of `reevaluate` once features and masks are loaded: also what a run calls
/// after training for its `eval.noise_scales` (rank 0 only, on one process: no shards).
#[allow(clippy::too_many_arguments)]
pub(super) fn evaluate_with_noise(
    store: &Store,
    paths: &RunPaths,
    cfg: &RunConfig,
    index: &DatasetIndex,
    features: &[(String, ClassFeatures)],
    masks: &[Tensor],
    device: Device,
    scales: &[f64],
    choice: CheckpointChoice,
) -> Result<Vec<Reevaluation>> {
    let channels = features[0].1.train.size()[1];
    let grid = cfg.backbone.image_size / 16;
    let checkpoints = Checkpointer::new(store, paths);
    let mut tables: Vec<BTreeMap<String, ClassMetrics>> = scales.iter().map(|_| BTreeMap::new()).collect();
    // Per scale, what the verdicts resample: image scores and pixel histograms per class.
    let mut scored: Vec<BTreeMap<String, ImageScores>> = scales.iter().map(|_| BTreeMap::new()).collect();
    let mut pixels: Vec<BTreeMap<String, PixelHistograms>> = scales.iter().map(|_| BTreeMap::new()).collect();
    let mut models = BTreeMap::new();
    let mut loaded: Option<(String, TrainedModel)> = None;
    for (i, (class, feats)) in features.iter().enumerate() {
        let model = cfg.train.setting.model_name(class).to_string();
        if loaded.as_ref().map(|(m, _)| m != &model).unwrap_or(true) {
            let (rec, bytes) = checkpoints.select(&model, choice, cfg.train.epochs)?;
            let weights = TrainedWeights::Checkpoint(tensors::decode(&bytes)?);
            let t = load_trained(cfg, channels, grid, device, weights)
                .map_err(|source| RunError::CheckpointWeights { weights: rec.weights.clone(), source })?;
            models.insert(model.clone(), EvaluatedCheckpoint { epoch: rec.epoch, step: rec.step, sha256: rec.sha256 });
            loaded = Some((model, t));
        }
        let trained = &loaded.as_ref().expect("loaded above").1;
        let labels: Vec<bool> = index.classes[i].1.test.iter().map(|s| s.label).collect();
        for (k, &scale) in scales.iter().enumerate() {
            let pred = predict(
                &trained.model,
                &feats.test,
                cfg.backbone.image_size,
                cfg.eval.batch_size,
                scale,
                cfg.seed,
                device,
            );
            tables[k].insert(class.clone(), class_metrics(&pred, &labels, &masks[i], cfg.eval.aupro_fpr_limit)?);
            let (image, hist) = resampled(&pred, &labels, &masks[i])?;
            scored[k].insert(class.clone(), image);
            pixels[k].insert(class.clone(), hist);
        }
    }
    let mut out = vec![];
    for ((scale, classes), (image_scores, hist)) in scales.iter().zip(tables).zip(scored.into_iter().zip(pixels)) {
        // The final model's histograms at this scale, where the report looks for them,
        // before the evaluation itself; like it, never written over (the same model, seed
        // and scale give the same maps, so the first one stands for the others).
        if choice == CheckpointChoice::Final {
            match store.put_new(&paths.eval_noise_pixels(*scale), crate::eval::pixel_hist::encode(&hist)?) {
                Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut r = Reevaluation {
            scale: *scale,
            checkpoint: choice.to_string(),
            models: models.clone(),
            table: MetricsTable::new(classes),
            image_scores,
            key: String::new(),
        };
        r.key = store_new(store, paths, &r, choice)?;
        out.push(r);
    }
    Ok(out)
}

/// What a verdict's bootstrap resamples of one class's predictions (`report::verdict`):
/// every test image's score with its label, and its pixel histograms.
pub(super) fn resampled(p: &Predictions, labels: &[bool], masks: &Tensor) -> Result<(ImageScores, PixelHistograms)> {
    // The maps and masks as `class_metrics` reads them, so the histograms count the
    // pixels its P-AUROC ranks.
    let (maps, mask) = (crate::eval::to_f32(&p.maps), crate::eval::to_bool(masks));
    let pixels = maps.len() / labels.len().max(1);
    let hist = PixelHistograms::build(&maps, &mask, pixels, labels);
    Ok((ImageScores { scores: crate::eval::to_f32(&p.scores), labels: labels.to_vec() }, hist))
}

/// Writes an evaluation as a new object and returns its key; an earlier result is never
/// replaced, whatever this one finds (each write is a conditional create). The final
/// checkpoint's result at scale s takes `evals/test_jitter_<s>.json`, the key reports
/// read, when it is free; any other result, and a final one when that key is taken, goes
/// to `evals/test_jitter_<s>.<checkpoint>.<n>.json` with the first free n: a name the
/// report's `test_jitter_<number>.json` does not match, so a curve of the final model
/// never mixes in another checkpoint. Keeping every result (rather than refusing to
/// write) lets `ras eval` run again, and a run killed after its noise evaluations redo
/// them, without an error over a result that already exists.
fn store_new(store: &Store, paths: &RunPaths, r: &Reevaluation, choice: CheckpointChoice) -> Result<String> {
    let bytes = serde_json::to_vec_pretty(r)?;
    let canonical = (choice == CheckpointChoice::Final).then(|| paths.eval_noise(r.scale));
    for key in canonical.into_iter().chain((1..).map(|n| paths.eval_noise_other(r.scale, &r.checkpoint, n))) {
        match store.put_new(&key, bytes.clone()) {
            Ok(()) => return Ok(key),
            Err(StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the counter is unbounded")
}

/// Evaluates a run whose models are trained to the last epoch but which has no final
/// metrics yet (a run `ras import` made, or one stopped between its last checkpoint and
/// its evaluation), exactly as the run itself would have: `execute` resumes every model at
/// its last epoch, so it only predicts, computes the metrics and writes the final outputs.
/// A run still short of its last epoch is an error that says how to finish it.
pub fn evaluate_trained(store: &Store, run: &str, progress: Progress) -> Result<FinalMetrics> {
    let paths = RunPaths::new(run);
    let cfg = stored_config(store, &paths)?.ok_or_else(|| RunError::NoRunConfig {
        run: run.into(),
        url: store.url().into(),
        key: paths.config(),
    })?;
    if cfg.run_id() != run {
        return Err(RunError::RunIdMismatch { key: paths.config(), resolved: cfg.run_id(), run: run.into() });
    }
    if cfg.store != store.url() {
        return Err(RunError::StoreMismatch { run: run.into(), store: cfg.store.clone() });
    }
    let models: Vec<String> = match cfg.train.setting {
        Setting::Unified => vec![cfg.train.setting.model_name("").to_string()],
        Setting::Separate => scan(&cfg.dataset)?.classes.iter().map(|(c, _)| c.clone()).collect(),
    };
    let checkpoints = Checkpointer::new(store, &paths);
    for model in &models {
        let epoch = checkpoints.latest_valid(model)?.map(|(r, _)| r.epoch).unwrap_or(0);
        if epoch < cfg.train.epochs {
            return Err(RunError::NotTrained {
                run: run.into(),
                model: model.clone(),
                epoch,
                epochs: cfg.train.epochs,
                config: paths.config(),
                why: super::records::last_attempt_text(store, &paths)?,
            });
        }
    }
    let out = execute(&cfg, &RunOptions::new(progress, false))?;
    out.final_metrics.ok_or_else(|| RunError::NoFinalMetrics { run: run.into() })
}

/// Evaluation after epoch `done`, on every rank (predictions are sharded): each class's
/// metrics go into the logs, the last epoch's predictions into `final_preds`. Rank 0
/// rewrites the metrics log and returns the score its checkpoint carries.
pub(super) fn evaluate_epoch(
    run: &Run,
    data: &Prepared,
    trainer: &Trainer,
    members: &[usize],
    done: usize,
    logs: &mut RunLogs,
    final_preds: &mut BTreeMap<String, Predictions>,
) -> Result<Option<f64>> {
    run.timer.time(Phase::Eval, || evaluate_members(run, data, trainer, members, done, logs, final_preds))
}

/// `evaluate_epoch`'s work (timed there as evaluation).
fn evaluate_members(
    run: &Run,
    data: &Prepared,
    trainer: &Trainer,
    members: &[usize],
    done: usize,
    logs: &mut RunLogs,
    final_preds: &mut BTreeMap<String, Predictions>,
) -> Result<Option<f64>> {
    let tested: usize = members.iter().map(|&i| data.index.classes[i].1.test.len()).sum();
    run.timer.add_evaluated(tested as u64);
    // Maps on every rank's shard (collective), gathered on rank 0 ...
    let mut preds = vec![];
    for &i in members {
        if let Some(pred) = predict_sharded(trainer, &data.features[i].1.test, run.cfg, run.coll, run.device)? {
            preds.push((i, pred));
        }
    }
    // ... whose per-class metrics (sorting millions of pixel scores) run on all its cores.
    let metrics = class_metrics_parallel(data, &preds, run.cfg.eval.aupro_fpr_limit);
    for ((i, pred), m) in preds.into_iter().zip(metrics) {
        let class = &data.features[i].0;
        let m = m.map_err(|source| RunError::ClassMetrics { class: class.clone(), source })?;
        logs.by_epoch.entry(done).or_default().insert(class.clone(), m);
        if done == run.cfg.train.epochs {
            final_preds.insert(class.clone(), pred);
        }
    }
    if !run.root {
        return Ok(None);
    }
    let t = MetricsTable::new(logs.by_epoch[&done].clone());
    let score = (t.mean.image_auroc + t.mean.pixel_auroc) / 2.0;
    logs.write_metrics_log(run.store, run.paths)?;
    Ok(Some(score))
}

/// The metrics of each (class index, predictions), classes in parallel, at most as many
/// at once as this machine has cores (each class is independent and deterministic, so the
/// result does not depend on the thread count).
fn class_metrics_parallel(
    data: &Prepared,
    preds: &[(usize, Predictions)],
    fpr_limit: f64,
) -> Vec<Result<ClassMetrics, crate::eval::MetricError>> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).max(1);
    // Tensors may be sent, not shared: each thread gets its own handles (same storage).
    let jobs: Vec<(Predictions, Vec<bool>, Tensor)> = preds
        .iter()
        .map(|(i, p)| {
            let labels = data.index.classes[*i].1.test.iter().map(|s| s.label).collect();
            (
                Predictions { scores: p.scores.shallow_clone(), maps: p.maps.shallow_clone() },
                labels,
                data.masks[*i].shallow_clone(),
            )
        })
        .collect();
    let one =
        move |(pred, labels, masks): (Predictions, Vec<bool>, Tensor)| class_metrics(&pred, &labels, &masks, fpr_limit);
    if threads == 1 || jobs.len() < 2 {
        return jobs.into_iter().map(one).collect();
    }
    let mut out = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        let batch: Vec<_> = jobs.by_ref().take(threads).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = batch.into_iter().map(|job| s.spawn(move || one(job))).collect();
            out.extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))));
        });
    }
    out
}
