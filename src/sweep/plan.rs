//! Planning: ranks per run, a cost model, launch order and a makespan estimate.
//!
//! Cost is deliberately simple and relative: train images x epochs x forward+backward
//! FLOPs of one image through T_e encoder layers and T_d decoder steps at the configured
//! width. It ranks runs (longest first) and sizes the makespan; it does not promise
//! wall-clock times beyond the profile's assumed throughput.

use super::PlannedRun;
use crate::config::{DecoderKind, RunConfig};

/// What the planner packs runs onto: `nodes` nodes of `ranks_per_node` rank slots each
/// (GPUs, or CPU cores / cpus_per_gpu).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterShape {
    pub nodes: usize,
    pub ranks_per_node: usize,
}

impl Default for ClusterShape {
    fn default() -> Self {
        Self { nodes: 1, ranks_per_node: 1 }
    }
}

impl ClusterShape {
    pub fn slots(&self) -> usize {
        self.nodes.max(1) * self.ranks_per_node.max(1)
    }

    /// (nodes, ranks per node) of a run of `ranks` ranks: as few nodes as hold it (ranks
    /// on one node talk through shared memory, across nodes through the network), the
    /// ranks spread evenly over them. A run wider than the cluster gets every node.
    pub fn layout(&self, ranks: usize) -> (usize, usize) {
        let ranks = ranks.max(1);
        let nodes = ranks.div_ceil(self.ranks_per_node.max(1)).clamp(1, self.nodes.max(1));
        (nodes, ranks.div_ceil(nodes))
    }
}

/// Chooses `count` nodes with at least `per_node` free slots each (`free[i]` for node i):
/// the fullest nodes that still fit first (best fit, which keeps whole nodes free for
/// wide runs), ties to the lower index. None when the run does not fit now. The
/// coordinator places runs with this, and the plan simulates the same rule.
pub fn place(free: &[usize], count: usize, per_node: usize) -> Option<Vec<usize>> {
    let mut fit: Vec<usize> = (0..free.len()).filter(|&i| free[i] >= per_node).collect();
    if fit.len() < count {
        return None;
    }
    fit.sort_by_key(|&i| (free[i], i));
    let mut chosen: Vec<usize> = fit.into_iter().take(count).collect();
    chosen.sort_unstable();
    Some(chosen)
}

/// Forward+backward FLOPs of one image (tokens = (image_size / 16)^2).
pub fn flops_per_image(cfg: &RunConfig) -> f64 {
    let m = &cfg.model;
    let c = m.hidden_dim as f64;
    let f = m.ffn_dim as f64;
    let n = ((cfg.backbone.image_size / 16) as f64).powi(2);
    let attn = 2.0 * (4.0 * n * c * c + 2.0 * n * n * c); // projections + scores/values
    let ffn = 2.0 * 2.0 * n * c * f;
    let enc = m.encoder_layers as f64 * (attn + ffn);
    let step = match m.decoder {
        DecoderKind::Ras => attn + 2.0 * 2.0 * n * c * c * 2.0, // cross-attention + gate + update projection
        DecoderKind::GateOnly => 2.0 * 2.0 * n * c * c * 2.0,
        DecoderKind::TransformerOnly => attn + 2.0 * 2.0 * n * c * c,
        DecoderKind::Uniad => 2.0 * attn + ffn,
    };
    let io = 2.0 * 2.0 * n * c * 272.0;
    3.0 * (enc + m.decoder_layers as f64 * step + io)
}

fn train_images(cfg: &RunConfig) -> usize {
    match crate::data::scan(&cfg.dataset) {
        Ok(index) => index.classes.iter().map(|(_, s)| s.train.len()).sum(),
        Err(_) => {
            let total = super::published_train_images(&cfg.dataset.kind);
            match (cfg.dataset.classes.len(), super::published_classes(&cfg.dataset.kind)) {
                (0, _) => total,
                (k, Some(all)) => (total * k).div_ceil(all.len()),
                (_, None) => total,
            }
        }
    }
}

/// Ranks for a run: one per 2000 training images, at least 1, never more than the
/// cluster's slots nor than train images / batch (each rank needs whole batches).
pub fn choose_ranks(train_images: usize, batch: usize, max_ranks: usize) -> usize {
    let by_size = train_images.div_ceil(2000).max(1);
    let by_batch = (train_images / batch.max(1)).max(1);
    by_size.min(by_batch).min(max_ranks.max(1))
}

pub(super) fn planned(cfg: RunConfig, label: String, variant: String, dataset: String, ranks: Option<usize>, max_ranks: usize) -> PlannedRun {
    let images = train_images(&cfg);
    let ranks = ranks.unwrap_or_else(|| choose_ranks(images, cfg.train.batch_size, max_ranks));
    let cost = images as f64 * cfg.train.epochs as f64 * flops_per_image(&cfg) / 1e9;
    let b = &cfg.backbone;
    let feature_key = format!(
        "{}:{}:{:?}:{}:{}",
        cfg.dataset.root.display(),
        b.arch,
        b.outblocks,
        b.image_size,
        b.weights.as_ref().map(|w| w.display().to_string()).unwrap_or_else(|| format!("init{}", b.init_seed)),
    );
    PlannedRun {
        id: crate::run::run_id(&cfg),
        label,
        variant,
        dataset,
        config_toml: cfg.to_toml(),
        ranks,
        train_images: images,
        cost,
        feature_key,
    }
}

/// Launch order: for each feature-cache key its costliest run first (so the cache is
/// filled once, early, and every later run reuses it), then the rest longest first.
pub(super) fn order(mut runs: Vec<PlannedRun>) -> Vec<PlannedRun> {
    runs.sort_by(|a, b| b.cost.total_cmp(&a.cost).then(a.id.cmp(&b.id)));
    let mut seen = std::collections::BTreeSet::new();
    let (first, rest): (Vec<_>, Vec<_>) = runs.into_iter().partition(|r| seen.insert(r.feature_key.clone()));
    first.into_iter().chain(rest).collect()
}

/// Where and when one run goes in the plan (times in cost units, see `schedule`).
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub start: f64,
    pub end: f64,
    /// Node indices, one per node the run spans.
    pub nodes: Vec<usize>,
    pub ranks_per_node: usize,
}

/// Greedy list scheduling in manifest order onto the cluster's nodes: each run starts
/// as soon as enough nodes have enough free slots, on the nodes `place` picks. Returns
/// one `Slot` per run and the makespan, in cost units (GFLOP per rank).
pub fn schedule(runs: &[PlannedRun], shape: ClusterShape) -> (Vec<Slot>, f64) {
    let per = shape.ranks_per_node.max(1);
    // free_at[node][slot]: when that rank slot is next free.
    let mut free_at = vec![vec![0.0f64; per]; shape.nodes.max(1)];
    let mut out = vec![];
    for r in runs {
        let (count, m) = shape.layout(r.ranks);
        let m_fit = m.min(per);
        // When node i has m slots free: its m-th earliest free time.
        let ready = |node: &Vec<f64>| {
            let mut t = node.clone();
            t.sort_by(|a, b| a.total_cmp(b));
            t[m_fit - 1]
        };
        let mut readiness: Vec<f64> = free_at.iter().map(ready).collect();
        readiness.sort_by(|a, b| a.total_cmp(b));
        let start = readiness[count - 1];
        let free_now: Vec<usize> = free_at.iter().map(|n| n.iter().filter(|&&t| t <= start).count()).collect();
        let nodes = place(&free_now, count, m_fit).expect("enough nodes are free at the start time");
        // Data parallelism: near-linear speed-up assumed (all-reduce cost ignored).
        let end = start + r.cost / r.ranks.max(1) as f64;
        for &n in &nodes {
            let mut idx: Vec<usize> = (0..per).filter(|&k| free_at[n][k] <= start).collect();
            idx.truncate(m_fit);
            for k in idx {
                free_at[n][k] = end;
            }
        }
        out.push(Slot { start, end, nodes, ranks_per_node: m });
    }
    let total = out.iter().map(|s| s.end).fold(0.0, f64::max);
    (out, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_size_and_caps() {
        assert_eq!(choose_ranks(100, 16, 8), 1);
        assert_eq!(choose_ranks(8659, 64, 8), 5);
        assert_eq!(choose_ranks(8659, 64, 2), 2);
        assert_eq!(choose_ranks(20, 16, 8), 1);
        assert_eq!(choose_ranks(40_000, 16_000, 64), 2, "never more ranks than whole batches");
    }

    #[test]
    fn layout_uses_fewest_nodes_and_spreads_evenly() {
        let s = ClusterShape { nodes: 4, ranks_per_node: 8 };
        assert_eq!(s.layout(1), (1, 1));
        assert_eq!(s.layout(8), (1, 8));
        assert_eq!(s.layout(12), (2, 6));
        assert_eq!(s.layout(40), (4, 10), "wider than the cluster: every node, oversubscribed");
        assert_eq!(ClusterShape { nodes: 2, ranks_per_node: 1 }.layout(2), (2, 1));
    }

    #[test]
    fn place_is_best_fit_and_refuses_what_does_not_fit() {
        assert_eq!(place(&[1, 1], 1, 1), Some(vec![0]));
        assert_eq!(place(&[0, 1], 1, 1), Some(vec![1]));
        assert_eq!(place(&[8, 2, 4], 1, 2), Some(vec![1]), "fullest node that fits");
        assert_eq!(place(&[8, 2, 4], 2, 3), Some(vec![0, 2]));
        assert_eq!(place(&[1, 0], 2, 1), None);
    }

    fn run(id: &str, ranks: usize, cost: f64) -> PlannedRun {
        PlannedRun {
            id: id.into(),
            label: id.into(),
            variant: id.into(),
            dataset: "d".into(),
            config_toml: String::new(),
            ranks,
            train_images: 0,
            cost,
            feature_key: String::new(),
        }
    }

    #[test]
    fn schedule_packs_runs_on_nodes() {
        let two = ClusterShape { nodes: 2, ranks_per_node: 1 };
        // Two 1-rank runs side by side, then a 2-rank run across both nodes.
        let (slots, total) = schedule(&[run("a", 1, 10.0), run("b", 1, 6.0), run("c", 2, 8.0)], two);
        assert_eq!((slots[0].start, slots[0].nodes.clone()), (0.0, vec![0]));
        assert_eq!((slots[1].start, slots[1].nodes.clone()), (0.0, vec![1]));
        assert_eq!((slots[2].start, slots[2].end, slots[2].nodes.clone()), (10.0, 14.0, vec![0, 1]));
        assert_eq!(total, 14.0);
        // One node of 4 slots: a 2-rank and two 1-rank runs all start at once.
        let (slots, _) = schedule(&[run("a", 2, 10.0), run("b", 1, 6.0), run("c", 1, 2.0)], ClusterShape { nodes: 1, ranks_per_node: 4 });
        assert!(slots.iter().all(|s| s.start == 0.0), "{slots:?}");
        // A run that fits only after an earlier one ends waits for it.
        let (slots, _) = schedule(&[run("a", 2, 10.0), run("b", 3, 9.0)], ClusterShape { nodes: 1, ranks_per_node: 4 });
        assert_eq!(slots[1].start, 5.0);
    }
}
