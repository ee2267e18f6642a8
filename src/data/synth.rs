//! Synthetic MVTec-AD-style dataset generator (`ras data synth`).
//!
//! Layout written under `out`:
//! `<class>/train/good/NNN.png`, `<class>/test/good/NNN.png`,
//! `<class>/test/<defect>/NNN.png`, `<class>/ground_truth/<defect>/NNN_mask.png`.
//!
//! Every image is rendered from a per-pixel pure function of parameters drawn
//! from a ChaCha8 RNG seeded by (seed, class, split, index), so output is
//! byte-identical for the same spec. Defective images are the clean rendering
//! with a defect blended in; the mask is exactly the set of changed pixels.

use std::f32::consts::{PI, TAU};
use std::fs;
use std::path::{Path, PathBuf};

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, GrayImage, ImageEncoder, Luma, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub classes: usize,
    pub train_per_class: usize,
    pub test_good_per_class: usize,
    pub test_defect_per_kind: usize,
    pub image_size: u32,
    pub seed: u64,
}

impl Default for SynthSpec {
    fn default() -> Self {
        Self {
            classes: 3,
            train_per_class: 24,
            test_good_per_class: 8,
            test_defect_per_kind: 3,
            image_size: 224,
            seed: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode {path}: {source}")]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("invalid synthetic spec: {0}")]
    Spec(String),
}

#[derive(Debug, Clone)]
pub struct SynthSummary {
    pub classes: Vec<String>,
    pub train_images: usize,
    pub test_images: usize,
    pub anomalous_images: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Weave,
    Grain,
    Tiles,
    Disc,
    Bolt,
    Chip,
}
const KINDS: [Kind; 6] = [Kind::Weave, Kind::Grain, Kind::Tiles, Kind::Disc, Kind::Bolt, Kind::Chip];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    Scratch,
    Hole,
    Stain,
    Missing,
    Color,
}

impl Kind {
    fn name(self) -> &'static str {
        ["weave", "grain", "tiles", "disc", "bolt", "chip"][self as usize]
    }
    fn defects(self) -> &'static [Defect] {
        use Defect::*;
        match self {
            Kind::Weave => &[Scratch, Hole, Missing, Color],
            Kind::Grain => &[Scratch, Hole, Stain, Color],
            Kind::Tiles => &[Scratch, Hole, Stain, Missing],
            Kind::Disc => &[Scratch, Stain, Missing, Color],
            Kind::Bolt => &[Scratch, Hole, Stain, Missing],
            Kind::Chip => &[Scratch, Hole, Missing, Color],
        }
    }
}

impl Defect {
    fn name(self) -> &'static str {
        ["scratch", "hole", "stain", "missing", "color"][self as usize]
    }
}

/// Class names in order for `n` classes: the six kinds, then `weave_2`, ... `weave_3`, ...
pub fn class_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let base = KINDS[i % KINDS.len()].name();
            match i / KINDS.len() {
                0 => base.to_string(),
                v => format!("{base}_{}", v + 1),
            }
        })
        .collect()
}

// ---------------------------------------------------------------- hashing & noise

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
fn seed_of(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5EED_u64, |h, &p| splitmix(h ^ splitmix(p)))
}
fn hash(seed: u64, a: i64, b: i64, c: u64) -> u64 {
    splitmix(splitmix(splitmix(seed ^ a as u64) ^ b as u64) ^ c)
}
fn unit(h: u64) -> f32 {
    (h >> 40) as f32 / (1u64 << 24) as f32
}
/// Approximately standard normal from a hash (sum of four uniforms).
fn gauss(h: u64) -> f32 {
    let s: f32 = (0..4).map(|k| ((h >> (16 * k)) & 0xFFFF) as f32 / 65536.0).sum();
    (s - 2.0) * 3f32.sqrt()
}
fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}
fn vnoise(seed: u64, x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (smoothstep(0.0, 1.0, x - x0), smoothstep(0.0, 1.0, y - y0));
    let (ix, iy) = (x0 as i64, y0 as i64);
    let l = |dx: i64, dy: i64| unit(hash(seed, ix + dx, iy + dy, 0x9A));
    let top = l(0, 0) + (l(1, 0) - l(0, 0)) * fx;
    let bot = l(0, 1) + (l(1, 1) - l(0, 1)) * fx;
    top + (bot - top) * fy
}
fn fbm(seed: u64, x: f32, y: f32, octaves: u32) -> f32 {
    let (mut sum, mut amp, mut norm, mut f) = (0.0, 1.0, 0.0, 1.0);
    for o in 0..octaves {
        sum += amp * vnoise(seed.wrapping_add(o as u64 * 7919), x * f, y * f);
        norm += amp;
        amp *= 0.5;
        f *= 2.0;
    }
    sum / norm
}
fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [0, 1, 2].map(|k| a[k] + (b[k] - a[k]) * t)
}
fn scale(a: [f32; 3], f: f32) -> [f32; 3] {
    a.map(|v| v * f)
}
fn uni(rng: &mut ChaCha8Rng, a: f32, b: f32) -> f32 {
    a + (b - a) * rng.random::<f32>()
}
fn sign(rng: &mut ChaCha8Rng) -> f32 {
    if rng.random_bool(0.5) {
        1.0
    } else {
        -1.0
    }
}
/// Signed distance (pixels) to an axis-aligned rounded box centred at the origin.
fn sd_box(x: f32, y: f32, hx: f32, hy: f32, r: f32) -> f32 {
    let r = r.min(hx).min(hy);
    let (qx, qy) = (x.abs() - hx + r, y.abs() - hy + r);
    (qx.max(0.0).hypot(qy.max(0.0))) + qx.max(qy).min(0.0) - r
}
fn seg_dist(px: f32, py: f32, a: (f32, f32), b: (f32, f32)) -> f32 {
    let (vx, vy) = (b.0 - a.0, b.1 - a.1);
    let t = (((px - a.0) * vx + (py - a.1) * vy) / (vx * vx + vy * vy).max(1e-6)).clamp(0.0, 1.0);
    (px - a.0 - t * vx).hypot(py - a.1 - t * vy)
}
fn cov(sd: f32) -> f32 {
    (0.5 - sd).clamp(0.0, 1.0)
}

// ---------------------------------------------------------------- class style & per-image params

#[derive(Debug, Clone)]
struct Style {
    kind: Kind,
    c: [[f32; 3]; 3],
    count: usize,
    angle: f32,
    freq: f32,
}

fn style_for(seed: u64, class_idx: usize) -> Style {
    let kind = KINDS[class_idx % KINDS.len()];
    let variant = class_idx / KINDS.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed_of(&[seed, class_idx as u64, 0x57]));
    // c[0]: background / first colour, c[1]: main colour, c[2]: accent / backing colour.
    let (c, count, angle, freq) = match kind {
        Kind::Weave => ([[0.74, 0.64, 0.47], [0.52, 0.44, 0.33], [0.16, 0.13, 0.11]], 7, 0.0, 1.0),
        Kind::Grain => ([[0.80, 0.62, 0.42], [0.47, 0.31, 0.19], [0.30, 0.20, 0.12]], 7, 0.0, 7.0),
        Kind::Tiles => ([[0.44, 0.42, 0.39], [0.82, 0.81, 0.77], [0.26, 0.25, 0.23]], 5, 0.0, 1.0),
        Kind::Disc => ([[0.34, 0.37, 0.41], [0.74, 0.24, 0.19], [0.95, 0.90, 0.74]], 3, 0.0, 1.0),
        Kind::Bolt => ([[0.52, 0.49, 0.45], [0.68, 0.70, 0.73], [0.40, 0.40, 0.42]], 0, 0.5, 1.0),
        Kind::Chip => ([[0.16, 0.42, 0.24], [0.14, 0.14, 0.15], [0.84, 0.81, 0.72]], 6, 0.0, 1.0),
    };
    let j = if variant == 0 { 0.04 } else { 0.14 };
    let c = c.map(|col| col.map(|v| (v + uni(&mut rng, -j, j)).clamp(0.04, 0.96)));
    let mut st = Style { kind, c, count, angle, freq };
    if variant > 0 {
        st.count = (count as i64 + rng.random_range(-1..=1)).max(3) as usize;
        st.angle += uni(&mut rng, -0.6, 0.6);
        st.freq *= uni(&mut rng, 0.8, 1.25);
    }
    st
}

#[derive(Debug, Clone)]
struct Params {
    nseed: u64,
    gain: f32,
    tint: [f32; 3],
    grad: [f32; 2],
    vig: f32,
    sigma: f32,
    dx: f32,
    dy: f32,
    rot: f32,
    scale: f32,
    phase: [f32; 2],
}

fn draw_params(kind: Kind, s: f32, rng: &mut ChaCha8Rng) -> Params {
    let object = matches!(kind, Kind::Disc | Kind::Bolt | Kind::Chip);
    let (shift, rot) = if object { (0.035 * s, 0.14) } else { (0.0, 0.04) };
    Params {
        nseed: rng.random(),
        gain: uni(rng, 0.92, 1.08),
        tint: [0; 3].map(|_| uni(rng, 0.97, 1.03)),
        grad: [uni(rng, -0.12, 0.12), uni(rng, -0.12, 0.12)],
        vig: uni(rng, 0.0, 0.15),
        sigma: uni(rng, 1.5, 4.5),
        dx: uni(rng, -shift, shift),
        dy: uni(rng, -shift, shift),
        rot: uni(rng, -rot, rot),
        scale: uni(rng, 0.96, 1.04),
        phase: [rng.random(), rng.random()],
    }
}

/// Which part of the normal pattern a "missing" defect removes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Omit {
    None,
    Part(usize),
    Span(f32, f32),
}

struct Scene {
    st: Style,
    p: Params,
    s: f32,
    cx: f32,
    cy: f32,
    cos: f32,
    sin: f32,
}

impl Scene {
    fn new(st: Style, p: Params, size: u32) -> Scene {
        let s = size as f32;
        let a = st.angle + p.rot;
        Scene { cx: s / 2.0 + p.dx, cy: s / 2.0 + p.dy, cos: a.cos(), sin: a.sin(), st, p, s }
    }
    fn local(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (x - self.cx, y - self.cy);
        (dx * self.cos + dy * self.sin, -dx * self.sin + dy * self.cos)
    }
    fn image(&self, lx: f32, ly: f32) -> (f32, f32) {
        (self.cx + lx * self.cos - ly * self.sin, self.cy + lx * self.sin + ly * self.cos)
    }
    /// Lighting, tint and sensor noise; returns 0..255 floats (unclamped).
    fn finish(&self, x: u32, y: u32, c: [f32; 3]) -> [f32; 3] {
        let p = &self.p;
        let (u, v) = ((x as f32 + 0.5) / self.s - 0.5, (y as f32 + 0.5) / self.s - 0.5);
        let light = p.gain * (1.0 + p.grad[0] * u + p.grad[1] * v) * (1.0 - 2.0 * p.vig * (u * u + v * v));
        let nl = gauss(hash(p.nseed, x as i64, y as i64, 0)) * p.sigma;
        [0, 1, 2].map(|k| {
            let nc = 0.35 * p.sigma * gauss(hash(p.nseed, x as i64, y as i64, k as u64 + 1));
            c[k] * p.tint[k] * light * 255.0 + nl + nc
        })
    }
    fn pixel(&self, x: u32, y: u32, omit: Omit) -> [f32; 3] {
        self.finish(x, y, self.shade(x as f32 + 0.5, y as f32 + 0.5, omit))
    }
    fn shade(&self, x: f32, y: f32, omit: Omit) -> [f32; 3] {
        match self.st.kind {
            Kind::Weave => self.weave(x, y),
            Kind::Grain => self.grain(x, y),
            Kind::Tiles => self.tiles(x, y),
            Kind::Disc => self.disc(x, y, omit),
            Kind::Bolt => self.bolt(x, y, omit),
            Kind::Chip => self.chip(x, y, omit),
        }
    }
    fn weave_cell(&self) -> f32 {
        self.s / self.st.count as f32 * self.p.scale
    }
    fn weave(&self, x: f32, y: f32) -> [f32; 3] {
        let (c, n) = (&self.st.c, self.p.nseed);
        let (lx, ly) = self.local(x, y);
        let cell = self.weave_cell();
        let (gx, gy) = (lx / cell + 2.0 * self.p.phase[0], ly / cell + 2.0 * self.p.phase[1]);
        let (i, j) = (gx.floor(), gy.floor());
        let (fx, fy) = (gx - i, gy - j);
        let horiz = (i as i64 + j as i64).rem_euclid(2) == 0;
        let (along, across, col) = if horiz { (fx, fy, c[0]) } else { (fy, fx, c[1]) };
        let t = across * 3.0;
        let prof = (PI * t.fract()).sin().powf(0.6);
        let dip = smoothstep(0.0, 0.14, along) * smoothstep(0.0, 0.14, 1.0 - along);
        let fib = if horiz {
            vnoise(n, lx / (cell * 0.5), ly / (cell / 12.0))
        } else {
            vnoise(n, lx / (cell / 12.0), ly / (cell * 0.5))
        };
        let tv = 1.0 + 0.1 * (unit(hash(n, i as i64, j as i64, t.floor() as u64)) - 0.5);
        let b = (0.45 + 0.55 * prof) * (0.7 + 0.3 * dip) * (0.93 + 0.14 * fib) * tv;
        mix(c[2], col, b)
    }
    fn grain(&self, x: f32, y: f32) -> [f32; 3] {
        let (c, n) = (&self.st.c, self.p.nseed);
        let (lx, ly) = self.local(x, y);
        let (u, v) = (lx / self.s, ly / self.s);
        let w = v * self.st.freq * self.p.scale + 0.9 * fbm(n, u * 1.6 + 3.0, v * 3.2 + 7.0, 4) + self.p.phase[0];
        let ring = w.rem_euclid(1.0);
        let late = smoothstep(0.55, 0.8, ring) * (1.0 - smoothstep(0.9, 1.0, ring));
        let streak = vnoise(n ^ 0xABC, u * 4.0, v * 90.0);
        let base = mix(c[0], c[1], 0.15 + 0.7 * late);
        scale(base, (0.9 + 0.18 * streak) * (0.96 + 0.08 * fbm(n + 5, u * 20.0, v * 20.0, 2)))
    }
    /// Tile grid coordinates: (cell size, grid x, grid y).
    fn tile_grid(&self, x: f32, y: f32) -> (f32, f32, f32) {
        let cell = self.s / self.st.count as f32 * self.p.scale;
        let (lx, ly) = self.local(x, y);
        (cell, lx + self.p.phase[0] * cell, ly + self.p.phase[1] * cell)
    }
    fn tiles(&self, x: f32, y: f32) -> [f32; 3] {
        let (c, n) = (&self.st.c, self.p.nseed);
        let (cell, gx, gy) = self.tile_grid(x, y);
        let (i, j) = ((gx / cell).floor(), (gy / cell).floor());
        let (px, py) = (gx - (i + 0.5) * cell, gy - (j + 0.5) * cell);
        let grout = (0.06 * cell).max(1.5);
        let sd = sd_box(px, py, cell / 2.0 - grout / 2.0, cell / 2.0 - grout / 2.0, 0.12 * cell);
        let tv = 1.0 + 0.1 * (unit(hash(n, i as i64, j as i64, 7)) - 0.5);
        let speck = 0.95 + 0.1 * fbm(n, x / self.s * 14.0, y / self.s * 14.0, 3);
        let edge = 0.88 + 0.12 * smoothstep(0.0, 0.12 * cell, -sd);
        let tile = scale(c[1], tv * speck * edge);
        let gr = scale(c[0], 0.9 + 0.2 * vnoise(n + 1, x / 3.0, y / 3.0));
        mix(gr, tile, cov(sd))
    }
    fn background(&self, x: f32, y: f32, shadow_sd: f32) -> [f32; 3] {
        let n = self.p.nseed;
        let t = (0.93 + 0.14 * fbm(n + 11, x / self.s * 5.0, y / self.s * 5.0, 3))
            * (0.97 + 0.06 * vnoise(n + 12, x / 2.5, y / 2.5));
        let shadow = 1.0 - 0.32 * (1.0 - smoothstep(-2.0, 0.05 * self.s, shadow_sd));
        scale(self.st.c[0], t * shadow)
    }
    fn shadow_local(&self, x: f32, y: f32) -> (f32, f32) {
        self.local(x - 0.02 * self.s, y - 0.02 * self.s)
    }
    fn disc_radius(&self) -> f32 {
        0.3 * self.s * self.p.scale
    }
    fn spoke(&self, k: usize) -> ((f32, f32), (f32, f32), f32) {
        let r = self.disc_radius();
        let a = TAU * k as f32 / self.st.count as f32;
        ((0.16 * r * a.cos(), 0.16 * r * a.sin()), (0.5 * r * a.cos(), 0.5 * r * a.sin()), 0.055 * r)
    }
    fn disc(&self, x: f32, y: f32, omit: Omit) -> [f32; 3] {
        let (c, r0) = (&self.st.c, self.disc_radius());
        let (lx, ly) = self.local(x, y);
        let r = lx.hypot(ly);
        let (sx, sy) = self.shadow_local(x, y);
        let bg = self.background(x, y, sx.hypot(sy) - r0);
        let (ix, iy) = (x - self.cx + 0.35 * r0, y - self.cy + 0.35 * r0);
        let shade = 1.08 - 0.32 * (r / r0).powi(2) + 0.22 * (-(ix * ix + iy * iy) / (0.09 * r0 * r0)).exp();
        let rim = 1.0 - 0.22 * smoothstep(0.86 * r0, 0.92 * r0, r);
        let body = scale(c[1], shade * rim * (0.97 + 0.06 * vnoise(self.p.nseed + 3, x / 4.0, y / 4.0)));
        let mut logo = cov((r - 0.64 * r0).abs() - 0.05 * r0).max(cov(r - 0.12 * r0));
        for k in 0..self.st.count {
            if omit != Omit::Part(k) {
                let (a, b, hw) = self.spoke(k);
                logo = logo.max(cov(seg_dist(lx, ly, a, b) - hw));
            }
        }
        mix(bg, mix(body, scale(c[2], shade), logo), cov(r - r0))
    }
    fn bolt_sd(&self, t: f32, n: f32) -> (f32, f32, f32) {
        let (s, hw) = (self.s * self.p.scale, 0.075 * self.s * self.p.scale);
        (sd_box(t + 0.09 * s, n, 0.25 * s, hw, 0.6 * hw), sd_box(t - 0.235 * s, n, 0.075 * s, 0.14 * s, 0.02 * s), hw)
    }
    fn bolt(&self, x: f32, y: f32, omit: Omit) -> [f32; 3] {
        let (c, s) = (&self.st.c, self.s * self.p.scale);
        let (t, n) = self.local(x, y);
        let (sx, sy) = self.shadow_local(x, y);
        let (ss, sh, _) = self.bolt_sd(sx, sy);
        let bg = self.background(x, y, ss.min(sh));
        let (sd_s, sd_h, hw) = self.bolt_sd(t, n);
        let k = (n / hw).clamp(-1.0, 1.0);
        let cyl = 0.5 + 0.5 * (1.0 - k * k).sqrt() + 0.3 * (-((k + 0.4) / 0.18).powi(2)).exp();
        let stripped = matches!(omit, Omit::Span(a, b) if t >= a && t <= b);
        let thread = if t < 0.06 * s && !stripped {
            0.68 + 0.32 * (0.5 + 0.5 * (TAU * (t + 0.3 * n) / (0.032 * s)).cos())
        } else if stripped {
            0.86
        } else {
            0.92
        };
        let shaft = scale(c[1], cyl * thread);
        let m = (n / (0.14 * s)).abs();
        let facet = 0.78 + 0.22 * (1.0 - smoothstep(0.3, 0.4, m));
        let head = scale(c[1], 0.95 * facet * (1.0 - 0.15 * smoothstep(0.05 * s, 0.075 * s, (t - 0.235 * s).abs())));
        mix(mix(bg, shaft, cov(sd_s)), head, cov(sd_h))
    }
    fn chip_dims(&self) -> (f32, f32) {
        (0.26 * self.s * self.p.scale, 0.16 * self.s * self.p.scale)
    }
    /// Pin `k` (0..2*count): centre x, centre y, half width, half length (local coordinates).
    fn pin(&self, k: usize) -> (f32, f32, f32, f32) {
        let (hx, hy) = self.chip_dims();
        let n = self.st.count;
        let pitch = 2.0 * hx / n as f32;
        let side = if k < n { -1.0 } else { 1.0 };
        (-hx + ((k % n) as f32 + 0.5) * pitch, side * (hy + 0.04 * self.s), 0.22 * pitch, 0.05 * self.s)
    }
    fn chip(&self, x: f32, y: f32, omit: Omit) -> [f32; 3] {
        let (c, s) = (&self.st.c, self.s);
        let (hx, hy) = self.chip_dims();
        let (lx, ly) = self.local(x, y);
        let (sx, sy) = self.shadow_local(x, y);
        let mut col = self.background(x, y, sd_box(sx, sy, hx, hy, 0.012 * s));
        for k in 0..2 * self.st.count {
            if omit == Omit::Part(k) {
                continue;
            }
            let (px, py, phw, phl) = self.pin(k);
            let hl = (-((lx - px) / phw).powi(2) * 3.0).exp();
            let pin = scale(c[2], 0.75 + 0.3 * hl);
            col = mix(col, pin, cov(sd_box(lx - px, ly - py, phw, phl, 0.3 * phw)));
        }
        let sd = sd_box(lx, ly, hx, hy, 0.012 * s);
        let bevel = 1.0 + 0.35 * (1.0 - smoothstep(0.0, 0.03 * s, -sd));
        let marker = cov(((lx + hx - 0.06 * s).hypot(ly + hy - 0.06 * s)) - 0.022 * s);
        let tex = 0.95 + 0.1 * fbm(self.p.nseed + 21, x / s * 20.0, y / s * 20.0, 2);
        let body = scale(c[1], tex * bevel * (1.0 + 0.9 * marker));
        mix(col, body, cov(sd))
    }
    /// A point (image coordinates) where a defect should be centred.
    fn sample_point(&self, rng: &mut ChaCha8Rng) -> (f32, f32) {
        let s = self.s;
        let (lx, ly) = match self.st.kind {
            Kind::Disc => {
                let (r, a) = (self.disc_radius() * uni(rng, 0.0, 0.8), uni(rng, 0.0, TAU));
                (r * a.cos(), r * a.sin())
            }
            Kind::Bolt => (uni(rng, -0.3, 0.28) * s, uni(rng, -0.04, 0.04) * s),
            Kind::Chip => {
                let (hx, hy) = self.chip_dims();
                (uni(rng, -0.85, 0.85) * hx, uni(rng, -0.8, 0.8) * hy)
            }
            _ => return (uni(rng, 0.15, 0.85) * s, uni(rng, 0.15, 0.85) * s),
        };
        self.image(lx, ly)
    }
}

// ---------------------------------------------------------------- defects

const ALPHA_MIN: f32 = 0.08;
const MIN_DELTA: f32 = 4.0;

fn quantize(v: [f32; 3]) -> [u8; 3] {
    v.map(|c| c.round().clamp(0.0, 255.0) as u8)
}

/// Blend `target` into `clean` with coverage `alpha`; every covered pixel changes by at least
/// `MIN_DELTA` in some channel, uncovered pixels stay byte-identical.
fn apply(
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

struct Blob {
    cx: f32,
    cy: f32,
    r: f32,
    h: [f32; 4],
    edge: f32,
    rough: f32,
    nseed: u64,
}

impl Blob {
    fn new(rng: &mut ChaCha8Rng, (cx, cy): (f32, f32), area: f32, s: f32, edge: f32, rough: f32) -> Blob {
        let r = (area * s * s / PI).sqrt().max(1.5);
        let h = [uni(rng, 0.0, 0.18), uni(rng, 0.0, TAU), uni(rng, 0.0, 0.12), uni(rng, 0.0, TAU)];
        Blob { cx, cy, r, h, edge, rough, nseed: rng.random() }
    }
    fn alpha(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let th = dy.atan2(dx);
        let rr = self.r * (1.0 + self.h[0] * (2.0 * th + self.h[1]).sin() + self.h[2] * (3.0 * th + self.h[3]).sin());
        let nz = vnoise(self.nseed, x / self.r * 2.5, y / self.r * 2.5) - 0.5;
        let d = dx.hypot(dy) / rr + self.rough * nz;
        1.0 - smoothstep(1.0 - self.edge, 1.0, d)
    }
}

fn hue_shift(c: [f32; 3], angle: f32, boost: f32) -> [f32; 3] {
    let y = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
    let i = 0.596 * c[0] - 0.274 * c[1] - 0.322 * c[2];
    let q = 0.211 * c[0] - 0.523 * c[1] + 0.312 * c[2];
    let (ca, sa) = (angle.cos(), angle.sin());
    let (i2, q2) = (i * ca - q * sa + boost * ca, i * sa + q * ca + boost * sa);
    [y + 0.956 * i2 + 0.621 * q2, y - 0.272 * i2 - 0.647 * q2, y - 1.106 * i2 + 1.703 * q2]
}

fn render_defect(sc: &Scene, clean: &RgbImage, d: Defect, rng: &mut ChaCha8Rng) -> RgbImage {
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

fn missing(sc: &Scene, clean: &RgbImage, subtle: bool, at: (f32, f32), rng: &mut ChaCha8Rng) -> RgbImage {
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

// ---------------------------------------------------------------- sampling & rendering

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Train,
    TestGood,
    Defect(Defect),
}

impl Split {
    fn code(self) -> u64 {
        match self {
            Split::Train => 1,
            Split::TestGood => 2,
            Split::Defect(d) => 16 + d as u64,
        }
    }
}

fn scene_for(spec: &SynthSpec, class_idx: usize, split: Split, index: usize) -> (Scene, ChaCha8Rng) {
    let st = style_for(spec.seed, class_idx);
    let mut rng = ChaCha8Rng::seed_from_u64(seed_of(&[spec.seed, class_idx as u64, split.code(), index as u64]));
    let p = draw_params(st.kind, spec.image_size as f32, &mut rng);
    (Scene::new(st, p, spec.image_size), rng)
}

fn render(sc: &Scene) -> RgbImage {
    let n = sc.s as u32;
    RgbImage::from_fn(n, n, |x, y| image::Rgb(quantize(sc.pixel(x, y, Omit::None))))
}

/// The defect-free rendering of image `index` of `split` for class `class_idx`.
fn clean_image(spec: &SynthSpec, class_idx: usize, split: Split, index: usize) -> RgbImage {
    render(&scene_for(spec, class_idx, split, index).0)
}

fn mask_of(clean: &RgbImage, defective: &RgbImage) -> GrayImage {
    GrayImage::from_fn(clean.width(), clean.height(), |x, y| {
        Luma([if clean.get_pixel(x, y) != defective.get_pixel(x, y) { 255 } else { 0 }])
    })
}

/// Defective image and its mask for test image `index` of defect kind `d`.
fn defect_sample(spec: &SynthSpec, class_idx: usize, d: Defect, index: usize) -> (RgbImage, GrayImage) {
    let (sc, mut rng) = scene_for(spec, class_idx, Split::Defect(d), index);
    let clean = render(&sc);
    let mut last = (clean.clone(), mask_of(&clean, &clean));
    for _ in 0..16 {
        let img = render_defect(&sc, &clean, d, &mut rng);
        let mask = mask_of(&clean, &img);
        let nonempty = mask.pixels().any(|p| p.0[0] != 0);
        last = (img, mask);
        if nonempty {
            break;
        }
    }
    last
}

fn write_png(path: &Path, w: u32, h: u32, data: &[u8], ct: ExtendedColorType) -> Result<(), SynthError> {
    let mut buf = Vec::new();
    PngEncoder::new(&mut buf)
        .write_image(data, w, h, ct)
        .map_err(|source| SynthError::Image { path: path.to_path_buf(), source })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, &buf).map_err(|source| SynthError::Io { path: tmp.clone(), source })?;
    fs::rename(&tmp, path).map_err(|source| SynthError::Io { path: path.to_path_buf(), source })
}

fn mkdir(p: &Path) -> Result<(), SynthError> {
    fs::create_dir_all(p).map_err(|source| SynthError::Io { path: p.to_path_buf(), source })
}

fn validate(spec: &SynthSpec) -> Result<(), SynthError> {
    let err = |m: String| Err(SynthError::Spec(m));
    if spec.classes == 0 {
        return err("classes must be at least 1".into());
    }
    if spec.train_per_class == 0 {
        return err("train_per_class must be at least 1".into());
    }
    if !(32..=4096).contains(&spec.image_size) {
        return err(format!("image_size must be in 32..=4096, got {}", spec.image_size));
    }
    Ok(())
}

/// Writes the dataset under `out`. `progress` is called once per image written with (done, total).
pub fn generate(
    out: &Path,
    spec: &SynthSpec,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SynthSummary, SynthError> {
    validate(spec)?;
    let names = class_names(spec.classes);
    let n_def = |ci: usize| KINDS[ci % KINDS.len()].defects().len() * spec.test_defect_per_kind;
    let total: usize = (0..spec.classes).map(|ci| spec.train_per_class + spec.test_good_per_class + n_def(ci)).sum();
    let sz = spec.image_size;
    let mut done = 0;
    let mut summary = SynthSummary { classes: names.clone(), train_images: 0, test_images: 0, anomalous_images: 0 };
    for (ci, name) in names.iter().enumerate() {
        let root = out.join(name);
        for (split, dir, count) in
            [(Split::Train, "train", spec.train_per_class), (Split::TestGood, "test", spec.test_good_per_class)]
        {
            let d = root.join(dir).join("good");
            mkdir(&d)?;
            for i in 0..count {
                let img = clean_image(spec, ci, split, i);
                write_png(&d.join(format!("{i:03}.png")), sz, sz, img.as_raw(), ExtendedColorType::Rgb8)?;
                done += 1;
                progress(done, total);
            }
        }
        summary.train_images += spec.train_per_class;
        summary.test_images += spec.test_good_per_class;
        if spec.test_defect_per_kind == 0 {
            continue;
        }
        for &d in KINDS[ci % KINDS.len()].defects() {
            let (img_dir, gt_dir) = (root.join("test").join(d.name()), root.join("ground_truth").join(d.name()));
            mkdir(&img_dir)?;
            mkdir(&gt_dir)?;
            for i in 0..spec.test_defect_per_kind {
                let (img, mask) = defect_sample(spec, ci, d, i);
                write_png(&img_dir.join(format!("{i:03}.png")), sz, sz, img.as_raw(), ExtendedColorType::Rgb8)?;
                write_png(&gt_dir.join(format!("{i:03}_mask.png")), sz, sz, mask.as_raw(), ExtendedColorType::L8)?;
                summary.test_images += 1;
                summary.anomalous_images += 1;
                done += 1;
                progress(done, total);
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn small(classes: usize, seed: u64) -> SynthSpec {
        SynthSpec { classes, train_per_class: 3, test_good_per_class: 2, test_defect_per_kind: 2, image_size: 64, seed }
    }

    fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let (mut out, mut stack) = (BTreeMap::new(), vec![root.to_path_buf()]);
        while let Some(d) = stack.pop() {
            for p in fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()) {
                if p.is_dir() {
                    stack.push(p)
                } else {
                    out.insert(p.strip_prefix(root).unwrap().to_path_buf(), fs::read(&p).unwrap());
                }
            }
        }
        out
    }

    #[test]
    fn class_names_cycle() {
        let n = class_names(8);
        assert_eq!(n[..6], ["weave", "grain", "tiles", "disc", "bolt", "chip"]);
        assert_eq!(n[6..], ["weave_2", "grain_2"]);
        assert_eq!(class_names(13)[12], "weave_3");
        assert!(class_names(0).is_empty());
    }

    #[test]
    fn deterministic_and_seed_sensitive() {
        let dirs = [0; 3].map(|_| tempfile::tempdir().unwrap());
        for (d, seed) in dirs.iter().zip([5, 5, 6]) {
            generate(d.path(), &small(7, seed), &mut |_, _| {}).unwrap();
        }
        let [fa, fb, fc] = [0, 1, 2].map(|i| files(dirs[i].path()));
        assert_eq!(fa.len(), 7 * (3 + 2 + 2 * 4 * 2));
        assert!(fa.keys().eq(fb.keys()) && fa.keys().eq(fc.keys()));
        assert!(!fa.keys().any(|k| k.to_string_lossy().ends_with(".tmp")));
        for (k, v) in &fa {
            assert!(v == &fb[k], "{} differs between runs", k.display());
            if !k.to_string_lossy().contains("_mask") {
                assert!(v != &fc[k], "{} identical for another seed", k.display());
            }
        }
    }

    #[test]
    fn layout_masks_and_pixels() {
        let (dir, spec) = (tempfile::tempdir().unwrap(), small(6, 11));
        let mut calls = Vec::new();
        let sum = generate(dir.path(), &spec, &mut |d, t| calls.push((d, t))).unwrap();
        let total = 6 * (3 + 2 + 4 * 2);
        assert_eq!(calls, (1..=total).map(|d| (d, total)).collect::<Vec<_>>());
        assert_eq!((sum.train_images, sum.test_images, sum.anomalous_images), (18, 60, 48));
        assert_eq!(sum.classes, class_names(6));
        let count = |p: PathBuf| fs::read_dir(p).unwrap().count();
        for (ci, name) in sum.classes.iter().enumerate() {
            let root = dir.path().join(name);
            let defects = KINDS[ci].defects();
            assert!(defects.len() >= 3);
            assert_eq!([count(root.join("train/good")), count(root.join("test/good"))], [3, 2]);
            assert_eq!(
                [count(root.join("test")), count(root.join("ground_truth"))],
                [defects.len() + 1, defects.len()]
            );
            let good = image::open(root.join("test/good/001.png")).unwrap().to_rgb8();
            assert_eq!(good, clean_image(&spec, ci, Split::TestGood, 1));
            assert_ne!(good, clean_image(&spec, ci, Split::Train, 1), "test good must use other seeds than train");
            for d in defects.iter().map(|d| d.name()) {
                assert_eq!([count(root.join("test").join(d)), count(root.join("ground_truth").join(d))], [2, 2]);
            }
            for (&d, i) in defects.iter().flat_map(|d| (0..2).map(move |i| (d, i))) {
                let img = image::open(root.join(format!("test/{}/{i:03}.png", d.name()))).unwrap();
                let mask = image::open(root.join(format!("ground_truth/{}/{i:03}_mask.png", d.name()))).unwrap();
                assert_eq!((img.color(), mask.color()), (image::ColorType::Rgb8, image::ColorType::L8));
                let (img, mask, clean) = (img.to_rgb8(), mask.to_luma8(), clean_image(&spec, ci, Split::Defect(d), i));
                assert_eq!((img.dimensions(), mask.dimensions()), ((64, 64), (64, 64)));
                let mut on = 0;
                for (x, y, m) in mask.enumerate_pixels() {
                    let (a, b) = (img.get_pixel(x, y).0, clean.get_pixel(x, y).0);
                    let diff = (0..3).map(|k| (a[k] as i32 - b[k] as i32).abs()).max().unwrap();
                    match m.0[0] {
                        0 => assert_eq!(diff, 0, "{name}/{} {i}: unmasked pixel ({x},{y}) changed", d.name()),
                        255 => {
                            on += 1;
                            assert!(diff >= MIN_DELTA as i32, "{name}/{} {i}: masked pixel changed by {diff}", d.name())
                        }
                        v => panic!("mask value {v}"),
                    }
                }
                let frac = on as f32 / (64.0 * 64.0);
                assert!(on > 0 && frac < 0.15, "{name}/{} {i}: mask fraction {frac}", d.name());
            }
        }
    }

    #[test]
    fn train_images_vary_and_defects_range_from_subtle_to_obvious() {
        let spec = SynthSpec { image_size: 96, ..small(6, 3) };
        let (mut subtle, mut obvious) = (0, 0);
        for (ci, kind) in KINDS.iter().enumerate() {
            let train: Vec<_> = (0..3).map(|i| clean_image(&spec, ci, Split::Train, i)).collect();
            assert!(train[0] != train[1] && train[1] != train[2], "{}: train images identical", kind.name());
            for (&d, i) in kind.defects().iter().flat_map(|d| (0..4).map(move |i| (d, i))) {
                let (clean, (img, mask)) =
                    (clean_image(&spec, ci, Split::Defect(d), i), defect_sample(&spec, ci, d, i));
                let diffs: Vec<f32> = mask
                    .enumerate_pixels()
                    .filter(|p| p.2 .0[0] == 255)
                    .map(|(x, y, _)| {
                        let (a, b) = (img.get_pixel(x, y).0, clean.get_pixel(x, y).0);
                        (0..3).map(|k| (a[k] as f32 - b[k] as f32).abs()).sum::<f32>() / 3.0
                    })
                    .collect();
                let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
                if mean < 15.0 {
                    subtle += 1
                } else if mean > 40.0 {
                    obvious += 1
                }
            }
        }
        assert!(subtle >= 10 && obvious >= 10, "subtle {subtle}, obvious {obvious}");
    }

    #[test]
    fn spec_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = SynthSpec::default();
        let bad = [
            SynthSpec { classes: 0, ..d.clone() },
            SynthSpec { image_size: 31, ..d.clone() },
            SynthSpec { train_per_class: 0, ..d },
        ];
        for spec in bad {
            let err = generate(dir.path(), &spec, &mut |_, _| panic!("no progress expected")).unwrap_err();
            assert!(matches!(err, SynthError::Spec(_)), "{err}");
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let ok = SynthSpec {
            classes: 1,
            train_per_class: 1,
            test_good_per_class: 0,
            test_defect_per_kind: 0,
            image_size: 32,
            seed: 1,
        };
        let sum = generate(dir.path(), &ok, &mut |_, _| {}).unwrap();
        assert_eq!((sum.train_images, sum.test_images, sum.anomalous_images), (1, 0, 0));
        assert_eq!(files(dir.path()).len(), 1);
    }
}
