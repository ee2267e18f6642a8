//! `ras bench verdicts`: what a report's verdicts cost at a real dataset's size. Simulated
//! predictions of MVTec-AD's shape by default (15 classes of 115 test images, 224 x 224
//! maps, 3 seeds), each seed's maps made, histogrammed (`eval::pixel_hist`) and dropped
//! class by class, as a run does; then the intervals of a mean cell as `ras report`
//! computes them, and beside them the reference they stand for: the exact pixel
//! bootstrap (every pixel of every drawn image sorted), on one class and a few replicates,
//! timed per replicate, with how far its interval ends are from the histograms' on the
//! same draws.

use crate::eval::metrics::auroc;
use crate::eval::pixel_hist::{encode, PixelHistograms};
use crate::report::verdict::{interval_classes, pixel_interval_classes, PixelSeed, REPLICATES};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

pub struct Options {
    pub classes: usize,
    pub images: usize,
    pub side: usize,
    pub seeds: usize,
    /// Replicates of the exact reference (its cost grows with every pixel).
    pub reference_replicates: usize,
}

/// One class of one seed: maps, masks, labels (a third of the images normal; defects of
/// random size and strength, scored higher by a strength that varies with the seed).
fn simulate(images: usize, pixels: usize, class: u64, seed: u64) -> (Vec<f32>, Vec<bool>, Vec<bool>) {
    // The images (defects, labels) depend on the class only; the scores on the seed too.
    let mut scene = rand_chacha::ChaCha8Rng::seed_from_u64(class);
    let mut model = rand_chacha::ChaCha8Rng::seed_from_u64(class * 1000 + seed + 1);
    let u = model.random_range(-0.1..0.1f32);
    let (mut maps, mut masks, mut labels) = (Vec::with_capacity(images * pixels), vec![], vec![]);
    for i in 0..images {
        let anomalous = i % 3 != 0;
        let size = if anomalous { scene.random_range(pixels / 200..pixels / 10) } else { 0 };
        let start = scene.random_range(0..pixels - size);
        let strength = scene.random_range(0.0..0.8f32);
        labels.push(anomalous);
        for p in 0..pixels {
            let m = p >= start && p < start + size;
            masks.push(m);
            maps.push(model.random_range(0.0..1.0f32) + if m { strength + u } else { 0.0 });
        }
    }
    (maps, masks, labels)
}

pub fn run(o: &Options, out: &mut dyn Write) -> anyhow::Result<String> {
    let pixels = o.side * o.side;
    anyhow::ensure!(
        o.classes > 0 && o.images >= 3 && o.seeds >= 2 && pixels >= 100,
        "need classes >= 1, images >= 3, seeds >= 2, side >= 10"
    );
    writeln!(
        out,
        "{} classes x {} test images, {}x{} maps, {} seeds, {REPLICATES} replicates",
        o.classes, o.images, o.side, o.side, o.seeds
    )?;
    let mut hists: Vec<Vec<PixelHistograms>> = vec![vec![]; o.classes];
    let mut scores: Vec<(Vec<Vec<f32>>, Vec<bool>)> = vec![(vec![], vec![]); o.classes];
    let mut full: Vec<Vec<f64>> = vec![vec![]; o.classes];
    // The reference's class: every seed's pixels kept.
    let mut kept: Vec<(Vec<f32>, Vec<bool>)> = vec![];
    let (mut build_s, mut bytes) = (0.0, 0);
    for s in 0..o.seeds {
        let mut run_hists = BTreeMap::new();
        for c in 0..o.classes {
            let (maps, masks, labels) = simulate(o.images, pixels, c as u64, s as u64);
            let t = Instant::now();
            let h = PixelHistograms::build(&maps, &masks, pixels, &labels);
            build_s += t.elapsed().as_secs_f64();
            full[c].push(auroc(&maps, &masks)?);
            // An image's score: its map's maximum (as the model's, near enough here).
            scores[c].0.push(maps.chunks(pixels).map(|m| m.iter().copied().fold(f32::MIN, f32::max)).collect());
            scores[c].1 = labels;
            run_hists.insert(format!("class{c}"), h.clone());
            hists[c].push(h);
            if c == 0 {
                kept.push((maps, masks));
            }
        }
        bytes += encode(&run_hists)?.len();
    }
    let per_run = build_s / o.seeds as f64;
    writeln!(
        out,
        "histograms: {per_run:.2} s per run to build, {:.2} MB per run stored",
        bytes as f64 / o.seeds as f64 / 1e6
    )?;
    let t = Instant::now();
    let image = interval_classes(&scores, REPLICATES, 0).ok_or_else(|| anyhow::anyhow!("no image interval"))?;
    writeln!(
        out,
        "I-AUROC mean cell: {:.2} s ({:.1} [{:.1}, {:.1}])",
        t.elapsed().as_secs_f64(),
        image.mean,
        image.lo,
        image.hi
    )?;
    let classes: Vec<Vec<PixelSeed>> =
        hists.iter().zip(&full).map(|(hs, f)| hs.iter().zip(f).map(|(h, &v)| (h, v)).collect()).collect();
    let t = Instant::now();
    let pixel = pixel_interval_classes(&classes, REPLICATES, 0).ok_or_else(|| anyhow::anyhow!("no pixel interval"))?;
    let pixel_s = t.elapsed().as_secs_f64();
    writeln!(out, "P-AUROC mean cell: {pixel_s:.2} s ({:.2} [{:.2}, {:.2}])", pixel.mean, pixel.lo, pixel.hi)?;

    // The reference on class 0: the same draws (replicates first in the seeded order),
    // each replicate's exact AUROC over every pixel of its drawn images.
    let n = o.reference_replicates.clamp(1, REPLICATES);
    let one: Vec<PixelSeed> = hists[0].iter().zip(&full[0]).map(|(h, &v)| (h, v)).collect();
    let t = Instant::now();
    let grid =
        pixel_interval_classes(std::slice::from_ref(&one), n, 7).ok_or_else(|| anyhow::anyhow!("no interval"))?;
    let grid_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let exact = crate::report::verdict::exact_pixel_interval(&kept, &hists[0][0].labels, pixels, n, 7)
        .ok_or_else(|| anyhow::anyhow!("no exact interval"))?;
    let exact_s = t.elapsed().as_secs_f64();
    let summary = format!(
        "one class, {n} replicates on the same draws: histograms {:.4} s/replicate, exact pixels {:.2} s/replicate ({:.0}x); interval ends {:.3} / {:.3} points apart ({:.2}-{:.2} vs {:.2}-{:.2})",
        grid_s / n as f64,
        exact_s / n as f64,
        exact_s / grid_s.max(1e-9),
        (grid.lo - exact.lo).abs(),
        (grid.hi - exact.hi).abs(),
        grid.lo,
        grid.hi,
        exact.lo,
        exact.hi
    );
    Ok(summary)
}
