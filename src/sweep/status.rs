//! Where each run of a sweep stands, and the table `ras status` and `ras sweep` print.

use crate::launch::JobRecord;
use crate::run::cost::CostSummary;
use serde::Serialize;

/// Where a run stands in the sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPhase {
    /// Never launched.
    Pending,
    /// An attempt is claimed and its job is queued or running.
    Active,
    /// The last attempt ended without completing; attempt `n` may be launched.
    Retry,
    Complete,
    /// Ended without completing after 1 + max_retries attempts (preemptions, which
    /// checkpoint first, do not use up attempts).
    Failed,
    /// Stopped for good (`ras cancel --run`, or its Slurm job scancel'ed by a person):
    /// never launched again, unless `ras sweep --retry-cancelled`. Its job may still be
    /// stopping (`job_ended` false) for a moment.
    Cancelled,
    /// A search run at a rung, waiting for its sweep's decision (promoted: it is launched
    /// again and resumes from the rung's checkpoint).
    Paused,
    /// A search run its sweep decided not to promote (or not to start: the budget was
    /// spent): over, at the rung it reached.
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub id: String,
    pub label: String,
    pub phase: RunPhase,
    /// Attempts claimed so far.
    pub attempts: usize,
    /// Rungs a search promoted the run from: each began an attempt that was no retry.
    pub promotions: usize,
    pub epoch: usize,
    pub epochs: usize,
    pub ranks: usize,
    pub job: Option<JobRecord>,
    pub error: Option<String>,
    pub mean_iauroc: Option<f64>,
    pub mean_pauroc: Option<f64>,
    /// Seconds to go, from this attempt's pace so far (active runs past epoch 0 only).
    pub eta_s: Option<u64>,
    /// Set while the scheduler cannot say whether the job lives (controller down): the
    /// run counts as active, so nothing launches it twice.
    pub unknown: Option<String>,
    /// The summed cost records of the run's ended attempts (None before the first ends).
    pub cost: Option<CostSummary>,
    /// The latest job's process has ended (or there is none, or the scheduler cannot be
    /// asked: waiting on an outage would hold up a finished sweep). A run's status says
    /// "complete" a moment before its process exits: until then its log is still being
    /// written and its view is not final.
    pub job_ended: bool,
    /// A run to retry whose latest attempt used none (preempted after a checkpoint, cut
    /// off by the store, stopped by ras): its next attempt's claim says so
    /// (`Claim::free`), and max_retries does not count it.
    pub free_retry: bool,
}

impl RunView {
    /// Complete, failed or cancelled for good: nothing will change it any more.
    pub fn is_settled(&self) -> bool {
        matches!(self.phase, RunPhase::Complete | RunPhase::Failed | RunPhase::Cancelled | RunPhase::Stopped)
    }

    /// Its job holds cluster slots: active, or cancelled with its job still stopping.
    pub fn holds_slots(&self) -> bool {
        self.phase == RunPhase::Active || (self.phase == RunPhase::Cancelled && !self.job_ended)
    }

    /// Settled, and its last job's process is gone: nothing of it will change any more,
    /// its log included.
    pub fn is_final(&self) -> bool {
        self.is_settled() && self.job_ended
    }
}

/// Whether a sweep's report can be written now: every run complete, cancelled or stopped
/// by its search, and at least one complete.
pub fn report_ready(views: &[RunView]) -> bool {
    views.iter().all(|v| matches!(v.phase, RunPhase::Complete | RunPhase::Cancelled | RunPhase::Stopped))
        && views.iter().any(|v| v.phase == RunPhase::Complete)
}

/// The total of the runs' measured cost (ended attempts only).
fn cost_line(views: &[RunView]) -> String {
    let mut total = CostSummary::default();
    views.iter().filter_map(|v| v.cost.as_ref()).for_each(|c| total.add(c));
    let gpu = if total.gpu_hours > 0.0 { format!(" ({:.4} GPU-hours)", total.gpu_hours) } else { String::new() };
    format!(
        "total cost: {:.4} rank-hours{gpu} over {} jobs (ended run attempts and feature-cache jobs)\n",
        total.rank_hours, total.attempts
    )
}

/// The runs that failed, one line each with their last error (`ras sweep` prints them on
/// stderr before it fails); empty when none did.
pub fn render_failed(views: &[RunView]) -> String {
    let failed = views.iter().filter(|v| v.phase == RunPhase::Failed);
    failed
        .map(|v| {
            let error = v.error.as_deref().unwrap_or("no error recorded");
            format!("run {} ({}) failed after {} attempts: {error}\n", v.id, v.label, v.attempts)
        })
        .collect()
}

/// The status table (`ras status`, and `ras sweep` as states change).
pub fn render_views(views: &[RunView]) -> String {
    let mut s = format!(
        "{:<22} {:<9} {:>9} {:>5} {:>8} {:>8} {:>8} {:>7} {:>9}  {}\n",
        "run", "state", "epoch", "ranks", "attempts", "I-AUROC", "P-AUROC", "ETA", "rank-h", "label"
    );
    let pct = |x: Option<f64>| x.map(|v| format!("{:.1}", 100.0 * v)).unwrap_or_else(|| "-".into());
    for v in views {
        let phase = if v.unknown.is_some() { "unknown".to_string() } else { format!("{:?}", v.phase).to_lowercase() };
        s += &format!(
            "{:<22} {:<9} {:>9} {:>5} {:>8} {:>8} {:>8} {:>7} {:>9}  {}\n",
            v.id,
            phase,
            format!("{}/{}", v.epoch, v.epochs),
            v.ranks,
            v.attempts,
            pct(v.mean_iauroc),
            pct(v.mean_pauroc),
            v.eta_s.map(|e| format!("{}m{:02}s", e / 60, e % 60)).unwrap_or_else(|| "-".into()),
            v.cost.as_ref().map(|c| format!("{:.4}", c.rank_hours)).unwrap_or_else(|| "-".into()),
            v.label
        );
    }
    s += &phase_counts(views, "");
    s.push('\n');
    for v in views.iter().filter(|v| v.phase == RunPhase::Cancelled) {
        let why = v.error.as_deref().unwrap_or("cancelled");
        s += &format!("run {} ({}) cancelled: {why}\n", v.id, v.label);
    }
    s += &cost_line(views);
    if let Some(why) = views.iter().find_map(|v| v.unknown.as_ref()) {
        let n = views.iter().filter(|v| v.unknown.is_some()).count();
        s += &format!("{n} runs in state unknown ({why}): treated as running, polled again with backoff\n");
    }
    s
}

/// `4 runs: 1 complete, 2 active{active_detail}, 1 pending, 0 to retry, 0 failed, 0
/// cancelled`: the counts by phase that `ras status` and `ras sweep`'s progress print.
pub fn phase_counts(views: &[RunView], active_detail: &str) -> String {
    let count = |p: RunPhase| views.iter().filter(|v| v.phase == p).count();
    // (A search's states only where there are any: a grid's line stays as it was.)
    let search = match (count(RunPhase::Paused), count(RunPhase::Stopped)) {
        (0, 0) => String::new(),
        (p, s) => format!(", {p} paused, {s} stopped by the search"),
    };
    format!(
        "{} runs: {} complete, {} active{active_detail}, {} pending, {} to retry, {} failed, {} cancelled{search}",
        views.len(),
        count(RunPhase::Complete),
        count(RunPhase::Active),
        count(RunPhase::Pending),
        count(RunPhase::Retry),
        count(RunPhase::Failed),
        count(RunPhase::Cancelled)
    )
}
