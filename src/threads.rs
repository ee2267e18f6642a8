//! libtorch's CPU threads, fixed once per process before the first kernel.
//!
//! libtorch sizes its OpenMP team from the machine (or `OMP_NUM_THREADS`), but unless
//! `set_num_threads` is called it leaves MKL's dynamic threading on (PyTorch's
//! `init_num_threads` sets only the OpenMP team; its `set_num_threads` also calls
//! `mkl_set_dynamic(false)`). With dynamic threading MKL may run a matrix product on
//! fewer threads than asked, which changes its summation order; oneMKL's conditions for
//! run-to-run reproducibility are a fixed thread count with MKL_DYNAMIC and OMP_DYNAMIC
//! false. Runs that must repeat bit for bit (a resumed run against an undisturbed one)
//! need that. Without it, on this project's 2-core machines with 3 to 5 runs at once, 2
//! of 67 identical 120-epoch runs diverged from the others within their first 10 epochs
//! (final metrics equal to 7 digits only), and one CI run's resumed run did. MKL's
//! dynamic threading is the one source of timing-dependent arithmetic libtorch leaves
//! open here; the rare event itself was not caught in the act.
use std::sync::Once;

static PIN: Once = Once::new();

/// Fixes the intra-op thread count at its current value (`OMP_NUM_THREADS`, else the
/// machine's cores) with MKL's dynamic threading off. Idempotent; cheap after the first call.
pub fn pin() {
    PIN.call_once(|| {
        let n = tch::get_num_threads().max(1);
        tch::set_num_threads(n);
    });
}
