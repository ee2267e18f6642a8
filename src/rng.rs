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
pub const STREAM_DROPOUT: u64 = 5;
pub const STREAM_HOLDOUT: u64 = 6;

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

/// A 32-bit integer hash, a bijection of [0, 2^32) (xor-shift and odd multiplier rounds,
/// constants from C. Wellons' hash-prospector "lowbias32"): the counter-based generator of
/// [`dropout_keep`], and the host-side definition its tensor version is tested against.
pub fn hash32(x: u32) -> u32 {
    let mut x = x;
    x ^= x >> 16;
    x = x.wrapping_mul(HASH_MUL[0]);
    x ^= x >> 15;
    x = x.wrapping_mul(HASH_MUL[1]);
    x ^ (x >> 15)
}

/// Both multipliers are below 2^31, so that on int64 tensors holding values below 2^32
/// the products stay below 2^63: no signed overflow on any device.
const HASH_MUL: [u32; 2] = [0x21f0_aaad, 0x735a_2d97];

/// [`hash32`] element-wise on an int64 tensor of values in [0, 2^32).
pub fn hash32_tensor(x: &Tensor) -> Tensor {
    hash32_in_place(x.copy())
}

/// [`hash32_tensor`] on a tensor of its own, in place (fewer large allocations: the masks
/// of attention weights are the biggest tensors of a training step).
fn hash32_in_place(mut x: Tensor) -> Tensor {
    const LOW32: i64 = 0xFFFF_FFFF;
    for (shift, mul) in [(16, Some(HASH_MUL[0])), (15, Some(HASH_MUL[1])), (15, None)] {
        let shifted = x.bitwise_right_shift_tensor_scalar(shift);
        let _ = x.bitwise_xor_tensor_(&shifted);
        if let Some(m) = mul {
            let _ = x.g_mul_scalar_(m as i64);
            let _ = x.bitwise_and_(LOW32);
        }
    }
    x
}

/// The 32-bit key of dropout site `site` (the k-th dropout of a forward pass, in forward
/// order) for sample `i` at `epoch`: a function of (seed, stream, epoch, sample, site).
pub fn dropout_key(seed: u64, epoch: usize, i: usize, site: u64) -> u32 {
    (mix_seed(&[seed, STREAM_DROPOUT, epoch as u64, i as u64, site]) >> 32) as u32
}

/// Keep masks of dropout with drop probability `p`, one per key (one key per sample, see
/// [`dropout_key`]): (keys, *shape) booleans, where element j of the row of key k is kept
/// when hash32(hash32(j) ^ k) >= p * 2^32. Each row is a pure function of its key and the
/// element index, on any device: the same sample gets the same mask whatever batch or
/// rank it is in, and a resumed run draws what the uninterrupted one drew. Counter-based
/// (no generator state), so the masks of a whole batch are computed in a few kernels.
pub fn dropout_keep(keys: &[u32], shape: &[i64], p: f64, device: Device) -> Tensor {
    let numel: i64 = shape.iter().product();
    let per_element = hash32_tensor(&Tensor::arange(numel, (Kind::Int64, device)));
    let k = Tensor::from_slice(&keys.iter().map(|&k| k as i64).collect::<Vec<_>>()).to_device(device);
    let bits = hash32_in_place(per_element.unsqueeze(0).bitwise_xor_tensor(&k.unsqueeze(1)));
    let threshold = (p * 4_294_967_296.0).round() as i64;
    let mut full = vec![keys.len() as i64];
    full.extend_from_slice(shape);
    bits.ge(threshold).view(full.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tensor hash is the host hash, bit for bit, over edge values and a random sample
    /// of [0, 2^32) (int64 tensors: no product reaches 2^63).
    #[test]
    fn tensor_hash_is_the_host_hash() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut xs: Vec<u32> = vec![0, 1, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000, u32::MAX];
        xs.extend((0..10_000).map(|_| rng.random::<u32>()));
        let t = hash32_tensor(&Tensor::from_slice(&xs.iter().map(|&x| x as i64).collect::<Vec<_>>()));
        let got: Vec<i64> = Vec::try_from(&t).unwrap();
        let want: Vec<i64> = xs.iter().map(|&x| hash32(x) as i64).collect();
        assert_eq!(got, want);
    }

    /// A row of keep masks is the row drawn alone, for any key: rows never mix.
    #[test]
    fn keep_rows_are_functions_of_their_keys() {
        let both = dropout_keep(&[7, 9], &[3, 50], 0.25, Device::Cpu);
        assert_eq!(both.size(), [2, 3, 50]);
        assert!(both.get(1).equal(&dropout_keep(&[9], &[3, 50], 0.25, Device::Cpu).get(0)));
        assert!(!both.get(0).equal(&both.get(1)));
        assert_eq!(dropout_keep(&[7], &[100], 0.0, Device::Cpu).all().int64_value(&[]), 1, "p = 0 keeps all");
    }
}
