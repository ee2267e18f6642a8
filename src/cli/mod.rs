//! The `ras` command line. clap lives here only; the library never sees these structs.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ras::config::RunConfig;
use ras::progress::Progress;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Train and evaluate RAS (Reconstruction as Sequence) unsupervised anomaly detection.
///
/// Quick start: `ras data synth --out data/synth` makes a small dataset, then
/// `ras train configs/demo.toml` computes its features, trains, evaluates and prints the
/// per-class table. Everything a run produces is kept in the object store named by the
/// config's `store` (a local folder by default). Logs: RUST_LOG=debug.
#[derive(Parser, Debug)]
#[command(name = "ras", version, about, long_about)]
struct Cli {
    /// Hide progress bars (they are hidden anyway when stderr is not a terminal).
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make or inspect datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Compute (or reuse) the cached backbone features of a run's dataset.
    Features(ConfigArgs),
    /// Train one run and evaluate it; prints its per-class table (image AUROC, pixel
    /// AUROC, AUPRO, F1-max). A run already complete in the store is not trained again.
    ///
    /// A run found incomplete in the store (killed, preempted) resumes from its newest
    /// valid checkpoint. SIGTERM or SIGUSR1 checkpoint after the current step and exit
    /// with code 75 ("requeue me"). With --ranks N it starts N data-parallel ranks with
    /// mpirun; under mpirun or srun it is one of the ranks (rank from the environment).
    Train {
        #[command(flatten)]
        config: ConfigArgs,
        /// Start from scratch, discarding whatever the store holds for this run.
        #[arg(long)]
        force: bool,
        /// Data-parallel ranks to start on this machine with mpirun (1 = this process).
        #[arg(long, default_value_t = 1)]
        ranks: usize,
    },
    /// One rank of a data-parallel run: what mpirun and srun start (same as `train`
    /// without --ranks; rank, local rank and world size come from the environment).
    #[command(hide = true)]
    Worker {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Evaluate a finished run again from its last checkpoint, e.g. with test-time
    /// jitter (paper Table 6), without retraining; or just print its stored metrics.
    Eval {
        /// Run id (as printed by `ras train`, the folder name under runs/).
        run: String,
        /// Store URL holding the run.
        #[arg(long, default_value = "file://./ras-store")]
        store: String,
        /// Test-time jitter scales, e.g. 0,10,20,30,40,50 (Table 6); re-evaluates from the
        /// last checkpoint when given.
        #[arg(long, value_delimiter = ',')]
        test_jitter: Vec<f64>,
    },
    /// Measure throughput (samples/s) on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run a sweep (jobs/*.toml) on a cluster profile: submit every run, wait, retry
    /// failed runs up to max_retries, print a table as states change. Safe to start
    /// twice or again after a kill: state lives in the store (sweeps/<name>/).
    #[command(after_help = "Examples:\n  \
        ras sweep jobs/quickstart.toml                        # tiny runs on this machine (make demo's data)\n  \
        ras sweep jobs/table5.toml --cluster cluster/my.toml  # Slurm: sbatch, job arrays, requeue on USR1\n  \
        ras sweep jobs/table5.toml --cluster cluster/my.toml --no-wait --report reports/t5\n  \
        ras sweep jobs/table1-2.toml --set train.epochs=100 --store s3://bucket/ras\n\n\
        Start it again at any time (after a crash or a cancel): finished runs are skipped,\n\
        running ones adopted, unfinished ones resume from their checkpoints. A run that failed\n\
        1 + max_retries times stays failed; raise max_retries in the sweep file to try again.")]
    Sweep {
        #[command(flatten)]
        sweep: SweepArgs,
        /// Submit what can be submitted once and return.
        #[arg(long)]
        no_wait: bool,
        /// Write the sweep's report (as `ras report --out DIR`) once every run is
        /// complete. With --no-wait on Slurm, a report job does it, after every run's job
        /// has succeeded (--dependency=afterok).
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
    },
    /// A sweep's runs: state, epoch, attempts, latest mean metrics.
    Status {
        #[command(flatten)]
        sweep: SweepArgs,
        /// Redraw the table every this many seconds until every run is complete or
        /// failed (Ctrl-C stops watching; the runs go on).
        #[arg(long, value_name = "SECONDS")]
        watch: Option<f64>,
    },
    /// Cancel a sweep's running jobs and stop its coordinators from launching more.
    Cancel(SweepArgs),
    /// Print a sweep's runs, ranks and nodes each, estimated cost, launch order and
    /// makespan, without submitting anything.
    #[command(after_help = "Examples:\n  \
        ras plan jobs/table3.toml --cluster cluster/example-gpu.toml\n  \
        ras plan jobs/quickstart.toml --cluster cluster/ci-slurm-2node.toml --json\n\n\
        Nodes are named when the profile lists node_names (runs are then pinned there);\n\
        otherwise node0, node1, ... show the packing and Slurm picks the nodes.")]
    Plan {
        #[command(flatten)]
        sweep: SweepArgs,
        /// Print the plan as JSON (one object per run, in launch order).
        #[arg(long)]
        json: bool,
    },
    /// Per-dataset Markdown and CSV tables of a sweep's final metrics beside the paper's.
    ///
    /// Also PNG plots where the sweep has their data: a T_e x T_d heat map of mean AUROC
    /// (runs varying model.encoder_layers and model.decoder_layers) and AUROC against
    /// test-time noise with its table (eval.noise_scales or ras eval --test-jitter).
    Report {
        #[command(flatten)]
        sweep: SweepArgs,
        /// Output folder.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
struct SweepArgs {
    /// Sweep file (jobs/*.toml).
    sweep: PathBuf,
    /// Cluster profile (cluster/*.toml).
    #[arg(long, default_value = "cluster/local.toml")]
    cluster: PathBuf,
    /// Store URL for every run and the sweep's state (default: the configs' own).
    #[arg(long)]
    store: Option<String>,
    /// Override a config key in every run of the sweep.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

#[derive(Args, Debug)]
struct ConfigArgs {
    /// Run configuration (TOML); see configs/ for presets.
    config: PathBuf,
    /// Override a config key, e.g. --set train.epochs=10 --set model.encoder_layers=0.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Write a synthetic dataset in the MVTec-AD layout (textures and objects, several
    /// defect kinds, masks matching the changed pixels).
    Synth {
        /// Output folder (created).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 3)]
        classes: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Training (normal) images per class.
        #[arg(long, default_value_t = 24)]
        train: usize,
        /// Normal test images per class.
        #[arg(long, default_value_t = 8)]
        test_good: usize,
        /// Test images per class and defect kind.
        #[arg(long, default_value_t = 3)]
        test_defect: usize,
        /// Image side in pixels.
        #[arg(long, default_value_t = 224)]
        image_size: u32,
    },
    /// Validate a dataset before training: counts per class and split, anomalous images
    /// without masks, masks without images, files that do not decode in full, mask/image
    /// size mismatches, metadata rows naming missing files. Exits non-zero on any problem.
    Check {
        /// Dataset root folder.
        root: PathBuf,
        /// Layout: mvtec, mpdd, visa, btad or jsonl.
        #[arg(long, default_value = "mvtec")]
        kind: String,
        /// Only these classes (comma-separated); default all.
        #[arg(long, value_delimiter = ',')]
        classes: Vec<String>,
        /// kind jsonl: training metadata (relative to ROOT).
        #[arg(long)]
        train_meta: Option<PathBuf>,
        /// kind jsonl: test metadata (relative to ROOT).
        #[arg(long)]
        test_meta: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// RAS training steps per second at given shapes (default: the paper's, batch 64,
    /// 272x14x14, T_e=2, T_d=4), and the speed-up of an epoch on cached features over an
    /// epoch that decodes images and runs the backbone.
    TrainStep(TrainStepArgs),
    /// Data-parallel scaling on this machine: samples/s of 1, 2, 4 ... CPU ranks (mpirun),
    /// the all-reduce share of step time, and the bytes all-reduced per step.
    Ranks {
        /// Rank counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        ranks: Vec<usize>,
        #[command(flatten)]
        shapes: TrainStepArgs,
    },
    /// One rank of `ras bench ranks` (started by mpirun).
    #[command(hide = true)]
    DpWorker(TrainStepArgs),
}

#[derive(Args, Debug)]
struct TrainStepArgs {
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// C_org: feature channels (272 for EfficientNet-B4).
    #[arg(long, default_value_t = 272)]
    channels: i64,
    /// Token grid side (14 at 224 px).
    #[arg(long, default_value_t = 14)]
    grid: i64,
    #[arg(long, default_value_t = 2)]
    encoder_layers: usize,
    #[arg(long, default_value_t = 4)]
    decoder_layers: usize,
    #[arg(long, default_value_t = 256)]
    hidden_dim: i64,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Images in the cached-vs-uncached epoch comparison.
    #[arg(long, default_value_t = 64)]
    epoch_images: usize,
    /// Backbone of the uncached epoch.
    #[arg(long, default_value = "efficientnet-b4")]
    arch: String,
    /// torch intra-op threads (default: torch's choice).
    #[arg(long)]
    threads: Option<i32>,
    /// Also time the PyTorch reference step side by side (default: on when .venv-ref,
    /// made by `make setup-python`, exists).
    #[arg(long, conflicts_with = "no_pytorch")]
    pytorch: bool,
    /// Do not time the PyTorch reference.
    #[arg(long)]
    no_pytorch: bool,
}

pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let progress = Progress::new(!cli.quiet && std::io::stderr().is_terminal());
    match cli.command {
        Command::Data(DataCommand::Synth { out, classes, seed, train, test_good, test_defect, image_size }) => {
            let spec = ras::data::synth::SynthSpec {
                classes,
                train_per_class: train,
                test_good_per_class: test_good,
                test_defect_per_kind: test_defect,
                image_size,
                seed,
            };
            let bar = progress.bar(0, "synth");
            let summary = ras::data::synth::generate(&out, &spec, &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            println!(
                "wrote {} classes ({}) to {}: {} train, {} test images ({} anomalous)",
                summary.classes.len(),
                summary.classes.join(", "),
                out.display(),
                summary.train_images,
                summary.test_images,
                summary.anomalous_images
            );
        }
        Command::Data(DataCommand::Check { root, kind, classes, train_meta, test_meta }) => {
            let cfg = ras::config::DatasetConfig { kind, root, classes, train_meta, test_meta };
            let report = ras::data::check::check(&cfg, &progress)
                .with_context(|| format!("cannot check dataset {}", cfg.root.display()))?;
            print!("{}", report.render());
            return Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::Features(args) => {
            let cfg = RunConfig::load(&args.config, &args.overrides)?;
            let store = ras::store::Store::open(&cfg.store)?;
            let device = ras::run::resolve_device(&cfg.train.device)?;
            let index = ras::data::scan(&cfg.dataset)?;
            index.check_headers()?;
            let (feats, stats) = ras::features::load_or_compute(&store, &cfg.backbone, device, &index, &progress)?;
            for (class, f) in &feats {
                println!("{class:<14} train {:?} test {:?}", f.train.size(), f.test.size());
            }
            println!(
                "feature cache in {}: {} classes reused, {} computed ({} images)",
                store.url(),
                stats.classes_reused,
                stats.classes_computed,
                stats.images_computed
            );
        }
        Command::Train { config, force, ranks } if ranks > 1 => {
            let cfg = RunConfig::load(&config.config, &config.overrides)?;
            return launch_mpirun(&cfg, &config, force, ranks);
        }
        Command::Train { config, force, .. } => return train(&config, force, progress),
        Command::Worker { config } => return train(&config, false, Progress::hidden()),
        Command::Eval { run, store, test_jitter } => {
            let store = ras::store::Store::open(&store)?;
            if test_jitter.is_empty() {
                let fm: ras::run::FinalMetrics = store
                    .get_json(&format!("runs/{run}/final_metrics.json"))?
                    .with_context(|| format!("run {run} has no final metrics in {} (not complete?)", store.url()))?;
                print_outcome(&run, store.url(), &fm);
            } else {
                if let Some(bad) = test_jitter.iter().find(|s| !(**s >= 0.0)) {
                    bail!("--test-jitter {bad} must be >= 0");
                }
                for (scale, table) in ras::run::reevaluate(&store, &run, &test_jitter, &progress)? {
                    println!("run {run}, test-time jitter scale {scale}:");
                    print!("{}", table.render());
                }
            }
        }
        Command::Sweep { sweep, no_wait, report } => return sweep_cmd(&sweep, no_wait, report.as_deref()),
        Command::Status { sweep, watch } => {
            let (manifest, store, profile) = load_sweep(&sweep)?;
            let launcher = make_launcher(&profile, &manifest, &store)?;
            let state = ras::sweep::SweepState { store: &store, manifest: &manifest };
            loop {
                let views = state.views(launcher.as_ref())?;
                let table = ras::sweep::render_views(&views);
                let Some(secs) = watch else {
                    print!("{table}");
                    break;
                };
                if !(secs > 0.0) {
                    bail!("--watch {secs}: give a number of seconds above 0");
                }
                // Clear the terminal and redraw in place.
                print!("\x1b[2J\x1b[H{}  (every {secs} s; Ctrl-C stops watching)\n{table}", manifest.name);
                std::io::Write::flush(&mut std::io::stdout())?;
                if views.iter().all(|v| matches!(v.phase, ras::sweep::RunPhase::Complete | ras::sweep::RunPhase::Failed)) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_secs_f64(secs));
            }
        }
        Command::Cancel(args) => {
            let (manifest, store, profile) = load_sweep(&args)?;
            let mut launcher = make_launcher(&profile, &manifest, &store)?;
            let n = ras::sweep::cancel(&store, &manifest, launcher.as_mut())?;
            println!("sweep {}: cancelled {n} active jobs; coordinators launch nothing more", manifest.name);
        }
        Command::Plan { sweep, json } => {
            let (manifest, _store, profile) = load_sweep(&sweep)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan_json(&manifest, &profile))?);
            } else {
                print!("{}", render_plan(&manifest, &profile));
            }
        }
        Command::Report { sweep, out } => {
            let (manifest, store, _) = load_sweep(&sweep)?;
            write_report(&sweep, &manifest, &store, &out)?;
        }
        Command::Bench(BenchCommand::TrainStep(args)) => {
            print!("{}", ras::bench::train_step(&bench_options(args))?);
        }
        Command::Bench(BenchCommand::DpWorker(args)) => {
            if let Some(line) = ras::bench::data_parallel_worker(&bench_options(args))? {
                println!("{line}");
            }
        }
        Command::Bench(BenchCommand::Ranks { ranks, shapes }) => {
            let exe = std::env::current_exe()?;
            let threads = shapes.threads.unwrap_or(1);
            println!("ras bench ranks: {} steps per measurement, {threads} torch thread(s) per rank, MPI all-reduce of the gradient bucket", shapes.steps);
            for k in ranks {
                let mut cmd = std::process::Command::new("mpirun");
                cmd.args(["--oversubscribe", "--bind-to", "none", "-np", &k.to_string()]);
                if nix_is_root() {
                    cmd.arg("--allow-run-as-root");
                }
                cmd.arg(&exe).args(["bench", "dp-worker", "--no-pytorch"]);
                cmd.args(["--batch", &shapes.batch.to_string(), "--steps", &shapes.steps.to_string(), "--threads", &threads.to_string()]);
                cmd.args(["--channels", &shapes.channels.to_string(), "--grid", &shapes.grid.to_string(), "--hidden-dim", &shapes.hidden_dim.to_string()]);
                cmd.args(["--encoder-layers", &shapes.encoder_layers.to_string(), "--decoder-layers", &shapes.decoder_layers.to_string()]);
                let out = cmd.output().context("starting mpirun (install OpenMPI: scripts/setup.sh)")?;
                if !out.status.success() {
                    bail!("{k} ranks failed: {}", String::from_utf8_lossy(&out.stderr));
                }
                print!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_options(args: TrainStepArgs) -> ras::bench::TrainStepOptions {
    ras::bench::TrainStepOptions {
        batch: args.batch,
        channels: args.channels,
        grid: args.grid,
        encoder_layers: args.encoder_layers,
        decoder_layers: args.decoder_layers,
        hidden_dim: args.hidden_dim,
        steps: args.steps,
        epoch_images: args.epoch_images,
        arch: args.arch,
        threads: args.threads,
        pytorch: if args.no_pytorch { false } else { args.pytorch || ras::bench::pytorch_reference().is_some() },
    }
}

/// Runs (or resumes) one run in this process, as a rank of whatever launched it.
fn train(config: &ConfigArgs, force: bool, progress: Progress) -> Result<ExitCode> {
    let cfg = RunConfig::load(&config.config, &config.overrides)?;
    let opts = ras::run::RunOptions::new(progress, force);
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1] {
        signal_hook::flag::register(sig, opts.stop.clone()).context("installing signal handlers")?;
    }
    let out = ras::run::execute(&cfg, &opts).with_context(|| format!("run from {} failed", config.config.display()))?;
    if out.preempted {
        eprintln!("run {} stopped by a signal after a checkpoint; run the same command again to resume", out.run_id);
        return Ok(ExitCode::from(ras::run::EXIT_REQUEUE));
    }
    if let Some(fm) = &out.final_metrics {
        print_outcome(&out.run_id, &cfg.store, fm);
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts `ranks` workers with mpirun on this machine and waits. If mpirun fails before
/// the run recorded an outcome (a rank killed, say), the run is marked failed with what
/// mpirun reported (it names the rank).
fn launch_mpirun(cfg: &RunConfig, config: &ConfigArgs, force: bool, ranks: usize) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the ras binary")?;
    let mut cmd = std::process::Command::new("mpirun");
    cmd.args(["--oversubscribe", "--bind-to", "none", "-np", &ranks.to_string()]);
    if nix_is_root() {
        cmd.arg("--allow-run-as-root");
    }
    cmd.arg(&exe);
    if force {
        // --force must act once, before the ranks start, not in every rank.
        let store = ras::store::Store::open(&cfg.store)?;
        for key in store.list(&format!("runs/{}", ras::run::run_id(cfg)))? {
            store.delete(&key)?;
        }
    }
    cmd.arg("worker").arg(&config.config);
    for o in &config.overrides {
        cmd.arg("--set").arg(o);
    }
    cmd.stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().context("starting mpirun (install OpenMPI: scripts/setup.sh)")?;
    let mut tail: std::collections::VecDeque<String> = Default::default();
    if let Some(err) = child.stderr.take() {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("{line}");
            tail.push_back(line);
            if tail.len() > 15 {
                tail.pop_front();
            }
        }
    }
    let code = child.wait().context("waiting for mpirun")?.code().unwrap_or(1);
    if code == 0 {
        let store = ras::store::Store::open(&cfg.store)?;
        let id = ras::run::run_id(cfg);
        if let Some(fm) = store.get_json::<ras::run::FinalMetrics>(&format!("runs/{id}/final_metrics.json"))? {
            print_outcome(&id, &cfg.store, &fm);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if code == ras::run::EXIT_REQUEUE as i32 {
        return Ok(ExitCode::from(ras::run::EXIT_REQUEUE));
    }
    let reason = format!("mpirun exited with code {code}: {}", tail.iter().cloned().collect::<Vec<_>>().join(" | "));
    ras::run::mark_failed_unless_recorded(cfg, &reason)?;
    bail!("{reason}")
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn print_outcome(run_id: &str, store: &str, fm: &ras::run::FinalMetrics) {
    println!("run {run_id} (epoch {}, {:?}) in {store}/runs/{run_id}", fm.epoch, fm.setting);
    if !fm.backbone_pretrained {
        println!("NOTE: random-init backbone (no backbone.weights): not comparable to the paper's numbers");
    }
    print!("{}", fm.metrics.render());
}

fn load_sweep(args: &SweepArgs) -> Result<(ras::sweep::Manifest, ras::store::Store, ras::launch::ClusterProfile)> {
    let profile = ras::launch::ClusterProfile::load(&args.cluster)?;
    let opts = ras::sweep::ExpandOptions { store: args.store.clone(), overrides: args.overrides.clone(), max_ranks: profile.slots() };
    let manifest = ras::sweep::expand(&args.sweep, &opts)?;
    let store = ras::store::Store::open(&manifest.store)?;
    Ok((manifest, store, profile))
}

/// Local folder for the resolved configs and logs the jobs use (under the current one,
/// which jobs also run in, so relative dataset paths mean the same thing).
fn work_dir(manifest: &ras::sweep::Manifest) -> PathBuf {
    PathBuf::from(".ras-sweeps").join(&manifest.name)
}

fn make_launcher(
    profile: &ras::launch::ClusterProfile,
    manifest: &ras::sweep::Manifest,
    store: &ras::store::Store,
) -> Result<Box<dyn ras::launch::Launcher>> {
    let exe = std::env::current_exe().context("locating the ras binary")?;
    let dir = work_dir(manifest);
    Ok(match profile.launcher.as_str() {
        "slurm" => Box::new(ras::launch::Slurm::new(profile.clone(), exe, dir.join("logs"), std::env::current_dir()?, store.clone())),
        _ => Box::new(ras::launch::Local::new(exe, dir.join("logs"))),
    })
}

/// `ras report`: prints each dataset's table, writes tables and plots into `out`.
fn write_report(args: &SweepArgs, manifest: &ras::sweep::Manifest, store: &ras::store::Store, out: &Path) -> Result<()> {
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

/// With --no-wait on a cluster that queues jobs: a report job after every run's job
/// (afterok), recorded in `sweeps/<name>/report.json`. Returns false when it is not needed
/// (no run is active: the caller writes the report itself if all are complete).
fn submit_report_job(
    args: &SweepArgs,
    manifest: &ras::sweep::Manifest,
    store: &ras::store::Store,
    launcher: &mut dyn ras::launch::Launcher,
    views: &[ras::sweep::RunView],
    out: &Path,
) -> Result<bool> {
    let after: Vec<ras::launch::JobRecord> =
        views.iter().filter(|v| v.phase == ras::sweep::RunPhase::Active).filter_map(|v| v.job.clone()).collect();
    if after.is_empty() {
        return Ok(false);
    }
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
    let job = launcher
        .submit_task(&format!("report-{}", manifest.name), &cmd, &after, ras::launch::Dependency::AfterOk)
        .map_err(|e| anyhow::anyhow!("submitting the report job: {e}"))?;
    store.put_json(&format!("sweeps/{}/report.json", manifest.name), &job)?;
    println!("report job {} writes {} once all {} active runs succeeded", job.id, out.display(), after.len());
    Ok(true)
}

fn sweep_cmd(args: &SweepArgs, no_wait: bool, report: Option<&Path>) -> Result<ExitCode> {
    let (manifest, store, profile) = load_sweep(args)?;
    let mut launcher = make_launcher(&profile, &manifest, &store)?;
    let opts = ras::sweep::CoordinateOptions {
        no_wait,
        shape: profile.shape(),
        node_names: profile.node_names.clone(),
        poll: std::time::Duration::from_millis(if profile.launcher == "slurm" { 1000 } else { 500 }),
        work_dir: work_dir(&manifest).join("configs"),
    };
    println!("sweep {}: {} runs, store {}, {} slots ({})", manifest.name, manifest.runs.len(), store.url(), profile.slots(), profile.launcher);
    let views = ras::sweep::coordinate(&store, &manifest, launcher.as_mut(), &opts, &mut |v| {
        println!("{}", ras::sweep::render_views(v));
    })?;
    let all_complete = views.iter().all(|v| v.phase == ras::sweep::RunPhase::Complete);
    if let Some(out) = report {
        if no_wait && launcher.queues_jobs() && submit_report_job(args, &manifest, &store, launcher.as_mut(), &views, out)? {
            // The report job writes it.
        } else if all_complete {
            write_report(args, &manifest, &store, out)?;
        } else if no_wait {
            println!("report: not all runs are complete yet; `ras sweep` (without --no-wait) or `ras report` writes it later");
        }
    }
    let open = views.iter().filter(|v| !matches!(v.phase, ras::sweep::RunPhase::Complete | ras::sweep::RunPhase::Failed)).count();
    if open > 0 && !no_wait {
        // Only a cancellation stops the loop with runs still open.
        println!("sweep {} cancelled: {open} runs not complete (their checkpoints stay: `ras sweep` again resumes them)", manifest.name);
        return Ok(ExitCode::from(3));
    }
    let failed = views.iter().filter(|v| v.phase == ras::sweep::RunPhase::Failed).count();
    if failed > 0 {
        for v in views.iter().filter(|v| v.phase == ras::sweep::RunPhase::Failed) {
            eprintln!("run {} ({}) failed after {} attempts: {}", v.id, v.label, v.attempts, v.error.as_deref().unwrap_or("no error recorded"));
        }
        bail!("sweep {}: {failed} runs failed", manifest.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// Node names of a plan slot: the profile's names, or node0.. when it names none.
fn slot_nodes(slot: &ras::sweep::plan::Slot, profile: &ras::launch::ClusterProfile) -> Vec<String> {
    slot.nodes.iter().map(|&i| profile.node_name(i)).collect()
}

fn plan_json(manifest: &ras::sweep::Manifest, profile: &ras::launch::ClusterProfile) -> serde_json::Value {
    let (slots, total) = ras::sweep::plan::schedule(&manifest.runs, profile.shape());
    let hours = |gflops: f64| gflops / (profile.tflops() * 1e3) / 3600.0;
    let runs: Vec<serde_json::Value> = manifest
        .runs
        .iter()
        .zip(&slots)
        .map(|(r, s)| {
            serde_json::json!({
                "id": r.id, "label": r.label, "ranks": r.ranks, "nodes": slot_nodes(s, profile),
                "ranks_per_node": s.ranks_per_node, "train_images": r.train_images, "pflop": r.cost / 1e6,
                "start_h": hours(s.start), "end_h": hours(s.end),
            })
        })
        .collect();
    serde_json::json!({"sweep": manifest.name, "pinned": !profile.node_names.is_empty(), "makespan_h": hours(total), "runs": runs})
}

fn render_plan(manifest: &ras::sweep::Manifest, profile: &ras::launch::ClusterProfile) -> String {
    let (slots, total) = ras::sweep::plan::schedule(&manifest.runs, profile.shape());
    // cost is in GFLOPs; a rank sustains tflops() TFLOP/s.
    let hours = |gflops: f64| gflops / (profile.tflops() * 1e3) / 3600.0;
    let mut s = format!(
        "sweep {}: {} runs on {} nodes x {} ranks ({}, {} TFLOP/s per rank assumed), max_retries {}\n",
        manifest.name,
        manifest.runs.len(),
        profile.nodes,
        profile.ranks_per_node(),
        profile.launcher,
        profile.tflops(),
        manifest.max_retries
    );
    if let Some(n) = &manifest.note {
        s += &format!("note: {}\n", n.trim());
    }
    s += &format!("{:>3} {:<30} {:>5} {:<14} {:>8} {:>12} {:>8} {:>8}  {}\n", "#", "run", "ranks", "nodes", "images", "PFLOP", "start h", "end h", "label");
    let mut keys = std::collections::BTreeSet::new();
    for (i, (r, slot)) in manifest.runs.iter().zip(&slots).enumerate() {
        let filler = if keys.insert(r.feature_key.clone()) { " (fills feature cache)" } else { "" };
        s += &format!(
            "{:>3} {:<30} {:>5} {:<14} {:>8} {:>12.3} {:>8.2} {:>8.2}  {}{}\n",
            i + 1,
            r.id,
            r.ranks,
            slot_nodes(slot, profile).join(","),
            r.train_images,
            r.cost / 1e6,
            hours(slot.start),
            hours(slot.end),
            r.label,
            filler
        );
    }
    let cost: f64 = manifest.runs.iter().map(|r| r.cost).sum();
    s += &format!("total {:.3} PFLOP = {:.2} rank-hours; makespan {:.2} h (greedy, longest first)\n", cost / 1e6, hours(cost), hours(total));
    if profile.node_names.is_empty() {
        s += "nodes: where the plan puts runs; Slurm chooses the actual nodes (name them in the profile's node_names to pin runs)\n";
    }
    s
}
