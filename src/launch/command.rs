//! Every external command a launcher runs (sbatch, squeue, scancel, kill, mpirun) goes
//! through [`run_command`]: its command line, exit status and stderr are logged the same
//! way, it is counted (`ras bench coordinator` reports scheduler calls per poll cycle),
//! and a failure whose stderr says it was transient (the Slurm controller restarting, a
//! socket timeout) is retried with exponential backoff.

use backon::{BlockingRetryable, ExponentialBuilder};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// A command that could not run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    // The OS error is part of the message, not a source: the install hint reads after it.
    #[error("cannot start `{line}`: {error}{hint}")]
    Spawn { line: String, hint: String, error: std::io::Error },
    #[error("`{line}` failed ({status}): {stderr}")]
    Failed { line: String, status: String, stderr: String },
}

impl CommandError {
    /// The command's stderr (empty when it did not start).
    pub fn stderr(&self) -> &str {
        match self {
            CommandError::Spawn { .. } => "",
            CommandError::Failed { stderr, .. } => stderr,
        }
    }
}

/// When a failed command is run again.
#[derive(Debug, Clone, Copy)]
pub enum Retry {
    /// Never (the caller decides: a poll that fails is "unknown" for this cycle).
    Never,
    /// While stderr contains one of `patterns`, up to `times` more attempts with
    /// exponential backoff from 0.5 s to `max_delay`.
    Transient { patterns: &'static [&'static str], times: usize, max_delay: Duration },
}

/// stderr of Slurm commands that could not reach the controller: nothing happened, so
/// running the command again is safe, even for sbatch.
pub const SLURM_UNREACHABLE: &[&str] = &[
    "Unable to contact slurm controller",
    "Connection refused",
    "Resource temporarily unavailable",
    "connect failure",
];

/// What a successful command printed.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub stdout: String,
    pub stderr: String,
}

static CALLS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
/// Microseconds spent waiting for external commands, all together.
static WAITED_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Seconds this process spent waiting for external commands (scheduler calls) so far.
pub fn waited_s() -> f64 {
    WAITED_US.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6
}

/// How many times each program was started by this process (retries included).
pub fn calls() -> BTreeMap<String, u64> {
    CALLS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The command as a shell would show it.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion and returns its output if it exited 0; logs it either way.
/// `hint` is appended when the program cannot be started (how to install it).
pub fn run_command(cmd: &mut Command, retry: Retry, hint: &str) -> Result<CommandOutput, CommandError> {
    let line = command_line(cmd);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut once = || -> Result<CommandOutput, CommandError> {
        *CALLS.lock().unwrap_or_else(|p| p.into_inner()).entry(program.clone()).or_default() += 1;
        let t = std::time::Instant::now();
        let out = cmd.output();
        WAITED_US.fetch_add(t.elapsed().as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
        let out = out.map_err(|error| CommandError::Spawn { line: line.clone(), hint: hint.to_string(), error })?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        tracing::debug!(command = line, status = %out.status, stderr, "ran");
        if !out.status.success() {
            return Err(CommandError::Failed { line: line.clone(), status: out.status.to_string(), stderr });
        }
        Ok(CommandOutput { stdout: String::from_utf8_lossy(&out.stdout).into_owned(), stderr })
    };
    match retry {
        Retry::Never => once(),
        Retry::Transient { patterns, times, max_delay } => once
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(max_delay)
                    .with_max_times(times),
            )
            .sleep(std::thread::sleep)
            .when(|e: &CommandError| patterns.iter().any(|p| e.stderr().contains(p)))
            .notify(|e: &CommandError, after: Duration| {
                tracing::warn!("{e}; trying again in {:.1} s", after.as_secs_f64())
            })
            .call(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_command_and_transient_ones_are_retried() {
        let err = run_command(Command::new("sh").args(["-c", "echo nope >&2; exit 3"]), Retry::Never, "")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sh -c") && err.contains("nope") && err.contains("3"), "{err}");
        // Fails twice with a transient message, then succeeds: the counter file shows 3 runs.
        let dir = tempfile::tempdir().unwrap();
        let n = dir.path().join("n");
        let script = format!(
            "c=$(cat {0} 2>/dev/null || echo 0); c=$((c+1)); echo $c > {0}; [ $c -ge 3 ] && echo ok || {{ echo 'Unable to contact slurm controller' >&2; exit 1; }}",
            n.display()
        );
        let retry = Retry::Transient { patterns: SLURM_UNREACHABLE, times: 5, max_delay: Duration::from_millis(600) };
        let out = run_command(Command::new("sh").args(["-c", &script]), retry, "").unwrap();
        assert_eq!(out.stdout.trim(), "ok");
        assert_eq!(std::fs::read_to_string(&n).unwrap().trim(), "3");
        // A failure that is not transient is not retried.
        std::fs::write(&n, "0").unwrap();
        let err = run_command(
            Command::new("sh").args(["-c", &format!("echo 1 > {}; echo denied >&2; exit 1", n.display())]),
            retry,
            "",
        )
        .unwrap_err();
        assert!(err.to_string().contains("denied"));
        let err =
            run_command(&mut Command::new("/nonexistent/prog"), Retry::Never, " (install it)").unwrap_err().to_string();
        assert!(err.contains("/nonexistent/prog") && err.contains("(install it)"), "{err}");
    }
}
