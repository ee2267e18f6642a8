//! [`Memory`]: a launcher whose cluster lives in memory, for tests of the coordinator
//! that run in milliseconds instead of minutes of real processes or a real Slurm.
//!
//! What it simulates:
//! - a scheduler: every `submit` call is logged (a call with several specs is one job
//!   array, ids `mem-<n>_<task>`, as Slurm's `<array>_<task>`); jobs are polled and
//!   cancelled from its table;
//! - with `queueing(true)` a Slurm-like cluster ([`Launcher::queues_jobs`]): jobs wait
//!   in a queue for their `after` jobs (afterok: a job behind one that did not succeed
//!   never starts, as with Slurm's kill_invalid_depend); without, a Local-like one that
//!   refuses dependencies and starts every job at once;
//! - `ras train` itself: a run's job reads the config file it was given, writes status
//!   "running" when it starts, and when it ends writes what a real attempt leaves in the
//!   run's store ([`Outcome`], decided by the test's script); a cancelled running run
//!   checkpoints and writes "preempted", as on SIGTERM; a Slurm-like cluster then
//!   reports the job as cancelled (Slurm's CANCELLED). Tasks (feature caches, reports)
//!   write nothing and succeed.
//!
//! Time is ticks: every `poll` call is one tick of the whole cluster (or only
//! [`Memory::step`], with `auto(false)`). A tick starts queued jobs whose dependencies
//! ended and moves each running job one tick closer to its end (`ticks_to_end`).
//!
//! The handle is cheap to clone and every clone sees one cluster, so two coordinators
//! (two threads) can share it. Its records say `kind: local` (the variant a test's
//! records would be polled by if another launcher read them; the ids are not pids, so
//! they read as ended there): only this launcher answers for them.

use super::{Dependency, JobCommand, JobRecord, JobSpec, JobState, LaunchError, Launcher};
use crate::config::{LauncherKind, RunConfig, Setting};
use crate::eval::{ClassMetrics, MetricsTable};
use crate::features::CacheStats;
use crate::run::{FinalMetrics, RunPaths, RunState, RunStatus};
use crate::store::Store;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// How an attempt of a run ends: what `ras train` leaves in the store, and its exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0: final_metrics.json, then status "complete".
    Complete,
    /// Exit 1: status "failed" with an error.
    Failed,
    /// Exit 75: checkpointed and stopped, status "preempted".
    Preempted,
    /// Exit 74: the store stayed unreachable, status "infra".
    Infra,
    /// Killed with no chance to write (kill -9, node lost): the status stays "running".
    Vanished,
}

/// The image and pixel AUROC of every run that completes (its final metrics).
pub const IMAGE_AUROC: f64 = 0.9;
pub const PIXEL_AUROC: f64 = 0.8;

/// A test's script: the outcome of attempt `attempt` of run `run_id`. Called with the
/// cluster locked: it must not call the [`Memory`] handle.
pub type Script = dyn Fn(&str, usize) -> Outcome + Send + Sync;

/// Where a job of the cluster stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Queued,
    Active,
    Ended,
}

/// One job, as a test sees it ([`Memory::jobs`]).
#[derive(Debug, Clone)]
pub struct MemoryJob {
    pub record: JobRecord,
    pub spec: JobSpec,
    pub phase: Phase,
    /// It ran (a queued job cancelled, or behind an afterok dependency that failed, never does).
    pub started: bool,
    pub cancelled: bool,
    /// How it ended: runs only (a cancelled running run: Preempted).
    pub outcome: Option<Outcome>,
    /// Ended well: a complete run, or a task that ran.
    pub succeeded: bool,
    /// Ticks it still runs.
    left: usize,
    /// A run's id and store, from the config file its job was given.
    run: Option<(String, String, usize, Setting)>,
}

/// One `submit` call: its specs (several: a job array) and the records it returned.
#[derive(Debug, Clone)]
pub struct Submission {
    pub specs: Vec<JobSpec>,
    pub records: Vec<JobRecord>,
}

struct Cluster {
    script: Arc<Script>,
    queues: bool,
    ticks_to_end: usize,
    auto: bool,
    unreachable: bool,
    refuse: usize,
    log_dir: Option<PathBuf>,
    jobs: Vec<MemoryJob>,
    submissions: Vec<Submission>,
    stores: BTreeMap<String, Store>,
    peak_ranks: usize,
}

/// The in-memory cluster (see the module doc). Clones share it.
#[derive(Clone)]
pub struct Memory {
    cluster: Arc<Mutex<Cluster>>,
}

impl Memory {
    /// A Local-like cluster (no queue) whose jobs run one tick, every poll a tick, and
    /// whose runs end as `script` says.
    pub fn new(script: impl Fn(&str, usize) -> Outcome + Send + Sync + 'static) -> Self {
        let cluster = Cluster {
            script: Arc::new(script),
            queues: false,
            ticks_to_end: 1,
            auto: true,
            unreachable: false,
            refuse: 0,
            log_dir: None,
            jobs: vec![],
            submissions: vec![],
            stores: BTreeMap::new(),
            peak_ranks: 0,
        };
        Self { cluster: Arc::new(Mutex::new(cluster)) }
    }

    /// Every attempt of every run completes.
    pub fn completing() -> Self {
        Self::new(|_, _| Outcome::Complete)
    }

    /// Slurm-like (true: jobs queue, dependencies are taken) or Local-like.
    pub fn queueing(self, queues: bool) -> Self {
        self.lock().queues = queues;
        self
    }

    /// How many ticks a job runs once started (at least 1).
    pub fn ticks_to_end(self, ticks: usize) -> Self {
        self.lock().ticks_to_end = ticks.max(1);
        self
    }

    /// Each job writes `<dir>/<job id>.log` when it ends (what the coordinator keeps).
    pub fn logs_in(self, dir: PathBuf) -> Self {
        self.lock().log_dir = Some(dir);
        self
    }

    /// Whether every `poll` is a tick (the default); off, time moves only by `step`.
    pub fn auto(&self, on: bool) {
        self.lock().auto = on;
    }

    /// While set, `poll` answers Unknown for every job (a controller that does not
    /// answer); the jobs go on meanwhile.
    pub fn set_unreachable(&self, down: bool) {
        self.lock().unreachable = down;
    }

    /// The next `calls` submit calls fail (an sbatch refused), logging nothing.
    pub fn refuse_submits(&self, calls: usize) {
        self.lock().refuse = calls;
    }

    /// One tick of the cluster.
    pub fn step(&self) -> Result<(), LaunchError> {
        self.lock().tick()
    }

    /// Ticks until no job is queued or running (at most 10,000 ticks).
    pub fn finish_all(&self) -> Result<(), LaunchError> {
        let mut c = self.lock();
        for _ in 0..10_000 {
            if c.jobs.iter().all(|j| j.phase == Phase::Ended) {
                return Ok(());
            }
            c.tick()?;
        }
        Err(LaunchError::Invalid("memory cluster: jobs still queued after 10,000 ticks".into()))
    }

    /// Every submit call so far, in order.
    pub fn submissions(&self) -> Vec<Submission> {
        self.lock().submissions.clone()
    }

    /// Every job so far, in submission order.
    pub fn jobs(&self) -> Vec<MemoryJob> {
        self.lock().jobs.clone()
    }

    /// How many jobs named `name` (a run id, or a task's name) were submitted.
    pub fn submitted(&self, name: &str) -> usize {
        self.lock().jobs.iter().filter(|j| j.spec.name == name).count()
    }

    /// The most ranks that ever ran at once.
    pub fn peak_ranks(&self) -> usize {
        self.lock().peak_ranks
    }

    fn lock(&self) -> MutexGuard<'_, Cluster> {
        // A test thread that panicked holding it leaves the cluster as it was: still
        // worth asserting on.
        self.cluster.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Cluster {
    fn tick(&mut self) -> Result<(), LaunchError> {
        for i in 0..self.jobs.len() {
            match self.jobs[i].phase {
                Phase::Queued => {
                    let deps: Vec<Option<&MemoryJob>> = self.jobs[i]
                        .spec
                        .after
                        .iter()
                        .map(|r| self.jobs.iter().find(|j| j.record.id == r.id))
                        .collect();
                    // (A job this cluster does not know has ended well, long ago.)
                    if deps.iter().flatten().any(|d| d.phase != Phase::Ended) {
                        continue;
                    }
                    let ok = deps.iter().flatten().all(|d| d.succeeded);
                    if self.jobs[i].spec.dependency == Dependency::AfterOk && !ok {
                        self.jobs[i].phase = Phase::Ended;
                    } else {
                        self.start(i)?;
                    }
                }
                Phase::Active => {
                    self.jobs[i].left = self.jobs[i].left.saturating_sub(1);
                    if self.jobs[i].left == 0 {
                        self.finish(i, None)?;
                    }
                }
                Phase::Ended => {}
            }
        }
        self.note_peak();
        Ok(())
    }

    fn note_peak(&mut self) {
        let ranks = self.jobs.iter().filter(|j| j.phase == Phase::Active).map(|j| j.spec.ranks()).sum();
        self.peak_ranks = self.peak_ranks.max(ranks);
    }

    fn store(&mut self, url: &str) -> Result<Store, LaunchError> {
        if let Some(s) = self.stores.get(url) {
            return Ok(s.clone());
        }
        let s = Store::open(url)?;
        self.stores.insert(url.to_string(), s.clone());
        Ok(s)
    }

    /// As `ras train` starts: status "running" at epoch 0.
    fn start(&mut self, i: usize) -> Result<(), LaunchError> {
        let job = &mut self.jobs[i];
        job.phase = Phase::Active;
        job.started = true;
        job.left = self.ticks_to_end;
        if let Some((id, url, _, _)) = job.run.clone() {
            let store = self.store(&url)?;
            write_status(&store, &id, RunState::Running, 0, None)?;
        }
        Ok(())
    }

    /// The job ends: a run as its script says (or as `cancelled` says), writing what
    /// `ras train` writes for that outcome.
    fn finish(&mut self, i: usize, cancelled: Option<Outcome>) -> Result<(), LaunchError> {
        let attempt = self.jobs[i].spec.attempt();
        let run = self.jobs[i].run.clone();
        let outcome = match (&run, cancelled) {
            (None, _) => None,
            (Some(_), Some(o)) => Some(o),
            (Some((id, ..)), None) => Some((self.script)(id, attempt)),
        };
        if let (Some((id, url, epochs, setting)), Some(o)) = (&run, outcome) {
            let store = self.store(url)?;
            match o {
                Outcome::Complete => {
                    store.put_json(&RunPaths::new(id.as_str()).final_metrics(), &final_metrics(*epochs, *setting))?;
                    write_status(&store, id, RunState::Complete, *epochs, None)?;
                }
                Outcome::Failed => {
                    let error = format!("scripted failure of attempt {attempt}");
                    write_status(&store, id, RunState::Failed, 0, Some(error))?;
                }
                Outcome::Preempted => write_status(&store, id, RunState::Preempted, 0, None)?,
                Outcome::Infra => {
                    let error = "store unreachable past its retry budget (scripted)".to_string();
                    write_status(&store, id, RunState::Infra, 0, Some(error))?;
                }
                Outcome::Vanished => {}
            }
        }
        let job = &mut self.jobs[i];
        job.phase = Phase::Ended;
        job.outcome = outcome;
        job.succeeded = !job.cancelled && outcome.is_none_or(|o| o == Outcome::Complete);
        if let Some(dir) = &self.log_dir {
            let io = |source| LaunchError::Io { path: job.record.log.clone(), source };
            std::fs::create_dir_all(dir).map_err(io)?;
            let text = format!("{} attempt {attempt}: {:?}\n", job.spec.name, outcome);
            std::fs::write(&job.record.log, text).map_err(io)?;
        }
        Ok(())
    }
}

fn write_status(
    store: &Store,
    id: &str,
    state: RunState,
    epoch: usize,
    error: Option<String>,
) -> Result<(), LaunchError> {
    let status = RunStatus { state, run_id: id.to_string(), epoch, updated_unix: crate::unix_now(), error };
    Ok(store.put_json(&RunPaths::new(id).status(), &status)?)
}

/// Final metrics as a run writes them: one class, the same AUROCs for every run.
fn final_metrics(epoch: usize, setting: Setting) -> FinalMetrics {
    let m = ClassMetrics {
        image_auroc: IMAGE_AUROC,
        pixel_auroc: PIXEL_AUROC,
        aupro: 0.7,
        image_f1_max: 0.9,
        pixel_f1_max: 0.5,
        image_ap: 0.9,
        pixel_ap: 0.5,
        image_threshold: Some(0.5),
    };
    FinalMetrics {
        epoch,
        setting,
        metrics: MetricsTable::new(BTreeMap::from([("memory".to_string(), m)])),
        best_on_test_extra: None,
        backbone_pretrained: false,
        feature_cache: CacheStats::default(),
        image_scores: Default::default(),
    }
}

impl Launcher for Memory {
    fn kind(&self) -> LauncherKind {
        LauncherKind::Local
    }

    fn submit(&mut self, specs: &[JobSpec]) -> Result<Vec<JobRecord>, LaunchError> {
        let mut c = self.lock();
        if c.refuse > 0 {
            c.refuse -= 1;
            return Err(LaunchError::Invalid("memory cluster: submission refused (scripted)".into()));
        }
        let Some(first) = specs.first() else { return Ok(vec![]) };
        // What the trait promises, and what a Local launcher refuses: checked here so a
        // coordinator that breaks it fails its test.
        if specs.iter().any(|s| s.ranks() != first.ranks() || s.nodes != first.nodes || s.after != first.after) {
            return Err(LaunchError::Invalid("memory cluster: the jobs of one submission are not alike".into()));
        }
        if !c.queues && !first.after.is_empty() {
            return Err(LaunchError::Invalid(format!("{}: this cluster does not queue jobs", first.name)));
        }
        let array = c.submissions.len();
        let mut records = vec![];
        for (task, spec) in specs.iter().enumerate() {
            let id = if specs.len() == 1 { format!("mem-{array}") } else { format!("mem-{array}_{task}") };
            let log = match &c.log_dir {
                Some(d) => d.join(format!("{id}.log")),
                None => PathBuf::from(format!("memory-cluster/{id}.log")),
            };
            // The job reads its config as `ras train` would: the run id and store are its.
            let run = match &spec.command {
                JobCommand::Run { config, .. } => {
                    let cfg =
                        RunConfig::load(config, &[]).map_err(|e| LaunchError::Invalid(crate::error_text::chain(&e)))?;
                    Some((cfg.run_id(), cfg.store.clone(), cfg.train.epochs, cfg.train.setting))
                }
                JobCommand::Task { .. } | JobCommand::Ranks { .. } => None,
            };
            let record = JobRecord {
                kind: LauncherKind::Local,
                id,
                host: crate::hostname(),
                run_id: spec.name.clone(),
                log,
                nodes: spec.nodes.clone(),
                submitted: Some(format!("# in-memory job {}\n", spec.name)),
            };
            records.push(record.clone());
            let job = MemoryJob {
                record,
                spec: spec.clone(),
                phase: Phase::Queued,
                started: false,
                cancelled: false,
                outcome: None,
                succeeded: false,
                left: 0,
                run,
            };
            c.jobs.push(job);
            if !c.queues {
                let i = c.jobs.len() - 1;
                c.start(i)?;
            }
        }
        c.note_peak();
        c.submissions.push(Submission { specs: specs.to_vec(), records: records.clone() });
        Ok(records)
    }

    fn poll(&mut self, jobs: &[&JobRecord]) -> Result<Vec<JobState>, LaunchError> {
        let mut c = self.lock();
        if c.auto {
            c.tick()?;
        }
        Ok(jobs
            .iter()
            .map(|r| match c.jobs.iter().find(|j| j.record.id == r.id) {
                _ if c.unreachable => JobState::Unknown("memory cluster: unreachable (scripted)".into()),
                Some(j) if j.phase == Phase::Queued => JobState::Queued,
                Some(j) if j.phase == Phase::Active => JobState::Active,
                // As Slurm says of a scancel'ed job (a local process just ends).
                Some(j) if j.cancelled && c.queues => JobState::Cancelled,
                Some(_) | None => JobState::Ended,
            })
            .collect())
    }

    /// A queued job leaves the queue; a running run checkpoints and writes "preempted"
    /// (as `ras train` on SIGTERM); a running task just stops.
    fn cancel(&mut self, jobs: &[&JobRecord]) -> Result<(), LaunchError> {
        let mut c = self.lock();
        for r in jobs {
            let Some(i) = c.jobs.iter().position(|j| j.record.id == r.id) else { continue };
            match c.jobs[i].phase {
                Phase::Queued => {
                    c.jobs[i].phase = Phase::Ended;
                    c.jobs[i].cancelled = true;
                }
                Phase::Active => {
                    c.jobs[i].cancelled = true;
                    c.finish(i, Some(Outcome::Preempted))?;
                }
                Phase::Ended => {}
            }
        }
        Ok(())
    }

    fn queues_jobs(&self) -> bool {
        self.lock().queues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(name: &str, after: Vec<JobRecord>, dependency: Dependency) -> JobSpec {
        JobSpec { name: name.into(), command: JobCommand::Task { args: vec![] }, nodes: vec![], after, dependency }
    }

    fn states(mem: &mut Memory, jobs: &[&JobRecord]) -> Vec<JobState> {
        mem.poll(jobs).unwrap()
    }

    #[test]
    fn a_queued_job_waits_for_its_dependencies_and_afterok_needs_them_to_succeed() {
        let mut mem = Memory::completing().queueing(true);
        mem.auto(false);
        let first = mem.submit(&[task("a", vec![], Dependency::AfterAny)]).unwrap().remove(0);
        let ok = mem.submit(&[task("ok", vec![first.clone()], Dependency::AfterOk)]).unwrap().remove(0);
        let any = mem.submit(&[task("any", vec![first.clone()], Dependency::AfterAny)]).unwrap().remove(0);
        assert_eq!(states(&mut mem, &[&first, &ok, &any]), [JobState::Queued, JobState::Queued, JobState::Queued]);
        mem.step().unwrap();
        assert_eq!(states(&mut mem, &[&first, &ok]), [JobState::Active, JobState::Queued]);
        // A cancelled task did not succeed: afterok drops the job, afterany runs it.
        mem.cancel(&[&first]).unwrap();
        mem.finish_all().unwrap();
        let jobs = mem.jobs();
        assert_eq!(
            jobs.iter().map(|j| (j.started, j.succeeded)).collect::<Vec<_>>(),
            [(true, false), (false, false), (true, true)]
        );
        assert_eq!(jobs.iter().map(|j| j.record.id.as_str()).collect::<Vec<_>>(), ["mem-0", "mem-1", "mem-2"]);
    }

    #[test]
    fn it_refuses_what_its_launcher_kind_would() {
        let mut local = Memory::completing();
        let queued = task("a", vec![], Dependency::AfterAny);
        let first = local.submit(std::slice::from_ref(&queued)).unwrap().remove(0);
        assert_eq!(local.peak_ranks(), 1, "a Local-like job starts at once");
        let behind = task("b", vec![first], Dependency::AfterAny);
        assert!(local.submit(std::slice::from_ref(&behind)).is_err(), "no queue, no dependencies");
        // One array holds alike jobs only.
        let mut slurm = Memory::completing().queueing(true);
        assert!(slurm.submit(&[queued.clone(), behind]).is_err());
        slurm.refuse_submits(1);
        assert!(slurm.submit(std::slice::from_ref(&queued)).is_err());
        assert_eq!(slurm.submit(&[queued.clone(), queued]).unwrap().len(), 2);
        assert_eq!(slurm.submissions().len(), 1, "refused calls are not logged");
        slurm.set_unreachable(true);
        let r = slurm.jobs()[0].record.clone();
        assert!(matches!(&states(&mut slurm, &[&r])[0], JobState::Unknown(_)));
    }
}
