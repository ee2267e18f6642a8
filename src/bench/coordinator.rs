//! `ras bench coordinator`: a synthetic sweep of N one-rank runs (random-init backbone,
//! a dataset folder that does not exist, so planning uses MVTec's published size and no
//! job would get far), for measuring what a coordinator's poll cycle costs at scale.
//! Then every run is given the records of a finished run (config, status, final metrics,
//! a cost record) and `ras status`, `ras report` and `ras runs` of the sweep are timed.
//!
//! With `--s3` the store is the test S3 server behind a forwarder that adds a round
//! trip's latency to every request (s3.rs): what a cloud store costs, on loopback.

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
    /// Some: the store is the test S3 server behind this much latency per request
    /// (`store` is then ignored).
    pub s3_latency: Option<Duration>,
}

/// Expands the synthetic sweep, coordinates it on `profile`'s cluster for `cycles`
/// cycles back to back (the sleep between cycles is not part of a cycle's cost), prints a
/// line per cycle to `out`, cancels every job, and returns a one-line summary.
/// `ras bench coordinator` with the profile at `cluster`, which must be a Slurm one.
pub fn run_for_profile(cluster: &std::path::Path, opts: &Options, out: &mut dyn Write) -> anyhow::Result<String> {
    let profile = ClusterProfile::load(cluster)?;
    if profile.launcher != crate::config::LauncherKind::Slurm {
        anyhow::bail!(
            "{}: ras bench coordinator needs a Slurm profile (a local one would start {} real runs)",
            cluster.display(),
            opts.runs
        );
    }
    run(&profile, opts, out)
}

pub fn run(profile: &ClusterProfile, opts: &Options, out: &mut dyn Write) -> anyhow::Result<String> {
    let tmp = std::env::temp_dir().join(format!("ras-bench-coordinator-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut store_url = opts.store.clone().unwrap_or_else(|| format!("file://{}", tmp.join("store").display()));
    let server = super::s3::start_for_bench(opts.s3_latency, &tmp.join("s3"), "sweeps-bench", out)?;
    if let Some((_, u)) = &server {
        store_url = u.clone();
    }
    let manifest = synthetic_sweep(opts.runs, &store_url, &tmp)?;
    let store = Store::open(&manifest.store)?;
    let exe = std::env::current_exe()?;
    let mut launcher = crate::launch::for_profile(profile, exe.clone(), tmp.join("logs"), std::env::current_dir()?);
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
            "{:>5} {:>9} {:>10} {:>12} {:>6} {:>6} {:>6} {:>6} {:>7} {:>9} {:>8} {:>9}",
            "cycle",
            "wall s",
            "scheduler",
            "scheduler s",
            "get",
            "put",
            "head",
            "list",
            "delete",
            "in flight",
            "changed",
            "submitted"
        )?;
    }
    let mut line = |c: &CycleStats| -> std::io::Result<()> {
        if opts.json {
            writeln!(out, "{}", serde_json::to_string(c).expect("json"))
        } else {
            let s = &c.store;
            writeln!(
                out,
                "{:>5} {:>9.3} {:>10} {:>12.3} {:>6} {:>6} {:>6} {:>6} {:>7} {:>9} {:>8} {:>9}",
                c.cycle,
                c.wall_s,
                c.scheduler_calls,
                c.scheduler_s,
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
    // The floor of a steady cycle on this store: one bare LIST of the sweep's prefix.
    let t = std::time::Instant::now();
    let listed = store.list(&format!("{}/", crate::sweep::SweepPaths::new(manifest.name.as_str()).prefix()))?;
    writeln!(out, "one LIST of the sweep's prefix ({} keys): {:.3} s", listed.len(), t.elapsed().as_secs_f64())?;
    let live = views.iter().filter(|v| v.phase == RunPhase::Active).count();
    let n = crate::sweep::cancel(&store, &manifest, launcher.as_mut())?;
    let _ = std::fs::remove_dir_all(tmp.join("configs"));
    writeln!(out, "{live} of {} runs were queued or running; cancelled {n} jobs", opts.runs)?;
    // The same sweep, finished: the commands that read every run.
    let t = std::time::Instant::now();
    finish_synthetically(&store, &manifest)?;
    writeln!(out, "wrote the records of {} finished runs in {:.1} s", opts.runs, t.elapsed().as_secs_f64())?;
    let url = store.url().to_string();
    let report_dir = tmp.join("report");
    let name = manifest.name.as_str();
    let commands: [(&str, Vec<&str>); 3] = [
        ("ras status", vec!["status", name, "--store", &url]),
        ("ras report", vec!["report", name, "--store", &url, "--out", report_dir.to_str().unwrap_or("report")]),
        ("ras runs", vec!["runs", "--store", &url]),
    ];
    let mut summary = vec![];
    for (label, args) in commands {
        let t = std::time::Instant::now();
        let res = std::process::Command::new(&exe).arg("--quiet").args(&args).output()?;
        let wall = t.elapsed().as_secs_f64();
        let ok = if res.status.success() {
            "ok".to_string()
        } else {
            format!("FAILED: {}", String::from_utf8_lossy(&res.stderr).trim())
        };
        writeln!(out, "{label:<11} of the finished sweep: {wall:>7.2} s  ({ok})")?;
        summary.push(format!("{label} {wall:.2} s"));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(format!("{} runs on {}: {}", opts.runs, url, summary.join(", ")))
}

/// Gives every run of `manifest` the records `ras train` leaves when a run completes:
/// its config, a complete status, final metrics (over 15 classes, as MVTec-AD has) and
/// one cost record (with its index). Written in batches.
pub(crate) fn finish_synthetically(store: &Store, manifest: &Manifest) -> Result<(), SweepError> {
    use crate::eval::{ClassMetrics, MetricsTable};
    use crate::run::cost::{AttemptCost, Job, Outcome, Phases};
    use crate::run::{FinalMetrics, RunPaths, RunState, RunStatus};
    use crate::store::json_bytes;
    let now = crate::unix_now();
    let mut items: Vec<(String, bytes::Bytes)> = vec![];
    for (i, run) in manifest.runs.iter().enumerate() {
        let paths = RunPaths::new(run.id.as_str());
        let m = |k: f64| 0.5 + 0.5 * ((i as f64 * 0.37 + k).sin().abs());
        let classes = (0..15)
            .map(|c| {
                let x = m(c as f64);
                let cm = ClassMetrics {
                    image_auroc: x,
                    pixel_auroc: x,
                    aupro: x,
                    image_f1_max: x,
                    pixel_f1_max: x,
                    image_ap: x,
                    pixel_ap: x,
                    image_threshold: Some(0.5),
                };
                (format!("class{c:02}"), cm)
            })
            .collect();
        let fm = FinalMetrics {
            epoch: 1,
            setting: crate::config::Setting::Unified,
            metrics: MetricsTable::new(classes),
            best_on_test_extra: None,
            backbone_pretrained: false,
            feature_cache: Default::default(),
            image_scores: Default::default(),
        };
        let status =
            RunStatus { state: RunState::Complete, run_id: run.id.clone(), epoch: 1, updated_unix: now, error: None };
        let cost = AttemptCost {
            started_unix: now - 60,
            ended_unix: now,
            job: Job::default(),
            outcome: Outcome::Complete,
            host: crate::hostname(),
            pid: 1,
            device: "cpu".into(),
            gpu_name: None,
            ranks: 1,
            wall_s: 60.0,
            phases: Phases { train_s: 60.0, ..Default::default() },
            rank_hours: 60.0 / 3600.0,
            gpu_hours: None,
            images_trained: run.train_images as u64,
            features_computed: 0,
            feature_images: 0,
            eval_images: run.test_images as u64,
            shape: String::new(),
            gflop_per_image: None,
            feature_key: None,
            lease: None,
        };
        items.push((paths.config(), bytes::Bytes::from(run.config_toml.clone())));
        items.push((paths.final_metrics(), json_bytes(&fm).into()));
        items.push((paths.attempt(now - 60, &cost.host, 1), json_bytes(&cost).into()));
        items.push((paths.cost_index(), json_bytes(&crate::run::cost::CostIndex { attempts: vec![cost] }).into()));
        items.push((paths.status(), json_bytes(&status).into()));
    }
    Ok(store.put_many(items)?)
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
