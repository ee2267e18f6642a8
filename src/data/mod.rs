//! Datasets: the folder index (which files are train/test, normal/anomalous, which mask
//! belongs to which image), decoding, validation (`ras data check`) and the synthetic
//! dataset generator.
//!
//! Every layout (one file each: `mvtec`, `visa`, `btad`, `jsonl`) produces the same
//! [`DatasetIndex`], so nothing after [`scan`] knows which dataset it trains on. A loader
//! never fails on the first odd file: it returns a [`Scan`] with everything it noticed, so
//! that `ras data check` can list every problem at once, while [`scan`] (what training
//! uses) refuses a dataset whose listed files are missing.

pub mod btad;
pub mod check;
pub mod imageio;
pub mod jsonl;
pub mod mvtec;
pub mod resize;
pub mod synth;
pub mod visa;

pub use check::Problem;
pub use mvtec::scan_mvtec;

use crate::config::{DatasetConfig, DatasetKind};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "dataset folder {0} does not exist (set dataset.root, or run `ras data synth --out {0}` for a synthetic one)"
    )]
    MissingRoot(PathBuf),
    #[error("dataset folder {root} has no class folders with a train/ subfolder")]
    NoClasses { root: PathBuf },
    #[error("{dir} has neither train/ nor test/, so it is not a class folder; move the class's train/ and test/ into it, remove the folder, or list the classes to use in dataset.classes")]
    NotAClass { dir: PathBuf },
    #[error("class {class:?} is not in {root} (found: {found})")]
    UnknownClass { class: String, root: PathBuf, found: String },
    #[error("class {class:?} has no training images in {dir}")]
    NoTrainImages { class: String, dir: PathBuf },
    #[error("class {class:?} has no test images in {dir}")]
    NoTestImages { class: String, dir: PathBuf },
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot decode image {path}: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("mask {mask} is {mask_w}x{mask_h} but its image {image} is {image_w}x{image_h}")]
    MaskSize { mask: PathBuf, mask_w: u32, mask_h: u32, image: PathBuf, image_w: u32, image_h: u32 },
    #[error("{path} is missing: {fix}")]
    MissingMeta { path: PathBuf, fix: String },
    #[error("{path} line {line}: {message}")]
    Meta { path: PathBuf, line: usize, message: String },
    #[error("{problem}{}; `ras data check ROOT --kind KIND` lists every problem", more_hint(.more))]
    Invalid { problem: String, more: usize },
}

/// What a layout loader found: the index of every usable sample, the problems it noticed
/// while listing (files a metadata row names but that do not exist, empty splits, ...),
/// and the folders that hold masks, so that `ras data check` can find masks no image uses.
#[derive(Debug, Clone)]
pub struct Scan {
    pub index: DatasetIndex,
    pub problems: Vec<Problem>,
    pub mask_dirs: Vec<PathBuf>,
}

/// Scans `cfg.root` in the layout `cfg.kind`, keeps the classes `cfg.classes` (empty = all,
/// in the order given otherwise) and lists what the loader noticed; fails only when the
/// layout itself cannot be read (missing root or metadata, malformed metadata, unknown class).
pub fn scan_all(cfg: &DatasetConfig) -> Result<Scan, DataError> {
    if !cfg.root.is_dir() {
        return Err(DataError::MissingRoot(cfg.root.clone()));
    }
    // MPDD shares MVTec-AD's layout.
    match cfg.kind {
        DatasetKind::Mvtec | DatasetKind::Mpdd => mvtec::scan_layout(&cfg.root, &cfg.classes),
        DatasetKind::Visa => visa::scan_layout(&cfg.root, &cfg.classes),
        DatasetKind::Btad => btad::scan_layout(&cfg.root, &cfg.classes),
        DatasetKind::Jsonl => {
            jsonl::scan_layout(&cfg.root, &cfg.classes, cfg.train_meta.as_deref(), cfg.test_meta.as_deref())
        }
    }
}

/// The dataset a run trains on: [`scan_all`], refusing a dataset with a class without
/// train or test images, a listed file that does not exist, or an anomalous training
/// image, because training on part of what the metadata promises would give numbers
/// nobody can compare. Anomalous images without a mask are accepted (all-anomalous, spec
/// section 6) and masks no image uses are ignored; `ras data check` reports both.
pub fn scan(cfg: &DatasetConfig) -> Result<DatasetIndex, DataError> {
    let s = scan_all(cfg)?;
    let fatal: Vec<&Problem> = s.problems.iter().filter(|p| p.blocks_training()).collect();
    match fatal.first() {
        None => Ok(s.index),
        Some(p) => Err(DataError::Invalid { problem: p.to_string(), more: fatal.len() - 1 }),
    }
}

fn more_hint(more: &usize) -> String {
    if *more > 0 {
        format!(" (and {more} more problems)")
    } else {
        String::new()
    }
}

/// Keeps the classes the user asked for (empty = all found, in the order found), or names
/// the ones that exist when one does not.
pub(crate) fn select_classes(found: &[String], wanted: &[String], root: &Path) -> Result<Vec<String>, DataError> {
    if wanted.is_empty() {
        return Ok(found.to_vec());
    }
    for class in wanted {
        if !found.contains(class) {
            return Err(DataError::UnknownClass {
                class: class.clone(),
                root: root.to_path_buf(),
                found: found.join(", "),
            });
        }
    }
    Ok(wanted.to_vec())
}

/// Directory entries sorted by name, so every index (and every cache key) is the same on
/// every machine whatever order the filesystem lists them in.
pub(crate) fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::Read { path: dir.to_path_buf(), message: e.to_string() })?;
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// Image files directly in `dir`, sorted; a missing folder has none.
pub(crate) fn images_in(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    if !dir.is_dir() {
        return Ok(vec![]);
    }
    Ok(read_dir_sorted(dir)?.into_iter().filter(|p| p.is_file() && is_image(p)).collect())
}

/// Class folders of a per-class layout, sorted by name: the sub-folders of `root` with a
/// train/ or a test/ folder. A sub-folder with neither is an error naming it (a class
/// unpacked one level too deep, say: skipping it would train on fewer classes than the
/// user thinks), unless `wanted` (`dataset.classes`) is given and does not name it.
/// Hidden entries (`.git`, `.DS_Store`) and plain files (a licence, a readme) are ignored.
pub(crate) fn class_dirs(root: &Path, wanted: &[String]) -> Result<Vec<String>, DataError> {
    let mut found = vec![];
    for p in read_dir_sorted(root)? {
        let Some(name) = p.file_name().map(|n| n.to_string_lossy().to_string()) else { continue };
        if name.starts_with('.') || !p.is_dir() {
            continue;
        }
        if p.join("train").is_dir() || p.join("test").is_dir() {
            found.push(name);
        } else if wanted.is_empty() || wanted.contains(&name) {
            return Err(DataError::NotAClass { dir: p });
        }
    }
    Ok(found)
}

/// The sample's stable name: its path relative to the dataset root, with `/`.
pub(crate) fn rel_key(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).to_string_lossy().replace('\\', "/")
}

/// One image of a dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub class: String,
    /// Path relative to the dataset root: the image's stable name in predictions and caches.
    pub key: String,
    pub path: PathBuf,
    /// true = anomalous.
    pub label: bool,
    /// "good" or the defect kind.
    pub defect: String,
    /// Ground-truth mask; an anomalous image without one counts as all-anomalous.
    pub mask: Option<PathBuf>,
}

/// The samples of one class.
#[derive(Debug, Clone, Default)]
pub struct ClassSamples {
    pub train: Vec<Sample>,
    pub test: Vec<Sample>,
}

/// A scanned dataset: classes in order, each with its train and test samples.
#[derive(Debug, Clone)]
pub struct DatasetIndex {
    pub root: PathBuf,
    pub classes: Vec<(String, ClassSamples)>,
}

impl DatasetIndex {
    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|(c, _)| c.clone()).collect()
    }

    /// Checks what can be checked cheaply before hours of training: every image's header
    /// is readable and every mask has its image's size.
    pub fn check_headers(&self) -> Result<(), DataError> {
        for (_, s) in &self.classes {
            for sample in s.train.iter().chain(&s.test) {
                let dims = imageio::dimensions(&sample.path)?;
                if let Some(mask) = &sample.mask {
                    imageio::check_mask_dims(mask, &sample.path, dims)?;
                }
            }
        }
        Ok(())
    }
}

/// File extensions read as images (case-insensitive).
pub fn is_image(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg" | "bmp"))
        .unwrap_or(false)
}
