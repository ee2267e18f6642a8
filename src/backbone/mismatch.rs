//! Backbone weights that do not fit `backbone.arch`. A file of another EfficientNet
//! variant differs in hundreds of tensors (B0 weights against B4: 580); listing them all
//! buries the one thing to change. So the error says first, in one line, what the file
//! is (the variant its tensors look like: stem and head channels and block count) and
//! which key to change, then a few examples and the count; the full list goes to a file
//! it names (and to the debug log, `RUST_LOG=debug`).

use super::EfficientNetSpec;
use crate::config::BackboneArch;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Differences shown in the error; the rest are counted and listed in the file.
pub const EXAMPLES: usize = 10;

/// What identifies an EfficientNet variant in its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// Output channels of `_conv_stem`.
    pub stem: i64,
    /// Output channels of `_conv_head`.
    pub head: i64,
    /// MBConv blocks (`_blocks.0` .. `_blocks.{n-1}`).
    pub blocks: usize,
}

impl Signature {
    /// The signature of `arch` as efficientnet_pytorch builds it.
    pub fn of(arch: BackboneArch) -> Self {
        let spec = EfficientNetSpec::of(arch);
        Self { stem: spec.round_filters(32), head: spec.round_filters(1280), blocks: spec.blocks().0.len() }
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stem {} and head {} channels, {} blocks", self.stem, self.head, self.blocks)
    }
}

/// What a weights file's tensors look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileShape {
    /// The tensors of this variant (by their stem, head and block count).
    Arch(BackboneArch, Signature),
    /// An EfficientNet of no variant ras builds.
    Unknown(Signature),
    /// EfficientNet tensors below a prefix (`module.backbone.`): a whole checkpoint.
    Prefixed(String),
    /// No `_conv_stem.weight` at all.
    NotEfficientNet,
}

impl FileShape {
    /// Reads the variant off a file's tensors (by efficientnet_pytorch's names).
    pub fn of(file: &BTreeMap<String, Tensor>) -> Self {
        let Some(stem) = file.get("_conv_stem.weight") else {
            return match file.keys().find_map(|n| n.strip_suffix("_conv_stem.weight")) {
                Some(prefix) => FileShape::Prefixed(prefix.to_string()),
                None => FileShape::NotEfficientNet,
            };
        };
        let channels = |t: &Tensor| t.size().first().copied().unwrap_or(0);
        let blocks = file
            .keys()
            .filter_map(|n| n.strip_prefix("_blocks.")?.split('.').next()?.parse::<usize>().ok())
            .max()
            .map_or(0, |m| m + 1);
        let sig =
            Signature { stem: channels(stem), head: file.get("_conv_head.weight").map(channels).unwrap_or(0), blocks };
        match BackboneArch::ALL.iter().find(|a| Signature::of(**a) == sig) {
            Some(a) => FileShape::Arch(*a, sig),
            None => FileShape::Unknown(sig),
        }
    }
}

/// Backbone weights that do not fit the config's architecture (see the module doc).
#[derive(Debug)]
pub struct WeightsMismatch {
    pub path: PathBuf,
    pub arch: BackboneArch,
    pub found: FileShape,
    /// Every difference, sorted (`missing ...`, `shape ...`, `unexpected ...`).
    pub differences: Vec<String>,
    /// The file holding the full list, when there are more than [`EXAMPLES`] and it
    /// could be written.
    pub list: Option<PathBuf>,
}

impl WeightsMismatch {
    /// The mismatch of the weights file `path` (sha256 `hash`) with `arch`; writes the
    /// full list to a file in the temporary folder when it is longer than the examples.
    pub fn new(
        path: &Path,
        hash: &str,
        arch: BackboneArch,
        file: &BTreeMap<String, Tensor>,
        differences: Vec<String>,
    ) -> Self {
        let mut m = Self { path: path.to_path_buf(), arch, found: FileShape::of(file), differences, list: None };
        let full = format!("{}\n{}\n", m.headline(), m.differences.join("\n"));
        tracing::debug!("backbone weights {}: every difference:\n{full}", path.display());
        if m.differences.len() > EXAMPLES {
            let list = std::env::temp_dir().join(format!("ras-backbone-{arch}-{}.txt", &hash[..hash.len().min(12)]));
            match crate::write_file_atomically(&list, full.as_bytes()) {
                Ok(()) => m.list = Some(list),
                Err(e) => tracing::debug!("cannot write {}: {e}", list.display()),
            }
        }
        m
    }

    /// The first line: what is wrong and which key to change.
    pub fn headline(&self) -> String {
        let (path, arch) = (self.path.display(), self.arch);
        let want = Signature::of(arch);
        match &self.found {
            FileShape::Arch(found, sig) if *found != arch => format!(
                "backbone weights {path} look like {found} ({sig}), not backbone.arch = \"{arch}\" ({want}): \
                 set backbone.arch = \"{found}\" (or backbone.weights to {arch} weights)"
            ),
            FileShape::Arch(..) => format!(
                "backbone weights {path} look like {arch} but {} of their tensors do not fit it: check that \
                 backbone.weights is an efficientnet_pytorch {arch} state dict (tools/convert_weights.py)",
                self.differences.len()
            ),
            FileShape::Unknown(sig) => format!(
                "backbone weights {path} fit no EfficientNet ras builds ({sig}; backbone.arch = \"{arch}\" has {want}): \
                 check backbone.weights"
            ),
            FileShape::Prefixed(prefix) => format!(
                "backbone weights {path} hold an EfficientNet under the prefix \"{prefix}\" (a whole checkpoint?): \
                 extract it with tools/convert_weights.py CKPT backbone.safetensors --part backbone and set \
                 backbone.weights to that file"
            ),
            FileShape::NotEfficientNet => format!(
                "backbone weights {path} hold no EfficientNet (no _conv_stem.weight): set backbone.weights to an \
                 efficientnet_pytorch {arch} state dict saved as safetensors (tools/convert_weights.py)"
            ),
        }
    }

    /// Up to [`EXAMPLES`] differences: some of each kind (mis-shaped first, the stem's and
    /// the head's before the blocks'), then the rest in order.
    pub fn examples(&self) -> Vec<&str> {
        let of = |kind: &str| -> Vec<&str> {
            let mut v: Vec<&str> =
                self.differences.iter().map(String::as_str).filter(|d| d.starts_with(kind)).collect();
            v.sort_by_key(|d| !(d.contains("_conv_stem") || d.contains("_conv_head")));
            v
        };
        let (shape, missing, unexpected) = (of("shape "), of("missing "), of("unexpected "));
        let mut picked: Vec<&str> = vec![];
        for (list, n) in [(&shape, 4), (&missing, 3), (&unexpected, 3)] {
            picked.extend(list.iter().take(n));
        }
        for d in &self.differences {
            if picked.len() >= EXAMPLES {
                break;
            }
            if !picked.contains(&d.as_str()) {
                picked.push(d);
            }
        }
        picked.truncate(EXAMPLES);
        picked
    }
}

impl fmt::Display for WeightsMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |kind: &str| self.differences.iter().filter(|d| d.starts_with(kind)).count();
        writeln!(f, "{}", self.headline())?;
        let n = self.differences.len();
        write!(
            f,
            "{n} tensors differ ({} missing, {} mis-shaped, {} unexpected)",
            count("missing "),
            count("shape "),
            count("unexpected ")
        )?;
        let examples = self.examples();
        if examples.len() < n {
            write!(f, ", {} of them:", examples.len())?;
        } else {
            write!(f, ":")?;
        }
        for d in &examples {
            write!(f, "\n  {d}")?;
        }
        if examples.len() < n {
            match &self.list {
                Some(list) => write!(f, "\nall {n}: {} (or run with RUST_LOG=debug)", list.display())?,
                None => write!(f, "\nall {n}: run with RUST_LOG=debug")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn t(shape: &[i64]) -> Tensor {
        Tensor::zeros(shape, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn signatures_of_the_variants_are_distinct() {
        assert_eq!(Signature::of(BackboneArch::B0), Signature { stem: 32, head: 1280, blocks: 16 });
        assert_eq!(Signature::of(BackboneArch::B4), Signature { stem: 48, head: 1792, blocks: 32 });
        for (i, a) in BackboneArch::ALL.iter().enumerate() {
            for b in &BackboneArch::ALL[i + 1..] {
                assert_ne!(Signature::of(*a), Signature::of(*b), "{a} {b}");
            }
        }
    }

    #[test]
    fn the_variant_is_read_off_the_tensors() {
        let mut file = BTreeMap::new();
        file.insert("_conv_stem.weight".to_string(), t(&[40, 3, 3, 3]));
        file.insert("_conv_head.weight".to_string(), t(&[1536, 384, 1, 1]));
        for i in 0..26 {
            file.insert(format!("_blocks.{i}._bn1.weight"), t(&[1]));
        }
        assert_eq!(FileShape::of(&file), FileShape::Arch(BackboneArch::B3, Signature::of(BackboneArch::B3)));
        file.remove("_blocks.25._bn1.weight");
        assert!(matches!(FileShape::of(&file), FileShape::Unknown(Signature { blocks: 25, .. })));
        let prefixed: BTreeMap<String, Tensor> =
            file.into_iter().map(|(n, t)| (format!("module.backbone.{n}"), t)).collect();
        assert_eq!(FileShape::of(&prefixed), FileShape::Prefixed("module.backbone.".into()));
        assert_eq!(FileShape::of(&BTreeMap::new()), FileShape::NotEfficientNet);
    }
}
