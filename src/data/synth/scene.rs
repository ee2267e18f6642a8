//! A class's style and one image's scene: the parameters drawn per image and the clean
//! rendering of a pixel.

use super::*;

#[derive(Debug, Clone)]
pub(super) struct Style {
    pub(super) kind: Kind,
    pub(super) c: [[f32; 3]; 3],
    pub(super) count: usize,
    pub(super) angle: f32,
    pub(super) freq: f32,
}

pub(super) fn style_for(seed: u64, class_idx: usize) -> Style {
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
pub(super) struct Params {
    pub(super) nseed: u64,
    pub(super) gain: f32,
    pub(super) tint: [f32; 3],
    pub(super) grad: [f32; 2],
    pub(super) vig: f32,
    pub(super) sigma: f32,
    pub(super) dx: f32,
    pub(super) dy: f32,
    pub(super) rot: f32,
    pub(super) scale: f32,
    pub(super) phase: [f32; 2],
}

pub(super) fn draw_params(kind: Kind, s: f32, rng: &mut ChaCha8Rng) -> Params {
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
pub(super) enum Omit {
    None,
    Part(usize),
    Span(f32, f32),
}

pub(super) struct Scene {
    pub(super) st: Style,
    pub(super) p: Params,
    pub(super) s: f32,
    pub(super) cx: f32,
    pub(super) cy: f32,
    pub(super) cos: f32,
    pub(super) sin: f32,
}

impl Scene {
    pub(super) fn new(st: Style, p: Params, size: u32) -> Scene {
        let s = size as f32;
        let a = st.angle + p.rot;
        Scene { cx: s / 2.0 + p.dx, cy: s / 2.0 + p.dy, cos: a.cos(), sin: a.sin(), st, p, s }
    }
    pub(super) fn local(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (x - self.cx, y - self.cy);
        (dx * self.cos + dy * self.sin, -dx * self.sin + dy * self.cos)
    }
    pub(super) fn image(&self, lx: f32, ly: f32) -> (f32, f32) {
        (self.cx + lx * self.cos - ly * self.sin, self.cy + lx * self.sin + ly * self.cos)
    }
    /// Lighting, tint and sensor noise; returns 0..255 floats (unclamped).
    pub(super) fn finish(&self, x: u32, y: u32, c: [f32; 3]) -> [f32; 3] {
        let p = &self.p;
        let (u, v) = ((x as f32 + 0.5) / self.s - 0.5, (y as f32 + 0.5) / self.s - 0.5);
        let light = p.gain * (1.0 + p.grad[0] * u + p.grad[1] * v) * (1.0 - 2.0 * p.vig * (u * u + v * v));
        let nl = gauss(hash(p.nseed, x as i64, y as i64, 0)) * p.sigma;
        [0, 1, 2].map(|k| {
            let nc = 0.35 * p.sigma * gauss(hash(p.nseed, x as i64, y as i64, k as u64 + 1));
            c[k] * p.tint[k] * light * 255.0 + nl + nc
        })
    }
    pub(super) fn pixel(&self, x: u32, y: u32, omit: Omit) -> [f32; 3] {
        self.finish(x, y, self.shade(x as f32 + 0.5, y as f32 + 0.5, omit))
    }
    pub(super) fn shade(&self, x: f32, y: f32, omit: Omit) -> [f32; 3] {
        match self.st.kind {
            Kind::Weave => self.weave(x, y),
            Kind::Grain => self.grain(x, y),
            Kind::Tiles => self.tiles(x, y),
            Kind::Disc => self.disc(x, y, omit),
            Kind::Bolt => self.bolt(x, y, omit),
            Kind::Chip => self.chip(x, y, omit),
        }
    }
    pub(super) fn weave_cell(&self) -> f32 {
        self.s / self.st.count as f32 * self.p.scale
    }
    pub(super) fn weave(&self, x: f32, y: f32) -> [f32; 3] {
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
    pub(super) fn grain(&self, x: f32, y: f32) -> [f32; 3] {
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
    pub(super) fn tile_grid(&self, x: f32, y: f32) -> (f32, f32, f32) {
        let cell = self.s / self.st.count as f32 * self.p.scale;
        let (lx, ly) = self.local(x, y);
        (cell, lx + self.p.phase[0] * cell, ly + self.p.phase[1] * cell)
    }
    pub(super) fn tiles(&self, x: f32, y: f32) -> [f32; 3] {
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
    pub(super) fn background(&self, x: f32, y: f32, shadow_sd: f32) -> [f32; 3] {
        let n = self.p.nseed;
        let t = (0.93 + 0.14 * fbm(n + 11, x / self.s * 5.0, y / self.s * 5.0, 3))
            * (0.97 + 0.06 * vnoise(n + 12, x / 2.5, y / 2.5));
        let shadow = 1.0 - 0.32 * (1.0 - smoothstep(-2.0, 0.05 * self.s, shadow_sd));
        scale(self.st.c[0], t * shadow)
    }
    pub(super) fn shadow_local(&self, x: f32, y: f32) -> (f32, f32) {
        self.local(x - 0.02 * self.s, y - 0.02 * self.s)
    }
    pub(super) fn disc_radius(&self) -> f32 {
        0.3 * self.s * self.p.scale
    }
    pub(super) fn spoke(&self, k: usize) -> ((f32, f32), (f32, f32), f32) {
        let r = self.disc_radius();
        let a = TAU * k as f32 / self.st.count as f32;
        ((0.16 * r * a.cos(), 0.16 * r * a.sin()), (0.5 * r * a.cos(), 0.5 * r * a.sin()), 0.055 * r)
    }
    pub(super) fn disc(&self, x: f32, y: f32, omit: Omit) -> [f32; 3] {
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
    pub(super) fn bolt_sd(&self, t: f32, n: f32) -> (f32, f32, f32) {
        let (s, hw) = (self.s * self.p.scale, 0.075 * self.s * self.p.scale);
        (sd_box(t + 0.09 * s, n, 0.25 * s, hw, 0.6 * hw), sd_box(t - 0.235 * s, n, 0.075 * s, 0.14 * s, 0.02 * s), hw)
    }
    pub(super) fn bolt(&self, x: f32, y: f32, omit: Omit) -> [f32; 3] {
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
    pub(super) fn chip_dims(&self) -> (f32, f32) {
        (0.26 * self.s * self.p.scale, 0.16 * self.s * self.p.scale)
    }
    /// Pin `k` (0..2*count): centre x, centre y, half width, half length (local coordinates).
    pub(super) fn pin(&self, k: usize) -> (f32, f32, f32, f32) {
        let (hx, hy) = self.chip_dims();
        let n = self.st.count;
        let pitch = 2.0 * hx / n as f32;
        let side = if k < n { -1.0 } else { 1.0 };
        (-hx + ((k % n) as f32 + 0.5) * pitch, side * (hy + 0.04 * self.s), 0.22 * pitch, 0.05 * self.s)
    }
    pub(super) fn chip(&self, x: f32, y: f32, omit: Omit) -> [f32; 3] {
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
    pub(super) fn sample_point(&self, rng: &mut ChaCha8Rng) -> (f32, f32) {
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
