//! `ras doctor --cluster PROFILE`: does this profile work, before a sweep spends hours
//! finding out? One small job through the profile's own launcher (the same `Launcher`,
//! template, setup lines and srun options a sweep's runs get) runs `ras doctor-node` on
//! every rank. Each rank writes what it saw to `<dir>/ranks/rank-<r>.json` (a folder the
//! submitting side reads back: like a sweep's logs, it must be on a filesystem the nodes
//! share), in two steps: first that it started (so a rank that then hangs in a collective
//! still tells where it ran and what it saw), then the collectives' results.
//!
//! The checks (each PASS, FAIL, or SKIP with the reason):
//! - submit:    the launcher accepted the job;
//! - start:     every rank started (the binary and its libraries load on the nodes);
//! - placement: the ranks span as many nodes as asked;
//! - cuda: libtorch sees CUDA on every rank (device count, GPU names), when the
//!   profile has GPUs;
//! - mpi: an all-reduce of one float per rank (rank + 1) over every rank equals
//!   n(n+1)/2, and a larger one of `elements` floats is exact too (timed);
//! - nccl: the same through NCCL on each rank's GPU (the training path's backend);
//!   SKIP where no GPU is visible.

mod node;

pub use node::doctor_node;
use node::NO_GPU;

use crate::config::ClusterProfile;
use crate::launch::{Dependency, JobCommand, JobRecord, JobSpec, JobState, Launcher};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Which collectives `ras doctor-node` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectiveCheck {
    /// MPI on CPU tensors, then NCCL on the rank's GPU when one is visible.
    Auto,
    Mpi,
    /// NCCL only (at one rank without MPI: the GPU machine's check).
    Nccl,
    /// None: only that the binary starts and what it sees.
    None,
}

crate::config::kinds::string_enum!(
    CollectiveCheck,
    "--collective",
    [(Auto, "auto"), (Mpi, "mpi"), (Nccl, "nccl"), (None, "none")]
);

/// One collective's result on one rank.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CollectiveResult {
    pub backend: String,
    pub world_size: usize,
    /// The one-element all-reduce: this rank's sum (None: it did not run) and the exact one.
    pub sum: Option<f64>,
    pub expected: f64,
    /// The `elements`-long all-reduce matched element by element.
    pub large_ok: bool,
    pub elements: usize,
    /// Wall time of the large all-reduce (synchronised), milliseconds.
    pub large_ms: f64,
    pub ok: bool,
    /// Why it could not run (init failed, no GPU); None when it ran.
    pub error: Option<String>,
}

/// What one rank saw (`<dir>/ranks/rank-<r>.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeReport {
    pub rank: usize,
    pub local_rank: usize,
    pub world_size: usize,
    pub node: String,
    pub host: String,
    pub slurm_job_id: Option<String>,
    pub cuda_visible_devices: Option<String>,
    pub ras_version: String,
    pub libtorch_version: String,
    pub cuda_available: bool,
    pub cuda_devices: usize,
    pub gpu_names: Vec<String>,
    pub mpi: Option<CollectiveResult>,
    pub nccl: Option<CollectiveResult>,
    /// The rank got through every check it was asked for (the file's last write).
    pub finished: bool,
}

/// What `ras doctor` submits and how long it waits.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// Ranks of the check job; default: 2 across 2 nodes when the profile has them, else
    /// 2 on one node when it holds 2, else 1.
    pub ranks: Option<usize>,
    /// Nodes to spread them over (default as above).
    pub nodes: Option<usize>,
    /// The profile's GPUs are not real (a test cluster): no CUDA is then no failure.
    pub cpu: bool,
    /// Longest wait for the job (queue time included) before it is cancelled.
    pub timeout: Duration,
    /// Where the job's script, log and rank files go (shared with the nodes).
    pub dir: PathBuf,
    pub elements: usize,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: &'static str,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, status: &'static str, detail: impl Into<String>) -> Self {
        Self { name, status, detail: detail.into() }
    }
}

pub struct DoctorOutcome {
    pub checks: Vec<Check>,
    pub ranks: Vec<NodeReport>,
    pub job: Option<JobRecord>,
    /// The job's log (last lines), shown when a check failed.
    pub log_tail: Vec<String>,
    pub dir: PathBuf,
}

impl DoctorOutcome {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != "FAIL")
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for c in &self.checks {
            s.push_str(&format!("{:<10} {:<4}  {}\n", c.name, c.status, c.detail));
        }
        s
    }

    /// For stderr when a check failed: the job's log (last lines) and the error; where
    /// the job's files are when they are `kept` (`ras doctor --dir`), else how to keep them.
    pub fn render_failure(&self, kept: bool) -> String {
        let mut s = String::new();
        if !self.log_tail.is_empty() {
            let log = self.job.as_ref().map(|j| j.log.display().to_string()).unwrap_or_default();
            s += &format!("--- the job's log ({log}), last lines:\n");
            for l in &self.log_tail {
                s += &format!("{l}\n");
            }
        }
        let failed = self.checks.iter().filter(|c| c.status == "FAIL").count();
        let files = if kept {
            format!("the job's files are in {}", self.dir.display())
        } else {
            "`ras doctor --dir DIR` keeps the job's files".to_string()
        };
        s + &format!("error: {failed} check(s) failed; {files}\n")
    }
}

/// What `ras doctor` prints before it submits: the profile `cluster` and the job's shape.
pub fn render_start(
    cluster: &std::path::Path,
    profile: &ClusterProfile,
    opts: &DoctorOptions,
    exe: &std::path::Path,
) -> String {
    let (ranks, nodes) = job_shape(profile, opts);
    format!(
        "ras doctor: {} ({} launcher, {} node(s) x {} slot(s)): a job of {ranks} rank(s) on {nodes} node(s) running {} doctor-node\n",
        cluster.display(),
        profile.launcher,
        profile.nodes,
        profile.ranks_per_node(),
        exe.display()
    )
}

/// (ranks, nodes) of the check job.
pub fn job_shape(profile: &ClusterProfile, opts: &DoctorOptions) -> (usize, usize) {
    let per_node = profile.ranks_per_node();
    let nodes = opts.nodes.unwrap_or(if profile.nodes >= 2 { 2 } else { 1 }).clamp(1, profile.nodes.max(1));
    let ranks = opts.ranks.unwrap_or(if nodes >= 2 { nodes } else { per_node.min(2) }).max(nodes);
    (ranks, nodes)
}

/// Submits the check job through `launcher`, waits for it, reads what the ranks wrote.
pub fn doctor(
    profile: &ClusterProfile,
    launcher: &mut dyn Launcher,
    opts: &DoctorOptions,
    name: &str,
) -> anyhow::Result<DoctorOutcome> {
    let (ranks, nodes) = job_shape(profile, opts);
    let rank_dir = opts.dir.join("ranks");
    std::fs::create_dir_all(&rank_dir)?;
    let rank_dir = std::fs::canonicalize(&rank_dir)?;
    let expect_gpu = profile.gpus_per_node > 0 && !opts.cpu;
    let args = vec![
        "doctor-node".to_string(),
        "--out".into(),
        rank_dir.display().to_string(),
        "--collective".into(),
        CollectiveCheck::Auto.as_str().into(),
        "--elements".into(),
        opts.elements.to_string(),
        // The job's name in its command line: how a local job is told from a recycled pid.
        "--tag".into(),
        name.to_string(),
    ];
    let spec = JobSpec {
        name: name.to_string(),
        command: JobCommand::Ranks { args, ranks, nodes },
        nodes: (0..nodes).filter_map(|i| profile.node_names.get(i).cloned()).collect(),
        after: vec![],
        dependency: Dependency::AfterAny,
    };
    let mut out = DoctorOutcome { checks: vec![], ranks: vec![], job: None, log_tail: vec![], dir: opts.dir.clone() };
    let shape = format!(
        "{ranks} rank{} on {nodes} node{}",
        if ranks == 1 { "" } else { "s" },
        if nodes == 1 { "" } else { "s" }
    );
    let job = match launcher.submit(std::slice::from_ref(&spec)) {
        Ok(mut v) if !v.is_empty() => v.remove(0),
        Ok(_) => anyhow::bail!("the launcher returned no job"),
        Err(e) => {
            out.checks.push(Check::new(
                "submit",
                "FAIL",
                format!("{} launcher: {}", launcher.kind(), crate::error_text::chain(&e)),
            ));
            return Ok(out);
        }
    };
    out.checks.push(Check::new(
        "submit",
        "PASS",
        format!("{} job {} ({shape}), log {}", launcher.kind(), job.id, job.log.display()),
    ));
    // Wait for the job to end; a job still queued or running at the deadline is cancelled.
    let t0 = Instant::now();
    let mut said_queued = false;
    // A local job can read as ended for an instant right after its start: an end counts
    // when two polls half a second apart agree.
    let mut ended_once = false;
    std::thread::sleep(Duration::from_millis(500));
    let ended = loop {
        let state = launcher.poll(&[&job])?.pop().unwrap_or(JobState::Ended);
        if state.is_ended() && ended_once {
            break true;
        }
        ended_once = state.is_ended();
        match state {
            JobState::Queued if !said_queued => {
                eprintln!(
                    "job {} is waiting in the queue (up to {:.0} s: --timeout)",
                    job.id,
                    opts.timeout.as_secs_f64()
                );
                said_queued = true;
            }
            _ => {}
        }
        if t0.elapsed() > opts.timeout {
            let _ = launcher.cancel(&[&job]);
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    out.log_tail = std::fs::read_to_string(&job.log)
        .map(|t| t.lines().rev().take(25).collect::<Vec<_>>().into_iter().rev().map(String::from).collect())
        .unwrap_or_default();
    out.job = Some(job.clone());
    let mut reports: Vec<NodeReport> = vec![];
    for r in 0..ranks {
        let path = rank_dir.join(format!("rank-{r}.json"));
        let Ok(bytes) = std::fs::read(&path) else { continue };
        // A rank file that does not parse is a different ras on the node: say so.
        let report = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} does not parse (another ras version on the node?)", path.display()))?;
        reports.push(report);
    }
    reports.sort_by_key(|r| r.rank);
    checks_from_reports(&mut out.checks, &reports, ranks, nodes, expect_gpu, ended, opts.timeout);
    out.ranks = reports;
    Ok(out)
}

/// The table's lines after `submit`, from the rank files.
pub fn checks_from_reports(
    checks: &mut Vec<Check>,
    reports: &[NodeReport],
    ranks: usize,
    nodes: usize,
    expect_gpu: bool,
    ended: bool,
    timeout: Duration,
) {
    let where_ = |r: &NodeReport| format!("rank {} on {}", r.rank, r.node);
    if !ended {
        checks.push(Check::new(
            "finish",
            "FAIL",
            format!("the job had not ended after {:.0} s (queued or hung): cancelled", timeout.as_secs_f64()),
        ));
    }
    if reports.len() < ranks {
        let seen: Vec<usize> = reports.iter().map(|r| r.rank).collect();
        let missing: Vec<String> = (0..ranks).filter(|r| !seen.contains(r)).map(|r| r.to_string()).collect();
        checks.push(Check::new(
            "start",
            "FAIL",
            format!(
                "{}/{ranks} ranks started; none from rank(s) {} (the binary or its libraries do not load there, or the job never ran: see the log)",
                reports.len(),
                missing.join(", ")
            ),
        ));
        if reports.is_empty() {
            return;
        }
    } else {
        let v = &reports[0];
        let list: Vec<String> = reports.iter().map(where_).collect();
        checks.push(Check::new(
            "start",
            "PASS",
            format!(
                "{ranks}/{ranks} ranks started: {} (ras {}, libtorch {})",
                list.join(", "),
                v.ras_version,
                v.libtorch_version
            ),
        ));
    }
    let mut distinct: Vec<&str> = reports.iter().map(|r| r.node.as_str()).collect();
    distinct.sort();
    distinct.dedup();
    let status = if distinct.len() >= nodes { "PASS" } else { "FAIL" };
    checks.push(Check::new(
        "placement",
        status,
        format!("{} node(s) of {nodes} asked: {}", distinct.len(), distinct.join(", ")),
    ));
    let cuda: Vec<String> = reports
        .iter()
        .map(|r| {
            let cvd = r.cuda_visible_devices.as_deref().unwrap_or("unset");
            if r.cuda_available {
                format!(
                    "{}: {} GPU(s) [{}] (CUDA_VISIBLE_DEVICES={cvd})",
                    where_(r),
                    r.cuda_devices,
                    r.gpu_names.join(", ")
                )
            } else {
                format!("{}: no CUDA (CUDA_VISIBLE_DEVICES={cvd})", where_(r))
            }
        })
        .collect();
    let all_cuda = reports.iter().all(|r| r.cuda_available);
    let status = match (expect_gpu, all_cuda) {
        (_, true) => "PASS",
        (true, false) => "FAIL",
        (false, false) => "SKIP",
    };
    let hint = if status == "FAIL" {
        "; libtorch sees no GPU: a CPU-only build (build against the CUDA libtorch), no driver (libcuda.so) on the node, or no GPU given to the job"
    } else if status == "SKIP" {
        "; CPU-only check"
    } else {
        ""
    };
    checks.push(Check::new("cuda", status, format!("{}{hint}", cuda.join("; "))));
    for (name, pick) in [("mpi", 0usize), ("nccl", 1)] {
        let results: Vec<(&NodeReport, Option<&CollectiveResult>)> =
            reports.iter().map(|r| (r, if pick == 0 { r.mpi.as_ref() } else { r.nccl.as_ref() })).collect();
        checks.push(collective_check(name, &results, ranks, nodes, expect_gpu));
    }
}

fn collective_check(
    name: &'static str,
    results: &[(&NodeReport, Option<&CollectiveResult>)],
    ranks: usize,
    nodes: usize,
    expect_gpu: bool,
) -> Check {
    if results.iter().all(|(_, c)| c.is_none()) {
        return Check::new(name, "SKIP", "not run (see the rank files)");
    }
    if name == "nccl" && results.iter().all(|(_, c)| c.and_then(|c| c.error.as_deref()) == Some(NO_GPU)) {
        return Check::new(name, if expect_gpu { "FAIL" } else { "SKIP" }, "no GPU: NCCL needs one per rank");
    }
    let across = if nodes >= 2 { format!("across {nodes} nodes") } else { "on one node".to_string() };
    let bad: Vec<String> = results
        .iter()
        .filter_map(|(r, c)| match c {
            None => Some(format!("rank {}: did not finish (hung or crashed: see the log)", r.rank)),
            Some(c) if !c.ok => Some(match &c.error {
                Some(e) => format!("rank {}: {e}", r.rank),
                None => format!(
                    "rank {}: sum {:?} (expected {}), large all-reduce {}",
                    r.rank,
                    c.sum,
                    c.expected,
                    if c.large_ok { "exact" } else { "WRONG" }
                ),
            }),
            _ => None,
        })
        .collect();
    if !bad.is_empty() || results.len() < ranks {
        let mut detail = bad.join("; ");
        if results.len() < ranks {
            detail = format!("{} of {ranks} ranks reported; {detail}", results.len());
        }
        return Check::new(name, "FAIL", detail);
    }
    let c = results[0].1.expect("checked");
    let mb = (c.elements * 4) as f64 / 1e6;
    let slowest = results.iter().filter_map(|(_, c)| c.map(|c| c.large_ms)).fold(0.0, f64::max);
    Check::new(
        name,
        "PASS",
        format!(
            "all-reduce over {ranks} rank(s) {across}: {} == {} on every rank; {mb:.1} MB exact in {slowest:.1} ms",
            c.sum.unwrap_or(f64::NAN),
            c.expected
        ),
    )
}

/// Removes a check's temporary folder. A job the check cancelled may still be ending
/// (its ranks write their files as they stop, and make the folder again), so the folder
/// is removed until it stays gone, for up to 5 s.
pub fn remove_check_dir(dir: &std::path::Path) {
    let t = std::time::Instant::now();
    loop {
        let _ = std::fs::remove_dir_all(dir);
        std::thread::sleep(std::time::Duration::from_millis(200));
        if !dir.exists() || t.elapsed() > std::time::Duration::from_secs(5) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::node::{check_all_reduce, failed};
    use super::*;
    use crate::dist::WorldInfo;
    use tch::Device;

    fn rank(r: usize, node: &str, mpi_ok: bool, gpu: bool) -> NodeReport {
        let res = |backend: &str, ok: bool| CollectiveResult {
            backend: backend.into(),
            world_size: 2,
            sum: Some(if ok { 3.0 } else { 2.0 }),
            expected: 3.0,
            large_ok: ok,
            elements: 1 << 20,
            large_ms: 5.0,
            ok,
            error: None,
        };
        NodeReport {
            rank: r,
            world_size: 2,
            node: node.into(),
            cuda_available: gpu,
            cuda_devices: gpu as usize,
            mpi: Some(res("mpi", mpi_ok)),
            nccl: Some(if gpu { res("nccl", true) } else { failed("nccl", WorldInfo::SINGLE, NO_GPU.into()) }),
            finished: true,
            ..Default::default()
        }
    }

    fn table(reports: &[NodeReport], expect_gpu: bool) -> Vec<(&'static str, &'static str)> {
        let mut c = vec![];
        checks_from_reports(&mut c, reports, 2, 2, expect_gpu, true, Duration::from_secs(1));
        c.into_iter().map(|c| (c.name, c.status)).collect()
    }

    #[test]
    fn cpu_cluster_passes_mpi_and_skips_nccl() {
        let t = table(&[rank(0, "n1", true, false), rank(1, "n2", true, false)], false);
        assert_eq!(
            t,
            vec![("start", "PASS"), ("placement", "PASS"), ("cuda", "SKIP"), ("mpi", "PASS"), ("nccl", "SKIP")]
        );
        // The same ranks on a profile with real GPUs: no CUDA is a failure.
        let t = table(&[rank(0, "n1", true, false), rank(1, "n2", true, false)], true);
        assert_eq!(t[2], ("cuda", "FAIL"));
        assert_eq!(t[4], ("nccl", "FAIL"));
    }

    #[test]
    fn wrong_sum_missing_rank_and_one_node_fail() {
        let t = table(&[rank(0, "n1", true, true), rank(1, "n1", false, true)], true);
        assert_eq!(
            t,
            vec![("start", "PASS"), ("placement", "FAIL"), ("cuda", "PASS"), ("mpi", "FAIL"), ("nccl", "PASS")]
        );
        let mut c = vec![];
        checks_from_reports(&mut c, &[rank(0, "n1", true, false)], 2, 2, false, false, Duration::from_secs(9));
        assert_eq!((c[0].name, c[0].status, c[1].name, c[1].status), ("finish", "FAIL", "start", "FAIL"));
        assert!(c[1].detail.contains("rank(s) 1"), "{c:?}");
    }

    #[test]
    fn all_reduce_check_is_exact_on_one_process() {
        let r = check_all_reduce(&crate::dist::SingleProcess, Device::Cpu, 1000);
        assert!(r.ok && r.sum == Some(1.0) && r.large_ok, "{r:?}");
    }

    #[test]
    fn job_shape_spreads_over_two_nodes_when_there_are_two() {
        let p = |nodes: usize, gpus: usize| ClusterProfile {
            nodes,
            gpus_per_node: gpus,
            ..toml::from_str::<ClusterProfile>("launcher = \"slurm\"").unwrap()
        };
        let o = DoctorOptions {
            ranks: None,
            nodes: None,
            cpu: false,
            timeout: Duration::from_secs(1),
            dir: ".".into(),
            elements: 1,
        };
        assert_eq!(job_shape(&p(4, 8), &o), (2, 2));
        assert_eq!(job_shape(&p(1, 8), &o), (2, 1));
        assert_eq!(job_shape(&p(1, 1), &o), (1, 1));
        assert_eq!(job_shape(&p(4, 8), &DoctorOptions { ranks: Some(16), ..o.clone() }), (16, 2));
    }
}
