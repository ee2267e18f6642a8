//! The run configuration: one TOML file per run, resolved (presets + `--set` overrides)
//! and stored with every run. Every struct denies unknown keys so a typo is an error
//! naming the key.

use super::kinds::{BackboneArch, DatasetKind, DeviceSpec, Setting};
use super::ConfigError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Everything one run needs. `[dataset]`, `[backbone]`, `[model]`, `[train]`, `[eval]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Human name, the first part of the run id.
    pub name: String,
    /// Seed for model init, data order and jitter noise.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Object-store URL where runs and the feature cache live (file:// path, s3://, gs://,
    /// az://). Default: $RAS_STORE, else file://./ras-store (see [`default_store`]).
    #[serde(default = "default_store")]
    pub store: String,
    pub dataset: DatasetConfig,
    #[serde(default)]
    pub backbone: BackboneConfig,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Set by a sweep with `[search]`: the rungs, the selection metric and the held-out
    /// split of this run (absent otherwise, so other runs' ids do not change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<super::search::RunSearch>,
}

/// When checkpoints are written and how many are kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Every K epochs (and at the end, and on SIGTERM/SIGUSR1); default = train.eval_every.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<usize>,
    /// Keep the newest N checkpoints plus the best-scoring one.
    pub keep_last: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self { every: None, keep_last: 2 }
    }
}

fn default_seed() -> u64 {
    333
}
/// The environment variable naming the store every command uses when neither `--store`
/// nor a config's `store` key names one.
pub const STORE_ENV: &str = "RAS_STORE";
/// The store of last resort: a folder here.
pub const FALLBACK_STORE: &str = "file://./ras-store";

/// The store used where none is named: `$RAS_STORE` when set (and not empty), else
/// file://./ras-store. The one rule for every command: `ras train` of a config without a
/// `store` key writes where `ras runs`, `eval`, `compare`, `status` ... look by default.
pub fn default_store() -> String {
    std::env::var(STORE_ENV).ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| FALLBACK_STORE.into())
}

/// Which dataset, where, and which classes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Layout: "mvtec" (also the synthetic set), "mpdd", "visa" (raw layout +
    /// split_csv/1cls.csv), "btad", or "jsonl" (the public code's metadata files).
    #[serde(default = "default_kind")]
    pub kind: DatasetKind,
    /// Dataset root folder (for "jsonl": the folder the metadata paths are relative to).
    pub root: PathBuf,
    /// Classes to use; empty = every class found.
    #[serde(default)]
    pub classes: Vec<String>,
    /// kind = "jsonl" only: JSON-lines metadata of the training split; relative paths are
    /// resolved against `root`. Not serialised when absent, so other configs keep their run id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_meta: Option<PathBuf>,
    /// kind = "jsonl" only: metadata of the test split, like `train_meta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_meta: Option<PathBuf>,
}

fn default_kind() -> DatasetKind {
    DatasetKind::Mvtec
}

/// Frozen feature extractor and neck.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BackboneConfig {
    /// "efficientnet-b4" (the paper) or a smaller "efficientnet-b0" .. "efficientnet-b3".
    pub arch: BackboneArch,
    /// safetensors file in the efficientnet_pytorch state_dict layout; none = seeded random init.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// 0-indexed MBConv blocks whose outputs are the features (B4: 1, 5, 9, 21 = 272 channels).
    /// Empty = the arch's default (strides 2, 4, 8, 16).
    #[serde(default)]
    pub outblocks: Vec<usize>,
    /// Side of the square network input in pixels; the token grid is image_size / 16.
    pub image_size: i64,
    /// Seed of the random init used when no weights are given.
    pub init_seed: u64,
    /// Images per backbone forward pass when filling the feature cache.
    pub batch_size: usize,
}

impl Default for BackboneConfig {
    fn default() -> Self {
        Self { arch: BackboneArch::B4, weights: None, outblocks: vec![], image_size: 224, init_seed: 0, batch_size: 16 }
    }
}

/// Reconstruction model variants (paper Table 4 ablations and the Table 6 baseline).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    /// RASFormer steps: gate + cross-attention + update projection (the paper's model).
    Ras,
    /// Gate only: l* = (W_u l + b + a * l) / 2, no attention block.
    GateOnly,
    /// Transformer only: no gate, the block attends to l_{t-1} directly.
    TransformerOnly,
    /// UniAD-style baseline: plain post-LN transformer decoder layers with learned queries.
    Uniad,
}

/// The RAS reconstruction model (spec sections 3-5). Defaults are the paper's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub decoder: DecoderKind,
    /// C: width of the transformer.
    pub hidden_dim: i64,
    /// T_e (0 allowed).
    pub encoder_layers: usize,
    /// T_d (at least 1).
    pub decoder_layers: usize,
    pub heads: i64,
    pub ffn_dim: i64,
    /// Mask the 7x7 neighbourhood in the encoder's self-attention.
    pub neighbor_mask: bool,
    pub neighbor_size: [i64; 2],
    /// Training dropout probability in every attention and FFN (UniAD's recipe: 0.1; RAS:
    /// 0). Not serialised when 0, so configs without it keep their run id.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropout: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            decoder: DecoderKind::Ras,
            hidden_dim: 256,
            encoder_layers: 2,
            decoder_layers: 4,
            heads: 8,
            ffn_dim: 1024,
            neighbor_mask: true,
            neighbor_size: [7, 7],
            dropout: 0.0,
        }
    }
}

/// Optimisation recipe (spec section 7). Defaults are the paper's MVTec-AD settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub setting: Setting,
    pub epochs: usize,
    /// Global batch size.
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    /// Global gradient-norm clip.
    pub clip_max_norm: f64,
    /// StepLR: multiply the rate by `lr_gamma` every `lr_step_epochs` epochs.
    pub lr_step_epochs: usize,
    pub lr_gamma: f64,
    /// Feature-jitter scale s and probability p (spec section 2).
    pub jitter_scale: f64,
    pub jitter_prob: f64,
    /// Evaluate on the test set every K epochs (and always after the last one).
    pub eval_every: usize,
    /// "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    pub device: DeviceSpec,
    /// "fp32", "tf32" (TF32 matrix products on CUDA) or "bf16" (bf16 autocast for the
    /// model, fp32 weights, optimiser state and loss). Unset: tf32 on CUDA, fp32 on a
    /// CPU. Not serialised when unset, so configs without it keep their run id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<super::Precision>,
}

impl TrainConfig {
    /// Samples each of `world` data-parallel ranks trains per step: `batch_size / world`,
    /// refused when `world` does not divide `batch_size` (see [`super::batch`]).
    pub fn per_rank_batch(&self, world: usize) -> Result<usize, super::BatchSplitError> {
        super::batch::per_rank_batch(self.batch_size, world)
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            setting: Setting::Unified,
            epochs: 500,
            batch_size: 64,
            lr: 7e-4,
            weight_decay: 1e-4,
            betas: [0.9, 0.999],
            clip_max_norm: 0.1,
            lr_step_epochs: 800,
            lr_gamma: 0.1,
            jitter_scale: 25.0,
            jitter_prob: 1.0,
            eval_every: 10,
            device: DeviceSpec::Auto,
            precision: None,
        }
    }
}

/// Evaluation options.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Jitter applied to test features (paper Table 6); 0 = off.
    pub test_jitter_scale: f64,
    /// AUPRO integrates the PRO curve up to this false-positive rate.
    pub aupro_fpr_limit: f64,
    /// Write per-image scores and 224x224 maps to the store.
    pub save_predictions: bool,
    pub batch_size: usize,
    /// Anomaly-map pictures (image | ground truth | heat map) written per class: the
    /// first N anomalous test images and the first normal one.
    pub pictures: usize,
    /// Extra test-time jitter scales (paper Table 6): after training and its final
    /// evaluation, the run evaluates its final model again at each scale, without
    /// retraining, into `evals/test_jitter_<scale>.json` (as `ras eval --test-jitter`).
    /// Not serialised when empty, so configs without it keep their run id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub noise_scales: Vec<f64>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            test_jitter_scale: 0.0,
            aupro_fpr_limit: 0.3,
            save_predictions: true,
            batch_size: 32,
            pictures: 3,
            noise_scales: vec![],
        }
    }
}

impl RunConfig {
    /// Reads, parses and validates a config file. Relative dataset and weights paths are
    /// resolved against the current directory (where the user runs `ras`).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::load(path, &[])
    }

    /// Reads a config file and applies `key.path=value` overrides (see
    /// [`super::overrides`]), then validates. Unknown keys are errors either way.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path, overrides)
    }

    /// Parses and validates TOML text; `path` only names the source in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::parse(text, path, &[])
    }

    /// The one way in. The overrides are applied to the spanned document parsed from
    /// the user's own text (never to a re-serialised copy), so every error can point at
    /// the file's line and column as written, or at the `--set` argument that caused it.
    fn parse(text: &str, path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let src = Source { text, path, overrides };
        let mut doc = toml::de::DeTable::parse(text).map_err(|e| src.error(&e))?;
        super::overrides::apply(doc.get_mut(), overrides, text.len()).map_err(|(i, message)| {
            ConfigError::Override { path: path.to_path_buf(), arg: overrides[i].clone(), message }
        })?;
        let located = doc.get_ref().clone();
        let cfg = RunConfig::deserialize(toml::de::Deserializer::from(doc)).map_err(|e| src.error(&e))?;
        cfg.check().map_err(|(key, message)| ConfigError::Invalid {
            key,
            origin: src.origin(&located, key),
            message,
        })?;
        Ok(cfg)
    }

    /// Checks every value that parses but makes no sense, naming its key; `path` is
    /// where the config came from (no line is known here: [`RunConfig::load`] adds it).
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        self.check().map_err(|(key, message)| ConfigError::Invalid {
            key,
            origin: super::Origin::Default { path: path.to_path_buf() },
            message,
        })
    }

    // `!(x > 0.0)` on purpose: NaN fails every comparison, so it must be refused too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    fn check(&self) -> Result<(), (&'static str, String)> {
        const MAX_EPOCHS: usize = 100_000;
        const MAX_BATCH: usize = 4096;
        const MAX_LAYERS: usize = 64;
        const MAX_WIDTH: i64 = 8192;
        // 1024 px = 64 x 64 tokens: attention maps 16x the paper's 224 px per layer and head.
        const MAX_IMAGE_SIZE: i64 = 1024;
        let bad = |key: &'static str, message: String| Err((key, message));
        let t = &self.train;
        let m = &self.model;
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return bad("name", format!("{:?} must be non-empty ASCII letters, digits, '-', '_' or '.'", self.name));
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad("train.lr", format!("{} must be a positive number", t.lr));
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return bad("train.weight_decay", format!("{} must be >= 0", t.weight_decay));
        }
        if t.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return bad("train.betas", format!("{:?} must both lie in [0, 1)", t.betas));
        }
        if !(t.clip_max_norm > 0.0) {
            return bad("train.clip_max_norm", format!("{} must be > 0", t.clip_max_norm));
        }
        // Upper bounds: values past them are typos or would exhaust memory inside libtorch
        // (a panic far from the key); each names the key here instead.
        if !(1..=MAX_EPOCHS).contains(&t.epochs) {
            return bad("train.epochs", format!("{} must be in 1..={MAX_EPOCHS} (the paper: 500)", t.epochs));
        }
        if !(1..=MAX_BATCH).contains(&t.batch_size) {
            return bad("train.batch_size", format!("{} must be in 1..={MAX_BATCH} (the paper: 64)", t.batch_size));
        }
        if t.eval_every == 0 {
            return bad("train.eval_every", "must be at least 1".into());
        }
        if t.lr_step_epochs == 0 || !(t.lr_gamma > 0.0) {
            return bad("train.lr_step_epochs", "lr_step_epochs must be >= 1 and lr_gamma > 0".into());
        }
        if !(t.jitter_scale >= 0.0) || !(0.0..=1.0).contains(&t.jitter_prob) {
            return bad("train.jitter_scale", "jitter_scale must be >= 0 and jitter_prob in [0, 1]".into());
        }
        if !(1..=MAX_LAYERS).contains(&m.decoder_layers) {
            return bad(
                "model.decoder_layers",
                format!("T_d = {} must be in 1..={MAX_LAYERS} (the paper: 4)", m.decoder_layers),
            );
        }
        if m.encoder_layers > MAX_LAYERS {
            return bad(
                "model.encoder_layers",
                format!("T_e = {} must be at most {MAX_LAYERS} (the paper: 2)", m.encoder_layers),
            );
        }
        if m.hidden_dim > MAX_WIDTH || m.ffn_dim > 4 * MAX_WIDTH {
            return bad(
                "model.hidden_dim",
                format!(
                    "hidden_dim {} / ffn_dim {} must be at most {MAX_WIDTH} / {} (the paper: 256 / 1024)",
                    m.hidden_dim,
                    m.ffn_dim,
                    4 * MAX_WIDTH
                ),
            );
        }
        if m.hidden_dim <= 0 || m.heads <= 0 || m.hidden_dim % m.heads != 0 {
            return bad(
                "model.heads",
                format!("hidden_dim {} must be a positive multiple of heads {}", m.hidden_dim, m.heads),
            );
        }
        if m.hidden_dim % 2 != 0 {
            return bad("model.hidden_dim", "must be even (half row, half column position embedding)".into());
        }
        if m.ffn_dim <= 0 {
            return bad("model.ffn_dim", "must be positive".into());
        }
        if !(0.0..1.0).contains(&m.dropout) {
            return bad("model.dropout", format!("{} must lie in [0, 1) (UniAD: 0.1, RAS: 0)", m.dropout));
        }
        if m.neighbor_size.iter().any(|&s| s <= 0 || s % 2 == 0) {
            return bad("model.neighbor_size", format!("{:?} must be positive odd sizes", m.neighbor_size));
        }
        let b = &self.backbone;
        if b.image_size < 32 || b.image_size > MAX_IMAGE_SIZE || b.image_size % 16 != 0 {
            return bad(
                "backbone.image_size",
                format!("{} must be a multiple of 16 in 32..={MAX_IMAGE_SIZE} (the paper: 224; memory grows with its 4th power)", b.image_size),
            );
        }
        if !(1..=MAX_BATCH).contains(&b.batch_size) {
            return bad("backbone.batch_size", format!("{} must be in 1..={MAX_BATCH}", b.batch_size));
        }
        if self.checkpoint.every == Some(0) || self.checkpoint.keep_last == 0 {
            return bad("checkpoint.every", "checkpoint.every and checkpoint.keep_last must be at least 1".into());
        }
        let e = &self.eval;
        if !(e.test_jitter_scale >= 0.0) {
            return bad("eval.test_jitter_scale", "must be >= 0".into());
        }
        if !(e.aupro_fpr_limit > 0.0 && e.aupro_fpr_limit <= 1.0) {
            return bad("eval.aupro_fpr_limit", "must be in (0, 1]".into());
        }
        if !(1..=MAX_BATCH).contains(&e.batch_size) {
            return bad("eval.batch_size", format!("{} must be in 1..={MAX_BATCH}", e.batch_size));
        }
        if let Some(s) = e.noise_scales.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
            return bad("eval.noise_scales", format!("{s} must be a finite number >= 0"));
        }
        let grid = b.image_size / 16;
        if m.neighbor_mask && grid <= m.neighbor_size[0] && grid <= m.neighbor_size[1] {
            return bad("model.neighbor_size", format!(
                "{:?} masks every token of the {grid}x{grid} grid; use a larger backbone.image_size or set model.neighbor_mask = false",
                m.neighbor_size
            ));
        }
        let d = &self.dataset;
        for (key, value) in [("dataset.train_meta", &d.train_meta), ("dataset.test_meta", &d.test_meta)] {
            match (d.kind == DatasetKind::Jsonl, value) {
                (true, None) => {
                    return bad(
                        key,
                        "kind = \"jsonl\" needs it: a JSON-lines metadata file (relative to dataset.root)".into(),
                    )
                }
                (false, Some(_)) => {
                    return bad(key, format!("only used with kind = \"jsonl\", not \"{}\"; remove it", d.kind))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The resolved config as TOML text, as stored with the run.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// Which published training recipe this config follows, in words: the paper's text
    /// (its learning rate for the dataset, batch 64), the public code's own MVTec-AD config
    /// (lr 5e-4, 8 per GPU x 8 GPUs, seed 133: configs/mvtec-public.toml), UniAD's own
    /// MVTec-AD config for the UniAD baseline (configs/uniad-mvtec.toml), or neither.
    /// `ras train`/`ras eval` and `ras report` print it, so numbers are compared with the
    /// source they reproduce.
    pub fn recipe(&self) -> String {
        let (lr, batch) = (self.train.lr, self.train.batch_size);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
        let (m, t) = (&self.model, &self.train);
        // UniAD's experiments/MVTec-AD/config.yaml, as configs/uniad-mvtec.toml sets it.
        if self.dataset.kind == DatasetKind::Mvtec
            && m.decoder == DecoderKind::Uniad
            && (m.encoder_layers, m.decoder_layers, t.epochs, batch) == (4, 4, 1000, 64)
            && close(lr, 1e-4)
            && close(m.dropout, 0.1)
            && close(t.jitter_scale, 20.0)
        {
            let seed = if self.seed == 133 { ", seed 133" } else { "" };
            return format!(
                "UniAD's own MVTec-AD config (configs/uniad-mvtec.toml: T_e 4, T_d 4, dropout 0.1, jitter 20, lr 1e-4, batch 8 x 8, 1000 epochs{seed})"
            );
        }
        if self.dataset.kind == DatasetKind::Mvtec && close(lr, 5e-4) && batch == 64 {
            let seed = if self.seed == 133 { ", seed 133" } else { "" };
            return format!("public code's MVTec-AD config (lr 5e-4, batch 8 x 8{seed})");
        }
        match self.dataset.kind.paper_lr() {
            Some(p) if close(lr, p) && batch == 64 => format!("paper (lr {lr:e}, batch 64)"),
            _ => format!("custom (lr {lr:e}, batch {batch})"),
        }
    }

    /// Stable id of the run this config describes: its name and a hash of the resolved
    /// config (the store prefix `runs/<id>/`).
    pub fn run_id(&self) -> String {
        let hash = hex::encode(Sha256::digest(self.to_toml().as_bytes()));
        format!("{}-{}", self.name, &hash[..8])
    }
}

/// The text a config was parsed from, to turn spans into places a user can find.
struct Source<'a> {
    text: &'a str,
    path: &'a Path,
    overrides: &'a [String],
}

impl Source<'_> {
    /// A toml error as a [`ConfigError`] at the file's line and column, or blaming the
    /// `--set` argument whose (virtual) span it carries.
    fn error(&self, e: &toml::de::Error) -> ConfigError {
        let path = self.path.to_path_buf();
        let message = e.message().trim_end().to_string();
        let Some(span) = e.span() else { return ConfigError::Parse { path, message } };
        if let Some(i) = super::overrides::blame(self.text.len(), &span) {
            if let Some(arg) = self.overrides.get(i) {
                let hint = super::overrides::toml_hint(arg).unwrap_or_default();
                return ConfigError::Override { path, arg: arg.clone(), message: format!("{message}{hint}") };
            }
        }
        let (line, column, text) = self.locate(span.start);
        ConfigError::At { path, line, column, text, message }
    }

    /// 1-based line and column (in characters) of byte `at`, and that line's text.
    fn locate(&self, at: usize) -> (usize, usize, String) {
        let at = at.min(self.text.len());
        let start = self.text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = self.text[at..].find('\n').map_or(self.text.len(), |i| at + i);
        let line = self.text[..start].matches('\n').count() + 1;
        let column = self.text[start..at].chars().count() + 1;
        (line, column, self.text[start..end].trim_end_matches('\r').to_string())
    }

    /// Where the value of `key` ("train.lr") was set: a file line, a `--set`, or nowhere.
    fn origin(&self, doc: &toml::de::DeTable<'_>, key: &str) -> super::Origin {
        let path = self.path.to_path_buf();
        let (mut table, mut found) = (Some(doc), None);
        for part in key.split('.') {
            let value = table.and_then(|t| t.get(part));
            found = value.map(|v| v.span());
            table = value.and_then(|v| v.get_ref().as_table());
        }
        let Some(span) = found else { return super::Origin::Default { path } };
        if let Some(arg) = super::overrides::blame(self.text.len(), &span).and_then(|i| self.overrides.get(i)) {
            return super::Origin::Set { path, arg: arg.clone() };
        }
        let (line, _, text) = self.locate(span.start);
        super::Origin::File { path, line, text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "name = \"t\"\n[dataset]\nroot = \"/data\"\n";

    #[test]
    fn defaults_are_the_papers() {
        let c = RunConfig::from_toml(MIN, Path::new("x.toml")).unwrap();
        assert_eq!(c.seed, 333);
        assert_eq!(c.train.lr, 7e-4);
        assert_eq!(c.train.batch_size, 64);
        assert_eq!((c.model.encoder_layers, c.model.decoder_layers), (2, 4));
        assert_eq!(c.backbone.arch, BackboneArch::B4);
        assert_eq!(c.train.jitter_scale, 25.0);
    }

    #[test]
    fn recipe_names_the_paper_or_the_public_code() {
        let p = std::env::temp_dir().join(format!("ras-recipe-{}.toml", std::process::id()));
        std::fs::write(&p, MIN).unwrap();
        let load = |sets: &[&str]| {
            RunConfig::load(&p, &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap().recipe()
        };
        assert_eq!(load(&["train.lr=7e-4", "train.batch_size=64"]), "paper (lr 7e-4, batch 64)");
        assert_eq!(
            load(&["train.lr=5e-4", "train.batch_size=64", "seed=133"]),
            "public code's MVTec-AD config (lr 5e-4, batch 8 x 8, seed 133)"
        );
        assert_eq!(load(&["train.lr=1e-3", "train.batch_size=16"]), "custom (lr 1e-3, batch 16)");
        assert_eq!(load(&["dataset.kind=visa", "train.lr=1e-3", "train.batch_size=64"]), "paper (lr 1e-3, batch 64)");
        std::fs::remove_file(&p).ok();
    }

    #[test]
    fn unknown_key_is_named() {
        let text = format!("{MIN}[train]\nlearning_rate = 0.1\n");
        let err = RunConfig::from_toml(&text, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("learning_rate") && err.contains("x.toml"), "{err}");
    }

    #[test]
    fn negative_lr_is_named() {
        let text = format!("{MIN}[train]\nlr = -0.001\n");
        let err = RunConfig::from_toml(&text, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("train.lr"), "{err}");
    }

    #[test]
    fn overrides_apply_and_unknown_ones_fail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, MIN).unwrap();
        let c =
            RunConfig::load(&p, &["train.lr=0.01".into(), "model.encoder_layers=0".into(), "name=abc".into()]).unwrap();
        assert_eq!((c.train.lr, c.model.encoder_layers, c.name.as_str()), (0.01, 0, "abc"));
        let err = RunConfig::load(&p, &["train.nope=1".into()]).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn dataset_kinds_and_jsonl_keys() {
        for kind in DatasetKind::ALL.iter().filter(|k| **k != DatasetKind::Jsonl) {
            let text = MIN.replace("[dataset]\n", &format!("[dataset]\nkind = \"{kind}\"\n"));
            RunConfig::from_toml(&text, Path::new("x.toml")).unwrap();
        }
        let with = |extra: &str| RunConfig::from_toml(&format!("{MIN}{extra}"), Path::new("x.toml"));
        let err = with("kind = \"folder\"\n").unwrap_err().to_string();
        assert!(err.contains("dataset.kind") && err.contains("folder") && err.contains("visa"), "{err}");
        let err = with("kind = \"jsonl\"\ntrain_meta = \"train.jsonl\"\n").unwrap_err().to_string();
        assert!(err.contains("dataset.test_meta"), "{err}");
        let err = with("kind = \"jsonl\"\ntest_meta = \"test.jsonl\"\n").unwrap_err().to_string();
        assert!(err.contains("dataset.train_meta"), "{err}");
        let err = with("kind = \"visa\"\ntrain_meta = \"train.jsonl\"\n").unwrap_err().to_string();
        assert!(err.contains("dataset.train_meta") && err.contains("visa"), "{err}");
        let c = with("kind = \"jsonl\"\ntrain_meta = \"a.jsonl\"\ntest_meta = \"b.jsonl\"\n").unwrap();
        assert_eq!(c.dataset.test_meta.as_deref(), Some(Path::new("b.jsonl")));
        // Absent optional keys are not written: existing configs keep their run id.
        let plain = RunConfig::from_toml(MIN, Path::new("x.toml")).unwrap().to_toml();
        assert!(!plain.contains("train_meta") && !plain.contains("test_meta"), "{plain}");
    }

    #[test]
    fn noise_scales_are_checked_and_absent_by_default() {
        let with = |eval: &str| RunConfig::from_toml(&format!("{MIN}[eval]\n{eval}\n"), Path::new("x.toml"));
        let c = with("noise_scales = [10.0, 20.0]").unwrap();
        assert_eq!(c.eval.noise_scales, vec![10.0, 20.0]);
        let err = with("noise_scales = [10.0, -5.0]").unwrap_err().to_string();
        assert!(err.contains("eval.noise_scales") && err.contains("-5"), "{err}");
        let err = with("noise_scales = [\"ten\"]").unwrap_err().to_string();
        assert!(err.contains("noise_scales"), "{err}");
        let err = with("noise_scale = [10.0]").unwrap_err().to_string();
        assert!(err.contains("noise_scale") && err.contains("x.toml"), "{err}");
        // Empty (the default) is not written: existing runs keep their id.
        let plain = RunConfig::from_toml(MIN, Path::new("x.toml")).unwrap();
        assert!(!plain.to_toml().contains("noise_scales"), "{}", plain.to_toml());
        assert_ne!(plain.run_id(), c.run_id(), "the scales are part of the run");
        let back = RunConfig::from_toml(&c.to_toml(), Path::new("y.toml")).unwrap();
        assert_eq!(back, c);
    }

    /// A config written as a user would: comments, blank lines, `1e-3` (which a
    /// re-serialised copy would print as `0.001` on another line).
    fn user_file(dir: &Path, train: &str) -> PathBuf {
        let p = dir.join("mine.toml");
        let text = format!("# my run\nname = \"t\"\n\n[dataset]\nroot = \"/data\"  # the data\n\n# training\n[train]\nepochs = 3\n{train}\n");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn file_errors_cite_the_users_line_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = user_file(dir.path(), "learning_rate = 1e-3");
        let err = RunConfig::load(&p, &[]).unwrap_err().to_string();
        let at = format!("{}:10:1", p.display());
        assert!(err.contains(&at) && err.contains("learning_rate = 1e-3") && err.contains("unknown field"), "{err}");
        assert!(!err.contains("0.001"), "quotes a re-serialised copy: {err}");

        let p = user_file(dir.path(), "lr = \"fast\"");
        let err = RunConfig::load(&p, &[]).unwrap_err().to_string();
        let at = format!("{}:10:6", p.display());
        assert!(err.contains(&at) && err.contains("lr = \"fast\"") && err.contains("invalid type"), "{err}");

        let p = user_file(dir.path(), "lr = [");
        let err = RunConfig::load(&p, &[]).unwrap_err().to_string();
        assert!(err.contains(&format!("{}:10:", p.display())) && err.contains("lr = ["), "{err}");
    }

    #[test]
    fn set_errors_name_the_set_argument() {
        let dir = tempfile::tempdir().unwrap();
        let p = user_file(dir.path(), "lr = 1e-3");
        for arg in
            ["train.lr=fast", "train.nope=1", "train.betas=[0.9, \"x\"]", "name.x=1", "model={ heads = \"many\" }"]
        {
            let err = RunConfig::load(&p, &[arg.to_string()]).unwrap_err().to_string();
            assert!(err.contains(&format!("`--set {arg}`")), "{arg}: {err}");
            assert!(!err.contains(&format!("{}:", p.display())), "{arg} blames a file line: {err}");
        }
        // The file's own errors still point at the file when overrides are present.
        let p = user_file(dir.path(), "lr = \"fast\"");
        let err = RunConfig::load(&p, &["train.epochs=2".into()]).unwrap_err().to_string();
        assert!(err.contains(&format!("{}:10:6", p.display())), "{err}");
    }

    #[test]
    fn invalid_values_name_key_and_where_they_were_set() {
        let dir = tempfile::tempdir().unwrap();
        let p = user_file(dir.path(), "lr = -1e-3");
        let err = RunConfig::load(&p, &[]).unwrap_err().to_string();
        assert!(
            err.contains("`train.lr`") && err.contains(&format!("{}:10", p.display())) && err.contains("lr = -1e-3"),
            "{err}"
        );
        let p = user_file(dir.path(), "lr = 1e-3");
        let err = RunConfig::load(&p, &["train.lr=-2".into()]).unwrap_err().to_string();
        assert!(err.contains("`train.lr`") && err.contains("`--set train.lr=-2`"), "{err}");
        assert!(!err.contains(&format!("{}:", p.display())), "{err}");
        // Invalid because of another key, itself left at its default: the file is named.
        let err = RunConfig::load(&p, &["model.hidden_dim=100".into()]).unwrap_err().to_string();
        assert!(err.contains("`model.heads`") && err.contains("mine.toml") && err.contains("default"), "{err}");
    }

    #[test]
    fn round_trip_through_toml() {
        let c = RunConfig::from_toml(MIN, Path::new("x.toml")).unwrap();
        let back = RunConfig::from_toml(&c.to_toml(), Path::new("y.toml")).unwrap();
        assert_eq!(c, back);
    }
}
