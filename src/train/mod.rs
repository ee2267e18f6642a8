//! Training: AdamW, global-norm clipping, StepLR, feature jitter with per-sample seeded
//! noise (so the random stream does not depend on how samples are batched or sharded).

use crate::config::{ModelConfig, TrainConfig};
use crate::model::{add_jitter, Ras};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// A model with its parameters and optimiser.
pub struct Trainer {
    pub vs: nn::VarStore,
    pub model: Ras,
    pub opt: nn::Optimizer,
    cfg: TrainConfig,
    seed: u64,
}

/// Mixes seed parts into one 64-bit seed (splitmix64 finaliser over a running hash).
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        h ^= p.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(h << 6).wrapping_add(h >> 2);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

/// libtorch has one global CPU generator: seeding it and drawing from it must not
/// interleave with another thread doing the same, or results stop being reproducible.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` with libtorch's global generator seeded to `seed`, exclusively.
pub fn with_torch_seed<T>(seed: u64, f: impl FnOnce() -> T) -> T {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|p| p.into_inner());
    tch::manual_seed((seed >> 1) as i64);
    f()
}

/// Stream tags, so that init, order and noise never share a random stream.
pub const STREAM_INIT: u64 = 1;
pub const STREAM_ORDER: u64 = 2;
pub const STREAM_JITTER: u64 = 3;
pub const STREAM_TEST_JITTER: u64 = 4;

/// The epoch's sample order: a seeded permutation (as DistributedSampler with shuffle).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(&[seed, STREAM_ORDER, epoch as u64])));
    idx
}

/// Jitter noise eps ~ N(0, I) for each sample id, of one sample's `shape`, each drawn from
/// its own seeded stream; samples whose coin (prob p) says "no jitter" get zeros.
pub fn jitter_noise(ids: &[usize], shape: &[i64], seed: u64, stream: u64, epoch: usize, prob: f64) -> Tensor {
    let parts: Vec<Tensor> = ids
        .iter()
        .map(|&i| {
            let s = mix_seed(&[seed, stream, epoch as u64, i as u64]);
            let coin: f64 = ChaCha8Rng::seed_from_u64(s).random();
            if coin < prob {
                with_torch_seed(s, || Tensor::randn(shape, (Kind::Float, Device::Cpu)))
            } else {
                Tensor::zeros(shape, (Kind::Float, Device::Cpu))
            }
        })
        .collect();
    Tensor::stack(&parts, 0)
}

/// StepLR: base * gamma^(epoch / step), stepped per epoch.
pub fn lr_at(cfg: &TrainConfig, epoch: usize) -> f64 {
    cfg.lr * cfg.lr_gamma.powi((epoch / cfg.lr_step_epochs) as i32)
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
        let vs = nn::VarStore::new(device);
        let model = with_torch_seed(mix_seed(&[seed, STREAM_INIT]), || Ras::new(&vs.root(), model_cfg, channels, (grid, grid)));
        let opt = nn::AdamW {
            beta1: train_cfg.betas[0],
            beta2: train_cfg.betas[1],
            wd: train_cfg.weight_decay,
            eps: 1e-8,
            amsgrad: false,
        }
        .build(&vs, train_cfg.lr)?;
        Ok(Self { vs, model, opt, cfg: train_cfg.clone(), seed })
    }

    /// One optimisation step on the samples `ids` of `features` (N, C, H, W, on CPU).
    /// Returns the loss.
    pub fn step(&mut self, features: &Tensor, ids: &[usize], epoch: usize) -> f64 {
        let device = self.vs.device();
        let index = Tensor::from_slice(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let clean = features.index_select(0, &index).to_device(device);
        let input = if self.cfg.jitter_scale > 0.0 && self.cfg.jitter_prob > 0.0 {
            let shape = &clean.size()[1..];
            let noise = jitter_noise(ids, shape, self.seed, STREAM_JITTER, epoch, self.cfg.jitter_prob).to_device(device);
            add_jitter(&clean, &noise, self.cfg.jitter_scale)
        } else {
            clean.shallow_clone()
        };
        let rec = self.model.forward_t(&input, true);
        let loss = rec.mse_loss(&clean, tch::Reduction::Mean);
        self.opt.zero_grad();
        loss.backward();
        self.opt.clip_grad_norm(self.cfg.clip_max_norm);
        self.opt.step();
        loss.double_value(&[])
    }

    /// One epoch over all of `features` in the seeded order; returns the mean loss.
    pub fn epoch(&mut self, features: &Tensor, epoch: usize, on_batch: &mut dyn FnMut(usize)) -> f64 {
        self.opt.set_lr(lr_at(&self.cfg, epoch));
        let n = features.size()[0] as usize;
        let order = epoch_order(n, self.seed, epoch);
        let mut total = 0.0;
        for batch in order.chunks(self.cfg.batch_size) {
            total += self.step(features, batch, epoch) * batch.len() as f64;
            on_batch(batch.len());
        }
        total / n as f64
    }
}
