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
