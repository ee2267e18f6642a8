//! Figures for `ras report`: T_e x T_d heat maps (ours beside the paper's, on one colour
//! scale) and AUROC against test-time noise (ours as lines, the paper's as dashed lines
//! with markers). Each figure is drawn once with `plotters` and rendered twice: as SVG
//! (plotters' SVG backend: `<text>` elements, no font file needed) for a paper or slides,
//! and as a PNG at twice the SVG's size for quick looks, through [`Raster`].
//!
//! Why the PNG has its own pixel backend: see [`Raster`] (raster.rs).

use super::raster::{png, Raster};
use image::{Rgb, RgbImage};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

/// Line colours (matplotlib's "tab10"): distinct from each other and on white.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];
/// Missing heat-map cells: a grey that the colour map never produces.
pub const MISSING: RGBColor = RGBColor(190, 190, 190);
const GRID_LINE: RGBColor = RGBColor(225, 225, 225);
const FONT: &str = "sans-serif";

/// Colour of series `k` of a curve plot.
pub fn series_colour(k: usize) -> RGBColor {
    let (r, g, b) = PALETTE[k % PALETTE.len()];
    RGBColor(r, g, b)
}

/// Viridis (dark purple = low, yellow = high), 5 stops interpolated linearly: ordered in
/// lightness, so it reads in grey print too, and it never passes through grey.
pub fn colour_map(t: f64) -> RGBColor {
    const STOPS: [[f64; 3]; 5] =
        [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 } * (STOPS.len() - 1) as f64;
    let k = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - k as f64;
    let c = |i: usize| (STOPS[k][i] + f * (STOPS[k + 1][i] - STOPS[k][i])).round() as u8;
    RGBColor(c(0), c(1), c(2))
}

/// A number as a short label: 20 rather than 20.0, at most 2 decimals otherwise.
pub fn short_number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Tick values for an axis or colour bar over [lo, hi]: 4 to 6 round numbers (steps of 1,
/// 2, 2.5 or 5 times a power of ten) whose first is <= lo and last >= hi, so the scale can
/// run from the first tick to the last and both ends are labelled. Equal ends (one value)
/// are widened by 1 either side first.
pub fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = match (lo.is_finite(), hi.is_finite()) {
        (true, true) if hi > lo => (lo, hi),
        (true, _) => (lo - 1.0, lo + 1.0),
        _ => (0.0, 100.0),
    };
    let ticks_with = |step: f64| -> Vec<f64> {
        let (a, b) = ((lo / step + 1e-9).floor() as i64, (hi / step - 1e-9).ceil() as i64);
        // Multiples of the step, rounded so 0.1 * 3 prints as 0.3.
        (a..=b).map(|k| (k as f64 * step * 1e6).round() / 1e6).collect()
    };
    let magnitude = 10f64.powf(((hi - lo) / 5.0).log10().floor());
    let candidates = [0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 20.0].map(|m| m * magnitude);
    // The smallest step that gives at most 6 ticks; it gives at least 4 unless a range
    // just over one step of the next size lands on 3 (then the step below is taken).
    let fits: Vec<Vec<f64>> = candidates.iter().map(|s| ticks_with(*s)).collect();
    fits.iter()
        .find(|t| (4..=6).contains(&t.len()))
        .or_else(|| fits.iter().find(|t| t.len() <= 6))
        .cloned()
        .unwrap_or_else(|| vec![lo, hi])
}

/// Decimals that tell every tick apart (0 for whole numbers, else as many as the steps
/// need: a training loss from 0.272 to 0.280 ticks every 0.002).
fn tick_decimals(ticks: &[f64]) -> usize {
    (0..=6).find(|d| ticks.iter().all(|t| (t * 10f64.powi(*d as i32)).fract().abs() < 1e-6)).unwrap_or(6)
}

/// Drawing failed (only the SVG or pixel backend's own errors, which are not expected).
#[derive(Debug, thiserror::Error)]
#[error("drawing a figure: {0}")]
pub struct PlotError(String);

fn err<E: std::fmt::Debug>(e: E) -> PlotError {
    PlotError(format!("{e:?}"))
}

/// What every figure has above its plot: a title and, where the report is not comparable
/// to the paper, a visible note saying why (wrapped to the figure's width).
#[derive(Debug, Clone, Default)]
pub struct Header {
    pub title: String,
    /// Shown as "not comparable to the paper: ..." under the title; empty: nothing.
    pub caveats: Vec<String>,
}

// Layout in SVG pixels (the PNG doubles every one).
const MARGIN: i32 = 16;
const TITLE_SIZE: i32 = 18;
const NOTE_SIZE: i32 = 12;
const LABEL_SIZE: i32 = 14;
const TICK_SIZE: i32 = 12;
const LINE_H: i32 = 16;

impl Header {
    /// The note's lines for a figure `width` pixels wide.
    fn lines(&self, width: i32) -> Vec<String> {
        if self.caveats.is_empty() {
            return vec![];
        }
        // 2/3 em per character: a sans-serif face needs ~0.55, the PNG's glyphs 2/3.
        let per_line = ((width - 2 * MARGIN) as f64 / (2.0 / 3.0 * NOTE_SIZE as f64)).max(20.0) as usize;
        wrap(&format!("not comparable to the paper: {}", self.caveats.join(" ")), per_line)
    }

    fn height(&self, width: i32) -> i32 {
        MARGIN + TITLE_SIZE + 8 + self.lines(width).len() as i32 * LINE_H + 8
    }

    /// The narrowest figure that shows the title on one line.
    fn min_width(&self) -> i32 {
        // 0.7 em per character: room for the PNG's glyphs too.
        2 * MARGIN + (0.7 * TITLE_SIZE as f64 * self.title.chars().count() as f64) as i32
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, width: i32, s: f64) -> Result<(), PlotError> {
        let u = |v: i32| (v as f64 * s).round() as i32;
        root.draw(&Text::new(
            self.title.clone(),
            (u(MARGIN), u(MARGIN)),
            font(TITLE_SIZE, s).pos(Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(err)?;
        for (k, line) in self.lines(width).into_iter().enumerate() {
            let y = MARGIN + TITLE_SIZE + 8 + k as i32 * LINE_H;
            let style = font(NOTE_SIZE, s).color(&RGBColor(150, 30, 30)).pos(Pos::new(HPos::Left, VPos::Top));
            root.draw(&Text::new(line, (u(MARGIN), u(y)), style)).map_err(err)?;
        }
        Ok(())
    }
}

/// Words of `text` on lines of at most `width` characters (a longer word on its own line).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = vec![];
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 1 + word.chars().count() <= width => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// A text style of `size` pixels (at scale `s`). plotters writes a font's size divided by
/// 1.24 (its em box): multiplied back, so the SVG says `font-size="14"` for 14.
fn font(size: i32, s: f64) -> TextStyle<'static> {
    (FONT, size as f64 * s * 1.24).into_font().color(&BLACK)
}

/// An SVG document: the caveats as an XML comment first (so a reader of the file sees
/// them before anything else), then plotters' `<svg>`.
fn svg_document(body: String, caveats: &[String]) -> String {
    if caveats.is_empty() {
        return body;
    }
    // "--" may not appear inside an XML comment.
    let text: String = caveats.iter().map(|c| format!("  - {}\n", c.replace("--", "- -"))).collect();
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- NOT COMPARABLE TO THE PAPER:\n{text}-->\n{body}")
}

/// A figure as SVG.
fn render_svg(
    size: (i32, i32),
    caveats: &[String],
    draw: impl Fn(&DrawingArea<SVGBackend, Shift>, f64) -> Result<(), PlotError>,
) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (size.0 as u32, size.1 as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root, 1.0)?;
        root.present().map_err(err)?;
    }
    Ok(svg_document(svg, caveats))
}

/// A figure as (SVG, PNG at twice the SVG's size).
fn render(
    size: (i32, i32),
    caveats: &[String],
    draw: impl Fn(&DrawingArea<SVGBackend, Shift>, f64) -> Result<(), PlotError>,
    draw_png: impl Fn(&DrawingArea<Raster<'_>, Shift>, f64) -> Result<(), PlotError>,
) -> Result<(String, Vec<u8>), PlotError> {
    let svg = render_svg(size, caveats, draw)?;
    let mut img = RgbImage::from_pixel(2 * size.0 as u32, 2 * size.1 as u32, Rgb([255, 255, 255]));
    draw_png(&Raster::new(&mut img).into_drawing_area(), 2.0)?;
    Ok((svg, png(&img)))
}

// ---------------------------------------------------------------------------------------
// Heat maps

/// One grid of a heat-map figure, `values[row][col]`; None = no data (drawn grey, "-").
#[derive(Debug, Clone)]
pub struct Panel {
    /// Above the grid: `ours`, `paper (Table 5)`.
    pub name: String,
    pub values: Vec<Vec<Option<f64>>>,
}

/// Grids side by side on one colour scale (the range of all of them), each cell annotated
/// with its value, and a colour bar with labelled ticks.
#[derive(Debug, Clone)]
pub struct HeatMaps {
    pub header: Header,
    pub x_label: String,
    pub y_label: String,
    pub x_ticks: Vec<String>,
    pub y_ticks: Vec<String>,
    pub panels: Vec<Panel>,
    /// Names the colour bar's values: `I-AUROC (%)`.
    pub unit: String,
}

const CELL_W: i32 = 64;
const CELL_H: i32 = 40;
/// Left of each grid: its tick labels and its rotated axis label.
const Y_AXIS_W: i32 = 64;
const PANEL_GAP: i32 = 32;
const PANEL_TITLE_H: i32 = 24;
/// Below each grid: tick labels, then the axis label.
const X_AXIS_H: i32 = 48;
const BAR_GAP: i32 = 28;
const BAR_W: i32 = 18;
/// Right of the bar: tick labels, then the rotated unit.
const BAR_LABELS_W: i32 = 72;
/// The grids and the colour bar are at least this tall, so the bar's ticks do not crowd
/// and the rotated T_e label fits beside a grid of one or two rows.
const MIN_GRID_H: i32 = 180;

impl HeatMaps {
    /// The colour scale: the ticks over every panel's values (min..max of them all).
    pub fn scale(&self) -> Vec<f64> {
        let values: Vec<f64> = self
            .panels
            .iter()
            .flat_map(|p| p.values.iter().flatten().flatten().copied())
            .filter(|v| v.is_finite())
            .collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        nice_ticks(lo, hi)
    }

    /// Rows are taller than [`CELL_H`] when there are few of them (see [`MIN_GRID_H`]).
    fn cell_h(&self) -> i32 {
        CELL_H.max((MIN_GRID_H + self.y_ticks.len() as i32 - 1) / self.y_ticks.len().max(1) as i32)
    }

    fn grid_h(&self) -> i32 {
        self.y_ticks.len() as i32 * self.cell_h()
    }

    fn panel_w(&self) -> i32 {
        Y_AXIS_W + self.x_ticks.len() as i32 * CELL_W
    }

    /// (width, height) in SVG pixels.
    pub fn size(&self) -> (i32, i32) {
        let n = self.panels.len() as i32;
        let w = (2 * MARGIN + n * self.panel_w() + (n - 1).max(0) * PANEL_GAP + BAR_GAP + BAR_W + BAR_LABELS_W)
            .max(self.header.min_width());
        (w, self.header.height(w) + PANEL_TITLE_H + self.grid_h() + X_AXIS_H + MARGIN)
    }

    /// (SVG, PNG at 2x).
    pub fn render(&self) -> Result<(String, Vec<u8>), PlotError> {
        render(self.size(), &self.header.caveats, |a, s| self.draw(a, s), |a, s| self.draw(a, s))
    }

    /// The SVG alone (`ras serve`'s pages).
    pub fn render_svg(&self) -> Result<String, PlotError> {
        render_svg(self.size(), &self.header.caveats, |a, s| self.draw(a, s))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, s: f64) -> Result<(), PlotError> {
        let u = |v: i32| (v as f64 * s).round() as i32;
        let (width, _) = self.size();
        self.header.draw(root, width, s)?;
        let ticks = self.scale();
        let (lo, hi) = (ticks[0], ticks[ticks.len() - 1]);
        let t = |v: f64| (v - lo) / (hi - lo);
        let top = self.header.height(width) + PANEL_TITLE_H;
        for (k, panel) in self.panels.iter().enumerate() {
            let left = MARGIN + k as i32 * (self.panel_w() + PANEL_GAP) + Y_AXIS_W;
            self.draw_panel(root, panel, (left, top), &t, s)?;
        }
        // The colour bar: highest value at the top, 1-pixel bands (2 in the PNG).
        let n = self.panels.len() as i32;
        let bx = MARGIN + n * self.panel_w() + (n - 1).max(0) * PANEL_GAP + BAR_GAP;
        let bh = self.grid_h();
        for y in 0..u(bh) {
            let c = colour_map(1.0 - y as f64 / (u(bh) - 1).max(1) as f64);
            root.draw(&Rectangle::new([(u(bx), u(top) + y), (u(bx + BAR_W), u(top) + y + 1)], c.filled()))
                .map_err(err)?;
        }
        root.draw(&Rectangle::new([(u(bx), u(top)), (u(bx + BAR_W), u(top + bh))], BLACK.stroke_width(1)))
            .map_err(err)?;
        let decimals = tick_decimals(&ticks);
        for v in &ticks {
            let y = u(top) + ((1.0 - t(*v)) * (u(bh) as f64)).round() as i32;
            root.draw(&PathElement::new(
                vec![(u(bx + BAR_W), y), (u(bx + BAR_W + 5), y)],
                BLACK.stroke_width(u(1) as u32),
            ))
            .map_err(err)?;
            let style = font(TICK_SIZE, s).pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(format!("{v:.decimals$}"), (u(bx + BAR_W + 8), y), style)).map_err(err)?;
        }
        let style = font(LABEL_SIZE, s).pos(Pos::new(HPos::Center, VPos::Center)).transform(FontTransform::Rotate90);
        root.draw(&Text::new(self.unit.clone(), (u(bx + BAR_W + BAR_LABELS_W - 10), u(top + bh / 2)), style))
            .map_err(err)?;
        Ok(())
    }

    /// One grid with its name above, its axes' tick labels and labels; `(left, top)`: the
    /// grid's top-left corner.
    fn draw_panel<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        panel: &Panel,
        (left, top): (i32, i32),
        t: &dyn Fn(f64) -> f64,
        s: f64,
    ) -> Result<(), PlotError> {
        let u = |v: i32| (v as f64 * s).round() as i32;
        let (nx, ny) = (self.x_ticks.len() as i32, self.y_ticks.len() as i32);
        let cell_h = self.cell_h();
        let (gw, gh) = (nx * CELL_W, ny * cell_h);
        let centre = |v: i32| Pos::new(HPos::Center, v_pos(v));
        root.draw(&Text::new(panel.name.clone(), (u(left + gw / 2), u(top - 6)), font(LABEL_SIZE, s).pos(centre(1))))
            .map_err(err)?;
        for r in 0..ny {
            for c in 0..nx {
                let v = panel
                    .values
                    .get(r as usize)
                    .and_then(|row| row.get(c as usize))
                    .copied()
                    .flatten()
                    .filter(|v| v.is_finite());
                let (x0, y0) = (left + c * CELL_W, top + r * cell_h);
                let colour = v.map(|v| colour_map(t(v))).unwrap_or(MISSING);
                // A white gap between cells keeps equal neighbours apart.
                root.draw(&Rectangle::new(
                    [(u(x0) + 1, u(y0) + 1), (u(x0 + CELL_W) - 1, u(y0 + cell_h) - 1)],
                    colour.filled(),
                ))
                .map_err(err)?;
                let label = v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
                // Dark text on light cells, white on dark ones (by luma).
                let luma = 0.299 * colour.0 as f64 + 0.587 * colour.1 as f64 + 0.114 * colour.2 as f64;
                let ink = if luma > 140.0 { BLACK } else { WHITE };
                let style = font(TICK_SIZE, s).color(&ink).pos(centre(0));
                root.draw(&Text::new(label, (u(x0 + CELL_W / 2), u(y0 + cell_h / 2)), style)).map_err(err)?;
            }
        }
        for (c, label) in self.x_ticks.iter().enumerate() {
            let x = left + c as i32 * CELL_W + CELL_W / 2;
            root.draw(&Text::new(label.clone(), (u(x), u(top + gh + 6)), font(TICK_SIZE, s).pos(centre(-1))))
                .map_err(err)?;
        }
        root.draw(&Text::new(
            self.x_label.clone(),
            (u(left + gw / 2), u(top + gh + 26)),
            font(LABEL_SIZE, s).pos(centre(-1)),
        ))
        .map_err(err)?;
        for (r, label) in self.y_ticks.iter().enumerate() {
            let y = top + r as i32 * cell_h + cell_h / 2;
            root.draw(&Text::new(
                label.clone(),
                (u(left - 8), u(y)),
                font(TICK_SIZE, s).pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(err)?;
        }
        let style = font(LABEL_SIZE, s).pos(Pos::new(HPos::Center, VPos::Center)).transform(FontTransform::Rotate270);
        root.draw(&Text::new(self.y_label.clone(), (u(left - Y_AXIS_W + 14), u(top + gh / 2)), style)).map_err(err)?;
        Ok(())
    }
}

/// 1: text above the point, 0: centred on it, -1: below it.
fn v_pos(v: i32) -> VPos {
    match v {
        1 => VPos::Bottom,
        0 => VPos::Center,
        _ => VPos::Top,
    }
}

// ---------------------------------------------------------------------------------------
// Curves

/// A linear axis whose ticks are exactly `ticks` (plotters would pick its own; its
/// `with_key_points` does the same but loses the f64 axis' label formatting).
struct Ticked {
    range: std::ops::Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.range.start, self.range.end);
        let f = if b > a { (v - a) / (b - a) } else { 0.5 };
        limit.0 + (f * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, _: H) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

/// A line of a curve plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// In the legend: `RAS`, `T_e=1`, `RAS (paper)`.
    pub label: String,
    /// Palette index: a series and the paper's values for it share a colour.
    pub colour: usize,
    pub points: Vec<(f64, f64)>,
    /// The paper's values: dashed, hollow markers.
    pub paper: bool,
}

/// Lines of (x, y) points over labelled axes with ticks, and a legend right of the plot.
#[derive(Debug, Clone)]
pub struct Curves {
    pub header: Header,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

const PLOT_W: i32 = 420;
const PLOT_H: i32 = 260;
/// Left of the plot: y tick labels and the rotated y label.
const CV_Y_AXIS_W: i32 = 64;
/// Below the plot: x tick labels and the x label.
const CV_X_AXIS_H: i32 = 48;
const LEGEND_SAMPLE_W: i32 = 32;

impl Curves {
    fn legend_w(&self) -> i32 {
        let chars = self.series.iter().map(|s| s.label.chars().count()).max().unwrap_or(0) as f64;
        MARGIN + LEGEND_SAMPLE_W + 8 + (0.6 * LABEL_SIZE as f64 * chars) as i32
    }

    /// (width, height) in SVG pixels.
    pub fn size(&self) -> (i32, i32) {
        let w = (2 * MARGIN + CV_Y_AXIS_W + PLOT_W + self.legend_w()).max(self.header.min_width());
        let legend_h = self.series.len() as i32 * (LINE_H + 6);
        (w, self.header.height(w) + MARGIN + PLOT_H.max(legend_h) + CV_X_AXIS_H + MARGIN)
    }

    /// The x ticks: the points' own x values (noise scales) when there are few, else
    /// round numbers; and the y ticks, round numbers over every series.
    pub fn ticks(&self) -> (Vec<f64>, Vec<f64>) {
        let mut xs: Vec<f64> =
            self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).filter(|v| v.is_finite()).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let ys: Vec<f64> =
            self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| v.is_finite()).collect();
        let range = |v: &[f64]| {
            (v.iter().copied().fold(f64::INFINITY, f64::min), v.iter().copied().fold(f64::NEG_INFINITY, f64::max))
        };
        let x_ticks = if (2..=8).contains(&xs.len()) { xs.clone() } else { nice_ticks(range(&xs).0, range(&xs).1) };
        (x_ticks, nice_ticks(range(&ys).0, range(&ys).1))
    }

    /// (SVG, PNG at 2x).
    pub fn render(&self) -> Result<(String, Vec<u8>), PlotError> {
        render(self.size(), &self.header.caveats, |a, s| self.draw(a, s), |a, s| self.draw(a, s))
    }

    /// The SVG alone (`ras serve`'s charts: a page shows no PNG).
    pub fn render_svg(&self) -> Result<String, PlotError> {
        render_svg(self.size(), &self.header.caveats, |a, s| self.draw(a, s))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, s: f64) -> Result<(), PlotError> {
        let u = |v: i32| (v as f64 * s).round() as i32;
        let (width, height) = self.size();
        self.header.draw(root, width, s)?;
        let top = self.header.height(width) + MARGIN;
        let (x_ticks, y_ticks) = self.ticks();
        let (x0, x1) = (x_ticks[0], x_ticks[x_ticks.len() - 1]);
        // Room either side of the first and last x so end markers are not cut in half.
        let pad = (x1 - x0).max(1.0) * 0.04;
        let area = root.margin(u(top), u(height - top - PLOT_H - CV_X_AXIS_H), u(MARGIN), u(self.legend_w()));
        let mut chart = ChartBuilder::on(&area)
            .x_label_area_size(u(CV_X_AXIS_H))
            .y_label_area_size(u(CV_Y_AXIS_W))
            .build_cartesian_2d(
                Ticked { range: (x0 - pad)..(x1 + pad), ticks: x_ticks.clone() },
                Ticked { range: y_ticks[0]..y_ticks[y_ticks.len() - 1], ticks: y_ticks.clone() },
            )
            .map_err(err)?;
        let (xd, yd) = (tick_decimals(&x_ticks), tick_decimals(&y_ticks));
        chart
            .configure_mesh()
            .x_desc(self.x_label.clone())
            .y_desc(self.y_label.clone())
            .x_label_formatter(&|v| format!("{v:.xd$}"))
            .y_label_formatter(&|v| format!("{v:.yd$}"))
            .label_style(font(TICK_SIZE, s))
            .axis_desc_style(font(LABEL_SIZE, s))
            .bold_line_style(GRID_LINE.stroke_width(u(1) as u32))
            .light_line_style(TRANSPARENT)
            .axis_style(BLACK.stroke_width(u(1) as u32))
            .set_all_tick_mark_size(u(5))
            .draw()
            .map_err(err)?;
        for series in &self.series {
            let colour = series_colour(series.colour);
            let line = colour.stroke_width(u(2) as u32);
            if series.paper {
                chart.draw_series(DashedLineSeries::new(series.points.clone(), u(7), u(5), line)).map_err(err)?;
                chart
                    .draw_series(
                        series.points.iter().map(|p| TriangleMarker::new(*p, u(5), colour.stroke_width(u(2) as u32))),
                    )
                    .map_err(err)?;
            } else {
                chart.draw_series(LineSeries::new(series.points.clone(), line)).map_err(err)?;
                chart.draw_series(series.points.iter().map(|p| Circle::new(*p, u(4), colour.filled()))).map_err(err)?;
            }
        }
        self.draw_legend(root, (width - self.legend_w() + MARGIN, top + 8), s)
    }

    /// The legend: a sample of each line (dashed with a triangle for the paper's) and its label.
    fn draw_legend<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        (x, y): (i32, i32),
        s: f64,
    ) -> Result<(), PlotError> {
        let u = |v: i32| (v as f64 * s).round() as i32;
        for (k, series) in self.series.iter().enumerate() {
            let yy = y + k as i32 * (LINE_H + 6) + LINE_H / 2;
            let colour = series_colour(series.colour);
            let line = colour.stroke_width(u(2) as u32);
            let mid = (u(x + LEGEND_SAMPLE_W / 2), u(yy));
            if series.paper {
                for (a, b) in [(0, 10), (16, 26)] {
                    root.draw(&PathElement::new(vec![(u(x + a), u(yy)), (u(x + b), u(yy))], line)).map_err(err)?;
                }
                root.draw(&TriangleMarker::new(mid, u(5), colour.stroke_width(u(2) as u32))).map_err(err)?;
            } else {
                root.draw(&PathElement::new(vec![(u(x), u(yy)), (u(x + LEGEND_SAMPLE_W), u(yy))], line))
                    .map_err(err)?;
                root.draw(&Circle::new(mid, u(4), colour.filled())).map_err(err)?;
            }
            let style = font(LABEL_SIZE, s).pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(series.label.clone(), (u(x + LEGEND_SAMPLE_W + 8), u(yy)), style)).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_4_to_6_round_numbers_covering_the_range() {
        assert_eq!(nice_ticks(96.1, 97.8), vec![96.0, 96.5, 97.0, 97.5, 98.0]);
        assert_eq!(nice_ticks(0.0, 50.0), vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(nice_ticks(71.2, 88.9), vec![70.0, 75.0, 80.0, 85.0, 90.0]);
        assert_eq!(nice_ticks(50.0, 50.0), vec![49.0, 49.5, 50.0, 50.5, 51.0]);
        assert_eq!(nice_ticks(f64::INFINITY, f64::NEG_INFINITY), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        for (lo, hi) in [(0.3, 0.31), (12.0, 97.0), (96.93, 97.81), (1.0, 4.0), (-3.0, 2.5), (42.0, 99.99)] {
            let t = nice_ticks(lo, hi);
            assert!((4..=6).contains(&t.len()), "{lo}..{hi}: {t:?}");
            assert!(t[0] <= lo && *t.last().unwrap() >= hi, "{lo}..{hi}: {t:?}");
            let step = t[1] - t[0];
            assert!(t.windows(2).all(|w| ((w[1] - w[0]) - step).abs() < 1e-9), "{t:?}");
        }
        assert_eq!(tick_decimals(&[96.0, 96.5, 97.0]), 1);
        assert_eq!(tick_decimals(&[0.0, 10.0]), 0);
        assert_eq!(tick_decimals(&[0.25, 0.5]), 2);
    }

    #[test]
    fn small_steps_get_the_decimals_that_tell_ticks_apart() {
        let t = nice_ticks(0.2721, 0.2795);
        let d = tick_decimals(&t);
        let labels: Vec<String> = t.iter().map(|v| format!("{v:.d$}")).collect();
        let mut unique = labels.clone();
        unique.dedup();
        assert_eq!(labels, unique, "{t:?} as {labels:?}");
        assert_eq!(tick_decimals(&[0.0, 20.0, 40.0]), 0);
        assert_eq!(tick_decimals(&[0.5, 1.0, 1.5]), 1);
    }

    #[test]
    fn labels_numbers_and_wrapping() {
        assert_eq!(short_number(20.0), "20");
        assert_eq!(short_number(12.5), "12.5");
        assert_eq!(colour_map(0.0), RGBColor(68, 1, 84));
        assert_eq!(colour_map(1.0), RGBColor(253, 231, 37));
        assert_eq!(wrap("a bb ccc dddd", 6), vec!["a bb", "ccc", "dddd"]);
        let c = svg_document("<svg/>".into(), &["x -- y".into()]);
        assert!(c.contains("<!-- NOT COMPARABLE TO THE PAPER:\n  - x - - y\n-->"), "{c}");
    }

    fn heat_maps() -> HeatMaps {
        HeatMaps {
            header: Header { title: "I-AUROC (%) on mvtec".into(), caveats: vec!["2 epochs".into()] },
            x_label: "T_d".into(),
            y_label: "T_e".into(),
            x_ticks: vec!["1".into(), "2".into(), "3".into()],
            y_ticks: vec!["0".into(), "1".into()],
            panels: vec![
                Panel {
                    name: "ours".into(),
                    values: vec![vec![Some(91.0), Some(97.5), None], vec![Some(88.2), Some(95.0), Some(93.3)]],
                },
                Panel {
                    name: "paper".into(),
                    values: vec![vec![Some(97.0), Some(97.8), Some(98.0)], vec![None, Some(96.0), Some(96.5)]],
                },
            ],
            unit: "I-AUROC (%)".into(),
        }
    }

    #[test]
    fn heat_map_png_is_the_svg_at_twice_its_size_with_cells_on_the_colour_bar() {
        let h = heat_maps();
        assert_eq!(h.scale(), vec![88.0, 90.0, 92.0, 94.0, 96.0, 98.0], "one scale over both panels");
        let (svg, png) = h.render().unwrap();
        let (w, hh) = h.size();
        assert!(
            svg.contains(&format!("width=\"{w}\"")) && svg.contains(&format!("height=\"{hh}\"")),
            "{}",
            &svg[..300]
        );
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!((img.width() as i32, img.height() as i32), (2 * w, 2 * hh));
        // The paper's 97.8 cell (row 0, col 1 of the second panel) is 97.8 on the bar:
        // (97.8 - 88) / 10 of the way up. Sampled in the cell's corner, clear of its label.
        let top = h.header.height(w) + PANEL_TITLE_H;
        let left = MARGIN + h.panel_w() + PANEL_GAP + Y_AXIS_W;
        let px = *img.get_pixel(2 * (left + CELL_W + 4) as u32, 2 * (top + 4) as u32);
        let want = colour_map((97.8 - 88.0) / 10.0);
        assert_eq!(px, Rgb([want.0, want.1, want.2]));
        // A missing cell is grey.
        let left0 = MARGIN + Y_AXIS_W;
        assert_eq!(*img.get_pixel(2 * (left0 + 2 * CELL_W + 4) as u32, 2 * (top + 4) as u32), Rgb([190, 190, 190]));
        // Text was drawn: dark pixels in the title row.
        assert!((0..img.width()).any(|x| img.get_pixel(x, 2 * (MARGIN + 4) as u32).0[0] < 60), "no title text");
    }

    #[test]
    fn curves_render_with_ticks_at_the_noise_scales() {
        let c = Curves {
            header: Header { title: "noise".into(), caveats: vec![] },
            x_label: "test-time noise alpha".into(),
            y_label: "I-AUROC (%)".into(),
            series: vec![
                Series { label: "RAS".into(), colour: 0, points: vec![(0.0, 90.0), (30.0, 71.0)], paper: false },
                Series { label: "RAS (paper)".into(), colour: 0, points: vec![(0.0, 98.4), (30.0, 97.6)], paper: true },
            ],
        };
        assert_eq!(c.ticks(), (vec![0.0, 30.0], vec![70.0, 80.0, 90.0, 100.0]));
        let (svg, png) = c.render().unwrap();
        assert!(!svg.contains("NOT COMPARABLE"), "no caveats, no note");
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let texts: Vec<&str> =
            doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect();
        for label in ["0", "30", "70", "80", "100", "RAS", "RAS (paper)", "test-time noise alpha", "I-AUROC (%)"] {
            assert!(texts.contains(&label), "{label} missing from {texts:?}");
        }
        let size = doc
            .descendants()
            .find(|n| n.has_tag_name("text") && n.text().map(str::trim) == Some("RAS"))
            .unwrap()
            .attribute("font-size");
        assert_eq!(size.map(|s| s.parse::<f64>().unwrap().round()), Some(LABEL_SIZE as f64), "sizes as asked");
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width() as i32, img.height() as i32), (2 * c.size().0, 2 * c.size().1));
    }
}
