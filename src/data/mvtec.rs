//! MVTec-AD layout (also MPDD and the synthetic set):
//! `<root>/<class>/train/good/*`, `<root>/<class>/test/{good,<defect>}/*`,
//! `<root>/<class>/ground_truth/<defect>/<stem>_mask.png`.

use super::{is_image, ClassSamples, DataError, DatasetIndex, Sample};
use std::path::{Path, PathBuf};

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::Read { path: dir.to_path_buf(), message: e.to_string() })?;
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

fn images_in(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    if !dir.is_dir() {
        return Ok(vec![]);
    }
    Ok(read_dir_sorted(dir)?.into_iter().filter(|p| p.is_file() && is_image(p)).collect())
}

fn rel_key(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).to_string_lossy().replace('\\', "/")
}

/// Finds `<stem>_mask.*` for a defective test image.
fn find_mask(class_dir: &Path, defect: &str, image: &Path) -> Option<PathBuf> {
    let stem = image.file_stem()?.to_string_lossy().to_string();
    let dir = class_dir.join("ground_truth").join(defect);
    ["png", "bmp", "PNG", "BMP"].iter().map(|ext| dir.join(format!("{stem}_mask.{ext}"))).find(|p| p.is_file())
}

/// Scans a dataset root in the MVTec-AD layout; `classes` filters (empty = all found).
pub fn scan_mvtec(root: &Path, classes: &[String]) -> Result<DatasetIndex, DataError> {
    if !root.is_dir() {
        return Err(DataError::MissingRoot(root.to_path_buf()));
    }
    let found: Vec<String> = read_dir_sorted(root)?
        .into_iter()
        .filter(|p| p.join("train").is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .collect();
    if found.is_empty() {
        return Err(DataError::NoClasses { root: root.to_path_buf() });
    }
    let wanted: Vec<String> = if classes.is_empty() { found.clone() } else { classes.to_vec() };
    let mut out = vec![];
    for class in wanted {
        if !found.contains(&class) {
            return Err(DataError::UnknownClass { class, root: root.to_path_buf(), found: found.join(", ") });
        }
        let cdir = root.join(&class);
        let mk = |path: PathBuf, label: bool, defect: &str, mask: Option<PathBuf>| Sample {
            class: class.clone(),
            key: rel_key(root, &path),
            path,
            label,
            defect: defect.to_string(),
            mask,
        };
        let train_dir = cdir.join("train").join("good");
        let train: Vec<Sample> = images_in(&train_dir)?.into_iter().map(|p| mk(p, false, "good", None)).collect();
        if train.is_empty() {
            return Err(DataError::NoTrainImages { class, dir: train_dir });
        }
        let test_dir = cdir.join("test");
        let mut test = vec![];
        if test_dir.is_dir() {
            for d in read_dir_sorted(&test_dir)?.into_iter().filter(|p| p.is_dir()) {
                let defect = d.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                let label = defect != "good";
                for p in images_in(&d)? {
                    let mask = if label { find_mask(&cdir, &defect, &p) } else { None };
                    test.push(mk(p, label, &defect, mask));
                }
            }
        }
        if test.is_empty() {
            return Err(DataError::NoTestImages { class, dir: test_dir });
        }
        out.push((class, ClassSamples { train, test }));
    }
    Ok(DatasetIndex { root: root.to_path_buf(), classes: out })
}
