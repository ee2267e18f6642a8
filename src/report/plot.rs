//! PNG plots for `ras report`: a heat map (e.g. mean AUROC over T_e x T_d) and line
//! curves (e.g. AUROC against test-time noise). Drawn pixel by pixel with the `image`
//! crate and the public-domain 8x8 glyphs of `font8x8`, so a report needs no plotting
//! stack, no system fonts and nothing installed on a cluster node.

use image::{Rgb, RgbImage};

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
/// Missing heat-map cells: a grey that the colour map below never produces.
pub const MISSING: Rgb<u8> = Rgb([190, 190, 190]);
const GRID_LINE: Rgb<u8> = Rgb([225, 225, 225]);
/// Line colours (matplotlib's "tab10"): distinct from each other and on white.
const PALETTE: [Rgb<u8>; 10] = [
    Rgb([31, 119, 180]),
    Rgb([255, 127, 14]),
    Rgb([44, 160, 44]),
    Rgb([214, 39, 40]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
    Rgb([227, 119, 194]),
    Rgb([127, 127, 127]),
    Rgb([188, 189, 34]),
    Rgb([23, 190, 207]),
];

/// Colour of series `k` of a curve plot.
pub fn series_colour(k: usize) -> Rgb<u8> {
    PALETTE[k % PALETTE.len()]
}

/// Viridis (dark purple = low, yellow = high), 5 stops interpolated linearly: ordered in
/// lightness, so it reads in grey print too, and it never passes through grey.
pub fn colour_map(t: f64) -> Rgb<u8> {
    const STOPS: [[f64; 3]; 5] = [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 } * (STOPS.len() - 1) as f64;
    let k = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - k as f64;
    let c = |i: usize| (STOPS[k][i] + f * (STOPS[k + 1][i] - STOPS[k][i])).round() as u8;
    Rgb([c(0), c(1), c(2)])
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn fill(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, c: Rgb<u8>) {
    for yy in y..y + h {
        for xx in x..x + w {
            put(img, xx, yy, c);
        }
    }
}

/// Width in pixels of `s` drawn by `text`.
fn text_width(s: &str) -> i64 {
    8 * s.chars().count() as i64
}

/// `s` in 8x8 glyphs with its top-left corner at (x, y); clipped at the image's edges.
/// Non-ASCII characters are drawn as '?'.
fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, c: Rgb<u8>) {
    for (i, ch) in s.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY[if ch.is_ascii() { ch as usize } else { '?' as usize }];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                // font8x8: bit 0 is the leftmost pixel of the row.
                if bits >> col & 1 == 1 {
                    put(img, x + 8 * i as i64 + col, y + row as i64, c);
                }
            }
        }
    }
}

fn encode(img: &RgbImage) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png).expect("PNG encoding to memory");
    bytes.into_inner()
}

/// A number as a short label: 20 rather than 20.0, at most 2 decimals otherwise.
pub fn short_number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A grid of values, `values[row][col]`; None = no data (drawn grey).
pub struct HeatMap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_ticks: Vec<String>,
    pub y_ticks: Vec<String>,
    pub values: Vec<Vec<Option<f64>>>,
}

// Heat-map layout (pixels). Cells are wide enough for "100.0" in 8 px glyphs.
const HM_CELL_W: i64 = 72;
const HM_CELL_H: i64 = 40;
const HM_LEFT: i64 = 72;
const HM_TOP: i64 = 40;
const HM_BOTTOM: i64 = 40;
/// Room right of the cells for the colour bar and its labels.
const HM_LEGEND: i64 = 96;
const HM_BAR_GAP: i64 = 16;
const HM_BAR_W: i64 = 16;

pub fn heat_map_png(h: &HeatMap) -> Vec<u8> {
    encode(&heat_map_image(h))
}

fn heat_map_image(h: &HeatMap) -> RgbImage {
    let (nx, ny) = (h.x_ticks.len() as i64, h.y_ticks.len() as i64);
    let present: Vec<f64> = h.values.iter().flatten().flatten().copied().filter(|v| v.is_finite()).collect();
    let lo = present.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // One value (or all equal): the middle colour.
    let t = |v: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
    let cells_w = nx * HM_CELL_W;
    let cells_h = ny * HM_CELL_H;
    let width = (HM_LEFT + cells_w + HM_LEGEND).max(text_width(&h.title) + 16);
    let height = HM_TOP + cells_h + HM_BOTTOM;
    let mut img = RgbImage::from_pixel(width as u32, height as u32, WHITE);
    text(&mut img, 8, 8, &h.title, BLACK);
    // y axis label above the tick column; tick labels right-aligned left of the rows.
    text(&mut img, HM_LEFT - 8 - text_width(&h.y_label), HM_TOP - 14, &h.y_label, BLACK);
    for (r, label) in h.y_ticks.iter().enumerate() {
        text(&mut img, HM_LEFT - 8 - text_width(label), HM_TOP + r as i64 * HM_CELL_H + HM_CELL_H / 2 - 4, label, BLACK);
    }
    for (c, label) in h.x_ticks.iter().enumerate() {
        text(&mut img, HM_LEFT + c as i64 * HM_CELL_W + (HM_CELL_W - text_width(label)) / 2, HM_TOP + cells_h + 6, label, BLACK);
    }
    text(&mut img, HM_LEFT + (cells_w - text_width(&h.x_label)) / 2, HM_TOP + cells_h + 22, &h.x_label, BLACK);
    for r in 0..ny {
        for c in 0..nx {
            let v = h.values.get(r as usize).and_then(|row| row.get(c as usize)).copied().flatten().filter(|v| v.is_finite());
            let (x0, y0) = (HM_LEFT + c * HM_CELL_W, HM_TOP + r * HM_CELL_H);
            let colour = v.map(|v| colour_map(t(v))).unwrap_or(MISSING);
            // A 1-pixel white gap between cells keeps equal neighbours apart.
            fill(&mut img, x0 + 1, y0 + 1, HM_CELL_W - 2, HM_CELL_H - 2, colour);
            let label = v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
            // Dark text on light cells, white on dark ones (by luma).
            let luma = 0.299 * colour.0[0] as f64 + 0.587 * colour.0[1] as f64 + 0.114 * colour.0[2] as f64;
            let ink = if luma > 140.0 { BLACK } else { WHITE };
            text(&mut img, x0 + (HM_CELL_W - text_width(&label)) / 2, y0 + HM_CELL_H / 2 - 4, &label, ink);
        }
    }
    // Colour bar: the highest value at the top, labelled with the range.
    if !present.is_empty() {
        let bx = HM_LEFT + cells_w + HM_BAR_GAP;
        for k in 0..cells_h {
            let tt = if cells_h > 1 { 1.0 - k as f64 / (cells_h - 1) as f64 } else { 0.5 };
            fill(&mut img, bx, HM_TOP + k, HM_BAR_W, 1, colour_map(tt));
        }
        text(&mut img, bx + HM_BAR_W + 4, HM_TOP, &format!("{hi:.1}"), BLACK);
        text(&mut img, bx + HM_BAR_W + 4, HM_TOP + cells_h - 8, &format!("{lo:.1}"), BLACK);
    }
    img
}

/// Named lines of (x, y) points.
pub struct Curves {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

// Curve-plot layout (pixels): the plot area is CV_W x CV_H at (CV_LEFT, CV_TOP).
const CV_LEFT: i64 = 64;
const CV_TOP: i64 = 40;
const CV_W: i64 = 360;
const CV_H: i64 = 220;
const CV_RIGHT: i64 = 24;
/// Below the plot area: x tick labels and the x axis label, then the legend.
const CV_BELOW: i64 = 44;
const CV_LEGEND_ROW: i64 = 14;

/// The y range: the data's, widened outward to multiples of 5 (at least 5 wide) and kept
/// within [0, 100] when the data is: round numbers at the axis ends.
fn y_range(ys: &[f64]) -> (f64, f64) {
    let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (mut a, mut b) = ((lo / 5.0).floor() * 5.0, (hi / 5.0).ceil() * 5.0);
    if b - a < 5.0 {
        (a, b) = (a - 5.0, b + 5.0);
    }
    if lo >= 0.0 {
        a = a.max(0.0);
    }
    if hi <= 100.0 {
        b = b.min(100.0);
    }
    (a, b)
}

pub fn curves_png(c: &Curves) -> Vec<u8> {
    encode(&curves_image(c))
}

fn curves_image(c: &Curves) -> RgbImage {
    let ys: Vec<f64> = c.series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).filter(|v| v.is_finite()).collect();
    let mut xs: Vec<f64> = c.series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).filter(|v| v.is_finite()).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let (y0, y1) = if ys.is_empty() { (0.0, 100.0) } else { y_range(&ys) };
    let (x0, x1) = match (xs.first(), xs.last()) {
        (Some(&a), Some(&b)) if b > a => (a, b),
        (Some(&a), _) => (a - 1.0, a + 1.0),
        _ => (0.0, 1.0),
    };
    let px = |x: f64| CV_LEFT as f64 + (x - x0) / (x1 - x0) * (CV_W - 1) as f64;
    let py = |y: f64| CV_TOP as f64 + (y1 - y) / (y1 - y0) * (CV_H - 1) as f64;
    let legend_w = c.series.iter().map(|(n, _)| 28 + text_width(n)).max().unwrap_or(0);
    let width = (CV_LEFT + CV_W + CV_RIGHT).max(CV_LEFT + legend_w + 8).max(text_width(&c.title) + 16);
    let height = CV_TOP + CV_H + CV_BELOW + CV_LEGEND_ROW * c.series.len() as i64 + 8;
    let mut img = RgbImage::from_pixel(width as u32, height as u32, WHITE);
    text(&mut img, 8, 8, &c.title, BLACK);
    text(&mut img, 8, CV_TOP - 14, &c.y_label, BLACK);
    // y ticks every 1, 2, 5, 10, ... whichever gives at most 8 intervals.
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 25.0, 50.0].into_iter().find(|s| (y1 - y0) / s <= 8.0).unwrap_or(100.0);
    let mut v = (y0 / step).ceil() * step;
    while v <= y1 + 1e-9 {
        let y = py(v).round() as i64;
        fill(&mut img, CV_LEFT, y, CV_W, 1, GRID_LINE);
        let label = short_number(v);
        text(&mut img, CV_LEFT - 6 - text_width(&label), y - 4, &label, BLACK);
        v += step;
    }
    for &x in &xs {
        let label = short_number(x);
        text(&mut img, px(x).round() as i64 - text_width(&label) / 2, CV_TOP + CV_H + 6, &label, BLACK);
    }
    text(&mut img, CV_LEFT + (CV_W - text_width(&c.x_label)) / 2, CV_TOP + CV_H + 22, &c.x_label, BLACK);
    // Axes box, then the lines over it.
    fill(&mut img, CV_LEFT - 1, CV_TOP - 1, CV_W + 2, 1, BLACK);
    fill(&mut img, CV_LEFT - 1, CV_TOP + CV_H, CV_W + 2, 1, BLACK);
    fill(&mut img, CV_LEFT - 1, CV_TOP - 1, 1, CV_H + 2, BLACK);
    fill(&mut img, CV_LEFT + CV_W, CV_TOP - 1, 1, CV_H + 2, BLACK);
    for (k, (name, points)) in c.series.iter().enumerate() {
        let colour = series_colour(k);
        let pts: Vec<(f64, f64)> = points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()).map(|&(x, y)| (px(x), py(y))).collect();
        for w in pts.windows(2) {
            // A 3-pixel brush stepped along the segment (half-pixel steps leave no gaps).
            let (a, b) = (w[0], w[1]);
            let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()) * 2.0).ceil().max(1.0) as i64;
            for i in 0..=n {
                let f = i as f64 / n as f64;
                let (x, y) = (a.0 + f * (b.0 - a.0), a.1 + f * (b.1 - a.1));
                fill(&mut img, x.round() as i64 - 1, y.round() as i64 - 1, 3, 3, colour);
            }
        }
        for &(x, y) in &pts {
            fill(&mut img, x.round() as i64 - 3, y.round() as i64 - 3, 7, 7, colour);
        }
        let ly = CV_TOP + CV_H + CV_BELOW + k as i64 * CV_LEGEND_ROW;
        fill(&mut img, CV_LEFT, ly + 3, 20, 3, colour);
        text(&mut img, CV_LEFT + 28, ly, name, BLACK);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png: &[u8]) -> RgbImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png).expect("a PNG").to_rgb8()
    }

    fn dist(a: Rgb<u8>, b: Rgb<u8>) -> i64 {
        (0..3).map(|i| (a.0[i] as i64 - b.0[i] as i64).pow(2)).sum()
    }

    #[test]
    fn heat_map_colours_follow_the_values_and_the_legend() {
        // 2 rows x 3 columns, one cell missing; values deliberately not in reading order.
        let values = vec![vec![Some(91.0), Some(97.5), None], vec![Some(88.2), Some(95.0), Some(93.3)]];
        let h = HeatMap {
            title: "t".into(),
            x_label: "T_d".into(),
            y_label: "T_e".into(),
            x_ticks: vec!["1".into(), "2".into(), "3".into()],
            y_ticks: vec!["0".into(), "1".into()],
            values: values.clone(),
        };
        let img = decode(&heat_map_png(&h));
        assert_eq!((img.width() as i64, img.height() as i64), (HM_LEFT + 3 * HM_CELL_W + HM_LEGEND, HM_TOP + 2 * HM_CELL_H + HM_BOTTOM));
        // The colour bar, read from the picture: row k from the top.
        let bar_x = (HM_LEFT + 3 * HM_CELL_W + HM_BAR_GAP + HM_BAR_W / 2) as u32;
        let bar: Vec<Rgb<u8>> = (0..2 * HM_CELL_H).map(|k| *img.get_pixel(bar_x, (HM_TOP + k) as u32)).collect();
        // Each cell's colour (sampled in its corner, clear of the label) located on the bar:
        // height above the bar's bottom of the nearest bar colour.
        let mut located: Vec<(f64, i64)> = vec![];
        for (r, row) in values.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let px = *img.get_pixel((HM_LEFT + c as i64 * HM_CELL_W + 4) as u32, (HM_TOP + r as i64 * HM_CELL_H + 4) as u32);
                let (k, d) = bar.iter().enumerate().map(|(k, b)| (k, dist(px, *b))).min_by_key(|x| x.1).unwrap();
                match v {
                    None => {
                        assert_eq!(px, MISSING, "missing cell ({r}, {c}) is grey");
                        assert!(d > 100, "grey must not be a legend colour (distance {d})");
                    }
                    Some(v) => {
                        assert!(d <= 12, "cell ({r}, {c}) colour {px:?} is not on the colour bar (distance {d})");
                        located.push((*v, 2 * HM_CELL_H - 1 - k as i64));
                    }
                }
            }
        }
        located.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in located.windows(2) {
            assert!(w[1].1 > w[0].1, "higher value must sit higher on the bar: {located:?}");
        }
        assert!(located[0].1 <= 1 && located[4].1 >= 2 * HM_CELL_H - 2, "extremes at the bar's ends: {located:?}");
    }

    #[test]
    fn curve_passes_through_its_points_at_the_expected_height() {
        // y from 70 to 90 (multiples of 5 already): y range [70, 90].
        let c = Curves {
            title: "noise".into(),
            x_label: "scale".into(),
            y_label: "I-AUROC".into(),
            series: vec![("a".into(), vec![(0.0, 90.0), (50.0, 70.0)]), ("b".into(), vec![(0.0, 75.0), (50.0, 75.0)])],
        };
        let img = decode(&curves_png(&c));
        // Independent of the drawing code: the plot area spans CV_W x CV_H pixels from
        // (CV_LEFT, CV_TOP); y = 90 is its top row, y = 70 its bottom row.
        let x = (CV_LEFT as f64 + 0.2 * (CV_W - 1) as f64).round() as u32; // scale 10
        let row = |y: f64| (CV_TOP as f64 + (90.0 - y) / 20.0 * (CV_H - 1) as f64).round() as u32;
        let near = |y: u32, colour: Rgb<u8>| (y - 1..=y + 1).any(|yy| *img.get_pixel(x, yy) == colour);
        // Line a at scale 10 is at 90 - 20 * 10 / 50 = 86; line b is flat at 75.
        assert!(near(row(86.0), series_colour(0)), "line a at y=86");
        assert!(!near(row(86.0) - 12, series_colour(0)) && !near(row(86.0) + 12, series_colour(0)), "line a only there");
        assert!(!near(row(74.0), series_colour(0)), "not mirrored");
        assert!(near(row(75.0), series_colour(1)), "line b at y=75");
        assert!(!near(row(85.0), series_colour(1)));
        // End points: markers at the axis ends.
        assert_eq!(*img.get_pixel(CV_LEFT as u32 + 2, row(90.0)), series_colour(0));
        assert_eq!(*img.get_pixel((CV_LEFT + CV_W - 3) as u32, row(70.0)), series_colour(0));
    }

    #[test]
    fn ranges_and_labels() {
        assert_eq!(y_range(&[71.2, 88.9]), (70.0, 90.0));
        assert_eq!(y_range(&[100.0, 100.0]), (95.0, 100.0));
        assert_eq!(y_range(&[50.0]), (45.0, 55.0));
        assert_eq!(short_number(20.0), "20");
        assert_eq!(short_number(12.5), "12.5");
        assert_eq!(colour_map(0.0), Rgb([68, 1, 84]));
        assert_eq!(colour_map(1.0), Rgb([253, 231, 37]));
    }
}
