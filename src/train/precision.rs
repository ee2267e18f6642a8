//! Numeric precision of training: fp32, TF32 matrix products (fp32 storage, 10-bit
//! mantissa products on tensor cores) or bf16 autocast (the transformer's matrix products
//! in bfloat16, master weights, optimiser state and the loss in fp32).
//!
//! tch 0.24 exposes neither the TF32 switch nor the autocast dtype (its `autocast` is
//! CUDA-only and fp16), so this module calls the three libtorch functions it needs
//! directly. They are exported C++ functions whose arguments are plain integers and bools
//! (`c10::DeviceType` and `c10::ScalarType` are `enum class : int8_t`), so their symbols
//! can be declared here; they are the functions PyTorch's own
//! `torch.backends.cuda.matmul.allow_tf32` and `torch.autocast(device, dtype)` call.

use tch::Device;

pub use crate::config::Precision;

// c10::DeviceType and c10::ScalarType values (c10/core/DeviceType.h, ScalarType.h).
const DEVICE_CPU: i8 = 0;
const DEVICE_CUDA: i8 = 1;
const SCALAR_BFLOAT16: i8 = 15;

#[link(name = "torch_cpu")]
unsafe extern "C" {
    #[link_name = "_ZN2at13globalContextEv"]
    fn at_global_context() -> *mut std::ffi::c_void;
    #[link_name = "_ZN2at7Context18setAllowTF32CuBLASEb"]
    fn at_context_set_allow_tf32_cublas(ctx: *mut std::ffi::c_void, allow: bool);
    #[link_name = "_ZNK2at7Context15allowTF32CuBLASEv"]
    fn at_context_allow_tf32_cublas(ctx: *const std::ffi::c_void) -> bool;
    #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
    fn at_is_autocast_enabled(device: i8) -> bool;
    #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
    fn at_set_autocast_enabled(device: i8, enabled: bool);
    #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
    fn at_set_autocast_dtype(device: i8, dtype: i8);
    #[link_name = "_ZN2at8autocast17increment_nestingEv"]
    fn at_autocast_increment_nesting() -> i64;
    #[link_name = "_ZN2at8autocast17decrement_nestingEv"]
    fn at_autocast_decrement_nesting() -> i64;
    #[link_name = "_ZN2at8autocast11clear_cacheEv"]
    fn at_autocast_clear_cache();
}

/// Turns TF32 matrix products on or off for the whole process (cuBLAS; a no-op for CPU
/// kernels). `torch.backends.cuda.matmul.allow_tf32 = allow`.
pub fn set_tf32(allow: bool) {
    // SAFETY: globalContext() returns the process's static Context; the setter takes a
    // bool and does not throw.
    unsafe { at_context_set_allow_tf32_cublas(at_global_context(), allow) }
}

/// Whether TF32 matrix products are on (for env.json and the bench header).
pub fn tf32_enabled() -> bool {
    // SAFETY: as above; a const getter.
    unsafe { at_context_allow_tf32_cublas(at_global_context()) }
}

/// Sets the process-wide switches a precision needs (TF32 on or off); autocast is scoped,
/// see [`with_autocast`].
pub fn apply(precision: Precision) {
    set_tf32(precision == Precision::Tf32);
}

/// Runs `f` under bf16 autocast on `device`'s type when `precision` is bf16 (like
/// `with torch.autocast(device.type, dtype=torch.bfloat16):`), else runs it as is.
/// Autocast state is thread-local in libtorch, so this guards only this thread.
pub fn with_autocast<T>(precision: Precision, device: Device, f: impl FnOnce() -> T) -> T {
    if precision != Precision::Bf16 {
        return f();
    }
    let dev = if device.is_cuda() { DEVICE_CUDA } else { DEVICE_CPU };
    struct Restore {
        dev: i8,
        was: bool,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: plain setters on thread-local autocast state.
            unsafe {
                if at_autocast_decrement_nesting() == 0 {
                    at_autocast_clear_cache();
                }
                at_set_autocast_enabled(self.dev, self.was);
            }
        }
    }
    // SAFETY: plain getters/setters on thread-local autocast state.
    let _restore = unsafe {
        let was = at_is_autocast_enabled(dev);
        at_set_autocast_dtype(dev, SCALAR_BFLOAT16);
        at_set_autocast_enabled(dev, true);
        at_autocast_increment_nesting();
        Restore { dev, was }
    };
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn tf32_switch_round_trips() {
        set_tf32(true);
        assert!(tf32_enabled());
        set_tf32(false);
        assert!(!tf32_enabled());
    }

    /// Under bf16 autocast a matrix product comes out in bf16 and its inputs stay fp32;
    /// outside it (and after it) the same product is fp32 again.
    #[test]
    fn autocast_makes_matmul_bf16_only_inside() {
        let a = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        let inside = with_autocast(Precision::Bf16, Device::Cpu, || a.matmul(&b));
        assert_eq!(inside.kind(), Kind::BFloat16);
        assert_eq!(a.kind(), Kind::Float);
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
        let fp32 = with_autocast(Precision::Fp32, Device::Cpu, || a.matmul(&b));
        assert_eq!(fp32.kind(), Kind::Float);
        // bf16 keeps 8 bits of mantissa: close to the fp32 product, not equal.
        let diff = (inside.to_kind(Kind::Float) - &fp32).abs().max().double_value(&[]);
        let scale = fp32.abs().max().double_value(&[]);
        assert!(diff > 0.0 && diff < 0.05 * scale, "diff {diff} scale {scale}");
    }

    #[test]
    fn default_precision_follows_the_device() {
        assert_eq!(Precision::resolve(None, Device::Cpu), Precision::Fp32);
        assert_eq!(Precision::resolve(None, Device::Cuda(0)), Precision::Tf32);
        assert_eq!(Precision::resolve(Some(Precision::Bf16), Device::Cpu), Precision::Bf16);
    }
}
