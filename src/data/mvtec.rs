//! MVTec-AD layout (also MPDD and the synthetic set):
//! `<root>/<class>/train/good/*`, `<root>/<class>/test/{good,<defect>}/*`,
//! `<root>/<class>/ground_truth/<defect>/<stem>_mask.png`.

use super::{
    class_dirs, images_in, read_dir_sorted, rel_key, select_classes, ClassSamples, DataError, DatasetIndex, Problem,
    Sample, Scan,
};
use crate::config::DatasetConfig;
use std::path::{Path, PathBuf};

/// Finds `<stem>_mask.*` for a defective test image.
fn find_mask(class_dir: &Path, defect: &str, image: &Path) -> Option<PathBuf> {
    let stem = image.file_stem()?.to_string_lossy().to_string();
    let dir = class_dir.join("ground_truth").join(defect);
    ["png", "bmp", "PNG", "BMP"].iter().map(|ext| dir.join(format!("{stem}_mask.{ext}"))).find(|p| p.is_file())
}

/// Scans a dataset root in the MVTec-AD layout; `classes` filters (empty = all found).
/// Kept for callers that know their data is in this layout (the synthetic set, benches).
pub fn scan_mvtec(root: &Path, classes: &[String]) -> Result<DatasetIndex, DataError> {
    super::scan(&DatasetConfig {
        kind: crate::config::DatasetKind::Mvtec,
        root: root.to_path_buf(),
        classes: classes.to_vec(),
        train_meta: None,
        test_meta: None,
    })
}

/// A per-class folder layout: `<class>/train/<normal>/*`, `<class>/test/<defect>/*`
/// (`<normal>` = the normal test folder too), masks under `<class>/ground_truth/<defect>/`.
/// MVTec-AD, MPDD and BTAD differ only in the normal folder's name and mask file names.
pub(crate) struct FolderLayout {
    pub normal: &'static str,
    /// Finds the mask of an anomalous test image: (class dir, defect folder, image).
    pub find_mask: fn(&Path, &str, &Path) -> Option<PathBuf>,
}

pub(crate) const MVTEC: FolderLayout = FolderLayout { normal: "good", find_mask };

/// Lists the MVTec-AD layout under `root` (which must exist); see [`super::scan_all`].
pub(crate) fn scan_layout(root: &Path, classes: &[String]) -> Result<Scan, DataError> {
    scan_folders(root, classes, &MVTEC)
}

/// Lists a [`FolderLayout`] under `root` (which must exist).
pub(crate) fn scan_folders(root: &Path, classes: &[String], layout: &FolderLayout) -> Result<Scan, DataError> {
    let found = class_dirs(root, classes)?;
    if found.is_empty() {
        return Err(DataError::NoClasses { root: root.to_path_buf() });
    }
    let mut out = vec![];
    let mut problems = vec![];
    let mut mask_dirs = vec![];
    for class in select_classes(&found, classes, root)? {
        let cdir = root.join(&class);
        let mk = |path: PathBuf, label: bool, defect: &str, mask: Option<PathBuf>| Sample {
            class: class.clone(),
            key: rel_key(root, &path),
            path,
            label,
            defect: defect.to_string(),
            mask,
        };
        let train_dir = cdir.join("train").join(layout.normal);
        let train: Vec<Sample> = images_in(&train_dir)?.into_iter().map(|p| mk(p, false, "good", None)).collect();
        if train.is_empty() {
            problems.push(Problem::EmptySplit { class: class.clone(), split: "train", dir: train_dir });
        }
        let test_dir = cdir.join("test");
        let mut test = vec![];
        if test_dir.is_dir() {
            for d in read_dir_sorted(&test_dir)?.into_iter().filter(|p| p.is_dir()) {
                let folder = d.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                let label = folder != layout.normal;
                let defect = if label { folder.as_str() } else { "good" };
                for p in images_in(&d)? {
                    let mask = if label { (layout.find_mask)(&cdir, defect, &p) } else { None };
                    test.push(mk(p, label, defect, mask));
                }
            }
        }
        if test.is_empty() {
            problems.push(Problem::EmptySplit { class: class.clone(), split: "test", dir: test_dir });
        }
        let gt = cdir.join("ground_truth");
        if gt.is_dir() {
            mask_dirs.extend(read_dir_sorted(&gt)?.into_iter().filter(|p| p.is_dir()));
        }
        out.push((class, ClassSamples { train, test }));
    }
    Ok(Scan { index: DatasetIndex { root: root.to_path_buf(), classes: out }, problems, mask_dirs })
}
