//! The coordinator: drives a sweep to completion. Each cycle it refreshes the views
//! ([`Tracker`]: one LIST, one scheduler call, a GET per run that changed), launches
//! feature-cache jobs and pending runs (claim first, so two coordinators never launch the
//! same attempt), and sleeps: `poll_min` after a change, doubling up to `poll_max` while
//! nothing changes.

use super::plan::place;
use super::state::{FeatureState, SweepState};
use super::status::{RunPhase, RunView};
use super::tracker::Tracker;
use super::{Manifest, SweepError};
use crate::config::ClusterShape;
use crate::launch::{Dependency, JobCommand, JobRecord, JobSpec, Launcher};
use crate::store::{RequestCounts, Store};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of `coordinate`.
pub struct CoordinateOptions {
    /// Submit what can be submitted once and return.
    pub no_wait: bool,
    /// The cluster's nodes and rank slots per node.
    pub shape: ClusterShape,
    /// Node names: given, every run is placed on named nodes (`plan::place`, the rule
    /// `ras plan` simulates) and the launcher pins it there; empty, the cluster places.
    pub node_names: Vec<String>,
    /// Poll interval after a change, and the most it backs off to while nothing changes.
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// Most tasks in one job array; more alike runs go out as several arrays.
    pub max_array_size: usize,
    /// Folder for the resolved config files the jobs read (shared with the nodes).
    pub work_dir: PathBuf,
    /// Stop after this many cycles (benchmarks); None: until done.
    pub max_cycles: Option<usize>,
}

impl CoordinateOptions {
    /// A profile's shape, node names, poll bounds and array cap; jobs read their
    /// configs from `work_dir`.
    pub fn for_profile(profile: &crate::config::ClusterProfile, work_dir: PathBuf, no_wait: bool) -> Self {
        let (poll_min, poll_max) = profile.poll_bounds();
        Self {
            no_wait,
            shape: profile.shape(),
            node_names: profile.node_names.clone(),
            poll_min,
            poll_max,
            max_array_size: profile.max_array_size,
            work_dir,
            max_cycles: None,
        }
    }
}

/// What one cycle cost: `ras bench coordinator` prints these.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CycleStats {
    pub cycle: usize,
    pub wall_s: f64,
    /// External scheduler commands (squeue, sbatch, scancel, ...) run this cycle.
    pub scheduler_calls: u64,
    /// Seconds of the cycle spent waiting for them (the rest is the store and ras).
    pub scheduler_s: f64,
    pub store: RequestCounts,
    /// The most store requests in flight at once during the cycle.
    pub max_in_flight: u64,
    /// Runs whose phase, epoch or attempts changed.
    pub runs_changed: usize,
    /// Jobs submitted this cycle.
    pub submitted: usize,
    /// The sleep after this cycle.
    pub next_poll_s: f64,
}

/// Drives a sweep: launches pending runs and retries, waits, and returns the final views.
/// `on_change` is called with the views whenever a run's phase, epoch or attempts changed;
/// `on_cycle` after every cycle with what it cost.
pub fn coordinate(
    store: &Store,
    manifest: &Manifest,
    launcher: &mut dyn Launcher,
    opts: &CoordinateOptions,
    on_change: &mut dyn FnMut(&[RunView]),
    on_cycle: &mut dyn FnMut(&CycleStats),
) -> Result<Vec<RunView>, SweepError> {
    let mut tracker = Tracker::new(store, manifest)?;
    tracker.state.publish_manifest()?;
    if !opts.no_wait && tracker.state.cancelled()? {
        tracing::info!(sweep = manifest.name, "resuming a cancelled sweep");
        tracker.state.clear_cancelled()?;
    }
    std::fs::create_dir_all(&opts.work_dir).map_err(|source| SweepError::Io { path: opts.work_dir.clone(), source })?;
    let mut last_shown: Vec<(RunPhase, usize, usize, bool)> = vec![];
    let mut logs_kept = std::collections::BTreeSet::new();
    let mut stopping = std::collections::BTreeSet::new();
    let mut interval = opts.poll_min;
    let mut cycle = 0;
    let mut search = super::search::SearchDriver::default();
    loop {
        cycle += 1;
        let (t0, calls0, store0) = (Instant::now(), scheduler_calls(), crate::store::request_counts());
        let waited0 = crate::launch::command::waited_s();
        crate::store::take_max_in_flight();
        let mut views = tracker.refresh(launcher)?;
        // (Before a retry replaces the failed attempt's job in its view.)
        keep_logs(store, &views, &mut logs_kept);
        stop_cancelled(&views, launcher, &mut stopping);
        let cancelled = tracker.cancelled;
        // While the scheduler cannot be reached, submitting would fail or duplicate.
        let unreachable = views.iter().any(|v| v.unknown.is_some());
        // A search decides (and appends its decisions) before anything is launched.
        if let (Some(s), false) = (&manifest.search, cancelled || unreachable) {
            search.step(&mut tracker, &mut views, s)?;
        }
        let submitted =
            if cancelled || unreachable { 0 } else { launch_pending(&mut tracker, &mut views, launcher, opts)? };
        let shown: Vec<_> = views.iter().map(|v| (v.phase.clone(), v.epoch, v.attempts, v.unknown.is_some())).collect();
        let changed = if last_shown.len() == shown.len() {
            shown.iter().zip(&last_shown).filter(|(a, b)| a != b).count()
        } else {
            shown.len()
        };
        if changed > 0 {
            on_change(&views);
            last_shown = shown;
            interval = opts.poll_min;
        } else {
            interval = (interval * 2).min(opts.poll_max);
        }
        on_cycle(&CycleStats {
            cycle,
            wall_s: t0.elapsed().as_secs_f64(),
            scheduler_calls: scheduler_calls() - calls0,
            scheduler_s: crate::launch::command::waited_s() - waited0,
            store: crate::store::request_counts().since(&store0),
            max_in_flight: crate::store::take_max_in_flight(),
            runs_changed: changed,
            submitted,
            next_poll_s: interval.as_secs_f64(),
        });
        // (Final, not just settled: a complete run's process may still be writing its log.)
        let done = views.iter().all(|v| v.is_final());
        let stop = cancelled && views.iter().all(|v| v.phase != RunPhase::Active);
        if opts.no_wait || done || stop || opts.max_cycles.is_some_and(|m| cycle >= m) {
            return Ok(views);
        }
        std::thread::sleep(interval);
    }
}

/// Stops the live job of every run cancelled for good (a job launched as its marker was
/// written, or one whose `ras cancel --run` died before stopping it), once per job: its
/// marker says the run is over, whoever launched the job.
fn stop_cancelled(views: &[RunView], launcher: &mut dyn Launcher, stopping: &mut std::collections::BTreeSet<String>) {
    let jobs: Vec<&JobRecord> = views
        .iter()
        .filter(|v| v.phase == RunPhase::Cancelled && !v.job_ended)
        .filter_map(|v| v.job.as_ref())
        .filter(|j| stopping.insert(j.id.clone()))
        .collect();
    if jobs.is_empty() {
        return;
    }
    tracing::info!(
        jobs = jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>().join(","),
        "stopping the jobs of cancelled runs"
    );
    if let Err(e) = launcher.cancel(&jobs) {
        // Tried again next cycle.
        tracing::warn!("stopping the jobs of cancelled runs: {e}");
        for j in jobs {
            stopping.remove(&j.id);
        }
    }
}

/// External commands run so far by this process (the launchers' scheduler calls).
fn scheduler_calls() -> u64 {
    crate::launch::command::calls().values().sum()
}

/// Launches what can be launched now: feature-cache jobs first, then pending runs and
/// retries within the free slots (or all at once where the cluster queues jobs), alike
/// runs together (one job array on Slurm). Returns how many jobs were submitted.
fn launch_pending(
    tracker: &mut Tracker,
    views: &mut [RunView],
    launcher: &mut dyn Launcher,
    opts: &CoordinateOptions,
) -> Result<usize, SweepError> {
    let manifest = tracker.state.manifest;
    let queues = launcher.queues_jobs();
    let mut submitted = 0;
    let mut busy: usize = views.iter().filter(|v| v.holds_slots()).map(|v| v.ranks).sum();
    let slots = opts.shape.slots();
    let per_node = opts.shape.ranks_per_node.max(1);
    // Slots in use per named node, from the job records of active runs.
    let mut used = vec![0usize; opts.node_names.len()];
    for (run, view) in manifest.runs.iter().zip(views.iter()) {
        if let (true, Some(job)) = (view.holds_slots(), &view.job) {
            let (_, m) = opts.shape.layout(run.ranks);
            for n in &job.nodes {
                if let Some(i) = opts.node_names.iter().position(|x| x == n) {
                    used[i] += m.min(per_node);
                }
            }
        }
    }
    // Feature caches: one job per dataset + backbone fills each, before the runs that
    // read it, so the backbone runs once per image however many runs share it.
    let mut features: BTreeMap<String, FeatureState> = BTreeMap::new();
    for (run, view) in manifest.runs.iter().zip(views.iter()) {
        if !matches!(view.phase, RunPhase::Pending | RunPhase::Retry) || features.contains_key(&run.feature_key) {
            continue;
        }
        let mut st = tracker.feature_state(&run.feature_key);
        // (Slurm queues it; locally it needs a free slot like any run.)
        let room = queues || busy < slots;
        if matches!(st, FeatureState::Unclaimed) && room && tracker.state.claim_features(&run.feature_key)? {
            let name = SweepState::feature_name(&run.feature_key);
            let cfg_path = write_config(&opts.work_dir, &name, &run.config_toml)?;
            let spec = JobSpec {
                name: name.clone(),
                command: JobCommand::Task { args: vec!["features".to_string(), cfg_path.display().to_string()] },
                nodes: vec![],
                after: vec![],
                dependency: Dependency::AfterAny,
            };
            let job = launcher.submit(std::slice::from_ref(&spec))?.remove(0);
            tracker.state.record_features(&run.feature_key, &job)?;
            tracker.note_feature_job(&run.feature_key, &job);
            tracing::info!(cache = name, job = job.id, "feature-cache job launched");
            submitted += 1;
            st = FeatureState::Running(job);
        }
        // Locally the cache job holds a slot. On Slurm the runs submitted behind it take
        // their slots only once it has ended, so it is not counted twice.
        if matches!(st, FeatureState::Running(_)) && !queues {
            busy += 1;
        }
        features.insert(run.feature_key.clone(), st);
    }
    // The runs to launch this pass, in plan order: (run index, attempt, placement, after).
    let mut picked: Vec<(usize, usize, Vec<usize>, Vec<JobRecord>)> = vec![];
    // A cluster that queues jobs gets every run at once (in plan order) unless the
    // coordinator places runs on named nodes itself, which needs free nodes.
    let cap_slots = !queues || !opts.node_names.is_empty();
    // A search's `max_concurrent`: runs training at once.
    let mut active = views.iter().filter(|v| v.phase == RunPhase::Active).count();
    let max_active = manifest.search.as_ref().and_then(|s| s.max_concurrent).unwrap_or(usize::MAX);
    for (idx, (run, view)) in manifest.runs.iter().zip(views.iter()).enumerate() {
        if !matches!(view.phase, RunPhase::Pending | RunPhase::Retry) || active >= max_active {
            continue;
        }
        // After its feature-cache job: submitted now with a dependency where the cluster
        // queues jobs (Slurm), else once the job has ended.
        let after: Vec<JobRecord> = match features.get(&run.feature_key) {
            Some(FeatureState::Running(job)) if queues => vec![job.clone()],
            Some(FeatureState::Ready) | None => vec![],
            Some(_) => continue,
        };
        // A run wider than the whole cluster still runs, alone.
        if cap_slots && busy > 0 && busy + run.ranks > slots {
            continue;
        }
        let (count, m) = opts.shape.layout(run.ranks);
        let m = m.min(per_node);
        let placement = if opts.node_names.is_empty() {
            vec![]
        } else {
            let free: Vec<usize> = used.iter().map(|u| per_node.saturating_sub(*u)).collect();
            match place(&free, count, m) {
                Some(p) => p,
                None => continue, // its nodes are busy: a later pass places it
            }
        };
        for &i in &placement {
            used[i] += m;
        }
        busy += run.ranks;
        active += 1;
        picked.push((idx, view.attempts, placement, after));
    }
    // Claimed in one batch (so that two coordinators never launch the same attempt).
    // The slots of an attempt another coordinator claimed first stay unused until the
    // next pass.
    let attempts: Vec<(&str, usize, bool)> =
        picked.iter().map(|(i, a, ..)| (manifest.runs[*i].id.as_str(), *a, views[*i].free_retry)).collect();
    let won = tracker.state.claim_many(&attempts)?;
    let mut claimed: Vec<(usize, JobSpec)> = vec![];
    for ((idx, attempt, placement, after), won) in picked.into_iter().zip(won) {
        if !won {
            continue; // another coordinator launches it
        }
        let run = &manifest.runs[idx];
        let config = write_config(&opts.work_dir, &run.id, &run.config_toml)?;
        claimed.push((
            idx,
            JobSpec {
                name: run.id.clone(),
                command: JobCommand::Run { config, attempt, ranks: run.ranks },
                nodes: placement.iter().map(|&i| opts.node_names[i].clone()).collect(),
                after,
                dependency: Dependency::AfterAny,
            },
        ));
    }
    // Alike runs (same ranks, nodes and dependencies) go out together: one job array on
    // Slurm, at most max_array_size tasks each. Groups keep plan order.
    let mut groups: Vec<Vec<usize>> = vec![];
    for (k, (_, spec)) in claimed.iter().enumerate() {
        let alike = |g: &Vec<usize>| {
            let s0 = &claimed[g[0]].1;
            g.len() < opts.max_array_size.max(1)
                && s0.ranks() == spec.ranks()
                && s0.nodes == spec.nodes
                && s0.after == spec.after
        };
        match groups.iter_mut().find(|g| alike(g)) {
            Some(g) => g.push(k),
            None => groups.push(vec![k]),
        }
    }
    for g in groups {
        let specs: Vec<JobSpec> = g.iter().map(|&k| claimed[k].1.clone()).collect();
        let jobs = launcher.submit(&specs)?;
        // Recorded as soon as the group is out (one batch per kind of record), before
        // the next group is submitted.
        let records: Vec<(&str, usize, &JobRecord)> = g
            .iter()
            .zip(&jobs)
            .map(|(&k, job)| (manifest.runs[claimed[k].0].id.as_str(), claimed[k].1.attempt(), job))
            .collect();
        tracker.state.record_jobs(&records)?;
        for (&k, mut job) in g.iter().zip(jobs) {
            // Kept with the run now; the views and the tracker's cache need only the
            // record (a script of kilobytes, cloned per run and cycle, tripled the
            // steady cycle of a 2,000-run sweep).
            job.submitted = None;
            let (idx, spec) = &claimed[k];
            let id = &manifest.runs[*idx].id;
            let attempt = spec.attempt();
            tracker.note_job(id, attempt, &job);
            tracing::info!(run = id, attempt, job = job.id, nodes = spec.nodes.join(","), "launched");
            let view = &mut views[*idx];
            view.phase = RunPhase::Active;
            view.attempts = attempt + 1;
            view.job = Some(job);
            submitted += 1;
        }
    }
    Ok(submitted)
}

/// Writes a job's resolved config where its job reads it; returns the absolute path.
fn write_config(dir: &std::path::Path, name: &str, toml: &str) -> Result<PathBuf, SweepError> {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).map_err(|source| SweepError::Io { path: path.clone(), source })?;
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

/// Copies the log of every ended job (a failed attempt before its retry, a finished run)
/// into the store beside the run, `runs/<id>/logs/<job id>.log`, so it outlives the
/// scratch folder and the machine. `kept` remembers what this coordinator already checked.
fn keep_logs(store: &Store, views: &[RunView], kept: &mut std::collections::BTreeSet<String>) {
    // (run id, store key, log file) of each ended job not checked yet.
    let mut ended: Vec<(&str, String, &std::path::Path)> = vec![];
    for v in views {
        let Some(job) = &v.job else { continue };
        if v.phase == RunPhase::Active || !v.job_ended {
            continue;
        }
        let key = crate::run::RunPaths::new(v.id.as_str()).logs(&job.id);
        if kept.insert(key.clone()) {
            ended.push((v.id.as_str(), key, job.log.as_path()));
        }
    }
    if ended.is_empty() {
        return;
    }
    // One batch of HEADs, then one of PUTs (many runs can end in one cycle).
    let keys: Vec<&String> = ended.iter().map(|(_, k, _)| k).collect();
    let there = match store.exists_many(&keys) {
        Ok(t) => t,
        Err(e) => return tracing::warn!("store: {}", crate::error_text::chain(&e)),
    };
    let mut logs: Vec<(String, bytes::Bytes)> = vec![];
    for ((run, key, file), there) in ended.into_iter().zip(there) {
        // Already kept, or the log is on a file system this machine does not see.
        if let (false, Ok(bytes)) = (there, std::fs::read(file)) {
            tracing::debug!(run, "keeping log {}", file.display());
            logs.push((key, bytes.into()));
        }
    }
    if let Err(e) = store.put_many(logs) {
        tracing::warn!("keeping job logs: {}", crate::error_text::chain(&e));
    }
}

/// A report job behind every active run's job (Slurm afterok: it runs only if all of them
/// succeed), recorded in `sweeps/<name>/report.json`. `report_args` is the `ras` command
/// line that writes the report. None when no run is active (nothing to wait for).
pub fn submit_report_job(
    store: &Store,
    manifest: &Manifest,
    launcher: &mut dyn Launcher,
    views: &[RunView],
    report_args: Vec<String>,
) -> Result<Option<JobRecord>, SweepError> {
    let after: Vec<JobRecord> =
        views.iter().filter(|v| v.phase == RunPhase::Active).filter_map(|v| v.job.clone()).collect();
    if after.is_empty() {
        return Ok(None);
    }
    let spec = JobSpec {
        name: format!("report-{}", manifest.name),
        command: JobCommand::Task { args: report_args },
        nodes: vec![],
        after,
        dependency: Dependency::AfterOk,
    };
    let job = launcher.submit(std::slice::from_ref(&spec))?.remove(0);
    store.put_json(&super::SweepPaths::new(manifest.name.as_str()).report(), &job)?;
    Ok(Some(job))
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;
