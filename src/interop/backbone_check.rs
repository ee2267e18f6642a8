//! `ras import` and the backbone a checkpoint holds. An imported run evaluates with the
//! config's `[backbone]`; a checkpoint that holds its backbone (`module.backbone.*`, as
//! the public code's and `ras export --format public` do) says which backbone its model
//! was trained with, so the two are compared tensor by tensor (names, shapes, values bit
//! for bit, BatchNorm running statistics included, `num_batches_tracked` ignored) and the
//! import is refused on any difference: an evaluation with another backbone would not be
//! of the checkpoint's model. Without `backbone.weights` the config's backbone is its
//! seeded random init, which is compared the same way (a run trained on a random-init
//! backbone exports exactly that init).

use crate::backbone::{BackboneError, FeatureExtractor};
use crate::config::BackboneConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Differences named in the error; the rest are counted.
const SHOWN: usize = 5;

/// What `import.json` records of the backbone (`backbone`; absent in records written
/// before it was compared).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackboneCheck {
    /// Where the run's backbone comes from: always the config's `[backbone]`, which this
    /// check has found equal to the checkpoint's when `compared_tensors` > 0.
    pub source: String,
    /// The config's `backbone.weights` file, or "random init (init_seed N)".
    pub weights: String,
    /// The backbone identity's weights: the file's sha256, or `random-init-seed-N`.
    pub weights_id: String,
    /// Backbone tensors the checkpoint holds (`num_batches_tracked` not counted), every one
    /// compared and found equal. 0: the checkpoint holds no backbone, nothing was compared.
    pub compared_tensors: usize,
    /// Tensors of the config's backbone the checkpoint does not hold (not compared).
    pub not_in_checkpoint: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackboneCheckError {
    #[error("{config}: [backbone]")]
    Build { config: PathBuf, source: BackboneError },
    #[error("{}", describe(.checkpoint, .config, .backbone, .random_init, .differences, .compared, .pickle))]
    Differs {
        checkpoint: PathBuf,
        config: PathBuf,
        /// The config's backbone in words (file and sha256, or the random init's seed).
        backbone: String,
        random_init: bool,
        /// Every difference, in name order.
        differences: Vec<String>,
        compared: usize,
        /// The checkpoint is a `torch.save` file (the extraction hint differs).
        pickle: bool,
    },
}

fn describe(
    checkpoint: &Path,
    config: &Path,
    backbone: &str,
    random_init: &bool,
    differences: &[String],
    compared: &usize,
    pickle: &bool,
) -> String {
    let ckpt = checkpoint.display();
    let mut s = format!(
        "{ckpt} holds the backbone its model was trained with (module.backbone.*), and it is not the config's backbone \
         ({backbone}, from {}): {} of its {compared} backbone tensors differ:\n",
        config.display(),
        differences.len()
    );
    for d in differences.iter().take(SHOWN) {
        s.push_str(&format!("  {d}\n"));
    }
    if differences.len() > SHOWN {
        s.push_str(&format!("  ... and {} more\n", differences.len() - SHOWN));
    }
    if *random_init {
        s.push_str("backbone.weights is not set, so the run would evaluate with a random-init backbone. ");
    }
    s.push_str(
        "An evaluation with this backbone would not be of the checkpoint's model. Fix: set backbone.weights (and \
         backbone.arch) to the weights the checkpoint was trained with. Its own backbone can be extracted into a \
         weights file ",
    );
    if *pickle {
        s.push_str(&format!(
            "with ras's tools/convert_weights.py:\n  python tools/convert_weights.py {ckpt} backbone.safetensors --part backbone\n"
        ));
    } else {
        s.push_str(
            "by saving its module.backbone.* tensors without that prefix as safetensors (backbone.safetensors), ",
        );
    }
    s.push_str("then import with --set backbone.weights=backbone.safetensors");
    s
}

/// The backbone's name of a public state-dict name (efficientnet_pytorch's, below any
/// `module.` prefixes and `backbone.`), or None for any other tensor and for BatchNorm's
/// `num_batches_tracked` counters (never read).
pub fn backbone_name(name: &str) -> Option<&str> {
    super::without_module(name).strip_prefix("backbone.").filter(|n| !n.ends_with("num_batches_tracked"))
}

/// Compares the backbone tensors a checkpoint holds (`held`, by efficientnet_pytorch's
/// names) with the backbone `cfg` builds; see the module doc.
pub fn check_backbone(
    cfg: &BackboneConfig,
    config_path: &Path,
    checkpoint: &Path,
    pickle: bool,
    held: Vec<(String, Tensor)>,
) -> Result<BackboneCheck, BackboneCheckError> {
    let build = |source| BackboneCheckError::Build { config: config_path.to_path_buf(), source };
    let identity = crate::backbone::BackboneIdentity::resolve(cfg).map_err(build)?;
    if held.is_empty() {
        return Ok(unchecked(cfg, &identity.weights));
    }
    let ours = FeatureExtractor::quiet(cfg, Device::Cpu).map_err(build)?.named_weights();
    compare(cfg, &identity.weights, config_path, checkpoint, pickle, held, ours)
}

/// The record of a backbone taken from the config with nothing compared.
fn unchecked(cfg: &BackboneConfig, weights_id: &str) -> BackboneCheck {
    BackboneCheck {
        source: "the config's [backbone]".into(),
        weights: match &cfg.weights {
            Some(p) => p.display().to_string(),
            None => format!("random init (init_seed {})", cfg.init_seed),
        },
        weights_id: weights_id.into(),
        compared_tensors: 0,
        not_in_checkpoint: vec![],
    }
}

/// [`check_backbone`] once the config's backbone is built (`ours`: its tensors by
/// efficientnet_pytorch's names; `weights_id`: its identity's weights).
fn compare(
    cfg: &BackboneConfig,
    weights_id: &str,
    config_path: &Path,
    checkpoint: &Path,
    pickle: bool,
    held: Vec<(String, Tensor)>,
    ours: Vec<(String, Tensor)>,
) -> Result<BackboneCheck, BackboneCheckError> {
    let mut check = unchecked(cfg, weights_id);
    let ours: BTreeMap<String, Tensor> = ours.into_iter().collect();
    let held: BTreeMap<String, Tensor> = held.into_iter().collect();
    let mut differences = vec![];
    for (name, t) in &held {
        let Some(o) = ours.get(name) else {
            differences.push(format!("{name}: in the checkpoint, not in {}", cfg.arch));
            continue;
        };
        if o.size() != t.size() {
            differences.push(format!("{name}: shape {:?} in the checkpoint, {:?} in the config's", t.size(), o.size()));
            continue;
        }
        let t = t.to_kind(Kind::Float);
        if !t.view_dtype(Kind::Int).equal(&o.to_kind(Kind::Float).view_dtype(Kind::Int)) {
            let diff = (&t - o).abs().max().double_value(&[]);
            differences.push(format!("{name}: max |difference| {diff:e}"));
        }
    }
    if !differences.is_empty() {
        let backbone = match &cfg.weights {
            Some(p) => format!("{} {}, sha256 {weights_id}", cfg.arch, p.display()),
            None => format!("{} random init, init_seed {}", cfg.arch, cfg.init_seed),
        };
        return Err(BackboneCheckError::Differs {
            checkpoint: checkpoint.to_path_buf(),
            config: config_path.to_path_buf(),
            backbone,
            random_init: cfg.weights.is_none(),
            differences,
            compared: held.len(),
            pickle,
        });
    }
    check.source = "the config's [backbone], equal to the checkpoint's".into();
    check.compared_tensors = held.len();
    check.not_in_checkpoint = ours.keys().filter(|n| !held.contains_key(*n)).cloned().collect();
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackboneArch;

    #[test]
    fn backbone_names_of_a_public_state_dict() {
        assert_eq!(backbone_name("module.backbone._conv_stem.weight"), Some("_conv_stem.weight"));
        assert_eq!(backbone_name("backbone._blocks.0._bn1.running_var"), Some("_blocks.0._bn1.running_var"));
        assert_eq!(backbone_name("module.backbone._bn0.num_batches_tracked"), None);
        assert_eq!(backbone_name("module.reconstruction.input_proj.weight"), None);
        assert_eq!(backbone_name("module.neck.x"), None);
    }

    /// The config's own backbone passes; one changed value, a wrong shape and a foreign
    /// name are each named, and a tensor the checkpoint lacks is recorded, not compared.
    /// (The backbone is built once: other tests draw from libtorch's generator in parallel,
    /// so a second random init in this process need not be the first.)
    #[test]
    fn any_difference_is_refused_and_named() {
        let cfg = BackboneConfig { arch: BackboneArch::B0, weights: None, init_seed: 3, ..Default::default() };
        let own = FeatureExtractor::new(&cfg, Device::Cpu).unwrap().named_weights();
        let (ckpt, config) = (Path::new("ckpt.pth.tar"), Path::new("c.toml"));
        let copy = || own.iter().map(|(n, t)| (n.clone(), t.copy())).collect::<Vec<_>>();
        let check = |held| compare(&cfg, "random-init-seed-3", config, ckpt, true, held, copy());
        let mut partial = copy();
        let dropped = partial.pop().unwrap().0;
        let ok = check(partial).unwrap();
        assert_eq!((ok.compared_tensors, ok.not_in_checkpoint.clone()), (own.len() - 1, vec![dropped]));
        assert_eq!((ok.weights_id.as_str(), ok.weights.as_str()), ("random-init-seed-3", "random init (init_seed 3)"));

        let mut changed = copy();
        let _ = changed[7].1.view(-1).get(0).g_add_scalar_(1e-4);
        changed[9].1 = Tensor::zeros([2, 2], (Kind::Float, Device::Cpu));
        changed.push(("_extra.weight".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu))));
        let err = check(changed).unwrap_err();
        let BackboneCheckError::Differs { differences, compared, .. } = &err else { panic!("{err}") };
        assert_eq!((differences.len(), *compared), (3, own.len() + 1));
        assert!(differences.iter().any(|d| d.starts_with(&format!("{}: max |difference|", own[7].0))), "{err}");
        assert!(differences.iter().any(|d| d.starts_with(&format!("{}: shape [2, 2]", own[9].0))), "{err}");
        assert!(differences.contains(&"_extra.weight: in the checkpoint, not in efficientnet-b0".to_string()), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("ckpt.pth.tar") && msg.contains("random init") && msg.contains("--part backbone"),
            "{msg}"
        );
    }

    /// Nothing to compare: the config's backbone, recorded as not compared.
    #[test]
    fn a_checkpoint_without_a_backbone_keeps_the_configs() {
        let cfg = BackboneConfig { arch: BackboneArch::B0, weights: None, init_seed: 3, ..Default::default() };
        let rec = check_backbone(&cfg, Path::new("c.toml"), Path::new("ckpt.pth.tar"), true, vec![]).unwrap();
        assert_eq!((rec.compared_tensors, rec.weights_id.as_str()), (0, "random-init-seed-3"));
    }
}
