//! ras: train and evaluate RAS (Reconstruction as Sequence) unsupervised anomaly
//! detection, from one laptop to a Slurm cluster.
//!
//! Architecture, one folder per concern:
//! - `config`   the run configuration (TOML, presets in configs/, validated)
//! - `data`     dataset layouts, image/mask decoding, the synthetic dataset generator
//! - `backbone` the frozen EfficientNet + neck that produces f_org
//! - `features` the feature cache in the store (computed once, reused by every run)
//! - `model`    RAS (and its ablations, the UniAD-style baseline)
//! - `train`    optimiser, schedule, jitter, seeded data order
//! - `dist`     ranks, collectives (single, MPI, NCCL), data sharding
//! - `eval`     anomaly maps, image scores, metrics
//! - `run`      one run end to end, and its layout in the store
//! - `store`    every byte that outlives a process (object_store)
//! - `bench`    throughput measurements
//! - `sweep`    sweeps: expansion, plan, coordinator state in the store, reports
//! - `launch`   launchers (local processes, Slurm) behind one trait
//!
//! The `ras` binary (src/main.rs + src/cli/) is a thin layer over this library.

pub mod backbone;
pub mod bench;
pub mod config;
pub mod data;
pub mod dist;
pub mod eval;
pub mod features;
pub mod launch;
pub mod model;
pub mod progress;
pub mod run;
pub mod store;
pub mod sweep;
pub mod train;

/// This machine's host name (empty if unknown).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}
