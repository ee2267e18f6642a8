//! Several ranks on this machine: the one place that builds an `mpirun` command line
//! (`ras train --ranks N` and `ras bench ranks` both use it).

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

/// `mpirun --oversubscribe --bind-to none -np N [--allow-run-as-root] EXE ARGS`: more
/// ranks than cores are allowed (tests and benches on small machines), ranks are not
/// pinned (torch picks its own threads), and root may run it (CI containers).
pub fn command(ranks: usize, exe: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--oversubscribe", "--bind-to", "none", "-np", &ranks.to_string()]);
    if is_root() {
        cmd.arg("--allow-run-as-root");
    }
    cmd.arg(exe).args(args);
    cmd
}

/// How an mpirun ended: its exit code and the last lines of its stderr (which name the
/// rank that failed).
pub struct Finished {
    pub code: i32,
    pub stderr_tail: Vec<String>,
}

/// Runs `command(ranks, exe, args)`, passing its stderr through to ours as it comes (the
/// ranks' logs) and keeping the last 15 lines.
pub fn run(ranks: usize, exe: &Path, args: &[String]) -> std::io::Result<Finished> {
    let mut cmd = command(ranks, exe, args);
    tracing::debug!(command = super::command::command_line(&cmd), "starting");
    let mut child = cmd.stderr(Stdio::piped()).spawn()?;
    let mut tail: std::collections::VecDeque<String> = Default::default();
    if let Some(err) = child.stderr.take() {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("{line}");
            tail.push_back(line);
            if tail.len() > 15 {
                tail.pop_front();
            }
        }
    }
    let code = child.wait()?.code().unwrap_or(1);
    Ok(Finished { code, stderr_tail: tail.into() })
}

/// Whether this process runs as root (mpirun refuses root unless told).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
