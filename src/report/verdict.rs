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
    if seeds == 0 || replicates == 0 {
        return None;
    }
    // Per class: anomalous and normal image indices.
    let mut strata = vec![];
    for (scores, labels) in classes {
        if scores.len() != seeds || scores.iter().any(|s| s.len() != labels.len()) {
            return None;
        }
        let pos: Vec<usize> = (0..labels.len()).filter(|&i| labels[i]).collect();
        let neg: Vec<usize> = (0..labels.len()).filter(|&i| !labels[i]).collect();
        if pos.is_empty() || neg.is_empty() {
            return None;
        }
        strata.push((pos, neg));
    }
    let value = |seed_draw: &[usize], images: &[Vec<usize>]| -> Option<f64> {
        let mut sum = 0.0;
        for ((scores, labels), imgs) in classes.iter().zip(images) {
            let lab: Vec<bool> = imgs.iter().map(|&i| labels[i]).collect();
            for &s in seed_draw {
                let sc: Vec<f32> = imgs.iter().map(|&i| scores[s][i]).collect();
                sum += auroc(&sc, &lab).ok()?;
            }
        }
        Some(100.0 * sum / (seed_draw.len() * classes.len()) as f64)
    };
    let all_seeds: Vec<usize> = (0..seeds).collect();
    let all_images: Vec<Vec<usize>> = classes.iter().map(|(_, l)| (0..l.len()).collect()).collect();
    let mean = value(&all_seeds, &all_images)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut reps = Vec::with_capacity(replicates);
    for _ in 0..replicates {
        let draw: Vec<usize> = (0..seeds).map(|_| rng.random_range(0..seeds)).collect();
        let images: Vec<Vec<usize>> = strata
            .iter()
            .map(|(pos, neg)| {
                let mut v: Vec<usize> = (0..pos.len()).map(|_| pos[rng.random_range(0..pos.len())]).collect();
                v.extend((0..neg.len()).map(|_| neg[rng.random_range(0..neg.len())]));
                v
            })
            .collect();
        reps.push(value(&draw, &images)?);
    }
    reps.sort_by(f64::total_cmp);
    let at = |q: f64| reps[((q * (reps.len() - 1) as f64).round() as usize).min(reps.len() - 1)];
    Some(Interval { mean, lo: at(0.025), hi: at(0.975) })
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

    fn only_seeds(n: usize) -> (Vec<Vec<f32>>, Vec<bool>) {
        (vec![vec![0.1, 0.9]; n], vec![false, true])
    }
}
