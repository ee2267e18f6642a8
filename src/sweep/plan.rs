//! Planning: ranks per run, a cost model, launch order and a makespan estimate.
//!
//! Cost is deliberately simple and relative: train images x epochs x forward+backward
//! FLOPs of one image through T_e encoder layers and T_d decoder steps at the configured
//! width. It ranks runs (longest first) and sizes the makespan; it does not promise
//! wall-clock times beyond the profile's assumed throughput.

use super::{Manifest, PlannedRun};
use crate::config::{ClusterProfile, ClusterShape, DecoderKind, RunConfig};

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

/// Training images of a run whose dataset cannot be read here: the dataset kind's
/// published count, pro rata for a subset of its classes. (Where the data can be read,
/// expansion counts them from its one scan of the dataset: `expand::DataScans`.)
pub fn published_train_images(cfg: &RunConfig) -> usize {
    let total = cfg.dataset.kind.published_train_images();
    match (cfg.dataset.classes.len(), cfg.dataset.kind.published_classes()) {
        (0, _) => total,
        (k, Some(all)) => (total * k).div_ceil(all.len()),
        (_, None) => total,
    }
}

/// Ranks for a run: one per 2000 training images, at least 1, never more than the
/// cluster's slots nor than train images / batch (each rank needs whole batches).
pub fn choose_ranks(train_images: usize, batch: usize, max_ranks: usize) -> usize {
    let by_size = train_images.div_ceil(2000).max(1);
    let by_batch = (train_images / batch.max(1)).max(1);
    by_size.min(by_batch).min(max_ranks.max(1))
}

pub(super) fn planned(cfg: RunConfig, label: String, variant: String, dataset: String, ranks: Option<usize>, max_ranks: usize, images: usize) -> PlannedRun {
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
        id: cfg.run_id(),
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

/// Node names of a plan slot: the profile's names, or node0.. when it names none.
fn slot_nodes(slot: &Slot, profile: &ClusterProfile) -> Vec<String> {
    slot.nodes.iter().map(|&i| profile.node_name(i)).collect()
}

/// Hours of `gflops` of work on one rank sustaining the profile's TFLOP/s.
fn hours(profile: &ClusterProfile, gflops: f64) -> f64 {
    gflops / (profile.tflops() * 1e3) / 3600.0
}

/// `ras plan --json`: one object per run, in launch order.
pub fn plan_json(manifest: &Manifest, profile: &ClusterProfile) -> serde_json::Value {
    let (slots, total) = schedule(&manifest.runs, profile.shape());
    let runs: Vec<serde_json::Value> = manifest
        .runs
        .iter()
        .zip(&slots)
        .map(|(r, s)| {
            serde_json::json!({
                "id": r.id, "label": r.label, "ranks": r.ranks, "nodes": slot_nodes(s, profile),
                "ranks_per_node": s.ranks_per_node, "train_images": r.train_images, "pflop": r.cost / 1e6,
                "start_h": hours(profile, s.start), "end_h": hours(profile, s.end),
            })
        })
        .collect();
    serde_json::json!({"sweep": manifest.name, "pinned": !profile.node_names.is_empty(), "makespan_h": hours(profile, total), "runs": runs})
}

/// `ras plan`: the table of runs, ranks, nodes, cost and start/end hours.
pub fn render_plan(manifest: &Manifest, profile: &ClusterProfile) -> String {
    let (slots, total) = schedule(&manifest.runs, profile.shape());
    let mut s = format!(
        "sweep {}: {} runs on {} nodes x {} ranks ({}, {} TFLOP/s per rank assumed), max_retries {}\n",
        manifest.name,
        manifest.runs.len(),
        profile.nodes,
        profile.ranks_per_node(),
        profile.launcher,
        profile.tflops(),
        manifest.max_retries
    );
    if let Some(n) = &manifest.note {
        s += &format!("note: {}\n", n.trim());
    }
    s += &format!("{:>3} {:<30} {:>5} {:<14} {:>8} {:>12} {:>8} {:>8}  {}\n", "#", "run", "ranks", "nodes", "images", "PFLOP", "start h", "end h", "label");
    let mut keys = std::collections::BTreeSet::new();
    for (i, (r, slot)) in manifest.runs.iter().zip(&slots).enumerate() {
        let filler = if keys.insert(r.feature_key.clone()) { " (fills feature cache)" } else { "" };
        s += &format!(
            "{:>3} {:<30} {:>5} {:<14} {:>8} {:>12.3} {:>8.2} {:>8.2}  {}{}\n",
            i + 1,
            r.id,
            r.ranks,
            slot_nodes(slot, profile).join(","),
            r.train_images,
            r.cost / 1e6,
            hours(profile, slot.start),
            hours(profile, slot.end),
            r.label,
            filler
        );
    }
    let cost: f64 = manifest.runs.iter().map(|r| r.cost).sum();
    s += &format!(
        "total {:.3} PFLOP = {:.2} rank-hours; makespan {:.2} h (greedy, longest first)\n",
        cost / 1e6,
        hours(profile, cost),
        hours(profile, total)
    );
    if profile.node_names.is_empty() {
        s += "nodes: where the plan puts runs; Slurm chooses the actual nodes (name them in the profile's node_names to pin runs)\n";
    }
    s
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
