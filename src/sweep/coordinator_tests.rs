//! The coordinator on an in-memory cluster ([`Memory`]): what tests/coordinator.rs checks
//! with real processes or a real Slurm in minutes, here in milliseconds on a temporary
//! local store, with exact counts from the store (claims, job records, launch audit) and
//! from the cluster's submit log.

use super::*;
use crate::config::ClusterShape;
use crate::launch::memory::{Memory, Outcome, Phase, IMAGE_AUROC};
use crate::run::{RunPaths, RunState, RunStatus};
use crate::sweep::state::{CancelMark, Claim, CLAIM_GRACE_S};
use crate::sweep::{cancel, expand, render_failed, render_views, ExpandOptions};
use std::collections::BTreeSet;
use std::path::Path;

/// A sweep of one-rank runs that differ by seed, its state in a temporary local store.
struct Sweep {
    dir: tempfile::TempDir,
    store: Store,
    manifest: Manifest,
}

/// Writes a base config and a sweep file "mem" of `runs` seeds into `dir` and expands
/// them (no dataset: planned from MVTec's published size, as `ras bench coordinator`).
fn expand_in(dir: &Path, runs: usize, max_retries: usize) -> Manifest {
    let q = |s: &Path| toml::Value::String(s.display().to_string());
    let base = dir.join("base.toml");
    let text = format!(
        "name = \"mem\"\nstore = {store}\n[dataset]\nroot = {root}\n[backbone]\narch = \"efficientnet-b0\"\n\
         [model]\nhidden_dim = 64\nencoder_layers = 1\ndecoder_layers = 1\nheads = 4\nffn_dim = 128\n\
         [train]\nepochs = 3\nbatch_size = 8\ndevice = \"cpu\"\n",
        store = q(&dir.join("store")),
        root = q(&dir.join("no-dataset")),
    );
    std::fs::write(&base, text).unwrap();
    let seeds: Vec<String> = (0..runs).map(|i| i.to_string()).collect();
    let sweep = dir.join("mem.toml");
    let text = format!(
        "name = \"mem\"\nbase = {}\nranks = 1\nmax_retries = {max_retries}\n[grid]\nseed = [{}]\n",
        q(&base),
        seeds.join(", ")
    );
    std::fs::write(&sweep, text).unwrap();
    expand(&sweep, &ExpandOptions { store: None, overrides: vec![], max_ranks: 1, check_data: false }).unwrap()
}

impl Sweep {
    fn new(runs: usize, max_retries: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let manifest = expand_in(dir.path(), runs, max_retries);
        let store = Store::open(&manifest.store).unwrap();
        Self { dir, store, manifest }
    }

    fn ids(&self) -> Vec<String> {
        self.manifest.runs.iter().map(|r| r.id.clone()).collect()
    }

    /// A cluster of `slots` ranks on one node; polls of 0-1 ms; a cycle cap that only a
    /// broken coordinator reaches (the test then fails on its views instead of hanging).
    fn opts(&self, slots: usize) -> CoordinateOptions {
        CoordinateOptions {
            no_wait: false,
            shape: ClusterShape { nodes: 1, ranks_per_node: slots },
            node_names: vec![],
            poll_min: Duration::ZERO,
            poll_max: Duration::from_millis(1),
            max_array_size: 64,
            work_dir: self.dir.path().join("configs"),
            max_cycles: Some(500),
        }
    }

    fn try_coordinate(&self, mem: &Memory, opts: &CoordinateOptions) -> Result<Vec<RunView>, SweepError> {
        coordinate(&self.store, &self.manifest, &mut mem.clone(), opts, &mut |_| {}, &mut |_| {})
    }

    fn coordinate(&self, mem: &Memory, opts: &CoordinateOptions) -> Vec<RunView> {
        self.try_coordinate(mem, opts).unwrap()
    }

    /// Keys of `sweeps/mem/<folder>/` (claims, jobs, launches), of run `id` only if given.
    fn keys(&self, folder: &str, id: Option<&str>) -> Vec<String> {
        let prefix = format!("sweeps/mem/{folder}/");
        let keys = self.store.list(&prefix).unwrap();
        keys.into_iter().filter(|k| id.is_none_or(|id| k.starts_with(&format!("{prefix}{id}.")))).collect()
    }

    /// (claims, job records, launches) of run `id`.
    fn records(&self, id: &str) -> (usize, usize, usize) {
        let n = |folder| self.keys(folder, Some(id)).len();
        (n("claims"), n("jobs"), n("launches"))
    }

    fn state(&self) -> SweepState<'_> {
        SweepState { store: &self.store, manifest: &self.manifest }
    }

    fn status(&self, id: &str) -> RunStatus {
        self.store.get_json(&RunPaths::new(id).status()).unwrap().unwrap()
    }
}

fn view<'v>(views: &'v [RunView], id: &str) -> &'v RunView {
    views.iter().find(|v| v.id == id).unwrap()
}

fn phases(views: &[RunView]) -> Vec<RunPhase> {
    views.iter().map(|v| v.phase.clone()).collect()
}

/// The names of each submit call's jobs.
fn submitted_names(mem: &Memory) -> Vec<Vec<String>> {
    mem.submissions().iter().map(|s| s.specs.iter().map(|j| j.name.clone()).collect()).collect()
}

/// The attempts of run `id` that were submitted, in order.
fn attempts_submitted(mem: &Memory, id: &str) -> Vec<usize> {
    mem.jobs().iter().filter(|j| j.spec.name == id).map(|j| j.spec.attempt()).collect()
}

#[test]
fn every_run_is_claimed_and_launched_once_and_a_finished_sweep_launches_nothing() {
    let s = Sweep::new(4, 1);
    let mem = Memory::completing().logs_in(s.dir.path().join("logs"));
    let views = s.coordinate(&mem, &s.opts(4));
    assert_eq!(phases(&views), vec![RunPhase::Complete; 4]);
    for v in &views {
        assert_eq!((v.attempts, v.mean_iauroc, v.job_ended), (1, Some(IMAGE_AUROC), true), "{}", v.id);
        assert_eq!(s.records(&v.id), (1, 1, 1), "{}: claims, jobs, launches", v.id);
        // The ended job's log is kept beside the run.
        let job = v.job.as_ref().unwrap();
        assert!(s.store.exists(&RunPaths::new(v.id.as_str()).logs(&job.id)).unwrap());
    }
    // The feature cache first, alone; then the four runs in one call.
    let names = submitted_names(&mem);
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].len() == 1 && names[0][0].starts_with("features-"), "{names:?}");
    assert_eq!(names[1], s.ids());

    let again = s.coordinate(&mem, &s.opts(4));
    assert_eq!(phases(&again), vec![RunPhase::Complete; 4]);
    assert_eq!(mem.submissions().len(), 2, "a finished sweep launches nothing");
    assert_eq!((s.keys("claims", None).len(), s.keys("launches", None).len()), (4, 4));
}

#[test]
fn a_failing_run_is_retried_max_retries_times_then_failed_with_its_error() {
    let s = Sweep::new(2, 2);
    let bad = s.ids()[0].clone();
    let b = bad.clone();
    let mem = Memory::new(move |id, _| if id == b { Outcome::Failed } else { Outcome::Complete });
    let views = s.coordinate(&mem, &s.opts(4));
    let v = view(&views, &bad);
    assert_eq!((&v.phase, v.attempts), (&RunPhase::Failed, 3));
    assert_eq!(v.error.as_deref(), Some("scripted failure of attempt 2"));
    assert!(render_failed(&views).contains("failed after 3 attempts: scripted failure of attempt 2"));
    assert_eq!(s.records(&bad), (3, 3, 3));
    assert_eq!(attempts_submitted(&mem, &bad), vec![0, 1, 2]);
    let good = view(&views, &s.ids()[1]);
    assert_eq!((&good.phase, good.attempts), (&RunPhase::Complete, 1));
}

#[test]
fn a_run_that_fails_once_then_completes_ends_complete_after_two_attempts() {
    let s = Sweep::new(2, 1);
    let flaky = s.ids()[1].clone();
    let f = flaky.clone();
    let mem = Memory::new(move |id, attempt| if id == f && attempt == 0 { Outcome::Failed } else { Outcome::Complete });
    let views = s.coordinate(&mem, &s.opts(4));
    let v = view(&views, &flaky);
    assert_eq!((&v.phase, v.attempts, &v.error), (&RunPhase::Complete, 2, &None));
    assert_eq!(s.records(&flaky), (2, 2, 2));
    assert_eq!(attempts_submitted(&mem, &flaky), vec![0, 1]);
    assert_eq!(s.records(&s.ids()[0]), (1, 1, 1));
}

#[test]
fn preempted_and_infra_attempts_are_requeued_without_using_a_retry() {
    let s = Sweep::new(3, 0);
    let ids = s.ids();
    let (p, i) = (ids[0].clone(), ids[1].clone());
    let mem = Memory::new(move |id, attempt| match id {
        _ if id == p && attempt < 3 => Outcome::Preempted,
        _ if id == i && attempt < 2 => Outcome::Infra,
        _ if id == p || id == i => Outcome::Complete,
        _ => Outcome::Failed,
    });
    let views = s.coordinate(&mem, &s.opts(4));
    let got: Vec<(RunPhase, usize)> = views.iter().map(|v| (v.phase.clone(), v.attempts)).collect();
    // With max_retries 0: preempted 3 times, then complete; infra twice, then complete;
    // a failure ends the run at once.
    assert_eq!(got, vec![(RunPhase::Complete, 4), (RunPhase::Complete, 3), (RunPhase::Failed, 1)]);
    assert_eq!(s.records(&ids[0]), (4, 4, 4));
    assert_eq!(s.records(&ids[1]), (3, 3, 3));
}

/// Found by tests/chaos (seed 2): attempts after an outage or a preemption were counted
/// against max_retries once a later attempt failed. With max_retries 1: cut off by the
/// store twice, preempted once, failed once, then complete; the attempts after each
/// outage and the preemption say so in their claims.
#[test]
fn outages_and_preemptions_before_a_failure_leave_its_retry() {
    let s = Sweep::new(1, 1);
    let id = s.ids()[0].clone();
    let mem = Memory::new(|_, attempt| match attempt {
        0 | 1 => Outcome::Infra,
        2 => Outcome::Preempted,
        3 => Outcome::Failed,
        _ => Outcome::Complete,
    });
    let views = s.coordinate(&mem, &s.opts(4));
    assert_eq!((&views[0].phase, views[0].attempts), (&RunPhase::Complete, 5));
    let free: Vec<bool> =
        (0..5).map(|a| s.store.get_json::<Claim>(&s.state().claim_key_of(&id, a)).unwrap().unwrap().free).collect();
    assert_eq!(free, vec![false, true, true, true, false]);
}

#[test]
fn a_job_that_vanishes_uses_its_attempts_and_is_marked_failed() {
    let s = Sweep::new(1, 1);
    let id = s.ids()[0].clone();
    let mem = Memory::new(|_, _| Outcome::Vanished);
    let views = s.coordinate(&mem, &s.opts(4));
    let reason = "job ended without recording an outcome after 2 attempts";
    assert_eq!((&views[0].phase, views[0].attempts), (&RunPhase::Failed, 2));
    assert_eq!(views[0].error.as_deref(), Some(reason));
    let st = s.status(&id);
    assert_eq!((st.state, st.error.as_deref()), (RunState::Failed, Some(reason)), "recorded for `ras status`");
}

#[test]
fn alike_runs_go_out_as_job_arrays_split_at_max_array_size() {
    let s = Sweep::new(7, 0);
    let mem = Memory::completing().queueing(true);
    let views = s.coordinate(&mem, &CoordinateOptions { max_array_size: 3, ..s.opts(1) });
    assert_eq!(phases(&views), vec![RunPhase::Complete; 7]);
    let subs = mem.submissions();
    let sizes: Vec<usize> = subs.iter().map(|x| x.specs.len()).collect();
    assert_eq!(sizes, vec![1, 3, 3, 1], "the feature cache, then 7 runs in arrays of at most 3");
    // Every run waits for the feature-cache job in the queue, not in the coordinator.
    let features = &subs[0].records[0];
    assert!(subs[1..].iter().flat_map(|x| &x.specs).all(|j| j.after == vec![features.clone()]));
    let runs: Vec<String> = subs[1..].iter().flat_map(|x| x.specs.iter().map(|j| j.name.clone())).collect();
    assert_eq!(runs, s.ids());
    assert_eq!(subs[1].records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["mem-1_0", "mem-1_1", "mem-1_2"]);
}

#[test]
fn runs_with_different_ranks_go_out_in_separate_arrays() {
    let mut s = Sweep::new(5, 0);
    s.manifest.runs[1].ranks = 2;
    s.manifest.runs[3].ranks = 2;
    let ids = s.ids();
    let mem = Memory::completing().queueing(true);
    let views = s.coordinate(&mem, &s.opts(4));
    assert_eq!(phases(&views), vec![RunPhase::Complete; 5]);
    let names = submitted_names(&mem);
    assert_eq!(
        names[1..],
        [vec![ids[0].clone(), ids[2].clone(), ids[4].clone()], vec![ids[1].clone(), ids[3].clone()]]
    );
    assert!(mem.submissions()[2].specs.iter().all(|j| j.ranks() == 2));
}

#[test]
fn without_a_queue_never_more_ranks_run_than_the_slots() {
    let mut s = Sweep::new(6, 0);
    s.manifest.runs[2].ranks = 2;
    let mem = Memory::completing().ticks_to_end(3);
    let views = s.coordinate(&mem, &s.opts(2));
    assert_eq!(phases(&views), vec![RunPhase::Complete; 6]);
    assert_eq!(mem.peak_ranks(), 2, "both slots used, never more");
    assert!(s.ids().iter().all(|id| mem.submitted(id) == 1));
    // Nothing was handed dependencies (this cluster refuses them; so does Local).
    assert!(mem.jobs().iter().all(|j| j.spec.after.is_empty()));
}

#[test]
fn the_report_job_waits_afterok_on_every_active_run_and_is_recorded() {
    let s = Sweep::new(3, 0);
    let mem = Memory::completing().queueing(true);
    let views = s.coordinate(&mem, &CoordinateOptions { no_wait: true, ..s.opts(1) });
    assert_eq!(phases(&views), vec![RunPhase::Active; 3]);
    let args = vec!["report".to_string(), "mem".to_string()];
    let job = submit_report_job(&s.store, &s.manifest, &mut mem.clone(), &views, args.clone()).unwrap().unwrap();
    let last = mem.submissions().pop().unwrap();
    assert_eq!(last.specs.len(), 1);
    let spec = &last.specs[0];
    assert_eq!((spec.name.as_str(), spec.dependency), ("report-mem", Dependency::AfterOk));
    assert_eq!(spec.command, JobCommand::Task { args: args.clone() });
    let run_jobs: Vec<JobRecord> = views.iter().map(|v| v.job.clone().unwrap()).collect();
    assert_eq!(spec.after, run_jobs, "after every run's job");
    assert_eq!(s.store.get_json::<JobRecord>("sweeps/mem/report.json").unwrap(), Some(job.clone()));
    // The cluster runs it once every run succeeded.
    mem.finish_all().unwrap();
    let report = mem.jobs().into_iter().find(|j| j.record.id == job.id).unwrap();
    assert!(report.started && report.succeeded);
    // Once no run is active there is nothing to wait for.
    let views = s.coordinate(&mem, &s.opts(1));
    assert_eq!(phases(&views), vec![RunPhase::Complete; 3]);
    assert!(submit_report_job(&s.store, &s.manifest, &mut mem.clone(), &views, args).unwrap().is_none());
}

#[test]
fn two_coordinators_racing_never_launch_a_run_twice() {
    for queues in [false, true] {
        let s = Sweep::new(12, 1);
        // Every other run fails its first attempt: the retries race too.
        let flaky: BTreeSet<String> = s.ids().into_iter().step_by(2).collect();
        let f = flaky.clone();
        let mem = Memory::new(move |id, a| if a == 0 && f.contains(id) { Outcome::Failed } else { Outcome::Complete })
            .queueing(queues);
        let opts = s.opts(16);
        std::thread::scope(|scope| {
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    let (mut mem, opts, manifest) = (mem.clone(), &opts, &s.manifest);
                    scope.spawn(move || {
                        // Its own store handle, as another process would have.
                        let store = Store::open(&manifest.store).unwrap();
                        coordinate(&store, manifest, &mut mem, opts, &mut |_| {}, &mut |_| {}).unwrap()
                    })
                })
                .collect();
            for r in racers {
                assert_eq!(phases(&r.join().unwrap()), vec![RunPhase::Complete; 12]);
            }
        });
        let mut seen = BTreeSet::new();
        for j in mem.jobs() {
            assert!(
                seen.insert((j.spec.name.clone(), j.spec.attempt())),
                "{} attempt {} twice",
                j.spec.name,
                j.spec.attempt()
            );
        }
        for id in s.ids() {
            let n = if flaky.contains(&id) { 2 } else { 1 };
            assert_eq!((mem.submitted(&id), s.records(&id).0, s.records(&id).1), (n, n, n), "{id} (queues: {queues})");
        }
        assert_eq!(mem.jobs().iter().filter(|j| j.spec.name.starts_with("features-")).count(), 1);
    }
}

#[test]
fn a_restarted_coordinator_adopts_the_running_jobs_and_launches_nothing_twice() {
    for queues in [true, false] {
        let s = Sweep::new(4, 0);
        let mem = Memory::completing().queueing(queues).ticks_to_end(2);
        // Killed after its first cycle with a queue (everything submitted); without, after
        // the third (the feature cache runs two ticks, then the runs go out).
        let cycles = if queues { 1 } else { 3 };
        let first = s.coordinate(&mem, &CoordinateOptions { max_cycles: Some(cycles), ..s.opts(4) });
        assert_eq!(phases(&first), vec![RunPhase::Active; 4]);
        let submitted = mem.submissions().len();
        assert_eq!(submitted, 2);
        let views = s.coordinate(&mem, &s.opts(4));
        assert_eq!(phases(&views), vec![RunPhase::Complete; 4]);
        assert_eq!(mem.submissions().len(), submitted, "the second coordinator adopted every job");
        for id in s.ids() {
            assert_eq!(s.records(&id), (1, 1, 1), "{id} (queues: {queues})");
        }
    }
}

/// Makes every claim of the sweep `age` seconds older.
fn age_claims(s: &Sweep, age: u64) {
    for key in s.keys("claims", None) {
        let mut c: Claim = s.store.get_json(&key).unwrap().unwrap();
        c.unix -= age;
        s.store.put_json(&key, &c).unwrap();
    }
}

#[test]
fn a_claim_without_a_job_is_launched_again_only_after_the_grace() {
    let s = Sweep::new(2, 1);
    let mem = Memory::completing();
    s.coordinate(&mem, &CoordinateOptions { max_cycles: Some(1), ..s.opts(4) });
    assert_eq!(submitted_names(&mem).len(), 1, "the feature cache");
    // The next cycle claims both runs, and the coordinator dies before its submit lands.
    mem.refuse_submits(1);
    assert!(s.try_coordinate(&mem, &s.opts(4)).is_err());
    assert_eq!((s.keys("claims", None).len(), s.keys("jobs", None).len()), (2, 0));
    // Within the grace another coordinator takes the claims for jobs being submitted.
    let views = s.coordinate(&mem, &CoordinateOptions { max_cycles: Some(3), ..s.opts(4) });
    assert!(views.iter().all(|v| v.phase == RunPhase::Active && v.job.is_none()), "{views:?}");
    assert_eq!(submitted_names(&mem).len(), 1);
    // Just inside the grace: still waiting.
    age_claims(&s, CLAIM_GRACE_S - 2);
    let views = s.coordinate(&mem, &CoordinateOptions { max_cycles: Some(1), ..s.opts(4) });
    assert_eq!(phases(&views), vec![RunPhase::Active; 2]);
    assert_eq!(submitted_names(&mem).len(), 1);
    // Past it, the claimed attempts are over: the next ones are launched, once.
    age_claims(&s, 3);
    let views = s.coordinate(&mem, &s.opts(4));
    assert_eq!(phases(&views), vec![RunPhase::Complete; 2]);
    for id in s.ids() {
        assert_eq!(attempts_submitted(&mem, &id), vec![1], "{id}");
        assert_eq!(s.records(&id), (2, 1, 1), "{id}: two claims, one job");
    }
}

/// A coordinator killed between claiming an attempt and submitting it: nothing ran, so
/// the attempt is not the run's to pay for, even with no retries to spare.
#[test]
fn a_claim_that_never_became_a_job_uses_no_retry() {
    let s = Sweep::new(1, 0);
    let id = s.ids()[0].clone();
    let mem = Memory::completing();
    s.coordinate(&mem, &CoordinateOptions { max_cycles: Some(1), ..s.opts(4) });
    mem.refuse_submits(1);
    assert!(s.try_coordinate(&mem, &s.opts(4)).is_err());
    age_claims(&s, CLAIM_GRACE_S + 1);
    let views = s.coordinate(&mem, &s.opts(4));
    assert_eq!((&views[0].phase, views[0].attempts, &views[0].error), (&RunPhase::Complete, 2, &None));
    assert_eq!(attempts_submitted(&mem, &id), vec![1]);
    assert_eq!(s.status(&id).state, RunState::Complete);
}

#[test]
fn cancel_stops_the_active_jobs_and_a_later_coordinator_resumes() {
    let s = Sweep::new(3, 0);
    let mem = Memory::completing().queueing(true);
    mem.auto(false);
    let views = s.coordinate(&mem, &CoordinateOptions { no_wait: true, ..s.opts(1) });
    assert_eq!(phases(&views), vec![RunPhase::Active; 3]);
    // The feature-cache job runs and ends; the runs start behind it.
    mem.step().unwrap();
    mem.step().unwrap();
    assert!(mem
        .jobs()
        .iter()
        .all(|j| j.phase == if j.spec.name.starts_with("features-") { Phase::Ended } else { Phase::Active }));
    assert_eq!(cancel(&s.store, &s.manifest, &mut mem.clone()).unwrap(), 3);
    for id in s.ids() {
        let job = mem.jobs().into_iter().find(|j| j.spec.name == id).unwrap();
        assert!(job.cancelled && job.outcome == Some(Outcome::Preempted) && job.phase == Phase::Ended);
        assert_eq!(s.status(&id).state, RunState::Preempted);
    }
    // While the sweep is cancelled a submitting coordinator launches nothing.
    let views = s.coordinate(&mem, &CoordinateOptions { no_wait: true, ..s.opts(1) });
    assert_eq!(phases(&views), vec![RunPhase::Retry; 3]);
    assert_eq!(mem.submissions().len(), 2);
    // A coordinator started afterwards resumes: the preempted attempts used no retry.
    mem.auto(true);
    let views = s.coordinate(&mem, &s.opts(1));
    assert_eq!(phases(&views), vec![RunPhase::Complete; 3]);
    assert!(views.iter().all(|v| v.attempts == 2));
    assert!(!s.store.exists("sweeps/mem/cancelled").unwrap());
    assert_eq!(s.keys("claims", None).len(), 6);
}

#[test]
fn nothing_is_launched_while_the_scheduler_cannot_be_asked() {
    let s = Sweep::new(2, 0);
    let mem = Memory::completing().queueing(true).ticks_to_end(100);
    s.coordinate(&mem, &CoordinateOptions { max_cycles: Some(1), ..s.opts(4) });
    assert_eq!(mem.submissions().len(), 2);
    // The sweep file gains a run while the controller is down.
    let grown = expand_in(s.dir.path(), 3, 0);
    let new: Vec<String> = grown.runs.iter().map(|r| r.id.clone()).filter(|id| !s.ids().contains(id)).collect();
    assert_eq!(new.len(), 1);
    mem.set_unreachable(true);
    let run = |opts: &CoordinateOptions| {
        coordinate(&s.store, &grown, &mut mem.clone(), opts, &mut |_| {}, &mut |_| {}).unwrap()
    };
    let views = run(&CoordinateOptions { max_cycles: Some(3), ..s.opts(4) });
    assert_eq!(view(&views, &new[0]).phase, RunPhase::Pending);
    assert!(views.iter().filter(|v| v.id != new[0]).all(|v| v.unknown.is_some() && v.phase == RunPhase::Active));
    assert_eq!(mem.submissions().len(), 2);
    mem.set_unreachable(false);
    let views = run(&s.opts(4));
    assert_eq!(phases(&views), vec![RunPhase::Complete; 3]);
    assert!(grown.runs.iter().all(|r| mem.submitted(&r.id) == 1));
}

/// Ticks the cluster until every run's job runs (its feature-cache job has ended).
fn runs_running(mem: &Memory) {
    let waiting = || mem.jobs().iter().any(|j| !j.spec.name.starts_with("features-") && j.phase != Phase::Active);
    for _ in 0..20 {
        if !waiting() {
            return;
        }
        mem.step().unwrap();
    }
    panic!("the runs never started");
}

#[test]
fn a_run_cancelled_for_good_is_never_relaunched_until_retry_cancelled() {
    use crate::sweep::{cancel_runs, retry_cancelled, CancelOutcome};
    let s = Sweep::new(3, 0);
    let (ids, sel) = (s.ids(), |id: &str| vec![id.to_string()]);
    let mem = Memory::completing().queueing(true).ticks_to_end(4);
    mem.auto(false);
    s.coordinate(&mem, &CoordinateOptions { no_wait: true, ..s.opts(3) });
    runs_running(&mem);
    // By label (as `ras status` shows it): marked, then its running job stopped.
    let label = s.manifest.runs[0].label.clone();
    let done = cancel_runs(&s.store, &s.manifest, &mut mem.clone(), &[label], Some("weak")).unwrap();
    let job0 = mem.jobs().into_iter().find(|j| j.spec.name == ids[0]).unwrap();
    assert_eq!(done[0].outcome, CancelOutcome::Cancelled { stopped: Some(job0.record.id.clone()) });
    assert!(job0.cancelled && job0.phase == Phase::Ended);
    // A marker this process wrote, but whose job nobody stopped (its `ras cancel` died):
    // the coordinator stops the job itself.
    let mark = CancelMark { by: "t".into(), unix: 0, reason: "r".into(), job: None };
    assert_eq!(s.state().mark_cancelled(&[(ids[1].as_str(), mark.clone())]).unwrap(), [true]);
    assert_eq!(s.state().mark_cancelled(&[(ids[1].as_str(), mark)]).unwrap(), [false], "created once");
    mem.auto(true);
    let views = s.coordinate(&mem, &s.opts(3));
    assert_eq!(phases(&views), [RunPhase::Cancelled, RunPhase::Cancelled, RunPhase::Complete]);
    assert!(mem.jobs().iter().find(|j| j.spec.name == ids[1]).unwrap().cancelled);
    assert_eq!(views[0].error.as_deref(), Some(format!("weak ({})", crate::sweep::cancel::who()).as_str()));
    let table = render_views(&views);
    assert!(table.contains("3 runs: 1 complete, 0 active, 0 pending, 0 to retry, 0 failed, 2 cancelled"), "{table}");
    assert!(table.contains(&format!("run {} (", ids[0])) && table.contains(") cancelled: weak ("), "{table}");
    // Neither this coordinator nor another relaunches them; a second cancel says so.
    let again = s.coordinate(&mem, &s.opts(3));
    assert_eq!(phases(&again), phases(&views));
    assert_eq!((mem.submitted(&ids[0]), mem.submitted(&ids[1])), (1, 1));
    let twice = cancel_runs(&s.store, &s.manifest, &mut mem.clone(), &sel(&ids[0]), None).unwrap();
    assert!(
        matches!(&twice[0].outcome, CancelOutcome::AlreadyCancelled { mark: Some(m), stopped: None } if m.reason == "weak")
    );
    let complete = cancel_runs(&s.store, &s.manifest, &mut mem.clone(), &sel(&ids[2]), None).unwrap();
    assert_eq!(complete[0].outcome, CancelOutcome::Complete);
    // --retry-cancelled: launched again, and the stopped attempt used no retry
    // (max_retries = 0).
    let mut retried = retry_cancelled(&s.store, &s.manifest).unwrap();
    retried.sort();
    let mut want = vec![ids[0].clone(), ids[1].clone()];
    want.sort();
    assert_eq!(retried, want);
    let views = s.coordinate(&mem, &s.opts(3));
    assert_eq!(phases(&views), vec![RunPhase::Complete; 3]);
    assert_eq!((mem.submitted(&ids[0]), mem.submitted(&ids[1]), mem.submitted(&ids[2])), (2, 2, 1));
    assert!(s.keys("cancelled-runs", None).is_empty());
}

#[test]
fn a_scancel_by_hand_is_a_cancel_and_a_preemption_still_requeues() {
    let s = Sweep::new(2, 0);
    let ids = s.ids();
    let preempted = ids[1].clone();
    let mem = Memory::new(
        move |id, attempt| if id == preempted && attempt == 0 { Outcome::Preempted } else { Outcome::Complete },
    )
    .queueing(true)
    .ticks_to_end(3);
    mem.auto(false);
    s.coordinate(&mem, &CoordinateOptions { no_wait: true, ..s.opts(2) });
    runs_running(&mem);
    // A person's scancel of run 0's job (no ras command: no marker, no stopped record).
    let job0 = mem.jobs().into_iter().find(|j| j.spec.name == ids[0]).unwrap().record;
    mem.clone().cancel(&[&job0]).unwrap();
    mem.auto(true);
    let views = s.coordinate(&mem, &s.opts(2));
    assert_eq!(phases(&views), [RunPhase::Cancelled, RunPhase::Complete]);
    assert_eq!((mem.submitted(&ids[0]), mem.submitted(&ids[1])), (1, 2), "the preempted run was requeued");
    let mark: CancelMark = s.store.get_json(&format!("sweeps/mem/cancelled-runs/{}.json", ids[0])).unwrap().unwrap();
    assert_eq!((mark.by.as_str(), mark.job.as_deref()), ("slurm", Some(job0.id.as_str())));
    assert!(mark.reason.contains("cancelled in Slurm") && mark.reason.contains(&job0.id), "{}", mark.reason);
    // Unknown names are refused with the runs there are; a variant names every seed.
    let err = crate::sweep::cancel::select_runs(&s.manifest, &["nope".into()]).unwrap_err().to_string();
    assert!(err.contains("`nope`") && ids.iter().all(|id| err.contains(id.as_str())), "{err}");
    let variant = s.manifest.runs[0].variant.clone();
    assert_eq!(crate::sweep::cancel::select_runs(&s.manifest, &[variant, ids[1].clone()]).unwrap(), [0, 1]);
}
