//! Planning: ranks per run, a cost model, launch order and a makespan estimate.
//!
//! Cost is deliberately simple and relative: train images x epochs x forward+backward
//! FLOPs of one image through T_e encoder layers and T_d decoder steps at the configured
//! width. It ranks runs (longest first) and sizes the makespan; it does not promise
//! wall-clock times beyond the profile's assumed throughput.

use super::PlannedRun;
use crate::config::{DecoderKind, RunConfig};

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

/// Greedy list scheduling in manifest order onto `slots` rank slots: each run starts when
/// enough slots are free. Returns (start, end) per run in cost units and the makespan.
pub fn makespan(runs: &[PlannedRun], slots: usize) -> (Vec<(f64, f64)>, f64) {
    let slots = slots.max(1);
    let mut free_at = vec![0.0f64; slots];
    let mut out = vec![];
    for r in runs {
        let k = r.ranks.min(slots);
        free_at.sort_by(|a, b| a.total_cmp(b));
        let start = free_at[k - 1];
        // Data parallelism: near-linear speed-up assumed (all-reduce cost ignored).
        let end = start + r.cost / k as f64;
        for s in free_at.iter_mut().take(k) {
            *s = end;
        }
        out.push((start, end));
    }
    let total = out.iter().map(|(_, e)| *e).fold(0.0, f64::max);
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
}
