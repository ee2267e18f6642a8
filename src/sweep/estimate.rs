//! Cost estimates of planned runs: a run's work (images, epochs, evaluation passes, its
//! FLOPs per image, whether a feature-cache job fills the cache before it) times the
//! rates `rates` chooses for it (measured in the store, the profile's bench lines scaled
//! by FLOPs, or the device's defaults), fixed costs included, with a low-high range.
//!
//! The first run of a `feature_key` in launch order carries the sweep's feature-cache job
//! for it: filling the cache, or only reading it where a record in the store says it is
//! filled already. Every run reads the cache itself too.

use super::rates::{rates_for, Measurements, Rates, RunShape};
use super::{Manifest, PlannedRun, SweepError};
use crate::config::{ClusterProfile, RunConfig};
use crate::run::cost::{planned_device_kind, shape_key, AttemptCost};
use crate::run::{RunKey, RunPaths};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub use super::rates::Source;
pub use crate::run::cost::flops_per_image;

/// A run's estimated cost: seconds per phase, wall, rank-hours, and the wall's range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub source: Source,
    pub features_s: f64,
    pub train_s: f64,
    pub eval_s: f64,
    pub other_s: f64,
    pub wall_s: f64,
    pub rank_hours: f64,
    /// The wall time's low and high ends (0 in plans of older versions, which had none).
    #[serde(default)]
    pub low_s: f64,
    #[serde(default)]
    pub high_s: f64,
    /// Where each rate and fixed cost came from, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub basis: String,
    /// The sweep's feature-cache job runs with this run: Some(true) to fill the cache,
    /// Some(false) to find it filled (a record in the store says so); None: no job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_job: Option<bool>,
}

/// What a planned run has to do, in the units rates are given in.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub shape: String,
    /// "cpu" or "cuda".
    pub device: &'static str,
    pub train_images: usize,
    pub test_images: usize,
    pub epochs: usize,
    /// Passes over the test set: eval epochs + noise scales.
    pub eval_passes: usize,
    pub ranks: usize,
    /// Training images of one rank per step.
    pub images_per_step: usize,
    /// A feature-cache job runs before it (it is the first run of its cache in the sweep).
    pub cache_job: bool,
    /// That job computes the features (no record in the store says the cache is filled).
    pub fills_cache: bool,
    /// Forward+backward GFLOP of one training image (the FLOP model).
    pub gflop_per_image: f64,
}

impl Workload {
    pub fn of(run: &PlannedRun, cfg: &RunConfig, profile: &ClusterProfile, cache_job: bool, fills_cache: bool) -> Self {
        let device = planned_device_kind(cfg.train.device, profile.gpus_per_node > 0);
        let (e, every) = (cfg.train.epochs, cfg.train.eval_every.max(1));
        let ranks = run.ranks.max(1);
        Self {
            shape: shape_key(cfg, device),
            device,
            train_images: run.train_images,
            test_images: run.test_images,
            epochs: e,
            eval_passes: e / every + usize::from(e % every != 0) + cfg.eval.noise_scales.len(),
            ranks,
            images_per_step: (cfg.train.batch_size / ranks).max(1),
            cache_job,
            fills_cache: cache_job && fills_cache,
            gflop_per_image: flops_per_image(cfg) / 1e9,
        }
    }

    pub fn run_shape(&self) -> RunShape<'_> {
        RunShape {
            shape: &self.shape,
            device: self.device,
            gflop_per_image: self.gflop_per_image,
            images_per_step: self.images_per_step,
        }
    }

    fn feature_images(&self) -> f64 {
        (self.train_images + self.test_images) as f64
    }

    fn eval_images(&self) -> f64 {
        (self.test_images * self.eval_passes) as f64
    }
}

/// The estimate of one run at `r`'s rates.
pub fn estimate(w: &Workload, r: &Rates) -> Estimate {
    let ranks = w.ranks as f64;
    let images = w.feature_images();
    // The feature-cache job (one rank): its start-up, then filling or only reading.
    let fill = if w.fills_cache { images * r.fill_s_per_image } else { 0.0 };
    let cache_job = if w.cache_job {
        r.cache_job_fixed_s + if w.fills_cache { fill } else { images * r.load_s_per_image }
    } else {
        0.0
    };
    let features_s = cache_job + images * r.load_s_per_image;
    let train_s = (w.train_images * w.epochs) as f64 * w.gflop_per_image / (r.train_gflops * ranks);
    // The forward passes are sharded over the ranks; maps and metrics are rank 0's.
    let eval_forward = w.eval_images() * (w.gflop_per_image / 3.0) / (r.eval_gflops * ranks);
    let eval_s = eval_forward + w.eval_images() * r.eval_fixed_s;
    let other_s = r.run_fixed_s;
    let wall_s = features_s + train_s + eval_s + other_s;
    let compute = fill + train_s + eval_forward;
    let fixed = wall_s - compute;
    let range = |(c, f): (f64, f64)| compute * c + fixed * f;
    Estimate {
        source: r.source.clone(),
        features_s,
        train_s,
        eval_s,
        other_s,
        wall_s,
        rank_hours: ((wall_s - cache_job) * ranks + cache_job) / 3600.0,
        low_s: range((r.compute_range.0, r.fixed_range.0)),
        high_s: range((r.compute_range.1, r.fixed_range.1)),
        basis: r.basis.clone(),
        cache_job: w.cache_job.then_some(w.fills_cache),
    }
}

/// What every attempt record in the store says (one LIST of `runs/`, one GET per record:
/// `ras plan` and `ras sweep` do it once, never per poll).
pub fn measurements(store: &Store) -> Result<Measurements, SweepError> {
    let mut records: Vec<AttemptCost> = vec![];
    for key in store.list(RunPaths::ROOT)? {
        if let Some((_, RunKey::Attempt { .. })) = RunPaths::parse(&key) {
            if let Ok(Some(r)) = store.get_json::<AttemptCost>(&key) {
                records.push(r);
            }
        }
    }
    Ok(Measurements::of(&records))
}

/// Every run's estimate from `m`, in launch order (which decides the run that carries
/// each feature-cache job).
pub fn estimate_runs(
    manifest: &Manifest,
    m: &Measurements,
    profile: &ClusterProfile,
) -> Result<Vec<Estimate>, SweepError> {
    let mut seen = BTreeSet::new();
    manifest
        .runs
        .iter()
        .map(|run| {
            let cache_job = seen.insert(run.feature_key.clone());
            let w = Workload::of(run, &run.config()?, profile, cache_job, !m.cached.contains(&run.feature_key));
            Ok(estimate(&w, &rates_for(&w.run_shape(), m, profile)))
        })
        .collect()
}

/// Fills every run's `estimate` from the store's measurements.
pub fn estimate_all(manifest: &mut Manifest, store: &Store, profile: &ClusterProfile) -> Result<(), SweepError> {
    let est = estimate_runs(manifest, &measurements(store)?, profile)?;
    for (run, e) in manifest.runs.iter_mut().zip(est) {
        run.estimate = Some(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates() -> Rates {
        Rates {
            source: Source::Bench { flop_ratio: None },
            train_gflops: 10.0,
            eval_fixed_s: 0.01,
            eval_gflops: 5.0,
            fill_s_per_image: 0.2,
            load_s_per_image: 0.001,
            run_fixed_s: 3.0,
            cache_job_fixed_s: 2.0,
            compute_range: (0.5, 2.0),
            fixed_range: (0.8, 1.5),
            basis: "b".into(),
        }
    }

    fn work(cache_job: bool, fills_cache: bool, ranks: usize) -> Workload {
        Workload {
            shape: "s".into(),
            device: "cpu",
            train_images: 100,
            test_images: 50,
            epochs: 10,
            eval_passes: 2,
            ranks,
            images_per_step: 16,
            cache_job,
            fills_cache,
            gflop_per_image: 1.5,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn every_part_of_a_run_is_priced_fixed_costs_included() {
        let e = estimate(&work(true, true, 2), &rates());
        // The cache job: 2 s + 150 images x 0.2 s; the run reads 150 images x 1 ms.
        assert!(close(e.features_s, 2.0 + 30.0 + 0.15), "{e:?}");
        // 1000 images x 1.5 GFLOP at 10 GFLOP/s on 2 ranks.
        assert!(close(e.train_s, 75.0), "{e:?}");
        // 100 test images: forward 0.5 GFLOP at 5 GFLOP/s over 2 ranks, + 10 ms each.
        assert!(close(e.eval_s, 5.0 + 1.0), "{e:?}");
        assert_eq!((e.other_s, e.cache_job), (3.0, Some(true)));
        assert!(close(e.wall_s, 32.15 + 75.0 + 6.0 + 3.0), "{e:?}");
        // Compute (fill, train, forward) 110 s, the rest 6.15 s.
        assert!(close(e.low_s, 110.0 * 0.5 + 6.15 * 0.8) && close(e.high_s, 110.0 * 2.0 + 6.15 * 1.5), "{e:?}");
        // The cache job is one rank; the run is two.
        assert!(close(e.rank_hours, ((e.wall_s - 32.0) * 2.0 + 32.0) / 3600.0), "{e:?}");
        assert_eq!(e.basis, "b");

        // A filled cache: the job only reads it. No job: the run only reads it.
        let read = estimate(&work(true, false, 2), &rates());
        assert!(close(read.features_s, 2.0 + 0.15 + 0.15) && read.cache_job == Some(false), "{read:?}");
        let none = estimate(&work(false, false, 2), &rates());
        assert!(close(none.features_s, 0.15) && none.cache_job.is_none(), "{none:?}");
        // One rank: training and the forward passes take twice as long.
        let one = estimate(&work(false, false, 1), &rates());
        assert!(close(one.train_s, 150.0) && close(one.eval_s, 10.0 + 1.0), "{one:?}");
    }

    /// Plans stored by older versions (no range, a unit `bench` source, the FLOP model)
    /// still read: the report sets them against what the runs cost.
    #[test]
    fn estimates_of_older_plans_still_parse() {
        let old = r#"{"source":{"kind":"bench"},"features_s":1.0,"train_s":2.0,"eval_s":3.0,"other_s":0.0,"wall_s":6.0,"rank_hours":0.001}"#;
        let e: Estimate = serde_json::from_str(old).unwrap();
        assert_eq!((e.source, e.low_s, e.high_s, e.basis.as_str()), (Source::Bench { flop_ratio: None }, 0.0, 0.0, ""));
        let flops = old.replace(r#"{"kind":"bench"}"#, r#"{"kind":"flops","tflops":100.0}"#);
        let e: Estimate = serde_json::from_str(&flops).unwrap();
        assert_eq!(e.source.to_string(), "assumed 100 TFLOP/s");
        let measured = old.replace(r#"{"kind":"bench"}"#, r#"{"kind":"measured","attempts":3}"#);
        let e: Estimate = serde_json::from_str(&measured).unwrap();
        assert_eq!(e.source, Source::Measured { attempts: 3, flop_ratio: None });
    }
}
