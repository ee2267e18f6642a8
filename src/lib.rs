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
//! - `sweep`    sweeps: expansion, plan, coordinator state in the store
//! - `report`   a sweep's results beside the paper's: tables (Markdown, CSV, LaTeX), plots
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
pub mod report;
pub mod run;
pub mod store;
pub mod sweep;
pub mod train;

/// This machine's host name (empty if unknown).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// What a run records about the software and machine that produced it.
pub fn environment(
    device: tch::Device,
    backbone: &backbone::BackboneIdentity,
    cache: &features::CacheStats,
) -> serde_json::Value {
    serde_json::json!({
        "ras_version": env!("CARGO_PKG_VERSION"),
        "git_commit": env!("RAS_GIT_COMMIT"),
        "tch_version": "0.24.0",
        "libtorch_version": env!("RAS_LIBTORCH_VERSION"),
        "device": format!("{device:?}"),
        "cuda_available": tch::Cuda::is_available(),
        "torch_threads": tch::get_num_threads(),
        "hostname": hostname(),
        "backbone": backbone,
        "backbone_warning": (!backbone.pretrained).then_some("random-init backbone: metrics are not comparable to the paper"),
        "feature_cache": cache,
    })
}
