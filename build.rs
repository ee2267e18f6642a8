// 1. Bake libtorch's lib/ into the rpath of every binary (and test binary) so `ras` runs
//    without LD_LIBRARY_PATH; tch itself only links.
// 2. Record the git commit and libtorch version for each run's env.json.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    // In a git worktree .git is a file: watching a missing path would rerun every build.
    if std::path::Path::new(".git/HEAD").is_file() {
        println!("cargo:rerun-if-changed=.git/HEAD");
    }
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
    println!("cargo:rustc-env=RAS_GIT_COMMIT={commit}");
}
