//! Defects blended into a clean rendering; the mask is exactly the set of changed pixels.

use super::*;

pub(super) const ALPHA_MIN: f32 = 0.08;
pub(super) const MIN_DELTA: f32 = 4.0;

pub(super) fn quantize(v: [f32; 3]) -> [u8; 3] {
    v.map(|c| c.round().clamp(0.0, 255.0) as u8)
}

/// Blend `target` into `clean` with coverage `alpha`; every covered pixel changes by at least
/// `MIN_DELTA` in some channel, uncovered pixels stay byte-identical.
pub(super) fn apply(
    clean: &RgbImage,
    alpha: &dyn Fn(f32, f32) -> f32,
    target: &dyn Fn(u32, u32, [f32; 3]) -> [f32; 3],
) -> RgbImage {
    let mut out = clean.clone();
    for (x, y, px) in out.enumerate_pixels_mut() {
        let a = alpha(x as f32 + 0.5, y as f32 + 0.5).min(1.0);
        if a.is_nan() || a < ALPHA_MIN {
            continue;
        }
        let c = px.0.map(f32::from);
        let t = target(x, y, c);
        let mut v = quantize([0, 1, 2].map(|k| c[k] + a * (t[k] - c[k])));
        let d = (0..3).map(|k| (v[k] as f32 - c[k]).abs()).fold(0.0, f32::max);
        if d < MIN_DELTA {
            let up = (0..3).map(|k| t[k] - c[k]).sum::<f32>() >= 0.0;
            v = c.map(|ck| {
                let go_up = if up { ck + MIN_DELTA <= 255.0 } else { ck < MIN_DELTA };
                (if go_up { ck + MIN_DELTA } else { ck - MIN_DELTA }) as u8
            });
        }
        px.0 = v;
    }
    out
}

pub(super) struct Blob {
    pub(super) cx: f32,
    pub(super) cy: f32,
    pub(super) r: f32,
    pub(super) h: [f32; 4],
    pub(super) edge: f32,
    pub(super) rough: f32,
    pub(super) nseed: u64,
}

impl Blob {
    pub(super) fn new(rng: &mut ChaCha8Rng, (cx, cy): (f32, f32), area: f32, s: f32, edge: f32, rough: f32) -> Blob {
        let r = (area * s * s / PI).sqrt().max(1.5);
        let h = [uni(rng, 0.0, 0.18), uni(rng, 0.0, TAU), uni(rng, 0.0, 0.12), uni(rng, 0.0, TAU)];
        Blob { cx, cy, r, h, edge, rough, nseed: rng.random() }
    }
    pub(super) fn alpha(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let th = dy.atan2(dx);
        let rr = self.r * (1.0 + self.h[0] * (2.0 * th + self.h[1]).sin() + self.h[2] * (3.0 * th + self.h[3]).sin());
        let nz = vnoise(self.nseed, x / self.r * 2.5, y / self.r * 2.5) - 0.5;
        let d = dx.hypot(dy) / rr + self.rough * nz;
        1.0 - smoothstep(1.0 - self.edge, 1.0, d)
    }
}

pub(super) fn hue_shift(c: [f32; 3], angle: f32, boost: f32) -> [f32; 3] {
    let y = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
    let i = 0.596 * c[0] - 0.274 * c[1] - 0.322 * c[2];
    let q = 0.211 * c[0] - 0.523 * c[1] + 0.312 * c[2];
    let (ca, sa) = (angle.cos(), angle.sin());
    let (i2, q2) = (i * ca - q * sa + boost * ca, i * sa + q * ca + boost * sa);
    [y + 0.956 * i2 + 0.621 * q2, y - 0.272 * i2 - 0.647 * q2, y - 1.106 * i2 + 1.703 * q2]
}

pub(super) fn render_defect(sc: &Scene, clean: &RgbImage, d: Defect, rng: &mut ChaCha8Rng) -> RgbImage {
    let s = sc.s;
    let subtle = rng.random_bool(0.5);
    let (cx, cy) = sc.sample_point(rng);
    match d {
        Defect::Scratch => {
            let mut pts = vec![(cx, cy)];
            let mut dir = uni(rng, 0.0, TAU);
            for _ in 0..rng.random_range(3..=5) {
                dir += uni(rng, -0.5, 0.5);
                let len = uni(rng, 0.04, 0.1) * s;
                let &(px, py) = pts.last().unwrap();
                pts.push((px + len * dir.cos(), py + len * dir.sin()));
            }
            let w = if subtle { uni(rng, 0.5, 0.9) } else { uni(rng, 0.9, 1.6) };
            let amp = sign(rng) * if subtle { uni(rng, 10.0, 18.0) } else { uni(rng, 35.0, 70.0) };
            let alpha = |x: f32, y: f32| {
                let dist = pts.windows(2).map(|p| seg_dist(x, y, p[0], p[1])).fold(f32::MAX, f32::min);
                (w + 0.5 - dist).clamp(0.0, 1.0)
            };
            apply(clean, &alpha, &|_, _, c| c.map(|v| v + amp))
        }
        Defect::Hole => {
            let area = if subtle { uni(rng, 0.004, 0.012) } else { uni(rng, 0.015, 0.04) };
            let blob = Blob::new(rng, (cx, cy), area, s, 0.3, 0.1);
            let dark = uni(rng, 12.0, 25.0);
            apply(clean, &|x, y| blob.alpha(x, y), &|_, _, c| {
                if subtle {
                    scale(c, 0.6)
                } else {
                    c.map(|v| dark + (v - 128.0) * 0.08)
                }
            })
        }
        Defect::Stain => {
            let area = if subtle { uni(rng, 0.01, 0.025) } else { uni(rng, 0.025, 0.05) };
            let op = if subtle { uni(rng, 0.12, 0.22) } else { uni(rng, 0.35, 0.55) };
            let col = [uni(rng, 0.3, 0.7), uni(rng, 0.2, 0.5), uni(rng, 0.05, 0.3)].map(|v| v * 255.0);
            let blob = Blob::new(rng, (cx, cy), area, s, 0.35, 0.3);
            apply(clean, &|x, y| blob.alpha(x, y), &|_, _, c| mix(c, col, op))
        }
        Defect::Color => {
            let area = if subtle { uni(rng, 0.01, 0.025) } else { uni(rng, 0.02, 0.045) };
            let ang = sign(rng) * if subtle { uni(rng, 0.35, 0.6) } else { uni(rng, 1.0, 2.0) };
            let boost = if subtle { 8.0 } else { 22.0 };
            let blob = Blob::new(rng, (cx, cy), area, s, 0.25, 0.15);
            apply(clean, &|x, y| blob.alpha(x, y), &|_, _, c| hue_shift(c, ang, boost))
        }
        Defect::Missing => missing(sc, clean, subtle, (cx, cy), rng),
    }
}

pub(super) fn missing(sc: &Scene, clean: &RgbImage, subtle: bool, at: (f32, f32), rng: &mut ChaCha8Rng) -> RgbImage {
    let (s, c) = (sc.s, sc.st.c);
    match sc.st.kind {
        Kind::Weave | Kind::Grain => {
            // A broken/missing run of threads (or fibres): the dark backing shows through.
            let (cell, (lx, ly)) = (sc.weave_cell(), sc.local(at.0, at.1));
            let (mut hx, mut hy) = (uni(rng, 0.6, 1.4) * cell, if subtle { cell / 6.0 } else { cell / 3.0 });
            if rng.random_bool(0.5) {
                std::mem::swap(&mut hx, &mut hy);
            }
            let alpha = |x: f32, y: f32| {
                let (qx, qy) = sc.local(x, y);
                cov(sd_box(qx - lx, qy - ly, hx, hy, 1.0))
            };
            let n = sc.p.nseed;
            apply(clean, &alpha, &|x, y, _| {
                sc.finish(x, y, scale(c[2], 0.85 + 0.3 * vnoise(n + 9, x as f32 / 2.0, y as f32 / 2.0)))
            })
        }
        Kind::Tiles => {
            // A chipped tile corner exposing the dark substrate.
            let (cell, gx, gy) = sc.tile_grid(at.0, at.1);
            let (kx, ky) = ((gx / cell).round() * cell, (gy / cell).round() * cell);
            let off = (0.06 * cell).max(1.5) / 2.0 + 0.05 * cell;
            let (qx, qy) = (kx + sign(rng) * off - sc.p.phase[0] * cell, ky + sign(rng) * off - sc.p.phase[1] * cell);
            let r = if subtle { uni(rng, 0.1, 0.16) } else { uni(rng, 0.18, 0.28) } * cell;
            let blob = Blob::new(rng, sc.image(qx, qy), PI * r * r / (s * s), s, 0.08, 0.25);
            let n = sc.p.nseed;
            apply(clean, &|x, y| blob.alpha(x, y), &|x, y, _| {
                sc.finish(x, y, scale(c[2], 0.85 + 0.3 * vnoise(n + 9, x as f32 / 2.0, y as f32 / 2.0)))
            })
        }
        Kind::Disc | Kind::Chip => {
            let k = rng.random_range(0..sc.st.count * if sc.st.kind == Kind::Chip { 2 } else { 1 });
            let region = |x: f32, y: f32| {
                let (lx, ly) = sc.local(x, y);
                if sc.st.kind == Kind::Disc {
                    let (a, b, hw) = sc.spoke(k);
                    return if seg_dist(lx, ly, a, b) - hw < 0.6 { 1.0 } else { 0.0 };
                }
                let (px, py, hw, hl) = sc.pin(k);
                let (hx, hy) = sc.chip_dims();
                let on_pin = sd_box(lx - px, ly - py, hw, hl, 0.3 * hw) < 0.6;
                if on_pin && cov(sd_box(lx, ly, hx, hy, 0.012 * s)) < 0.5 {
                    1.0
                } else {
                    0.0
                }
            };
            apply(clean, &region, &|x, y, _| sc.pixel(x, y, Omit::Part(k)))
        }
        Kind::Bolt => {
            // A stretch of stripped thread.
            let t0 = uni(rng, -0.3, -0.02) * s * sc.p.scale;
            let t1 = t0 + if subtle { uni(rng, 0.03, 0.05) } else { uni(rng, 0.06, 0.1) } * s;
            let region = |x: f32, y: f32| {
                let (t, n) = sc.local(x, y);
                if t >= t0 && t <= t1 && sc.bolt_sd(t, n).0 < 0.0 {
                    1.0
                } else {
                    0.0
                }
            };
            apply(clean, &region, &|x, y, _| sc.pixel(x, y, Omit::Span(t0, t1)))
        }
    }
}
