//! `ras report`: the final metrics of every complete run of a sweep, per dataset, per
//! class, beside the paper's numbers (configs/paper-tables.csv, a copy kept in the repo
//! and compiled in, so a report never depends on files outside the project).
//!
//! Plots (PNG, see `plot`) where the sweep has the data for them: a T_e x T_d heat map of
//! mean I-AUROC and P-AUROC (Table 5's sweep) and AUROC against test-time noise, with
//! its table (Table 6: `eval.noise_scales`, `ras eval --test-jitter`, or runs that differ
//! in `eval.test_jitter_scale`).

pub mod plot;

use super::{Manifest, PlannedRun, SweepError};
use crate::eval::MetricsTable;
use crate::run::FinalMetrics;
use crate::store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The paper's numbers: table,dataset,class,method,setting,metric,value.
pub const PAPER_TABLES: &str = include_str!("../../configs/paper-tables.csv");

/// (dataset, class, setting, metric "I"|"P") -> value in percent, RAS rows only.
pub fn paper_numbers() -> BTreeMap<(String, String, String, String), f64> {
    let mut out = BTreeMap::new();
    for line in PAPER_TABLES.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 7 || f[3] != "RAS" || !matches!(f[0], "table1" | "table2" | "table3") {
            continue;
        }
        if let Ok(v) = f[6].parse::<f64>() {
            out.entry((f[1].to_string(), f[2].to_string(), f[4].to_string(), f[5].to_string())).or_insert(v);
        }
    }
    out
}

/// One row of a report table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub variant: String,
    pub class: String,
    pub runs: usize,
    pub i_auroc: f64,
    pub i_std: f64,
    pub p_auroc: f64,
    pub p_std: f64,
    pub paper_i: Option<f64>,
    pub paper_p: Option<f64>,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (m, var.sqrt())
}

/// Rows per dataset (base config stem), in percent. Runs that differ only by seed are
/// one variant: mean ± sample std over them.
pub fn collect(store: &Store, manifest: &Manifest) -> Result<BTreeMap<String, Vec<Row>>, SweepError> {
    let paper = paper_numbers();
    // (dataset, variant without class) -> class -> [(I, P)], plus (kind, setting)
    let mut groups: BTreeMap<(String, String), (String, String, BTreeMap<String, Vec<(f64, f64)>>)> = BTreeMap::new();
    for run in &manifest.runs {
        let Some(fm) = store.get_json::<FinalMetrics>(&format!("runs/{}/final_metrics.json", run.id))? else { continue };
        let cfg = run.config();
        let variant = run.variant.split(' ').filter(|p| !p.starts_with("class=")).collect::<Vec<_>>().join(" ");
        let setting = if cfg.train.setting == crate::config::Setting::Unified { "unified" } else { "separate" };
        let entry = groups
            .entry((run.dataset.clone(), variant))
            .or_insert_with(|| (cfg.dataset.kind.to_string(), setting.to_string(), BTreeMap::new()));
        for (class, m) in &fm.metrics.classes {
            entry.2.entry(class.clone()).or_default().push((100.0 * m.image_auroc, 100.0 * m.pixel_auroc));
        }
        if fm.metrics.classes.len() > 1 {
            entry.2.entry("mean".into()).or_default().push((100.0 * fm.metrics.mean.image_auroc, 100.0 * fm.metrics.mean.pixel_auroc));
        }
    }
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for ((dataset, variant), (kind, setting, classes)) in groups {
        let mut classes = classes;
        // Separate runs: one class each; their mean is the mean over classes.
        if !classes.contains_key("mean") && classes.len() > 1 {
            let n = classes.values().map(|v| v.len()).min().unwrap_or(0);
            let per_seed: Vec<(f64, f64)> = (0..n)
                .map(|k| {
                    let c = classes.len() as f64;
                    (classes.values().map(|v| v[k].0).sum::<f64>() / c, classes.values().map(|v| v[k].1).sum::<f64>() / c)
                })
                .collect();
            classes.insert("mean".into(), per_seed);
        }
        // The paper's mean is over its full class list: beside a mean over other classes
        // (a subset, or a synthetic dataset in the same layout) it would be a false match.
        let same_classes = kind.parse::<crate::config::DatasetKind>().ok().and_then(|k| k.published_classes()).map(|list| {
            let mut ours: Vec<&str> = classes.keys().map(String::as_str).filter(|c| *c != "mean").collect();
            let mut theirs = list.to_vec();
            ours.sort_unstable();
            theirs.sort_unstable();
            ours == theirs
        });
        let mut rows: Vec<Row> = classes
            .into_iter()
            .map(|(class, vals)| {
                let (i, is) = mean_std(&vals.iter().map(|v| v.0).collect::<Vec<_>>());
                let (p, ps) = mean_std(&vals.iter().map(|v| v.1).collect::<Vec<_>>());
                let comparable = class != "mean" || same_classes == Some(true);
                let look = |metric: &str| {
                    paper.get(&(kind.clone(), class.clone(), setting.clone(), metric.to_string())).copied().filter(|_| comparable)
                };
                Row { variant: variant.clone(), class: class.clone(), runs: vals.len(), i_auroc: i, i_std: is, p_auroc: p, p_std: ps, paper_i: look("I"), paper_p: look("P") }
            })
            .collect();
        // "mean" last.
        rows.sort_by_key(|r| (r.class == "mean", r.class.clone()));
        out.entry(dataset).or_default().extend(rows);
    }
    Ok(out)
}

/// One table row's cells: variant, class, runs, then ours, paper, delta for I and P.
/// `tex`: LaTeX-escaped labels, `$\pm$`, and a negative delta in math mode (a text
/// hyphen is too short for a minus sign).
fn row_cells(r: &Row, tex: bool) -> [String; 9] {
    let text = |s: &str| if tex { tex_escape(s) } else { s.to_string() };
    let pm_cell = |m: f64, s: f64| match (r.runs > 1, tex) {
        (false, _) => format!("{m:.1}"),
        (true, false) => format!("{m:.1} ± {s:.1}"),
        (true, true) => format!("{m:.1} $\\pm$ {s:.1}"),
    };
    let delta_cell = |ours: f64, paper: Option<f64>| {
        let d = delta(ours, paper);
        match d.strip_prefix('-') {
            Some(rest) if tex && !rest.is_empty() => format!("$-${rest}"),
            _ => d,
        }
    };
    [
        text(&r.variant),
        text(&r.class),
        r.runs.to_string(),
        pm_cell(r.i_auroc, r.i_std),
        opt(r.paper_i),
        delta_cell(r.i_auroc, r.paper_i),
        pm_cell(r.p_auroc, r.p_std),
        opt(r.paper_p),
        delta_cell(r.p_auroc, r.paper_p),
    ]
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

fn delta(ours: f64, paper: Option<f64>) -> String {
    paper.map(|p| format!("{:+.1}", ours - p)).unwrap_or_else(|| "-".into())
}

/// The Markdown table of one dataset (also what `ras report` prints).
pub fn markdown(sweep: &str, dataset: &str, rows: &[Row]) -> String {
    let mut md = format!(
        "# {sweep}: {dataset}\n\nI-AUROC / P-AUROC in percent (last epoch); mean ± std over seeds when several; paper = RAS in the paper's Tables 1-3.\n\n| variant | class | runs | I-AUROC | paper I | Δ I | P-AUROC | paper P | Δ P |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        md += &format!("| {} |\n", row_cells(r, false).join(" | "));
    }
    md
}

fn csv(rows: &[Row]) -> String {
    let mut csv = String::from("variant,class,runs,i_auroc,i_std,paper_i,delta_i,p_auroc,p_std,paper_p,delta_p\n");
    for r in rows {
        let num = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
        csv += &format!(
            "\"{}\",{},{},{:.4},{:.4},{},{},{:.4},{:.4},{},{}\n",
            r.variant.replace('"', "\"\""),
            r.class,
            r.runs,
            r.i_auroc,
            r.i_std,
            num(r.paper_i),
            num(r.paper_i.map(|p| r.i_auroc - p)),
            r.p_auroc,
            r.p_std,
            num(r.paper_p),
            num(r.paper_p.map(|p| r.p_auroc - p))
        );
    }
    csv
}

/// Text made safe for LaTeX (variant labels hold `_`, `"`, `=`).
fn tex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '_' | '%' | '&' | '#' | '$' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '"' => out += "\\texttt{\"}",
            '\\' => out += "\\textbackslash{}",
            '~' => out += "\\textasciitilde{}",
            '^' => out += "\\textasciicircum{}",
            _ => out.push(c),
        }
    }
    out
}

/// A booktabs table of one dataset, ready for `\input` in a paper.
pub fn latex(sweep: &str, dataset: &str, rows: &[Row]) -> String {
    let mut t = format!(
        "% {sweep}: {dataset} (written by `ras report`; needs \\usepackage{{booktabs}})\n\\begin{{table}}[t]\n\\centering\n\\caption{{{}: {}. I-AUROC / P-AUROC in percent; paper = RAS in the paper; $\\Delta$ = ours $-$ paper.}}\n\\begin{{tabular}}{{llrrrrrrr}}\n\\toprule\nVariant & Class & Runs & I-AUROC & Paper & $\\Delta$ & P-AUROC & Paper & $\\Delta$ \\\\\n\\midrule\n",
        tex_escape(sweep),
        tex_escape(dataset)
    );
    for r in rows {
        t += &format!("{} \\\\\n", row_cells(r, true).join(" & "));
    }
    t += "\\bottomrule\n\\end{tabular}\n\\end{table}\n";
    t
}

/// Writes `<dataset>.md`, `.csv` and `.tex` per dataset into `out`; returns the files.
pub fn write(tables: &BTreeMap<String, Vec<Row>>, sweep: &str, out: &Path) -> Result<Vec<PathBuf>, SweepError> {
    std::fs::create_dir_all(out).map_err(|source| SweepError::Io { path: out.into(), source })?;
    let mut files = vec![];
    for (dataset, rows) in tables {
        for (ext, text) in [("md", markdown(sweep, dataset, rows)), ("csv", csv(rows)), ("tex", latex(sweep, dataset, rows))] {
            let p = out.join(format!("{dataset}.{ext}"));
            std::fs::write(&p, text).map_err(|source| SweepError::Io { path: p.clone(), source })?;
            files.push(p);
        }
    }
    Ok(files)
}

/// The variant label without its `key=value` parts for the given keys (and without the
/// class of separate runs): what stays the same along a plot's axis.
fn variant_without(variant: &str, keys: &[&str]) -> String {
    variant
        .split(' ')
        .filter(|p| !p.starts_with("class=") && !keys.iter().any(|k| p.strip_prefix(k).is_some_and(|r| r.starts_with('='))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Complete runs (those with final metrics), in manifest order.
fn complete_runs<'a>(store: &Store, manifest: &'a Manifest) -> Result<Vec<(&'a PlannedRun, FinalMetrics)>, SweepError> {
    let mut out = vec![];
    for run in &manifest.runs {
        if let Some(fm) = store.get_json::<FinalMetrics>(&format!("runs/{}/final_metrics.json", run.id))? {
            out.push((run, fm));
        }
    }
    Ok(out)
}

/// Mean I-AUROC and P-AUROC of a list of (I, P) pairs.
fn mean_pair(v: &[(f64, f64)]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    (v.iter().map(|x| x.0).sum::<f64>() / n, v.iter().map(|x| x.1).sum::<f64>() / n)
}

/// Mean metrics (percent) over T_e (rows) x T_d (columns) for runs that are otherwise
/// the same variant; cells without a complete run are None.
#[derive(Debug, Clone)]
pub struct LayerGrid {
    /// What the runs share (the variant without the layer counts), dataset stem first.
    pub variant: String,
    pub encoder_layers: Vec<usize>,
    pub decoder_layers: Vec<usize>,
    pub i_auroc: Vec<Vec<Option<f64>>>,
    pub p_auroc: Vec<Vec<Option<f64>>>,
}

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

/// What the plots show, per dataset (base config stem).
#[derive(Debug, Clone, Default)]
pub struct PlotData {
    /// Only groups whose runs vary both T_e and T_d (at least 2 values each).
    pub grids: BTreeMap<String, Vec<LayerGrid>>,
    /// Only datasets where some variant has metrics at 2 or more noise scales.
    pub noise: BTreeMap<String, Vec<NoiseSeries>>,
}

/// The test-jitter scale of a stored `evals/test_jitter_<scale>.json` key.
fn eval_scale(key: &str) -> Option<f64> {
    let name = key.rsplit('/').next()?;
    name.strip_prefix("test_jitter_")?.strip_suffix(".json")?.parse().ok().filter(|s: &f64| s.is_finite())
}

/// Gathers the heat-map grids and the noise curves of a sweep's complete runs.
pub fn collect_plots(store: &Store, manifest: &Manifest) -> Result<PlotData, SweepError> {
    let runs = complete_runs(store, manifest)?;
    let mut out = PlotData::default();

    // T_e x T_d: (dataset, variant without the layer counts) -> (T_e, T_d) -> [(I, P)].
    let mut cells: BTreeMap<(String, String), BTreeMap<(usize, usize), Vec<(f64, f64)>>> = BTreeMap::new();
    for (run, fm) in &runs {
        let m = run.config().model;
        let variant = variant_without(&run.variant, &["model.encoder_layers", "model.decoder_layers"]);
        let mean = &fm.metrics.mean;
        cells
            .entry((run.dataset.clone(), variant))
            .or_default()
            .entry((m.encoder_layers, m.decoder_layers))
            .or_default()
            .push((100.0 * mean.image_auroc, 100.0 * mean.pixel_auroc));
    }
    for ((dataset, variant), by_cell) in cells {
        let mut enc: Vec<usize> = by_cell.keys().map(|k| k.0).collect();
        let mut dec: Vec<usize> = by_cell.keys().map(|k| k.1).collect();
        (enc.sort(), dec.sort(), enc.dedup(), dec.dedup());
        if enc.len() < 2 || dec.len() < 2 {
            continue;
        }
        let grid = |pick: fn((f64, f64)) -> f64| -> Vec<Vec<Option<f64>>> {
            enc.iter().map(|e| dec.iter().map(|d| by_cell.get(&(*e, *d)).map(|v| pick(mean_pair(v)))).collect()).collect()
        };
        let g = LayerGrid { variant, i_auroc: grid(|p| p.0), p_auroc: grid(|p| p.1), encoder_layers: enc.clone(), decoder_layers: dec.clone() };
        out.grids.entry(dataset).or_default().push(g);
    }

    // Noise: (dataset, variant without the scale) -> scale (in 1/1000) -> [(I, P)].
    // Scale of a run's final metrics = its eval.test_jitter_scale (0 unless an old-style
    // sweep varies it); every stored re-evaluation adds a point.
    let mut curves: BTreeMap<(String, String), BTreeMap<i64, Vec<(f64, f64)>>> = BTreeMap::new();
    let milli = |s: f64| (s * 1000.0).round() as i64;
    for (run, fm) in &runs {
        let variant = variant_without(&run.variant, &["eval.test_jitter_scale"]);
        let curve = curves.entry((run.dataset.clone(), variant)).or_default();
        let own = run.config().eval.test_jitter_scale;
        let mean = &fm.metrics.mean;
        curve.entry(milli(own)).or_default().push((100.0 * mean.image_auroc, 100.0 * mean.pixel_auroc));
        for key in store.list(&format!("runs/{}/evals/", run.id))? {
            // A re-evaluation at the run's own scale repeats its final metrics: count it once.
            let Some(scale) = eval_scale(&key).filter(|s| milli(*s) != milli(own)) else { continue };
            if let Some(t) = store.get_json::<MetricsTable>(&key)? {
                curve.entry(milli(scale)).or_default().push((100.0 * t.mean.image_auroc, 100.0 * t.mean.pixel_auroc));
            }
        }
    }
    for ((dataset, variant), by_scale) in curves {
        let points: Vec<NoisePoint> = by_scale
            .into_iter()
            .map(|(s, v)| {
                let (i, p) = mean_pair(&v);
                NoisePoint { scale: s as f64 / 1000.0, runs: v.len(), i_auroc: i, p_auroc: p }
            })
            .collect();
        out.noise.entry(dataset).or_default().push(NoiseSeries { variant, points });
    }
    out.noise.retain(|_, series| series.iter().any(|s| s.points.len() >= 2));
    Ok(out)
}

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
        for (metric, pick) in [("I-AUROC", (|p: &NoisePoint| p.i_auroc) as fn(&NoisePoint) -> f64), ("P-AUROC", |p: &NoisePoint| p.p_auroc)] {
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

/// File-name part for a plot group: the variant without the dataset stem, or nothing.
fn slug(dataset: &str, variant: &str) -> String {
    let rest = variant.strip_prefix(dataset).unwrap_or(variant).trim();
    if rest.is_empty() {
        return String::new();
    }
    let s: String = rest
        .chars()
        .filter(|c| *c != '"')
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else if c == '=' { '-' } else { '_' })
        .collect();
    format!("-{s}")
}

/// Writes the plots (and the noise tables) of `data` into `out`; returns the files.
///
/// Per dataset: `<dataset>[-<variant>]-heatmap-{i,p}-auroc.png` (T_e x T_d) and
/// `<dataset>-noise.{md,csv}`, `<dataset>-noise-{i,p}-auroc.png`.
pub fn write_plots(data: &PlotData, sweep: &str, out: &Path) -> Result<Vec<PathBuf>, SweepError> {
    std::fs::create_dir_all(out).map_err(|source| SweepError::Io { path: out.into(), source })?;
    let mut files = vec![];
    let mut put = |name: String, bytes: Vec<u8>| -> Result<(), SweepError> {
        let p = out.join(name);
        std::fs::write(&p, bytes).map_err(|source| SweepError::Io { path: p.clone(), source })?;
        files.push(p);
        Ok(())
    };
    for (dataset, grids) in &data.grids {
        for g in grids {
            for (metric, values) in [("I-AUROC", &g.i_auroc), ("P-AUROC", &g.p_auroc)] {
                let h = plot::HeatMap {
                    title: format!("{sweep}: {}, mean {metric} (%)", g.variant),
                    x_label: "T_d (decoder steps)".into(),
                    y_label: "T_e".into(),
                    x_ticks: g.decoder_layers.iter().map(|d| d.to_string()).collect(),
                    y_ticks: g.encoder_layers.iter().map(|e| e.to_string()).collect(),
                    values: values.clone(),
                };
                put(format!("{dataset}{}-heatmap-{}.png", slug(dataset, &g.variant), metric.to_lowercase()), plot::heat_map_png(&h))?;
            }
        }
    }
    for (dataset, series) in &data.noise {
        put(format!("{dataset}-noise.md"), noise_markdown(sweep, dataset, series).into_bytes())?;
        let mut csv = String::from("variant,scale,runs,i_auroc,p_auroc\n");
        for s in series {
            for p in &s.points {
                csv += &format!("\"{}\",{},{},{:.4},{:.4}\n", s.variant.replace('"', "\"\""), p.scale, p.runs, p.i_auroc, p.p_auroc);
            }
        }
        put(format!("{dataset}-noise.csv"), csv.into_bytes())?;
        for (metric, pick) in [("I-AUROC", (|p: &NoisePoint| p.i_auroc) as fn(&NoisePoint) -> f64), ("P-AUROC", |p: &NoisePoint| p.p_auroc)] {
            let c = plot::Curves {
                title: format!("{sweep}: {dataset}, mean {metric} vs test noise"),
                x_label: "test-time noise scale".into(),
                y_label: format!("{metric} (%)"),
                series: series
                    .iter()
                    .map(|s| {
                        let name = s.variant.strip_prefix(dataset.as_str()).unwrap_or(&s.variant).trim();
                        (if name.is_empty() { dataset.clone() } else { name.to_string() }, s.points.iter().map(|p| (p.scale, pick(p))).collect())
                    })
                    .collect(),
            };
            put(format!("{dataset}-noise-{}.png", metric.to_lowercase()), plot::curves_png(&c))?;
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    #[test]
    fn latex_table_escapes_labels_and_has_one_row_per_result() {
        let row = |variant: &str, runs: usize, paper: Option<f64>| super::Row {
            variant: variant.into(),
            class: "metal_nut".into(),
            runs,
            i_auroc: 97.25,
            i_std: 0.5,
            p_auroc: 95.0,
            p_std: 0.25,
            paper_i: paper,
            paper_p: None,
        };
        let rows = vec![row("mvtec model.decoder=\"ras\" eval.test_jitter_scale=10", 2, Some(98.0)), row("mvtec", 1, None)];
        let t = super::latex("table_5", "mvtec", &rows);
        assert!(t.contains("\\caption{table\\_5: mvtec."), "{t}");
        assert!(t.contains("model.decoder=\\texttt{\"}ras\\texttt{\"} eval.test\\_jitter\\_scale=10 & metal\\_nut & 2 & 97.2 $\\pm$ 0.5 & 98.0 & $-$0.8 & 95.0 $\\pm$ 0.2 & - & - \\\\"), "{t}");
        assert!(t.contains("mvtec & metal\\_nut & 1 & 97.2 & - & - & 95.0 & - & - \\\\"), "{t}");
        assert_eq!(t.matches(" \\\\\n").count(), 3, "header + 2 rows: {t}");
        assert_eq!(t.matches("\\begin{").count(), t.matches("\\end{").count());
        assert!(!t.lines().filter(|l| !l.starts_with('%')).any(|l| l.contains('_') && !l.contains("\\_")), "unescaped _: {t}");
    }

    use super::*;

    #[test]
    fn variants_lose_only_the_named_keys() {
        let v = "mvtec model.decoder_layers=2 model.encoder_layers=1 separate class=bottle";
        assert_eq!(variant_without(v, &["model.encoder_layers", "model.decoder_layers"]), "mvtec separate");
        assert_eq!(variant_without("mvtec eval.test_jitter_scale=10.0 model.decoder=\"ras\"", &["eval.test_jitter_scale"]), "mvtec model.decoder=\"ras\"");
        // A key that is a prefix of another is not confused with it.
        assert_eq!(variant_without("d model.encoder_layers_x=1", &["model.encoder_layers"]), "d model.encoder_layers_x=1");
        assert_eq!(eval_scale("runs/x/evals/test_jitter_20.json"), Some(20.0));
        assert_eq!(eval_scale("runs/x/evals/test_jitter_12.5.json"), Some(12.5));
        assert_eq!(eval_scale("runs/x/evals/other.json"), None);
        assert_eq!(slug("demo", "demo model.decoder=\"ras\" x=1"), "-model.decoder-ras_x-1");
        assert_eq!(slug("demo", "demo"), "");
    }
}
