//! One contiguous buffer each for the parameters, their gradients and the AdamW moments,
//! which the per-parameter tensors are views into. AdamW, gradient clipping, zeroing and
//! the all-reduce are then a handful of whole-buffer operations instead of ~8 small
//! operations for each of the model's ~230 tensors (per-op overhead is what dominates a
//! small model, and on a GPU every small op is a kernel launch), and the gradient buffer is
//! the all-reduce bucket itself (no copy in or out).
//!
//! Layout: the parameters that receive a gradient come first (in name order), then those
//! that never do (the output projections of decoder steps before the last): AdamW
//! updates only the first part, as torch.optim.AdamW skips parameters whose `.grad` is
//! None. Which parameters get gradients is known only after a backward pass, so the
//! trainer builds the buffers after one on a single zero sample, before any real step.
//!
//! How the views stay views: a parameter's storage is replaced with `set_data` (Python's
//! `p.data = view`), which every handle of that tensor (the VarStore's, the modules') sees.
//! Gradients are made views the same way, and autograd then accumulates into them in
//! place (AccumulateGrad adds into a defined `.grad` when not building a graph), so they
//! stay views as long as they are zeroed in place, never reset to undefined.
//! Elementwise updates on a flat buffer compute exactly what they compute per tensor, so
//! AdamW gives bit-identical results; the clipping norm is one reduction over the buffer
//! instead of a norm of per-tensor norms (equal up to float rounding).

use super::optim::AdamW;

/// Elements per alignment unit of the buffers (32 fp32 = 128 bytes).
const ALIGN: i64 = 32;
use tch::{Kind, Tensor};

pub struct FlatState {
    /// Every parameter, trained ones first.
    pub params: Tensor,
    /// Gradients of the trained parameters, then `extra` slots the caller uses (loss and
    /// stop flag in the all-reduce).
    pub grads: Tensor,
    /// AdamW moments of the trained parameters.
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
    /// Elements in the trained part.
    pub trained: i64,
}

impl FlatState {
    /// Moves `params` (whose gradients a backward pass just computed), their gradients and
    /// `opt`'s moments into flat buffers; the tensors become views with the same values.
    pub fn build(params: &mut [Tensor], opt: &mut AdamW, extra: i64) -> Self {
        let device = params.first().map(|p| p.device()).unwrap_or(tch::Device::Cpu);
        let has_grad: Vec<bool> = params.iter().map(|p| p.grad().defined()).collect();
        let order: Vec<usize> =
            (0..params.len()).filter(|&i| has_grad[i]).chain((0..params.len()).filter(|&i| !has_grad[i])).collect();
        // Each tensor starts at a multiple of 128 bytes into a buffer that is itself aligned
        // (64 bytes by libtorch's CPU allocator, 256 by CUDA's), so it is aligned at least
        // as a tensor of its own would be: vectorised and matrix kernels (MKL, oneDNN,
        // cuBLAS) then see operands laid out as they would without the flat buffers. (On
        // this project's CPUs, GEMMs, sums, softmax and layer norm gave bit-equal results
        // at every 64-byte offset tried.) The gaps stay zero.
        let numel = |t: &Tensor| (t.numel() as i64 + ALIGN - 1) / ALIGN * ALIGN;
        let total: i64 = params.iter().map(numel).sum();
        let trained: i64 = params.iter().zip(&has_grad).filter(|(_, g)| **g).map(|(p, _)| numel(p)).sum();
        let opts = (Kind::Float, device);
        let flat = Self {
            params: Tensor::zeros([total], opts),
            grads: Tensor::zeros([trained + extra], opts),
            exp_avg: Tensor::zeros([trained], opts),
            exp_avg_sq: Tensor::zeros([trained], opts),
            trained,
        };
        tch::no_grad(|| {
            let mut off = 0i64;
            for &i in &order {
                let (n, shape) = (params[i].numel() as i64, params[i].size());
                let view = |buf: &Tensor| buf.narrow(0, off, n).view(shape.as_slice());
                let mut p = view(&flat.params);
                let _ = p.copy_(&params[i]);
                params[i].set_data(&p);
                if has_grad[i] {
                    let mut g = view(&flat.grads);
                    let mut grad = params[i].grad();
                    let _ = g.copy_(&grad);
                    grad.set_data(&g);
                    for (buf, moment) in
                        [(&flat.exp_avg, &mut opt.exp_avg[i]), (&flat.exp_avg_sq, &mut opt.exp_avg_sq[i])]
                    {
                        let mut m = view(buf);
                        let _ = m.copy_(moment);
                        moment.set_data(&m);
                    }
                }
                off += numel(&params[i]);
            }
        });
        flat
    }

    pub fn zero_grads(&self) {
        let mut g = self.grads.shallow_clone();
        let _ = g.zero_();
    }

    /// The trained parameters' part of the gradient buffer.
    pub fn trained_grads(&self) -> Tensor {
        self.grads.narrow(0, 0, self.trained)
    }

    /// The trained parameters' part of the parameter buffer.
    pub fn trained_params(&self) -> Tensor {
        self.params.narrow(0, 0, self.trained)
    }
}
