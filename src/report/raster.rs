//! A pixel backend for plotters, for the PNG figures of `ras report`.
//!
//! Why [`Raster`] and not plotters' bitmap backend or resvg for the PNG: both draw text
//! only through a TrueType font (plotters' `ttf` feature loads system fonts through
//! font-kit; resvg through fontdb), and a bare Debian cluster node has none: the labels
//! would vanish, or the report would fail. resvg (features `text`, `system-fonts` only)
//! would also add 61 crates and, measured on the shared 2-core build machine, 4 min 52 s
//! to a clean release build. [`Raster`] is
//! plotters' own pixel rasteriser (lines, rectangles, polygons) with text in the
//! public-domain 8x8 glyphs of `font8x8`: nothing to install, nothing extra to build.

use image::RgbImage;
use plotters::style::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendTextStyle, DrawingBackend, DrawingErrorKind};
use std::convert::Infallible;

/// A pixel canvas for plotters: its own rasteriser draws the shapes; text is `font8x8`
/// glyphs, scaled to the requested size (see the module's note on fonts).
/// (plotters' areas own their backend: this one borrows the image it draws on.)
pub struct Raster<'a> {
    img: &'a mut RgbImage,
}

impl<'a> Raster<'a> {
    pub fn new(img: &'a mut RgbImage) -> Self {
        Self { img }
    }
}

pub(super) fn png(img: &RgbImage) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png).expect("PNG encoding to memory");
    bytes.into_inner()
}

/// Horizontal and vertical scale of an 8x8 glyph for a font of `size` pixels: about the
/// width and cap height of a sans-serif face of that size (the glyphs are square, the
/// faces narrower than high), so the PNG's text fills the room the layout gives it.
fn glyph_scale(size: f64) -> (i32, i32) {
    (((size / 14.0).round() as i32).max(1), ((size / 9.0).round() as i32).max(1))
}

impl DrawingBackend for Raster<'_> {
    type ErrorType = Infallible;

    fn get_size(&self) -> (u32, u32) {
        self.img.dimensions()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Infallible>> {
        Ok(())
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Infallible>> {
        Ok(())
    }

    fn draw_pixel(&mut self, (x, y): BackendCoord, c: BackendColor) -> Result<(), DrawingErrorKind<Infallible>> {
        let (w, h) = self.img.dimensions();
        if x < 0 || y < 0 || x as u32 >= w || y as u32 >= h || c.alpha <= 0.0 {
            return Ok(());
        }
        let p = self.img.get_pixel_mut(x as u32, y as u32);
        let a = c.alpha.min(1.0);
        for (i, v) in [c.rgb.0, c.rgb.1, c.rgb.2].into_iter().enumerate() {
            p.0[i] = (a * v as f64 + (1.0 - a) * p.0[i] as f64).round() as u8;
        }
        Ok(())
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Infallible>> {
        let (kx, ky) = glyph_scale(style.size());
        let (w, h) = (8 * kx * text.chars().count() as i32, 8 * ky);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -w,
            HPos::Center => -w / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -h / 2,
            VPos::Bottom => -h,
        };
        let (trans, colour) = (style.transform(), style.color());
        for (i, ch) in text.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY[if ch.is_ascii() { ch as usize } else { '?' as usize }];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    // font8x8: bit 0 is the leftmost pixel of the row.
                    if bits >> col & 1 == 0 {
                        continue;
                    }
                    for sy in 0..ky {
                        for sx in 0..kx {
                            let (x, y) = (dx + (8 * i as i32 + col) * kx + sx, dy + row as i32 * ky + sy);
                            let (x, y) = trans.transform(x, y);
                            self.draw_pixel((pos.0 + x, pos.1 + y), colour)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Infallible>> {
        let (kx, ky) = glyph_scale(style.size());
        Ok(((8 * kx * text.chars().count() as i32) as u32, (8 * ky) as u32))
    }
}
