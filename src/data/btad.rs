//! BTAD layout: `<root>/NN/train/ok/*`, `<root>/NN/test/{ok,ko}/*`,
//! `<root>/NN/ground_truth/ko/*`. "ok" is normal, "ko" anomalous. Extensions differ per
//! class (01: .bmp images, .png masks; 02: .png and .png; 03: .bmp and .bmp), so a mask is
//! matched to its image by file stem whatever either's extension.

use super::{class_dirs, images_in, rel_key, select_classes, ClassSamples, DataError, Problem, Sample, Scan};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Lists the BTAD layout under `root` (which must exist); see [`super::scan_all`].
pub(crate) fn scan_layout(root: &Path, classes: &[String]) -> Result<Scan, DataError> {
    let found = class_dirs(root, "train")?;
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
        let train_dir = cdir.join("train").join("ok");
        let train: Vec<Sample> = images_in(&train_dir)?.into_iter().map(|p| mk(p, false, "good", None)).collect();
        if train.is_empty() {
            problems.push(Problem::EmptySplit { class: class.clone(), split: "train", dir: train_dir });
        }
        let test_dir = cdir.join("test");
        let mut test: Vec<Sample> = images_in(&test_dir.join("ok"))?.into_iter().map(|p| mk(p, false, "good", None)).collect();
        let mask_dir = cdir.join("ground_truth").join("ko");
        let masks: BTreeMap<String, PathBuf> = images_in(&mask_dir)?
            .into_iter()
            .filter_map(|m| Some((m.file_stem()?.to_string_lossy().to_string(), m)))
            .collect();
        for p in images_in(&test_dir.join("ko"))? {
            let mask = p.file_stem().and_then(|s| masks.get(s.to_string_lossy().as_ref())).cloned();
            test.push(mk(p, true, "ko", mask));
        }
        if test.is_empty() {
            problems.push(Problem::EmptySplit { class: class.clone(), split: "test", dir: test_dir });
        }
        if mask_dir.is_dir() {
            mask_dirs.push(mask_dir);
        }
        out.push((class, ClassSamples { train, test }));
    }
    Ok(Scan { index: super::DatasetIndex { root: root.to_path_buf(), classes: out }, problems, mask_dirs })
}
