//! AUROC against test-time noise (the paper's Table 6): per variant, the mean metrics of
//! its runs at each test-jitter scale, from the runs' final metrics (their own
//! `eval.test_jitter_scale`) and their stored re-evaluations
//! (`runs/<id>/evals/test_jitter_<scale>.json`: `eval.noise_scales`, `ras eval --test-jitter`).

use super::verdict::{image_cell, pixel_cell, CellInterval, PixelRun};
use super::{mean_pair, plot, variant_without, ReportError};
use crate::eval::pixel_hist::PixelHistograms;
use crate::eval::MetricsTable;
use crate::run::records::ImageScores;
use crate::run::{FinalMetrics, Reevaluation, RunKey, RunPaths};
use crate::store::Store;
use crate::sweep::PlannedRun;
use std::collections::{BTreeMap, BTreeSet};

/// One point of a noise curve: the mean over the variant's runs (seeds; the classes of
/// separate runs) of their mean metrics, in percent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NoisePoint {
    pub scale: f64,
    pub runs: usize,
    pub i_auroc: f64,
    pub p_auroc: f64,
    /// Standard deviations over the runs (0 for one).
    pub i_std: f64,
    pub p_std: f64,
    /// The intervals of `i_auroc` and `p_auroc` (a verdict's), or why there are none;
    /// None where they were not asked for (a sweep not compared with the paper).
    #[serde(skip)]
    pub intervals: Option<(CellInterval, CellInterval)>,
}

#[derive(Debug, Clone)]
pub struct NoiseSeries {
    /// The variant without its test-jitter scale, dataset stem first.
    pub variant: String,
    /// By increasing scale.
    pub points: Vec<NoisePoint>,
}

/// One run's evaluation at one scale: its mean metrics (fractions), per class its
/// pixel AUROC and image scores, and where its pixel histograms are.
struct Evaluated {
    mean: (f64, f64),
    pixel_auroc: BTreeMap<String, f64>,
    image_scores: BTreeMap<String, ImageScores>,
    pixels_key: String,
}

/// The noise curves of complete runs, per dataset; only datasets where some variant has
/// metrics at 2 or more scales. `intervals`: also each point's intervals (for verdicts
/// against the paper), from the evaluations' image scores and pixel histograms.
pub(super) fn curves(
    store: &Store,
    runs: &[(&PlannedRun, FinalMetrics)],
    intervals: bool,
) -> Result<BTreeMap<String, Vec<NoiseSeries>>, ReportError> {
    // (dataset, variant without the scale) -> scale (in 1/1000) -> one per run.
    // Scale of a run's final metrics = its eval.test_jitter_scale (0 unless an old-style
    // sweep varies it); every stored re-evaluation adds a point.
    type ByScale = BTreeMap<i64, Vec<Evaluated>>;
    let mut curves: BTreeMap<(String, String), ByScale> = BTreeMap::new();
    let milli = |s: f64| (s * 1000.0).round() as i64;
    // Every run's re-evaluations: one batch of LISTs, then one batch of GETs.
    let prefixes: Vec<String> =
        runs.iter().map(|(run, _)| format!("{}/", RunPaths::new(run.id.as_str()).evals())).collect();
    let listed = store.list_many(&prefixes)?;
    let mut evals: Vec<Vec<(f64, String)>> = vec![];
    for ((run, _), keys) in runs.iter().zip(&listed) {
        let own = run.config()?.eval.test_jitter_scale;
        // The final model's evaluations only (not those of other checkpoints), and one at
        // the run's own scale repeats its final metrics: count it once.
        let scale_of = |k: &str| match RunPaths::parse(k) {
            Some((_, RunKey::EvalNoise { scale })) if milli(scale) != milli(own) => Some(scale),
            _ => None,
        };
        evals.push(keys.iter().filter_map(|k| Some((scale_of(k)?, k.clone()))).collect());
    }
    let keys: Vec<&String> = evals.iter().flatten().map(|(_, k)| k).collect();
    let mut stored = store.get_json_many::<Reevaluation, _>(&keys)?.into_iter();
    let per_class = |t: &MetricsTable| t.classes.iter().map(|(c, m)| (c.clone(), m.pixel_auroc)).collect();
    for ((run, fm), evals) in runs.iter().zip(&evals) {
        let variant = variant_without(&run.variant, &["eval.test_jitter_scale"]);
        let curve = curves.entry((run.dataset.clone(), variant)).or_default();
        let own = run.config()?.eval.test_jitter_scale;
        let paths = RunPaths::new(run.id.as_str());
        curve.entry(milli(own)).or_default().push(Evaluated {
            mean: (fm.metrics.mean.image_auroc, fm.metrics.mean.pixel_auroc),
            pixel_auroc: per_class(&fm.metrics),
            image_scores: fm.image_scores.clone(),
            pixels_key: paths.pixel_histograms(),
        });
        for (scale, _) in evals {
            if let Some(r) = stored.next().flatten() {
                curve.entry(milli(*scale)).or_default().push(Evaluated {
                    mean: (r.table.mean.image_auroc, r.table.mean.pixel_auroc),
                    pixel_auroc: per_class(&r.table),
                    image_scores: r.image_scores,
                    pixels_key: paths.eval_noise_pixels(*scale),
                });
            }
        }
    }
    // Histograms where a table will show the point (a dataset with a curve) and the
    // point has an interval (several runs).
    let with_curve: BTreeSet<String> =
        curves.iter().filter(|(_, c)| c.len() >= 2).map(|((d, _), _)| d.clone()).collect();
    let mut pixels: BTreeMap<String, BTreeMap<String, PixelHistograms>> = BTreeMap::new();
    if intervals {
        let keys: Vec<String> = curves
            .iter()
            .filter(|((d, _), _)| with_curve.contains(d))
            .flat_map(|(_, c)| c.values())
            .filter(|v| v.len() > 1)
            .flat_map(|v| v.iter().map(|e| e.pixels_key.clone()))
            .collect();
        pixels = keys.iter().cloned().zip(super::tables::read_pixels(store, &keys)?).collect();
    }
    let mut out: BTreeMap<String, Vec<NoiseSeries>> = BTreeMap::new();
    for ((dataset, variant), by_scale) in curves {
        let points: Vec<NoisePoint> = by_scale
            .into_iter()
            .map(|(s, v)| {
                let means: Vec<(f64, f64)> = v.iter().map(|e| (100.0 * e.mean.0, 100.0 * e.mean.1)).collect();
                let (i, p) = mean_pair(&means);
                let std = |pick: fn(&(f64, f64)) -> f64, mean: f64| {
                    let n = means.len() as f64;
                    let var = means.iter().map(|m| (pick(m) - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
                    var.sqrt()
                };
                let (i_std, p_std) = (std(|m| m.0, i), std(|m| m.1, p));
                let shown = intervals && with_curve.contains(&dataset);
                let intervals = shown.then(|| point_intervals(&v, &pixels));
                NoisePoint { scale: s as f64 / 1000.0, runs: v.len(), i_auroc: i, p_auroc: p, i_std, p_std, intervals }
            })
            .collect();
        out.entry(dataset).or_default().push(NoiseSeries { variant, points });
    }
    out.retain(|_, series| series.iter().any(|s| s.points.len() >= 2));
    Ok(out)
}

/// The intervals of a point's mean cells (every class) over its runs' evaluations.
fn point_intervals(
    runs: &[Evaluated],
    pixels: &BTreeMap<String, BTreeMap<String, PixelHistograms>>,
) -> (CellInterval, CellInterval) {
    let classes: BTreeSet<&String> = runs.iter().flat_map(|e| e.pixel_auroc.keys()).collect();
    let images: Vec<Vec<Option<ImageScores>>> =
        classes.iter().map(|c| runs.iter().map(|e| e.image_scores.get(*c).cloned()).collect()).collect();
    let pixel_runs: Vec<Vec<Option<PixelRun>>> = classes
        .iter()
        .map(|c| {
            runs.iter()
                .map(|e| {
                    let h = pixels.get(&e.pixels_key)?.get(*c)?.clone();
                    Some((h, *e.pixel_auroc.get(*c)?))
                })
                .collect()
        })
        .collect();
    let images: Vec<&[Option<ImageScores>]> = images.iter().map(Vec::as_slice).collect();
    let pixel_runs: Vec<&[Option<PixelRun>]> = pixel_runs.iter().map(Vec::as_slice).collect();
    (image_cell(&images, runs.len()), pixel_cell(&pixel_runs, runs.len()))
}

type Metric = fn(&NoisePoint) -> f64;

/// The two metrics of a noise point, with their labels.
pub(super) const METRICS: [(&str, Metric); 2] = [("I-AUROC", |p| p.i_auroc), ("P-AUROC", |p| p.p_auroc)];

/// The noise table of one dataset as Markdown: a row per variant and metric, a column per scale.
pub fn noise_markdown(sweep: &str, dataset: &str, series: &[NoiseSeries]) -> String {
    let mut scales: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.scale)).collect();
    scales.sort_by(f64::total_cmp);
    scales.dedup();
    let mut md = format!(
        "# {sweep}: {dataset}, AUROC vs test-time noise\n\nMean I-AUROC / P-AUROC in percent of the final model with feature jitter of each scale at test time (scale 0 = the run's final metrics; others from evals/test_jitter_<scale>.json, no retraining).\n\n| variant | metric |"
    );
    for s in &scales {
        md += &format!(" {} |", plot::short_number(*s));
    }
    md += &format!("\n|---|---|{}\n", "---|".repeat(scales.len()));
    for s in series {
        for (metric, pick) in METRICS {
            md += &format!("| {} | {metric} |", s.variant);
            for sc in &scales {
                match s.points.iter().find(|p| p.scale == *sc) {
                    Some(p) => md += &format!(" {:.1} |", pick(p)),
                    None => md += " - |",
                }
            }
            md.push('\n');
        }
    }
    md
}
