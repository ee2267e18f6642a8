//! `ras report`: the final metrics of every complete run of a sweep, per dataset, per
//! class, beside the paper's numbers (configs/paper-tables.csv, a copy kept in the repo
//! and compiled in, so a report never depends on files outside the project).

use super::{Manifest, SweepError};
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
            .or_insert_with(|| (cfg.dataset.kind.clone(), setting.to_string(), BTreeMap::new()));
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
        let mut rows: Vec<Row> = classes
            .into_iter()
            .map(|(class, vals)| {
                let (i, is) = mean_std(&vals.iter().map(|v| v.0).collect::<Vec<_>>());
                let (p, ps) = mean_std(&vals.iter().map(|v| v.1).collect::<Vec<_>>());
                let look = |metric: &str| paper.get(&(kind.clone(), class.clone(), setting.clone(), metric.to_string())).copied();
                Row { variant: variant.clone(), class: class.clone(), runs: vals.len(), i_auroc: i, i_std: is, p_auroc: p, p_std: ps, paper_i: look("I"), paper_p: look("P") }
            })
            .collect();
        // "mean" last.
        rows.sort_by_key(|r| (r.class == "mean", r.class.clone()));
        out.entry(dataset).or_default().extend(rows);
    }
    Ok(out)
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

fn delta(ours: f64, paper: Option<f64>) -> String {
    paper.map(|p| format!("{:+.1}", ours - p)).unwrap_or_else(|| "-".into())
}

fn pm(m: f64, s: f64, n: usize) -> String {
    if n > 1 {
        format!("{m:.1} ± {s:.1}")
    } else {
        format!("{m:.1}")
    }
}

/// Writes `<dataset>.md` and `<dataset>.csv` per dataset into `out`; returns the files.
pub fn write(tables: &BTreeMap<String, Vec<Row>>, sweep: &str, out: &Path) -> Result<Vec<PathBuf>, SweepError> {
    std::fs::create_dir_all(out).map_err(|source| SweepError::Io { path: out.into(), source })?;
    let mut files = vec![];
    for (dataset, rows) in tables {
        let mut md = format!(
            "# {sweep}: {dataset}\n\nI-AUROC / P-AUROC in percent (last epoch); mean ± std over seeds when several; paper = RAS in the paper's Tables 1-3.\n\n| variant | class | runs | I-AUROC | paper I | Δ I | P-AUROC | paper P | Δ P |\n|---|---|---|---|---|---|---|---|---|\n"
        );
        let mut csv = String::from("variant,class,runs,i_auroc,i_std,paper_i,delta_i,p_auroc,p_std,paper_p,delta_p\n");
        for r in rows {
            md += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.variant,
                r.class,
                r.runs,
                pm(r.i_auroc, r.i_std, r.runs),
                opt(r.paper_i),
                delta(r.i_auroc, r.paper_i),
                pm(r.p_auroc, r.p_std, r.runs),
                opt(r.paper_p),
                delta(r.p_auroc, r.paper_p)
            );
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
        for (ext, text) in [("md", md), ("csv", csv)] {
            let p = out.join(format!("{dataset}.{ext}"));
            std::fs::write(&p, text).map_err(|source| SweepError::Io { path: p.clone(), source })?;
            files.push(p);
        }
    }
    Ok(files)
}
