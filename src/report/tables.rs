//! The result tables of a sweep: per dataset, per variant and class, the final metrics
//! of its complete runs (mean ± std over seeds) beside the paper's numbers
//! (configs/paper-tables.csv, a copy kept in the repo and compiled in, so a report never
//! depends on files outside the project), as Markdown, CSV and LaTeX.

use super::{complete_runs, ReportError};
use crate::store::Store;
use crate::sweep::Manifest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The paper's numbers: table,dataset,class,method,setting,metric,value.
pub const PAPER_TABLES: &str = include_str!("../../configs/paper-tables.csv");

/// (dataset, class, setting, metric "I"|"P") -> value in percent, RAS rows of Tables 1-3 only.
pub fn paper_numbers() -> BTreeMap<(String, String, String, String), f64> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .comment(Some(b'#'))
        .flexible(true)
        .from_reader(PAPER_TABLES.as_bytes());
    let mut out = BTreeMap::new();
    for f in reader.records().filter_map(Result::ok) {
        if f.len() != 7 || &f[3] != "RAS" || !matches!(&f[0], "table1" | "table2" | "table3") {
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
    /// The training recipe of the variant's runs (`RunConfig::recipe`; several joined by
    /// "; " if its runs differ).
    pub recipe: String,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (m, var.sqrt())
}

/// Rows per dataset (base config stem), in percent. Runs that differ only by seed are
/// one variant: mean ± sample std over them.
pub fn collect(store: &Store, manifest: &Manifest) -> Result<BTreeMap<String, Vec<Row>>, ReportError> {
    let paper = paper_numbers();
    // (dataset, variant without class) -> class -> [(I, P)], plus (kind, setting)
    let mut groups: BTreeMap<(String, String), (String, String, BTreeMap<String, Vec<(f64, f64)>>)> = BTreeMap::new();
    let mut recipes: BTreeMap<(String, String), std::collections::BTreeSet<String>> = BTreeMap::new();
    for (run, fm) in complete_runs(store, manifest)? {
        let cfg = run.config();
        let variant = run.variant.split(' ').filter(|p| !p.starts_with("class=")).collect::<Vec<_>>().join(" ");
        let setting = cfg.train.setting.as_str();
        recipes.entry((run.dataset.clone(), variant.clone())).or_default().insert(cfg.recipe());
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
        let recipe = recipes.remove(&(dataset.clone(), variant.clone())).unwrap_or_default().into_iter().collect::<Vec<_>>().join("; ");
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
                Row { variant: variant.clone(), class: class.clone(), runs: vals.len(), i_auroc: i, i_std: is, p_auroc: p, p_std: ps, paper_i: look("I"), paper_p: look("P"), recipe: recipe.clone() }
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
    // Which recipe each variant trained with (paper's text or the public code's config).
    let mut seen = std::collections::BTreeSet::new();
    let lines: Vec<String> = rows.iter().filter(|r| seen.insert(r.variant.clone())).map(|r| format!("- {}: {}", if r.variant.is_empty() { "(all runs)" } else { &r.variant }, r.recipe)).collect();
    md += &format!("\nTraining recipe:\n{}\n", lines.join("\n"));
    md
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
pub fn write(tables: &BTreeMap<String, Vec<Row>>, sweep: &str, out: &Path) -> Result<Vec<PathBuf>, ReportError> {
    super::create_dir(out)?;
    let mut files = vec![];
    for (dataset, rows) in tables {
        for (ext, bytes) in [("md", markdown(sweep, dataset, rows).into_bytes()), ("csv", super::csv::rows(rows)?), ("tex", latex(sweep, dataset, rows).into_bytes())] {
            files.push(super::write_file(out, &format!("{dataset}.{ext}"), &bytes)?);
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
            recipe: "paper (lr 7e-4, batch 64)".into(),
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

    #[test]
    fn paper_numbers_are_the_ras_rows_of_tables_1_to_3() {
        let paper = super::paper_numbers();
        assert_eq!(paper.len(), 70, "{paper:?}");
        let get = |d: &str, c: &str, s: &str, m: &str| paper.get(&(d.into(), c.into(), s.into(), m.into())).copied();
        assert_eq!(get("mvtec", "bottle", "unified", "I"), Some(100.0));
        assert_eq!(get("mvtec", "cable", "unified", "I"), Some(99.2));
        // Table 5's classes hold a quoted comma ("Te=0,Td=1"): read as one field, still not a Table 1-3 row.
        assert!(paper.keys().all(|k| !k.1.starts_with("Te=")), "{paper:?}");
    }
}
