//! Building blocks shared by the RAS decoder and the UniAD-style baseline, with
//! torch.nn semantics and parameter names (`in_proj_weight`, `out_proj.weight`, `linear1`,
//! `norm1`, ...) so checkpoints of the public PyTorch code map one to one.
//! Dropout (`drop`, training only) sits where UniAD's layers put it: on the attention
//! weights, on each attention's output before its residual sum, after the FFN's
//! activation and on the FFN's output before its residual sum.

use super::dropout::{maybe, Dropout};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Xavier-uniform bound for a (fan_out x fan_in) matrix.
fn xavier(fan_in: i64, fan_out: i64) -> nn::Init {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    nn::Init::Uniform { lo: -bound, up: bound }
}

/// Linear layer with Xavier-uniform weight and zero bias (spec section 5).
pub fn linear(p: nn::Path, fan_in: i64, fan_out: i64, bias: bool) -> nn::Linear {
    nn::linear(
        p,
        fan_in,
        fan_out,
        nn::LinearConfig { ws_init: xavier(fan_in, fan_out), bs_init: Some(nn::Init::Const(0.0)), bias },
    )
}

pub fn layer_norm(p: nn::Path, dim: i64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], Default::default())
}

/// torch.nn.MultiheadAttention (batch-first tensors here; the math is identical).
#[derive(Debug)]
pub struct MultiheadAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    heads: i64,
}

impl MultiheadAttention {
    pub fn new(p: nn::Path, dim: i64, heads: i64) -> Self {
        // torch initialises the packed 3C x C in_proj as one Xavier matrix (fan_out = 3C).
        let in_proj_weight = p.var("in_proj_weight", &[3 * dim, dim], xavier(dim, 3 * dim));
        let in_proj_bias = p.var("in_proj_bias", &[3 * dim], nn::Init::Const(0.0));
        let out_proj = linear(&p / "out_proj", dim, dim, true);
        Self { in_proj_weight, in_proj_bias, out_proj, heads }
    }

    /// query (B, Nq, C), key/value (B, Nk, C), additive mask (Nq, Nk) -> (B, Nq, C).
    /// `drop`: dropout on the attention weights (after the softmax), as torch's
    /// `MultiheadAttention(dropout=p)` in training.
    pub fn forward(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        mask: Option<&Tensor>,
        drop: Option<&Dropout>,
    ) -> Tensor {
        let (b, nq, c) = query.size3().expect("query is (B, N, C)");
        let nk = key.size()[1];
        let d = c / self.heads;
        let w = self.in_proj_weight.chunk(3, 0);
        let bias = self.in_proj_bias.chunk(3, 0);
        let split = |x: Tensor, n: i64| x.view([b, n, self.heads, d]).transpose(1, 2);
        let q = split(query.linear(&w[0], Some(&bias[0])), nq);
        let k = split(key.linear(&w[1], Some(&bias[1])), nk);
        let v = split(value.linear(&w[2], Some(&bias[2])), nk);
        let out = match drop.filter(|d| d.p() > 0.0) {
            // The weights spelled out, so that the dropout mask is ours (seeded per sample).
            Some(dr) => {
                let scores = (q * (1.0 / (d as f64).sqrt())).matmul(&k.transpose(-2, -1));
                let scores = match mask {
                    Some(m) => scores + m,
                    None => scores,
                };
                // Softmax in fp32 whatever autocast computes the products in, as torch's autocast does.
                dr.apply(&scores.softmax(-1, Kind::Float)).matmul(&v)
            }
            None => Tensor::scaled_dot_product_attention(&q, &k, &v, mask, 0.0, false, None, false),
        };
        self.out_proj.forward(&out.transpose(1, 2).reshape([b, nq, c]))
    }
}

/// FFN: Linear(C -> F), ReLU, Linear(F -> C), named linear1 / linear2 as in torch.
#[derive(Debug)]
pub struct FeedForward {
    linear1: nn::Linear,
    linear2: nn::Linear,
}

impl FeedForward {
    pub fn new(p: &nn::Path, dim: i64, ffn_dim: i64) -> Self {
        Self { linear1: linear(p / "linear1", dim, ffn_dim, true), linear2: linear(p / "linear2", ffn_dim, dim, true) }
    }
    /// `drop`: dropout after the ReLU (UniAD's `self.dropout`).
    pub fn forward(&self, x: &Tensor, drop: Option<&Dropout>) -> Tensor {
        self.linear2.forward(&maybe(drop, self.linear1.forward(x).relu()))
    }
}

/// Post-LN encoder layer: x = LN1(x + MHA(x+pos, x+pos, x, mask)); x = LN2(x + FFN(x)),
/// with UniAD's dropout1 / dropout2 on the attention and FFN outputs when training.
#[derive(Debug)]
pub struct EncoderLayer {
    self_attn: MultiheadAttention,
    ffn: FeedForward,
    norm1: nn::LayerNorm,
    norm2: nn::LayerNorm,
}

impl EncoderLayer {
    pub fn new(p: nn::Path, dim: i64, heads: i64, ffn_dim: i64) -> Self {
        Self {
            self_attn: MultiheadAttention::new(&p / "self_attn", dim, heads),
            ffn: FeedForward::new(&p, dim, ffn_dim),
            norm1: layer_norm(&p / "norm1", dim),
            norm2: layer_norm(&p / "norm2", dim),
        }
    }
    pub fn forward(&self, x: &Tensor, pos: &Tensor, mask: Option<&Tensor>, drop: Option<&Dropout>) -> Tensor {
        let qk = x + pos;
        let x = self.norm1.forward(&(x + maybe(drop, self.self_attn.forward(&qk, &qk, x, mask, drop))));
        self.norm2.forward(&(&x + maybe(drop, self.ffn.forward(&x, drop))))
    }
}

/// Learned row/column position embedding (UniAD's PositionEmbeddingLearned).
/// Token (h, w) gets concat(col_embed[w], row_embed[h]): column half first.
#[derive(Debug)]
pub struct PositionEmbedding {
    row_embed: Tensor,
    col_embed: Tensor,
}

impl PositionEmbedding {
    pub fn new(p: nn::Path, grid: (i64, i64), dim: i64) -> Self {
        let u01 = nn::Init::Uniform { lo: 0.0, up: 1.0 };
        Self {
            row_embed: (&p / "row_embed").var("weight", &[grid.0, dim / 2], u01),
            col_embed: (&p / "col_embed").var("weight", &[grid.1, dim / 2], u01),
        }
    }
    /// (H*W, C), row-major over (h, w).
    pub fn forward(&self) -> Tensor {
        let (h, half) = self.row_embed.size2().expect("2-d");
        let w = self.col_embed.size()[0];
        let col = self.col_embed.unsqueeze(0).expand([h, w, half], false);
        let row = self.row_embed.unsqueeze(1).expand([h, w, half], false);
        Tensor::cat(&[col, row], -1).reshape([h * w, 2 * half])
    }
}

/// Additive attention mask (H*W, H*W): -inf where key token lies in the window of size
/// `size` centred on the query token (clipped at the borders, the token itself included),
/// 0 elsewhere. Exactly UniAD's `generate_mask`.
pub fn neighbor_mask(grid: (i64, i64), size: [i64; 2]) -> Tensor {
    let (h, w) = grid;
    let n = (h * w) as usize;
    let mut m = vec![0f32; n * n];
    for h1 in 0..h {
        for w1 in 0..w {
            let q = (h1 * w + w1) as usize;
            let (h_lo, h_hi) = ((h1 - size[0] / 2).max(0), (h1 + size[0] / 2 + 1).min(h));
            let (w_lo, w_hi) = ((w1 - size[1] / 2).max(0), (w1 + size[1] / 2 + 1).min(w));
            for h2 in h_lo..h_hi {
                for w2 in w_lo..w_hi {
                    m[q * n + (h2 * w + w2) as usize] = f32::NEG_INFINITY;
                }
            }
        }
    }
    Tensor::from_slice(&m).view([n as i64, n as i64]).to_kind(Kind::Float)
}
