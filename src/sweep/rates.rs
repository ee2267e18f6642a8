//! Achieved rates for `ras plan`: what one rank does per second for a run of a given shape,
//! what a job costs whatever its size (start-up, reading the feature cache, the part of an
//! evaluation that is not the model), a low-high range, and where each figure comes from.
//! In order of preference:
//! 1. `measured`: the store's attempt records of the run's own shape; else of the nearest
//!    measured shape of its family (same device kind, backbone and image size; nearest FLOP
//!    count per image), its rates scaled to the run by the FLOP counts (`model::flops`);
//! 2. `bench`: the profile's `ras bench train-step` lines, measured at the shape whose FLOP
//!    count per image `bench_gflop_per_image` gives, scaled to the run's shape by FLOPs;
//! 3. the device kind's defaults: on a CPU, rates measured on this project's 2-core build
//!    machine; on a GPU, a cited fraction of the profile's `gpu_peak_tflops` (cited, not
//!    measured: no GPU run of this model has been timed yet). The profile's
//!    `tflops_per_rank`, where given, replaces the default training rate.
//!
//! Fixed costs (per job, per image read, per test image evaluated) are always included:
//! a plan that leaves them out prices a tiny run at a few seconds that takes a minute.

use crate::config::{ClusterProfile, ModelConfig};
use crate::run::cost::{shape_family, AttemptCost, Job, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Where an estimate's rates came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Source {
    /// Attempt records in the store: of the run's own shape (`flop_ratio` None), or of the
    /// nearest measured shape, scaled by `flop_ratio` (run's FLOPs per image / measured's).
    Measured {
        attempts: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flop_ratio: Option<f64>,
    },
    /// The profile's `ras bench` lines, scaled from the bench's shape by `flop_ratio`.
    Bench {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flop_ratio: Option<f64>,
    },
    /// The device kind's default rates: measured on this project's machine (`cited`
    /// false), or a cited fraction of the profile's GPU peak (`cited` true).
    Default { device: String, cited: bool },
    /// A training rate the profile asserts (`tflops_per_rank`); also how plans of older
    /// versions, read back from stored manifests, were made.
    Flops { tflops: f64 },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Measured { attempts, flop_ratio: None } => write!(f, "measured ({attempts} attempts)"),
            Source::Measured { attempts, flop_ratio: Some(r) } => {
                write!(f, "measured x{r:.2} FLOPs ({attempts} attempts)")
            }
            Source::Bench { flop_ratio: None } => write!(f, "bench (profile)"),
            Source::Bench { flop_ratio: Some(r) } => write!(f, "bench (profile) x{r:.2} FLOPs"),
            Source::Default { device, cited: false } => write!(f, "{device} default (measured)"),
            Source::Default { device, cited: true } => write!(f, "{device} default (cited)"),
            Source::Flops { tflops } => write!(f, "assumed {tflops} TFLOP/s"),
        }
    }
}

// The CPU figures, measured on this project's 2-core build machine (no GPU).

/// Training GFLOP/s of one core against GFLOP per step of one rank (FLOPs per image x
/// images per step), idle machine, `ras bench train-step --threads 2` (README,
/// "Benchmarks", 2026-11-30): at the paper's shapes 18.4 samples/s x 7.40 GFLOP, batch 64
/// (474 GFLOP a step): 68.1 a core; a tiny model (batch 2, hidden 32, T_e = T_d = 1) 117.9
/// samples/s x 0.21 GFLOP (0.42 a step): 12.4 a core. Log-log between, flat outside.
const CPU_TRAIN: [(f64, f64); 2] = [(0.42, 12.4), (474.0, 68.1)];
/// The same bench on the same machine shared with other work (load average 1.6-4,
/// 2026-12-03): 5.8 samples/s, 3.2x the idle time: the high end of the CPU range. The low
/// end: tiny runs on the test Slurm (`ras bench plan --exclusive`, 2026-12-03) took 0.40-0.56
/// of what these defaults planned (0.40-0.58 in a second run).
const CPU_RANGE: (f64, f64) = (0.4, 3.2);
/// Evaluation outside the model's forward pass, per test image and pass: anomaly maps at
/// 224 px and scores, 37 ms, measured with `ras bench epoch --images 16 --test-images 400
/// --hidden-dim 32 --encoder-layers 0 --decoder-layers 1 --batch 16 --threads 2` (26.6
/// images/s with a forward pass of 0.07 GFLOP: the maps are nearly all of it).
const CPU_MAPS_S: f64 = 0.037;
/// The metrics of a pass (image and pixel AUROC, AUPRO, F1, AP), per test image, on the
/// CPU whatever the device: 1.39 s for 400 images in the same command.
const METRICS_S: f64 = 0.0035;
/// Filling the feature cache, per image: 0.26 s for EfficientNet-B0 and -B4 alike (the
/// backbone's FLOPs are not what dominates): `ras features` of 168 synthetic images
/// (B0) in 44 s, and `ras bench train-step`'s 3.9 images/s (B4), both 2026-12-03.
const FILL_S: f64 = 0.26;
/// Reading a filled cache, per image: a run's features phase, 0.12 s for 44 images.
const LOAD_S: f64 = 0.0028;
/// A run's time outside features, training and evaluation (start-up, checkpoints, logs):
/// 0.88 s in both runs of a 4-epoch sweep of tiny runs.
const RUN_FIXED_S: f64 = 0.9;
/// A feature-cache job whose cache is filled already: 0.11 and 0.13 s.
const CACHE_JOB_FIXED_S: f64 = 0.15;
/// The fixed costs above varied 2.6x between repeats on the shared machine (a 44-image
/// cache fill: 8.9 s and 23.1 s), and a run's start-up was 0.1 s on the test Slurm.
const FIXED_RANGE: (f64, f64) = (0.3, 2.6);

// The GPU figures: cited, not measured.

/// Achieved fraction of the GPU's peak in training, central and (best, worst). timm's
/// ViT-S/16 training benchmark (pytorch-image-models,
/// results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv: 1053 images/s, AMP) is 29
/// TFLOP/s at 27.6 GFLOP an image (4.6 GMACs forward, x2, x3 for training): 41% of the
/// RTX 3090's 71 TFLOP/s dense FP16 peak. RAS's matrices are smaller (width 256, the
/// global batch of 64 split over the ranks, against 384 and 384), so 41% is the best case,
/// 15% the central figure and 5% the worst (small per-rank batches wait on kernel launches).
const GPU_FRACTION: f64 = 0.15;
const GPU_FRACTION_RANGE: (f64, f64) = (0.05, 0.41);
/// Peak TFLOP/s when the profile names no `gpu_peak_tflops`: an A100's dense TF32 (the
/// default precision on CUDA), from NVIDIA's A100 datasheet.
const GPU_PEAK_DEFAULT: f64 = 156.0;
/// A GPU job's fixed costs are CPU work measured here, without CUDA's start-up (context,
/// kernel loading): a wider range.
const GPU_FIXED_RANGE: (f64, f64) = (0.6, 4.0);

/// Ranges of measured and benchmarked rates (of the time: low, high multipliers): the
/// same shape repeats within about 25% on the shared machine; scaling by FLOPs to another
/// shape adds the error of FLOPs as a proxy of time.
const SAME_SHAPE_RANGE: (f64, f64) = (0.8, 1.25);
const SCALED_RANGE: (f64, f64) = (0.67, 1.5);

/// What a run's rates depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct RunShape<'a> {
    /// Its shape key (`run::cost::shape_key`).
    pub shape: &'a str,
    /// "cpu" or "cuda".
    pub device: &'a str,
    pub gflop_per_image: f64,
    /// Training images of one rank per step (the global batch / ranks).
    pub images_per_step: usize,
}

/// The rates and fixed costs one run is estimated with, and where they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    pub source: Source,
    /// Training GFLOP/s one rank achieves at the run's shape.
    pub train_gflops: f64,
    /// Evaluation, per test image and pass: `eval_fixed_s` (anomaly maps and metrics) plus
    /// the forward pass (a third of training's FLOPs) at `eval_gflops`.
    pub eval_fixed_s: f64,
    pub eval_gflops: f64,
    /// Filling the feature cache, seconds per image (decode, resize, backbone, write).
    pub fill_s_per_image: f64,
    /// Reading a filled cache, seconds per image (every job reads it).
    pub load_s_per_image: f64,
    /// Fixed seconds of a run's job (start-up, checkpoints, logs).
    pub run_fixed_s: f64,
    /// Fixed seconds of a feature-cache job.
    pub cache_job_fixed_s: f64,
    /// Low and high multipliers of the time computed from rates (training, the forward
    /// passes of evaluation, filling the cache) and of the rest (fixed costs).
    pub compute_range: (f64, f64),
    pub fixed_range: (f64, f64),
    /// Where each figure comes from, in words.
    pub basis: String,
}

/// GFLOP of one training image at the paper's shapes (what `ras bench train-step`
/// measures by default): 7.40.
pub fn paper_gflop_per_image() -> f64 {
    crate::model::flops::train_flops_per_image(&ModelConfig::default(), 272, 14) / 1e9
}

/// CPU training GFLOP/s of one core at `step_gflop` GFLOP per step ([`CPU_TRAIN`]).
pub fn cpu_gflops_per_core(step_gflop: f64) -> f64 {
    let [(x0, y0), (x1, y1)] = CPU_TRAIN;
    let t = ((step_gflop.max(x0).min(x1)).ln() - x0.ln()) / (x1.ln() - x0.ln());
    (y0.ln() + t * (y1.ln() - y0.ln())).exp()
}

/// Where the fixed costs of `device`'s defaults come from, in words.
fn fixed_basis(device: &str) -> String {
    let eval = if device == "cuda" {
        format!("metrics {:.1} ms a test image a pass (on the CPU)", METRICS_S * 1e3)
    } else {
        format!("maps and metrics {:.1} ms a test image a pass", (CPU_MAPS_S + METRICS_S) * 1e3)
    };
    format!(
        "fixed costs measured here on a CPU: start-up {RUN_FIXED_S} s a run and {CACHE_JOB_FIXED_S} s a cache job, reading the cache {:.1} ms an image, filling it {FILL_S} s an image, {eval}{}",
        LOAD_S * 1e3,
        if device == "cuda" { " (CUDA's start-up not included)" } else { "" }
    )
}

/// The device kind's default rates.
pub fn defaults(run: &RunShape, profile: &ClusterProfile) -> Rates {
    let mut r = if run.device == "cuda" {
        let (peak, said) = match profile.gpu_peak_tflops {
            Some(p) => (p, format!("the profile's gpu_peak_tflops {p}")),
            None => {
                (GPU_PEAK_DEFAULT, format!("{GPU_PEAK_DEFAULT} TFLOP/s (A100 TF32; no gpu_peak_tflops in the profile)"))
            }
        };
        let gflops = GPU_FRACTION * peak * 1e3;
        Rates {
            source: Source::Default { device: "cuda".into(), cited: true },
            train_gflops: gflops,
            eval_fixed_s: eval_fixed_default("cuda", true),
            eval_gflops: gflops,
            fill_s_per_image: FILL_S,
            load_s_per_image: LOAD_S,
            run_fixed_s: RUN_FIXED_S,
            cache_job_fixed_s: CACHE_JOB_FIXED_S,
            compute_range: (GPU_FRACTION / GPU_FRACTION_RANGE.1, GPU_FRACTION / GPU_FRACTION_RANGE.0),
            fixed_range: GPU_FIXED_RANGE,
            basis: format!(
                "cuda training cited, not measured: {:.0}% ({:.0}-{:.0}%) of {said} (timm's ViT-S/16 training benchmark reaches 41% of an RTX 3090's peak; this model's matrices are smaller); {}",
                GPU_FRACTION * 100.0,
                GPU_FRACTION_RANGE.0 * 100.0,
                GPU_FRACTION_RANGE.1 * 100.0,
                fixed_basis("cuda")
            ),
        }
    } else {
        let cores = profile.cpus_per_gpu.max(1) as f64;
        let step = run.gflop_per_image * run.images_per_step.max(1) as f64;
        let per_core = cpu_gflops_per_core(step);
        let [(_, lo), (_, hi)] = CPU_TRAIN;
        Rates {
            source: Source::Default { device: "cpu".into(), cited: false },
            train_gflops: per_core * cores,
            eval_fixed_s: eval_fixed_default("cpu", true),
            eval_gflops: per_core * cores,
            fill_s_per_image: FILL_S,
            load_s_per_image: LOAD_S,
            run_fixed_s: RUN_FIXED_S,
            cache_job_fixed_s: CACHE_JOB_FIXED_S,
            compute_range: CPU_RANGE,
            fixed_range: FIXED_RANGE,
            basis: format!(
                "cpu training measured here: {lo}-{hi} GFLOP/s a core by GFLOP a step (`ras bench train-step`, this project's 2-core machine, idle; up to {}x slower loaded) x {cores} cores a rank (cpus_per_gpu); {}",
                CPU_RANGE.1,
                fixed_basis("cpu")
            ),
        }
    };
    if let Some(t) = profile.tflops_per_rank {
        r.source = Source::Flops { tflops: t };
        r.train_gflops = t * 1e3;
        r.eval_gflops = t * 1e3;
        r.compute_range = (0.5, 2.0);
        r.basis = format!(
            "training at the profile's tflops_per_rank {t} (asserted, not measured); {}",
            fixed_basis(run.device)
        );
    }
    r
}

/// Seconds per test image of a pass that are not the model on `device` (anomaly maps on
/// a CPU; the metrics, on the CPU whatever the device, when `metrics`).
fn eval_fixed_default(device: &str, metrics: bool) -> f64 {
    let maps = if device == "cuda" { 0.0 } else { CPU_MAPS_S };
    maps + if metrics { METRICS_S } else { 0.0 }
}

/// Splits `s_per_image` seconds of evaluation of a shape of `gflop` per training image
/// into (fixed seconds, forward GFLOP/s): `fixed` (the device's default), at most 90% of
/// the total, and the rest as the forward pass (a third of training's FLOPs).
fn split_eval(s_per_image: f64, gflop: f64, fixed: f64) -> (f64, f64) {
    let fixed = fixed.min(0.9 * s_per_image);
    (fixed, (gflop / 3.0) / (s_per_image - fixed))
}

/// The profile's bench lines, scaled to `run` by FLOPs; None without them.
pub fn from_bench(run: &RunShape, profile: &ClusterProfile) -> Option<Rates> {
    let rate = profile.train_images_per_s_per_rank?;
    let base = defaults(run, profile);
    let (bench_gflop, said) = match profile.bench_gflop_per_image {
        Some(g) => (g, format!("bench_gflop_per_image {g}")),
        None => (paper_gflop_per_image(), format!("the paper's shapes, {:.2} GFLOP", paper_gflop_per_image())),
    };
    let ratio = run.gflop_per_image / bench_gflop;
    let scaled = (ratio - 1.0).abs() > 0.01;
    let (eval_fixed_s, eval_gflops) = match profile.eval_images_per_s {
        // The bench times the forward pass and the maps, not the metrics.
        Some(e) => {
            let (fixed, gflops) = split_eval(1.0 / e, bench_gflop, eval_fixed_default(run.device, false));
            (fixed + METRICS_S, gflops)
        }
        None => (base.eval_fixed_s, base.eval_gflops),
    };
    Some(Rates {
        source: Source::Bench { flop_ratio: scaled.then_some(ratio) },
        train_gflops: rate * bench_gflop,
        eval_fixed_s,
        eval_gflops,
        fill_s_per_image: profile.feature_images_per_s.map(|f| 1.0 / f).unwrap_or(base.fill_s_per_image),
        compute_range: if scaled { SCALED_RANGE } else { SAME_SHAPE_RANGE },
        basis: format!(
            "the profile's bench lines: {rate} training images/s a rank at {said}, scaled to other shapes by FLOPs{}; {}",
            if profile.feature_images_per_s.is_some() { "; filling the cache at feature_images_per_s" } else { "" },
            fixed_basis(run.device)
        ),
        ..base
    })
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
    /// Mean "other" seconds per run attempt (checkpoints, logs, setup).
    pub other_s: f64,
    /// Mean wall seconds of the feature-cache jobs that found the cache filled.
    pub cache_job_s: Option<f64>,
    /// GFLOP per training image of the shape, where its records say.
    pub gflop_per_image: Option<f64>,
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (num > 0.0 && den > 0.0).then(|| num / den)
}

impl Throughput {
    /// From the records of one shape; failed, cut off or killed attempts do not count
    /// (they may have died anywhere). None without a training record: the train rate is what "measured" means.
    pub fn of(records: &[&AttemptCost]) -> Option<Self> {
        let ok: Vec<&&AttemptCost> = records.iter().filter(|r| r.outcome.ended_cleanly()).collect();
        let trained = ok.iter().filter(|r| r.images_trained > 0).count();
        if trained == 0 {
            return None;
        }
        let sum = |f: &dyn Fn(&AttemptCost) -> f64, keep: &dyn Fn(&AttemptCost) -> bool| {
            ok.iter().filter(|r| keep(r)).map(|r| f(r)).sum::<f64>()
        };
        let all = |_: &AttemptCost| true;
        let computed = |r: &AttemptCost| r.features_computed > 0;
        let loaded = |r: &AttemptCost| r.features_computed == 0 && r.job == Job::Run;
        let idle_cache_job = |r: &AttemptCost| r.features_computed == 0 && r.job == Job::FeatureCache;
        let runs = |r: &AttemptCost| r.job == Job::Run;
        let cache_jobs = ok.iter().filter(|r| idle_cache_job(r)).count();
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
            cache_job_s: (cache_jobs > 0).then(|| sum(&|r| r.wall_s, &idle_cache_job) / cache_jobs as f64),
            gflop_per_image: ok.iter().find_map(|r| r.gflop_per_image),
        })
    }
}

/// What the store's attempt records say: throughputs per shape key, and which feature
/// caches are filled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurements {
    pub by_shape: BTreeMap<String, Throughput>,
    /// Feature keys (`run::cost::feature_key`) a successful job has filled or read.
    pub cached: BTreeSet<String>,
}

impl Measurements {
    pub fn of(records: &[AttemptCost]) -> Self {
        let shapes: BTreeSet<&str> = records.iter().map(|r| r.shape.as_str()).collect();
        let by_shape = shapes
            .into_iter()
            .filter_map(|s| {
                let of_shape: Vec<&AttemptCost> = records.iter().filter(|r| r.shape == s).collect();
                Throughput::of(&of_shape).map(|t| (s.to_string(), t))
            })
            .collect();
        let cached =
            records.iter().filter(|r| r.outcome == Outcome::Complete).filter_map(|r| r.feature_key.clone()).collect();
        Self { by_shape, cached }
    }

    /// The throughput to estimate `run` from: its own shape's, else the nearest measured
    /// shape of its family that records its FLOPs (nearest: the smallest |log| of the FLOP
    /// ratio; ties to the first key), with the ratio run / measured.
    pub fn nearest(&self, run: &RunShape) -> Option<(&Throughput, Option<f64>)> {
        if let Some(t) = self.by_shape.get(run.shape) {
            return Some((t, None));
        }
        let family = shape_family(run.shape);
        self.by_shape
            .iter()
            .filter(|(s, t)| shape_family(s) == family && t.train_images_per_rank_s.is_some())
            .filter_map(|(_, t)| Some((t, run.gflop_per_image / t.gflop_per_image.filter(|g| *g > 0.0)?)))
            .min_by(|a, b| a.1.ln().abs().total_cmp(&b.1.ln().abs()))
            .map(|(t, r)| (t, Some(r)))
    }
}

/// Rates from a measured throughput (`flop_ratio`: None for the run's own shape), the
/// device defaults filling what the records do not say.
pub fn from_measured(run: &RunShape, t: &Throughput, flop_ratio: Option<f64>, profile: &ClusterProfile) -> Rates {
    let base = defaults(run, profile);
    // The measured shape's FLOPs per image (the run's own when it is the same shape).
    let g = flop_ratio.map(|r| run.gflop_per_image / r).unwrap_or(run.gflop_per_image);
    let train_gflops = t.train_images_per_rank_s.map(|r| r * g).unwrap_or(base.train_gflops);
    let (eval_fixed_s, eval_gflops) = match t.eval_s_per_image {
        Some(s) => split_eval(s, g, eval_fixed_default(run.device, true)),
        None => (base.eval_fixed_s, base.eval_gflops),
    };
    let scaled = flop_ratio.is_some();
    Rates {
        source: Source::Measured { attempts: t.attempts, flop_ratio },
        train_gflops,
        eval_fixed_s,
        eval_gflops,
        fill_s_per_image: t.feature_images_per_s.map(|f| 1.0 / f).unwrap_or(base.fill_s_per_image),
        load_s_per_image: t.feature_load_s_per_image.unwrap_or(base.load_s_per_image),
        run_fixed_s: t.other_s,
        cache_job_fixed_s: t.cache_job_s.unwrap_or(base.cache_job_fixed_s),
        compute_range: if scaled { SCALED_RANGE } else { SAME_SHAPE_RANGE },
        fixed_range: SAME_SHAPE_RANGE,
        basis: format!(
            "measured in the store, {} attempts of {}: training {train_gflops:.1} GFLOP/s a rank, evaluation {:.1} ms a test image a pass + the forward pass, start-up {:.1} s a run{}",
            t.attempts,
            if scaled { "the nearest measured shape, scaled by FLOPs" } else { "this shape" },
            eval_fixed_s * 1e3,
            t.other_s,
            if t.feature_images_per_s.is_none() || t.cache_job_s.is_none() { "; the rest as the defaults" } else { "" }
        ),
    }
}

/// The rates of one run: measured, else the profile's bench lines, else the defaults.
pub fn rates_for(run: &RunShape, m: &Measurements, profile: &ClusterProfile) -> Rates {
    match m.nearest(run) {
        Some((t, r)) => from_measured(run, t, r, profile),
        None => from_bench(run, profile).unwrap_or_else(|| defaults(run, profile)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::cost::Phases;

    fn profile(extra: &str) -> ClusterProfile {
        toml::from_str(&format!("launcher = \"local\"\ngpus_per_node = 0\n{extra}")).unwrap()
    }

    fn record(shape: &str, job: Job, phases: Phases, trained: u64, computed: u64, gflop: Option<f64>) -> AttemptCost {
        let wall_s = phases.features_s + phases.train_s + phases.eval_s + phases.other_s;
        AttemptCost {
            started_unix: 1,
            ended_unix: 2,
            job,
            outcome: Outcome::Complete,
            host: "h".into(),
            pid: 1,
            device: "cpu".into(),
            gpu_name: None,
            ranks: 1,
            wall_s,
            phases,
            rank_hours: wall_s / 3600.0,
            gpu_hours: None,
            images_trained: trained,
            features_computed: computed,
            feature_images: 150,
            eval_images: if trained > 0 { 100 } else { 0 },
            shape: shape.into(),
            gflop_per_image: gflop,
            feature_key: Some("data:b0".into()),
            lease: None,
        }
    }

    fn p(f: f64, t: f64, e: f64, o: f64) -> Phases {
        Phases { features_s: f, train_s: t, eval_s: e, other_s: o }
    }

    const A: &str = "Ras C32 F64 H4 Te1 Td2 nmtrue img224 efficientnet-b0 cpu";
    const B: &str = "Ras C32 F64 H4 Te2 Td4 nmtrue img224 efficientnet-b0 cpu";

    fn shape(s: &str, gflop: f64) -> RunShape<'_> {
        RunShape { shape: s, device: "cpu", gflop_per_image: gflop, images_per_step: 16 }
    }

    #[test]
    fn throughput_is_a_ratio_of_sums_and_skips_failed_attempts() {
        let a = AttemptCost { ranks: 2, ..record(A, Job::Run, p(15.0, 100.0, 10.0, 5.0), 4000, 150, Some(1.0)) };
        // Preempted before its first evaluation.
        let b = AttemptCost {
            outcome: Outcome::Preempted,
            eval_images: 0,
            ..record(A, Job::Run, p(3.0, 100.0, 0.0, 1.0), 1000, 0, None)
        };
        let bad = AttemptCost { outcome: Outcome::Failed, ..record(A, Job::Run, p(1.0, 1000.0, 0.0, 0.0), 1, 0, None) };
        let cache_job = record(A, Job::FeatureCache, p(15.0, 0.0, 0.0, 0.0), 0, 150, None);
        let idle_cache_job = record(A, Job::FeatureCache, p(0.5, 0.0, 0.0, 0.0), 0, 0, None);
        let t = Throughput::of(&[&a, &b, &bad, &cache_job, &idle_cache_job]).unwrap();
        assert_eq!(t.attempts, 2, "training attempts");
        // (4000 + 1000) images / (100 s x 2 ranks + 100 s x 1 rank).
        assert!((t.train_images_per_rank_s.unwrap() - 5000.0 / 300.0).abs() < 1e-9);
        // 300 images computed in 30 s (the run's and the cache job's).
        assert_eq!(t.feature_images_per_s, Some(10.0));
        assert_eq!(t.feature_load_s_per_image, Some(3.0 / 150.0));
        assert_eq!(t.eval_s_per_image, Some(0.1));
        assert_eq!((t.other_s, t.cache_job_s, t.gflop_per_image), (3.0, Some(0.5), Some(1.0)));
        assert_eq!(Throughput::of(&[&bad, &cache_job]), None, "no successful training: nothing measured");
    }

    #[test]
    fn the_nearest_measured_shape_of_the_family_is_scaled_by_flops() {
        let c = "Ras C32 F64 H4 Te0 Td1 nmtrue img224 efficientnet-b0 cpu";
        let gpu = "Ras C32 F64 H4 Te1 Td3 nmtrue img224 efficientnet-b0 cuda";
        let m = Measurements::of(&[
            record(A, Job::Run, p(1.0, 10.0, 10.0, 1.0), 100, 0, Some(2.0)),
            record(c, Job::Run, p(1.0, 10.0, 2.0, 1.0), 100, 0, Some(0.5)),
            record(gpu, Job::Run, p(1.0, 1.0, 2.0, 1.0), 100, 0, Some(2.9)),
        ]);
        assert!(m.cached.contains("data:b0"), "a complete job read the cache: it is filled");
        // Its own shape first, unscaled.
        let (t, r) = m.nearest(&shape(A, 2.0)).unwrap();
        assert_eq!((t.gflop_per_image, r), (Some(2.0), None));
        // B (3 GFLOP): A (2) is nearer than C (0.5) on a log scale; the cuda shape is of
        // another family, however near.
        let (t, r) = m.nearest(&shape(B, 3.0)).unwrap();
        assert_eq!((t.gflop_per_image, r), (Some(2.0), Some(1.5)));
        assert_eq!(m.nearest(&shape(B, 0.8)).unwrap().1, Some(1.6), "0.8 is nearer 0.5 than 2.0");
        assert!(Measurements::default().nearest(&shape(B, 3.0)).is_none());

        // Scaled: the rates are the measured shape's GFLOP/s, so time grows with FLOPs.
        let prof = profile("");
        let (t, r) = m.nearest(&shape(B, 3.0)).unwrap();
        let rates = from_measured(&shape(B, 3.0), t, r, &prof);
        // 100 images x 2 GFLOP in 10 s: 20 GFLOP/s; B's 3 GFLOP an image take 1.5x as long.
        assert!((rates.train_gflops - 20.0).abs() < 1e-9, "{rates:?}");
        assert_eq!(rates.source, Source::Measured { attempts: 1, flop_ratio: Some(1.5) });
        assert_eq!(rates.source.to_string(), "measured x1.50 FLOPs (1 attempts)");
        assert_eq!((rates.compute_range, rates.run_fixed_s), (SCALED_RANGE, 1.0));
        // Evaluation: 100 ms an image measured; the default fixed part (maps, metrics)
        // stays, the forward pass scales.
        let fixed = CPU_MAPS_S + METRICS_S;
        assert!((rates.eval_fixed_s - fixed).abs() < 1e-12);
        let fwd_b = (3.0 / 3.0) / rates.eval_gflops;
        assert!((fwd_b - 1.5 * (0.1 - fixed)).abs() < 1e-12, "{fwd_b}");
        // Unscaled, the same shape's evaluation is exactly what was measured.
        let own = from_measured(&shape(A, 2.0), t, None, &prof);
        assert!((own.eval_fixed_s + (2.0 / 3.0) / own.eval_gflops - 0.1).abs() < 1e-12);
        // A measured evaluation faster than the default fixed part: 90% of it is fixed.
        let quick = Measurements::of(&[record(A, Job::Run, p(1.0, 10.0, 1.0, 1.0), 100, 0, Some(2.0))]);
        let q = from_measured(&shape(A, 2.0), &quick.by_shape[A], None, &prof);
        assert!(
            (q.eval_fixed_s - 0.009).abs() < 1e-12
                && (q.eval_fixed_s + (2.0 / 3.0) / q.eval_gflops - 0.01).abs() < 1e-12
        );
        assert!(
            own.basis.contains("this shape") && rates.basis.contains("nearest measured shape, scaled by FLOPs"),
            "{}",
            rates.basis
        );
    }

    #[test]
    fn bench_lines_are_scaled_from_their_shape_by_flops() {
        let prof = profile("train_images_per_s_per_rank = 50.0\nbench_gflop_per_image = 2.0\nfeature_images_per_s = 4.0\neval_images_per_s = 10.0");
        let r = from_bench(&shape(B, 4.0), &prof).unwrap();
        // 50 images/s at 2 GFLOP: 100 GFLOP/s, so a 4-GFLOP image trains at 25 a second.
        assert_eq!((r.train_gflops, r.fill_s_per_image), (100.0, 0.25));
        assert_eq!(r.source, Source::Bench { flop_ratio: Some(2.0) });
        assert_eq!((r.source.to_string(), r.compute_range), ("bench (profile) x2.00 FLOPs".to_string(), SCALED_RANGE));
        // 100 ms an eval image at the bench's shape, 37 of them maps; the metrics added.
        assert!((r.eval_fixed_s - (CPU_MAPS_S + METRICS_S)).abs() < 1e-12);
        assert!(((2.0 / 3.0) / r.eval_gflops - (0.1 - CPU_MAPS_S)).abs() < 1e-12);
        // At the bench's own shape: not scaled, the narrower range.
        let same = from_bench(&shape(B, 2.0), &prof).unwrap();
        assert_eq!((same.source, same.compute_range), (Source::Bench { flop_ratio: None }, SAME_SHAPE_RANGE));
        // Without bench_gflop_per_image the lines are taken at the paper's shapes.
        let paper = from_bench(&shape(B, 7.4), &profile("train_images_per_s_per_rank = 18.4")).unwrap();
        assert!((paper.train_gflops - 18.4 * paper_gflop_per_image()).abs() < 1e-9);
        assert!(from_bench(&shape(B, 7.4), &profile("")).is_none());
        // Measurements in the store win over the bench lines.
        let m = Measurements::of(&[record(B, Job::Run, p(1.0, 10.0, 2.0, 1.0), 100, 0, Some(4.0))]);
        assert!(matches!(rates_for(&shape(B, 4.0), &m, &prof).source, Source::Measured { .. }));
        assert!(matches!(rates_for(&shape(B, 4.0), &Measurements::default(), &prof).source, Source::Bench { .. }));
    }

    #[test]
    fn device_defaults_say_where_they_come_from() {
        assert!((paper_gflop_per_image() - 7.40).abs() < 0.005);
        // The CPU curve: its two measured points, log-log between, flat outside.
        assert!((cpu_gflops_per_core(474.0) - 68.1).abs() < 1e-9 && (cpu_gflops_per_core(0.42) - 12.4).abs() < 1e-9);
        assert_eq!(cpu_gflops_per_core(10_000.0), cpu_gflops_per_core(474.0));
        assert_eq!(cpu_gflops_per_core(0.01), cpu_gflops_per_core(0.42));
        let mid = cpu_gflops_per_core((0.42f64 * 474.0).sqrt());
        assert!((mid - (12.4f64 * 68.1).sqrt()).abs() < 1e-9, "{mid}");

        // CPU: per core, times the profile's cores per rank; measured here, and says so.
        let cpu = defaults(&shape(B, 7.4), &profile("cpus_per_gpu = 2"));
        let step = 7.4 * 16.0;
        assert!((cpu.train_gflops - 2.0 * cpu_gflops_per_core(step)).abs() < 1e-9);
        assert_eq!((cpu.source.to_string(), cpu.compute_range), ("cpu default (measured)".to_string(), CPU_RANGE));
        assert!(
            cpu.basis.contains("cpu training measured here") && cpu.basis.contains("start-up 0.9 s"),
            "{}",
            cpu.basis
        );
        assert!(cpu.run_fixed_s > 0.0 && cpu.eval_fixed_s > 0.0 && cpu.load_s_per_image > 0.0);

        // GPU: a cited fraction of the profile's peak, flagged as not measured.
        let gpu_shape = RunShape { device: "cuda", ..shape(B, 7.4) };
        let gpu = defaults(&gpu_shape, &profile("gpu_peak_tflops = 400.0"));
        assert!((gpu.train_gflops - 0.15 * 400.0 * 1e3).abs() < 1e-6);
        assert_eq!(gpu.source, Source::Default { device: "cuda".into(), cited: true });
        assert!(
            gpu.basis.contains("cited, not measured") && gpu.basis.contains("gpu_peak_tflops 400"),
            "{}",
            gpu.basis
        );
        // Its range is the cited fractions': 41% at best, 5% at worst.
        assert!((gpu.compute_range.0 - 0.15 / 0.41).abs() < 1e-12 && (gpu.compute_range.1 - 3.0).abs() < 1e-12);
        let unnamed = defaults(&gpu_shape, &profile(""));
        assert!(
            (unnamed.train_gflops - 0.15 * 156.0 * 1e3).abs() < 1e-6 && unnamed.basis.contains("no gpu_peak_tflops")
        );

        // tflops_per_rank: the profile's assertion replaces the training rate only.
        let asserted = defaults(&gpu_shape, &profile("tflops_per_rank = 100.0"));
        assert_eq!((asserted.train_gflops, asserted.source.to_string()), (1e5, "assumed 100 TFLOP/s".to_string()));
        assert!(asserted.basis.contains("asserted, not measured") && asserted.run_fixed_s == gpu.run_fixed_s);
    }
}
