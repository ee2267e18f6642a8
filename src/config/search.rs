//! `[search]` of a sweep file: how its runs are searched. `grid` (the default) trains
//! every run to its last epoch; `asha` trains every run to the first rung, pauses it
//! there, and promotes the best 1/eta of each rung to the next (asynchronous successive
//! halving), within a budget.
//!
//! The selection metric is honest by default: the reconstruction loss on a held-out share
//! of the normal training images (`holdout`), which no run of the sweep trains on. A
//! test-set metric may be named explicitly; the sweep is then marked as selected on the
//! test set wherever its results are shown.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchMethod {
    #[default]
    Grid,
    Asha,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Min,
    Max,
}

/// The metrics a search can select on: (name, the direction that is better, whether it
/// is measured on the test set).
pub const SEARCH_METRICS: [(&str, Direction, bool); 8] = [
    ("holdout_loss", Direction::Min, false),
    ("image_auroc", Direction::Max, true),
    ("pixel_auroc", Direction::Max, true),
    ("aupro", Direction::Max, true),
    ("image_ap", Direction::Max, true),
    ("pixel_ap", Direction::Max, true),
    ("image_f1_max", Direction::Max, true),
    ("pixel_f1_max", Direction::Max, true),
];

/// Default share of the normal training images held out for the selection metric.
pub const DEFAULT_HOLDOUT: f64 = 0.1;
/// Default reduction factor.
pub const DEFAULT_ETA: usize = 3;

/// `[search]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    #[serde(default)]
    pub method: SearchMethod,
    /// One of [`SEARCH_METRICS`]; default `holdout_loss`.
    pub metric: Option<String>,
    /// Default: the metric's own (min for a loss, max for the others).
    pub direction: Option<Direction>,
    /// Epochs at which runs pause and are compared, increasing; the last is the runs'
    /// `train.epochs`. Or give `min_epochs` (and `eta`) instead.
    #[serde(default)]
    pub rungs: Vec<usize>,
    /// The first rung; the next ones are `min_epochs * eta^k` up to `train.epochs`.
    pub min_epochs: Option<usize>,
    /// The reduction factor: the best 1/eta of a rung are promoted (at least 2).
    pub eta: Option<usize>,
    /// Runs training at once (default: what the cluster holds).
    pub max_concurrent: Option<usize>,
    /// Rank-hours (GPU-hours on GPUs) the search may spend; reaching it stops promotions.
    pub budget_rank_hours: Option<f64>,
    /// Share of the normal training images held out (seeded, the same for every run of
    /// the sweep) for `holdout_loss`; in (0, 0.5).
    pub holdout: Option<f64>,
    /// Seed of the held-out split (default 0); one value for the whole sweep, whatever
    /// the runs' own seeds, so that no run trains on another's held-out images.
    pub holdout_seed: Option<u64>,
}

/// A search as the coordinator runs it: every default filled in, every value checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Search {
    pub method: SearchMethod,
    pub metric: String,
    pub direction: Direction,
    /// Whether the metric is measured on the test set (then every report says so).
    pub on_test_set: bool,
    pub rungs: Vec<usize>,
    pub eta: usize,
    pub max_concurrent: Option<usize>,
    pub budget_rank_hours: Option<f64>,
    /// None when the metric does not need held-out images.
    pub holdout: Option<f64>,
    #[serde(default)]
    pub holdout_seed: u64,
}

/// What a run of a search sweep carries in its resolved config (`[search]` of the run):
/// where its sweep's decisions are (how far it may train), the rungs at which it records
/// the selection metric, and the held-out split it does not train on. Stored with the
/// run, so the split and the schedule it was trained under are part of its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSearch {
    /// The sweep whose decision log (`sweeps/<sweep>/search/<run>/`) says how far this run
    /// may train.
    pub sweep: String,
    pub method: SearchMethod,
    pub metric: String,
    /// Epochs at which the run records its selection metric (and, under `asha`, pauses
    /// until promoted); the last is `train.epochs`.
    pub rungs: Vec<usize>,
    /// Share of each class's normal training images held out (not trained on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<f64>,
    #[serde(default)]
    pub holdout_seed: u64,
}

impl Search {
    /// The `[search]` section of a run of sweep `sweep` under this search.
    pub fn for_run(&self, sweep: &str) -> RunSearch {
        RunSearch {
            sweep: sweep.to_string(),
            method: self.method,
            metric: self.metric.clone(),
            rungs: self.rungs.clone(),
            holdout: self.holdout,
            holdout_seed: self.holdout_seed,
        }
    }

    /// Whether lower values of the metric are better.
    pub fn minimize(&self) -> bool {
        self.direction == Direction::Min
    }
}

impl RunSearch {
    /// Whether the selection metric is measured on the test set.
    pub fn on_test_set(&self) -> bool {
        SEARCH_METRICS.iter().any(|(m, _, test)| *m == self.metric && *test)
    }
}

impl SearchConfig {
    /// The search for runs of `epochs` epochs; Err names the key (`search.<key>`) and why.
    pub fn resolve(&self, epochs: usize) -> Result<Search, String> {
        let metric = self.metric.clone().unwrap_or_else(|| "holdout_loss".into());
        let Some(&(_, default_direction, on_test_set)) = SEARCH_METRICS.iter().find(|(m, _, _)| *m == metric) else {
            let known: Vec<&str> = SEARCH_METRICS.iter().map(|(m, _, _)| *m).collect();
            return Err(format!(
                "search.metric = {metric:?} is not a metric a search can select on; use one of {}",
                known.join(", ")
            ));
        };
        let eta = self.eta.unwrap_or(DEFAULT_ETA);
        if eta < 2 {
            return Err(format!("search.eta = {eta}: give 2 or more (the best 1/eta of a rung go on)"));
        }
        if let Some(b) = self.budget_rank_hours {
            if !(b > 0.0 && b.is_finite()) {
                return Err(format!(
                    "search.budget_rank_hours = {b}: give a number of rank-hours above 0 (or leave it out: no budget)"
                ));
            }
        }
        if self.max_concurrent == Some(0) {
            return Err("search.max_concurrent = 0: give 1 or more (or leave it out: what the cluster holds)".into());
        }
        let holdout = match (self.holdout, metric == "holdout_loss") {
            (Some(h), _) if !(h > 0.0 && h < 0.5) => {
                return Err(format!(
                    "search.holdout = {h}: give a share in (0, 0.5), e.g. 0.1 (10 % of the normal training images)"
                ))
            }
            (Some(h), _) => Some(h),
            (None, true) => Some(DEFAULT_HOLDOUT),
            (None, false) => None,
        };
        let rungs = match (&self.rungs[..], self.min_epochs) {
            ([], None) if self.method == SearchMethod::Asha => {
                return Err("search: give rungs = [epochs, ...] (e.g. [50, 150, 500]) or min_epochs (with eta)".into())
            }
            ([], None) => vec![epochs],
            ([], Some(0)) => return Err("search.min_epochs = 0: give 1 or more".into()),
            ([], Some(m)) => {
                let mut r = vec![];
                let mut e = m;
                while e < epochs {
                    r.push(e);
                    e = e.saturating_mul(eta);
                }
                r.push(epochs);
                r
            }
            (given, None) => given.to_vec(),
            (_, Some(_)) => return Err("search: give rungs or min_epochs, not both".into()),
        };
        if rungs[0] == 0 || rungs.windows(2).any(|w| w[1] <= w[0]) {
            return Err(format!("search.rungs = {rungs:?}: give epochs above 0 in increasing order"));
        }
        if *rungs.last().expect("a rung") != epochs {
            return Err(format!(
                "search.rungs = {rungs:?}: the last rung must be the runs' train.epochs ({epochs}), where a promoted run ends"
            ));
        }
        Ok(Search {
            method: self.method,
            metric,
            direction: self.direction.unwrap_or(default_direction),
            on_test_set,
            rungs,
            eta,
            max_concurrent: self.max_concurrent,
            budget_rank_hours: self.budget_rank_hours,
            holdout,
            holdout_seed: self.holdout_seed.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asha(toml_text: &str) -> Result<Search, String> {
        let c: SearchConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        c.resolve(500)
    }

    #[test]
    fn defaults_select_on_held_out_loss() {
        let s = asha("method = \"asha\"\nrungs = [50, 150, 500]").unwrap();
        assert_eq!(
            (s.metric.as_str(), s.direction, s.on_test_set, s.holdout, s.eta),
            ("holdout_loss", Direction::Min, false, Some(0.1), 3)
        );
        let s = asha("method = \"asha\"\nmin_epochs = 20\neta = 3").unwrap();
        assert_eq!(s.rungs, vec![20, 60, 180, 500]);
        let s = asha("method = \"asha\"\nrungs = [100, 500]\nmetric = \"image_auroc\"").unwrap();
        assert!(s.on_test_set && s.holdout.is_none() && s.direction == Direction::Max);
        assert_eq!(SearchConfig::default().resolve(7).unwrap().rungs, vec![7], "grid: one rung, the last epoch");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("metric = \"accuracy\"\nrungs = [500]", "search.metric"),
            ("rungs = [150, 50, 500]", "search.rungs"),
            ("rungs = [50, 150]", "search.rungs"),
            ("rungs = [50, 500]\neta = 1", "search.eta"),
            ("rungs = [50, 500]\nbudget_rank_hours = 0.0", "search.budget_rank_hours"),
            ("rungs = [50, 500]\nholdout = 0.5", "search.holdout"),
            ("rungs = [50, 500]\nholdout = 0.0", "search.holdout"),
            ("min_epochs = 0", "search.min_epochs"),
            ("method = \"asha\"", "rungs"),
            ("rungs = [50, 500]\nmax_concurrent = 0", "search.max_concurrent"),
        ] {
            let e = asha(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
        assert!(asha("rungs = [500]\nwhatever = 1").unwrap_err().contains("unknown field"));
    }
}
