//! Training-time dropout (`model.dropout`, UniAD's recipe: 0.1) with seeded masks: the
//! mask of every dropout of a forward pass is a function of (seed, epoch, sample id, site),
//! site being the dropout's place in forward order, so training stays independent of how
//! samples are batched and sharded over ranks, and a resumed run is bit-identical to an
//! uninterrupted one (as the jitter noise, see `crate::rng`). torch's own dropout draws
//! from the global generator in batch order, which would lose both properties.
//!
//! Eval (and `model.dropout = 0`) passes no `Dropout`: every layer then computes exactly
//! what it computes without dropout support (the same kernels, so the same bits).

use crate::rng::{dropout_keep, dropout_key};
use std::cell::{Cell, RefCell};
use tch::Tensor;

/// The dropout of one training forward pass over a batch.
#[derive(Debug)]
pub struct Dropout {
    p: f64,
    seed: u64,
    epoch: usize,
    /// The batch's sample ids, row b of the batch being sample `ids[b]`.
    ids: Vec<usize>,
    /// The next site's number (dropouts are numbered in forward order).
    site: Cell<u64>,
    /// Every keep mask drawn, in order, when recording (tests and inspection).
    recorded: Option<RefCell<Vec<Tensor>>>,
}

impl Dropout {
    /// Dropout with drop probability `p` in [0, 1) for the samples `ids` of `epoch`.
    pub fn new(p: f64, seed: u64, epoch: usize, ids: &[usize]) -> Self {
        assert!((0.0..1.0).contains(&p), "dropout probability {p} must lie in [0, 1)");
        Self { p, seed, epoch, ids: ids.to_vec(), site: Cell::new(0), recorded: None }
    }

    /// The same, keeping every mask it draws ([`Self::masks`]).
    pub fn recording(mut self) -> Self {
        self.recorded = Some(RefCell::new(vec![]));
        self
    }

    pub fn p(&self) -> f64 {
        self.p
    }

    /// The keep masks drawn so far, in forward order (empty unless recording).
    pub fn masks(&self) -> Vec<Tensor> {
        self.recorded.as_ref().map(|r| r.borrow().iter().map(|t| t.shallow_clone()).collect()).unwrap_or_default()
    }

    /// Inverted dropout of `x` (B, ...), B = the batch's samples: the next site's mask,
    /// kept values scaled by 1 / (1 - p), as torch.nn.functional.dropout in training.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let site = self.site.get();
        self.site.set(site + 1);
        let size = x.size();
        assert_eq!(size[0], self.ids.len() as i64, "dropout: batch of {} rows for {} samples", size[0], self.ids.len());
        let keys: Vec<u32> = self.ids.iter().map(|&i| dropout_key(self.seed, self.epoch, i, site)).collect();
        let keep = dropout_keep(&keys, &size[1..], self.p, x.device());
        if let Some(r) = &self.recorded {
            r.borrow_mut().push(keep.shallow_clone());
        }
        // torch's order: the mask scaled first, then one product with the input.
        x * (keep.to_kind(x.kind()) / (1.0 - self.p))
    }
}

/// `x` through `drop` when there is one and its probability is not 0, else `x` itself.
pub fn maybe(drop: Option<&Dropout>, x: Tensor) -> Tensor {
    match drop {
        Some(d) if d.p > 0.0 => d.apply(&x),
        _ => x,
    }
}
