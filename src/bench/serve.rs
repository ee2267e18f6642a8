//! `ras bench serve`: what `ras serve`'s sweep page costs on a big sweep. A synthetic
//! sweep of N finished runs (the records `ras train` leaves: config, status, final
//! metrics over 15 classes, a cost record) is written to a fresh store; then the sweep
//! page is built by a fresh dashboard (the first view: everything read), built again with
//! nothing changed (a refresh: one LIST, no GET), and built again after one run's record
//! changed. Each line gives the wall time and the store requests by kind, beside
//! `ras report` of the same sweep (which reads everything every time) in the same run.
//!
//! With `--s3` the store is the test S3 server behind a forwarder adding a round trip's
//! latency to every request (s3.rs).

use crate::serve::{Dashboard, Route};
use crate::store::{request_counts, Store};
use crate::sweep::{Manifest, SweepState};
use std::io::Write;
use std::time::{Duration, Instant};

pub struct Options {
    pub runs: usize,
    /// Some: the test S3 server behind this much latency per request.
    pub s3_latency: Option<Duration>,
    /// Refreshes with nothing changed to time (the median is reported).
    pub refreshes: usize,
    /// Leave out `ras report` of the same sweep (minutes on the test S3 server).
    pub skip_report: bool,
}

/// Writes a finished synthetic sweep of `runs` runs to the store at `url` (its files in
/// `dir`): the manifest, and every run's records. Returns the manifest.
pub fn synthetic_finished_sweep(url: &str, runs: usize, dir: &std::path::Path) -> anyhow::Result<Manifest> {
    let manifest = super::coordinator::synthetic_sweep(runs, url, dir)?.stamped();
    let store = Store::open(&manifest.store)?;
    SweepState { store: &store, manifest: &manifest }.publish_manifest()?;
    super::coordinator::finish_synthetically(&store, &manifest)?;
    Ok(manifest)
}

pub fn run(opts: &Options, out: &mut dyn Write) -> anyhow::Result<String> {
    // As `ras serve` runs (before any store is opened).
    let serve_only = crate::serve::reader_defaults();
    let tmp = std::env::temp_dir().join(format!("ras-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut url = format!("file://{}", tmp.join("store").display());
    let server = super::s3::start_for_bench(opts.s3_latency, &tmp.join("s3"), "serve-bench", out)?;
    if let Some((_, u)) = &server {
        url = u.clone();
    }
    let t = Instant::now();
    let manifest = synthetic_finished_sweep(&url, opts.runs, &tmp)?;
    let store = Store::open(&manifest.store)?;
    writeln!(
        out,
        "wrote a finished sweep of {} runs to {} in {:.1} s",
        opts.runs,
        store.url(),
        t.elapsed().as_secs_f64()
    )?;
    writeln!(
        out,
        "{:<44} {:>9} {:>9} {:>9} {:>6} {:>5} {:>7}",
        "sweep page", "wall s", "read s", "build s", "get", "list", "bytes"
    )?;
    let name = manifest.name.clone();
    // Refresh interval 0: every build below asks the store (no rate limit).
    let mut dash = Dashboard::new(store.clone(), Duration::ZERO)?;
    let route = Route::Sweep(name.clone());
    let mut line = |label: &str, dash: &mut Dashboard| -> anyhow::Result<(f64, u64, u64)> {
        let before = request_counts();
        let t = Instant::now();
        let page = dash.page(&route)?;
        let wall = t.elapsed().as_secs_f64();
        let n = request_counts().since(&before);
        let html = crate::serve::html::page(&page.title, dash.store_url(), &page.main, &page.version, 2000);
        let (read, build) = dash.last_timing;
        writeln!(out, "{label:<44} {wall:>9.4} {read:>9.4} {build:>9.4} {:>6} {:>5} {:>7}", n.get, n.list, html.len())?;
        Ok((wall, n.get, n.list))
    };
    let first = line("first view (a fresh server)", &mut dash)?;
    let mut refreshes = vec![];
    for _ in 0..opts.refreshes.max(1) {
        refreshes.push(line("refresh, nothing changed", &mut dash)?);
    }
    refreshes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median = refreshes[refreshes.len() / 2];
    // A coordinator claims a run again (as a retry would): its folder is listed again.
    let id = &manifest.runs[0].id;
    store.put(&crate::sweep::SweepPaths::new(name.as_str()).claim(id, 2), "{\"unix\":0}")?;
    line("refresh after a change (a new claim)", &mut dash)?;
    let mut report_s = f64::NAN;
    if !opts.skip_report {
        let t = Instant::now();
        let exe = std::env::current_exe()?;
        // With its own settings, not those the bench gave itself as `ras serve` has them.
        let mut report = std::process::Command::new(&exe);
        report.args(["--quiet", "report", &name, "--store", store.url(), "--out"]).arg(tmp.join("report"));
        for var in &serve_only {
            report.env_remove(var);
        }
        let res = report.output()?;
        report_s = t.elapsed().as_secs_f64();
        let ok = if res.status.success() {
            "ok".to_string()
        } else {
            format!("FAILED: {}", String::from_utf8_lossy(&res.stderr).trim())
        };
        writeln!(out, "{:<44} {report_s:>9.4}  ({ok}; reads every run each time)", "`ras report` of the same sweep")?;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(format!(
        "{} runs on {}: sweep page first view {:.3} s ({} GET, {} LIST), refresh with nothing changed {:.4} s ({} GET, {} LIST, median of {}); ras report {:.2} s",
        opts.runs, url, first.0, first.1, first.2, median.0, median.1, median.2, refreshes.len(), report_s
    ))
}
