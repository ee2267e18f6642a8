//! UniAD-style baseline decoder (paper Table 6): plain post-LN transformer decoder layers
//! with a learned query per layer, as in UniAD's TransformerDecoderLayer:
//!   tgt = LN1(q + MHA(q + pos, memory + pos, memory))        q = learned_embed
//!   tgt = LN2(tgt + MHA(tgt + pos, out + pos, out))          out = previous layer's output
//!   tgt = LN3(tgt + FFN(tgt))
//! and a final LayerNorm `transformer.decoder.norm`. In training, `model.dropout` applies
//! where UniAD's layer does: the attention weights of both attentions, their outputs
//! (dropout1, dropout2), inside the FFN and on its output (dropout3).
//!
//! Masks: UniAD's own config (`neighbor_mask.mask: [True, True, True]`, for the encoder and
//! both decoder attentions) masks the decoder too, so the baseline takes the encoder's
//! neighbour mask in both of its attentions whenever `model.neighbor_mask` is on. This is
//! what UniAD trains; without it a learned query can copy its own token through the
//! attention, the "identical shortcut" UniAD's mask exists to block.

use super::dropout::{maybe, Dropout};
use super::layers::{layer_norm, FeedForward, MultiheadAttention};
use crate::config::ModelConfig;
use tch::nn::{self, Module};
use tch::Tensor;

#[derive(Debug)]
struct UniadLayer {
    learned_embed: Tensor,
    self_attn: MultiheadAttention,
    multihead_attn: MultiheadAttention,
    ffn: FeedForward,
    norm1: nn::LayerNorm,
    norm2: nn::LayerNorm,
    norm3: nn::LayerNorm,
}

#[derive(Debug)]
pub struct UniadDecoder {
    layers: Vec<UniadLayer>,
    norm: nn::LayerNorm,
}

impl UniadDecoder {
    pub fn new(p: &nn::Path, cfg: &ModelConfig, tokens: i64) -> Self {
        let c = cfg.hidden_dim;
        let layers = (0..cfg.decoder_layers)
            .map(|i| {
                let l = p / "layers" / i;
                UniadLayer {
                    learned_embed: (&l / "learned_embed").var(
                        "weight",
                        &[tokens, c],
                        nn::Init::Randn { mean: 0.0, stdev: 1.0 },
                    ),
                    self_attn: MultiheadAttention::new(&l / "self_attn", c, cfg.heads),
                    multihead_attn: MultiheadAttention::new(&l / "multihead_attn", c, cfg.heads),
                    ffn: FeedForward::new(&l, c, cfg.ffn_dim),
                    norm1: layer_norm(&l / "norm1", c),
                    norm2: layer_norm(&l / "norm2", c),
                    norm3: layer_norm(&l / "norm3", c),
                }
            })
            .collect();
        Self { layers, norm: layer_norm(p / "norm", c) }
    }

    /// memory: encoder output (B, N, C); returns (B, N, C). `mask`: the neighbour mask
    /// (UniAD's mask_dec1 and mask_dec2 are the encoder's), or None; `drop`: training dropout.
    pub fn forward(&self, memory: &Tensor, pos: &Tensor, mask: Option<&Tensor>, drop: Option<&Dropout>) -> Tensor {
        let b = memory.size()[0];
        let mem_k = memory + pos;
        let mut out = memory.shallow_clone();
        for l in &self.layers {
            let q = l.learned_embed.unsqueeze(0).expand([b, -1, -1], false);
            let a = l.self_attn.forward(&(&q + pos), &mem_k, memory, mask, drop);
            let t = l.norm1.forward(&(&q + maybe(drop, a)));
            let a = l.multihead_attn.forward(&(&t + pos), &(&out + pos), &out, mask, drop);
            let t = l.norm2.forward(&(&t + maybe(drop, a)));
            out = l.norm3.forward(&(&t + maybe(drop, l.ffn.forward(&t, drop))));
        }
        self.norm.forward(&out)
    }
}
