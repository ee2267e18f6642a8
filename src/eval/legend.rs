//! What a heat-map picture needs to be read: the colour ramp, a colour bar with its scale
//! (0 at the bottom, the scale's top value at the top) and the threshold marked on it,
//! and text lines (the score against the threshold, the verdict) in 8x8 glyphs.

/// Width of the colour-bar panel right of a picture's panels.
pub const BAR_PANEL: u32 = 72;
/// The bar's columns within its panel ([start, end)).
pub const BAR_X: (u32, u32) = (8, 20);
/// Rows above and below the bar (its end labels sit there).
pub const BAR_MARGIN: u32 = 8;
/// The threshold's mark across the bar (a colour the ramp never takes).
pub const THRESHOLD_MARK: [u8; 3] = [255, 255, 255];
/// Text colours of the verdicts.
pub const ANOMALOUS: [u8; 3] = [255, 64, 64];
pub const NORMAL: [u8; 3] = [96, 255, 96];
pub const PLAIN: [u8; 3] = [255, 255, 255];
const LABEL: [u8; 3] = [200, 200, 200];
const BACKGROUND: [u8; 3] = [24, 24, 24];

/// Blue -> cyan -> yellow -> red for t in [0, 1] (a "jet"-like ramp; never white).
pub fn heat(t: f32) -> [f32; 3] {
    let c = |x: f32| x.clamp(0.0, 1.0);
    [c(1.5 - (4.0 * t - 3.0).abs()), c(1.5 - (4.0 * t - 2.0).abs()), c(1.5 - (4.0 * t - 1.0).abs())]
}

/// A line of text drawn on a picture, in an RGB colour.
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    pub text: String,
    pub colour: [u8; 3],
}

/// The colour scale of a heat map: values from 0 to `vmax`, and the threshold an image's
/// score is compared with (None: the class has none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub vmax: f64,
    pub threshold: Option<f64>,
}

/// "score X >= threshold Y: ANOMALOUS" (red), "score X < threshold Y: normal" (green), or
/// "score X (no threshold)" (white): what a prediction picture says of its image.
pub fn verdict_caption(score: f32, threshold: Option<f64>) -> Caption {
    match threshold {
        Some(t) if f64::from(score) >= t => {
            Caption { text: format!("score {score:.4} >= threshold {t:.4}: ANOMALOUS"), colour: ANOMALOUS }
        }
        Some(t) => Caption { text: format!("score {score:.4} < threshold {t:.4}: normal"), colour: NORMAL },
        None => Caption { text: format!("score {score:.4} (no threshold for its class)"), colour: PLAIN },
    }
}

/// The row of `value` on a bar drawn beside a `height`-row panel (values beyond the scale
/// at its ends).
pub fn bar_row(value: f64, vmax: f64, height: u32) -> u32 {
    let (top, bottom) = (BAR_MARGIN, height.saturating_sub(BAR_MARGIN + 1).max(BAR_MARGIN));
    let t = (value / vmax.max(1e-12)).clamp(0.0, 1.0);
    bottom - (t * f64::from(bottom - top)).round() as u32
}

/// A scale value in at most 6 characters.
fn short(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if a < 10.0 {
        format!("{v:.3}")
    } else if a < 100.0 {
        format!("{v:.2}")
    } else if a < 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0e}")
    }
}

/// Draws the colour bar of `scale` in the columns [x0, x0 + BAR_PANEL) over `height`
/// rows: the ramp, "0" and the top value, the threshold as a line across the bar with its
/// value, and the image's `score` as a small mark left of the bar.
pub fn draw_colour_bar(img: &mut image::RgbImage, x0: u32, height: u32, scale: &Scale, score: f64) {
    for y in 0..height {
        for x in x0..x0 + BAR_PANEL {
            put(img, x, y, BACKGROUND);
        }
    }
    let (top, bottom) = (bar_row(scale.vmax, scale.vmax, height), bar_row(0.0, scale.vmax, height));
    for y in top..=bottom {
        let t = f64::from(bottom - y) / f64::from((bottom - top).max(1));
        let c = heat(t as f32).map(|v| (255.0 * v).round() as u8);
        for x in x0 + BAR_X.0..x0 + BAR_X.1 {
            put(img, x, y, c);
        }
    }
    let label_x = x0 + BAR_X.1 + 4;
    draw_text(img, label_x, top.saturating_sub(4), 1, &short(scale.vmax), LABEL);
    draw_text(img, label_x, bottom.saturating_sub(3), 1, "0", LABEL);
    // The score: a small wedge pointing at its row.
    let s = bar_row(score, scale.vmax, height);
    for (dx, half) in [(1u32, 3u32), (2, 3), (3, 2), (4, 2), (5, 1), (6, 0)] {
        for y in s.saturating_sub(half)..=s + half {
            put(img, x0 + dx, y, PLAIN);
        }
    }
    if let Some(t) = scale.threshold {
        let y = bar_row(t, scale.vmax, height);
        for x in x0 + BAR_X.0 - 2..x0 + BAR_X.1 + 2 {
            put(img, x, y, THRESHOLD_MARK);
        }
        // Its value beside the line, clear of the end labels where the panel allows.
        let ly = y.saturating_sub(3).clamp(top + 6, bottom.saturating_sub(12).max(top + 6));
        draw_text(img, label_x, ly, 1, &short(t), THRESHOLD_MARK);
    }
}

/// `lines` split at spaces so that each holds at most `width` characters (a longer word
/// stays whole).
pub fn wrap(lines: &[Caption], width: usize) -> Vec<Caption> {
    let mut out = vec![];
    for c in lines {
        let mut line = String::new();
        for word in c.text.split(' ') {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                out.push(Caption { text: std::mem::take(&mut line), colour: c.colour });
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        out.push(Caption { text: line, colour: c.colour });
    }
    out
}

/// The glyph scale and lines of a text band `width` pixels wide: twice the 8 px glyphs
/// when every line fits so, else 8 px glyphs, lines wrapped to the width.
pub fn footer_lines(captions: &[Caption], width: u32) -> (u32, Vec<Caption>) {
    let longest = captions.iter().map(|c| c.text.chars().count()).max().unwrap_or(0) as u32;
    if 16 * longest + 8 <= width {
        (2, captions.to_vec())
    } else {
        (1, wrap(captions, (width.saturating_sub(8) / 8).max(1) as usize))
    }
}

/// Rows of a band holding `lines` lines at glyph scale `scale`.
pub fn footer_height(lines: usize, scale: u32) -> u32 {
    if lines == 0 {
        0
    } else {
        lines as u32 * (8 * scale + 2) + 4
    }
}

/// Draws `lines` (from [`footer_lines`]) on a black band from row `y0` down.
pub fn draw_footer(img: &mut image::RgbImage, y0: u32, scale: u32, lines: &[Caption]) {
    for y in y0..img.height() {
        for x in 0..img.width() {
            put(img, x, y, [0, 0, 0]);
        }
    }
    for (k, c) in lines.iter().enumerate() {
        draw_text(img, 4, y0 + 3 + k as u32 * (8 * scale + 2), scale, &c.text, c.colour);
    }
}

fn put(img: &mut image::RgbImage, x: u32, y: u32, c: [u8; 3]) {
    if x < img.width() && y < img.height() {
        img.put_pixel(x, y, image::Rgb(c));
    }
}

/// `s` in font8x8's 8x8 glyphs, each pixel drawn `scale` x `scale`, top-left at (x, y);
/// clipped at the image's edges, non-ASCII drawn as '?'. (report::plot draws its labels
/// the same way, at scale 1.)
pub fn draw_text(img: &mut image::RgbImage, x: u32, y: u32, scale: u32, s: &str, colour: [u8; 3]) {
    for (i, ch) in s.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY[if ch.is_ascii() { ch as usize } else { '?' as usize }];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8u32 {
                // font8x8: bit 0 is the leftmost pixel of the row.
                if bits >> col & 1 == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        put(img, x + (8 * i as u32 + col) * scale + dx, y + row as u32 * scale + dy, colour);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_line_names_score_threshold_and_verdict() {
        assert_eq!(verdict_caption(0.5, Some(0.25)).text, "score 0.5000 >= threshold 0.2500: ANOMALOUS");
        assert_eq!(verdict_caption(0.25, Some(0.25)).colour, ANOMALOUS, "equal is anomalous, as the CSV says");
        assert_eq!(verdict_caption(0.125, Some(0.25)).text, "score 0.1250 < threshold 0.2500: normal");
        assert_eq!(verdict_caption(0.125, None).text, "score 0.1250 (no threshold for its class)");
    }

    /// The bar runs from dark blue (0, bottom) to dark red (the top value, top), the threshold is a
    /// white line at its row and its value is written beside it.
    #[test]
    fn the_bar_shows_the_ramp_and_marks_the_threshold() {
        let (h, x0) = (128, 10);
        let mut img = image::RgbImage::new(x0 + BAR_PANEL, h);
        let scale = Scale { vmax: 2.0, threshold: Some(0.5) };
        draw_colour_bar(&mut img, x0, h, &scale, 1.5);
        let mid = x0 + (BAR_X.0 + BAR_X.1) / 2;
        let (top, bottom) = (bar_row(2.0, 2.0, h), bar_row(0.0, 2.0, h));
        assert_eq!((top, bottom), (BAR_MARGIN, h - BAR_MARGIN - 1));
        let px = |x, y| img.get_pixel(x, y).0;
        // The ramp's ends: dark red (128, 0, 0) and dark blue (0, 0, 128).
        assert_eq!((px(mid, top), px(mid, bottom)), ([128, 0, 0], [0, 0, 128]));
        let t = bar_row(0.5, 2.0, h);
        assert_eq!(t, bottom - ((bottom - top) as f64 * 0.25).round() as u32);
        let white: Vec<u32> = (0..h).filter(|&y| px(mid, y) == THRESHOLD_MARK).collect();
        assert_eq!(white, [t], "one white row across the bar, at the threshold's");
        // The threshold's value is drawn in the mark's colour right of the bar.
        let mut want = image::RgbImage::new(img.width(), h);
        draw_text(&mut want, 0, 0, 1, "0.500", THRESHOLD_MARK);
        let label: usize = (0..h)
            .flat_map(|y| (x0 + BAR_X.1 + 2..img.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| px(x, y) == THRESHOLD_MARK)
            .count();
        assert_eq!(label, want.pixels().filter(|p| p.0 == THRESHOLD_MARK).count());
    }

    #[test]
    fn long_lines_wrap_at_spaces_and_keep_their_colour() {
        let c = verdict_caption(0.5, Some(0.25));
        let (scale, lines) = footer_lines(std::slice::from_ref(&c), 208);
        assert_eq!(scale, 1);
        assert_eq!(
            lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["score 0.5000 >= threshold", "0.2500: ANOMALOUS"]
        );
        assert!(lines.iter().all(|l| l.colour == ANOMALOUS));
        assert_eq!(footer_lines(std::slice::from_ref(&c), 1000), (2, vec![c]));
    }
}
