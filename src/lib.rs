//! ras: train and evaluate RAS (Reconstruction as Sequence) unsupervised anomaly
//! detection, from one laptop to a Slurm cluster.
//!
//! Architecture, one folder per concern (lower lines never import higher ones' callers):
//! - `config`   what users write: run configs, sweep files, cluster profiles, `--set`;
//!   typed values (dataset kind, backbone arch, device, launcher, setting)
//! - `threads`  libtorch's CPU threads, fixed per process (bit-for-bit repeatable runs)
//! - `rng`      seeds: init, epoch order, jitter noise as functions of (seed, epoch, sample)
//! - `exit`     the exit codes of `ras` (ok, failed, partial 2, cancelled, requeue 75)
//! - `data`     dataset layouts, image/mask decoding, the synthetic dataset generator
//! - `backbone` the frozen EfficientNet + neck that produces f_org
//! - `features` the feature cache in the store (computed once, reused by every run)
//! - `model`    RAS (and its ablations, the UniAD-style baseline)
//! - `train`    optimiser, schedule, jitter, seeded data order
//! - `dist`     ranks, collectives (single, MPI, NCCL), data sharding
//! - `eval`     anomaly maps, image scores, metrics
//! - `run`      one run end to end, and its layout in the store
//! - `interop`  the public PyTorch code's checkpoints in (`ras import`) and out (`ras export`)
//! - `predict`  a finished run's final model on new images: scores, maps, pictures
//! - `store`    every byte that outlives a process (object_store)
//! - `bench`    throughput measurements
//! - `launch`   launchers (local processes, Slurm) behind one trait, mpirun, external commands
//! - `doctor`   `ras doctor`: a small job through a cluster profile's launcher, per-check PASS/FAIL
//! - `sweep`    sweeps: expansion, plan, store state, coordinator, status table
//! - `report`   a sweep's results beside the paper's: tables (Markdown, CSV, LaTeX), plots
//! - `runs`     the store as a workspace: list runs, compare them, find a run or sweep by name
//! - `serve`    `ras serve`: a read-only web view of a store (sweeps, runs, the report live)
//! - `failure`  which exit a failed process gets (74 for a store outage, by the error's type)
//!
//! The `ras` binary (src/main.rs + src/cli/) is a thin layer over this library.

pub mod backbone;
pub mod bench;
pub mod config;
pub mod data;
pub mod dist;
pub mod doctor;
pub mod error_text;
pub mod eval;
pub mod exit;
pub mod failure;
pub mod features;
pub mod interop;
pub mod launch;
pub mod model;
pub mod predict;
pub mod progress;
pub mod report;
pub mod rng;
pub mod run;
pub mod runs;
pub mod serve;
pub mod store;
pub mod sweep;
pub mod threads;
pub mod train;

/// This machine's host name (empty if unknown).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Whether process `pid` of this machine runs (exists in /proc and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so
/// that a reader never sees half a file under the final name.
pub fn write_file_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Whether libtorch's CUDA backend (libtorch_cuda.so) is mapped into this process. Only a
/// binary linked against it (`ras-cuda`, built with feature `cuda`) can use a GPU: the
/// plain `ras` links libtorch's CPU part alone, and libtorch then reports no CUDA at all.
pub fn cuda_backend_loaded() -> bool {
    std::fs::read_to_string("/proc/self/maps").is_ok_and(|maps| maps.contains("/libtorch_cuda.so"))
}

/// `ras --version`: the version, commit, libtorch, and whether the CUDA backend is loaded.
pub fn build_info() -> String {
    let cuda = if cuda_backend_loaded() {
        "CUDA backend: libtorch_cuda.so loaded"
    } else {
        "CPU only: libtorch_cuda.so not loaded (GPUs need the ras-cuda build: make build-cuda)"
    };
    format!(
        "{} (commit {}, libtorch {}, {cuda})",
        env!("CARGO_PKG_VERSION"),
        env!("RAS_GIT_COMMIT"),
        env!("RAS_LIBTORCH_VERSION")
    )
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
