//! Anomaly-map pictures: for a test image, one PNG of three panels side by side: the
//! image, its ground truth (white = anomalous) and the anomaly map as a heat map over the
//! image. The map is scaled by `vmax` (the class's largest map value) so pictures of one
//! class compare. `ras predict`'s pictures add a colour bar with that scale and the
//! threshold marked ([`legend`]), and the score against the threshold below.

use std::path::Path;
use tch::{Kind, Tensor};

use super::legend::{self, heat};
pub use super::legend::{Caption, Scale};

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

/// PNG bytes of [image | heat-map overlay | colour bar] (`ras predict`), the panels
/// `size` x `size`, with `captions` on a band below. The image is resized as the backbone
/// saw it (PIL's bilinear, `data::resize`), so the overlay lines up with what was scored.
/// `map` (size, size) is coloured on `scale` (0 to `vmax`, as in [`panel_png`]); the bar
/// shows that scale with the threshold marked and the image's `score`.
pub fn prediction_png(
    image: &Path,
    size: u32,
    map: &Tensor,
    scale: &Scale,
    score: f64,
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
    let width = 2 * size + legend::BAR_PANEL;
    let (glyphs, lines) = legend::footer_lines(captions, width);
    let mut out = image::RgbImage::new(width, size + legend::footer_height(lines.len(), glyphs));
    for y in 0..size {
        for x in 0..size {
            let i = (y * size + x) as usize;
            let p = [pixels[3 * i], pixels[3 * i + 1], pixels[3 * i + 2]];
            out.put_pixel(x, y, image::Rgb(p));
            let h = heat((values[i] as f64 / scale.vmax.max(1e-12)) as f32);
            let blend = |k: usize| (0.5 * p[k] as f32 + 0.5 * 255.0 * h[k]).round() as u8;
            out.put_pixel(size + x, y, image::Rgb([blend(0), blend(1), blend(2)]));
        }
    }
    legend::draw_colour_bar(&mut out, 2 * size, size, scale, score);
    legend::draw_footer(&mut out, size, glyphs, &lines);
    let mut bytes = std::io::Cursor::new(Vec::new());
    out.write_to(&mut bytes, image::ImageFormat::Png).expect("PNG encoding to memory");
    Ok(bytes.into_inner())
}
