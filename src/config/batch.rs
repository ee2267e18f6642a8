//! How a run's global batch (`train.batch_size`) is split over data-parallel ranks: the
//! one rule that the planner (ranks per run), `ras train --ranks`, a sweep's explicit
//! `ranks`, the worker and the trainer all call, so that they cannot disagree.
//!
//! Every rank trains `batch_size / world` samples per step and the gradients are averaged
//! over the ranks, so one step sees `batch_size` samples only when the world size divides
//! it. A world size that does not (64 over 5 ranks: 12 each, 60 in all) would train a
//! batch other than the configured one under the same run id, so it is refused.

/// A world size that does not divide the global batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{world} data-parallel ranks do not divide `train.batch_size` = {batch} (each rank would train {per_rank} \
     samples, {trained} per step instead of {batch}): use {nearest}, or set train.batch_size to a multiple of {world}"
)]
pub struct BatchSplitError {
    pub world: usize,
    pub batch: usize,
    per_rank: usize,
    trained: usize,
    /// "4 or 8 ranks": the valid world sizes just below and above `world`.
    nearest: String,
}

impl BatchSplitError {
    /// The valid world sizes closest to the refused one (below, above), for messages.
    pub fn nearest_valid(&self) -> (Option<usize>, Option<usize>) {
        nearest_divisors(self.batch, self.world)
    }
}

/// Samples each of `world` ranks trains per step, when `world` divides `batch`.
pub fn per_rank_batch(batch: usize, world: usize) -> Result<usize, BatchSplitError> {
    let world = world.max(1);
    if batch > 0 && batch.is_multiple_of(world) {
        return Ok(batch / world);
    }
    let nearest = match nearest_divisors(batch, world) {
        (Some(a), Some(b)) => format!("{a} or {b} ranks"),
        (Some(a), None) => format!("{a} ranks"),
        (None, Some(b)) => format!("{b} ranks"),
        (None, None) => "1 rank".to_string(),
    };
    Err(BatchSplitError { world, batch, per_rank: batch / world, trained: batch / world * world, nearest })
}

/// The world sizes in 1..=max that split `batch` exactly, ascending.
pub fn world_sizes(batch: usize, max: usize) -> Vec<usize> {
    (1..=max.max(1)).filter(|w| batch.is_multiple_of(*w)).collect()
}

/// The largest world size of at most `want` that splits `batch` exactly (1 always does).
pub fn largest_world_size(batch: usize, want: usize) -> usize {
    world_sizes(batch, want).last().copied().unwrap_or(1)
}

fn nearest_divisors(batch: usize, world: usize) -> (Option<usize>, Option<usize>) {
    let below = (1..world).rev().find(|w| batch.is_multiple_of(*w));
    let above = (world + 1..=batch).find(|w| batch.is_multiple_of(*w));
    (below, above)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisors_split_exactly_and_others_are_refused_with_the_nearest_valid_sizes() {
        assert_eq!(per_rank_batch(64, 1), Ok(64));
        assert_eq!(per_rank_batch(64, 4), Ok(16));
        assert_eq!(per_rank_batch(64, 64), Ok(1));
        let e = per_rank_batch(64, 3).unwrap_err();
        assert_eq!(e.nearest_valid(), (Some(2), Some(4)));
        let msg = e.to_string();
        assert!(msg.contains("`train.batch_size` = 64") && msg.contains("2 or 4 ranks"), "{msg}");
        assert!(msg.contains("63 per step"), "{msg}");
        let e = per_rank_batch(64, 5).unwrap_err();
        assert_eq!(e.nearest_valid(), (Some(4), Some(8)));
        // More ranks than samples: nothing above is valid.
        assert_eq!(per_rank_batch(4, 6).unwrap_err().nearest_valid(), (Some(4), None));
    }

    #[test]
    fn world_sizes_are_the_divisors_up_to_the_limit() {
        assert_eq!(world_sizes(64, 8), vec![1, 2, 4, 8]);
        assert_eq!(world_sizes(12, 12), vec![1, 2, 3, 4, 6, 12]);
        assert_eq!(largest_world_size(64, 5), 4);
        assert_eq!(largest_world_size(7, 6), 1);
        assert_eq!(largest_world_size(8, 0), 1);
    }
}
