//! Cost estimates of planned runs, from measurements where there are any:
//! 1. `measured`: the attempt records (`run::cost`) of runs with the same shape key in
//!    the store, as throughputs (train images per rank-second, feature images per second,
//!    evaluation seconds per test image), scaled to this run's images, epochs and ranks;
//! 2. `bench`: the profile's `train_images_per_s_per_rank` (and `feature_images_per_s`,
//!    `eval_images_per_s`), which `ras bench train-step` prints for its device;
//! 3. `flops`: the FLOP model at the profile's assumed TFLOP/s per rank: an assumption,
//!    and labelled as one.
//!
//! Features count only for the run that fills a feature cache (the first of its
//! `feature_key` in launch order); the others load it.

use super::{Manifest, PlannedRun, SweepError};
use crate::config::{BackboneArch, ClusterProfile, RunConfig};
use crate::run::cost::{planned_device_kind, shape_key, AttemptCost, Job, Outcome};
use crate::run::{RunKey, RunPaths};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Where an estimate's throughputs came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Source {
    /// Attempt records of runs with the same shape.
    Measured { attempts: usize },
    /// The profile's `ras bench` figures.
    Bench,
    /// The FLOP model at `tflops` per rank (assumed, not measured).
    Flops { tflops: f64 },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Measured { attempts } => write!(f, "measured ({attempts} attempts)"),
            Source::Bench => write!(f, "bench (profile)"),
            Source::Flops { tflops } => write!(f, "assumed {tflops} TFLOP/s"),
        }
    }
}

/// A run's estimated cost: seconds per phase, wall, rank-hours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub source: Source,
    pub features_s: f64,
    pub train_s: f64,
    pub eval_s: f64,
    pub other_s: f64,
    pub wall_s: f64,
    pub rank_hours: f64,
}

/// What a planned run has to do, in the units throughputs are measured in.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub shape: String,
    pub train_images: usize,
    pub test_images: usize,
    pub epochs: usize,
    /// Passes over the test set: eval epochs + noise scales.
    pub eval_passes: usize,
    pub ranks: usize,
    /// The first run of its feature cache computes the features; the others load them.
    pub fills_cache: bool,
    /// Forward+backward GFLOP of one training image (the FLOP model).
    pub gflop_per_image: f64,
    /// Backbone GFLOP of one image (the FLOP model's feature cost).
    pub backbone_gflop: f64,
}

impl Workload {
    pub fn of(run: &PlannedRun, cfg: &RunConfig, profile: &ClusterProfile, fills_cache: bool) -> Self {
        let device = planned_device_kind(cfg.train.device, profile.gpus_per_node > 0);
        let (e, every) = (cfg.train.epochs, cfg.train.eval_every.max(1));
        Self {
            shape: shape_key(cfg, device),
            train_images: run.train_images,
            test_images: run.test_images,
            epochs: e,
            eval_passes: e / every + usize::from(e % every != 0) + cfg.eval.noise_scales.len(),
            ranks: run.ranks.max(1),
            fills_cache,
            gflop_per_image: flops_per_image(cfg) / 1e9,
            backbone_gflop: backbone_gflop(cfg.backbone.arch, cfg.backbone.image_size),
        }
    }

    fn feature_images(&self) -> f64 {
        (self.train_images + self.test_images) as f64
    }

    fn eval_images(&self) -> f64 {
        (self.test_images * self.eval_passes) as f64
    }
}

/// EfficientNet forward GFLOP at 224 px (the published figures), scaled by pixels.
fn backbone_gflop(arch: BackboneArch, image_size: i64) -> f64 {
    let at224 = match arch {
        BackboneArch::B0 => 0.39,
        BackboneArch::B1 => 0.70,
        BackboneArch::B2 => 1.0,
        BackboneArch::B3 => 1.8,
        BackboneArch::B4 => 4.2,
    };
    at224 * (image_size as f64 / 224.0).powi(2)
}

/// Throughputs of one shape, from its attempt records (ratios of sums, so long attempts
/// weigh more than short ones).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Throughput {
    pub attempts: usize,
    pub train_images_per_rank_s: Option<f64>,
    /// Of attempts that computed features.
    pub feature_images_per_s: Option<f64>,
    /// Of attempts that only loaded the cache.
    pub feature_load_s_per_image: Option<f64>,
    pub eval_s_per_image: Option<f64>,
    /// Mean "other" seconds per attempt (checkpoints, logs, setup).
    pub other_s: f64,
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (num > 0.0 && den > 0.0).then(|| num / den)
}

impl Throughput {
    /// From the records of one shape; failed attempts do not count (they may have died
    /// anywhere). None without a training record: the train rate is what "measured" means.
    pub fn of(records: &[&AttemptCost]) -> Option<Self> {
        let ok: Vec<&&AttemptCost> = records.iter().filter(|r| r.outcome != Outcome::Failed).collect();
        let trained = ok.iter().filter(|r| r.images_trained > 0).count();
        if trained == 0 {
            return None;
        }
        let sum = |f: &dyn Fn(&AttemptCost) -> f64, keep: &dyn Fn(&AttemptCost) -> bool| {
            ok.iter().filter(|r| keep(r)).map(|r| f(r)).sum::<f64>()
        };
        let all = |_: &AttemptCost| true;
        let computed = |r: &AttemptCost| r.features_computed > 0;
        let loaded = |r: &AttemptCost| r.features_computed == 0;
        let runs = |r: &AttemptCost| r.job == Job::Run;
        Some(Self {
            attempts: trained,
            train_images_per_rank_s: ratio(
                sum(&|r| r.images_trained as f64, &all),
                sum(&|r| r.phases.train_s * r.ranks as f64, &all),
            ),
            feature_images_per_s: ratio(
                sum(&|r| r.features_computed as f64, &computed),
                sum(&|r| r.phases.features_s, &computed),
            ),
            feature_load_s_per_image: ratio(
                sum(&|r| r.phases.features_s, &loaded),
                sum(&|r| r.feature_images as f64, &loaded),
            ),
            eval_s_per_image: ratio(sum(&|r| r.phases.eval_s, &all), sum(&|r| r.eval_images as f64, &all)),
            other_s: sum(&|r| r.phases.other_s, &runs) / trained as f64,
        })
    }
}

/// Throughputs per shape key of every attempt record in the store (one LIST of `runs/`,
/// one GET per record: `ras plan` and `ras sweep` do it once, never per poll).
pub fn measurements(store: &Store) -> Result<BTreeMap<String, Throughput>, SweepError> {
    let mut records: Vec<AttemptCost> = vec![];
    for key in store.list(RunPaths::ROOT)? {
        if let Some((_, RunKey::Attempt { .. })) = RunPaths::parse(&key) {
            if let Ok(Some(r)) = store.get_json::<AttemptCost>(&key) {
                records.push(r);
            }
        }
    }
    let shapes: BTreeSet<&str> = records.iter().map(|r| r.shape.as_str()).collect();
    Ok(shapes
        .into_iter()
        .filter_map(|s| {
            Throughput::of(&records.iter().filter(|r| r.shape == s).collect::<Vec<_>>()).map(|t| (s.to_string(), t))
        })
        .collect())
}

/// Seconds of `work` GFLOP at the profile's TFLOP/s (one rank).
fn flop_seconds(profile: &ClusterProfile, gflop: f64) -> f64 {
    gflop / (profile.tflops() * 1e3)
}

/// The estimate of one run: measured throughput of its shape, else the profile's bench
/// figures, else the FLOP model.
pub fn estimate(w: &Workload, measured: Option<&Throughput>, profile: &ClusterProfile) -> Estimate {
    let ranks = w.ranks as f64;
    let trained = (w.train_images * w.epochs) as f64;
    let flops = |gflop: f64| flop_seconds(profile, gflop);
    let flop_features = if w.fills_cache { flops(w.feature_images() * w.backbone_gflop) } else { 0.0 };
    // Evaluation is a forward pass: a third of a training step's FLOPs.
    let flop_eval = flops(w.eval_images() * w.gflop_per_image / 3.0);
    let (source, features_s, train_s, eval_s, other_s) = match (measured, profile.train_images_per_s_per_rank) {
        (Some(t), _) if t.train_images_per_rank_s.is_some() => {
            let features_s = match (w.fills_cache, t.feature_images_per_s, t.feature_load_s_per_image) {
                (true, Some(rate), _) => w.feature_images() / rate,
                (true, None, _) => flop_features,
                (false, _, load) => w.feature_images() * load.unwrap_or(0.0),
            };
            let eval_s = t.eval_s_per_image.map(|s| s * w.eval_images()).unwrap_or(flop_eval);
            (
                Source::Measured { attempts: t.attempts },
                features_s,
                trained / (t.train_images_per_rank_s.unwrap() * ranks),
                eval_s,
                t.other_s,
            )
        }
        (_, Some(rate)) => {
            let features_s = match (w.fills_cache, profile.feature_images_per_s) {
                (true, Some(f)) => w.feature_images() / f,
                (true, None) => flop_features,
                (false, _) => 0.0,
            };
            let eval_s = profile.eval_images_per_s.map(|e| w.eval_images() / e).unwrap_or(flop_eval);
            (Source::Bench, features_s, trained / (rate * ranks), eval_s, 0.0)
        }
        _ => (
            Source::Flops { tflops: profile.tflops() },
            flop_features,
            flops(trained * w.gflop_per_image) / ranks,
            flop_eval,
            0.0,
        ),
    };
    let wall_s = features_s + train_s + eval_s + other_s;
    Estimate { source, features_s, train_s, eval_s, other_s, wall_s, rank_hours: wall_s * ranks / 3600.0 }
}

/// Fills every run's `estimate` (launch order decides which run fills each feature cache).
pub fn estimate_all(manifest: &mut Manifest, store: &Store, profile: &ClusterProfile) -> Result<(), SweepError> {
    let measured = measurements(store)?;
    let mut filled = BTreeSet::new();
    for run in &mut manifest.runs {
        let fills = filled.insert(run.feature_key.clone());
        let w = Workload::of(run, &run.config()?, profile, fills);
        run.estimate = Some(estimate(&w, measured.get(&w.shape), profile));
    }
    Ok(())
}

/// Forward+backward FLOPs of one training image of `cfg`: its backbone's feature channels
/// (from the architecture and output blocks: B0's 120 are not B4's 272) and its token grid
/// (image_size / 16). The planner orders runs by it and scales measured throughputs with it.
pub fn flops_per_image(cfg: &RunConfig) -> f64 {
    let channels = crate::backbone::feature_channels(&cfg.backbone);
    crate::model::flops::train_flops_per_image(&cfg.model, channels, cfg.backbone.image_size / 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::cost::Phases;

    fn profile(extra: &str) -> ClusterProfile {
        toml::from_str(&format!("launcher = \"local\"\ngpus_per_node = 0\n{extra}")).unwrap()
    }

    fn record(
        shape: &str,
        outcome: Outcome,
        ranks: usize,
        phases: Phases,
        trained: u64,
        computed: u64,
        evaluated: u64,
    ) -> AttemptCost {
        let wall_s = phases.features_s + phases.train_s + phases.eval_s + phases.other_s;
        AttemptCost {
            started_unix: 1,
            ended_unix: 2,
            job: if trained > 0 { Job::Run } else { Job::FeatureCache },
            outcome,
            host: "h".into(),
            pid: 1,
            device: "cpu".into(),
            gpu_name: None,
            ranks,
            wall_s,
            phases,
            rank_hours: wall_s * ranks as f64 / 3600.0,
            gpu_hours: None,
            images_trained: trained,
            features_computed: computed,
            feature_images: 150,
            eval_images: evaluated,
            shape: shape.into(),
        }
    }

    fn work(fills_cache: bool, ranks: usize) -> Workload {
        Workload {
            shape: "s".into(),
            train_images: 100,
            test_images: 50,
            epochs: 10,
            eval_passes: 2,
            ranks,
            fills_cache,
            gflop_per_image: 1.0,
            backbone_gflop: 0.4,
        }
    }

    #[test]
    fn throughput_is_a_ratio_of_sums_and_skips_failed_attempts() {
        let p = |f, t, e, o| Phases { features_s: f, train_s: t, eval_s: e, other_s: o };
        let a = record("s", Outcome::Complete, 2, p(15.0, 100.0, 10.0, 5.0), 4000, 150, 100);
        let b = record("s", Outcome::Preempted, 1, p(3.0, 100.0, 0.0, 1.0), 1000, 0, 0);
        let bad = record("s", Outcome::Failed, 1, p(1.0, 1000.0, 0.0, 0.0), 1, 0, 0);
        let cache_job = record("s", Outcome::Complete, 1, p(15.0, 0.0, 0.0, 0.0), 0, 150, 0);
        let t = Throughput::of(&[&a, &b, &bad, &cache_job]).unwrap();
        assert_eq!(t.attempts, 2, "training attempts");
        // (4000 + 1000) images / (100 s x 2 ranks + 100 s x 1 rank).
        assert!((t.train_images_per_rank_s.unwrap() - 5000.0 / 300.0).abs() < 1e-9);
        // 300 images computed in 30 s (the run's and the cache job's).
        assert_eq!(t.feature_images_per_s, Some(10.0));
        assert_eq!(t.feature_load_s_per_image, Some(3.0 / 150.0));
        assert_eq!(t.eval_s_per_image, Some(0.1));
        assert_eq!(t.other_s, 3.0);
        assert_eq!(Throughput::of(&[&bad, &cache_job]), None, "no successful training: nothing measured");
    }

    #[test]
    fn measured_throughput_scales_to_images_epochs_and_ranks() {
        let t = Throughput {
            attempts: 3,
            train_images_per_rank_s: Some(20.0),
            feature_images_per_s: Some(10.0),
            feature_load_s_per_image: Some(0.01),
            eval_s_per_image: Some(0.1),
            other_s: 2.0,
        };
        let prof = profile("train_images_per_s_per_rank = 1000.0");
        let e = estimate(&work(true, 2), Some(&t), &prof);
        assert_eq!(e.source, Source::Measured { attempts: 3 }, "measurements win over the profile");
        // 100 images x 10 epochs / (20 img/s/rank x 2 ranks); 150 images / 10 img/s;
        // 50 test images x 2 passes x 0.1 s.
        assert_eq!((e.train_s, e.features_s, e.eval_s, e.other_s), (25.0, 15.0, 10.0, 2.0));
        assert_eq!(e.wall_s, 52.0);
        assert!((e.rank_hours - 52.0 * 2.0 / 3600.0).abs() < 1e-12);
        // A run after the cache filler only loads the features.
        assert!((estimate(&work(false, 2), Some(&t), &prof).features_s - 1.5).abs() < 1e-12);
    }

    #[test]
    fn without_measurements_the_profile_bench_figure_then_the_flop_model() {
        let prof =
            profile("train_images_per_s_per_rank = 50.0\nfeature_images_per_s = 30.0\neval_images_per_s = 100.0");
        let e = estimate(&work(true, 1), None, &prof);
        assert_eq!(e.source, Source::Bench);
        assert_eq!((e.train_s, e.features_s, e.eval_s), (20.0, 5.0, 1.0));
        let e = estimate(&work(true, 2), None, &profile("tflops_per_rank = 0.001"));
        assert_eq!(e.source, Source::Flops { tflops: 0.001 });
        // 1000 images x 1 GFLOP at 1 GFLOP/s on 2 ranks; features 150 x 0.4 GFLOP; eval
        // 100 images x 1/3 GFLOP.
        assert!(
            (e.train_s - 500.0).abs() < 1e-9
                && (e.features_s - 60.0).abs() < 1e-9
                && (e.eval_s - 100.0 / 3.0).abs() < 1e-9,
            "{e:?}"
        );
        assert!(e.source.to_string().contains("assumed"));
    }
}
