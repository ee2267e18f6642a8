//! `ras doctor` and its hidden per-rank half `ras doctor-node` (the library's doctor.rs).

use anyhow::{Context, Result};
use ras::config::ClusterProfile;
use ras::exit::ExitStatus;
use std::path::{Path, PathBuf};

/// Removes the check's temporary folder however `doctor` ends (error and panic included).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            ras::doctor::remove_check_dir(&dir);
        }
    }
}

/// `keep`: `opts.dir` was named by --dir (the files stay there); else the check's files go
/// to a temporary folder in the current one (a folder the nodes share when it is), removed
/// at the end: a check leaves nothing behind.
pub fn doctor(cluster: &Path, mut opts: ras::doctor::DoctorOptions, keep: bool) -> Result<ExitStatus> {
    let profile = ClusterProfile::load(cluster)?;
    // One folder per check: the job's script and log, and the rank files.
    let name = format!("doctor-{}-{}", ras::unix_now(), std::process::id());
    opts.dir = if keep { opts.dir.join(&name) } else { std::env::current_dir()?.join(format!(".ras-{name}")) };
    std::fs::create_dir_all(&opts.dir).with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let _temporary = RemoveOnDrop((!keep).then(|| opts.dir.clone()));
    let exe = std::env::current_exe().context("locating the ras binary")?;
    let mut launcher = ras::launch::for_profile(&profile, exe.clone(), opts.dir.join("logs"), std::env::current_dir()?);
    print!("{}", ras::doctor::render_start(cluster, &profile, &opts, &exe));
    let out = ras::doctor::doctor(&profile, launcher.as_mut(), &opts, &name)?;
    print!("{}", out.render());
    if out.ok() {
        if keep {
            println!("all checks passed (files in {})", out.dir.display());
        } else {
            println!("all checks passed");
        }
        Ok(ExitStatus::Ok)
    } else {
        eprint!("{}", out.render_failure(keep));
        Ok(ExitStatus::Failed)
    }
}

pub fn doctor_node(out: &Path, collective: ras::doctor::CollectiveCheck, elements: usize) -> Result<ExitStatus> {
    let ok = ras::doctor::doctor_node(out, collective, elements)?;
    let world = ras::dist::WorldInfo::from_env()?;
    let file = out.join(format!("rank-{}.json", world.rank));
    // The rank's report on stdout too: the job log (and gpu-check.sh) shows it.
    println!("{}", std::fs::read_to_string(&file).unwrap_or_default());
    Ok(if ok { ExitStatus::Ok } else { ExitStatus::Failed })
}
