//! Checkpoints of the public code in and out, against real PyTorch (.venv-ref, made by
//! `make setup-python`; without it these tests fail and say so).
//!
//! The public-form checkpoint is made by tests/reference/ras_ref.py from a model it builds
//! and initialises itself, with the names of the public state dict's table
//! (tests/reference/ras-state-dict.md), saved with torch.save as the public code saves it
//! (DDP `module.` prefix, backbone tensors, optimizer state). Nothing in it comes from ras,
//! so a naming error on our side fails the import; the export is read back by PyTorch with
//! `torch.load(weights_only=True)` and `load_state_dict(strict=True)`, so a naming or
//! format error on the way out fails too.

mod common;

use common::{python, ras, repo, small_config, synth_dataset, text};
use ras::config::{BackboneConfig, RunConfig};
use ras::model::{anomaly_map, image_scores};
use ras::store::{tensors, Store};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use tch::{Device, Tensor};

fn reference(mode: &str, dir: &Path) {
    let out = Command::new(python())
        .arg(repo().join("tests/reference/ras_ref.py"))
        .args([mode, dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ras_ref.py {mode} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(path: &Path) -> HashMap<String, Tensor> {
    tensors::decode(&std::fs::read(path).unwrap()).unwrap().into_iter().collect()
}

/// max |a - b| / max |b| (float32 on CPU on both sides).
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-12)
}

/// Our anomaly maps for `features` with the model of `run` (its latest checkpoint).
fn our_maps(store: &Store, run: &str, cfg: &RunConfig, features: &Tensor) -> Tensor {
    let (_, bytes) = ras::run::latest_checkpoint(store, &format!("runs/{run}"), "unified").unwrap();
    let id = ras::backbone::BackboneIdentity::resolve(&cfg.backbone).unwrap();
    let mut t = ras::train::Trainer::new(&cfg.model, &cfg.train, cfg.seed, id.channels, id.grid, Device::Cpu).unwrap();
    t.load_state(tensors::decode(&bytes).unwrap()).unwrap();
    tch::no_grad(|| anomaly_map(&t.model.forward_t(features, false), features, cfg.backbone.image_size))
}

#[test]
fn public_checkpoint_imports_evaluates_and_exports_back_to_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = synth_dataset(d, 1, 3, 224, 4);
    let cfg_path = small_config(d, &root, "pub", "");
    let cfg = RunConfig::load(&cfg_path, &[]).unwrap();
    let channels =
        ras::backbone::BackboneIdentity::resolve(&BackboneConfig { arch: cfg.backbone.arch, ..cfg.backbone.clone() })
            .unwrap()
            .channels;
    let m = &cfg.model;
    let args = serde_json::json!({
        "seed": 11, "decoder": "ras", "encoder_layers": m.encoder_layers, "decoder_layers": m.decoder_layers,
        "neighbor_mask": m.neighbor_mask, "neighbor_size": m.neighbor_size, "hidden_dim": m.hidden_dim,
        "heads": m.heads, "ffn_dim": m.ffn_dim, "in_channels": channels, "grid": 14, "image_size": 224,
        "backbone": "efficientnet-b0", "original": "ckpt_best.pth.tar",
    });
    std::fs::write(d.join("args.json"), args.to_string()).unwrap();
    reference("make-public", d);
    let public = read(&d.join("public.safetensors"));
    let ckpt = d.join("ckpt_best.pth.tar");
    let store_url = format!("file://{}", d.join("store").display());
    let py = python();

    // A config whose model does not fit is refused, naming the keys to check and the tensors.
    let out = ras(
        &[
            "import",
            ckpt.to_str().unwrap(),
            "--config",
            cfg_path.to_str().unwrap(),
            "--set",
            "model.encoder_layers=2",
            "--python",
            py.to_str().unwrap(),
        ],
        d,
    );
    assert!(!out.status.success(), "a mismatching config must fail:\n{}", text(&out));
    let t = text(&out);
    assert!(t.contains("model.encoder_layers") && t.contains("missing transformer.encoder.layers.1."), "{t}");

    // public .pth.tar -> ras import -> the same reconstruction as PyTorch's (1e-5).
    let out = ras(
        &["import", ckpt.to_str().unwrap(), "--config", cfg_path.to_str().unwrap(), "--python", py.to_str().unwrap()],
        d,
    );
    let t = text(&out);
    assert!(out.status.success(), "import failed:\n{t}");
    let run = t
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .expect("run id printed")
        .to_string();
    assert!(run.starts_with("pub-import-"), "{run}");
    let store = Store::open(&store_url).unwrap();
    let prov: serde_json::Value = store.get_json(&format!("runs/{run}/import.json")).unwrap().expect("import.json");
    let sha = ras::store::sha256_hex(&std::fs::read(&ckpt).unwrap());
    assert_eq!(prov["sha256"], sha.as_str());
    assert_eq!(prov["format"], "torch.save");
    assert!(
        prov["not_imported"].as_array().unwrap().iter().any(|n| n == "module.backbone._conv_stem.weight"),
        "{prov}"
    );
    let stored_cfg = RunConfig::from_toml(
        std::str::from_utf8(&store.get(&format!("runs/{run}/config.toml")).unwrap().unwrap()).unwrap(),
        Path::new("x"),
    )
    .unwrap();
    let features = &public["features"];
    let maps = our_maps(&store, &run, &stored_cfg, features);
    let e = rel_err(&maps, &public["maps"]);
    assert!(e < 1e-5, "imported model's maps differ from PyTorch's by {e:e}");
    assert!(rel_err(&image_scores(&maps), &public["scores"]) < 1e-5);

    // Importing the same file again finds it.
    let again = ras(
        &["import", ckpt.to_str().unwrap(), "--config", cfg_path.to_str().unwrap(), "--python", py.to_str().unwrap()],
        d,
    );
    assert!(again.status.success() && text(&again).contains("already imported"), "{}", text(&again));

    // ras eval evaluates the imported run like any run: final metrics, status complete.
    let out = ras(&["eval", &run, "--store", &store_url], d);
    let t = text(&out);
    assert!(out.status.success(), "eval failed:\n{t}");
    assert!(t.contains("mean"), "the per-class table is printed:\n{t}");
    let status: serde_json::Value = store.get_json(&format!("runs/{run}/status.json")).unwrap().unwrap();
    assert_eq!(status["state"], "complete");
    let fm: serde_json::Value = store.get_json(&format!("runs/{run}/final_metrics.json")).unwrap().unwrap();
    assert_eq!(fm["epoch"].as_u64(), Some(cfg.train.epochs as u64));

    // ras export (both formats) -> torch.load(weights_only=True) + strict loads in PyTorch ->
    // the same reconstruction as ours (1e-5), and the very tensors the public file held.
    for (fmt, file) in [("public", "export.pth.tar"), ("safetensors", "export.safetensors")] {
        let out =
            ras(&["export", &run, "--store", &store_url, "--format", fmt, "--out", d.join(file).to_str().unwrap()], d);
        assert!(out.status.success(), "export {fmt} failed:\n{}", text(&out));
    }
    std::fs::write(d.join("inputs.safetensors"), tensors::encode(&[("features", features)]).unwrap()).unwrap();
    reference("check-export", d);
    let back = read(&d.join("out.safetensors"));
    let e = rel_err(&back["maps"], &maps);
    assert!(e < 1e-5, "PyTorch's maps from the export differ from ours by {e:e}");
    assert_eq!(back["epoch"].double_value(&[0]), cfg.train.epochs as f64);
}

#[test]
fn unreadable_or_foreign_checkpoints_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = synth_dataset(d, 1, 3, 224, 4);
    let cfg_path = small_config(d, &root, "bad", "");
    // Not a checkpoint at all: the converter's error comes through, nothing is stored.
    let junk = d.join("junk.pth.tar");
    std::fs::write(&junk, b"this is not a checkpoint").unwrap();
    let out = ras(
        &[
            "import",
            junk.to_str().unwrap(),
            "--config",
            cfg_path.to_str().unwrap(),
            "--python",
            python().to_str().unwrap(),
        ],
        d,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("junk.pth.tar"), "{}", text(&out));
    assert!(
        !d.join("store/runs").exists() || std::fs::read_dir(d.join("store/runs")).unwrap().next().is_none(),
        "nothing stored"
    );
    // A safetensors file without a reconstruction model names what it expected.
    let other = d.join("other.safetensors");
    std::fs::write(
        &other,
        tensors::encode(&[("module.backbone._conv_stem.weight", &Tensor::zeros([2], (tch::Kind::Float, Device::Cpu)))])
            .unwrap(),
    )
    .unwrap();
    let out = ras(&["import", other.to_str().unwrap(), "--config", cfg_path.to_str().unwrap()], d);
    assert!(!out.status.success());
    assert!(text(&out).contains("module.reconstruction."), "{}", text(&out));
    // A Python without torch is named, with the fix.
    let out = ras(
        &["import", junk.to_str().unwrap(), "--config", cfg_path.to_str().unwrap(), "--python", "/nonexistent/python"],
        d,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("--python"), "{}", text(&out));
}
