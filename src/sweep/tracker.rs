//! The [`Tracker`]: the sweep's state in the store (state.rs) plus the scheduler's
//! answers, turned into one [`RunView`] per run, pass after pass.
//!
//! It reads only what can have changed since its last pass, so that a poll cycle costs
//! one LIST of the sweep's prefix, one scheduler call, and one GET per run that is
//! actually running or has just ended:
//! - run configs are parsed once (the manifest does not change under a coordinator);
//! - job records and claims are written once per attempt: each is read once, when the
//!   listing first shows it;
//! - a run's status is read on the first pass, then only while its job runs (not while
//!   it waits in the queue) and once when it ends; complete and failed runs are settled
//!   and never read again.
//!
//! What a pass reads, it reads in batches (`Store::get_many` and friends): on a remote
//! store a request is a round trip of tens of ms, and the first pass of a 2,000-run
//! sweep reads 2,000 statuses.

use super::state::{CancelMark, Claim, FeatureState, Listing, SweepState, CLAIM_GRACE_S};
use super::status::{RunPhase, RunView};
use super::{Manifest, SweepError};
use crate::launch::{JobRecord, JobState, Launcher};
use crate::run::cost::{read_attempts_many, CostSummary};
use crate::run::lease::live_holders;
use crate::run::search::Decision;
use crate::run::{FinalMetrics, RunPaths, RunState, RunStatus};
use crate::store::Store;
use crate::unix_now;
use std::collections::BTreeMap;

/// Whether a run whose latest attempt ended (not complete) has used up its attempts:
/// `attempts` (1 + retries) past `max_retries`, unless the attempt ended in a state that
/// does not use one ([`RunState::uses_an_attempt`]: preempted after a checkpoint, or
/// stopped by a store outage), which is requeued whatever the count. An attempt that
/// recorded nothing (no status, or still "running": killed from outside, or its store
/// was down when it gave up) counts.
fn out_of_attempts(attempts: usize, max_retries: usize, status: Option<&RunStatus>) -> bool {
    attempts > max_retries && status.is_none_or(|s| s.state.uses_an_attempt())
}

/// What the tracker remembers of one run between passes.
#[derive(Default)]
struct Tracked {
    status: Option<RunStatus>,
    /// Job state of the latest attempt at the last pass (None: no job yet).
    last_state: Option<(usize, JobState)>,
    /// Complete, or failed for good: this view is final.
    settled: Option<RunView>,
    /// Summed cost records, read when an attempt has ended (not every pass).
    cost: Option<CostSummary>,
}

/// Views of a sweep's runs, kept up to date pass after pass (see the module doc).
pub struct Tracker<'a> {
    pub state: SweepState<'a>,
    epochs: Vec<usize>,
    runs: Vec<Tracked>,
    claims: BTreeMap<String, Claim>,
    jobs: BTreeMap<String, JobRecord>,
    first: bool,
    /// Feature-cache states of the last pass, by cache name.
    pub features: BTreeMap<String, FeatureState>,
    /// Whether `ras cancel` flagged the sweep (at the last pass).
    pub cancelled: bool,
    /// The markers of runs cancelled for good, by run id (each read once).
    marks: BTreeMap<String, CancelMark>,
    /// A search's decisions, by (run id, rung) (each read once: never rewritten).
    pub decisions: BTreeMap<(String, usize), Decision>,
    /// A search's rungs in epochs (empty for a grid).
    rungs: Vec<usize>,
}

impl<'a> Tracker<'a> {
    /// Err: a run config of the manifest does not parse (`Manifest::configs`).
    pub fn new(store: &'a Store, manifest: &'a Manifest) -> Result<Self, SweepError> {
        // Parsed once: the manifest's configs do not change under a coordinator.
        let epochs = manifest.configs()?.iter().map(|c| c.train.epochs).collect();
        Ok(Self {
            state: SweepState { store, manifest },
            epochs,
            runs: manifest.runs.iter().map(|_| Tracked::default()).collect(),
            claims: BTreeMap::new(),
            jobs: BTreeMap::new(),
            first: true,
            features: BTreeMap::new(),
            cancelled: false,
            marks: BTreeMap::new(),
            decisions: BTreeMap::new(),
            rungs: manifest
                .search
                .as_ref()
                .filter(|s| s.method == crate::config::search::SearchMethod::Asha)
                .map(|s| s.rungs.clone())
                .unwrap_or_default(),
        })
    }

    /// Reads the job records and claims of `keys` not read yet, in one batch each.
    fn fetch_records(&mut self, job_keys: Vec<String>, claim_keys: Vec<String>) -> Result<(), SweepError> {
        let job_keys: Vec<String> = job_keys.into_iter().filter(|k| !self.jobs.contains_key(k)).collect();
        let jobs: Vec<Option<JobRecord>> = self.state.store.get_json_many(&job_keys)?;
        for (k, j) in job_keys.into_iter().zip(jobs) {
            if let Some(j) = j {
                self.jobs.insert(k, j);
            }
        }
        let claim_keys: Vec<String> = claim_keys.into_iter().filter(|k| !self.claims.contains_key(k)).collect();
        let claims: Vec<Option<Claim>> = self.state.store.get_json_many(&claim_keys)?;
        for (k, c) in claim_keys.into_iter().zip(claims) {
            self.claims.insert(k, c.unwrap_or(Claim { host: String::new(), pid: 0, unix: 0, free: false }));
        }
        Ok(())
    }

    /// Remembers a job this coordinator just recorded (saves reading it back).
    pub fn note_job(&mut self, id: &str, attempt: usize, job: &JobRecord) {
        self.jobs.insert(self.state.job_key(id, attempt), job.clone());
    }

    /// Remembers a feature-cache job this coordinator just recorded.
    pub fn note_feature_job(&mut self, key: &str, job: &JobRecord) {
        let name = SweepState::feature_name(key);
        self.jobs.insert(self.state.feature_object(&name, "json"), job.clone());
    }

    /// One pass: list the sweep's prefix, ask the scheduler about every live job at once,
    /// read the status of runs that can have changed, and return a view of every run (in
    /// manifest order). Reads go out in batches, in this order: job records and claims
    /// first seen, statuses, then what the statuses call for (cost records, final
    /// metrics, claims, leases).
    pub fn refresh(&mut self, launcher: &mut dyn Launcher) -> Result<Vec<RunView>, SweepError> {
        let prefix = self.state.prefix();
        let listing = Listing::parse(&prefix, &self.state.store.list(&format!("{prefix}/"))?);
        self.cancelled = listing.cancelled;
        let new_decisions: Vec<(String, usize)> =
            listing.decisions.iter().filter(|d| !self.decisions.contains_key(*d)).cloned().collect();
        let keys: Vec<String> = new_decisions.iter().map(|(run, k)| self.state.paths().decision(run, *k)).collect();
        for (d, read) in new_decisions.into_iter().zip(self.state.store.get_json_many::<Decision, _>(&keys)?) {
            if let Some(read) = read {
                self.decisions.insert(d, read);
            }
        }
        let manifest = self.state.manifest;
        let n = manifest.runs.len();
        let paths: Vec<RunPaths> = manifest.runs.iter().map(|r| RunPaths::new(r.id.as_str())).collect();
        // The latest attempt of every run not settled, and its job record if it has one.
        let mut attempt: Vec<Option<usize>> = vec![None; n];
        let mut job_key: Vec<Option<String>> = vec![None; n];
        for (i, run) in manifest.runs.iter().enumerate() {
            if self.runs[i].settled.is_none() {
                if let Some(&a) = listing.claims.get(&run.id).and_then(|s| s.last()) {
                    attempt[i] = Some(a);
                    job_key[i] = listing.jobs.contains(&(run.id.clone(), a)).then(|| self.state.job_key(&run.id, a));
                }
            }
        }
        let feature_keys: Vec<(String, String)> =
            listing.feature_jobs.iter().map(|n| (n.clone(), self.state.feature_object(n, "json"))).collect();
        let claimed_features: Vec<(String, String)> = listing
            .feature_claims
            .difference(&listing.feature_jobs)
            .map(|n| (n.clone(), self.state.feature_object(n, "claim")))
            .collect();
        let mut wanted_jobs: Vec<String> = job_key.iter().flatten().cloned().collect();
        wanted_jobs.extend(feature_keys.iter().map(|(_, k)| k.clone()));
        self.fetch_records(wanted_jobs, claimed_features.iter().map(|(_, k)| k.clone()).collect())?;
        let jobs: Vec<Option<JobRecord>> =
            job_key.iter().map(|k| k.as_ref().and_then(|k| self.jobs.get(k).cloned())).collect();
        let feature_records: Vec<(String, JobRecord)> =
            feature_keys.iter().filter_map(|(n, k)| Some((n.clone(), self.jobs.get(k)?.clone()))).collect();

        // One scheduler call for all of them.
        let mut polled: Vec<&JobRecord> = jobs.iter().flatten().collect();
        polled.extend(feature_records.iter().map(|(_, j)| j));
        let states = if polled.is_empty() { vec![] } else { launcher.poll(&polled)? };
        let mut states = states.into_iter();
        let job_states: Vec<Option<JobState>> =
            jobs.iter().map(|j| j.as_ref().map(|_| states.next().expect("a state per job"))).collect();
        self.features.clear();
        for ((name, job), st) in feature_records.into_iter().zip(states) {
            let fs = if st.is_alive() { FeatureState::Running(job) } else { FeatureState::Ready };
            self.features.insert(name, fs);
        }
        for (name, key) in &claimed_features {
            // Claimed by a coordinator that died before submitting: the runs fill the
            // cache themselves (each computes only what is missing).
            let fs = if unix_now().saturating_sub(self.claims[key].unix) >= CLAIM_GRACE_S {
                FeatureState::Ready
            } else {
                FeatureState::Claimed
            };
            self.features.insert(name.clone(), fs);
        }

        // Statuses, where they can have changed: first pass, job running (not queued) or
        // unknown, or the job ended since the last pass.
        let mut ended_now = vec![false; n];
        let mut reads: Vec<usize> = vec![];
        let unsettled: Vec<usize> = (0..n).filter(|&i| self.runs[i].settled.is_none()).collect();
        for i in unsettled {
            let prev = &self.runs[i].last_state;
            ended_now[i] = job_states[i].as_ref().is_some_and(JobState::is_ended)
                && prev.as_ref().map(|(a, s)| Some(*a) != attempt[i] || !s.is_ended()).unwrap_or(true);
            if self.first
                || ended_now[i]
                || matches!(job_states[i], Some(JobState::Active) | Some(JobState::Unknown(_)))
                || (attempt[i].is_some() && job_states[i].is_none() && prev.is_none())
            {
                reads.push(i);
            }
            if let (Some(a), Some(s)) = (attempt[i], &job_states[i]) {
                self.runs[i].last_state = Some((a, s.clone()));
            }
        }
        let keys: Vec<String> = reads.iter().map(|&i| paths[i].status()).collect();
        for (&i, st) in reads.iter().zip(self.state.store.get_json_many::<RunStatus, _>(&keys)?) {
            self.runs[i].status = st;
        }

        // What the statuses call for. Cost records are written as attempts end: read on
        // the first pass and when a job ended since the last, never while one runs.
        let complete: Vec<bool> = (0..n)
            .map(|i| {
                self.runs[i].settled.is_none()
                    && self.runs[i].status.as_ref().is_some_and(|s| s.state == RunState::Complete)
            })
            .collect();
        let cost_reads: Vec<usize> = reads
            .iter()
            .copied()
            .filter(|&i| {
                (self.first || ended_now[i])
                    && self.runs[i].status.as_ref().is_some_and(|s| s.state != RunState::Running)
            })
            .collect();
        let cost_paths: Vec<RunPaths> = cost_reads.iter().map(|&i| paths[i].clone()).collect();
        for (&i, records) in cost_reads.iter().zip(read_attempts_many(self.state.store, &cost_paths)?) {
            self.runs[i].cost = (!records.is_empty()).then(|| CostSummary::of(&records));
        }
        let cancelled = self.note_cancels(&listing, &jobs, &job_states, &complete, launcher)?;
        let done: Vec<usize> = (0..n).filter(|&i| complete[i]).collect();
        let keys: Vec<String> = done.iter().map(|&i| paths[i].final_metrics()).collect();
        let mut finals: BTreeMap<usize, FinalMetrics> = BTreeMap::new();
        for (&i, fm) in done.iter().zip(self.state.store.get_json_many::<FinalMetrics, _>(&keys)?) {
            if let Some(fm) = fm {
                finals.insert(i, fm);
            }
        }
        // The claim of an attempt with no job record yet says whether it may still be
        // launched (CLAIM_GRACE_S); a running attempt's claim dates its start (ETA).
        let claim_keys: Vec<Option<String>> =
            (0..n).map(|i| attempt[i].map(|a| self.state.claim_key_of(&manifest.runs[i].id, a))).collect();
        let claim_key = |i: usize| claim_keys[i].clone();
        let wanted_claims: Vec<String> = (0..n)
            .filter(|&i| !complete[i] && attempt[i].is_some())
            .filter(|&i| match &job_states[i] {
                None => true,
                Some(s) => s.is_alive() && self.runs[i].status.is_some(),
            })
            .filter_map(claim_key)
            .collect();
        self.fetch_records(vec![], wanted_claims)?;
        let mut alive: Vec<bool> = (0..n)
            .map(|i| match (&job_states[i], claim_key(i)) {
                // (Read above for every run not complete; a complete one's is not needed.)
                (None, Some(k)) => {
                    self.claims.get(&k).is_some_and(|c| unix_now().saturating_sub(c.unix) < CLAIM_GRACE_S)
                }
                (Some(s), _) => s.is_alive(),
                (None, None) => false,
            })
            .collect();
        // The scheduler says the job ended, but the run is not complete: if its lease is
        // live, a process still trains it (a job the scheduler lost track of, or a run
        // started by hand): running, whatever the scheduler says. Read only for runs that
        // look ended, so the poll cycle's cost does not grow.
        let lease_reads: Vec<usize> = (0..n).filter(|&i| !complete[i] && attempt[i].is_some() && !alive[i]).collect();
        let lease_paths: Vec<RunPaths> = lease_reads.iter().map(|&i| paths[i].clone()).collect();
        for (&i, holder) in lease_reads.iter().zip(live_holders(self.state.store, &lease_paths)?) {
            alive[i] = holder.is_some();
        }
        let eta_claims: Vec<String> = lease_reads
            .iter()
            .filter(|&&i| alive[i] && self.runs[i].status.is_some())
            .filter_map(|&i| claim_key(i))
            .collect();
        self.fetch_records(vec![], eta_claims)?;
        // Launched attempts (claims with a job record) of each run, and, for a run that
        // has had more of them than its retries allow, their claims: which attempts
        // followed one that used none (`Claim::free`) is read only then (rarely).
        let launched: Vec<Vec<usize>> = manifest
            .runs
            .iter()
            .map(|run| {
                let claims = listing.claims.get(&run.id).into_iter().flatten();
                claims.copied().filter(|&a| listing.jobs.contains(&(run.id.clone(), a))).collect()
            })
            .collect();
        let over: Vec<String> = (0..n)
            .filter(|&i| !complete[i] && !alive[i] && self.runs[i].settled.is_none())
            .filter(|&i| launched[i].len() > manifest.max_retries)
            .flat_map(|i| launched[i].iter().map(move |&a| (i, a)))
            .map(|(i, a)| self.state.claim_key_of(&manifest.runs[i].id, a))
            .collect();
        self.fetch_records(vec![], over)?;

        let mut out = Vec::with_capacity(n);
        for (i, run) in manifest.runs.iter().enumerate() {
            if let Some(v) = &self.runs[i].settled {
                out.push(v.clone());
                continue;
            }
            let attempts = listing.claims.get(&run.id).map(|s| s.len()).unwrap_or(0);
            // Claims that became jobs: one whose coordinator died before submitting ran
            // nothing, and must not use up the run's retries.
            let submitted = launched[i].len();
            let status = self.runs[i].status.clone();
            // Attempts that ended at a rung the search then promoted the run from were no
            // failures: they do not count against max_retries. Nor do those that ended
            // without using one (preempted, cut off by the store, stopped by ras): the
            // attempt launched after each says so in its claim.
            let promoted = self.decisions.range((run.id.clone(), 0)..).take_while(|((r, _), _)| *r == run.id);
            let promotions = promoted.filter(|(_, d)| d.promoted).count();
            let free = launched[i]
                .iter()
                .filter(|&&a| self.claims.get(&self.state.claim_key_of(&run.id, a)).is_some_and(|c| c.free))
                .count();
            let submitted = submitted.saturating_sub(promotions).saturating_sub(free);
            let mut view = RunView {
                id: run.id.clone(),
                label: run.label.clone(),
                phase: RunPhase::Pending,
                attempts,
                promotions,
                epoch: status.as_ref().map(|s| s.epoch).unwrap_or(0),
                epochs: self.epochs[i],
                ranks: run.ranks,
                job: jobs[i].clone(),
                error: status.as_ref().and_then(|s| s.error.clone()),
                mean_iauroc: None,
                mean_pauroc: None,
                eta_s: None,
                unknown: None,
                cost: self.runs[i].cost.clone(),
                job_ended: !matches!(job_states[i], Some(JobState::Active)),
                free_retry: false,
            };
            view.phase = if complete[i] {
                if let Some(fm) = finals.get(&i) {
                    view.mean_iauroc = Some(fm.metrics.mean.image_auroc);
                    view.mean_pauroc = Some(fm.metrics.mean.pixel_auroc);
                }
                RunPhase::Complete
            } else if cancelled.contains(&run.id) {
                // (Its job may still be stopping: not final until it has.)
                view.job_ended = !matches!(job_states[i], Some(JobState::Queued | JobState::Active));
                view.error = self.marks.get(&run.id).map(|m| format!("{} ({})", m.reason, m.by));
                RunPhase::Cancelled
            } else if let Some(key) = claim_key(i) {
                if let Some(JobState::Unknown(why)) = &job_states[i] {
                    view.unknown = Some(why.clone());
                }
                if let (true, Some(st), Some(c)) = (alive[i], &status, self.claims.get(&key)) {
                    if st.epoch > 0 && st.epoch < view.epochs && st.updated_unix > c.unix {
                        let per_epoch = (st.updated_unix - c.unix) as f64 / st.epoch as f64;
                        view.eta_s = Some((per_epoch * (view.epochs - st.epoch) as f64) as u64);
                    }
                }
                // A job ras stopped to be resumed (`ras cancel` of the sweep, or a cancel
                // that --retry-cancelled undid) used no attempt.
                let stopped = jobs[i].as_ref().is_some_and(|j| listing.stopped_jobs.contains(&j.id));
                let paused_at = status.as_ref().filter(|s| s.state == RunState::Paused).map(|s| s.epoch);
                let decision = paused_at
                    .and_then(|e| self.rungs.iter().position(|&r| r == e))
                    .and_then(|k| self.decisions.get(&(run.id.clone(), k)));
                if alive[i] {
                    RunPhase::Active
                } else if let Some(d) = decision {
                    if d.promoted {
                        RunPhase::Retry
                    } else {
                        view.error = Some(d.why.clone());
                        RunPhase::Stopped
                    }
                } else if paused_at.is_some() {
                    RunPhase::Paused
                } else if !stopped && out_of_attempts(submitted, manifest.max_retries, status.as_ref()) {
                    if status.as_ref().map(|s| s.state == RunState::Running).unwrap_or(true) {
                        // The job died without recording why (killed from outside).
                        let reason = format!("job ended without recording an outcome after {attempts} attempts");
                        crate::run::mark_failed_unless_recorded(&run.config()?, &reason)?;
                        view.error.get_or_insert(reason);
                    }
                    RunPhase::Failed
                } else {
                    view.free_retry = stopped || status.as_ref().is_some_and(|s| !s.state.uses_an_attempt());
                    RunPhase::Retry
                }
            } else if let Some(d) = self.decisions.get(&(run.id.clone(), 0)).filter(|d| d.value.is_none()) {
                // Never started: the search stopped it first (its budget was spent).
                view.error = Some(d.why.clone());
                RunPhase::Stopped
            } else {
                RunPhase::Pending
            };
            if view.is_final() {
                self.runs[i].settled = Some(view.clone());
            }
            out.push(view);
        }
        self.first = false;
        Ok(out)
    }

    /// The runs cancelled for good as of this pass. A run whose latest job the scheduler
    /// says was cancelled (scancel) by someone other than ras (not one of the sweep's
    /// stopped jobs), and that is not complete, is marked cancelled here, as `ras cancel
    /// --run` would have (a preemption does not read as cancelled: it requeues). Markers
    /// not read yet are read, in one batch.
    fn note_cancels(
        &mut self,
        listing: &Listing,
        jobs: &[Option<JobRecord>],
        job_states: &[Option<JobState>],
        complete: &[bool],
        launcher: &mut dyn Launcher,
    ) -> Result<std::collections::BTreeSet<String>, SweepError> {
        let mut cancelled = listing.cancelled_runs.clone();
        let by_hand: Vec<(&str, &JobRecord)> = (0..jobs.len())
            .filter(|&i| !complete[i] && self.runs[i].settled.is_none())
            .filter(|&i| matches!(job_states[i], Some(JobState::Cancelled)))
            .filter_map(|i| Some((self.state.manifest.runs[i].id.as_str(), jobs[i].as_ref()?)))
            .filter(|(id, job)| !cancelled.contains(*id) && !listing.stopped_jobs.contains(&job.id))
            .collect();
        if !by_hand.is_empty() {
            let records: Vec<&JobRecord> = by_hand.iter().map(|(_, j)| *j).collect();
            let who = launcher.cancelled_by(&records);
            let marks: Vec<(&str, CancelMark)> = by_hand
                .iter()
                .zip(who)
                .map(|((id, job), who)| {
                    let reason = match who {
                        Some(uid) => format!("cancelled in Slurm by uid {uid} (job {})", job.id),
                        None => format!("cancelled in Slurm (job {} scancel'ed, not by ras)", job.id),
                    };
                    tracing::info!(run = id, job = job.id, reason, "run cancelled in the scheduler: not relaunched");
                    (*id, CancelMark { by: "slurm".into(), unix: unix_now(), reason, job: Some(job.id.clone()) })
                })
                .collect();
            self.state.mark_cancelled(&marks)?;
            cancelled.extend(marks.iter().map(|(id, _)| id.to_string()));
        }
        let ids: Vec<&String> = cancelled.iter().filter(|id| !self.marks.contains_key(*id)).collect();
        let keys: Vec<String> = ids.iter().map(|id| self.state.paths().cancelled_run(id)).collect();
        for (id, mark) in ids.into_iter().zip(self.state.store.get_json_many::<CancelMark, _>(&keys)?) {
            if let Some(m) = mark {
                self.marks.insert(id.clone(), m);
            }
        }
        Ok(cancelled)
    }

    /// The feature-cache state of a feature key (a run's `feature_key`).
    pub fn feature_state(&self, key: &str) -> FeatureState {
        self.features.get(&SweepState::feature_name(key)).cloned().unwrap_or(FeatureState::Unclaimed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preempted_and_infra_attempts_are_requeued_without_using_one() {
        let st = |state: RunState| RunStatus { state, run_id: "r".into(), epoch: 1, updated_unix: 0, error: None };
        // Within the retries, everything is retried.
        for s in [RunState::Running, RunState::Failed, RunState::Preempted, RunState::Infra] {
            assert!(!out_of_attempts(1, 2, Some(&st(s))));
        }
        // Past them: a failure, or an attempt that recorded nothing, ends the run...
        assert!(out_of_attempts(3, 2, Some(&st(RunState::Failed))));
        assert!(out_of_attempts(3, 2, Some(&st(RunState::Running))));
        assert!(out_of_attempts(3, 2, None));
        assert!(out_of_attempts(1, 0, Some(&st(RunState::Failed))));
        // ...but a checkpointed preemption or a store outage is requeued whatever the count.
        assert!(!out_of_attempts(3, 2, Some(&st(RunState::Preempted))));
        assert!(!out_of_attempts(50, 0, Some(&st(RunState::Infra))));
        assert!(!RunState::Infra.uses_an_attempt() && RunState::Failed.uses_an_attempt());
        // The state as status.json spells it.
        assert_eq!(serde_json::to_string(&RunState::Infra).unwrap(), "\"infra\"");
    }
}
