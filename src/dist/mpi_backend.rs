//! MPI collectives (OpenMPI via the `mpi` crate) on CPU tensors.

use super::{Collective, DistError, WorldInfo};
use mpi::collective::SystemOperation;
use mpi::topology::Communicator;
use mpi::traits::*;
use tch::{Device, Kind, Tensor};

pub struct Mpi {
    // Dropping the universe finalises MPI: it lives as long as the collective.
    _universe: mpi::environment::Universe,
    world: mpi::topology::SimpleCommunicator,
    info: WorldInfo,
}

impl Mpi {
    pub fn init(expected: WorldInfo) -> Result<Self, DistError> {
        let universe = mpi::initialize().ok_or_else(|| DistError::Mpi("MPI was already initialised".into()))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        if rank != expected.rank || size != expected.world_size {
            return Err(DistError::Mpi(format!(
                "MPI says rank {rank} of {size} but the launcher environment says rank {} of {} \
                 (under Slurm use `srun --mpi=pmix`)",
                expected.rank, expected.world_size
            )));
        }
        Ok(Self { _universe: universe, world, info: expected })
    }
}

fn host_f32(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view(-1)).expect("float32 tensor")
}

impl Collective for Mpi {
    fn world(&self) -> WorldInfo {
        self.info
    }
    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), DistError> {
        let send = host_f32(t);
        let mut recv = vec![0f32; send.len()];
        self.world.all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum());
        tch::no_grad(|| t.copy_(&Tensor::from_slice(&recv).view(t.size().as_slice())));
        Ok(())
    }
    fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), DistError> {
        let mut buf = host_f32(t);
        self.world.process_at_rank(root as i32).broadcast_into(&mut buf[..]);
        tch::no_grad(|| t.copy_(&Tensor::from_slice(&buf).view(t.size().as_slice())));
        Ok(())
    }
    fn gather_to_root(&self, t: &Tensor) -> Result<Option<Tensor>, DistError> {
        let send = host_f32(t);
        let root = self.world.process_at_rank(0);
        if self.info.rank == 0 {
            let mut recv = vec![0f32; send.len() * self.info.world_size];
            root.gather_into_root(&send[..], &mut recv[..]);
            let mut shape = t.size();
            shape[0] *= self.info.world_size as i64;
            Ok(Some(Tensor::from_slice(&recv).view(shape.as_slice())))
        } else {
            root.gather_into(&send[..]);
            Ok(None)
        }
    }
    fn broadcast_bytes(&self, bytes: &mut [u8], root: usize) -> Result<(), DistError> {
        self.world.process_at_rank(root as i32).broadcast_into(bytes);
        Ok(())
    }
    fn barrier(&self) -> Result<(), DistError> {
        self.world.barrier();
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
    fn name(&self) -> &'static str {
        "mpi"
    }
}
