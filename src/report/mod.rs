//! `ras report`: the final metrics of every complete run of a sweep, per dataset, per
//! class, beside the paper's numbers (`tables`: Markdown, CSV, LaTeX), and plots (SVG, and PNG at 2x, see
//! `plot`) where the sweep has the data for them (`figures`): a T_e x T_d heat map of mean
//! I-AUROC and P-AUROC (Table 5's sweep) and AUROC against test-time noise, with its
//! table (`noise`, Table 6: `eval.noise_scales`, `ras eval --test-jitter`, or runs that
//! differ in `eval.test_jitter_scale`).
//!
//! It reads the store only (a sweep's manifest, the runs' records): the sweep module knows
//! nothing of it.

pub mod cost;
mod csv;
pub mod figures;
pub mod layout;
pub mod noise;
pub mod paper;
pub mod plot;
mod raster;
mod row;
pub mod search;
pub mod tables;
pub mod verdict;

pub use figures::{collect_plots, figures, write_plots, Figure, LayerGrid, PlotData};
pub use noise::{noise_markdown, NoisePoint, NoiseSeries};
pub use paper::{PaperRow, PaperTables, PAPER_TABLES};
pub use row::{Row, EXTRA_METRICS};
pub use tables::{collect, latex, markdown};

use crate::run::FinalMetrics;
use crate::store::{Store, StoreError};
use crate::sweep::{Manifest, PlannedRun, SweepError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No run of the sweep has final metrics yet: there is nothing to report.
    #[error("sweep {sweep}: no complete run yet in {store}")]
    NoCompleteRun { sweep: String, store: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing CSV")]
    Csv(#[from] ::csv::Error),
    /// The sweep's `[paper]` templates do not fit its runs.
    #[error("{0}")]
    Paper(String),
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    /// The sweep's stored manifest, or a run config in it, that this version cannot read.
    #[error(transparent)]
    Sweep(#[from] SweepError),
}

impl ReportError {
    /// Whether the store stayed unreachable past its retry budget (see [`crate::store::StoreError::is_outage`]).
    pub fn is_outage(&self) -> bool {
        match self {
            ReportError::Store(e) => e.is_outage(),
            ReportError::Sweep(e) => e.is_outage(),
            _ => false,
        }
    }
}

/// What [`write_sweep_report`] made.
#[derive(Debug, Clone, Default)]
pub struct ReportOutput {
    /// The tables to show, in order: each dataset's results, then each noise table.
    pub markdown: Vec<String>,
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
}

impl ReportOutput {
    /// What `ras report` prints: each table, then each file written.
    pub fn render(&self) -> String {
        let tables = self.markdown.iter().map(|md| format!("{md}\n"));
        tables.chain(self.files.iter().map(|f| format!("wrote {}\n", f.display()))).collect()
    }
}

/// What a sweep's report shows, computed once from the store: `ras report` writes it to
/// files, `ras serve` shows it in a page (the same numbers: one function computes them).
#[derive(Debug, Clone)]
pub struct SweepReport {
    /// Per dataset, the long rows (one per variant and class).
    pub tables: BTreeMap<String, Vec<Row>>,
    /// What makes the report not comparable to the paper (empty when nothing does).
    pub caveats: Vec<String>,
    /// The paper's layout.
    pub grids: Vec<layout::Grid>,
    /// `variant: recipe` of every variant, in first-seen order.
    pub recipes: Vec<String>,
    pub plots: PlotData,
}

impl SweepReport {
    /// The paper-layout Markdown (`<sweep>-paper.md`).
    pub fn paper_markdown(&self, sweep: &str) -> String {
        layout::markdown(sweep, &self.caveats, &self.grids, &self.recipes)
    }
}

/// The report of a sweep's complete runs. Fails with [`ReportError::NoCompleteRun`] when
/// no run is complete.
pub fn sweep_report(store: &Store, manifest: &Manifest) -> Result<SweepReport, ReportError> {
    let tables = collect(store, manifest)?;
    // (Rows of cancelled runs only have nothing to report.)
    if tables.values().flatten().all(Row::is_cancelled) {
        return Err(ReportError::NoCompleteRun { sweep: manifest.name.clone(), store: store.url().to_string() });
    }
    let runs = complete_runs(store, manifest)?;
    let caveats = layout::caveats(manifest, &runs)?;
    let plots = collect_plots(store, manifest)?;
    let grids =
        layout::paper_layout(manifest.paper.as_ref(), &tables, &layout::noise_with_configs(&plots.noise, &runs)?)?;
    let mut seen = std::collections::BTreeSet::new();
    let recipes: Vec<String> = tables
        .values()
        .flatten()
        .filter(|r| seen.insert(r.variant.clone()))
        .map(|r| format!("{}: {}", if r.variant.is_empty() { "(all runs)" } else { &r.variant }, r.recipe))
        .collect();
    Ok(SweepReport { tables, caveats, grids, recipes, plots })
}

/// What `ras verify` prints, and whether any cell is off the paper (below or above).
pub struct Verification {
    pub text: String,
    pub off_the_paper: bool,
}

/// Every cell of the sweep's paper layout whose verdict is not `reproduced`, table by
/// table, with each table's summary; `off_the_paper` when any is below or above.
pub fn verify(store: &Store, manifest: &Manifest) -> Result<Verification, ReportError> {
    let report = sweep_report(store, manifest)?;
    let mut text = String::new();
    for c in &report.caveats {
        text += &format!("note: {c}\n");
    }
    let (mut off, mut cells) = (0, 0);
    for g in &report.grids {
        let Some(summary) = layout::verdict_summary(g) else { continue };
        text += &format!("{}\n", g.title);
        for row in &g.rows {
            // The row's name: its leading cells that are no numbers (class, dataset and
            // variant, T_e, method).
            let name: Vec<&str> = row.iter().take_while(|c| !c.contains(" (")).map(String::as_str).collect();
            let name = name.join(" ");
            for (header, cell) in g.header.iter().zip(row).skip(1) {
                let Some(v) = verdict::Verdict::of_cell(cell) else { continue };
                cells += 1;
                if matches!(v, verdict::Verdict::Below | verdict::Verdict::Above) {
                    off += 1;
                }
                if v != verdict::Verdict::Reproduced {
                    text += &format!("  {name} / {header}: {cell}\n");
                }
            }
        }
        text += &format!("  {summary}\n");
    }
    if cells == 0 {
        text += "no cell has a paper number to verify against (the sweep file's [paper] names none)\n";
    } else if off > 0 {
        text += &format!("{off} of {cells} cells are off the paper's numbers (below or above our 95 % interval)\n");
    } else {
        text += &format!("no cell of {cells} is below or above the paper's number\n");
    }
    Ok(Verification { text, off_the_paper: off > 0 })
}

/// The whole report of a sweep ([`sweep_report`]) written into `out`
/// (`<dataset>.{md,csv,tex}`, plus the plots and noise tables of [`write_plots`]). Fails
/// with [`ReportError::NoCompleteRun`] before writing anything when no run is complete.
pub fn write_sweep_report(store: &Store, manifest: &Manifest, out: &Path) -> Result<ReportOutput, ReportError> {
    let SweepReport { tables, caveats, grids, recipes, plots } = sweep_report(store, manifest)?;
    let main = layout::markdown(&manifest.name, &caveats, &grids, &recipes);
    create_dir(out)?;
    let mut files = vec![
        write_file(out, &format!("{}-paper.md", manifest.name), main.as_bytes())?,
        write_file(
            out,
            &format!("{}-paper.tex", manifest.name),
            layout::latex(&manifest.name, &caveats, &grids).as_bytes(),
        )?,
    ];
    let mut markdown = vec![main];
    markdown.extend(tables.iter().map(|(dataset, rows)| tables::markdown(&manifest.name, dataset, rows)));
    markdown.extend(plots.noise.iter().map(|(dataset, series)| noise_markdown(&manifest.name, dataset, series)));
    files.extend(write(&tables, &manifest.name, out, &caveats)?);
    files.extend(write_plots(&plots, &manifest.name, out, &caveats)?);
    if let Some((md, written)) = cost::write_cost(store, manifest, out)? {
        markdown.push(md);
        files.extend(written);
    }
    if let Some(md) = search::search_markdown(store, manifest)? {
        files.push(write_file(out, &format!("{}-search.md", manifest.name), md.as_bytes())?);
        markdown.push(md);
    }
    Ok(ReportOutput { markdown, files })
}

/// Complete runs (those with final metrics), in manifest order.
fn complete_runs<'a>(
    store: &Store,
    manifest: &'a Manifest,
) -> Result<Vec<(&'a PlannedRun, FinalMetrics)>, ReportError> {
    let keys: Vec<String> =
        manifest.runs.iter().map(|r| crate::run::RunPaths::new(r.id.as_str()).final_metrics()).collect();
    let finals = store.get_json_many::<FinalMetrics, _>(&keys)?;
    Ok(manifest.runs.iter().zip(finals).filter_map(|(run, fm)| Some((run, fm?))).collect())
}

/// The variant label without its `key=value` parts for the given keys (and without the
/// class of separate runs): what stays the same along a plot's axis.
fn variant_without(variant: &str, keys: &[&str]) -> String {
    variant
        .split(' ')
        .filter(|p| {
            !p.starts_with("class=") && !keys.iter().any(|k| p.strip_prefix(k).is_some_and(|r| r.starts_with('=')))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Mean I-AUROC and P-AUROC of a list of (I, P) pairs.
fn mean_pair(v: &[(f64, f64)]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    (v.iter().map(|x| x.0).sum::<f64>() / n, v.iter().map(|x| x.1).sum::<f64>() / n)
}

fn create_dir(dir: &Path) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io { path: dir.into(), source })
}

/// Writes `dir/name`; returns its path.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, ReportError> {
    let p = dir.join(name);
    std::fs::write(&p, bytes).map_err(|source| ReportError::Io { path: p.clone(), source })?;
    Ok(p)
}

/// Writes `<dataset>.md`, `.csv` and `.tex` per dataset into `out`, each starting with the
/// report's caveats (as Markdown quotes, `# ` and `% ` comment lines); returns the files.
pub fn write(
    tables: &BTreeMap<String, Vec<Row>>,
    sweep: &str,
    out: &Path,
    caveats: &[String],
) -> Result<Vec<PathBuf>, ReportError> {
    use layout::caveat_block;
    create_dir(out)?;
    let mut files = vec![];
    for (dataset, rows) in tables {
        let md = caveat_block(caveats, "> ") + &tables::markdown(sweep, dataset, rows);
        let mut csv = caveat_block(caveats, "# ").into_bytes();
        csv.extend(csv::rows(rows)?);
        let tex = caveat_block(caveats, "% ") + &tables::latex(sweep, dataset, rows);
        for (ext, bytes) in [("md", md.into_bytes()), ("csv", csv), ("tex", tex.into_bytes())] {
            files.push(write_file(out, &format!("{dataset}.{ext}"), &bytes)?);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    #[test]
    fn variants_lose_only_the_named_keys() {
        let v = "mvtec model.decoder_layers=2 model.encoder_layers=1 separate class=bottle";
        assert_eq!(super::variant_without(v, &["model.encoder_layers", "model.decoder_layers"]), "mvtec separate");
        assert_eq!(
            super::variant_without(
                "mvtec eval.test_jitter_scale=10.0 model.decoder=\"ras\"",
                &["eval.test_jitter_scale"]
            ),
            "mvtec model.decoder=\"ras\""
        );
        // A key that is a prefix of another is not confused with it.
        assert_eq!(
            super::variant_without("d model.encoder_layers_x=1", &["model.encoder_layers"]),
            "d model.encoder_layers_x=1"
        );
    }
}
