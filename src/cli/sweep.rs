//! `ras sweep`, `status`, `cancel`, `plan`, `report` and `bench coordinator`: load the
//! sweep, its profile and store, call the library, print.

use super::args::{SweepArgs, SweepRefArgs};
use anyhow::{bail, Context, Result};
use ras::exit::ExitStatus;
use ras::store::Store;
use ras::sweep::{Manifest, RunPhase};
use std::io::{IsTerminal, Write};
use std::path::Path;

fn load(args: &SweepArgs, check: bool, launching: bool) -> Result<ras::runs::LoadedSweep> {
    Ok(ras::runs::load_sweep(&args.sweep, &args.cluster, args.store.clone(), &args.overrides, check, launching)?)
}

fn find(args: &SweepRefArgs) -> Result<(Manifest, Store)> {
    Ok(ras::runs::find_sweep(&args.sweep, args.cluster.as_deref(), args.store.clone(), &args.overrides)?)
}

pub fn sweep(args: &SweepArgs, no_wait: bool, report: Option<&Path>, retry_cancelled: bool) -> Result<ExitStatus> {
    let ras::runs::LoadedSweep { mut manifest, store, profile, .. } = load(args, true, true)?;
    if retry_cancelled {
        print!("{}", ras::sweep::cancel::retry_cancelled_said(&store, &manifest)?);
    }
    // The plan's estimates go into the stored manifest: the report's "planned".
    ras::sweep::estimate::estimate_all(&mut manifest, &store, &profile)?;
    let work = ras::runs::work_dir(&manifest);
    let exe = std::env::current_exe().context("locating the ras binary")?;
    let mut launcher = ras::launch::for_profile(&profile, exe, work.join("logs"), std::env::current_dir()?);
    let opts = ras::sweep::CoordinateOptions::for_profile(&profile, work.join("configs"), no_wait);
    println!(
        "sweep {}: {} runs, store {}, {} slots ({})",
        manifest.name,
        manifest.runs.len(),
        store.url(),
        profile.slots(),
        profile.launcher
    );
    let name = &manifest.name;
    // Redrawn in place on a terminal; one line per change in a log. The last table is
    // drawn from the final views (a run's cost is recorded after it shows as complete).
    let mut progress = ras::sweep::SweepProgress::new(std::io::stdout().is_terminal());
    let print = &mut |v: &[ras::sweep::RunView]| {
        print!("{}", progress.update(v));
        let _ = std::io::stdout().flush();
    };
    let views = ras::sweep::coordinate(&store, &manifest, launcher.as_mut(), &opts, print, &mut |_| {})?;
    print!("{}", progress.finish(&views));
    if let Some(out) = report {
        let queued = no_wait && launcher.queues_jobs();
        let cmd =
            || ras::runs::report_job_command(&args.sweep, &args.cluster, args.store.as_deref(), &args.overrides, out);
        let job = if queued {
            ras::sweep::submit_report_job(&store, &manifest, launcher.as_mut(), &views, cmd()?)
                .context("submitting the report job")?
        } else {
            None
        };
        if let Some(job) = job {
            let n = views.iter().filter(|v| v.phase == RunPhase::Active).count();
            println!("report job {} writes {} once all {n} active runs succeeded", job.id, out.display());
        } else if ras::sweep::status::report_ready(&views) {
            write_report(&args.sweep, &manifest, &store, out)?;
        } else if no_wait {
            println!("report: not all runs are complete yet; `ras sweep` (without --no-wait) or `ras report` writes it later");
        }
    }
    let open = views.iter().filter(|v| !v.is_settled()).count();
    if open > 0 && !no_wait {
        // Only a cancellation stops the loop with runs still open.
        println!(
            "sweep {name} cancelled: {open} runs not complete (their checkpoints stay: `ras sweep` again resumes them)"
        );
        return Ok(ExitStatus::Cancelled);
    }
    let failed = ras::sweep::render_failed(&views);
    if !failed.is_empty() {
        eprint!("{failed}");
        bail!("sweep {name}: {} runs failed", views.iter().filter(|v| v.phase == RunPhase::Failed).count());
    }
    Ok(ExitStatus::Ok)
}

pub fn status(args: &SweepRefArgs, watch: Option<f64>) -> Result<()> {
    let (manifest, store) = find(args)?;
    // Jobs are polled from their records (each names its launcher): no profile needed.
    let mut launcher = ras::launch::Records;
    let mut tracker = ras::sweep::Tracker::new(&store, &manifest)?;
    loop {
        let views = tracker.refresh(&mut launcher)?;
        let table = ras::sweep::render_views(&views) + &ras::sweep::search::status_section(&tracker, &views);
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

/// `ras cancel`: the whole sweep (the next `ras sweep` resumes it), or with --run some runs, for good.
pub fn cancel(args: &SweepRefArgs, runs: &[String], reason: Option<&str>) -> Result<()> {
    let (manifest, store) = find(args)?;
    print!("{}", ras::sweep::cancel::cancel_command(&store, &manifest, &mut ras::launch::Records, runs, reason)?);
    Ok(())
}

pub fn plan(args: &SweepArgs, json: bool, check_data: bool) -> Result<()> {
    let ras::runs::LoadedSweep { mut manifest, store, profile, unchecked } = load(args, check_data, false)?;
    ras::sweep::estimate::estimate_all(&mut manifest, &store, &profile)?;
    let note = ras::sweep::plan::render_unchecked(&unchecked, check_data);
    if json {
        println!("{}", serde_json::to_string_pretty(&ras::sweep::plan::plan_json(&manifest, &profile)?)?);
        eprint!("{note}");
    } else {
        print!("{}{note}", ras::sweep::plan::render_plan(&manifest, &profile)?);
    }
    Ok(())
}

pub fn report(args: &SweepRefArgs, out: &Path) -> Result<()> {
    let (manifest, store) = find(args)?;
    write_report(&args.sweep, &manifest, &store, out)
}

/// `ras verify`: the cells that did not reproduce; Failed when any is below or above.
pub fn verify(args: &SweepRefArgs) -> Result<ExitStatus> {
    let (manifest, store) = find(args)?;
    let v = ras::report::verify(&store, &manifest)?;
    print!("{}", v.text);
    Ok(if v.off_the_paper { ExitStatus::Failed } else { ExitStatus::Ok })
}

/// `ras report`: prints each dataset's table, writes tables and plots into `out`.
fn write_report(sweep: &Path, manifest: &Manifest, store: &Store, out: &Path) -> Result<()> {
    match ras::report::write_sweep_report(store, manifest, out) {
        Err(e @ ras::report::ReportError::NoCompleteRun { .. }) => bail!("{e} (ras status {})", sweep.display()),
        r => print!("{}", r?.render()),
    }
    Ok(())
}
