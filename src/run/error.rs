//! Why a run (or an evaluation of one) failed: [`RunError`], matched by type (the exit
//! code and the run's `infra` state ask [`RunError::is_outage`]).

use super::lease::LeaseError;
use super::trained::WeightsMismatch;
use crate::backbone::BackboneError;
use crate::config::{BatchSplitError, ConfigError};
use crate::data::DataError;
use crate::dist::DistError;
use crate::eval::MetricError;
use crate::features::FeatureError;
use crate::store::tensors::TensorCodecError;
use crate::store::StoreError;
use crate::train::{StateError, TrainError};

/// The `Result` of `run::*`.
pub type Result<T, E = RunError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Batch(#[from] BatchSplitError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Feature(#[from] FeatureError),
    #[error(transparent)]
    Backbone(#[from] BackboneError),
    #[error(transparent)]
    Dist(#[from] DistError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Metric(#[from] MetricError),
    #[error(transparent)]
    Tch(#[from] tch::TchError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Codec(#[from] TensorCodecError),
    #[error(transparent)]
    PixelHistograms(#[from] crate::eval::pixel_hist::PixelHistogramError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),

    /// A checkpoint's training state does not fit the trainer (another config).
    #[error("checkpoint {weights}")]
    CheckpointState {
        weights: String,
        #[source]
        source: StateError,
    },
    /// A checkpoint's model weights do not fit the model of the config.
    #[error("checkpoint {weights}")]
    CheckpointWeights {
        weights: String,
        #[source]
        source: WeightsMismatch,
    },
    #[error("model {model} has no {choice} checkpoint under {folder} (epochs kept: {kept}); choose one with --checkpoint latest|best|EPOCH")]
    NoSuchCheckpoint { model: String, choice: String, folder: String, kept: String },
    /// Reading the chosen checkpoint failed (its sha256 differs from its record, or the
    /// store failed).
    #[error("{choice} checkpoint of model {model} (epoch {epoch}) is corrupt; choose another with --checkpoint EPOCH")]
    CorruptCheckpoint {
        choice: String,
        model: String,
        epoch: usize,
        // Boxed: with three strings beside it, this variant would size every Result of run/.
        #[source]
        source: Box<StoreError>,
    },
    #[error("{choice} checkpoint of model {model}: its record names {weights} but that object is missing")]
    MissingCheckpoint { choice: String, model: String, weights: String },
    #[error("no valid checkpoint under {folder}")]
    NoValidCheckpoint { folder: String },
    #[error("{0:?} is not a run's prefix (runs/<run id>)")]
    NotARunPrefix(String),
    #[error("checkpoint does not match the model:\n  {}", .0.join("\n  "))]
    ModelMismatch(Vec<String>),
    #[error(
        "test-time jitter with several ranks is not supported yet: evaluate with `ras eval --test-jitter` on one rank"
    )]
    ShardedJitter,
    #[error("no run {run} in {url}")]
    NoRun { run: String, url: String },
    #[error("no run {run} in {url} (no {key})")]
    NoRunConfig { run: String, url: String, key: String },
    #[error("{key} resolves to run id {resolved}, not {run}: it was written by another version of ras; evaluate it with that version")]
    RunIdMismatch { key: String, resolved: String, run: String },
    #[error(
        "run {run} keeps its outputs in the store its config names ({store}): run `ras eval {run} --store {store}`"
    )]
    StoreMismatch { run: String, store: String },
    /// `why`: what its status.json says about its last attempt ("", "; its last attempt
    /// failed at epoch 3: training diverged ...", ...).
    #[error("run {run} is not trained to its last epoch (model {model}: epoch {epoch} of {epochs}){why}: finish it with `ras train` on its config ({config}) first")]
    NotTrained { run: String, model: String, epoch: usize, epochs: usize, config: String, why: String },
    #[error("run {run} stopped before its final metrics")]
    NoFinalMetrics { run: String },
    #[error("metrics of class {class}")]
    ClassMetrics {
        class: String,
        #[source]
        source: MetricError,
    },
    #[error("no evaluation at the last epoch")]
    NoLastEvaluation,
    #[error("{key} is not UTF-8")]
    NotUtf8 {
        key: String,
        #[source]
        source: std::str::Utf8Error,
    },
    #[error("{key} line {line}: no \"epoch\"")]
    LogNoEpoch { key: String, line: usize },
    #[error("{key} line {line}: unreadable metrics")]
    LogMetrics {
        key: String,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{key} line {line}: {error}; the line is damaged in the middle of the log, not a torn tail: delete the object (or run with --force) to start the run's logs afresh")]
    LogDamaged { key: String, line: usize, error: serde_json::Error },
    #[error("training diverged: loss {loss} at epoch {epoch} of model {model}")]
    Diverged { loss: f64, epoch: usize, model: String },
    /// A panic (libtorch raises its errors as panics through tch) that looks like an
    /// allocation failure; the text names the config keys that size memory.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    #[error("panicked: {0}")]
    Panicked(String),
}

impl RunError {
    /// Whether this is a store that stayed unreachable past its retry budget (an
    /// infrastructure failure, not the run's), directly or in a library error it wraps.
    pub fn is_outage(&self) -> bool {
        match self {
            RunError::Store(e) => e.is_outage(),
            RunError::CorruptCheckpoint { source, .. } => source.is_outage(),
            RunError::Feature(e) => e.is_outage(),
            RunError::Lease(e) => e.is_outage(),
            _ => false,
        }
    }
}
