//! Seeded randomness: every random number of a run is a function of (seed, stream,
//! epoch, sample), so results do not depend on batching, rank count or a restart.
//! Imported by backbone (init), model-building (train), eval (test-time jitter) and
//! nothing else needs to know how seeds are mixed.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

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

/// The coin in [0, 1) that decides whether sample `i` is jittered at `epoch` (jittered
/// when below the probability): the first draw of the sample's own seeded stream.
pub fn jitter_coin(seed: u64, stream: u64, epoch: usize, i: usize) -> f64 {
    ChaCha8Rng::seed_from_u64(mix_seed(&[seed, stream, epoch as u64, i as u64])).random()
}

/// Jitter noise eps ~ N(0, I) for each sample id, of one sample's `shape`, each drawn from
/// its own seeded stream; samples whose coin (prob p) says "no jitter" get zeros.
pub fn jitter_noise(ids: &[usize], shape: &[i64], seed: u64, stream: u64, epoch: usize, prob: f64) -> Tensor {
    let parts: Vec<Tensor> = ids
        .iter()
        .map(|&i| {
            let s = mix_seed(&[seed, stream, epoch as u64, i as u64]);
            if jitter_coin(seed, stream, epoch, i) < prob {
                with_torch_seed(s, || Tensor::randn(shape, (Kind::Float, Device::Cpu)))
            } else {
                Tensor::zeros(shape, (Kind::Float, Device::Cpu))
            }
        })
        .collect();
    Tensor::stack(&parts, 0)
}
