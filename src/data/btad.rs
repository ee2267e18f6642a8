//! BTAD layout: `<root>/NN/train/ok/*`, `<root>/NN/test/{ok,ko}/*`,
//! `<root>/NN/ground_truth/ko/*`. "ok" is normal, "ko" anomalous. Extensions differ per
//! class (01: .bmp images, .png masks; 02: .png and .png; 03: .bmp and .bmp), so a mask is
//! matched to its image by file stem whatever either's extension.

use super::mvtec::{scan_folders, FolderLayout};
use super::{is_image, DataError, Scan};
use std::path::{Path, PathBuf};

/// The mask of `ko/<stem>.<ext>` is `ground_truth/ko/<stem>.<any image ext>`.
fn find_mask(class_dir: &Path, defect: &str, image: &Path) -> Option<PathBuf> {
    let stem = image.file_stem()?;
    let dir = class_dir.join("ground_truth").join(defect);
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    candidates.sort();
    candidates.into_iter().find(|p| p.is_file() && is_image(p) && p.file_stem() == Some(stem))
}

const BTAD: FolderLayout = FolderLayout { normal: "ok", find_mask };

/// Lists the BTAD layout under `root` (which must exist); see [`super::scan_all`].
pub(crate) fn scan_layout(root: &Path, classes: &[String]) -> Result<Scan, DataError> {
    scan_folders(root, classes, &BTAD)
}
