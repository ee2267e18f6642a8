//! The report's cost table: what each run of a sweep cost (the sum of its attempt
//! records, `run::cost`), per table and variant, and in total, set against what the plan
//! estimated before the sweep ran (the estimates in the sweep's stored manifest).

use super::{write_file, ReportError};
use crate::run::cost::{read_attempts_many, CostSummary};
use crate::run::RunPaths;
use crate::store::Store;
use crate::sweep::estimate::Estimate;
use crate::sweep::Manifest;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// One run's measured cost and its plan.
#[derive(Debug, Clone)]
pub struct CostRow {
    pub id: String,
    /// The report table the run belongs to (its base config stem).
    pub table: String,
    pub variant: String,
    pub cost: CostSummary,
    pub planned: Option<Estimate>,
}

/// Every run of the sweep with at least one attempt record, in manifest order. Planned
/// figures come from the stored manifest (the plan made before the runs ran), else from
/// `manifest` (a report of a sweep planned by an older `ras`).
pub fn collect_cost(store: &Store, manifest: &Manifest) -> Result<Vec<CostRow>, ReportError> {
    let stored = Manifest::read(store, &manifest.name)?;
    cost_rows(store, manifest, stored.as_ref())
}

/// [`collect_cost`] with the stored manifest already read (None: the store has none).
fn cost_rows(store: &Store, manifest: &Manifest, stored: Option<&Manifest>) -> Result<Vec<CostRow>, ReportError> {
    let planned: BTreeMap<&str, &Estimate> = stored
        .iter()
        .flat_map(|m| &m.runs)
        .chain(&manifest.runs)
        .filter_map(|r| Some((r.id.as_str(), r.estimate.as_ref()?)))
        .rev()
        .collect();
    let mut rows = vec![];
    let paths: Vec<RunPaths> = manifest.runs.iter().map(|r| RunPaths::new(r.id.as_str())).collect();
    for (run, records) in manifest.runs.iter().zip(read_attempts_many(store, &paths)?) {
        if records.is_empty() {
            continue;
        }
        rows.push(CostRow {
            id: run.id.clone(),
            table: run.dataset.clone(),
            variant: run.variant.clone(),
            cost: CostSummary::of(&records),
            planned: planned.get(run.id.as_str()).map(|e| (*e).clone()),
        });
    }
    Ok(rows)
}

/// [`cost_markdown`] of a sweep's stored manifest itself (`ras serve`, which has read it).
pub fn cost_markdown_of_stored(store: &Store, stored: &Manifest) -> Result<Option<String>, ReportError> {
    let rows = cost_rows(store, stored, Some(stored))?;
    Ok((!rows.is_empty()).then(|| markdown(&stored.name, &rows)))
}

/// The cost section of the report (Markdown); None when no run has a cost record.
pub fn cost_markdown(store: &Store, manifest: &Manifest) -> Result<Option<String>, ReportError> {
    let rows = collect_cost(store, manifest)?;
    Ok((!rows.is_empty()).then(|| markdown(&manifest.name, &rows)))
}

/// Writes `<sweep>-cost.md` and `<sweep>-cost.csv` into `out`; returns the Markdown and
/// the files (None, and nothing written, when no run has a cost record).
pub fn write_cost(
    store: &Store,
    manifest: &Manifest,
    out: &Path,
) -> Result<Option<(String, Vec<PathBuf>)>, ReportError> {
    let rows = collect_cost(store, manifest)?;
    if rows.is_empty() {
        return Ok(None);
    }
    let md = markdown(&manifest.name, &rows);
    super::create_dir(out)?;
    let files = vec![
        write_file(out, &format!("{}-cost.md", manifest.name), md.as_bytes())?,
        write_file(out, &format!("{}-cost.csv", manifest.name), &csv(&rows)?)?,
    ];
    Ok(Some((md, files)))
}

fn planned_rank_hours(p: Option<&Estimate>) -> String {
    p.map(|e| format!("{:.4}", e.rank_hours)).unwrap_or_else(|| "-".into())
}

/// actual / planned, as `1.23x` ("-" without a plan).
fn ratio(actual: f64, planned: Option<f64>) -> String {
    planned.filter(|p| *p > 0.0).map(|p| format!("{:.2}x", actual / p)).unwrap_or_else(|| "-".into())
}

/// Sums of rows grouped by `key`, in first-seen order, with the planned rank-hours (None
/// when any row lacks a plan: a partial sum would look like a full one).
fn groups<'a>(
    rows: &'a [CostRow],
    key: impl Fn(&'a CostRow) -> String,
) -> Vec<(String, usize, CostSummary, Option<f64>)> {
    let mut out: Vec<(String, usize, CostSummary, Option<f64>)> = vec![];
    for r in rows {
        let k = key(r);
        let i = out.iter().position(|g| g.0 == k).unwrap_or_else(|| {
            out.push((k, 0, CostSummary::default(), Some(0.0)));
            out.len() - 1
        });
        let g = &mut out[i];
        g.1 += 1;
        g.2.add(&r.cost);
        g.3 = g.3.zip(r.planned.as_ref()).map(|(a, e)| a + e.rank_hours);
    }
    out
}

fn markdown(sweep: &str, rows: &[CostRow]) -> String {
    let mut s = format!("## Cost of sweep {sweep} (measured, every attempt)\n\n");
    s += "| run | variant | attempts | features s | train s | eval s | other s | wall s | rank-h | planned rank-h | planned from | actual/planned |\n";
    s += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n";
    for r in rows {
        let (c, p) = (&r.cost, &r.cost.phases);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.4} | {} | {} | {} |",
            r.id,
            r.variant,
            c.attempts,
            p.features_s,
            p.train_s,
            p.eval_s,
            p.other_s,
            c.wall_s,
            c.rank_hours,
            planned_rank_hours(r.planned.as_ref()),
            r.planned.as_ref().map(|e| e.source.to_string()).unwrap_or_else(|| "-".into()),
            ratio(c.rank_hours, r.planned.as_ref().map(|e| e.rank_hours))
        );
    }
    s += "\n| table | variant | runs | attempts | wall s | rank-h | GPU-h | planned rank-h | actual/planned |\n";
    s += "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    let by_variant = groups(rows, |r| format!("{} | {}", r.table, r.variant));
    let by_table = groups(rows, |r| format!("{} | (all)", r.table));
    let total = groups(rows, |_| "**total** | ".to_string());
    for (k, n, c, planned) in by_variant.iter().chain(&by_table).chain(&total) {
        let _ = writeln!(
            s,
            "| {k} | {n} | {} | {:.1} | {:.4} | {} | {} | {} |",
            c.attempts,
            c.wall_s,
            c.rank_hours,
            if c.gpu_hours > 0.0 { format!("{:.4}", c.gpu_hours) } else { "-".into() },
            planned.map(|p| format!("{p:.4}")).unwrap_or_else(|| "-".into()),
            ratio(c.rank_hours, *planned)
        );
    }
    let t = &total[0].2;
    let _ = writeln!(
        s,
        "\nTotal: {:.4} rank-hours ({:.4} GPU-hours) over {} jobs of {} runs. Attempts count every job of a run: its attempts, and the feature-cache job a sweep ran with its config.",
        t.rank_hours,
        t.gpu_hours,
        t.attempts,
        rows.len()
    );
    s
}

/// One row per run, then a `total` row; full precision (the records' sums).
fn csv(rows: &[CostRow]) -> Result<Vec<u8>, ReportError> {
    let mut w = ::csv::WriterBuilder::new().terminator(::csv::Terminator::Any(b'\n')).from_writer(vec![]);
    w.write_record([
        "run",
        "table",
        "variant",
        "attempts",
        "features_s",
        "train_s",
        "eval_s",
        "other_s",
        "wall_s",
        "rank_hours",
        "gpu_hours",
        "planned_rank_hours",
        "planned_wall_s",
        "planned_from",
    ])?;
    let record = |id: &str, table: &str, variant: &str, c: &CostSummary, planned: Option<&Estimate>| {
        let p = &c.phases;
        let num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        vec![
            id.to_string(),
            table.to_string(),
            variant.to_string(),
            c.attempts.to_string(),
            p.features_s.to_string(),
            p.train_s.to_string(),
            p.eval_s.to_string(),
            p.other_s.to_string(),
            c.wall_s.to_string(),
            c.rank_hours.to_string(),
            c.gpu_hours.to_string(),
            num(planned.map(|e| e.rank_hours)),
            num(planned.map(|e| e.wall_s)),
            planned.map(|e| e.source.to_string()).unwrap_or_default(),
        ]
    };
    let mut total = CostSummary::default();
    for r in rows {
        w.write_record(record(&r.id, &r.table, &r.variant, &r.cost, r.planned.as_ref()))?;
        total.add(&r.cost);
    }
    let planned_total = groups(rows, |_| String::new())[0].3;
    let mut last = record("total", "", "", &total, None);
    last[11] = planned_total.map(|p| p.to_string()).unwrap_or_default();
    w.write_record(last)?;
    w.into_inner().map_err(|e| ReportError::Csv(e.into_error().into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::estimate::Source;

    fn row(table: &str, variant: &str, rank_hours: f64, planned: Option<f64>) -> CostRow {
        let cost = CostSummary { attempts: 1, wall_s: rank_hours * 3600.0, rank_hours, ..Default::default() };
        let planned = planned.map(|p| Estimate {
            source: Source::Bench { flop_ratio: None },
            features_s: 0.0,
            train_s: 0.0,
            eval_s: 0.0,
            other_s: 0.0,
            wall_s: 0.0,
            rank_hours: p,
            low_s: 0.0,
            high_s: 0.0,
            basis: String::new(),
            cache_job: None,
        });
        CostRow { id: format!("{variant}-{rank_hours}"), table: table.into(), variant: variant.into(), cost, planned }
    }

    #[test]
    fn groups_sum_runs_and_a_missing_plan_blanks_the_planned_sum() {
        let rows = [row("t5", "Te=1", 1.0, Some(2.0)), row("t5", "Te=1", 0.5, Some(1.0)), row("t6", "ras", 0.25, None)];
        let g = groups(&rows, |r| r.variant.clone());
        assert_eq!(
            g.iter().map(|g| (g.0.as_str(), g.1, g.2.rank_hours, g.3)).collect::<Vec<_>>(),
            vec![("Te=1", 2, 1.5, Some(3.0)), ("ras", 1, 0.25, None)]
        );
        let md = markdown("s", &rows);
        assert!(
            md.contains("| **total** |  | 3 | 3 | 6300.0 | 1.7500 | - | - | - |") && md.contains("| t5 | Te=1 | 2 |"),
            "{md}"
        );
        let csv = String::from_utf8(csv(&rows).unwrap()).unwrap();
        assert!(csv.lines().last().unwrap().starts_with("total,,,3,0,0,0,0,6300,1.75,0,,"), "{csv}");
    }
}
