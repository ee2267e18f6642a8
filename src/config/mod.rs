//! Configuration, the bottom of the house: what a user writes and every layer above
//! reads. Nothing here imports the rest of the crate.
//!
//! - `kinds`       typed values (dataset kind, backbone arch, device, launcher, setting)
//! - `run`         one run's config (`configs/*.toml`), validated, and its run id
//! - `overrides`   `--set key.path=value`
//! - `sweep_file`  a sweep (`jobs/*.toml`) as written, before expansion
//! - `cluster`     a cluster profile (`cluster/*.toml`) and the shape the planner packs

pub mod cluster;
pub mod kinds;
pub mod overrides;
pub mod run;
pub mod sweep_file;

pub use cluster::{ClusterProfile, ClusterShape, ProfileError};
pub use kinds::{BackboneArch, DatasetKind, DeviceSpec, LauncherKind, Setting};
pub use run::{BackboneConfig, CheckpointConfig, DatasetConfig, DecoderKind, EvalConfig, ModelConfig, RunConfig, TrainConfig};
pub use sweep_file::{OneOrMany, PaperLayout, PaperMatch, SweepFile, SweepFileError};

use std::path::PathBuf;

/// Errors from reading or validating a run configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, #[source] source: std::io::Error },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}` in {path}: {message}")]
    Invalid { path: PathBuf, key: &'static str, message: String },
}
