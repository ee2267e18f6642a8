//! The sweep's state in the store (`sweeps/<name>/`, layout in `sweep/mod.rs`), and the
//! [`Tracker`] that turns it plus the scheduler's answers into one [`RunView`] per run.
//!
//! The tracker reads only what can have changed since its last pass, so that a poll
//! cycle costs one LIST of the sweep's prefix, one scheduler call, and one GET per run
//! that is actually running or has just ended:
//! - run configs are parsed once (the manifest does not change under a coordinator);
//! - job records and claims are written once per attempt: each is read once, when the
//!   listing first shows it;
//! - a run's status is read on the first pass, then only while its job runs (not while
//!   it waits in the queue) and once when it ends; complete and failed runs are settled
//!   and never read again.

use super::status::{RunPhase, RunView};
use super::{Manifest, SweepError};
use crate::launch::{JobRecord, JobState, Launcher};
use crate::run::cost::{read_attempts, CostSummary};
use crate::run::{FinalMetrics, RunPaths, RunState, RunStatus};
use crate::store::{Store, StoreError};
use crate::{hostname, unix_now};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A claim older than this without a job record belongs to a coordinator that died
/// between claiming and launching: that attempt is over.
pub const CLAIM_GRACE_S: u64 = 60;

/// Who claimed an attempt (or a feature-cache job), and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    pub host: String,
    pub pid: u32,
    pub unix: u64,
}

/// The sweep's keys in the store and the writes a coordinator makes there.
pub struct SweepState<'a> {
    pub store: &'a Store,
    pub manifest: &'a Manifest,
}

impl<'a> SweepState<'a> {
    pub fn prefix(&self) -> String {
        format!("sweeps/{}", self.manifest.name)
    }

    /// `sweeps/<name>/manifest.json`.
    pub fn manifest_key(&self) -> String {
        format!("{}/manifest.json", self.prefix())
    }

    /// Writes the manifest (again if the sweep file changed since). A run keeps the cost
    /// estimate stored with it first: the plan made before it ran, which the report sets
    /// against the measured cost (a later plan would be made from its own measurements).
    pub fn publish_manifest(&self) -> Result<(), SweepError> {
        let key = self.manifest_key();
        let cur: Option<Manifest> = self.store.get_json(&key)?;
        let mut new = self.manifest.clone();
        if let Some(cur) = &cur {
            let planned: BTreeMap<&str, &super::estimate::Estimate> =
                cur.runs.iter().filter_map(|r| Some((r.id.as_str(), r.estimate.as_ref()?))).collect();
            for r in &mut new.runs {
                if let Some(e) = planned.get(r.id.as_str()) {
                    r.estimate = Some((*e).clone());
                }
            }
        }
        if cur.as_ref() != Some(&new) {
            self.store.put_json(&key, &new)?;
        }
        Ok(())
    }

    fn cancelled_key(&self) -> String {
        format!("{}/cancelled", self.prefix())
    }

    pub fn cancelled(&self) -> Result<bool, SweepError> {
        Ok(self.store.exists(&self.cancelled_key())?)
    }

    pub fn clear_cancelled(&self) -> Result<(), SweepError> {
        Ok(self.store.delete(&self.cancelled_key())?)
    }

    pub fn set_cancelled(&self) -> Result<(), SweepError> {
        Ok(self.store.put(&self.cancelled_key(), format!("{}\n", unix_now()))?)
    }

    fn claim_key_of(&self, id: &str, attempt: usize) -> String {
        format!("{}/claims/{id}.{attempt}", self.prefix())
    }

    fn job_key(&self, id: &str, attempt: usize) -> String {
        format!("{}/jobs/{id}.{attempt}.json", self.prefix())
    }

    /// Claims attempt `attempt` of a run; false if someone else already did.
    pub fn claim(&self, id: &str, attempt: usize) -> Result<bool, SweepError> {
        self.claim_key(&self.claim_key_of(id, attempt))
    }

    /// Creates `key` with this process's claim unless it exists (conditional put): true
    /// for the one caller that created it.
    fn claim_key(&self, key: &str) -> Result<bool, SweepError> {
        let c = Claim { host: hostname(), pid: std::process::id(), unix: unix_now() };
        match self.store.put_new(key, serde_json::to_vec(&c).expect("json")) {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub fn record_job(&self, id: &str, attempt: usize, job: &JobRecord) -> Result<(), SweepError> {
        Ok(self.store.put_json(&self.job_key(id, attempt), job)?)
    }

    /// Appends to the launch audit (a distinct key per submitting process).
    pub fn record_launch(&self, id: &str, attempt: usize, job: &JobRecord) -> Result<(), SweepError> {
        let key = format!("{}/launches/{id}.{attempt}.{}.{}", self.prefix(), hostname(), std::process::id());
        Ok(self.store.put_json(&key, job)?)
    }

    /// Short name of a feature-cache key (store keys and job names).
    pub fn feature_name(key: &str) -> String {
        format!("features-{}", &crate::store::sha256_hex(key.as_bytes())[..12])
    }

    /// `features/<name>.claim` (who submits the cache job) or `features/<name>.json` (its
    /// job record) of the cache named `name` (`feature_name`).
    fn feature_object(&self, name: &str, ext: &str) -> String {
        format!("{}/features/{name}.{ext}", self.prefix())
    }

    pub fn claim_features(&self, key: &str) -> Result<bool, SweepError> {
        self.claim_key(&self.feature_object(&Self::feature_name(key), "claim"))
    }

    pub fn record_features(&self, key: &str, job: &JobRecord) -> Result<(), SweepError> {
        Ok(self.store.put_json(&self.feature_object(&Self::feature_name(key), "json"), job)?)
    }

    /// Submissions so far (the audit's entries).
    pub fn launch_count(&self) -> Result<usize, SweepError> {
        Ok(self.store.list(&format!("{}/launches/", self.prefix()))?.len())
    }

    /// The run ids with at least one claimed attempt (one LIST of the claims).
    pub fn claimed_runs(&self) -> Result<BTreeSet<String>, SweepError> {
        let prefix = self.prefix();
        Ok(Listing::parse(&prefix, &self.store.list(&format!("{prefix}/claims/"))?).claims.into_keys().collect())
    }
}

/// Where the feature cache of one dataset + backbone stands.
#[derive(Debug, Clone)]
pub enum FeatureState {
    Unclaimed,
    /// Claimed, job not recorded yet (another coordinator is submitting it).
    Claimed,
    Running(JobRecord),
    /// Its job ended (the cache is filled, or the runs fill what is missing).
    Ready,
}

/// What one LIST of `sweeps/<name>/` shows.
#[derive(Debug, Default)]
struct Listing {
    /// Claimed attempts per run id.
    claims: BTreeMap<String, BTreeSet<usize>>,
    /// (run id, attempt) with a job record.
    jobs: BTreeSet<(String, usize)>,
    /// Feature-cache names with a claim / with a job record.
    feature_claims: BTreeSet<String>,
    feature_jobs: BTreeSet<String>,
    cancelled: bool,
}

/// `<run id>.<attempt>`, the name of a claim and of a job record, split.
fn run_attempt(name: &str) -> Option<(&str, usize)> {
    let (id, attempt) = name.rsplit_once('.')?;
    Some((id, attempt.parse().ok()?))
}

impl Listing {
    fn parse(prefix: &str, keys: &[String]) -> Self {
        let mut l = Listing::default();
        let p = format!("{prefix}/");
        for key in keys {
            let Some(rest) = key.strip_prefix(&p) else { continue };
            if rest == "cancelled" {
                l.cancelled = true;
            } else if let Some((id, a)) = rest.strip_prefix("claims/").and_then(run_attempt) {
                l.claims.entry(id.to_string()).or_default().insert(a);
            } else if let Some((id, a)) =
                rest.strip_prefix("jobs/").and_then(|k| k.strip_suffix(".json")).and_then(run_attempt)
            {
                l.jobs.insert((id.to_string(), a));
            } else if let Some(k) = rest.strip_prefix("features/") {
                if let Some(n) = k.strip_suffix(".claim") {
                    l.feature_claims.insert(n.to_string());
                } else if let Some(n) = k.strip_suffix(".json") {
                    l.feature_jobs.insert(n.to_string());
                }
            }
        }
        l
    }
}

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
}

impl<'a> Tracker<'a> {
    pub fn new(store: &'a Store, manifest: &'a Manifest) -> Self {
        // Parsed once: the manifest's configs do not change under a coordinator.
        let epochs = manifest.runs.iter().map(|r| r.config().train.epochs).collect();
        Self {
            state: SweepState { store, manifest },
            epochs,
            runs: manifest.runs.iter().map(|_| Tracked::default()).collect(),
            claims: BTreeMap::new(),
            jobs: BTreeMap::new(),
            first: true,
            features: BTreeMap::new(),
            cancelled: false,
        }
    }

    /// A claim's record, read once.
    fn claim_record(&mut self, key: &str) -> Result<Claim, SweepError> {
        if let Some(c) = self.claims.get(key) {
            return Ok(c.clone());
        }
        let c = self.state.store.get_json::<Claim>(key)?.unwrap_or(Claim { host: String::new(), pid: 0, unix: 0 });
        self.claims.insert(key.to_string(), c.clone());
        Ok(c)
    }

    /// A job record, read once.
    fn job_record(&mut self, key: &str) -> Result<Option<JobRecord>, SweepError> {
        if let Some(j) = self.jobs.get(key) {
            return Ok(Some(j.clone()));
        }
        let j: Option<JobRecord> = self.state.store.get_json(key)?;
        if let Some(j) = &j {
            self.jobs.insert(key.to_string(), j.clone());
        }
        Ok(j)
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
    /// manifest order).
    pub fn refresh(&mut self, launcher: &mut dyn Launcher) -> Result<Vec<RunView>, SweepError> {
        let prefix = self.state.prefix();
        let listing = Listing::parse(&prefix, &self.state.store.list(&format!("{prefix}/"))?);
        self.cancelled = listing.cancelled;
        let manifest = self.state.manifest;
        // The latest attempt's job of every run not settled, and the feature-cache jobs.
        let mut latest: Vec<Option<(usize, Option<JobRecord>)>> = vec![None; manifest.runs.len()];
        for (i, run) in manifest.runs.iter().enumerate() {
            if self.runs[i].settled.is_some() {
                continue;
            }
            if let Some(&a) = listing.claims.get(&run.id).and_then(|s| s.last()) {
                let job = if listing.jobs.contains(&(run.id.clone(), a)) {
                    self.job_record(&self.state.job_key(&run.id, a))?
                } else {
                    None
                };
                latest[i] = Some((a, job));
            }
        }
        let mut feature_records: Vec<(String, JobRecord)> = vec![];
        for name in &listing.feature_jobs {
            let key = self.state.feature_object(name, "json");
            if let Some(j) = self.job_record(&key)? {
                feature_records.push((name.clone(), j));
            }
        }
        // One scheduler call for all of them.
        let mut polled: Vec<&JobRecord> =
            latest.iter().filter_map(|l| l.as_ref().and_then(|(_, j)| j.as_ref())).collect();
        polled.extend(feature_records.iter().map(|(_, j)| j));
        let states = if polled.is_empty() { vec![] } else { launcher.poll(&polled)? };
        let mut states = states.into_iter();
        let run_states: Vec<Option<JobState>> = latest
            .iter()
            .map(|l| l.as_ref().and_then(|(_, j)| j.as_ref()).map(|_| states.next().expect("a state per job")))
            .collect();
        self.features.clear();
        for ((name, job), st) in feature_records.into_iter().zip(states) {
            let fs = if st.is_alive() { FeatureState::Running(job) } else { FeatureState::Ready };
            self.features.insert(name, fs);
        }
        for name in listing.feature_claims.difference(&listing.feature_jobs) {
            let c = self.claim_record(&self.state.feature_object(name, "claim"))?;
            // Claimed by a coordinator that died before submitting: the runs fill the
            // cache themselves (each computes only what is missing).
            let fs = if unix_now().saturating_sub(c.unix) >= CLAIM_GRACE_S {
                FeatureState::Ready
            } else {
                FeatureState::Claimed
            };
            self.features.insert(name.clone(), fs);
        }

        let mut out = Vec::with_capacity(manifest.runs.len());
        for (i, run) in manifest.runs.iter().enumerate() {
            if let Some(v) = &self.runs[i].settled {
                out.push(v.clone());
                continue;
            }
            let attempts = listing.claims.get(&run.id).map(|s| s.len()).unwrap_or(0);
            // Claims that became jobs: one whose coordinator died before submitting ran
            // nothing, and must not use up the run's retries.
            let submitted = listing
                .claims
                .get(&run.id)
                .map_or(0, |s| s.iter().filter(|&&a| listing.jobs.contains(&(run.id.clone(), a))).count());
            let job_state = run_states[i].clone();
            let attempt = latest[i].as_ref().map(|(a, _)| *a);
            // Read the status when it can have changed: first pass, job running (not
            // queued) or unknown, or the job ended since the last pass.
            let prev = self.runs[i].last_state.clone();
            let ended_now = matches!(job_state, Some(JobState::Ended))
                && prev.as_ref().map(|(a, s)| Some(*a) != attempt || *s != JobState::Ended).unwrap_or(true);
            let read = self.first
                || ended_now
                || matches!(job_state, Some(JobState::Active) | Some(JobState::Unknown(_)))
                || (attempt.is_some() && job_state.is_none() && prev.is_none());
            if read {
                self.runs[i].status = self.state.store.get_json(&RunPaths::new(run.id.as_str()).status())?;
                // Cost records are written as attempts end: read them on the first pass
                // and when a job ended since the last, never while one runs.
                let ended = self.runs[i].status.as_ref().is_some_and(|s| s.state != RunState::Running);
                if (self.first || ended_now) && ended {
                    let records = read_attempts(self.state.store, &RunPaths::new(run.id.as_str()))?;
                    self.runs[i].cost = (!records.is_empty()).then(|| CostSummary::of(&records));
                }
            }
            if let (Some(a), Some(s)) = (attempt, &job_state) {
                self.runs[i].last_state = Some((a, s.clone()));
            }
            let status = self.runs[i].status.clone();
            let mut view = RunView {
                id: run.id.clone(),
                label: run.label.clone(),
                phase: RunPhase::Pending,
                attempts,
                epoch: status.as_ref().map(|s| s.epoch).unwrap_or(0),
                epochs: self.epochs[i],
                ranks: run.ranks,
                job: latest[i].as_ref().and_then(|(_, j)| j.clone()),
                error: status.as_ref().and_then(|s| s.error.clone()),
                mean_iauroc: None,
                mean_pauroc: None,
                eta_s: None,
                unknown: None,
                cost: self.runs[i].cost.clone(),
                job_ended: !matches!(job_state, Some(JobState::Active)),
            };
            let complete = status.as_ref().map(|s| s.state == RunState::Complete).unwrap_or(false);
            view.phase = if complete {
                if let Some(fm) =
                    self.state.store.get_json::<FinalMetrics>(&RunPaths::new(run.id.as_str()).final_metrics())?
                {
                    view.mean_iauroc = Some(fm.metrics.mean.image_auroc);
                    view.mean_pauroc = Some(fm.metrics.mean.pixel_auroc);
                }
                RunPhase::Complete
            } else if let Some(a) = attempt {
                let alive = match &job_state {
                    None => {
                        let c = self.claim_record(&self.state.claim_key_of(&run.id, a))?;
                        unix_now().saturating_sub(c.unix) < CLAIM_GRACE_S
                    }
                    Some(JobState::Unknown(why)) => {
                        view.unknown = Some(why.clone());
                        true
                    }
                    Some(s) => s.is_alive(),
                };
                // The scheduler says the job ended, but the run is not complete: if its lease
                // is live, a process still trains it (a job the scheduler lost track of, or
                // a run started by hand): running, whatever the scheduler says. Read only for
                // runs that look ended, so the poll cycle's cost does not grow.
                let alive = alive
                    || crate::run::lease::live_holder(self.state.store, &RunPaths::new(run.id.as_str()))?.is_some();
                if let (true, Some(st)) = (alive, &status) {
                    let c = self.claim_record(&self.state.claim_key_of(&run.id, a))?;
                    if st.epoch > 0 && st.epoch < view.epochs && st.updated_unix > c.unix {
                        let per_epoch = (st.updated_unix - c.unix) as f64 / st.epoch as f64;
                        view.eta_s = Some((per_epoch * (view.epochs - st.epoch) as f64) as u64);
                    }
                }
                if alive {
                    RunPhase::Active
                } else if out_of_attempts(submitted, manifest.max_retries, status.as_ref()) {
                    if status.as_ref().map(|s| s.state == RunState::Running).unwrap_or(true) {
                        // The job died without recording why (killed from outside).
                        let reason = format!("job ended without recording an outcome after {attempts} attempts");
                        crate::run::mark_failed_unless_recorded(&run.config(), &reason)?;
                        view.error.get_or_insert(reason);
                    }
                    RunPhase::Failed
                } else {
                    RunPhase::Retry
                }
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

    /// The feature-cache state of a feature key (a run's `feature_key`).
    pub fn feature_state(&self, key: &str) -> FeatureState {
        self.features.get(&SweepState::feature_name(key)).cloned().unwrap_or(FeatureState::Unclaimed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_republished_manifest_keeps_the_first_plan() {
        use crate::sweep::estimate::{Estimate, Source};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let est = |wall_s: f64, source: Source| {
            Some(Estimate {
                source,
                features_s: 0.0,
                train_s: wall_s,
                eval_s: 0.0,
                other_s: 0.0,
                wall_s,
                rank_hours: wall_s / 3600.0,
            })
        };
        let run = |id: &str, estimate| super::super::PlannedRun {
            id: id.into(),
            label: id.into(),
            variant: id.into(),
            dataset: "d".into(),
            config_toml: String::new(),
            ranks: 1,
            train_images: 1,
            test_images: 1,
            cost: 1.0,
            feature_key: String::new(),
            estimate,
        };
        let manifest =
            |runs| Manifest { name: "s".into(), store: String::new(), max_retries: 0, note: None, paper: None, runs };
        let first = manifest(vec![run("a", est(10.0, Source::Flops { tflops: 1.0 }))]);
        SweepState { store: &store, manifest: &first }.publish_manifest().unwrap();
        // Planned again after "a" ran (now from its measurements), with a new run "b".
        let again =
            manifest(vec![run("a", est(99.0, Source::Measured { attempts: 1 })), run("b", est(5.0, Source::Bench))]);
        let state = SweepState { store: &store, manifest: &again };
        state.publish_manifest().unwrap();
        let stored: Manifest = store.get_json(&state.manifest_key()).unwrap().unwrap();
        assert_eq!(stored.runs[0].estimate, first.runs[0].estimate, "a's plan is the one made before it ran");
        assert_eq!(stored.runs[1].estimate, again.runs[1].estimate, "b is new: its plan is today's");
    }

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

    #[test]
    fn listing_sorts_keys_into_claims_jobs_features() {
        let keys: Vec<String> = [
            "sweeps/s/manifest.json",
            "sweeps/s/claims/run-a-1234.0",
            "sweeps/s/claims/run-a-1234.1",
            "sweeps/s/jobs/run-a-1234.0.json",
            "sweeps/s/launches/run-a-1234.0.host.12",
            "sweeps/s/features/features-abc.claim",
            "sweeps/s/features/features-abc.json",
            "sweeps/s/features/features-def.claim",
            "sweeps/s/cancelled",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let l = Listing::parse("sweeps/s", &keys);
        assert_eq!(l.claims["run-a-1234"].iter().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert!(l.jobs.contains(&("run-a-1234".to_string(), 0)) && l.jobs.len() == 1);
        assert_eq!(l.feature_claims.len(), 2);
        assert!(l.feature_jobs.contains("features-abc") && l.cancelled);
    }
}
