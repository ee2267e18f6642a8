//! Launchers: how a coordinator starts, watches and stops jobs. One trait, one
//! implementation per backend:
//!
//! - [`Local`] (local.rs): `ras train CFG --ranks N` processes on this machine, in their
//!   own process group (mpirun for N > 1: mpirun.rs builds that command, once).
//! - [`Slurm`] (slurm.rs): a script rendered from `cluster/templates/*.sbatch.tmpl`,
//!   `sbatch --parsable`; every job of a sweep polled with ONE `squeue` call per cycle;
//!   `scancel`.
//!
//! - [`memory::Memory`] (memory.rs): for tests only, a cluster in memory (Local-like or
//!   Slurm-like) whose jobs write what `ras train` would, as each test's script says.
//!
//! - [`train_ranks`] (ranks.rs): `ras train CFG --ranks N` itself, N workers under mpirun
//!   on this machine, and the run's outcome from mpirun's exit.
//!
//! A job is described by a [`JobRecord`] stored in the sweep's state, so any coordinator
//! (not only the one that launched it) can poll or cancel it. External commands go
//! through [`command::run_command`] (logged, counted, transient failures retried).

pub mod command;
pub mod local;
pub mod memory;
pub mod mpirun;
pub mod ranks;
pub mod slurm;
pub mod template;

pub use local::Local;
pub use ranks::{train_ranks, RanksError, RanksOutcome};
pub use slurm::Slurm;

use crate::config::LauncherKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Command(#[from] command::CommandError),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sbatch template {path}: {message}")]
    Template { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl LaunchError {
    /// Whether the store stayed unreachable past its retry budget (see [`crate::store::StoreError::is_outage`]).
    pub fn is_outage(&self) -> bool {
        matches!(self, LaunchError::Store(e) if e.is_outage())
    }
}

/// What a launcher started, as stored in `sweeps/<name>/jobs/<run>.<attempt>.json`.
/// Two records are equal when what is stored of them is (`submitted` is not).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// Which launcher started it ("local" or "slurm"): whoever polls it asks that one.
    pub kind: LauncherKind,
    /// Process id (local) or Slurm job id (`<array id>_<task>` for a task of an array).
    pub id: String,
    pub host: String,
    /// The run id, or the task's name (`features-<hash>`, `report-<sweep>`).
    pub run_id: String,
    pub log: PathBuf,
    /// Nodes the job was placed on (named profiles only; empty: the cluster chose).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// What was submitted (the sbatch script; a local job's command line), which the
    /// coordinator keeps with the run (`RunPaths::job_script`). Not part of the stored
    /// record: only the process that submitted the job has it.
    #[serde(skip)]
    pub submitted: Option<String>,
}

impl PartialEq for JobRecord {
    fn eq(&self, other: &Self) -> bool {
        (&self.kind, &self.id, &self.host, &self.run_id, &self.log, &self.nodes)
            == (&other.kind, &other.id, &other.host, &other.run_id, &other.log, &other.nodes)
    }
}

/// What the scheduler says of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Waiting in the scheduler's queue: nothing it writes can have changed yet.
    Queued,
    /// Running (or starting, completing).
    Active,
    Ended,
    /// Ended by a cancel in the scheduler (Slurm's state CANCELLED: `scancel`, by a person
    /// or by ras), not by a preemption or a requeue. The tracker tells a person's cancel
    /// from ras's own by the jobs ras records as stopped.
    Cancelled,
    /// The scheduler could not be asked (controller unreachable). Not "ended": a job
    /// that may still run must not be launched a second time. The text says why.
    Unknown(String),
}

impl JobState {
    /// Queued, running, or possibly either (unknown): not to be launched again.
    pub fn is_alive(&self) -> bool {
        !self.is_ended()
    }

    /// Ended, cancelled or not.
    pub fn is_ended(&self) -> bool {
        matches!(self, JobState::Ended | JobState::Cancelled)
    }
}

/// How a job waits for the jobs it comes after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// Once they ended, however (a feature-cache job only saves work).
    AfterAny,
    /// Only if they all succeeded; else Slurm cancels the job (a report of every run).
    AfterOk,
}

/// What a job runs.
#[derive(Debug, Clone, PartialEq)]
pub enum JobCommand {
    /// One attempt of a run: `ras train CONFIG` (its ranks started by mpirun or srun).
    Run { config: PathBuf, attempt: usize, ranks: usize },
    /// One `ras ARGS` process: a feature cache (`features CONFIG`) or a sweep's report.
    Task { args: Vec<String> },
    /// `ras ARGS` on `ranks` ranks, placed and bound to GPUs as a run's ranks are (srun
    /// on Slurm, mpirun here): `ras doctor`'s check job. `nodes` > 0 spreads the ranks
    /// over that many nodes (a run would pack them onto as few as hold them).
    Ranks { args: Vec<String>, ranks: usize, nodes: usize },
}

/// One job to start.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// The run id or task name (unique in the sweep); it appears in the job's command
    /// line, which is how a local job is told from a recycled pid.
    pub name: String,
    pub command: JobCommand,
    /// Non-empty: pin the job to these nodes (one entry per node).
    pub nodes: Vec<String>,
    /// Jobs that must end first. Only launchers whose cluster queues jobs
    /// (`queues_jobs`) take any; the others get them only once those ended.
    pub after: Vec<JobRecord>,
    pub dependency: Dependency,
}

impl JobSpec {
    pub fn ranks(&self) -> usize {
        match &self.command {
            JobCommand::Run { ranks, .. } | JobCommand::Ranks { ranks, .. } => *ranks,
            JobCommand::Task { .. } => 1,
        }
    }

    /// The run's attempt (0 for a task).
    pub fn attempt(&self) -> usize {
        match &self.command {
            JobCommand::Run { attempt, .. } => *attempt,
            JobCommand::Task { .. } | JobCommand::Ranks { .. } => 0,
        }
    }
}

/// The seam between the coordinator and a cluster.
pub trait Launcher {
    fn kind(&self) -> LauncherKind;

    /// Starts `jobs`, which are alike (same command kind, ranks, nodes and
    /// dependencies): one record per job, in order. Slurm submits alike runs as one job
    /// array.
    fn submit(&mut self, jobs: &[JobSpec]) -> Result<Vec<JobRecord>, LaunchError>;

    /// The state of every job, in order, asking the scheduler once for all of them.
    /// Records of either kind are answered (`poll_records`).
    fn poll(&mut self, jobs: &[&JobRecord]) -> Result<Vec<JobState>, LaunchError>;

    /// Stops jobs: a run checkpoints and exits 75 ("requeue me"), as on preemption.
    fn cancel(&mut self, jobs: &[&JobRecord]) -> Result<(), LaunchError>;

    /// Who cancelled each of these jobs (ended [`JobState::Cancelled`]), where the
    /// scheduler's accounting says: a uid, or None. Asked only when a job was cancelled
    /// by someone other than ras (rare), so it costs no poll cycle anything.
    fn cancelled_by(&mut self, jobs: &[&JobRecord]) -> Vec<Option<String>> {
        cancelled_by_records(jobs)
    }

    /// Whether the cluster queues jobs itself (Slurm): a job submitted with `after` waits
    /// for those jobs by itself, and jobs beyond the free slots wait their turn. If not,
    /// the coordinator waits before submitting.
    fn queues_jobs(&self) -> bool {
        false
    }
}

/// The launcher a cluster profile names (it writes nothing to the store: the coordinator
/// records what it submitted). `work_dir` is where jobs start (relative
/// dataset paths in configs mean the same there as here); logs go to `log_dir`.
pub fn for_profile(
    profile: &crate::config::ClusterProfile,
    exe: PathBuf,
    log_dir: PathBuf,
    work_dir: PathBuf,
) -> Box<dyn Launcher> {
    match profile.launcher {
        LauncherKind::Slurm => Box::new(Slurm::new(profile.clone(), exe, log_dir, work_dir)),
        LauncherKind::Local => Box::new(Local::new(exe, log_dir)),
    }
}

/// A launcher that starts nothing: it polls and cancels jobs from their records alone
/// (each [`JobRecord`] names the launcher kind that started it: a local pid or a Slurm
/// job id, asked with squeue and stopped with scancel). `ras status`, `ras report` and
/// `ras cancel` of a sweep named by its store use it, with no cluster profile.
pub struct Records;

impl Launcher for Records {
    fn kind(&self) -> LauncherKind {
        LauncherKind::Local
    }

    fn submit(&mut self, _jobs: &[JobSpec]) -> Result<Vec<JobRecord>, LaunchError> {
        Err(LaunchError::Invalid(
            "this command watches a sweep's jobs and starts none (use `ras sweep SWEEP_FILE`)".into(),
        ))
    }

    fn poll(&mut self, jobs: &[&JobRecord]) -> Result<Vec<JobState>, LaunchError> {
        Ok(poll_records(jobs))
    }

    fn cancel(&mut self, jobs: &[&JobRecord]) -> Result<(), LaunchError> {
        cancel_records(jobs)
    }
}

/// The state of every record, whichever launcher started it (a sweep started on one
/// profile can be watched from another): local records from /proc, all Slurm records in
/// one squeue call. Polling needs no launcher state, so both launchers' `poll` is this.
pub(crate) fn poll_records(jobs: &[&JobRecord]) -> Vec<JobState> {
    let slurm: Vec<&JobRecord> = jobs.iter().copied().filter(|j| j.kind == LauncherKind::Slurm).collect();
    let mut slurm_states = slurm::squeue_states(&slurm).into_iter();
    jobs.iter()
        .map(|j| match j.kind {
            LauncherKind::Local => local::poll_pid(j),
            LauncherKind::Slurm => slurm_states.next().expect("a state per Slurm record"),
        })
        .collect()
}

/// Who cancelled each record: Slurm records from `sacct` (one call), where the cluster
/// keeps accounting; None for the others.
pub(crate) fn cancelled_by_records(jobs: &[&JobRecord]) -> Vec<Option<String>> {
    let slurm: Vec<&JobRecord> = jobs.iter().copied().filter(|j| j.kind == LauncherKind::Slurm).collect();
    let mut by = slurm::sacct_cancelled_by(&slurm).into_iter();
    jobs.iter()
        .map(|j| match j.kind {
            LauncherKind::Slurm => by.next().flatten(),
            LauncherKind::Local => None,
        })
        .collect()
}

/// Stops every record, whichever launcher started it: local jobs by signal, all Slurm
/// jobs in one scancel call.
pub(crate) fn cancel_records(jobs: &[&JobRecord]) -> Result<(), LaunchError> {
    let (slurm, local): (Vec<&JobRecord>, Vec<&JobRecord>) = jobs.iter().partition(|j| j.kind == LauncherKind::Slurm);
    for j in local {
        local::terminate(j)?;
    }
    slurm::scancel(&slurm)
}

/// A bash word: quoted unless it is plainly safe.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
