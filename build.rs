// 1. Bake libtorch's lib/ into the rpath of every binary (and test binary) so `ras` runs
//    without LD_LIBRARY_PATH; tch itself only links.
// 2. Record the git commit and libtorch version for each run's env.json.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    // The commit must follow new commits, not only checkouts: watch HEAD, the branch ref it
    // points to and packed-refs. In a git worktree .git is a file: watching a missing path
    // would rerun every build, so only existing files are watched.
    let watch = |p: &str| {
        if std::path::Path::new(p).is_file() {
            println!("cargo:rerun-if-changed={p}");
        }
    };
    watch(".git/HEAD");
    watch(".git/packed-refs");
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(r) = head.strip_prefix("ref: ") {
            watch(&format!(".git/{}", r.trim()));
        }
    }
    // Sources edited since the commit make it "-dirty" (rerun when they change).
    println!("cargo:rerun-if-changed=src");
    let mut torch_version = "unknown".to_string();
    if let Ok(dir) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
        if let Ok(v) = std::fs::read_to_string(format!("{dir}/build-version")) {
            torch_version = v.trim().to_string();
        }
    }
    println!("cargo:rustc-env=RAS_LIBTORCH_VERSION={torch_version}");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        link_cuda_binary();
    }
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no", "--", "src", "build.rs", "Cargo.toml", "Cargo.lock"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    println!("cargo:rustc-env=RAS_GIT_COMMIT={commit}{}", if dirty { "-dirty" } else { "" });
}

/// Feature `cuda`: link the `ras-cuda` binary against libtorch_cuda.so, and nothing else
/// (RUSTFLAGS would reach every build script and proc-macro, which cannot find it). Without
/// --no-as-needed the linker drops the library (no symbol of it is referenced) and libtorch
/// silently has no CUDA. The CUDA libraries libtorch_cuda.so itself needs exist only on a
/// GPU machine (here, at most the stand-ins of .venv-ref): allowed unresolved at link time.
fn link_cuda_binary() {
    println!("cargo:rerun-if-env-changed=RAS_TORCH_CUDA_LIB");
    let dir = match std::env::var("RAS_TORCH_CUDA_LIB") {
        Ok(d) => std::path::PathBuf::from(d),
        Err(_) => venv_torch_lib().unwrap_or_else(|| {
            panic!(
                "feature `cuda` links ras-cuda against libtorch_cuda.so, and none was found: run `make setup-python` \
                 (the torch 2.11.0 wheel it installs into .venv-ref holds it) or set RAS_TORCH_CUDA_LIB to a \
                 torch/lib folder of torch 2.11.0"
            )
        }),
    };
    if !dir.join("libtorch_cuda.so").is_file() {
        panic!("RAS_TORCH_CUDA_LIB={}: no libtorch_cuda.so there (a torch 2.11.0 wheel's torch/lib is)", dir.display());
    }
    println!("cargo:rerun-if-changed={}", dir.join("libtorch_cuda.so").display());
    for arg in [
        format!("-L{}", dir.display()),
        "-Wl,--no-as-needed".into(),
        "-ltorch_cuda".into(),
        "-Wl,--as-needed".into(),
        "-Wl,--allow-shlib-undefined".into(),
    ] {
        println!("cargo:rustc-link-arg-bin=ras-cuda={arg}");
    }
}

/// .venv-ref/lib/python3.*/site-packages/torch/lib, made by `make setup-python`.
fn venv_torch_lib() -> Option<std::path::PathBuf> {
    let lib = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").ok()?).join(".venv-ref/lib");
    std::fs::read_dir(lib).ok()?.flatten().map(|e| e.path().join("site-packages/torch/lib")).find(|p| p.is_dir())
}
