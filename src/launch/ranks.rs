//! `ras train --ranks N`: N workers (`ras worker`) under mpirun on this machine. `--force`
//! acts once, here, before the ranks start; if mpirun fails before the run recorded an
//! outcome (a rank killed, say), the run is marked failed with what mpirun reported (it
//! names the rank).

use crate::config::{BatchSplitError, RunConfig};
use crate::exit::ExitStatus;
use crate::run::{lease, records, FinalMetrics, RunPaths};
use crate::store::{Store, StoreError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RanksError {
    #[error("ras train --ranks {ranks} ({})", config.display())]
    Batch {
        ranks: usize,
        config: PathBuf,
        #[source]
        source: BatchSplitError,
    },
    #[error("run {run} is being trained by another process ({holder}): --force does not override a live lease")]
    LiveLease { run: String, holder: String },
    #[error("locating the ras binary")]
    Exe(#[source] std::io::Error),
    #[error("starting mpirun (install OpenMPI: scripts/setup.sh)")]
    Mpirun(#[source] std::io::Error),
    /// mpirun failed before the run recorded an outcome; the run is now marked failed.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the ranks ended, when they did not fail.
pub enum RanksOutcome {
    /// The run finished; its final metrics, if the store holds them.
    Done(Option<Box<FinalMetrics>>),
    /// Stopped by a signal after a checkpoint: start it again to resume.
    Requeue,
    /// The store stayed unreachable (a rank recorded it if it could): not a failure.
    Infra,
}

impl RanksOutcome {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            RanksOutcome::Done(_) => ExitStatus::Ok,
            RanksOutcome::Requeue => ExitStatus::Requeue,
            RanksOutcome::Infra => ExitStatus::Infra,
        }
    }
}

/// Trains `cfg` (loaded from `config` with `overrides`, which the workers load again) with
/// `ranks` ranks under mpirun, each running `exe worker`.
pub fn train_ranks(
    cfg: &RunConfig,
    config: &Path,
    overrides: &[String],
    force: bool,
    ranks: usize,
) -> Result<RanksOutcome, RanksError> {
    cfg.train.per_rank_batch(ranks).map_err(|source| RanksError::Batch { ranks, config: config.into(), source })?;
    let store = Store::open(&cfg.store)?;
    let id = cfg.run_id();
    let paths = RunPaths::new(id.as_str());
    if force {
        // --force must act once, before the ranks start, not in every rank; never on a
        // run another process is training (its lease is live).
        if let Some(l) = lease::live_holder(&store, &paths)? {
            return Err(RanksError::LiveLease { run: id, holder: l.holder() });
        }
        records::discard(&store, &paths)?;
    }
    let mut args = vec!["worker".to_string(), config.display().to_string()];
    for o in overrides {
        args.extend(["--set".to_string(), o.clone()]);
    }
    let exe = std::env::current_exe().map_err(RanksError::Exe)?;
    let done = crate::launch::mpirun::run(ranks, &exe, &args).map_err(RanksError::Mpirun)?;
    match ExitStatus::from_code(done.code) {
        Some(ExitStatus::Ok) => {
            Ok(RanksOutcome::Done(store.get_json::<FinalMetrics>(&paths.final_metrics())?.map(Box::new)))
        }
        Some(ExitStatus::Requeue) => Ok(RanksOutcome::Requeue),
        Some(ExitStatus::Infra) => Ok(RanksOutcome::Infra),
        _ => {
            let reason = format!("mpirun exited with code {}: {}", done.code, done.stderr_tail.join(" | "));
            records::mark_failed_unless_recorded(cfg, &reason)?;
            Err(RanksError::Failed(reason))
        }
    }
}
