//! Evaluation of a run's models: during training (every eval epoch, sharded over the
//! ranks), and afterwards from the stored checkpoints at extra test-time noise scales
//! (paper Table 6) without retraining, by the run itself (`eval.noise_scales`) or by
//! `ras eval` (`reevaluate`). Metrics need the ground-truth masks, loaded once per run.

use super::checkpoint::Checkpointer;
use super::paths::RunPaths;
use super::resolve_device;
use crate::config::RunConfig;
use crate::data::{imageio, scan, DatasetIndex};
use crate::dist::{self, Collective};
use crate::eval::{class_metrics, predict, ClassMetrics, MetricsTable, Predictions};
use crate::features::{load_or_compute, ClassFeatures};
use crate::progress::Progress;
use crate::store::{tensors, Store};
use crate::train::Trainer;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use tch::{Device, Tensor};

/// Predictions of the whole test set of one class, sharded over the ranks and gathered
/// on rank 0 (None elsewhere) in test order, without the padding duplicates.
pub(super) fn predict_sharded(trainer: &Trainer, test: &Tensor, cfg: &RunConfig, coll: &dyn Collective, device: Device) -> Result<Option<Predictions>> {
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

/// Evaluates a finished run again from its last checkpoint(s) with each test-time jitter
/// scale (paper Table 6), without retraining; features, masks and models are loaded
/// once. Each result is stored as `evals/test_jitter_<scale>.json`.
pub fn reevaluate(store: &Store, run: &str, scales: &[f64], progress: &Progress) -> Result<Vec<(f64, MetricsTable)>> {
    let paths = RunPaths::new(run);
    let text = store.get(&paths.config())?.with_context(|| format!("no run {run} in {}", store.url()))?;
    let cfg = RunConfig::from_toml(std::str::from_utf8(&text)?, std::path::Path::new(&paths.config()))?;
    let device = resolve_device(cfg.train.device)?;
    let index = scan(&cfg.dataset)?;
    let (features, _) = load_or_compute(store, &cfg.backbone, device, &index, progress)?;
    let masks = load_masks(&index, cfg.backbone.image_size)?;
    evaluate_with_noise(store, &paths, &cfg, &index, &features, &masks, device, scales)
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
) -> Result<Vec<(f64, MetricsTable)>> {
    let channels = features[0].1.train.size()[1];
    let grid = cfg.backbone.image_size / 16;
    let checkpoints = Checkpointer::new(store, paths);
    let mut tables: Vec<BTreeMap<String, ClassMetrics>> = scales.iter().map(|_| BTreeMap::new()).collect();
    let mut loaded: Option<(String, Trainer)> = None;
    for (i, (class, feats)) in features.iter().enumerate() {
        let model = cfg.train.setting.model_name(class).to_string();
        if loaded.as_ref().map(|(m, _)| m != &model).unwrap_or(true) {
            let mut t = Trainer::new(&cfg.model, &cfg.train, cfg.seed, channels, grid, device)?;
            let (rec, bytes) = checkpoints.latest(&model)?;
            t.load_state(tensors::decode(&bytes)?).with_context(|| format!("checkpoint {}", rec.weights))?;
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
        store.put_json(&paths.eval_noise(*scale), &table)?;
        out.push((*scale, table));
    }
    Ok(out)
}
