//! Stopping a sweep, or some of its runs:
//!
//! - [`cancel`] (`ras cancel SWEEP`): every live job of the sweep is stopped and its
//!   coordinators launch nothing more, until a coordinator started afterwards resumes the
//!   sweep (the runs go on from their checkpoints). The jobs it stops are recorded as
//!   stopped (`stopped-jobs/`), so that their CANCELLED state in Slurm is not read as a
//!   person's cancel of the run.
//! - [`cancel_runs`] (`ras cancel SWEEP --run ID|LABEL`): runs stopped for good. The
//!   decision is stored first, one marker a run (`cancelled-runs/<run>.json`, a
//!   conditional create: the first cancel's marker stays), then the run's job is
//!   stopped. Every coordinator (this one, another, one started later) reads the markers:
//!   a cancelled run is never launched again, and a job of it that is still alive (one
//!   launched as the marker was written) is stopped by whichever coordinator sees it.
//! - [`retry_cancelled`] (`ras sweep --retry-cancelled`): removes the markers, so that the
//!   runs are launched again (from their checkpoints).

use super::paths::{SweepKey, SweepPaths};
use super::state::{CancelMark, FeatureState, Listing};
use super::status::{RunPhase, RunView};
use super::tracker::Tracker;
use super::{Manifest, SweepError};
use crate::launch::{JobRecord, Launcher};
use crate::store::Store;
use crate::{hostname, unix_now};
use std::collections::BTreeSet;

/// Cancels every live job of a sweep (one scheduler call) and stops its coordinators
/// from launching more. Returns how many jobs were cancelled.
pub fn cancel(store: &Store, manifest: &Manifest, launcher: &mut dyn Launcher) -> Result<usize, SweepError> {
    let mut tracker = Tracker::new(store, manifest)?;
    tracker.state.set_cancelled()?;
    let views = tracker.refresh(launcher)?;
    let runs: Vec<JobRecord> =
        views.iter().filter(|v| v.phase == RunPhase::Active).filter_map(|v| v.job.clone()).collect();
    // Recorded before they are stopped: a coordinator polling meanwhile must not read
    // their end as a person's cancel (the runs resume later).
    tracker.state.record_stopped(&runs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>())?;
    let mut jobs: Vec<JobRecord> = tracker
        .features
        .values()
        .filter_map(|f| match f {
            FeatureState::Running(j) => Some(j.clone()),
            _ => None,
        })
        .collect();
    jobs.extend(runs);
    let refs: Vec<&JobRecord> = jobs.iter().collect();
    launcher.cancel(&refs)?;
    Ok(jobs.len())
}

/// `ras cancel`: the whole sweep when `runs` is empty (`cancel`), else those runs for good
/// (`cancel_runs`); what to print.
pub fn cancel_command(
    store: &Store,
    manifest: &Manifest,
    launcher: &mut dyn Launcher,
    runs: &[String],
    reason: Option<&str>,
) -> Result<String, SweepError> {
    let name = &manifest.name;
    if runs.is_empty() {
        let n = cancel(store, manifest, launcher)?;
        return Ok(format!("sweep {name}: cancelled {n} active jobs; coordinators launch nothing more\n"));
    }
    let done = cancel_runs(store, manifest, launcher, runs, reason)?;
    let mut s: String = done.iter().map(RunCancel::render).collect();
    s += &format!("sweep {name}: no coordinator launches these runs again (`ras sweep --retry-cancelled` does)\n");
    Ok(s)
}

/// `ras sweep --retry-cancelled`: `retry_cancelled`, and what to print of it.
pub fn retry_cancelled_said(store: &Store, manifest: &Manifest) -> Result<String, SweepError> {
    let ids = retry_cancelled(store, manifest)?;
    let list = if ids.is_empty() { String::new() } else { format!(": {}", ids.join(", ")) };
    Ok(format!("sweep {}: {} cancelled runs to launch again{list}\n", manifest.name, ids.len()))
}

/// What `cancel_runs` did to one run.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// Marked cancelled now; the job it stopped, if it had a live one.
    Cancelled { stopped: Option<String> },
    /// Cancelled before (its first marker stays); a job of it still alive was stopped.
    AlreadyCancelled { mark: Option<CancelMark>, stopped: Option<String> },
    /// Complete already: nothing to stop, and it stays complete.
    Complete,
}

/// One run named by `ras cancel --run`, and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunCancel {
    pub id: String,
    pub label: String,
    pub outcome: CancelOutcome,
}

impl RunCancel {
    /// One line for `ras cancel`.
    pub fn render(&self) -> String {
        let what = match &self.outcome {
            CancelOutcome::Cancelled { stopped: Some(job) } => format!("cancelled, job {job} stopped"),
            CancelOutcome::Cancelled { stopped: None } => "cancelled (no job running)".to_string(),
            CancelOutcome::AlreadyCancelled { mark, stopped } => {
                let why = mark.as_ref().map(|m| format!(": {} ({})", m.reason, m.by)).unwrap_or_default();
                let job = stopped.as_ref().map(|j| format!("; job {j} stopped")).unwrap_or_default();
                format!("already cancelled{why}{job}")
            }
            CancelOutcome::Complete => "complete already: not cancelled".to_string(),
        };
        format!("run {} ({}): {what}\n", self.id, self.label)
    }
}

/// The runs `selectors` name, in manifest order, each once: a run id, a run's label (as
/// `ras status` shows it), or a variant (a label without its seed: every seed of it).
/// A selector that names no run is an error that lists the runs there are.
pub fn select_runs(manifest: &Manifest, selectors: &[String]) -> Result<Vec<usize>, SweepError> {
    let mut picked = BTreeSet::new();
    for sel in selectors {
        let sel_t = sel.trim();
        let by = |f: &dyn Fn(&super::PlannedRun) -> bool| -> Vec<usize> {
            manifest.runs.iter().enumerate().filter(|(_, r)| f(r)).map(|(i, _)| i).collect()
        };
        let mut found = by(&|r| r.id == sel_t);
        if found.is_empty() {
            found = by(&|r| r.label == sel_t);
        }
        if found.is_empty() {
            found = by(&|r| r.variant == sel_t);
        }
        if found.is_empty() {
            return Err(SweepError::UnknownRun {
                sweep: manifest.name.clone(),
                given: sel.clone(),
                known: known_runs(manifest),
            });
        }
        picked.extend(found);
    }
    Ok(picked.into_iter().collect())
}

/// The runs of a sweep, one `id  label` line each (the first 30; then how many more).
fn known_runs(manifest: &Manifest) -> String {
    const SHOWN: usize = 30;
    let mut s: String = manifest.runs.iter().take(SHOWN).map(|r| format!("\n  {}  {}", r.id, r.label)).collect();
    if manifest.runs.len() > SHOWN {
        s += &format!(
            "\n  ... and {} more (`ras status {}` lists them all)",
            manifest.runs.len() - SHOWN,
            manifest.name
        );
    }
    s
}

/// Who runs this: `user@host`.
pub(crate) fn who() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", hostname())
}

/// Cancels the runs `selectors` name (`select_runs`) for good: their markers first (one
/// batch of conditional creates), then their live jobs (one scheduler call). A complete
/// run is left as it is.
pub fn cancel_runs(
    store: &Store,
    manifest: &Manifest,
    launcher: &mut dyn Launcher,
    selectors: &[String],
    reason: Option<&str>,
) -> Result<Vec<RunCancel>, SweepError> {
    let picked = select_runs(manifest, selectors)?;
    let mut tracker = Tracker::new(store, manifest)?;
    let views = tracker.refresh(launcher)?;
    let reason = reason.map(str::to_string).unwrap_or_else(|| "ras cancel --run".to_string());
    let by = who();
    // A job is stopped if it holds slots: active, or cancelled before and still stopping.
    let live = |v: &RunView| v.job.clone().filter(|_| v.holds_slots());
    let to_mark: Vec<usize> = picked
        .iter()
        .copied()
        .filter(|&i| !matches!(views[i].phase, RunPhase::Complete | RunPhase::Cancelled))
        .collect();
    let marks: Vec<(&str, CancelMark)> = to_mark
        .iter()
        .map(|&i| {
            let mark = CancelMark {
                by: by.clone(),
                unix: unix_now(),
                reason: reason.clone(),
                job: live(&views[i]).map(|j| j.id),
            };
            (manifest.runs[i].id.as_str(), mark)
        })
        .collect();
    let created = tracker.state.mark_cancelled(&marks)?;
    let stop: Vec<JobRecord> = picked.iter().filter_map(|&i| live(&views[i])).collect();
    let refs: Vec<&JobRecord> = stop.iter().collect();
    launcher.cancel(&refs)?;
    // Markers another cancel wrote first (here or in between): what they say.
    let marks_now = tracker.state.cancel_marks()?;
    let out = picked
        .iter()
        .map(|&i| {
            let (run, view) = (&manifest.runs[i], &views[i]);
            let stopped = live(view).map(|j| j.id);
            let fresh = to_mark.iter().position(|&k| k == i).is_some_and(|k| created[k]);
            let outcome = match view.phase {
                RunPhase::Complete => CancelOutcome::Complete,
                _ if fresh => CancelOutcome::Cancelled { stopped },
                _ => CancelOutcome::AlreadyCancelled { mark: marks_now.get(&run.id).cloned(), stopped },
            };
            RunCancel { id: run.id.clone(), label: run.label.clone(), outcome }
        })
        .collect();
    Ok(out)
}

/// Undoes every cancel of single runs of the sweep (`ras sweep --retry-cancelled`): the
/// latest job of each run is recorded as stopped (its CANCELLED state in Slurm is then
/// no new cancel, and the attempt it ended uses none of the run's retries), then the
/// markers are removed. Returns the run ids that were cancelled.
pub fn retry_cancelled(store: &Store, manifest: &Manifest) -> Result<Vec<String>, SweepError> {
    let state = super::SweepState { store, manifest };
    let prefix = state.prefix();
    let listing = Listing::parse(&prefix, &store.list(&format!("{prefix}/"))?);
    let ids: Vec<String> = listing.cancelled_runs.iter().cloned().collect();
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let job_keys: Vec<String> = ids
        .iter()
        .filter_map(|id| {
            let latest = listing.claims.get(id)?.iter().rev().find(|&&a| listing.jobs.contains(&(id.clone(), a)))?;
            Some(state.paths().job(id, *latest))
        })
        .collect();
    let jobs: Vec<String> =
        store.get_json_many::<JobRecord, _>(&job_keys)?.into_iter().flatten().map(|j| j.id).collect();
    state.record_stopped(&jobs.iter().map(String::as_str).collect::<Vec<_>>())?;
    let marks: Vec<String> = ids.iter().map(|id| state.paths().cancelled_run(id)).collect();
    store.delete_many(&marks)?;
    Ok(ids)
}

/// The runs of sweep `name` cancelled for good (one LIST of its markers).
pub fn cancelled_runs(store: &Store, name: &str) -> Result<BTreeSet<String>, SweepError> {
    let paths = SweepPaths::new(name);
    let keys = store.list(&format!("{}/", paths.cancelled_runs()))?;
    Ok(Listing::parse(&paths.prefix(), &keys).cancelled_runs)
}

/// The runs cancelled for good in any sweep of the store (one LIST of `sweeps/`).
pub fn cancelled_in_store(store: &Store) -> Result<BTreeSet<String>, SweepError> {
    Ok(store
        .list(SweepPaths::ROOT)?
        .iter()
        .filter_map(|k| match SweepPaths::parse(k)? {
            (_, SweepKey::CancelledRun(run)) => Some(run),
            _ => None,
        })
        .collect())
}
