//! JSON-lines metadata, as the public RAS/UniAD code reads it: one object per line,
//! `{"filename": ..., "label": 0|1, "label_name": "good"|"defective", "maskname": ...,
//! "clsname": ...}`, paths relative to the image root (`dataset.root`). One file for the
//! training split (`dataset.train_meta`), one for the test split (`dataset.test_meta`);
//! relative metadata paths are resolved against `dataset.root`. Lets any dataset the
//! public code was run on be used without moving files into a folder layout.

use super::{rel_key, select_classes, ClassSamples, DataError, DatasetIndex, Problem, Sample, Scan};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One metadata line. Unknown fields are allowed: the public files carry extras.
#[derive(Deserialize)]
struct Row {
    filename: String,
    label: u8,
    #[serde(default)]
    label_name: Option<String>,
    #[serde(default)]
    maskname: Option<String>,
    clsname: String,
}

fn resolve(root: &Path, p: &Path) -> PathBuf {
    if p.is_relative() {
        root.join(p)
    } else {
        p.to_path_buf()
    }
}

/// Whether `p` (a path from a metadata row) leaves the root it is relative to: an
/// absolute path, or a `..` that climbs above the root at any point (`a/../../x`).
/// Lexical on purpose: the files need not exist for the check (`ras data check` reports
/// both problems), and a symlink inside the root is the dataset owner's choice.
fn escapes_root(p: &Path) -> bool {
    use std::path::Component;
    let mut depth = 0usize;
    for c in p.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => return true,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            Component::Normal(_) => depth += 1,
        }
    }
    false
}

/// Reads one metadata file: (line number, row) in file order.
fn read_meta(path: &Path, key: &str) -> Result<Vec<(usize, Row)>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::MissingMeta {
        path: path.to_path_buf(),
        fix: format!("{e}; set {key} to a JSON-lines metadata file (relative paths are resolved against dataset.root)"),
    })?;
    let mut rows = vec![];
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let r: Row = serde_json::from_str(l.trim()).map_err(|e| DataError::Meta {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!(
                "{e} (expected an object with filename, label 0|1, clsname, and maskname for defective images)"
            ),
        })?;
        if r.label > 1 {
            return Err(DataError::Meta {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("label {} must be 0 or 1", r.label),
            });
        }
        rows.push((i + 1, r));
    }
    Ok(rows)
}

/// Lists the images two metadata files describe under `root` (which must exist); see
/// [`super::scan_all`]. `train_meta`/`test_meta` are the config's `dataset.train_meta` and
/// `dataset.test_meta`.
pub(crate) fn scan_layout(
    root: &Path,
    classes: &[String],
    train_meta: Option<&Path>,
    test_meta: Option<&Path>,
) -> Result<Scan, DataError> {
    let no_meta = |key: &str| DataError::MissingMeta {
        path: root.to_path_buf(),
        fix: format!("dataset.kind = \"jsonl\" needs {key} (the JSON-lines metadata file, relative to dataset.root)"),
    };
    let train_path = resolve(root, train_meta.ok_or_else(|| no_meta("dataset.train_meta"))?);
    let test_path = resolve(root, test_meta.ok_or_else(|| no_meta("dataset.test_meta"))?);
    let splits = [
        (true, read_meta(&train_path, "dataset.train_meta")?, &train_path),
        (false, read_meta(&test_path, "dataset.test_meta")?, &test_path),
    ];
    let found: Vec<String> = splits
        .iter()
        .flat_map(|(_, rows, _)| rows.iter().map(|(_, r)| r.clsname.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if found.is_empty() {
        return Err(DataError::NoClasses { root: root.to_path_buf() });
    }
    let wanted = select_classes(&found, classes, root)?;
    let mut per_class: BTreeMap<String, ClassSamples> =
        wanted.iter().map(|c| (c.clone(), ClassSamples::default())).collect();
    let mut problems = vec![];
    let mut mask_dirs = BTreeSet::new();
    for (train, rows, meta) in &splits {
        for (line, r) in rows {
            let Some(s) = per_class.get_mut(r.clsname.as_str()) else { continue };
            let listed_in = format!("{} line {line}", meta.display());
            let anomalous = r.label == 1;
            let mask_name = r.maskname.as_deref().filter(|m| anomalous && !m.is_empty());
            let outside: Vec<&str> =
                std::iter::once(r.filename.as_str()).chain(mask_name).filter(|p| escapes_root(Path::new(p))).collect();
            if !outside.is_empty() {
                problems.extend(outside.into_iter().map(|p| Problem::OutsideRoot {
                    path: PathBuf::from(p),
                    root: root.to_path_buf(),
                    listed_in: listed_in.clone(),
                }));
                continue;
            }
            let path = root.join(&r.filename);
            let mask = mask_name.map(|m| root.join(m));
            if let Some(parent) = mask.as_ref().and_then(|m| m.parent()) {
                mask_dirs.insert(parent.to_path_buf());
            }
            let missing: Vec<&PathBuf> = std::iter::once(&path).chain(mask.as_ref()).filter(|p| !p.is_file()).collect();
            if !missing.is_empty() {
                problems.extend(
                    missing
                        .into_iter()
                        .map(|p| Problem::ListedMissing { path: p.clone(), listed_in: listed_in.clone() }),
                );
                continue;
            }
            if *train && anomalous {
                problems.push(Problem::AnomalousInTrain { path, listed_in });
                continue;
            }
            let defect = match (&r.label_name, anomalous) {
                (_, false) => "good".to_string(),
                (Some(n), true) if !n.is_empty() => n.clone(),
                _ => "defective".to_string(),
            };
            let sample =
                Sample { class: r.clsname.clone(), key: rel_key(root, &path), path, label: anomalous, defect, mask };
            if *train {
                s.train.push(sample)
            } else {
                s.test.push(sample)
            }
        }
    }
    let mut out = vec![];
    for class in wanted {
        let s = per_class.remove(&class).unwrap_or_default();
        if s.train.is_empty() {
            problems.push(Problem::EmptySplit { class: class.clone(), split: "train", dir: train_path.clone() });
        }
        if s.test.is_empty() {
            problems.push(Problem::EmptySplit { class: class.clone(), split: "test", dir: test_path.clone() });
        }
        out.push((class, s));
    }
    Ok(Scan {
        index: DatasetIndex { root: root.to_path_buf(), classes: out },
        problems,
        mask_dirs: mask_dirs.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::escapes_root;
    use std::path::Path;

    #[test]
    fn paths_that_leave_the_root() {
        for p in ["../x.png", "/etc/passwd", "a/../../x.png", "./../x.png", "a/b/../../../x.png"] {
            assert!(escapes_root(Path::new(p)), "{p}");
        }
        for p in ["x.png", "a/b/x.png", "a/../x.png", "./a/x.png", "a/b/../../x.png"] {
            assert!(!escapes_root(Path::new(p)), "{p}");
        }
    }
}
