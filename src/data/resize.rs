//! Resizing as the public pipeline does it: torchvision's `Resize` on PIL images, which is
//! PIL's own `Image.resize`. Images: PIL's BILINEAR, a separable filter whose support
//! widens with the downscale factor (antialiased), computed in PIL's 8-bit fixed point,
//! the two passes in Pillow's order. Masks: PIL's NEAREST (the source pixel under the
//! target pixel's centre). Ported from Pillow 13's libImaging (Resample.c, Geometry.c) so
//! that the results are PIL's exactly; `tests/parity.rs` checks them against Pillow itself
//! over a grid of sizes.

/// PIL's fixed-point precision for 8-bit images (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output position: the first source index, and the fixed-point weights of the
/// source pixels from there (PIL's `precompute_coeffs` + `normalize_coeffs_8bpc`).
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    // BILINEAR: triangle filter of support 1.
    let support = filterscale;
    let filter = |x: f64| {
        let x = x.abs();
        if x < 1.0 {
            1.0 - x
        } else {
            0.0
        }
    };
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // (C casts truncate toward zero, as `as` does.)
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let w: Vec<f64> = (xmin..xmax).map(|x| filter((x as f64 - center + 0.5) * ss)).collect();
            let total: f64 = w.iter().sum();
            let k = w
                .iter()
                .map(|&v| {
                    let v = if total != 0.0 { v / total } else { v };
                    let f = v * (1u32 << PRECISION_BITS) as f64;
                    (if f < 0.0 { f - 0.5 } else { f + 0.5 }) as i32
                })
                .collect();
            (xmin, k)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's order of the two passes (`ImagingResampleInner` in Pillow 13's Resample.c):
/// vertical first when the height shrinks by more than twice what the width does, else
/// horizontal first. Each pass rounds to 8 bits, so the order shows in the result.
fn horizontal_first(w: usize, h: usize, out_w: usize, out_h: usize) -> bool {
    let (dw, dh) = (w as i64 - out_w as i64, h as i64 - out_h as i64);
    !(dh > 0 && dh > dw * 2)
}

/// One horizontal pass: every row of `src` (`w` wide) to `out_w` pixels.
fn horizontal(src: &[u8], w: usize, h: usize, channels: usize, out_w: usize) -> Vec<u8> {
    let coeffs = coefficients(w, out_w);
    let mut out = vec![0u8; out_w * h * channels];
    for y in 0..h {
        for (xx, (xmin, k)) in coeffs.iter().enumerate() {
            for c in 0..channels {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (j, &kj) in k.iter().enumerate() {
                    acc += src[(y * w + xmin + j) * channels + c] as i64 * kj as i64;
                }
                out[(y * out_w + xx) * channels + c] = clip8(acc);
            }
        }
    }
    out
}

/// One vertical pass: every column of `src` (`h` high) to `out_h` pixels.
fn vertical(src: &[u8], w: usize, h: usize, channels: usize, out_h: usize) -> Vec<u8> {
    let coeffs = coefficients(h, out_h);
    let mut out = vec![0u8; w * out_h * channels];
    for (yy, (ymin, k)) in coeffs.iter().enumerate() {
        for x in 0..w {
            for c in 0..channels {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (j, &kj) in k.iter().enumerate() {
                    acc += src[((ymin + j) * w + x) * channels + c] as i64 * kj as i64;
                }
                out[(yy * w + x) * channels + c] = clip8(acc);
            }
        }
    }
    out
}

/// PIL `Image.resize((out_w, out_h), BILINEAR)` of an interleaved 8-bit image with
/// `channels` channels, `w` x `h` pixels.
pub fn bilinear(src: &[u8], w: usize, h: usize, channels: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    assert_eq!(src.len(), w * h * channels, "image buffer size");
    let (need_h, need_v) = (out_w != w, out_h != h);
    match (need_h, need_v) {
        (false, false) => src.to_vec(),
        (true, false) => horizontal(src, w, h, channels, out_w),
        (false, true) => vertical(src, w, h, channels, out_h),
        (true, true) if horizontal_first(w, h, out_w, out_h) => {
            vertical(&horizontal(src, w, h, channels, out_w), out_w, h, channels, out_h)
        }
        (true, true) => horizontal(&vertical(src, w, h, channels, out_h), w, out_h, channels, out_w),
    }
}

/// Source indices of PIL's NEAREST scaling (`ImagingScaleAffine`): the position walks in
/// steps of in/out from half a step, and is truncated; a position past the source (which
/// rounding could only give at the last pixel) is Pillow's fill, 0, marked `None`.
fn nearest_indices(in_size: usize, out_size: usize) -> Vec<Option<usize>> {
    let step = in_size as f64 / out_size as f64;
    let mut pos = step * 0.5;
    (0..out_size)
        .map(|_| {
            let i = pos as usize;
            pos += step;
            (i < in_size).then_some(i)
        })
        .collect()
}

/// PIL `Image.resize((out_w, out_h), NEAREST)` of a one-channel 8-bit image.
pub fn nearest(src: &[u8], w: usize, h: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    assert_eq!(src.len(), w * h, "mask buffer size");
    let xs = nearest_indices(w, out_w);
    let ys = nearest_indices(h, out_h);
    let mut out = Vec::with_capacity(out_w * out_h);
    for &y in &ys {
        for &x in &xs {
            out.push(match (y, x) {
                (Some(y), Some(x)) => src[y * w + x],
                _ => 0,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_constant_images_stay_put() {
        let img: Vec<u8> = (0..5 * 3 * 3).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(bilinear(&img, 5, 3, 3, 5, 3), img);
        let flat = vec![200u8; 40 * 30];
        assert!(bilinear(&flat, 40, 30, 1, 7, 11).iter().all(|&v| v == 200), "weights sum to one");
        assert_eq!(nearest(&[1, 2, 3, 4], 2, 2, 4, 4), vec![1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    }

    #[test]
    fn downscale_averages_over_the_widened_filter() {
        // 4 -> 2 pixels: scale 2, so the triangle filter is 2 wide. Output 0 (centre 1.0)
        // takes sources 0, 1, 2 with weights 0.75, 0.75, 0.25 (normalised: 3/7, 3/7, 1/7):
        // (0*3 + 80*3 + 160*1) / 7 = 57.1 -> 57. Output 1 (centre 3.0): sources 1, 2, 3,
        // weights 1/7, 3/7, 3/7: (80 + 160*3 + 240*3) / 7 = 182.9 -> 183.
        assert_eq!(bilinear(&[0, 80, 160, 240], 4, 1, 1, 2, 1), vec![57, 183]);
    }
}
