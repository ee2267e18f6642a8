//! Hashing, value noise and small geometry helpers the synthetic images are drawn with:
//! pure functions, so every pixel is a function of its seed.

use super::*;

pub(super) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
pub(super) fn seed_of(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5EED_u64, |h, &p| splitmix(h ^ splitmix(p)))
}
pub(super) fn hash(seed: u64, a: i64, b: i64, c: u64) -> u64 {
    splitmix(splitmix(splitmix(seed ^ a as u64) ^ b as u64) ^ c)
}
pub(super) fn unit(h: u64) -> f32 {
    (h >> 40) as f32 / (1u64 << 24) as f32
}
/// Approximately standard normal from a hash (sum of four uniforms).
pub(super) fn gauss(h: u64) -> f32 {
    let s: f32 = (0..4).map(|k| ((h >> (16 * k)) & 0xFFFF) as f32 / 65536.0).sum();
    (s - 2.0) * 3f32.sqrt()
}
pub(super) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}
pub(super) fn vnoise(seed: u64, x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (smoothstep(0.0, 1.0, x - x0), smoothstep(0.0, 1.0, y - y0));
    let (ix, iy) = (x0 as i64, y0 as i64);
    let l = |dx: i64, dy: i64| unit(hash(seed, ix + dx, iy + dy, 0x9A));
    let top = l(0, 0) + (l(1, 0) - l(0, 0)) * fx;
    let bot = l(0, 1) + (l(1, 1) - l(0, 1)) * fx;
    top + (bot - top) * fy
}
pub(super) fn fbm(seed: u64, x: f32, y: f32, octaves: u32) -> f32 {
    let (mut sum, mut amp, mut norm, mut f) = (0.0, 1.0, 0.0, 1.0);
    for o in 0..octaves {
        sum += amp * vnoise(seed.wrapping_add(o as u64 * 7919), x * f, y * f);
        norm += amp;
        amp *= 0.5;
        f *= 2.0;
    }
    sum / norm
}
pub(super) fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [0, 1, 2].map(|k| a[k] + (b[k] - a[k]) * t)
}
pub(super) fn scale(a: [f32; 3], f: f32) -> [f32; 3] {
    a.map(|v| v * f)
}
pub(super) fn uni(rng: &mut ChaCha8Rng, a: f32, b: f32) -> f32 {
    a + (b - a) * rng.random::<f32>()
}
pub(super) fn sign(rng: &mut ChaCha8Rng) -> f32 {
    if rng.random_bool(0.5) {
        1.0
    } else {
        -1.0
    }
}
/// Signed distance (pixels) to an axis-aligned rounded box centred at the origin.
pub(super) fn sd_box(x: f32, y: f32, hx: f32, hy: f32, r: f32) -> f32 {
    let r = r.min(hx).min(hy);
    let (qx, qy) = (x.abs() - hx + r, y.abs() - hy + r);
    (qx.max(0.0).hypot(qy.max(0.0))) + qx.max(qy).min(0.0) - r
}
pub(super) fn seg_dist(px: f32, py: f32, a: (f32, f32), b: (f32, f32)) -> f32 {
    let (vx, vy) = (b.0 - a.0, b.1 - a.1);
    let t = (((px - a.0) * vx + (py - a.1) * vy) / (vx * vx + vy * vy).max(1e-6)).clamp(0.0, 1.0);
    (px - a.0 - t * vx).hypot(py - a.1 - t * vy)
}
pub(super) fn cov(sd: f32) -> f32 {
    (0.5 - sd).clamp(0.0, 1.0)
}
