//! `ras bench search`: what successive halving saves, and what it selects. The search
//! sweep (`jobs/search.toml`: 9 variants, eta 3) and the same variants as a grid trained
//! to the last rung (`jobs/search-grid.toml`: the same held-out split) both run on a
//! cluster profile into one fresh store, one after the other; then, from their records:
//! - rank-hours of their runs' attempts (feature-cache jobs left out: the first sweep
//!   fills the cache the second reads), and the search's share of the grid's;
//! - the selection metric of every grid run at the last rung, ranked, and where the
//!   search's selected configuration ranks among them;
//! - each configuration the search trained to the end against the same configuration in
//!   the grid: final metrics identical bit for bit (a promoted run resumes from the
//!   rung's checkpoint)?
//!
//! The claims of issue 21 are checked at the end: the search costs at most 45 % of the
//! grid, selects one of the grid's best two, and its finished runs equal the grid's.
//! A claim that fails makes the command fail, after printing everything.

use crate::run::cost::{read_attempts_many, Job};
use crate::run::search::RungRecord;
use crate::run::{FinalMetrics, RunPaths};
use crate::store::Store;
use crate::sweep::Manifest;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

pub struct Options {
    pub search: PathBuf,
    pub grid: PathBuf,
    pub cluster: PathBuf,
    /// Default: a fresh folder store under the temporary directory.
    pub store: Option<String>,
    /// Both sweeps on the test S3 server behind this latency per request (then `ras
    /// report` of the search is timed there too).
    pub s3_latency: Option<std::time::Duration>,
}

/// Largest share of the grid's rank-hours the search may spend (issue 21).
const MAX_SHARE: f64 = 0.45;

/// Runs one sweep to its end on the profile (as `ras sweep` does, quietly).
fn run_sweep(file: &std::path::Path, opts: &Options, store: &str, out: &mut dyn Write) -> anyhow::Result<Manifest> {
    let crate::runs::LoadedSweep { mut manifest, store, profile, .. } =
        crate::runs::load_sweep(file, &opts.cluster, Some(store.to_string()), &[], true, true)?;
    crate::sweep::estimate::estimate_all(&mut manifest, &store, &profile)?;
    let work = crate::runs::work_dir(&manifest);
    let exe = std::env::current_exe()?;
    let mut launcher = crate::launch::for_profile(&profile, exe, work.join("logs"), std::env::current_dir()?);
    let copts = crate::sweep::CoordinateOptions::for_profile(&profile, work.join("configs"), false);
    let t = std::time::Instant::now();
    let views = crate::sweep::coordinate(&store, &manifest, launcher.as_mut(), &copts, &mut |_| {}, &mut |_| {})?;
    let failed = crate::sweep::render_failed(&views);
    anyhow::ensure!(failed.is_empty(), "sweep {} had failed runs:\n{failed}", manifest.name);
    writeln!(
        out,
        "{}: {}, {:.0} s",
        manifest.name,
        crate::sweep::status::phase_counts(&views, ""),
        t.elapsed().as_secs_f64()
    )?;
    Ok(manifest)
}

/// Rank-hours of the runs' own attempts (not feature-cache jobs).
fn run_rank_hours(store: &Store, manifest: &Manifest) -> anyhow::Result<f64> {
    let paths: Vec<RunPaths> = manifest.runs.iter().map(|r| RunPaths::new(r.id.as_str())).collect();
    Ok(read_attempts_many(store, &paths)?.iter().flatten().filter(|a| a.job == Job::Run).map(|a| a.rank_hours).sum())
}

/// (variant, run id, selection metric at the last rung) of every run that got there.
fn last_rung(store: &Store, manifest: &Manifest) -> anyhow::Result<Vec<(String, String, f64)>> {
    let search = manifest.search.as_ref().ok_or_else(|| anyhow::anyhow!("sweep {} has no [search]", manifest.name))?;
    let last = *search.rungs.last().expect("rungs");
    let keys: Vec<String> = manifest.runs.iter().map(|r| RunPaths::new(r.id.as_str()).rung(last)).collect();
    let recs = store.get_json_many::<RungRecord, _>(&keys)?;
    let mut v: Vec<(String, String, f64)> = manifest
        .runs
        .iter()
        .zip(recs)
        .filter_map(|(r, rec)| Some((r.variant.clone(), r.id.clone(), rec?.value)))
        .collect();
    let minimize = search.minimize();
    v.sort_by(|a, b| if minimize { a.2.total_cmp(&b.2) } else { b.2.total_cmp(&a.2) });
    Ok(v)
}

pub fn run(opts: &Options, out: &mut dyn Write) -> anyhow::Result<String> {
    let tmp = std::env::temp_dir().join(format!("ras-bench-search-{}", std::process::id()));
    let s3 = super::s3::start_for_bench(opts.s3_latency, &tmp.join("s3"), "search", out)?;
    let url = match (&s3, &opts.store) {
        (Some((_, url)), _) => url.clone(),
        (None, Some(url)) => url.clone(),
        (None, None) => format!("file://{}", tmp.join("store").display()),
    };
    writeln!(out, "store {url}")?;
    let grid = run_sweep(&opts.grid, opts, &url, out)?;
    let search = run_sweep(&opts.search, opts, &url, out)?;
    let store = Store::open(&url)?;
    let (grid_h, search_h) = (run_rank_hours(&store, &grid)?, run_rank_hours(&store, &search)?);
    let share = search_h / grid_h;
    let ranked = last_rung(&store, &grid)?;
    let selected = last_rung(&store, &search)?;
    let metric = &grid.search.as_ref().expect("checked").metric;
    writeln!(out, "\n{:<4} {:<48} {:>14}  search", "rank", "variant (grid, at the last rung)", metric)?;
    let reached: BTreeMap<&str, f64> = selected.iter().map(|(v, _, x)| (v.as_str(), *x)).collect();
    for (i, (variant, _, value)) in ranked.iter().enumerate() {
        let mark = reached.get(variant.as_str()).map(|x| format!("trained to the end ({x:.6})")).unwrap_or_default();
        writeln!(out, "{:<4} {variant:<48} {value:>14.6}  {mark}", i + 1)?;
    }
    // The search's finished runs against the same configurations in the grid.
    let mut identical = 0;
    let mut differing = vec![];
    for (variant, id, _) in &selected {
        let Some((_, gid, _)) = ranked.iter().find(|(v, _, _)| v == variant) else { continue };
        let read = |id: &str| store.get_json::<FinalMetrics>(&RunPaths::new(id).final_metrics());
        let (a, b) = (read(id)?, read(gid)?);
        let same = match (&a, &b) {
            (Some(a), Some(b)) => serde_json::to_value(&a.metrics)? == serde_json::to_value(&b.metrics)?,
            _ => false,
        };
        if same {
            identical += 1;
        } else {
            differing.push(variant.clone());
        }
    }
    let best = selected.first().map(|(v, _, _)| v.clone()).unwrap_or_default();
    let best_rank = ranked.iter().position(|(v, _, _)| *v == best).map(|p| p + 1);
    let summary = format!(
        "search: {search_h:.4} rank-hours, grid: {grid_h:.4} rank-hours: {:.1} % (claim: <= {:.0} %)\n\
         selected: {best} ({metric}), rank {} of {} in the grid (claim: among the best 2)\n\
         finished search runs equal to the grid's, bit for bit: {identical} of {}{}",
        100.0 * share,
        100.0 * MAX_SHARE,
        best_rank.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
        ranked.len(),
        selected.len(),
        if differing.is_empty() { String::new() } else { format!(" (differ: {})", differing.join(", ")) }
    );
    writeln!(out, "\n{summary}")?;
    // What a report of the search costs on this store: the search section alone (its
    // LIST of decisions, the decisions, rung records and cost indexes), then all of it.
    let requests = |c: crate::store::RequestCounts| format!("{} GET, {} LIST, {} PUT", c.get, c.list, c.put);
    let (t, before) = (std::time::Instant::now(), crate::store::request_counts());
    crate::report::search::search_markdown(&store, &search)?;
    let section = (t.elapsed().as_secs_f64(), crate::store::request_counts().since(&before));
    let (t, before) = (std::time::Instant::now(), crate::store::request_counts());
    crate::report::write_sweep_report(&store, &search, &tmp.join("report"))?;
    writeln!(
        out,
        "ras report {} ({} runs): {:.2} s, {}; the search section alone {:.2} s, {}",
        search.name,
        search.runs.len(),
        t.elapsed().as_secs_f64(),
        requests(crate::store::request_counts().since(&before)),
        section.0,
        requests(section.1)
    )?;
    anyhow::ensure!(
        share <= MAX_SHARE,
        "the search cost {:.1} % of the grid, above {:.0} %",
        100.0 * share,
        100.0 * MAX_SHARE
    );
    anyhow::ensure!(best_rank.is_some_and(|r| r <= 2), "the search selected {best}, not one of the grid's best two");
    anyhow::ensure!(differing.is_empty() && identical > 0, "a finished search run differs from the grid's");
    let s3 = opts.s3_latency.map(|l| format!(" --s3 --latency-ms {}", l.as_millis())).unwrap_or_default();
    Ok(format!("(command: ras bench search --cluster {}{s3})", opts.cluster.display()))
}
