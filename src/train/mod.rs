//! Training: AdamW, global-norm clipping, StepLR, feature jitter with per-sample seeded
//! noise (so the random stream does not depend on how samples are batched or sharded).

pub mod optim;
pub mod precision;

use crate::config::{BatchSplitError, ModelConfig, TrainConfig};
use crate::dist::{self, Collective, DistError};
use crate::model::{add_jitter, Dropout, Ras};
use crate::rng::{epoch_order, jitter_coin, jitter_noise, mix_seed, with_torch_seed, STREAM_INIT, STREAM_JITTER};
use optim::{clip_grad_norm, AdamW, FlatState};
pub use precision::Precision;
use tch::nn;
use tch::{Device, Kind, Tensor};

/// Slots after the gradients in the all-reduced buffer: the local loss and the stop flag.
const EXTRA_SLOTS: i64 = 2;

/// Why a saved training state (a checkpoint's tensors) does not fit a `Trainer`: the
/// tensors are named and shaped by the model config, so these mean "another config".
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StateError {
    #[error("missing {0}")]
    Missing(String),
    #[error("{key}: shape {found:?}, expected {expected:?}")]
    Shape { key: String, found: Vec<i64>, expected: Vec<i64> },
    #[error("unexpected {0}")]
    Unexpected(String),
}

/// Why an epoch could not be trained.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Dist(#[from] DistError),
    #[error(transparent)]
    Batch(#[from] BatchSplitError),
}

/// A model with its parameters and optimiser.
pub struct Trainer {
    pub vs: nn::VarStore,
    pub model: Ras,
    pub opt: AdamW,
    /// Trainable parameters in name order (checkpoint order), views into `flat`.
    params: Vec<Tensor>,
    names: Vec<String>,
    /// One buffer each for parameters, gradients and AdamW moments (see [`optim::FlatState`]).
    flat: FlatState,
    /// Time spent in and bytes sent to gradient all-reduces (for `ras bench ranks`).
    pub comm_seconds: f64,
    pub comm_bytes: u64,
    cfg: TrainConfig,
    seed: u64,
    precision: Precision,
    /// `model.dropout`: masks per (seed, epoch, sample, site), see `model::dropout`.
    dropout: f64,
}

/// StepLR: base * gamma^(epoch / step), stepped per epoch.
pub fn lr_at(cfg: &TrainConfig, epoch: usize) -> f64 {
    cfg.lr * cfg.lr_gamma.powi((epoch / cfg.lr_step_epochs) as i32)
}

/// The training state a new trainer holds for the weights in `vs` (AdamW moments zero,
/// step 0), named as [`Trainer::state_tensors`] names it: a checkpoint of a model that
/// was not trained here (`ras import`) which resuming and evaluating read like any other.
pub fn initial_state(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut out = vec![];
    for n in names {
        let p = &vars[n];
        out.push((format!("model.{n}"), p.shallow_clone()));
        out.push((format!("optim.exp_avg.{n}"), p.zeros_like()));
        out.push((format!("optim.exp_avg_sq.{n}"), p.zeros_like()));
    }
    out.push(("optim.step".into(), Tensor::from_slice(&[0i64])));
    out
}

/// The model a run of `seed` trains, with its seeded initial weights, in a new VarStore
/// on `device` (this process's libtorch threads pinned first). Training (`Trainer::new`)
/// and inference (`run::trained::load_trained`) both build it here, so an inference load
/// computes bit for bit what the trainer's model computes with the same weights.
pub fn seeded_model(
    model_cfg: &ModelConfig,
    seed: u64,
    channels: i64,
    grid: i64,
    device: Device,
) -> (nn::VarStore, Ras) {
    crate::threads::pin();
    let vs = nn::VarStore::new(device);
    let model =
        with_torch_seed(mix_seed(&[seed, STREAM_INIT]), || Ras::new(&vs.root(), model_cfg, channels, (grid, grid)));
    (vs, model)
}

/// What an epoch ended with.
pub struct EpochResult {
    /// Mean loss over the steps run in this call (averaged over ranks).
    pub loss: f64,
    /// Steps of this epoch done so far (== `steps_per_epoch` when the epoch finished).
    pub steps_done: usize,
    /// A rank asked to stop (SIGTERM / SIGUSR1): all ranks stopped after the same step.
    pub stopped: bool,
}

impl Trainer {
    pub fn new(
        model_cfg: &ModelConfig,
        train_cfg: &TrainConfig,
        seed: u64,
        channels: i64,
        grid: i64,
        device: Device,
    ) -> Result<Self, tch::TchError> {
        let (vs, model) = seeded_model(model_cfg, seed, channels, grid, device);
        let names = {
            let vars = vs.variables();
            let mut n: Vec<String> = vars.keys().cloned().collect();
            n.sort();
            n
        };
        let vars = vs.variables();
        let mut params: Vec<Tensor> = names.iter().map(|n| vars[n].shallow_clone()).collect();
        let mut opt = AdamW::new(&params, train_cfg.lr, train_cfg.betas, train_cfg.weight_decay);
        // Which parameters get gradients is what a backward pass says: one on a single
        // zero sample (the model draws no random numbers), so that the buffers exist before
        // the first real step and every step, the first of a resumed run included, takes
        // the same path on the same layout (no "not built yet" state to carry).
        model
            .forward_t(&Tensor::zeros([1, channels, grid, grid], (Kind::Float, device)), true)
            .sum(Kind::Float)
            .backward();
        let flat = FlatState::build(&mut params, &mut opt, EXTRA_SLOTS);
        flat.zero_grads();
        let precision = Precision::resolve(train_cfg.precision, device);
        precision::apply(precision);
        Ok(Self {
            vs,
            model,
            opt,
            params,
            names,
            flat,
            comm_seconds: 0.0,
            comm_bytes: 0,
            cfg: train_cfg.clone(),
            seed,
            precision,
            dropout: model_cfg.dropout,
        })
    }

    /// The precision this trainer computes in (`train.precision`, resolved for its device).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Makes every rank start from rank 0's weights.
    pub fn sync_from_root(&mut self, coll: &dyn Collective) -> Result<(), DistError> {
        if coll.world().world_size == 1 {
            return Ok(());
        }
        let mut bucket = dist::flatten(&self.params, 0, self.vs.device());
        coll.broadcast(&mut bucket, 0)?;
        dist::unflatten_into(&bucket, &mut self.params);
        Ok(())
    }

    /// Samples per rank and step: the global batch split over `world` ranks, refused when
    /// `world` does not divide it (`TrainConfig::per_rank_batch`, the one rule).
    pub fn local_batch(&self, world: usize) -> Result<usize, BatchSplitError> {
        self.cfg.per_rank_batch(world)
    }

    /// Optimisation steps in one epoch of `n` samples on `world` ranks.
    pub fn steps_per_epoch(&self, n: usize, world: usize) -> Result<usize, BatchSplitError> {
        Ok(n.div_ceil(world).div_ceil(self.local_batch(world)?))
    }

    fn jitter_on(&self) -> bool {
        self.cfg.jitter_scale > 0.0 && self.cfg.jitter_prob > 0.0
    }

    /// The whole epoch's jitter noise, drawn at once where the features are (row i is
    /// sample i's noise; rows whose coin says "no jitter" are zero), for features resident
    /// on a GPU: one kernel per epoch instead of one seeded draw per sample on the host.
    /// Row i depends on (seed, epoch, i) only, so results do not depend on batching or on
    /// the rank count; the values differ from the per-sample CPU stream.
    pub fn epoch_noise(&self, n: usize, sample_shape: &[i64], epoch: usize, device: Device) -> Tensor {
        let mut shape = vec![n as i64];
        shape.extend_from_slice(sample_shape);
        let noise = with_torch_seed(mix_seed(&[self.seed, STREAM_JITTER, epoch as u64, u64::MAX]), || {
            Tensor::randn(shape.as_slice(), (Kind::Float, device))
        });
        let keep: Vec<f32> = (0..n)
            .map(|i| if jitter_coin(self.seed, STREAM_JITTER, epoch, i) < self.cfg.jitter_prob { 1.0 } else { 0.0 })
            .collect();
        let mut keep_shape = vec![n as i64];
        keep_shape.extend(sample_shape.iter().map(|_| 1));
        noise * Tensor::from_slice(&keep).to_device(device).view(keep_shape.as_slice())
    }

    /// One optimisation step on this rank's samples `ids` of `features` (N, C, H, W):
    /// local loss and gradients, then one all-reduce of [gradients..., loss, stop flag]
    /// averaged over ranks, clipping on the global gradient, AdamW.
    /// Returns (mean loss over ranks as a 0-d f64 tensor on the device, whether any rank
    /// asked to stop). Reading the loss waits for the device: callers read it per epoch.
    /// `noise` is the epoch's noise from [`Self::epoch_noise`]; None draws it per sample.
    pub fn step(
        &mut self,
        features: &Tensor,
        ids: &[usize],
        epoch: usize,
        noise: Option<&Tensor>,
        coll: &dyn Collective,
        stop: bool,
    ) -> Result<(Tensor, bool), DistError> {
        let device = self.vs.device();
        let index = Tensor::from_slice(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(features.device());
        let clean = features.index_select(0, &index);
        let clean = if device.is_cuda() && !features.device().is_cuda() {
            // Features that did not fit on the GPU: the batch goes through pinned host
            // memory, so its copy is asynchronous (it overlaps the previous step's kernels).
            clean.pin_memory(device).to_device_(device, Kind::Float, true, false)
        } else {
            clean.to_device(device)
        };
        let input = if !self.jitter_on() {
            clean.shallow_clone()
        } else if let Some(noise) = noise {
            add_jitter(
                &clean,
                &noise.index_select(0, &index.to_device(noise.device())).to_device(device),
                self.cfg.jitter_scale,
            )
        } else {
            let shape = &clean.size()[1..];
            let noise =
                jitter_noise(ids, shape, self.seed, STREAM_JITTER, epoch, self.cfg.jitter_prob).to_device(device);
            add_jitter(&clean, &noise, self.cfg.jitter_scale)
        };
        self.flat.zero_grads();
        let drop = (self.dropout > 0.0).then(|| Dropout::new(self.dropout, self.seed, epoch, ids));
        let rec =
            precision::with_autocast(self.precision, device, || self.model.forward_dropout(&input, drop.as_ref()));
        // The loss in fp32 whatever the forward computed in.
        let loss = rec.to_kind(Kind::Float).mse_loss(&clean, tch::Reduction::Mean);
        loss.backward();
        let flat = &mut self.flat;
        let world = coll.world().world_size;
        let (loss_value, stop_all) = if world > 1 {
            // The gradient buffer is the bucket: [gradients..., local loss, stop flag],
            // all-reduced in place and averaged (no copy in or out).
            let n = flat.grads.size()[0];
            tch::no_grad(|| {
                flat.grads.narrow(0, n - 2, 1).copy_(&loss.detach().reshape([1]));
                let _ = flat.grads.narrow(0, n - 1, 1).fill_(if stop { 1.0 } else { 0.0 });
            });
            let t0 = std::time::Instant::now();
            coll.all_reduce_sum(&mut flat.grads)?;
            self.comm_seconds += t0.elapsed().as_secs_f64();
            self.comm_bytes += 4 * n as u64;
            let _ = flat.grads.g_div_scalar_(world as f64);
            // The stop flag must be read (every rank stops after the same step).
            (flat.grads.get(n - 2).to_kind(Kind::Double), flat.grads.double_value(&[n - 1]) > 0.0)
        } else {
            (loss.detach().to_kind(Kind::Double), stop)
        };
        let grads = flat.trained_grads();
        let _ = clip_grad_norm(&grads, self.cfg.clip_max_norm);
        self.opt.step_flat(flat);
        Ok((loss_value, stop_all))
    }

    /// Runs epoch `epoch` from step `start_step` on this rank's shard, stopping early
    /// (after the same step on every rank) when `stop` is raised on any rank.
    pub fn epoch(
        &mut self,
        features: &Tensor,
        epoch: usize,
        start_step: usize,
        coll: &dyn Collective,
        stop: &std::sync::atomic::AtomicBool,
        on_step: &mut dyn FnMut(usize),
    ) -> Result<EpochResult, TrainError> {
        let world = coll.world();
        self.opt.lr = lr_at(&self.cfg, epoch);
        let n = features.size()[0] as usize;
        let local = dist::shard(&epoch_order(n, self.seed, epoch), world);
        let batch = self.local_batch(world.world_size)?;
        // Features resident on a GPU get the epoch's noise drawn there at once.
        let noise = (features.device().is_cuda() && self.jitter_on())
            .then(|| self.epoch_noise(n, &features.size()[1..], epoch, features.device()));
        let device = self.vs.device();
        let (mut total, mut count, mut steps_done) = (Tensor::zeros([], (Kind::Double, device)), 0usize, start_step);
        let mut stopped = false;
        for ids in local.chunks(batch).skip(start_step) {
            let (loss, stop_all) =
                self.step(features, ids, epoch, noise.as_ref(), coll, stop.load(std::sync::atomic::Ordering::SeqCst))?;
            total += loss;
            count += 1;
            steps_done += 1;
            on_step(ids.len() * world.world_size);
            if stop_all {
                stopped = true;
                break;
            }
        }
        // The one wait on the device of the epoch.
        let loss = if count > 0 { total.double_value(&[]) / count as f64 } else { 0.0 };
        Ok(EpochResult { loss, steps_done, stopped })
    }

    /// The model's reconstruction loss on `features` (N, C, H, W): the training loss
    /// (mean squared error to the clean features) without noise or dropout, in fp32, in
    /// batches of `batch`. Returns (sum over images of each image's mean loss, images),
    /// so that losses of several models add up. Draws no random numbers and changes no
    /// state: a search's held-out loss leaves training bit-identical.
    pub fn reconstruction_loss(&self, features: &Tensor, batch: usize) -> (f64, usize) {
        let n = features.size()[0];
        if n == 0 {
            return (0.0, 0);
        }
        let device = self.vs.device();
        let mut sum = 0.0;
        tch::no_grad(|| {
            let mut start = 0;
            while start < n {
                let len = (batch.max(1) as i64).min(n - start);
                let clean = features.narrow(0, start, len).to_device(device).to_kind(Kind::Float);
                let rec = self.model.forward_t(&clean, false).to_kind(Kind::Float);
                sum += (rec - &clean)
                    .square()
                    .mean_dim([1i64, 2, 3].as_slice(), false, Kind::Double)
                    .sum(Kind::Double)
                    .double_value(&[]);
                start += len;
            }
        });
        (sum, n as usize)
    }

    /// Named tensors of the whole training state: parameters, AdamW moments, step count.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![];
        for (i, n) in self.names.iter().enumerate() {
            out.push((format!("model.{n}"), self.params[i].shallow_clone()));
            out.push((format!("optim.exp_avg.{n}"), self.opt.exp_avg[i].shallow_clone()));
            out.push((format!("optim.exp_avg_sq.{n}"), self.opt.exp_avg_sq[i].shallow_clone()));
        }
        out.push(("optim.step".into(), Tensor::from_slice(&[self.opt.step])));
        out
    }

    /// Restores what `state_tensors` produced; every tensor must be present with its shape.
    /// Checkpoints with the names ras used before the public module tree load too
    /// (`model::legacy`).
    pub fn load_state(&mut self, tensors: Vec<(String, Tensor)>) -> Result<(), StateError> {
        let mut map: std::collections::HashMap<String, Tensor> =
            crate::model::legacy::upgrade_all(tensors).into_iter().collect();
        let mut take = |key: String, like: &Tensor| -> Result<Tensor, StateError> {
            let t = map.remove(&key).ok_or_else(|| StateError::Missing(key.clone()))?;
            if t.size() != like.size() {
                return Err(StateError::Shape { key, found: t.size(), expected: like.size() });
            }
            Ok(t)
        };
        tch::no_grad(|| -> Result<(), StateError> {
            for (i, n) in self.names.clone().iter().enumerate() {
                let p = take(format!("model.{n}"), &self.params[i])?;
                self.params[i].copy_(&p);
                let m = take(format!("optim.exp_avg.{n}"), &self.opt.exp_avg[i])?;
                self.opt.exp_avg[i].copy_(&m);
                let v = take(format!("optim.exp_avg_sq.{n}"), &self.opt.exp_avg_sq[i])?;
                self.opt.exp_avg_sq[i].copy_(&v);
            }
            Ok(())
        })?;
        let step = map.remove("optim.step").ok_or_else(|| StateError::Missing("optim.step".into()))?;
        self.opt.step = step.int64_value(&[0]);
        if let Some(extra) = map.keys().next() {
            return Err(StateError::Unexpected(extra.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_state_names_what_does_not_fit() {
        let model = ModelConfig {
            hidden_dim: 16,
            encoder_layers: 1,
            decoder_layers: 1,
            heads: 2,
            ffn_dim: 32,
            neighbor_mask: false,
            ..Default::default()
        };
        let mut t = Trainer::new(&model, &TrainConfig::default(), 0, 8, 4, Device::Cpu).unwrap();
        let state = |t: &Trainer| t.state_tensors().into_iter().map(|(n, x)| (n, x.copy())).collect::<Vec<_>>();
        assert_eq!(t.load_state(state(&t)), Ok(()));

        let without_step: Vec<_> = state(&t).into_iter().filter(|(n, _)| n != "optim.step").collect();
        assert_eq!(t.load_state(without_step).unwrap_err().to_string(), "missing optim.step");

        let mut extra = state(&t);
        extra.push(("model.surplus".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu))));
        assert_eq!(t.load_state(extra), Err(StateError::Unexpected("model.surplus".into())));

        let mut reshaped = state(&t);
        let (name, x) = reshaped.iter_mut().find(|(n, _)| n.starts_with("model.")).unwrap();
        let (name, expected) = (name.clone(), x.size());
        *x = Tensor::zeros([3, 5], (Kind::Float, Device::Cpu));
        let err = t.load_state(reshaped).unwrap_err();
        assert_eq!(err.to_string(), format!("{name}: shape [3, 5], expected {expected:?}"));
    }

    fn tiny() -> (ModelConfig, TrainConfig) {
        let model = ModelConfig {
            hidden_dim: 16,
            encoder_layers: 1,
            decoder_layers: 2,
            heads: 2,
            ffn_dim: 32,
            neighbor_mask: false,
            ..Default::default()
        };
        (model, TrainConfig { batch_size: 4, lr: 1e-2, ..Default::default() })
    }

    /// The flat buffers change where the numbers live, not what they are: AdamW over the
    /// flat buffer gives bit for bit the per-tensor loop's parameters and moments (same
    /// gradients fed to both), and the parameters that get no gradient stay untouched.
    #[test]
    fn flat_adamw_is_bit_identical_to_the_per_tensor_loop() {
        let (model, train) = tiny();
        let feats = Tensor::randn([4, 8, 4, 4], (Kind::Float, Device::Cpu));
        let mut flat = Trainer::new(&model, &train, 3, 8, 4, Device::Cpu).unwrap();
        let mut loop_ = Trainer::new(&model, &train, 3, 8, 4, Device::Cpu).unwrap();
        let before: Vec<Tensor> = loop_.params.iter().map(|p| p.copy()).collect();
        for step in 0..3 {
            let _ = flat.step(&feats, &[0, 1, 2, 3], step, None, &dist::SingleProcess, false).unwrap();
            // The same gradients into the per-tensor path: the flat trainer's, after clipping.
            for (p, q) in loop_.params.iter().zip(&flat.params) {
                let g = q.grad();
                if g.defined() {
                    let mut pg = p.grad();
                    if !pg.defined() {
                        // Create .grad by a backward pass of a zero loss through p.
                        (p * 0.0).sum(Kind::Float).backward();
                        pg = p.grad();
                    }
                    tch::no_grad(|| pg.copy_(&g));
                }
            }
            loop_.opt.step(&mut loop_.params);
        }
        let f = &flat.flat;
        assert!(
            f.trained < f.params.size()[0],
            "some parameters get no gradient (the earlier steps' output projections)"
        );
        for (i, name) in flat.names.iter().enumerate() {
            assert!(flat.params[i].equal(&loop_.params[i]), "{name}: parameters differ");
            assert!(flat.opt.exp_avg[i].equal(&loop_.opt.exp_avg[i]), "{name}: exp_avg differs");
            assert!(flat.opt.exp_avg_sq[i].equal(&loop_.opt.exp_avg_sq[i]), "{name}: exp_avg_sq differs");
            if !flat.params[i].grad().defined() {
                assert!(flat.params[i].equal(&before[i]), "{name}: no gradient, yet changed");
            }
        }
        // The VarStore (checkpoints) and the model see the flat buffer: its values are theirs.
        let vars = flat.vs.variables();
        let total: i64 = vars.values().map(|v| v.numel() as i64).sum();
        assert!(total <= f.params.size()[0] && f.params.size()[0] < total + 32 * vars.len() as i64);
        // Every tensor is aligned as one allocated on its own would be (libtorch's CPU
        // allocator guarantees 64 bytes).
        for (name, v) in &vars {
            assert_eq!(v.data_ptr() as usize % 64, 0, "{name}");
            assert_eq!(v.data_ptr(), flat.params[flat.names.iter().position(|n| n == name).unwrap()].data_ptr());
        }
        let sum_vars: f64 = vars.values().map(|v| v.sum(Kind::Double).double_value(&[])).sum();
        let sum_flat = f.params.sum(Kind::Double).double_value(&[]);
        assert!((sum_vars - sum_flat).abs() < 1e-9 * sum_flat.abs().max(1.0), "{sum_vars} vs {sum_flat}");
    }

    /// The epoch's noise drawn at once (features on a GPU) is a function of (seed, epoch,
    /// sample): the same draw twice, another epoch another draw, rows whose coin says no
    /// jitter exactly zero, the rest standard normal.
    #[test]
    fn epoch_noise_rows_follow_the_coins() {
        let (model, mut train) = tiny();
        train.jitter_prob = 0.5;
        let t = Trainer::new(&model, &train, 9, 8, 4, Device::Cpu).unwrap();
        let a = t.epoch_noise(200, &[8, 4, 4], 3, Device::Cpu);
        assert!(a.equal(&t.epoch_noise(200, &[8, 4, 4], 3, Device::Cpu)));
        assert!(!a.equal(&t.epoch_noise(200, &[8, 4, 4], 4, Device::Cpu)));
        let mut kept = 0;
        for i in 0..200 {
            let row_zero = a.get(i as i64).abs().max().double_value(&[]) == 0.0;
            let coin = jitter_coin(9, STREAM_JITTER, 3, i) < 0.5;
            assert_eq!(!row_zero, coin, "sample {i}");
            kept += usize::from(coin);
        }
        assert!((70..130).contains(&kept), "{kept} of 200 jittered at p = 0.5");
        let std = a
            .index_select(
                0,
                &Tensor::from_slice(
                    &(0..200i64).filter(|&i| jitter_coin(9, STREAM_JITTER, 3, i as usize) < 0.5).collect::<Vec<_>>(),
                ),
            )
            .std(true)
            .double_value(&[]);
        assert!((std - 1.0).abs() < 0.05, "std {std}");
    }

    /// bf16 training runs (autocast on the CPU here) and lands near the fp32 run: the
    /// products lose mantissa bits, not the gradient's direction.
    #[test]
    fn bf16_steps_track_fp32_steps() {
        let (model, mut train) = tiny();
        let feats = Tensor::randn([8, 8, 4, 4], (Kind::Float, Device::Cpu));
        let mut losses = vec![];
        for precision in [Precision::Fp32, Precision::Bf16] {
            train.precision = Some(precision);
            let mut t = Trainer::new(&model, &train, 5, 8, 4, Device::Cpu).unwrap();
            assert_eq!(t.precision(), precision);
            let mut l = vec![];
            for e in 0..20 {
                l.push(
                    t.epoch(
                        &feats,
                        e,
                        0,
                        &dist::SingleProcess,
                        &std::sync::atomic::AtomicBool::new(false),
                        &mut |_| {},
                    )
                    .unwrap()
                    .loss,
                );
            }
            losses.push(l);
        }
        let (fp32, bf16) = (&losses[0], &losses[1]);
        assert!(fp32[19] < 0.8 * fp32[0], "fp32 learns: {fp32:?}");
        assert!(bf16[19] < 0.8 * bf16[0], "bf16 learns: {bf16:?}");
        assert!(fp32 != bf16, "bf16 must compute differently");
        assert!((bf16[19] - fp32[19]).abs() < 0.05 * fp32[19], "final loss fp32 {} bf16 {}", fp32[19], bf16[19]);
    }

    /// A checkpoint written with the names used before the public module tree (spelled out
    /// here by hand, not by `legacy`) restores every tensor of today's model.
    #[test]
    fn checkpoint_with_pre_public_names_loads() {
        let model = ModelConfig {
            hidden_dim: 16,
            encoder_layers: 1,
            decoder_layers: 2,
            heads: 2,
            ffn_dim: 32,
            neighbor_mask: false,
            ..Default::default()
        };
        let t0 = Trainer::new(&model, &TrainConfig::default(), 1, 8, 4, Device::Cpu).unwrap();
        let old_name = |n: &str| {
            let mut n = n.to_string();
            for t in 0..2 {
                let f = format!("transformer.decoder.forward_layers.{t}.");
                n = n.replace(&format!("transformer.decoder.embed_layers.{t}."), &format!("{f}learned_embed."));
                n = n.replace(&format!("{f}output_transBlock.attn."), &format!("{f}multihead_attn."));
                n = n.replace(&format!("{f}output_transBlock."), &f);
                n = n.replace(&format!("{f}output_norm."), &format!("{f}norm_out."));
            }
            n
        };
        let old: Vec<(String, Tensor)> =
            t0.state_tensors().into_iter().map(|(n, x)| (old_name(&n), x.copy())).collect();
        assert!(old.iter().any(|(n, _)| n.contains("forward_layers.1.learned_embed.weight")));
        assert!(old.iter().any(|(n, _)| n.contains("forward_layers.0.multihead_attn.in_proj_weight")));
        let mut t1 = Trainer::new(&model, &TrainConfig::default(), 2, 8, 4, Device::Cpu).unwrap();
        t1.load_state(old).unwrap();
        for ((n0, a), (n1, b)) in t0.state_tensors().iter().zip(t1.state_tensors().iter()) {
            assert_eq!(n0, n1);
            assert!(a.equal(b), "{n0} restored");
        }
    }
}
