//! AdamW and global-norm clipping with PyTorch's exact arithmetic (torch.optim.AdamW,
//! torch.nn.utils.clip_grad_norm_), written here rather than taken from libtorch's C++
//! optimiser because its state (moments, step count) must go into checkpoints, and
//! tch gives no access to it.
//!
//! # Flat buffers
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
//!
//! (AdamW and the buffers are one unit: the buffers hold AdamW's moments, and AdamW's
//! step runs on the buffers.)

use tch::{Kind, Tensor};

pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub step: i64,
    pub exp_avg: Vec<Tensor>,
    pub exp_avg_sq: Vec<Tensor>,
}

impl AdamW {
    pub fn new(params: &[Tensor], lr: f64, betas: [f64; 2], weight_decay: f64) -> Self {
        let zeros = || params.iter().map(|p| p.zeros_like().detach()).collect::<Vec<_>>();
        Self {
            lr,
            beta1: betas[0],
            beta2: betas[1],
            eps: 1e-8,
            weight_decay,
            step: 0,
            exp_avg: zeros(),
            exp_avg_sq: zeros(),
        }
    }

    /// One update of `params` with their `.grad()` (torch.optim.AdamW, single-tensor path).
    /// Training uses [`Self::step_flat`]; this per-tensor loop is the reference the tests
    /// check the flat step against, bit for bit:
    /// p *= 1 - lr*wd; m = lerp(m, g, 1-b1); v = b2 v + (1-b2) g^2;
    /// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
    #[cfg(test)]
    pub fn step(&mut self, params: &mut [Tensor]) {
        self.step += 1;
        let k = self.coefficients();
        tch::no_grad(|| {
            for ((p, m), v) in params.iter_mut().zip(self.exp_avg.iter_mut()).zip(self.exp_avg_sq.iter_mut()) {
                let g = p.grad();
                if g.defined() {
                    k.update(p, &g, m, v);
                }
            }
        });
    }

    /// [`Self::step`] on flat buffers: the same elementwise arithmetic, once over every
    /// trained parameter (bit-identical to the per-tensor loop).
    pub fn step_flat(&mut self, flat: &FlatState) {
        self.step += 1;
        let k = self.coefficients();
        tch::no_grad(|| {
            let (mut m, mut v) = (flat.exp_avg.shallow_clone(), flat.exp_avg_sq.shallow_clone());
            k.update(&mut flat.trained_params(), &flat.trained_grads(), &mut m, &mut v);
        });
    }

    fn coefficients(&self) -> Coefficients {
        let t = self.step as i32;
        Coefficients {
            decay: 1.0 - self.lr * self.weight_decay,
            one_minus_beta1: 1.0 - self.beta1,
            beta2: self.beta2,
            bc2_sqrt: (1.0 - self.beta2.powi(t)).sqrt(),
            step_size: self.lr / (1.0 - self.beta1.powi(t)),
            eps: self.eps,
        }
    }
}

/// One step's scalars.
struct Coefficients {
    decay: f64,
    one_minus_beta1: f64,
    beta2: f64,
    bc2_sqrt: f64,
    step_size: f64,
    eps: f64,
}

impl Coefficients {
    fn update(&self, p: &mut Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor) {
        let _ = p.g_mul_scalar_(self.decay);
        let _ = m.lerp_(g, self.one_minus_beta1);
        let _ = v.g_mul_scalar_(self.beta2);
        let _ = v.g_add_(&(g * g * (1.0 - self.beta2)));
        let denom = v.sqrt() / self.bc2_sqrt + self.eps;
        let _ = p.g_sub_(&(m.g_div(&denom) * self.step_size));
    }
}

/// torch.nn.utils.clip_grad_norm_ on a flat gradient buffer: multiply it by
/// min(1, max/(total_norm + 1e-6)). The factor stays on the device (no wait for the
/// device): like torch, the gradient is always multiplied, by exactly 1 when unclipped.
/// Returns the total norm (a 0-d tensor) before clipping.
pub fn clip_grad_norm(grads: &Tensor, max_norm: f64) -> Tensor {
    tch::no_grad(|| {
        let total = grads.norm();
        let coef = (max_norm / (total.to_kind(Kind::Double) + 1e-6)).clamp_max(1.0);
        let mut g = grads.shallow_clone();
        let _ = g.g_mul_(&coef);
        total
    })
}

/// Elements per alignment unit of the buffers (32 fp32 = 128 bytes).
const ALIGN: i64 = 32;

/// The flat buffers (see the module doc, "Flat buffers").
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
                p.copy_(&params[i]);
                params[i].set_data(&p);
                if has_grad[i] {
                    let mut g = view(&flat.grads);
                    let mut grad = params[i].grad();
                    g.copy_(&grad);
                    grad.set_data(&g);
                    for (buf, moment) in
                        [(&flat.exp_avg, &mut opt.exp_avg[i]), (&flat.exp_avg_sq, &mut opt.exp_avg_sq[i])]
                    {
                        let mut m = view(buf);
                        m.copy_(moment);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two AdamW steps on one scalar, worked by hand (lr 0.1, betas 0.9/0.999, wd 0.01):
    /// p0 = 1, g = 2 both times.
    /// step 1: p = 1*(1-0.001) = 0.999; m = 0.2; v = 0.004; bc1 = 0.1, bc2 = 0.001;
    ///         denom = sqrt(0.004)/sqrt(0.001) + 1e-8 = 2; p -= (0.1/0.1) * 0.2/2 -> 0.899
    /// step 2: p = 0.899*0.999 = 0.898101; m = 0.38; v = 0.007996; bc1 = 0.19,
    ///         bc2 = 0.001999; denom = sqrt(0.007996/0.001999) = 2; p -= (0.1/0.19)*0.38/2 = 0.1
    ///         -> 0.798101
    #[test]
    fn adamw_matches_hand_computation() {
        let mut p = vec![Tensor::from_slice(&[1f64]).to_kind(Kind::Float).set_requires_grad(true)];
        let mut opt = AdamW::new(&p, 0.1, [0.9, 0.999], 0.01);
        let mut want = [0.899f64, 0.798101].into_iter();
        for _ in 0..2 {
            let loss = (&p[0] * 2.0).sum(Kind::Float);
            let mut g = p[0].grad();
            if g.defined() {
                let _ = g.zero_();
            }
            loss.backward();
            opt.step(&mut p);
            let got = p[0].double_value(&[0]);
            let w = want.next().unwrap();
            assert!((got - w).abs() < 1e-6, "got {got}, want {w}");
        }
        assert_eq!(opt.step, 2);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let g = Tensor::from_slice(&[3f32, 4.]);
        let total = clip_grad_norm(&g, 0.5);
        assert!((total.double_value(&[]) - 5.0).abs() < 1e-6);
        let got = Vec::<f32>::try_from(&g).unwrap();
        assert!((got[0] - 0.3).abs() < 1e-6 && (got[1] - 0.4).abs() < 1e-6, "{got:?}");
        // Under the limit: untouched, bit for bit.
        let g = Tensor::from_slice(&[0.03f32, 0.04]);
        let _ = clip_grad_norm(&g, 0.5);
        assert_eq!(Vec::<f32>::try_from(&g).unwrap(), vec![0.03f32, 0.04]);
    }
}
