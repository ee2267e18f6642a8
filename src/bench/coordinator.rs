//! `ras bench coordinator`: a synthetic sweep of N one-rank runs (random-init backbone,
//! a dataset folder that does not exist, so planning uses MVTec's published size and no
//! job would get far), for measuring what a coordinator's poll cycle costs at scale.

use crate::config::ClusterProfile;
use crate::store::Store;
use crate::sweep::{expand, CoordinateOptions, CycleStats, ExpandOptions, Manifest, RunPhase, SweepError};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// What to measure.
pub struct Options {
    pub runs: usize,
    pub cycles: usize,
    /// Store URL of the sweep's state; None: a fresh folder under the temporary dir.
    pub store: Option<String>,
    /// JSON lines instead of a table.
    pub json: bool,
}

/// Expands the synthetic sweep, coordinates it on `profile`'s cluster for `cycles`
/// cycles back to back (the sleep between cycles is not part of a cycle's cost), prints a
/// line per cycle to `out`, cancels every job, and returns a one-line summary.
pub fn run(profile: &ClusterProfile, opts: &Options, out: &mut dyn Write) -> anyhow::Result<String> {
    let tmp = std::env::temp_dir().join(format!("ras-bench-coordinator-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let store_url = opts.store.clone().unwrap_or_else(|| format!("file://{}", tmp.join("store").display()));
    let manifest = synthetic_sweep(opts.runs, &store_url, &tmp)?;
    let store = Store::open(&manifest.store)?;
    let exe = std::env::current_exe()?;
    let mut launcher = crate::launch::for_profile(profile, exe, tmp.join("logs"), std::env::current_dir()?);
    let copts = CoordinateOptions {
        poll_min: Duration::from_millis(100),
        poll_max: Duration::from_millis(100),
        max_cycles: Some(opts.cycles.max(1)),
        ..CoordinateOptions::for_profile(profile, tmp.join("configs"), false)
    };
    writeln!(out, "ras bench coordinator: {} runs (store {})", opts.runs, store.url())?;
    if !opts.json {
        writeln!(
            out,
            "{:>5} {:>9} {:>10} {:>6} {:>6} {:>6} {:>6} {:>7} {:>9} {:>8} {:>9}",
            "cycle", "wall s", "scheduler", "get", "put", "head", "list", "delete", "in flight", "changed", "submitted"
        )?;
    }
    let mut line = |c: &CycleStats| -> std::io::Result<()> {
        if opts.json {
            writeln!(out, "{}", serde_json::to_string(c).expect("json"))
        } else {
            let s = &c.store;
            writeln!(
                out,
                "{:>5} {:>9.3} {:>10} {:>6} {:>6} {:>6} {:>6} {:>7} {:>9} {:>8} {:>9}",
                c.cycle,
                c.wall_s,
                c.scheduler_calls,
                s.get,
                s.put,
                s.head,
                s.list,
                s.delete,
                c.max_in_flight,
                c.runs_changed,
                c.submitted
            )
        }
    };
    let mut written = Ok(());
    let views = crate::sweep::coordinate(&store, &manifest, launcher.as_mut(), &copts, &mut |_| {}, &mut |c| {
        if written.is_ok() {
            written = line(c);
        }
    })?;
    written?;
    let live = views.iter().filter(|v| v.phase == RunPhase::Active).count();
    let n = crate::sweep::cancel(&store, &manifest, launcher.as_mut())?;
    let _ = std::fs::remove_dir_all(tmp.join("configs"));
    Ok(format!("{live} of {} runs were queued or running; cancelled {n} jobs", opts.runs))
}

/// Writes the base config and sweep file into `dir` and expands them: `runs` runs that
/// differ by seed, state in `store_url`.
pub fn synthetic_sweep(runs: usize, store_url: &str, dir: &Path) -> Result<Manifest, SweepError> {
    let io = |path: &Path, e: std::io::Error| SweepError::Io { path: path.to_path_buf(), source: e };
    let base = dir.join("bench-base.toml");
    let text = format!(
        "name = \"bench\"\nstore = {store}\n[dataset]\nroot = {root}\n[backbone]\narch = \"efficientnet-b0\"\n\
         [model]\nhidden_dim = 64\nencoder_layers = 1\ndecoder_layers = 1\nheads = 4\nffn_dim = 128\n\
         [train]\nepochs = 1\nbatch_size = 8\ndevice = \"cpu\"\n",
        store = toml::Value::String(store_url.to_string()),
        root = toml::Value::String(dir.join("no-dataset").display().to_string()),
    );
    std::fs::write(&base, text).map_err(|e| io(&base, e))?;
    let seeds: Vec<String> = (0..runs).map(|i| i.to_string()).collect();
    let sweep = dir.join("bench-coordinator.toml");
    let text = format!(
        "name = \"bench-coordinator\"\nbase = {base}\nranks = 1\nmax_retries = 0\n[grid]\nseed = [{}]\n",
        seeds.join(", "),
        base = toml::Value::String(base.display().to_string())
    );
    std::fs::write(&sweep, text).map_err(|e| io(&sweep, e))?;
    expand(&sweep, &ExpandOptions { store: None, overrides: vec![], max_ranks: 1, check_data: false })
}
