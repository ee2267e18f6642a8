//! Configuration, the bottom of the house: what a user writes and every layer above
//! reads. Nothing here imports the rest of the crate.
//!
//! - `batch`       how the global batch is split over data-parallel ranks (one rule)
//! - `kinds`       typed values (dataset kind, backbone arch, device, launcher, setting)
//! - `run`         one run's config (`configs/*.toml`), validated, and its run id
//! - `overrides`   `--set key.path=value`
//! - `sweep_file`  a sweep (`jobs/*.toml`) as written, before expansion
//! - `cluster`     a cluster profile (`cluster/*.toml`) and the shape the planner packs

pub mod batch;
pub mod cluster;
pub mod kinds;
pub mod overrides;
pub mod run;
pub mod search;
pub mod sweep_file;

pub use batch::BatchSplitError;
pub use cluster::{ClusterProfile, ClusterShape, ProfileError};
pub use kinds::{BackboneArch, DatasetKind, DeviceSpec, LauncherKind, Precision, Setting};
pub use run::{
    default_store, BackboneConfig, CheckpointConfig, DatasetConfig, DecoderKind, EvalConfig, ModelConfig, RunConfig,
    TrainConfig, FALLBACK_STORE, STORE_ENV,
};
pub use sweep_file::{OneOrMany, PaperLayout, PaperMatch, SweepFile, SweepFileError};

use std::path::PathBuf;

/// Errors from reading or validating a run configuration. Each names where the bad text
/// came from: the user's file with line, column and the line as written, or the
/// `--set KEY=VALUE` argument.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An error without a position (the file's text is not at hand).
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A syntax, type or unknown-key error at a place in the user's file.
    #[error("invalid config {}:{line}:{column}: {message}\n{}", path.display(), quote_line(*line, *column, text))]
    At { path: PathBuf, line: usize, column: usize, text: String, message: String },
    /// An error caused by a `--set` argument (or a sweep's override), not by the file.
    #[error("invalid `--set {arg}` (on config {}): {message}", path.display())]
    Override { path: PathBuf, arg: String, message: String },
    /// A value that parses but makes no sense, named by key and where it was set.
    #[error("invalid value for `{key}` {origin}: {message}")]
    Invalid { key: &'static str, origin: Origin, message: String },
}

/// Where a config value came from, for [`ConfigError::Invalid`].
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// Written in the file at this 1-based line, whose text is `text`.
    File { path: PathBuf, line: usize, text: String },
    /// Given as `--set arg` on top of the config file at `path`.
    Set { path: PathBuf, arg: String },
    /// Not written anywhere: the key's default (or a value that is not located).
    Default { path: PathBuf },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File { path, line, text } => write!(f, "at {}:{line} (`{}`)", path.display(), text.trim()),
            Origin::Set { path, arg } => write!(f, "from `--set {arg}` (on config {})", path.display()),
            Origin::Default { path } => write!(f, "in {} (not set there: the default)", path.display()),
        }
    }
}

/// `  21 | text` and a caret under `column`, as compilers quote a line.
fn quote_line(line: usize, column: usize, text: &str) -> String {
    let gutter = line.to_string().len();
    format!("{line} | {text}\n{:gutter$} | {:>column$}", "", "^")
}
