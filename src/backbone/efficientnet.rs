//! EfficientNet in the layout of the `efficientnet_pytorch` package (0.7.1): the same
//! module names (`_conv_stem`, `_bn0`, `_blocks.{i}._expand_conv`, `_depthwise_conv`,
//! `_se_reduce`, `_se_expand`, `_project_conv`, `_bn1`, `_bn2`, `_conv_head`, `_fc`), the
//! same channel/depth rounding, and the same TensorFlow-style *static* "same" padding,
//! computed from the package's reference image size (380 for B4) whatever the actual
//! input size, exactly as `EfficientNet.from_pretrained` builds it. Always in eval mode.

use crate::config::BackboneArch;
use tch::{nn, Tensor};

/// Base block arguments (efficientnet_pytorch `blocks_args`): repeats, kernel, stride,
/// expand ratio, in and out filters; SE ratio 0.25 everywhere.
const BASE_BLOCKS: [(usize, i64, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];
const BN_EPS: f64 = 1e-3;

/// Width/depth multipliers and reference resolution of one EfficientNet variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EfficientNetSpec {
    pub name: &'static str,
    pub width: f64,
    pub depth: f64,
    /// The package's image_size for the variant; static padding is computed from it.
    pub reference_size: i64,
}

impl EfficientNetSpec {
    /// The variant named like efficientnet_pytorch ("efficientnet-b4"); None if unknown.
    pub fn from_arch(arch: &str) -> Option<Self> {
        arch.parse::<BackboneArch>().ok().map(Self::of)
    }

    /// efficientnet_pytorch's compound-scaling coefficients of a variant.
    pub fn of(arch: BackboneArch) -> Self {
        let (width, depth, reference_size) = match arch {
            BackboneArch::B0 => (1.0, 1.0, 224),
            BackboneArch::B1 => (1.0, 1.1, 240),
            BackboneArch::B2 => (1.1, 1.2, 260),
            BackboneArch::B3 => (1.2, 1.4, 300),
            BackboneArch::B4 => (1.4, 1.8, 380),
        };
        Self { name: arch.as_str(), width, depth, reference_size }
    }

    /// efficientnet_pytorch `round_filters` (divisor 8).
    pub fn round_filters(&self, filters: i64) -> i64 {
        let f = filters as f64 * self.width;
        let mut new = ((f + 4.0) as i64 / 8 * 8).max(8);
        if (new as f64) < 0.9 * f {
            new += 8;
        }
        new
    }

    pub fn round_repeats(&self, repeats: usize) -> usize {
        (self.depth * repeats as f64).ceil() as usize
    }

    /// (kernel, stride, expand, in, out) of every MBConv block, in order, and the index
    /// of the last block of each stage.
    pub fn blocks(&self) -> (Vec<BlockArgs>, Vec<usize>) {
        let mut blocks = vec![];
        let mut stage_ends = vec![];
        for &(r, k, s, e, i, o) in &BASE_BLOCKS {
            let (i, o) = (self.round_filters(i), self.round_filters(o));
            for j in 0..self.round_repeats(r) {
                let (inp, stride) = if j == 0 { (i, s) } else { (o, 1) };
                blocks.push(BlockArgs { kernel: k, stride, expand: e, input: inp, output: o });
            }
            stage_ends.push(blocks.len() - 1);
        }
        (blocks, stage_ends)
    }

    /// Feature blocks at strides 2, 4, 8 and 16: the last block of stages 0, 1, 2 and 4
    /// (B4: 1, 5, 9, 21 with 24 + 32 + 56 + 160 = 272 channels).
    pub fn default_outblocks(&self) -> Vec<usize> {
        let (_, ends) = self.blocks();
        vec![ends[0], ends[1], ends[2], ends[4]]
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockArgs {
    pub kernel: i64,
    pub stride: i64,
    pub expand: i64,
    pub input: i64,
    pub output: i64,
}

/// TF "same" padding for a given reference input size: (left, right) on each axis.
fn static_same_padding(size: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (size + stride - 1) / stride;
    let pad = ((out - 1) * stride + kernel - size).max(0);
    (pad / 2, pad - pad / 2)
}

#[derive(Debug)]
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

impl BatchNorm {
    fn new(p: nn::Path, c: i64) -> Self {
        Self {
            weight: p.var("weight", &[c], nn::Init::Const(1.0)),
            bias: p.var("bias", &[c], nn::Init::Const(0.0)),
            running_mean: p.var("running_mean", &[c], nn::Init::Const(0.0)),
            running_var: p.var("running_var", &[c], nn::Init::Const(1.0)),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            false,
            0.01,
            BN_EPS,
            false,
        )
    }
}

#[derive(Debug)]
struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: i64,
    groups: i64,
    /// ZeroPad2d (left, right, top, bottom) applied before the convolution.
    pad: [i64; 4],
}

impl Conv {
    #[allow(clippy::too_many_arguments)]
    fn new(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, groups: i64, bias: bool, ref_size: i64) -> Self {
        // Kaiming-normal (fan_out), the TF/timm init, keeps activations at a sane scale
        // when no pretrained weights are given; overwritten by loaded weights otherwise.
        let fan_out = (k * k * cout / groups) as f64;
        let weight =
            p.var("weight", &[cout, cin / groups, k, k], nn::Init::Randn { mean: 0.0, stdev: (2.0 / fan_out).sqrt() });
        let bias = bias.then(|| p.var("bias", &[cout], nn::Init::Const(0.0)));
        let (l, r) = static_same_padding(ref_size, k, stride);
        Self { weight, bias, stride, groups, pad: [l, r, l, r] }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = if self.pad.iter().any(|&v| v > 0) { x.constant_pad_nd(self.pad) } else { x.shallow_clone() };
        x.conv2d(&self.weight, self.bias.as_ref(), [self.stride, self.stride], [0, 0], [1, 1], self.groups)
    }
}

fn swish(x: &Tensor) -> Tensor {
    x * x.sigmoid()
}

#[derive(Debug)]
struct MBConv {
    expand: Option<(Conv, BatchNorm)>,
    depthwise: (Conv, BatchNorm),
    se: (Conv, Conv),
    project: (Conv, BatchNorm),
    skip: bool,
}

impl MBConv {
    fn new(p: nn::Path, a: &BlockArgs, ref_size: i64) -> Self {
        let mid = a.input * a.expand;
        let expand = (a.expand != 1).then(|| {
            (Conv::new(&p / "_expand_conv", a.input, mid, 1, 1, 1, false, ref_size), BatchNorm::new(&p / "_bn0", mid))
        });
        let depthwise = (
            Conv::new(&p / "_depthwise_conv", mid, mid, a.kernel, a.stride, mid, false, ref_size),
            BatchNorm::new(&p / "_bn1", mid),
        );
        let squeezed = ((a.input as f64 * 0.25) as i64).max(1);
        let se = (
            Conv::new(&p / "_se_reduce", mid, squeezed, 1, 1, 1, true, 1),
            Conv::new(&p / "_se_expand", squeezed, mid, 1, 1, 1, true, 1),
        );
        let project =
            (Conv::new(&p / "_project_conv", mid, a.output, 1, 1, 1, false, 1), BatchNorm::new(&p / "_bn2", a.output));
        Self { expand, depthwise, se, project, skip: a.stride == 1 && a.input == a.output }
    }
    fn forward(&self, input: &Tensor) -> Tensor {
        let mut x = match &self.expand {
            Some((conv, bn)) => swish(&bn.forward(&conv.forward(input))),
            None => input.shallow_clone(),
        };
        x = swish(&self.depthwise.1.forward(&self.depthwise.0.forward(&x)));
        let s = x.adaptive_avg_pool2d([1, 1]);
        let s = self.se.1.forward(&swish(&self.se.0.forward(&s)));
        x = s.sigmoid() * x;
        x = self.project.1.forward(&self.project.0.forward(&x));
        // drop_connect only acts in training mode; the backbone is always in eval mode.
        if self.skip {
            x + input
        } else {
            x
        }
    }
}

/// The whole network (stem, all blocks, head and classifier, so that a full
/// efficientnet_pytorch state_dict matches name for name); `features` runs only as far
/// as the deepest requested block.
#[derive(Debug)]
pub struct EfficientNet {
    stem: (Conv, BatchNorm),
    blocks: Vec<MBConv>,
    pub spec: EfficientNetSpec,
    pub block_args: Vec<BlockArgs>,
}

impl EfficientNet {
    pub fn new(p: &nn::Path, spec: EfficientNetSpec) -> Self {
        let (block_args, _) = spec.blocks();
        let stem_out = spec.round_filters(32);
        let mut size = spec.reference_size;
        let stem =
            (Conv::new(p / "_conv_stem", 3, stem_out, 3, 2, 1, false, size), BatchNorm::new(p / "_bn0", stem_out));
        size = (size + 1) / 2;
        let blocks = block_args
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let b = MBConv::new(p / "_blocks" / i, a, size);
                size = (size + a.stride - 1) / a.stride;
                b
            })
            .collect();
        let head = spec.round_filters(1280);
        let last = block_args.last().expect("blocks").output;
        // Head and classifier: unused for features, present so state_dicts match exactly.
        let _ = Conv::new(p / "_conv_head", last, head, 1, 1, 1, false, 1);
        let _ = BatchNorm::new(p / "_bn1", head);
        let _ = (p / "_fc").var("weight", &[1000, head], nn::Init::Const(0.0));
        let _ = (p / "_fc").var("bias", &[1000], nn::Init::Const(0.0));
        Self { stem, blocks, spec, block_args }
    }

    /// Outputs of the given blocks (ascending indices) for normalised images (B, 3, H, W).
    pub fn features(&self, images: &Tensor, outblocks: &[usize]) -> Vec<Tensor> {
        let last = *outblocks.iter().max().expect("at least one output block");
        let mut x = swish(&self.stem.1.forward(&self.stem.0.forward(images)));
        let mut outs = Vec::with_capacity(outblocks.len());
        for (i, block) in self.blocks.iter().enumerate().take(last + 1) {
            x = block.forward(&x);
            if outblocks.contains(&i) {
                outs.push(x.shallow_clone());
            }
        }
        outs
    }

    pub fn channels(&self, outblocks: &[usize]) -> i64 {
        outblocks.iter().map(|&i| self.block_args[i].output).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b4_feature_blocks_and_channels() {
        let spec = EfficientNetSpec::from_arch("efficientnet-b4").unwrap();
        let (blocks, _) = spec.blocks();
        assert_eq!(blocks.len(), 32);
        assert_eq!(spec.default_outblocks(), vec![1, 5, 9, 21]);
        let ch: Vec<i64> = [1, 5, 9, 21].iter().map(|&i| blocks[i].output).collect();
        assert_eq!(ch, vec![24, 32, 56, 160]);
        assert_eq!(spec.round_filters(32), 48);
        assert_eq!(spec.round_filters(1280), 1792);
    }

    #[test]
    fn static_padding_matches_tf_same() {
        // 380 px reference: stem k3 s2 -> (0, 1); k5 s2 on 95 -> (2, 2); k5 s2 on 24 -> (1, 2).
        assert_eq!(static_same_padding(380, 3, 2), (0, 1));
        assert_eq!(static_same_padding(95, 5, 2), (2, 2));
        assert_eq!(static_same_padding(24, 5, 2), (1, 2));
        assert_eq!(static_same_padding(190, 3, 1), (1, 1));
    }

    #[test]
    fn b4_feature_shapes_at_224() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let spec = EfficientNetSpec::from_arch("efficientnet-b4").unwrap();
        let net = EfficientNet::new(&vs.root(), spec);
        let x = Tensor::randn([1, 3, 224, 224], (tch::Kind::Float, tch::Device::Cpu));
        let outs = tch::no_grad(|| net.features(&x, &[1, 5, 9, 21]));
        let shapes: Vec<Vec<i64>> = outs.iter().map(|t| t.size()).collect();
        assert_eq!(shapes, vec![vec![1, 24, 112, 112], vec![1, 32, 56, 56], vec![1, 56, 28, 28], vec![1, 160, 14, 14]]);
        assert_eq!(net.channels(&[1, 5, 9, 21]), 272);
    }
}
