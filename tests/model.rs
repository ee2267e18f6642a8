//! RAS model: shapes, the neighbour mask, the gate/fusion/jitter formulas on hand-checked
//! tensors, gradient flow, and bit-exact checkpoint round trips.

use ras::config::{DecoderKind, ModelConfig};
use ras::model::layers::neighbor_mask;
use ras::model::{add_jitter, anomaly_map, image_scores, Ras, RasStep};
use ras::run::{load_model_weights, model_weights};
use tch::{nn, Device, Kind, Tensor};

fn small(te: usize, td: usize, decoder: DecoderKind) -> ModelConfig {
    ModelConfig {
        decoder,
        hidden_dim: 32,
        encoder_layers: te,
        decoder_layers: td,
        heads: 4,
        ffn_dim: 64,
        ..Default::default()
    }
}

fn build(cfg: &ModelConfig, seed: i64) -> (nn::VarStore, Ras) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Ras::new(&vs.root(), cfg, 24, (8, 8));
    (vs, m)
}

#[test]
fn output_shape_matches_input_for_several_depths_and_variants() {
    let x = Tensor::randn([3, 24, 8, 8], (Kind::Float, Device::Cpu));
    for (te, td) in [(0, 1), (1, 2), (2, 4), (0, 3)] {
        for kind in [DecoderKind::Ras, DecoderKind::GateOnly, DecoderKind::TransformerOnly, DecoderKind::Uniad] {
            let (_vs, m) = build(&small(te, td, kind), 0);
            let y = m.forward_t(&x, false);
            assert_eq!(y.size(), vec![3, 24, 8, 8], "T_e={te} T_d={td} {kind:?}");
            assert!(bool::try_from(y.isfinite().all()).unwrap());
            if kind != DecoderKind::Uniad {
                assert_eq!(m.forward_all(&x).len(), td);
            }
        }
    }
}

#[test]
fn parameter_names_follow_the_public_module_tree() {
    let (vs, _) = build(&small(2, 4, DecoderKind::Ras), 0);
    let vars = vs.variables();
    for name in [
        "input_proj.weight",
        "pos_embed.row_embed.weight",
        "pos_embed.col_embed.weight",
        "transformer.encoder.layers.1.self_attn.in_proj_weight",
        "transformer.encoder.layers.0.self_attn.out_proj.bias",
        "transformer.encoder.layers.0.linear1.weight",
        "transformer.encoder.layers.0.norm2.bias",
        "transformer.decoder.forward_layers.0.adaptive_gate.weight",
        "transformer.decoder.embed_layers.3.weight",
        "transformer.decoder.forward_layers.3.output_transBlock.attn.in_proj_bias",
        "transformer.decoder.forward_layers.2.update_proj.weight",
        "transformer.decoder.forward_layers.2.output_norm.weight",
        "transformer.decoder.forward_layers.3.output_proj.weight",
    ] {
        assert!(vars.contains_key(name), "missing {name}; have {:?}", vars.keys().collect::<Vec<_>>());
    }
    assert!(!vars.contains_key("transformer.decoder.forward_layers.0.adaptive_gate.bias"), "W_g has no bias");
    assert_eq!(vars["transformer.decoder.forward_layers.0.adaptive_gate.weight"].size(), vec![32, 64]);
    assert_eq!(vars["transformer.decoder.embed_layers.0.weight"].size(), vec![64, 32]);
}

/// Every name of the public code's state dict (the table in tests/reference/ras-state-dict.md,
/// a copy of ../shared/spec/ras-state-dict.md written from the public module tree) is in the
/// paper-size model with its shape, and the model has nothing else: a public checkpoint loads
/// with no renaming, and ours loads into the public code with strict=True.
#[test]
fn every_public_state_dict_name_and_shape_and_nothing_else() {
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/ras-state-dict.md")).unwrap();
    let mut want = std::collections::BTreeMap::new();
    for line in spec.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        let shape: Vec<i64> = cells[2]
            .trim_matches(|c| c == '(' || c == ')')
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().unwrap())
            .collect();
        want.insert(name, shape);
    }
    assert_eq!(want.len(), 108, "the spec's table lists 108 tensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = Ras::new(&vs.root(), &ModelConfig::default(), 272, (14, 14));
    let have: std::collections::BTreeMap<String, Vec<i64>> =
        vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect();
    let missing: Vec<_> = want.iter().filter(|(n, s)| have.get(*n) != Some(s)).collect();
    let extra: Vec<_> = have.keys().filter(|n| !want.contains_key(*n)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing or misshapen: {missing:?}\nnot in the public code: {extra:?}"
    );
}

/// The UniAD baseline's state dict is UniAD's (zhiyuanyou/UniAD,
/// models/reconstructions/uniad.py, read for this test): `UniAD` holds `pos_embed`
/// (`PositionEmbeddingLearned`: `row_embed`, `col_embed`, hidden/2 wide), `transformer`,
/// `input_proj`, `output_proj`; `Transformer` holds `encoder.layers[i]`
/// (`TransformerEncoderLayer`: `self_attn`, `linear1`, `linear2`, `norm1`, `norm2`; no
/// encoder norm when post-LN) and `decoder.layers[i]` (`TransformerDecoderLayer`:
/// `learned_embed` = Embedding(H*W, hidden), `self_attn`, `multihead_attn`, `linear1`,
/// `linear2`, `norm1`, `norm2`, `norm3`) plus `decoder.norm`. The names below are written
/// from that tree (UniAD's MVTec config: 4 + 4 layers, hidden 256, FFN 1024, 272 channels,
/// 14 x 14), not from our code.
#[test]
fn uniad_baseline_names_and_shapes_are_uniads() {
    let (h, f, c, t) = (256i64, 1024i64, 272i64, 196i64);
    let mut want: std::collections::BTreeMap<String, Vec<i64>> = std::collections::BTreeMap::new();
    let mut add = |n: String, s: &[i64]| {
        want.insert(n, s.to_vec());
    };
    let attn = |p: &str| -> Vec<(String, Vec<i64>)> {
        vec![
            (format!("{p}.in_proj_weight"), vec![3 * h, h]),
            (format!("{p}.in_proj_bias"), vec![3 * h]),
            (format!("{p}.out_proj.weight"), vec![h, h]),
            (format!("{p}.out_proj.bias"), vec![h]),
        ]
    };
    let ffn_norms = |p: &str, norms: usize| -> Vec<(String, Vec<i64>)> {
        let mut v = vec![
            (format!("{p}.linear1.weight"), vec![f, h]),
            (format!("{p}.linear1.bias"), vec![f]),
            (format!("{p}.linear2.weight"), vec![h, f]),
            (format!("{p}.linear2.bias"), vec![h]),
        ];
        for k in 1..=norms {
            v.push((format!("{p}.norm{k}.weight"), vec![h]));
            v.push((format!("{p}.norm{k}.bias"), vec![h]));
        }
        v
    };
    add("pos_embed.row_embed.weight".into(), &[14, h / 2]);
    add("pos_embed.col_embed.weight".into(), &[14, h / 2]);
    add("input_proj.weight".into(), &[h, c]);
    add("input_proj.bias".into(), &[h]);
    add("output_proj.weight".into(), &[c, h]);
    add("output_proj.bias".into(), &[c]);
    for i in 0..4 {
        let p = format!("transformer.encoder.layers.{i}");
        for (n, s) in attn(&format!("{p}.self_attn")).into_iter().chain(ffn_norms(&p, 2)) {
            add(n, &s);
        }
        let p = format!("transformer.decoder.layers.{i}");
        add(format!("{p}.learned_embed.weight"), &[t, h]);
        for (n, s) in attn(&format!("{p}.self_attn"))
            .into_iter()
            .chain(attn(&format!("{p}.multihead_attn")))
            .chain(ffn_norms(&p, 3))
        {
            add(n, &s);
        }
    }
    add("transformer.decoder.norm.weight".into(), &[h]);
    add("transformer.decoder.norm.bias".into(), &[h]);
    let cfg = ModelConfig { decoder: DecoderKind::Uniad, encoder_layers: 4, decoder_layers: 4, ..Default::default() };
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = Ras::new(&vs.root(), &cfg, c, (14, 14));
    let have: std::collections::BTreeMap<String, Vec<i64>> =
        vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect();
    let missing: Vec<_> = want.iter().filter(|(n, s)| have.get(*n) != Some(s)).collect();
    let extra: Vec<_> = have.keys().filter(|n| !want.contains_key(*n)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing or misshapen: {missing:?}\nnot in UniAD: {extra:?}");
}

#[test]
fn neighbor_mask_matches_its_definition() {
    let (h, w) = (14i64, 14i64);
    let m = Vec::<f32>::try_from(neighbor_mask((h, w), [7, 7]).view(-1)).unwrap();
    let n = (h * w) as usize;
    for q in 0..n {
        let (h1, w1) = ((q as i64) / w, (q as i64) % w);
        for k in 0..n {
            let (h2, w2) = ((k as i64) / w, (k as i64) % w);
            let inside = (h1 - h2).abs() <= 3 && (w1 - w2).abs() <= 3;
            let v = m[q * n + k];
            assert_eq!(v == f32::NEG_INFINITY, inside, "query ({h1},{w1}) key ({h2},{w2})");
            assert!(v == 0.0 || v == f32::NEG_INFINITY);
        }
    }
    let row_count = |q: usize| m[q * n..(q + 1) * n].iter().filter(|v| v.is_infinite()).count();
    assert_eq!(row_count(0), 16); // corner: 4 x 4
    assert_eq!(row_count(7 * 14 + 7), 49); // interior: 7 x 7
    assert_eq!(row_count(7), 28); // top edge: 4 x 7
}

/// Gate and fusion on a 1-token, 2-channel step with hand-set weights (gate-only variant,
/// so that the attention block does not enter):
///   c = [0.5, -0.5], l = [1, 3], W_g = [[1,0,0,0],[0,0,0,1]] -> W_g [c; l] = [0.5, 3]
///   a = sigmoid([0.5, 3]) = [0.622459, 0.952574];  l_a = a * l = [0.622459, 2.857723]
///   W_u = [[2,0],[0,1]], b_u = [1, 0] -> W_u l + b = [3, 3]
///   l* = ([3, 3] + l_a) / 2 = [1.811229, 2.928862]
#[test]
fn gate_and_fusion_formulas_by_hand() {
    let cfg = ModelConfig { decoder: DecoderKind::GateOnly, hidden_dim: 2, heads: 1, ffn_dim: 2, ..Default::default() };
    let mut vs = nn::VarStore::new(Device::Cpu);
    let step = RasStep::new(&(vs.root() / "s"), 0, &cfg, 1, 3);
    let set = |vs: &mut nn::VarStore, name: &str, v: &[f32], shape: &[i64]| {
        tch::no_grad(|| {
            vs.variables_
                .lock()
                .unwrap()
                .named_variables
                .get_mut(name)
                .unwrap()
                .copy_(&Tensor::from_slice(v).view(shape))
        });
    };
    set(&mut vs, "s.embed_layers.0.weight", &[0.5, -0.5], &[1, 2]);
    set(&mut vs, "s.forward_layers.0.adaptive_gate.weight", &[1., 0., 0., 0., 0., 0., 0., 1.], &[2, 4]);
    set(&mut vs, "s.forward_layers.0.update_proj.weight", &[2., 0., 0., 1.], &[2, 2]);
    set(&mut vs, "s.forward_layers.0.update_proj.bias", &[1., 0.], &[2]);
    let l = Tensor::from_slice(&[1f32, 3.]).view([1, 1, 2]);
    let pos = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
    let out = step.forward(&l, &pos, None);
    let close = |t: &Tensor, want: &[f64]| {
        let got = Vec::<f64>::try_from(t.to_kind(Kind::Double).view(-1)).unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "got {got:?} want {want:?}");
        }
    };
    close(out.gate.as_ref().unwrap(), &[0.622459, 0.952574]);
    close(&out.gated, &[0.622459, 2.857723]);
    close(&out.fused, &[1.811229, 2.928862]);
    // LN over 2 values with weight 1, bias 0: (x - mean) / sqrt(var + 1e-5) ~ [-1, +1].
    close(&out.latent, &[-0.999984, 0.999984]);
}

/// Jitter: t' = t + eps * (||t|| / C) * s.  t = [3, 4] (||t|| = 5, C = 2), eps = [1, -1],
/// s = 2 -> t' = [3 + 5, 4 - 5] = [8, -1].
#[test]
fn jitter_formula_by_hand() {
    let t = Tensor::from_slice(&[3f32, 4.]).view([1, 2, 1, 1]);
    let eps = Tensor::from_slice(&[1f32, -1.]).view([1, 2, 1, 1]);
    let j = Vec::<f32>::try_from(add_jitter(&t, &eps, 2.0).view(-1)).unwrap();
    assert_eq!(j, vec![8.0, -1.0]);
}

/// Map and score: a 2x2 difference map of [[0, 3], [4, 0]] over 1 channel; upsampled to
/// 32 px with align_corners = true the corners keep their values, and the 16x16 average
/// pool max is attained near the corner that holds 4.
#[test]
fn anomaly_map_and_score() {
    let org = Tensor::zeros([1, 1, 2, 2], (Kind::Float, Device::Cpu));
    let rec = Tensor::from_slice(&[0f32, -3., 4., 0.]).view([1, 1, 2, 2]);
    let map = anomaly_map(&rec, &org, 32);
    assert_eq!(map.size(), vec![1, 1, 32, 32]);
    let at = |y: i64, x: i64| map.double_value(&[0, 0, y, x]);
    assert!((at(0, 31) - 3.0).abs() < 1e-6 && (at(31, 0) - 4.0).abs() < 1e-6 && at(0, 0).abs() < 1e-6);
    let score = image_scores(&map).double_value(&[0]);
    let pooled_corner = map.narrow(2, 16, 16).narrow(3, 0, 16).mean(Kind::Double).double_value(&[]);
    assert!((score - pooled_corner).abs() < 1e-5, "{score} vs {pooled_corner}");
}

#[test]
fn only_the_last_output_projection_gets_gradient() {
    let (vs, m) = build(&small(1, 3, DecoderKind::Ras), 1);
    let x = Tensor::randn([2, 24, 8, 8], (Kind::Float, Device::Cpu));
    let loss = m.forward_t(&(&x + 0.1), true).mse_loss(&x, tch::Reduction::Mean);
    loss.backward();
    let vars = vs.variables();
    let grad_norm = |n: &str| {
        let g = vars[n].grad();
        if g.defined() {
            g.norm().double_value(&[])
        } else {
            0.0
        }
    };
    for t in 0..2 {
        assert_eq!(grad_norm(&format!("transformer.decoder.forward_layers.{t}.output_proj.weight")), 0.0);
        assert!(grad_norm(&format!("transformer.decoder.forward_layers.{t}.adaptive_gate.weight")) > 0.0);
    }
    assert!(grad_norm("transformer.decoder.forward_layers.2.output_proj.weight") > 0.0);
    assert!(grad_norm("transformer.encoder.layers.0.self_attn.in_proj_weight") > 0.0);
}

#[test]
fn checkpoint_round_trip_is_bit_exact() {
    let cfg = small(2, 2, DecoderKind::Ras);
    let (vs, m) = build(&cfg, 3);
    let (mut vs2, m2) = build(&cfg, 4);
    let x = Tensor::randn([2, 24, 8, 8], (Kind::Float, Device::Cpu));
    assert!(!m.forward_t(&x, false).equal(&m2.forward_t(&x, false)), "different seeds give different models");
    let bytes = model_weights(&vs).unwrap();
    load_model_weights(&mut vs2, &bytes).unwrap();
    for (name, t) in vs.variables() {
        assert!(t.equal(&vs2.variables()[&name]), "{name}");
    }
    assert!(m.forward_t(&x, false).equal(&m2.forward_t(&x, false)));
    // A checkpoint of another shape is refused, naming the tensors.
    let (mut vs3, _) = build(&small(1, 2, DecoderKind::Ras), 0);
    let err = ras::error_text::chain(&load_model_weights(&mut vs3, &bytes).unwrap_err());
    assert!(err.contains("unexpected transformer.encoder.layers.1"), "{err}");
}
