//! Parity with PyTorch: every test makes seeded random inputs and weights here, writes them
//! as safetensors into a temporary folder, runs the PyTorch reference
//! (`.venv-ref/bin/python tests/reference/ras_ref.py <mode> <dir>`, see its docstring for
//! which module of which package is the reference), reads its outputs back and compares.
//!
//! Error measure, float32 on CPU everywhere:
//!     max relative error = max_i |ours_i - ref_i| / max_i |ref_i|
//! and every tensor compared must have it below 1e-5 (`TOL`). Metrics (float64 on both
//! sides) must agree to 1e-9 absolute.
//!
//! The Python environment is made by `make setup-python` (scripts/setup-python.sh); without
//! it these tests FAIL and say so: they never skip.

use ras::backbone::{EfficientNet, EfficientNetSpec, FeatureExtractor};
use ras::config::{BackboneConfig, DecoderKind, ModelConfig};
use ras::eval::metrics::{pixel_metrics, ranking_metrics};
use ras::model::{anomaly_map, image_scores, Ras};
use ras::run::{load_model_weights, model_weights};
use ras::store::tensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{nn, Device, Kind, Tensor};

const TOL: f64 = 1e-5;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let py = repo().join(".venv-ref/bin/python");
    assert!(
        py.exists(),
        "the PyTorch reference environment {} is missing: run `make setup-python` (scripts/setup-python.sh) first",
        py.display()
    );
    py
}

/// Runs `python <script> <args>` in the repository root; panics with its output on failure.
fn run_python(script: &str, args: &[&str]) -> String {
    let out =
        Command::new(python()).arg(repo().join(script)).args(args).current_dir(repo()).output().expect("start python");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} {args:?} failed:\n{text}");
    text
}

fn reference(mode: &str, dir: &Path) -> HashMap<String, Tensor> {
    run_python("tests/reference/ras_ref.py", &[mode, dir.to_str().unwrap()]);
    read(&dir.join("out.safetensors"))
}

fn write(path: &Path, named: &[(&str, &Tensor)]) {
    std::fs::write(path, tensors::encode(named).unwrap()).unwrap();
}

fn read(path: &Path) -> HashMap<String, Tensor> {
    tensors::decode(&std::fs::read(path).unwrap()).unwrap().into_iter().collect()
}

fn write_args(dir: &Path, args: serde_json::Value) {
    std::fs::write(dir.join("args.json"), args.to_string()).unwrap();
}

/// max |a - b| / max |b| (b the reference), after checking the shapes agree.
fn max_rel_err(ours: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(ours.size(), reference.size(), "shapes differ");
    let a = ours.to_kind(Kind::Double);
    let b = reference.to_kind(Kind::Double);
    let scale = b.abs().max().double_value(&[]);
    assert!(scale > 0.0 && scale.is_finite(), "reference is all zeros or not finite");
    (a - b).abs().max().double_value(&[]) / scale
}

fn check(what: &str, ours: &Tensor, reference: &Tensor) -> f64 {
    let e = max_rel_err(ours, reference);
    println!("{what}: max relative error {e:.3e}");
    assert!(e < TOL, "{what}: max relative error {e:.3e} >= {TOL:e} (max|a-b|/max|b|)");
    e
}

// ----------------------------------------------------------------------------- backbone

/// Random EfficientNet weights with realistic BatchNorm statistics (running_var in
/// [0.5, 2], running_mean ~ N(0, 0.1), gamma in [0.5, 1.5], beta ~ N(0, 0.1)), as a file.
fn random_backbone_weights(arch: &str, seed: i64, path: &Path) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = EfficientNet::new(&vs.root(), EfficientNetSpec::from_arch(arch).unwrap());
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, v) in &vars {
            let n = v.size()[0];
            let opts = (Kind::Float, Device::Cpu);
            let new = if name.ends_with("running_var") {
                Tensor::rand([n], opts) * 1.5 + 0.5
            } else if name.ends_with("running_mean") || name.ends_with("bias") {
                Tensor::randn([n], opts) * 0.1
            } else if name.ends_with("weight") && v.dim() == 1 {
                Tensor::rand([n], opts) + 0.5
            } else if name == "_fc.weight" {
                Tensor::randn(v.size(), opts) * 0.01
            } else {
                continue; // conv weights: the Kaiming-normal init
            };
            v.shallow_clone().copy_(&new);
        }
    });
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let list: Vec<(&str, &Tensor)> = names.iter().map(|n| (n.as_str(), &vars[*n])).collect();
    write(path, &list);
}

fn backbone_parity(arch: &str, outblocks: &[usize]) {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.safetensors");
    random_backbone_weights(arch, 11, &weights);
    tch::manual_seed(12);
    let images = Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu));
    write(&dir.path().join("inputs.safetensors"), &[("images", &images)]);
    write_args(dir.path(), serde_json::json!({"arch": arch, "outblocks": outblocks}));
    // ours: the weights go through backbone.weights, as in a run
    let cfg = BackboneConfig { arch: arch.parse().unwrap(), weights: Some(weights), ..Default::default() };
    let ex = FeatureExtractor::new(&cfg, Device::Cpu).unwrap();
    assert_eq!(ex.identity.outblocks, outblocks);
    let ours = ex.extract(&images);
    let r = reference("backbone", dir.path());
    assert!(r["features"].abs().mean(Kind::Float).double_value(&[]) > 1e-3, "degenerate features");
    check(&format!("{arch} backbone+neck features {:?}", ours.size()), &ours, &r["features"]);
}

#[test]
fn backbone_efficientnet_b4_matches_efficientnet_pytorch() {
    backbone_parity("efficientnet-b4", &[1, 5, 9, 21]);
}

#[test]
fn backbone_efficientnet_b0_matches_efficientnet_pytorch() {
    backbone_parity("efficientnet-b0", &[0, 2, 4, 10]);
}

// ----------------------------------------------------------------------------- RAS

fn kind_name(k: DecoderKind) -> &'static str {
    match k {
        DecoderKind::Ras => "ras",
        DecoderKind::GateOnly => "gate_only",
        DecoderKind::TransformerOnly => "transformer_only",
        DecoderKind::Uniad => "uniad",
    }
}

/// A model at the paper's shapes (272 -> 256, 8 heads, FFN 1024, 14 x 14) with Xavier
/// weights and every bias / LayerNorm / embedding perturbed away from its init.
fn random_model(cfg: &ModelConfig, seed: i64) -> (nn::VarStore, Ras) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Ras::new(&vs.root(), cfg, 272, (14, 14));
    tch::no_grad(|| {
        for (_, v) in vs.variables() {
            if v.dim() == 1 {
                let _ = v.shallow_clone().g_add_(&(Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) * 0.1));
            }
        }
    });
    (vs, model)
}

fn ras_parity(decoder: DecoderKind, te: usize, td: usize, mask: bool, impl_: &str) {
    let cfg =
        ModelConfig { decoder, encoder_layers: te, decoder_layers: td, neighbor_mask: mask, ..Default::default() };
    let what = format!("{} T_e={te} T_d={td} mask={mask} ({impl_})", kind_name(decoder));
    let dir = tempfile::tempdir().unwrap();
    let (vs, model) = random_model(&cfg, 100 + (te * 10 + td) as i64);
    std::fs::write(dir.path().join("weights.safetensors"), model_weights(&vs).unwrap()).unwrap();
    tch::manual_seed(7);
    let f_org = Tensor::randn([3, 272, 14, 14], (Kind::Float, Device::Cpu)).relu();
    write(&dir.path().join("inputs.safetensors"), &[("features", &f_org)]);
    write_args(
        dir.path(),
        serde_json::json!({
            "decoder": kind_name(decoder), "encoder_layers": te, "decoder_layers": td,
            "neighbor_mask": mask, "neighbor_size": cfg.neighbor_size, "hidden_dim": cfg.hidden_dim,
            "heads": cfg.heads, "ffn_dim": cfg.ffn_dim, "in_channels": 272, "grid": 14,
            "image_size": 224, "impl": impl_,
        }),
    );
    let (outs, maps, scores) = tch::no_grad(|| {
        let outs = model.forward_all(&f_org);
        let maps = anomaly_map(outs.last().unwrap(), &f_org, 224);
        let scores = image_scores(&maps);
        (outs, maps, scores)
    });
    let r = reference("ras", dir.path());
    if decoder != DecoderKind::Uniad {
        assert_eq!(outs.len(), td);
        for (i, o) in outs.iter().enumerate() {
            check(&format!("{what} o_{}", i + 1), o, &r[&format!("step{i}")]);
        }
    }
    check(&format!("{what} f_rec"), outs.last().unwrap(), &r["f_rec"]);
    check(&format!("{what} anomaly maps 224x224"), &maps, &r["maps"]);
    check(&format!("{what} image scores"), &scores, &r["scores"]);
}

#[test]
fn ras_default_matches_pytorch() {
    ras_parity(DecoderKind::Ras, 2, 4, true, "mha");
}

#[test]
fn ras_depths_and_mask_match_pytorch() {
    for (te, td, mask) in [(2, 4, false), (0, 1, true), (0, 3, false), (1, 2, true), (3, 2, true)] {
        ras_parity(DecoderKind::Ras, te, td, mask, "mha");
    }
}

#[test]
fn ras_ablations_and_uniad_match_pytorch() {
    ras_parity(DecoderKind::GateOnly, 2, 4, true, "mha");
    ras_parity(DecoderKind::TransformerOnly, 2, 4, true, "mha");
    ras_parity(DecoderKind::Uniad, 2, 4, true, "mha");
    ras_parity(DecoderKind::Uniad, 0, 2, false, "mha");
}

/// The fused-attention variant the speed comparison times computes the same model.
#[test]
fn ras_reference_sdpa_variant_is_the_same_model() {
    ras_parity(DecoderKind::Ras, 2, 4, true, "sdpa");
}

// ----------------------------------------------------------------------------- metrics

#[test]
fn metrics_match_sklearn_and_mvtec_pro() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
    let dir = tempfile::tempdir().unwrap();
    // image level: 300 samples, scores on 40 levels (many ties)
    let m = 300;
    let labels: Vec<bool> = (0..m).map(|_| rng.random::<f64>() < 0.3).collect();
    let scores: Vec<f32> = labels
        .iter()
        .map(|&l| ((rng.random::<f64>() * 40.0 + if l { 8.0 } else { 0.0 }).floor() / 40.0) as f32)
        .collect();
    // pixel level: 6 maps of 48 x 40, random blobs (diagonal contacts included), one normal
    let (n, h, w) = (6usize, 48usize, 40usize);
    let mut masks = vec![vec![false; h * w]; n];
    for (i, mask) in masks.iter_mut().enumerate().skip(1) {
        for _ in 0..(3 + i * 2) {
            let (cy, cx, r) = (rng.random_range(0..h), rng.random_range(0..w), rng.random_range(0..5usize));
            for y in cy.saturating_sub(r)..(cy + r + 1).min(h) {
                for x in cx.saturating_sub(r)..(cx + r + 1).min(w) {
                    if rng.random::<f64>() < 0.7 {
                        mask[y * w + x] = true;
                    }
                }
            }
        }
    }
    let maps: Vec<Vec<f32>> = masks
        .iter()
        .map(|mk| {
            mk.iter()
                .map(|&a| ((rng.random::<f64>() * 64.0 + if a { 20.0 } else { 0.0 }).floor() / 64.0) as f32)
                .collect()
        })
        .collect();
    let t_scores = Tensor::from_slice(&scores);
    let t_labels = Tensor::from_slice(&labels.iter().map(|&l| l as u8).collect::<Vec<_>>());
    let t_maps = Tensor::from_slice(&maps.concat()).view([n as i64, h as i64, w as i64]);
    let t_masks = Tensor::from_slice(&masks.concat().iter().map(|&l| l as u8).collect::<Vec<_>>())
        .view([n as i64, h as i64, w as i64]);
    write(
        &dir.path().join("inputs.safetensors"),
        &[("scores", &t_scores), ("labels", &t_labels), ("maps", &t_maps), ("masks", &t_masks)],
    );
    write_args(dir.path(), serde_json::json!({"fpr_limit": 0.3}));
    reference("metrics", dir.path());
    let r: HashMap<String, f64> = serde_json::from_slice(&std::fs::read(dir.path().join("out.json")).unwrap()).unwrap();
    let image = ranking_metrics(&scores, &labels).unwrap();
    let map_refs: Vec<&[f32]> = maps.iter().map(Vec::as_slice).collect();
    let mask_refs: Vec<&[bool]> = masks.iter().map(Vec::as_slice).collect();
    let pixel = pixel_metrics(&map_refs, &mask_refs, h, w, 0.3).unwrap();
    for (name, ours) in [
        ("image_auroc", image.auroc),
        ("image_ap", image.average_precision),
        ("pixel_auroc", pixel.ranking.auroc),
        ("pixel_ap", pixel.ranking.average_precision),
        ("aupro", pixel.aupro),
    ] {
        let want = r[name];
        println!("{name}: ours {ours:.12} reference {want:.12}");
        assert!((ours - want).abs() < 1e-9, "{name}: ours {ours} vs reference {want}");
        // a case that is neither trivial (1.0) nor random ranking (AUROC 0.5)
        let floor = if name.ends_with("auroc") { 0.6 } else { 0.1 };
        assert!(want > floor && want < 0.99, "{name} {want}: the case should be neither trivial nor random");
    }
}

// ----------------------------------------------------------------------------- weights import

/// A checkpoint as the public code saves it (torch.save of {'state_dict': ...} with
/// DDP 'module.' and 'reconstruction.' prefixes, plus backbone tensors), converted by
/// tools/convert_weights.py, loads into our model with identical values.
#[test]
fn converted_public_checkpoint_loads_into_our_model() {
    let cfg = ModelConfig { encoder_layers: 1, decoder_layers: 2, ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let (vs, _) = random_model(&cfg, 5);
    std::fs::write(dir.path().join("weights.safetensors"), model_weights(&vs).unwrap()).unwrap();
    // The checkpoint is made from the reference model, whose names come from the public
    // state dict's table (strict load of our weights into it first), not from our names.
    write_args(
        dir.path(),
        serde_json::json!({
            "decoder": "ras", "encoder_layers": 1, "decoder_layers": 2, "neighbor_mask": cfg.neighbor_mask,
            "neighbor_size": cfg.neighbor_size, "hidden_dim": cfg.hidden_dim, "heads": cfg.heads,
            "ffn_dim": cfg.ffn_dim, "in_channels": 272, "grid": 14, "image_size": 224,
        }),
    );
    let ckpt = dir.path().join("ckpt_best.pth.tar");
    let conv = dir.path().join("converted.safetensors");
    run_python("tests/reference/ras_ref.py", &["make-checkpoint", dir.path().to_str().unwrap()]);
    let report =
        run_python("tools/convert_weights.py", &[ckpt.to_str().unwrap(), conv.to_str().unwrap(), "--part", "model"]);
    assert!(
        report.contains("module.backbone._conv_stem.weight"),
        "the backbone tensor is listed as not mapped:\n{report}"
    );
    assert!(report.contains("module.reconstruction.some_unknown.weight"), "unknown names are listed:\n{report}");
    let mut fresh = nn::VarStore::new(Device::Cpu);
    tch::manual_seed(99);
    let _m = Ras::new(&fresh.root(), &cfg, 272, (14, 14));
    load_model_weights(&mut fresh, &std::fs::read(&conv).unwrap()).unwrap();
    let (a, b) = (vs.variables(), fresh.variables());
    assert_eq!(a.len(), b.len());
    for (n, t) in &a {
        assert!(t.equal(&b[n]), "{n} differs after conversion");
    }

    // an efficientnet_pytorch state_dict saved with torch.save converts to a file the
    // backbone loader accepts (it refuses any mismatch)
    let eff = dir.path().join("efficientnet-b0.pth");
    let eff_st = dir.path().join("efficientnet-b0.safetensors");
    run_python("tests/reference/ras_ref.py", &["make-effnet", dir.path().to_str().unwrap()]);
    run_python("tools/convert_weights.py", &[eff.to_str().unwrap(), eff_st.to_str().unwrap()]);
    let cfg = BackboneConfig { arch: "efficientnet-b0".parse().unwrap(), weights: Some(eff_st), ..Default::default() };
    FeatureExtractor::new(&cfg, Device::Cpu).expect("converted efficientnet weights load");
}
