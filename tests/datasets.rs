//! Dataset layouts and `ras data check`, on miniature copies of each layout written with
//! real image files (PNG, JPEG named .JPG, BMP), including each dataset's odd cases.

mod common;
use common::ras;
use ras::config::DatasetConfig;
use ras::data::check::{check, CheckReport, ClassCounts};
use ras::data::{scan, DatasetIndex, Sample};
use ras::progress::Progress;
use std::path::{Path, PathBuf};

const S: u32 = 32;

/// An RGB image with a pattern (so JPEG/PNG/BMP have real content); format from the extension.
fn image_file(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 90])).save(path).unwrap();
}

/// A mask: `value` inside the rectangle [x0, x1) x [y0, y1), 0 elsewhere.
fn mask_file(path: &Path, w: u32, h: u32, value: u8, (x0, y0, x1, y1): (u32, u32, u32, u32)) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([if x >= x0 && x < x1 && y >= y0 && y < y1 { value } else { 0 }])
    })
    .save(path)
    .unwrap();
}

/// Keeps the first half of a file: the header stays valid, the pixel data does not.
fn truncate(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

fn cfg(root: &Path, kind: &str, classes: &[&str]) -> DatasetConfig {
    DatasetConfig {
        kind: kind.parse().unwrap(),
        root: root.to_path_buf(),
        classes: classes.iter().map(|c| c.to_string()).collect(),
        train_meta: None,
        test_meta: None,
    }
}

fn class<'a>(index: &'a DatasetIndex, name: &str) -> &'a ras::data::ClassSamples {
    &index.classes.iter().find(|(c, _)| c == name).unwrap_or_else(|| panic!("no class {name}")).1
}

fn keys(samples: &[Sample]) -> Vec<&str> {
    samples.iter().map(|s| s.key.as_str()).collect()
}

/// (key, label, mask relative to the root) of each test sample.
fn test_rows(index: &DatasetIndex, name: &str) -> Vec<(String, bool, Option<String>)> {
    class(index, name)
        .test
        .iter()
        .map(|s| {
            let m = s.mask.as_ref().map(|m| m.strip_prefix(&index.root).unwrap().to_string_lossy().to_string());
            (s.key.clone(), s.label, m)
        })
        .collect()
}

/// (problem code, file relative to the root) of every problem, in report order.
fn problems(report: &CheckReport, root: &Path) -> Vec<(String, String)> {
    report
        .problems
        .iter()
        .map(|p| (p.code().to_string(), p.file().strip_prefix(root).unwrap_or(p.file()).to_string_lossy().to_string()))
        .collect()
}

fn owned(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn counts(report: &CheckReport) -> Vec<(String, usize, usize, usize, usize)> {
    report.classes.iter().map(|c| (c.class.clone(), c.train, c.test_normal, c.test_anomalous, c.masks)).collect()
}

fn row(c: &str, train: usize, tn: usize, ta: usize, masks: usize) -> (String, usize, usize, usize, usize) {
    (c.to_string(), train, tn, ta, masks)
}

/// Runs `ras data check` through the real binary: (success, stdout + stderr).
fn check_cli(root: &Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["data", "check", root.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = ras(&all, root.parent().unwrap());
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Mask pixels (size x size, as loaded for evaluation) that are anomalous, row-major.
fn mask_pixels(s: &Sample, size: i64) -> Vec<bool> {
    let t = ras::data::imageio::load_mask(s.mask.as_deref(), &s.path, s.label, size).unwrap();
    Vec::<bool>::try_from(t.flatten(0, -1)).unwrap()
}

fn rect_pixels(size: u32, (x0, y0, x1, y1): (u32, u32, u32, u32)) -> Vec<bool> {
    (0..size).flat_map(|y| (0..size).map(move |x| x >= x0 && x < x1 && y >= y0 && y < y1)).collect()
}

fn mvtec_tree(root: &Path) {
    for c in ["bottle", "cable"] {
        for i in 0..2 {
            image_file(&root.join(format!("{c}/train/good/00{i}.png")), S, S);
        }
        image_file(&root.join(format!("{c}/test/good/000.png")), S, S);
        image_file(&root.join(format!("{c}/test/broken/000.png")), S, S);
        mask_file(&root.join(format!("{c}/ground_truth/broken/000_mask.png")), S, S, 255, (4, 4, 12, 12));
    }
}

#[test]
fn mvtec_layout_index_and_problems() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mvtec");
    mvtec_tree(&root);
    // Clean: the same index for "mvtec" and "mpdd", and `ras data check` exits 0.
    for kind in ["mvtec", "mpdd"] {
        let index = scan(&cfg(&root, kind, &[])).unwrap();
        assert_eq!(index.class_names(), ["bottle", "cable"]);
        assert_eq!(keys(&class(&index, "bottle").train), ["bottle/train/good/000.png", "bottle/train/good/001.png"]);
        assert_eq!(
            test_rows(&index, "cable"),
            [
                ("cable/test/broken/000.png".into(), true, Some("cable/ground_truth/broken/000_mask.png".into())),
                ("cable/test/good/000.png".into(), false, None),
            ]
        );
    }
    let (ok, out) = check_cli(&root, &[]);
    assert!(ok && out.contains("no problems found"), "{out}");

    // Odd cases: an anomaly without mask, a mask with no image, a truncated training
    // image, a mask of the wrong size.
    image_file(&root.join("bottle/test/broken/001.png"), S, S);
    image_file(&root.join("bottle/test/broken/002.png"), S, S);
    mask_file(&root.join("bottle/ground_truth/broken/002_mask.png"), 16, 16, 255, (0, 0, 8, 8));
    mask_file(&root.join("bottle/ground_truth/broken/009_mask.png"), S, S, 255, (0, 0, 8, 8));
    truncate(&root.join("bottle/train/good/001.png"));

    let report = check(&cfg(&root, "mvtec", &[]), &Progress::hidden()).unwrap();
    assert_eq!(counts(&report), [row("bottle", 2, 1, 3, 2), row("cable", 2, 1, 1, 1)]);
    assert_eq!(report.files_decoded, 13); // bottle 2 + 4 + 2 masks, cable 2 + 2 + 1 mask
    assert_eq!(
        problems(&report, &root),
        owned(&[
            ("size-mismatch", "bottle/ground_truth/broken/002_mask.png"),
            ("orphan-mask", "bottle/ground_truth/broken/009_mask.png"),
            ("no-mask", "bottle/test/broken/001.png"),
            ("unreadable", "bottle/train/good/001.png"),
        ])
    );
    let text = report.render();
    assert!(text.contains("is 16x16 but its image") && text.contains("32x32"), "{text}");

    // Training accepts what the spec allows: the maskless anomaly is all-anomalous.
    let index = scan(&cfg(&root, "mvtec", &[])).unwrap();
    let maskless = class(&index, "bottle").test.iter().find(|s| s.key == "bottle/test/broken/001.png").unwrap();
    assert_eq!(maskless.mask, None);
    assert!(mask_pixels(maskless, 8).iter().all(|&p| p));

    let (ok, out) = check_cli(&root, &["--kind", "mvtec"]);
    assert!(!ok, "problems must give a non-zero exit: {out}");
    for f in ["002_mask.png", "009_mask.png", "broken/001.png", "train/good/001.png", "4 problems"] {
        assert!(out.contains(f), "output should name {f}: {out}");
    }
    // Only the clean class: exit 0.
    let (ok, out) = check_cli(&root, &["--classes", "cable"]);
    assert!(ok, "{out}");
    assert!(out.contains("cable") && !out.contains("bottle"), "{out}");
}

/// VisA: (object, normal images, anomalies with (mask value, rectangle)).
fn visa_tree(root: &Path) -> Vec<String> {
    let mut rows = vec!["object, split ,label,image,mask".to_string()];
    let defects = [(1u8, (2, 2, 10, 6)), (38u8, (20, 8, 30, 31))];
    for obj in ["pcb1", "candle"] {
        for i in 0..3 {
            let img = format!("{obj}/Data/Images/Normal/00{i}.JPG");
            image_file(&root.join(&img), S, S);
            let split = if i < 2 { "train" } else { "test" };
            rows.push(format!("{obj},{split},normal,{img},"));
        }
        for (i, (v, r)) in defects.iter().enumerate() {
            let img = format!("{obj}/Data/Images/Anomaly/00{i}.JPG");
            let mask = format!("{obj}/Data/Masks/Anomaly/00{i}.png");
            image_file(&root.join(&img), S, S);
            mask_file(&root.join(&mask), S, S, *v, *r);
            rows.push(format!(" {obj} ,test,anomaly, {img} ,{mask}"));
        }
    }
    rows
}

fn write_csv(root: &Path, rows: &[String]) {
    std::fs::create_dir_all(root.join("split_csv")).unwrap();
    std::fs::write(root.join("split_csv/1cls.csv"), rows.join("\r\n") + "\r\n").unwrap();
}

#[test]
fn visa_layout_binarises_masks_and_reports_listed_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("visa");
    let mut rows = visa_tree(&root);
    write_csv(&root, &rows);
    let index = scan(&cfg(&root, "visa", &[])).unwrap();
    assert_eq!(index.class_names(), ["candle", "pcb1"]);
    assert_eq!(
        keys(&class(&index, "pcb1").train),
        ["pcb1/Data/Images/Normal/000.JPG", "pcb1/Data/Images/Normal/001.JPG"]
    );
    assert_eq!(
        test_rows(&index, "candle"),
        [
            ("candle/Data/Images/Normal/002.JPG".into(), false, None),
            ("candle/Data/Images/Anomaly/000.JPG".into(), true, Some("candle/Data/Masks/Anomaly/000.png".into())),
            ("candle/Data/Images/Anomaly/001.JPG".into(), true, Some("candle/Data/Masks/Anomaly/001.png".into())),
        ]
    );
    // Mask values 1 and 38 mark exactly their rectangles.
    let test = &class(&index, "candle").test;
    assert_eq!(mask_pixels(&test[1], S as i64), rect_pixels(S, (2, 2, 10, 6)));
    assert_eq!(mask_pixels(&test[2], S as i64), rect_pixels(S, (20, 8, 30, 31)));
    assert!(mask_pixels(&test[0], S as i64).iter().all(|&p| !p));
    let (ok, out) = check_cli(&root, &["--kind", "visa"]);
    assert!(ok && out.contains("no problems found"), "{out}");

    // Odd cases: csv rows naming a missing image and a missing mask, an anomaly listed
    // for training, a mask no row uses.
    rows.push("pcb1,test,normal,pcb1/Data/Images/Normal/404.JPG,".into());
    rows.push("pcb1,test,anomaly,pcb1/Data/Images/Anomaly/000.JPG,pcb1/Data/Masks/Anomaly/405.png".into());
    rows.push("candle,train,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png".into());
    mask_file(&root.join("pcb1/Data/Masks/Anomaly/777.png"), S, S, 1, (0, 0, 4, 4));
    write_csv(&root, &rows);
    let report = check(&cfg(&root, "visa", &[]), &Progress::hidden()).unwrap();
    assert_eq!(counts(&report), [row("candle", 2, 1, 2, 2), row("pcb1", 2, 1, 2, 2)]);
    assert_eq!(
        problems(&report, &root),
        owned(&[
            ("anomalous-train", "candle/Data/Images/Anomaly/000.JPG"),
            ("missing-file", "pcb1/Data/Images/Normal/404.JPG"),
            ("missing-file", "pcb1/Data/Masks/Anomaly/405.png"),
            ("orphan-mask", "pcb1/Data/Masks/Anomaly/777.png"),
        ])
    );
    let text = report.render();
    assert!(text.contains("404.JPG does not exist but") && text.contains("1cls.csv line 12"), "{text}");
    // Training refuses such a csv, naming the first problem (file and csv line) and the count.
    let err = ras::error_text::chain(&scan(&cfg(&root, "visa", &[])).unwrap_err());
    assert!(
        err.contains("candle/Data/Images/Anomaly/000.JPG")
            && err.contains("1cls.csv line 14")
            && err.contains("2 more"),
        "{err}"
    );
    let (ok, out) = check_cli(&root, &["--kind", "visa"]);
    assert!(!ok && out.contains("404.JPG") && out.contains("777.png") && out.contains("405.png"), "{out}");

    // A malformed csv is an error naming the file and line.
    rows.push("pcb1,validation,normal,pcb1/Data/Images/Normal/000.JPG,".into());
    write_csv(&root, &rows);
    let err = ras::error_text::chain(&scan(&cfg(&root, "visa", &[])).unwrap_err());
    assert!(err.contains("1cls.csv line 15") && err.contains("validation"), "{err}");
}

#[test]
fn btad_extensions_and_problems() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("btad");
    // 01: .bmp images, .png masks; 02: .png and .png; 03: .bmp and .bmp.
    for (c, img, msk) in [("01", "bmp", "png"), ("02", "png", "png"), ("03", "bmp", "bmp")] {
        for i in 0..2 {
            image_file(&root.join(format!("{c}/train/ok/000{i}.{img}")), S, S);
        }
        image_file(&root.join(format!("{c}/test/ok/0000.{img}")), S, S);
        image_file(&root.join(format!("{c}/test/ko/0001.{img}")), S, S);
        mask_file(&root.join(format!("{c}/ground_truth/ko/0001.{msk}")), S, S, 255, (1, 1, 5, 5));
    }
    let index = scan(&cfg(&root, "btad", &[])).unwrap();
    assert_eq!(index.class_names(), ["01", "02", "03"]);
    assert_eq!(keys(&class(&index, "03").train), ["03/train/ok/0000.bmp", "03/train/ok/0001.bmp"]);
    for (c, img, msk) in [("01", "bmp", "png"), ("02", "png", "png"), ("03", "bmp", "bmp")] {
        assert_eq!(
            test_rows(&index, c),
            // Test folders in name order, as for every folder layout: ko, then ok.
            [
                (format!("{c}/test/ko/0001.{img}"), true, Some(format!("{c}/ground_truth/ko/0001.{msk}"))),
                (format!("{c}/test/ok/0000.{img}"), false, None),
            ]
        );
    }
    let bmp_mask = &class(&index, "03").test[0];
    assert_eq!(mask_pixels(bmp_mask, S as i64), rect_pixels(S, (1, 1, 5, 5)));
    let (ok, out) = check_cli(&root, &["--kind", "btad"]);
    assert!(ok && out.contains("no problems found"), "{out}");

    // Odd cases: 01 mask of the wrong size, 02 anomaly without mask, 03 truncated .bmp
    // image and a .bmp mask with no image.
    mask_file(&root.join("01/ground_truth/ko/0001.png"), S, 20, 255, (1, 1, 5, 5));
    image_file(&root.join("02/test/ko/0002.png"), S, S);
    truncate(&root.join("03/test/ok/0000.bmp"));
    mask_file(&root.join("03/ground_truth/ko/0009.bmp"), S, S, 255, (1, 1, 5, 5));
    let report = check(&cfg(&root, "btad", &[]), &Progress::hidden()).unwrap();
    assert_eq!(counts(&report), [row("01", 2, 1, 1, 1), row("02", 2, 1, 2, 1), row("03", 2, 1, 1, 1)]);
    assert_eq!(
        problems(&report, &root),
        owned(&[
            ("size-mismatch", "01/ground_truth/ko/0001.png"),
            ("no-mask", "02/test/ko/0002.png"),
            ("orphan-mask", "03/ground_truth/ko/0009.bmp"),
            ("unreadable", "03/test/ok/0000.bmp"),
        ])
    );
    let (ok, out) = check_cli(&root, &["--kind", "btad"]);
    assert!(!ok && out.contains("0009.bmp") && out.contains("03/test/ok/0000.bmp"), "{out}");
}

#[test]
fn jsonl_metadata_relative_to_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    let line = |f: &str, label: u8, mask: Option<&str>, cls: &str| {
        let name = if label == 1 { "defective" } else { "good" };
        let m = mask.map(|m| format!(", \"maskname\": \"{m}\"")).unwrap_or_default();
        format!("{{\"filename\": \"{f}\", \"label\": {label}, \"label_name\": \"{name}\"{m}, \"clsname\": \"{cls}\", \"extra\": 1}}")
    };
    let mut train = vec![];
    let mut test = vec![];
    for c in ["wood", "bolt"] {
        for i in 0..2 {
            let f = format!("{c}/train/good/{i}.png");
            image_file(&root.join(&f), S, S);
            train.push(line(&f, 0, None, c));
        }
        let f = format!("{c}/test/good/0.png");
        image_file(&root.join(&f), S, S);
        test.push(line(&f, 0, None, c));
        let (f, m) = (format!("{c}/test/crack/0.png"), format!("{c}/gt/crack/0_mask.png"));
        image_file(&root.join(&f), S, S);
        mask_file(&root.join(&m), S, S, 255, (0, 0, 3, 3));
        test.push(line(&f, 1, Some(&m), c));
    }
    std::fs::create_dir_all(root.join("meta")).unwrap();
    std::fs::write(root.join("meta/train.jsonl"), train.join("\n") + "\n\n").unwrap();
    std::fs::write(root.join("meta/test.jsonl"), test.join("\n")).unwrap();
    let mut c = cfg(&root, "jsonl", &["wood"]);
    c.train_meta = Some("meta/train.jsonl".into());
    c.test_meta = Some(root.join("meta/test.jsonl")); // absolute works too
    let index = scan(&c).unwrap();
    assert_eq!(index.class_names(), ["wood"]);
    assert_eq!(keys(&class(&index, "wood").train), ["wood/train/good/0.png", "wood/train/good/1.png"]);
    assert_eq!(
        test_rows(&index, "wood"),
        [
            ("wood/test/good/0.png".into(), false, None),
            ("wood/test/crack/0.png".into(), true, Some("wood/gt/crack/0_mask.png".into()))
        ]
    );
    assert_eq!(class(&index, "wood").test[1].defect, "defective");
    c.classes.clear();
    assert_eq!(scan(&c).unwrap().class_names(), ["bolt", "wood"]);
    let meta = ["--kind", "jsonl", "--train-meta", "meta/train.jsonl", "--test-meta", "meta/test.jsonl"];
    let (ok, out) = check_cli(&root, &meta);
    assert!(ok && out.contains("no problems found"), "{out}");

    // A row naming a missing image, and a mask no row names, in the same mask folder.
    test.push(line("bolt/test/crack/9.png", 1, Some("bolt/gt/crack/0_mask.png"), "bolt"));
    std::fs::write(root.join("meta/test.jsonl"), test.join("\n")).unwrap();
    mask_file(&root.join("bolt/gt/crack/1_mask.png"), S, S, 255, (0, 0, 3, 3));
    let report = check(&c, &Progress::hidden()).unwrap();
    assert_eq!(
        problems(&report, &root),
        owned(&[("orphan-mask", "bolt/gt/crack/1_mask.png"), ("missing-file", "bolt/test/crack/9.png")])
    );
    let (ok, out) = check_cli(&root, &meta);
    assert!(!ok && out.contains("bolt/test/crack/9.png") && out.contains("test.jsonl line 5"), "{out}");
    // Without the metadata keys the error names them.
    let (ok, out) = check_cli(&root, &["--kind", "jsonl"]);
    assert!(!ok && out.contains("dataset.train_meta"), "{out}");
}

/// Metadata naming files outside dataset.root (`..`, absolute paths; images and masks)
/// is refused at scan, naming the metadata file, line and path, and `ras data check`
/// lists each as a problem, even though the files exist and decode.
#[test]
fn jsonl_paths_outside_the_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    let line = |f: &str, label: u8, mask: Option<&str>| {
        let m = mask.map(|m| format!(", \"maskname\": \"{m}\"")).unwrap_or_default();
        format!("{{\"filename\": \"{f}\", \"label\": {label}{m}, \"clsname\": \"wood\"}}")
    };
    for f in ["wood/train/good/0.png", "wood/test/good/0.png", "wood/test/crack/0.png"] {
        image_file(&root.join(f), S, S);
    }
    mask_file(&root.join("wood/gt/0_mask.png"), S, S, 255, (0, 0, 3, 3));
    // Real, readable files just outside the root.
    image_file(&dir.path().join("secret.png"), S, S);
    mask_file(&dir.path().join("secret_mask.png"), S, S, 255, (0, 0, 3, 3));
    let abs = dir.path().join("secret.png").display().to_string();
    let train = [line("wood/train/good/0.png", 0, None), line("../secret.png", 0, None)];
    let test = [
        line("wood/test/good/0.png", 0, None),
        line(&abs, 0, None),
        line("wood/test/crack/0.png", 1, Some("wood/../../secret_mask.png")),
        line("wood/test/crack/0.png", 1, Some("wood/gt/0_mask.png")),
    ];
    std::fs::create_dir_all(root.join("meta")).unwrap();
    std::fs::write(root.join("meta/train.jsonl"), train.join("\n")).unwrap();
    std::fs::write(root.join("meta/test.jsonl"), test.join("\n")).unwrap();
    let mut c = cfg(&root, "jsonl", &[]);
    c.train_meta = Some("meta/train.jsonl".into());
    c.test_meta = Some("meta/test.jsonl".into());
    let err = ras::error_text::chain(&scan(&c).unwrap_err());
    assert!(
        err.contains("../secret.png") && err.contains("train.jsonl line 2") && err.contains("outside dataset.root"),
        "{err}"
    );
    assert!(err.contains("2 more problems"), "{err}");
    let report = check(&c, &Progress::hidden()).unwrap();
    let mut found = problems(&report, &root);
    found.sort();
    assert_eq!(
        found,
        owned(&[
            ("outside-root", "../secret.png"),
            ("outside-root", &abs),
            ("outside-root", "wood/../../secret_mask.png")
        ])
    );
    let meta = ["--kind", "jsonl", "--train-meta", "meta/train.jsonl", "--test-meta", "meta/test.jsonl"];
    let (ok, out) = check_cli(&root, &meta);
    assert!(!ok && !out.contains("no problems found"), "{out}");
    assert!(
        out.contains("[outside-root]") && out.contains("test.jsonl line 2") && out.contains("test.jsonl line 3"),
        "{out}"
    );
}

/// A class folder with neither train/ nor test/ (a class unpacked one level too deep) is
/// an error naming it, in every per-class layout, instead of a class silently left out;
/// unless dataset.classes leaves it out. Hidden folders and plain files are ignored, and
/// a class with test/ but no train/ is a class without training images.
#[test]
fn class_folders_without_train_or_test_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mvtec");
    mvtec_tree(&root);
    std::fs::create_dir_all(root.join(".cache/x")).unwrap();
    std::fs::write(root.join("license.txt"), "cc").unwrap();
    image_file(&root.join("screw/screw/train/good/000.png"), S, S);
    for kind in ["mvtec", "mpdd", "btad"] {
        let err = ras::error_text::chain(&scan(&cfg(&root, kind, &[])).unwrap_err());
        assert!(
            err.contains("mvtec/screw has neither train/ nor test/") && err.contains("dataset.classes"),
            "{kind}: {err}"
        );
    }
    let (ok, out) = check_cli(&root, &[]);
    assert!(!ok && out.contains("mvtec/screw"), "{out}");
    // Restricted to other classes: the stray folder does not matter.
    assert_eq!(scan(&cfg(&root, "mvtec", &["bottle", "cable"])).unwrap().class_names(), ["bottle", "cable"]);
    let err = ras::error_text::chain(&scan(&cfg(&root, "mvtec", &["screw"])).unwrap_err());
    assert!(err.contains("mvtec/screw has neither"), "{err}");
    // Test images but no train/: a class without training images, not a missing class.
    std::fs::remove_dir_all(root.join("screw")).unwrap();
    image_file(&root.join("screw/test/good/000.png"), S, S);
    let err = ras::error_text::chain(&scan(&cfg(&root, "mvtec", &[])).unwrap_err());
    assert!(err.contains("\"screw\" has no training images"), "{err}");
    std::fs::remove_dir_all(root.join("screw")).unwrap();
    assert_eq!(scan(&cfg(&root, "mvtec", &[])).unwrap().class_names(), ["bottle", "cable"]);
}

#[test]
fn class_filter_and_unknown_class() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mvtec");
    mvtec_tree(&root);
    let index = scan(&cfg(&root, "mvtec", &["cable"])).unwrap();
    assert_eq!(index.class_names(), ["cable"]);
    let err = ras::error_text::chain(&scan(&cfg(&root, "mvtec", &["screw"])).unwrap_err());
    assert!(err.contains("screw") && err.contains("found: bottle, cable"), "{err}");
    // An unknown layout is refused where the kind is read (config, `--kind`), naming it.
    let err = "folders".parse::<ras::config::DatasetKind>().map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("folders") && err.contains("visa"), "{err}");
    // The wrong layout is not silently empty: BTAD has no train/ok here.
    let err = ras::error_text::chain(&scan(&cfg(&root, "btad", &[])).unwrap_err());
    assert!(err.contains("no training images") && err.contains("train/ok"), "{err}");
}

#[test]
fn published_counts_are_recognised() {
    let report = |train: usize, normal: usize, anomalous: usize| CheckReport {
        kind: ras::config::DatasetKind::Mvtec,
        root: PathBuf::from("/data/mpdd"),
        classes: vec![
            ClassCounts {
                class: "a".into(),
                train: train - 8,
                test_normal: normal - 1,
                test_anomalous: anomalous,
                masks: anomalous,
            },
            ClassCounts { class: "b".into(), train: 8, test_normal: 1, test_anomalous: 0, masks: 0 },
        ],
        problems: vec![],
        files_decoded: 0,
    };
    let text = report(888, 176, 282).render();
    assert!(text.contains("888 train / 458 test images: matches the published counts of MPDD (train/test)"), "{text}");
    assert!(text.contains("total") && text.contains("888"), "{text}");
    let text = report(3629, 467, 1258).render();
    assert!(text.contains("matches the published counts of MVTec-AD"), "{text}");
    let text = report(100, 10, 10).render();
    assert!(text.contains("differs from the published counts (MVTec-AD 3629 / 1725, MPDD 888 / 458)"), "{text}");
}
