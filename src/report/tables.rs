//! The result tables of a sweep: per dataset, per variant and class, the final metrics
//! of its complete runs (mean ± std over seeds) beside the paper's numbers
//! (configs/paper-tables.csv, a copy kept in the repo and compiled in, so a report never
//! depends on files outside the project), as Markdown, CSV and LaTeX: the long form, one
//! row per variant and class (`<dataset>.{md,csv,tex}`); `layout` puts the same rows in
//! the paper's own layout.

use super::paper::{paper_row, PaperTables};
use super::row::{tex_escape, Row};
use super::verdict::{image_cell, pixel_cell, verdict_of, PixelRun};
use super::{complete_runs, variant_without, ReportError};
use crate::config::RunConfig;
use crate::eval::pixel_hist::PixelHistograms;
use crate::eval::ClassMetrics;
use crate::run::records::ImageScores;
use crate::run::{FinalMetrics, RunPaths};
use crate::store::Store;
use crate::sweep::Manifest;
use std::collections::{BTreeMap, BTreeSet};

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (m, var.sqrt())
}

/// The seven metrics of a class in percent: I-AUROC, P-AUROC, then `EXTRA_METRICS`.
fn percent(m: &ClassMetrics) -> [f64; 7] {
    [m.image_auroc, m.pixel_auroc, m.aupro, m.image_ap, m.pixel_ap, m.image_f1_max, m.pixel_f1_max].map(|x| 100.0 * x)
}

/// Per dataset (base config stem), the rows of every variant: one per class and a mean,
/// each compared with the paper row the sweep's `[paper]` names for it (none without).
/// Runs cancelled before they completed (`ras cancel --run`) are counted in their
/// variant's rows; where they were all a variant (or a class of it) had, a row of no
/// numbers says so ([`Row::is_cancelled`]).
pub fn collect(store: &Store, manifest: &Manifest) -> Result<BTreeMap<String, Vec<Row>>, ReportError> {
    let paper = PaperTables::load();
    // (dataset, variant without class) -> class -> per run [7 metrics], plus a config and recipes
    type Group = (RunConfig, BTreeSet<String>, BTreeMap<String, Vec<[f64; 7]>>);
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    // (dataset, variant) -> class -> per run, its image scores (a verdict's bootstrap).
    let mut scores: BTreeMap<(String, String), ScoresByClass> = BTreeMap::new();
    let complete = complete_runs(store, manifest)?;
    // (dataset, variant) -> class -> per run, its pixel histograms and pixel AUROC (a P
    // verdict's bootstrap): read only where a cell has a paper number and several runs.
    let mut pixels = pixel_histograms(store, manifest, &complete)?;
    // (dataset, variant) -> cancelled runs, the classes they were to give, a config.
    let mut cancelled: BTreeMap<(String, String), (usize, BTreeSet<String>, RunConfig)> = BTreeMap::new();
    let marked = crate::sweep::cancel::cancelled_runs(store, &manifest.name)?;
    for run in manifest.runs.iter().filter(|r| marked.contains(&r.id)) {
        if complete.iter().any(|(c, _)| c.id == run.id) {
            continue;
        }
        let cfg = run.config()?;
        let classes = cfg.dataset.classes.clone();
        let e = cancelled.entry((run.dataset.clone(), variant_without(&run.variant, &[]))).or_insert((
            0,
            BTreeSet::new(),
            cfg,
        ));
        e.0 += 1;
        e.1.extend(classes);
    }
    for (run, fm) in complete {
        let cfg = run.config()?;
        let variant = variant_without(&run.variant, &[]);
        let recipe = cfg.recipe();
        let by_class = scores.entry((run.dataset.clone(), variant.clone())).or_default();
        for class in fm.metrics.classes.keys() {
            by_class.entry(class.clone()).or_default().push(fm.image_scores.get(class).cloned());
        }
        let entry =
            groups.entry((run.dataset.clone(), variant)).or_insert_with(|| (cfg, BTreeSet::new(), BTreeMap::new()));
        entry.1.insert(recipe);
        for (class, m) in &fm.metrics.classes {
            entry.2.entry(class.clone()).or_default().push(percent(m));
        }
        if fm.metrics.classes.len() > 1 {
            entry.2.entry("mean".into()).or_default().push(percent(&fm.metrics.mean));
        }
    }
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for ((dataset, variant), (cfg, recipes, mut classes)) in groups {
        // Separate runs: one class each; their mean is the mean over classes, per seed.
        if !classes.contains_key("mean") && classes.len() > 1 {
            let n = classes.values().map(|v| v.len()).min().unwrap_or(0);
            let c = classes.len() as f64;
            let per_seed: Vec<[f64; 7]> =
                (0..n).map(|k| std::array::from_fn(|j| classes.values().map(|v| v[k][j]).sum::<f64>() / c)).collect();
            classes.insert("mean".into(), per_seed);
        }
        // A single-class variant: its class is also its mean (what Tables 3-6 compare).
        if classes.len() == 1 {
            let only = classes.values().next().cloned().unwrap_or_default();
            classes.insert("mean".into(), only);
        }
        let recipe = recipes.into_iter().collect::<Vec<_>>().join("; ");
        let mut rows = vec![];
        let gone = cancelled.remove(&(dataset.clone(), variant.clone()));
        let variant_scores = scores.remove(&(dataset.clone(), variant.clone())).unwrap_or_default();
        let variant_pixels = pixels.remove(&(dataset.clone(), variant.clone())).unwrap_or_default();
        for (class, vals) in &classes {
            let (class, vals) = (class.clone(), vals.clone());
            let stat = |j: usize| mean_std(&vals.iter().map(|v| v[j]).collect::<Vec<_>>());
            // The final metrics are at the run's own test-time noise (alpha for Table 6).
            let paper_row = match &manifest.paper {
                Some(m) => paper_row(m, &cfg, &class, Some(cfg.eval.test_jitter_scale)).map_err(ReportError::Paper)?,
                None => None,
            };
            let ((i, is), (p, ps)) = (stat(0), stat(1));
            let paper_i = paper_row.as_ref().and_then(|r| r.value(&paper, "I"));
            let paper_p = paper_row.as_ref().and_then(|r| r.value(&paper, "P"));
            // The mean cell's classes: every class of the variant (the class itself for a
            // single-class variant).
            let behind: Vec<&[Option<ImageScores>]> = if class == "mean" {
                variant_scores.values().map(Vec::as_slice).collect()
            } else {
                variant_scores.get(&class).map(Vec::as_slice).into_iter().collect()
            };
            let pixels_behind: Vec<&[Option<PixelRun>]> = if class == "mean" {
                variant_pixels.values().map(Vec::as_slice).collect()
            } else {
                variant_pixels.get(&class).map(Vec::as_slice).into_iter().collect()
            };
            let runs = vals.len();
            rows.push(Row {
                verdict_i: paper_i.map(|p| verdict_of(&image_cell(&behind, runs), runs, p)),
                verdict_p: paper_p.map(|p| verdict_of(&pixel_cell(&pixels_behind, runs), runs, p)),
                variant: variant.clone(),
                class: class.clone(),
                runs: vals.len(),
                i_auroc: i,
                i_std: is,
                p_auroc: p,
                p_std: ps,
                paper_i,
                paper_p,
                recipe: recipe.clone(),
                paper_row,
                extra: std::array::from_fn(|k| stat(k + 2)),
                config: Some(cfg.clone()),
                cancelled: gone.as_ref().map_or(0, |g| g.0),
            });
        }
        // Classes that only cancelled runs were to give.
        if let Some((n, gone_classes, _)) = &gone {
            for class in gone_classes.iter().filter(|c| !classes.contains_key(*c)) {
                rows.push(cancelled_row(manifest, &variant, class, *n, &cfg, &recipe)?);
            }
        }
        // "mean" last.
        rows.sort_by_key(|r| (r.class == "mean", r.class.clone()));
        out.entry(dataset).or_default().extend(rows);
    }
    // Variants of cancelled runs only: a row per class they were to give, and a mean.
    for ((dataset, variant), (n, classes, cfg)) in cancelled {
        let recipe = cfg.recipe();
        let mut rows = vec![];
        for class in classes.iter().map(String::as_str).chain(["mean"]) {
            rows.push(cancelled_row(manifest, &variant, class, n, &cfg, &recipe)?);
        }
        out.entry(dataset).or_default().extend(rows);
    }
    Ok(out)
}

/// Per class, each run's image scores (None: a run written before they were kept).
type ScoresByClass = BTreeMap<String, Vec<Option<ImageScores>>>;

/// (dataset, variant) -> class -> per run (None: no histograms kept).
type PixelsByVariant = BTreeMap<(String, String), BTreeMap<String, Vec<Option<PixelRun>>>>;

/// The pixel histograms of the complete runs of variants with a paper to compare with
/// and more than one run (one GET each, in one batch); none without `[paper]`.
fn pixel_histograms(
    store: &Store,
    manifest: &Manifest,
    complete: &[(&crate::sweep::PlannedRun, FinalMetrics)],
) -> Result<PixelsByVariant, ReportError> {
    let mut out = PixelsByVariant::new();
    if manifest.paper.is_none() {
        return Ok(out);
    }
    let variant = |run: &crate::sweep::PlannedRun| (run.dataset.clone(), variant_without(&run.variant, &[]));
    let mut runs_of: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (run, _) in complete {
        *runs_of.entry(variant(run)).or_default() += 1;
    }
    let wanted: Vec<&(&crate::sweep::PlannedRun, FinalMetrics)> =
        complete.iter().filter(|(run, _)| runs_of[&variant(run)] > 1).collect();
    let keys: Vec<String> = wanted.iter().map(|(r, _)| RunPaths::new(r.id.as_str()).pixel_histograms()).collect();
    for ((run, fm), mut decoded) in wanted.into_iter().zip(read_pixels(store, &keys)?) {
        let by_class = out.entry(variant(run)).or_default();
        for (class, m) in &fm.metrics.classes {
            by_class.entry(class.clone()).or_default().push(decoded.remove(class).map(|h| (h, m.pixel_auroc)));
        }
    }
    Ok(out)
}

/// Pixel histogram objects per class (one GET each, in one batch); an absent or
/// unreadable one (a run written before they were kept) reads as none: its cells say so.
pub(super) fn read_pixels(
    store: &Store,
    keys: &[String],
) -> Result<Vec<BTreeMap<String, PixelHistograms>>, ReportError> {
    Ok(store
        .get_many(keys)?
        .into_iter()
        .map(|b| b.and_then(|b| crate::eval::pixel_hist::decode(&b).ok()).unwrap_or_default())
        .collect())
}

/// The row of a class that only cancelled runs were to give: no numbers, the paper's.
fn cancelled_row(
    manifest: &Manifest,
    variant: &str,
    class: &str,
    cancelled: usize,
    cfg: &RunConfig,
    recipe: &str,
) -> Result<Row, ReportError> {
    let paper = PaperTables::load();
    let paper_row = match &manifest.paper {
        Some(m) => paper_row(m, cfg, class, Some(cfg.eval.test_jitter_scale)).map_err(ReportError::Paper)?,
        None => None,
    };
    Ok(Row {
        variant: variant.to_string(),
        class: class.to_string(),
        runs: 0,
        cancelled,
        i_auroc: f64::NAN,
        i_std: f64::NAN,
        p_auroc: f64::NAN,
        p_std: f64::NAN,
        paper_i: paper_row.as_ref().and_then(|r| r.value(&paper, "I")),
        paper_p: paper_row.as_ref().and_then(|r| r.value(&paper, "P")),
        recipe: recipe.to_string(),
        paper_row,
        extra: [(f64::NAN, f64::NAN); 5],
        verdict_i: None,
        verdict_p: None,
        config: Some(cfg.clone()),
    })
}

/// One table row's cells: variant, class, runs, then ours, paper, delta for I and P.
/// `tex`: LaTeX-escaped labels, `$\pm$`, and a negative delta in math mode (a text
/// hyphen is too short for a minus sign).
fn row_cells(r: &Row, tex: bool) -> [String; 9] {
    let text = |s: &str| if tex { tex_escape(s) } else { s.to_string() };
    if r.is_cancelled() {
        let runs = format!("0 ({} cancelled)", r.cancelled);
        let c = || "cancelled".to_string();
        return [
            text(&r.variant),
            text(&r.class),
            runs,
            c(),
            opt(r.paper_i),
            "-".into(),
            c(),
            opt(r.paper_p),
            "-".into(),
        ];
    }
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
        if r.cancelled > 0 { format!("{} (+{} cancelled)", r.runs, r.cancelled) } else { r.runs.to_string() },
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
        "# {sweep}: {dataset}\n\nI-AUROC / P-AUROC in percent (last epoch); mean ± std over seeds when several; paper = the paper row the sweep's [paper] names for the variant (`-`: none); `cancelled`: the variant's runs were cancelled (`ras cancel --run`) before they completed.\n\n| variant | class | runs | I-AUROC | paper I | Δ I | P-AUROC | paper P | Δ P |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        md += &format!("| {} |\n", row_cells(r, false).join(" | "));
    }
    // Which recipe each variant trained with (paper's text or the public code's config).
    let mut seen = std::collections::BTreeSet::new();
    let lines: Vec<String> = rows
        .iter()
        .filter(|r| seen.insert(r.variant.clone()))
        .map(|r| format!("- {}: {}", if r.variant.is_empty() { "(all runs)" } else { &r.variant }, r.recipe))
        .collect();
    md += &format!("\nTraining recipe:\n{}\n", lines.join("\n"));
    md
}

/// A booktabs table of one dataset, ready for `\input` in a paper.
pub fn latex(sweep: &str, dataset: &str, rows: &[Row]) -> String {
    let mut t = format!(
        "% {sweep}: {dataset} (written by `ras report`; needs \\usepackage{{booktabs}})\n\\begin{{table}}[t]\n\\centering\n\\caption{{{}: {}. I-AUROC / P-AUROC in percent; paper = the row the sweep's [paper] names; $\\Delta$ = ours $-$ paper.}}\n\\begin{{tabular}}{{llrrrrrrr}}\n\\toprule\nVariant & Class & Runs & I-AUROC & Paper & $\\Delta$ & P-AUROC & Paper & $\\Delta$ \\\\\n\\midrule\n",
        tex_escape(sweep),
        tex_escape(dataset)
    );
    for r in rows {
        t += &format!("{} \\\\\n", row_cells(r, true).join(" & "));
    }
    t += "\\bottomrule\n\\end{tabular}\n\\end{table}\n";
    t
}

#[cfg(test)]
mod tests {
    #[test]
    fn latex_table_escapes_labels_and_has_one_row_per_result() {
        let row = |variant: &str, runs: usize, paper: Option<f64>| super::Row {
            variant: variant.into(),
            class: "metal_nut".into(),
            runs,
            cancelled: 0,
            i_auroc: 97.25,
            i_std: 0.5,
            p_auroc: 95.0,
            p_std: 0.25,
            paper_i: paper,
            paper_p: None,
            recipe: "paper (lr 7e-4, batch 64)".into(),
            paper_row: None,
            extra: [(0.0, 0.0); 5],
            verdict_i: None,
            verdict_p: None,
            config: None,
        };
        let rows =
            vec![row("mvtec model.decoder=\"ras\" eval.test_jitter_scale=10", 2, Some(98.0)), row("mvtec", 1, None)];
        let t = super::latex("table_5", "mvtec", &rows);
        assert!(t.contains("\\caption{table\\_5: mvtec."), "{t}");
        assert!(t.contains("model.decoder=\\texttt{\"}ras\\texttt{\"} eval.test\\_jitter\\_scale=10 & metal\\_nut & 2 & 97.2 $\\pm$ 0.5 & 98.0 & $-$0.8 & 95.0 $\\pm$ 0.2 & - & - \\\\"), "{t}");
        assert!(t.contains("mvtec & metal\\_nut & 1 & 97.2 & - & - & 95.0 & - & - \\\\"), "{t}");
        assert_eq!(t.matches(" \\\\\n").count(), 3, "header + 2 rows: {t}");
        assert_eq!(t.matches("\\begin{").count(), t.matches("\\end{").count());
        assert!(
            !t.lines().filter(|l| !l.starts_with('%')).any(|l| l.contains('_') && !l.contains("\\_")),
            "unescaped _: {t}"
        );
    }
}
