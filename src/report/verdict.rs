//! Did a cell reproduce the paper's number? A 95 % interval for our value, from a
//! bootstrap over seeds and over the class's test images, and a verdict against the
//! paper's value:
//! - `reproduced`: the paper's value lies inside our interval;
//! - `below` / `above`: it lies outside (ours is below / above it);
//! - `inconclusive`: one seed only (no spread over training randomness to speak of), or the
//!   paper's value inside an interval wider than [`MAX_WIDTH`] points (too few seeds or
//!   test images to tell; a value outside even a wide interval is still below / above).
//!
//! How the interval is computed: every seed's model scored the same test images, so a
//! bootstrap replicate draws the seeds with replacement and, once for all of them, the
//! test images with replacement (normal and anomalous images apart, so each replicate
//! has both), then takes the mean over the drawn seeds of the AUROC on the drawn images.
//! The interval is the 2.5th and 97.5th percentiles of [`REPLICATES`] replicates.
//! What it does not cover: another backbone's weights, another version of the dataset, or
//! another implementation of the metric: those move the number without any spread here.

use crate::eval::metrics::auroc;
use crate::eval::pixel_hist::{binned_auroc, PixelHistograms};
use crate::run::records::ImageScores;
use rand::{Rng, SeedableRng};

/// Bootstrap replicates per interval.
pub const REPLICATES: usize = 1000;
/// An interval wider than this (percentage points) says nothing: the verdict is
/// inconclusive.
pub const MAX_WIDTH: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Our value: the mean over seeds, on every test image (percent).
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Reproduced,
    Below,
    Above,
    Inconclusive(String),
}

impl Verdict {
    /// How a cell shows it: `[reproduced]`, `[below]`, `[above]`, `[inconclusive: why]`.
    pub fn tag(&self) -> String {
        match self {
            Verdict::Inconclusive(why) => format!("[inconclusive: {why}]"),
            v => format!("[{v}]"),
        }
    }

    /// Reads back a cell's tag (`ras verify`): None when the cell has none.
    pub fn of_cell(cell: &str) -> Option<Verdict> {
        let tag = cell.rsplit_once(" [")?.1.strip_suffix(']')?;
        Some(match tag {
            "reproduced" => Verdict::Reproduced,
            "below" => Verdict::Below,
            "above" => Verdict::Above,
            t => Verdict::Inconclusive(t.strip_prefix("inconclusive: ")?.to_string()),
        })
    }
}

impl serde::Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Reproduced => write!(f, "reproduced"),
            Verdict::Below => write!(f, "below"),
            Verdict::Above => write!(f, "above"),
            Verdict::Inconclusive(why) => write!(f, "inconclusive ({why})"),
        }
    }
}

/// The interval of the mean over seeds of the image AUROC (percent). `scores[s][i]` is
/// seed s's score of test image i, `labels[i]` whether image i is anomalous (the same
/// images for every seed). None without both normal and anomalous images, or seeds.
pub fn interval(scores: &[Vec<f32>], labels: &[bool], replicates: usize, seed: u64) -> Option<Interval> {
    interval_classes(&[(scores.to_vec(), labels.to_vec())], replicates, seed)
}

/// [`interval`] of a mean over classes (a "mean" cell): per class, (scores per seed,
/// labels). A replicate draws the seeds once for every class (seed s of every class is
/// one training run, or runs that share the seed) and each class's images apart, and
/// takes the mean over classes of the mean over the drawn seeds. Every class needs the
/// same number of seeds.
pub fn interval_classes(classes: &[(Vec<Vec<f32>>, Vec<bool>)], replicates: usize, seed: u64) -> Option<Interval> {
    let seeds = classes.first()?.0.len();
    if classes.iter().any(|(scores, labels)| scores.len() != seeds || scores.iter().any(|s| s.len() != labels.len())) {
        return None;
    }
    let labels: Vec<&[bool]> = classes.iter().map(|(_, l)| l.as_slice()).collect();
    let draws = Draws::new(&labels, seeds, replicates, seed)?;
    let auroc_on = |scores: &[f32], labels: &[bool], images: &[usize]| -> Option<f64> {
        let sc: Vec<f32> = images.iter().map(|&i| scores[i]).collect();
        let lab: Vec<bool> = images.iter().map(|&i| labels[i]).collect();
        auroc(&sc, &lab).ok()
    };
    let all: Vec<Vec<usize>> = labels.iter().map(|l| (0..l.len()).collect()).collect();
    let mut full = vec![];
    let mut drawn = vec![];
    for (c, (scores, labels)) in classes.iter().enumerate() {
        full.push(scores.iter().map(|s| auroc_on(s, labels, &all[c])).collect::<Option<Vec<f64>>>()?);
        drawn.push(
            scores
                .iter()
                .map(|s| draws.images[c].iter().map(|imgs| auroc_on(s, labels, imgs)).collect::<Option<Vec<f64>>>())
                .collect::<Option<Vec<_>>>()?,
        );
    }
    Some(draws.interval(&full, &drawn))
}

/// One class of a P-AUROC cell, for one seed: the run's pixel histograms of the class
/// and its full-resolution pixel AUROC (fraction).
pub type PixelSeed<'a> = (&'a PixelHistograms, f64);

/// [`interval_classes`] of a P-AUROC cell: per class, each seed's [`PixelSeed`] (every
/// seed's histograms of the same test images). The resampling is the same (seeds, and
/// each class's images, anomalous and normal apart); a replicate's AUROC of a class and
/// seed comes from the summed histograms of its drawn images, shifted by the run's
/// full-resolution value minus its grid value over every image: the interval is
/// centred on the full-resolution values and takes only its spread from the grid.
pub fn pixel_interval_classes(classes: &[Vec<PixelSeed>], replicates: usize, seed: u64) -> Option<Interval> {
    let seeds = classes.first()?.len();
    let labels: Vec<&[bool]> =
        classes.iter().map(|c| c.first().map_or(&[][..], |(h, _)| h.labels.as_slice())).collect();
    if classes.iter().zip(&labels).any(|(c, l)| c.len() != seeds || c.iter().any(|(h, _)| h.labels != *l)) {
        return None;
    }
    let draws = Draws::new(&labels, seeds, replicates, seed)?;
    let mut full = vec![];
    let mut drawn = vec![];
    for (c, per_seed) in classes.iter().enumerate() {
        let m = labels[c].len();
        // Replicate r's weight of image i: how often r drew it.
        let mut w = vec![0f64; replicates * m];
        for (r, imgs) in draws.images[c].iter().enumerate() {
            for &i in imgs {
                w[r * m + i] += 1.0;
            }
        }
        let weights = tch::Tensor::from_slice(&w).view([replicates as i64, m as i64]);
        let mut class_full = vec![];
        let mut class_drawn = vec![];
        for (h, value) in per_seed {
            // Replicate sums are whole numbers under 2^53: exact in f64, in any order.
            let summed = |counts: &[u32]| -> Option<Vec<f64>> {
                let c: Vec<f64> = counts.iter().map(|&x| x as f64).collect();
                let t = tch::Tensor::from_slice(&c).view([m as i64, h.bins as i64]);
                Vec::<f64>::try_from(weights.matmul(&t).contiguous().view(-1)).ok()
            };
            let (normal, anomalous) = (summed(&h.normal)?, summed(&h.anomalous)?);
            let shift = value - h.auroc()?;
            let per_rep = normal
                .chunks(h.bins)
                .zip(anomalous.chunks(h.bins))
                .map(|(n, a)| Some(binned_auroc(n, a)? + shift))
                .collect::<Option<Vec<f64>>>()?;
            class_full.push(*value);
            class_drawn.push(per_rep);
        }
        full.push(class_full);
        drawn.push(class_drawn);
    }
    Some(draws.interval(&full, &drawn))
}

/// The reference a P-AUROC interval stands for, on one class: the same draws as
/// [`pixel_interval_classes`] with the same `seed`, each replicate's exact AUROC over
/// every pixel of its drawn images (repeats included). `runs[s]` is seed s's (maps,
/// masks), `pixels` per image. Costs a sort of the drawn pixels per replicate and seed:
/// for `ras bench verdicts`, not for reports.
pub fn exact_pixel_interval(
    runs: &[(Vec<f32>, Vec<bool>)],
    labels: &[bool],
    pixels: usize,
    replicates: usize,
    seed: u64,
) -> Option<Interval> {
    let draws = Draws::new(&[labels], runs.len(), replicates, seed)?;
    let exact = |(maps, masks): &(Vec<f32>, Vec<bool>), images: &[usize]| -> Option<f64> {
        let (mut sc, mut lab) = (Vec::with_capacity(images.len() * pixels), Vec::with_capacity(images.len() * pixels));
        for &i in images {
            sc.extend_from_slice(maps.get(i * pixels..(i + 1) * pixels)?);
            lab.extend_from_slice(masks.get(i * pixels..(i + 1) * pixels)?);
        }
        auroc(&sc, &lab).ok()
    };
    let all: Vec<usize> = (0..labels.len()).collect();
    let full = runs.iter().map(|r| exact(r, &all)).collect::<Option<Vec<f64>>>()?;
    let drawn = runs
        .iter()
        .map(|r| draws.images[0].iter().map(|imgs| exact(r, imgs)).collect::<Option<Vec<f64>>>())
        .collect::<Option<Vec<_>>>()?;
    Some(draws.interval(&[full], &[drawn]))
}

/// The resampling every interval shares: per replicate, the seeds drawn with
/// replacement (once for every class) and each class's test images drawn with
/// replacement, anomalous and normal apart (so each replicate has both).
struct Draws {
    /// Per replicate, the drawn seeds.
    seeds: Vec<Vec<usize>>,
    /// Per class, per replicate, the drawn images.
    images: Vec<Vec<Vec<usize>>>,
}

impl Draws {
    /// None without seeds, replicates, classes, or a class without both kinds of image.
    fn new(labels: &[&[bool]], seeds: usize, replicates: usize, seed: u64) -> Option<Self> {
        if seeds == 0 || replicates == 0 || labels.is_empty() {
            return None;
        }
        let mut strata = vec![];
        for l in labels {
            let pos: Vec<usize> = (0..l.len()).filter(|&i| l[i]).collect();
            let neg: Vec<usize> = (0..l.len()).filter(|&i| !l[i]).collect();
            if pos.is_empty() || neg.is_empty() {
                return None;
            }
            strata.push((pos, neg));
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut draws = Draws { seeds: vec![], images: vec![vec![]; labels.len()] };
        for _ in 0..replicates {
            draws.seeds.push((0..seeds).map(|_| rng.random_range(0..seeds)).collect());
            for ((pos, neg), per_class) in strata.iter().zip(&mut draws.images) {
                let mut v: Vec<usize> = (0..pos.len()).map(|_| pos[rng.random_range(0..pos.len())]).collect();
                v.extend((0..neg.len()).map(|_| neg[rng.random_range(0..neg.len())]));
                per_class.push(v);
            }
        }
        Some(draws)
    }

    /// The interval from each class's value per seed on every image (`full[c][s]`) and
    /// on each replicate's images (`drawn[c][s][r]`), fractions: a replicate is the mean
    /// over classes of the mean over its drawn seeds; the interval its 2.5th and 97.5th
    /// percentiles, the value the mean over classes and seeds (percent).
    fn interval(&self, full: &[Vec<f64>], drawn: &[Vec<Vec<f64>>]) -> Interval {
        let classes = full.len();
        let seeds = full.first().map_or(0, Vec::len);
        let mut sum = 0.0;
        for class in full {
            for v in class {
                sum += v;
            }
        }
        let mean = 100.0 * sum / (seeds * classes) as f64;
        let mut reps: Vec<f64> = (0..self.seeds.len())
            .map(|r| {
                let mut sum = 0.0;
                for class in drawn {
                    for &s in &self.seeds[r] {
                        sum += class[s][r];
                    }
                }
                100.0 * sum / (self.seeds[r].len() * classes) as f64
            })
            .collect();
        reps.sort_by(f64::total_cmp);
        let at = |q: f64| reps[((q * (reps.len() - 1) as f64).round() as usize).min(reps.len() - 1)];
        Interval { mean, lo: at(0.025), hi: at(0.975) }
    }
}

/// One class's image scores per seed, and its labels ([`interval_classes`]).
type ClassScores = (Vec<Vec<f32>>, Vec<bool>);

/// A cell's interval, or why it has none (the reason its verdict gives).
pub type CellInterval = Result<Interval, String>;

/// One run's pixel histograms of a class and its full-resolution pixel AUROC (fraction).
pub type PixelRun = (PixelHistograms, f64);

/// The interval of an I-AUROC cell: per class behind it (one for a class cell, every
/// class of the variant for a mean), each run's image scores, in run order (None: a run
/// written before they were kept).
pub fn image_cell(behind: &[&[Option<ImageScores>]], runs: usize) -> CellInterval {
    if runs < 2 {
        return Err("one seed".into());
    }
    let classes: Option<Vec<ClassScores>> = behind
        .iter()
        .map(|per_run| {
            let all: Vec<&ImageScores> = per_run.iter().map(Option::as_ref).collect::<Option<_>>()?;
            let labels = all.first()?.labels.clone();
            // Every seed scored the same images (else no pairing across seeds).
            all.iter().all(|s| s.labels == labels).then(|| (all.iter().map(|s| s.scores.clone()).collect(), labels))
        })
        .collect();
    let classes = classes.ok_or("no per-image scores (runs written before verdicts)")?;
    interval_classes(&classes, REPLICATES, 0)
        .ok_or_else(|| "no interval: a class lacks normal or anomalous images, or the runs differ in seeds".into())
}

/// The interval of a P-AUROC cell: as [`image_cell`], from each run's [`PixelRun`] of
/// the classes behind it.
pub fn pixel_cell(behind: &[&[Option<PixelRun>]], runs: usize) -> CellInterval {
    if runs < 2 {
        return Err("one seed".into());
    }
    let classes: Option<Vec<Vec<PixelSeed>>> =
        behind.iter().map(|per_run| per_run.iter().map(|r| r.as_ref().map(|(h, v)| (h, *v))).collect()).collect();
    let classes =
        classes.filter(|c| !c.is_empty()).ok_or("no pixel histograms (runs written before pixel verdicts)")?;
    pixel_interval_classes(&classes, REPLICATES, 0).ok_or_else(|| {
        "no interval: the runs scored different test images, or a class lacks normal or anomalous pixels".into()
    })
}

/// The verdict of a cell with `runs` runs against the paper's value (percent).
pub fn verdict_of(cell: &CellInterval, runs: usize, paper: f64) -> Verdict {
    match cell {
        Ok(iv) => verdict(Some(iv), runs, paper),
        Err(why) => Verdict::Inconclusive(why.clone()),
    }
}

/// The verdict of a cell against the paper's value (percent), from its interval and the
/// number of seeds behind it.
pub fn verdict(interval: Option<&Interval>, seeds: usize, paper: f64) -> Verdict {
    let Some(iv) = interval else { return Verdict::Inconclusive("no interval: no per-image scores".into()) };
    if seeds < 2 {
        return Verdict::Inconclusive("one seed".into());
    }
    // Outside the interval, however wide: the paper's value is not what we measure.
    // Inside a wide one: it would be inside most values, which says nothing.
    if paper < iv.lo {
        Verdict::Above
    } else if paper > iv.hi {
        Verdict::Below
    } else if iv.hi - iv.lo > MAX_WIDTH {
        Verdict::Inconclusive(format!("interval {:.1}-{:.1} wider than {MAX_WIDTH} points", iv.lo, iv.hi))
    } else {
        Verdict::Reproduced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard normal CDF (Abramowitz-Stegun 7.1.26 through erf; error below 1.5e-7).
    fn phi(x: f64) -> f64 {
        let z = x.abs() / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.327_591_1 * z);
        let poly =
            t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        let erf = 1.0 - poly * (-z * z).exp();
        0.5 * (1.0 + if x >= 0.0 { erf } else { -erf })
    }

    fn normal(rng: &mut impl Rng) -> f64 {
        // Box-Muller.
        let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random_range(0.0..1.0));
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Simulated experiments where the truth is known: seed s's model separates anomalous
    /// from normal images by d + u_s (u_s ~ N(0, 0.15): training randomness); every seed
    /// scores the same test images, whose own noise is shared (an image hard for one model
    /// is hard for all). The population AUROC of a model of separation d' is Phi(d'/sqrt 2);
    /// the truth is its mean over u. The interval must cover it about 95 % of the time.
    #[test]
    fn the_interval_covers_the_truth_about_95_percent_of_the_time() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
        let (d, sd_u, seeds, n) = (1.2, 0.15, 5, 60);
        // The truth by numerical integration over u.
        let truth = 100.0
            * (-400..=400)
                .map(|k| {
                    let u = k as f64 * 0.01;
                    phi((d + sd_u * u) / std::f64::consts::SQRT_2) * (-u * u / 2.0).exp() * 0.01
                })
                .sum::<f64>()
            / (std::f64::consts::TAU).sqrt();
        let experiments = 200;
        let mut covered = 0;
        for e in 0..experiments {
            let labels: Vec<bool> = (0..2 * n).map(|i| i >= n).collect();
            let noise: Vec<f64> = (0..2 * n).map(|_| normal(&mut rng)).collect();
            let scores: Vec<Vec<f32>> = (0..seeds)
                .map(|_| {
                    let u = sd_u * normal(&mut rng);
                    // Each model also sees the image a little differently.
                    labels
                        .iter()
                        .zip(&noise)
                        .map(|(&l, &x)| (if l { d + u } else { 0.0 } + 0.9 * x + 0.44 * normal(&mut rng)) as f32)
                        .collect()
                })
                .collect();
            let iv = interval(&scores, &labels, 400, e).unwrap();
            if iv.lo <= truth && truth <= iv.hi {
                covered += 1;
            }
        }
        let rate = covered as f64 / experiments as f64;
        // 200 experiments: a true 95 % gives 91.5-98.5 % with 99 % probability.
        assert!(
            (0.9..=0.99).contains(&rate),
            "covered the truth ({truth:.2}) in {:.1} % of {experiments}",
            100.0 * rate
        );
    }

    #[test]
    fn verdicts() {
        let iv = Interval { mean: 92.0, lo: 90.0, hi: 94.0 };
        assert_eq!(verdict(Some(&iv), 3, 92.4), Verdict::Reproduced);
        assert_eq!(verdict(Some(&iv), 3, 96.0), Verdict::Below);
        assert_eq!(verdict(Some(&iv), 3, 86.6), Verdict::Above);
        assert!(matches!(verdict(Some(&iv), 1, 92.4), Verdict::Inconclusive(w) if w.contains("one seed")));
        let wide = Interval { mean: 80.0, lo: 70.0, hi: 90.5 };
        assert!(matches!(verdict(Some(&wide), 5, 80.0), Verdict::Inconclusive(w) if w.contains("wider")));
        assert_eq!(verdict(Some(&wide), 5, 97.5), Verdict::Below, "outside a wide interval is still outside");
        assert!(interval(&[vec![0.1, 0.2]], &[false, false], 10, 0).is_none(), "no anomalous image");
        for v in [Verdict::Reproduced, Verdict::Below, Verdict::Above, Verdict::Inconclusive("one seed".into())] {
            assert_eq!(Verdict::of_cell(&format!("97.1 ± 0.3 (98.4, -1.3) {}", v.tag())), Some(v));
        }
        assert_eq!(Verdict::of_cell("97.1 (-)"), None);
    }

    /// A mean over classes: each class resampled apart, seeds drawn once for all. Two
    /// classes where every seed is perfect on one and at chance-free 75 % on the other:
    /// the mean is their mean, and a class's perfect separation stays perfect whatever
    /// the draw.
    #[test]
    fn a_mean_cell_is_the_mean_of_its_classes() {
        let labels = vec![false, false, true, true];
        let perfect = (vec![vec![0.1, 0.2, 0.8, 0.9]; 3], labels.clone());
        let three_quarters = (vec![vec![0.1, 0.85, 0.8, 0.9]; 3], labels.clone());
        let iv = interval_classes(&[perfect.clone(), three_quarters], 200, 1).unwrap();
        assert!((iv.mean - 87.5).abs() < 1e-9, "{iv:?}");
        let only = interval_classes(&[perfect], 200, 1).unwrap();
        assert_eq!((only.lo, only.hi), (100.0, 100.0));
        let mismatched = (vec![vec![0.1, 0.2, 0.8, 0.9]; 2], labels);
        assert!(interval_classes(&[only_seeds(3), mismatched], 10, 0).is_none(), "classes with different seed counts");
    }

    /// The pixel interval against the bootstrap it stands for: the same draws (same
    /// seed, same labels), each replicate's exact AUROC over every pixel of its drawn
    /// images (the full-resolution metric, repeats included). Two classes, three seeds
    /// whose models see the same defects with different strength; scores rounded so that
    /// ties occur. The grid moves each end of the interval by less than 0.25 points.
    #[test]
    fn the_pixel_interval_is_the_exact_pixel_bootstrap_within_a_quarter_point() {
        use crate::eval::pixel_hist::PixelHistograms;
        let (pixels, images, seeds, replicates) = (300, 24, 3, 200);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // Per class: labels, masks, and per seed the maps.
        let mut classes = vec![];
        for _ in 0..2 {
            let labels: Vec<bool> = (0..images).map(|i| i % 3 != 0).collect();
            let mut masks = vec![];
            let mut hardness = vec![];
            for &l in &labels {
                let size = if l { rng.random_range(1..pixels / 5) } else { 0 };
                let start = rng.random_range(0..pixels - size);
                masks.extend((0..pixels).map(|p| p >= start && p < start + size));
                hardness.push(rng.random_range(0.0..0.8f64));
            }
            let maps: Vec<Vec<f32>> = (0..seeds)
                .map(|_| {
                    let u = rng.random_range(-0.1..0.1);
                    masks
                        .iter()
                        .enumerate()
                        .map(|(k, &m)| {
                            let boost = if m { hardness[k / pixels] + u } else { 0.0 };
                            ((rng.random_range(0.0..1.0f64) + boost) * 128.0).round() as f32 / 128.0
                        })
                        .collect()
                })
                .collect();
            classes.push((labels, masks, maps));
        }
        let exact = |maps: &[f32], masks: &[bool], imgs: &[usize]| -> f64 {
            let (mut sc, mut lab) = (vec![], vec![]);
            for &i in imgs {
                sc.extend_from_slice(&maps[i * pixels..(i + 1) * pixels]);
                lab.extend_from_slice(&masks[i * pixels..(i + 1) * pixels]);
            }
            auroc(&sc, &lab).unwrap()
        };
        let labels: Vec<&[bool]> = classes.iter().map(|(l, _, _)| l.as_slice()).collect();
        let draws = Draws::new(&labels, seeds, replicates, 5).unwrap();
        let all: Vec<usize> = (0..images).collect();
        let full: Vec<Vec<f64>> =
            classes.iter().map(|(_, masks, maps)| maps.iter().map(|m| exact(m, masks, &all)).collect()).collect();
        let drawn: Vec<Vec<Vec<f64>>> = classes
            .iter()
            .enumerate()
            .map(|(c, (_, masks, maps))| {
                maps.iter().map(|m| draws.images[c].iter().map(|imgs| exact(m, masks, imgs)).collect()).collect()
            })
            .collect();
        let reference = draws.interval(&full, &drawn);
        let hists: Vec<Vec<PixelHistograms>> = classes
            .iter()
            .map(|(labels, masks, maps)| {
                maps.iter().map(|m| PixelHistograms::build(m, masks, pixels, labels)).collect()
            })
            .collect();
        let input: Vec<Vec<PixelSeed>> =
            hists.iter().zip(&full).map(|(hs, f)| hs.iter().zip(f).map(|(h, &v)| (h, v)).collect()).collect();
        let ours = pixel_interval_classes(&input, replicates, 5).unwrap();
        assert_eq!(ours.mean, reference.mean, "centred on the full-resolution values");
        assert!(reference.hi - reference.lo > 1.0, "a spread to compare: {reference:?}");
        assert!(
            (ours.lo - reference.lo).abs() < 0.25 && (ours.hi - reference.hi).abs() < 0.25,
            "grid {ours:?} exact {reference:?}"
        );
        let mut other = hists[0][1].clone();
        other.labels.swap(0, 1);
        let other_images = vec![(&hists[0][0], full[0][0]), (&other, full[0][1])];
        assert!(pixel_interval_classes(&[other_images], 10, 0).is_none(), "seeds that saw other images");
    }

    fn only_seeds(n: usize) -> (Vec<Vec<f32>>, Vec<bool>) {
        (vec![vec![0.1, 0.9]; n], vec![false, true])
    }
}
