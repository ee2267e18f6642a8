//! Helpers shared by the integration tests: small synthetic datasets and configs.
#![allow(dead_code)]

pub mod http;
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A synthetic dataset in `dir/data` (MVTec layout), small enough for CPU tests.
pub fn synth_dataset(dir: &Path, classes: usize, seed: u64, image_size: u32, train: usize) -> PathBuf {
    let root = dir.join("data");
    let spec = ras::data::synth::SynthSpec {
        classes,
        train_per_class: train,
        test_good_per_class: 6,
        test_defect_per_kind: 2,
        image_size,
        seed,
    };
    ras::data::synth::generate(&root, &spec, &mut |_, _| {}).expect("synthetic dataset");
    root
}

/// A small run config (EfficientNet-B0, random init, 224 px -> 14x14 tokens, small RAS).
pub fn small_config(dir: &Path, root: &Path, name: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"name = "{name}"
seed = 7
store = "file://{store}"
[dataset]
root = "{root}"
[backbone]
arch = "efficientnet-b0"
image_size = 224
batch_size = 16
[model]
hidden_dim = 64
encoder_layers = 1
decoder_layers = 2
heads = 4
ffn_dim = 128
[train]
epochs = 40
batch_size = 16
lr = 1e-3
jitter_scale = 20.0
eval_every = 20
device = "cpu"
[eval]
batch_size = 16
{extra}"#,
        store = dir.join("store").display(),
        root = root.display()
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// `ras args` in `cwd`, with no RAS_STORE from the caller's environment (tests name their
/// stores, or mean the built-in default).
pub fn ras(args: &[&str], cwd: &Path) -> Output {
    ras_env(args, cwd, &[])
}

/// `ras args` in `cwd` with these environment variables set.
pub fn ras_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ras"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .env_remove("RAS_STORE")
        .envs(env.iter().copied())
        .output()
        .expect("ras runs")
}

/// `ras args` in `cwd`, which must succeed (else a panic with its output): its stdout.
pub fn ok(args: &[&str], cwd: &Path) -> String {
    let out = ras(args, cwd);
    assert!(
        out.status.success(),
        "ras {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's stdout then stderr, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The PyTorch reference environment's python (`make setup-python`); a test that needs it
/// fails, saying so, when it is missing: it never skips.
pub fn python() -> PathBuf {
    let py = repo().join(".venv-ref/bin/python");
    assert!(
        py.exists(),
        "the PyTorch reference environment {} is missing: run `make setup-python` first",
        py.display()
    );
    py
}

/// Every file under `dir`, recursively (into `out`).
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let path = e.path();
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every status.json under the store, as text.
pub fn statuses(store: &Path) -> Vec<String> {
    let runs = store.join("runs");
    let Ok(rd) = std::fs::read_dir(&runs) else { return vec![] };
    rd.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("status.json")).ok()).collect()
}

// --- sweeps and Slurm (tests/coordinator.rs, tests/multinode.rs) ---

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tiny synthetic dataset at `dir/<rel>` (2 classes, 8 train images each, 64 px files).
pub fn dataset_at(dir: &Path, rel: &str) -> PathBuf {
    let tmp = dir.join(format!("{}.gen", rel.replace('/', "_")));
    let gen = synth_dataset(&tmp, 2, 4242, 64, 8);
    let dst = dir.join(rel);
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::rename(gen, &dst).unwrap();
    dst
}

pub fn sweep_cmd(cwd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ras"));
    c.args(args).current_dir(cwd).env("RUST_LOG", "warn").env_remove("RAS_STORE");
    c
}

pub fn run_ok(cwd: &Path, args: &[&str]) -> Output {
    let out = sweep_cmd(cwd, args).output().unwrap();
    assert!(
        out.status.success(),
        "ras {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A small sweep file over configs/demo.toml (paths absolute: tests run in temp dirs).
pub fn small_sweep(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let text = format!(
        "name = \"{name}\"\nbase = \"{base}\"\nmax_retries = 1\n{extra}\n[set]\n\"train.epochs\" = 2\n\"train.eval_every\" = 2\n\"model.hidden_dim\" = 32\n\"model.ffn_dim\" = 64\n",
        base = repo().join("configs/demo.toml").display()
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// `scontrol show job` once the job has left PENDING/RUNNING/COMPLETING (at most 60 s): a
/// run records "complete" in the store before srun and the batch script have exited, and
/// a job behind a dependency starts only after that.
pub fn finished_job(job_id: &str) -> String {
    let show = || {
        String::from_utf8_lossy(&Command::new("scontrol").args(["show", "job", job_id]).output().unwrap().stdout)
            .to_string()
    };
    let t = Instant::now();
    let mut sc = show();
    let busy = |sc: &str| ["PENDING", "RUNNING", "COMPLETING"].iter().any(|s| sc.contains(&format!("JobState={s} ")));
    while busy(&sc) && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(250));
        sc = show();
    }
    sc
}

pub fn manifest(store: &Path, sweep: &str) -> serde_json::Value {
    json(&store.join(format!("sweeps/{sweep}/manifest.json")))
}

pub fn run_ids(store: &Path, sweep: &str) -> Vec<String> {
    manifest(store, sweep)["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

pub fn status(store: &Path, id: &str) -> serde_json::Value {
    json(&store.join(format!("runs/{id}/status.json")))
}

/// A JSON file, parsed (panics naming the file).
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

// --- the two-node Slurm (tests/multinode.rs, tests/doctor.rs) ---

/// Held while a test uses the two-node Slurm: an exclusive lock on `<dir>.lock`, so two
/// test binaries (cargo runs them one after another, but two checkouts may not) never
/// restart or reconfigure it under each other.
pub struct TwoNodes {
    _lock: std::fs::File,
    pub dir: PathBuf,
}

/// Starts the two-node Slurm of cluster/slurm-2node-up.sh (idempotent) in $SLURM2_DIR
/// (default /tmp/ras-slurm2; give CTLD_PORT and NODE_PORT_BASE with another dir for a
/// second instance) and points this test process's Slurm commands (and the coordinators
/// it starts, and through sbatch their jobs) at it. OMPI_MCA_btl=self,tcp makes the
/// ranks of a 2-node job talk over the network path, not shared memory (both "nodes" are
/// this host). One test per binary: nothing else reads the environment concurrently.
pub fn two_nodes_up() -> TwoNodes {
    let dir = PathBuf::from(std::env::var("SLURM2_DIR").unwrap_or_else(|_| "/tmp/ras-slurm2".into()));
    let lock = std::fs::File::create(dir.with_extension("lock")).expect("lock file");
    lock.lock().expect("locking the two-node Slurm");
    let out =
        Command::new("bash").arg(repo().join("cluster/slurm-2node-up.sh")).env("SLURM2_DIR", &dir).output().unwrap();
    assert!(
        out.status.success(),
        "cluster/slurm-2node-up.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::env::set_var("SLURM_CONF", dir.join("etc/slurm.conf"));
    std::env::set_var("OMPI_MCA_btl", "self,tcp");
    TwoNodes { _lock: lock, dir }
}

/// Runs `cmd` (a `ras` process) on one intra-op thread, for runs compared bit for bit with
/// another process's. A multi-threaded BLAS repeats itself only under conditions (a fixed
/// thread count, no dynamic threading) that ras sets (src/threads.rs) but that a loaded
/// machine has broken before; these tests check what resumption restores, not the BLAS.
pub fn one_intra_op_thread(cmd: &mut Command) -> &mut Command {
    cmd.env("OMP_NUM_THREADS", "1")
}

/// A `ras serve` started on a free loopback port (`--bind 127.0.0.1:0`): its URL, read
/// from the line it prints once it listens. Stopped (SIGTERM, then waited for) on drop.
pub struct Served {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    pub log: PathBuf,
}

impl Served {
    /// `ras serve ARGS --bind 127.0.0.1:0` in `cwd` with `env`; its stderr goes to `log`.
    pub fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)], log: &Path) -> Served {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ras"))
            .arg("serve")
            .args(args)
            .args(["--bind", "127.0.0.1:0"])
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            .env_remove("RAS_STORE")
            .env_remove("RAS_SERVE_TOKEN")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("ras serve starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| {
                panic!("ras serve printed no URL: {line:?}; log: {}", std::fs::read_to_string(log).unwrap_or_default())
            })
            .trim_end_matches('/')
            .to_string();
        Served { child, url, log: log.to_path_buf() }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tmpfs mounted at a folder (created if missing), unmounted on drop (also when the
/// test panics; lazily, should something still hold it).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: "1m", "2g") at `dir`; panics with `why`
    /// and mount's error when it cannot (it needs root).
    pub fn mount(dir: &Path, size: &str, why: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{why}, which needs root: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
