//! VisA in its raw layout: `<root>/<obj>/Data/Images/{Normal,Anomaly}/*.JPG`,
//! `<root>/<obj>/Data/Masks/Anomaly/*.png`, split by `<root>/split_csv/1cls.csv`
//! (columns object,split,label,image,mask; paths relative to the root). The folders do not
//! say what is train and what is test, so the csv is the only source of the split; VisA
//! masks hold small values (1, 38, ...) instead of 255 and are binarised non-zero by
//! [`super::imageio::load_mask`].

use super::{rel_key, select_classes, ClassSamples, DataError, DatasetIndex, Problem, Sample, Scan};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the split file lives, relative to the VisA root.
pub const SPLIT_CSV: &str = "split_csv/1cls.csv";

/// One data row of the split csv, by column name.
struct Row {
    line: usize,
    object: String,
    train: bool,
    anomalous: bool,
    image: String,
    mask: String,
}

/// Parses 1cls.csv: header names the columns (any order), fields trimmed (CRLF and stray
/// spaces accepted), surrounding double quotes dropped, blank lines skipped.
fn parse_csv(path: &Path, text: &str) -> Result<Vec<Row>, DataError> {
    let err = |line: usize, message: String| DataError::Meta { path: path.to_path_buf(), line, message };
    let fields =
        |l: &str| -> Vec<String> { l.split(',').map(|f| f.trim().trim_matches('"').trim().to_string()).collect() };
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_start_matches('\u{feff}')))
        .filter(|(_, l)| !l.trim().is_empty());
    let (hline, header) =
        lines.next().ok_or_else(|| err(1, "empty file; expected the header object,split,label,image,mask".into()))?;
    let header = fields(header);
    let col = |name: &str| {
        header.iter().position(|h| h.eq_ignore_ascii_case(name)).ok_or_else(|| {
            err(
                hline,
                format!(
                    "header {:?} has no column {name:?} (expected object,split,label,image,mask)",
                    header.join(",")
                ),
            )
        })
    };
    let (co, cs, cl, ci, cm) = (col("object")?, col("split")?, col("label")?, col("image")?, col("mask")?);
    let mut rows = vec![];
    for (line, l) in lines {
        let f = fields(l);
        if f.len() < header.len() {
            return Err(err(line, format!("{} fields, the header has {}", f.len(), header.len())));
        }
        let train = match f[cs].as_str() {
            "train" => true,
            "test" => false,
            other => return Err(err(line, format!("split {other:?} must be train or test"))),
        };
        let anomalous = match f[cl].as_str() {
            "normal" => false,
            "anomaly" => true,
            other => return Err(err(line, format!("label {other:?} must be normal or anomaly"))),
        };
        if f[co].is_empty() || f[ci].is_empty() {
            return Err(err(line, "empty object or image field".into()));
        }
        rows.push(Row { line, object: f[co].clone(), train, anomalous, image: f[ci].clone(), mask: f[cm].clone() });
    }
    Ok(rows)
}

/// Lists VisA under `root` (which must exist); see [`super::scan_all`].
pub(crate) fn scan_layout(root: &Path, classes: &[String]) -> Result<Scan, DataError> {
    let csv = root.join(SPLIT_CSV);
    let text = std::fs::read_to_string(&csv).map_err(|e| DataError::MissingMeta {
        path: csv.clone(),
        fix: format!(
            "{e}; VisA is split by the csv of the public release (split_csv/1cls.csv next to the object folders)"
        ),
    })?;
    let rows = parse_csv(&csv, &text)?;
    let mut by_class: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for r in rows {
        by_class.entry(r.object.clone()).or_default().push(r);
    }
    let found: Vec<String> = by_class.keys().cloned().collect();
    if found.is_empty() {
        return Err(DataError::NoClasses { root: root.to_path_buf() });
    }
    let mut out = vec![];
    let mut problems = vec![];
    let mut mask_dirs = vec![];
    for class in select_classes(&found, classes, root)? {
        let mut s = ClassSamples::default();
        for r in &by_class[&class] {
            let listed_in = format!("{} line {}", csv.display(), r.line);
            let path = root.join(&r.image);
            let mask = (r.anomalous && !r.mask.is_empty()).then(|| root.join(&r.mask));
            let missing: Vec<&PathBuf> = std::iter::once(&path).chain(mask.as_ref()).filter(|p| !p.is_file()).collect();
            if !missing.is_empty() {
                problems.extend(
                    missing
                        .into_iter()
                        .map(|p| Problem::ListedMissing { path: p.clone(), listed_in: listed_in.clone() }),
                );
                continue;
            }
            if r.train && r.anomalous {
                problems.push(Problem::AnomalousInTrain { path, listed_in });
                continue;
            }
            let sample = Sample {
                class: class.clone(),
                key: rel_key(root, &path),
                path,
                label: r.anomalous,
                defect: if r.anomalous { "anomaly" } else { "good" }.into(),
                mask,
            };
            if r.train {
                s.train.push(sample)
            } else {
                s.test.push(sample)
            }
        }
        let cdir = root.join(&class);
        if s.train.is_empty() {
            problems.push(Problem::EmptySplit { class: class.clone(), split: "train", dir: cdir.clone() });
        }
        if s.test.is_empty() {
            problems.push(Problem::EmptySplit { class: class.clone(), split: "test", dir: cdir.clone() });
        }
        let md = cdir.join("Data").join("Masks").join("Anomaly");
        if md.is_dir() {
            mask_dirs.push(md);
        }
        out.push((class, s));
    }
    Ok(Scan { index: DatasetIndex { root: root.to_path_buf(), classes: out }, problems, mask_dirs })
}
