//! The command line's clap structs: what `ras --help` teaches. Nothing here runs.

pub use super::bench_args::BenchCommand;
use clap::{Args, Parser, Subcommand};
use ras::config::DatasetKind;
use std::path::PathBuf;

/// Train and evaluate RAS (Reconstruction as Sequence) unsupervised anomaly detection.
///
/// Quick start: `ras data synth --out data/synth` makes a small dataset, then
/// `ras train configs/demo.toml` computes its features, trains, evaluates and prints the
/// per-class table. Everything a run produces is kept in the object store named by the
/// config's `store` (a local folder by default). Logs: RUST_LOG=debug.
///
/// One store for every command: `--store URL` where a command has it, else a config's
/// `store` key, else $RAS_STORE, else file://./ras-store. The shipped configs name no
/// store, so `export RAS_STORE=s3://bucket/ras` once sends `ras train`, `sweep`, `runs`,
/// `eval`, `status` ... all to the same place.
///
/// Stores: `file:///abs/path`, `file://./relative`, or `s3://bucket/prefix`, `gs://...`,
/// `az://...` with credentials and endpoint from the usual environment variables
/// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT, AWS_ALLOW_HTTP, ...).
/// A remote store that stops answering is retried for RAS_STORE_RETRY_S seconds (default
/// 300), each request given RAS_STORE_TIMEOUT_S (default 30); past that budget the run
/// records the outage in its status if it can and ras exits 74, and a sweep requeues the
/// run without using up an attempt.
#[derive(Parser, Debug)]
#[command(name = "ras", version, about, long_about)]
pub struct Cli {
    /// Hide progress bars (they are hidden anyway when stderr is not a terminal).
    #[arg(long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
        #[arg(long, default_value_t = 1, value_parser = at_least_one)]
        ranks: usize,
    },
    /// One rank of a data-parallel run: what mpirun and srun start (same as `train`
    /// without --ranks; rank, local rank and world size come from the environment).
    #[command(hide = true)]
    Worker {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Evaluate a run: print its stored final metrics; evaluate it when it has none yet
    /// (a run made by `ras import`); or evaluate it again from its last checkpoint with
    /// test-time jitter (paper Table 6), without retraining.
    Eval {
        /// Run id (as printed by `ras train`, the folder name under runs/).
        run: String,
        /// Store URL holding the run.
        /// [default: $RAS_STORE, else file://./ras-store]
        #[arg(long)]
        store: Option<String>,
        /// Test-time jitter scales, e.g. 0,10,20,30,40,50 (Table 6); re-evaluates from the
        /// final checkpoint (or --checkpoint) when given, each result a new object under evals/.
        #[arg(long, value_delimiter = ',')]
        test_jitter: Vec<f64>,
        /// The checkpoint --test-jitter evaluates: final (the default: the model the run's
        /// metrics describe), latest, best, or an epoch number. Exactly that one: a
        /// missing or corrupt checkpoint is an error, never replaced by another.
        #[arg(long)]
        checkpoint: Option<ras::run::CheckpointChoice>,
    },
    /// Make a run from a checkpoint of the public RAS (or UniAD) code, to evaluate it with
    /// `ras eval RUN` like any run.
    ///
    /// CKPT is the public code's `ckpt_best.pth.tar` (a torch.save pickle: read with the
    /// Python of --python, which needs torch and safetensors) or a safetensors file with the
    /// same names (`module.reconstruction.*`, read natively). The run's config is CONFIG with
    /// its name suffixed `-import-<sha256 of CKPT>`; the run records the source file and its
    /// sha256 (import.json). Its backbone comes from CONFIG's [backbone] (the checkpoint's
    /// backbone tensors are not imported): point backbone.weights at the EfficientNet weights.
    #[command(after_help = "Example (paper Table 1 from the authors' MVTec-AD checkpoint):\n  \
        ras import ckpt_best.pth.tar --config configs/mvtec-public.toml --set dataset.root=/data/mvtec\n  \
        ras eval <the run id it prints>")]
    Import {
        /// The checkpoint file.
        checkpoint: PathBuf,
        /// Run configuration (TOML) whose model and backbone the checkpoint was trained with.
        #[arg(long)]
        config: PathBuf,
        /// Override a config key, e.g. --set dataset.root=/data/mvtec.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Store URL for the run [default: the config's `store`, else $RAS_STORE, else
        /// file://./ras-store].
        #[arg(long)]
        store: Option<String>,
        /// Python with torch and safetensors, to read pickled checkpoints (default:
        /// $RAS_PYTHON, else .venv-ref/bin/python when present, else python3).
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// Write a run's model for the PyTorch code: a .pth.tar in the public checkpoint layout
    /// (torch.load and load_state_dict(strict=True) in the public model), or safetensors.
    ///
    /// Both hold the public state dict's names: `module.reconstruction.*` (the model) and
    /// `module.backbone.*` (the EfficientNet the run used; --no-backbone leaves it out). No
    /// optimizer state. The weights are the run's newest valid checkpoint; the epoch is printed.
    #[command(after_help = "Examples:\n  \
        ras export demo-1a2b3c4d                          # -> demo-1a2b3c4d.pth.tar\n  \
        ras export demo-1a2b3c4d --format safetensors --out model.safetensors\n  \
        ras export sep-5e6f7a8b --model bottle --store s3://bucket/ras")]
    Export {
        /// Run id (the folder name under runs/).
        run: String,
        /// Store URL holding the run.
        /// [default: $RAS_STORE, else file://./ras-store]
        #[arg(long)]
        store: Option<String>,
        #[arg(long, value_enum, default_value_t = ExportFormatArg::Public)]
        format: ExportFormatArg,
        /// Output file (default: <run id>.pth.tar or <run id>.safetensors here).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The class whose model to export, for runs of the separate setting.
        #[arg(long)]
        model: Option<String>,
        /// Leave the backbone's weights out.
        #[arg(long)]
        no_backbone: bool,
    },
    /// Score new images with a finished run's final model: per image a score, an anomaly
    /// map and a verdict at the class's image F1-max threshold from the run's evaluation.
    ///
    /// Images are scored exactly as the run's evaluation scores its test set (same
    /// pre-processing, backbone, model and test-time jitter), so a test image gets the score
    /// the run stored for it. Folders are searched recursively, in sorted order, for .png,
    /// .jpg, .jpeg and .bmp files (and .tif, which this build cannot decode: reported as
    /// skipped). The class of an image is --class, or else the last folder in its path
    /// named like one of the run's classes; in the unified setting an image without a class
    /// still gets a score (but no threshold), in the separate setting (one model per class)
    /// it is skipped.
    ///
    /// Writes into --out: predictions.csv (path, class, score, threshold, anomalous),
    /// maps.safetensors (maps N x S x S and scores N, f32, in CSV row order) and png/ (one
    /// picture per image: the image | its heat map, with the score and verdict).
    #[command(after_help = "Examples:\n  \
        ras predict demo-1a2b3c4d data/synth/grain/test          # a class's folder: class from the path\n  \
        ras predict demo-1a2b3c4d shots/*.png --class grain --out out/shots\n  \
        ras predict demo-1a2b3c4d inbox/ --store s3://bucket/ras --batch 64\n\n\
        Exit codes: 0 every image scored; 2 some inputs were skipped (files that are missing or\n\
        do not decode, listed on stderr; the outputs cover the rest); 1 an error, or no image\n\
        could be scored.")]
    Predict {
        /// Run id (as printed by `ras train`, the folder name under runs/). The run must be
        /// finished: its final model is the checkpoint of its last epoch.
        run: String,
        /// Image files and folders (searched recursively).
        #[arg(required = true, value_name = "IMAGES")]
        images: Vec<PathBuf>,
        /// Store URL holding the run.
        /// [default: $RAS_STORE, else file://./ras-store]
        #[arg(long)]
        store: Option<String>,
        /// Output folder (created) [default: predictions/<RUN>].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The class of every image (one of the run's classes); default: from each path.
        #[arg(long, value_name = "NAME")]
        class: Option<String>,
        /// Images per backbone and model pass [default: the run's eval.batch_size].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        batch: Option<u64>,
        /// Where to compute: auto, cpu, cuda or cuda:N [default: the run's train.device].
        #[arg(long)]
        device: Option<ras::config::DeviceSpec>,
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
        1 + max_retries times stays failed; raise max_retries in the sweep file to try again.\n\
        A run cancelled with `ras cancel SWEEP --run` (or scancel'ed by hand) stays cancelled:\n\
        --retry-cancelled launches it again.")]
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
        /// Launch again the runs cancelled for good (`ras cancel --run`, or their Slurm
        /// job scancel'ed by hand); they resume from their checkpoints.
        #[arg(long)]
        retry_cancelled: bool,
    },
    /// A sweep's runs: state, epoch, attempts, latest mean metrics.
    #[command(after_help = "Examples:\n  \
        ras status jobs/quickstart.toml\n  \
        ras status quickstart --store s3://bucket/ras     # by name, from the store alone")]
    Status {
        #[command(flatten)]
        sweep: SweepRefArgs,
        /// Redraw the table every this many seconds until every run is complete or
        /// failed (Ctrl-C stops watching; the runs go on).
        #[arg(long, value_name = "SECONDS")]
        watch: Option<f64>,
    },
    /// Cancel a sweep's running jobs and stop its coordinators from launching more (the
    /// next `ras sweep` resumes them); with --run, stop only those runs, for good.
    ///
    /// Needs no cluster profile: each job's record in the store says which launcher
    /// started it (a local process is signalled, a Slurm job scancel'ed).
    #[command(after_help = "Examples:\n  \
        ras cancel quickstart                                  # pause the sweep\n  \
        ras cancel table5 --run mvtec-1a2b3c4d5e6f             # one run, by id\n  \
        ras cancel table5 --run 'mvtec model.encoder_layers=0' # every seed of a variant")]
    Cancel {
        #[command(flatten)]
        sweep: SweepRefArgs,
        /// Cancel only this run, for good: a run id, a label as `ras status` shows it, or
        /// a variant (a label without its seed: every seed). Repeat for several. No
        /// coordinator launches it again (`ras sweep --retry-cancelled` does); its
        /// status and report cells say cancelled.
        #[arg(long = "run", value_name = "ID|LABEL")]
        runs: Vec<String>,
        /// Why (kept with the cancel, shown by `ras status`) [default: ras cancel --run].
        #[arg(long, requires = "runs")]
        reason: Option<String>,
    },
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
        /// Plan without the data (from a laptop, for a cluster): a dataset that cannot be
        /// read here is planned from its published sizes, and the plan says so. By
        /// default every run's dataset root, classes and splits are checked.
        #[arg(long)]
        no_data_check: bool,
    },
    /// A sweep's results beside the paper's, in the paper's layout, and as long tables.
    ///
    /// Each variant is compared only with the paper row its sweep file names (`[paper]`:
    /// which table, and row/method templates over the run's config, e.g. Table 4's
    /// `row = "{model.decoder}"`); a variant without one shows "-". Writes
    /// <sweep>-paper.md/.tex (per class, rows, T_e x T_d grid or noise columns; each cell
    /// "ours ± std (paper, difference)"; AUPRO, AP, F1-max), <dataset>.md/.csv/.tex (one row
    /// per variant and class), and plots where the sweep has their data (T_e x T_d heat
    /// maps, AUROC against test-time noise). Every file starts with what makes its numbers
    /// not comparable to the paper (random-init backbone, other classes, fewer epochs).
    Report {
        #[command(flatten)]
        sweep: SweepRefArgs,
        /// Output folder.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
    },
    /// Did the sweep reproduce the paper? Prints every cell of the paper layout whose
    /// verdict is not `reproduced` (below, above, inconclusive, with why) and a summary
    /// per table; exits 1 when any cell is below or above the paper's number, so a
    /// reproduction can gate a CI job. A verdict: the paper's value inside (reproduced)
    /// or outside (below / above) our 95 % interval, a bootstrap over seeds and the
    /// class's test images; inconclusive with one seed or an interval wider than 10
    /// points. See README, "Verdicts".
    #[command(after_help = "Examples:\n  \
        ras verify jobs/table3.toml\n  \
        ras verify table3 --store s3://bucket/ras")]
    Verify {
        #[command(flatten)]
        sweep: SweepRefArgs,
    },
    /// Every run in a store, one line each: id, state, epoch, key config values (dataset,
    /// decoder, T_e, T_d, setting, seed, epochs), mean I-AUROC / P-AUROC when complete, and
    /// rank-hours when the run has cost records.
    #[command(after_help = "Examples:\n  \
        ras runs                       # the store of $RAS_STORE, else ./ras-store\n  \
        ras runs --filter model.decoder=gate_only --filter state=complete\n  \
        ras runs --filter T_e=1 --json")]
    Runs {
        /// Store URL.
        /// [default: $RAS_STORE, else file://./ras-store]
        #[arg(long)]
        store: Option<String>,
        /// Only runs whose resolved config has KEY=VALUE (model.decoder=ras; short names
        /// decoder, T_e, T_d, setting, epochs), or state=complete|running|failed|preempted.
        /// Repeat: all must match.
        #[arg(long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
        /// One JSON array of runs.
        #[arg(long)]
        json: bool,
    },
    /// Runs side by side: the config keys whose values differ, then mean and per-class
    /// final metrics (I-AUROC, P-AUROC, AUPRO).
    #[command(
        after_help = "Example:\n  ras compare demo-1a2b3c4d demo-5e6f7a8b\n  ras compare demo-1a2b3c4d demo-5e6f7a8b --store s3://bucket/ras"
    )]
    Compare {
        /// Run ids (two or more).
        #[arg(required = true, num_args = 2..)]
        runs: Vec<String>,
        /// Store URL holding the runs.
        /// [default: $RAS_STORE, else file://./ras-store]
        #[arg(long)]
        store: Option<String>,
        /// Print the comparison as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A read-only web view of a store: every sweep and run, a sweep's paper table filling
    /// in as runs complete (the cells `ras report` computes), each run's loss and metric
    /// curves, pictures, log and cost, and runs compared side by side. Open pages update
    /// by themselves. It never writes to the store.
    #[command(
        after_help = "Examples:\n  ras serve                                       # ./ras-store (or $RAS_STORE) on http://127.0.0.1:8765/\n  ras serve --store s3://bucket/ras --bind 127.0.0.1:9000\n  RAS_SERVE_TOKEN=$(openssl rand -hex 16) ras serve --bind 0.0.0.0:8765   # reachable from other machines: a token is required\n  curl -H \"Authorization: Bearer $RAS_SERVE_TOKEN\" http://HOST:8765/api/sweep/quickstart   # any page as JSON under /api/"
    )]
    Serve(ServeArgs),
    // --- `ras doctor` (src/doctor.rs, src/cli/doctor.rs) ---
    /// Check a cluster profile end to end before a sweep: submit a small job through the
    /// profile's launcher and print one PASS/FAIL line per check.
    ///
    /// The job runs `ras doctor-node` on each of its ranks with the profile's template,
    /// setup lines and srun options, as a sweep's runs would. Checks: the launcher takes
    /// the job; every rank starts (this binary and its libraries load on the nodes);
    /// the ranks span the nodes asked for; libtorch sees CUDA (GPU count and names) on a
    /// profile with GPUs; an all-reduce over every rank is exact through MPI (CPU) and
    /// through NCCL (each rank's GPU; SKIP without one). With 2 or more nodes the
    /// default job is 2 ranks, one per node, so the collectives cross the network.
    #[command(after_help = "Examples:\n  \
        ras doctor --cluster cluster/local.toml                 # mpirun on this machine\n  \
        ras doctor --cluster cluster/my-gpu.toml                # 2 ranks on 2 nodes: NCCL over the network\n  \
        ras doctor --cluster cluster/my-gpu.toml --nodes 1 --ranks 8   # one node's 8 GPUs: NVLink peer-to-peer\n  \
        ras doctor --cluster cluster/ci-slurm-2node.toml --cpu  # the test Slurm (fake GPUs)\n\n\
        Exit codes: 0 every check passed (or was skipped, with the reason); 1 a check failed\n\
        (the job's log tail and the rank files under --dir are printed/kept).")]
    Doctor {
        /// Cluster profile (cluster/*.toml).
        #[arg(long, default_value = "cluster/local.toml")]
        cluster: PathBuf,
        /// Ranks of the check job [default: 2 across 2 nodes when the profile has 2 or
        /// more, else 2 on one node when it has room for 2, else 1].
        #[arg(long, value_parser = at_least_one)]
        ranks: Option<usize>,
        /// Nodes to spread the ranks over [default: 2 when the profile has them, else 1].
        #[arg(long, value_parser = at_least_one)]
        nodes: Option<usize>,
        /// Treat the profile's GPUs as absent (a test cluster's fake GPUs): no CUDA is
        /// then reported, not failed, and NCCL is skipped.
        #[arg(long)]
        cpu: bool,
        /// Seconds to wait for the job, queue time included; then it is cancelled and the
        /// check fails.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Keep the job's script, log and rank files in this folder (it must be on a
        /// filesystem the compute nodes share, as a sweep's .ras-sweeps/ is). Default: a
        /// temporary folder here (.ras-doctor-*), removed when the check ends.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Floats in the timed all-reduce (after the one-float check).
        #[arg(long, default_value_t = 1 << 22)]
        elements: usize,
    },
    /// One rank of `ras doctor`'s job: writes what it sees and the collectives' results
    /// to OUT/rank-<rank>.json; exits 1 when a collective is wrong. Alone on a GPU machine:
    /// `ras doctor-node --out DIR --collective nccl` (NCCL at one rank, no MPI needed).
    #[command(hide = true)]
    DoctorNode {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "auto", value_parser = collective_check())]
        collective: ras::doctor::CollectiveCheck,
        #[arg(long, default_value_t = 1 << 22)]
        elements: usize,
        /// A name for the job's command line (unused otherwise).
        #[arg(long)]
        tag: Option<String>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ExportFormatArg {
    /// torch.save of {"epoch", "arch", "state_dict", "best_metric"}, as the public code's checkpoints.
    Public,
    /// The same state dict as safetensors.
    Safetensors,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Sweep file (jobs/*.toml).
    pub sweep: PathBuf,
    /// Cluster profile (cluster/*.toml).
    #[arg(long, default_value = "cluster/local.toml")]
    pub cluster: PathBuf,
    /// Store URL for every run and the sweep's state [default: the configs' `store`, else
    /// $RAS_STORE, else file://./ras-store].
    #[arg(long)]
    pub store: Option<String>,
    /// Override a config key in every run of the sweep.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// A sweep for `status`, `report` and `cancel`: a sweep file, or a sweep's name in a store.
#[derive(Args, Debug)]
pub struct SweepRefArgs {
    /// Sweep file (jobs/*.toml), or the name of a sweep in --store (its saved manifest
    /// is read: no sweep file, base configs or cluster profile needed).
    pub sweep: PathBuf,
    /// Cluster profile, only used to expand a sweep file (ranks per run) [default:
    /// cluster/local.toml when it exists here]; never needed for a sweep named by its store.
    #[arg(long)]
    pub cluster: Option<PathBuf>,
    /// Store URL of the sweep's state [default: a sweep file's configs' `store`, else
    /// $RAS_STORE, else file://./ras-store].
    #[arg(long)]
    pub store: Option<String>,
    /// Override a config key in every run of the sweep (sweep files only).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Run configuration (TOML); see configs/ for presets.
    pub config: PathBuf,
    /// Override a config key, e.g. --set train.epochs=10 --set model.encoder_layers=0.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
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
        kind: DatasetKind,
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

/// `--ranks`: at least 1 (1 = this process); 0 is refused rather than read as 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (1 = this process)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `--collective`: the library's names, listed by `--help` (the library has no clap).
fn collective_check() -> impl clap::builder::TypedValueParser<Value = ras::doctor::CollectiveCheck> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(ras::doctor::CollectiveCheck::ALL.iter().map(|c| c.as_str()))
        .map(|s| s.parse::<ras::doctor::CollectiveCheck>().expect("one of the possible values"))
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Store URL.
    /// [default: $RAS_STORE, else file://./ras-store]
    #[arg(long)]
    pub store: Option<String>,
    /// Address and port to listen on (port 0: a free one, printed). Anything but a
    /// loopback address needs a token.
    #[arg(long, default_value = ras::serve::DEFAULT_BIND, value_name = "ADDR:PORT")]
    pub bind: String,
    /// Required to bind anything but 127.0.0.1 (at least 16 characters): requests
    /// without it get 401. Open the page once as URL?token=TOKEN (the browser keeps it),
    /// or send Authorization: Bearer TOKEN.
    #[arg(long, env = "RAS_SERVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Seconds between an open page's checks for changes (and the least time between two
    /// reads of one page's part of the store).
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub refresh: f64,
}

impl From<ServeArgs> for ras::serve::ServeOptions {
    fn from(a: ServeArgs) -> Self {
        Self {
            store: a.store.unwrap_or_else(ras::config::default_store),
            bind: a.bind,
            token: a.token,
            refresh: std::time::Duration::from_secs_f64(a.refresh.clamp(0.2, 3600.0)),
        }
    }
}
