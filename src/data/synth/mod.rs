//! Synthetic MVTec-AD-style dataset generator (`ras data synth`).
//!
//! Layout written under `out`:
//! `<class>/train/good/NNN.png`, `<class>/test/good/NNN.png`,
//! `<class>/test/<defect>/NNN.png`, `<class>/ground_truth/<defect>/NNN_mask.png`.
//!
//! Every image is rendered from a per-pixel pure function of parameters drawn
//! from a ChaCha8 RNG seeded by (seed, class, split, index), so output is
//! byte-identical for the same spec. Defective images are the clean rendering
//! with a defect blended in; the mask is exactly the set of changed pixels.

use std::f32::consts::{PI, TAU};
use std::fs;
use std::path::{Path, PathBuf};

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, GrayImage, ImageEncoder, Luma, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod defect;
mod field;
mod scene;
use defect::*;
use field::*;
use scene::*;

#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub classes: usize,
    pub train_per_class: usize,
    pub test_good_per_class: usize,
    pub test_defect_per_kind: usize,
    pub image_size: u32,
    pub seed: u64,
}

impl Default for SynthSpec {
    fn default() -> Self {
        Self {
            classes: 3,
            train_per_class: 24,
            test_good_per_class: 8,
            test_defect_per_kind: 3,
            image_size: 224,
            seed: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode {path}")]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("invalid synthetic spec: {0}")]
    Spec(String),
}

#[derive(Debug, Clone)]
pub struct SynthSummary {
    pub classes: Vec<String>,
    pub train_images: usize,
    pub test_images: usize,
    pub anomalous_images: usize,
}

impl SynthSummary {
    /// What `ras data synth` prints once the dataset is in `out`.
    pub fn render(&self, out: &Path) -> String {
        format!(
            "wrote {} classes ({}) to {}: {} train, {} test images ({} anomalous)\n",
            self.classes.len(),
            self.classes.join(", "),
            out.display(),
            self.train_images,
            self.test_images,
            self.anomalous_images
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Weave,
    Grain,
    Tiles,
    Disc,
    Bolt,
    Chip,
}
const KINDS: [Kind; 6] = [Kind::Weave, Kind::Grain, Kind::Tiles, Kind::Disc, Kind::Bolt, Kind::Chip];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    Scratch,
    Hole,
    Stain,
    Missing,
    Color,
}

impl Kind {
    fn name(self) -> &'static str {
        ["weave", "grain", "tiles", "disc", "bolt", "chip"][self as usize]
    }
    fn defects(self) -> &'static [Defect] {
        use Defect::*;
        match self {
            Kind::Weave => &[Scratch, Hole, Missing, Color],
            Kind::Grain => &[Scratch, Hole, Stain, Color],
            Kind::Tiles => &[Scratch, Hole, Stain, Missing],
            Kind::Disc => &[Scratch, Stain, Missing, Color],
            Kind::Bolt => &[Scratch, Hole, Stain, Missing],
            Kind::Chip => &[Scratch, Hole, Missing, Color],
        }
    }
}

impl Defect {
    fn name(self) -> &'static str {
        ["scratch", "hole", "stain", "missing", "color"][self as usize]
    }
}

/// Class names in order for `n` classes: the six kinds, then `weave_2`, ... `weave_3`, ...
pub fn class_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let base = KINDS[i % KINDS.len()].name();
            match i / KINDS.len() {
                0 => base.to_string(),
                v => format!("{base}_{}", v + 1),
            }
        })
        .collect()
}

// ---------------------------------------------------------------- sampling & rendering

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Train,
    TestGood,
    Defect(Defect),
}

impl Split {
    fn code(self) -> u64 {
        match self {
            Split::Train => 1,
            Split::TestGood => 2,
            Split::Defect(d) => 16 + d as u64,
        }
    }
}

fn scene_for(spec: &SynthSpec, class_idx: usize, split: Split, index: usize) -> (Scene, ChaCha8Rng) {
    let st = style_for(spec.seed, class_idx);
    let mut rng = ChaCha8Rng::seed_from_u64(seed_of(&[spec.seed, class_idx as u64, split.code(), index as u64]));
    let p = draw_params(st.kind, spec.image_size as f32, &mut rng);
    (Scene::new(st, p, spec.image_size), rng)
}

fn render(sc: &Scene) -> RgbImage {
    let n = sc.s as u32;
    RgbImage::from_fn(n, n, |x, y| image::Rgb(quantize(sc.pixel(x, y, Omit::None))))
}

/// The defect-free rendering of image `index` of `split` for class `class_idx`.
fn clean_image(spec: &SynthSpec, class_idx: usize, split: Split, index: usize) -> RgbImage {
    render(&scene_for(spec, class_idx, split, index).0)
}

fn mask_of(clean: &RgbImage, defective: &RgbImage) -> GrayImage {
    GrayImage::from_fn(clean.width(), clean.height(), |x, y| {
        Luma([if clean.get_pixel(x, y) != defective.get_pixel(x, y) { 255 } else { 0 }])
    })
}

/// Defective image and its mask for test image `index` of defect kind `d`.
fn defect_sample(spec: &SynthSpec, class_idx: usize, d: Defect, index: usize) -> (RgbImage, GrayImage) {
    let (sc, mut rng) = scene_for(spec, class_idx, Split::Defect(d), index);
    let clean = render(&sc);
    let mut last = (clean.clone(), mask_of(&clean, &clean));
    for _ in 0..16 {
        let img = render_defect(&sc, &clean, d, &mut rng);
        let mask = mask_of(&clean, &img);
        let nonempty = mask.pixels().any(|p| p.0[0] != 0);
        last = (img, mask);
        if nonempty {
            break;
        }
    }
    last
}

fn write_png(path: &Path, w: u32, h: u32, data: &[u8], ct: ExtendedColorType) -> Result<(), SynthError> {
    let mut buf = Vec::new();
    PngEncoder::new(&mut buf)
        .write_image(data, w, h, ct)
        .map_err(|source| SynthError::Image { path: path.to_path_buf(), source })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, &buf).map_err(|source| SynthError::Io { path: tmp.clone(), source })?;
    fs::rename(&tmp, path).map_err(|source| SynthError::Io { path: path.to_path_buf(), source })
}

fn mkdir(p: &Path) -> Result<(), SynthError> {
    fs::create_dir_all(p).map_err(|source| SynthError::Io { path: p.to_path_buf(), source })
}

fn validate(spec: &SynthSpec) -> Result<(), SynthError> {
    let err = |m: String| Err(SynthError::Spec(m));
    if spec.classes == 0 {
        return err("classes must be at least 1".into());
    }
    if spec.train_per_class == 0 {
        return err("train_per_class must be at least 1".into());
    }
    if !(32..=4096).contains(&spec.image_size) {
        return err(format!("image_size must be in 32..=4096, got {}", spec.image_size));
    }
    Ok(())
}

/// Writes the dataset under `out`. `progress` is called once per image written with (done, total).
pub fn generate(
    out: &Path,
    spec: &SynthSpec,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SynthSummary, SynthError> {
    validate(spec)?;
    let names = class_names(spec.classes);
    let n_def = |ci: usize| KINDS[ci % KINDS.len()].defects().len() * spec.test_defect_per_kind;
    let total: usize = (0..spec.classes).map(|ci| spec.train_per_class + spec.test_good_per_class + n_def(ci)).sum();
    let sz = spec.image_size;
    let mut done = 0;
    let mut summary = SynthSummary { classes: names.clone(), train_images: 0, test_images: 0, anomalous_images: 0 };
    for (ci, name) in names.iter().enumerate() {
        let root = out.join(name);
        for (split, dir, count) in
            [(Split::Train, "train", spec.train_per_class), (Split::TestGood, "test", spec.test_good_per_class)]
        {
            let d = root.join(dir).join("good");
            mkdir(&d)?;
            for i in 0..count {
                let img = clean_image(spec, ci, split, i);
                write_png(&d.join(format!("{i:03}.png")), sz, sz, img.as_raw(), ExtendedColorType::Rgb8)?;
                done += 1;
                progress(done, total);
            }
        }
        summary.train_images += spec.train_per_class;
        summary.test_images += spec.test_good_per_class;
        if spec.test_defect_per_kind == 0 {
            continue;
        }
        for &d in KINDS[ci % KINDS.len()].defects() {
            let (img_dir, gt_dir) = (root.join("test").join(d.name()), root.join("ground_truth").join(d.name()));
            mkdir(&img_dir)?;
            mkdir(&gt_dir)?;
            for i in 0..spec.test_defect_per_kind {
                let (img, mask) = defect_sample(spec, ci, d, i);
                write_png(&img_dir.join(format!("{i:03}.png")), sz, sz, img.as_raw(), ExtendedColorType::Rgb8)?;
                write_png(&gt_dir.join(format!("{i:03}_mask.png")), sz, sz, mask.as_raw(), ExtendedColorType::L8)?;
                summary.test_images += 1;
                summary.anomalous_images += 1;
                done += 1;
                progress(done, total);
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn small(classes: usize, seed: u64) -> SynthSpec {
        SynthSpec { classes, train_per_class: 3, test_good_per_class: 2, test_defect_per_kind: 2, image_size: 64, seed }
    }

    fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let (mut out, mut stack) = (BTreeMap::new(), vec![root.to_path_buf()]);
        while let Some(d) = stack.pop() {
            for p in fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()) {
                if p.is_dir() {
                    stack.push(p)
                } else {
                    out.insert(p.strip_prefix(root).unwrap().to_path_buf(), fs::read(&p).unwrap());
                }
            }
        }
        out
    }

    #[test]
    fn class_names_cycle() {
        let n = class_names(8);
        assert_eq!(n[..6], ["weave", "grain", "tiles", "disc", "bolt", "chip"]);
        assert_eq!(n[6..], ["weave_2", "grain_2"]);
        assert_eq!(class_names(13)[12], "weave_3");
        assert!(class_names(0).is_empty());
    }

    #[test]
    fn deterministic_and_seed_sensitive() {
        let dirs = [0; 3].map(|_| tempfile::tempdir().unwrap());
        for (d, seed) in dirs.iter().zip([5, 5, 6]) {
            generate(d.path(), &small(7, seed), &mut |_, _| {}).unwrap();
        }
        let [fa, fb, fc] = [0, 1, 2].map(|i| files(dirs[i].path()));
        assert_eq!(fa.len(), 7 * (3 + 2 + 2 * 4 * 2));
        assert!(fa.keys().eq(fb.keys()) && fa.keys().eq(fc.keys()));
        assert!(!fa.keys().any(|k| k.to_string_lossy().ends_with(".tmp")));
        for (k, v) in &fa {
            assert!(v == &fb[k], "{} differs between runs", k.display());
            if !k.to_string_lossy().contains("_mask") {
                assert!(v != &fc[k], "{} identical for another seed", k.display());
            }
        }
    }

    #[test]
    fn layout_masks_and_pixels() {
        let (dir, spec) = (tempfile::tempdir().unwrap(), small(6, 11));
        let mut calls = Vec::new();
        let sum = generate(dir.path(), &spec, &mut |d, t| calls.push((d, t))).unwrap();
        let total = 6 * (3 + 2 + 4 * 2);
        assert_eq!(calls, (1..=total).map(|d| (d, total)).collect::<Vec<_>>());
        assert_eq!((sum.train_images, sum.test_images, sum.anomalous_images), (18, 60, 48));
        assert_eq!(sum.classes, class_names(6));
        let count = |p: PathBuf| fs::read_dir(p).unwrap().count();
        for (ci, name) in sum.classes.iter().enumerate() {
            let root = dir.path().join(name);
            let defects = KINDS[ci].defects();
            assert!(defects.len() >= 3);
            assert_eq!([count(root.join("train/good")), count(root.join("test/good"))], [3, 2]);
            assert_eq!(
                [count(root.join("test")), count(root.join("ground_truth"))],
                [defects.len() + 1, defects.len()]
            );
            let good = image::open(root.join("test/good/001.png")).unwrap().to_rgb8();
            assert_eq!(good, clean_image(&spec, ci, Split::TestGood, 1));
            assert_ne!(good, clean_image(&spec, ci, Split::Train, 1), "test good must use other seeds than train");
            for d in defects.iter().map(|d| d.name()) {
                assert_eq!([count(root.join("test").join(d)), count(root.join("ground_truth").join(d))], [2, 2]);
            }
            for (&d, i) in defects.iter().flat_map(|d| (0..2).map(move |i| (d, i))) {
                let img = image::open(root.join(format!("test/{}/{i:03}.png", d.name()))).unwrap();
                let mask = image::open(root.join(format!("ground_truth/{}/{i:03}_mask.png", d.name()))).unwrap();
                assert_eq!((img.color(), mask.color()), (image::ColorType::Rgb8, image::ColorType::L8));
                let (img, mask, clean) = (img.to_rgb8(), mask.to_luma8(), clean_image(&spec, ci, Split::Defect(d), i));
                assert_eq!((img.dimensions(), mask.dimensions()), ((64, 64), (64, 64)));
                let mut on = 0;
                for (x, y, m) in mask.enumerate_pixels() {
                    let (a, b) = (img.get_pixel(x, y).0, clean.get_pixel(x, y).0);
                    let diff = (0..3).map(|k| (a[k] as i32 - b[k] as i32).abs()).max().unwrap();
                    match m.0[0] {
                        0 => assert_eq!(diff, 0, "{name}/{} {i}: unmasked pixel ({x},{y}) changed", d.name()),
                        255 => {
                            on += 1;
                            assert!(diff >= MIN_DELTA as i32, "{name}/{} {i}: masked pixel changed by {diff}", d.name())
                        }
                        v => panic!("mask value {v}"),
                    }
                }
                let frac = on as f32 / (64.0 * 64.0);
                assert!(on > 0 && frac < 0.15, "{name}/{} {i}: mask fraction {frac}", d.name());
            }
        }
    }

    #[test]
    fn train_images_vary_and_defects_range_from_subtle_to_obvious() {
        let spec = SynthSpec { image_size: 96, ..small(6, 3) };
        let (mut subtle, mut obvious) = (0, 0);
        for (ci, kind) in KINDS.iter().enumerate() {
            let train: Vec<_> = (0..3).map(|i| clean_image(&spec, ci, Split::Train, i)).collect();
            assert!(train[0] != train[1] && train[1] != train[2], "{}: train images identical", kind.name());
            for (&d, i) in kind.defects().iter().flat_map(|d| (0..4).map(move |i| (d, i))) {
                let (clean, (img, mask)) =
                    (clean_image(&spec, ci, Split::Defect(d), i), defect_sample(&spec, ci, d, i));
                let diffs: Vec<f32> = mask
                    .enumerate_pixels()
                    .filter(|p| p.2 .0[0] == 255)
                    .map(|(x, y, _)| {
                        let (a, b) = (img.get_pixel(x, y).0, clean.get_pixel(x, y).0);
                        (0..3).map(|k| (a[k] as f32 - b[k] as f32).abs()).sum::<f32>() / 3.0
                    })
                    .collect();
                let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
                if mean < 15.0 {
                    subtle += 1
                } else if mean > 40.0 {
                    obvious += 1
                }
            }
        }
        assert!(subtle >= 10 && obvious >= 10, "subtle {subtle}, obvious {obvious}");
    }

    #[test]
    fn spec_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = SynthSpec::default();
        let bad = [
            SynthSpec { classes: 0, ..d.clone() },
            SynthSpec { image_size: 31, ..d.clone() },
            SynthSpec { train_per_class: 0, ..d },
        ];
        for spec in bad {
            let err = generate(dir.path(), &spec, &mut |_, _| panic!("no progress expected")).unwrap_err();
            assert!(matches!(err, SynthError::Spec(_)), "{err}");
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let ok = SynthSpec {
            classes: 1,
            train_per_class: 1,
            test_good_per_class: 0,
            test_defect_per_kind: 0,
            image_size: 32,
            seed: 1,
        };
        let sum = generate(dir.path(), &ok, &mut |_, _| {}).unwrap();
        assert_eq!((sum.train_images, sum.test_images, sum.anomalous_images), (1, 0, 0));
        assert_eq!(files(dir.path()).len(), 1);
    }
}
