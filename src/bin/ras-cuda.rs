//! `ras-cuda`: the same program as `ras` (src/main.rs), built with feature `cuda` and linked
//! against libtorch_cuda (build.rs adds the link flags to this binary only), so that
//! libtorch's CUDA backend is loaded at start. Carried to GPU machines as their `ras`.
#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
