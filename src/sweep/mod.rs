//! Sweeps: a `jobs/*.toml` file expands into many runs (grid axes, explicit override
//! sets, datasets, unified/separate), and a coordinator drives them to completion.
//!
//! The coordinator keeps no state of its own in memory that matters: everything lives in
//! the store under `sweeps/<name>/`, so that any number of coordinators can be started,
//! killed and restarted on one sweep:
//!
//! ```text
//! sweeps/<name>/manifest.json             the expanded runs: id, label, resolved config, ranks
//! sweeps/<name>/claims/<run id>.<attempt> conditional create (put_new): whoever writes it
//!                                         launches that attempt, nobody else
//! sweeps/<name>/jobs/<run id>.<attempt>.json  what the launcher started (pid or Slurm job id)
//! sweeps/<name>/launches/<run id>.<attempt>.<host>.<pid>  one per submission, never
//!                                         overwritten: the audit that shows no attempt
//!                                         was launched twice
//! sweeps/<name>/features/<key>.claim|.json  the one job that fills a feature cache
//!                                         (dataset + backbone) before the runs reading it
//! sweeps/<name>/cancelled                 written by `ras cancel`: running coordinators
//!                                         launch nothing more and exit; a coordinator
//!                                         started afterwards removes it and resumes
//! ```
//!
//! A run's own outcome is its `runs/<id>/status.json` (written by the run itself), so the
//! state of a sweep is a pure function of the store plus the launcher's view of the jobs.

//!
//! Files: `expand` (sweep file -> runs), `plan` (ranks, cost, placement, the plan table),
//! `estimate` (cost from measurements), `state` (the store records above, read incrementally by `Tracker`), `coordinator` (the
//! loop that launches and retries), `status` (views and the status table).

pub mod coordinator;
pub mod estimate;
pub mod expand;
pub mod plan;
pub mod state;
pub mod status;
pub mod tracker;

pub use coordinator::{cancel, coordinate, submit_report_job, CoordinateOptions, CycleStats};
pub use expand::{expand, expand_checked, DataIssue, DataScans, ExpandOptions, Manifest, PlannedRun};
pub use state::SweepState;
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
    #[error("sweep {sweep}, run {label}: {source}")]
    Config {
        sweep: String,
        label: String,
        // Boxed: a config error is large, and every Result of the sweep module carries it.
        #[source]
        source: Box<ConfigError>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("launcher: {0}")]
    Launch(#[from] crate::launch::LaunchError),
    #[error("cannot write {path}: {source}")]
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
