//! A run's final outputs, written by rank 0 once every model is trained: per-image
//! predictions and anomaly pictures (as the config asks) and the final metrics.

use super::checkpoint::CheckpointChoice;
use super::error::{Result, RunError};
use super::evaluate::{evaluate_with_noise, resampled};
use super::records::{best_on_test, RunLogs};
use super::{FinalMetrics, Prepared, Run};
use crate::data::Sample;
use crate::eval::{MetricsTable, Predictions};
use crate::store::tensors;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// Step 4, rank 0 once every model is trained: predictions and pictures (as the config
/// asks), `final_metrics.json`, then the test-time noise evaluations. All of it before
/// "complete", so a run killed here redoes it.
pub(super) fn write_final_outputs(
    run: &Run,
    data: Prepared,
    logs: &RunLogs,
    final_preds: &BTreeMap<String, Predictions>,
) -> Result<FinalMetrics> {
    let cfg = run.cfg;
    for (i, (class, samples)) in data.index.classes.iter().enumerate() {
        if cfg.eval.save_predictions {
            write_predictions(run, class, &samples.test, &final_preds[class], &data.masks[i])?;
        }
        if cfg.eval.pictures > 0 {
            write_pictures(run, class, &samples.test, &final_preds[class], &data.masks[i])?;
        }
    }
    // What the verdicts resample: image scores (in the final metrics) and pixel
    // histograms (their own object, written first: a run with final metrics has both).
    let mut image_scores = BTreeMap::new();
    let mut pixels = BTreeMap::new();
    for (i, (class, samples)) in data.index.classes.iter().enumerate() {
        let labels: Vec<bool> = samples.test.iter().map(|s| s.label).collect();
        let (scores, hist) = resampled(&final_preds[class], &labels, &data.masks[i])?;
        image_scores.insert(class.clone(), scores);
        pixels.insert(class.clone(), hist);
    }
    run.store.put(&run.paths.pixel_histograms(), crate::eval::pixel_hist::encode(&pixels)?)?;
    let last = logs.by_epoch.get(&cfg.train.epochs).cloned().ok_or(RunError::NoLastEvaluation)?;
    let fm = FinalMetrics {
        epoch: cfg.train.epochs,
        setting: cfg.train.setting,
        metrics: MetricsTable::new(last),
        best_on_test_extra: best_on_test(&logs.by_epoch),
        backbone_pretrained: data.backbone_pretrained,
        feature_cache: data.cache,
        image_scores,
    };
    run.store.put_json(&run.paths.final_metrics(), &fm)?;
    // Table 6 without retraining: the final model (its last checkpoint) again at each
    // extra test-time noise scale.
    if !cfg.eval.noise_scales.is_empty() {
        let tested: usize = data.index.classes.iter().map(|(_, s)| s.test.len()).sum();
        run.timer.add_evaluated((tested * cfg.eval.noise_scales.len()) as u64);
        let (features, masks) = (&data.features, &data.masks);
        for r in evaluate_with_noise(
            run.store,
            run.paths,
            cfg,
            &data.index,
            features,
            masks,
            run.device,
            &cfg.eval.noise_scales,
            CheckpointChoice::Final,
        )? {
            let mean = &r.table.mean;
            tracing::info!(
                scale = r.scale,
                i_auroc = mean.image_auroc,
                p_auroc = mean.pixel_auroc,
                key = r.key,
                "test-time noise evaluation"
            );
        }
    }
    Ok(fm)
}

/// Scores, maps, labels and masks of one class's test set, and its samples beside them.
fn write_predictions(run: &Run, class: &str, samples: &[Sample], p: &Predictions, masks: &Tensor) -> Result<()> {
    let labels = Tensor::from_slice(&samples.iter().map(|s| s.label as u8).collect::<Vec<_>>());
    let bytes = tensors::encode(&[
        ("scores", &p.scores),
        ("maps", &p.maps),
        ("labels", &labels),
        ("masks", &masks.to_kind(Kind::Uint8)),
    ])?;
    run.store.put_many(vec![
        (run.paths.predictions(class), bytes.into()),
        (run.paths.predictions_samples(class), crate::store::json_bytes(&samples).into()),
    ])?;
    Ok(())
}

/// Panels of the first `eval.pictures` anomalous test images and one normal one, on one
/// colour scale per class.
fn write_pictures(run: &Run, class: &str, samples: &[Sample], p: &Predictions, masks: &Tensor) -> Result<()> {
    let vmax = p.maps.max().double_value(&[]);
    let anomalous = samples.iter().enumerate().filter(|(_, s)| s.label).take(run.cfg.eval.pictures);
    let normal = samples.iter().enumerate().filter(|(_, s)| !s.label).take(1);
    let mut pngs: Vec<(String, bytes::Bytes)> = vec![];
    for (j, s) in anomalous.chain(normal) {
        let png = crate::eval::pictures::panel_png(&s.path, &masks.get(j as i64), &p.maps.get(j as i64), vmax)?;
        // `test/crack/000.png` -> `test_crack_000` (the picture adds its own `.png`).
        let stem = std::path::Path::new(&s.key).with_extension("").to_string_lossy().replace('/', "_");
        pngs.push((run.paths.pictures(class, &stem), png.into()));
    }
    run.store.put_many(pngs)?;
    Ok(())
}
