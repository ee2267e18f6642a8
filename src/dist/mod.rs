//! Data parallelism: who am I (rank, local rank, world size, from the launcher's
//! environment), how ranks talk (`Collective`: single process, MPI, NCCL), and how data
//! is split between them (`shard`, torch's DistributedSampler).
//!
//! ras never implements a collective itself: MPI (OpenMPI through the `mpi` crate) on
//! CPU tensors, NCCL (through `cudarc`) on CUDA tensors.

#[cfg(feature = "mpi")]
pub mod mpi_backend;
#[cfg(feature = "nccl")]
pub mod nccl_backend;

use crate::config::DeviceSpec;
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("launcher environment: {0}")]
    Env(String),
    #[error("world size {0} > 1 but this build has no MPI (build with the `mpi` feature)")]
    NoMpi(usize),
    #[error("MPI: {0}")]
    Mpi(String),
    #[error("NCCL: {0}")]
    Nccl(String),
    #[error("{0}")]
    Device(String),
}

/// This process's place in the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorldInfo {
    pub rank: usize,
    pub local_rank: usize,
    pub world_size: usize,
}

impl WorldInfo {
    pub const SINGLE: WorldInfo = WorldInfo { rank: 0, local_rank: 0, world_size: 1 };

    /// Reads the launcher's variables, in order: OpenMPI (`OMPI_COMM_WORLD_*`), Slurm
    /// (`SLURM_PROCID`, `SLURM_LOCALID`, `SLURM_NTASKS`), torchrun (`RANK`, `LOCAL_RANK`,
    /// `WORLD_SIZE`); none of them = a single process.
    pub fn from_env() -> Result<Self, DistError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, DistError> {
        let sets = [
            ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_SIZE"),
            ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS"),
            ("RANK", "LOCAL_RANK", "WORLD_SIZE"),
        ];
        for (r, l, w) in sets {
            if let (Some(rank), Some(size)) = (get(r), get(w)) {
                let num = |name: &str, v: &str| {
                    v.trim().parse::<usize>().map_err(|_| DistError::Env(format!("{name}={v:?} is not a number")))
                };
                let rank = num(r, &rank)?;
                let world_size = num(w, &size)?;
                let local_rank = match get(l) {
                    Some(v) => num(l, &v)?,
                    None => 0,
                };
                if world_size == 0 || rank >= world_size {
                    return Err(DistError::Env(format!("{r}={rank} is not below {w}={world_size}")));
                }
                return Ok(Self { rank, local_rank, world_size });
            }
        }
        Ok(Self::SINGLE)
    }

    /// The device this rank computes on. With several ranks, "auto" and "cuda" mean the
    /// rank's own GPU: CUDA device `local_rank` modulo the visible devices
    /// (CUDA_VISIBLE_DEVICES is honoured by the driver), else the CPU. Alone, "auto" is
    /// CUDA 0 when present; "cuda" / "cuda:N" insist on a GPU and say so when none is there.
    pub fn device(&self, requested: DeviceSpec) -> Result<Device, DistError> {
        let count = if tch::Cuda::is_available() { tch::Cuda::device_count().max(0) as usize } else { 0 };
        Ok(match requested {
            DeviceSpec::Cpu => Device::Cpu,
            DeviceSpec::Auto | DeviceSpec::Cuda(None) if self.world_size > 1 => {
                if count > 0 {
                    Device::Cuda(self.local_rank % count)
                } else {
                    Device::Cpu
                }
            }
            DeviceSpec::Auto => Device::cuda_if_available(),
            DeviceSpec::Cuda(n) => {
                let n = n.unwrap_or(0);
                if count == 0 {
                    return Err(DistError::Device(format!(
                        "train.device = \"{requested}\" but CUDA is not available on this machine"
                    )));
                }
                if n >= count {
                    return Err(DistError::Device(format!(
                        "train.device = \"{requested}\" but only {count} CUDA devices are visible"
                    )));
                }
                Device::Cuda(n)
            }
        })
    }
}

/// How ranks exchange tensors. Every call is collective: all ranks make it, in order.
pub trait Collective {
    fn world(&self) -> WorldInfo;
    /// Sums `t` over all ranks, in place (contiguous float32 tensor).
    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), DistError>;
    /// Copies `t` of rank `root` into `t` of every rank.
    fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), DistError>;
    /// Concatenates (along dim 0) every rank's equally shaped `t` on rank 0, in rank order.
    fn gather_to_root(&self, t: &Tensor) -> Result<Option<Tensor>, DistError>;
    /// Broadcasts raw bytes (e.g. an NCCL unique id) from rank `root`.
    fn broadcast_bytes(&self, bytes: &mut [u8], root: usize) -> Result<(), DistError>;
    fn barrier(&self) -> Result<(), DistError>;
    /// Ends every rank of the job now (a failed rank must not leave the others hanging).
    fn abort(&self, code: i32) -> !;
    fn name(&self) -> &'static str;
}

/// One process: every collective is the identity.
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn world(&self) -> WorldInfo {
        WorldInfo::SINGLE
    }
    fn all_reduce_sum(&self, _t: &mut Tensor) -> Result<(), DistError> {
        Ok(())
    }
    fn broadcast(&self, _t: &mut Tensor, _root: usize) -> Result<(), DistError> {
        Ok(())
    }
    fn gather_to_root(&self, t: &Tensor) -> Result<Option<Tensor>, DistError> {
        Ok(Some(t.shallow_clone()))
    }
    fn broadcast_bytes(&self, _bytes: &mut [u8], _root: usize) -> Result<(), DistError> {
        Ok(())
    }
    fn barrier(&self) -> Result<(), DistError> {
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
    fn name(&self) -> &'static str {
        "single"
    }
}

/// The collective for this process: single when alone; MPI on CPU; NCCL on CUDA (its
/// unique id travels over MPI). Must be created once, before any other MPI use.
/// `RAS_COLLECTIVE=mpi|nccl` forces that backend even for one process (smoke tests of the
/// real code path, e.g. NCCL at world size 1 on a single GPU).
pub fn connect(world: WorldInfo, device: Device) -> Result<Box<dyn Collective>, DistError> {
    let forced = std::env::var("RAS_COLLECTIVE").ok().filter(|v| v == "mpi" || v == "nccl");
    if world.world_size == 1 && forced.is_none() {
        return Ok(Box::new(SingleProcess));
    }
    #[cfg(feature = "mpi")]
    {
        let mpi = mpi_backend::Mpi::init(world)?;
        #[cfg(feature = "nccl")]
        if let Device::Cuda(ordinal) = device {
            return Ok(Box::new(nccl_backend::Nccl::init(mpi, ordinal)?));
        }
        let _ = device;
        Ok(Box::new(mpi))
    }
    #[cfg(not(feature = "mpi"))]
    {
        let _ = device;
        Err(DistError::NoMpi(world.world_size))
    }
}

/// DistributedSampler: the epoch's order padded (by repeating from its start) to a
/// multiple of the world size, then every `world`-th index from `rank`. Every rank gets
/// the same number of samples; the union of the ranks' k-th batches of size B is the
/// k-th batch of size B*world of the unsharded order.
pub fn shard(order: &[usize], world: WorldInfo) -> Vec<usize> {
    let w = world.world_size;
    let total = order.len().div_ceil(w) * w;
    (0..total).skip(world.rank).step_by(w).map(|i| order[i % order.len()]).collect()
}

/// Where this rank runs: its Slurm node (SLURMD_NODENAME: several slurmd "nodes" may
/// share one host, so the hostname alone does not tell them apart), host, and the GPUs
/// it was given.
pub fn placement_of_this_rank(world: WorldInfo) -> serde_json::Value {
    let var = |k: &str| std::env::var(k).ok();
    let host = crate::hostname();
    serde_json::json!({
        "rank": world.rank,
        "local_rank": world.local_rank,
        "node": var("SLURMD_NODENAME").unwrap_or_else(|| host.clone()),
        "host": host,
        "slurm_job_id": var("SLURM_JOB_ID"),
        "cuda_visible_devices": var("CUDA_VISIBLE_DEVICES"),
    })
}

/// Longest text `gather_text` carries per rank.
pub const GATHER_TEXT_MAX: usize = 1024;

/// Every rank's `text` on rank 0, in rank order (None on the other ranks). Collective.
/// The bytes travel as float32 values (exact for 0..255) over `gather_to_root`, so every
/// backend carries them without a byte-typed collective of its own.
pub fn gather_text(coll: &dyn Collective, text: &str, device: Device) -> Result<Option<Vec<String>>, DistError> {
    let bytes = &text.as_bytes()[..text.len().min(GATHER_TEXT_MAX)];
    let mut row = vec![0f32; GATHER_TEXT_MAX + 1];
    row[0] = bytes.len() as f32;
    for (slot, b) in row[1..].iter_mut().zip(bytes) {
        *slot = *b as f32;
    }
    let t = Tensor::from_slice(&row).view([1, -1]).to_device(device);
    let Some(all) = coll.gather_to_root(&t)? else { return Ok(None) };
    let all: Vec<Vec<f32>> =
        Vec::<Vec<f32>>::try_from(all.to_device(Device::Cpu)).map_err(|e| DistError::Mpi(e.to_string()))?;
    Ok(Some(
        all.iter()
            .map(|r| {
                let n = r[0] as usize;
                String::from_utf8_lossy(&r[1..1 + n].iter().map(|&v| v as u8).collect::<Vec<u8>>()).into_owned()
            })
            .collect(),
    ))
}

/// Flattens the tensors into one contiguous float32 bucket (plus `extra` trailing slots).
pub fn flatten(tensors: &[Tensor], extra: usize, device: Device) -> Tensor {
    let mut parts: Vec<Tensor> = tensors.iter().map(|t| t.to_kind(Kind::Float).reshape([-1])).collect();
    if extra > 0 {
        parts.push(Tensor::zeros([extra as i64], (Kind::Float, device)));
    }
    Tensor::cat(&parts, 0)
}

/// Copies a bucket made by `flatten` back into the tensors.
pub fn unflatten_into(bucket: &Tensor, tensors: &mut [Tensor]) {
    let mut off = 0i64;
    tch::no_grad(|| {
        for t in tensors.iter_mut() {
            let n = t.numel() as i64;
            t.copy_(&bucket.narrow(0, off, n).view(t.size().as_slice()));
            off += n;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn world_from_each_launcher() {
        let ompi =
            vars(&[("OMPI_COMM_WORLD_RANK", "3"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "4")]);
        assert_eq!(WorldInfo::from_vars(ompi).unwrap(), WorldInfo { rank: 3, local_rank: 1, world_size: 4 });
        let slurm = vars(&[("SLURM_PROCID", "1"), ("SLURM_LOCALID", "0"), ("SLURM_NTASKS", "2")]);
        assert_eq!(WorldInfo::from_vars(slurm).unwrap(), WorldInfo { rank: 1, local_rank: 0, world_size: 2 });
        let torchrun = vars(&[("RANK", "5"), ("LOCAL_RANK", "1"), ("WORLD_SIZE", "8")]);
        assert_eq!(WorldInfo::from_vars(torchrun).unwrap(), WorldInfo { rank: 5, local_rank: 1, world_size: 8 });
        // OpenMPI wins over Slurm when both are set (mpirun inside an allocation).
        let both = vars(&[
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
        ]);
        assert_eq!(WorldInfo::from_vars(both).unwrap().world_size, 2);
        assert_eq!(WorldInfo::from_vars(vars(&[])).unwrap(), WorldInfo::SINGLE);
        assert!(WorldInfo::from_vars(vars(&[("RANK", "2"), ("WORLD_SIZE", "2")])).is_err());
        assert!(WorldInfo::from_vars(vars(&[("RANK", "x"), ("WORLD_SIZE", "2")])).is_err());
    }

    #[test]
    fn shards_are_equal_padded_and_interleaved() {
        let order: Vec<usize> = vec![4, 0, 3, 1, 2];
        let w = |rank| WorldInfo { rank, local_rank: rank, world_size: 2 };
        assert_eq!(shard(&order, w(0)), vec![4, 3, 2]);
        assert_eq!(shard(&order, w(1)), vec![0, 1, 4]); // padded with the first index
        assert_eq!(shard(&order, WorldInfo::SINGLE), order);
        // Union of the k-th batches (B = 2) == k-th batch of size 4 of the full order.
        let order: Vec<usize> = (0..8).rev().collect();
        let (a, b) = (shard(&order, w(0)), shard(&order, w(1)));
        let mut union: Vec<usize> = a[..2].iter().chain(&b[..2]).copied().collect();
        union.sort();
        let mut first: Vec<usize> = order[..4].to_vec();
        first.sort();
        assert_eq!(union, first);
    }

    #[test]
    fn gather_text_round_trips_on_one_process() {
        let got = gather_text(&SingleProcess, "{\"node\":\"n1\"} é", Device::Cpu).unwrap().unwrap();
        assert_eq!(got, vec!["{\"node\":\"n1\"} é".to_string()]);
    }

    #[test]
    fn flatten_round_trip() {
        let a = Tensor::from_slice(&[1f32, 2., 3., 4.]).view([2, 2]);
        let b = Tensor::from_slice(&[5f32]);
        let bucket = flatten(&[a.shallow_clone(), b.shallow_clone()], 1, Device::Cpu);
        assert_eq!(Vec::<f32>::try_from(&bucket).unwrap(), vec![1., 2., 3., 4., 5., 0.]);
        let mut outs =
            vec![Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)), Tensor::zeros([1], (Kind::Float, Device::Cpu))];
        unflatten_into(&(bucket * 2.0), &mut outs);
        assert_eq!(Vec::<f32>::try_from(outs[0].view(-1)).unwrap(), vec![2., 4., 6., 8.]);
        assert_eq!(Vec::<f32>::try_from(&outs[1]).unwrap(), vec![10.]);
    }
}
