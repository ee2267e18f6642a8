//! `ras sweep`, `status`, `cancel`, `plan`, `report` and `bench coordinator`: load the
//! sweep, its profile and store, call the library, print.

use super::args::{SweepArgs, SweepRefArgs};
use anyhow::{bail, Context, Result};
use ras::config::{ClusterProfile, LauncherKind};
use ras::exit::ExitStatus;
use ras::launch::Launcher;
use ras::store::Store;
use ras::sweep::{Manifest, RunPhase};
use std::path::{Path, PathBuf};

/// Expands a sweep file for `ras sweep` and `ras plan`. `check`: refuse a run whose
/// dataset does not hold what it names (missing root, unknown class, empty split);
/// `skip_checked`: not for runs this sweep already launched (a resumed sweep retries them,
/// and their jobs say what is wrong). Unchecked: returns the issues, to be shown.
fn load_sweep(
    args: &SweepArgs,
    check: bool,
    skip_launched: bool,
) -> Result<(Manifest, Store, ClusterProfile, Vec<ras::sweep::DataIssue>)> {
    let profile = ClusterProfile::load(&args.cluster)?;
    let opts = ras::sweep::ExpandOptions {
        store: args.store.clone(),
        overrides: args.overrides.clone(),
        max_ranks: profile.slots(),
        check_data: check,
    };
    let (manifest, mut issues) = ras::sweep::expand_checked(&args.sweep, &opts)?;
    let store = Store::open(&manifest.store)?;
    if check {
        if skip_launched && !issues.is_empty() {
            let claims = store.list(&format!("sweeps/{}/claims/", manifest.name))?;
            issues.retain(|i| {
                !claims.iter().any(|c| {
                    c.rsplit('/').next().and_then(|n| n.rsplit_once('.')).map(|(id, _)| id) == Some(i.run_id.as_str())
                })
            });
        }
        if let Some(i) = issues.into_iter().next() {
            return Err(i.into_error(&args.sweep).into());
        }
        return Ok((manifest, store, profile, vec![]));
    }
    Ok((manifest, store, profile, issues))
}

/// The sweep `ras status`, `report` and `cancel` name: a sweep file (expanded as `ras
/// sweep` does, without checking data; the profile, if any, only sizes ranks), or else a
/// sweep's name, whose manifest is read from the store.
fn find_sweep(args: &SweepRefArgs) -> Result<(Manifest, Store)> {
    if args.sweep.is_file() {
        let cluster =
            args.cluster.clone().or_else(|| Some(PathBuf::from("cluster/local.toml")).filter(|p| p.is_file()));
        let max_ranks = match &cluster {
            Some(c) => ClusterProfile::load(c)?.slots(),
            None => 1,
        };
        let opts = ras::sweep::ExpandOptions {
            store: args.store.clone(),
            overrides: args.overrides.clone(),
            max_ranks,
            check_data: false,
        };
        let manifest = ras::sweep::expand(&args.sweep, &opts)?;
        // Reading a sweep must not create its store: a mistyped URL is an error.
        let store = Store::open_existing(&manifest.store)?;
        if cluster.is_none() {
            // No profile to size ranks with: what the coordinator saved, if it ran.
            if let Ok(saved) = ras::runs::saved_sweep(&store, &manifest.name) {
                return Ok((saved, store));
            }
        }
        return Ok((manifest, store));
    }
    let name = args.sweep.to_string_lossy().to_string();
    if name.ends_with(".toml") || name.contains('/') {
        bail!("no sweep file {name}");
    }
    if !args.overrides.is_empty() {
        bail!("--set applies to sweep files; sweep {name} is read from its store as it ran");
    }
    let url = args.store.clone().unwrap_or_else(|| "file://./ras-store".into());
    let store = match ras::runs::open_existing(&url) {
        Err(ras::runs::RunsError::NoStore { .. }) => {
            bail!("no sweep {name} in {url} (no store there; give --store URL)")
        }
        r => r?,
    };
    let manifest = ras::runs::saved_sweep(&store, &name)?;
    Ok((manifest, store))
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
    let (mut manifest, store, profile, _) = load_sweep(args, true, true)?;
    // The plan's estimates go into the stored manifest: the report's "planned".
    ras::sweep::estimate::estimate_all(&mut manifest, &store, &profile)?;
    let mut launcher = launcher(&profile, &manifest, &store)?;
    let opts = ras::sweep::CoordinateOptions::for_profile(&profile, work_dir(&manifest).join("configs"), no_wait);
    println!(
        "sweep {}: {} runs, store {}, {} slots ({})",
        manifest.name,
        manifest.runs.len(),
        store.url(),
        profile.slots(),
        profile.launcher
    );
    let views = ras::sweep::coordinate(
        &store,
        &manifest,
        launcher.as_mut(),
        &opts,
        &mut |v| println!("{}", ras::sweep::render_views(v)),
        &mut |_| {},
    )?;
    let all_complete = views.iter().all(|v| v.phase == RunPhase::Complete);
    if let Some(out) = report {
        let queued = no_wait && launcher.queues_jobs();
        if queued && submit_report_job(args, &manifest, &store, launcher.as_mut(), &views, out)? {
            // The report job writes it.
        } else if all_complete {
            write_report(&args.sweep, &manifest, &store, out)?;
        } else if no_wait {
            println!("report: not all runs are complete yet; `ras sweep` (without --no-wait) or `ras report` writes it later");
        }
    }
    let open = views.iter().filter(|v| !v.is_settled()).count();
    if open > 0 && !no_wait {
        // Only a cancellation stops the loop with runs still open.
        println!(
            "sweep {} cancelled: {open} runs not complete (their checkpoints stay: `ras sweep` again resumes them)",
            manifest.name
        );
        return Ok(ExitStatus::Cancelled);
    }
    let failed: Vec<_> = views.iter().filter(|v| v.phase == RunPhase::Failed).collect();
    if !failed.is_empty() {
        for v in &failed {
            eprintln!(
                "run {} ({}) failed after {} attempts: {}",
                v.id,
                v.label,
                v.attempts,
                v.error.as_deref().unwrap_or("no error recorded")
            );
        }
        bail!("sweep {}: {} runs failed", manifest.name, failed.len());
    }
    Ok(ExitStatus::Ok)
}

/// With --no-wait on a cluster that queues jobs: the report job (afterok every active
/// run). False when no run is active (the caller writes the report itself).
fn submit_report_job(
    args: &SweepArgs,
    manifest: &Manifest,
    store: &Store,
    launcher: &mut dyn Launcher,
    views: &[ras::sweep::RunView],
    out: &Path,
) -> Result<bool> {
    let abs = |p: &Path| {
        std::fs::canonicalize(p).map(|p| p.display().to_string()).with_context(|| format!("{}", p.display()))
    };
    // The same manifest as this coordinator's: same sweep file, profile, store and --set.
    let mut cmd = vec!["report".to_string(), abs(&args.sweep)?, "--cluster".into(), abs(&args.cluster)?];
    if let Some(url) = &args.store {
        cmd.extend(["--store".to_string(), url.clone()]);
    }
    for o in &args.overrides {
        cmd.extend(["--set".to_string(), o.clone()]);
    }
    cmd.extend(["--out".to_string(), std::path::absolute(out)?.display().to_string()]);
    let Some(job) =
        ras::sweep::submit_report_job(store, manifest, launcher, views, cmd).context("submitting the report job")?
    else {
        return Ok(false);
    };
    let n = views.iter().filter(|v| v.phase == RunPhase::Active).count();
    println!("report job {} writes {} once all {n} active runs succeeded", job.id, out.display());
    Ok(true)
}

pub fn status(args: &SweepRefArgs, watch: Option<f64>) -> Result<()> {
    let (manifest, store) = find_sweep(args)?;
    // Jobs are polled from their records (each names its launcher): no profile needed.
    let mut launcher = ras::launch::Records;
    let mut tracker = ras::sweep::Tracker::new(&store, &manifest);
    loop {
        let views = tracker.refresh(&mut launcher)?;
        let table = ras::sweep::render_views(&views);
        let Some(secs) = watch else {
            print!("{table}");
            return Ok(());
        };
        if !secs.is_finite() || secs <= 0.0 {
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

pub fn cancel(args: &SweepRefArgs) -> Result<()> {
    let (manifest, store) = find_sweep(args)?;
    let n = ras::sweep::cancel(&store, &manifest, &mut ras::launch::Records)?;
    println!("sweep {}: cancelled {n} active jobs; coordinators launch nothing more", manifest.name);
    Ok(())
}

pub fn plan(args: &SweepArgs, json: bool, check_data: bool) -> Result<()> {
    let (mut manifest, store, profile, unchecked) = load_sweep(args, check_data, false)?;
    ras::sweep::estimate::estimate_all(&mut manifest, &store, &profile)?;
    let note = (!unchecked.is_empty()).then(|| {
        let mut s = format!(
            "--no-data-check: {} runs planned from their dataset's published sizes (data not readable here):\n",
            unchecked.len()
        );
        for i in &unchecked {
            s += &format!("  run `{}`: {}: {}\n", i.label, i.key, i.message);
        }
        s
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&ras::sweep::plan::plan_json(&manifest, &profile))?);
        if let Some(n) = note {
            eprint!("{n}");
        }
    } else {
        print!("{}", ras::sweep::plan::render_plan(&manifest, &profile));
        if let Some(n) = note {
            print!("{n}");
        } else if !check_data {
            println!("--no-data-check: every run's data was readable here; sizes are counted from it");
        }
    }
    Ok(())
}

pub fn report(args: &SweepRefArgs, out: &Path) -> Result<()> {
    let (manifest, store) = find_sweep(args)?;
    write_report(&args.sweep, &manifest, &store, out)
}

/// `ras report`: prints each dataset's table, writes tables and plots into `out`.
fn write_report(sweep: &Path, manifest: &Manifest, store: &Store, out: &Path) -> Result<()> {
    let report = match ras::report::write_sweep_report(store, manifest, out) {
        Err(e @ ras::report::ReportError::NoCompleteRun { .. }) => bail!("{e} (ras status {})", sweep.display()),
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
        bail!(
            "{}: ras bench coordinator needs a Slurm profile (a local one would start {runs} real runs)",
            cluster.display()
        );
    }
    let opts = ras::bench::coordinator::Options { runs, cycles, store, json };
    let summary = ras::bench::coordinator::run(&profile, &opts, &mut std::io::stdout())?;
    eprintln!("{summary}");
    Ok(())
}
