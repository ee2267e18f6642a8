//! The model's FLOP count (multiply-adds counted as 2), from its matrix products: what
//! `ras bench` divides by time to report achieved TFLOP/s, and what `ras plan` prices a
//! run with before measured throughputs exist. Elementwise ops, norms and softmax are
//! left out (a few percent), as FLOP counters such as torch.utils.flop_counter do.

use crate::config::{DecoderKind, ModelConfig};

/// Forward and backward FLOPs of one training image with `channels` input features on a
/// `grid` x `grid` token grid. The backward pass costs twice the forward for every
/// product whose input and weight both need gradients; the input projection needs no
/// input gradient (the features are data), and the output projections of decoder steps
/// before the last get no gradient at all (the loss is on the last step only).
/// At the paper's shapes (272 channels, 14 x 14, hidden 256, FFN 1024, T_e = 2, T_d = 4):
/// 7.40 GFLOP.
pub fn train_flops_per_image(m: &ModelConfig, channels: i64, grid: i64) -> f64 {
    let (c, f, k, n) = (m.hidden_dim as f64, m.ffn_dim as f64, channels as f64, (grid * grid) as f64);
    let linear = |fan_in: f64, fan_out: f64| 2.0 * n * fan_in * fan_out;
    // Q, K, V and output projections, then scores and weighted values over n keys.
    let attn = 4.0 * linear(c, c) + 2.0 * 2.0 * n * n * c;
    let ffn = linear(c, f) + linear(f, c);
    let input_proj = linear(k, c);
    let output_proj = linear(c, k);
    let encoder = m.encoder_layers as f64 * (attn + ffn);
    let t = m.decoder_layers as f64;
    let (decoder, unused_outputs) = match m.decoder {
        DecoderKind::Ras | DecoderKind::GateOnly | DecoderKind::TransformerOnly => {
            let gate = if m.decoder == DecoderKind::TransformerOnly { 0.0 } else { linear(2.0 * c, c) };
            let block = if m.decoder == DecoderKind::GateOnly { 0.0 } else { attn + ffn };
            let step = gate + block + linear(c, c) + output_proj;
            (t * step, (t - 1.0).max(0.0) * output_proj)
        }
        // Self-attention, cross-attention and FFN per layer; one output projection.
        DecoderKind::Uniad => (t * (2.0 * attn + ffn) + output_proj, 0.0),
    };
    let forward = input_proj + encoder + decoder;
    3.0 * forward - input_proj - 2.0 * unused_outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_shapes_cost_7_40_gflop_per_training_image() {
        let m = ModelConfig::default();
        assert_eq!((m.hidden_dim, m.ffn_dim, m.encoder_layers, m.decoder_layers), (256, 1024, 2, 4));
        let g = train_flops_per_image(&m, 272, 14) / 1e9;
        assert!((g - 7.40).abs() < 0.005, "{g}");
    }

    /// One linear layer's worth, counted by hand: T_e = 0, T_d = 1, gate-only decoder:
    /// input (k->c), gate (2c->c), update (c->c), output (c->k) on n tokens.
    #[test]
    fn small_gate_only_model_by_hand() {
        let m = ModelConfig {
            hidden_dim: 8,
            ffn_dim: 16,
            encoder_layers: 0,
            decoder_layers: 1,
            decoder: DecoderKind::GateOnly,
            ..Default::default()
        };
        let (n, k, c) = (4.0, 3.0, 8.0);
        let fwd = 2.0 * n * (k * c + 2.0 * c * c + c * c + c * k);
        let want = 3.0 * fwd - 2.0 * n * k * c;
        assert_eq!(train_flops_per_image(&m, 3, 2), want);
    }
}
