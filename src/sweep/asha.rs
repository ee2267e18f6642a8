//! Asynchronous successive halving (ASHA, Li et al., "A System for Massively Parallel
//! Hyperparameter Tuning", MLSys 2020): which paused runs go on to the next rung, decided
//! as results arrive rather than once a rung is full.
//!
//! A run that reaches rung k (its epoch count) pauses there with its selection metric.
//! Of the runs that reached rung k, the best floor(n_k / eta) may go on to rung k + 1;
//! each of those not promoted yet is promoted now. Runs are never demoted: a run promoted
//! early stays promoted when later results would have ranked it lower (ASHA's trade for
//! never waiting on a full rung). The top rung is the runs' last epoch: nothing goes on
//! from there.

use std::cmp::Ordering;
use std::collections::BTreeSet;

/// A run's selection metric at a rung.
#[derive(Debug, Clone, PartialEq)]
pub struct RungResult {
    pub run: String,
    /// Index into the rungs (0 = the first).
    pub rung: usize,
    pub value: f64,
}

/// The halving rule of a search.
#[derive(Debug, Clone)]
pub struct Halving {
    pub eta: usize,
    /// How many rungs there are.
    pub rungs: usize,
    /// Lower values are better (a loss).
    pub minimize: bool,
}

impl Halving {
    /// Orders two results best first; ties by run id, so every coordinator decides alike.
    fn better(&self, a: &RungResult, b: &RungResult) -> Ordering {
        let by_value = if self.minimize { a.value.total_cmp(&b.value) } else { b.value.total_cmp(&a.value) };
        by_value.then_with(|| a.run.cmp(&b.run))
    }

    /// The results at rung `k`, best first (a NaN metric last, ties by run id): the order
    /// promotions and the stops of a closed rung both follow.
    pub fn ranked<'r>(&self, results: &'r [RungResult], k: usize) -> Vec<&'r RungResult> {
        let mut at_k: Vec<&RungResult> = results.iter().filter(|r| r.rung == k).collect();
        at_k.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => self.better(a, b),
        });
        at_k
    }

    /// The runs to promote now, as (run, the rung it goes on to), given every result so
    /// far and the (run, rung) promotions already made. A NaN metric (a diverged run)
    /// ranks last.
    pub fn promotions(&self, results: &[RungResult], promoted: &BTreeSet<(String, usize)>) -> Vec<(String, usize)> {
        let mut out = vec![];
        for k in 0..self.rungs.saturating_sub(1) {
            let at_k = self.ranked(results, k);
            let quota = at_k.len() / self.eta;
            for r in at_k.into_iter().take(quota).filter(|r| !r.value.is_nan()) {
                if !promoted.contains(&(r.run.clone(), k + 1)) {
                    out.push((r.run.clone(), k + 1));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// ASHA's `get_job` (Algorithm 2 of the paper), written from its pseudo-code and not
    /// from `promotions`: from the rung below the top down to the bottom, the candidates
    /// are the top |rung k| / eta of rung k; the first of them not yet promoted is
    /// promoted; if none is, a new configuration starts at the bottom rung (None here).
    fn reference_get_job(
        rungs: &[Vec<(String, f64)>],
        promoted: &mut BTreeSet<(String, usize)>,
        eta: usize,
        minimize: bool,
    ) -> Option<(String, usize)> {
        let top = rungs.len() - 1;
        for k in (0..top).rev() {
            let mut rung = rungs[k].clone();
            rung.sort_by(|a, b| {
                let c = a.1.partial_cmp(&b.1).unwrap();
                (if minimize { c } else { c.reverse() }).then(a.0.cmp(&b.0))
            });
            let candidates: Vec<&(String, f64)> = rung.iter().take(rung.len() / eta).collect();
            if let Some(t) = candidates.into_iter().find(|t| !promoted.contains(&(t.0.clone(), k + 1))) {
                promoted.insert((t.0.clone(), k + 1));
                return Some((t.0.clone(), k + 1));
            }
        }
        None
    }

    /// Learning curves: each configuration's loss falls from 1 towards its own floor; the
    /// floors are spread so that the best configurations are known.
    fn curve(floor: f64, epoch: usize) -> f64 {
        floor + (1.0 - floor) * (-(epoch as f64) / 30.0).exp()
    }

    #[test]
    fn promotions_match_the_reference_on_synthetic_learning_curves() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let epochs = [10, 30, 90, 270];
        for trial in 0..200 {
            let eta = rng.random_range(2..=4);
            let configs = rng.random_range(1..=30);
            let floors: Vec<f64> = (0..configs).map(|_| rng.random_range(0.0..0.5)).collect();
            // A random moment of an asynchronous search: every config reached some rung,
            // and some of the promotions its results allowed were already made.
            let mut results = vec![];
            for (c, f) in floors.iter().enumerate() {
                let reached = rng.random_range(0..epochs.len());
                for (k, e) in epochs.iter().enumerate().take(reached + 1) {
                    results.push(RungResult { run: format!("c{c:02}"), rung: k, value: curve(*f, *e) });
                }
            }
            let mut promoted: BTreeSet<(String, usize)> = results
                .iter()
                .filter(|r| r.rung > 0 && rng.random_bool(0.7))
                .map(|r| (r.run.clone(), r.rung))
                .collect();
            let h = Halving { eta, rungs: epochs.len(), minimize: true };
            let mut ours: Vec<(String, usize)> = h.promotions(&results, &promoted);
            // The reference, asked for jobs until it would start a new configuration.
            let rungs: Vec<Vec<(String, f64)>> = (0..epochs.len())
                .map(|k| results.iter().filter(|r| r.rung == k).map(|r| (r.run.clone(), r.value)).collect())
                .collect();
            let mut theirs = vec![];
            while let Some(job) = reference_get_job(&rungs, &mut promoted, eta, true) {
                theirs.push(job);
            }
            ours.sort();
            theirs.sort();
            assert_eq!(ours, theirs, "trial {trial}: eta {eta}, {configs} configurations");
        }
    }

    #[test]
    fn a_full_search_keeps_the_best_configurations_and_trains_few_to_the_end() {
        // 27 configurations, eta 3, rungs at 10/30/90/270 epochs: results arrive in a
        // random order; every promotion allowed is made at once.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let floors: Vec<f64> = (0..27).map(|_| rng.random_range(0.0..0.5)).collect();
        let epochs = [10, 30, 90, 270];
        let h = Halving { eta: 3, rungs: 4, minimize: true };
        let mut pending: Vec<(String, usize)> = (0..27).map(|c| (format!("c{c:02}"), 0)).collect();
        let (mut results, mut promoted) = (vec![], BTreeSet::new());
        while !pending.is_empty() {
            let (run, k) = pending.remove(rng.random_range(0..pending.len()));
            let c: usize = run[1..].parse().unwrap();
            results.push(RungResult { run, rung: k, value: curve(floors[c], epochs[k]) });
            for p in h.promotions(&results, &promoted) {
                promoted.insert(p.clone());
                pending.push(p);
            }
        }
        let finished: Vec<&RungResult> = results.iter().filter(|r| r.rung == 3).collect();
        assert!((1..=3).contains(&finished.len()), "{} trained to the end", finished.len());
        let best = (0..27).min_by(|a, b| floors[*a].total_cmp(&floors[*b])).unwrap();
        let mut ranked: Vec<usize> = (0..27).collect();
        ranked.sort_by(|a, b| floors[*a].total_cmp(&floors[*b]));
        let winner = finished.iter().min_by(|a, b| a.value.total_cmp(&b.value)).unwrap();
        let w: usize = winner.run[1..].parse().unwrap();
        assert!(ranked[..3].contains(&w), "the winner c{w:02} is not among the 3 best (best c{best:02})");
        let epochs_spent: usize =
            results.iter().map(|r| epochs[r.rung] - if r.rung > 0 { epochs[r.rung - 1] } else { 0 }).sum();
        assert!(epochs_spent * 100 <= 27 * 270 * 45, "{epochs_spent} epochs of the grid's {}", 27 * 270);
    }

    #[test]
    fn diverged_runs_rank_last_and_are_never_promoted() {
        let h = Halving { eta: 2, rungs: 2, minimize: true };
        let r = |run: &str, v: f64| RungResult { run: run.into(), rung: 0, value: v };
        let got = h.promotions(&[r("a", f64::NAN), r("b", 0.3), r("c", f64::NAN), r("d", 0.2)], &BTreeSet::new());
        assert_eq!(got, vec![("d".to_string(), 1), ("b".to_string(), 1)]);
        let got = h.promotions(&[r("a", f64::NAN), r("b", f64::NAN)], &BTreeSet::new());
        assert!(got.is_empty());
    }
}
