//! Planning: ranks per run, a cost model, launch order and a makespan estimate.
//!
//! `PlannedRun::cost` is relative: train images x epochs x forward+backward FLOPs of one
//! image through T_e encoder layers and T_d decoder steps at the configured width. It
//! orders runs (longest first). Times, their ranges and rank-hours come from `estimate`
//! at the rates `rates` chooses: measured in the store (the run's shape, else the nearest
//! measured shape scaled by FLOPs), else the profile's bench lines scaled by FLOPs, else
//! the device's defaults (the plan says which, per run, and what each rests on).

use super::estimate::{estimate_runs, flops_per_image, Estimate, Source};
use super::rates::Measurements;
use super::{Manifest, PlannedRun, SweepError};
use crate::config::{ClusterProfile, ClusterShape, RunConfig};

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

/// (train, test) images of a run whose dataset cannot be read here: the dataset kind's
/// published train count, pro rata for a subset of its classes, and half as many test
/// images (only cost estimates use that). (Where the data can be read, expansion counts
/// them from its one scan of the dataset: `expand::DataScans`.)
pub fn published_images(cfg: &RunConfig) -> (usize, usize) {
    let total = cfg.dataset.kind.published_train_images();
    let train = match (cfg.dataset.classes.len(), cfg.dataset.kind.published_classes()) {
        (0, _) => total,
        (k, Some(all)) => (total * k).div_ceil(all.len()),
        (_, None) => total,
    };
    (train, train / 2)
}

/// Ranks for a run: one per 2000 training images, at least 1, never more than the
/// cluster's slots nor than train images / batch (each rank needs whole batches), and
/// always a world size that divides the global batch (`config::batch`), so the batch
/// trained is the batch configured: the largest such size within those bounds.
pub fn choose_ranks(train_images: usize, batch: usize, max_ranks: usize) -> usize {
    let by_size = train_images.div_ceil(2000).max(1);
    let by_batch = (train_images / batch.max(1)).max(1);
    crate::config::batch::largest_world_size(batch, by_size.min(by_batch).min(max_ranks.max(1)))
}

pub(super) fn planned(
    cfg: RunConfig,
    label: String,
    variant: String,
    dataset: String,
    ranks: Option<usize>,
    max_ranks: usize,
    (images, test_images): (usize, usize),
) -> PlannedRun {
    let ranks = ranks.unwrap_or_else(|| choose_ranks(images, cfg.train.batch_size, max_ranks));
    let cost = images as f64 * cfg.train.epochs as f64 * flops_per_image(&cfg) / 1e9;
    let feature_key = crate::run::cost::feature_key(&cfg);
    PlannedRun {
        id: cfg.run_id(),
        label,
        variant,
        dataset,
        config_toml: cfg.to_toml(),
        ranks,
        train_images: images,
        test_images,
        cost,
        feature_key,
        estimate: None,
        parsed: Default::default(),
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
/// as soon as enough nodes have enough free slots, on the nodes `place` picks, and takes
/// `durations[i]` (the estimate's wall seconds). Returns one `Slot` per run and the
/// makespan, in the durations' unit.
pub fn schedule(runs: &[PlannedRun], durations: &[f64], shape: ClusterShape) -> (Vec<Slot>, f64) {
    let per = shape.ranks_per_node.max(1);
    // free_at[node][slot]: when that rank slot is next free.
    let mut free_at = vec![vec![0.0f64; per]; shape.nodes.max(1)];
    let mut out = vec![];
    for (r, &duration) in runs.iter().zip(durations) {
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
        let end = start + duration;
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

/// Every run's estimate: the manifest's (`estimate::estimate_all` filled it from the
/// store), else from the profile's bench lines or the device's defaults.
pub fn estimates(manifest: &Manifest, profile: &ClusterProfile) -> Result<Vec<Estimate>, SweepError> {
    if manifest.runs.iter().all(|r| r.estimate.is_some()) {
        return Ok(manifest.runs.iter().filter_map(|r| r.estimate.clone()).collect());
    }
    let fresh = estimate_runs(manifest, &Measurements::default(), profile)?;
    Ok(manifest.runs.iter().zip(fresh).map(|(r, e)| r.estimate.clone().unwrap_or(e)).collect())
}

/// The plan: estimates, slots (in seconds) and the makespan.
fn scheduled(manifest: &Manifest, profile: &ClusterProfile) -> Result<(Vec<Estimate>, Vec<Slot>, f64), SweepError> {
    let est = estimates(manifest, profile)?;
    let durations: Vec<f64> = est.iter().map(|e| e.wall_s).collect();
    let (slots, total) = schedule(&manifest.runs, &durations, profile.shape());
    Ok((est, slots, total))
}

/// `ras plan --no-data-check`: the runs whose data was not readable here (planned from
/// their dataset's published sizes), one line each under a heading; when every run's data
/// was readable, a line saying so (`checked`: the data was checked, nothing to say).
pub fn render_unchecked(issues: &[super::DataIssue], checked: bool) -> String {
    if issues.is_empty() {
        let note = "--no-data-check: every run's data was readable here; sizes are counted from it\n";
        return if checked { String::new() } else { note.to_string() };
    }
    let mut s = format!(
        "--no-data-check: {} runs planned from their dataset's published sizes (data not readable here):\n",
        issues.len()
    );
    for i in issues {
        s += &format!("  run `{}`: {}: {}\n", i.label, i.key, i.message);
    }
    s
}

/// `ras plan --json`: one object per run, in launch order.
pub fn plan_json(manifest: &Manifest, profile: &ClusterProfile) -> Result<serde_json::Value, SweepError> {
    let (est, slots, total) = scheduled(manifest, profile)?;
    let runs: Vec<serde_json::Value> = manifest
        .runs
        .iter()
        .zip(&slots)
        .zip(&est)
        .map(|((r, s), e)| {
            serde_json::json!({
                "id": r.id, "label": r.label, "ranks": r.ranks, "nodes": slot_nodes(s, profile),
                "ranks_per_node": s.ranks_per_node, "train_images": r.train_images, "test_images": r.test_images,
                "pflop": r.cost / 1e6, "estimate": e, "source": e.source.to_string(),
                "wall_s": e.wall_s, "low_s": e.low_s, "high_s": e.high_s,
                "start_h": s.start / 3600.0, "end_h": s.end / 3600.0,
            })
        })
        .collect();
    let rank_hours: f64 = est.iter().map(|e| e.rank_hours).sum();
    let (low, high) = rank_hours_range(&est);
    Ok(serde_json::json!({
        "sweep": manifest.name, "pinned": !profile.node_names.is_empty(), "rank_hours": rank_hours,
        "rank_hours_low": low, "rank_hours_high": high, "makespan_h": total / 3600.0,
        "bases": bases(&est), "runs": runs,
    }))
}

/// Seconds as `12s`, `3m20s` or `2h05m`.
pub fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `ras plan`: the table of runs, ranks, nodes, estimated phases and rank-hours, start
/// and end, and where each estimate came from.
pub fn render_plan(manifest: &Manifest, profile: &ClusterProfile) -> Result<String, SweepError> {
    let (est, slots, total) = scheduled(manifest, profile)?;
    let mut s = format!(
        "sweep {}: {} runs on {} nodes x {} ranks ({}), max_retries {}\n",
        manifest.name,
        manifest.runs.len(),
        profile.nodes,
        profile.ranks_per_node(),
        profile.launcher,
        manifest.max_retries
    );
    if let Some(n) = &manifest.note {
        s += &format!("note: {}\n", n.trim());
    }
    s += &format!(
        "{:>3} {:<30} {:>5} {:<14} {:>7} {:>7} {:>7} {:>7} {:>7} {:>15} {:>8} {:>7} {:>7}  {:<30} {}\n",
        "#",
        "run",
        "ranks",
        "nodes",
        "images",
        "feat",
        "train",
        "eval",
        "wall",
        "range",
        "rank-h",
        "start",
        "end",
        "estimate from",
        "label"
    );
    for (i, ((r, slot), e)) in manifest.runs.iter().zip(&slots).zip(&est).enumerate() {
        let cache = match e.cache_job {
            Some(true) => " (fills feature cache)",
            Some(false) => " (feature-cache job; the cache is filled already)",
            None => "",
        };
        s += &format!(
            "{:>3} {:<30} {:>5} {:<14} {:>7} {:>7} {:>7} {:>7} {:>7} {:>15} {:>8.4} {:>7} {:>7}  {:<30} {}{}\n",
            i + 1,
            r.id,
            r.ranks,
            slot_nodes(slot, profile).join(","),
            r.train_images,
            fmt_secs(e.features_s),
            fmt_secs(e.train_s),
            fmt_secs(e.eval_s),
            fmt_secs(e.wall_s),
            format!("{}-{}", fmt_secs(e.low_s), fmt_secs(e.high_s)),
            e.rank_hours,
            fmt_secs(slot.start),
            fmt_secs(slot.end),
            e.source.to_string(),
            r.label,
            cache
        );
    }
    let sum = |f: fn(&Estimate) -> f64| est.iter().map(f).sum::<f64>();
    let (low, high) = rank_hours_range(&est);
    s += &format!(
        "total {:.4} rank-hours ({:.4}-{:.4}; features {}, train {}, eval {}, start-up {} of wall); makespan {} (greedy, longest first)\n",
        sum(|e| e.rank_hours),
        low,
        high,
        fmt_secs(sum(|e| e.features_s)),
        fmt_secs(sum(|e| e.train_s)),
        fmt_secs(sum(|e| e.eval_s)),
        fmt_secs(sum(|e| e.other_s)),
        fmt_secs(total)
    );
    s += &sources_line(&est);
    s += "rates, and where each comes from:\n";
    for (basis, n) in bases(&est) {
        s += &format!("  {n} runs: {basis}\n");
    }
    if profile.node_names.is_empty() {
        s += "nodes: where the plan puts runs; Slurm chooses the actual nodes (name them in the profile's node_names to pin runs)\n";
    }
    Ok(s)
}

/// The total rank-hours' low and high ends (each run's rank-hours in the ratio of its
/// range to its wall time).
fn rank_hours_range(est: &[Estimate]) -> (f64, f64) {
    let part = |e: &Estimate, end: f64| if e.wall_s > 0.0 { e.rank_hours * end / e.wall_s } else { 0.0 };
    (est.iter().map(|e| part(e, e.low_s)).sum(), est.iter().map(|e| part(e, e.high_s)).sum())
}

/// Each distinct account of where the rates came from, with its number of runs, in
/// first-seen order.
fn bases(est: &[Estimate]) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = vec![];
    for e in est.iter().filter(|e| !e.basis.is_empty()) {
        match out.iter_mut().find(|(b, _)| *b == e.basis) {
            Some((_, n)) => *n += 1,
            None => out.push((e.basis.clone(), 1)),
        }
    }
    out
}

/// How many estimates came from each source, and what to do about unmeasured ones.
fn sources_line(est: &[Estimate]) -> String {
    let count = |f: &dyn Fn(&Source) -> bool| est.iter().filter(|e| f(&e.source)).count();
    let same = count(&|s| matches!(s, Source::Measured { flop_ratio: None, .. }));
    let scaled = count(&|s| matches!(s, Source::Measured { flop_ratio: Some(_), .. }));
    let bench = count(&|s| matches!(s, Source::Bench { .. }));
    let cited = count(&|s| matches!(s, Source::Default { cited: true, .. }));
    let default = count(&|s| matches!(s, Source::Default { cited: false, .. }));
    let asserted = count(&|s| matches!(s, Source::Flops { .. }));
    let mut s = format!(
        "estimates: {same} from measured runs of the same shape, {scaled} scaled by FLOPs from the nearest measured shape, {bench} from the profile's bench lines, {default} from the CPU rates measured here, {cited} from cited GPU rates (not measured), {asserted} from an asserted TFLOP/s\n"
    );
    if cited + default + asserted > 0 {
        s += "  (measure instead: run one job of the sweep first, or paste the lines of `ras bench train-step` on the profile's device into the profile)\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_size_and_caps() {
        assert_eq!(choose_ranks(100, 16, 8), 1);
        assert_eq!(choose_ranks(8659, 64, 8), 4, "5 by size, but 5 ranks would train 60 of 64");
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
            test_images: 0,
            cost,
            feature_key: String::new(),
            estimate: None,
            parsed: Default::default(),
        }
    }

    /// `schedule` with durations of cost / ranks (perfect scaling).
    fn schedule_costs(runs: &[PlannedRun], shape: ClusterShape) -> (Vec<Slot>, f64) {
        let durations: Vec<f64> = runs.iter().map(|r| r.cost / r.ranks as f64).collect();
        schedule(runs, &durations, shape)
    }

    #[test]
    fn schedule_packs_runs_on_nodes() {
        let two = ClusterShape { nodes: 2, ranks_per_node: 1 };
        // Two 1-rank runs side by side, then a 2-rank run across both nodes.
        let (slots, total) = schedule_costs(&[run("a", 1, 10.0), run("b", 1, 6.0), run("c", 2, 8.0)], two);
        assert_eq!((slots[0].start, slots[0].nodes.clone()), (0.0, vec![0]));
        assert_eq!((slots[1].start, slots[1].nodes.clone()), (0.0, vec![1]));
        assert_eq!((slots[2].start, slots[2].end, slots[2].nodes.clone()), (10.0, 14.0, vec![0, 1]));
        assert_eq!(total, 14.0);
        // One node of 4 slots: a 2-rank and two 1-rank runs all start at once.
        let (slots, _) = schedule_costs(
            &[run("a", 2, 10.0), run("b", 1, 6.0), run("c", 1, 2.0)],
            ClusterShape { nodes: 1, ranks_per_node: 4 },
        );
        assert!(slots.iter().all(|s| s.start == 0.0), "{slots:?}");
        // A run that fits only after an earlier one ends waits for it.
        let (slots, _) =
            schedule_costs(&[run("a", 2, 10.0), run("b", 3, 9.0)], ClusterShape { nodes: 1, ranks_per_node: 4 });
        assert_eq!(slots[1].start, 5.0);
    }
}
