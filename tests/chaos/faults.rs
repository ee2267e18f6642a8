//! The injector (seeded: the same seed draws the same faults at the same moments; what
//! they meet depends on timing) and the supervisor that keeps a coordinator of each sweep
//! running until the sweep is done.

use crate::world::{World, MAX_RETRIES};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most this long for the sweeps to finish once the faults stop.
const SETTLE_S: u64 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    KillRank,
    PreemptJob,
    ScancelJob,
    KillCoordinator,
    StopS3,
    RestartS3,
    StopSlurmctld,
    KillSlurmd,
    DiskFull,
}

/// Each kind with its weight in the draw: the faults that hit one run (a rank, a job)
/// are drawn most; the long outages of the whole system (the store, the controller:
/// 10-40 s each, every run waits) least, or they would leave the sweeps no time to run.
const KINDS: [(Kind, u32); 9] = [
    (Kind::KillRank, 4),
    (Kind::PreemptJob, 3),
    (Kind::ScancelJob, 1),
    (Kind::KillCoordinator, 2),
    (Kind::StopS3, 1),
    (Kind::RestartS3, 1),
    (Kind::StopSlurmctld, 1),
    (Kind::KillSlurmd, 1),
    (Kind::DiskFull, 1),
];

fn draw(rng: &mut impl Rng) -> Kind {
    let total: u32 = KINDS.iter().map(|k| k.1).sum();
    let mut x = rng.random_range(0..total);
    for (kind, w) in KINDS {
        if x < w {
            return kind;
        }
        x -= w;
    }
    unreachable!()
}

/// One fault as injected.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub kind: Kind,
    /// What it hit: a run id, a job id, a node, "s3", ...
    pub target: String,
    /// The run it hit, when it hit one.
    pub run: Option<String>,
    /// Seconds since the world was up.
    pub start_s: f64,
    pub end_s: f64,
    pub detail: String,
}

/// What a chaos run did.
#[derive(Debug, Default, Serialize)]
pub struct Log {
    pub faults: Vec<Fault>,
    /// (seconds, run id): a run made progress (a new checkpoint, or complete).
    pub progress: Vec<(f64, String)>,
    pub coordinator_starts: usize,
    /// Why the sweeps did not finish, if they did not.
    pub unfinished: Option<String>,
    /// The kill -9s each run's ranks took (they may use its retries).
    pub kills_per_run: BTreeMap<String, usize>,
    /// What the operator did (nodes resumed).
    pub operator: Vec<String>,
}

impl Log {
    /// Faults that overlapped another in time.
    pub fn overlapping(&self) -> usize {
        let f = &self.faults;
        (0..f.len())
            .filter(|&i| (0..f.len()).any(|j| j != i && f[j].start_s < f[i].end_s && f[i].start_s < f[j].end_s))
            .count()
    }

    /// Seconds from a fault's end to the next progress of what it hit (its run, or any
    /// run for a fault of the whole system); None when nothing progressed after it.
    pub fn recovery_s(&self, f: &Fault) -> Option<f64> {
        self.progress
            .iter()
            .find(|(t, r)| *t >= f.end_s && f.run.as_ref().is_none_or(|run| run == r))
            .map(|(t, _)| t - f.end_s)
    }
}

struct Shared<'w> {
    world: &'w World,
    log: Mutex<Log>,
    /// Targets a fault is acting on now ("s3", "slurmctld", "slurmd-n1", "disk", "coordinator-0").
    busy: Mutex<Vec<String>>,
    stop: AtomicBool,
    /// Nodes seen drained or down, since when (seconds).
    drained: Mutex<BTreeMap<String, f64>>,
}

impl Shared<'_> {
    fn take(&self, target: &str) -> bool {
        let mut b = self.busy.lock().unwrap();
        if b.iter().any(|t| t == target) {
            return false;
        }
        b.push(target.to_string());
        true
    }

    fn give(&self, target: &str) {
        self.busy.lock().unwrap().retain(|t| t != target);
    }

    fn record(&self, kind: Kind, target: &str, run: Option<String>, start_s: f64, detail: String) {
        let end_s = self.world.now();
        println!("chaos: {start_s:7.1}-{end_s:7.1} s {kind:?} {target} {detail}");
        self.log.lock().unwrap().faults.push(Fault { kind, target: target.into(), run, start_s, end_s, detail });
    }

    /// Sleeps `d`, waking early when the chaos is over (faults end with it).
    fn hold(&self, d: Duration) {
        let t = Instant::now();
        while t.elapsed() < d && !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn sh(script: &str, w: &World) -> bool {
    Command::new("bash").args(["-c", script]).env("SLURM2_DIR", &w.slurm.dir).status().is_ok_and(|s| s.success())
}

/// A Slurm command given at most 5 s (with the controller down, squeue and scancel wait
/// for it; the injector must go on meanwhile).
fn slurm_cmd(cmd: &str) -> Command {
    let mut c = Command::new("timeout");
    c.args(["5", cmd]);
    c
}

/// Running jobs of this Slurm: (job id, name).
fn running_jobs() -> Vec<(String, String)> {
    let out = slurm_cmd("squeue").args(["-h", "-t", "R", "-o", "%i %j"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.lines().filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string()))).collect()
}

/// Tries one fault of `kind`; false when it had nothing to act on now (busy target, no
/// running job, ...). Faults with a duration run in a thread of their own (they overlap).
fn inject<'s, 'w>(s: &'s Shared<'w>, scope: &'s std::thread::Scope<'s, '_>, kind: Kind, rng: &mut impl Rng) -> bool
where
    'w: 's,
{
    let w = s.world;
    let t = w.now();
    let slurm = w.slurm.dir.clone();
    match kind {
        Kind::KillRank => {
            let kills = s.log.lock().unwrap().kills_per_run.clone();
            // Each run keeps one retry of its own for what the other faults may cost it.
            let ranks: Vec<_> = w
                .ranks()
                .into_iter()
                .filter(|(_, run, _)| kills.get(run).copied().unwrap_or(0) + 1 < MAX_RETRIES)
                .collect();
            if ranks.is_empty() {
                return false;
            }
            let (pid, run, rank) = ranks[rng.random_range(0..ranks.len())].clone();
            if !Command::new("kill").args(["-9", &pid.to_string()]).status().is_ok_and(|s| s.success()) {
                return false;
            }
            *s.log.lock().unwrap().kills_per_run.entry(run.clone()).or_default() += 1;
            s.record(kind, &format!("pid {pid}"), Some(run), t, format!("rank {rank}"));
        }
        Kind::PreemptJob | Kind::ScancelJob => {
            let jobs: Vec<_> = running_jobs().into_iter().filter(|(_, n)| !n.contains("features")).collect();
            if jobs.is_empty() {
                return false;
            }
            let (job, name) = jobs[rng.random_range(0..jobs.len())].clone();
            let run = name.strip_prefix("ras-").map(str::to_string);
            let args: Vec<&str> =
                if kind == Kind::PreemptJob { vec!["--signal=TERM", &job] } else { vec![job.as_str()] };
            if !slurm_cmd("scancel").args(&args).status().is_ok_and(|s| s.success()) {
                return false;
            }
            let what = if kind == Kind::PreemptJob { "SIGTERM to its steps (preemption)" } else { "scancel" };
            s.record(kind, &format!("job {job}"), run, t, what.into());
        }
        Kind::KillCoordinator => {
            let i = rng.random_range(0..w.sweeps.len());
            let target = format!("coordinator-{i}");
            if !s.take(&target) {
                return false;
            }
            let down = Duration::from_millis(rng.random_range(500..5000));
            let killed = {
                let mut cs = w.coordinators.lock().unwrap();
                let c = &mut cs[i];
                let running = !c.done && c.child.as_mut().is_some_and(|ch| ch.try_wait().ok().flatten().is_none());
                if running {
                    let mut ch = c.child.take().unwrap();
                    let _ = ch.kill(); // SIGKILL
                    let _ = ch.wait();
                    c.down_until = Some(Instant::now() + down);
                }
                running
            };
            s.give(&target);
            if !killed {
                return false;
            }
            s.record(
                kind,
                &w.sweeps[i].name,
                None,
                t,
                format!("kill -9, started again after {:.1} s", down.as_secs_f64()),
            );
        }
        Kind::StopS3 | Kind::RestartS3 | Kind::StopSlurmctld | Kind::KillSlurmd | Kind::DiskFull => {
            let target = match kind {
                Kind::StopS3 | Kind::RestartS3 => "s3".to_string(),
                Kind::StopSlurmctld => "slurmctld".into(),
                Kind::KillSlurmd => format!("slurmd-n{}", rng.random_range(1..=2)),
                _ => "disk".into(),
            };
            if !s.take(&target) {
                return false;
            }
            let secs = match kind {
                Kind::StopS3 => rng.random_range(10.0..40.0),
                Kind::RestartS3 => rng.random_range(0.0..2.0),
                Kind::StopSlurmctld => rng.random_range(20.0..40.0),
                Kind::KillSlurmd => rng.random_range(3.0..15.0),
                _ => rng.random_range(1.0..4.0),
            };
            let d = Duration::from_secs_f64(secs);
            scope.spawn(move || {
                let detail = match kind {
                    Kind::StopS3 => {
                        s.world.s3.lock().unwrap().signal("-STOP");
                        s.hold(d);
                        s.world.s3.lock().unwrap().signal("-CONT");
                        format!("SIGSTOP for {secs:.1} s")
                    }
                    Kind::RestartS3 => {
                        s.world.s3.lock().unwrap().kill();
                        std::thread::sleep(d);
                        s.world.s3.lock().unwrap().spawn();
                        format!("killed, started again on its port and folder after {secs:.1} s")
                    }
                    Kind::StopSlurmctld => {
                        let lib = crate::common::repo().join("cluster/slurm-lib.sh");
                        sh(&format!(". {}; stop {}/run/slurmctld.pid slurmctld", lib.display(), slurm.display()), w);
                        s.hold(d);
                        let up = sh("slurmctld; for _ in $(seq 1 150); do squeue -h >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1", w);
                        format!("stopped for {secs:.1} s (back: {up})")
                    }
                    Kind::KillSlurmd => {
                        let node = target.trim_start_matches("slurmd-");
                        let pidfile = slurm.join(format!("run/slurmd-{node}.pid"));
                        let pid = std::fs::read_to_string(&pidfile).unwrap_or_default().trim().to_string();
                        let _ = Command::new("kill").args(["-9", &pid]).status();
                        s.hold(d);
                        let up = sh(&format!("slurmd -N {node}"), w);
                        format!("slurmd of {node} killed (-9), started again after {secs:.1} s ({up})")
                    }
                    _ => {
                        // The disk of the S3 server full for a moment: the writes it takes
                        // meanwhile fail with ENOSPC (and are retried by their clients).
                        let filler = s.world.dir.join("s3/filler");
                        let free = free_bytes(&s.world.dir.join("s3"));
                        let ok = Command::new("fallocate")
                            .args(["-l", &free.saturating_sub(4096).max(4096).to_string()])
                            .arg(&filler)
                            .status()
                            .is_ok_and(|s| s.success());
                        s.hold(d);
                        let _ = std::fs::remove_file(&filler);
                        format!("{} bytes filled for {secs:.1} s (fallocate ok: {ok})", free)
                    }
                };
                s.record(kind, &target, None, t, detail);
                s.give(&target);
            });
        }
    }
    true
}

fn free_bytes(path: &std::path::Path) -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(0)
}

/// Runs the sweeps to the end with faults injected for `window`, then lets them finish
/// (at most SETTLE_S more). Returns the log.
pub fn run(w: &World, seed: u64, window: Duration) -> Log {
    let shared = Shared {
        world: w,
        log: Mutex::new(Log::default()),
        busy: Mutex::new(vec![]),
        stop: AtomicBool::new(false),
        drained: Mutex::new(BTreeMap::new()),
    };
    let s = &shared;
    let done = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        // The injector.
        let d2 = done.clone();
        scope.spawn(move || {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let t = Instant::now();
            // The first fault once the runs are under way.
            s.hold(Duration::from_secs(8));
            while t.elapsed() < window && !d2.load(Ordering::SeqCst) {
                let kind = draw(&mut rng);
                // A fault with nothing to act on now is drawn again a moment later.
                if !inject(s, scope, kind, &mut rng) {
                    s.hold(Duration::from_millis(300));
                    continue;
                }
                s.hold(Duration::from_secs_f64(rng.random_range(1.0..4.0)));
            }
            s.stop.store(true, Ordering::SeqCst);
        });
        supervise(s, window + Duration::from_secs(SETTLE_S));
        done.store(true, Ordering::SeqCst);
        s.stop.store(true, Ordering::SeqCst);
    });
    shared.log.into_inner().unwrap()
}

/// What a site's operator (or its health check) does: a node Slurm drained after a
/// fault (seen: "Kill task failed" when slurmd was killed while a step was being torn
/// down) is resumed once it has been drained for 10 s. Each resume is in the log.
fn resume_drained(s: &Shared) {
    let out = slurm_cmd("sinfo").args(["-h", "-N", "-o", "%N|%T|%E"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let now = s.world.now();
    let mut seen = s.drained.lock().unwrap();
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let [node, state, reason] = f[..] else { continue };
        if !state.starts_with("drain") && !state.starts_with("down") {
            seen.remove(node);
            continue;
        }
        let since = *seen.entry(node.to_string()).or_insert(now);
        if now - since >= 10.0 {
            let ok = slurm_cmd("scontrol")
                .args(["update", &format!("nodename={node}"), "state=resume"])
                .status()
                .is_ok_and(|st| st.success());
            println!(
                "chaos: {now:7.1} s node {node} {state} ({reason}) for {:.0} s: resumed by the operator ({ok})",
                now - since
            );
            s.log
                .lock()
                .unwrap()
                .operator
                .push(format!("{now:.1} s: resumed {node}, {state} since {since:.1} s ({reason})"));
            seen.remove(node);
        }
    }
}

/// Keeps a coordinator of each sweep running until every run of it is complete (started
/// again after it exits: killed, or ended with runs a person cancelled, which it then
/// asks for again), and notes each run's progress. Gives up after `limit`.
fn supervise(s: &Shared, limit: Duration) {
    let w = s.world;
    let t = Instant::now();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let runs = w.all_runs();
        for (_, run) in &runs {
            let n = std::fs::read_dir(w.bucket().join(format!("runs/{run}/checkpoints/unified")))
                .map(|rd| rd.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count())
                .unwrap_or(0)
                + usize::from(w.complete(run));
            if seen.insert(run.clone(), n).is_none_or(|before| before < n) && n > 0 {
                s.log.lock().unwrap().progress.push((w.now(), run.clone()));
            }
        }
        let mut all_done = true;
        {
            let mut cs = w.coordinators.lock().unwrap();
            for (i, c) in cs.iter_mut().enumerate() {
                if c.done {
                    continue;
                }
                all_done = false;
                let exited = match c.child.as_mut() {
                    Some(ch) => ch.try_wait().ok().flatten().map(Some),
                    None => Some(None),
                };
                let Some(status) = exited else { continue };
                c.child = None;
                let ids = w.run_ids(i);
                if status.is_some() && !ids.is_empty() && ids.iter().all(|r| w.complete(r)) {
                    c.done = true;
                    continue;
                }
                if c.down_until.is_some_and(|u| Instant::now() < u) {
                    continue;
                }
                c.down_until = None;
                if let Some(st) = status {
                    println!(
                        "chaos: {:7.1} s coordinator of {} exited ({st}); started again",
                        w.now(),
                        w.sweeps[i].name
                    );
                }
                c.child = Some(w.start_coordinator(i, w.has_cancelled_runs(i)));
                c.starts += 1;
                s.log.lock().unwrap().coordinator_starts += 1;
            }
        }
        if all_done {
            return;
        }
        resume_drained(s);
        if t.elapsed() > limit {
            s.log.lock().unwrap().unfinished = Some(format!("the sweeps did not finish within {} s", limit.as_secs()));
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
