//! What the plots show (T_e x T_d heat maps of mean AUROC, AUROC against test-time noise)
//! and writing them, with the noise tables, as files.

use super::noise::{self, NoiseSeries, METRICS};
use super::{complete_runs, csv, mean_pair, plot, variant_without, write_file, ReportError};
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
}

/// What the plots show, per dataset (base config stem).
#[derive(Debug, Clone, Default)]
pub struct PlotData {
    /// Only groups whose runs vary both T_e and T_d (at least 2 values each).
    pub grids: BTreeMap<String, Vec<LayerGrid>>,
    /// Only datasets where some variant has metrics at 2 or more noise scales.
    pub noise: BTreeMap<String, Vec<NoiseSeries>>,
}

/// Gathers the heat-map grids and the noise curves of a sweep's complete runs.
pub fn collect_plots(store: &Store, manifest: &Manifest) -> Result<PlotData, ReportError> {
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

    out.noise = noise::curves(store, &runs)?;
    Ok(out)
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
pub fn write_plots(data: &PlotData, sweep: &str, out: &Path, caveats: &[String]) -> Result<Vec<PathBuf>, ReportError> {
    super::create_dir(out)?;
    let mut files = vec![];
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
                let name = format!("{dataset}{}-heatmap-{}.png", slug(dataset, &g.variant), metric.to_lowercase());
                files.push(write_file(out, &name, &plot::heat_map_png(&h))?);
            }
        }
    }
    for (dataset, series) in &data.noise {
        let md = super::layout::caveat_block(caveats, "> ") + &noise::noise_markdown(sweep, dataset, series);
        files.push(write_file(out, &format!("{dataset}-noise.md"), md.as_bytes())?);
        let mut text = super::layout::caveat_block(caveats, "# ").into_bytes();
        text.extend(csv::noise(series)?);
        files.push(write_file(out, &format!("{dataset}-noise.csv"), &text)?);
        for (metric, pick) in METRICS {
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
            files.push(write_file(out, &format!("{dataset}-noise-{}.png", metric.to_lowercase()), &plot::curves_png(&c))?);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    #[test]
    fn plot_file_names_carry_the_variant() {
        assert_eq!(super::slug("demo", "demo model.decoder=\"ras\" x=1"), "-model.decoder-ras_x-1");
        assert_eq!(super::slug("demo", "demo"), "");
    }
}
