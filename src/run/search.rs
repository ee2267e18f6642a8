//! A run of a search sweep (`[search]` in its resolved config): the images it holds out,
//! how far its sweep lets it train, and the selection metric it records at each rung.
//!
//! The run never decides its own fate: it reads the decisions its sweep's coordinators
//! appended (`sweeps/<sweep>/search/<run>.<rung>.json`, see `sweep::search`), trains to
//! the rung they allow, records the metric there (`runs/<id>/rungs/<epoch>.json`) and
//! stops in state `paused`. Promoted, it resumes from the rung's checkpoint, so its
//! numbers are those of the same run trained straight through.

use super::error::Result;
use super::paths::RunPaths;
use super::records::RunLogs;
use super::Run;
use crate::config::search::{RunSearch, SearchMethod};
use crate::data::DatasetIndex;
use crate::eval::ClassMetrics;
use crate::features::ClassFeatures;
use crate::rng::{mix_seed, STREAM_HOLDOUT};
use crate::store::{Store, StoreError};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{Device, Tensor};

/// `runs/<id>/rungs/<epoch>.json`: the selection metric of a run at a rung.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RungRecord {
    /// Index into the rungs (0 = the first).
    pub rung: usize,
    pub epoch: usize,
    pub metric: String,
    /// NaN (written as null) when it could not be computed: ranks last.
    #[serde(with = "nan_as_null")]
    pub value: f64,
    pub on_test_set: bool,
    /// Held-out images the value was measured on (0 for a test-set metric).
    pub holdout_images: usize,
    pub unix: u64,
}

/// A coordinator's decision about a run at a rung (`sweeps/<sweep>/search/<run>.<rung>.json`),
/// created once (conditional create): appended before it is acted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub run: String,
    pub rung: usize,
    pub epoch: usize,
    pub metric: String,
    /// The run's metric at the rung; None when it never got there (stopped before it
    /// started, the budget being spent).
    #[serde(default)]
    pub value: Option<f64>,
    /// Goes on to the next rung.
    pub promoted: bool,
    pub why: String,
    /// Measured rank-hours of the sweep, plus the estimate of what was running, when
    /// the decision was made.
    pub spent_rank_hours: f64,
    pub unix: u64,
    /// host:pid of the coordinator that made it.
    pub by: String,
}

mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// A stable number for a class name (the held-out split of a class must not depend on
/// which other classes a run trains).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The rows of a class's `n` normal training images that are held out, in increasing
/// order: round(share * n), at least 1 and at most n - 1 (none when n < 2), drawn by a
/// permutation seeded by (seed, class): the same for every run of a sweep.
pub fn holdout_rows(n: usize, share: f64, seed: u64, class: &str) -> Vec<usize> {
    if n < 2 {
        return vec![];
    }
    let k = ((share * n as f64).round() as usize).clamp(1, n - 1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(mix_seed(&[seed, STREAM_HOLDOUT, name_hash(class)]));
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut rows = order[..k].to_vec();
    rows.sort_unstable();
    rows
}

/// The epoch the run may train to now: under `asha`, the rung after the last one its
/// sweep promoted it from (the first rung when none did); otherwise its last epoch. One
/// GET per rung it was promoted from, plus one.
pub fn allowed_epoch(store: &Store, search: &RunSearch, run_id: &str) -> Result<usize, StoreError> {
    let last = *search.rungs.last().expect("a search has rungs");
    if search.method != SearchMethod::Asha {
        return Ok(last);
    }
    let paths = RunPaths::new(run_id);
    let mut k = 0;
    while k + 1 < search.rungs.len() {
        match store.get_json::<Decision>(&paths.decision(&search.sweep, k))? {
            Some(d) if d.promoted => k += 1,
            _ => break,
        }
    }
    Ok(search.rungs[k])
}

/// The mean over classes of a test-set metric (`SEARCH_METRICS` names); None for a name
/// that is not one, or no classes.
pub fn mean_test_metric(by_class: &BTreeMap<String, ClassMetrics>, metric: &str) -> Option<f64> {
    let pick = |m: &ClassMetrics| -> Option<f64> {
        Some(match metric {
            "image_auroc" => m.image_auroc,
            "pixel_auroc" => m.pixel_auroc,
            "aupro" => m.aupro,
            "image_ap" => m.image_ap,
            "pixel_ap" => m.pixel_ap,
            "image_f1_max" => m.image_f1_max,
            "pixel_f1_max" => m.pixel_f1_max,
            _ => return None,
        })
    };
    let values: Vec<f64> = by_class.values().map(pick).collect::<Option<_>>()?;
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// How far this attempt trains: `train.epochs`, or for a search run the rung its sweep
/// allows (rank 0 reads the decisions; every rank gets the same epoch).
pub(super) fn until_epoch(
    store: &Store,
    cfg: &crate::config::RunConfig,
    paths: &RunPaths,
    coll: &dyn crate::dist::Collective,
    root: bool,
) -> super::error::Result<usize> {
    let Some(search) = &cfg.search else { return Ok(cfg.train.epochs) };
    let mut e = [0u8; 8];
    if root {
        e = (allowed_epoch(store, search, paths.id())? as u64).to_le_bytes();
    }
    coll.broadcast_bytes(&mut e, 0)?;
    Ok((u64::from_le_bytes(e) as usize).min(cfg.train.epochs))
}

/// A search's held-out split: per class, the rows `search::holdout_rows` picks are taken
/// out of the training features (every rank alike) and kept for the held-out loss; rank
/// 0 records which images they are (`runs/<id>/holdout.json`).
pub(super) fn hold_out(
    run: &Run,
    index: &DatasetIndex,
    features: &mut [(String, ClassFeatures)],
) -> Result<Vec<Tensor>> {
    let share_seed = run.cfg.search.as_ref().and_then(|s| Some((s.holdout?, s.holdout_seed)));
    let Some((share, seed)) = share_seed else {
        return Ok(features.iter().map(|_| Tensor::zeros([0], (tch::Kind::Float, Device::Cpu))).collect());
    };
    let mut held = vec![];
    let mut record = serde_json::Map::new();
    for (class, f) in features.iter_mut() {
        let n = f.train.size()[0] as usize;
        let rows = holdout_rows(n, share, seed, class);
        let keep: Vec<i64> = (0..n as i64).filter(|r| rows.binary_search(&(*r as usize)).is_err()).collect();
        let pick = |ids: Vec<i64>| Tensor::from_slice(&ids).to_device(f.train.device());
        held.push(f.train.index_select(0, &pick(rows.iter().map(|&r| r as i64).collect())));
        f.train = f.train.index_select(0, &pick(keep));
        let samples = index.classes.iter().find(|(c, _)| c == class).map(|(_, s)| &s.train);
        let keys: Vec<&str> =
            rows.iter().filter_map(|&r| samples.and_then(|s| s.get(r)).map(|s| s.key.as_str())).collect();
        record.insert(class.clone(), serde_json::json!(keys));
    }
    if run.root {
        let doc = serde_json::json!({"share": share, "seed": seed, "held_out": record});
        run.store.put_json(&run.paths.holdout(), &doc)?;
    }
    Ok(held)
}

/// Records the selection metric of the rung this attempt ended on (rank 0):
/// `runs/<id>/rungs/<epoch>.json`, before the run says paused or complete.
pub(super) fn record_rung(
    run: &Run,
    search: &crate::config::search::RunSearch,
    rung: usize,
    logs: &RunLogs,
    (loss_sum, images): (f64, usize),
) -> Result<()> {
    let value = if search.metric == "holdout_loss" {
        if images > 0 {
            loss_sum / images as f64
        } else {
            f64::NAN
        }
    } else {
        logs.by_epoch.get(&run.until).and_then(|m| mean_test_metric(m, &search.metric)).unwrap_or(f64::NAN)
    };
    let rec = RungRecord {
        rung,
        epoch: run.until,
        metric: search.metric.clone(),
        value,
        on_test_set: search.on_test_set(),
        holdout_images: images,
        unix: crate::unix_now(),
    };
    tracing::info!(rung, epoch = run.until, metric = search.metric, value, "rung reached");
    run.check_lease()?;
    run.store.put_json(&run.paths.rung(run.until), &rec)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_held_out_split_is_seeded_per_class_and_bounded() {
        let a = holdout_rows(100, 0.1, 0, "bottle");
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]) && *a.last().unwrap() < 100);
        assert_eq!(a, holdout_rows(100, 0.1, 0, "bottle"), "the same for every run");
        assert_ne!(a, holdout_rows(100, 0.1, 1, "bottle"), "another seed, another split");
        assert_ne!(a, holdout_rows(100, 0.1, 0, "cable"), "each class its own");
        assert_eq!(holdout_rows(5, 0.01, 0, "x").len(), 1, "at least one image");
        assert_eq!(holdout_rows(3, 0.49, 0, "x").len(), 1);
        assert_eq!(holdout_rows(2, 0.4, 0, "x").len(), 1, "at most n - 1: one image trains");
        assert!(holdout_rows(1, 0.4, 0, "x").is_empty(), "one image: nothing held out");
    }

    #[test]
    fn a_rung_record_with_a_nan_metric_reads_back_as_nan() {
        let r = RungRecord {
            rung: 0,
            epoch: 3,
            metric: "holdout_loss".into(),
            value: f64::NAN,
            on_test_set: false,
            holdout_images: 4,
            unix: 1,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"value\":null"), "{text}");
        assert!(serde_json::from_str::<RungRecord>(&text).unwrap().value.is_nan());
    }
}
