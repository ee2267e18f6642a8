//! The report in the paper's layout (`<sweep>.md`, `<sweep>.tex`): the same numbers as the
//! long tables, arranged as the paper prints the table the sweep reproduces (`[paper]
//! layout`): a row per class with a column per variant (Tables 1-2), a row per variant
//! (Tables 3-4), a T_e x T_d grid (Table 5), a column per noise scale (Table 6). Every
//! cell is ours (mean ± std over seeds), the paper's number and the difference:
//! `97.1 ± 0.3 (98.4, -1.3)`, or `97.1 (-)` where the variant has no paper row.
//!
//! Also what makes a report not comparable with the paper (random-init backbones,
//! classes other than the published dataset's, fewer epochs than the paper's 500), which
//! every file of the report states at its top ([`caveats`]).

use super::noise::NoiseSeries;
use super::paper::{alpha, paper_row, PaperTables};
use super::row::{Row, EXTRA_METRICS};
use super::verdict::{verdict_of, Verdict};
use super::{variant_without, ReportError};
use crate::config::sweep_file::config_value;
use crate::config::{PaperLayout, PaperMatch, RunConfig};
use crate::run::FinalMetrics;
use crate::sweep::{Manifest, PlannedRun};
use std::collections::{BTreeMap, BTreeSet};

/// The paper trains every dataset for 500 epochs (spec: training).
pub const PAPER_EPOCHS: usize = 500;

/// A table: a title, a header and rows of cells (already formatted).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// `ours ± std (paper, Δ)`.
pub fn cell(ours: f64, std: f64, runs: usize, paper: Option<f64>) -> String {
    let ours = if runs > 1 { format!("{ours:.1} ± {std:.1}") } else { format!("{ours:.1}") };
    match paper {
        Some(p) => format!("{ours} ({p:.1}, {:+.1})", ours_value(&ours) - p),
        None => format!("{ours} (-)"),
    }
}

/// A row's I-AUROC (`image`) or P-AUROC cell: `cell`, or "cancelled" for a row of
/// cancelled runs only.
fn row_cell(r: &Row, image: bool) -> String {
    match (r.is_cancelled(), image) {
        (true, _) => "cancelled".into(),
        (false, true) => with_verdict(cell(r.i_auroc, r.i_std, r.runs, r.paper_i), r.verdict_i.as_ref()),
        (false, false) => with_verdict(cell(r.p_auroc, r.p_std, r.runs, r.paper_p), r.verdict_p.as_ref()),
    }
}

/// A cell with its verdict's tag (`97.1 ± 0.3 (98.4, -1.3) [reproduced]`).
fn with_verdict(cell: String, verdict: Option<&Verdict>) -> String {
    match verdict {
        Some(v) => format!("{cell} {}", v.tag()),
        None => cell,
    }
}

/// The summary line of a table's verdicts (None when no cell has one).
pub fn verdict_summary(grid: &Grid) -> Option<String> {
    let verdicts: Vec<Verdict> =
        grid.rows.iter().flat_map(|r| r.iter().skip(1)).filter_map(|c| Verdict::of_cell(c)).collect();
    if verdicts.is_empty() {
        return None;
    }
    let count = |f: &dyn Fn(&Verdict) -> bool| verdicts.iter().filter(|v| f(v)).count();
    Some(format!(
        "Verdicts: {} reproduced, {} below, {} above, {} inconclusive, of {} cells with a paper number.",
        count(&|v| *v == Verdict::Reproduced),
        count(&|v| *v == Verdict::Below),
        count(&|v| *v == Verdict::Above),
        count(&|v| matches!(v, Verdict::Inconclusive(_))),
        verdicts.len()
    ))
}

/// The rounded "ours" of a cell, so that the difference shown is that of the numbers shown.
fn ours_value(ours: &str) -> f64 {
    ours.split(' ').next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// The variant's label in a table: without the dataset stem it starts with (every
/// variant label does), or the method's name when nothing else is left.
fn short(variant: &str, dataset: &str) -> String {
    let rest = variant.strip_prefix(dataset).unwrap_or(variant).trim();
    if rest.is_empty() {
        "RAS".into()
    } else {
        rest.to_string()
    }
}

fn mean_row<'r>(rows: &'r [Row], variant: &str) -> Option<&'r Row> {
    rows.iter().find(|r| r.variant == variant && r.class == "mean")
}

/// The variants of a dataset's rows, in first-seen order.
fn variants(rows: &[Row]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    rows.iter().filter(|r| seen.insert(r.variant.clone())).map(|r| r.variant.clone()).collect()
}

/// The paper-layout tables of a report.
pub fn paper_layout(
    m: Option<&PaperMatch>,
    tables: &BTreeMap<String, Vec<Row>>,
    noise: &BTreeMap<String, Vec<(NoiseSeries, RunConfig)>>,
) -> Result<Vec<Grid>, ReportError> {
    let layout = m.map(PaperMatch::layout).unwrap_or(PaperLayout::Classes);
    let which = m.map(|m| m.tables.join(" + ")).unwrap_or_else(|| "no paper table".into());
    let mut out = vec![];
    match layout {
        PaperLayout::Classes => {
            for (dataset, rows) in tables {
                let vs = variants(rows);
                let mut header = vec!["class".to_string()];
                for v in &vs {
                    header.push(format!("{} I-AUROC", short(v, dataset)));
                    header.push(format!("{} P-AUROC", short(v, dataset)));
                }
                let classes: Vec<String> = {
                    let mut seen = BTreeSet::new();
                    let mut c: Vec<String> =
                        rows.iter().filter(|r| seen.insert(r.class.clone())).map(|r| r.class.clone()).collect();
                    c.sort_by_key(|c| (c == "mean", c.clone()));
                    c
                };
                let body = classes
                    .iter()
                    .map(|class| {
                        let mut line = vec![class.clone()];
                        for v in &vs {
                            match rows.iter().find(|r| &r.variant == v && &r.class == class) {
                                Some(r) => {
                                    line.push(row_cell(r, true));
                                    line.push(row_cell(r, false));
                                }
                                // A variant whose runs were all cancelled has its mean row only.
                                None if mean_row(rows, v).is_some_and(Row::is_cancelled) => {
                                    line.extend(["cancelled".to_string(), "cancelled".to_string()])
                                }
                                None => line.extend(["".to_string(), "".to_string()]),
                            }
                        }
                        line
                    })
                    .collect();
                out.push(Grid { title: format!("{dataset}: per class ({which})"), header, rows: body });
            }
        }
        PaperLayout::Rows => {
            let header = ["dataset", "variant", "paper row", "I-AUROC", "P-AUROC"].map(String::from).to_vec();
            let mut body = vec![];
            for (dataset, rows) in tables {
                for v in variants(rows) {
                    if let Some(r) = mean_row(rows, &v) {
                        let paper = r
                            .paper_row
                            .as_ref()
                            .map(|p| format!("{} {}", p.row, p.method))
                            .unwrap_or_else(|| "-".into());
                        body.push(vec![
                            dataset.clone(),
                            short(&v, dataset),
                            paper,
                            row_cell(r, true),
                            row_cell(r, false),
                        ]);
                    }
                }
            }
            out.push(Grid { title: format!("mean over classes ({which})"), header, rows: body });
        }
        PaperLayout::Grid => {
            let [rk, ck] = m
                .map(PaperMatch::grid_keys)
                .unwrap_or_else(|| ["model.encoder_layers".into(), "model.decoder_layers".into()]);
            for (dataset, rows) in tables {
                let means: Vec<&Row> = rows.iter().filter(|r| r.class == "mean").collect();
                let key = |r: &Row, k: &str| r.config.as_ref().and_then(|c| config_value(c, k)).unwrap_or_default();
                let sorted = |k: &str| {
                    let mut v: Vec<String> =
                        means.iter().map(|r| key(r, k)).collect::<BTreeSet<_>>().into_iter().collect();
                    v.sort_by(|a, b| a.parse::<f64>().ok().partial_cmp(&b.parse::<f64>().ok()).unwrap_or(a.cmp(b)));
                    v
                };
                let (rvals, cvals) = (sorted(&rk), sorted(&ck));
                for (metric, get) in [("I-AUROC", 0usize), ("P-AUROC", 1)] {
                    let mut header = vec![format!("{rk} \\ {ck}")];
                    header.extend(cvals.iter().cloned());
                    let body = rvals
                        .iter()
                        .map(|rv| {
                            let mut line = vec![rv.clone()];
                            for cv in &cvals {
                                line.push(match means.iter().find(|r| &key(r, &rk) == rv && &key(r, &ck) == cv) {
                                    Some(r) => row_cell(r, get == 0),
                                    None => String::new(),
                                });
                            }
                            line
                        })
                        .collect();
                    out.push(Grid { title: format!("{dataset}: {metric}, {rk} x {ck} ({which})"), header, rows: body });
                }
            }
        }
        PaperLayout::Noise => {
            let paper = PaperTables::load();
            for (dataset, series) in noise {
                let mut scales: Vec<f64> = series.iter().flat_map(|(s, _)| s.points.iter().map(|p| p.scale)).collect();
                scales.sort_by(f64::total_cmp);
                scales.dedup();
                for (metric, code) in [("I-AUROC", "I"), ("P-AUROC", "P")] {
                    let mut header = vec!["method".to_string()];
                    header.extend(scales.iter().map(|a| format!("alpha={}", alpha(*a))));
                    let mut body = vec![];
                    for (s, cfg) in series {
                        let method = match m {
                            Some(m) => m.render(&m.method, cfg, "mean", None).map_err(ReportError::Paper)?,
                            None => short(&s.variant, dataset),
                        };
                        let mut line = vec![format!("{method} ({})", short(&s.variant, dataset))];
                        for a in &scales {
                            line.push(match s.points.iter().find(|p| p.scale == *a) {
                                Some(p) => {
                                    let row = match m {
                                        Some(m) => paper_row(m, cfg, "mean", Some(*a)).map_err(ReportError::Paper)?,
                                        None => None,
                                    };
                                    let (ours, std, interval) = match code {
                                        "I" => (p.i_auroc, p.i_std, p.intervals.as_ref().map(|iv| &iv.0)),
                                        _ => (p.p_auroc, p.p_std, p.intervals.as_ref().map(|iv| &iv.1)),
                                    };
                                    let runs = p.runs;
                                    let verdict = |paper: f64| match interval {
                                        Some(iv) => verdict_of(iv, runs, paper),
                                        None => Verdict::Inconclusive("no interval computed".into()),
                                    };
                                    let paper_value = row.and_then(|r| r.value(&paper, code));
                                    with_verdict(cell(ours, std, runs, paper_value), paper_value.map(verdict).as_ref())
                                }
                                None => String::new(),
                            });
                        }
                        body.push(line);
                    }
                    out.push(Grid {
                        title: format!("{dataset}: {metric} against test-time noise ({which})"),
                        header,
                        rows: body,
                    });
                }
            }
        }
    }
    // AUPRO, AP and F1-max of every variant's mean (per class: the dataset's CSV).
    let mut header = vec!["dataset".to_string(), "variant".to_string()];
    header.extend(EXTRA_METRICS.iter().map(|s| s.to_string()));
    let mut body = vec![];
    for (dataset, rows) in tables {
        for v in variants(rows) {
            if let Some(r) = mean_row(rows, &v) {
                let mut line = vec![dataset.clone(), short(&v, dataset)];
                line.extend(r.extra.iter().map(|(m, s)| {
                    if r.is_cancelled() {
                        "cancelled".to_string()
                    } else if r.runs > 1 {
                        format!("{m:.1} ± {s:.1}")
                    } else {
                        format!("{m:.1}")
                    }
                }));
                body.push(line);
            }
        }
    }
    out.push(Grid { title: "other metrics, mean over classes (per class: <dataset>.csv)".into(), header, rows: body });
    Ok(out)
}

/// What makes this report's numbers not comparable with the paper's, one sentence each
/// (empty when nothing does).
pub fn caveats(manifest: &Manifest, runs: &[(&PlannedRun, FinalMetrics)]) -> Result<Vec<String>, ReportError> {
    let mut out = vec![];
    // First, wherever caveats are shown (every table, report and page of the sweep).
    if let Some(search) = manifest.search.as_ref().filter(|s| s.on_test_set) {
        out.push(crate::sweep::search::test_set_banner(search).trim_end().to_string());
    }
    let random = runs.iter().filter(|(_, fm)| !fm.backbone_pretrained).count();
    if random > 0 {
        out.push(format!("{random} of {} runs used a random-init backbone (no backbone.weights): their numbers are not comparable to the paper's.", runs.len()));
    }
    let mut odd_classes = BTreeSet::new();
    for (run, fm) in runs {
        let kind = run.config()?.dataset.kind;
        match kind.published_classes() {
            Some(list) => {
                if fm.metrics.classes.keys().any(|c| !list.contains(&c.as_str())) {
                    odd_classes.insert(format!("{} ({kind})", run.dataset));
                }
            }
            None => {
                odd_classes.insert(format!("{} ({kind}: not a published dataset)", run.dataset));
            }
        }
    }
    if !odd_classes.is_empty() {
        out.push(format!(
            "classes other than the published dataset's (synthetic data or another dataset in its layout) in {}: not comparable to the paper's numbers.",
            odd_classes.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut short = vec![];
    for (r, _) in runs {
        let epochs = r.config()?.train.epochs;
        if epochs < PAPER_EPOCHS {
            short.push(epochs);
        }
    }
    if let Some(max) = short.iter().max() {
        out.push(format!(
            "{} of {} runs trained at most {max} epochs (the paper: {PAPER_EPOCHS}).",
            short.len(),
            runs.len()
        ));
    }
    if manifest.paper.is_none() {
        out.push("the sweep file names no paper table ([paper]): no paper numbers are shown.".into());
    }
    Ok(out)
}

/// The noise series of a report with a config of each (for the paper-row templates).
pub fn noise_with_configs(
    noise: &BTreeMap<String, Vec<NoiseSeries>>,
    runs: &[(&PlannedRun, FinalMetrics)],
) -> Result<BTreeMap<String, Vec<(NoiseSeries, RunConfig)>>, ReportError> {
    let mut out = BTreeMap::new();
    for (dataset, series) in noise {
        let mut with: Vec<(NoiseSeries, RunConfig)> = vec![];
        for s in series {
            let run = runs.iter().find(|(r, _)| {
                &r.dataset == dataset && variant_without(&r.variant, &["eval.test_jitter_scale"]) == s.variant
            });
            if let Some((run, _)) = run {
                with.push((s.clone(), run.config()?));
            }
        }
        out.insert(dataset.clone(), with);
    }
    Ok(out)
}

/// Markdown of the whole paper-layout report, caveats first.
pub fn markdown(sweep: &str, caveats: &[String], grids: &[Grid], recipes: &[String]) -> String {
    let mut md = format!("# {sweep}: the paper's layout\n\n");
    md += &caveat_block(caveats, "> ");
    md += "Cells: ours (mean ± std over seeds when several) (paper, ours − paper), in percent, and the verdict against the paper: `[reproduced]` (the paper's value is inside our 95 % bootstrap interval over seeds and test images), `[below]` / `[above]` (outside it), `[inconclusive: why]`; `(-)`: no paper row for this variant; `cancelled`: the variant's runs were cancelled (`ras cancel --run`) before they completed.\n";
    for g in grids {
        md += &format!("\n## {}\n\n| {} |\n|{}\n", g.title, g.header.join(" | "), "---|".repeat(g.header.len()));
        for r in &g.rows {
            md += &format!("| {} |\n", r.join(" | "));
        }
        if let Some(summary) = verdict_summary(g) {
            md += &format!("\n{summary}\n");
        }
    }
    if !recipes.is_empty() {
        md += &format!(
            "\nTraining recipe:\n{}\n",
            recipes.iter().map(|r| format!("- {r}")).collect::<Vec<_>>().join("\n")
        );
    }
    md
}

/// The caveats as lines with `prefix` (`> ` in Markdown, `% ` in LaTeX, `# ` in CSV).
pub fn caveat_block(caveats: &[String], prefix: &str) -> String {
    if caveats.is_empty() {
        return String::new();
    }
    let mut s = format!("{prefix}NOT COMPARABLE TO THE PAPER:\n");
    for c in caveats {
        s += &format!("{prefix}- {c}\n");
    }
    s + "\n"
}

/// LaTeX (booktabs) of the paper-layout tables.
pub fn latex(sweep: &str, caveats: &[String], grids: &[Grid]) -> String {
    let esc = super::row::tex_escape;
    let mut t = format!("% {sweep}: the paper's layout (written by `ras report`; needs \\usepackage{{booktabs}})\n");
    t += &caveat_block(caveats, "% ");
    for g in grids {
        let note = if caveats.is_empty() {
            String::new()
        } else {
            " \\textbf{Not comparable to the paper}: see the notes at the top of this file.".into()
        };
        t += &format!(
            "\\begin{{table}}[t]\n\\centering\n\\caption{{{}. Ours (paper, $\\Delta$) in percent.{note}}}\n\\begin{{tabular}}{{l{}}}\n\\toprule\n{} \\\\\n\\midrule\n",
            esc(&g.title),
            "r".repeat(g.header.len().saturating_sub(1)),
            g.header.iter().map(|h| esc(h)).collect::<Vec<_>>().join(" & ")
        );
        for r in &g.rows {
            let cells: Vec<String> =
                r.iter().map(|c| esc(c).replace('±', "$\\pm$").replace("(-", "($-$").replace(", -", ", $-$")).collect();
            t += &format!("{} \\\\\n", cells.join(" & "));
        }
        t += "\\bottomrule\n\\end{tabular}\n\\end{table}\n\n";
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_is_ours_the_papers_and_the_difference_of_the_numbers_shown() {
        assert_eq!(cell(97.46, 0.31, 2, Some(97.5)), "97.5 ± 0.3 (97.5, +0.0)");
        assert_eq!(cell(96.04, 0.0, 1, Some(97.3)), "96.0 (97.3, -1.3)");
        assert_eq!(cell(96.04, 0.0, 1, None), "96.0 (-)");
    }

    #[test]
    fn caveats_block_is_prefixed_on_every_line() {
        let b = caveat_block(&["a".into(), "b".into()], "# ");
        assert!(b.lines().filter(|l| !l.is_empty()).all(|l| l.starts_with("# ")), "{b}");
        assert_eq!(caveat_block(&[], "# "), "");
    }
}
