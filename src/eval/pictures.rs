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
