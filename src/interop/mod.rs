//! Exchange with the public PyTorch code (RAS's, and UniAD's for the baseline): its
//! checkpoints in (`ras import`), ours out in its layout (`ras export`).
//!
//! The model's parameter names already are the public ones (the module tree mirrors the
//! public code's, see tests/reference/ras-state-dict.md), so exchange is only about the
//! wrapping: a public `ckpt_best.pth.tar` is `torch.save({"epoch", "arch", "state_dict",
//! "best_metric", "optimizer"})` whose `state_dict` holds the whole `ModelHelper` under
//! DistributedDataParallel's `module.` prefix: the reconstruction model under
//! `module.reconstruction.`, the frozen EfficientNet under `module.backbone.`
//! (efficientnet_pytorch's names), and no tensor for the neck (it has none).
//!
//! - [`import`] reads such a file (natively when it is safetensors; a pickle through
//!   tools/convert_weights.py, which this binary carries inside it) and makes a run of it.
//! - [`backbone_check`] compares the backbone a checkpoint holds with the config's: an
//!   import is refused on any difference.
//! - [`export`] writes a run's model as a `.pth.tar` in that layout (natively: [`pth`]) or as
//!   safetensors with the same names.

pub mod backbone_check;
pub mod export;
pub mod import;
pub mod pth;

/// Where the public code's state dict keeps the reconstruction model.
pub const PUBLIC_MODEL_PREFIX: &str = "module.reconstruction.";
/// Where it keeps the backbone (efficientnet_pytorch's own names below it).
pub const PUBLIC_BACKBONE_PREFIX: &str = "module.backbone.";

/// What a name of a public state dict is, once the wrapping prefixes are stripped.
#[derive(Debug, PartialEq, Eq)]
pub enum PublicName<'a> {
    /// A reconstruction-model tensor, by its name in the model (`input_proj.weight`).
    Model(&'a str),
    /// A backbone or neck tensor (not part of the reconstruction model).
    Backbone(&'a str),
}

/// `name` without its `module.` prefixes (DataParallel / DDP wrap a model in one, possibly
/// nested).
pub fn without_module(name: &str) -> &str {
    let mut n = name;
    while let Some(rest) = n.strip_prefix("module.") {
        n = rest;
    }
    n
}

/// Strips any number of `module.` (DataParallel / DDP, possibly nested) and then the
/// `ModelHelper` submodule name. A bare model state dict (no submodule prefix) is the
/// model's own names.
pub fn classify(name: &str) -> PublicName<'_> {
    let n = without_module(name);
    if let Some(rest) = n.strip_prefix("reconstruction.") {
        PublicName::Model(rest)
    } else if let Some(rest) = n.strip_prefix("backbone.").or_else(|| n.strip_prefix("neck.")) {
        PublicName::Backbone(rest)
    } else {
        PublicName::Model(n)
    }
}

#[cfg(test)]
mod tests {
    use super::{classify, PublicName};

    #[test]
    fn prefixes_of_the_public_state_dict_are_stripped() {
        assert_eq!(classify("module.reconstruction.input_proj.weight"), PublicName::Model("input_proj.weight"));
        assert_eq!(
            classify("module.module.reconstruction.pos_embed.row_embed.weight"),
            PublicName::Model("pos_embed.row_embed.weight")
        );
        assert_eq!(classify("reconstruction.output_proj.bias"), PublicName::Model("output_proj.bias"));
        assert_eq!(classify("input_proj.bias"), PublicName::Model("input_proj.bias"));
        assert_eq!(classify("module.backbone._conv_stem.weight"), PublicName::Backbone("_conv_stem.weight"));
        assert_eq!(classify("neck.x"), PublicName::Backbone("x"));
    }
}
