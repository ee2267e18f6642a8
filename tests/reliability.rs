//! One writer per run, and every way a run ends is recorded: through the real binary.
//! - A second `ras train` (and `--force`) of a live run is refused, naming the holder, and
//!   writes nothing; after kill -9 of the holder, the same command takes the run over at
//!   once (its pid is gone) and finishes it; the lease is gone after.
//! - An allocation failure inside libtorch (under a memory limit) marks the run failed
//!   with "out of memory" and the config keys that size memory, exit 1, not a panic exit.
//! - Out-of-range sizes are refused up front, naming the key, before anything is stored.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run_dir(store: &Path) -> std::path::PathBuf {
    let runs: Vec<_> = std::fs::read_dir(store.join("runs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

#[test]
fn a_live_run_has_one_writer_and_a_dead_one_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = synth_dataset(d, 1, 5, 64, 8);
    // Long enough to be caught while training (checkpoints every 10 epochs).
    let cfg = small_config(d, &root, "lease", "");
    let cfg = cfg.to_str().unwrap();
    let sets = ["--set", "train.epochs=120", "--set", "train.eval_every=60", "--set", "checkpoint.every=10"];
    let mut args = vec!["train", cfg];
    args.extend(sets);
    let mut first = Command::new(env!("CARGO_BIN_EXE_ras"))
        .args(&args)
        .current_dir(d)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store = d.join("store");
    let t = Instant::now();
    let lease = loop {
        if let Ok(rd) = std::fs::read_dir(store.join("runs")) {
            if let Some(p) = rd.filter_map(|e| e.ok()).map(|e| e.path().join("lease.json")).find(|p| p.exists()) {
                break p;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no lease.json appeared");
        assert!(first.try_wait().unwrap().is_none(), "the first trainer ended before it was caught");
        std::thread::sleep(Duration::from_millis(100));
    };
    let holder: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&lease).unwrap()).unwrap();
    assert_eq!(holder["pid"].as_u64(), Some(first.id() as u64));

    // A second trainer, and --force: refused, naming the holder's pid; the status stays the first's.
    let status_before = std::fs::read_to_string(run_dir(&store).join("status.json")).unwrap_or_default();
    for force in [false, true] {
        let mut a = args.clone();
        if force {
            a.push("--force");
        }
        let out = ras(&a, d);
        assert!(!out.status.success(), "a second trainer (force {force}) must be refused:\n{}", text(&out));
        let t = text(&out);
        assert!(t.contains("being trained by another process") && t.contains(&format!("pid {}", first.id())), "{t}");
        assert!(first.try_wait().unwrap().is_none(), "the first trainer must be untouched");
        let status = std::fs::read_to_string(run_dir(&store).join("status.json")).unwrap_or_default();
        assert!(!status.contains("\"failed\""), "a refused trainer must not mark the run failed: {status}");
        assert!(status_before.is_empty() || status.contains("\"running\""), "{status}");
    }

    // kill -9: the lease stays behind, but its pid is gone, so the same command takes over.
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(lease.exists(), "a killed holder cannot release its lease");
    let out = ras(&args, d);
    assert!(out.status.success(), "the run is taken over after kill -9:\n{}", text(&out));
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir(&store).join("status.json")).unwrap()).unwrap();
    assert_eq!(status["state"], "complete");
    assert!(!lease.exists(), "the lease is released at the end");
}

#[test]
fn an_allocation_failure_is_recorded_with_the_keys_that_size_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = synth_dataset(d, 1, 6, 64, 4);
    let cfg = small_config(d, &root, "oom", "");
    // 1024-px images through the backbone under a 4 GB address-space limit: libtorch's
    // allocator fails, tch turns that into a panic, the run records it.
    let cmd = format!(
        "ulimit -v 4000000; exec {} train {} --set backbone.image_size=1024 --set backbone.batch_size=64",
        env!("CARGO_BIN_EXE_ras"),
        cfg.display()
    );
    let out = Command::new("bash").args(["-c", &cmd]).current_dir(d).env("RUST_LOG", "warn").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "exit 1 (failed), not a panic's 101:\n{}", text(&out));
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir(&d.join("store")).join("status.json")).unwrap()).unwrap();
    assert_eq!(status["state"], "failed");
    let err = status["error"].as_str().unwrap();
    assert!(err.contains("out of memory") && err.contains("backbone.image_size = 1024"), "{err}");
    assert!(!err.contains("frame #1"), "no C++ stack trace in the recorded error: {err}");
}

#[test]
fn out_of_range_sizes_are_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = synth_dataset(d, 1, 6, 64, 4);
    let cfg = small_config(d, &root, "big", "");
    for (set, key) in [
        ("backbone.image_size=1048576", "backbone.image_size"),
        ("train.batch_size=1000000", "train.batch_size"),
        ("train.epochs=10000000", "train.epochs"),
        ("model.decoder_layers=1000", "model.decoder_layers"),
    ] {
        let out = ras(&["train", cfg.to_str().unwrap(), "--set", set], d);
        assert_eq!(out.status.code(), Some(1), "{set}:\n{}", text(&out));
        assert!(text(&out).contains(key), "{set}: the key is named:\n{}", text(&out));
        assert!(!d.join("store/runs").exists(), "{set}: nothing stored");
    }
}
