//! The in-job side of `ras doctor`: what `ras doctor-node` checks on each rank (CUDA as
//! libtorch sees it, then the collectives) and writes to `<dir>/ranks/rank-<r>.json`.

use super::{CollectiveCheck, CollectiveResult, NodeReport};
use crate::dist::WorldInfo;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// `ras doctor-node`: checks of one rank, written to `out/rank-<r>.json`. Returns whether
/// every collective it ran was right.
pub fn doctor_node(out: &Path, collective: CollectiveCheck, elements: usize) -> anyhow::Result<bool> {
    let world = WorldInfo::from_env()?;
    let var = |k: &str| std::env::var(k).ok();
    let host = crate::hostname();
    let cuda_devices = if tch::Cuda::is_available() { tch::Cuda::device_count().max(0) as usize } else { 0 };
    let mut report = NodeReport {
        rank: world.rank,
        local_rank: world.local_rank,
        world_size: world.world_size,
        node: var("SLURMD_NODENAME").unwrap_or_else(|| host.clone()),
        host,
        slurm_job_id: var("SLURM_JOB_ID"),
        cuda_visible_devices: var("CUDA_VISIBLE_DEVICES"),
        ras_version: env!("CARGO_PKG_VERSION").to_string(),
        libtorch_version: env!("RAS_LIBTORCH_VERSION").to_string(),
        cuda_available: cuda_devices > 0,
        cuda_devices,
        gpu_names: gpu_names(cuda_devices),
        ..Default::default()
    };
    std::fs::create_dir_all(out)?;
    let file = out.join(format!("rank-{}.json", world.rank));
    let write = |r: &NodeReport| crate::write_file_atomically(&file, &serde_json::to_vec_pretty(r).expect("json"));
    write(&report)?;
    // The rank's own GPU, as training picks it (local rank modulo the visible devices).
    let gpu = (cuda_devices > 0).then(|| Device::Cuda(world.local_rank % cuda_devices));
    run_collectives(world, collective, gpu, elements, &mut report);
    report.finished = true;
    write(&report)?;
    // No GPU fails only an explicit `--collective nccl` (auto: a CPU node skips NCCL).
    let no_gpu_ok = collective != CollectiveCheck::Nccl;
    let ok = report.mpi.as_ref().is_none_or(|r| r.ok)
        && report.nccl.as_ref().is_none_or(|r| r.ok || (no_gpu_ok && r.error.as_deref() == Some(NO_GPU)));
    Ok(ok)
}

pub(super) const NO_GPU: &str = "no GPU visible to this rank";

/// GPU names through the CUDA driver (cudarc; libtorch has no call for them).
pub(super) fn gpu_names(count: usize) -> Vec<String> {
    #[cfg(feature = "nccl")]
    {
        (0..count)
            .map(|i| {
                cudarc::driver::CudaContext::new(i)
                    .and_then(|c| c.name())
                    .unwrap_or_else(|e| format!("cuda:{i} (name unknown: {e:?})"))
            })
            .collect()
    }
    #[cfg(not(feature = "nccl"))]
    {
        (0..count).map(|i| format!("cuda:{i}")).collect()
    }
}

pub(super) fn failed(backend: &str, world: WorldInfo, error: String) -> CollectiveResult {
    CollectiveResult {
        backend: backend.into(),
        world_size: world.world_size,
        sum: None,
        expected: expected_sum(world.world_size),
        large_ok: false,
        elements: 0,
        large_ms: 0.0,
        ok: false,
        error: Some(error),
    }
}

pub(super) fn expected_sum(n: usize) -> f64 {
    (n * (n + 1) / 2) as f64
}

/// The two all-reduces on `device` through `coll`: one float (rank + 1), then `elements`
/// floats (rank + 1) * (i mod 7), checked exactly against n(n+1)/2 * (i mod 7) (small
/// integers: float32 sums are exact).
pub(super) fn check_all_reduce(
    coll: &dyn crate::dist::Collective,
    device: Device,
    elements: usize,
) -> CollectiveResult {
    let world = coll.world();
    let expected = expected_sum(world.world_size);
    let r = (world.rank + 1) as f64;
    let mut one = Tensor::from_slice(&[r as f32]).to_device(device);
    if let Err(e) = coll.all_reduce_sum(&mut one) {
        return failed(coll.name(), world, e.to_string());
    }
    let sum = one.to_device(Device::Cpu).double_value(&[0]);
    let pattern = Tensor::arange(elements as i64, (Kind::Float, device)).fmod(7.0);
    let mut big = (&pattern * r).contiguous();
    let t0 = Instant::now();
    let res = coll.all_reduce_sum(&mut big);
    let got = big.to_device(Device::Cpu); // waits for the device
    let large_ms = t0.elapsed().as_secs_f64() * 1e3;
    let large_ok = res.is_ok() && got.equal(&(pattern * expected).to_device(Device::Cpu));
    CollectiveResult {
        backend: coll.name().into(),
        world_size: world.world_size,
        sum: Some(sum),
        expected,
        large_ok,
        elements,
        large_ms,
        ok: sum == expected && large_ok,
        error: res.err().map(|e| e.to_string()),
    }
}

#[allow(unused_variables)]
pub(super) fn run_collectives(
    world: WorldInfo,
    which: CollectiveCheck,
    gpu: Option<Device>,
    elements: usize,
    report: &mut NodeReport,
) {
    if which == CollectiveCheck::None {
        return;
    }
    #[cfg(feature = "mpi")]
    {
        if which == CollectiveCheck::Nccl && world.world_size == 1 {
            // The GPU machine: NCCL alone (its unique id needs no MPI at one rank).
            report.nccl = Some(nccl_check(None, world, gpu, elements));
            return;
        }
        let mpi = match crate::dist::mpi_backend::Mpi::init(world) {
            Ok(m) => m,
            Err(e) => {
                report.mpi = Some(failed("mpi", world, e.to_string()));
                return;
            }
        };
        if which != CollectiveCheck::Nccl {
            report.mpi = Some(check_all_reduce(&mpi, Device::Cpu, elements));
        }
        if which != CollectiveCheck::Mpi {
            report.nccl = Some(nccl_check(Some(mpi), world, gpu, elements));
        }
    }
    #[cfg(not(feature = "mpi"))]
    {
        report.mpi = Some(failed("mpi", world, "this build has no MPI (build with the `mpi` feature)".into()));
    }
}

#[cfg(feature = "mpi")]
#[allow(unused_variables)]
pub(super) fn nccl_check(
    mpi: Option<crate::dist::mpi_backend::Mpi>,
    world: WorldInfo,
    gpu: Option<Device>,
    elements: usize,
) -> CollectiveResult {
    let Some(Device::Cuda(ordinal)) = gpu else { return failed("nccl", world, NO_GPU.into()) };
    #[cfg(feature = "nccl")]
    {
        use crate::dist::nccl_backend::Nccl;
        let init = match mpi {
            Some(m) => Nccl::init(m, ordinal),
            None => Nccl::init_alone(ordinal),
        };
        match init {
            Ok(n) => check_all_reduce(&n, Device::Cuda(ordinal), elements),
            Err(e) => failed("nccl", world, e.to_string()),
        }
    }
    #[cfg(not(feature = "nccl"))]
    {
        failed("nccl", world, "this build has no NCCL (build with the `nccl` feature)".into())
    }
}
