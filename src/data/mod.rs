//! Datasets: the folder index (which files are train/test, normal/anomalous, which mask
//! belongs to which image), decoding, and the synthetic dataset generator.

pub mod imageio;
pub mod mvtec;
pub mod synth;

pub use mvtec::scan_mvtec;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("dataset folder {0} does not exist (set dataset.root, or run `ras data synth --out {0}` for a synthetic one)")]
    MissingRoot(PathBuf),
    #[error("dataset folder {root} has no class folders with a train/ subfolder")]
    NoClasses { root: PathBuf },
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
