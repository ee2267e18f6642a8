//! What the chaos acts on: the two-node Slurm, the S3 server on a tmpfs, the sweeps and
//! their coordinators, and the processes this chaos run started (each carries
//! `RAS_CHAOS=<seed>` in its environment, which sbatch passes on to the jobs).

use crate::common::s3::{BUCKET, KEY, S3, SECRET};
use crate::common::{dataset_at, repo, two_nodes_up, Tmpfs, TwoNodes};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Retry budget and request limit of the store in every ras process here: an S3 outage
/// of 10-40 s outlasts it at times (the run stops as "infra" and is requeued), at others not.
pub const STORE_RETRY_S: &str = "20";
pub const STORE_TIMEOUT_S: &str = "5";
/// Lease time to live: short, so that a holder cut off from the store meets expiry.
pub const LEASE_TTL_S: &str = "30";
pub const MAX_RETRIES: usize = 3;
pub const EPOCHS: usize = 6;

/// One sweep of the chaos: its name, file and ranks per run.
pub struct Sweep {
    pub name: String,
    pub file: PathBuf,
    pub ranks: usize,
}

/// A sweep's coordinator as the supervisor keeps it.
pub struct Coordinator {
    pub child: Option<Child>,
    /// Held down by the injector (killed; started again only after this).
    pub down_until: Option<Instant>,
    pub starts: usize,
    pub done: bool,
}

pub struct World {
    pub dir: PathBuf,
    pub seed: u64,
    pub s3: Mutex<S3>,
    pub slurm: TwoNodes,
    pub sweeps: Vec<Sweep>,
    pub coordinators: Mutex<Vec<Coordinator>>,
    pub t0: Instant,
    // Dropped last: after the server that writes into it.
    _tmpfs: Tmpfs,
}

impl World {
    pub fn up(dir: &Path, seed: u64, runs: usize) -> World {
        let slurm = two_nodes_up();
        // Nothing of an earlier chaos run (a failed one leaves jobs) in this Slurm.
        let ids = String::from_utf8_lossy(&Command::new("squeue").args(["-h", "-o", "%A"]).output().unwrap().stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>();
        if !ids.is_empty() {
            let _ = Command::new("scancel").args(&ids).status();
        }
        // The S3 server's folder on a tmpfs of its own, so that the disk can fill.
        let tmpfs = Tmpfs::mount(&dir.join("s3"), "1536m", "the chaos test mounts a tmpfs for the S3 server's folder");
        let s3 = S3::start(dir);
        dataset_at(dir, "out/demo-data");
        let ones = runs.max(1);
        let twos = ones.div_ceil(3);
        let sweep = |name: &str, ranks: usize, n: usize, extra: &str| {
            let seeds: Vec<String> = (1..=n).map(|s| s.to_string()).collect();
            let text = format!(
                "name = \"{name}\"\nbase = \"{base}\"\nmax_retries = {MAX_RETRIES}\nranks = {ranks}\n[grid]\nseed = [{}]\n\
                 [set]\n\"train.epochs\" = {EPOCHS}\n\"train.eval_every\" = {EPOCHS}\n\"checkpoint.every\" = 1\n\
                 \"checkpoint.keep_last\" = 100\n\"model.hidden_dim\" = 32\n\"model.ffn_dim\" = 64\n{extra}",
                seeds.join(", "),
                base = repo().join("configs/demo.toml").display()
            );
            let file = dir.join(format!("{name}.toml"));
            std::fs::write(&file, text).unwrap();
            Sweep { name: name.into(), file, ranks }
        };
        let sweeps = vec![
            sweep("chaos-one", 1, ones, ""),
            // Another model than the 1-rank runs' (a run whose config matches another's is
            // that run): one decoder layer.
            sweep("chaos-two", 2, twos, "\"model.decoder_layers\" = 1\n"),
        ];
        let coordinators: Vec<Coordinator> =
            sweeps.iter().map(|_| Coordinator { child: None, down_until: None, starts: 0, done: false }).collect();
        World {
            dir: dir.to_path_buf(),
            seed,
            s3: Mutex::new(s3),
            slurm,
            sweeps,
            coordinators: Mutex::new(coordinators),
            t0: Instant::now(),
            _tmpfs: tmpfs,
        }
    }

    /// Seconds since the world was up.
    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// The bucket's folder (what the S3 server serves).
    pub fn bucket(&self) -> PathBuf {
        self.dir.join("s3").join(BUCKET)
    }

    pub fn port(&self) -> u16 {
        self.s3.lock().unwrap().port
    }

    /// The environment of every ras process of this chaos (and, through sbatch, its jobs).
    pub fn env(&self) -> Vec<(String, String)> {
        let e = |k: &str, v: &str| (k.to_string(), v.to_string());
        vec![
            e("RAS_STORE", &format!("s3://{BUCKET}/")),
            e("AWS_ACCESS_KEY_ID", KEY),
            e("AWS_SECRET_ACCESS_KEY", SECRET),
            e("AWS_REGION", "us-east-1"),
            e("AWS_ENDPOINT", &format!("http://127.0.0.1:{}", self.port())),
            e("AWS_ALLOW_HTTP", "true"),
            e("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
            e("RAS_STORE_RETRY_S", STORE_RETRY_S),
            e("RAS_STORE_TIMEOUT_S", STORE_TIMEOUT_S),
            e("RAS_LEASE_TTL_S", LEASE_TTL_S),
            // Bit-identical results: one intra-op thread (see common::one_intra_op_thread).
            e("OMP_NUM_THREADS", "1"),
            e("RAS_CHAOS", &self.seed.to_string()),
            e("RUST_LOG", "warn"),
        ]
    }

    /// `ras ARGS` in the chaos folder with its environment.
    pub fn ras(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ras"));
        c.args(args).current_dir(&self.dir).env_remove("AWS_PROFILE").env_remove("AWS_SESSION_TOKEN");
        for (k, v) in self.env() {
            c.env(k, v);
        }
        c
    }

    /// Starts sweep `i`'s coordinator (its output appended to `coordinator-<name>.log`).
    pub fn start_coordinator(&self, i: usize, retry_cancelled: bool) -> Child {
        let s = &self.sweeps[i];
        let profile = repo().join("cluster/ci-slurm-2node.toml");
        let mut args = vec!["sweep", s.file.to_str().unwrap(), "--cluster", profile.to_str().unwrap()];
        if retry_cancelled {
            args.push("--retry-cancelled");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("coordinator-{}.log", s.name)))
            .unwrap();
        let err = log.try_clone().unwrap();
        self.ras(&args).stdout(log).stderr(err).stdin(Stdio::null()).spawn().expect("ras sweep starts")
    }

    /// A JSON object of the bucket, None when absent or unreadable.
    pub fn json(&self, key: &str) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(self.bucket().join(key)).ok()?).ok()
    }

    /// Run ids of sweep `i` (empty until its manifest exists).
    pub fn run_ids(&self, i: usize) -> Vec<String> {
        let m = self.json(&format!("sweeps/{}/manifest.json", self.sweeps[i].name));
        m.and_then(|m| Some(m["runs"].as_array()?.iter().filter_map(|r| Some(r["id"].as_str()?.to_string())).collect()))
            .unwrap_or_default()
    }

    /// Every run id of every sweep, with its sweep's index.
    pub fn all_runs(&self) -> Vec<(usize, String)> {
        (0..self.sweeps.len()).flat_map(|i| self.run_ids(i).into_iter().map(move |r| (i, r))).collect()
    }

    pub fn complete(&self, run: &str) -> bool {
        self.json(&format!("runs/{run}/status.json")).is_some_and(|s| s["state"] == "complete")
            && self.bucket().join(format!("runs/{run}/final_metrics.json")).exists()
    }

    /// Whether a person's cancel (scancel) left runs of sweep `i` cancelled for good.
    pub fn has_cancelled_runs(&self, i: usize) -> bool {
        let d = self.bucket().join(format!("sweeps/{}/cancelled-runs", self.sweeps[i].name));
        std::fs::read_dir(d).map(|mut rd| rd.next().is_some()).unwrap_or(false)
    }

    /// Files under the bucket (relative keys), recursively.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.s3.lock().unwrap().keys(prefix)
    }

    /// Processes of this chaos run (RAS_CHAOS=<seed> in their environment): (pid, argv, env).
    pub fn processes(&self) -> Vec<Proc> {
        let marker = format!("RAS_CHAOS={}", self.seed);
        let mut out = vec![];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(env) = std::fs::read(e.path().join("environ")) else { continue };
            let env: Vec<String> = env.split(|&b| b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
            if !env.iter().any(|v| v == &marker) {
                continue;
            }
            let argv: Vec<String> = std::fs::read(e.path().join("cmdline"))
                .map(|c| c.split(|&b| b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
                .unwrap_or_default();
            let state = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // A zombie (exited, not reaped yet) is not a process left running.
            if state.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')) {
                continue;
            }
            out.push(Proc { pid, argv, env });
        }
        out
    }

    /// Worker ranks (`ras --quiet worker CONFIG`, as srun starts them) running now: (pid,
    /// run id, rank).
    pub fn ranks(&self) -> Vec<(u32, String, usize)> {
        let runs = self.all_runs();
        self.processes()
            .into_iter()
            .filter(|p| p.argv.first().is_some_and(|a| a.ends_with("/ras")) && p.argv.iter().any(|a| a == "worker"))
            .filter_map(|p| {
                let line = p.argv.join(" ");
                let run = runs.iter().find(|(_, r)| line.contains(r.as_str()))?.1.clone();
                let rank = p.var("SLURM_PROCID").and_then(|r| r.parse().ok()).unwrap_or(0);
                Some((p.pid, run, rank))
            })
            .collect()
    }

    /// Keeps the summary and the fault log in the store (`chaos/<seed>/`: files in the
    /// server's folder, which it serves as objects) and a copy in the chaos folder.
    pub fn store_summary(&self, seed: u64, summary: &serde_json::Value, log: &crate::faults::Log) {
        let dir = self.bucket().join(format!("chaos/{seed}"));
        let faults = serde_json::to_vec_pretty(&log.faults).unwrap();
        let text = serde_json::to_vec_pretty(summary).unwrap();
        for (name, bytes) in [("summary.json", &text), ("faults.json", &faults)] {
            // (Best effort in the store: a failed check may have left its disk full.)
            let _ = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(dir.join(name), bytes));
            std::fs::write(self.dir.join(format!("chaos-{name}")), bytes).unwrap();
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for c in self.coordinators.lock().unwrap().iter_mut() {
            if let Some(mut ch) = c.child.take() {
                let _ = ch.kill();
                let _ = ch.wait();
            }
        }
        let ids = String::from_utf8_lossy(
            &Command::new("squeue").args(["-h", "-o", "%A"]).output().map(|o| o.stdout).unwrap_or_default(),
        )
        .split_whitespace()
        .map(str::to_string)
        .collect::<Vec<_>>();
        if !ids.is_empty() {
            let _ = Command::new("scancel").args(&ids).status();
        }
        self.s3.lock().unwrap().kill();
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A process of this chaos run.
pub struct Proc {
    pub pid: u32,
    pub argv: Vec<String>,
    pub env: Vec<String>,
}

impl Proc {
    pub fn var(&self, key: &str) -> Option<String> {
        self.env.iter().find_map(|v| v.strip_prefix(&format!("{key}=")).map(str::to_string))
    }
}
