//! `ras sweep`, `status`, `cancel`, `plan`, `report` and `bench coordinator`: load the
//! sweep, its profile and store, call the library, print.

use super::args::SweepArgs;
use anyhow::{bail, Context, Result};
use ras::config::{ClusterProfile, LauncherKind};
use ras::exit::ExitStatus;
use ras::launch::Launcher;
use ras::store::Store;
use ras::sweep::{Manifest, RunPhase};
use std::path::{Path, PathBuf};

/// The sweep, its store and profile. `read_only` commands (status, report) open a store
/// that must exist: a mistyped store URL is an error, not a new empty folder.
fn load_sweep(args: &SweepArgs, read_only: bool) -> Result<(Manifest, Store, ClusterProfile)> {
    let profile = ClusterProfile::load(&args.cluster)?;
    let opts = ras::sweep::ExpandOptions { store: args.store.clone(), overrides: args.overrides.clone(), max_ranks: profile.slots() };
    let manifest = ras::sweep::expand(&args.sweep, &opts)?;
    let store = if read_only { Store::open_existing(&manifest.store)? } else { Store::open(&manifest.store)? };
    Ok((manifest, store, profile))
}

/// Local folder for the resolved configs and logs the jobs use (under the current one,
/// which jobs also run in, so relative dataset paths mean the same thing).
fn work_dir(manifest: &Manifest) -> PathBuf {
    PathBuf::from(".ras-sweeps").join(&manifest.name)
}

fn launcher(profile: &ClusterProfile, manifest: &Manifest, store: &Store) -> Result<Box<dyn Launcher>> {
    let exe = std::env::current_exe().context("locating the ras binary")?;
    Ok(ras::launch::for_profile(profile, exe, work_dir(manifest).join("logs"), std::env::current_dir()?, store))
}

pub fn sweep(args: &SweepArgs, no_wait: bool, report: Option<&Path>) -> Result<ExitStatus> {
    let (mut manifest, store, profile) = load_sweep(args, false)?;
    // The plan's estimates go into the stored manifest: the report's "planned".
    ras::sweep::estimate::estimate_all(&mut manifest, &store, &profile)?;
    let mut launcher = launcher(&profile, &manifest, &store)?;
    let opts = ras::sweep::CoordinateOptions::for_profile(&profile, work_dir(&manifest).join("configs"), no_wait);
    println!("sweep {}: {} runs, store {}, {} slots ({})", manifest.name, manifest.runs.len(), store.url(), profile.slots(), profile.launcher);
    let views = ras::sweep::coordinate(&store, &manifest, launcher.as_mut(), &opts, &mut |v| println!("{}", ras::sweep::render_views(v)), &mut |_| {})?;
    let all_complete = views.iter().all(|v| v.phase == RunPhase::Complete);
    if let Some(out) = report {
        let queued = no_wait && launcher.queues_jobs();
        if queued && submit_report_job(args, &manifest, &store, launcher.as_mut(), &views, out)? {
            // The report job writes it.
        } else if all_complete {
            write_report(args, &manifest, &store, out)?;
        } else if no_wait {
            println!("report: not all runs are complete yet; `ras sweep` (without --no-wait) or `ras report` writes it later");
        }
    }
    let open = views.iter().filter(|v| !v.is_settled()).count();
    if open > 0 && !no_wait {
        // Only a cancellation stops the loop with runs still open.
        println!("sweep {} cancelled: {open} runs not complete (their checkpoints stay: `ras sweep` again resumes them)", manifest.name);
        return Ok(ExitStatus::Cancelled);
    }
    let failed: Vec<_> = views.iter().filter(|v| v.phase == RunPhase::Failed).collect();
    if !failed.is_empty() {
        for v in &failed {
            eprintln!("run {} ({}) failed after {} attempts: {}", v.id, v.label, v.attempts, v.error.as_deref().unwrap_or("no error recorded"));
        }
        bail!("sweep {}: {} runs failed", manifest.name, failed.len());
    }
    Ok(ExitStatus::Ok)
}

/// With --no-wait on a cluster that queues jobs: the report job (afterok every active
/// run). False when no run is active (the caller writes the report itself).
fn submit_report_job(args: &SweepArgs, manifest: &Manifest, store: &Store, launcher: &mut dyn Launcher, views: &[ras::sweep::RunView], out: &Path) -> Result<bool> {
    let abs = |p: &Path| std::fs::canonicalize(p).map(|p| p.display().to_string()).with_context(|| format!("{}", p.display()));
    // The same manifest as this coordinator's: same sweep file, profile, store and --set.
    let mut cmd = vec!["report".to_string(), abs(&args.sweep)?, "--cluster".into(), abs(&args.cluster)?];
    if let Some(url) = &args.store {
        cmd.extend(["--store".to_string(), url.clone()]);
    }
    for o in &args.overrides {
        cmd.extend(["--set".to_string(), o.clone()]);
    }
    cmd.extend(["--out".to_string(), std::path::absolute(out)?.display().to_string()]);
    let Some(job) = ras::sweep::submit_report_job(store, manifest, launcher, views, cmd).context("submitting the report job")? else {
        return Ok(false);
    };
    let n = views.iter().filter(|v| v.phase == RunPhase::Active).count();
    println!("report job {} writes {} once all {n} active runs succeeded", job.id, out.display());
    Ok(true)
}

pub fn status(args: &SweepArgs, watch: Option<f64>) -> Result<()> {
    let (manifest, store, profile) = load_sweep(args, true)?;
    let mut launcher = launcher(&profile, &manifest, &store)?;
    let mut tracker = ras::sweep::Tracker::new(&store, &manifest);
    loop {
        let views = tracker.refresh(launcher.as_mut())?;
        let table = ras::sweep::render_views(&views);
        let Some(secs) = watch else {
            print!("{table}");
            return Ok(());
        };
        if !(secs > 0.0) {
            bail!("--watch {secs}: give a number of seconds above 0");
        }
        // Clear the terminal and redraw in place.
        print!("\x1b[2J\x1b[H{}  (every {secs} s; Ctrl-C stops watching)\n{table}", manifest.name);
        std::io::Write::flush(&mut std::io::stdout())?;
        if views.iter().all(|v| v.is_settled()) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_secs_f64(secs));
    }
}

pub fn cancel(args: &SweepArgs) -> Result<()> {
    let (manifest, store, profile) = load_sweep(args, false)?;
    let mut launcher = launcher(&profile, &manifest, &store)?;
    let n = ras::sweep::cancel(&store, &manifest, launcher.as_mut())?;
    println!("sweep {}: cancelled {n} active jobs; coordinators launch nothing more", manifest.name);
    Ok(())
}

pub fn plan(args: &SweepArgs, json: bool) -> Result<()> {
    let (mut manifest, store, profile) = load_sweep(args, false)?;
    ras::sweep::estimate::estimate_all(&mut manifest, &store, &profile)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&ras::sweep::plan::plan_json(&manifest, &profile))?);
    } else {
        print!("{}", ras::sweep::plan::render_plan(&manifest, &profile));
    }
    Ok(())
}

pub fn report(args: &SweepArgs, out: &Path) -> Result<()> {
    let (manifest, store, _) = load_sweep(args, true)?;
    write_report(args, &manifest, &store, out)
}

/// `ras report`: prints each dataset's table, writes tables and plots into `out`.
fn write_report(args: &SweepArgs, manifest: &Manifest, store: &Store, out: &Path) -> Result<()> {
    let report = match ras::report::write_sweep_report(store, manifest, out) {
        Err(e @ ras::report::ReportError::NoCompleteRun { .. }) => bail!("{e} (ras status {})", args.sweep.display()),
        r => r?,
    };
    for md in &report.markdown {
        println!("{md}");
    }
    for f in &report.files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

/// `ras bench coordinator`: see its --help.
pub fn bench_coordinator(runs: usize, cycles: usize, cluster: &Path, store: Option<String>, json: bool) -> Result<()> {
    let profile = ClusterProfile::load(cluster)?;
    if profile.launcher != LauncherKind::Slurm {
        bail!("{}: ras bench coordinator needs a Slurm profile (a local one would start {runs} real runs)", cluster.display());
    }
    let opts = ras::bench::coordinator::Options { runs, cycles, store, json };
    let summary = ras::bench::coordinator::run(&profile, &opts, &mut std::io::stdout())?;
    eprintln!("{summary}");
    Ok(())
}
