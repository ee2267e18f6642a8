//! What the plots show (T_e x T_d heat maps of mean AUROC beside the paper's grid, AUROC
//! against test-time noise beside the paper's points) and writing them, with the noise
//! tables, as files. The paper's values come only from the sweep's `[paper]` section
//! ([`paper_row`] of each cell or noise scale), never from a guess.

use super::noise::{self, NoiseSeries, METRICS};
use super::paper::{paper_row, PaperTables};
use super::plot::{Curves, Header, HeatMaps, Panel, Series};
use super::{complete_runs, csv, mean_pair, variant_without, write_file, ReportError};
use crate::config::{PaperLayout, PaperMatch, RunConfig};
use crate::store::Store;
use crate::sweep::Manifest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// The paper's numbers for the same cells, when the sweep's `[paper]` is a Table 5
    /// grid and has any of them.
    pub paper: Option<PaperGrid>,
}

/// The paper's T_e x T_d cells, laid out as [`LayerGrid`]'s.
#[derive(Debug, Clone)]
pub struct PaperGrid {
    /// Which paper table: `table5`.
    pub tables: String,
    pub i_auroc: Vec<Vec<Option<f64>>>,
    pub p_auroc: Vec<Vec<Option<f64>>>,
}

/// How a noise curve is named in the legend, and the paper's points for it.
#[derive(Debug, Clone, Default)]
pub struct CurveInfo {
    /// `RAS`, `UniAD` (the `[paper]` method), else the variant's short form (`T_e=1`).
    pub label: String,
    /// (scale, I-AUROC, P-AUROC) from the paper at each of our scales that it has.
    pub paper: Vec<(f64, Option<f64>, Option<f64>)>,
}

/// What the plots show, per dataset (base config stem).
#[derive(Debug, Clone, Default)]
pub struct PlotData {
    /// Groups whose runs vary both T_e and T_d (at least 2 values each), or, in a sweep
    /// whose `[paper]` is a Table 5 grid, at least 2 cells.
    pub grids: BTreeMap<String, Vec<LayerGrid>>,
    /// Only datasets where some variant has metrics at 2 or more noise scales.
    pub noise: BTreeMap<String, Vec<NoiseSeries>>,
    /// Legend and paper points of each noise series, by its variant.
    pub curves: BTreeMap<String, CurveInfo>,
}

/// Gathers the heat-map grids and the noise curves of a sweep's complete runs.
pub fn collect_plots(store: &Store, manifest: &Manifest) -> Result<PlotData, ReportError> {
    let runs = complete_runs(store, manifest)?;
    let mut out = PlotData::default();
    let paper = PaperTables::load();
    let m = manifest.paper.as_ref();

    // T_e x T_d: (dataset, variant without the layer counts) -> (T_e, T_d) -> [(I, P)].
    type Cells = BTreeMap<(usize, usize), Vec<(f64, f64)>>;
    let mut cells: BTreeMap<(String, String), (Cells, RunConfig)> = BTreeMap::new();
    for (run, fm) in &runs {
        let cfg = run.config()?;
        let (e, d) = (cfg.model.encoder_layers, cfg.model.decoder_layers);
        let variant = variant_without(&run.variant, &["model.encoder_layers", "model.decoder_layers"]);
        let mean = &fm.metrics.mean;
        let group = cells.entry((run.dataset.clone(), variant)).or_insert_with(|| (Cells::new(), cfg));
        group.0.entry((e, d)).or_default().push((100.0 * mean.image_auroc, 100.0 * mean.pixel_auroc));
    }
    let grid_layout = m.is_some_and(|m| m.layout() == PaperLayout::Grid);
    for ((dataset, variant), (by_cell, cfg)) in cells {
        let mut enc: Vec<usize> = by_cell.keys().map(|k| k.0).collect();
        let mut dec: Vec<usize> = by_cell.keys().map(|k| k.1).collect();
        enc.sort();
        dec.sort();
        enc.dedup();
        dec.dedup();
        // A Table 5 sweep may hold one row of the paper's grid; elsewhere a heat map needs
        // both counts to vary (a single row of them is not what the sweep is about).
        let both_vary = enc.len() >= 2 && dec.len() >= 2;
        if !(both_vary || grid_layout && by_cell.len() >= 2) {
            continue;
        }
        let grid = |pick: fn((f64, f64)) -> f64| -> Vec<Vec<Option<f64>>> {
            enc.iter()
                .map(|e| dec.iter().map(|d| by_cell.get(&(*e, *d)).map(|v| pick(mean_pair(v)))).collect())
                .collect()
        };
        let paper_cells = match m.filter(|_| grid_layout) {
            Some(m) => paper_grid(m, &paper, &cfg, &enc, &dec)?,
            None => None,
        };
        let g = LayerGrid {
            variant,
            i_auroc: grid(|p| p.0),
            p_auroc: grid(|p| p.1),
            encoder_layers: enc.clone(),
            decoder_layers: dec.clone(),
            paper: paper_cells,
        };
        out.grids.entry(dataset).or_default().push(g);
    }

    out.noise = noise::curves(store, &runs, m.is_some())?;
    for (dataset, series) in super::layout::noise_with_configs(&out.noise, &runs)? {
        out.curves.extend(curve_infos(m, &paper, &dataset, &series)?);
    }
    Ok(out)
}

/// The paper's value of each (T_e, T_d) cell: the `[paper]` row of a config with those
/// counts (the group's own config otherwise). None when the paper has none of them.
fn paper_grid(
    m: &PaperMatch,
    paper: &PaperTables,
    cfg: &RunConfig,
    enc: &[usize],
    dec: &[usize],
) -> Result<Option<PaperGrid>, ReportError> {
    let cell = |e: usize, d: usize, metric: &str| -> Result<Option<f64>, ReportError> {
        let mut c = cfg.clone();
        (c.model.encoder_layers, c.model.decoder_layers) = (e, d);
        Ok(paper_row(m, &c, "mean", None).map_err(ReportError::Paper)?.and_then(|r| r.value(paper, metric)))
    };
    let grid = |metric: &str| -> Result<Vec<Vec<Option<f64>>>, ReportError> {
        enc.iter().map(|e| dec.iter().map(|d| cell(*e, *d, metric)).collect()).collect()
    };
    let (i, p) = (grid("I")?, grid("P")?);
    if i.iter().chain(&p).flatten().all(Option::is_none) {
        return Ok(None);
    }
    Ok(Some(PaperGrid { tables: m.tables.join("+"), i_auroc: i, p_auroc: p }))
}

/// Legend labels and paper points of a dataset's noise series. The paper's points only
/// for a Table 6 (noise) `[paper]`: another table's row would repeat one number per scale.
fn curve_infos(
    m: Option<&PaperMatch>,
    paper: &PaperTables,
    dataset: &str,
    series: &[(NoiseSeries, RunConfig)],
) -> Result<BTreeMap<String, CurveInfo>, ReportError> {
    let mut labels = vec![];
    for (s, cfg) in series {
        labels.push(match m {
            Some(m) => m.render(&m.method, cfg, "mean", None).map_err(ReportError::Paper)?,
            None => legend_label(dataset, &s.variant),
        });
    }
    let mut out = BTreeMap::new();
    for (k, (s, cfg)) in series.iter().enumerate() {
        let mut label = labels[k].clone();
        // Two series with one method name (a Table 4 sweep's variants): tell them apart.
        if labels.iter().filter(|l| **l == label).count() > 1 {
            label = format!("{label} ({})", legend_label(dataset, &s.variant));
        }
        let mut points = vec![];
        if let Some(m) = m.filter(|m| m.layout() == PaperLayout::Noise) {
            for p in &s.points {
                if let Some(row) = paper_row(m, cfg, "mean", Some(p.scale)).map_err(ReportError::Paper)? {
                    let (i, pp) = (row.value(paper, "I"), row.value(paper, "P"));
                    if i.is_some() || pp.is_some() {
                        points.push((p.scale, i, pp));
                    }
                }
            }
        }
        out.insert(s.variant.clone(), CurveInfo { label, paper: points });
    }
    Ok(out)
}

/// A variant as a legend shows it: without the dataset stem, keys without their section
/// and quotes (`decoder=ras`), the layer counts as the paper writes them (`T_e=1`,
/// `T_d=2`); `RAS` when nothing is left.
pub fn legend_label(dataset: &str, variant: &str) -> String {
    let rest = variant.strip_prefix(dataset).unwrap_or(variant).trim();
    let parts: Vec<String> = rest
        .split(' ')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((key, value)) => {
                let key = match key {
                    "model.encoder_layers" => "T_e",
                    "model.decoder_layers" => "T_d",
                    k => k.rsplit('.').next().unwrap_or(k),
                };
                format!("{key}={}", value.trim_matches('"'))
            }
            None => p.to_string(),
        })
        .collect();
    if parts.is_empty() {
        "RAS".into()
    } else {
        parts.join(" ")
    }
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
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else if c == '=' {
                '-'
            } else {
                '_'
            }
        })
        .collect();
    format!("-{s}")
}

/// One figure of a report: its file name without extension, and what draws it.
pub struct Figure {
    pub base: String,
    pub plot: FigurePlot,
}

pub enum FigurePlot {
    Heat(HeatMaps),
    Curves(Curves),
}

impl Figure {
    /// (SVG, PNG at 2x).
    pub fn render(&self) -> Result<(String, Vec<u8>), super::plot::PlotError> {
        match &self.plot {
            FigurePlot::Heat(h) => h.render(),
            FigurePlot::Curves(c) => c.render(),
        }
    }

    /// The SVG alone.
    pub fn render_svg(&self) -> Result<String, super::plot::PlotError> {
        match &self.plot {
            FigurePlot::Heat(h) => h.render_svg(),
            FigurePlot::Curves(c) => c.render_svg(),
        }
    }
}

/// The figures of `data`, in the order `ras report` writes them. Per dataset:
/// `<dataset>[-<variant>]-heatmap-{i,p}-auroc` (T_e x T_d, ours beside the paper's) and
/// `<dataset>-noise-{i,p}-auroc`.
pub fn figures(data: &PlotData, sweep: &str, caveats: &[String]) -> Vec<Figure> {
    let mut out = vec![];
    for (dataset, grids) in &data.grids {
        for g in grids {
            for (metric, code) in [("I-AUROC", 0), ("P-AUROC", 1)] {
                let base = format!("{dataset}{}-heatmap-{}", slug(dataset, &g.variant), metric.to_lowercase());
                out.push(Figure { base, plot: FigurePlot::Heat(heat_maps(g, dataset, sweep, metric, code, caveats)) });
            }
        }
    }
    for (dataset, series) in &data.noise {
        for (k, (metric, _)) in METRICS.iter().enumerate() {
            let c = noise_curves(series, &data.curves, dataset, sweep, k, caveats);
            out.push(Figure {
                base: format!("{dataset}-noise-{}", metric.to_lowercase()),
                plot: FigurePlot::Curves(c),
            });
        }
    }
    out
}

/// Writes the plots (and the noise tables) of `data` into `out`; returns the files. Every
/// figure of [`figures`] is an SVG and a PNG at twice its size; per dataset with noise
/// points, also `<dataset>-noise.{md,csv}`.
pub fn write_plots(data: &PlotData, sweep: &str, out: &Path, caveats: &[String]) -> Result<Vec<PathBuf>, ReportError> {
    super::create_dir(out)?;
    let mut files = vec![];
    for f in figures(data, sweep, caveats).iter().filter(|f| f.base.contains("-heatmap-")) {
        files.extend(write_figure(out, &f.base, f.render()?)?);
    }
    for (dataset, series) in &data.noise {
        let md = super::layout::caveat_block(caveats, "> ") + &noise::noise_markdown(sweep, dataset, series);
        files.push(write_file(out, &format!("{dataset}-noise.md"), md.as_bytes())?);
        let mut text = super::layout::caveat_block(caveats, "# ").into_bytes();
        text.extend(csv::noise(series)?);
        files.push(write_file(out, &format!("{dataset}-noise.csv"), &text)?);
        for f in figures(data, sweep, caveats).iter().filter(|f| f.base.starts_with(&format!("{dataset}-noise-"))) {
            files.extend(write_figure(out, &f.base, f.render()?)?);
        }
    }
    Ok(files)
}

/// `base.svg` and `base.png`.
fn write_figure(out: &Path, base: &str, (svg, png): (String, Vec<u8>)) -> Result<[PathBuf; 2], ReportError> {
    Ok([write_file(out, &format!("{base}.svg"), svg.as_bytes())?, write_file(out, &format!("{base}.png"), &png)?])
}

/// One metric of a T_e x T_d group: ours, and the paper's beside it when there is one.
fn heat_maps(g: &LayerGrid, dataset: &str, sweep: &str, metric: &str, code: usize, caveats: &[String]) -> HeatMaps {
    let pick = |i: &Vec<Vec<Option<f64>>>, p: &Vec<Vec<Option<f64>>>| if code == 0 { i.clone() } else { p.clone() };
    let mut panels = vec![Panel { name: "ours".into(), values: pick(&g.i_auroc, &g.p_auroc) }];
    if let Some(p) = &g.paper {
        panels.push(Panel { name: format!("paper ({})", p.tables), values: pick(&p.i_auroc, &p.p_auroc) });
    }
    let rest = g.variant.strip_prefix(dataset).unwrap_or(&g.variant).trim();
    let what =
        if rest.is_empty() { dataset.to_string() } else { format!("{dataset}, {}", legend_label(dataset, &g.variant)) };
    HeatMaps {
        header: Header {
            title: format!("{metric} (%) on {what} over T_e x T_d (sweep {sweep})"),
            caveats: caveats.to_vec(),
        },
        x_label: "T_d (decoder steps)".into(),
        y_label: "T_e (encoder layers)".into(),
        x_ticks: g.decoder_layers.iter().map(|d| d.to_string()).collect(),
        y_ticks: g.encoder_layers.iter().map(|e| e.to_string()).collect(),
        panels,
        unit: format!("{metric} (%)"),
    }
}

/// One metric (`METRICS[k]`) of a dataset's noise series: a line per variant, and the
/// paper's points for it in the same colour.
fn noise_curves(
    series: &[NoiseSeries],
    curves: &BTreeMap<String, CurveInfo>,
    dataset: &str,
    sweep: &str,
    k: usize,
    caveats: &[String],
) -> Curves {
    let (metric, pick) = METRICS[k];
    let mut lines = vec![];
    for (colour, s) in series.iter().enumerate() {
        let info = curves
            .get(&s.variant)
            .cloned()
            .unwrap_or_else(|| CurveInfo { label: legend_label(dataset, &s.variant), paper: vec![] });
        lines.push(Series {
            label: info.label.clone(),
            colour,
            points: s.points.iter().map(|p| (p.scale, pick(p))).collect(),
            paper: false,
        });
        let theirs: Vec<(f64, f64)> =
            info.paper.iter().filter_map(|(a, i, p)| Some((*a, if k == 0 { (*i)? } else { (*p)? }))).collect();
        if !theirs.is_empty() {
            lines.push(Series { label: format!("{} (paper)", info.label), colour, points: theirs, paper: true });
        }
    }
    Curves {
        header: Header {
            title: format!("{metric} (%) on {dataset} against test-time noise (sweep {sweep})"),
            caveats: caveats.to_vec(),
        },
        x_label: "test-time noise alpha".into(),
        y_label: format!("{metric} (%)"),
        series: lines,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn plot_file_names_carry_the_variant() {
        assert_eq!(super::slug("demo", "demo model.decoder=\"ras\" x=1"), "-model.decoder-ras_x-1");
        assert_eq!(super::slug("demo", "demo"), "");
    }

    #[test]
    fn legend_labels_read_like_the_paper() {
        assert_eq!(super::legend_label("mvtec", "mvtec model.decoder=\"ras\""), "decoder=ras");
        assert_eq!(super::legend_label("mvtec", "mvtec model.encoder_layers=1 model.decoder_layers=2"), "T_e=1 T_d=2");
        assert_eq!(super::legend_label("mvtec", "mvtec"), "RAS");
        assert_eq!(super::legend_label("mvtec", "mvtec separate"), "separate");
    }
}
