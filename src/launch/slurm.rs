//! Slurm: job scripts rendered from the profile's templates (`run.sbatch.tmpl` for runs and
//! job arrays of alike runs, `task.sbatch.tmpl` for single commands), submitted with
//! `sbatch --parsable`, polled all at once with one `squeue` per cycle, cancelled with
//! `scancel`.

use super::command::{run_command, Retry, SLURM_UNREACHABLE};
use super::template::render_template;
use super::{shell_word, Dependency, JobCommand, JobRecord, JobSpec, JobState, LaunchError, Launcher};
use crate::config::{ClusterProfile, LauncherKind};
use crate::exit::ExitStatus;
use minijinja::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Submits to Slurm with sbatch; job scripts come from the profile's templates.
pub struct Slurm {
    pub profile: ClusterProfile,
    exe: PathBuf,
    log_dir: PathBuf,
    work_dir: PathBuf,
}

/// sbatch is retried only while the controller cannot be reached: then nothing was
/// submitted, so a retry cannot submit twice.
const SBATCH_RETRY: Retry =
    Retry::Transient { patterns: SLURM_UNREACHABLE, times: 6, max_delay: Duration::from_secs(20) };

impl Slurm {
    pub fn new(profile: ClusterProfile, exe: PathBuf, log_dir: PathBuf, work_dir: PathBuf) -> Self {
        Self { profile, exe, log_dir, work_dir }
    }

    /// Variables every job script gets: the profile's options, setup lines and srun
    /// options (with a trailing space, so an empty list leaves `srun -n` as it was), and
    /// the GPUs of a job with `per_node` ranks on each of its nodes.
    ///
    /// GPUs: `--gres=gpu:<per_node>` on each node, no per-task binding. Every rank of the
    /// job on a node then sees all of the job's GPUs there and picks its own by local rank
    /// (`WorldInfo::device`); `--gpus-per-task=1` would put each rank in a device cgroup of
    /// one GPU, and NCCL could not use peer-to-peer (NVLink) between the ranks of a node.
    /// `--exclusive` only for a job whose ranks fill its nodes' GPUs: a smaller one shares
    /// its node with the other runs the planner packed there (a 2-GPU run must not hold an
    /// 8-GPU node).
    fn common_vars(
        &self,
        after: &[JobRecord],
        dependency: Dependency,
        per_node: usize,
    ) -> BTreeMap<&'static str, Value> {
        let p = &self.profile;
        let opt = |v: &Option<String>| v.clone().map(Value::from).unwrap_or(Value::from(()));
        let ids: Vec<&str> = after.iter().map(|j| j.id.as_str()).collect();
        let dep = match (ids.is_empty(), dependency) {
            (true, _) => None,
            (false, Dependency::AfterAny) => Some(format!("afterany:{}", ids.join(":"))),
            (false, Dependency::AfterOk) => Some(format!("afterok:{}", ids.join(":"))),
        };
        // A failed job makes an afterok dependency unsatisfiable: end the waiting job
        // rather than leave it pending for ever.
        let kill_invalid = dep.is_some() && dependency == Dependency::AfterOk;
        BTreeMap::from([
            ("partition", opt(&p.partition)),
            ("account", opt(&p.account)),
            ("qos", opt(&p.qos)),
            ("time_limit", opt(&p.time_limit)),
            ("mem_key", Value::from(if p.gpus_per_node > 0 { "mem-per-gpu" } else { "mem-per-cpu" })),
            ("mem", opt(&p.mem_per_gpu)),
            (
                "gres",
                if p.gpus_per_node > 0 {
                    Value::from(format!("gpu:{}", per_node.min(p.gpus_per_node)))
                } else {
                    Value::from(())
                },
            ),
            ("exclusive", Value::from(p.gpus_per_node > 0 && per_node >= p.gpus_per_node)),
            ("dependency", dep.map(Value::from).unwrap_or(Value::from(()))),
            ("kill_on_invalid_dep", Value::from(kill_invalid)),
            ("extra", Value::from(p.extra.clone())),
            ("setup", Value::from(p.setup.clone())),
            ("srun_args", Value::from(p.srun_args.iter().map(|a| format!("{a} ")).collect::<String>())),
            ("cpus_per_task", Value::from(p.cpus_per_gpu)),
            ("workdir", Value::from(abs(&self.work_dir))),
            ("ras", Value::from(abs(&self.exe))),
            ("exit_requeue", Value::from(ExitStatus::Requeue.code())),
            ("exit_infra", Value::from(ExitStatus::Infra.code())),
        ])
    }

    /// A template next to the run template (`cluster/templates/<file>`), rendered.
    fn render(&self, file: &str, vars: &BTreeMap<&str, Value>) -> Result<String, LaunchError> {
        let run_tpl =
            self.profile.template.clone().unwrap_or_else(|| PathBuf::from("cluster/templates/run.sbatch.tmpl"));
        let path = if file == "run.sbatch.tmpl" { run_tpl } else { run_tpl.with_file_name(file) };
        let tpl = std::fs::read_to_string(&path).map_err(|source| LaunchError::Io { path: path.clone(), source })?;
        render_template(&tpl, vars).map_err(|message| LaunchError::Template { path, message })
    }

    /// The job script of one run, or of a job array of alike runs (`jobs[0]` gives the
    /// shape, nodes and dependencies of all).
    pub fn script(&self, jobs: &[JobSpec]) -> Result<String, LaunchError> {
        let first = jobs.first().ok_or_else(|| LaunchError::Invalid("no run to submit".into()))?;
        let n = first.ranks();
        let (node_count, per_node) = match &first.command {
            JobCommand::Ranks { nodes, .. } if *nodes > 0 => (*nodes, n.div_ceil(*nodes)),
            _ => self.profile.shape().layout(n),
        };
        let mut vars = self.common_vars(&first.after, first.dependency, per_node);
        let list =
            |f: &dyn Fn(&JobSpec) -> String| jobs.iter().map(|j| shell_word(&f(j))).collect::<Vec<_>>().join(" ");
        let config = |j: &JobSpec| match &j.command {
            JobCommand::Run { config, .. } => abs(config),
            JobCommand::Task { .. } | JobCommand::Ranks { .. } => String::new(),
        };
        // What each rank runs after `ras --quiet`: a run's worker, or the job's own command.
        let command = match &first.command {
            JobCommand::Ranks { args, .. } => args.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" "),
            _ => "worker \"${CONFIGS[$i]}\"".to_string(),
        };
        vars.extend([
            ("command", Value::from(command.clone())),
            ("job_name", Value::from(format!("ras-{}", first.name))),
            ("run_ids", Value::from(list(&|j| j.name.clone()))),
            ("attempts", Value::from(list(&|j| j.attempt().to_string()))),
            ("configs", Value::from(list(&config))),
            ("nodes", Value::from(node_count)),
            ("ntasks", Value::from(n)),
            ("ntasks_per_node", Value::from(per_node)),
            ("array", if jobs.len() > 1 { Value::from(format!("0-{}", jobs.len() - 1)) } else { Value::from(()) }),
            ("nodelist", if first.nodes.is_empty() { Value::from(()) } else { Value::from(first.nodes.join(",")) }),
            ("log", Value::from(format!("{}/{}", abs(&self.log_dir), log_pattern(jobs)))),
        ]);
        let script = self.render("run.sbatch.tmpl", &vars)?;
        if !script.contains(&command) {
            let path = self.profile.template.clone().unwrap_or_default();
            return Err(LaunchError::Template {
                path,
                message:
                    "the srun line must run `{{ ras }} --quiet {{ command }}` (see cluster/templates/run.sbatch.tmpl)"
                        .into(),
            });
        }
        Ok(script)
    }

    /// The job script of a single `ras ARGS` task.
    pub fn task_script(&self, job: &JobSpec, args: &[String]) -> Result<String, LaunchError> {
        let mut vars = self.common_vars(&job.after, job.dependency, 1);
        vars.extend([
            ("job_name", Value::from(format!("ras-{}", job.name))),
            ("log", Value::from(format!("{}/{}-%j.log", abs(&self.log_dir), job.name))),
            ("args", Value::from(args.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" "))),
        ]);
        self.render("task.sbatch.tmpl", &vars)
    }

    /// The log file Slurm writes for a `--output` pattern: `%j` the job id, `%A`/`%a` the
    /// array's job id and the task index.
    fn log_file(&self, pattern: &str, id: &str, task: Option<usize>) -> PathBuf {
        let name = match task {
            Some(i) => pattern.replace("%A", id).replace("%a", &i.to_string()),
            None => pattern.replace("%j", id),
        };
        PathBuf::from(abs(&self.log_dir)).join(name)
    }

    /// Writes `script` as `log_dir/<file>` (kept beside the logs) and submits it.
    fn submit_script(&self, file: &str, script: &str) -> Result<String, LaunchError> {
        std::fs::create_dir_all(&self.log_dir)
            .map_err(|source| LaunchError::Io { path: self.log_dir.clone(), source })?;
        let script_path = self.log_dir.join(file);
        std::fs::write(&script_path, script).map_err(|source| LaunchError::Io { path: script_path.clone(), source })?;
        let out = run_command(
            Command::new("sbatch").arg("--parsable").arg(&script_path),
            SBATCH_RETRY,
            " (is Slurm installed? cluster/slurm-up.sh starts a local one)",
        )?;
        let id = out.stdout.trim().split(';').next().unwrap_or_default().to_string();
        if id.is_empty() {
            return Err(LaunchError::Invalid("sbatch --parsable printed no job id".into()));
        }
        Ok(id)
    }

    fn submit_runs(&mut self, jobs: &[JobSpec]) -> Result<Vec<JobRecord>, LaunchError> {
        let first = &jobs[0];
        let attempt = first.attempt();
        let script = self.script(jobs)?;
        let array = jobs.len() > 1;
        let id = self
            .submit_script(&format!("{}.{attempt}{}.sbatch", first.name, if array { "-array" } else { "" }), &script)?;
        let pattern = log_pattern(jobs);
        let mut out = vec![];
        for (i, job) in jobs.iter().enumerate() {
            // An array task is its own job for squeue, scancel and requeue: "<array>_<i>".
            let (job_id, log) = if array {
                (format!("{id}_{i}"), self.log_file(&pattern, &id, Some(i)))
            } else {
                (id.clone(), self.log_file(&pattern, &id, None))
            };
            let record = JobRecord {
                kind: LauncherKind::Slurm,
                id: job_id.clone(),
                host: crate::hostname(),
                run_id: job.name.clone(),
                log,
                nodes: job.nodes.clone(),
                submitted: Some(script.clone()),
            };
            out.push(record);
        }
        Ok(out)
    }
}

impl Launcher for Slurm {
    fn kind(&self) -> LauncherKind {
        LauncherKind::Slurm
    }

    fn submit(&mut self, jobs: &[JobSpec]) -> Result<Vec<JobRecord>, LaunchError> {
        let Some(first) = jobs.first() else { return Ok(vec![]) };
        match &first.command {
            JobCommand::Run { .. } | JobCommand::Ranks { .. } => self.submit_runs(jobs),
            JobCommand::Task { .. } => {
                let mut out = vec![];
                for job in jobs {
                    let JobCommand::Task { args } = &job.command else {
                        return Err(LaunchError::Invalid(format!(
                            "{}: runs and tasks cannot be submitted together",
                            job.name
                        )));
                    };
                    let script = self.task_script(job, args)?;
                    let id = self.submit_script(&format!("{}.sbatch", job.name), &script)?;
                    let log = self.log_file(&format!("{}-%j.log", job.name), &id, None);
                    out.push(JobRecord {
                        kind: LauncherKind::Slurm,
                        id,
                        host: crate::hostname(),
                        run_id: job.name.clone(),
                        log,
                        nodes: vec![],
                        submitted: Some(script),
                    });
                }
                Ok(out)
            }
        }
    }

    fn poll(&mut self, jobs: &[&JobRecord]) -> Result<Vec<JobState>, LaunchError> {
        Ok(super::poll_records(jobs))
    }

    fn cancel(&mut self, jobs: &[&JobRecord]) -> Result<(), LaunchError> {
        super::cancel_records(jobs)
    }

    fn queues_jobs(&self) -> bool {
        true
    }
}

fn abs(q: &Path) -> String {
    std::fs::canonicalize(q).unwrap_or_else(|_| q.to_path_buf()).display().to_string()
}

/// The log file name (sbatch pattern): per run and attempt, or per array task.
fn log_pattern(jobs: &[JobSpec]) -> String {
    match jobs {
        [one] => format!("{}.{}-%j.log", one.name, one.attempt()),
        _ => format!("{}.{}-array-%A_%a.log", jobs[0].name, jobs[0].attempt()),
    }
}

/// `scancel ID...` in one call (nothing to do for an empty list).
pub(crate) fn scancel(jobs: &[&JobRecord]) -> Result<(), LaunchError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("scancel");
    cmd.args(jobs.iter().map(|j| j.id.as_str()));
    run_command(&mut cmd, SBATCH_RETRY, "")?;
    Ok(())
}

/// States of a job waiting in the queue, and of a job running (or finishing); any
/// other state is an end.
const QUEUED: &[&str] = &["PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"];
const ACTIVE: &[&str] = &["RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT"];

/// The state of every job in ONE `squeue` call. Array tasks are asked for by their
/// array's id (one entry per array, `--array` lists the tasks). A job squeue does not list
/// is one the controller has forgotten (ended longer ago than MinJobAge): ended. When
/// squeue itself fails (controller down), every job is Unknown, never Ended: a job that
/// may still run must not be launched again.
pub(crate) fn squeue_states(jobs: &[&JobRecord]) -> Vec<JobState> {
    if jobs.is_empty() {
        return vec![];
    }
    let ask: BTreeSet<&str> = jobs.iter().map(|j| j.id.split('_').next().unwrap_or(&j.id)).collect();
    let mut cmd = Command::new("squeue");
    cmd.args(["--noheader", "--array", "--states=all", "--format=%i|%T"]);
    cmd.arg(format!("--jobs={}", ask.into_iter().collect::<Vec<_>>().join(",")));
    match run_command(&mut cmd, Retry::Never, "") {
        Ok(out) => {
            let states = parse_squeue(&out.stdout);
            jobs.iter()
                .map(|j| match states.get(j.id.as_str()) {
                    Some(s) if QUEUED.contains(&s.as_str()) => JobState::Queued,
                    Some(s) if ACTIVE.contains(&s.as_str()) => JobState::Active,
                    // scancel (a preemption reads PREEMPTED, or requeues: PENDING).
                    Some(s) if s == "CANCELLED" => JobState::Cancelled,
                    _ => JobState::Ended,
                })
                .collect()
        }
        Err(e) => {
            let why = format!("Slurm unreachable: {}", e.stderr().lines().next().unwrap_or("squeue failed"));
            jobs.iter().map(|_| JobState::Unknown(why.clone())).collect()
        }
    }
}

/// Who cancelled each job, in ONE `sacct` call: the uid of its state "CANCELLED by
/// <uid>", or None (not cancelled, or no accounting on this cluster: sacct fails there,
/// and nothing is lost but the uid).
pub(crate) fn sacct_cancelled_by(jobs: &[&JobRecord]) -> Vec<Option<String>> {
    if jobs.is_empty() {
        return vec![];
    }
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let mut cmd = Command::new("sacct");
    cmd.args(["--noheader", "--parsable2", "--allocations", "--format=JobID,State"]);
    cmd.arg(format!("--jobs={}", ids.join(",")));
    match run_command(&mut cmd, Retry::Never, "") {
        Ok(out) => {
            let by = parse_sacct_cancelled(&out.stdout);
            jobs.iter().map(|j| by.get(&j.id).cloned()).collect()
        }
        Err(e) => {
            tracing::debug!("who cancelled the jobs is not known (no Slurm accounting?): {e}");
            vec![None; jobs.len()]
        }
    }
}

/// `ID|STATE` lines of `sacct --parsable2 --format=JobID,State` -> the uid of each job
/// whose state is "CANCELLED by <uid>".
fn parse_sacct_cancelled(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once('|'))
        .filter_map(|(id, st)| Some((id.trim().to_string(), st.trim().strip_prefix("CANCELLED by ")?.to_string())))
        .collect()
}

/// `ID|STATE` lines of `squeue --format=%i|%T` -> state by job id.
fn parse_squeue(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once('|'))
        .map(|(id, st)| (id.trim().to_string(), st.split_whitespace().next().unwrap_or("").to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_output_parses_jobs_and_array_tasks() {
        let m = parse_squeue("12|RUNNING\n13_0|PENDING\n13_1|COMPLETED\n\n");
        assert_eq!(m.get("12").map(String::as_str), Some("RUNNING"));
        assert_eq!(m.get("13_1").map(String::as_str), Some("COMPLETED"));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn sacct_output_gives_the_uid_of_a_cancel() {
        let m = parse_sacct_cancelled("12|CANCELLED by 1000\n13_1|COMPLETED\n13_0|CANCELLED by 0\n14|PREEMPTED\n");
        assert_eq!(m.get("12").map(String::as_str), Some("1000"));
        assert_eq!(m.get("13_0").map(String::as_str), Some("0"));
        assert_eq!(m.len(), 2);
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
        let slurm = Slurm::new(profile, "/opt/ras".into(), dir.path().join("logs"), dir.path().into());
        let cfg_a = dir.path().join("a 1.toml");
        let cfg_b = dir.path().join("b.toml");
        let dep = JobRecord {
            kind: LauncherKind::Slurm,
            id: "17".into(),
            host: "h".into(),
            run_id: "features-x".into(),
            log: "l".into(),
            nodes: vec![],
            submitted: None,
        };
        let spec = |name: &str, config: &Path, attempt: usize| JobSpec {
            name: name.into(),
            command: JobCommand::Run { config: config.to_path_buf(), attempt, ranks: 3 },
            nodes: vec![],
            after: vec![dep.clone()],
            dependency: Dependency::AfterAny,
        };
        let subs = [spec("a-1", &cfg_a, 0), spec("b-2", &cfg_b, 1)];
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
        // Options the profile does not set leave no line behind.
        assert!(
            !script.contains("--partition") && !script.contains("--kill-on-invalid-dep") && !script.contains("\n\n\n"),
            "{script}"
        );
        // 3 ranks on 2 nodes of 2 GPUs: 2 per node fill them, so the job has its nodes to
        // itself; each rank sees both GPUs of its node (no per-task binding).
        assert!(
            script.contains("#SBATCH --gres=gpu:2\n#SBATCH --exclusive\n") && script.contains("-eq 75 ]"),
            "{script}"
        );
        assert!(!script.contains("gpus-per-task"), "{script}");
        // The rendered script parses as bash.
        let path = dir.path().join("job.sbatch");
        std::fs::write(&path, &script).unwrap();
        let st = Command::new("bash").arg("-n").arg(&path).status().unwrap();
        assert!(st.success(), "bash -n rejects:\n{script}");
    }

    #[test]
    fn gpus_per_node_not_per_task_and_exclusive_only_when_a_job_fills_its_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let profile =
            ClusterProfile::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/example-gpu.toml")).unwrap();
        let slurm = Slurm::new(profile, "/opt/ras".into(), dir.path().join("logs"), dir.path().into());
        let job = |ranks: usize, command: Option<JobCommand>| {
            let spec = JobSpec {
                name: "r".into(),
                command: command.unwrap_or(JobCommand::Run { config: "c.toml".into(), attempt: 0, ranks }),
                nodes: vec![],
                after: vec![],
                dependency: Dependency::AfterAny,
            };
            slurm.script(&[spec]).unwrap()
        };
        // A 2-GPU run is packed with others on an 8-GPU node: its 2 GPUs, shared node.
        let two = job(2, None);
        assert!(two.contains("#SBATCH --nodes=1\n") && two.contains("#SBATCH --gres=gpu:2\n"), "{two}");
        assert!(!two.contains("--exclusive") && !two.contains("gpus-per-task"), "{two}");
        // 16 ranks fill 2 nodes: 8 GPUs each, the nodes to itself.
        let full = job(16, None);
        assert!(
            full.contains("#SBATCH --nodes=2\n") && full.contains("#SBATCH --gres=gpu:8\n#SBATCH --exclusive\n"),
            "{full}"
        );
        assert!(full.contains("--quiet worker \"${CONFIGS[$i]}\""), "{full}");
        // The example profile sets up no CUDA module (the bundle brings libtorch's CUDA).
        assert!(!full.contains("module load"), "{full}");
        // `ras doctor`'s job: 2 ranks spread over 2 nodes, its own command on each rank.
        let args = vec!["doctor-node".to_string(), "--out".into(), "/shared/d x".into()];
        let doc = job(2, Some(JobCommand::Ranks { args, ranks: 2, nodes: 2 }));
        assert!(
            doc.contains("#SBATCH --nodes=2\n#SBATCH --ntasks=2\n#SBATCH --ntasks-per-node=1\n")
                && doc.contains("#SBATCH --gres=gpu:1\n"),
            "{doc}"
        );
        assert!(doc.contains("-n 2 /opt/ras --quiet doctor-node --out '/shared/d x'\n"), "{doc}");
    }
}
