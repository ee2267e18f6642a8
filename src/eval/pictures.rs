//! Anomaly-map pictures: for a test image, one PNG of three panels side by side: the
//! image, its ground truth (white = anomalous) and the anomaly map as a heat map over the
//! image. The map is scaled by `vmax` (the class's largest map value) so pictures of one
//! class compare.

use std::path::Path;
use tch::{Kind, Tensor};

/// Blue -> cyan -> yellow -> red for t in [0, 1] (a "jet"-like ramp).
fn heat(t: f32) -> [f32; 3] {
    let c = |x: f32| x.clamp(0.0, 1.0);
    [c(1.5 - (4.0 * t - 3.0).abs()), c(1.5 - (4.0 * t - 2.0).abs()), c(1.5 - (4.0 * t - 1.0).abs())]
}

/// PNG bytes of [image | ground truth | heat-map overlay], each `size` x `size`.
pub fn panel_png(image: &Path, mask: &Tensor, map: &Tensor, vmax: f64) -> Result<Vec<u8>, crate::data::DataError> {
    let size = mask.size()[0] as u32;
    let img = image::ImageReader::open(image)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| crate::data::DataError::Read { path: image.to_path_buf(), message: e.to_string() })?
        .decode()
        .map_err(|e| crate::data::DataError::Decode { path: image.to_path_buf(), message: e.to_string() })?
        .resize_exact(size, size, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let m = Vec::<u8>::try_from(mask.to_kind(Kind::Uint8).contiguous().view(-1)).expect("mask");
    let s = Vec::<f32>::try_from(map.to_kind(Kind::Float).contiguous().view(-1)).expect("map");
    let mut out = image::RgbImage::new(3 * size, size);
    for y in 0..size {
        for x in 0..size {
            let i = (y * size + x) as usize;
            let p = img.get_pixel(x, y).0;
            out.put_pixel(x, y, image::Rgb(p));
            let g = if m[i] != 0 { 255 } else { 0 };
            out.put_pixel(size + x, y, image::Rgb([g, g, g]));
            let h = heat((s[i] as f64 / vmax.max(1e-12)) as f32);
            let blend = |k: usize| (0.5 * p[k] as f32 + 0.5 * 255.0 * h[k]).round() as u8;
            out.put_pixel(2 * size + x, y, image::Rgb([blend(0), blend(1), blend(2)]));
        }
    }
    let mut bytes = std::io::Cursor::new(Vec::new());
    out.write_to(&mut bytes, image::ImageFormat::Png).expect("PNG encoding to memory");
    Ok(bytes.into_inner())
}

/// A line of text drawn on a picture, in an RGB colour.
pub struct Caption {
    pub text: String,
    pub colour: [u8; 3],
}

/// PNG bytes of [image | heat-map overlay], each `size` x `size`, with `captions` printed
/// top-left of the overlay on a dark band (`ras predict`). The image is resized as the
/// backbone saw it (PIL's bilinear, `data::resize`), so the overlay lines up with what
/// was scored. `map` (size, size) is scaled by `vmax`, as in [`panel_png`].
pub fn prediction_png(
    image: &Path,
    size: u32,
    map: &Tensor,
    vmax: f64,
    captions: &[Caption],
) -> Result<Vec<u8>, crate::data::DataError> {
    let rgb = image::ImageReader::open(image)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| crate::data::DataError::Read { path: image.to_path_buf(), message: e.to_string() })?
        .decode()
        .map_err(|e| crate::data::DataError::Decode { path: image.to_path_buf(), message: e.to_string() })?
        .to_rgb8();
    let (w, h, s) = (rgb.width() as usize, rgb.height() as usize, size as usize);
    let pixels =
        if (w, h) != (s, s) { crate::data::resize::bilinear(rgb.as_raw(), w, h, 3, s, s) } else { rgb.into_raw() };
    let values = Vec::<f32>::try_from(map.to_kind(Kind::Float).contiguous().view(-1)).expect("map");
    let mut out = image::RgbImage::new(2 * size, size);
    for y in 0..size {
        for x in 0..size {
            let i = (y * size + x) as usize;
            let p = [pixels[3 * i], pixels[3 * i + 1], pixels[3 * i + 2]];
            out.put_pixel(x, y, image::Rgb(p));
            let h = heat((values[i] as f64 / vmax.max(1e-12)) as f32);
            let blend = |k: usize| (0.5 * p[k] as f32 + 0.5 * 255.0 * h[k]).round() as u8;
            out.put_pixel(size + x, y, image::Rgb([blend(0), blend(1), blend(2)]));
        }
    }
    // Glyphs twice their 8 px when the longest line fits the panel (224 px: 13 characters),
    // otherwise at 8 px, which a 64 px panel still holds 7 characters of.
    let longest = captions.iter().map(|c| c.text.chars().count()).max().unwrap_or(0) as u32;
    let scale = if 16 * longest + 8 <= size { 2 } else { 1 };
    let line = 8 * scale + 2;
    if !captions.is_empty() {
        // Darken, not replace, the band behind the text: the map stays visible through it.
        let band_w = (8 * scale * longest + 4).min(size);
        let band_h = (line * captions.len() as u32 + 2).min(size);
        for y in 0..band_h {
            for x in size..size + band_w {
                let p = out.get_pixel(x, y).0;
                out.put_pixel(x, y, image::Rgb(p.map(|v| v / 4)));
            }
        }
    }
    for (k, c) in captions.iter().enumerate() {
        draw_text(&mut out, size + 2, 2 + k as u32 * line, scale, &c.text, c.colour);
    }
    let mut bytes = std::io::Cursor::new(Vec::new());
    out.write_to(&mut bytes, image::ImageFormat::Png).expect("PNG encoding to memory");
    Ok(bytes.into_inner())
}

/// `s` in font8x8's 8x8 glyphs, each pixel drawn `scale` x `scale`, top-left at (x, y);
/// clipped at the image's edges, non-ASCII drawn as '?'. (report::plot draws its labels
/// the same way, at scale 1.)
fn draw_text(img: &mut image::RgbImage, x: u32, y: u32, scale: u32, s: &str, colour: [u8; 3]) {
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
                        let (px, py) = (x + (8 * i as u32 + col) * scale + dx, y + row as u32 * scale + dy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, image::Rgb(colour));
                        }
                    }
                }
            }
        }
    }
}
