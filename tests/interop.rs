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

    // The config's backbone (a random init) is not the one the checkpoint holds: refused.
    let ck = ckpt.to_str().unwrap();
    let out = ras(&["import", ck, "--config", cfg_path.to_str().unwrap(), "--python", py.to_str().unwrap()], d);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("module.backbone") && t.contains("--part backbone"), "{t}");

    // Its own backbone, extracted as the refusal says, is: public .pth.tar -> ras import ->
    // the same reconstruction as PyTorch's (1e-5).
    let backbone = d.join("backbone.safetensors");
    let out = Command::new(&py)
        .arg(repo().join("tools/convert_weights.py"))
        .args([ck, backbone.to_str().unwrap(), "--part", "backbone", "--strict"])
        .output()
        .unwrap();
    assert!(out.status.success(), "extracting the backbone failed:\n{}", text(&out));
    let with_backbone = format!("backbone.weights={}", backbone.display());
    let import = [
        "import",
        ck,
        "--config",
        cfg_path.to_str().unwrap(),
        "--set",
        &with_backbone,
        "--python",
        py.to_str().unwrap(),
    ];
    let out = ras(&import, d);
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
    let again = ras(&import, d);
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

/// `ras` in `cwd` on one intra-op thread (its metrics are compared bit for bit with another
/// process's).
fn ras_one_thread(args: &[&str], cwd: &Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ras"));
    common::one_intra_op_thread(&mut cmd).args(args).current_dir(cwd).env("RUST_LOG", "warn").output().unwrap()
}

/// The run id `ras import` printed.
fn imported_run(out: &std::process::Output) -> String {
    let t = text(out);
    assert!(out.status.success(), "import failed:\n{t}");
    t.lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .expect("run id")
        .to_string()
}

/// The round trip: a run exported in the public layout (its backbone included)
/// and imported back. With another backbone (another random init, or another weights
/// file) the import is refused, naming the tensors and both sources, and stores nothing;
/// with the run's own backbone (its random init, or the checkpoint's backbone extracted by
/// tools/convert_weights.py as the refusal says) `ras eval` reproduces the run's metrics
/// bit for bit. A checkpoint without a backbone imports with the config's, and says so.
#[test]
fn an_exported_run_imports_back_only_with_the_backbone_it_was_trained_with() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = synth_dataset(d, 1, 17, 128, 4);
    let cfg_path = small_config(d, &root, "rt", "");
    let small = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("epochs = 40", "epochs = 2")
        .replace("eval_every = 20", "eval_every = 2")
        .replace("image_size = 224", "image_size = 128");
    std::fs::write(&cfg_path, small).unwrap();
    let cfg = RunConfig::load(&cfg_path, &[]).unwrap();
    let (store_url, store) = (cfg.store.clone(), Store::open(&cfg.store).unwrap());
    let c = cfg_path.to_str().unwrap();
    let py = python();
    let py = py.to_str().unwrap();

    let out = ras_one_thread(&["train", c], d);
    assert!(out.status.success(), "train failed:\n{}", text(&out));
    let run = cfg.run_id();
    let original: serde_json::Value = store.get_json(&format!("runs/{run}/final_metrics.json")).unwrap().unwrap();
    let ckpt = d.join("rt.pth.tar");
    let out = ras(&["export", &run, "--store", &store_url, "--format", "public", "--out", ckpt.to_str().unwrap()], d);
    assert!(out.status.success(), "export failed:\n{}", text(&out));
    // What the export wrote, counted as PyTorch reads the file: the counters included.
    let (total, counters) = read_pth_counts(&ckpt, py);
    let backbone = read_pth_backbone_count(&ckpt, py);
    let model = total - backbone - counters;
    let wrote = format!(
        "{model} model + {} backbone tensors ({backbone} weights and statistics, {counters} BatchNorm counters)",
        backbone + counters
    );
    assert!(counters > 0 && text(&out).contains(&wrote), "{wrote}\n{}", text(&out));
    let k = ckpt.to_str().unwrap();
    let runs = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d.join("store/runs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(runs(), vec![run.clone()]);

    // Another random init: refused, nothing stored.
    let out = ras(&["import", k, "--config", c, "--set", "backbone.init_seed=5", "--python", py], d);
    let t = text(&out);
    assert!(!out.status.success(), "a different backbone must be refused:\n{t}");
    assert!(t.contains("rt.pth.tar") && t.contains("random init, init_seed 5") && t.contains("rt.toml"), "{t}");
    assert!(t.contains("_blocks.0._depthwise_conv.weight: max |difference|"), "{t}");
    assert!(t.contains("--part backbone"), "the fix is named:\n{t}");
    assert_eq!(runs(), vec![run.clone()], "nothing stored");

    // The same from the safetensors export, read natively.
    let st = d.join("rt.safetensors");
    let out =
        ras(&["export", &run, "--store", &store_url, "--format", "safetensors", "--out", st.to_str().unwrap()], d);
    assert!(out.status.success(), "export failed:\n{}", text(&out));
    let out = ras(&["import", st.to_str().unwrap(), "--config", c, "--set", "backbone.init_seed=5"], d);
    let t = text(&out);
    assert!(!out.status.success(), "a different backbone must be refused:\n{t}");
    assert!(t.contains("rt.safetensors") && t.contains("_blocks.0._depthwise_conv.weight: max |difference|"), "{t}");
    assert_eq!(runs(), vec![run.clone()], "nothing stored");

    // Another EfficientNet-B0 weights file: refused, naming the file.
    let other_cfg = ras::config::BackboneConfig { init_seed: 2, ..cfg.backbone.clone() };
    let other = ras::backbone::FeatureExtractor::new(&other_cfg, Device::Cpu).unwrap().named_weights();
    let other_file = d.join("other-b0.safetensors");
    let other: Vec<(&String, &Tensor)> = other.iter().map(|(n, t)| (n, t)).collect();
    std::fs::write(&other_file, tensors::encode(&other).unwrap()).unwrap();
    let set_other = format!("backbone.weights={}", other_file.display());
    let out = ras(&["import", k, "--config", c, "--set", &set_other, "--python", py], d);
    let t = text(&out);
    assert!(!out.status.success(), "a different weights file must be refused:\n{t}");
    assert!(t.contains("other-b0.safetensors") && t.contains("max |difference|"), "{t}");
    assert_eq!(runs(), vec![run.clone()], "nothing stored");

    // The run's own backbone, as its config builds it: compared, accepted, same metrics.
    let out = ras(&["import", k, "--config", c, "--python", py], d);
    let same_init = imported_run(&out);
    assert!(text(&out).contains("equal to the checkpoint's"), "{}", text(&out));
    // What is not imported is counted as the file holds it: the parts add up.
    let counted = [
        format!("{model} model tensors of the {total} it holds"),
        format!(
            "not imported: {} tensors outside the reconstruction model: {backbone} of the backbone, {counters} \
             BatchNorm counters (num_batches_tracked)",
            backbone + counters
        ),
        format!("in all {backbone} backbone tensors it holds (and {counters} BatchNorm counters"),
    ];
    for line in &counted {
        assert!(text(&out).contains(line.as_str()), "{line}\n{}", text(&out));
    }
    // The same from the safetensors export, read natively.
    let out = ras(&["import", st.to_str().unwrap(), "--config", c], d);
    imported_run(&out);
    for line in &counted {
        assert!(text(&out).contains(line.as_str()), "safetensors: {line}\n{}", text(&out));
    }
    let exported = read_pth_backbone_count(&ckpt, py);
    let prov: serde_json::Value = store.get_json(&format!("runs/{same_init}/import.json")).unwrap().unwrap();
    assert_eq!(prov["backbone"]["compared_tensors"].as_u64(), Some(exported), "{prov}");
    assert_eq!(prov["backbone"]["not_in_checkpoint"], serde_json::json!([]), "{prov}");
    assert_eq!(prov["backbone"]["weights_id"], "random-init-seed-0", "{prov}");

    // The checkpoint's own backbone, extracted as the refusal says, as backbone.weights.
    let extracted = d.join("backbone.safetensors");
    let out = Command::new(py)
        .arg(repo().join("tools/convert_weights.py"))
        .args([k, extracted.to_str().unwrap(), "--part", "backbone", "--strict"])
        .output()
        .unwrap();
    assert!(out.status.success(), "extracting the backbone failed:\n{}", text(&out));
    let set_extracted = format!("backbone.weights={}", extracted.display());
    let out = ras(&["import", k, "--config", c, "--set", &set_extracted, "--python", py], d);
    let from_file = imported_run(&out);
    let prov: serde_json::Value = store.get_json(&format!("runs/{from_file}/import.json")).unwrap().unwrap();
    assert_eq!(prov["backbone"]["compared_tensors"].as_u64(), Some(exported), "{prov}");
    let sha = ras::store::sha256_hex(&std::fs::read(&extracted).unwrap());
    assert_eq!(prov["backbone"]["weights_id"], sha.as_str(), "{prov}");

    for imported in [&same_init, &from_file] {
        let out = ras_one_thread(&["eval", imported, "--store", &store_url], d);
        assert!(out.status.success(), "eval of {imported} failed:\n{}", text(&out));
        let fm: serde_json::Value = store.get_json(&format!("runs/{imported}/final_metrics.json")).unwrap().unwrap();
        assert_eq!(fm["metrics"], original["metrics"], "run {imported} does not reproduce run {run}'s metrics");
    }

    // No backbone in the checkpoint: the config's, not compared, and said so.
    let bare = d.join("bare.pth.tar");
    let out = ras(
        &[
            "export",
            &run,
            "--store",
            &store_url,
            "--format",
            "public",
            "--no-backbone",
            "--out",
            bare.to_str().unwrap(),
        ],
        d,
    );
    assert!(out.status.success(), "export failed:\n{}", text(&out));
    let out =
        ras(&["import", bare.to_str().unwrap(), "--config", c, "--set", "backbone.init_seed=5", "--python", py], d);
    let no_backbone = imported_run(&out);
    assert!(text(&out).contains("the checkpoint holds none; the run uses the config's"), "{}", text(&out));
    let prov: serde_json::Value = store.get_json(&format!("runs/{no_backbone}/import.json")).unwrap().unwrap();
    assert_eq!(prov["backbone"]["compared_tensors"].as_u64(), Some(0), "{prov}");
    assert_eq!(prov["backbone"]["weights_id"], "random-init-seed-5", "{prov}");
    // What the refusal prevents: evaluated with that other backbone, the same model's
    // metrics are not the run's (so the equalities above are no accident of tiny data).
    let out = ras_one_thread(&["eval", &no_backbone, "--store", &store_url], d);
    assert!(out.status.success(), "eval of {no_backbone} failed:\n{}", text(&out));
    let fm: serde_json::Value = store.get_json(&format!("runs/{no_backbone}/final_metrics.json")).unwrap().unwrap();
    assert_ne!(fm["metrics"], original["metrics"]);
    eprintln!(
        "mean metrics: trained {} / with another backbone {}",
        original["metrics"]["mean"], fm["metrics"]["mean"]
    );
}

/// How many tensors a `.pth.tar`'s state dict holds, and how many of them are BatchNorm
/// counters (`num_batches_tracked`), as PyTorch reads it.
fn read_pth_counts(path: &Path, py: &str) -> (u64, u64) {
    let code = "import sys, torch; sd = torch.load(sys.argv[1], weights_only=True)['state_dict']; \
                print(len(sd), sum(1 for k in sd if k.endswith('num_batches_tracked')))";
    let out = Command::new(py).args(["-c", code, path.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: Vec<u64> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(|n| n.parse().unwrap()).collect();
    (v[0], v[1])
}

/// How many backbone tensors (not counting `num_batches_tracked`) a `.pth.tar` holds, as
/// PyTorch reads it.
fn read_pth_backbone_count(path: &Path, py: &str) -> u64 {
    let code = "import sys, torch; sd = torch.load(sys.argv[1], weights_only=True)['state_dict']; \
                print(sum(1 for k in sd if k.startswith('module.backbone.') and not k.endswith('num_batches_tracked')))";
    let out = Command::new(py).args(["-c", code, path.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
