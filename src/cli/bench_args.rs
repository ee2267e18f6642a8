//! The clap structs of `ras bench`: what `ras bench --help` teaches, and what they become
//! for the library. Nothing here runs.

use clap::{Args, Subcommand};
use ras::config::BackboneArch;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// RAS training steps per second at given shapes (default: the paper's, batch 64,
    /// 272x14x14, T_e=2, T_d=4), and the speed-up of an epoch on cached features over an
    /// epoch that decodes images and runs the backbone.
    TrainStep(TrainStepArgs),
    /// Data-parallel scaling on this machine: samples/s of 1, 2, 4 ... ranks (mpirun),
    /// the all-reduce share of step time, and the bytes all-reduced per step. CPU ranks
    /// all-reduce with MPI; with `--device cuda` each rank takes the GPU of its local rank
    /// and all-reduces with NCCL (give at most as many ranks as GPUs).
    Ranks {
        /// Rank counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        ranks: Vec<usize>,
        #[command(flatten)]
        shapes: TrainStepArgs,
    },
    /// Whole training epochs on cached features resident on the device, then one
    /// evaluation (maps, scores, metrics), as a run does them: samples/s, achieved
    /// TFLOP/s and wall time. The defaults are MVTec-AD's sizes (3629 train and 1725 test
    /// images at 272x14x14) and the paper's model.
    #[command(
        after_help = "Examples:\n  ras bench epoch --device cuda --epochs 20            # MVTec-AD-sized, on a GPU\n  ras bench epoch --images 64 --test-images 16 --epochs 2 --hidden-dim 64   # a quick CPU look"
    )]
    Epoch {
        /// Cached training images per epoch.
        #[arg(long, default_value_t = 3629)]
        images: usize,
        /// Test images evaluated after the last epoch.
        #[arg(long, default_value_t = 1725)]
        test_images: usize,
        #[arg(long, default_value_t = 1)]
        epochs: usize,
        #[command(flatten)]
        shapes: TrainStepArgs,
    },
    /// How far `ras plan` is from what runs then cost: a Table-5-shaped sweep (every T_e x
    /// T_d, tiny sizes, 2 synthetic classes) on a cluster. One cell runs first; the sweep
    /// is planned again (the other cells scaled from it by FLOPs) and run; each other run's
    /// recorded cost is set against that plan, and against the plan made before anything
    /// ran (the device's default rates).
    #[command(
        after_help = "Examples:\n  make bench-plan                                    # the test Slurm (cluster/slurm-up.sh)\n  ras bench plan --cluster cluster/ci-slurm.toml --epochs 8"
    )]
    Plan(PlanBenchArgs),
    /// What `ras serve`'s sweep page costs on a big finished sweep: the first view, a
    /// refresh with nothing changed, and one after a change (wall time, store requests,
    /// page bytes), beside `ras report` of the same sweep. With --s3, on the test S3
    /// server behind --latency-ms per request.
    #[command(
        after_help = "Examples:\n  make bench-serve\n  ras bench serve --runs 2000\n  ras bench serve --runs 2000 --s3 --latency-ms 20"
    )]
    Serve(ServeBenchArgs),
    /// What successive halving saves and selects: the search sweep and the same variants
    /// as a grid trained to the last rung, run one after the other into a fresh store on
    /// the profile; rank-hours of each, the grid's ranking on the selection metric, where
    /// the search's choice ranks, and whether its finished runs equal the grid's bit for
    /// bit. Fails when the search costs more than 45 % of the grid, selects outside the
    /// grid's best two, or a finished run differs.
    #[command(
        after_help = "Examples:\n  make bench-search\n  ras bench search --cluster cluster/local.toml\n  ras bench search --s3 --latency-ms 20   # on the test S3 server, 20 ms a request"
    )]
    Search(SearchBenchArgs),
    /// What a report's verdicts cost at a real dataset's size (default: MVTec-AD's, 15
    /// classes of 115 test images, 224 x 224 maps, 3 seeds; simulated predictions): pixel
    /// histograms per run (time, bytes), the intervals of a mean cell, and beside them the
    /// exact pixel bootstrap they stand for, on one class and the same draws.
    #[command(
        after_help = "Examples:\n  make bench-verdicts\n  ras bench verdicts --classes 12 --images 180   # VisA's shape"
    )]
    Verdicts(VerdictsBenchArgs),
    /// One rank of `ras bench ranks` (started by mpirun).
    #[command(hide = true)]
    DpWorker(TrainStepArgs),
    /// The coordinator's cost per poll cycle: scheduler calls, store requests (by kind,
    /// and the most in flight at once), wall time; then `ras status`, `ras report` and
    /// `ras runs` of the same sweep once finished.
    ///
    /// A synthetic sweep of N one-rank runs is submitted to the profile's Slurm, then K
    /// poll cycles are measured. Use a Slurm whose partition is DOWN so that every job
    /// stays pending: `make bench-coordinator` sets that up on the test Slurm. The jobs are
    /// cancelled at the end; then every run gets the records of a finished run and the
    /// three commands are timed. With `--s3` the store is the test S3 server (s3s-fs,
    /// `make setup-s3`) behind a loopback forwarder adding `--latency-ms` to every
    /// request, as a cloud store's round trip would.
    #[command(
        after_help = "Examples:\n  ras bench coordinator --runs 2000 --cycles 5 --cluster cluster/ci-slurm.toml\n  ras bench coordinator --runs 2000 --cycles 6 --s3 --latency-ms 20   # make bench-coordinator-s3"
    )]
    Coordinator {
        /// Runs in the synthetic sweep.
        #[arg(long, default_value_t = 2000)]
        runs: usize,
        /// Poll cycles to measure (the first one submits everything).
        #[arg(long, default_value_t = 5)]
        cycles: usize,
        /// A Slurm cluster profile.
        #[arg(long, default_value = "cluster/ci-slurm.toml")]
        cluster: PathBuf,
        /// Store URL for the sweep's state (default: a fresh temporary folder).
        #[arg(long)]
        store: Option<String>,
        /// Print the cycles as JSON lines.
        #[arg(long)]
        json: bool,
        /// Store the sweep on the test S3 server (s3s-fs) behind a latency forwarder.
        #[arg(long, conflicts_with = "store")]
        s3: bool,
        /// With --s3: milliseconds added to every request (a cloud store's round trip).
        #[arg(long, default_value_t = 20, requires = "s3")]
        latency_ms: u64,
    },
}

#[derive(Args, Debug)]
pub struct TrainStepArgs {
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// C_org: feature channels (272 for EfficientNet-B4).
    #[arg(long, default_value_t = 272)]
    pub channels: i64,
    /// Token grid side (14 at 224 px).
    #[arg(long, default_value_t = 14)]
    pub grid: i64,
    #[arg(long, default_value_t = 2)]
    pub encoder_layers: usize,
    #[arg(long, default_value_t = 4)]
    pub decoder_layers: usize,
    #[arg(long, default_value_t = 256)]
    pub hidden_dim: i64,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Images in the cached-vs-uncached epoch comparison (0: skip it).
    #[arg(long, default_value_t = 64)]
    pub epoch_images: usize,
    /// Backbone of the uncached epoch.
    #[arg(long, default_value = "efficientnet-b4")]
    pub arch: BackboneArch,
    /// torch intra-op threads (default: torch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Device of `ras bench train-step` (cpu, cuda, cuda:N, auto): measure on the device
    /// of the cluster profile whose throughput keys the bench's last lines fill.
    #[arg(long, default_value = "cpu")]
    pub device: ras::config::DeviceSpec,
    /// Also time the PyTorch reference step side by side (default: on when .venv-ref,
    /// made by `make setup-python`, exists).
    #[arg(long, conflicts_with = "no_pytorch")]
    pub pytorch: bool,
    /// Do not time the PyTorch reference.
    #[arg(long)]
    pub no_pytorch: bool,
    /// fp32, tf32 (TF32 matrix products on CUDA) or bf16 (bf16 autocast, fp32 master
    /// weights). Default: tf32 on CUDA, fp32 on a CPU. TF32 is a process-wide switch:
    /// compare precisions in separate runs of the command.
    #[arg(long)]
    pub precision: Option<ras::train::Precision>,
}

#[derive(Args, Debug)]
pub struct PlanBenchArgs {
    /// The cluster profile the sweep runs on.
    #[arg(long, default_value = "cluster/ci-slurm.toml")]
    pub cluster: PathBuf,
    /// T_e values of the grid.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub encoder_layers: Vec<usize>,
    /// T_d values of the grid.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    pub decoder_layers: Vec<usize>,
    /// The cell run first, T_e,T_d.
    #[arg(long, value_delimiter = ',', num_args = 2, default_value = "1,2")]
    pub first: Vec<usize>,
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    #[arg(long, default_value_t = 2)]
    pub eval_every: usize,
    /// The model's width (its FFN is twice that).
    #[arg(long, default_value_t = 64)]
    pub hidden_dim: usize,
    /// Training images per class of the synthetic dataset.
    #[arg(long, default_value_t = 16)]
    pub train_images: usize,
    /// Every job takes its node to itself (`#SBATCH --exclusive` added to a copy of the
    /// profile): on a Slurm that shares cores between jobs (the test Slurm packs up to 4
    /// jobs a CPU), a run then gets the cores the profile plans for it.
    #[arg(long)]
    pub exclusive: bool,
    /// Keep the temporary folder (data, store, sweep files, job logs).
    #[arg(long)]
    pub keep: bool,
}

impl From<PlanBenchArgs> for ras::bench::plan::Options {
    fn from(a: PlanBenchArgs) -> Self {
        Self {
            cluster: a.cluster,
            encoder_layers: a.encoder_layers,
            decoder_layers: a.decoder_layers,
            first: (a.first.first().copied().unwrap_or(1), a.first.get(1).copied().unwrap_or(2)),
            epochs: a.epochs,
            eval_every: a.eval_every,
            hidden_dim: a.hidden_dim,
            train_images: a.train_images,
            exclusive: a.exclusive,
            keep: a.keep,
        }
    }
}

#[derive(Args, Debug)]
pub struct ServeBenchArgs {
    /// Finished runs in the synthetic sweep.
    #[arg(long, default_value_t = 2000)]
    pub runs: usize,
    /// Refreshes with nothing changed to time (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub refreshes: usize,
    /// Store the sweep on the test S3 server (s3s-fs, `make setup-s3`) behind a latency forwarder.
    #[arg(long)]
    pub s3: bool,
    /// With --s3: milliseconds added to every request (a cloud store's round trip).
    #[arg(long, default_value_t = 20, requires = "s3")]
    pub latency_ms: u64,
    /// Leave out the reference, `ras report` of the same sweep (minutes on the test S3 server).
    #[arg(long)]
    pub skip_report: bool,
}

impl From<ServeBenchArgs> for ras::bench::serve::Options {
    fn from(a: ServeBenchArgs) -> Self {
        Self {
            runs: a.runs,
            refreshes: a.refreshes,
            s3_latency: a.s3.then(|| std::time::Duration::from_millis(a.latency_ms)),
            skip_report: a.skip_report,
        }
    }
}

#[derive(Args, Debug)]
pub struct SearchBenchArgs {
    /// The search sweep (its [search] method = "asha").
    #[arg(long, default_value = "jobs/search.toml")]
    pub search: std::path::PathBuf,
    /// The same variants as a grid (method = "grid", the same rungs and held-out split).
    #[arg(long, default_value = "jobs/search-grid.toml")]
    pub grid: std::path::PathBuf,
    #[arg(long, default_value = "cluster/local.toml")]
    pub cluster: std::path::PathBuf,
    /// Store URL (default: a fresh folder under the temporary directory).
    #[arg(long)]
    pub store: Option<String>,
    /// Run both sweeps on the test S3 server (`make setup-s3`) behind --latency-ms per
    /// request, and time `ras report` of the search there.
    #[arg(long, conflicts_with = "store")]
    pub s3: bool,
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
}

#[derive(Args, Debug)]
pub struct VerdictsBenchArgs {
    #[arg(long, default_value_t = 15)]
    pub classes: usize,
    /// Test images per class.
    #[arg(long, default_value_t = 115)]
    pub images: usize,
    /// Side of the square anomaly maps, in pixels.
    #[arg(long, default_value_t = 224)]
    pub side: usize,
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// Replicates of the exact reference (each sorts every drawn pixel of every seed).
    #[arg(long, default_value_t = 3)]
    pub reference_replicates: usize,
}

impl From<VerdictsBenchArgs> for ras::bench::verdicts::Options {
    fn from(a: VerdictsBenchArgs) -> Self {
        Self {
            classes: a.classes,
            images: a.images,
            side: a.side,
            seeds: a.seeds,
            reference_replicates: a.reference_replicates,
        }
    }
}

impl From<SearchBenchArgs> for ras::bench::search::Options {
    fn from(a: SearchBenchArgs) -> Self {
        let s3_latency = a.s3.then(|| std::time::Duration::from_millis(a.latency_ms));
        Self { search: a.search, grid: a.grid, cluster: a.cluster, store: a.store, s3_latency }
    }
}

impl From<TrainStepArgs> for ras::bench::TrainStepOptions {
    fn from(args: TrainStepArgs) -> Self {
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
            device: args.device,
            precision: args.precision,
            pytorch: if args.no_pytorch { false } else { args.pytorch || ras::bench::pytorch_reference().is_some() },
        }
    }
}
