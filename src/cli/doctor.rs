//! `ras doctor` and its hidden per-rank half `ras doctor-node` (the library's doctor.rs).

use anyhow::{Context, Result};
use ras::config::ClusterProfile;
use ras::exit::ExitStatus;
use std::path::Path;

pub fn doctor(cluster: &Path, mut opts: ras::doctor::DoctorOptions) -> Result<ExitStatus> {
    let profile = ClusterProfile::load(cluster)?;
    // One folder per check: the job's script and log, and the rank files.
    let name = format!("doctor-{}-{}", ras::unix_now(), std::process::id());
    opts.dir = opts.dir.join(&name);
    std::fs::create_dir_all(&opts.dir).with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let exe = std::env::current_exe().context("locating the ras binary")?;
    let mut launcher = ras::launch::for_profile(&profile, exe.clone(), opts.dir.join("logs"), std::env::current_dir()?);
    print!("{}", ras::doctor::render_start(cluster, &profile, &opts, &exe));
    let out = ras::doctor::doctor(&profile, launcher.as_mut(), &opts, &name)?;
    print!("{}", out.render());
    if out.ok() {
        println!("all checks passed (files in {})", out.dir.display());
        Ok(ExitStatus::Ok)
    } else {
        eprint!("{}", out.render_failure());
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
