//! The feature cache: f_org of every image, computed once per (images' content, backbone
//! identity) and stored as safetensors shards in the object store, then reused by every
//! run and every epoch. Training never decodes an image again.
//!
//! Layout: `features/<backbone key>/<class>-<content key>/{manifest.json, <split>-<i>.safetensors}`.
//! The content key hashes every image's bytes (not mtimes), so a changed image or a
//! changed weights file (part of the backbone key) lands in a new folder. The manifest is
//! written last and holds each shard's sha256: a half-written entry is simply a miss.

use crate::backbone::{BackboneIdentity, FeatureExtractor};
use crate::config::BackboneConfig;
use crate::data::{imageio, DataError, DatasetIndex, Sample};
use crate::progress::Progress;
use crate::store::{sha256_hex, tensors, Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Device, Tensor};

/// Images per shard: 256 x 272 x 14 x 14 x 4 bytes = 54 MB at the paper's shapes.
const SHARD: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backbone(#[from] crate::backbone::BackboneError),
    #[error("feature shard {key}: {message}")]
    Shard { key: String, message: String },
}

impl FeatureError {
    /// Whether the feature cache's store stayed unreachable (see [`StoreError::is_outage`]).
    pub fn is_outage(&self) -> bool {
        matches!(self, FeatureError::Store(e) if e.is_outage())
    }
}

/// Cached features of one class.
pub struct ClassFeatures {
    pub train: Tensor,
    pub test: Tensor,
}

/// What the cache did, counted (for logs, the run record and the tests).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CacheStats {
    pub classes_reused: usize,
    pub classes_computed: usize,
    pub images_computed: usize,
}

/// What `ras features` prints: each class's feature shapes, then what the cache in
/// `store_url` did.
pub fn render_filled(feats: &[(String, ClassFeatures)], stats: &CacheStats, store_url: &str) -> String {
    let mut s: String = feats
        .iter()
        .map(|(class, f)| format!("{class:<14} train {:?} test {:?}\n", f.train.size(), f.test.size()))
        .collect();
    s += &format!(
        "feature cache in {store_url}: {} classes reused, {} computed ({} images)\n",
        stats.classes_reused, stats.classes_computed, stats.images_computed
    );
    s
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    backbone: BackboneIdentity,
    class: String,
    /// Per split: image keys in row order, and the shards' (key, sha256).
    splits: Vec<SplitManifest>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SplitManifest {
    split: String,
    images: Vec<String>,
    shards: Vec<(String, String)>,
}

/// sha256 over the class's image keys and bytes, in index order.
fn content_key(samples: &[&Sample]) -> Result<String, DataError> {
    let mut h = Sha256::new();
    for s in samples {
        let bytes =
            std::fs::read(&s.path).map_err(|e| DataError::Read { path: s.path.clone(), message: e.to_string() })?;
        h.update(s.key.as_bytes());
        h.update([0]);
        h.update(Sha256::digest(&bytes));
    }
    Ok(hex::encode(h.finalize())[..16].to_string())
}

/// Loads every class's features from the cache, computing (and storing) the missing ones.
/// The backbone is built only if something is missing.
pub fn load_or_compute(
    store: &Store,
    cfg: &BackboneConfig,
    device: Device,
    index: &DatasetIndex,
    progress: &Progress,
) -> Result<(Vec<(String, ClassFeatures)>, CacheStats), FeatureError> {
    let identity = BackboneIdentity::resolve(cfg)?;
    let base = format!("features/{}", identity.key());
    let mut stats = CacheStats::default();
    let mut extractor: Option<FeatureExtractor> = None;
    let mut out = vec![];
    for (class, samples) in &index.classes {
        let all: Vec<&Sample> = samples.train.iter().chain(&samples.test).collect();
        let prefix = format!("{base}/{class}-{}", content_key(&all)?);
        if let Some(feats) = read_entry(store, &prefix, &identity, samples.train.len(), samples.test.len())? {
            tracing::info!(class, prefix, "feature cache hit");
            stats.classes_reused += 1;
            out.push((class.clone(), feats));
            continue;
        }
        if extractor.is_none() {
            extractor = Some(FeatureExtractor::new(cfg, device)?);
        }
        let ex = extractor.as_ref().expect("built above");
        let bar = progress.bar(all.len() as u64, &format!("features {class}"));
        let mut splits = vec![];
        let mut tensors_out = vec![];
        // The class's shards go out in one batch once computed, then the manifest alone.
        let mut shard_bytes: Vec<(String, bytes::Bytes)> = vec![];
        for (split, list) in [("train", &samples.train), ("test", &samples.test)] {
            let mut shards = vec![];
            let mut parts = vec![];
            for (i, chunk) in list.chunks(SHARD).enumerate() {
                let mut feats = vec![];
                for batch in chunk.chunks(cfg.batch_size) {
                    let imgs: Vec<Tensor> =
                        batch.iter().map(|s| imageio::load_image(&s.path, cfg.image_size)).collect::<Result<_, _>>()?;
                    feats.push(ex.extract(&Tensor::stack(&imgs, 0)).to_device(Device::Cpu));
                    bar.inc(batch.len() as u64);
                }
                let shard = Tensor::cat(&feats, 0);
                let key = format!("{prefix}/{split}-{i:04}.safetensors");
                let bytes = tensors::encode(&[("features", &shard)])
                    .map_err(|e| FeatureError::Shard { key: key.clone(), message: e.to_string() })?;
                shards.push((key.clone(), sha256_hex(&bytes)));
                shard_bytes.push((key, bytes.into()));
                parts.push(shard);
            }
            stats.images_computed += list.len();
            splits.push(SplitManifest {
                split: split.into(),
                images: list.iter().map(|s| s.key.clone()).collect(),
                shards,
            });
            tensors_out.push(Tensor::cat(&parts, 0));
        }
        bar.finish();
        store.put_many(shard_bytes)?;
        // Publish: the manifest goes last, so readers never see a partial entry.
        store.put_json(
            &format!("{prefix}/manifest.json"),
            &Manifest { backbone: identity.clone(), class: class.clone(), splits },
        )?;
        stats.classes_computed += 1;
        let test = tensors_out.pop().expect("two splits");
        let train = tensors_out.pop().expect("two splits");
        out.push((class.clone(), ClassFeatures { train, test }));
    }
    Ok((out, stats))
}

/// A complete, verified cache entry, or None (missing, partial or corrupt: recompute).
fn read_entry(
    store: &Store,
    prefix: &str,
    identity: &BackboneIdentity,
    n_train: usize,
    n_test: usize,
) -> Result<Option<ClassFeatures>, FeatureError> {
    let manifest: Manifest = match store.get_json(&format!("{prefix}/manifest.json")) {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(None),
        Err(StoreError::Corrupt { .. }) => {
            tracing::warn!(prefix, "feature cache manifest unreadable; recomputing");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    if &manifest.backbone != identity || manifest.splits.len() != 2 {
        return Ok(None);
    }
    let mut parts = vec![];
    // Every shard of the entry in one batch, each checked against its recorded sha256.
    let shards: Vec<&(String, String)> = manifest.splits.iter().flat_map(|s| &s.shards).collect();
    let mut fetched = match store.get_verified_many(&shards.iter().map(|(k, sha)| (k, sha)).collect::<Vec<_>>()) {
        Ok(f) => f.into_iter(),
        Err(StoreError::Corrupt { key, .. }) => {
            tracing::warn!(key, "feature shard corrupt; recomputing the class");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    for (split, expect) in manifest.splits.iter().zip([n_train, n_test]) {
        let mut shards = vec![];
        for (key, _) in &split.shards {
            let Some(bytes) = fetched.next().flatten() else {
                tracing::warn!(key, "feature shard missing; recomputing the class");
                return Ok(None);
            };
            let mut named = tensors::decode(&bytes)
                .map_err(|e| FeatureError::Shard { key: key.clone(), message: e.to_string() })?;
            shards.push(
                named
                    .pop()
                    .map(|(_, t)| t)
                    .ok_or_else(|| FeatureError::Shard { key: key.clone(), message: "empty".into() })?,
            );
        }
        let t = Tensor::cat(&shards, 0);
        if t.size()[0] as usize != expect || split.images.len() != expect {
            return Ok(None);
        }
        parts.push(t);
    }
    let test = parts.pop().expect("two splits");
    let train = parts.pop().expect("two splits");
    Ok(Some(ClassFeatures { train, test }))
}
