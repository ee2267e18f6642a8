//! `ras data check`: validates a dataset before hours of training. Decodes every image
//! and mask in full (a truncated file has a valid header and passes a header check),
//! compares mask and image sizes, finds anomalous images without masks and masks no image
//! uses, counts images per class and split, and compares the totals to the published
//! sizes, so a half-downloaded or wrongly unpacked dataset shows before training on it.

use super::{imageio, images_in, scan_all, DataError};
use crate::config::DatasetConfig;
use crate::config::DatasetKind;
use crate::progress::Progress;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Something wrong with a dataset, naming the file (or folder) it concerns.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// A class without training or without test images.
    EmptySplit { class: String, split: &'static str, dir: PathBuf },
    /// A metadata row (VisA csv, JSON lines) names a file that does not exist.
    ListedMissing { path: PathBuf, listed_in: String },
    /// A metadata row names a file outside `dataset.root` (an absolute path, or `..`
    /// climbing out of the root): refused, so a metadata file cannot make a run read
    /// (and store features of) files its dataset does not hold. `path` as written.
    OutsideRoot { path: PathBuf, root: PathBuf, listed_in: String },
    /// The metadata puts an anomalous image in the training split (unsupervised training
    /// must see normal images only).
    AnomalousInTrain { path: PathBuf, listed_in: String },
    /// An anomalous test image without a mask: scored as all-anomalous (spec section 6),
    /// which lowers pixel metrics if the mask was merely lost.
    MissingMask { image: PathBuf },
    /// A file in a mask folder that no image refers to (misnamed mask, or its image is gone).
    OrphanMask { mask: PathBuf },
    /// A file that does not decode in full.
    Unreadable { path: PathBuf, message: String },
    /// A mask whose size differs from its image's.
    SizeMismatch { image: PathBuf, image_dims: (u32, u32), mask: PathBuf, mask_dims: (u32, u32) },
}

impl Problem {
    /// Short stable name of the kind of problem (printed in brackets, used by tests).
    pub fn code(&self) -> &'static str {
        match self {
            Problem::EmptySplit { .. } => "empty-split",
            Problem::ListedMissing { .. } => "missing-file",
            Problem::AnomalousInTrain { .. } => "anomalous-train",
            Problem::OutsideRoot { .. } => "outside-root",
            Problem::MissingMask { .. } => "no-mask",
            Problem::OrphanMask { .. } => "orphan-mask",
            Problem::Unreadable { .. } => "unreadable",
            Problem::SizeMismatch { .. } => "size-mismatch",
        }
    }

    /// The file (or folder) the problem is about.
    pub fn file(&self) -> &Path {
        match self {
            Problem::EmptySplit { dir, .. } => dir,
            Problem::ListedMissing { path, .. }
            | Problem::AnomalousInTrain { path, .. }
            | Problem::OutsideRoot { path, .. }
            | Problem::Unreadable { path, .. } => path,
            Problem::MissingMask { image } => image,
            Problem::OrphanMask { mask } | Problem::SizeMismatch { mask, .. } => mask,
        }
    }

    /// Whether [`super::scan`] refuses the dataset for it. Undecodable files and size
    /// mismatches are found when the data is loaded; anomalies without masks are legal.
    pub fn blocks_training(&self) -> bool {
        matches!(
            self,
            Problem::EmptySplit { .. }
                | Problem::ListedMissing { .. }
                | Problem::AnomalousInTrain { .. }
                | Problem::OutsideRoot { .. }
        )
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::EmptySplit { class, split, dir } => {
                let what = if *split == "train" { "training" } else { "test" };
                write!(f, "class {class:?} has no {what} images in {}", dir.display())
            }
            Problem::ListedMissing { path, listed_in } => {
                write!(f, "{} does not exist but {listed_in} lists it (incomplete download or wrong dataset.root?)", path.display())
            }
            Problem::AnomalousInTrain { path, listed_in } => {
                write!(f, "{} is anomalous but {listed_in} puts it in the training split", path.display())
            }
            Problem::OutsideRoot { path, root, listed_in } => write!(
                f,
                "{} is outside dataset.root {} but {listed_in} lists it (metadata paths must be relative to the root and stay inside it)",
                path.display(),
                root.display()
            ),
            Problem::MissingMask { image } => {
                write!(f, "{} is anomalous but has no mask (it would count as all-anomalous)", image.display())
            }
            Problem::OrphanMask { mask } => write!(f, "{} is in a mask folder but no image refers to it (misnamed?)", mask.display()),
            Problem::Unreadable { path, message } => write!(f, "{} does not decode: {message}", path.display()),
            Problem::SizeMismatch { image, image_dims, mask, mask_dims } => write!(
                f,
                "mask {} is {}x{} but its image {} is {}x{}",
                mask.display(),
                mask_dims.0,
                mask_dims.1,
                image.display(),
                image_dims.0,
                image_dims.1
            ),
        }
    }
}

/// Image counts of one class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassCounts {
    pub class: String,
    pub train: usize,
    pub test_normal: usize,
    pub test_anomalous: usize,
    /// Anomalous test images that have a mask.
    pub masks: usize,
}

/// Published dataset sizes (spec section 8): train / test images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub dataset: &'static str,
    pub train: usize,
    pub test: usize,
}

pub const PUBLISHED: [Published; 4] = [
    Published { dataset: "MVTec-AD", train: 3629, test: 1725 },
    Published { dataset: "VisA", train: 8659, test: 2162 },
    Published { dataset: "BTAD", train: 1799, test: 741 },
    Published { dataset: "MPDD", train: 888, test: 458 },
];

/// What `ras data check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub kind: crate::config::DatasetKind,
    pub root: PathBuf,
    pub classes: Vec<ClassCounts>,
    /// Sorted by file, then kind.
    pub problems: Vec<Problem>,
    /// Files decoded in full.
    pub files_decoded: usize,
}

impl CheckReport {
    pub fn total(&self) -> ClassCounts {
        self.classes.iter().fold(ClassCounts { class: "total".into(), ..Default::default() }, |mut t, c| {
            t.train += c.train;
            t.test_normal += c.test_normal;
            t.test_anomalous += c.test_anomalous;
            t.masks += c.masks;
            t
        })
    }

    /// The published dataset whose train/test sizes equal these totals, if any.
    pub fn published_match(&self) -> Option<Published> {
        let t = self.total();
        PUBLISHED.iter().copied().find(|p| p.train == t.train && p.test == t.test_normal + t.test_anomalous)
    }

    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// For stderr when not ok: the error and the files at fault (the report is on stdout).
    pub fn render_errors(&self) -> String {
        let mut s = format!("error: dataset {} has {} problems:\n", self.root.display(), self.problems.len());
        for p in &self.problems {
            let _ = writeln!(s, "  [{}] {p}", p.code());
        }
        s
    }

    /// The summary table, the comparison with the published sizes and the problems.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ =
            writeln!(s, "dataset {} (kind {}): {} files decoded", self.root.display(), self.kind, self.files_decoded);
        let _ =
            writeln!(s, "{:<16} {:>7} {:>12} {:>15} {:>7}", "class", "train", "test normal", "test anomalous", "masks");
        for c in self.classes.iter().chain(std::iter::once(&self.total())) {
            let _ = writeln!(
                s,
                "{:<16} {:>7} {:>12} {:>15} {:>7}",
                c.class, c.train, c.test_normal, c.test_anomalous, c.masks
            );
        }
        let t = self.total();
        let test = t.test_normal + t.test_anomalous;
        match self.published_match() {
            Some(p) => {
                let _ = writeln!(
                    s,
                    "{} train / {test} test images: matches the published counts of {} (train/test)",
                    t.train, p.dataset
                );
            }
            None => {
                let expected: Vec<String> = PUBLISHED
                    .iter()
                    .filter(|p| match self.kind {
                        DatasetKind::Mvtec => p.dataset == "MVTec-AD" || p.dataset == "MPDD",
                        DatasetKind::Mpdd => p.dataset == "MPDD",
                        DatasetKind::Visa => p.dataset == "VisA",
                        DatasetKind::Btad => p.dataset == "BTAD",
                        DatasetKind::Jsonl => true,
                    })
                    .map(|p| format!("{} {} / {}", p.dataset, p.train, p.test))
                    .collect();
                let _ = writeln!(
                    s,
                    "{} train / {test} test images: differs from the published counts ({}); fine for a subset, otherwise files are missing",
                    t.train,
                    expected.join(", ")
                );
            }
        }
        if self.problems.is_empty() {
            let _ = writeln!(s, "no problems found");
        } else {
            let _ = writeln!(s, "{} problems:", self.problems.len());
            for p in &self.problems {
                let _ = writeln!(s, "  [{}] {p}", p.code());
            }
        }
        s
    }
}

/// Decodes every file in `files` on all cores; the error message per file that fails.
fn decode_all(files: &[PathBuf], progress: &Progress) -> Vec<Result<(u32, u32), String>> {
    let bar = progress.bar(files.len() as u64, "check");
    let next = AtomicUsize::new(0);
    type Size = Result<(u32, u32), String>;
    let results: Mutex<Vec<Option<Size>>> = Mutex::new(vec![None; files.len()]);
    let threads =
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8).min(files.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(i) else { break };
                let r = imageio::decoded_dimensions(path).map_err(|e| match e {
                    DataError::Decode { message, .. } | DataError::Read { message, .. } => message,
                    other => other.to_string(),
                });
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not decoded".into())))
        .collect()
}

/// Checks the dataset `cfg` describes (kind, root, classes, metadata files). Errors only
/// when the layout cannot be read at all (see [`super::scan_all`]); everything else is a
/// [`Problem`] in the report.
pub fn check(cfg: &DatasetConfig, progress: &Progress) -> Result<CheckReport, DataError> {
    let scan = scan_all(cfg)?;
    let mut problems = scan.problems;
    let mut counts = vec![];
    let mut referenced_masks = BTreeSet::new();
    let mut files = BTreeSet::new();
    for (class, s) in &scan.index.classes {
        let mut c = ClassCounts { class: class.clone(), train: s.train.len(), ..Default::default() };
        for sample in &s.test {
            match (sample.label, &sample.mask) {
                (false, _) => c.test_normal += 1,
                (true, m) => {
                    c.test_anomalous += 1;
                    match m {
                        Some(_) => c.masks += 1,
                        None => problems.push(Problem::MissingMask { image: sample.path.clone() }),
                    }
                }
            }
        }
        for sample in s.train.iter().chain(&s.test) {
            files.insert(sample.path.clone());
            if let Some(m) = &sample.mask {
                files.insert(m.clone());
                referenced_masks.insert(m.clone());
            }
        }
        counts.push(c);
    }
    for dir in &scan.mask_dirs {
        for m in images_in(dir)? {
            if !referenced_masks.contains(&m) {
                problems.push(Problem::OrphanMask { mask: m });
            }
        }
    }
    let files: Vec<PathBuf> = files.into_iter().collect();
    let decoded: BTreeMap<&PathBuf, Result<(u32, u32), String>> =
        files.iter().zip(decode_all(&files, progress)).collect();
    for (path, r) in &decoded {
        if let Err(message) = r {
            problems.push(Problem::Unreadable { path: (*path).clone(), message: message.clone() });
        }
    }
    for (_, s) in &scan.index.classes {
        for sample in s.test.iter() {
            let Some(mask) = &sample.mask else { continue };
            if let (Some(Ok(i)), Some(Ok(m))) = (decoded.get(&sample.path), decoded.get(mask)) {
                if i != m {
                    problems.push(Problem::SizeMismatch {
                        image: sample.path.clone(),
                        image_dims: *i,
                        mask: mask.clone(),
                        mask_dims: *m,
                    });
                }
            }
        }
    }
    problems.sort_by(|a, b| (a.file(), a.code()).cmp(&(b.file(), b.code())));
    Ok(CheckReport { kind: cfg.kind, root: cfg.root.clone(), classes: counts, problems, files_decoded: files.len() })
}
