//! Evaluation: anomaly maps and image scores (spec section 6), then metrics per class
//! and their mean. Numbers are honest: an AUROC under 0.5 stays under 0.5.

pub mod legend;
pub mod metrics;
pub mod pictures;
pub mod pixel_hist;

use crate::model::{add_jitter, anomaly_map, image_scores, Ras};
use crate::rng::{jitter_noise, STREAM_TEST_JITTER};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

pub use metrics::MetricError;

/// Per-image predictions of one class: image scores (M) and maps (M, S, S), on CPU.
pub struct Predictions {
    pub scores: Tensor,
    pub maps: Tensor,
}

/// Runs the model over test features (M, C, H, W), batch by batch, optionally with
/// test-time jitter (paper Table 6; seeded per test sample).
pub fn predict(
    model: &Ras,
    features: &Tensor,
    image_size: i64,
    batch: usize,
    jitter_scale: f64,
    seed: u64,
    device: Device,
) -> Predictions {
    predict_from(model, features, 0, image_size, batch, jitter_scale, seed, device)
}

/// [`predict`] for rows `first..first + M` of a longer sequence: the jitter noise of row
/// `j` is seeded by `first + j`, so predicting a class's images a few at a time
/// (`ras predict`) draws the same noise as predicting them all at once.
#[allow(clippy::too_many_arguments)]
pub fn predict_from(
    model: &Ras,
    features: &Tensor,
    first: usize,
    image_size: i64,
    batch: usize,
    jitter_scale: f64,
    seed: u64,
    device: Device,
) -> Predictions {
    let m = features.size()[0] as usize;
    let mut scores = vec![];
    let mut maps = vec![];
    tch::no_grad(|| {
        for start in (0..m).step_by(batch) {
            let len = batch.min(m - start);
            let org = features.narrow(0, start as i64, len as i64).to_device(device);
            let input = if jitter_scale > 0.0 {
                let ids: Vec<usize> = (first + start..first + start + len).collect();
                let noise = jitter_noise(&ids, &org.size()[1..], seed, STREAM_TEST_JITTER, 0, 1.0).to_device(device);
                add_jitter(&org, &noise, jitter_scale)
            } else {
                org.shallow_clone()
            };
            let rec = model.forward_t(&input, false);
            let map = anomaly_map(&rec, &org, image_size);
            scores.push(image_scores(&map).to_device(Device::Cpu));
            maps.push(map.squeeze_dim(1).to_device(Device::Cpu));
        }
    });
    Predictions { scores: Tensor::cat(&scores, 0), maps: Tensor::cat(&maps, 0) }
}

/// The metrics of one class (fractions in [0, 1]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ClassMetrics {
    pub image_auroc: f64,
    pub pixel_auroc: f64,
    pub aupro: f64,
    pub image_f1_max: f64,
    pub pixel_f1_max: f64,
    pub image_ap: f64,
    pub pixel_ap: f64,
    /// The image-score threshold that achieves `image_f1_max` (anomalous when
    /// `score >= threshold`): the operating point `ras predict` labels images with. None
    /// in metrics written before it was recorded (and in a table's mean, where an
    /// average of per-class thresholds would mean nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_threshold: Option<f64>,
}

/// A tensor's values as f32, flat (maps, scores).
pub(crate) fn to_f32(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().view(-1)).expect("float tensor")
}

/// A mask's values as bool, flat (non-zero is true), as the metrics read it.
pub(crate) fn to_bool(t: &Tensor) -> Vec<bool> {
    Vec::<u8>::try_from(t.to_kind(Kind::Uint8).contiguous().view(-1))
        .expect("uint8 tensor")
        .into_iter()
        .map(|v| v != 0)
        .collect()
}

/// Metrics of one class from its predictions, image labels (M) and masks (M, S, S) bool.
pub fn class_metrics(
    pred: &Predictions,
    labels: &[bool],
    masks: &Tensor,
    fpr_limit: f64,
) -> Result<ClassMetrics, MetricError> {
    let scores = to_f32(&pred.scores);
    let pix = to_f32(&pred.maps);
    let gt = to_bool(masks);
    let s = masks.size();
    let (h, w) = (s[1] as usize, s[2] as usize);
    let maps: Vec<&[f32]> = pix.chunks(h * w).collect();
    let gts: Vec<&[bool]> = gt.chunks(h * w).collect();
    let m = metrics::all_metrics(&scores, labels, &maps, &gts, h, w, fpr_limit)?;
    Ok(ClassMetrics {
        image_auroc: m.image.auroc,
        pixel_auroc: m.pixel.ranking.auroc,
        aupro: m.pixel.aupro,
        image_f1_max: m.image.f1_max,
        pixel_f1_max: m.pixel.ranking.f1_max,
        image_ap: m.image.average_precision,
        pixel_ap: m.pixel.ranking.average_precision,
        image_threshold: Some(m.image.f1_threshold),
    })
}

/// Metrics of every class and their unweighted mean (the paper's "mean" row).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsTable {
    pub classes: BTreeMap<String, ClassMetrics>,
    pub mean: ClassMetrics,
}

impl MetricsTable {
    pub fn new(classes: BTreeMap<String, ClassMetrics>) -> Self {
        let n = classes.len().max(1) as f64;
        let avg = |f: fn(&ClassMetrics) -> f64| classes.values().map(f).sum::<f64>() / n;
        let mean = ClassMetrics {
            image_auroc: avg(|m| m.image_auroc),
            pixel_auroc: avg(|m| m.pixel_auroc),
            aupro: avg(|m| m.aupro),
            image_f1_max: avg(|m| m.image_f1_max),
            pixel_f1_max: avg(|m| m.pixel_f1_max),
            image_ap: avg(|m| m.image_ap),
            pixel_ap: avg(|m| m.pixel_ap),
            image_threshold: None,
        };
        Self { classes, mean }
    }

    /// A per-class table in percent, as printed by the CLI.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{:<14} {:>9} {:>9} {:>7} {:>9} {:>9}\n",
            "class", "I-AUROC", "P-AUROC", "AUPRO", "I-F1max", "P-F1max"
        );
        let row = |name: &str, m: &ClassMetrics| {
            format!(
                "{:<14} {:>9.1} {:>9.1} {:>7.1} {:>9.1} {:>9.1}\n",
                name,
                100.0 * m.image_auroc,
                100.0 * m.pixel_auroc,
                100.0 * m.aupro,
                100.0 * m.image_f1_max,
                100.0 * m.pixel_f1_max
            )
        };
        for (c, m) in &self.classes {
            s += &row(c, m);
        }
        s += &row("mean", &self.mean);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_without_a_threshold_still_load() {
        // final_metrics.json written before image_threshold existed.
        let old = r#"{"image_auroc":0.9,"pixel_auroc":0.8,"aupro":0.7,"image_f1_max":0.6,"pixel_f1_max":0.5,"image_ap":0.4,"pixel_ap":0.3}"#;
        let m: ClassMetrics = serde_json::from_str(old).unwrap();
        assert_eq!(m.image_threshold, None);
        assert_eq!(serde_json::to_string(&m).unwrap(), old, "None is not written: old readers see the same fields");
        let with = ClassMetrics { image_threshold: Some(8.78557014465332), ..m };
        let back: ClassMetrics = serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back, with, "the threshold round-trips exactly");
    }
}
