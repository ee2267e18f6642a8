//! Helpers shared by the integration tests: small synthetic datasets and configs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

pub fn ras(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ras")).args(args).current_dir(cwd).env("RUST_LOG", "warn").output().expect("ras runs")
}

/// Every status.json under the store, as text.
pub fn statuses(store: &Path) -> Vec<String> {
    let runs = store.join("runs");
    let Ok(rd) = std::fs::read_dir(&runs) else { return vec![] };
    rd.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("status.json")).ok()).collect()
}
