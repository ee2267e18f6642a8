//! NCCL collectives (cudarc, loaded dynamically) on CUDA tensors, in place in device
//! memory. The NCCL unique id travels from rank 0 over MPI; MPI also serves barriers.
//! Kernels are queued on the legacy default stream, which is libtorch's default stream,
//! so they are ordered after the backward pass that produced the gradients.
//!
//! No GPU on the CI machine: this compiles there (`--features nccl`) and is exercised by
//! cluster/gpu-check.sh on a GPU machine.

use super::mpi_backend::Mpi;
use super::{Collective, DistError, WorldInfo};
use cudarc::nccl::{result, sys};
use tch::{Device, Kind, Tensor};

pub struct Nccl {
    /// None: one rank alone (`init_alone`), with no MPI to carry the unique id.
    mpi: Option<Mpi>,
    comm: sys::ncclComm_t,
    info: WorldInfo,
    device: Device,
}

fn err(e: impl std::fmt::Debug) -> DistError {
    DistError::Nccl(format!("{e:?}"))
}

impl Nccl {
    pub fn init(mpi: Mpi, ordinal: usize) -> Result<Self, DistError> {
        let info = mpi.world();
        Self::init_with(Some(mpi), info, ordinal)
    }

    /// One rank, without MPI: the same NCCL calls (unique id, communicator, collectives)
    /// on one GPU. `ras doctor-node --collective nccl` on a machine with no MPI runtime.
    pub fn init_alone(ordinal: usize) -> Result<Self, DistError> {
        Self::init_with(None, WorldInfo::SINGLE, ordinal)
    }

    fn init_with(mpi: Option<Mpi>, info: WorldInfo, ordinal: usize) -> Result<Self, DistError> {
        // Make the rank's device current for this thread (NCCL binds the communicator
        // to the current device).
        let _ctx = cudarc::driver::CudaContext::new(ordinal).map_err(err)?;
        let mut id = if info.rank == 0 {
            result::get_uniqueid().map_err(err)?
        } else {
            sys::ncclUniqueId { internal: [0; 128] }
        };
        {
            // SAFETY: ncclUniqueId is 128 plain bytes.
            let bytes = unsafe { std::slice::from_raw_parts_mut(id.internal.as_mut_ptr() as *mut u8, 128) };
            if let Some(mpi) = &mpi {
                mpi.broadcast_bytes(bytes, 0)?;
            }
        }
        let mut comm: sys::ncclComm_t = std::ptr::null_mut();
        // SAFETY: comm is a valid out-pointer; id is identical on every rank.
        unsafe { result::comm_init_rank(&mut comm, info.world_size as i32, id, info.rank as i32) }.map_err(err)?;
        Ok(Self { mpi, comm, info, device: Device::Cuda(ordinal) })
    }

    fn check(&self, t: &Tensor) -> Result<(), DistError> {
        if t.device() != self.device || t.kind() != Kind::Float || !t.is_contiguous() {
            return Err(DistError::Nccl(format!(
                "expected a contiguous float32 tensor on {:?}, got {:?} {:?}",
                self.device,
                t.kind(),
                t.device()
            )));
        }
        Ok(())
    }
}

impl Collective for Nccl {
    fn world(&self) -> WorldInfo {
        self.info
    }
    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), DistError> {
        self.check(t)?;
        let p = t.data_ptr();
        // SAFETY: in-place all-reduce over numel floats of a live contiguous CUDA tensor.
        unsafe {
            result::all_reduce(
                p,
                p,
                t.numel(),
                sys::ncclDataType_t::ncclFloat32,
                sys::ncclRedOp_t::ncclSum,
                self.comm,
                std::ptr::null_mut(),
            )
        }
        .map_err(err)?;
        Ok(())
    }
    fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), DistError> {
        self.check(t)?;
        let p = t.data_ptr();
        // SAFETY: as above.
        unsafe {
            result::broadcast(
                p,
                p,
                t.numel(),
                sys::ncclDataType_t::ncclFloat32,
                root as i32,
                self.comm,
                std::ptr::null_mut(),
            )
        }
        .map_err(err)?;
        Ok(())
    }
    fn gather_to_root(&self, t: &Tensor) -> Result<Option<Tensor>, DistError> {
        let t = t.to_device(self.device).to_kind(Kind::Float).contiguous();
        let mut shape = t.size();
        shape[0] *= self.info.world_size as i64;
        let out = Tensor::zeros(shape.as_slice(), (Kind::Float, self.device));
        // SAFETY: out holds world_size * numel floats.
        unsafe {
            result::all_gather(
                t.data_ptr(),
                out.data_ptr(),
                t.numel(),
                sys::ncclDataType_t::ncclFloat32,
                self.comm,
                std::ptr::null_mut(),
            )
        }
        .map_err(err)?;
        Ok((self.info.rank == 0).then_some(out))
    }
    fn broadcast_bytes(&self, bytes: &mut [u8], root: usize) -> Result<(), DistError> {
        self.mpi.as_ref().map_or(Ok(()), |m| m.broadcast_bytes(bytes, root))
    }
    fn barrier(&self) -> Result<(), DistError> {
        self.mpi.as_ref().map_or(Ok(()), |m| m.barrier())
    }
    fn abort(&self, code: i32) -> ! {
        // SAFETY: the communicator is valid; abort does not wait for peers.
        let _ = unsafe { result::comm_abort(self.comm) };
        match &self.mpi {
            Some(m) => m.abort(code),
            None => std::process::exit(code),
        }
    }
    fn name(&self) -> &'static str {
        "nccl"
    }
}
