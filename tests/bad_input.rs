//! Bad input: each case gives a clear error naming the file or key, a non-zero exit, and
//! no run marked complete. Runs the real `ras` binary on real files.

mod common;
use common::*;
use std::path::Path;

fn assert_fails(dir: &Path, config: &Path, must_mention: &[&str]) {
    let out = ras(&["train", config.to_str().unwrap()], dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ras must fail; stderr: {stderr}");
    for m in must_mention {
        assert!(stderr.contains(m), "error should mention {m:?}; stderr: {stderr}");
    }
    for st in statuses(&dir.join("store")) {
        assert!(!st.contains("\"complete\""), "no run may be marked complete: {st}");
    }
}

#[test]
fn missing_dataset_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-data");
    let cfg = small_config(dir.path(), &missing, "missing", "");
    assert_fails(dir.path(), &cfg, &["no-such-data", "does not exist"]);
    let st = statuses(&dir.path().join("store"));
    assert_eq!(st.len(), 1);
    assert!(st[0].contains("\"failed\""), "{}", st[0]);
}

#[test]
fn class_without_training_images() {
    let dir = tempfile::tempdir().unwrap();
    let root = synth_dataset(dir.path(), 2, 1, 64, 2);
    let good = root.join("grain/train/good");
    for f in std::fs::read_dir(&good).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let cfg = small_config(dir.path(), &root, "notrain", "");
    assert_fails(dir.path(), &cfg, &["grain", "no training images", "grain/train/good"]);
}

#[test]
fn corrupt_png() {
    let dir = tempfile::tempdir().unwrap();
    let root = synth_dataset(dir.path(), 1, 2, 64, 2);
    let img = root.join("weave/train/good/001.png");
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&img, &bytes[..bytes.len() / 2]).unwrap(); // truncated: header fine, data not
    let cfg = small_config(dir.path(), &root, "corrupt", "");
    assert_fails(dir.path(), &cfg, &["weave/train/good/001.png"]);
}

#[test]
fn mask_of_the_wrong_size() {
    let dir = tempfile::tempdir().unwrap();
    let root = synth_dataset(dir.path(), 1, 3, 64, 2);
    let mask_dir = root.join("weave/ground_truth/scratch");
    let mask = std::fs::read_dir(&mask_dir).unwrap().next().unwrap().unwrap().path();
    image::GrayImage::from_pixel(10, 12, image::Luma([255u8])).save(&mask).unwrap();
    let cfg = small_config(dir.path(), &root, "badmask", "");
    let name = mask.file_name().unwrap().to_str().unwrap();
    assert_fails(dir.path(), &cfg, &[name, "10x12", "64x64"]);
}

#[test]
fn unknown_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), dir.path(), "unknown", "learning_rate = 0.1\n");
    assert_fails(dir.path(), &cfg, &["learning_rate", "unknown.toml"]);
    assert!(!dir.path().join("store/runs").exists(), "nothing may be written for an invalid config");
}

#[test]
fn negative_learning_rate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), dir.path(), "neglr", "");
    let out = ras(&["train", cfg.to_str().unwrap(), "--set", "train.lr=-0.001"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("train.lr") && stderr.contains("-0.001") && stderr.contains("neglr.toml"), "{stderr}");
    assert!(!dir.path().join("store/runs").exists());
}

#[test]
fn zero_ranks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), dir.path(), "zeroranks", "");
    let out = ras(&["train", cfg.to_str().unwrap(), "--ranks", "0"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--ranks") && stderr.contains('0'), "{stderr}");
    assert!(!dir.path().join("store").exists(), "nothing may run: {stderr}");
}

/// Reading commands do not create the store they read: `ras eval` of a run in a store
/// that does not exist names the URL and leaves no ./ras-store behind.
#[test]
fn eval_of_a_missing_store_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = ras(&["eval", "nosuchrun-12345678"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no store at file://./ras-store"), "{stderr}");
    assert!(!dir.path().join("ras-store").exists(), "eval created ./ras-store");
    let out = ras(&["eval", "nosuchrun-12345678", "--store", "file://./other", "--test-jitter", "0"], dir.path());
    assert!(!out.status.success() && !dir.path().join("other").exists(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `file://tmp/x` is a URL whose host is "tmp"; it used to mean ./tmp/x silently.
#[test]
fn file_url_with_a_host_part_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), dir.path(), "hosturl", "");
    let out = ras(&["train", cfg.to_str().unwrap(), "--set", "store=\"file://tmp/x\""], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("file:///tmp/x") && stderr.contains("file://./tmp/x"), "{stderr}");
    assert!(!dir.path().join("tmp").exists());
    let out = ras(&["eval", "r-1", "--store", "file://tmp/x"], dir.path());
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("file:///tmp/x"));
}
