//! RAS: Reconstruction as Sequence (spec sections 3-5).
//!
//! Parameter paths mirror the public code's module tree (models/reconstructions/ras.py;
//! the table is ../shared/spec/ras-state-dict.md, copied to tests/reference/), so its
//! checkpoints load with no renaming:
//! `input_proj`, `pos_embed.{row,col}_embed`, `transformer.encoder.layers.{i}.*`,
//! `transformer.decoder.embed_layers.{t}` (the step's context embedding c_t),
//! `transformer.decoder.forward_layers.{t}.{adaptive_gate, output_transBlock.{attn, linear1,
//! linear2, norm1, norm2}, update_proj, output_norm, output_proj}` and, for the UniAD-style
//! baseline, `transformer.decoder.layers.{i}.*`, `transformer.decoder.norm`, `output_proj`.
//! Checkpoints written with the names ras used before are renamed when loaded
//! (`super::legacy`).

use super::dropout::{maybe, Dropout};
use super::layers::{
    layer_norm, linear, neighbor_mask, EncoderLayer, FeedForward, MultiheadAttention, PositionEmbedding,
};
use super::uniad::UniadDecoder;
use crate::config::{DecoderKind, ModelConfig};
use tch::nn::{self, Module};
use tch::Tensor;

/// One RASFormer step t (spec section 4), with the Table 4 ablations as switches.
#[derive(Debug)]
pub struct RasStep {
    /// c_t: the step's context embedding, (N, C), N(0, 1) init
    /// (`transformer.decoder.embed_layers.{t}.weight`).
    context: Tensor,
    /// W_g: Linear(2C -> C, no bias) over [c_t ; l_{t-1}]. Absent in "transformer only".
    adaptive_gate: Option<nn::Linear>,
    /// Cross-attention block (query c_t, memory l_a). Absent in "gate only".
    block: Option<CrossBlock>,
    update_proj: nn::Linear,
    output_norm: nn::LayerNorm,
    output_proj: nn::Linear,
}

/// The step's transformer block (`output_transBlock`).
#[derive(Debug)]
struct CrossBlock {
    attn: MultiheadAttention,
    ffn: FeedForward,
    norm1: nn::LayerNorm,
    norm2: nn::LayerNorm,
}

/// What one step produces: the new latent l_t and its output projection o_t, plus the
/// intermediate values (gate a, gated latent l_a, fused l*) for inspection and tests.
pub struct StepOutput {
    pub gate: Option<Tensor>,
    pub gated: Tensor,
    pub fused: Tensor,
    pub latent: Tensor,
    pub output: Tensor,
}

impl RasStep {
    /// Step `t` of the decoder at path `dec` (`transformer.decoder`): its layers under
    /// `dec.forward_layers.{t}`, its context embedding at `dec.embed_layers.{t}`, as in
    /// the public code. (Variables are created in the same order as before the public
    /// names, so a seed gives the same initial weights.)
    pub fn new(dec: &nn::Path, t: usize, cfg: &ModelConfig, tokens: i64, out_channels: i64) -> Self {
        let c = cfg.hidden_dim;
        let p = dec / "forward_layers" / t;
        let context = (dec / "embed_layers" / t).var("weight", &[tokens, c], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let adaptive_gate =
            (cfg.decoder != DecoderKind::TransformerOnly).then(|| linear(&p / "adaptive_gate", 2 * c, c, false));
        let blk = &p / "output_transBlock";
        let block = (cfg.decoder != DecoderKind::GateOnly).then(|| CrossBlock {
            attn: MultiheadAttention::new(&blk / "attn", c, cfg.heads),
            ffn: FeedForward::new(&blk, c, cfg.ffn_dim),
            norm1: layer_norm(&blk / "norm1", c),
            norm2: layer_norm(&blk / "norm2", c),
        });
        Self {
            context,
            adaptive_gate,
            block,
            update_proj: linear(&p / "update_proj", c, c, true),
            output_norm: layer_norm(&p / "output_norm", c),
            output_proj: linear(&p / "output_proj", c, out_channels, true),
        }
    }

    /// latent l_{t-1}: (B, N, C); pos: (N, C); `drop`: training dropout in the block, where
    /// a transformer layer applies it (attention weights, attention output, FFN).
    pub fn forward(&self, latent: &Tensor, pos: &Tensor, drop: Option<&Dropout>) -> StepOutput {
        let b = latent.size()[0];
        let ctx = self.context.unsqueeze(0).expand([b, -1, -1], false);
        // a = sigmoid(W_g [c ; l]); l_a = a * l.  Transformer-only: l_a = l.
        let gate = self.adaptive_gate.as_ref().map(|g| g.forward(&Tensor::cat(&[&ctx, latent], -1)).sigmoid());
        let gated = match &gate {
            Some(a) => a * latent,
            None => latent.shallow_clone(),
        };
        // l_T = Block(query c, memory l_a).  Gate-only: l_T = l_a (no attention, no FFN).
        let transformed = match &self.block {
            Some(blk) => {
                let attn = blk.attn.forward(&(&ctx + pos), &(&gated + pos), &gated, None, drop);
                let y = blk.norm1.forward(&(&ctx + maybe(drop, attn)));
                blk.norm2.forward(&(&y + maybe(drop, blk.ffn.forward(&y, drop))))
            }
            None => gated.shallow_clone(),
        };
        let fused = (self.update_proj.forward(latent) + transformed) / 2.0;
        let latent = self.output_norm.forward(&fused);
        let output = self.output_proj.forward(&latent);
        StepOutput { gate, gated, fused, latent, output }
    }
}

/// The decoder: RASFormer steps, or the UniAD baseline.
#[derive(Debug)]
enum Decoder {
    Ras(Vec<RasStep>),
    Uniad { decoder: UniadDecoder, output_proj: nn::Linear },
}

/// Reconstruction model: f_org (B, C_org, H, W) -> f_rec (B, C_org, H, W).
#[derive(Debug)]
pub struct Ras {
    input_proj: nn::Linear,
    pos_embed: PositionEmbedding,
    encoder: Vec<EncoderLayer>,
    decoder: Decoder,
    /// Encoder attention mask, a buffer (not a parameter), on the model's device.
    mask: Option<Tensor>,
    grid: (i64, i64),
}

impl Ras {
    /// `in_channels` is C_org (272 for B4), `grid` the token grid (14 x 14 at 224 px).
    pub fn new(p: &nn::Path, cfg: &ModelConfig, in_channels: i64, grid: (i64, i64)) -> Self {
        let c = cfg.hidden_dim;
        let tokens = grid.0 * grid.1;
        let input_proj = linear(p / "input_proj", in_channels, c, true);
        let pos_embed = PositionEmbedding::new(p / "pos_embed", grid, c);
        let t = p / "transformer";
        let encoder = (0..cfg.encoder_layers)
            .map(|i| EncoderLayer::new(&t / "encoder" / "layers" / i, c, cfg.heads, cfg.ffn_dim))
            .collect();
        let dec = &t / "decoder";
        let decoder = match cfg.decoder {
            DecoderKind::Uniad => Decoder::Uniad {
                decoder: UniadDecoder::new(&dec, cfg, tokens),
                output_proj: linear(p / "output_proj", c, in_channels, true),
            },
            _ => {
                Decoder::Ras((0..cfg.decoder_layers).map(|t| RasStep::new(&dec, t, cfg, tokens, in_channels)).collect())
            }
        };
        let mask = cfg.neighbor_mask.then(|| neighbor_mask(grid, cfg.neighbor_size).to_device(p.device()));
        Self { input_proj, pos_embed, encoder, decoder, mask, grid }
    }

    /// Encoder output l_0 and the position embedding, from feature tokens (B, N, C_org).
    fn encode(&self, tokens: &Tensor, drop: Option<&Dropout>) -> (Tensor, Tensor) {
        let pos = self.pos_embed.forward();
        let mut x = self.input_proj.forward(tokens);
        for layer in &self.encoder {
            x = layer.forward(&x, &pos, self.mask.as_ref(), drop);
        }
        (x, pos)
    }

    /// Reconstruction f_rec of (already jittered, if training) features (B, C_org, H, W),
    /// without dropout: `train` changes nothing in the math (kept for the tch `ModuleT`
    /// convention). Training with `model.dropout` goes through [`Self::forward_dropout`],
    /// which needs the batch's sample ids for its masks.
    pub fn forward_t(&self, features: &Tensor, _train: bool) -> Tensor {
        self.forward_dropout(features, None)
    }

    /// f_rec with training dropout `drop` (None: none, as in eval).
    pub fn forward_dropout(&self, features: &Tensor, drop: Option<&Dropout>) -> Tensor {
        self.forward_all_dropout(features, drop).pop().expect("at least one decoder output")
    }

    /// Every decoder step's output o_t as (B, C_org, H, W); the last one is f_rec.
    /// The outputs of steps before the last get no gradient from the loss.
    pub fn forward_all(&self, features: &Tensor) -> Vec<Tensor> {
        self.forward_all_dropout(features, None)
    }

    /// [`Self::forward_all`] with training dropout `drop`.
    pub fn forward_all_dropout(&self, features: &Tensor, drop: Option<&Dropout>) -> Vec<Tensor> {
        let (b, ch, h, w) = features.size4().expect("features are (B, C, H, W)");
        assert_eq!((h, w), self.grid, "feature grid does not match the model's");
        let tokens = features.flatten(2, 3).transpose(1, 2); // (B, N, C_org)
        let (mut latent, pos) = self.encode(&tokens, drop);
        let to_map = |o: &Tensor| o.transpose(1, 2).reshape([b, ch, h, w]);
        match &self.decoder {
            Decoder::Ras(steps) => steps
                .iter()
                .map(|step| {
                    let out = step.forward(&latent, &pos, drop);
                    latent = out.latent;
                    to_map(&out.output)
                })
                .collect(),
            Decoder::Uniad { decoder, output_proj } => {
                vec![to_map(&output_proj.forward(&decoder.forward(&latent, &pos, self.mask.as_ref(), drop)))]
            }
        }
    }
}

/// Feature jitter (spec section 2): t' = t + eps * (||t|| / C) * scale, per token, with
/// eps given (B, C, H, W) so that callers control the random stream (per-sample seeds).
pub fn add_jitter(features: &Tensor, noise: &Tensor, scale: f64) -> Tensor {
    let c = features.size()[1] as f64;
    let norm = features.norm_scalaropt_dim(2, [1i64].as_slice(), true);
    features + noise * (norm / c) * scale
}

/// Anomaly map S = sqrt(sum_c (f_rec - f_org)^2), (B, 1, H, W), and its upsampling to
/// (B, 1, out, out), bilinear with align_corners = true (spec section 6).
pub fn anomaly_map(f_rec: &Tensor, f_org: &Tensor, out_size: i64) -> Tensor {
    let s = (f_rec - f_org).square().sum_dim_intlist([1i64].as_slice(), true, tch::Kind::Float).sqrt();
    s.upsample_bilinear2d([out_size, out_size], true, None, None)
}

/// Image score: average pool 16x16 (stride 1, no padding) over the upsampled map, then max.
pub fn image_scores(map: &Tensor) -> Tensor {
    map.avg_pool2d([16, 16], [1, 1], [0, 0], false, true, None::<i64>).amax([1i64, 2, 3].as_slice(), false)
}
