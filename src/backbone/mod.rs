//! The frozen feature extractor: EfficientNet + the neck (spec section 1).
//! f_org = concat_i resize_14x14(avgpool3x3(block_i(image))), a pure function of
//! (image, weights, image size), which is what makes the feature cache valid.

pub mod efficientnet;
pub mod mismatch;

pub use efficientnet::{EfficientNet, EfficientNetSpec};
pub use mismatch::WeightsMismatch;

use crate::config::{BackboneArch, BackboneConfig};
use std::path::PathBuf;
use tch::{nn, Device, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    #[error("backbone.outblocks {blocks:?}: {arch} has blocks 0..{count}")]
    Blocks { blocks: Vec<usize>, arch: BackboneArch, count: usize },
    #[error("cannot read backbone weights {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{0}")]
    Mismatch(Box<WeightsMismatch>),
}

/// Feature channels `cfg` produces (the sum over its output blocks), from the architecture
/// alone: no weights are read. Outblocks that the architecture does not have count as its
/// default ones (building the backbone refuses them, naming the key).
pub fn feature_channels(cfg: &BackboneConfig) -> i64 {
    let spec = EfficientNetSpec::of(cfg.arch);
    let (blocks, _) = spec.blocks();
    let valid = !cfg.outblocks.is_empty() && cfg.outblocks.iter().all(|&b| b < blocks.len());
    let outblocks = if valid { cfg.outblocks.clone() } else { spec.default_outblocks() };
    outblocks.iter().map(|&i| blocks[i].output).sum()
}

/// What identifies the features a backbone produces (part of the cache key and of every
/// run's stored environment).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct BackboneIdentity {
    pub arch: BackboneArch,
    pub outblocks: Vec<usize>,
    pub image_size: i64,
    pub channels: i64,
    pub grid: i64,
    /// sha256 of the weights file, or "random-init-seed-N" when none was given.
    pub weights: String,
    pub pretrained: bool,
    /// How images were resized before the backbone (`data::imageio::PREPROCESS`).
    #[serde(default)]
    pub preprocess: String,
}

impl BackboneIdentity {
    /// The identity of the features `cfg` produces, without building the network
    /// (hashes the weights file, if any): enough to look the feature cache up.
    pub fn resolve(cfg: &BackboneConfig) -> Result<Self, BackboneError> {
        let spec = EfficientNetSpec::of(cfg.arch);
        let (blocks, _) = spec.blocks();
        let outblocks = if cfg.outblocks.is_empty() { spec.default_outblocks() } else { cfg.outblocks.clone() };
        if outblocks.is_empty()
            || outblocks.iter().any(|&b| b >= blocks.len())
            || outblocks.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(BackboneError::Blocks { blocks: outblocks, arch: cfg.arch, count: blocks.len() });
        }
        let (weights, pretrained) = match &cfg.weights {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| BackboneError::Read { path: path.clone(), message: e.to_string() })?;
                (crate::store::sha256_hex(&bytes), true)
            }
            None => (format!("random-init-seed-{}", cfg.init_seed), false),
        };
        Ok(Self {
            arch: cfg.arch,
            channels: outblocks.iter().map(|&i| blocks[i].output).sum(),
            outblocks,
            image_size: cfg.image_size,
            grid: cfg.image_size / 16,
            weights,
            pretrained,
            preprocess: crate::data::imageio::PREPROCESS.to_string(),
        })
    }

    /// Short content key of these features (cache folder name).
    pub fn key(&self) -> String {
        let json = serde_json::to_vec(self).expect("serialisable");
        crate::store::sha256_hex(&json)[..16].to_string()
    }
}

pub struct FeatureExtractor {
    net: EfficientNet,
    outblocks: Vec<usize>,
    _vs: nn::VarStore,
    pub identity: BackboneIdentity,
    pub device: Device,
}

impl FeatureExtractor {
    /// The backbone `cfg` describes, warning when it is a random init (no
    /// `backbone.weights`): its features are then not the paper's.
    pub fn new(cfg: &BackboneConfig, device: Device) -> Result<Self, BackboneError> {
        let fx = Self::quiet(cfg, device)?;
        if cfg.weights.is_none() {
            tracing::warn!(
                "NO BACKBONE WEIGHTS: {} runs with a seeded random init (seed {}); features and metrics are NOT \
                 comparable to the paper. Set backbone.weights to an efficientnet_pytorch safetensors file for real \
                 results.",
                cfg.arch,
                cfg.init_seed
            );
        }
        Ok(fx)
    }

    /// [`FeatureExtractor::new`] without the random-init warning, for commands that only
    /// read the weights (`ras export`, the comparison of `ras import`) and say themselves
    /// what they are.
    pub fn quiet(cfg: &BackboneConfig, device: Device) -> Result<Self, BackboneError> {
        crate::threads::pin();
        let identity = BackboneIdentity::resolve(cfg)?;
        let spec = EfficientNetSpec::of(cfg.arch);
        let mut vs = nn::VarStore::new(device);
        let net = crate::rng::with_torch_seed(cfg.init_seed, || EfficientNet::new(&vs.root(), spec));
        vs.freeze();
        if let Some(path) = &cfg.weights {
            let hash = load_weights(&mut vs, path, cfg.arch)?;
            if hash != identity.weights {
                return Err(BackboneError::Read {
                    path: path.clone(),
                    message: "file changed while being read".into(),
                });
            }
        }
        Ok(Self { net, outblocks: identity.outblocks.clone(), _vs: vs, identity, device })
    }

    /// The network's weights and BatchNorm statistics by efficientnet_pytorch's names
    /// (`_conv_stem.weight`, `_blocks.0._bn1.running_mean`, ...), sorted: what the run used.
    pub fn named_weights(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self._vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// f_org (B, C_org, grid, grid) for normalised images (B, 3, S, S) on any device.
    pub fn extract(&self, images: &Tensor) -> Tensor {
        let g = self.identity.grid;
        tch::no_grad(|| {
            let maps = self.net.features(&images.to_device(self.device), &self.outblocks);
            let resized: Vec<Tensor> = maps
                .iter()
                .map(|m| {
                    m.avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None::<i64>).upsample_bilinear2d(
                        [g, g],
                        true,
                        None,
                        None,
                    )
                })
                .collect();
            Tensor::cat(&resized, 1)
        })
    }
}

/// Loads an efficientnet_pytorch state_dict saved as safetensors into `vs`, refusing
/// missing, unexpected or wrongly shaped tensors ([`WeightsMismatch`]: what the file looks
/// like, some examples, the full list in a file). Returns the file's sha256.
fn load_weights(vs: &mut nn::VarStore, path: &std::path::Path, arch: BackboneArch) -> Result<String, BackboneError> {
    let read_err = |message: String| BackboneError::Read { path: path.to_path_buf(), message };
    let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
    let hash = crate::store::sha256_hex(&bytes);
    crate::store::safetensors_header::check(&bytes)
        .map_err(|e| read_err(format!("not a whole safetensors file: {e}")))?;
    let tensors = Tensor::read_safetensors(path).map_err(|e| read_err(e.to_string()))?;
    let file: std::collections::BTreeMap<String, Tensor> =
        tensors.into_iter().filter(|(n, _)| !n.ends_with("num_batches_tracked")).collect();
    crate::store::tensors::copy_matching(&mut vs.variables(), &file)
        .map_err(|diffs| BackboneError::Mismatch(Box::new(WeightsMismatch::new(path, &hash, arch, &file, diffs))))?;
    Ok(hash)
}
