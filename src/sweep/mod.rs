//! Sweeps: a `jobs/*.toml` file expands into many runs (grid axes, explicit override
//! sets, datasets, unified/separate), and a coordinator drives them to completion.
//!
//! The coordinator keeps no state of its own in memory that matters: everything lives in
//! the store under `sweeps/<name>/` (the layout, and the one type that spells its keys:
//! `paths`).
//!
//! Files: `expand` (sweep file -> runs), `manifest` (the runs as stored, and the one
//! reader of a stored manifest), `plan` (ranks, cost, placement, the plan table),
//! `estimate` (cost from measurements), `rates` (achieved rates, and where they come
//! from), `paths` (the store keys), `state` (the store
//! records, read incrementally by `Tracker`), `coordinator` (the loop that launches and
//! retries), `cancel` (stopping a sweep, or some of its runs for good), `status` (views
//! and the status table).

pub mod asha;
pub mod cancel;
pub mod coordinator;
pub mod estimate;
pub mod expand;
pub mod manifest;
pub mod paths;
pub mod plan;
pub mod progress;
pub mod rates;
pub mod search;
pub mod state;
pub mod status;
pub mod tracker;

pub use cancel::{cancel, cancel_runs, retry_cancelled, CancelOutcome, RunCancel};
pub use coordinator::{coordinate, submit_report_job, CoordinateOptions, CycleStats};
pub use expand::{expand, expand_checked, DataIssue, DataScans, ExpandOptions};
pub use manifest::{Manifest, PlannedRun, MANIFEST_FORMAT};
pub use paths::{SweepKey, SweepPaths};
pub use progress::SweepProgress;
pub use state::{CancelMark, SweepState};
pub use status::{render_failed, render_views, RunPhase, RunView};
pub use tracker::Tracker;

use crate::config::{ConfigError, SweepFileError};
use crate::store::StoreError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    File(#[from] SweepFileError),
    #[error("sweep file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// A run's data does not hold what its config names (checked before submitting).
    #[error("sweep file {sweep}, run `{label}`: {key}: {message}")]
    Data { sweep: PathBuf, label: String, key: &'static str, message: String },
    #[error("sweep {sweep}, run {label}")]
    Config {
        sweep: String,
        label: String,
        // Boxed: a config error is large, and every Result of the sweep module carries it.
        #[source]
        source: Box<ConfigError>,
    },
    /// A stored manifest in a format this version does not read.
    #[error(
        "{key} in {url} is format {found}, written by {writer}; this ras ({}) reads format {}: use that version of ras or a newer one",
        manifest::RAS_VERSION,
        manifest::MANIFEST_FORMAT
    )]
    ManifestFormat { key: String, url: String, found: String, writer: String },
    /// A stored manifest that does not parse (cut short, or edited by hand).
    #[error(
        "{key} in {url} {problem}: delete it (the next `ras sweep` of the sweep file writes it again) or restore it"
    )]
    ManifestCorrupt { key: String, url: String, problem: String },
    /// A run config of a manifest that this version cannot parse (written by another
    /// version of ras: a key it does not know, a value it does not take). The parse
    /// error goes last (it quotes the line) and is not a `source`: printed in full here,
    /// the error chain would print it twice.
    #[error("{manifest}: the config of run {run} does not parse with ras {}: {fix}; {error}", manifest::RAS_VERSION)]
    ManifestConfig { manifest: String, run: String, fix: String, error: Box<ConfigError> },
    /// `ras cancel --run` names no run of the sweep; `known` lists them, a line each.
    #[error("sweep {sweep} has no run, label or variant `{given}`; its runs (id, label):{known}")]
    UnknownRun { sweep: String, given: String, known: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("launcher")]
    Launch(#[from] crate::launch::LaunchError),
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SweepError {
    /// Whether the store stayed unreachable past its retry budget (see [`crate::store::StoreError::is_outage`]).
    pub fn is_outage(&self) -> bool {
        match self {
            SweepError::Store(e) => e.is_outage(),
            SweepError::Launch(e) => e.is_outage(),
            _ => false,
        }
    }
}
