//! Pre-processing against Pillow itself (`.venv-ref`, made by `make setup-python`; without
//! it these tests FAIL and say so): what the public pipeline feeds the backbone is
//! `torchvision.transforms.Resize((s, s))` (PIL's BILINEAR, antialiased) of the PIL image,
//! masks resized with PIL's NEAREST, and every comparison here is exact: 0 grey levels.
//!
//! The references are Pillow's and PyTorch's own code (`tests/reference/resize_ref.py`,
//! `tests/reference/pil_pipeline_ref.py`); the JPEG files are written by PIL's encoder.

mod common;

use common::{python, repo};
use std::process::Command;
use tch::Kind;

/// Runs `python <script> <args>` in the repository root; panics with its output on failure.
fn run_python(script: &str, args: &[&str]) {
    let out =
        Command::new(python()).arg(repo().join(script)).args(args).current_dir(repo()).output().expect("start python");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} {args:?} failed:\n{text}");
}

/// A cheap integer hash: noise with no structure that a filter could smooth away.
fn hash(x: u32, y: u32, c: u32) -> u8 {
    let mut v = x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77) ^ c.wrapping_mul(0xC2B2_AE3D);
    v ^= v >> 15;
    v = v.wrapping_mul(0x2C1B_3C6D);
    v ^= v >> 12;
    (v & 0xFF) as u8
}

/// Widths and heights of the grid: smaller than, equal to and larger than the targets,
/// odd and even, so that the grid holds portrait, landscape and square images, up- and
/// down-scaling on either axis, and both orders of Pillow's two passes.
const SIDES: [u32; 9] = [61, 160, 224, 300, 333, 500, 517, 600, 1023];
const TARGETS: [usize; 2] = [224, 256];

/// Images are resized as PIL's BILINEAR (antialiased) and masks as PIL's NEAREST, equal to
/// Pillow 13's own results on every size of the grid.
#[test]
fn resizes_equal_pillows_over_a_grid_of_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let sizes: Vec<(u32, u32)> = SIDES.iter().flat_map(|&w| SIDES.iter().map(move |&h| (w, h))).collect();
    for (i, &(w, h)) in sizes.iter().enumerate() {
        // Noise on a gradient and bars: every rounding of every pass shows somewhere.
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let bars = (((x / 5 + y / 7) % 2) * 255) as u8;
            image::Rgb([hash(x, y, 0), ((x * 255) / w) as u8 / 2 + hash(x, y, 1) / 2, bars])
        });
        img.save(dir.path().join(format!("img-{i}.png"))).unwrap();
        let mask = image::GrayImage::from_fn(w, h, |x, y| {
            let (dx, dy) = (x as i64 - w as i64 / 3, y as i64 - h as i64 / 2);
            let blob = dx * dx + dy * dy < (w.min(h) as i64 / 5).pow(2);
            image::Luma([if blob || hash(x, y, 3) < 20 { 255 } else { 0 }])
        });
        mask.save(dir.path().join(format!("mask-{i}.png"))).unwrap();
    }
    let mut failures = vec![];
    let mut unfiltered_worst = 0u8;
    for size in TARGETS {
        run_python("tests/reference/resize_ref.py", &[dir.path().to_str().unwrap(), &size.to_string()]);
        for (i, &(w, h)) in sizes.iter().enumerate() {
            let (wu, hu) = (w as usize, h as usize);
            let img = image::open(dir.path().join(format!("img-{i}.png"))).unwrap().to_rgb8();
            let ours = ras::data::resize::bilinear(img.as_raw(), wu, hu, 3, size, size);
            let pil = std::fs::read(dir.path().join(format!("img-{i}.bilinear.bin"))).unwrap();
            assert_eq!(ours.len(), pil.len());
            let differ = ours.iter().zip(&pil).filter(|(a, b)| a != b).count();
            if differ > 0 {
                let worst = ours.iter().zip(&pil).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
                failures.push(format!(
                    "{w}x{h} -> {size}: {differ} of {} values differ from Pillow, by up to {worst} grey levels",
                    pil.len()
                ));
            }
            // The check can see a wrong filter: torch's unfiltered bilinear is far off here.
            if wu > 2 * size && hu > 2 * size {
                let t = tch::Tensor::from_data_size(img.as_raw(), &[1, h as i64, w as i64, 3], Kind::Uint8)
                    .permute([0, 3, 1, 2])
                    .to_kind(Kind::Float);
                let u = t
                    .upsample_bilinear2d([size as i64, size as i64], false, None, None)
                    .round()
                    .clamp(0, 255)
                    .to_kind(Kind::Uint8)
                    .permute([0, 2, 3, 1])
                    .contiguous();
                let u = Vec::<u8>::try_from(u.view(-1)).unwrap();
                unfiltered_worst = unfiltered_worst.max(u.iter().zip(&pil).map(|(a, b)| a.abs_diff(*b)).max().unwrap());
            }
            let m = image::open(dir.path().join(format!("mask-{i}.png"))).unwrap().to_luma8();
            let ours = ras::data::resize::nearest(m.as_raw(), wu, hu, size, size);
            let pil = std::fs::read(dir.path().join(format!("mask-{i}.nearest.bin"))).unwrap();
            let differ = ours.iter().zip(&pil).filter(|(a, b)| a != b).count();
            if differ > 0 {
                failures.push(format!("{w}x{h} mask -> {size}: {differ} of {} pixels differ from Pillow", pil.len()));
            }
        }
    }
    eprintln!(
        "{} sizes x {} targets: {} images and {} masks compared with Pillow, {} differ",
        sizes.len(),
        TARGETS.len(),
        sizes.len() * TARGETS.len(),
        sizes.len() * TARGETS.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{} resizes differ from Pillow:\n{}", failures.len(), failures.join("\n"));
    assert!(unfiltered_worst > 20, "an unfiltered bilinear should be far from Pillow here: {unfiltered_worst}");
}

/// JPEGs (4:4:4, 4:2:2, 4:2:0, grey, progressive; written by PIL) decode to PIL's pixels, and
/// the network input of every file (those JPEGs, RGB and grey PNGs, portrait ones among them)
/// is the one torchvision builds from the PIL image, bit for bit.
#[test]
fn decoded_pixels_and_network_inputs_equal_the_public_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    let size = 224i64;
    run_python("tests/reference/pil_pipeline_ref.py", &[dir.path().to_str().unwrap(), &size.to_string()]);
    let manifest: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    assert!(manifest.len() >= 60, "the reference wrote {} files", manifest.len());
    let mut failures = vec![];
    for entry in &manifest {
        let name = entry["file"].as_str().unwrap();
        let what = entry["what"].as_str().unwrap();
        let (w, h) = (entry["width"].as_u64().unwrap() as u32, entry["height"].as_u64().unwrap() as u32);
        let path = dir.path().join(name);
        let ours = ras::data::imageio::load_rgb8(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ours.dimensions(), (w, h), "{name}");
        let pil = std::fs::read(dir.path().join(format!("{name}.rgb.bin"))).unwrap();
        let differ = ours.as_raw().iter().zip(&pil).filter(|(a, b)| a != b).count();
        if differ > 0 {
            let worst = ours.as_raw().iter().zip(&pil).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            failures.push(format!(
                "{name} ({what}): {differ} of {} decoded values differ from PIL's, by up to {worst}",
                pil.len()
            ));
        }
        let input = ras::data::imageio::load_image(&path, size).unwrap();
        let ours = Vec::<f32>::try_from(input.contiguous().view(-1)).unwrap();
        let reference: Vec<f32> = std::fs::read(dir.path().join(format!("{name}.input.bin")))
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(ours.len(), reference.len(), "{name}");
        let differ = ours.iter().zip(&reference).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        if differ > 0 {
            let worst = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            failures.push(format!(
                "{name} ({what}) -> {size}: {differ} of {} network inputs differ from torchvision's on PIL, by up to {worst}",
                reference.len()
            ));
        }
    }
    eprintln!("{} files compared with PIL and torchvision, {} differences", manifest.len(), failures.len());
    assert!(failures.is_empty(), "{} differences from the public pipeline:\n{}", failures.len(), failures.join("\n"));
}
