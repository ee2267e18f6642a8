//! AUROC against test-time noise (the paper's Table 6): per variant, the mean metrics of
//! its runs at each test-jitter scale, from the runs' final metrics (their own
//! `eval.test_jitter_scale`) and their stored re-evaluations
//! (`runs/<id>/evals/test_jitter_<scale>.json`: `eval.noise_scales`, `ras eval --test-jitter`).

use super::{mean_pair, plot, variant_without, ReportError};
use crate::eval::MetricsTable;
use crate::run::{FinalMetrics, RunKey, RunPaths};
use crate::store::Store;
use crate::sweep::PlannedRun;
use std::collections::BTreeMap;

/// One point of a noise curve: the mean over the variant's runs (seeds; the classes of
/// separate runs) of their mean metrics, in percent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NoisePoint {
    pub scale: f64,
    pub runs: usize,
    pub i_auroc: f64,
    pub p_auroc: f64,
}

#[derive(Debug, Clone)]
pub struct NoiseSeries {
    /// The variant without its test-jitter scale, dataset stem first.
    pub variant: String,
    /// By increasing scale.
    pub points: Vec<NoisePoint>,
}

/// The noise curves of complete runs, per dataset; only datasets where some variant has
/// metrics at 2 or more scales.
pub(super) fn curves(
    store: &Store,
    runs: &[(&PlannedRun, FinalMetrics)],
) -> Result<BTreeMap<String, Vec<NoiseSeries>>, ReportError> {
    // (dataset, variant without the scale) -> scale (in 1/1000) -> [(I, P)].
    // Scale of a run's final metrics = its eval.test_jitter_scale (0 unless an old-style
    // sweep varies it); every stored re-evaluation adds a point.
    type ByScale = BTreeMap<i64, Vec<(f64, f64)>>;
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
    let mut tables = store.get_json_many::<MetricsTable, _>(&keys)?.into_iter();
    for ((run, fm), evals) in runs.iter().zip(&evals) {
        let variant = variant_without(&run.variant, &["eval.test_jitter_scale"]);
        let curve = curves.entry((run.dataset.clone(), variant)).or_default();
        let own = run.config()?.eval.test_jitter_scale;
        let mean = &fm.metrics.mean;
        curve.entry(milli(own)).or_default().push((100.0 * mean.image_auroc, 100.0 * mean.pixel_auroc));
        for (scale, _) in evals {
            if let Some(t) = tables.next().flatten() {
                curve.entry(milli(*scale)).or_default().push((100.0 * t.mean.image_auroc, 100.0 * t.mean.pixel_auroc));
            }
        }
    }
    let mut out: BTreeMap<String, Vec<NoiseSeries>> = BTreeMap::new();
    for ((dataset, variant), by_scale) in curves {
        let points: Vec<NoisePoint> = by_scale
            .into_iter()
            .map(|(s, v)| {
                let (i, p) = mean_pair(&v);
                NoisePoint { scale: s as f64 / 1000.0, runs: v.len(), i_auroc: i, p_auroc: p }
            })
            .collect();
        out.entry(dataset).or_default().push(NoiseSeries { variant, points });
    }
    out.retain(|_, series| series.iter().any(|s| s.points.len() >= 2));
    Ok(out)
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
