//! Runs on this machine: each job is a `ras` process in its own process group, at most
//! as many ranks at once as the profile's slots (the coordinator enforces the limit;
//! this only starts, watches and stops processes).

use super::command::{run_command, Retry};
use super::{cancel_records, poll_records, JobCommand, JobRecord, JobSpec, JobState, LaunchError, Launcher};
use crate::config::LauncherKind;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Local {
    exe: PathBuf,
    log_dir: PathBuf,
    children: BTreeMap<String, Child>,
}

impl Local {
    pub fn new(exe: PathBuf, log_dir: PathBuf) -> Self {
        Self { exe, log_dir, children: BTreeMap::new() }
    }

    /// Starts `ras --quiet ARGS` with its output in `log_dir/<log_name>`. `name` must
    /// appear in the command line: liveness checks look for it there.
    fn spawn(&mut self, name: &str, log_name: &str, args: &[std::ffi::OsString]) -> Result<JobRecord, LaunchError> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--quiet").args(args);
        self.spawn_command(name, log_name, cmd)
    }

    /// Starts `cmd` (a `ras` or an `mpirun ... ras` command line) as `spawn` does.
    fn spawn_command(&mut self, name: &str, log_name: &str, mut cmd: Command) -> Result<JobRecord, LaunchError> {
        std::fs::create_dir_all(&self.log_dir)
            .map_err(|source| LaunchError::Io { path: self.log_dir.clone(), source })?;
        let log = self.log_dir.join(log_name);
        let file = std::fs::File::create(&log).map_err(|source| LaunchError::Io { path: log.clone(), source })?;
        let err = file.try_clone().map_err(|source| LaunchError::Io { path: log.clone(), source })?;
        use std::os::unix::process::CommandExt;
        // Own process group: cancel signals the run and its mpirun ranks together, and a
        // Ctrl-C (or kill) of the coordinator leaves the run going, to be adopted by the
        // next coordinator.
        cmd.process_group(0).stdin(Stdio::null()).stdout(file).stderr(err);
        // Quoted as a shell would need it: kept with the run as what the job ran.
        let line = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| super::shell_word(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        tracing::debug!(command = line, log = %log.display(), "starting");
        let program = PathBuf::from(cmd.get_program());
        let child = cmd.spawn().map_err(|source| LaunchError::Io { path: program, source })?;
        let id = child.id().to_string();
        self.children.insert(id.clone(), child);
        Ok(JobRecord {
            kind: LauncherKind::Local,
            id,
            host: crate::hostname(),
            run_id: name.to_string(),
            log,
            nodes: vec![],
            submitted: Some(format!("#!/bin/sh\n# started by ras (local launcher) on {}\n{line}\n", crate::hostname())),
        })
    }

    /// Reaps ended children so they do not linger as zombies.
    pub fn reap(&mut self) {
        self.children.retain(|_, c| !matches!(c.try_wait(), Ok(Some(_))));
    }
}

impl Launcher for Local {
    fn kind(&self) -> LauncherKind {
        LauncherKind::Local
    }

    fn submit(&mut self, jobs: &[JobSpec]) -> Result<Vec<JobRecord>, LaunchError> {
        let mut out = vec![];
        for job in jobs {
            if !job.after.is_empty() {
                return Err(LaunchError::Invalid(format!(
                    "{}: local jobs cannot wait for other jobs; the coordinator starts it when they ended",
                    job.name
                )));
            }
            if let JobCommand::Ranks { args, ranks, .. } = &job.command {
                // One node here: several ranks are mpirun's (as `ras train --ranks N`).
                let log_name = format!("{}.log", job.name);
                let cmd = if *ranks > 1 {
                    let mut all = vec!["--quiet".to_string()];
                    all.extend(args.iter().cloned());
                    super::mpirun::command(*ranks, &self.exe, &all)
                } else {
                    let mut c = Command::new(&self.exe);
                    c.arg("--quiet").args(args);
                    c
                };
                out.push(self.spawn_command(&job.name, &log_name, cmd)?);
                continue;
            }
            let (log_name, args): (String, Vec<std::ffi::OsString>) = match &job.command {
                JobCommand::Run { config, attempt, ranks } => (
                    format!("{}.{attempt}.log", job.name),
                    vec!["train".into(), config.clone().into(), "--ranks".into(), ranks.to_string().into()],
                ),
                JobCommand::Task { args } => (format!("{}.log", job.name), args.iter().map(Into::into).collect()),
                JobCommand::Ranks { .. } => unreachable!("started above"),
            };
            out.push(self.spawn(&job.name, &log_name, &args)?);
        }
        Ok(out)
    }

    fn poll(&mut self, jobs: &[&JobRecord]) -> Result<Vec<JobState>, LaunchError> {
        self.reap();
        Ok(poll_records(jobs))
    }

    fn cancel(&mut self, jobs: &[&JobRecord]) -> Result<(), LaunchError> {
        cancel_records(jobs)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // Reap what has ended; running children keep running (a restarted coordinator
        // finds them by their job record).
        self.reap();
    }
}

/// A local process is alive if /proc has it, it is not a zombie, and its command line
/// names the run (so a recycled pid is not mistaken for the job).
pub(crate) fn poll_pid(job: &JobRecord) -> JobState {
    if job.host != crate::hostname() {
        // Another machine's processes cannot be seen from here: assume alive, as a job
        // that may run must not be launched twice.
        return JobState::Active;
    }
    let alive = job.id.parse::<u32>().is_ok_and(crate::pid_alive);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", job.id)).unwrap_or_default();
    let names_run = String::from_utf8_lossy(&cmdline).contains(&job.run_id);
    if alive && names_run {
        JobState::Active
    } else {
        JobState::Ended
    }
}

/// SIGTERM to the job's whole process group: with N > 1 ranks, `ras train --ranks N`,
/// mpirun and every rank (each one checkpoints after its current step and exits 75).
pub(crate) fn terminate(job: &JobRecord) -> Result<(), LaunchError> {
    if poll_pid(job) != JobState::Active {
        return Ok(());
    }
    let pid: i32 = job.id.parse().map_err(|e| LaunchError::Invalid(format!("pid {:?}: {e}", job.id)))?;
    run_command(Command::new("kill").args(["-TERM", "--", &format!("-{pid}")]), Retry::Never, "")?;
    Ok(())
}
