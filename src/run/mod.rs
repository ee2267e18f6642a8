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
//! checkpoints/<model>/epoch_NNNN.{safetensors,json}   weights + sha256 record
//! ```
//! `status.json` says "complete" only after everything else is written.

use crate::config::{RunConfig, Setting};
use crate::data::{imageio, scan, DatasetIndex};
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
    format!("{}-{}", cfg.name, &sha256_hex(cfg.to_toml().as_bytes())[..8])
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Complete,
    Failed,
}

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

/// What a finished run returns to its caller.
pub struct RunOutcome {
    pub run_id: String,
    pub prefix: String,
    pub final_metrics: FinalMetrics,
}

pub struct RunOptions {
    pub progress: Progress,
    /// Run again even if the store says this run is complete.
    pub force: bool,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn resolve_device(spec: &str) -> Result<Device> {
    Ok(match spec {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" | "cuda:0" if !tch::Cuda::is_available() => bail!("train.device = {spec:?} but CUDA is not available on this machine"),
        "cuda" => Device::Cuda(0),
        s => {
            let n: usize = s.trim_start_matches("cuda:").parse().with_context(|| format!("train.device {s:?}"))?;
            if n >= tch::Cuda::device_count() as usize {
                bail!("train.device = {s:?} but only {} CUDA devices are visible", tch::Cuda::device_count());
            }
            Device::Cuda(n)
        }
    })
}

/// Trains and evaluates one run; on any error the run is marked failed with the error.
pub fn execute(cfg: &RunConfig, opts: &RunOptions) -> Result<RunOutcome> {
    let store = Store::open(&cfg.store)?;
    let id = run_id(cfg);
    let prefix = format!("runs/{id}");
    if !opts.force {
        if let Some(st) = store.get_json::<RunStatus>(&format!("{prefix}/status.json"))? {
            if st.state == RunState::Complete {
                if let Some(fm) = store.get_json::<FinalMetrics>(&format!("{prefix}/final_metrics.json"))? {
                    tracing::info!(run = id, "run already complete in {}; not training again (use --force)", store.url());
                    return Ok(RunOutcome { run_id: id, prefix, final_metrics: fm });
                }
            }
        }
    }
    let status = |state: RunState, epoch: usize, error: Option<String>| {
        store.put_json(&format!("{prefix}/status.json"), &RunStatus { state, run_id: id.clone(), epoch, updated_unix: now(), error })
    };
    status(RunState::Running, 0, None)?;
    match execute_inner(cfg, opts, &store, &prefix, &status) {
        Ok(fm) => {
            status(RunState::Complete, fm.epoch, None)?;
            Ok(RunOutcome { run_id: id, prefix, final_metrics: fm })
        }
        Err(e) => {
            // Best effort: the original error matters more than a failed status write.
            let _ = status(RunState::Failed, 0, Some(format!("{e:#}")));
            Err(e)
        }
    }
}

fn execute_inner(
    cfg: &RunConfig,
    opts: &RunOptions,
    store: &Store,
    prefix: &str,
    status: &dyn Fn(RunState, usize, Option<String>) -> Result<(), crate::store::StoreError>,
) -> Result<FinalMetrics> {
    store.put(&format!("{prefix}/config.toml"), cfg.to_toml())?;
    let device = resolve_device(&cfg.train.device)?;
    let index = scan(&cfg.dataset)?;
    index.check_headers()?;
    let (features, cache) = load_or_compute(store, &cfg.backbone, device, &index, &opts.progress)?;
    let identity = crate::backbone::BackboneIdentity::resolve(&cfg.backbone)?;
    store.put_json(&format!("{prefix}/env.json"), &crate::environment(device, &identity, &cache))?;
    let masks = load_masks(&index, cfg.backbone.image_size)?;

    // Models: one for every class together, or one per class.
    let groups: Vec<(String, Vec<usize>)> = match cfg.train.setting {
        Setting::Unified => vec![("unified".into(), (0..features.len()).collect())],
        Setting::Separate => features.iter().enumerate().map(|(i, (c, _))| (c.clone(), vec![i])).collect(),
    };
    let channels = features[0].1.train.size()[1];
    let grid = cfg.backbone.image_size / 16;
    let epochs = cfg.train.epochs;
    let evals: Vec<usize> = (1..=epochs).filter(|e| e % cfg.train.eval_every == 0 || *e == epochs).collect();
    // Per eval epoch: metrics of every class, filled model by model.
    let mut by_epoch: BTreeMap<usize, BTreeMap<String, ClassMetrics>> = BTreeMap::new();
    let mut final_preds: BTreeMap<String, crate::eval::Predictions> = BTreeMap::new();
    let mut train_log = String::new();
    for (model_name, members) in &groups {
        let train_feats = Tensor::cat(&members.iter().map(|&i| features[i].1.train.shallow_clone()).collect::<Vec<_>>(), 0);
        let mut trainer = Trainer::new(&cfg.model, &cfg.train, cfg.seed, channels, grid, device)?;
        let n = train_feats.size()[0] as u64;
        let bar = opts.progress.bar(n * epochs as u64, &format!("train {model_name}"));
        for epoch in 0..epochs {
            let loss = trainer.epoch(&train_feats, epoch, &mut |k| bar.inc(k as u64));
            bar.set_message(format!("epoch {}/{epochs} loss {loss:.4}", epoch + 1));
            train_log += &serde_json::json!({"model": model_name, "epoch": epoch + 1, "loss": loss,
                "lr": crate::train::lr_at(&cfg.train, epoch)}).to_string();
            train_log.push('\n');
            if !loss.is_finite() {
                bail!("training diverged: loss {loss} at epoch {} of model {model_name}", epoch + 1);
            }
            let done = epoch + 1;
            if evals.contains(&done) {
                store.put(&format!("{prefix}/train_log.jsonl"), train_log.clone())?;
                for &i in members {
                    let (class, ClassFeatures { test, .. }) = &features[i];
                    let pred = predict(&trainer.model, test, cfg.backbone.image_size, cfg.eval.batch_size, cfg.eval.test_jitter_scale, cfg.seed, device);
                    let labels: Vec<bool> = index.classes[i].1.test.iter().map(|s| s.label).collect();
                    let m = class_metrics(&pred, &labels, &masks[i], cfg.eval.aupro_fpr_limit)
                        .with_context(|| format!("metrics of class {class}"))?;
                    by_epoch.entry(done).or_default().insert(class.clone(), m);
                    if done == epochs {
                        final_preds.insert(class.clone(), pred);
                    }
                }
                save_checkpoint(store, prefix, model_name, done, &trainer)?;
                write_metrics_log(store, prefix, &by_epoch)?;
                status(RunState::Running, done, None)?;
            }
        }
        bar.finish_and_clear();
    }
    for (i, (class, samples)) in index.classes.iter().enumerate() {
        if cfg.eval.save_predictions {
            let p = &final_preds[class];
            let labels = Tensor::from_slice(&samples.test.iter().map(|s| s.label as u8).collect::<Vec<_>>());
            let bytes = tensors::encode(&[("scores", &p.scores), ("maps", &p.maps), ("labels", &labels), ("masks", &masks[i].to_kind(Kind::Uint8))])?;
            store.put(&format!("{prefix}/predictions/{class}.safetensors"), bytes)?;
            store.put_json(&format!("{prefix}/predictions/{class}.json"), &samples.test)?;
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
    Ok(fm)
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

/// Record published after the weights; readers check the weights against its sha256.
#[derive(Debug, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub model: String,
    pub epoch: usize,
    pub weights: String,
    pub sha256: String,
    pub bytes: usize,
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
    let mut vars = vs.variables();
    let mut diffs = vec![];
    for (n, v) in &vars {
        match file.get(n) {
            None => diffs.push(format!("missing {n}")),
            Some(t) if t.size() != v.size() => diffs.push(format!("shape {n}: file {:?}, model {:?}", t.size(), v.size())),
            _ => {}
        }
    }
    diffs.extend(file.keys().filter(|n| !vars.contains_key(*n)).map(|n| format!("unexpected {n}")));
    if !diffs.is_empty() {
        bail!("checkpoint does not match the model:\n  {}", diffs.join("\n  "));
    }
    tch::no_grad(|| {
        for (n, v) in vars.iter_mut() {
            v.copy_(&file[n]);
        }
    });
    Ok(())
}

fn save_checkpoint(store: &Store, prefix: &str, model: &str, epoch: usize, trainer: &Trainer) -> Result<()> {
    let bytes = model_weights(&trainer.vs)?;
    let key = format!("{prefix}/checkpoints/{model}/epoch_{epoch:04}.safetensors");
    let rec = CheckpointRecord { model: model.into(), epoch, weights: key.clone(), sha256: sha256_hex(&bytes), bytes: bytes.len() };
    store.put(&key, bytes)?;
    store.put_json(&format!("{prefix}/checkpoints/{model}/epoch_{epoch:04}.json"), &rec)?;
    Ok(())
}

/// The newest checkpoint record of `model` in a run, verified against its sha256.
pub fn latest_checkpoint(store: &Store, prefix: &str, model: &str) -> Result<(CheckpointRecord, bytes::Bytes)> {
    let dir = format!("{prefix}/checkpoints/{model}");
    let mut records: Vec<String> = store.list(&dir)?.into_iter().filter(|k| k.ends_with(".json")).collect();
    records.sort();
    let key = records.pop().with_context(|| format!("no checkpoint under {}/{dir}", store.url()))?;
    let rec: CheckpointRecord = store.get_json(&key)?.with_context(|| format!("{key} vanished"))?;
    let bytes = store.get_verified(&rec.weights, &rec.sha256)?.with_context(|| format!("{} is missing", rec.weights))?;
    Ok((rec, bytes))
}

/// Evaluates a finished run again from its last checkpoint(s) with test-time jitter
/// `scale` (paper Table 6), without retraining. Stored as `evals/test_jitter_<scale>.json`.
pub fn reevaluate(store: &Store, run: &str, scale: f64, progress: &Progress) -> Result<MetricsTable> {
    let prefix = format!("runs/{run}");
    let text = store.get(&format!("{prefix}/config.toml"))?.with_context(|| format!("no run {run} in {}", store.url()))?;
    let cfg = RunConfig::from_toml(std::str::from_utf8(&text)?, std::path::Path::new(&format!("{prefix}/config.toml")))?;
    let device = resolve_device(&cfg.train.device)?;
    let index = scan(&cfg.dataset)?;
    let (features, _) = load_or_compute(store, &cfg.backbone, device, &index, progress)?;
    let masks = load_masks(&index, cfg.backbone.image_size)?;
    let channels = features[0].1.train.size()[1];
    let grid = cfg.backbone.image_size / 16;
    let mut classes = BTreeMap::new();
    let mut loaded: Option<(String, Trainer)> = None;
    for (i, (class, feats)) in features.iter().enumerate() {
        let model = match cfg.train.setting {
            Setting::Unified => "unified".to_string(),
            Setting::Separate => class.clone(),
        };
        if loaded.as_ref().map(|(m, _)| m != &model).unwrap_or(true) {
            let mut t = Trainer::new(&cfg.model, &cfg.train, cfg.seed, channels, grid, device)?;
            let (_, bytes) = latest_checkpoint(store, &prefix, &model)?;
            load_model_weights(&mut t.vs, &bytes)?;
            loaded = Some((model, t));
        }
        let trainer = &loaded.as_ref().expect("loaded above").1;
        let pred = predict(&trainer.model, &feats.test, cfg.backbone.image_size, cfg.eval.batch_size, scale, cfg.seed, device);
        let labels: Vec<bool> = index.classes[i].1.test.iter().map(|s| s.label).collect();
        classes.insert(class.clone(), class_metrics(&pred, &labels, &masks[i], cfg.eval.aupro_fpr_limit)?);
    }
    let table = MetricsTable::new(classes);
    store.put_json(&format!("{prefix}/evals/test_jitter_{scale}.json"), &table)?;
    Ok(table)
}
