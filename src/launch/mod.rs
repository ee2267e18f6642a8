//! Launchers: how a coordinator starts, watches and stops one run's job.
//!
//! - `Local` spawns `ras train CFG --ranks N` on this machine (mpirun for N > 1).
//! - `Slurm` renders `cluster/templates/run.sbatch.tmpl`, submits it with
//!   `sbatch --parsable`, watches it with `scontrol show job` (sacct once the controller
//!   forgot it) and cancels with `scancel`.
//!
//! A job is described by a `JobRecord` stored in the sweep's state, so any coordinator
//! (not only the one that launched it) can poll or cancel it: polling dispatches on the
//! record's kind, not on the launcher that asks.

use crate::sweep::PlannedRun;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A cluster profile (`cluster/*.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterProfile {
    /// "local" or "slurm".
    pub launcher: String,
    #[serde(default = "one")]
    pub nodes: usize,
    /// 0 = CPU-only: a rank then takes `cpus_per_gpu` cores of `cpus_per_node`.
    #[serde(default)]
    pub gpus_per_node: usize,
    #[serde(default = "one")]
    pub cpus_per_gpu: usize,
    /// CPU cores per node (CPU-only profiles); default: this machine's.
    pub cpus_per_node: Option<usize>,
    /// e.g. "16G" (Slurm --mem-per-gpu, or --mem-per-cpu on CPU-only profiles).
    pub mem_per_gpu: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Slurm time limit, e.g. "04:00:00".
    pub time_limit: Option<String>,
    /// Extra `#SBATCH` lines, verbatim.
    #[serde(default)]
    pub extra: Vec<String>,
    /// Shell lines a job script runs before starting ras: `module load ...`, `source
    /// venv/bin/activate`, `export NCCL_IB_HCA=...`.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Extra srun options, e.g. a container (`--container-image=...` with pyxis) or
    /// `--cpu-bind=cores`.
    #[serde(default)]
    pub srun_args: Vec<String>,
    /// Assumed sustained TFLOP/s per rank, for `ras plan`'s time estimate.
    pub tflops_per_rank: Option<f64>,
    /// The sbatch template; default cluster/templates/run.sbatch.tmpl next to the profile.
    pub template: Option<PathBuf>,
    /// Slurm node names, one per node. Given: the coordinator places each run on named
    /// nodes (`--nodelist`), as `ras plan` shows, and records them with the job. Empty:
    /// Slurm chooses the nodes; only their number is fixed.
    #[serde(default)]
    pub node_names: Vec<String>,
}

fn one() -> usize {
    1
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read cluster profile {path}: {source}")]
    Read { path: PathBuf, #[source] source: std::io::Error },
    #[error("cluster profile {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl ClusterProfile {
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read { path: path.into(), source })?;
        let mut p: ClusterProfile =
            toml::from_str(&text).map_err(|e| ProfileError::Invalid { path: path.into(), message: e.to_string() })?;
        if !["local", "slurm"].contains(&p.launcher.as_str()) {
            return Err(ProfileError::Invalid { path: path.into(), message: format!("launcher {:?} must be \"local\" or \"slurm\"", p.launcher) });
        }
        if p.nodes == 0 || p.cpus_per_gpu == 0 {
            return Err(ProfileError::Invalid { path: path.into(), message: "nodes and cpus_per_gpu must be at least 1".into() });
        }
        if !p.node_names.is_empty() && p.node_names.len() != p.nodes {
            return Err(ProfileError::Invalid {
                path: path.into(),
                message: format!("node_names lists {} nodes but nodes = {}: list every node or none", p.node_names.len(), p.nodes),
            });
        }
        if p.template.is_none() {
            p.template = Some(path.parent().unwrap_or(Path::new(".")).join("templates/run.sbatch.tmpl"));
        }
        Ok(p)
    }

    /// Ranks one node runs at once: its GPUs, or on CPU-only profiles cores / cpus_per_gpu.
    pub fn ranks_per_node(&self) -> usize {
        if self.gpus_per_node > 0 {
            self.gpus_per_node
        } else {
            let cpus = self.cpus_per_node.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            (cpus / self.cpus_per_gpu).max(1)
        }
    }

    /// Ranks that can run at once on the whole cluster.
    pub fn slots(&self) -> usize {
        self.nodes * self.ranks_per_node()
    }

    /// The shape the planner packs runs onto.
    pub fn shape(&self) -> crate::sweep::plan::ClusterShape {
        crate::sweep::plan::ClusterShape { nodes: self.nodes, ranks_per_node: self.ranks_per_node() }
    }

    /// Node `i`'s name: its Slurm name when the profile lists them, else `node<i>`.
    pub fn node_name(&self, i: usize) -> String {
        self.node_names.get(i).cloned().unwrap_or_else(|| format!("node{i}"))
    }

    /// Sustained TFLOP/s per rank assumed by the planner.
    pub fn tflops(&self) -> f64 {
        self.tflops_per_rank.unwrap_or(if self.gpus_per_node > 0 { 20.0 } else { 0.05 })
    }
}

/// What a launcher started, as stored in `sweeps/<name>/jobs/<run>.<attempt>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    /// "local" or "slurm".
    pub kind: String,
    /// Process id (local) or Slurm job id.
    pub id: String,
    pub host: String,
    pub run_id: String,
    pub log: PathBuf,
    /// Nodes the job was placed on (named profiles only; empty: the cluster chose).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Queued or running.
    Active,
    Ended,
}

/// How a job waits for the jobs it comes after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// Once they ended, however (a feature-cache job only saves work).
    AfterAny,
    /// Only if they all succeeded; else Slurm cancels the job (a report of every run).
    AfterOk,
}

/// One job to start: an attempt of a run, where, and after what.
pub struct Submission<'a> {
    pub run: &'a PlannedRun,
    /// The resolved config file the job reads.
    pub config: &'a Path,
    pub attempt: usize,
    /// Non-empty: pin the job to these nodes (one entry per node).
    pub nodes: &'a [String],
    /// Jobs that must end first (the feature-cache job of the run's dataset). Only
    /// launchers whose cluster queues jobs (`queues_jobs`) get any.
    pub after: &'a [JobRecord],
}

/// The seam between the coordinator and a cluster.
pub trait Launcher {
    fn submit(&mut self, job: &Submission) -> Result<JobRecord, String>;
    /// Starts several alike runs (same ranks, nodes and dependencies) at once; one record
    /// per run, in order. Slurm submits them as one job array.
    fn submit_alike(&mut self, jobs: &[Submission]) -> Result<Vec<JobRecord>, String> {
        jobs.iter().map(|j| self.submit(j)).collect()
    }
    /// Starts one `ras ARGS` process as a job of its own: the feature cache of a dataset
    /// (`features CONFIG`) or a sweep's report. `name` is unique per sweep and task.
    /// `after`: as in `Submission` (Slurm: `--dependency=<kind>:<ids>`).
    fn submit_task(&mut self, name: &str, args: &[String], after: &[JobRecord], kind: Dependency) -> Result<JobRecord, String>;
    /// Whether the cluster queues jobs itself (Slurm): a job submitted with `after` waits
    /// for those jobs by itself, and jobs beyond the free slots wait their turn. If not,
    /// the coordinator waits before submitting.
    fn queues_jobs(&self) -> bool {
        false
    }
    fn poll(&self, job: &JobRecord) -> Result<JobState, String>;
    fn cancel(&mut self, job: &JobRecord) -> Result<(), String>;
}

/// Polls a record whatever launched it.
pub fn poll_any(job: &JobRecord) -> Result<JobState, String> {
    match job.kind.as_str() {
        "local" => Ok(poll_pid(job)),
        "slurm" => slurm_poll(&job.id),
        k => Err(format!("job record of unknown kind {k:?}")),
    }
}

pub fn cancel_any(job: &JobRecord) -> Result<(), String> {
    match job.kind.as_str() {
        "local" => {
            if poll_pid(job) == JobState::Active {
                // SIGTERM: the run checkpoints after its current step and exits 75.
                // The whole process group: with N > 1 ranks, `ras train --ranks N`, mpirun
                // and every rank (each one checkpoints).
                let pid: i32 = job.id.parse().map_err(|e| format!("pid {:?}: {e}", job.id))?;
                let st = Command::new("kill").args(["-TERM", "--", &format!("-{pid}")]).status().map_err(|e| e.to_string())?;
                if !st.success() {
                    return Err(format!("kill -TERM -- -{pid} failed"));
                }
            }
            Ok(())
        }
        "slurm" => {
            let out = Command::new("scancel").arg(&job.id).output().map_err(|e| format!("scancel: {e}"))?;
            if !out.status.success() {
                return Err(format!("scancel {}: {}", job.id, String::from_utf8_lossy(&out.stderr)));
            }
            Ok(())
        }
        k => Err(format!("job record of unknown kind {k:?}")),
    }
}

/// A local process is alive if /proc has it, it is not a zombie, and its command line
/// names the run (so a recycled pid is not mistaken for the job).
fn poll_pid(job: &JobRecord) -> JobState {
    if job.host != crate::hostname() {
        return JobState::Active; // cannot see another machine's processes; assume alive
    }
    let proc = PathBuf::from(format!("/proc/{}", job.id));
    let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
    let zombie = stat.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')).unwrap_or(true);
    let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
    let names_run = String::from_utf8_lossy(&cmdline).contains(&job.run_id);
    if !zombie && names_run {
        JobState::Active
    } else {
        JobState::Ended
    }
}

/// Runs on this machine, at most as many ranks at once as the profile's slots (the
/// coordinator enforces the limit; this only starts and reaps processes).
pub struct Local {
    exe: PathBuf,
    log_dir: PathBuf,
    children: BTreeMap<String, Child>,
}

impl Local {
    pub fn new(exe: PathBuf, log_dir: PathBuf) -> Self {
        Self { exe, log_dir, children: BTreeMap::new() }
    }
}

impl Local {
    /// Starts `ras --quiet ARGS` with its output in `log_dir/<log_name>`. `name` must
    /// appear in the command line: liveness checks look for it there.
    fn spawn(&mut self, name: &str, log_name: &str, args: &[&std::ffi::OsStr]) -> Result<JobRecord, String> {
        std::fs::create_dir_all(&self.log_dir).map_err(|e| format!("{}: {e}", self.log_dir.display()))?;
        let log = self.log_dir.join(log_name);
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        use std::os::unix::process::CommandExt;
        // Own process group: cancel signals the run and its mpirun ranks together, and a
        // Ctrl-C (or kill) of the coordinator leaves the run going, to be adopted by the
        // next coordinator.
        let child = Command::new(&self.exe)
            .process_group(0)
            .arg("--quiet")
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.exe.display()))?;
        let id = child.id().to_string();
        self.children.insert(id.clone(), child);
        Ok(JobRecord { kind: "local".into(), id, host: crate::hostname(), run_id: name.to_string(), log, nodes: vec![] })
    }
}

impl Launcher for Local {
    fn submit(&mut self, job: &Submission) -> Result<JobRecord, String> {
        let ranks = job.run.ranks.to_string();
        let args = ["train".as_ref(), job.config.as_os_str(), "--ranks".as_ref(), ranks.as_ref()];
        self.spawn(&job.run.id, &format!("{}.{}.log", job.run.id, job.attempt), &args)
    }

    fn submit_task(&mut self, name: &str, args: &[String], after: &[JobRecord], _kind: Dependency) -> Result<JobRecord, String> {
        if !after.is_empty() {
            return Err(format!("{name}: local jobs cannot wait for other jobs; the coordinator starts it when they ended"));
        }
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        self.spawn(name, &format!("{name}.log"), &args)
    }

    fn poll(&self, job: &JobRecord) -> Result<JobState, String> {
        poll_any(job)
    }

    fn cancel(&mut self, job: &JobRecord) -> Result<(), String> {
        cancel_any(job)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // Reap what has ended; running children keep running (a restarted coordinator
        // finds them by their job record).
        for c in self.children.values_mut() {
            let _ = c.try_wait();
        }
    }
}

impl Local {
    /// Reaps ended children so they do not linger as zombies.
    pub fn reap(&mut self) {
        self.children.retain(|_, c| !matches!(c.try_wait(), Ok(Some(_))));
    }
}

/// A bash word: quoted unless it is plainly safe.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Renders `{{name}}` placeholders; an unknown placeholder is an error naming it.
pub fn render_template(template: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out += &rest[..start];
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| "unclosed {{ in template".to_string())?;
        let name = after[..end].trim();
        let v = vars.get(name).ok_or_else(|| format!("template placeholder {{{{{name}}}}} is unknown; known: {}", vars.keys().cloned().collect::<Vec<_>>().join(", ")))?;
        out += v;
        rest = &after[end + 2..];
    }
    out += rest;
    Ok(out)
}

/// Submits to Slurm with sbatch; the job script is rendered from the profile's template.
pub struct Slurm {
    pub profile: ClusterProfile,
    exe: PathBuf,
    log_dir: PathBuf,
    work_dir: PathBuf,
    store: Store,
}

impl Slurm {
    pub fn new(profile: ClusterProfile, exe: PathBuf, log_dir: PathBuf, work_dir: PathBuf, store: Store) -> Self {
        Self { profile, exe, log_dir, work_dir, store }
    }

    /// The `#SBATCH` lines every job of the profile gets (partition, account, QoS, time,
    /// memory, one GPU per task, the profile's extra lines).
    fn common_options(&self) -> Vec<String> {
        let p = &self.profile;
        let mem_key = if p.gpus_per_node > 0 { "mem-per-gpu" } else { "mem-per-cpu" };
        let mut lines: Vec<String> =
            [("partition", &p.partition), ("account", &p.account), ("qos", &p.qos), ("time", &p.time_limit), (mem_key, &p.mem_per_gpu)]
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("#SBATCH --{k}={v}")))
                .collect();
        if p.gpus_per_node > 0 {
            lines.push("#SBATCH --gpus-per-task=1".into());
        }
        lines.extend(p.extra.iter().cloned());
        lines
    }

    /// Template variables every job script gets: setup lines, srun options (with their
    /// trailing space, so an empty list leaves `srun -n` as it was).
    fn common_vars(&self) -> Vec<(&'static str, String)> {
        let p = &self.profile;
        let srun: String = p.srun_args.iter().map(|a| format!("{a} ")).collect();
        vec![("setup", p.setup.join("\n")), ("srun_args", srun)]
    }

    /// A template next to the run template (`cluster/templates/<file>`), rendered.
    fn render(&self, file: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
        let run_tpl = self.profile.template.clone().unwrap_or_else(|| PathBuf::from("cluster/templates/run.sbatch.tmpl"));
        let path = if file == "run.sbatch.tmpl" { run_tpl } else { run_tpl.with_file_name(file) };
        let tpl = std::fs::read_to_string(&path).map_err(|e| format!("sbatch template {}: {e}", path.display()))?;
        render_template(&tpl, vars)
    }

    fn abs(q: &Path) -> String {
        std::fs::canonicalize(q).unwrap_or_else(|_| q.to_path_buf()).display().to_string()
    }

    /// The job script of one run, or of a job array of alike runs (`jobs[0]` gives the
    /// shape, nodes and dependencies of all).
    pub fn script(&self, jobs: &[Submission]) -> Result<String, String> {
        let first = jobs.first().ok_or("no run to submit")?;
        let n = first.run.ranks;
        let (node_count, per_node) = self.profile.shape().layout(n);
        let mut lines = self.common_options();
        if jobs.len() > 1 {
            lines.push(format!("#SBATCH --array=0-{}", jobs.len() - 1));
        }
        if !first.nodes.is_empty() {
            lines.push(format!("#SBATCH --nodelist={}", first.nodes.join(",")));
        }
        // afterany, not afterok: the cache job only saves work (a run computes what is
        // missing itself), so its failure must not strand the runs behind it.
        lines.extend(Self::dependency_lines(first.after, Dependency::AfterAny));
        let list = |f: &dyn Fn(&Submission) -> String| jobs.iter().map(|j| shell_word(&f(j))).collect::<Vec<_>>().join(" ");
        let vars: BTreeMap<&str, String> = [
            ("job_name", format!("ras-{}", first.run.id)),
            ("run_ids", list(&|j| j.run.id.clone())),
            ("attempts", list(&|j| j.attempt.to_string())),
            ("configs", list(&|j| Self::abs(j.config))),
            ("nodes", node_count.to_string()),
            ("ntasks", n.to_string()),
            ("ntasks_per_node", per_node.to_string()),
            ("cpus_per_task", self.profile.cpus_per_gpu.to_string()),
            ("options", lines.join("\n")),
            ("log", format!("{}/{}", Self::abs(&self.log_dir), Self::log_pattern(jobs))),
            ("workdir", Self::abs(&self.work_dir)),
            ("ras", Self::abs(&self.exe)),
        ]
        .into_iter()
        .chain(self.common_vars())
        .collect();
        self.render("run.sbatch.tmpl", &vars)
    }

    /// The log file name (sbatch pattern): per run and attempt, or per array task.
    fn log_pattern(jobs: &[Submission]) -> String {
        match jobs {
            [one] => format!("{}.{}-%j.log", one.run.id, one.attempt),
            _ => format!("{}.{}-array-%A_%a.log", jobs[0].run.id, jobs[0].attempt),
        }
    }

    /// The log file Slurm writes for a `--output` pattern: `%j` the job id, `%A`/`%a` the
    /// array's job id and the task index.
    fn log_file(&self, pattern: &str, id: &str, task: Option<usize>) -> PathBuf {
        let name = match task {
            Some(i) => pattern.replace("%A", id).replace("%a", &i.to_string()),
            None => pattern.replace("%j", id),
        };
        PathBuf::from(Self::abs(&self.log_dir)).join(name)
    }

    /// `#SBATCH` lines making a job wait for `after` (none when it is empty).
    fn dependency_lines(after: &[JobRecord], kind: Dependency) -> Vec<String> {
        if after.is_empty() {
            return vec![];
        }
        let ids: Vec<&str> = after.iter().map(|j| j.id.as_str()).collect();
        match kind {
            Dependency::AfterAny => vec![format!("#SBATCH --dependency=afterany:{}", ids.join(":"))],
            // A failed job makes the dependency unsatisfiable: end the waiting job rather
            // than leave it pending for ever.
            Dependency::AfterOk => vec![format!("#SBATCH --dependency=afterok:{}", ids.join(":")), "#SBATCH --kill-on-invalid-dep=yes".into()],
        }
    }

    /// Writes `script` as `log_dir/<file>` (kept beside the logs) and submits it.
    fn submit_script(&self, file: &str, script: &str) -> Result<String, String> {
        std::fs::create_dir_all(&self.log_dir).map_err(|e| format!("{}: {e}", self.log_dir.display()))?;
        let script_path = self.log_dir.join(file);
        std::fs::write(&script_path, script).map_err(|e| format!("{}: {e}", script_path.display()))?;
        self.sbatch(&script_path)
    }

    /// `sbatch --parsable SCRIPT` -> job id.
    fn sbatch(&self, script_path: &Path) -> Result<String, String> {
        let out = Command::new("sbatch")
            .arg("--parsable")
            .arg(script_path)
            .output()
            .map_err(|e| format!("sbatch (is Slurm installed? cluster/slurm-up.sh starts a local one): {e}"))?;
        if !out.status.success() {
            return Err(format!("sbatch {}: {}", script_path.display(), String::from_utf8_lossy(&out.stderr).trim()));
        }
        let id = String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap_or_default().to_string();
        if id.is_empty() {
            return Err("sbatch --parsable printed no job id".into());
        }
        Ok(id)
    }
}

impl Launcher for Slurm {
    fn submit(&mut self, job: &Submission) -> Result<JobRecord, String> {
        Ok(self.submit_alike(std::slice::from_ref(job))?.remove(0))
    }

    fn submit_alike(&mut self, jobs: &[Submission]) -> Result<Vec<JobRecord>, String> {
        let first = jobs.first().ok_or("no run to submit")?;
        let script = self.script(jobs)?;
        let array = jobs.len() > 1;
        let id = self.submit_script(&format!("{}.{}{}.sbatch", first.run.id, first.attempt, if array { "-array" } else { "" }), &script)?;
        let pattern = Self::log_pattern(jobs);
        let mut out = vec![];
        for (i, job) in jobs.iter().enumerate() {
            // An array task is its own job for scontrol, scancel and requeue: "<array>_<i>".
            let (job_id, log) =
                if array { (format!("{id}_{i}"), self.log_file(&pattern, &id, Some(i))) } else { (id.clone(), self.log_file(&pattern, &id, None)) };
            let record = JobRecord {
                kind: "slurm".into(),
                id: job_id.clone(),
                host: crate::hostname(),
                run_id: job.run.id.clone(),
                log,
                nodes: job.nodes.to_vec(),
            };
            // Kept with the run: the script that ran, its job id and log path.
            let prefix = format!("runs/{}/slurm", job.run.id);
            self.store.put(&format!("{prefix}/{job_id}.sbatch"), script.clone()).map_err(|e| e.to_string())?;
            self.store.put_json(&format!("{prefix}/{job_id}.json"), &record).map_err(|e| e.to_string())?;
            out.push(record);
        }
        Ok(out)
    }

    fn submit_task(&mut self, name: &str, args: &[String], after: &[JobRecord], kind: Dependency) -> Result<JobRecord, String> {
        let mut options = self.common_options();
        options.extend(Self::dependency_lines(after, kind));
        let pattern = format!("{name}-%j.log");
        let vars: BTreeMap<&str, String> = [
            ("job_name", format!("ras-{name}")),
            ("cpus_per_task", self.profile.cpus_per_gpu.to_string()),
            ("options", options.join("\n")),
            ("log", format!("{}/{pattern}", Self::abs(&self.log_dir))),
            ("workdir", Self::abs(&self.work_dir)),
            ("ras", Self::abs(&self.exe)),
            ("args", args.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" ")),
        ]
        .into_iter()
        .chain(self.common_vars())
        .collect();
        let script = self.render("task.sbatch.tmpl", &vars)?;
        let id = self.submit_script(&format!("{name}.sbatch"), &script)?;
        let log = self.log_file(&pattern, &id, None);
        Ok(JobRecord { kind: "slurm".into(), id, host: crate::hostname(), run_id: name.into(), log, nodes: vec![] })
    }

    fn queues_jobs(&self) -> bool {
        true
    }

    fn poll(&self, job: &JobRecord) -> Result<JobState, String> {
        poll_any(job)
    }

    fn cancel(&mut self, job: &JobRecord) -> Result<(), String> {
        cancel_any(job)
    }
}

/// Active while Slurm has the job pending, running, requeued or completing.
fn slurm_poll(id: &str) -> Result<JobState, String> {
    let state = match Command::new("scontrol").args(["show", "job", id]).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split_whitespace().find_map(|w| w.strip_prefix("JobState=").map(str::to_string))
        }
        _ => None,
    };
    let state = match state {
        Some(s) => s,
        // The controller forgot the job (MinJobAge): ask accounting when it exists.
        None => match Command::new("sacct").args(["-n", "-X", "-P", "-o", "State", "-j", id]).output() {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string(),
            _ => String::new(),
        },
    };
    Ok(match state.split_whitespace().next().unwrap_or("") {
        "PENDING" | "RUNNING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "CONFIGURING" | "COMPLETING" | "SUSPENDED"
        | "RESIZING" | "SIGNALING" | "STAGE_OUT" => JobState::Active,
        _ => JobState::Ended,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_node_names_must_list_every_node() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("two.toml");
        std::fs::write(&p, "launcher = \"slurm\"\nnodes = 2\nnode_names = [\"n1\"]\n").unwrap();
        let err = ClusterProfile::load(&p).unwrap_err().to_string();
        assert!(err.contains("two.toml") && err.contains("node_names lists 1 nodes but nodes = 2"), "{err}");
        std::fs::write(&p, "launcher = \"slurm\"\nnodes = 2\nnode_names = [\"n1\", \"n2\"]\ngpus_per_node = 4\n").unwrap();
        let prof = ClusterProfile::load(&p).unwrap();
        assert_eq!((prof.slots(), prof.ranks_per_node(), prof.node_name(1)), (8, 4, "n2".to_string()));
    }

    #[test]
    fn array_script_carries_setup_srun_options_dependency_and_is_valid_bash() {
        let dir = tempfile::tempdir().unwrap();
        let prof = dir.path().join("p.toml");
        let tpl = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/templates/run.sbatch.tmpl");
        std::fs::write(
            &prof,
            format!(
                "launcher = \"slurm\"\nnodes = 2\ngpus_per_node = 2\nsetup = [\"module load cuda/12.8\"]\nsrun_args = [\"--container-image=img:1\"]\ntemplate = \"{}\"\n",
                tpl.display()
            ),
        )
        .unwrap();
        let profile = ClusterProfile::load(&prof).unwrap();
        let store = Store::open(&format!("file://{}", dir.path().join("store").display())).unwrap();
        let slurm = Slurm::new(profile, "/opt/ras".into(), dir.path().join("logs"), dir.path().into(), store);
        let run = |id: &str| PlannedRun {
            id: id.into(),
            label: id.into(),
            variant: id.into(),
            dataset: "d".into(),
            config_toml: String::new(),
            ranks: 3,
            train_images: 0,
            cost: 0.0,
            feature_key: String::new(),
        };
        let (a, b) = (run("a-1"), run("b-2"));
        let cfg_a = dir.path().join("a 1.toml");
        let cfg_b = dir.path().join("b.toml");
        let dep = JobRecord { kind: "slurm".into(), id: "17".into(), host: "h".into(), run_id: "features-x".into(), log: "l".into(), nodes: vec![] };
        let after = [dep];
        let subs = [
            Submission { run: &a, config: &cfg_a, attempt: 0, nodes: &[], after: &after },
            Submission { run: &b, config: &cfg_b, attempt: 1, nodes: &[], after: &after },
        ];
        let script = slurm.script(&subs).unwrap();
        for want in [
            "#SBATCH --array=0-1",
            "#SBATCH --nodes=2\n#SBATCH --ntasks=3\n#SBATCH --ntasks-per-node=2",
            "#SBATCH --dependency=afterany:17",
            "\nmodule load cuda/12.8\n",
            "srun --mpi=pmix --container-image=img:1 -n 3 /opt/ras --quiet worker",
            "RUNS=(a-1 b-2)",
            "ATTEMPTS=(0 1)",
        ] {
            assert!(script.contains(want), "{want:?} not in\n{script}");
        }
        assert!(script.contains(&format!("CONFIGS=('{}' {})", cfg_a.display(), cfg_b.display())), "{script}");
        // The rendered script parses as bash.
        let path = dir.path().join("job.sbatch");
        std::fs::write(&path, &script).unwrap();
        let st = Command::new("bash").arg("-n").arg(&path).status().unwrap();
        assert!(st.success(), "bash -n rejects:\n{script}");
    }

    #[test]
    fn template_placeholders() {
        let vars: BTreeMap<&str, String> = [("a", "1".to_string()), ("b", "x y".to_string())].into_iter().collect();
        assert_eq!(render_template("p {{a}} q {{ b }}", &vars).unwrap(), "p 1 q x y");
        let err = render_template("{{nope}}", &vars).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }
}
