//! The sweep's state in the store (`sweeps/<name>/`, layout in `sweep/paths.rs`): the
//! writes a coordinator makes there, and the parse of one LIST of it ([`Listing`]),
//! which the [`super::Tracker`] (tracker.rs) reads pass after pass.

use super::paths::{SweepKey, SweepPaths};
use super::{Manifest, SweepError};
use crate::launch::JobRecord;
use crate::run::RunPaths;
use crate::store::Store;
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
    /// This attempt follows one that used none (see `RunView::free_retry`): not counted
    /// against max_retries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub free: bool,
}

/// Why a run of a sweep was cancelled for good (`sweeps/<name>/cancelled-runs/<run>.json`):
/// written once, before its job is stopped, by `ras cancel --run` or by a coordinator that
/// saw a person scancel the run's Slurm job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelMark {
    /// Who decided: `user@host` of `ras cancel --run`, or `slurm` for a scancel seen in Slurm.
    pub by: String,
    pub unix: u64,
    pub reason: String,
    /// The run's job when it was cancelled (None: it had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// The sweep's keys in the store and the writes a coordinator makes there.
pub struct SweepState<'a> {
    pub store: &'a Store,
    pub manifest: &'a Manifest,
}

impl<'a> SweepState<'a> {
    /// The sweep's keys.
    pub fn paths(&self) -> SweepPaths {
        SweepPaths::new(self.manifest.name.as_str())
    }

    pub fn prefix(&self) -> String {
        self.paths().prefix()
    }

    /// `sweeps/<name>/manifest.json`.
    pub fn manifest_key(&self) -> String {
        self.paths().manifest()
    }

    /// Writes the manifest (again if the sweep file changed since), stamped with this
    /// version and its format. A run keeps the cost estimate stored with it first: the
    /// plan made before it ran, which the report sets against the measured cost (a later
    /// plan would be made from its own measurements). A stored manifest this version
    /// cannot read (`Manifest::read`) is an error, not overwritten: the sweep belongs to
    /// another version of ras.
    pub fn publish_manifest(&self) -> Result<(), SweepError> {
        let key = self.manifest_key();
        let cur = Manifest::read(self.store, &self.manifest.name)?;
        let mut new = self.manifest.clone().stamped();
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
        self.paths().cancelled()
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

    /// Writes the markers of runs cancelled for good, each only if it does not exist yet
    /// (conditional creates, one batch): for each, whether this call created it (false: it
    /// was cancelled before, and its first marker stays).
    pub fn mark_cancelled(&self, marks: &[(&str, CancelMark)]) -> Result<Vec<bool>, SweepError> {
        let items =
            marks.iter().map(|(id, m)| (self.paths().cancelled_run(id), crate::store::json_bytes(m).into())).collect();
        Ok(self.store.put_new_many(items)?)
    }

    /// The markers of the sweep's runs cancelled for good, by run id (one LIST, one batch
    /// of reads).
    pub fn cancel_marks(&self) -> Result<BTreeMap<String, CancelMark>, SweepError> {
        let keys = self.store.list(&format!("{}/", self.paths().cancelled_runs()))?;
        let ids: Vec<String> = Listing::parse(&self.prefix(), &keys).cancelled_runs.into_iter().collect();
        let keys: Vec<String> = ids.iter().map(|id| self.paths().cancelled_run(id)).collect();
        let marks = self.store.get_json_many::<CancelMark, _>(&keys)?;
        Ok(ids.into_iter().zip(marks).filter_map(|(id, m)| Some((id, m?))).collect())
    }

    /// Records jobs ras stops itself to be resumed (or whose cancel is undone): their
    /// CANCELLED state is then not read as a person's cancel of the run (one batch).
    pub fn record_stopped(&self, job_ids: &[&str]) -> Result<(), SweepError> {
        let items = job_ids
            .iter()
            .map(|j| (self.paths().stopped_job(j), bytes::Bytes::from(format!("{}\n", unix_now()))))
            .collect();
        Ok(self.store.put_many(items)?)
    }

    pub(super) fn claim_key_of(&self, id: &str, attempt: usize) -> String {
        self.paths().claim(id, attempt)
    }

    pub(super) fn job_key(&self, id: &str, attempt: usize) -> String {
        self.paths().job(id, attempt)
    }

    /// Creates each of `keys` with this process's claim unless it exists (conditional
    /// puts, one batch): for each, whether this caller created it.
    /// Each (key, free) of `keys`: see [`Claim::free`].
    fn claim_keys(&self, keys: Vec<(String, bool)>) -> Result<Vec<bool>, SweepError> {
        let c = |free| Claim { host: hostname(), pid: std::process::id(), unix: unix_now(), free };
        let bytes = |free| bytes::Bytes::from(serde_json::to_vec(&c(free)).expect("json"));
        Ok(self.store.put_new_many(keys.into_iter().map(|(k, free)| (k, bytes(free))).collect())?)
    }

    /// Claims many attempts in one batch: for each (run id, attempt, free), whether this
    /// process got it (false: another coordinator did, and launches it).
    pub fn claim_many(&self, attempts: &[(&str, usize, bool)]) -> Result<Vec<bool>, SweepError> {
        self.claim_keys(attempts.iter().map(|(id, a, free)| (self.claim_key_of(id, *a), *free)).collect())
    }

    /// Records jobs just submitted, each (run id, attempt, job), for every launcher:
    /// first the launch audit (a distinct key per submitting process), then the record
    /// and what the job runs beside each run (`runs/<id>/jobs/`), and last the sweep's job
    /// records, which are what tells other coordinators the attempt is launched. Each
    /// step is one batch. A coordinator killed in between leaves a claim without a job
    /// record (relaunched after CLAIM_GRACE_S unless the run's lease is live), never a
    /// job record missing from the audit.
    pub fn record_jobs(&self, jobs: &[(&str, usize, &JobRecord)]) -> Result<(), SweepError> {
        let (host, pid) = (hostname(), std::process::id());
        let launches: Vec<(String, &JobRecord)> =
            jobs.iter().map(|(id, a, job)| (self.paths().launch(id, *a, &host, pid), *job)).collect();
        self.store.put_json_many(&launches)?;
        let mut beside: Vec<(String, bytes::Bytes)> = vec![];
        for (id, _, job) in jobs {
            let paths = RunPaths::new(*id);
            beside.push((paths.job_record(&job.id), crate::store::json_bytes(job).into()));
            if let Some(text) = &job.submitted {
                let ext = if job.kind == crate::config::LauncherKind::Slurm { "sbatch" } else { "sh" };
                beside.push((paths.job_script(&job.id, ext), text.clone().into_bytes().into()));
            }
        }
        self.store.put_many(beside)?;
        let records: Vec<(String, &JobRecord)> = jobs.iter().map(|(id, a, job)| (self.job_key(id, *a), *job)).collect();
        Ok(self.store.put_json_many(&records)?)
    }

    /// Short name of a feature-cache key (store keys and job names).
    pub fn feature_name(key: &str) -> String {
        format!("features-{}", &crate::store::sha256_hex(key.as_bytes())[..12])
    }

    /// `features/<name>.claim` (who submits the cache job) or `features/<name>.json` (its
    /// job record) of the cache named `name` (`feature_name`).
    pub(super) fn feature_object(&self, name: &str, ext: &str) -> String {
        match ext {
            "claim" => self.paths().feature_claim(name),
            _ => self.paths().feature_job(name),
        }
    }

    pub fn claim_features(&self, key: &str) -> Result<bool, SweepError> {
        Ok(self.claim_keys(vec![(self.feature_object(&Self::feature_name(key), "claim"), false)])?[0])
    }

    pub fn record_features(&self, key: &str, job: &JobRecord) -> Result<(), SweepError> {
        Ok(self.store.put_json(&self.feature_object(&Self::feature_name(key), "json"), job)?)
    }

    /// Submissions so far (the audit's entries).
    pub fn launch_count(&self) -> Result<usize, SweepError> {
        Ok(self.store.list(&format!("{}/", self.paths().launches()))?.len())
    }

    /// The run ids with at least one claimed attempt (one LIST of the claims).
    pub fn claimed_runs(&self) -> Result<BTreeSet<String>, SweepError> {
        let keys = self.store.list(&format!("{}/", self.paths().claims()))?;
        Ok(Listing::parse(&self.prefix(), &keys).claims.into_keys().collect())
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
pub(super) struct Listing {
    /// Claimed attempts per run id.
    pub(super) claims: BTreeMap<String, BTreeSet<usize>>,
    /// (run id, attempt) with a job record.
    pub(super) jobs: BTreeSet<(String, usize)>,
    /// Feature-cache names with a claim / with a job record.
    pub(super) feature_claims: BTreeSet<String>,
    pub(super) feature_jobs: BTreeSet<String>,
    pub(super) cancelled: bool,
    /// Runs cancelled for good (a marker each).
    pub(super) cancelled_runs: BTreeSet<String>,
    /// Jobs ras stopped itself (their CANCELLED state is no person's cancel).
    pub(super) stopped_jobs: BTreeSet<String>,
    /// (run id, rung) of every search decision.
    pub(super) decisions: BTreeSet<(String, usize)>,
}

impl Listing {
    /// The keys (of a LIST) of the sweep whose prefix is `prefix` (`SweepPaths::prefix`),
    /// read by `SweepPaths::parse`; keys of other sweeps are skipped.
    pub(super) fn parse(prefix: &str, keys: &[String]) -> Self {
        let mut l = Listing::default();
        for key in keys {
            let Some((paths, kind)) = SweepPaths::parse(key) else { continue };
            if paths.prefix() != prefix {
                continue;
            }
            match kind {
                SweepKey::Cancelled => l.cancelled = true,
                SweepKey::Claim { run, attempt } => {
                    l.claims.entry(run).or_default().insert(attempt);
                }
                SweepKey::Job { run, attempt } => {
                    l.jobs.insert((run, attempt));
                }
                SweepKey::FeatureClaim(name) => {
                    l.feature_claims.insert(name);
                }
                SweepKey::FeatureJob(name) => {
                    l.feature_jobs.insert(name);
                }
                SweepKey::CancelledRun(run) => {
                    l.cancelled_runs.insert(run);
                }
                SweepKey::StoppedJob(job) => {
                    l.stopped_jobs.insert(job);
                }
                SweepKey::Decision { run, rung } => {
                    l.decisions.insert((run, rung));
                }
                SweepKey::Manifest | SweepKey::Report | SweepKey::Launch(_) => {}
            }
        }
        l
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
                low_s: wall_s,
                high_s: wall_s,
                basis: String::new(),
                cache_job: None,
            })
        };
        let run = |id: &str, estimate| super::super::PlannedRun {
            id: id.into(),
            label: id.into(),
            variant: id.into(),
            dataset: "d".into(),
            // (Read back through `Manifest::read`, which parses every config.)
            config_toml: "name = \"a\"\n[dataset]\nroot = \"/nowhere\"\n".into(),
            ranks: 1,
            train_images: 1,
            test_images: 1,
            cost: 1.0,
            feature_key: String::new(),
            estimate,
            parsed: Default::default(),
        };
        let manifest = |runs| Manifest {
            format_version: crate::sweep::MANIFEST_FORMAT,
            written_by: None,
            name: "s".into(),
            store: String::new(),
            max_retries: 0,
            note: None,
            paper: None,
            search: None,
            runs,
        };
        let first = manifest(vec![run("a", est(10.0, Source::Flops { tflops: 1.0 }))]);
        SweepState { store: &store, manifest: &first }.publish_manifest().unwrap();
        // Planned again after "a" ran (now from its measurements), with a new run "b".
        let again = manifest(vec![
            run("a", est(99.0, Source::Measured { attempts: 1, flop_ratio: None })),
            run("b", est(5.0, Source::Bench { flop_ratio: None })),
        ]);
        let state = SweepState { store: &store, manifest: &again };
        state.publish_manifest().unwrap();
        let stored = Manifest::read(&store, "s").unwrap().unwrap();
        assert_eq!(stored.written_by.as_deref(), Some(env!("CARGO_PKG_VERSION")), "stamped by its writer");
        assert_eq!(stored.runs[0].estimate, first.runs[0].estimate, "a's plan is the one made before it ran");
        assert_eq!(stored.runs[1].estimate, again.runs[1].estimate, "b is new: its plan is today's");
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
            "sweeps/s/cancelled-runs/run-a-1234.json",
            "sweeps/s/stopped-jobs/17_2",
            // Another sweep whose name starts alike: not this one's.
            "sweeps/s2/claims/run-b-5678.0",
            "sweeps/s2/cancelled",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let l = Listing::parse("sweeps/s", &keys);
        assert_eq!(l.claims.len(), 1, "{:?}", l.claims);
        assert_eq!(l.claims["run-a-1234"].iter().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert!(l.jobs.contains(&("run-a-1234".to_string(), 0)) && l.jobs.len() == 1);
        assert_eq!(l.feature_claims.len(), 2);
        assert!(l.feature_jobs.contains("features-abc") && l.cancelled);
        assert_eq!(l.cancelled_runs.iter().collect::<Vec<_>>(), ["run-a-1234"]);
        assert_eq!(l.stopped_jobs.iter().collect::<Vec<_>>(), ["17_2"]);
    }
}
