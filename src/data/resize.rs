//! Resizing as the public pipeline does it: torchvision's `Resize` on PIL images, which is
//! PIL's own `Image.resize`. Images: PIL's BILINEAR, a separable filter whose support
//! widens with the downscale factor (antialiased), computed in PIL's 8-bit fixed point,
//! horizontal pass first. Masks: PIL's NEAREST (the source pixel under the target pixel's
//! centre). Ported from Pillow's libImaging (Resample.c, Geometry.c) so that the results
//! are PIL's to the grey level; `tests/datasets.rs` checks them against Pillow itself.

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

/// PIL `Image.resize((out_w, out_h), BILINEAR)` of an interleaved 8-bit image with
/// `channels` channels, `w` x `h` pixels.
pub fn bilinear(src: &[u8], w: usize, h: usize, channels: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    assert_eq!(src.len(), w * h * channels, "image buffer size");
    let mut cur = src.to_vec();
    let mut cw = w;
    if out_w != w {
        let coeffs = coefficients(w, out_w);
        let mut out = vec![0u8; out_w * h * channels];
        for y in 0..h {
            for (xx, (xmin, k)) in coeffs.iter().enumerate() {
                for c in 0..channels {
                    let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                    for (j, &kj) in k.iter().enumerate() {
                        acc += cur[(y * cw + xmin + j) * channels + c] as i64 * kj as i64;
                    }
                    out[(y * out_w + xx) * channels + c] = clip8(acc);
                }
            }
        }
        cur = out;
        cw = out_w;
    }
    if out_h != h {
        let coeffs = coefficients(h, out_h);
        let mut out = vec![0u8; cw * out_h * channels];
        for (yy, (ymin, k)) in coeffs.iter().enumerate() {
            for x in 0..cw {
                for c in 0..channels {
                    let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                    for (j, &kj) in k.iter().enumerate() {
                        acc += cur[((ymin + j) * cw + x) * channels + c] as i64 * kj as i64;
                    }
                    out[(yy * cw + x) * channels + c] = clip8(acc);
                }
            }
        }
        cur = out;
    }
    cur
}

/// Source indices of PIL's NEAREST scaling (`ImagingScaleAffine`): the position walks in
/// steps of in/out from half a step, and is truncated.
fn nearest_indices(in_size: usize, out_size: usize) -> Vec<usize> {
    let step = in_size as f64 / out_size as f64;
    let mut pos = step * 0.5;
    (0..out_size)
        .map(|_| {
            let i = (pos as usize).min(in_size - 1);
            pos += step;
            i
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
            out.push(src[y * w + x]);
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
