//! Cluster profiles (`cluster/*.toml`): what a coordinator may use (nodes, GPUs or cores
//! per node, Slurm partition and limits, setup lines) and the shape the planner packs
//! runs onto.

use super::kinds::LauncherKind;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A cluster profile (`cluster/*.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterProfile {
    /// "local" or "slurm".
    pub launcher: LauncherKind,
    #[serde(default = "one")]
    pub nodes: usize,
    /// 0 = CPU-only: a rank then takes `cpus_per_gpu` cores of `cpus_per_node`.
    #[serde(default)]
    pub gpus_per_node: usize,
    #[serde(default = "one")]
    pub cpus_per_gpu: usize,
    /// CPU cores per node (CPU-only profiles); default: this machine's.
    pub cpus_per_node: Option<usize>,
    /// e.g. "16G" (Slurm --mem-per-gpu, or --mem-per-cpu on CPU-only profiles).
    pub mem_per_gpu: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Slurm time limit, e.g. "04:00:00".
    pub time_limit: Option<String>,
    /// Extra `#SBATCH` lines, verbatim.
    #[serde(default)]
    pub extra: Vec<String>,
    /// Shell lines a job script runs before starting ras: `module load ...`, `source
    /// venv/bin/activate`, `export NCCL_IB_HCA=...`.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Extra srun options, e.g. a container (`--container-image=...` with pyxis) or
    /// `--cpu-bind=cores`.
    #[serde(default)]
    pub srun_args: Vec<String>,
    /// A training rate per rank, TFLOP/s achieved, that the profile asserts: replaces
    /// `ras plan`'s default rate for the device (the plan labels it asserted). Measured
    /// runs in the store and the bench lines below come first.
    pub tflops_per_rank: Option<f64>,
    /// Dense peak TFLOP/s of one GPU at the precision the runs train in (TF32 by default
    /// on CUDA: H100 SXM 495, A100 156; BF16: 989, 312). Without measurements, `ras plan`
    /// prices GPU training at a cited fraction of it (`sweep::rates`).
    pub gpu_peak_tflops: Option<f64>,
    /// Measured training images/s of one rank on this profile's device: the line
    /// `ras bench train-step` prints, pasted here. `ras plan` uses it for shapes the
    /// store has no finished run of, scaled from the bench's shape by FLOPs.
    #[serde(default)]
    pub train_images_per_s_per_rank: Option<f64>,
    /// GFLOP per training image at the shape the bench lines were measured at (the bench
    /// prints it; default: the paper's shapes, 7.40).
    #[serde(default)]
    pub bench_gflop_per_image: Option<f64>,
    /// Backbone feature extraction, images/s (decode included), from the same bench.
    #[serde(default)]
    pub feature_images_per_s: Option<f64>,
    /// Test images/s of one evaluation pass (model forward and maps), from the same bench.
    #[serde(default)]
    pub eval_images_per_s: Option<f64>,
    /// The sbatch template; default cluster/templates/run.sbatch.tmpl next to the profile.
    pub template: Option<PathBuf>,
    /// Slurm node names, one per node. Given: the coordinator places each run on named
    /// nodes (`--nodelist`), as `ras plan` shows, and records them with the job. Empty:
    /// Slurm chooses the nodes; only their number is fixed.
    #[serde(default)]
    pub node_names: Vec<String>,
    /// Shortest poll interval of the coordinator, seconds (see `poll_bounds`).
    pub poll_min_s: Option<f64>,
    /// Longest poll interval while nothing changes, seconds.
    pub poll_max_s: Option<f64>,
    /// Largest job array the cluster accepts (Slurm's MaxArraySize - 1; default 1000):
    /// more alike runs go out as several arrays.
    #[serde(default = "default_max_array")]
    pub max_array_size: usize,
}

fn default_max_array() -> usize {
    1000
}

fn one() -> usize {
    1
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read cluster profile {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster profile {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl ClusterProfile {
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read { path: path.into(), source })?;
        let mut p: ClusterProfile =
            toml::from_str(&text).map_err(|e| ProfileError::Invalid { path: path.into(), message: e.to_string() })?;
        let bad_poll = |v: Option<f64>| v.is_some_and(|s| !(s.is_finite() && s > 0.0));
        if bad_poll(p.poll_min_s) || bad_poll(p.poll_max_s) {
            return Err(ProfileError::Invalid {
                path: path.into(),
                message: "poll_min_s and poll_max_s must be numbers of seconds above 0".into(),
            });
        }
        let bad_rate = |v: Option<f64>| v.is_some_and(|r| !(r.is_finite() && r > 0.0));
        let rates = [
            ("train_images_per_s_per_rank", p.train_images_per_s_per_rank),
            ("feature_images_per_s", p.feature_images_per_s),
            ("eval_images_per_s", p.eval_images_per_s),
            ("bench_gflop_per_image", p.bench_gflop_per_image),
            ("tflops_per_rank", p.tflops_per_rank),
            ("gpu_peak_tflops", p.gpu_peak_tflops),
        ];
        if let Some((key, v)) = rates.iter().find(|(_, v)| bad_rate(*v)) {
            return Err(ProfileError::Invalid {
                path: path.into(),
                message: format!("{key} = {}: must be a number above 0", v.unwrap_or_default()),
            });
        }
        if p.max_array_size == 0 {
            return Err(ProfileError::Invalid {
                path: path.into(),
                message: "max_array_size must be at least 1".into(),
            });
        }
        if p.nodes == 0 || p.cpus_per_gpu == 0 {
            return Err(ProfileError::Invalid {
                path: path.into(),
                message: "nodes and cpus_per_gpu must be at least 1".into(),
            });
        }
        if !p.node_names.is_empty() && p.node_names.len() != p.nodes {
            return Err(ProfileError::Invalid {
                path: path.into(),
                message: format!(
                    "node_names lists {} nodes but nodes = {}: list every node or none",
                    p.node_names.len(),
                    p.nodes
                ),
            });
        }
        if p.template.is_none() {
            p.template = Some(path.parent().unwrap_or(Path::new(".")).join("templates/run.sbatch.tmpl"));
        }
        Ok(p)
    }

    /// Ranks one node runs at once: its GPUs, or on CPU-only profiles cores / cpus_per_gpu.
    pub fn ranks_per_node(&self) -> usize {
        if self.gpus_per_node > 0 {
            self.gpus_per_node
        } else {
            let cpus = self
                .cpus_per_node
                .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            (cpus / self.cpus_per_gpu).max(1)
        }
    }

    /// Ranks that can run at once on the whole cluster.
    pub fn slots(&self) -> usize {
        self.nodes * self.ranks_per_node()
    }

    /// The shape the planner packs runs onto.
    pub fn shape(&self) -> ClusterShape {
        ClusterShape { nodes: self.nodes, ranks_per_node: self.ranks_per_node() }
    }

    /// The coordinator's poll interval: `poll_min_s` while runs change, backing off
    /// (doubling) to `poll_max_s` while nothing does. Default 1 s to 30 s on Slurm (sites
    /// limit how often a user may ask the controller), 0.5 s to 5 s locally.
    pub fn poll_bounds(&self) -> (std::time::Duration, std::time::Duration) {
        let (lo, hi) = match self.launcher {
            LauncherKind::Slurm => (1.0, 30.0),
            LauncherKind::Local => (0.5, 5.0),
        };
        let lo = self.poll_min_s.unwrap_or(lo);
        let hi = self.poll_max_s.unwrap_or(hi).max(lo);
        (std::time::Duration::from_secs_f64(lo), std::time::Duration::from_secs_f64(hi))
    }

    /// Node `i`'s name: its Slurm name when the profile lists them, else `node<i>`.
    pub fn node_name(&self, i: usize) -> String {
        self.node_names.get(i).cloned().unwrap_or_else(|| format!("node{i}"))
    }
}

/// What the planner packs runs onto: `nodes` nodes of `ranks_per_node` rank slots each
/// (GPUs, or CPU cores / cpus_per_gpu).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterShape {
    pub nodes: usize,
    pub ranks_per_node: usize,
}

impl Default for ClusterShape {
    fn default() -> Self {
        Self { nodes: 1, ranks_per_node: 1 }
    }
}

impl ClusterShape {
    pub fn slots(&self) -> usize {
        self.nodes.max(1) * self.ranks_per_node.max(1)
    }

    /// (nodes, ranks per node) of a run of `ranks` ranks: as few nodes as hold it (ranks
    /// on one node talk through shared memory, across nodes through the network), the
    /// ranks spread evenly over them. A run wider than the cluster gets every node.
    pub fn layout(&self, ranks: usize) -> (usize, usize) {
        let ranks = ranks.max(1);
        let nodes = ranks.div_ceil(self.ranks_per_node.max(1)).clamp(1, self.nodes.max(1));
        (nodes, ranks.div_ceil(nodes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_node_names_must_list_every_node() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("two.toml");
        std::fs::write(&p, "launcher = \"slurm\"\nnodes = 2\nnode_names = [\"n1\"]\n").unwrap();
        let err = ClusterProfile::load(&p).unwrap_err().to_string();
        assert!(err.contains("two.toml") && err.contains("node_names lists 1 nodes but nodes = 2"), "{err}");
        std::fs::write(&p, "launcher = \"slurm\"\nnodes = 2\nnode_names = [\"n1\", \"n2\"]\ngpus_per_node = 4\n")
            .unwrap();
        let prof = ClusterProfile::load(&p).unwrap();
        assert_eq!((prof.slots(), prof.ranks_per_node(), prof.node_name(1)), (8, 4, "n2".to_string()));
    }

    #[test]
    fn plan_rates_must_be_above_zero_and_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rates.toml");
        for key in ["gpu_peak_tflops", "bench_gflop_per_image", "tflops_per_rank", "eval_images_per_s"] {
            std::fs::write(&p, format!("launcher = \"slurm\"\n{key} = 0.0\n")).unwrap();
            let err = ClusterProfile::load(&p).unwrap_err().to_string();
            assert!(
                err.contains("rates.toml") && err.contains(&format!("{key} = 0: must be a number above 0")),
                "{err}"
            );
        }
        std::fs::write(&p, "launcher = \"slurm\"\ngpu_peak_tflops = 494.7\nbench_gflop_per_image = 7.4\n").unwrap();
        let prof = ClusterProfile::load(&p).unwrap();
        assert_eq!((prof.gpu_peak_tflops, prof.bench_gflop_per_image), (Some(494.7), Some(7.4)));
    }
}
